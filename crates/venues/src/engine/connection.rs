//! One WebSocket connection of an in-stream venue: its socket, its books, its streams.
//!
//! A connection carries a fixed set of symbols ([`ConnectionPlan`]) and owns everything
//! about them, so every frame of an instrument is handled on one task in order, with no
//! locks. The loop, the same for every venue:
//! * **Connect and subscribe.** The plan's subscribe frames go out one by one, spaced by
//!   the venue's request-rate limit; the venue answers each book subscription with a
//!   snapshot, which starts that book ([`BookSync`]).
//! * **Read.** Each text frame goes to the venue's [`FrameParser`]; its outputs are
//!   judged here: book messages by their sequence (then applied by the sink under the
//!   venue's checks: its depth, the message's checksum), numbered trades by a
//!   [`StreamSequencer`] (repeats dropped, regressions counted), a connection-wide
//!   sequence number ([`Parsed::ConnectionSequence`]) for continuity of everything.
//!   Malformed frames are counted and skipped.
//! * **Resync one book.** A gap, or a book the sink refuses (a checksum mismatch,
//!   crossed) resets that book alone (the sink stops serving it; subscribers get a
//!   `BookReset`) and sends the venue's resubscribe frames for it; its next snapshot
//!   starts it again. A venue that cannot resubscribe one book has the connection
//!   replaced instead.
//! * **Stay alive.** WebSocket pings are answered at once; the venue's application
//!   keepalive ([`Keepalive`]) is sent when nothing was sent for its period; no frame
//!   for `stall_timeout` means the connection is dead (a half-open TCP connection can
//!   stay silent forever).
//! * **Lose and come back.** When the socket goes away every book of the connection is
//!   reset and every instrument's streams are reported interrupted
//!   ([`FeedGap::Interrupted`]) from the last frame received until the next connection
//!   is up ([`FeedGap::Resumed`]); reconnects back off exponentially with jitter and the
//!   backoff only starts over after [`HEALTHY_AFTER`] of healthy delivery.
//!
//! [`Conn`] is the synchronous part (frames in, sink calls and frames to send out), so
//! it is tested without a socket.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use metrics::Counter;
use raven_model::feed::{BookRejected, BookUpdate, FeedGap, FeedSink};
use raven_model::{EventKind, InstrumentId, MarketEvent, UnixNanos, Venue};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::book::{BookSync, Loss, Step};
use super::malformed::MalformedLog;
use super::protocol::{
    book_checks, BookMessage, Channels, ConnectionPlan, FrameParser, Keepalive, Parsed,
    VenueProtocol,
};
use super::symbols::BuildSymbolHasher;
use crate::backoff::{Backoff, BackoffConfig};
use crate::sequencer::{Delivery, Source, StreamSequencer};
use crate::status::{
    self, BookStatus, BookSyncState, ConnectionState, ConnectionStatus, FeedStatus,
};
use crate::supervise::HEALTHY_AFTER;

/// A TCP + TLS + WebSocket handshake that takes longer than this has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing a frame must not hang the task.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Numbered trades a sequencer may hold (only during a hand-over, which in-stream
/// venues do not do; the bound is the sequencer's contract).
const MAX_HELD: usize = 10_000;

/// What one connection needs besides its plan.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub venue: Venue,
    /// Used in logs and the status registry, e.g. `okx#0`.
    pub name: String,
    pub books: bool,
    /// What was asked for: a venue whose one stream carries several (Bybit's linear
    /// tickers are BBO and funding) has the rest dropped here.
    pub channels: Channels,
    pub stall_timeout: Duration,
    pub backoff: BackoffConfig,
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
    checksums_verified: Counter,
    checksum_mismatches: Counter,
    refused: Counter,
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
            checksums_verified: metrics::counter!(status::METRIC_CHECKSUMS, "venue" => v, "outcome" => "verified"),
            checksum_mismatches: metrics::counter!(status::METRIC_CHECKSUMS, "venue" => v, "outcome" => "mismatch"),
            refused: metrics::counter!(status::METRIC_REFUSED, "venue" => v),
        }
    }
}

struct Book {
    sync: BookSync,
    status: Arc<BookStatus>,
}

/// What the connection loop must do after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Replace the connection: what it carries can no longer be trusted as a whole.
    Reconnect(String),
}

/// The synchronous heart of a connection: frames in; sink calls, frames to send, and
/// a verdict out.
pub struct Conn<P: VenueProtocol> {
    name: String,
    protocol: Arc<P>,
    parser: P::Parser,
    /// By instrument, looked up once per book message.
    books: HashMap<InstrumentId, Book, BuildSymbolHasher>,
    channels: Channels,
    trades: HashMap<InstrumentId, StreamSequencer<MarketEvent>>,
    symbols: Vec<InstrumentId>,
    sink: Arc<dyn FeedSink>,
    conn: Arc<ConnectionStatus>,
    counters: Counters,
    malformed: MalformedLog,
    /// Frames waiting to be sent, in order.
    outbox: VecDeque<String>,
    connection_sequence: Option<u64>,
    /// When the last frame was received: where an interruption begins.
    last_frame: UnixNanos,
    /// Reused for the parser's outputs and the sequencers' deliveries.
    parsed: Vec<Parsed>,
    deliveries: Vec<Delivery<MarketEvent>>,
}

impl<P: VenueProtocol> Conn<P> {
    /// Registers the connection (and its books, when `settings.books`) in `status`.
    pub fn new(
        protocol: Arc<P>,
        plan: &ConnectionPlan,
        settings: &ConnectionSettings,
        sink: Arc<dyn FeedSink>,
        status: &FeedStatus,
    ) -> Self {
        let venue = settings.venue;
        let symbols: Vec<InstrumentId> = plan
            .symbols
            .iter()
            .map(|s| InstrumentId::new(venue, s))
            .collect();
        let books = if settings.books {
            symbols
                .iter()
                .map(|id| {
                    let book_status = status.book(id).unwrap_or_else(|| status.register_book(id));
                    let book = Book {
                        sync: BookSync::new(),
                        status: book_status,
                    };
                    (id.clone(), book)
                })
                .collect()
        } else {
            HashMap::default()
        };
        let trades = symbols
            .iter()
            .map(|id| (id.clone(), StreamSequencer::new(false, MAX_HELD)))
            .collect();
        let conn =
            status.register_connection(venue, &settings.name, plan.streams, settings.stall_timeout);
        let parser = protocol.parser(&plan.symbols);
        Self {
            name: settings.name.clone(),
            protocol,
            parser,
            books,
            channels: settings.channels,
            trades,
            symbols,
            sink,
            conn,
            counters: Counters::new(venue),
            malformed: MalformedLog::new(venue),
            outbox: VecDeque::new(),
            connection_sequence: None,
            last_frame: UnixNanos::default(),
            parsed: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    /// The socket is open: queue the plan's subscriptions; events flow again from `at`
    /// (announced when this follows a disconnect).
    pub fn on_connected(&mut self, plan: &ConnectionPlan, at: UnixNanos, after_loss: bool) {
        self.outbox.clear();
        self.outbox.extend(plan.subscribe.iter().cloned());
        self.connection_sequence = None;
        if after_loss {
            for instrument in &self.symbols {
                self.sink.feed_gap(instrument, FeedGap::Resumed { at }, at);
            }
        }
    }

    /// The next frame to send, if any.
    pub fn next_outgoing(&mut self) -> Option<String> {
        self.outbox.pop_front()
    }

    pub fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// One text frame, read at `receive_time`.
    pub fn on_text(&mut self, text: &str, receive_time: UnixNanos) -> Verdict {
        self.last_frame = self.last_frame.max(receive_time);
        let mut parsed = std::mem::take(&mut self.parsed);
        let verdict = match self.parser.parse(text, receive_time, &mut parsed) {
            Ok(()) => {
                self.counters.processed.increment(1);
                let mut verdict = Verdict::Continue;
                for output in parsed.drain(..) {
                    if let Verdict::Reconnect(reason) = self.on_parsed(output, receive_time) {
                        verdict = Verdict::Reconnect(reason);
                    }
                }
                verdict
            }
            Err(error) => {
                parsed.clear();
                self.malformed(&error);
                Verdict::Continue
            }
        };
        self.parsed = parsed;
        verdict
    }

    /// Counts and (rate-limited) logs a frame that could not be used.
    pub fn malformed(&mut self, error: &dyn std::fmt::Display) {
        self.conn.malformed();
        self.malformed.record(&self.name, error);
    }

    fn on_parsed(&mut self, output: Parsed, receive_time: UnixNanos) -> Verdict {
        match output {
            Parsed::Book(msg) => return self.on_book(msg),
            Parsed::Event(event) => self.on_event(event),
            Parsed::ConnectionSequence(n) => {
                let expected = self.connection_sequence.map(|last| last.wrapping_add(1));
                self.connection_sequence = Some(n);
                if let Some(expected) = expected.filter(|e| *e != n) {
                    tracing::warn!(connection = %self.name, expected, got = n, "connection sequence jumped; reconnecting");
                    self.counters.gaps.increment(1);
                    return Verdict::Reconnect(format!(
                        "connection sequence jumped from {} to {n}",
                        expected.wrapping_sub(1)
                    ));
                }
            }
            Parsed::Control => {}
            Parsed::Refused(reason) => {
                self.counters.refused.increment(1);
                tracing::warn!(connection = %self.name, %reason, "the exchange refused a request");
            }
        }
        let _ = receive_time;
        Verdict::Continue
    }

    fn on_book(&mut self, msg: BookMessage) -> Verdict {
        let instrument = msg.instrument.clone();
        let (et, rt) = (msg.exchange_time, msg.receive_time);
        let Some(book) = self.books.get_mut(&instrument) else {
            return Verdict::Continue;
        };
        book.status.message();
        let checks = book_checks(&*self.protocol, msg.checksum);
        match book.sync.on_message(msg) {
            Step::Apply(update) => {
                let snapshot = matches!(update, BookUpdate::Snapshot { .. });
                match self.sink.book_update(&instrument, update, &checks, et, rt) {
                    Ok(()) => {
                        if checks.checksum.is_some() {
                            book.status.checksums_verified(1);
                            self.counters.checksums_verified.increment(1);
                        }
                        if snapshot {
                            book.status.set_state(BookSyncState::Synced);
                            tracing::debug!(connection = %self.name, %instrument, "book synced");
                        }
                        Verdict::Continue
                    }
                    Err(BookRejected::Checksum { expected, computed }) => {
                        tracing::warn!(connection = %self.name, %instrument, expected, computed, "book checksum mismatch, resyncing the book");
                        book.status.checksum_mismatch();
                        self.counters.checksum_mismatches.increment(1);
                        self.resync(&instrument, "checksum mismatch")
                    }
                    Err(rejected) => self.rejected(&instrument, rejected),
                }
            }
            Step::Waiting => Verdict::Continue,
            Step::Stale => {
                self.counters.duplicates.increment(1);
                Verdict::Continue
            }
            Step::Lost(loss) => {
                let Loss::Gap { book: at, sequence } = loss;
                tracing::info!(connection = %self.name, %instrument, book = at, ?sequence, "book sequence gap, resyncing the book");
                book.status.gap();
                self.counters.gaps.increment(1);
                self.resync(&instrument, loss.reason())
            }
        }
    }

    fn rejected(&mut self, instrument: &InstrumentId, rejected: BookRejected) -> Verdict {
        tracing::warn!(connection = %self.name, %instrument, %rejected, "sink rejected a book update, resyncing");
        if let Some(book) = self.books.get_mut(instrument) {
            book.status.crossed();
            book.sync.reset();
        }
        self.counters.crossed.increment(1);
        self.resync(instrument, "book rejected by sink")
    }

    /// Resets one book and asks the venue for a fresh snapshot of it; a venue that
    /// cannot has the whole connection replaced.
    fn resync(&mut self, instrument: &InstrumentId, reason: &'static str) -> Verdict {
        self.sink.book_reset(instrument, reason);
        if let Some(book) = self.books.get_mut(instrument) {
            book.sync.reset();
            book.status.resync();
        }
        self.counters.resyncs.increment(1);
        let frames = self.protocol.resubscribe_book(instrument.symbol.as_str());
        if frames.is_empty() {
            return Verdict::Reconnect(format!(
                "{reason} on {instrument}, and the venue cannot resend one book"
            ));
        }
        self.outbox.extend(frames);
        Verdict::Continue
    }

    /// Numbered trades go through their sequencer (repeats dropped, regressions
    /// counted); every other event is delivered as it comes.
    fn on_event(&mut self, event: MarketEvent) {
        let (wanted, key) = match &event.kind {
            EventKind::Trade(t) => (self.channels.trades, t.trade_id.number()),
            EventKind::Bbo(_) => (self.channels.bbo, None),
            EventKind::MarkPrice(_) => (self.channels.funding, None),
            EventKind::Liquidation(_) => (self.channels.liquidations, None),
        };
        if !wanted {
            return;
        }
        let (Some(key), Some(sequencer)) = (key, self.trades.get_mut(&event.instrument)) else {
            return self.sink.market_event(event);
        };
        let before = (sequencer.duplicates(), sequencer.regressions());
        let mut out = std::mem::take(&mut self.deliveries);
        sequencer.accept(key, Source::Primary, event, &mut out);
        let duplicates = sequencer.duplicates() - before.0;
        if duplicates > 0 {
            self.counters.duplicates.increment(duplicates);
        }
        if sequencer.regressions() > before.1 {
            self.counters.out_of_order.increment(1);
        }
        for d in out.drain(..) {
            if let Delivery::Event(e) = d {
                self.sink.market_event(e);
            }
        }
        self.deliveries = out;
    }

    /// The socket is gone: no book of this connection can be trusted, and every
    /// instrument's events may be missing from the last frame on.
    pub fn on_disconnect(&mut self, reason: &str, detail: &str) {
        let since = self.last_frame;
        for (instrument, book) in &mut self.books {
            let was_live = book.sync.is_live();
            book.sync.reset();
            self.sink.book_reset(instrument, reason);
            if was_live {
                book.status.resync();
                self.counters.resyncs.increment(1);
            }
        }
        for sequencer in self.trades.values_mut() {
            sequencer.broken();
        }
        let gap = FeedGap::Interrupted {
            reason: format!("{reason}: {detail}"),
            since,
        };
        let now = UnixNanos::now();
        for instrument in &self.symbols {
            self.sink.feed_gap(instrument, gap.clone(), now);
        }
    }
}

/// A connection's task failed (panicked) and took its [`Conn`] with it: reports what
/// `on_disconnect` would have.
pub fn task_failed(
    venue: Venue,
    plan: &ConnectionPlan,
    books: bool,
    sink: &dyn FeedSink,
    status: &FeedStatus,
    reason: &str,
) {
    let now = UnixNanos::now();
    for symbol in &plan.symbols {
        let instrument = InstrumentId::new(venue, symbol);
        if books {
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

/// Why a session ended.
enum End {
    Shutdown,
    Lost(String),
}

/// Runs the connection until `shutdown` turns true.
pub async fn run<P: VenueProtocol>(
    plan: ConnectionPlan,
    settings: ConnectionSettings,
    mut conn: Conn<P>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(settings.backoff);
    let keepalive = conn.protocol.keepalive();
    let status = Arc::clone(&conn.conn);
    let mut attempt: u64 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if attempt > 0 {
            conn.conn.reconnected();
            conn.counters.reconnects.increment(1);
        }
        attempt += 1;
        conn.conn.set_state(ConnectionState::Connecting);
        let connected = tokio::select! {
            r = connect(&plan.url) => r,
            _ = shutdown.changed() => return,
        };
        let ws = match connected {
            Ok(ws) => ws,
            Err(reason) => {
                if !wait_to_retry(&settings, &status, &mut backoff, &reason, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        conn.on_connected(&plan, UnixNanos::now(), attempt > 1);
        conn.conn.set_state(ConnectionState::Connected);
        tracing::info!(connection = %settings.name, streams = plan.streams, "connected");
        match session(
            ws,
            &plan,
            &settings,
            &mut conn,
            keepalive.as_ref(),
            &mut shutdown,
            &mut backoff,
        )
        .await
        {
            End::Shutdown => {
                conn.on_disconnect("venue shutting down", "shutdown");
                return;
            }
            End::Lost(reason) => {
                conn.on_disconnect("connection lost", &reason);
                if !wait_to_retry(&settings, &status, &mut backoff, &reason, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Backs off before the next connect attempt; false when shutting down meanwhile.
async fn wait_to_retry(
    settings: &ConnectionSettings,
    conn: &ConnectionStatus,
    backoff: &mut Backoff,
    reason: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let delay = backoff.next_delay();
    tracing::warn!(connection = %settings.name, reason, retry_in = ?delay, "connection lost");
    conn.set_state(ConnectionState::Backoff);
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.changed() => false,
    }
}

async fn send(ws: &mut Ws, frame: String) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::text(frame))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err("send timed out".to_owned()),
    }
}

async fn session<P: VenueProtocol>(
    mut ws: Ws,
    plan: &ConnectionPlan,
    settings: &ConnectionSettings,
    conn: &mut Conn<P>,
    keepalive: Option<&Keepalive>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> End {
    let connected_at = Instant::now();
    let stall = tokio::time::sleep(settings.stall_timeout);
    // The pacing of outgoing frames: the next may leave at this instant.
    let next_send = tokio::time::sleep(Duration::ZERO);
    let keepalive_every = keepalive.map_or(Duration::from_secs(3600), |k| k.every);
    let keepalive_due = tokio::time::sleep(keepalive_every);
    tokio::pin!(stall, next_send, keepalive_due);
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
                conn.conn.frame();
                conn.counters.frames.increment(1);
                stall.as_mut().reset(Instant::now() + settings.stall_timeout);
                match msg {
                    Message::Text(text) => {
                        if let Verdict::Reconnect(reason) = conn.on_text(text.as_str(), receive_time) {
                            let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
                            return End::Lost(reason);
                        }
                        if !healthy && connected_at.elapsed() >= HEALTHY_AFTER {
                            healthy = true;
                            backoff.reset();
                        }
                    }
                    Message::Ping(_) => {
                        // tungstenite queued the pong; push it out now.
                        match tokio::time::timeout(WRITE_TIMEOUT, ws.flush()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return End::Lost(format!("pong failed: {e}")),
                            Err(_) => return End::Lost("pong timed out".to_owned()),
                        }
                    }
                    Message::Close(frame) => return End::Lost(format!("closed by server: {frame:?}")),
                    Message::Binary(_) => conn.malformed(&"unexpected binary frame"),
                    Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            _ = &mut next_send, if conn.has_outgoing() => {
                if let Some(frame) = conn.next_outgoing() {
                    if let Err(reason) = send(&mut ws, frame).await {
                        return End::Lost(reason);
                    }
                    let now = Instant::now();
                    next_send.as_mut().reset(now + plan.send_interval);
                    keepalive_due.as_mut().reset(now + keepalive_every);
                }
            }
            _ = &mut keepalive_due, if keepalive.is_some() => {
                if let Some(k) = keepalive {
                    if let Err(reason) = send(&mut ws, k.frame.clone()).await {
                        return End::Lost(reason);
                    }
                }
                keepalive_due.as_mut().reset(Instant::now() + keepalive_every);
            }
            _ = &mut stall => {
                return End::Lost(format!("no frame for {:?}", settings.stall_timeout));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kraken::{KrakenConfig, KrakenProtocol, DEFAULT_WS_URL, VENUES};
    use parking_lot::Mutex;
    use raven_model::book::OrderBook;
    use raven_model::feed::{BookChecks, BookUpdate};

    /// Keeps real books and applies each update under its checks, as the hub does.
    #[derive(Default)]
    struct Sink {
        books: Mutex<HashMap<InstrumentId, OrderBook>>,
        resets: Mutex<Vec<String>>,
    }

    impl FeedSink for Sink {
        fn market_event(&self, _event: MarketEvent) {}

        fn book_update(
            &self,
            instrument: &InstrumentId,
            mut update: BookUpdate,
            checks: &BookChecks,
            _exchange_time: UnixNanos,
            _receive_time: UnixNanos,
        ) -> Result<(), BookRejected> {
            let mut books = self.books.lock();
            let book = books.entry(instrument.clone()).or_default();
            book.apply_checked(&mut update, checks)
        }

        fn book_reset(&self, instrument: &InstrumentId, reason: &str) {
            self.books.lock().remove(instrument);
            self.resets.lock().push(reason.to_owned());
        }

        fn feed_gap(&self, _instrument: &InstrumentId, _gap: FeedGap, _receive_time: UnixNanos) {}
    }

    /// Kraken's documented checksum example (asks 0.05005…0.05050, bids 0.05000…0.04950,
    /// each 0.00000500: checksum 974947235) as a depth-10 snapshot of XBT/USD.
    fn snapshot() -> String {
        let level = |p: u32| format!(r#"["0.{p:05}","0.00000500","1582905487.0"]"#);
        let asks: Vec<String> = (0..10).map(|i| level(5005 + 5 * i)).collect();
        let bids: Vec<String> = [5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955, 4950]
            .into_iter()
            .map(level)
            .collect();
        format!(
            r#"[0,{{"as":[{}],"bs":[{}]}},"book-10","XBT/USD"]"#,
            asks.join(","),
            bids.join(",")
        )
    }

    #[test]
    fn the_sink_checks_each_checksum_once_and_a_mismatch_resyncs_that_book() {
        let venue = Venue::new(VENUES[0]).unwrap();
        let config = KrakenConfig {
            book_depth: 10,
            ..KrakenConfig::default()
        };
        let protocol = Arc::new(KrakenProtocol::new(venue, DEFAULT_WS_URL, &config));
        let channels = Channels {
            book: true,
            ..Channels::default()
        };
        let plan = protocol.plan(&["XBT/USD".to_owned()], &channels).remove(0);
        let settings = ConnectionSettings {
            venue,
            name: "kraken#test".to_owned(),
            books: true,
            channels,
            stall_timeout: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
        };
        let sink = Arc::new(Sink::default());
        let status = FeedStatus::new();
        let mut conn = Conn::new(protocol, &plan, &settings, sink.clone(), &status);
        conn.on_connected(&plan, UnixNanos(1), false);
        while conn.next_outgoing().is_some() {}
        let book = || status.snapshot().books.remove(0);

        assert_eq!(conn.on_text(&snapshot(), UnixNanos(2)), Verdict::Continue);
        assert_eq!(book().state, BookSyncState::Synced);
        // A far ask the depth-10 book drops again: the top 10 keep the example's checksum.
        let far = r#"[0,{"a":[["0.06000","1.00000000","1582905488.0"]],"c":"974947235"},"book-10","XBT/USD"]"#;
        assert_eq!(conn.on_text(far, UnixNanos(3)), Verdict::Continue);
        assert_eq!(
            (book().checksums_verified, book().checksum_mismatches),
            (1, 0)
        );
        assert_eq!(sink.books.lock().values().next().unwrap().len(), (10, 10));
        // A new best bid with the old checksum: Raven's book is not the venue's.
        let wrong = r#"[0,{"b":[["0.05001","1.00000000","1582905489.0"]],"c":"974947235"},"book-10","XBT/USD"]"#;
        assert_eq!(conn.on_text(wrong, UnixNanos(4)), Verdict::Continue);
        let info = book();
        assert_eq!((info.checksums_verified, info.checksum_mismatches), (1, 1));
        assert_eq!((info.state, info.resyncs), (BookSyncState::Resyncing, 1));
        assert_eq!(*sink.resets.lock(), ["checksum mismatch"]);
        // The venue is asked for a fresh snapshot of that book (unsubscribe, subscribe).
        assert_eq!(std::iter::from_fn(|| conn.next_outgoing()).count(), 2);
        // Until it comes, updates of the book go nowhere.
        assert_eq!(conn.on_text(far, UnixNanos(5)), Verdict::Continue);
        assert!(sink.books.lock().is_empty());
        assert_eq!(book().checksums_verified, 1);
    }
}
