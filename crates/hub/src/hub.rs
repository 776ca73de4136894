//! The hub: Raven's live state and the fan-out from feeds to subscribers.
//!
//! Venue adapters call the [`FeedSink`] methods from their own tasks; each call locks
//! just the one instrument it concerns, applies the change, numbers it, encodes it once
//! and offers the bytes to that topic's subscribers without waiting for any of them.
//! Top-N book views are the one thing a feed call does not build: it marks them dirty,
//! and the hub's view task ([`Hub::run_views`]) builds them off the feed's path.
//! gRPC streams come in through [`Session`], which turns client requests into
//! subscriptions and per-topic acknowledgements.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use raven_model::book::KnownDepth;
use raven_model::candle::Candle;
use raven_model::feed::{BookChecks, BookRejected, BookUpdate, FeedGap, FeedSink};
use raven_model::{
    BookLevels, InstrumentId, InstrumentInfo as Listing, MarketEvent, Symbol, UnixNanos, Venue,
};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use tokio::sync::Notify;

use crate::channel::{Channel, TopicKey, TopicRequest};
use crate::encode::{self, Envelope};
use crate::grant::Grant;
use crate::instrument::{ClockRules, InstrumentInfo, InstrumentState, Resume};
use crate::retention::{RetentionBudget, RetentionLimits};
use crate::subscriber::{QueueLimits, Subscriber, SubscriberInfo};
use crate::tap::{offer_all, Record, Tap};

/// The longest batch delay a stream may ask for: beyond it, fewer writes save nothing
/// more worth a client's data being older.
pub const MAX_BATCH_DELAY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Messages a subscriber may have queued before its topics conflate or drop.
    pub queue_capacity: usize,
    /// Bytes a subscriber may have queued before its topics conflate or drop.
    pub queue_max_bytes: usize,
    /// How long a subscriber may stay behind, or not read, before it is disconnected.
    pub slow_consumer_limit: Duration,
    /// Topics one stream may hold (and one request may carry).
    pub max_topics_per_stream: usize,
    /// How late a trade may arrive and still count in its candle.
    pub candle_grace: Duration,
    /// How far ahead of Raven's receive time an exchange time may be before it is
    /// distrusted (kept out of candles and the candle clock).
    pub max_clock_skew: Duration,
    /// An instrument's top-N views are built at most this often.
    pub book_view_interval: Duration,
    /// How often taps get each book's top levels and the open candles.
    pub tap_interval: Duration,
    /// Levels per side in the book samples taps get.
    pub tap_book_depth: usize,
    /// How long each topic keeps its messages for subscribers that resume (zero: no
    /// topic keeps any, and every resume starts afresh).
    pub retention: Duration,
    /// Bytes one topic keeps at most, and all topics together.
    pub retention_bytes_per_topic: usize,
    pub retention_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 8192,
            queue_max_bytes: 64 << 20,
            slow_consumer_limit: Duration::from_secs(5),
            max_topics_per_stream: 1024,
            candle_grace: Duration::from_secs(2),
            max_clock_skew: Duration::from_secs(60),
            book_view_interval: Duration::from_millis(50),
            tap_interval: Duration::from_secs(1),
            tap_book_depth: 20,
            retention: Duration::from_secs(60),
            retention_bytes_per_topic: 8 << 20,
            retention_bytes: 512 << 20,
        }
    }
}

/// An instrument the hub serves and the channels it carries.
#[derive(Debug, Clone)]
pub struct InstrumentSpec {
    pub id: InstrumentId,
    pub channels: Vec<Channel>,
}

/// A served instrument with what its venue lists about it (`None` until the venue's
/// listing loaded, or when the venue does not list it).
#[derive(Debug, Clone)]
pub struct ListedInstrument {
    pub id: InstrumentId,
    pub channels: Vec<Channel>,
    pub listing: Option<Arc<Listing>>,
}

/// One configured instrument: what it carries (fixed, read without locking) and its
/// live state.
struct Instrument {
    channels: Vec<Channel>,
    /// What the venue lists about it, once its listing loaded.
    listing: RwLock<Option<Arc<Listing>>>,
    state: Mutex<InstrumentState>,
    /// Its views are dirty and the view task was told.
    views_pending: AtomicBool,
    /// When the view task last built its views (ns since the hub's `started`).
    views_built: AtomicU64,
}

pub struct Hub {
    config: HubConfig,
    /// This run's epoch: topics' sequence numbers mean something only within it.
    epoch: u64,
    /// The bytes all topics' retained messages hold.
    retention: Arc<RetentionBudget>,
    /// Fixed at start from the configuration; ordered for listings.
    instruments: BTreeMap<InstrumentId, Instrument>,
    /// Served instruments by venue and upper-case normalized name (`BTC-USDT-PERP`).
    names: RwLock<HashMap<(Venue, String), InstrumentId>>,
    subscribers: Mutex<HashMap<u64, Weak<Subscriber>>>,
    next_subscriber: AtomicU64,
    /// Stores fed from the hub; fixed at start.
    taps: Vec<Tap>,
    last_sample: Mutex<Option<Instant>>,
    /// Wakes the view task.
    views_wakeup: Notify,
    started: Instant,
    /// [`PUBLISH_LATENCY`], resolved once: it is recorded for every frame.
    publish_latency: metrics::Histogram,
}

/// Seconds from a frame's receive time (read off the socket) to its messages being in
/// every subscriber's queue: parse, sequence checks, book apply, encode and fan-out.
/// The first stage of the time inside Raven; the rest (`send_time − receive_time`
/// minus this) is waiting for the stream to be polled by the transport.
pub const PUBLISH_LATENCY: &str = "raven_publish_latency_seconds";

/// The `result` label values of `raven_resumes_total`.
pub const RESUME_RESULTS: [&str; 4] = ["replayed", "epoch_changed", "out_of_range", "unavailable"];

/// A resume's outcome as counted (`None`: no resume was asked).
fn resume_result_label(result: pb::ack::ResumeResult) -> Option<&'static str> {
    use pb::ack::ResumeResult::*;
    match result {
        ResumeNotAsked => None,
        ResumeReplayed => Some(RESUME_RESULTS[0]),
        ResumeEpochChanged => Some(RESUME_RESULTS[1]),
        ResumeOutOfRange => Some(RESUME_RESULTS[2]),
        ResumeUnavailable => Some(RESUME_RESULTS[3]),
    }
}

/// The ack of one topic of a request (acks belong to no sequence: theirs is 0).
fn ack_message(
    topic: &pb::Topic,
    result: pb::ack::Result,
    reason: String,
    epoch: u64,
    resume: pb::ack::ResumeResult,
) -> Bytes {
    let env = Envelope {
        topic,
        sequence: 0,
        exchange_time: UnixNanos(0),
        receive_time: UnixNanos(0),
    };
    let ack = pb::Ack {
        result: result as i32,
        reason,
        epoch,
        resume: resume as i32,
    };
    encode::encode(&env, Payload::Ack(ack))
}

/// A new epoch: the start time in nanoseconds since the Unix epoch, which a restarted
/// server never repeats (and never 0, which a client's "no epoch" is).
fn epoch_now() -> u64 {
    UnixNanos::now().as_nanos().max(1)
}

/// Nanoseconds from `start` to `t` (0 before it).
fn nanos_since(start: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

impl Hub {
    /// A hub serving `instruments` and feeding `taps` (none when no store is configured).
    pub fn new(config: HubConfig, instruments: Vec<InstrumentSpec>, taps: Vec<Tap>) -> Arc<Hub> {
        let rules = ClockRules {
            max_skew: config.max_clock_skew,
            candle_grace: config.candle_grace,
        };
        let budget = RetentionBudget::new(config.retention_bytes);
        let retention = (!config.retention.is_zero() && config.retention_bytes_per_topic > 0)
            .then_some(RetentionLimits {
                max_age: config.retention,
                max_bytes: config.retention_bytes_per_topic,
            });
        let instruments = instruments
            .into_iter()
            .map(|spec| {
                let keeps = retention.map(|limits| (limits, budget.clone()));
                let state = Mutex::new(InstrumentState::new(
                    spec.id.clone(),
                    &spec.channels,
                    rules,
                    keeps,
                ));
                (
                    spec.id,
                    Instrument {
                        channels: spec.channels,
                        listing: RwLock::new(None),
                        state,
                        views_pending: AtomicBool::new(false),
                        views_built: AtomicU64::new(0),
                    },
                )
            })
            .collect();
        Arc::new(Hub {
            config,
            epoch: epoch_now(),
            retention: budget,
            instruments,
            names: RwLock::new(HashMap::new()),
            subscribers: Mutex::new(HashMap::new()),
            next_subscriber: AtomicU64::new(1),
            taps,
            last_sample: Mutex::new(None),
            views_wakeup: Notify::new(),
            started: Instant::now(),
            publish_latency: metrics::histogram!(PUBLISH_LATENCY),
        })
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// This run's epoch (see [`pb::Ack::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes retained for resuming subscribers, over all topics.
    pub fn retained_bytes(&self) -> usize {
        self.retention.used()
    }

    /// Instruments with their channels, in venue/symbol order.
    pub fn instruments(&self) -> Vec<InstrumentSpec> {
        self.instruments
            .iter()
            .map(|(id, i)| InstrumentSpec {
                id: id.clone(),
                channels: i.channels.clone(),
            })
            .collect()
    }

    /// Served instruments with their listings, in venue/symbol order.
    pub fn listed_instruments(&self) -> Vec<ListedInstrument> {
        self.instruments
            .iter()
            .map(|(id, i)| ListedInstrument {
                id: id.clone(),
                channels: i.channels.clone(),
                listing: i.listing.read().clone(),
            })
            .collect()
    }

    /// The served instrument `name` names on `venue`: its exchange symbol (any case) or
    /// its normalized name (`BTC-USDT-PERP`).
    pub fn instrument_id(&self, venue: Venue, name: &str) -> Option<InstrumentId> {
        let id = InstrumentId::new(venue, name);
        if self.instruments.contains_key(&id) {
            return Some(id);
        }
        self.names
            .read()
            .get(&(venue, name.to_ascii_uppercase()))
            .cloned()
    }

    /// The venue's listing of a served instrument, once loaded.
    pub fn listing(&self, id: &InstrumentId) -> Option<Arc<Listing>> {
        self.instruments.get(id)?.listing.read().clone()
    }

    /// A book's best `depth` levels (0 = all) and how many of each side's best levels
    /// are complete, or `None` while it is out of sync.
    pub fn book(
        &self,
        id: &InstrumentId,
        depth: usize,
    ) -> Result<Option<(BookLevels, KnownDepth)>, UnknownInstrument> {
        let state = self.instruments.get(id).ok_or(UnknownInstrument)?;
        Ok(state.state.lock().snapshot(depth))
    }

    pub fn instrument_infos(&self) -> Vec<InstrumentInfo> {
        self.instruments
            .values()
            .map(|i| i.state.lock().info())
            .collect()
    }

    fn live_subscribers(&self) -> Vec<Arc<Subscriber>> {
        self.subscribers
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub fn subscriber_infos(&self) -> Vec<SubscriberInfo> {
        let mut infos: Vec<_> = self.live_subscribers().iter().map(|s| s.info()).collect();
        infos.sort_by_key(|i| i.id);
        infos
    }

    /// The server is stopping: every subscriber stream ends, with `reason`, once what
    /// is queued for it has been sent.
    pub fn stop_subscribers(&self, reason: &str) {
        // What a stream lost is said before it ends.
        let now = UnixNanos::now();
        for instrument in self.instruments.values() {
            instrument.state.lock().flush_dropped(now, true);
        }
        for sub in self.live_subscribers() {
            sub.stop(reason);
        }
    }

    /// Tells the view task that `instrument`'s views are dirty (once until it builds).
    fn schedule_views(&self, instrument: &Instrument) {
        if !instrument.views_pending.swap(true, Ordering::AcqRel) {
            self.views_wakeup.notify_one();
        }
    }

    /// One pass of the view task: builds the views of every instrument that has dirty
    /// ones and has not been built within `book_view_interval` (module `views`).
    /// Returns when the next of those left for later is due, if any.
    pub fn build_views(&self, now: Instant) -> Option<Instant> {
        let interval = self.config.book_view_interval;
        let mut next_due: Option<Instant> = None;
        for instrument in self.instruments.values() {
            if !instrument.views_pending.load(Ordering::Acquire) {
                continue;
            }
            let built = instrument.views_built.load(Ordering::Relaxed);
            let due = self.started + Duration::from_nanos(built) + interval;
            if built != 0 && due > now {
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
                continue;
            }
            instrument.views_pending.store(false, Ordering::Release);
            instrument
                .views_built
                .store(nanos_since(self.started, now).max(1), Ordering::Relaxed);
            let plan = instrument.state.lock().plan_views();
            if plan.is_empty() {
                continue;
            }
            let (epoch, times, built) = plan.encode();
            instrument.state.lock().publish_views(epoch, times, built);
        }
        next_due
    }

    /// The view task: builds views as they become dirty, each instrument at most once
    /// per `book_view_interval`. Runs until aborted.
    pub async fn run_views(self: Arc<Self>) {
        loop {
            match self.build_views(Instant::now()) {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => self.views_wakeup.notified().await,
            }
        }
    }

    /// The stores' taps, for their drop counts.
    pub fn taps(&self) -> &[Tap] {
        &self.taps
    }

    /// Closes candles whose interval has ended, sends the `Dropped` notices quiet topics
    /// owe, ends subscribers that stayed behind or stopped reading (call it a few times
    /// a second), and, every `tap_interval`, gives the taps each book's top levels and
    /// open candles.
    pub fn tick(&self) {
        self.tick_at(Instant::now(), UnixNanos::now());
    }

    /// [`Hub::tick`] at an explicit time: `now` (monotonic) drives the candle clock,
    /// `wall` only stamps what it closes.
    pub fn tick_at(&self, now: Instant, wall: UnixNanos) {
        self.retention
            .advance(now.saturating_duration_since(self.started));
        for (id, instrument) in &self.instruments {
            let closed = {
                let mut state = instrument.state.lock();
                state.flush_dropped(wall, false);
                state.drain_replays(wall);
                state.clock(now, wall)
            };
            self.tap_candles(id, closed, true);
        }
        for sub in self.live_subscribers() {
            sub.sweep();
        }
        metrics::gauge!("raven_retention_bytes").set(self.retained_bytes() as f64);
        if self.taps.is_empty() {
            return;
        }
        {
            let mut last = self.last_sample.lock();
            if last.is_some_and(|t| t.elapsed() < self.config.tap_interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        for (id, instrument) in &self.instruments {
            let (book, open) = instrument.state.lock().sample(self.config.tap_book_depth);
            if let Some((levels, exchange_time, receive_time)) = book {
                offer_all(
                    &self.taps,
                    Record::Book {
                        instrument: id.clone(),
                        levels,
                        exchange_time,
                        receive_time,
                    },
                );
            }
            self.tap_candles(id, open, false);
        }
    }

    fn tap_candles(&self, id: &InstrumentId, candles: Vec<Candle>, closed: bool) {
        for candle in candles {
            offer_all(
                &self.taps,
                Record::Candle {
                    instrument: id.clone(),
                    candle,
                    closed,
                },
            );
        }
    }

    /// An event topic's live messages now, for a replay's join (module `seam`).
    pub(crate) fn live_log(&self, key: &TopicKey) -> Option<crate::seam::LiveLog> {
        self.instruments
            .get(&key.instrument)?
            .state
            .lock()
            .live_log(key.channel)
    }

    /// Adds `sub` to `key` after sequence `after`, the resume path's way (see
    /// `InstrumentState::subscribe`): `first` is the message that goes before the
    /// topic's next ones, made from the resume's outcome.
    pub(crate) fn attach_after(
        &self,
        key: &TopicKey,
        sub: &Arc<Subscriber>,
        after: u64,
        first: impl FnOnce(pb::ack::ResumeResult, String) -> Bytes,
    ) {
        if let Some(state) = self.instruments.get(&key.instrument) {
            state
                .state
                .lock()
                .subscribe(key, sub, Resume::After(after), first);
        }
    }

    /// Opens a subscriber stream for a client at `peer` with `grant`'s entitlements.
    pub fn session(self: &Arc<Self>, peer: String, grant: Arc<Grant>) -> Session {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscriber::new(
            id,
            peer,
            grant.principal.clone(),
            QueueLimits {
                capacity: self.config.queue_capacity,
                max_bytes: self.config.queue_max_bytes,
                // A whole request's acks, and a notice for every topic it may hold.
                control_headroom: 2 * self.config.max_topics_per_stream + 64,
                slow_limit: self.config.slow_consumer_limit,
            },
        ));
        self.subscribers.lock().insert(id, Arc::downgrade(&sub));
        metrics::gauge!("grpc_active_connections").increment(1.0);
        Session {
            hub: self.clone(),
            sub,
            grant,
            topics: HashSet::new(),
            replaying: HashSet::new(),
            started: Vec::new(),
            replay_refusal: Some("this server keeps no history to replay from".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown instrument")]
pub struct UnknownInstrument;

impl Hub {
    /// Records [`PUBLISH_LATENCY`] for a frame received at `receive_time`.
    #[inline]
    fn published(&self, receive_time: UnixNanos) {
        let elapsed = UnixNanos::now()
            .as_nanos()
            .saturating_sub(receive_time.as_nanos());
        self.publish_latency.record(elapsed as f64 * 1e-9);
    }
}

impl FeedSink for Hub {
    fn instruments_listed(&self, listed: Vec<Listing>) {
        let mut names = self.names.write();
        for info in listed {
            let Some(instrument) = self.instruments.get(&info.id) else {
                continue;
            };
            names.insert(
                (info.id.venue, info.normalized_name().to_ascii_uppercase()),
                info.id.clone(),
            );
            instrument.state.lock().set_qty_unit(info.qty_unit);
            *instrument.listing.write() = Some(Arc::new(info));
        }
    }

    fn market_event(&self, event: MarketEvent) {
        if let Some(state) = self.instruments.get(&event.instrument) {
            let closed = state.state.lock().market_event(&event);
            self.published(event.receive_time);
            // Stores are fed outside the instrument's lock.
            self.tap_candles(&event.instrument, closed, true);
            offer_all(&self.taps, Record::Event(event));
        }
    }

    fn book_update(
        &self,
        instrument: &InstrumentId,
        mut update: BookUpdate,
        checks: &BookChecks,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) -> Result<(), BookRejected> {
        let Some(state) = self.instruments.get(instrument) else {
            return Ok(());
        };
        let views =
            state
                .state
                .lock()
                .book_update(&mut update, checks, exchange_time, receive_time)?;
        self.published(receive_time);
        if views {
            self.schedule_views(state);
        }
        Ok(())
    }

    fn book_reset(&self, instrument: &InstrumentId, reason: &str) {
        if let Some(state) = self.instruments.get(instrument) {
            state.state.lock().reset(reason);
        }
    }

    fn feed_gap(&self, instrument: &InstrumentId, gap: FeedGap, receive_time: UnixNanos) {
        if let Some(state) = self.instruments.get(instrument) {
            state.state.lock().feed_gap(&gap, receive_time);
        }
    }
}

/// One client stream's subscriptions. Dropping it unsubscribes everything.
pub struct Session {
    pub(crate) hub: Arc<Hub>,
    pub(crate) sub: Arc<Subscriber>,
    grant: Arc<Grant>,
    pub(crate) topics: HashSet<TopicKey>,
    /// Topics asked from a past time, between their ack and their join (module
    /// `replay`): held (counted, unsubscribable) but not yet receiving live messages.
    pub(crate) replaying: HashSet<TopicKey>,
    /// Replays accepted by the last [`Session::handle`], for the caller to start.
    pub(crate) started: Vec<crate::replay::ReplayStart>,
    /// Why this stream cannot replay from a time (`None`: it can).
    pub(crate) replay_refusal: Option<String>,
}

impl Session {
    /// The queue the response stream reads from.
    pub fn subscriber(&self) -> Arc<Subscriber> {
        self.sub.clone()
    }

    /// Handles one client message; every topic of it gets an ack on the stream.
    ///
    /// Returns what the message cost: the topics it named, each wildcard counted as the
    /// instruments it matched (a snapshot each), and at least one. The caller's request
    /// rate charges it.
    pub fn handle(&mut self, msg: pb::ClientMessage) -> usize {
        let mut cost = 0;
        match msg.kind {
            Some(pb::client_message::Kind::Subscribe(req)) => {
                if self.within_request_limit(req.topics.len() + req.resume.len() + req.replay.len())
                    && self.batch_delay_set(req.max_batch_delay_us)
                {
                    for r in &req.resume {
                        cost += self.resume(r);
                    }
                    for r in &req.replay {
                        cost += self.replay(r);
                    }
                    for topic in &req.topics {
                        cost += self.subscribe(topic, Resume::No);
                    }
                }
            }
            Some(pb::client_message::Kind::Unsubscribe(req)) => {
                if self.within_request_limit(req.topics.len()) {
                    for topic in &req.topics {
                        cost += self.unsubscribe(topic);
                    }
                }
            }
            Some(pb::client_message::Kind::Ping(ping)) => {
                self.sub
                    .push_control(&[encode::encode_untopiced(Payload::Pong(pb::Pong {
                        nonce: ping.nonce,
                    }))]);
            }
            None => self.reject(
                &pb::Topic::default(),
                "empty client message: set subscribe, unsubscribe or ping",
            ),
        }
        self.sub.set_topic_count(self.topics.len());
        cost.max(1)
    }

    /// A request may carry at most as many topics as a stream may hold; a larger one is
    /// refused whole, with one ack (answering each of its topics would let one message
    /// queue a million).
    fn within_request_limit(&self, topics: usize) -> bool {
        let max = self.hub.config.max_topics_per_stream;
        if topics > max {
            self.reject(
                &pb::Topic::default(),
                &format!("request has {topics} topics; at most {max} per request"),
            );
        }
        topics <= max
    }

    /// Applies a request's batch delay (see `SubscribeRequest.max_batch_delay_us`); one
    /// beyond the limit refuses the request whole, with one ack, and changes nothing.
    fn batch_delay_set(&self, micros: Option<u32>) -> bool {
        let Some(micros) = micros else {
            return true;
        };
        let delay = Duration::from_micros(u64::from(micros));
        let max = MAX_BATCH_DELAY.min(self.hub.config.slow_consumer_limit / 2);
        if delay > max {
            self.reject(
                &pb::Topic::default(),
                &format!(
                    "max_batch_delay_us: {micros} exceeds the maximum {} ({}, and at most \
                     half of hub.slow_consumer_limit_ms)",
                    max.as_micros(),
                    MAX_BATCH_DELAY.as_micros()
                ),
            );
            return false;
        }
        self.sub.set_batch_delay(delay);
        true
    }

    pub(crate) fn ack(&self, topic: &pb::Topic, result: pb::ack::Result, reason: &str) {
        let resume = pb::ack::ResumeResult::ResumeNotAsked;
        self.sub.push_control(&[ack_message(
            topic,
            result,
            reason.to_owned(),
            self.hub.epoch,
            resume,
        )]);
    }

    /// Rejects `topic`, echoing it back with its names cut short (a client's
    /// megabyte-long symbol is not queued back to it).
    pub(crate) fn reject(&self, topic: &pb::Topic, reason: &str) {
        metrics::counter!("errors_total", "kind" => "rejected_topic").increment(1);
        let echoed = pb::Topic {
            venue: Symbol::clip(&topic.venue).to_owned(),
            symbol: Symbol::clip(&topic.symbol).to_owned(),
            channel: topic.channel,
            depth: topic.depth,
        };
        self.ack(&echoed, pb::ack::Result::Rejected, reason);
    }

    /// Resolves a requested topic to concrete topics, or the reason it cannot be served.
    pub(crate) fn resolve(&self, topic: &pb::Topic) -> Result<Vec<TopicKey>, String> {
        let req = TopicRequest::parse(topic)?;
        // Before anything is matched: a client learns nothing of what it may not see.
        if let Some(reason) = self.grant.refusal(req.venue, req.channel) {
            return Err(reason);
        }
        let carried = |i: &Instrument| i.channels.contains(&req.channel);
        let keys: Vec<TopicKey> = match &req.symbol {
            Some(symbol) => {
                let unknown = || {
                    format!(
                        "unknown symbol {symbol} on {} (see ListInstruments)",
                        req.venue
                    )
                };
                let id = self
                    .hub
                    .instrument_id(req.venue, symbol)
                    .ok_or_else(unknown)?;
                let instrument = self.hub.instruments.get(&id).ok_or_else(unknown)?;
                if !carried(instrument) {
                    return Err(format!(
                        "{id} does not carry {}",
                        req.channel.to_proto().as_str_name()
                    ));
                }
                vec![TopicKey {
                    instrument: id,
                    channel: req.channel,
                    depth: req.depth,
                }]
            }
            None => self
                .hub
                .instruments
                .iter()
                .filter(|(id, i)| id.venue == req.venue && carried(i))
                .map(|(id, _)| TopicKey {
                    instrument: id.clone(),
                    channel: req.channel,
                    depth: req.depth,
                })
                .collect(),
        };
        if keys.is_empty() {
            return Err(format!(
                "no instrument of {} carries {}",
                req.venue,
                req.channel.to_proto().as_str_name()
            ));
        }
        Ok(keys)
    }

    /// Subscribes one topic where the client left off (see [`pb::Resume`]).
    fn resume(&mut self, r: &pb::Resume) -> usize {
        let topic = r.topic.clone().unwrap_or_default();
        if topic.symbol.trim() == "*" {
            self.reject(
                &topic,
                "resume names one topic: a wildcard's topics each have their own sequence",
            );
            return 1;
        }
        let resume = if r.epoch == self.hub.epoch {
            Resume::After(r.after_sequence)
        } else {
            Resume::EpochChanged
        };
        self.subscribe(&topic, resume)
    }

    /// Subscribes what `topic` names; returns how many topics it resolved to.
    fn subscribe(&mut self, topic: &pb::Topic, resume: Resume) -> usize {
        let keys = match self.resolve(topic) {
            Ok(keys) => keys,
            Err(reason) => {
                self.reject(topic, &reason);
                return 1;
            }
        };
        let resolved = keys.len();
        for key in keys {
            let wire = key.to_proto();
            if !self.admit(&key, &wire) {
                continue;
            }
            let Some(state) = self.hub.instruments.get(&key.instrument) else {
                continue;
            };
            let epoch = self.hub.epoch;
            let ack = |resume: pb::ack::ResumeResult, reason: String| {
                if let Some(result) = resume_result_label(resume) {
                    metrics::counter!("raven_resumes_total", "result" => result).increment(1);
                }
                ack_message(&wire, pb::ack::Result::Subscribed, reason, epoch, resume)
            };
            // The ack and the snapshot (or the replay) are queued under the instrument's
            // lock, so no message of the topic can slip in between or before them.
            state.state.lock().subscribe(&key, &self.sub, resume, ack);
            self.topics.insert(key);
        }
        resolved
    }

    /// Whether `key` may be added to this stream: not already held, within the stream's
    /// topic limit and the principal's budget (taken here). Answers the client if not.
    pub(crate) fn admit(&mut self, key: &TopicKey, wire: &pb::Topic) -> bool {
        if self.topics.contains(key) {
            self.ack(wire, pb::ack::Result::Subscribed, "already subscribed");
            return false;
        }
        if self.topics.len() >= self.hub.config.max_topics_per_stream {
            let reason = format!(
                "topic limit reached: {} topics per stream",
                self.hub.config.max_topics_per_stream
            );
            self.reject(wire, &reason);
            return false;
        }
        if !self.hub.instruments.contains_key(&key.instrument) {
            return false;
        }
        if let Err(reason) = self.grant.take_topic() {
            self.reject(wire, &reason);
            return false;
        }
        true
    }

    /// Unsubscribes what `topic` names; returns how many topics it resolved to.
    fn unsubscribe(&mut self, topic: &pb::Topic) -> usize {
        let keys = match self.resolve(topic) {
            Ok(keys) => keys,
            Err(reason) => {
                self.reject(topic, &reason);
                return 1;
            }
        };
        let resolved = keys.len();
        let wildcard = keys.len() > 1 || topic.symbol.trim() == "*";
        let mut removed = 0;
        for key in keys {
            let wire = key.to_proto();
            if !self.topics.remove(&key) {
                if !wildcard {
                    self.reject(&wire, "not subscribed");
                }
                continue;
            }
            removed += 1;
            self.replaying.remove(&key);
            self.grant.return_topic();
            if let Some(state) = self.hub.instruments.get(&key.instrument) {
                state.state.lock().unsubscribe(&key, self.sub.id);
            }
            self.ack(&wire, pb::ack::Result::Unsubscribed, "");
        }
        if wildcard && removed == 0 {
            self.reject(topic, "not subscribed to any topic this wildcard matches");
        }
        resolved
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for key in self.topics.drain() {
            self.grant.return_topic();
            if let Some(state) = self.hub.instruments.get(&key.instrument) {
                state.state.lock().unsubscribe(&key, self.sub.id);
            }
        }
        self.hub.subscribers.lock().remove(&self.sub.id);
        metrics::gauge!("grpc_active_connections").decrement(1.0);
    }
}
