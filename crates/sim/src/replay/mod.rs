//! Replay mode: a recorded exchange session played back as if it were live, on the
//! recorded venue's own protocol.
//!
//! A capture is the only ground truth available offline, so replay is how connectors are
//! checked for byte-level compatibility. The capture's header names the exchange, and
//! one module per venue family says what differs ([`Protocol`]): [`binance`],
//! [`coinbase`], [`bybit`], [`okx`], [`kraken`]. Everything else is shared:
//!
//! * **Endpoints.** Every recorded `connect` path (`/stream`, `/v5/public/linear`,
//!   `/ws/v5/public`, `/`) is served on the one listener. A subscription key is
//!   (endpoint, channel, symbol): Bybit's `orderbook.200.BTCUSDT` on `/spot` is not the
//!   one on `/linear`.
//! * **Frames** (`recv` lines) are played in recorded order by one player whose cursor
//!   is shared by all connections, like a live exchange: a client that reconnects
//!   continues where the stream is, not at the start. The venue module names each
//!   frame's key; frames that are not market data (acks, pongs, heartbeats, status
//!   messages) are not played, the simulator writes its own when a client asks. Each
//!   connection gets the frames of the keys it subscribed, after its ack; the player
//!   waits for slow readers (back-pressure) instead of dropping frames, so a test sees
//!   every recorded frame.
//! * **Start.** The player starts once live connections hold every subscription the
//!   recording made before its first frame (several connections, as recorded), or
//!   [`SimArgs::start_grace`](crate::SimArgs::start_grace) after the first
//!   subscription when a client wants fewer channels. Later it waits only while no
//!   connection has subscriptions.
//! * **Books.** The simulator keeps its own copy of every recorded book ([`SimBook`]):
//!   the recorded snapshot plus every delta played so far, at the venue's depth, in the
//!   exchange's own text. A client that subscribes to a book after its recorded
//!   snapshot went by gets a fresh snapshot written from it (sequence fields set to the
//!   last played value) and then the live deltas, which join it exactly: the snapshot
//!   reflects precisely the frames before the first one the connection will receive
//!   (both are decided under one lock with the player's cursor). Binance has no
//!   snapshots on its streams; its REST depth answers come from the same books.
//! * **REST** is answered from the recorded `http` lines ([`rest`]), Binance keeping its
//!   own rules (see [`binance`]).
//! * **Faults** (see [`crate::control`]): a deleted book delta is still applied to the
//!   simulator's book, so a resubscription or a REST snapshot recovers; a corrupted
//!   checksum changes only the text sent, and so does a crossing level: the venue's
//!   module writes it into the delta's text from the simulator's book after the delta
//!   (`Protocol::cross`), which never holds it.
//! * After the last frame the connections stay open (with periodic pings and the
//!   venue's heartbeats).

pub(crate) mod binance;
mod book;
pub(crate) mod bybit;
mod coinbase;
mod kraken;
mod okx;
mod rest;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use raven_model::book::OrderBook;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::capture::{Capture, CaptureEvent};
use crate::server::{Api, Batch, Frame};
use crate::App;

pub(crate) use binance::Binance;
pub(crate) use book::{BookFrame, RecordedLevel, SimBook};

/// A subscription key within one endpoint: the venue's channel and symbol, as the venue
/// spells them (`orderbook.200` + `BTCUSDT`, `books` + `BTC-USDT`, `book-1000` +
/// `XBT/EUR`, `level2` + `BTC-USD`, `depth@100ms` + `nknusdt`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sub {
    pub channel: String,
    pub symbol: String,
}

impl Sub {
    pub fn new(channel: impl Into<String>, symbol: impl Into<String>) -> Sub {
        Sub {
            channel: channel.into(),
            symbol: symbol.into(),
        }
    }
}

/// What one recorded frame is.
pub(crate) enum Recorded {
    /// Market data of one subscription key; a book frame also carries its levels.
    Data { sub: Sub, book: Option<BookFrame> },
    /// Not market data (acks, pongs, heartbeats, status): the simulator writes its own.
    Control,
}

/// The request id a client attached, echoed in the venue's reply.
pub(crate) type ReqId = Option<serde_json::Value>;

/// What a client's text frame asks for.
pub(crate) enum Request {
    Subscribe(Vec<Sub>, ReqId),
    Unsubscribe(Vec<Sub>, ReqId),
    /// Answer with this text (a pong, a listing, an error in the venue's shape).
    Reply(String),
}

/// One client connection, as the venue modules see it.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    /// Unique per simulator (Bybit's `conn_id`, Kraken's `connectionID`).
    pub id: u64,
    /// The endpoint path the client connected to.
    pub path: String,
    /// The connection's subscriptions in the order they were made.
    pub subs: Vec<Sub>,
    /// Messages numbered so far on this connection (Coinbase's `sequence_num`).
    pub seq: u64,
    /// The recording's clock at the player's cursor (Unix seconds).
    pub clock: f64,
}

impl ConnCtx {
    pub fn new(id: u64, path: &str) -> ConnCtx {
        ConnCtx {
            id,
            path: path.to_owned(),
            subs: Vec::new(),
            seq: 0,
            clock: 0.0,
        }
    }

    /// The next message number of this connection.
    pub fn next_seq(&mut self) -> u64 {
        let n = self.seq;
        self.seq += 1;
        n
    }
}

/// A REST answer in the venue's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestAnswer {
    pub status: u16,
    pub body: String,
    /// `Content-Type: application/json` (else text/plain).
    pub json: bool,
    /// Send `Retry-After: 1`.
    pub retry_after: bool,
}

impl RestAnswer {
    pub fn json(status: u16, body: impl Into<String>) -> RestAnswer {
        RestAnswer {
            status,
            body: body.into(),
            json: true,
            retry_after: false,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> RestAnswer {
        RestAnswer {
            json: false,
            ..RestAnswer::json(status, body)
        }
    }

    pub fn retry_after(self) -> RestAnswer {
        RestAnswer {
            retry_after: true,
            ..self
        }
    }
}

/// What differs between venue families. Each module implements it with the same small
/// shape: read a recorded frame, read a client frame, write acks and snapshots, find
/// the checksum, and the few per-connection habits of its venue.
pub(crate) trait Protocol: Send + Sync {
    /// The key of a recorded `recv` frame and, for a book frame, its levels.
    fn recorded(&self, text: &str) -> Result<Recorded>;

    /// The book a book channel feeds, within its endpoint and symbol: channels that
    /// are views of one book share it (Binance `depth` and `depth@100ms`).
    fn book_name<'a>(&self, channel: &'a str) -> &'a str {
        channel
    }

    /// Levels per side the venue keeps for a book channel (`None`: the whole book).
    fn depth(&self, _channel: &str) -> Option<usize> {
        None
    }

    /// Subscriptions a connection makes with its URL's query (Binance `streams=`).
    fn url_subscriptions(&self, _query: &str) -> Vec<Sub> {
        Vec::new()
    }

    /// Reads a client's text frame.
    fn request(&self, text: &str, ctx: &ConnCtx) -> Request;

    /// The replies to a (un)subscription, as the venue writes them; `ctx.subs` already
    /// holds the connection's subscriptions after it.
    fn acks(&self, subscribe: bool, subs: &[Sub], id: &ReqId, ctx: &mut ConnCtx) -> Vec<String>;

    /// A snapshot frame of `book` for a client subscribing to `sub` late.
    fn snapshot(&self, _sub: &Sub, _book: &SimBook, _ctx: &mut ConnCtx) -> Option<String> {
        None
    }

    /// True when the venue's book frames carry a checksum.
    fn has_checksum(&self) -> bool {
        false
    }

    /// `text` with its book checksum changed (`None`: the frame has none).
    fn corrupt_checksum(&self, _text: &str) -> Option<String> {
        None
    }

    /// The book delta `text` with one more level that crosses `book` (the simulator's
    /// book with the delta applied), written as the venue writes its levels: a bid at
    /// the best ask, else an ask at the best bid (see [`cross_levels`]). `None`: nothing
    /// to cross (an empty book, or the frame lacks the side).
    fn cross(&self, text: &str, book: &SimBook) -> Option<String>;

    /// A frame no client of the venue can read: the start of one of its data frames,
    /// cut short, as a broken connection or a buggy server would deliver it.
    fn malformed(&self) -> &'static str;

    /// A recorded frame as this connection must see it (`None`: unchanged).
    fn rewrite(&self, _text: &str, _ctx: &mut ConnCtx) -> Option<String> {
        None
    }

    /// A frame of a subscribed key was deleted by a fault: what the connection's
    /// numbering must show (Coinbase: a hole in `sequence_num`).
    fn deleted(&self, _ctx: &mut ConnCtx) {}

    /// The frame the venue sends when a connection opens.
    fn greeting(&self, _ctx: &ConnCtx) -> Option<String> {
        None
    }

    /// The frame the venue sends on a subscribed connection that was quiet this long.
    fn heartbeat(&self) -> Option<(Duration, &'static str)> {
        None
    }

    /// The venue's answer to a request over its rate limit.
    fn rate_limited(&self) -> RestAnswer;

    /// The venue's answer to an unknown REST path.
    fn not_found(&self) -> RestAnswer {
        RestAnswer::text(404, "Not Found")
    }

    /// A recorded symbol as [`crate::Sim::symbols`] lists it.
    fn display_symbol(&self, symbol: &str) -> String {
        symbol.to_owned()
    }
}

/// The crossing level of [`Protocol::cross`]: `text` with `level(entry, bid)` written
/// first into the array after `bid_marker` (a bid at the best ask), or else after
/// `ask_marker` (an ask at the best bid). A bid above every other bid and an ask below
/// every other ask go first in venues that sort their levels.
pub(crate) fn cross_levels(
    text: &str,
    book: &SimBook,
    bid_marker: &str,
    ask_marker: &str,
    level: impl Fn(&book::Entry, bool) -> String,
) -> Option<String> {
    if let Some(ask) = book.asks().next() {
        if let Some(t) = insert_first(text, bid_marker, &level(ask, true)) {
            return Some(t);
        }
    }
    let bid = book.bids().next()?;
    insert_first(text, ask_marker, &level(bid, false))
}

/// `text` with `item` as the first element of the JSON array that `marker` (ending in
/// `[`) opens; `None` when `text` has no `marker`.
fn insert_first(text: &str, marker: &str, item: &str) -> Option<String> {
    let at = text.find(marker)? + marker.len();
    let mut out = String::with_capacity(text.len() + item.len() + 1);
    out.push_str(&text[..at]);
    out.push_str(item);
    if !text[at..].starts_with(']') {
        out.push(',');
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// The venue module for a capture's `exchange` header (Binance when it has none).
fn protocol_for(capture: &Capture) -> Result<Box<dyn Protocol>> {
    Ok(match capture.exchange().unwrap_or("BINANCE") {
        "BINANCE" | "BINANCE_FUTURES" | "BINANCE_DELIVERY" | "BINANCE_US" => Box::new(Binance),
        "COINBASE" => Box::new(coinbase::Coinbase),
        "BYBIT" => Box::new(bybit::Bybit),
        "OKX" => Box::new(okx::Okx),
        "KRAKEN" => Box::new(kraken::Kraken::new(capture)?),
        other => bail!(
            "capture of {other}: the simulator replays BINANCE, BINANCE_FUTURES, \
             BINANCE_DELIVERY, BINANCE_US, COINBASE, BYBIT, OKX and KRAKEN"
        ),
    })
}

/// A loaded capture and the replay's shared state.
pub struct Replay {
    exchange: String,
    protocol: Box<dyn Protocol>,
    /// Recorded WebSocket paths, in order of first connect.
    endpoints: Vec<String>,
    keys: HashMap<(usize, Sub), u32>,
    /// The book each key feeds, by key id.
    key_book: Vec<Option<usize>>,
    /// Book index by (endpoint, book name, symbol).
    books_by_name: HashMap<(usize, String, String), usize>,
    frames: Vec<Played>,
    rest: rest::RecordedRest,
    /// Binance's REST depth rules (Binance captures only).
    binance: Option<binance::Rest>,
    /// Keys the recording subscribed before its connections' first frames.
    gate: HashSet<u32>,
    start_grace: Duration,
    state: Mutex<PlayState>,
    conns: Mutex<Vec<mpsc::Sender<Batch>>>,
    wake: Notify,
    finished: watch::Sender<bool>,
    symbols: Vec<String>,
    speed: f64,
}

/// What the player and the subscribing connections decide together, under one lock.
struct PlayState {
    books: Vec<SimBook>,
    /// Frames committed so far: the index of the next frame to play.
    next: u64,
    /// The recording's clock at the cursor.
    clock: f64,
    /// Keys any connection has subscribed (for the start gate).
    subscribed: HashSet<u32>,
    first_subscription: Option<Instant>,
}

struct Played {
    frame: Frame,
    ts: f64,
    endpoint: usize,
    /// Upper-case symbol, for the fault tokens.
    symbol: String,
    book: Option<(usize, BookFrame)>,
}

/// Batches a connection may have queued before the player waits for it.
const CONNECTION_QUEUE: usize = 64;

/// Everything read from a capture before the `Replay` is assembled.
#[derive(Default)]
struct Loaded {
    endpoints: Vec<String>,
    keys: HashMap<(usize, Sub), u32>,
    key_book: Vec<Option<usize>>,
    books_by_name: HashMap<(usize, String, String), usize>,
    books: Vec<SimBook>,
}

impl Loaded {
    fn endpoint(&mut self, path: &str) -> usize {
        match self.endpoints.iter().position(|p| p == path) {
            Some(i) => i,
            None => {
                self.endpoints.push(path.to_owned());
                self.endpoints.len() - 1
            }
        }
    }

    fn book(&mut self, protocol: &dyn Protocol, endpoint: usize, sub: &Sub) -> usize {
        let name = (
            endpoint,
            protocol.book_name(&sub.channel).to_owned(),
            sub.symbol.clone(),
        );
        if let Some(&b) = self.books_by_name.get(&name) {
            return b;
        }
        self.books.push(SimBook::new(protocol.depth(&sub.channel)));
        self.books_by_name.insert(name, self.books.len() - 1);
        self.books.len() - 1
    }

    fn key(&mut self, endpoint: usize, sub: &Sub) -> u32 {
        let next = self.keys.len() as u32;
        let id = *self.keys.entry((endpoint, sub.clone())).or_insert(next);
        if id == next {
            self.key_book.push(None);
        }
        id
    }
}

impl Replay {
    /// Reads the capture and prepares frames, recorded REST bodies and books.
    pub fn load(path: &Path, speed: f64, start_grace: Duration) -> Result<Replay> {
        let capture = Capture::open(path)?;
        Self::from_capture(&capture, speed, start_grace)
    }

    /// Prepares a replay of an already read capture. `speed`: 0 = as fast as the
    /// clients read, 1 = recorded pace.
    pub fn from_capture(capture: &Capture, speed: f64, start_grace: Duration) -> Result<Replay> {
        let protocol = protocol_for(capture)?;
        let mut l = Loaded::default();
        let mut conn_endpoint: HashMap<&str, usize> = HashMap::new();
        // Subscriptions of each recorded connection until its first frame.
        let mut opening: HashMap<&str, Vec<Sub>> = HashMap::new();
        let mut started: HashSet<&str> = HashSet::new();
        let mut rest = rest::RecordedRest::default();
        let mut binance = capture
            .exchange()
            .is_none_or(|e| e.starts_with("BINANCE"))
            .then(binance::Rest::default);
        let mut frames = Vec::new();
        for event in &capture.events {
            match event {
                CaptureEvent::Connect { conn, addr, .. } => {
                    let (path, query) = rest::split_url(addr);
                    conn_endpoint.insert(conn, l.endpoint(path));
                    opening
                        .entry(conn)
                        .or_default()
                        .extend(protocol.url_subscriptions(query));
                }
                CaptureEvent::Send { conn, data, .. } => {
                    if !started.contains(conn.as_str()) {
                        let ctx = ConnCtx::new(0, "");
                        if let Request::Subscribe(subs, _) = protocol.request(data, &ctx) {
                            opening.entry(conn).or_default().extend(subs);
                        }
                    }
                }
                CaptureEvent::Http { url, data, .. } => {
                    rest.insert(url, data);
                    if let Some(b) = &mut binance {
                        if let Some((symbol, bids, asks, id)) = b.insert(url, data)? {
                            // Binance depth frames live on its one stream endpoint.
                            let endpoint = l.endpoint("/stream");
                            let sub = Sub::new("depth", symbol);
                            let book = l.book(protocol.as_ref(), endpoint, &sub);
                            if !l.books[book].started() {
                                l.books[book].start_from(&bids, &asks, id);
                            }
                        }
                    }
                }
                CaptureEvent::Recv { conn, ts, data, .. } => {
                    let recorded = protocol
                        .recorded(data)
                        .with_context(|| format!("recorded frame {data:.200}"))?;
                    let Recorded::Data { sub, book } = recorded else {
                        continue;
                    };
                    started.insert(conn);
                    let endpoint = match conn_endpoint.get(conn.as_str()) {
                        Some(&e) => e,
                        None => l.endpoint("/"),
                    };
                    let key = l.key(endpoint, &sub);
                    let book = book.map(|frame| {
                        let b = l.book(protocol.as_ref(), endpoint, &sub);
                        l.key_book[key as usize] = Some(b);
                        (b, frame)
                    });
                    frames.push(Played {
                        frame: Frame {
                            stream: key,
                            index: frames.len() as u64,
                            text: data.as_str().into(),
                            deleted: false,
                        },
                        ts: *ts,
                        endpoint,
                        symbol: sub.symbol.to_ascii_uppercase(),
                        book,
                    });
                }
            }
        }
        let mut gate = HashSet::new();
        for (conn, subs) in &opening {
            let Some(&endpoint) = conn_endpoint.get(conn) else {
                continue;
            };
            gate.extend(
                subs.iter()
                    .filter_map(|s| l.keys.get(&(endpoint, s.clone())).copied()),
            );
        }
        let mut symbols: Vec<String> = l
            .keys
            .keys()
            .filter(|(_, s)| !s.symbol.is_empty())
            .map(|(_, s)| protocol.display_symbol(&s.symbol))
            .chain(binance.iter().flat_map(|b| b.symbols()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        symbols.sort();
        let clock = frames.first().map_or(0.0, |f| f.ts);
        Ok(Replay {
            exchange: capture.exchange().unwrap_or("BINANCE").to_owned(),
            protocol,
            endpoints: l.endpoints,
            keys: l.keys,
            key_book: l.key_book,
            books_by_name: l.books_by_name,
            frames,
            rest,
            binance,
            gate,
            start_grace,
            state: Mutex::new(PlayState {
                books: l.books,
                next: 0,
                clock,
                subscribed: HashSet::new(),
                first_subscription: None,
            }),
            conns: Mutex::new(Vec::new()),
            wake: Notify::new(),
            finished: watch::Sender::new(false),
            symbols,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
        })
    }

    /// The `exchange` of the capture's header.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Symbols that appear in the recording (Binance: upper-case).
    pub fn symbols(&self) -> Vec<String> {
        self.symbols.clone()
    }

    /// The recorded WebSocket paths the simulator serves.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub(crate) fn protocol(&self) -> &dyn Protocol {
        self.protocol.as_ref()
    }

    pub(crate) fn is_binance(&self) -> bool {
        self.binance.is_some()
    }

    pub(crate) fn key_id(&self, endpoint: usize, sub: &Sub) -> Option<u32> {
        self.keys.get(&(endpoint, sub.clone())).copied()
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The simulator's book behind (endpoint path, channel, symbol) once it started.
    pub fn book(&self, path: &str, channel: &str, symbol: &str) -> Option<OrderBook> {
        let endpoint = self.endpoints.iter().position(|p| p == path)?;
        let name = (
            endpoint,
            self.protocol.book_name(channel).to_owned(),
            symbol.to_owned(),
        );
        let b = *self.books_by_name.get(&name)?;
        let state = self.state.lock();
        let book = &state.books[b];
        book.started().then(|| book.to_order_book()).flatten()
    }

    /// A new listener: the player starts (or resumes) once one exists.
    pub(crate) fn register(&self) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        self.conns.lock().push(tx);
        self.wake.notify_one();
        rx
    }

    /// A connection (already registered) subscribes to `key`: the index of the first
    /// frame it must receive, and a snapshot when the key's book already started. The
    /// snapshot reflects exactly the frames before that index.
    pub(crate) fn subscribe(
        &self,
        key: u32,
        sub: &Sub,
        ctx: &mut ConnCtx,
    ) -> (u64, Option<String>) {
        let mut state = self.state.lock();
        if state.subscribed.insert(key) {
            self.wake.notify_one();
        }
        state.first_subscription.get_or_insert_with(Instant::now);
        ctx.clock = state.clock;
        let snapshot = self.key_book[key as usize]
            .map(|b| &state.books[b])
            .filter(|b| b.started())
            .and_then(|b| self.protocol.snapshot(sub, b, ctx));
        (state.next, snapshot)
    }

    /// The recording's clock at the cursor.
    pub(crate) fn clock(&self) -> f64 {
        self.state.lock().clock
    }

    pub(crate) async fn finished(&self) {
        let mut rx = self.finished.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Binance REST depth: the recorded body first, then snapshots of the simulator's
    /// own book.
    pub(crate) fn depth(&self, api: Api, symbol: &str, limit: usize) -> Option<String> {
        let binance = self.binance.as_ref()?;
        if let Some(body) = binance.first_answer(api, symbol) {
            return Some(body);
        }
        let endpoint = self.endpoints.iter().position(|p| p == "/stream")?;
        let name = (endpoint, "depth".to_owned(), symbol.to_ascii_lowercase());
        let b = *self.books_by_name.get(&name)?;
        let state = self.state.lock();
        binance::depth_body(api, &state.books[b], limit)
    }

    /// Any other recorded REST response: Binance by path and `symbol`, other venues by
    /// path and all query parameters.
    pub(crate) fn recorded(&self, path: &str, query: &str) -> Option<String> {
        match &self.binance {
            Some(b) => b.recorded(path, query),
            None => self.rest.get(path, query).map(str::to_owned),
        }
    }

    /// Waits until the start gate opens (see the module docs); false on shutdown.
    async fn wait_for_start(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            let deadline = {
                let state = self.state.lock();
                if self.gate.iter().all(|k| state.subscribed.contains(k)) {
                    return true;
                }
                state.first_subscription.map(|t| t + self.start_grace)
            };
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return true;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => return true,
                _ = shutdown.changed() => return false,
            }
        }
    }

    /// The player: walks the frames once, in order, for all connections.
    pub(crate) async fn play(self: Arc<Self>, app: Arc<App>) {
        let mut shutdown = app.shutdown.clone();
        if !self.wait_for_start(&mut shutdown).await {
            return;
        }
        let mut prev_ts: Option<f64> = None;
        for played in &self.frames {
            // Wait out stalls, and wait for someone to play to.
            loop {
                if let Some(until) = app.faults.stalled_until() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
                {
                    let mut conns = self.conns.lock();
                    conns.retain(|c| !c.is_closed());
                    if !conns.is_empty() {
                        break;
                    }
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = shutdown.changed() => return,
                }
            }
            if let Some(prev) = prev_ts.filter(|_| self.speed > 0.0) {
                let delay = ((played.ts - prev) / self.speed).max(0.0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(delay)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            prev_ts = Some(played.ts);
            let frame = self.commit(played, &app);
            let deleted = frame.deleted;
            let batch: Batch = Arc::new(vec![frame]);
            let conns = self.conns.lock().clone();
            for conn in conns {
                if conn.send(batch.clone()).await.is_err() {
                    self.conns.lock().retain(|c| !c.same_channel(&conn));
                }
            }
            if !deleted {
                app.faults.counters.frames_sent.fetch_add(1, Relaxed);
            }
        }
        self.finished.send_replace(true);
    }

    /// Applies one frame to the simulator's book and the faults, and moves the cursor
    /// past it; returns the frame to publish.
    fn commit(&self, played: &Played, app: &App) -> Frame {
        let mut frame = played.frame.clone();
        let mut state = self.state.lock();
        if let Some((b, levels)) = &played.book {
            let endpoint = &self.endpoints[played.endpoint];
            if !levels.snapshot {
                if app.faults.take_gap(endpoint, &played.symbol) {
                    frame.deleted = true;
                } else if levels.checksum && app.faults.take_corrupt(endpoint, &played.symbol) {
                    if let Some(text) = self.protocol.corrupt_checksum(&frame.text) {
                        frame.text = text.into();
                    }
                }
            }
            let book = &mut state.books[*b];
            // A stale delta (Binance's before the REST snapshot) changes no client's
            // book: only one that applies can cross it.
            if book.apply(levels) && !levels.snapshot && !frame.deleted {
                let book = &*book;
                if let Some(text) = app.faults.take_cross(endpoint, &played.symbol, || {
                    self.protocol.cross(&frame.text, book)
                }) {
                    frame.text = text.into();
                }
            }
        }
        state.next = frame.index + 1;
        state.clock = played.ts;
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(name: &str) -> Capture {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/captures")
            .join(name);
        Capture::open(path).unwrap()
    }

    #[test]
    fn every_capture_loads_with_its_endpoints() {
        let grace = Duration::from_secs(1);
        for (file, endpoints, frames) in [
            ("BINANCE.jsonl.zst", vec!["/stream"], 265),
            ("BINANCE_FUTURES.jsonl.zst", vec!["/stream"], 1535),
            ("COINBASE.jsonl.zst", vec!["/"], 1025),
            (
                "BYBIT.jsonl.zst",
                vec!["/v5/public/linear", "/v5/public/spot"],
                3203,
            ),
            ("OKX.jsonl.zst", vec!["/ws/v5/public"], 392),
            ("KRAKEN.jsonl.zst", vec!["/"], 4305),
        ] {
            let r = Replay::from_capture(&capture(file), 0.0, grace).unwrap();
            assert_eq!(r.endpoints(), endpoints, "{file}");
            assert_eq!(r.frames.len(), frames, "{file}");
            assert!(!r.gate.is_empty(), "{file}");
        }
    }

    /// The simulator's books, fed every recorded frame, have the checksum of every
    /// recorded OKX and Kraken update: depth, level text and removal rules are right,
    /// so the snapshots written from them join the recorded stream.
    #[test]
    fn sim_books_reproduce_every_recorded_checksum() {
        for file in ["OKX.jsonl.zst", "KRAKEN.jsonl.zst"] {
            let r = Replay::from_capture(&capture(file), 0.0, Duration::ZERO).unwrap();
            let mut books = r.state.lock().books.clone();
            let mut checked = 0;
            for played in &r.frames {
                let Some((b, frame)) = &played.book else {
                    continue;
                };
                assert!(books[*b].apply(frame));
                if !frame.checksum {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&played.frame.text).unwrap();
                let (expected, computed) = if file.starts_with("OKX") {
                    let c = v["data"][0]["checksum"].as_i64().unwrap();
                    (c, i64::from(okx::checksum(&books[*b])))
                } else {
                    let parts = v.as_array().unwrap();
                    let last = &parts[parts.len() - 3];
                    let c: i64 = last["c"].as_str().unwrap().parse().unwrap();
                    (c, i64::from(kraken::tests::checksum(&books[*b])))
                };
                assert_eq!(expected, computed, "{file} frame {}", played.frame.index);
                checked += 1;
            }
            // Counted with python3 over the captures: OKX 3 snapshots + 287 updates (all
            // carry one), Kraken 4279 book frames - 10 snapshots (which carry none).
            assert_eq!(
                checked,
                if file.starts_with("OKX") { 290 } else { 4269 },
                "{file}"
            );
        }
    }

    #[test]
    fn levels_are_inserted_first_in_their_array() {
        let t = r#"{"b":[["1","2"]],"a":[]}"#;
        assert_eq!(
            insert_first(t, "\"b\":[", "X").unwrap(),
            r#"{"b":[X,["1","2"]],"a":[]}"#
        );
        assert_eq!(
            insert_first(t, "\"a\":[", "Y").unwrap(),
            r#"{"b":[["1","2"]],"a":[Y]}"#
        );
        assert!(insert_first(t, "\"bids\":[", "Z").is_none());
        // An empty book has nothing to cross.
        let level = |e: &book::Entry, _| e.price.to_string();
        assert!(cross_levels(t, &SimBook::new(None), "\"b\":[", "\"a\":[", level).is_none());
    }

    #[test]
    fn unknown_exchanges_are_refused() {
        let c = Capture::read("{\"t\":\"header\",\"exchange\":\"NOPE\"}\n".as_bytes()).unwrap();
        let e = Replay::from_capture(&c, 0.0, Duration::ZERO).err().unwrap();
        assert!(e.to_string().contains("NOPE"), "{e}");
    }
}
