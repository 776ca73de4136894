//! One instrument's live state and its topics.
//!
//! Everything about an instrument that must change atomically lives behind one mutex:
//! the book, whether it is in sync, each topic's sequence counter and subscriber list,
//! and the candle aggregators. Applying a delta, numbering it and handing it to the
//! subscribers happen in one critical section, so a new subscriber's snapshot is exactly
//! the state before the next sequence number: snapshot at N, then N+1, N+2… with no
//! race between the two.
//!
//! The slow-consumer policy is applied here, per (subscriber, topic):
//! * full-depth book: a subscriber whose queue is full stops receiving deltas; when it
//!   has room again it gets one fresh snapshot flagged `conflated` (sequence continues
//!   from the topic's current number) and deltas resume;
//! * top-N book views: same, each message is a whole top-N snapshot anyway;
//! * every other channel: messages are dropped and counted; before the next delivered
//!   message the subscriber gets a `Dropped { count }` notice whose sequence is the last
//!   skipped one, so numbering stays contiguous.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use raven_model::book::OrderBook;
use raven_model::candle::{Candle, CandleAggregator};
use raven_model::feed::{BookRejected, BookUpdate};
use raven_model::{BookLevels, EventKind, InstrumentId, MarketEvent, UnixNanos};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

use crate::channel::{Channel, TopicKey};
use crate::encode::{self, Envelope};
use crate::subscriber::{Admit, Subscriber};

/// Where one subscriber stands on one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// In step: deliver the next message.
    None,
    /// Book topics: waiting for the book to (re)sync; the next snapshot is its start.
    AwaitingSnapshot,
    /// Book topics: fell behind; send a conflated snapshot when there is room.
    Conflate,
    /// Other topics: this many messages were skipped since the last delivery.
    Dropped(u64),
}

struct Entry {
    sub: Arc<Subscriber>,
    pending: Pending,
}

/// A sequenced stream and who listens to it.
struct Topic {
    key: TopicKey,
    wire: pb::Topic,
    sequence: u64,
    entries: Vec<Entry>,
    /// Top-N views only: the levels last published, to publish only on change.
    last_top: Option<BookLevels>,
}

impl Topic {
    fn new(key: TopicKey) -> Self {
        let wire = key.to_proto();
        Self {
            key,
            wire,
            sequence: 0,
            entries: Vec::new(),
            last_top: None,
        }
    }

    fn envelope(&self, exchange_time: UnixNanos, receive_time: UnixNanos) -> Envelope<'_> {
        Envelope {
            topic: &self.wire,
            sequence: self.sequence,
            exchange_time,
            receive_time,
        }
    }

    fn remove(&mut self, sub_id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.sub.id != sub_id);
        before != self.entries.len()
    }

    /// Delivers a drop-policy message (trades, BBO, funding, liquidations, candles).
    fn deliver_droppable(
        &mut self,
        body: &Bytes,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) {
        let last_skipped = self.sequence.saturating_sub(1);
        for e in &mut self.entries {
            match e.pending {
                Pending::Dropped(n) if e.sub.try_recover() => {
                    let env = Envelope {
                        topic: &self.wire,
                        sequence: last_skipped,
                        exchange_time,
                        receive_time,
                    };
                    e.sub.push_control(encode::encode(
                        &env,
                        Payload::Dropped(pb::Dropped { count: n }),
                    ));
                    // Room was checked above, so this is admitted.
                    e.sub.offer_data(body);
                    e.pending = Pending::None;
                }
                Pending::Dropped(n) => {
                    e.sub.count_dropped(1);
                    e.pending = Pending::Dropped(n + 1);
                }
                _ => {
                    if e.sub.offer_data(body) == Admit::Full {
                        e.sub.count_dropped(1);
                        e.pending = Pending::Dropped(1);
                    }
                }
            }
        }
    }

    /// Delivers a book message; `fresh` builds a conflated snapshot for a subscriber
    /// that fell behind and now has room.
    fn deliver_book(
        &mut self,
        body: &Bytes,
        snapshot_body: Option<&Bytes>,
        fresh: &dyn Fn(&Topic) -> Bytes,
    ) {
        for i in 0..self.entries.len() {
            let pending = self.entries[i].pending;
            let sub = self.entries[i].sub.clone();
            let next = match (pending, snapshot_body) {
                // A broadcast snapshot restarts everyone who is waiting for one.
                (Pending::AwaitingSnapshot | Pending::Conflate, Some(snap)) => {
                    admit(&sub, snap, Pending::Conflate)
                }
                (Pending::AwaitingSnapshot, None) => Pending::AwaitingSnapshot,
                (Pending::Conflate, None) if sub.try_recover() => {
                    sub.offer_data(&fresh(self));
                    Pending::None
                }
                (Pending::Conflate, None) => Pending::Conflate,
                (Pending::None | Pending::Dropped(_), _) => {
                    let next = admit(&sub, body, Pending::Conflate);
                    if next == Pending::Conflate {
                        sub.count_conflation();
                    }
                    next
                }
            };
            self.entries[i].pending = next;
        }
    }
}

fn admit(sub: &Subscriber, body: &Bytes, on_full: Pending) -> Pending {
    match sub.offer_data(body) {
        Admit::Accepted => Pending::None,
        Admit::Full => on_full,
    }
}

/// What the hub reports about a book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookInfo {
    pub instrument: InstrumentId,
    pub synced: bool,
    pub bid_levels: usize,
    pub ask_levels: usize,
    pub last_update_id: u64,
    pub last_message_at: Option<Instant>,
}

pub(crate) struct InstrumentState {
    pub id: InstrumentId,
    book: OrderBook,
    synced: bool,
    /// Full-depth topic (depth 0) first, then top-N views.
    book_topics: Vec<Topic>,
    /// Trades, BBO, funding, liquidations and candles.
    stream_topics: Vec<Topic>,
    candles: Vec<CandleAggregator>,
    last_exchange_time: UnixNanos,
    last_receive_time: UnixNanos,
    last_message_at: Option<Instant>,
    /// Times of the last book update, carried by a new subscriber's first snapshot.
    book_times: (UnixNanos, UnixNanos),
}

impl InstrumentState {
    pub fn new(id: InstrumentId, channels: &[Channel]) -> Self {
        let book_topics = vec![Topic::new(TopicKey {
            instrument: id.clone(),
            channel: Channel::Book,
            depth: 0,
        })];
        let stream_topics = channels
            .iter()
            .filter(|c| **c != Channel::Book)
            .map(|c| {
                Topic::new(TopicKey {
                    instrument: id.clone(),
                    channel: *c,
                    depth: 0,
                })
            })
            .collect();
        let candles = channels
            .iter()
            .filter_map(|c| match c {
                Channel::Candles(i) => Some(CandleAggregator::new(*i)),
                _ => None,
            })
            .collect();
        Self {
            id,
            book: OrderBook::new(),
            synced: false,
            book_topics,
            stream_topics,
            candles,
            last_exchange_time: UnixNanos::default(),
            last_receive_time: UnixNanos::default(),
            last_message_at: None,
            book_times: (UnixNanos::default(), UnixNanos::default()),
        }
    }

    fn touch(&mut self, exchange_time: UnixNanos, receive_time: UnixNanos) {
        if exchange_time > self.last_exchange_time {
            self.last_exchange_time = exchange_time;
            self.last_receive_time = receive_time;
        }
        self.last_message_at = Some(Instant::now());
    }

    fn stream_topic(&mut self, channel: Channel) -> Option<&mut Topic> {
        self.stream_topics
            .iter_mut()
            .find(|t| t.key.channel == channel)
    }

    // ------------------------------------------------------------------ feed side

    /// Publishes a non-book event; returns the candles a trade closed.
    pub fn market_event(&mut self, event: &MarketEvent) -> Vec<Candle> {
        self.touch(event.exchange_time, event.receive_time);
        let channel = match &event.kind {
            EventKind::Trade(_) => Channel::Trades,
            EventKind::Bbo(_) => Channel::Bbo,
            EventKind::MarkPrice(_) => Channel::Funding,
            EventKind::Liquidation(_) => Channel::Liquidations,
        };
        if let Some(topic) = self.stream_topic(channel) {
            topic.sequence += 1;
            if !topic.entries.is_empty() {
                let body = encode::encode(
                    &topic.envelope(event.exchange_time, event.receive_time),
                    encode::event(&event.kind),
                );
                topic.deliver_droppable(&body, event.exchange_time, event.receive_time);
            }
        }
        if let EventKind::Trade(t) = &event.kind {
            let mut closed = Vec::new();
            for agg in &mut self.candles {
                closed.extend(agg.on_trade(t.price, t.qty, event.exchange_time));
            }
            self.publish_candles(&closed, event.receive_time);
            return closed;
        }
        Vec::new()
    }

    /// Advances the candle clock to Raven's estimate of the exchange's time now;
    /// returns the candles it closed.
    pub fn clock(&mut self, wall_now: UnixNanos, grace_ns: u64) -> Vec<Candle> {
        if self.last_exchange_time.as_nanos() == 0 || self.candles.is_empty() {
            return Vec::new();
        }
        // The exchange clock runs at wall speed from the last event we saw: this works
        // live (offset = latency) and in replays of old captures (offset = years).
        let elapsed = wall_now
            .as_nanos()
            .saturating_sub(self.last_receive_time.as_nanos());
        let exchange_now = UnixNanos(self.last_exchange_time.as_nanos() + elapsed);
        let Some(cutoff) = exchange_now.as_nanos().checked_sub(grace_ns) else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        for agg in &mut self.candles {
            closed.extend(agg.on_clock(UnixNanos(cutoff)));
        }
        self.publish_candles(&closed, wall_now);
        closed
    }

    /// What stores sample periodically: the top `depth` levels of an in-sync book with
    /// the times of its last update, and the open candles.
    pub fn sample(
        &self,
        depth: usize,
    ) -> (Option<(BookLevels, UnixNanos, UnixNanos)>, Vec<Candle>) {
        let book = self.synced.then(|| {
            (
                self.book.snapshot(depth),
                self.book_times.0,
                self.book_times.1,
            )
        });
        let open = self
            .candles
            .iter()
            .filter_map(|a| a.current().cloned())
            .collect();
        (book, open)
    }

    fn publish_candles(&mut self, closed: &[Candle], receive_time: UnixNanos) {
        for c in closed {
            if let Some(topic) = self.stream_topic(Channel::Candles(c.interval)) {
                topic.sequence += 1;
                if !topic.entries.is_empty() {
                    let body = encode::encode(
                        &topic.envelope(c.close_time, receive_time),
                        encode::candle(c),
                    );
                    topic.deliver_droppable(&body, c.close_time, receive_time);
                }
            }
        }
    }

    pub fn book_update(
        &mut self,
        update: &BookUpdate,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) -> Result<(), BookRejected> {
        self.touch(exchange_time, receive_time);
        self.book_times = (exchange_time, receive_time);
        match update {
            BookUpdate::Snapshot(levels) => {
                self.book.apply_snapshot(levels);
                if self.book.is_crossed() {
                    return Err(self.unsync("crossed book in snapshot"));
                }
                self.synced = true;
                self.publish_book(None, exchange_time, receive_time);
            }
            BookUpdate::Delta(delta) => {
                if !self.synced {
                    return Err(BookRejected::NotSynced);
                }
                self.book.apply_delta(delta);
                if self.book.is_crossed() {
                    return Err(self.unsync("crossed book after delta"));
                }
                self.publish_book(Some(delta), exchange_time, receive_time);
            }
        }
        Ok(())
    }

    fn unsync(&mut self, reason: &str) -> BookRejected {
        // Counted by the feed that receives the rejection (`raven_book_rejected_total`).
        tracing::warn!(instrument = %self.id, reason, "book rejected; resyncing");
        self.reset(reason);
        BookRejected::Crossed
    }

    /// The book is no longer trustworthy: stop serving it and tell every subscriber.
    pub fn reset(&mut self, reason: &str) {
        self.synced = false;
        let now = UnixNanos::now();
        for topic in &mut self.book_topics {
            topic.sequence += 1;
            topic.last_top = None;
            if topic.entries.is_empty() {
                continue;
            }
            let body = encode::encode(
                &topic.envelope(now, now),
                Payload::BookReset(pb::BookReset {
                    reason: reason.to_owned(),
                }),
            );
            for e in &mut topic.entries {
                e.sub.push_control(body.clone());
                e.pending = Pending::AwaitingSnapshot;
            }
        }
    }

    /// Publishes a snapshot (when `delta` is None) or a delta to the full-depth topic,
    /// and fresh top-N snapshots to views whose levels changed.
    fn publish_book(
        &mut self,
        delta: Option<&BookLevels>,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) {
        let book = &self.book;
        let snapshot_of = |topic: &Topic, depth: u32, conflated: bool| {
            let levels = book.snapshot(depth as usize);
            encode::encode(
                &topic.envelope(exchange_time, receive_time),
                Payload::BookSnapshot(encode::book_snapshot(&levels, conflated)),
            )
        };
        for topic in &mut self.book_topics {
            let depth = topic.key.depth;
            if depth == 0 {
                topic.sequence += 1;
                if topic.entries.is_empty() {
                    continue;
                }
                let fresh = |t: &Topic| snapshot_of(t, 0, true);
                match delta {
                    Some(d) => {
                        let body = encode::encode(
                            &topic.envelope(exchange_time, receive_time),
                            encode::book_delta(d),
                        );
                        topic.deliver_book(&body, None, &fresh);
                    }
                    None => {
                        let body = snapshot_of(topic, 0, false);
                        topic.deliver_book(&body, Some(&body), &fresh);
                    }
                }
            } else {
                let top = book.snapshot(depth as usize);
                let unchanged = topic
                    .last_top
                    .as_ref()
                    .is_some_and(|l| l.bids == top.bids && l.asks == top.asks);
                if unchanged && delta.is_some() {
                    continue;
                }
                topic.sequence += 1;
                let body = encode::encode(
                    &topic.envelope(exchange_time, receive_time),
                    Payload::BookSnapshot(encode::book_snapshot(&top, false)),
                );
                topic.last_top = Some(top);
                let fresh = |t: &Topic| snapshot_of(t, depth, true);
                topic.deliver_book(&body, delta.is_none().then_some(&body), &fresh);
            }
        }
    }

    // ------------------------------------------------------------------ subscriber side

    /// Adds a subscriber to a topic, sending its start: a book snapshot when the book is
    /// in sync (otherwise the snapshot follows the resync).
    pub fn subscribe(&mut self, key: &TopicKey, sub: &Arc<Subscriber>, ack: Bytes) {
        sub.push_control(ack);
        if key.channel == Channel::Book {
            let index = match self
                .book_topics
                .iter()
                .position(|t| t.key.depth == key.depth)
            {
                Some(i) => i,
                None => {
                    let mut topic = Topic::new(key.clone());
                    if self.synced {
                        topic.last_top = Some(self.book.snapshot(key.depth as usize));
                    }
                    self.book_topics.push(topic);
                    self.book_topics.len() - 1
                }
            };
            let synced = self.synced;
            let topic = &mut self.book_topics[index];
            let pending = if synced {
                let levels = self.book.snapshot(key.depth as usize);
                let env = topic.envelope(self.book_times.0, self.book_times.1);
                sub.push_control(encode::encode(
                    &env,
                    Payload::BookSnapshot(encode::book_snapshot(&levels, false)),
                ));
                Pending::None
            } else {
                Pending::AwaitingSnapshot
            };
            topic.entries.push(Entry {
                sub: sub.clone(),
                pending,
            });
        } else if let Some(topic) = self.stream_topic(key.channel) {
            topic.entries.push(Entry {
                sub: sub.clone(),
                pending: Pending::None,
            });
        }
    }

    pub fn unsubscribe(&mut self, key: &TopicKey, sub_id: u64) -> bool {
        if key.channel == Channel::Book {
            let Some(i) = self
                .book_topics
                .iter()
                .position(|t| t.key.depth == key.depth)
            else {
                return false;
            };
            let removed = self.book_topics[i].remove(sub_id);
            // Top-N views exist only while someone watches them.
            if key.depth != 0 && self.book_topics[i].entries.is_empty() {
                self.book_topics.remove(i);
            }
            removed
        } else {
            self.stream_topic(key.channel)
                .is_some_and(|t| t.remove(sub_id))
        }
    }

    pub fn snapshot(&self, depth: usize) -> Option<BookLevels> {
        self.synced.then(|| self.book.snapshot(depth))
    }

    pub fn info(&self) -> BookInfo {
        let (bid_levels, ask_levels) = self.book.len();
        BookInfo {
            instrument: self.id.clone(),
            synced: self.synced,
            bid_levels,
            ask_levels,
            last_update_id: self.book.last_update_id(),
            last_message_at: self.last_message_at,
        }
    }
}
