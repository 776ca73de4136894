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

use std::sync::Arc;

use bytes::Bytes;
use raven_model::UnixNanos;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

use crate::channel::TopicKey;
use crate::encode::{self, Envelope};
use crate::subscriber::{Admit, Subscriber};

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
}

impl Topic {
    pub fn new(key: TopicKey) -> Self {
        let wire = key.to_proto();
        Self {
            key,
            wire,
            sequence: 0,
            entries: Vec::new(),
            last_id: 0,
            last_receive: UnixNanos::default(),
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
        let (wire, sequence) = (&self.wire, self.sequence);
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
        let (wire, sequence) = (&self.wire, self.sequence);
        for e in &mut self.entries {
            match e.pending {
                Pending::Dropped(n) => e.sub.push_control(&[
                    dropped_notice(
                        wire,
                        sequence.saturating_sub(1),
                        n,
                        exchange_time,
                        receive_time,
                    ),
                    body.clone(),
                ]),
                _ => e.sub.push_control(std::slice::from_ref(body)),
            }
            e.pending = Pending::None;
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
        let env = Envelope {
            topic: &self.wire,
            sequence: self.sequence,
            exchange_time,
            receive_time,
        };
        for e in &mut self.entries {
            e.pending = match e.pending {
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
    pub fn reset(&mut self, body: &Bytes) {
        for e in &mut self.entries {
            e.sub.push_control(std::slice::from_ref(body));
            e.pending = Pending::AwaitingSnapshot;
        }
    }
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
