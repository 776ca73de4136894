//! One Binance WebSocket connection: its socket, its books, and its reconnect loop.
//!
//! A connection carries a fixed set of symbols (see [`super::streams`]) and owns the
//! depth-sync state of their books and the continuity of their event streams, so
//! everything that happens to an instrument (diff, snapshot, trade, disconnect) happens
//! on one task in order, with no locks.
//!
//! The loop keeps the socket honest, following Binance's published connection rules
//! (spot "WebSocket Streams", USD-M/COIN-M "Websocket Market Streams" pages):
//! * The server pings (every 20 s on spot, every 3 min on futures) and disconnects a
//!   client whose pong does not arrive within a minute (spot) or 10 minutes (futures).
//!   tungstenite queues the pong when it reads the ping; Raven flushes it at once rather
//!   than waiting for the next read.
//! * A connection is only valid for 24 hours. Before `max_connection_age` (jittered so
//!   many connections do not cycle together) Raven opens the next connection and hands
//!   the instruments over to it **before** closing the old one (make before break): the
//!   books are joined to the new stream without a snapshot, events are taken from the
//!   right socket by their ids (module [`crate::sequencer`]), and the old socket closes
//!   once the new one has been delivering for [`HANDOVER_OVERLAP`] and nothing of it
//!   waits for the old one, or after [`HANDOVER_TIMEOUT`]. The daily reconnect loses
//!   nothing and announces nothing. If the new connection cannot be opened, the old one
//!   carries on and the hand-over is tried again after a backoff.
//! * A half-open TCP connection can stay silent forever, so if no frame (data or ping)
//!   arrives for `stall_timeout` the connection is dropped and re-established.
//! * Reconnects back off exponentially with jitter, and the backoff only starts over
//!   once a connection has stayed up and delivering for [`HEALTHY_AFTER`]: a venue that
//!   accepts connections and drops them at once must not be hammered.
//!
//! When the socket goes away without a hand-over, every book of the connection is reset
//! (the sink stops serving it) and resynced from a new snapshot once the new socket
//! buffers diffs, and every instrument's event streams are reported interrupted
//! ([`FeedGap::Interrupted`]) from the last frame received until the new connection is
//! up ([`FeedGap::Resumed`]). Each book's sync attempt has a number ([`Generation`]):
//! a snapshot fetched for an attempt that a reset has ended is discarded, never applied
//! to the next session's book. [`Feed`] is the synchronous part (frames in, sink calls
//! out) so it can be tested without a socket.
//!
//! Tracing: each connection attempt, from connect to close, is one `venue.connection`
//! span, and each book's way back to sync, from its first snapshot request until it is
//! live again, one `book.resync` span under it (the snapshot fetches are its children,
//! see [`super::snapshot`]). The spans are created and closed, never entered, so a
//! frame costs nothing extra: nothing here is traced per message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use metrics::Counter;
use raven_model::feed::{BookChecks, BookRejected, BookUpdate, FeedGap, FeedSink};
use raven_model::{EventKind, InstrumentId, MarketEvent, UnixNanos, Venue};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::depth::{DepthDiff, DepthRules, DepthSync, DiffOutcome, HandoverEnd, SnapshotOutcome};
use super::market::Market;
use super::parse::{parse_frame, Frame, SymbolMap};
use super::snapshot::{Generation, SnapshotFetcher, SnapshotReply};
use crate::backoff::{Backoff, BackoffConfig};
use crate::engine::malformed::MalformedLog;
use crate::sequencer::{Delivery, Source, StreamSequencer};
use crate::status::{
    self, BookStatus, BookSyncState, ConnectionState, ConnectionStatus, FeedStatus,
};
use crate::supervise::HEALTHY_AFTER;

/// A TCP + TLS + WebSocket handshake that takes longer than this has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing a pong or a close frame must not hang the task.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Books whose depth stream stays quiet this long after connecting get their snapshot
/// anyway (a quiet symbol may not send a diff for minutes).
const QUIET_BOOK_SNAPSHOT_DELAY: Duration = Duration::from_secs(1);
/// A hand-over keeps both connections for at least this long after the new one's first
/// frame, so what was still in flight on the old one arrives before it closes.
pub const HANDOVER_OVERLAP: Duration = Duration::from_secs(1);
/// A hand-over ends after this long whatever waits (the old connection is lagging
/// badly; what the sequencers still hold is released and judged).
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a hand-over checks whether it can end.
const HANDOVER_CHECK: Duration = Duration::from_millis(50);

/// Everything one connection needs to know.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub venue: Venue,
    /// Which Binance market: its depth-sync rules.
    pub market: Market,
    /// Used in logs and the status registry, e.g. `binance_spot#0`.
    pub name: String,
    /// The full combined-stream URL.
    pub url: String,
    /// Upper-case exchange symbols on this connection.
    pub symbols: Vec<String>,
    /// Whether the depth stream is subscribed (books are kept).
    pub books: bool,
    pub streams: usize,
    pub stall_timeout: Duration,
    pub max_connection_age: Duration,
    pub backoff: BackoffConfig,
    /// Bound of each book's pre-snapshot diff buffer.
    pub max_buffered_diffs: usize,
    /// The REST snapshot's `limit`: a side that comes back that deep may go deeper.
    pub snapshot_limit: u32,
}

/// The venue-wide counters, resolved once (the `metrics` facade lookup is not free).
#[derive(Clone)]
struct Counters {
    frames: Counter,
    processed: Counter,
    reconnects: Counter,
    gaps: Counter,
    resyncs: Counter,
    crossed: Counter,
    duplicates: Counter,
    out_of_order: Counter,
}

impl Counters {
    fn new(venue: Venue) -> Self {
        let v = venue.as_str();
        Self {
            frames: metrics::counter!(status::METRIC_FRAMES, "venue" => v),
            processed: metrics::counter!(status::METRIC_MESSAGES_PROCESSED, "venue" => v),
            reconnects: metrics::counter!(status::METRIC_RECONNECTS, "venue" => v),
            gaps: metrics::counter!(status::METRIC_GAPS, "venue" => v),
            resyncs: metrics::counter!(status::METRIC_RESYNCS, "venue" => v),
            crossed: metrics::counter!(status::METRIC_CROSSED, "venue" => v),
            duplicates: metrics::counter!(status::METRIC_DUPLICATES, "venue" => v),
            out_of_order: metrics::counter!(status::METRIC_OUT_OF_ORDER, "venue" => v),
        }
    }
}

struct Book {
    sync: DepthSync,
    status: Arc<BookStatus>,
    /// The current sync attempt; a reset starts the next.
    generation: Generation,
    /// A snapshot request of the current attempt is queued or in flight.
    snapshot_pending: bool,
    /// The resync under way, from the first snapshot request until the book is live.
    resync: Option<Resync>,
    /// Why the book is out of sync: the `reason` of the next resync span.
    lost_because: &'static str,
}

impl Book {
    /// The book was reset: the next snapshot must belong to a new attempt.
    fn new_attempt(&mut self) {
        self.generation.next();
        self.snapshot_pending = false;
    }
}

/// The event streams of one instrument, each with its sequencer (module
/// [`crate::sequencer`]): trades by trade id (contiguous on Binance, `a` of `@aggTrade`
/// and `t` of `@trade`), BBO by order book update id `u`, mark prices and liquidations
/// by event time `E` (at most one per second per symbol on both streams).
struct Streams {
    trades: StreamSequencer<MarketEvent>,
    bbo: StreamSequencer<MarketEvent>,
    mark: StreamSequencer<MarketEvent>,
    liquidations: StreamSequencer<MarketEvent>,
}

impl Streams {
    fn new(max_held: usize) -> Self {
        Self {
            trades: StreamSequencer::new(true, max_held),
            bbo: StreamSequencer::new(false, max_held),
            mark: StreamSequencer::new(false, max_held),
            liquidations: StreamSequencer::new(false, max_held),
        }
    }

    fn all(&mut self) -> [&mut StreamSequencer<MarketEvent>; 4] {
        [
            &mut self.trades,
            &mut self.bbo,
            &mut self.mark,
            &mut self.liquidations,
        ]
    }

    /// The event's sequencer and key.
    fn of(&mut self, event: &MarketEvent) -> (&mut StreamSequencer<MarketEvent>, u64) {
        match &event.kind {
            EventKind::Trade(t) => (&mut self.trades, t.trade_id.number().unwrap_or_default()),
            EventKind::Bbo(b) => (&mut self.bbo, b.update_id),
            EventKind::MarkPrice(_) => (&mut self.mark, event.exchange_time.as_nanos()),
            EventKind::Liquidation(_) => (&mut self.liquidations, event.exchange_time.as_nanos()),
        }
    }
}

/// One `book.resync` span: a book out of sync until a snapshot joined its stream.
/// Its fields are each recorded once, at the end (the OpenTelemetry layer appends a
/// recorded attribute rather than replacing it).
struct Resync {
    span: tracing::Span,
    /// Snapshot fetch attempts answered so far (fetched or failed).
    snapshots: u64,
    finished: bool,
}

impl Resync {
    fn start(
        parent: &tracing::Span,
        venue: Venue,
        instrument: &InstrumentId,
        connection: &str,
        reason: &str,
    ) -> Self {
        let span = tracing::info_span!(
            parent: parent,
            "book.resync",
            venue = venue.as_str(),
            symbol = instrument.symbol.as_str(),
            connection.name = connection,
            reason,
            outcome = tracing::field::Empty,
            snapshot.attempts = tracing::field::Empty,
            snapshot.last_update_id = tracing::field::Empty,
            replayed_diffs = tracing::field::Empty,
        );
        Resync {
            span,
            snapshots: 0,
            finished: false,
        }
    }

    /// The book is live again from the snapshot at `last_update_id`.
    fn synced(mut self, last_update_id: u64, replayed_diffs: usize) {
        self.span.record("snapshot.last_update_id", last_update_id);
        self.span.record("replayed_diffs", replayed_diffs);
        self.span.record("outcome", "synced");
        self.finished = true;
    }
}

impl Drop for Resync {
    /// A resync that never finished (the venue shut down) still closes its span, saying so.
    fn drop(&mut self) {
        self.span.record("snapshot.attempts", self.snapshots);
        if !self.finished {
            self.span.record("outcome", "abandoned");
        }
    }
}

/// The synchronous heart of a connection: turns frames and snapshots into sink calls
/// and keeps each book's sync state and each event stream's continuity.
pub struct Feed {
    venue: Venue,
    name: String,
    /// The current `venue.connection` span: the parent of the resyncs it starts.
    span: AttemptSpan,
    symbols: SymbolMap,
    books: HashMap<InstrumentId, Book>,
    streams: HashMap<InstrumentId, Streams>,
    sink: Arc<dyn FeedSink>,
    conn: Arc<ConnectionStatus>,
    fetcher: SnapshotFetcher,
    replies: mpsc::UnboundedSender<SnapshotReply>,
    counters: Counters,
    snapshot_limit: usize,
    malformed: MalformedLog,
    /// When the last frame was received: where an interruption begins.
    last_frame: UnixNanos,
    /// A hand-over to a standby connection is under way.
    handing_over: bool,
    /// Reused for the sequencers' deliveries.
    deliveries: Vec<Delivery<MarketEvent>>,
}

impl Feed {
    /// Registers the connection (and, when `config.books`, its books) in `status`.
    /// Snapshot results arrive on the returned receiver; pass them to
    /// [`Feed::on_snapshot_reply`].
    pub fn new(
        config: &ConnectionConfig,
        sink: Arc<dyn FeedSink>,
        status: &FeedStatus,
        fetcher: SnapshotFetcher,
    ) -> (Self, mpsc::UnboundedReceiver<SnapshotReply>) {
        let symbols = SymbolMap::new(config.venue, config.symbols.iter().map(String::as_str));
        let rules = DepthRules::for_market(config.market);
        let ids: Vec<InstrumentId> = config
            .symbols
            .iter()
            .map(|s| InstrumentId::new(config.venue, s))
            .collect();
        let books = if config.books {
            ids.iter()
                .map(|id| {
                    let book_status = status.book(id).unwrap_or_else(|| status.register_book(id));
                    let book = Book {
                        sync: DepthSync::new(rules, config.max_buffered_diffs),
                        status: book_status,
                        generation: Generation::default(),
                        snapshot_pending: false,
                        resync: None,
                        lost_because: "initial sync",
                    };
                    (id.clone(), book)
                })
                .collect()
        } else {
            HashMap::new()
        };
        let streams = ids
            .iter()
            .map(|id| (id.clone(), Streams::new(config.max_buffered_diffs)))
            .collect();
        let conn = status.register_connection(
            config.venue,
            &config.name,
            config.streams,
            config.stall_timeout,
        );
        let (replies, rx) = mpsc::unbounded_channel();
        let feed = Self {
            venue: config.venue,
            name: config.name.clone(),
            span: AttemptSpan(tracing::Span::none()),
            symbols,
            books,
            streams,
            sink,
            conn,
            fetcher,
            replies,
            counters: Counters::new(config.venue),
            snapshot_limit: config.snapshot_limit as usize,
            malformed: MalformedLog::new(config.venue),
            last_frame: UnixNanos::default(),
            handing_over: false,
            deliveries: Vec::new(),
        };
        (feed, rx)
    }

    /// One text frame of the (only, or primary) connection, read at `receive_time`.
    pub fn on_text(&mut self, text: &str, receive_time: UnixNanos) {
        self.on_text_from(text, receive_time, Source::Primary);
    }

    /// One text frame from `source`, read at `receive_time`.
    pub fn on_text_from(&mut self, text: &str, receive_time: UnixNanos, source: Source) {
        self.last_frame = self.last_frame.max(receive_time);
        match parse_frame(text, &self.symbols, receive_time) {
            Ok(frame) => {
                self.counters.processed.increment(1);
                match frame {
                    Frame::Depth { instrument, diff } => self.on_diff(&instrument, diff, source),
                    Frame::Event(event) => self.on_event(event, source),
                    Frame::Control | Frame::Ignored => {}
                }
            }
            Err(error) => self.malformed(&error),
        }
    }

    /// Counts and (rate-limited) logs a frame that could not be used.
    pub fn malformed(&mut self, error: &dyn std::fmt::Display) {
        self.conn.malformed();
        self.malformed.record(&self.name, error);
    }

    /// An event goes through its stream's sequencer: duplicates are dropped, a jump in
    /// trade ids is announced before the trade that shows it.
    fn on_event(&mut self, event: MarketEvent, source: Source) {
        let instrument = event.instrument.clone();
        let receive_time = event.receive_time;
        let Some(streams) = self.streams.get_mut(&instrument) else {
            return self.sink.market_event(event);
        };
        let (sequencer, key) = streams.of(&event);
        let before = (sequencer.duplicates(), sequencer.regressions());
        let mut out = std::mem::take(&mut self.deliveries);
        sequencer.accept(key, source, event, &mut out);
        let duplicates = sequencer.duplicates() - before.0;
        if duplicates > 0 {
            self.counters.duplicates.increment(duplicates);
        }
        if sequencer.regressions() > before.1 {
            tracing::warn!(connection = %self.name, %instrument, key, "an event's key went backwards; delivered, the stream goes on from it");
            self.counters.out_of_order.increment(1);
        }
        self.deliver(&instrument, &mut out, receive_time);
        self.deliveries = out;
    }

    fn deliver(
        &self,
        instrument: &InstrumentId,
        out: &mut Vec<Delivery<MarketEvent>>,
        receive_time: UnixNanos,
    ) {
        for d in out.drain(..) {
            match d {
                Delivery::Event(e) => self.sink.market_event(e),
                Delivery::Gap { last, next } => {
                    tracing::info!(connection = %self.name, %instrument, last, next, "trade ids skipped");
                    self.sink
                        .feed_gap(instrument, FeedGap::TradeIds { last, next }, receive_time);
                }
            }
        }
    }

    fn on_diff(&mut self, instrument: &InstrumentId, diff: DepthDiff, source: Source) {
        let Some(book) = self.books.get_mut(instrument) else {
            return;
        };
        book.status.message();
        match book.sync.on_diff_from(diff, source) {
            DiffOutcome::Buffered => self.ensure_snapshot(instrument),
            DiffOutcome::Stale | DiffOutcome::Held => {}
            DiffOutcome::Apply(diff) => {
                self.apply(instrument, diff);
            }
            DiffOutcome::ApplyAll(diffs) => {
                for diff in diffs {
                    if !self.apply(instrument, diff) {
                        break;
                    }
                }
            }
            DiffOutcome::Gap(gap) => {
                tracing::info!(
                    connection = %self.name,
                    %instrument,
                    book_update_id = gap.book_update_id,
                    first_update_id = gap.first_update_id,
                    prev_last_update_id = ?gap.prev_last_update_id,
                    "depth gap, resyncing the book"
                );
                book.status.gap();
                self.counters.gaps.increment(1);
                self.lose_sync(instrument, "sequence gap");
            }
            DiffOutcome::Overflow => {
                tracing::warn!(connection = %self.name, %instrument, "diff buffer overflow while waiting for a snapshot");
                self.lose_sync(instrument, "diff buffer overflow");
            }
        }
    }

    /// Applies one delta to the sink's book; false when the sink refused it (the book
    /// resyncs).
    fn apply(&mut self, instrument: &InstrumentId, diff: DepthDiff) -> bool {
        let (et, rt) = (diff.exchange_time, diff.receive_time);
        match self.sink.book_update(
            instrument,
            BookUpdate::Delta(diff.into_levels()),
            &BookChecks::default(),
            et,
            rt,
        ) {
            Ok(()) => true,
            Err(rejected) => {
                self.rejected(instrument, rejected);
                false
            }
        }
    }

    /// A snapshot fetch finished (or one attempt failed).
    pub fn on_snapshot_reply(&mut self, reply: SnapshotReply) {
        let (symbol, generation, snapshot) = match reply {
            SnapshotReply::Failed {
                symbol, generation, ..
            } => {
                if let Some(book) = self.book_by_symbol(&symbol) {
                    if book.generation.current() == generation {
                        book.status.snapshot_failure();
                        if let Some(resync) = &mut book.resync {
                            resync.snapshots += 1;
                        }
                    }
                }
                return;
            }
            SnapshotReply::Fetched {
                symbol,
                generation,
                snapshot,
            } => (symbol, generation, snapshot),
        };
        let Ok(instrument) = self.symbols.get(&symbol).cloned() else {
            return;
        };
        let Some(book) = self.books.get_mut(&instrument) else {
            return;
        };
        if book.generation.current() != generation {
            // Asked for before a reset (a disconnect, a gap): its levels may predate the
            // stream the book is joining now.
            tracing::debug!(connection = %self.name, %instrument, generation, "discarding a snapshot of an earlier sync attempt");
            return;
        }
        book.snapshot_pending = false;
        if let Some(resync) = &mut book.resync {
            resync.snapshots += 1;
        }
        match book.sync.on_snapshot(snapshot) {
            SnapshotOutcome::Synced { snapshot, replay } => {
                if let Some(resync) = book.resync.take() {
                    resync.synced(snapshot.last_update_id, replay.len());
                }
                let (et, rt) = (snapshot.exchange_time, snapshot.receive_time);
                let update = BookUpdate::Snapshot {
                    levels: snapshot.into_levels(),
                    limit: Some(self.snapshot_limit),
                };
                if let Err(rejected) =
                    self.sink
                        .book_update(&instrument, update, &BookChecks::default(), et, rt)
                {
                    return self.rejected(&instrument, rejected);
                }
                for diff in replay {
                    if !self.apply(&instrument, diff) {
                        return;
                    }
                }
                if let Some(book) = self.books.get(&instrument) {
                    book.status.set_state(BookSyncState::Synced);
                }
                tracing::debug!(connection = %self.name, %instrument, "book synced");
            }
            SnapshotOutcome::TooOld => {
                tracing::debug!(connection = %self.name, %instrument, "snapshot older than the stream, refetching");
                self.ensure_snapshot(&instrument);
            }
            SnapshotOutcome::Gap(_) => {
                book.status.gap();
                self.counters.gaps.increment(1);
                self.ensure_snapshot(&instrument);
            }
            SnapshotOutcome::AlreadySynced => {}
        }
    }

    /// The socket is gone with no hand-over: no book of this connection can be trusted,
    /// and every instrument's events may be missing from the last frame on.
    pub fn on_disconnect(&mut self, reason: &'static str, detail: &str) {
        let since = self.last_frame;
        self.handing_over = false;
        for (instrument, book) in &mut self.books {
            let was_live = book.sync.is_live();
            book.sync.reset();
            book.new_attempt();
            book.lost_because = reason;
            self.sink.book_reset(instrument, reason);
            if was_live {
                book.status.resync();
                self.counters.resyncs.increment(1);
            }
        }
        let gap = FeedGap::Interrupted {
            reason: format!("{reason}: {detail}"),
            since,
        };
        let now = UnixNanos::now();
        for (instrument, streams) in &mut self.streams {
            streams.all().into_iter().for_each(StreamSequencer::broken);
            self.sink.feed_gap(instrument, gap.clone(), now);
        }
    }

    /// A new connection is up after a disconnect: events flow again from `at`.
    pub fn on_connected(&mut self, at: UnixNanos) {
        for instrument in self.streams.keys() {
            self.sink.feed_gap(instrument, FeedGap::Resumed { at }, at);
        }
    }

    /// A standby connection is up: from now on its frames join the books and streams.
    pub fn begin_handover(&mut self) {
        self.handing_over = true;
        for book in self.books.values_mut() {
            book.sync.begin_handover();
        }
        for streams in self.streams.values_mut() {
            streams
                .all()
                .into_iter()
                .for_each(StreamSequencer::begin_handover);
        }
    }

    /// True when nothing of the standby waits for the old connection to catch up.
    pub fn handover_settled(&mut self) -> bool {
        self.books.values().all(|b| b.sync.handover_settled())
            && self
                .streams
                .values_mut()
                .all(|s| s.all().iter().all(|q| q.handover_settled()))
    }

    /// The standby failed: go on with the primary alone. Its events since the switch,
    /// kept for this, are delivered; where more came than were kept, the hole is
    /// announced (a book that switched finds its own gap on the primary's next diff).
    pub fn abort_handover(&mut self) {
        self.handing_over = false;
        for book in self.books.values_mut() {
            book.sync.abort_handover();
        }
        let now = UnixNanos::now();
        let mut out = std::mem::take(&mut self.deliveries);
        let ids: Vec<InstrumentId> = self.streams.keys().cloned().collect();
        for instrument in ids {
            let Some(streams) = self.streams.get_mut(&instrument) else {
                continue;
            };
            let mut complete = true;
            for sequencer in streams.all() {
                complete &= sequencer.abort_handover(&mut out);
            }
            self.deliver(&instrument, &mut out, now);
            if !complete {
                let since = self.last_frame;
                let reason = "hand-over failed after more events than were kept".to_owned();
                self.sink
                    .feed_gap(&instrument, FeedGap::Interrupted { reason, since }, now);
                self.sink
                    .feed_gap(&instrument, FeedGap::Resumed { at: now }, now);
            }
        }
        self.deliveries = out;
    }

    /// The old connection is gone: the standby carries everything now. What it held is
    /// released; a book that was not live, or whose standby stream does not follow it,
    /// resyncs on the new connection.
    pub fn finish_handover(&mut self) {
        self.handing_over = false;
        let now = UnixNanos::now();
        let ids: Vec<InstrumentId> = self.books.keys().cloned().collect();
        for instrument in ids {
            let Some(book) = self.books.get_mut(&instrument) else {
                continue;
            };
            match book.sync.finish_handover() {
                HandoverEnd::Apply(diffs) => {
                    for diff in diffs {
                        if !self.apply(&instrument, diff) {
                            break;
                        }
                    }
                }
                HandoverEnd::Gap(_) => {
                    book.status.gap();
                    self.counters.gaps.increment(1);
                    self.lose_sync(&instrument, "sequence gap");
                }
                HandoverEnd::Resync => {
                    book.sync.reset();
                    self.lose_sync(&instrument, "scheduled reconnect");
                }
            }
        }
        let mut out = std::mem::take(&mut self.deliveries);
        let ids: Vec<InstrumentId> = self.streams.keys().cloned().collect();
        for instrument in ids {
            if let Some(streams) = self.streams.get_mut(&instrument) {
                for sequencer in streams.all() {
                    sequencer.finish_handover(&mut out);
                }
            }
            self.deliver(&instrument, &mut out, now);
        }
        self.deliveries = out;
    }

    /// The current sync attempt of `symbol`'s book (what a snapshot reply must carry).
    pub fn snapshot_generation(&self, symbol: &str) -> Option<u64> {
        let id = self.symbols.get(symbol).ok()?;
        self.books.get(id).map(|b| b.generation.current())
    }

    /// Queues snapshots for books that have neither one nor a request in flight.
    pub fn request_missing_snapshots(&mut self) {
        let ids: Vec<InstrumentId> = self
            .books
            .iter()
            .filter(|(_, b)| !b.sync.is_live() && !b.snapshot_pending)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.ensure_snapshot(&id);
        }
    }

    fn rejected(&mut self, instrument: &InstrumentId, rejected: BookRejected) {
        tracing::warn!(connection = %self.name, %instrument, %rejected, "sink rejected a book update, resyncing");
        if let Some(book) = self.books.get_mut(instrument) {
            book.status.crossed();
            book.sync.reset();
        }
        self.counters.crossed.increment(1);
        self.lose_sync(instrument, "book rejected by sink");
    }

    /// Tell the sink, count the resync, fetch a new snapshot for a new attempt. The sync
    /// state was already moved back to buffering by the caller or by [`DepthSync`].
    fn lose_sync(&mut self, instrument: &InstrumentId, reason: &'static str) {
        self.sink.book_reset(instrument, reason);
        if let Some(book) = self.books.get_mut(instrument) {
            book.status.resync();
            book.new_attempt();
            book.lost_because = reason;
        }
        self.counters.resyncs.increment(1);
        self.ensure_snapshot(instrument);
    }

    fn ensure_snapshot(&mut self, instrument: &InstrumentId) {
        if let Some(book) = self.books.get_mut(instrument) {
            if !book.snapshot_pending {
                book.snapshot_pending = true;
                // A refetch (snapshot too old, gap in the buffer) continues the resync
                // under way; anything else starts one.
                let resync = book.resync.get_or_insert_with(|| {
                    Resync::start(
                        &self.span.0,
                        self.venue,
                        instrument,
                        &self.name,
                        book.lost_because,
                    )
                });
                self.fetcher.request(
                    instrument.symbol.as_str(),
                    &book.generation,
                    &self.replies,
                    &resync.span,
                );
            }
        }
    }

    fn book_by_symbol(&mut self, symbol: &str) -> Option<&mut Book> {
        let id = self.symbols.get(symbol).ok()?.clone();
        self.books.get_mut(&id)
    }
}

/// A connection's task failed (panicked) and took its [`Feed`] with it: its books can
/// no longer be trusted and its instruments' events may be missing until a new task's
/// connection is up. Reports that, as `on_disconnect` would have.
pub fn task_failed(
    config: &ConnectionConfig,
    sink: &dyn FeedSink,
    status: &FeedStatus,
    reason: &str,
) {
    let now = UnixNanos::now();
    for symbol in &config.symbols {
        let instrument = InstrumentId::new(config.venue, symbol);
        if config.books {
            sink.book_reset(&instrument, "connection task failed");
            if let Some(book) = status.book(&instrument) {
                book.resync();
            }
        }
        sink.feed_gap(
            &instrument,
            FeedGap::Interrupted {
                reason: format!("connection task failed: {reason}"),
                since: now,
            },
            now,
        );
    }
}

/// A connection attempt's `venue.connection` span while it is under way. An attempt
/// whose task is aborted (the venue dropped rather than shut down) still closes its
/// span with an outcome; [`end_span`] takes the span out first, so the outcome is
/// recorded once either way.
struct AttemptSpan(tracing::Span);

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        self.0.record("outcome", "aborted");
    }
}

fn attempt_span(config: &ConnectionConfig, attempt: u64) -> AttemptSpan {
    AttemptSpan(tracing::info_span!(
        "venue.connection",
        venue = config.venue.as_str(),
        connection.name = config.name.as_str(),
        connection.streams = config.streams,
        connection.attempt = attempt,
        outcome = tracing::field::Empty,
        close.reason = tracing::field::Empty,
    ))
}

/// Ends a `venue.connection` span with its outcome.
fn end_span(span: &mut AttemptSpan, outcome: &str, reason: &str) {
    let span = std::mem::replace(&mut span.0, tracing::Span::none());
    span.record("outcome", outcome);
    span.record("close.reason", reason);
    // A resync still in flight keeps its parent span open until it ends; leaving the
    // span once stamps the connection's own end time now, which the exporter uses.
    span.in_scope(|| {});
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the connection, within [`CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<Ws, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

/// A connect under way, for the hand-over.
type Connecting = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ws, String>> + Send>>;

/// Why a session ended.
enum End {
    Shutdown,
    /// The hand-over finished: go on with this connection (already read by the feed)
    /// and its span.
    HandedOver(Box<Ws>, AttemptSpan),
    Lost(String),
}

/// Runs the connection until `shutdown` turns true.
pub async fn run(
    config: ConnectionConfig,
    mut feed: Feed,
    mut replies: mpsc::UnboundedReceiver<SnapshotReply>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(config.backoff);
    let mut attempt: u64 = 0;
    let mut handed_over: Option<(Box<Ws>, AttemptSpan)> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let ws = match handed_over.take() {
            Some((ws, span)) => {
                feed.span = span;
                ws
            }
            None => {
                if attempt > 0 {
                    feed.conn.reconnected();
                    feed.counters.reconnects.increment(1);
                }
                attempt += 1;
                feed.span = attempt_span(&config, attempt);
                feed.conn.set_state(ConnectionState::Connecting);
                let connected = tokio::select! {
                    r = connect(&config.url) => r,
                    _ = shutdown.changed() => return end_span(&mut feed.span, "shutdown", "venue shutting down"),
                };
                match connected {
                    Ok(ws) => {
                        feed.on_connected(UnixNanos::now());
                        Box::new(ws)
                    }
                    Err(reason) => {
                        end_span(&mut feed.span, "connect_failed", &reason);
                        if !wait_to_retry(&config, &mut feed, &mut backoff, &reason, &mut shutdown)
                            .await
                        {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        feed.conn.set_state(ConnectionState::Connected);
        tracing::info!(connection = %config.name, streams = config.streams, "connected");
        let end = session(
            *ws,
            &config,
            &mut feed,
            &mut replies,
            &mut shutdown,
            &mut backoff,
            &mut attempt,
        )
        .await;
        match end {
            End::Shutdown => {
                feed.on_disconnect("venue shutting down", "shutdown");
                return end_span(&mut feed.span, "shutdown", "venue shutting down");
            }
            End::HandedOver(ws, span) => {
                tracing::info!(connection = %config.name, "handed over to a new connection before the 24 h limit");
                end_span(&mut feed.span, "aged", "scheduled reconnect");
                handed_over = Some((ws, span));
            }
            End::Lost(reason) => {
                feed.on_disconnect("connection lost", &reason);
                end_span(&mut feed.span, "lost", &reason);
                if !wait_to_retry(&config, &mut feed, &mut backoff, &reason, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Backs off before the next connect attempt; false when shutting down meanwhile.
async fn wait_to_retry(
    config: &ConnectionConfig,
    feed: &mut Feed,
    backoff: &mut Backoff,
    reason: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let delay = backoff.next_delay();
    tracing::warn!(connection = %config.name, reason, retry_in = ?delay, "connection lost");
    feed.conn.set_state(ConnectionState::Backoff);
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.changed() => false,
    }
}

/// What one frame of a socket asks of the session.
enum Read {
    Text,
    Other,
    Lost(String),
}

/// Handles one WebSocket message of `ws`: text goes to the feed from `source`, a ping's
/// pong is flushed at once.
async fn read<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    feed: &mut Feed,
    source: Source,
) -> Read
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let receive_time = UnixNanos::now();
    let msg = match msg {
        Some(Ok(msg)) => msg,
        Some(Err(e)) => return Read::Lost(e.to_string()),
        None => return Read::Lost("stream ended".to_owned()),
    };
    feed.conn.frame();
    feed.counters.frames.increment(1);
    match msg {
        Message::Text(text) => {
            feed.on_text_from(text.as_str(), receive_time, source);
            Read::Text
        }
        Message::Ping(_) => {
            // tungstenite queued the pong; push it out now.
            match tokio::time::timeout(WRITE_TIMEOUT, ws.flush()).await {
                Ok(Ok(())) => Read::Other,
                Ok(Err(e)) => Read::Lost(format!("pong failed: {e}")),
                Err(_) => Read::Lost("pong timed out".to_owned()),
            }
        }
        Message::Close(frame) => Read::Lost(format!("closed by server: {frame:?}")),
        Message::Binary(_) => {
            feed.malformed(&"unexpected binary frame");
            Read::Other
        }
        Message::Pong(_) | Message::Frame(_) => Read::Other,
    }
}

/// The connection being handed over to.
struct Standby {
    ws: Box<Ws>,
    span: AttemptSpan,
    connected_at: Instant,
    first_frame: Option<Instant>,
    last_frame: Instant,
}

async fn next_standby(
    standby: &mut Option<Standby>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match standby {
        Some(s) => s.ws.next().await,
        None => std::future::pending().await,
    }
}

async fn close(ws: &mut Ws) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
}

#[allow(clippy::too_many_arguments)]
async fn session(
    mut ws: Ws,
    config: &ConnectionConfig,
    feed: &mut Feed,
    replies: &mut mpsc::UnboundedReceiver<SnapshotReply>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    attempt: &mut u64,
) -> End {
    let connected_at = Instant::now();
    let jitter = rand::Rng::random_range(&mut rand::rng(), 0.95..=1.0);
    let age_limit =
        tokio::time::sleep_until(connected_at + config.max_connection_age.mul_f64(jitter));
    let stall = tokio::time::sleep(config.stall_timeout);
    let quiet_books = tokio::time::sleep(QUIET_BOOK_SNAPSHOT_DELAY);
    tokio::pin!(age_limit, stall, quiet_books);
    let mut quiet_books_done = false;
    let mut healthy = false;
    // The hand-over: the connect in progress, then the standby connection.
    let mut connecting: Option<Connecting> = None;
    let mut connecting_span: Option<AttemptSpan> = None;
    let mut standby: Option<Standby> = None;
    let mut handover_backoff = Backoff::new(config.backoff);
    let mut check = tokio::time::interval(HANDOVER_CHECK);

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                close(&mut ws).await;
                if let Some(mut s) = standby.take() {
                    close(&mut s.ws).await;
                    end_span(&mut s.span, "shutdown", "venue shutting down");
                }
                return End::Shutdown;
            }
            msg = ws.next() => {
                match read(&mut ws, msg, feed, Source::Primary).await {
                    Read::Text => {
                        stall.as_mut().reset(Instant::now() + config.stall_timeout);
                        if !healthy && connected_at.elapsed() >= HEALTHY_AFTER {
                            // Up and delivering for a while: the next failure starts
                            // backing off from the initial delay again.
                            healthy = true;
                            backoff.reset();
                        }
                    }
                    Read::Other => stall.as_mut().reset(Instant::now() + config.stall_timeout),
                    Read::Lost(reason) => {
                        if let Some(s) = standby.take() {
                            // The old connection died during the hand-over: the new one
                            // carries on, nothing to resync.
                            tracing::info!(connection = %config.name, %reason, "old connection lost during the hand-over");
                            feed.finish_handover();
                            return End::HandedOver(s.ws, s.span);
                        }
                        return End::Lost(reason);
                    }
                }
            }
            msg = next_standby(&mut standby), if standby.is_some() => {
                let Some(s) = standby.as_mut() else { continue };
                match read(&mut s.ws, msg, feed, Source::Standby).await {
                    Read::Text | Read::Other => {
                        let now = Instant::now();
                        s.first_frame.get_or_insert(now);
                        s.last_frame = now;
                    }
                    Read::Lost(reason) => {
                        tracing::warn!(connection = %config.name, %reason, "new connection lost during the hand-over; keeping the old one");
                        if let Some(mut s) = standby.take() {
                            end_span(&mut s.span, "lost", &reason);
                        }
                        feed.abort_handover();
                        metrics::counter!(status::METRIC_HANDOVERS, "venue" => config.venue.as_str(), "outcome" => "failed").increment(1);
                        age_limit.as_mut().reset(Instant::now() + handover_backoff.next_delay());
                    }
                }
            }
            Some(reply) = replies.recv() => feed.on_snapshot_reply(reply),
            _ = &mut stall => {
                let reason = format!("no frame for {:?}", config.stall_timeout);
                if let Some(s) = standby.take() {
                    close(&mut ws).await;
                    feed.finish_handover();
                    tracing::info!(connection = %config.name, %reason, "old connection stalled during the hand-over");
                    return End::HandedOver(s.ws, s.span);
                }
                return End::Lost(reason);
            }
            _ = &mut age_limit, if connecting.is_none() && standby.is_none() => {
                *attempt += 1;
                connecting_span = Some(attempt_span(config, *attempt));
                let url = config.url.clone();
                connecting = Some(Box::pin(async move { connect(&url).await }));
                // Re-armed when the hand-over fails; far away until then.
                age_limit.as_mut().reset(Instant::now() + config.max_connection_age);
            }
            result = async { match connecting.as_mut() { Some(c) => c.await, None => std::future::pending().await } }, if connecting.is_some() => {
                connecting = None;
                let span = connecting_span.take().unwrap_or_else(|| attempt_span(config, *attempt));
                match result {
                    Ok(new) => {
                        tracing::info!(connection = %config.name, "new connection up; handing over before the 24 h limit");
                        feed.conn.reconnected();
                        feed.counters.reconnects.increment(1);
                        feed.begin_handover();
                        let now = Instant::now();
                        standby = Some(Standby {
                            ws: Box::new(new),
                            span,
                            connected_at: now,
                            first_frame: None,
                            last_frame: now,
                        });
                    }
                    Err(reason) => {
                        let mut span = span;
                        end_span(&mut span, "connect_failed", &reason);
                        let retry = handover_backoff.next_delay();
                        tracing::warn!(connection = %config.name, %reason, retry_in = ?retry, "cannot open the new connection for the hand-over; keeping the old one");
                        metrics::counter!(status::METRIC_HANDOVERS, "venue" => config.venue.as_str(), "outcome" => "failed").increment(1);
                        age_limit.as_mut().reset(Instant::now() + retry);
                    }
                }
            }
            _ = check.tick(), if standby.is_some() => {
                let Some(s) = standby.as_ref() else { continue };
                let now = Instant::now();
                if now.duration_since(s.last_frame) >= config.stall_timeout {
                    tracing::warn!(connection = %config.name, "new connection silent during the hand-over; keeping the old one");
                    if let Some(mut s) = standby.take() {
                        close(&mut s.ws).await;
                        end_span(&mut s.span, "lost", "stalled during the hand-over");
                    }
                    feed.abort_handover();
                    metrics::counter!(status::METRIC_HANDOVERS, "venue" => config.venue.as_str(), "outcome" => "failed").increment(1);
                    age_limit.as_mut().reset(now + handover_backoff.next_delay());
                    continue;
                }
                let overlapped = s.first_frame.is_some_and(|t| now.duration_since(t) >= HANDOVER_OVERLAP);
                let timed_out = now.duration_since(s.connected_at) >= HANDOVER_TIMEOUT;
                if (overlapped && feed.handover_settled()) || timed_out {
                    let outcome = if timed_out && !feed.handover_settled() { "timed_out" } else { "completed" };
                    metrics::counter!(status::METRIC_HANDOVERS, "venue" => config.venue.as_str(), "outcome" => outcome).increment(1);
                    close(&mut ws).await;
                    feed.finish_handover();
                    let Some(s) = standby.take() else { continue };
                    return End::HandedOver(s.ws, s.span);
                }
            }
            _ = &mut quiet_books, if !quiet_books_done => {
                quiet_books_done = true;
                feed.request_missing_snapshots();
            }
        }
    }
}
