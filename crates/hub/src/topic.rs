//! One sequenced topic and the slow-consumer policy of each of its subscribers.
//!
//! A [`Topic`] numbers its messages and hands each one to every subscriber's queue. When
//! a queue is full the topic applies its channel's policy, per (subscriber, topic):
//! * full-depth book: a subscriber whose queue is full stops receiving deltas; when it
//!   has room again it gets one fresh snapshot flagged `conflated` (sequence continues
//!   from the topic's current number) and deltas resume;
//! * top-N book views: same, each message is a whole top-N snapshot anyway;
//! * every other channel: messages are dropped and counted; before the next delivered
//!   message the subscriber gets a `Dropped { count }` notice whose sequence is the last
//!   skipped one, so numbering stays contiguous. A topic that stays quiet sends it on
//!   the hub's next tick once there is room, and before a stopping stream ends.
//!
//! A recovering subscriber's first messages (the `Dropped` notice and the message after
//! it, or the conflated snapshot) are admitted in one step by
//! [`Subscriber::offer_recovery`]: other instruments' feeds fill the same queue at the
//! same time, and a notice whose next message is then refused would leave a gap it does
//! not explain.
//!
//! Notices that must reach every subscriber whatever its queue holds (a `BookReset`, a
//! `FeedGap`) go through the control lane; a pending `Dropped` notice is flushed before
//! them, so the sequence a client sees never jumps unexplained.
//!
//! A topic also keeps its recent messages (module `retention`), and a subscriber that
//! resumes after sequence N reads them from N + 1 at its own pace ([`Pending::Replaying`]):
//! every message is retained before it is delivered, so a replaying subscriber takes the
//! live ones from the same log and joins the live stream without a gap or a repeat.
//! A replay the log no longer holds falls back on the channel's policy: a conflated
//! snapshot for a book, a `Dropped` notice for the rest.

use std::sync::Arc;

use bytes::Bytes;
use raven_model::UnixNanos;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

use crate::channel::{Channel, TopicKey};
use crate::encode::{self, Envelope};
use crate::retention::Retention;
use crate::seam::LiveLog;
use crate::subscriber::{Admit, Subscriber};

/// Why a subscriber cannot resume a topic where it left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeRefused {
    /// The client's numbers are from another epoch (the server restarted).
    EpochChanged,
    /// The topic keeps no messages (a top-N view, or retention is off).
    Unavailable,
    /// The client's number is ahead of the topic's.
    Ahead { current: u64 },
    /// The messages after the client's number are no longer kept: the oldest kept is
    /// `first` (`current + 1` when none is).
    Trimmed { first: u64, current: u64 },
}

impl ResumeRefused {
    /// What the subscriber's ack says of it.
    pub fn answer(self) -> (pb::ack::ResumeResult, String) {
        use pb::ack::ResumeResult;
        match self {
            Self::EpochChanged => (
                ResumeResult::ResumeEpochChanged,
                "the server restarted since: the topic starts afresh".into(),
            ),
            Self::Unavailable => (
                ResumeResult::ResumeUnavailable,
                "this topic keeps no messages to resume from: it starts afresh".into(),
            ),
            Self::Ahead { current } => (
                ResumeResult::ResumeOutOfRange,
                format!("the topic is at sequence {current}: it starts afresh"),
            ),
            Self::Trimmed { first, current } => (
                ResumeResult::ResumeOutOfRange,
                format!("the topic keeps sequences {first} to {current}: it starts afresh"),
            ),
        }
    }
}

/// Where one subscriber stands on one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// In step: deliver the next message.
    None,
    /// Book topics: waiting for the book to (re)sync; the next snapshot is its start.
    AwaitingSnapshot,
    /// Book topics: fell behind; send a conflated snapshot when there is room.
    Conflate,
    /// Other topics: this many messages were skipped since the last delivery.
    Dropped(u64),
    /// Resuming: the next message to send is this sequence, from the topic's log.
    Replaying(u64),
}

pub(crate) struct Entry {
    pub sub: Arc<Subscriber>,
    pub pending: Pending,
}

/// A sequenced stream and who listens to it.
pub(crate) struct Topic {
    pub key: TopicKey,
    pub wire: pb::Topic,
    /// The number of the last message published (0: none yet).
    pub sequence: u64,
    pub entries: Vec<Entry>,
    /// Event topics: the exchange id (trade id, BBO update id) and Raven receive time of
    /// the last event published, which a `FeedGap` reports.
    pub last_id: u64,
    pub last_receive: UnixNanos,
    /// The recent messages, for subscribers that resume (`None`: the topic keeps none).
    pub retention: Option<Retention>,
}

impl Topic {
    pub fn new(key: TopicKey, retention: Option<Retention>) -> Self {
        let wire = key.to_proto();
        Self {
            key,
            wire,
            sequence: 0,
            entries: Vec::new(),
            last_id: 0,
            last_receive: UnixNanos::default(),
            retention,
        }
    }

    /// Whether the message just numbered must be encoded: someone receives it, or the
    /// topic keeps it.
    pub fn wants_body(&self) -> bool {
        !self.entries.is_empty() || self.retention.is_some()
    }

    /// Keeps the message just numbered (`self.sequence`) for resuming subscribers.
    pub fn retain(&mut self, body: &Bytes) {
        if let Some(r) = &mut self.retention {
            r.push(self.sequence, body);
        }
    }

    /// Where a subscriber that last received `after` may resume: `Ok` with the state
    /// that replays what it missed, or why not.
    pub fn resume_from(&self, after: u64) -> Result<Pending, ResumeRefused> {
        // In step: nothing was missed, whatever the topic keeps.
        if after == self.sequence {
            return Ok(Pending::None);
        }
        let retention = self.retention.as_ref().ok_or(ResumeRefused::Unavailable)?;
        if after > self.sequence {
            return Err(ResumeRefused::Ahead {
                current: self.sequence,
            });
        }
        match retention.first() {
            Some(first) if first <= after + 1 => Ok(Pending::Replaying(after + 1)),
            first => Err(ResumeRefused::Trimmed {
                first: first.unwrap_or(self.sequence + 1),
                current: self.sequence,
            }),
        }
    }

    /// The topic's live messages as they are now, for a replay's join (module `seam`).
    pub fn live_log(&self) -> LiveLog {
        match &self.retention {
            None => LiveLog {
                current: self.sequence,
                ..LiveLog::default()
            },
            Some(r) => LiveLog {
                kept: true,
                first: r.first().unwrap_or(self.sequence + 1),
                messages: r.messages(),
                current: self.sequence,
            },
        }
    }

    /// The `Dropped` notice for the last `count` messages of the topic, up to the
    /// current one, which a subscriber starting now will never get.
    pub fn lost_notice(&self, count: u64) -> Bytes {
        dropped_notice(
            &self.wire,
            self.sequence,
            count,
            UnixNanos(0),
            UnixNanos::now(),
        )
    }

    /// Moves every replaying subscriber on as far as its queue takes (the hub's tick
    /// calls it, so a quiet topic's replays finish too).
    pub fn drain_replays(&mut self, receive_time: UnixNanos) {
        let book = self.key.channel == Channel::Book;
        let (wire, sequence, retention) = (&self.wire, self.sequence, self.retention.as_ref());
        for e in &mut self.entries {
            if let Pending::Replaying(next) = e.pending {
                e.pending = replay(retention, wire, sequence, &e.sub, next, book, receive_time);
            }
        }
    }

    pub fn envelope(&self, exchange_time: UnixNanos, receive_time: UnixNanos) -> Envelope<'_> {
        Envelope {
            topic: &self.wire,
            sequence: self.sequence,
            exchange_time,
            receive_time,
        }
    }

    pub fn remove(&mut self, sub_id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.sub.id != sub_id);
        before != self.entries.len()
    }

    /// Delivers a drop-policy message (trades, BBO, funding, liquidations, candles).
    pub fn deliver_droppable(
        &mut self,
        body: &Bytes,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) {
        let (wire, sequence, retention) = (&self.wire, self.sequence, self.retention.as_ref());
        for e in &mut self.entries {
            e.pending = match e.pending {
                Pending::Dropped(n) => {
                    let recovered = e.sub.room_to_recover() && {
                        let last_skipped = sequence.saturating_sub(1);
                        let notice =
                            dropped_notice(wire, last_skipped, n, exchange_time, receive_time);
                        e.sub.offer_recovery(&[&notice, body])
                    };
                    if recovered {
                        Pending::None
                    } else {
                        e.sub.count_dropped(1);
                        Pending::Dropped(n + 1)
                    }
                }
                Pending::Replaying(next) => {
                    replay(retention, wire, sequence, &e.sub, next, false, receive_time)
                }
                _ => match e.sub.offer_data(body) {
                    Admit::Accepted => Pending::None,
                    Admit::Full => {
                        e.sub.count_dropped(1);
                        Pending::Dropped(1)
                    }
                },
            };
        }
    }

    /// Sends the `Dropped` notices owed on a drop-policy topic that has had no message
    /// since (a quiet topic would otherwise announce its loss only with its next
    /// message, maybe hours later): to subscribers with room again, or, when the
    /// stream is about to end (`stopping`), to every one through the control lane.
    /// Numbered as the last skipped message, like any `Dropped`.
    pub fn flush_dropped(&mut self, receive_time: UnixNanos, stopping: bool) {
        let (wire, sequence) = (&self.wire, self.sequence);
        for e in &mut self.entries {
            let Pending::Dropped(n) = e.pending else {
                continue;
            };
            let notice = || dropped_notice(wire, sequence, n, UnixNanos(0), receive_time);
            if stopping {
                e.sub.push_control(&[notice()]);
                e.pending = Pending::None;
            } else if e.sub.room_to_recover() && e.sub.offer_recovery(&[&notice()]) {
                e.pending = Pending::None;
            }
        }
    }

    /// Delivers a notice every subscriber of a drop-policy topic must get (a `FeedGap`),
    /// through the control lane, after the `Dropped` notice a subscriber may still owe.
    pub fn deliver_notice(
        &mut self,
        body: &Bytes,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) {
        let (wire, sequence, retention) = (&self.wire, self.sequence, self.retention.as_ref());
        for e in &mut self.entries {
            e.pending = match e.pending {
                Pending::Dropped(n) => {
                    e.sub.push_control(&[
                        dropped_notice(
                            wire,
                            sequence.saturating_sub(1),
                            n,
                            exchange_time,
                            receive_time,
                        ),
                        body.clone(),
                    ]);
                    Pending::None
                }
                // The notice is in the log: it comes in its place in the replay.
                Pending::Replaying(next) => {
                    replay(retention, wire, sequence, &e.sub, next, false, receive_time)
                }
                _ => {
                    e.sub.push_control(std::slice::from_ref(body));
                    Pending::None
                }
            };
        }
    }

    /// Delivers a book message: `body` to subscribers in step, `snapshot` (when this
    /// message is a snapshot) to those waiting for their start, and a conflated snapshot
    /// made by `fresh` (under this message's envelope) to those that fell behind and
    /// have room again.
    pub fn deliver_book(
        &mut self,
        body: &Bytes,
        snapshot: Option<&Bytes>,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
        fresh: &dyn Fn(&Envelope<'_>) -> Bytes,
    ) {
        let (wire, sequence, retention) = (&self.wire, self.sequence, self.retention.as_ref());
        let env = Envelope {
            topic: wire,
            sequence,
            exchange_time,
            receive_time,
        };
        for e in &mut self.entries {
            e.pending = match e.pending {
                Pending::Replaying(next) => {
                    replay(retention, wire, sequence, &e.sub, next, true, receive_time)
                }
                Pending::AwaitingSnapshot => match snapshot {
                    Some(snap) => admit(&e.sub, snap),
                    None => Pending::AwaitingSnapshot,
                },
                Pending::Conflate => {
                    if e.sub.room_to_recover() && e.sub.offer_recovery(&[&fresh(&env)]) {
                        Pending::None
                    } else {
                        Pending::Conflate
                    }
                }
                Pending::None | Pending::Dropped(_) => {
                    let next = admit(&e.sub, body);
                    if next == Pending::Conflate {
                        e.sub.count_conflation();
                    }
                    next
                }
            };
        }
    }

    /// The book is invalid: every subscriber gets `body` (a `BookReset`) and waits for
    /// the next snapshot.
    pub fn reset(&mut self, body: &Bytes, receive_time: UnixNanos) {
        let (wire, sequence, retention) = (&self.wire, self.sequence, self.retention.as_ref());
        for e in &mut self.entries {
            e.pending = match e.pending {
                // The reset is in the log: it comes in its place in the replay, and the
                // snapshot after it too.
                Pending::Replaying(next) => {
                    replay(retention, wire, sequence, &e.sub, next, true, receive_time)
                }
                _ => {
                    e.sub.push_control(std::slice::from_ref(body));
                    Pending::AwaitingSnapshot
                }
            };
        }
    }
}

/// Sends `sub` the topic's messages from `next` on while its queue takes them, and
/// returns where it then stands. Messages the log let go of are announced: a book
/// subscriber conflates (a fresh snapshot when it has room), any other gets a
/// `Dropped` notice counting them and goes on from the oldest kept.
fn replay(
    retention: Option<&Retention>,
    wire: &pb::Topic,
    sequence: u64,
    sub: &Subscriber,
    mut next: u64,
    book: bool,
    receive_time: UnixNanos,
) -> Pending {
    let first = retention.and_then(Retention::first).unwrap_or(sequence + 1);
    if next < first {
        if book {
            return Pending::Conflate;
        }
        let notice = dropped_notice(wire, first - 1, first - next, UnixNanos(0), receive_time);
        if !(sub.room_to_recover() && sub.offer_recovery(&[&notice])) {
            return Pending::Replaying(next);
        }
        next = first;
    }
    while next <= sequence {
        let Some(body) = retention.and_then(|r| r.get(next)) else {
            break;
        };
        match sub.offer_data(body) {
            Admit::Accepted => next += 1,
            Admit::Full => return Pending::Replaying(next),
        }
    }
    Pending::None
}

/// The `Dropped` notice for `count` skipped messages of `topic`, numbered `last_skipped`.
fn dropped_notice(
    topic: &pb::Topic,
    last_skipped: u64,
    count: u64,
    exchange_time: UnixNanos,
    receive_time: UnixNanos,
) -> Bytes {
    let env = Envelope {
        topic,
        sequence: last_skipped,
        exchange_time,
        receive_time,
    };
    encode::encode(&env, Payload::Dropped(pb::Dropped { count }))
}

/// Offers a book message: in step when taken, conflating when not.
fn admit(sub: &Subscriber, body: &Bytes) -> Pending {
    match sub.offer_data(body) {
        Admit::Accepted => Pending::None,
        Admit::Full => Pending::Conflate,
    }
}
