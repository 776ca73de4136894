//! One instrument's live state and its topics.
//!
//! Everything about an instrument that must change atomically lives behind one mutex:
//! the book, whether it is in sync, each topic's sequence counter and subscriber list,
//! the candle aggregators and what is known of the feed's continuity. Applying a delta,
//! numbering it and handing it to the subscribers happen in one critical section, so a
//! new subscriber's snapshot is exactly the state before the next sequence number:
//! snapshot at N, then N+1, N+2… with no race between the two. Top-N views of the book
//! are the exception: they are built off the feed's path (module `views`).
//!
//! Holes in the data are announced, never papered over: a book that lost sync gets a
//! `BookReset` on its topics, and every event topic a `FeedGap` when the venue reports
//! that events may be missing (module docs of [`raven_model::feed`]). Candles that
//! overlap such a hole are flagged incomplete.
//!
//! Exchange time drives the candles, so it is checked before it is trusted: an event
//! stamped further ahead of Raven's receive time than `max_clock_skew` is still
//! published, but counted and kept out of the candles and of the candle clock — one bad
//! timestamp must not close a symbol's candles years early. Between events the candle
//! clock advances by Raven's *monotonic* clock from the last trusted event, so a step of
//! the wall clock (NTP) cannot close a candle early either.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raven_model::book::OrderBook;
use raven_model::candle::{Candle, CandleAggregator};
use raven_model::feed::{BookChecks, BookRejected, BookUpdate, FeedGap};
use raven_model::{BookLevels, EventKind, InstrumentId, MarketEvent, QtyUnit, UnixNanos};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

use crate::channel::{Channel, TopicKey};
use crate::encode::{self, Envelope};
use crate::retention::{Retention, RetentionBudget, RetentionLimits};
use crate::subscriber::{Admit, Subscriber};
use crate::topic::{Entry, Pending, ResumeRefused, Topic};
use crate::views::View;

/// Holes in the exchange's streams announced to subscribers, by venue and kind.
const METRIC_FEED_GAPS: &str = "raven_feed_gaps_total";
const FEED_GAP_KINDS: [&str; 3] = ["interrupted", "resumed", "trade_ids"];

/// What bounds an instrument's trust in exchange time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockRules {
    /// How far ahead of Raven's receive time an exchange time may be.
    pub max_skew: Duration,
    /// How late a trade may arrive and still count in its candle.
    pub candle_grace: Duration,
}

/// How a subscriber asks to start a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Afresh.
    No,
    /// Where it left off, but its numbers are from another epoch: afresh, said so.
    EpochChanged,
    /// After this sequence number.
    After(u64),
}

/// What the hub reports about one instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentInfo {
    pub instrument: InstrumentId,
    /// It carries the book channel (the book fields mean nothing otherwise).
    pub has_book: bool,
    pub synced: bool,
    pub bid_levels: usize,
    pub ask_levels: usize,
    /// How many of the best bid and ask levels are complete (see `OrderBook::known_depth`).
    pub known_levels: (usize, usize),
    pub last_update_id: u64,
    pub last_message_at: Option<Instant>,
    pub interruptions: u64,
    pub trade_id_gaps: u64,
    pub trades_missing: u64,
    /// Trades left out of a candle because its interval had closed (the most of any
    /// interval).
    pub late_trades: u64,
    /// Trades left out of candles: exchange time beyond the skew bound, or a volume that
    /// would overflow.
    pub rejected_trades: u64,
    pub future_events: u64,
}

/// The last event whose exchange time was trusted: where the candle clock stands.
#[derive(Debug, Clone, Copy)]
struct ExchangeClock {
    exchange: UnixNanos,
    /// Raven's monotonic clock when it was received.
    at: Instant,
}

/// An interruption of the feed, from the venue's report until it resumes.
struct Interruption {
    reason: String,
    since: UnixNanos,
}

/// Counts of what the feed lost or the candles refused.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    interruptions: u64,
    trade_id_gaps: u64,
    trades_missing: u64,
    future_events: u64,
    /// Trades refused for their exchange time (the aggregators count the rest).
    future_trades: u64,
}

pub(crate) struct InstrumentState {
    pub id: InstrumentId,
    has_book: bool,
    rules: ClockRules,
    pub(crate) book: OrderBook,
    pub(crate) synced: bool,
    /// Bumped at every reset and snapshot: a view built from an older book is stale.
    pub(crate) book_epoch: u64,
    /// The full-depth book topic (snapshot, then deltas).
    pub(crate) book_topic: Topic,
    /// Top-N views (module `views`), while someone watches them.
    pub(crate) views: Vec<View>,
    /// The book changed since the views were last built.
    pub(crate) views_dirty: bool,
    /// Views made so far: the next one's id.
    pub(crate) views_created: u64,
    /// Trades, BBO, funding, liquidations and candles.
    stream_topics: Vec<Topic>,
    candles: Vec<CandleAggregator>,
    clock: Option<ExchangeClock>,
    last_message_at: Option<Instant>,
    /// Times of the last book update, carried by a new subscriber's first snapshot.
    pub(crate) book_times: (UnixNanos, UnixNanos),
    interruption: Option<Interruption>,
    counters: Counters,
    /// The unit of the instrument's quantities, once its venue's listing loaded; candle
    /// volumes say it.
    qty_unit: Option<QtyUnit>,
}

impl InstrumentState {
    /// `retention`: what each of its sequenced topics keeps for resuming subscribers
    /// (`None`: nothing).
    pub fn new(
        id: InstrumentId,
        channels: &[Channel],
        rules: ClockRules,
        retention: Option<(RetentionLimits, Arc<RetentionBudget>)>,
    ) -> Self {
        let keeps = || {
            retention
                .as_ref()
                .map(|(limits, budget)| Retention::new(*limits, budget.clone()))
        };
        let book_topic = Topic::new(
            TopicKey {
                instrument: id.clone(),
                channel: Channel::Book,
                depth: 0,
            },
            keeps(),
        );
        let stream_topics = channels
            .iter()
            .filter(|c| **c != Channel::Book)
            .map(|c| {
                Topic::new(
                    TopicKey {
                        instrument: id.clone(),
                        channel: *c,
                        depth: 0,
                    },
                    keeps(),
                )
            })
            .collect();
        // The series exist from the start, so an alert on their increase sees the first.
        for kind in FEED_GAP_KINDS {
            metrics::counter!(METRIC_FEED_GAPS, "venue" => id.venue.as_str(), "kind" => kind)
                .absolute(0);
        }
        let candles = channels
            .iter()
            .filter_map(|c| match c {
                Channel::Candles(i) => Some(CandleAggregator::new(*i)),
                _ => None,
            })
            .collect();
        Self {
            qty_unit: None,
            has_book: channels.contains(&Channel::Book),
            id,
            rules,
            book: OrderBook::new(),
            synced: false,
            book_epoch: 0,
            book_topic,
            views: Vec::new(),
            views_dirty: false,
            views_created: 0,
            stream_topics,
            candles,
            clock: None,
            last_message_at: None,
            book_times: (UnixNanos::default(), UnixNanos::default()),
            interruption: None,
            counters: Counters::default(),
        }
    }

    /// Notes an event's arrival; returns whether its exchange time can be trusted (not
    /// further ahead of its receive time than the skew bound), and if so moves the
    /// candle clock to it.
    fn touch(&mut self, exchange_time: UnixNanos, receive_time: UnixNanos) -> bool {
        let now = Instant::now();
        self.last_message_at = Some(now);
        let bound = receive_time
            .as_nanos()
            .saturating_add(u64::try_from(self.rules.max_skew.as_nanos()).unwrap_or(u64::MAX));
        if exchange_time.as_nanos() > bound {
            self.counters.future_events += 1;
            metrics::counter!("raven_feed_future_events_total", "venue" => self.id.venue.as_str())
                .increment(1);
            return false;
        }
        if self.clock.is_none_or(|c| exchange_time > c.exchange) {
            self.clock = Some(ExchangeClock {
                exchange: exchange_time,
                at: now,
            });
        }
        true
    }

    /// An event topic's live messages now (module `seam`); `None` for book topics.
    pub fn live_log(&self, channel: Channel) -> Option<crate::seam::LiveLog> {
        self.stream_topics
            .iter()
            .find(|t| t.key.channel == channel)
            .map(Topic::live_log)
    }

    fn stream_topic(&mut self, channel: Channel) -> Option<&mut Topic> {
        self.stream_topics
            .iter_mut()
            .find(|t| t.key.channel == channel)
    }

    // ------------------------------------------------------------------ feed side

    /// Publishes a non-book event; returns the candles a trade closed.
    pub fn market_event(&mut self, event: &MarketEvent) -> Vec<Candle> {
        let trusted = self.touch(event.exchange_time, event.receive_time);
        let (channel, id) = match &event.kind {
            EventKind::Trade(t) => (Channel::Trades, t.trade_id.number().unwrap_or_default()),
            EventKind::Bbo(b) => (Channel::Bbo, b.update_id),
            EventKind::MarkPrice(_) => (Channel::Funding, 0),
            EventKind::Liquidation(_) => (Channel::Liquidations, 0),
        };
        if let Some(topic) = self.stream_topic(channel) {
            topic.sequence += 1;
            topic.last_id = id;
            topic.last_receive = event.receive_time;
            if topic.wants_body() {
                let body = encode::with_payload(
                    &topic.envelope(event.exchange_time, event.receive_time),
                    &encode::event_payload(&event.kind),
                );
                topic.retain(&body);
                topic.deliver_droppable(&body, event.exchange_time, event.receive_time);
            }
        }
        let EventKind::Trade(t) = &event.kind else {
            return Vec::new();
        };
        if !trusted {
            self.counters.future_trades += 1;
            metrics::counter!("raven_candle_rejected_trades_total", "venue" => self.id.venue.as_str(), "reason" => "future_time")
                .increment(1);
            return Vec::new();
        }
        let mut closed = Vec::new();
        let (late, rejected) = self.candle_refusals();
        for agg in &mut self.candles {
            closed.extend(agg.on_trade(t.price, t.qty, event.exchange_time));
        }
        let (late_after, rejected_after) = self.candle_refusals();
        let venue = self.id.venue.as_str();
        if late_after > late {
            metrics::counter!("raven_candle_late_trades_total", "venue" => venue)
                .increment(late_after - late);
        }
        if rejected_after > rejected {
            metrics::counter!("raven_candle_rejected_trades_total", "venue" => venue, "reason" => "overflow")
                .increment(rejected_after - rejected);
        }
        self.publish_candles(&closed, event.receive_time);
        closed
    }

    /// Trades left out by the aggregators: late ones and refused ones, summed over the
    /// intervals (for counting what one trade adds).
    fn candle_refusals(&self) -> (u64, u64) {
        self.candles.iter().fold((0, 0), |(l, r), a| {
            (l + a.late_trades(), r + a.rejected_trades())
        })
    }

    /// What the venue knows of missing events (see [`FeedGap`]): announced on every
    /// event topic it concerns, and the candles it touches are flagged incomplete.
    pub fn feed_gap(&mut self, gap: &FeedGap, receive_time: UnixNanos) {
        match gap {
            FeedGap::Interrupted { reason, since } => {
                if self.interruption.is_some() {
                    return;
                }
                self.counters.interruptions += 1;
                self.announce(|_| true, reason, *since, UnixNanos(0), 0, receive_time);
                self.candles
                    .iter_mut()
                    .for_each(CandleAggregator::interrupt);
                self.interruption = Some(Interruption {
                    reason: reason.clone(),
                    since: *since,
                });
            }
            FeedGap::Resumed { at } => {
                let Some(i) = self.interruption.take() else {
                    return;
                };
                self.announce(|_| true, &i.reason, i.since, *at, 0, receive_time);
                self.candles.iter_mut().for_each(CandleAggregator::resume);
            }
            FeedGap::TradeIds { last, next } => {
                self.counters.trade_id_gaps += 1;
                self.counters.trades_missing += next.saturating_sub(*last).saturating_sub(1);
                let since = self
                    .stream_topics
                    .iter()
                    .find(|t| t.key.channel == Channel::Trades)
                    .map_or(UnixNanos(0), |t| t.last_receive);
                let reason = format!(
                    "trade ids skipped: {} to {}",
                    last + 1,
                    next.saturating_sub(1)
                );
                let trades = |c: Channel| matches!(c, Channel::Trades | Channel::Candles(_));
                // The skipped trades' topics; for them `last_id` is the last trade's.
                self.announce(trades, &reason, since, receive_time, *next, receive_time);
                self.candles.iter_mut().for_each(CandleAggregator::gap);
            }
        }
        let kind = match gap {
            FeedGap::Interrupted { .. } => "interrupted",
            FeedGap::Resumed { .. } => "resumed",
            FeedGap::TradeIds { .. } => "trade_ids",
        };
        metrics::counter!(METRIC_FEED_GAPS, "venue" => self.id.venue.as_str(), "kind" => kind)
            .increment(1);
    }

    /// Publishes a `FeedGap` on every event topic whose channel `concerns`.
    fn announce(
        &mut self,
        concerns: impl Fn(Channel) -> bool,
        reason: &str,
        start: UnixNanos,
        end: UnixNanos,
        next_id: u64,
        receive_time: UnixNanos,
    ) {
        let last_trade = self
            .stream_topics
            .iter()
            .find(|t| t.key.channel == Channel::Trades)
            .map_or(0, |t| t.last_id);
        for topic in self
            .stream_topics
            .iter_mut()
            .filter(|t| concerns(t.key.channel))
        {
            topic.sequence += 1;
            if !topic.wants_body() {
                continue;
            }
            let last_id = match topic.key.channel {
                Channel::Candles(_) => last_trade,
                _ => topic.last_id,
            };
            let body = encode::encode(
                &topic.envelope(UnixNanos(0), receive_time),
                encode::feed_gap(reason, start, end, last_id, next_id),
            );
            topic.retain(&body);
            topic.deliver_notice(&body, UnixNanos(0), receive_time);
        }
    }

    /// Moves its resuming subscribers on (see [`Topic::drain_replays`]).
    pub fn drain_replays(&mut self, receive_time: UnixNanos) {
        self.book_topic.drain_replays(receive_time);
        for topic in &mut self.stream_topics {
            topic.drain_replays(receive_time);
        }
    }

    /// Sends the `Dropped` notices its event topics owe (see [`Topic::flush_dropped`]).
    pub fn flush_dropped(&mut self, receive_time: UnixNanos, stopping: bool) {
        for topic in &mut self.stream_topics {
            topic.flush_dropped(receive_time, stopping);
        }
    }

    /// Advances the candle clock to Raven's estimate of the exchange's time now: the
    /// last trusted exchange time plus the monotonic time since it arrived. Returns the
    /// candles it closed; `wall_now` stamps them.
    pub fn clock(&mut self, now: Instant, wall_now: UnixNanos) -> Vec<Candle> {
        let Some(clock) = self.clock else {
            return Vec::new();
        };
        if self.candles.is_empty() {
            return Vec::new();
        }
        let elapsed =
            u64::try_from(now.saturating_duration_since(clock.at).as_nanos()).unwrap_or(u64::MAX);
        let grace = u64::try_from(self.rules.candle_grace.as_nanos()).unwrap_or(u64::MAX);
        let Some(cutoff) = clock
            .exchange
            .as_nanos()
            .checked_add(elapsed)
            .and_then(|n| n.checked_sub(grace))
        else {
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

    pub fn set_qty_unit(&mut self, unit: QtyUnit) {
        self.qty_unit = Some(unit);
    }

    fn publish_candles(&mut self, closed: &[Candle], receive_time: UnixNanos) {
        let unit = self.qty_unit;
        for c in closed {
            if let Some(topic) = self.stream_topic(Channel::Candles(c.interval)) {
                topic.sequence += 1;
                if topic.wants_body() {
                    let body = encode::encode(
                        &topic.envelope(c.close_time, receive_time),
                        encode::candle(c, unit),
                    );
                    topic.retain(&body);
                    topic.deliver_droppable(&body, c.close_time, receive_time);
                }
            }
        }
    }

    /// Applies a book update under the venue's checks ([`OrderBook::apply_checked`]),
    /// and publishes it as applied (a top-N venue's delta with the removals of the
    /// levels it pushed beyond N). A refused update (crossed, checksum mismatch) resets
    /// the book. `Ok(true)` when top-N views want rebuilding.
    pub fn book_update(
        &mut self,
        update: &mut BookUpdate,
        checks: &BookChecks,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) -> Result<bool, BookRejected> {
        self.touch(exchange_time, receive_time);
        self.book_times = (exchange_time, receive_time);
        let snapshot = matches!(update, BookUpdate::Snapshot { .. });
        if !snapshot && !self.synced {
            return Err(BookRejected::NotSynced);
        }
        let applied = self.book.apply_checked(update, checks);
        if snapshot {
            self.book_epoch += 1;
        }
        if let Err(rejected) = applied {
            let reason = match (rejected, snapshot) {
                (BookRejected::Checksum { .. }, _) => "checksum mismatch",
                (BookRejected::PriceRange { .. }, _) => "price out of the book's range",
                (_, true) => "crossed book in snapshot",
                (_, false) => "crossed book after delta",
            };
            // Counted by the feed that receives the rejection.
            tracing::warn!(instrument = %self.id, reason, "book rejected; resyncing");
            self.reset(reason);
            return Err(rejected);
        }
        match update {
            BookUpdate::Snapshot { .. } => {
                self.synced = true;
                self.publish_book(None, exchange_time, receive_time);
            }
            BookUpdate::Delta(delta) => {
                self.publish_book(Some(delta), exchange_time, receive_time);
            }
        }
        self.views_dirty |= !self.views.is_empty();
        Ok(self.views_dirty)
    }

    /// The book is no longer trustworthy: stop serving it and tell every subscriber.
    pub fn reset(&mut self, reason: &str) {
        self.synced = false;
        self.book_epoch += 1;
        let now = UnixNanos::now();
        let reset = |topic: &mut Topic| {
            topic.sequence += 1;
            if topic.wants_body() {
                let body = encode::encode(
                    &topic.envelope(now, now),
                    Payload::BookReset(pb::BookReset {
                        reason: reason.to_owned(),
                    }),
                );
                topic.retain(&body);
                topic.reset(&body, now);
            }
        };
        reset(&mut self.book_topic);
        for view in &mut self.views {
            view.reset();
            reset(&mut view.topic);
        }
    }

    /// Publishes a snapshot (when `delta` is None) or a delta to the full-depth topic.
    /// Views are built later, off this path.
    fn publish_book(
        &mut self,
        delta: Option<&BookLevels>,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) {
        let topic = &mut self.book_topic;
        topic.sequence += 1;
        if !topic.wants_body() {
            return;
        }
        let book = &self.book;
        // A conflated snapshot is made at most once per message, however many
        // subscribers recover on it.
        let conflated = OnceCell::new();
        let fresh = |env: &Envelope<'_>| {
            conflated
                .get_or_init(|| snapshot_message(book, env, true))
                .clone()
        };
        let env = topic.envelope(exchange_time, receive_time);
        let (body, is_snapshot) = match delta {
            Some(d) => (
                encode::with_payload(&env, &encode::book_delta_payload(d)),
                false,
            ),
            None => (snapshot_message(book, &env, false), true),
        };
        topic.retain(&body);
        let snapshot = is_snapshot.then_some(&body);
        topic.deliver_book(&body, snapshot, exchange_time, receive_time, &fresh);
    }

    // ------------------------------------------------------------------ subscriber side

    /// Adds a subscriber to a topic, sending its start after the ack `ack` makes of
    /// what became of the resume: a book snapshot when the book is in sync (otherwise
    /// the snapshot follows the resync). The snapshot is data like any other: a queue
    /// without room for it gets it, conflated, once it has.
    ///
    /// A subscriber resuming after sequence N (`resume`) instead gets the topic's
    /// messages from N + 1 on, then the live ones, when the topic still keeps them. When
    /// not, it starts as above; on an event topic, after a `Dropped` notice counting
    /// what it lost.
    pub fn subscribe(
        &mut self,
        key: &TopicKey,
        sub: &Arc<Subscriber>,
        resume: Resume,
        ack: impl FnOnce(pb::ack::ResumeResult, String) -> Bytes,
    ) {
        let topic = match (key.channel, key.depth) {
            (Channel::Book, 0) => Some(&mut self.book_topic),
            (Channel::Book, _) => None,
            (channel, _) => self.stream_topic(channel),
        };
        let asked = match resume {
            Resume::No => None,
            Resume::EpochChanged => Some(Err(ResumeRefused::EpochChanged)),
            Resume::After(after) => Some(
                topic
                    .as_ref()
                    .map_or(Err(ResumeRefused::Unavailable), |t| t.resume_from(after)),
            ),
        };
        let (result, reason) = match asked {
            None => (pb::ack::ResumeResult::ResumeNotAsked, String::new()),
            Some(Ok(_)) => (pb::ack::ResumeResult::ResumeReplayed, String::new()),
            Some(Err(refused)) => refused.answer(),
        };
        sub.push_control(&[ack(result, reason)]);
        match (asked, topic, resume) {
            (Some(Ok(pending)), Some(topic), _) => {
                topic.entries.push(Entry {
                    sub: sub.clone(),
                    pending,
                });
                topic.drain_replays(UnixNanos::now());
                return;
            }
            // On an event topic, what was lost, numbered as the last of it, before the
            // live stream.
            (
                Some(Err(ResumeRefused::Trimmed { current, .. })),
                Some(topic),
                Resume::After(after),
            ) if key.channel != Channel::Book => {
                sub.push_control(&[topic.lost_notice(current - after)]);
            }
            _ => {}
        }
        if key.channel != Channel::Book {
            if let Some(topic) = self.stream_topic(key.channel) {
                topic.entries.push(Entry {
                    sub: sub.clone(),
                    pending: Pending::None,
                });
            }
            return;
        }
        if key.depth > 0 {
            return self.subscribe_view(key, sub);
        }
        let pending = if self.synced {
            let (et, rt) = self.book_times;
            let env = self.book_topic.envelope(et, rt);
            let snap = snapshot_message(&self.book, &env, false);
            match sub.offer_data(&snap) {
                Admit::Accepted => Pending::None,
                Admit::Full => Pending::Conflate,
            }
        } else {
            Pending::AwaitingSnapshot
        };
        self.book_topic.entries.push(Entry {
            sub: sub.clone(),
            pending,
        });
    }

    pub fn unsubscribe(&mut self, key: &TopicKey, sub_id: u64) -> bool {
        match (key.channel, key.depth) {
            (Channel::Book, 0) => self.book_topic.remove(sub_id),
            (Channel::Book, depth) => self.unsubscribe_view(depth, sub_id),
            (channel, _) => self.stream_topic(channel).is_some_and(|t| t.remove(sub_id)),
        }
    }

    /// The best `depth` levels (0: all) and how many of them are complete, while in sync.
    pub fn snapshot(&self, depth: usize) -> Option<(BookLevels, (usize, usize))> {
        self.synced
            .then(|| (self.book.snapshot(depth), self.book.known_depth()))
    }

    pub fn info(&self) -> InstrumentInfo {
        let (bid_levels, ask_levels) = self.book.len();
        let late_trades = self.candles.iter().map(CandleAggregator::late_trades).max();
        let overflows = self
            .candles
            .iter()
            .map(CandleAggregator::rejected_trades)
            .max();
        InstrumentInfo {
            instrument: self.id.clone(),
            has_book: self.has_book,
            synced: self.synced,
            bid_levels,
            ask_levels,
            known_levels: self.book.known_depth(),
            last_update_id: self.book.last_update_id(),
            last_message_at: self.last_message_at,
            interruptions: self.counters.interruptions,
            trade_id_gaps: self.counters.trade_id_gaps,
            trades_missing: self.counters.trades_missing,
            late_trades: late_trades.unwrap_or(0),
            rejected_trades: self.counters.future_trades + overflows.unwrap_or(0),
            future_events: self.counters.future_events,
        }
    }
}

/// The full-depth snapshot message of `book` under `env`.
fn snapshot_message(book: &OrderBook, env: &Envelope<'_>, conflated: bool) -> Bytes {
    let levels = book.snapshot(0);
    encode::with_payload(
        env,
        &encode::book_snapshot_payload(&levels, conflated, book.known_depth()),
    )
}
