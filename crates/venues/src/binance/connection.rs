//! One Binance WebSocket connection: its socket, its books, and its reconnect loop.
//!
//! A connection carries a fixed set of symbols (see [`super::streams`]) and owns the
//! depth-sync state of their books, so everything that happens to a book (diff,
//! snapshot, disconnect) happens on one task in order, with no locks.
//!
//! The loop keeps the socket honest, following Binance's published connection rules
//! (spot "WebSocket Streams", USD-M/COIN-M "Websocket Market Streams" pages):
//! * The server pings (every 20 s on spot, every 3 min on futures) and disconnects a
//!   client whose pong does not arrive within a minute (spot) or 10 minutes (futures).
//!   tungstenite queues the pong when it reads the ping; Raven flushes it at once rather
//!   than waiting for the next read.
//! * A connection is only valid for 24 hours. Raven reconnects on its own before that
//!   (`max_connection_age`, jittered so many connections do not cycle together).
//! * A half-open TCP connection can stay silent forever, so if no frame (data or ping)
//!   arrives for `stall_timeout` the connection is dropped and re-established.
//! * Reconnects back off exponentially with jitter; repeated rapid reconnects can get an
//!   IP banned.
//!
//! When the socket goes away, every book of the connection is reset (the sink stops
//! serving it) and resynced from a new snapshot once the new socket buffers diffs.
//! [`Feed`] is the synchronous part (frames in, sink calls out) so it can be tested
//! without a socket.
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
use raven_model::feed::{BookRejected, BookUpdate, FeedSink};
use raven_model::{InstrumentId, UnixNanos, Venue};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::depth::{DepthDiff, DepthRules, DepthSync, DiffOutcome, SnapshotOutcome};
use super::parse::{parse_frame, Frame, SymbolMap};
use super::snapshot::{SnapshotFetcher, SnapshotReply};
use crate::backoff::{Backoff, BackoffConfig};
use crate::status::{
    self, BookStatus, BookSyncState, ConnectionState, ConnectionStatus, FeedStatus,
};

/// A TCP + TLS + WebSocket handshake that takes longer than this has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing a pong or a close frame must not hang the task.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Books whose depth stream stays quiet this long after connecting get their snapshot
/// anyway (a quiet symbol may not send a diff for minutes).
const QUIET_BOOK_SNAPSHOT_DELAY: Duration = Duration::from_secs(1);
/// At most one warning per this interval about malformed frames, per connection.
const MALFORMED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Everything one connection needs to know.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub venue: Venue,
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
}

/// The venue-wide counters, resolved once (the `metrics` facade lookup is not free).
#[derive(Clone)]
struct Counters {
    frames: Counter,
    processed: Counter,
    malformed: Counter,
    reconnects: Counter,
    gaps: Counter,
    resyncs: Counter,
    crossed: Counter,
}

impl Counters {
    fn new(venue: Venue) -> Self {
        let v = venue.as_str();
        Self {
            frames: metrics::counter!(status::METRIC_FRAMES, "venue" => v),
            processed: metrics::counter!(status::METRIC_MESSAGES_PROCESSED, "venue" => v),
            malformed: metrics::counter!(status::METRIC_MALFORMED, "venue" => v),
            reconnects: metrics::counter!(status::METRIC_RECONNECTS, "venue" => v),
            gaps: metrics::counter!(status::METRIC_GAPS, "venue" => v),
            resyncs: metrics::counter!(status::METRIC_RESYNCS, "venue" => v),
            crossed: metrics::counter!(status::METRIC_CROSSED, "venue" => v),
        }
    }
}

struct Book {
    sync: DepthSync,
    status: Arc<BookStatus>,
    /// A snapshot request is queued or in flight; don't queue another.
    snapshot_pending: bool,
    /// The resync under way, from the first snapshot request until the book is live.
    resync: Option<Resync>,
    /// Why the book is out of sync: the `reason` of the next resync span.
    lost_because: &'static str,
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
/// and keeps each book's sync state.
pub struct Feed {
    venue: Venue,
    name: String,
    /// The current `venue.connection` span: the parent of the resyncs it starts.
    span: AttemptSpan,
    symbols: SymbolMap,
    books: HashMap<InstrumentId, Book>,
    sink: Arc<dyn FeedSink>,
    conn: Arc<ConnectionStatus>,
    fetcher: SnapshotFetcher,
    replies: mpsc::UnboundedSender<SnapshotReply>,
    counters: Counters,
    malformed_since_log: u64,
    last_malformed_log: Option<Instant>,
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
        let rules = DepthRules::for_venue(config.venue);
        let books = if config.books {
            config
                .symbols
                .iter()
                .map(|s| {
                    let id = InstrumentId::new(config.venue, s);
                    let book_status = status
                        .book(&id)
                        .unwrap_or_else(|| status.register_book(&id));
                    let book = Book {
                        sync: DepthSync::new(rules, config.max_buffered_diffs),
                        status: book_status,
                        snapshot_pending: false,
                        resync: None,
                        lost_because: "initial sync",
                    };
                    (id, book)
                })
                .collect()
        } else {
            HashMap::new()
        };
        let conn = status.register_connection(config.venue, &config.name, config.streams);
        let (replies, rx) = mpsc::unbounded_channel();
        let feed = Self {
            venue: config.venue,
            name: config.name.clone(),
            span: AttemptSpan(tracing::Span::none()),
            symbols,
            books,
            sink,
            conn,
            fetcher,
            replies,
            counters: Counters::new(config.venue),
            malformed_since_log: 0,
            last_malformed_log: None,
        };
        (feed, rx)
    }

    /// One text frame, read at `receive_time`.
    pub fn on_text(&mut self, text: &str, receive_time: UnixNanos) {
        match parse_frame(text, &self.symbols, receive_time) {
            Ok(frame) => {
                self.counters.processed.increment(1);
                match frame {
                    Frame::Depth { instrument, diff } => self.on_diff(&instrument, diff),
                    Frame::Event(event) => self.sink.market_event(event),
                    Frame::Control | Frame::Ignored => {}
                }
            }
            Err(error) => self.malformed(&error),
        }
    }

    /// Counts and (rate-limited) logs a frame that could not be used.
    pub fn malformed(&mut self, error: &dyn std::fmt::Display) {
        self.conn.malformed();
        self.counters.malformed.increment(1);
        self.malformed_since_log += 1;
        let now = Instant::now();
        if self
            .last_malformed_log
            .is_none_or(|t| now.duration_since(t) >= MALFORMED_LOG_INTERVAL)
        {
            tracing::warn!(
                connection = %self.name,
                count = self.malformed_since_log,
                %error,
                "skipping malformed frame(s)"
            );
            self.last_malformed_log = Some(now);
            self.malformed_since_log = 0;
        } else {
            tracing::debug!(connection = %self.name, %error, "skipping malformed frame");
        }
    }

    fn on_diff(&mut self, instrument: &InstrumentId, diff: DepthDiff) {
        let Some(book) = self.books.get_mut(instrument) else {
            return;
        };
        book.status.message();
        match book.sync.on_diff(diff) {
            DiffOutcome::Buffered => self.ensure_snapshot(instrument),
            DiffOutcome::Stale => {}
            DiffOutcome::Apply(diff) => {
                let (et, rt) = (diff.exchange_time, diff.receive_time);
                let result = self.sink.book_update(
                    instrument,
                    BookUpdate::Delta(diff.into_levels()),
                    et,
                    rt,
                );
                if let Err(rejected) = result {
                    self.rejected(instrument, rejected);
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

    /// A snapshot fetch finished (or one attempt failed).
    pub fn on_snapshot_reply(&mut self, reply: SnapshotReply) {
        let (symbol, snapshot) = match reply {
            SnapshotReply::Failed { symbol, .. } => {
                if let Some(book) = self.book_by_symbol(&symbol) {
                    book.status.snapshot_failure();
                    if let Some(resync) = &mut book.resync {
                        resync.snapshots += 1;
                    }
                }
                return;
            }
            SnapshotReply::Fetched { symbol, snapshot } => (symbol, snapshot),
        };
        let Ok(instrument) = self.symbols.get(&symbol).cloned() else {
            return;
        };
        let Some(book) = self.books.get_mut(&instrument) else {
            return;
        };
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
                let update = BookUpdate::Snapshot(snapshot.into_levels());
                if let Err(rejected) = self.sink.book_update(&instrument, update, et, rt) {
                    return self.rejected(&instrument, rejected);
                }
                for diff in replay {
                    let (et, rt) = (diff.exchange_time, diff.receive_time);
                    let update = BookUpdate::Delta(diff.into_levels());
                    if let Err(rejected) = self.sink.book_update(&instrument, update, et, rt) {
                        return self.rejected(&instrument, rejected);
                    }
                }
                book.status.set_state(BookSyncState::Synced);
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

    /// The socket is gone: no book of this connection can be trusted any more.
    pub fn on_disconnect(&mut self, reason: &'static str) {
        for (instrument, book) in &mut self.books {
            let was_live = book.sync.is_live();
            book.sync.reset();
            book.lost_because = reason;
            self.sink.book_reset(instrument, reason);
            if was_live {
                book.status.resync();
                self.counters.resyncs.increment(1);
            }
        }
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

    /// Tell the sink, count the resync, fetch a new snapshot. The sync state was
    /// already moved back to buffering by the caller or by [`DepthSync`] itself.
    fn lose_sync(&mut self, instrument: &InstrumentId, reason: &'static str) {
        self.sink.book_reset(instrument, reason);
        if let Some(book) = self.books.get_mut(instrument) {
            book.status.resync();
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
                self.fetcher
                    .request(instrument.symbol.as_str(), &self.replies, &resync.span);
            }
        }
    }

    fn book_by_symbol(&mut self, symbol: &str) -> Option<&mut Book> {
        let id = self.symbols.get(symbol).ok()?.clone();
        self.books.get_mut(&id)
    }
}

/// A connection attempt's `venue.connection` span while it is under way. An attempt
/// whose task is aborted (the venue dropped rather than shut down) still closes its
/// span with an outcome; [`end_attempt`] takes the span out first, so the outcome is
/// recorded once either way.
struct AttemptSpan(tracing::Span);

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        self.0.record("outcome", "aborted");
    }
}

/// Ends the current attempt's `venue.connection` span with its outcome.
fn end_attempt(feed: &mut Feed, outcome: &str, reason: &str) {
    let span = std::mem::replace(&mut feed.span.0, tracing::Span::none());
    span.record("outcome", outcome);
    span.record("close.reason", reason);
    // A resync still in flight keeps its parent span open until it ends; leaving the
    // span once stamps the connection's own end time now, which the exporter uses.
    span.in_scope(|| {});
}

/// Why a session ended.
enum End {
    Shutdown,
    /// Proactive reconnect before Binance's 24 h cut: reconnect without backoff.
    Aged,
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
    loop {
        if *shutdown.borrow() {
            return;
        }
        if attempt > 0 {
            feed.conn.reconnected();
            feed.counters.reconnects.increment(1);
        }
        attempt += 1;
        feed.span = AttemptSpan(tracing::info_span!(
            "venue.connection",
            venue = config.venue.as_str(),
            connection.name = config.name.as_str(),
            connection.streams = config.streams,
            connection.attempt = attempt,
            outcome = tracing::field::Empty,
            close.reason = tracing::field::Empty,
        ));
        feed.conn.set_state(ConnectionState::Connecting);
        let connect = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(config.url.as_str()),
        );
        let connected = tokio::select! {
            r = connect => r,
            _ = shutdown.changed() => return end_attempt(&mut feed, "shutdown", "venue shutting down"),
        };
        let lost = match connected {
            Ok(Ok((ws, _response))) => {
                feed.conn.set_state(ConnectionState::Connected);
                tracing::info!(connection = %config.name, streams = config.streams, "connected");
                let end = session(
                    ws,
                    &config,
                    &mut feed,
                    &mut replies,
                    &mut shutdown,
                    &mut backoff,
                )
                .await;
                match end {
                    End::Shutdown => {
                        feed.on_disconnect("venue shutting down");
                        return end_attempt(&mut feed, "shutdown", "venue shutting down");
                    }
                    End::Aged => {
                        tracing::info!(connection = %config.name, "reconnecting before the 24 h limit");
                        feed.on_disconnect("scheduled reconnect");
                        end_attempt(&mut feed, "aged", "scheduled reconnect");
                        continue;
                    }
                    End::Lost(reason) => {
                        feed.on_disconnect("connection lost");
                        end_attempt(&mut feed, "lost", &reason);
                        reason
                    }
                }
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                end_attempt(&mut feed, "connect_failed", &reason);
                reason
            }
            Err(_) => {
                let reason = "connect timed out".to_owned();
                end_attempt(&mut feed, "connect_failed", &reason);
                reason
            }
        };
        let delay = backoff.next_delay();
        tracing::warn!(connection = %config.name, reason = %lost, retry_in = ?delay, "connection lost");
        feed.conn.set_state(ConnectionState::Backoff);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn session<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    config: &ConnectionConfig,
    feed: &mut Feed,
    replies: &mut mpsc::UnboundedReceiver<SnapshotReply>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> End
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let connected_at = Instant::now();
    let jitter = rand::Rng::random_range(&mut rand::rng(), 0.95..=1.0);
    let age_limit =
        tokio::time::sleep_until(connected_at + config.max_connection_age.mul_f64(jitter));
    let stall = tokio::time::sleep(config.stall_timeout);
    let quiet_books = tokio::time::sleep(QUIET_BOOK_SNAPSHOT_DELAY);
    tokio::pin!(age_limit, stall, quiet_books);
    let mut quiet_books_done = false;
    let mut healthy = false;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
                return End::Shutdown;
            }
            msg = ws.next() => {
                let receive_time = UnixNanos::now();
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    None => return End::Lost("stream ended".to_owned()),
                };
                stall.as_mut().reset(Instant::now() + config.stall_timeout);
                feed.conn.frame();
                feed.counters.frames.increment(1);
                match msg {
                    Message::Text(text) => {
                        if !healthy {
                            // Data flows: this connection works, so the next failure
                            // starts backing off from the initial delay again.
                            healthy = true;
                            backoff.reset();
                        }
                        feed.on_text(text.as_str(), receive_time);
                    }
                    Message::Ping(_) => {
                        // tungstenite queued the pong; push it out now.
                        match tokio::time::timeout(WRITE_TIMEOUT, ws.flush()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return End::Lost(format!("pong failed: {e}")),
                            Err(_) => return End::Lost("pong timed out".to_owned()),
                        }
                    }
                    Message::Close(frame) => {
                        return End::Lost(format!("closed by server: {frame:?}"));
                    }
                    Message::Binary(_) => feed.malformed(&"unexpected binary frame"),
                    Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            Some(reply) = replies.recv() => feed.on_snapshot_reply(reply),
            _ = &mut stall => {
                return End::Lost(format!("no frame for {:?}", config.stall_timeout));
            }
            _ = &mut age_limit => {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
                return End::Aged;
            }
            _ = &mut quiet_books, if !quiet_books_done => {
                quiet_books_done = true;
                feed.request_missing_snapshots();
            }
        }
    }
}
