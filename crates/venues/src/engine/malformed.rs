//! Counting and logging frames that could not be used, without flooding the log.
//!
//! A venue that changes a field's format can make every frame malformed; logging each
//! would bury everything else. Each one is counted (`raven_feed_malformed_frames_total`),
//! and a warning with the latest error and the count since the last warning is written
//! at most once per [`LOG_INTERVAL`] per connection.

use std::time::Duration;

use raven_model::Venue;
use tokio::time::Instant;

use crate::status;

/// At most one warning per this interval about malformed frames, per connection.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct MalformedLog {
    /// Resolved at start, so the series exists (at zero) before the first bad frame.
    counter: metrics::Counter,
    since_log: u64,
    last_log: Option<Instant>,
}

impl MalformedLog {
    pub fn new(venue: Venue) -> Self {
        Self {
            counter: metrics::counter!(status::METRIC_MALFORMED, "venue" => venue.as_str()),
            since_log: 0,
            last_log: None,
        }
    }

    /// Counts one malformed frame of `connection` and logs it if due.
    pub fn record(&mut self, connection: &str, error: &dyn std::fmt::Display) {
        self.counter.increment(1);
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL)
        {
            tracing::warn!(
                connection,
                count = self.since_log,
                %error,
                "skipping malformed frame(s)"
            );
            self.last_log = Some(now);
            self.since_log = 0;
        } else {
            tracing::debug!(connection, %error, "skipping malformed frame");
        }
    }
}
