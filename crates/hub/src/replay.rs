//! A topic asked for from a past time: held by its session between its ack and the
//! end of its stored records, then joined to the live stream (module `seam`).
//!
//! The hub does not read the history store: the caller does (its reader, its pacing),
//! pushing each record into the subscriber's queue ([`Subscriber::offer_replayed`]).
//! The session's part is the bookkeeping on either side of that: accepting the topic
//! ([`Session::replay`], an ack now, counted against the stream's and the principal's
//! topic limits, unsubscribable while its records stream), and the join
//! ([`Session::join_replay`]): the `ReplayComplete` marker, then the topic's live
//! messages from the first one the records did not cover, through the resume path,
//! so the join is as gap-free as a resume.
//!
//! [`Subscriber::offer_replayed`]: crate::Subscriber::offer_replayed

use bytes::Bytes;
use raven_model::UnixNanos;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

use crate::channel::{Channel, TopicKey};
use crate::encode::{self, Envelope};
use crate::hub::Session;
use crate::seam::{self, Join, LiveLog, StoredEnd};

/// A replay the session accepted: the caller reads `key`'s stored records from `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayStart {
    pub key: TopicKey,
    /// The topic as its messages carry it.
    pub wire: pb::Topic,
    pub since: UnixNanos,
}

/// How a replay's stored records ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayEnd {
    /// The last record sent, as the stream carried it (`None`: none was).
    pub last: Option<StoredEnd>,
    /// Its series time (`HistoryRecord.time_ns`).
    pub last_time_ns: u64,
    pub records: u64,
    /// Why the records stopped before the store's end (the store failed, a limit).
    pub cut_short: Option<String>,
}

/// The `result` label values of `raven_replays_total`.
pub const REPLAY_RESULTS: [&str; 2] = ["exact", "inexact"];

impl Session {
    /// Allows replays from a time on this stream (`None`), or refuses them with
    /// `reason` (no history store).
    pub fn set_replay_refusal(&mut self, reason: Option<String>) {
        self.replay_refusal = reason;
    }

    /// The replays the last [`Session::handle`] accepted; the caller reads their
    /// records and then calls [`Session::join_replay`] for each.
    pub fn take_replays(&mut self) -> Vec<ReplayStart> {
        std::mem::take(&mut self.started)
    }

    /// Whether `key` is still waiting for its records (not unsubscribed meanwhile).
    pub fn is_replaying(&self, key: &TopicKey) -> bool {
        self.replaying.contains(key)
    }

    /// Accepts one topic asked from a past time (see [`pb::Replay`]), or rejects it
    /// naming why. Returns its cost (1).
    pub(crate) fn replay(&mut self, r: &pb::Replay) -> usize {
        let topic = r.topic.clone().unwrap_or_default();
        let keys = match self.replayable(&topic, r.since_time_ns) {
            Ok(keys) => keys,
            Err(reason) => {
                self.reject(&topic, &reason);
                return 1;
            }
        };
        for key in keys {
            let wire = key.to_proto();
            if !self.admit(&key, &wire) {
                continue;
            }
            self.ack(&wire, pb::ack::Result::Subscribed, "");
            self.topics.insert(key.clone());
            self.replaying.insert(key.clone());
            self.started.push(ReplayStart {
                key,
                wire,
                since: UnixNanos(r.since_time_ns),
            });
        }
        1
    }

    /// The topic `topic` names, if it can be replayed since `since_time_ns`; otherwise
    /// why not.
    fn replayable(&self, topic: &pb::Topic, since_time_ns: u64) -> Result<Vec<TopicKey>, String> {
        if let Some(reason) = &self.replay_refusal {
            return Err(reason.clone());
        }
        if topic.symbol.trim() == "*" {
            return Err(
                "replay names one topic: a wildcard's topics each have their own records".into(),
            );
        }
        let now = UnixNanos::now().as_nanos();
        if since_time_ns > now {
            return Err(format!(
                "since_time_ns {since_time_ns} is in the future (now is {now})"
            ));
        }
        let keys = self.resolve(topic)?;
        if keys.iter().any(|k| k.channel == Channel::Book) {
            return Err(
                "book history is not kept: subscribe the book for a snapshot, or resume it".into(),
            );
        }
        Ok(keys)
    }

    /// Joins a replayed topic to its live stream once its records are sent: the
    /// topic's `ReplayComplete`, then its live messages from the first one the records
    /// did not cover. `false` when the topic was unsubscribed meanwhile (nothing is
    /// sent).
    pub fn join_replay(&mut self, start: &ReplayStart, end: ReplayEnd) -> bool {
        if !self.replaying.remove(&start.key) {
            return false;
        }
        let log = self.hub.live_log(&start.key).unwrap_or_default();
        let join = match (&end.cut_short, &end.last) {
            // No record was sent because the store could not be read: it says nothing
            // of what it holds, so nothing is proven.
            (Some(why), None) => Join {
                after: send_all_kept(&log),
                exact: false,
                reason: why.clone(),
            },
            _ => {
                let mut join = seam::find(&log, end.last.as_ref(), start.since, self.hub.epoch());
                if let (false, Some(why)) = (join.exact, &end.cut_short) {
                    join.reason = format!("{why}; {}", join.reason);
                }
                join
            }
        };
        let wire = start.wire.clone();
        let marker = move |result: pb::ack::ResumeResult, refused: String| -> Bytes {
            // The resume path refuses when the topic keeps no log (the join said so
            // already) or the log moved on since it was read.
            let (exact, reason) = match result {
                pb::ack::ResumeResult::ResumeReplayed => (join.exact, join.reason),
                _ if !join.exact => (false, join.reason),
                _ => (false, refused),
            };
            let label = REPLAY_RESULTS[usize::from(!exact)];
            metrics::counter!("raven_replays_total", "result" => label).increment(1);
            let env = Envelope {
                topic: &wire,
                sequence: join.after,
                exchange_time: UnixNanos(0),
                receive_time: UnixNanos::now(),
            };
            encode::encode(
                &env,
                Payload::ReplayComplete(pb::ReplayComplete {
                    records: end.records,
                    exact,
                    reason,
                    last_time_ns: end.last_time_ns,
                }),
            )
        };
        self.hub
            .attach_after(&start.key, &self.sub, join.after, marker);
        true
    }
}

/// Where a join that proves nothing starts: every live message still kept, so nothing
/// that can be sent is skipped.
fn send_all_kept(log: &LiveLog) -> u64 {
    if log.kept && !log.messages.is_empty() {
        log.first - 1
    } else {
        log.current
    }
}

/// A stored record as a replay sends it: the topic's envelope with sequence 0 and
/// `replayed` set.
pub fn replayed_message(
    wire: &pb::Topic,
    exchange_time: UnixNanos,
    receive_time: UnixNanos,
    payload: Payload,
) -> (Bytes, StoredEnd) {
    let end = StoredEnd {
        exchange_time_ns: exchange_time.as_nanos(),
        receive_time_ns: receive_time.as_nanos(),
        payload: payload.clone(),
    };
    let body = raven_proto::OutboundMessage::encode_body(&pb::ServerMessage {
        topic: Some(wire.clone()),
        sequence: 0,
        exchange_time_ns: end.exchange_time_ns,
        receive_time_ns: end.receive_time_ns,
        send_time_ns: 0,
        replayed: true,
        payload: Some(payload),
    });
    (body, end)
}
