//! Replay from a time: a `Subscribe` topic's stored records, then its live stream.
//!
//! For each topic a request asks "since T" (`SubscribeRequest.replay`) the hub's
//! session holds the topic and acks it; this task then reads the history store from T
//! to the time it started, in the store's pages, and hands each record to the stream's
//! queue as the client reads ([`Subscriber::offer_replayed`]: half the queue at most,
//! waiting for room, so a replay never crowds out the stream's live topics and a
//! client that does not read only stops its own replay, and is cut as any slow
//! consumer is). It holds a history reader slot (`server.history_streams`, shared with
//! `GetHistory`) while it reads, so replays are bounded in number per client and in
//! all, and the store, not the feed, pays for them. At most `server.max_replay_records`
//! are sent. Then the session joins the topic to its live stream (hub module `seam`),
//! with a `ReplayComplete` saying whether the join is proven.
//!
//! The task belongs to its stream: it is aborted when the stream ends, and it stops at
//! the next page when its topic is unsubscribed.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use raven_hub::replay::replayed_message;
use raven_hub::{ReplayEnd, ReplayStart, Session, Subscriber};
use raven_model::{QtyUnit, UnixNanos};
use raven_sinks::history::{HistoryItem, HistoryQuery, HistoryRow, HistoryStore};

use crate::limits::Slot;

/// Records encoded between yields to the runtime, which the live feed shares.
const YIELD_EVERY: u64 = 256;

/// What one replay needs besides its topic.
pub(crate) struct ReplayTask {
    pub session: Weak<Mutex<Session>>,
    pub sub: Arc<Subscriber>,
    pub store: Arc<dyn HistoryStore>,
    /// The store reader slot, or why there was none.
    pub slot: Result<Slot, String>,
    /// The instrument's quantity unit, which candles' volumes carry.
    pub unit: Option<QtyUnit>,
    pub max_records: usize,
}

impl ReplayTask {
    /// Sends `start`'s records, then joins it to the live stream.
    pub async fn run(self, start: ReplayStart) {
        let mut end = ReplayEnd::default();
        match &self.slot {
            Err(reason) => end.cut_short = Some(reason.clone()),
            Ok(_) => {
                if !self.send_records(&start, &mut end).await {
                    return;
                }
            }
        }
        // The store's reader is free before the join: the join reads no store.
        drop(self.slot);
        if let Some(session) = self.session.upgrade() {
            session.lock().join_replay(&start, end);
        }
    }

    /// Sends the stored records; `false` when the replay is over without a join (its
    /// stream ended, or the topic was unsubscribed).
    async fn send_records(&self, start: &ReplayStart, end: &mut ReplayEnd) -> bool {
        let query = HistoryQuery {
            instrument: start.key.instrument.clone(),
            channel: start.key.channel,
            start: start.since,
            end: UnixNanos::now(),
            limit: self.max_records,
        };
        let mut pages = self.store.query(query);
        while let Some(page) = pages.recv().await {
            let rows = match page {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(topic = ?start.wire, error = %e, "replay: the history store failed");
                    metrics::counter!("errors_total", "kind" => "history").increment(1);
                    end.cut_short = Some(format!("the history store failed: {e}"));
                    return true;
                }
            };
            if !self.still_wanted(start) {
                return false;
            }
            for row in rows {
                let time = row.time.as_nanos();
                let (body, stored) = record(&start.wire, row, self.unit);
                while !self.sub.offer_replayed(&body) {
                    if self.sub.is_ended() {
                        return false;
                    }
                    self.sub.room(body.len()).await;
                }
                end.records += 1;
                end.last = Some(stored);
                end.last_time_ns = time;
                // A page is thousands of records: let the feed's tasks run between.
                if end.records.is_multiple_of(YIELD_EVERY) {
                    tokio::task::yield_now().await;
                }
            }
        }
        if end.records >= self.max_records as u64 {
            end.cut_short = Some(format!(
                "the replay stopped at server.max_replay_records ({}) records",
                self.max_records
            ));
        }
        true
    }

    fn still_wanted(&self, start: &ReplayStart) -> bool {
        self.session
            .upgrade()
            .is_some_and(|s| s.lock().is_replaying(&start.key))
    }
}

/// One stored row as the stream carries it, and what the join compares.
fn record(
    wire: &raven_proto::pb::Topic,
    row: HistoryRow,
    unit: Option<QtyUnit>,
) -> (bytes::Bytes, raven_hub::seam::StoredEnd) {
    let payload = match &row.item {
        HistoryItem::Event(kind) => raven_hub::encode::event(kind),
        HistoryItem::Candle(c) => raven_hub::encode::candle(c, unit),
    };
    replayed_message(wire, row.exchange_time, row.receive_time, payload)
}
