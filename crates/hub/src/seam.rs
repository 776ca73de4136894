//! Where a topic replayed from the history store joins its live stream.
//!
//! A client that asks for a topic "since T" first gets the store's records from T on,
//! then the live stream. The store is written behind the live stream (batches, a
//! commit every second or so), so when the records run out the live stream is already
//! ahead of them: the join has to find, among the topic's recent live messages (its
//! retention log, module `retention`), the one the last stored record *is*, and go on
//! from the message after it. Records and live messages are the same events encoded by
//! the same code, so "is" means equal: the same payload, exchange time and receive
//! time. Found: the join is exact, proven by the event itself — no gap, no repeat.
//!
//! When it is not found the join cannot be proven, with one exception: if the log
//! holds every message the topic published since the server started and the last
//! record is older than that start, every live message comes after the records (the
//! store holds what came before). Otherwise (the store lags more than the log keeps, or
//! the topic keeps no log) the join sends every live message still kept, so nothing
//! that can be sent is skipped, and says it is not exact.
//!
//! The search decodes messages, newest first, without the instrument's lock: the log
//! is copied out (reference counts, not bytes) under it, and the join itself goes back
//! through the resume path, which checks the number is still kept.

use bytes::Bytes;
use prost::Message as _;
use raven_model::UnixNanos;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

/// A topic's live messages as they were when the join was looked for.
#[derive(Debug, Clone, Default)]
pub struct LiveLog {
    /// The topic keeps a log (false: retention is off, or a top-N view).
    pub kept: bool,
    /// The sequence of `messages[0]`.
    pub first: u64,
    /// The log, oldest first, without holes.
    pub messages: Vec<Bytes>,
    /// The topic's last sequence (0: nothing published since the server started).
    pub current: u64,
}

/// The last stored record a replay sent, as the stream carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEnd {
    pub exchange_time_ns: u64,
    pub receive_time_ns: u64,
    pub payload: Payload,
}

impl StoredEnd {
    /// Whether the live message `m` is this record. Candles carry no times in the
    /// store (their open time is in the payload), so only the payload is compared.
    fn is(&self, m: &pb::ServerMessage) -> bool {
        let Some(payload) = &m.payload else {
            return false;
        };
        if matches!(payload, Payload::Candle(_)) {
            return *payload == self.payload;
        }
        m.exchange_time_ns == self.exchange_time_ns
            && m.receive_time_ns == self.receive_time_ns
            && *payload == self.payload
    }
}

/// Where the live stream takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The live stream starts after this sequence.
    pub after: u64,
    /// The join is proven (see the module docs).
    pub exact: bool,
    /// Why it is not; empty when it is.
    pub reason: String,
}

/// The time a live message sits at on its series' axis, to compare with a replay's
/// start: a candle's open time, an event's exchange time (its receive time when the
/// exchange gives none). `None` for notices, which have no place on it.
fn series_time(m: &pb::ServerMessage) -> Option<u64> {
    match m.payload.as_ref()? {
        Payload::Candle(c) => Some(c.open_time_ns),
        Payload::Trade(_) | Payload::Bbo(_) | Payload::Funding(_) | Payload::Liquidation(_) => {
            Some(if m.exchange_time_ns != 0 {
                m.exchange_time_ns
            } else {
                m.receive_time_ns
            })
        }
        _ => None,
    }
}

/// Finds the join of a replay that started at `since`, whose last stored record was
/// `last` (`None`: the store had none), on a server started at `epoch_start`.
pub fn find(log: &LiveLog, last: Option<&StoredEnd>, since: UnixNanos, epoch_start: u64) -> Join {
    let exact = |after: u64| Join {
        after,
        exact: true,
        reason: String::new(),
    };
    if log.current == 0 {
        // Nothing published since the server started: the store has everything.
        return exact(0);
    }
    if !log.kept || log.messages.is_empty() {
        return Join {
            after: log.current,
            exact: false,
            reason: "the topic keeps no live messages to join at (hub.retention_secs is 0): \
                     events between the last stored record and the next live message may \
                     be missing"
                .into(),
        };
    }
    let before_first = log.first - 1;
    // The log reaches back to the server's start: no live message is missing from it.
    let complete = log.first == 1;
    // Newest first: the last stored record is seconds old at most when the store keeps up.
    let mut oldest_time = None;
    for (i, body) in log.messages.iter().enumerate().rev() {
        let Ok(m) = pb::ServerMessage::decode(body.as_ref()) else {
            continue;
        };
        let seq = log.first + i as u64;
        if let Some(last) = last {
            if last.is(&m) {
                return exact(seq);
            }
        } else if let Some(t) = series_time(&m) {
            if t >= since.as_nanos() {
                // Still at or after the start: it is sent.
                oldest_time = Some(t);
                continue;
            }
            // The first message before the start: the live stream joins after it.
            return exact(seq);
        }
    }
    match last {
        Some(last) if complete && last.receive_time_ns < epoch_start => exact(before_first),
        Some(last) => Join {
            after: before_first,
            exact: false,
            reason: format!(
                "the last stored record (received at {} ns) is not among the {} live messages \
                 the topic still keeps (from sequence {}): the store lags more than they \
                 cover; every kept one follows, so events around the join may be repeated \
                 or missing",
                last.receive_time_ns,
                log.messages.len(),
                log.first
            ),
        },
        // Every kept message is at or after the start.
        None if complete => exact(before_first),
        None => Join {
            after: before_first,
            exact: false,
            reason: format!(
                "the store has no records since {} ns and the live messages the topic still \
                 keeps start at {} ns: events in between may be missing",
                since.as_nanos(),
                oldest_time.unwrap_or_default()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: u64) -> pb::ServerMessage {
        pb::ServerMessage {
            sequence: id,
            exchange_time_ns: id * 1_000,
            receive_time_ns: id * 1_000 + 7,
            payload: Some(Payload::Trade(pb::Trade {
                trade_id: id,
                price: format!("{id}.5"),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn end(id: u64) -> StoredEnd {
        let m = trade(id);
        StoredEnd {
            exchange_time_ns: m.exchange_time_ns,
            receive_time_ns: m.receive_time_ns,
            payload: m.payload.unwrap(),
        }
    }

    /// A log of trades `first..=last` (sequence = trade id).
    fn log(first: u64, last: u64) -> LiveLog {
        LiveLog {
            kept: true,
            first,
            messages: (first..=last)
                .map(|id| Bytes::from(trade(id).encode_to_vec()))
                .collect(),
            current: last,
        }
    }

    #[test]
    fn the_last_record_found_joins_after_it() {
        let j = find(&log(5, 20), Some(&end(12)), UnixNanos(0), u64::MAX);
        assert_eq!(
            j,
            Join {
                after: 12,
                exact: true,
                reason: String::new()
            }
        );
        // The newest kept one: nothing live to add.
        assert_eq!(
            find(&log(5, 20), Some(&end(20)), UnixNanos(0), u64::MAX).after,
            20
        );
    }

    #[test]
    fn a_record_that_differs_in_anything_is_not_the_same_event() {
        let mut other = end(12);
        other.receive_time_ns += 1;
        let j = find(&log(5, 20), Some(&other), UnixNanos(0), 0);
        assert!(!j.exact && j.after == 4, "{j:?}");
        assert!(
            j.reason.contains("not among the 16 live messages"),
            "{}",
            j.reason
        );
    }

    #[test]
    fn records_from_before_the_start_join_a_complete_log_at_its_beginning() {
        // The log holds everything since the start (sequence 1 on); the record was
        // received before the server started.
        let j = find(&log(1, 9), Some(&end(50)), UnixNanos(0), 60_000);
        assert_eq!((j.after, j.exact), (0, true));
        // Received after the start yet not in a complete log: not proven.
        let j = find(&log(1, 9), Some(&end(50)), UnixNanos(0), 1_000);
        assert!(!j.exact);
    }

    #[test]
    fn no_records_join_at_the_first_live_message_from_the_start_on() {
        // Exchange times are id × 1000: since 12 000 the live stream starts at 12.
        let j = find(&log(5, 20), None, UnixNanos(12_000), 0);
        assert_eq!((j.after, j.exact), (11, true));
        // The log starts after `since` and is not complete: unproven.
        let j = find(&log(5, 20), None, UnixNanos(1_000), 0);
        assert!(!j.exact && j.after == 4, "{j:?}");
        let j = find(&log(1, 20), None, UnixNanos(500), 0);
        assert_eq!((j.after, j.exact), (0, true));
    }

    #[test]
    fn a_topic_without_a_log_joins_live_and_says_so() {
        let none = LiveLog {
            kept: false,
            current: 30,
            ..LiveLog::default()
        };
        let j = find(&none, Some(&end(3)), UnixNanos(0), 0);
        assert!(
            !j.exact && j.after == 30 && j.reason.contains("retention_secs"),
            "{j:?}"
        );
        // Nothing published yet: nothing can be missed.
        let quiet = LiveLog::default();
        assert!(find(&quiet, Some(&end(3)), UnixNanos(0), 0).exact);
    }
}
