//! The HTTP and WebSocket front of the simulator, identical for every source and venue.
//!
//! Exchanges serve REST and streams from different hosts; the simulator serves both from
//! one listener so a test needs one port: every WebSocket endpoint path of the source
//! (Binance `/stream`; a replay's recorded `connect` paths such as `/v5/public/linear`
//! or `/`) and every REST path on it. This module owns the parts that do not depend on
//! where frames come from or which venue speaks: routing, fault handling at the edge
//! (rate limits, drops, stalls, inserted malformed frames), and the per-connection task that reads the client's
//! requests through the venue's [`Protocol`], filters published frames by the
//! connection's subscriptions and writes them.
//!
//! Frames reach connections as [`Batch`]es of pre-formatted, reference-counted text:
//! formatting happens once per frame, never per connection (except for venues that
//! number messages per connection, Coinbase). The synthetic market broadcasts batches
//! (a connection that falls too far behind is closed, as an exchange does); the replay
//! hands them to each connection with back-pressure, so a slow client never loses
//! recorded frames.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::control::Fault;
use crate::replay::{binance, ConnCtx, Protocol, Replay, Request, RestAnswer, Sub};
use crate::{synthetic::Market, App, Source};

/// One published frame: the id of its stream (subscription key), its position in the
/// source's order, and its complete text.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub stream: u32,
    /// The frame's number: replay, its index in the recording; synthetic, its number
    /// in the market's output. A connection that subscribes late takes frames from a
    /// number on (a replayed or Bybit book joined with a snapshot).
    pub index: u64,
    pub text: Utf8Bytes,
    /// Deleted by a fault: not sent, but a venue that numbers its messages per
    /// connection leaves a hole for it.
    pub deleted: bool,
}

/// Frames published together; shared by every connection.
pub(crate) type Batch = Arc<Vec<Frame>>;

/// Which Binance REST API a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Spot,
    Usdm,
    Coinm,
}

impl Api {
    pub fn depth_path(self) -> &'static str {
        match self {
            Api::Spot => "/api/v3/depth",
            Api::Usdm => "/fapi/v1/depth",
            Api::Coinm => "/dapi/v1/depth",
        }
    }

    pub fn is_futures(self) -> bool {
        self != Api::Spot
    }

    /// Binance's default `limit` when the request has none.
    fn default_limit(self) -> usize {
        if self.is_futures() {
            500
        } else {
            100
        }
    }
}

/// The task that produces frames for the source.
pub(crate) enum Producer {
    Replay(Arc<Replay>),
    Synthetic(Arc<Market>),
}

impl Producer {
    pub async fn run(self, app: Arc<App>) {
        match self {
            Producer::Replay(r) => r.play(app).await,
            Producer::Synthetic(m) => m.generate(app).await,
        }
    }
}

impl Source {
    fn protocol(&self) -> &dyn Protocol {
        match self {
            Source::Replay(r) => r.protocol(),
            Source::Synthetic(m) => m.protocol(),
        }
    }

    /// The WebSocket endpoint paths served.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        match self {
            Source::Replay(r) => r.endpoints().to_vec(),
            Source::Synthetic(m) => vec![m.endpoint().to_owned()],
        }
    }

    /// Binance's REST depth and error rules apply.
    pub(crate) fn is_binance(&self) -> bool {
        match self {
            Source::Replay(r) => r.is_binance(),
            Source::Synthetic(m) => m.is_binance(),
        }
    }

    fn key_id(&self, endpoint: usize, sub: &Sub) -> Option<u32> {
        match self {
            Source::Replay(r) => r.key_id(endpoint, sub),
            Source::Synthetic(m) => m.key_id(sub),
        }
    }

    fn key_count(&self) -> usize {
        match self {
            Source::Replay(r) => r.key_count(),
            Source::Synthetic(m) => m.stream_count(),
        }
    }

    /// A registered connection subscribes to `key`: the first frame index it takes and
    /// a snapshot to send first, if any.
    fn subscribe(&self, key: u32, sub: &Sub, ctx: &mut ConnCtx) -> (u64, Option<String>) {
        match self {
            Source::Replay(r) => r.subscribe(key, sub, ctx),
            Source::Synthetic(m) => m.subscribe(key),
        }
    }

    fn clock(&self) -> f64 {
        match self {
            Source::Replay(r) => r.clock(),
            Source::Synthetic(_) => 0.0,
        }
    }
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut router = Router::new()
        .route("/sim/fault", post(fault))
        .route("/sim/stats", get(stats));
    for (endpoint, path) in app.source.endpoints().iter().enumerate() {
        router = router.route(
            path,
            get(move |s: State<Arc<App>>, uri: Uri, ws: WebSocketUpgrade| {
                ws_upgrade(s, uri, ws, endpoint)
            }),
        );
    }
    if app.source.is_binance() {
        for api in [Api::Spot, Api::Usdm, Api::Coinm] {
            router = router.route(
                api.depth_path(),
                get(move |s: State<Arc<App>>, q: Query<HashMap<String, String>>| depth(s, q, api)),
            );
        }
    }
    let router = router.fallback(rest).with_state(app);
    let stop = async move {
        // An error means the Sim was dropped: stop as well.
        let _ = shutdown.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "sim server failed");
    }
}

fn binance_error(status: StatusCode, code: i32, msg: &str) -> Response {
    answer(RestAnswer::json(
        status.as_u16(),
        binance::error_body(code, msg),
    ))
}

fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A venue's REST answer as an HTTP response.
fn answer(a: RestAnswer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if a.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut r = (status, [(header::CONTENT_TYPE, content_type)], a.body).into_response();
    if a.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

async fn depth(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
    api: Api,
) -> Response {
    app.faults.counters.depth_requests.fetch_add(1, Relaxed);
    app.faults.counters.rest_requests.fetch_add(1, Relaxed);
    if app.faults.take_rate_limit() {
        return answer(app.source.protocol().rate_limited());
    }
    let Some(symbol) = params.get("symbol").filter(|s| !s.is_empty()) else {
        return binance_error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );
    };
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => api.default_limit(),
        Some(Ok(l)) if (1..=5000).contains(&l) => l,
        Some(_) => {
            return binance_error(
                StatusCode::BAD_REQUEST,
                -1100,
                "Illegal characters found in parameter 'limit'; legal range is '1' to '5000'.",
            )
        }
    };
    let symbol = symbol.to_ascii_uppercase();
    let body = match &app.source {
        Source::Replay(r) => r.depth(api, &symbol, limit),
        Source::Synthetic(m) => m.depth(api, &symbol, limit),
    };
    match body {
        Some(b) => json_text(b),
        None => binance_error(StatusCode::BAD_REQUEST, -1121, "Invalid symbol."),
    }
}

/// Any other request: a recorded response in replay mode, listings and friends in
/// synthetic mode. Venues other than Binance rate-limit every request here.
async fn rest(State(app): State<Arc<App>>, uri: Uri) -> Response {
    app.faults.counters.rest_requests.fetch_add(1, Relaxed);
    let (path, query) = (uri.path(), uri.query().unwrap_or(""));
    let protocol = app.source.protocol();
    if !app.source.is_binance() && app.faults.take_rate_limit() {
        return answer(protocol.rate_limited());
    }
    let body = match &app.source {
        Source::Synthetic(m) => m.rest(path, query),
        Source::Replay(r) => r.recorded(path, query),
    };
    match body {
        Some(b) => json_text(b),
        None => answer(protocol.not_found()),
    }
}

async fn fault(State(app): State<Arc<App>>, Json(fault): Json<Fault>) -> Response {
    match app.faults.apply(&fault) {
        Ok(()) => Json(serde_json::json!({ "applied": fault })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.0).into_response(),
    }
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    Json(app.faults.stats()).into_response()
}

async fn ws_upgrade(
    State(app): State<Arc<App>>,
    uri: Uri,
    ws: WebSocketUpgrade,
    endpoint: usize,
) -> Response {
    // Subscribe before answering 101: a client that connects and then asks for a
    // snapshot must receive every diff generated after its connect returned.
    let feed = Feed::new(&app.source);
    let query = uri.query().unwrap_or("").to_owned();
    ws.write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| connection(app, socket, endpoint, query, feed))
}

/// Where a connection's batches come from.
enum Feed {
    Live(broadcast::Receiver<Batch>),
    /// Registered with the replay once the connection subscribes.
    Replay {
        replay: Arc<Replay>,
        rx: Option<mpsc::Receiver<Batch>>,
    },
}

enum Next {
    Batch(Batch),
    /// Too far behind a live feed, or the producer stopped.
    End,
}

impl Feed {
    fn new(source: &Source) -> Feed {
        match source {
            Source::Synthetic(m) => Feed::Live(m.subscribe_feed()),
            Source::Replay(r) => Feed::Replay {
                replay: r.clone(),
                rx: None,
            },
        }
    }

    async fn recv(&mut self, app: &App) -> Next {
        match self {
            Feed::Live(rx) => match rx.recv().await {
                Ok(b) => Next::Batch(b),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    app.faults.counters.connections_lagged.fetch_add(1, Relaxed);
                    Next::End
                }
                Err(broadcast::error::RecvError::Closed) => Next::End,
            },
            Feed::Replay { rx: Some(rx), .. } => match rx.recv().await {
                Some(b) => Next::Batch(b),
                None => Next::End,
            },
            Feed::Replay { rx: None, .. } => std::future::pending().await,
        }
    }

    fn try_recv(&mut self) -> Option<Batch> {
        match self {
            Feed::Live(rx) => rx.try_recv().ok(),
            Feed::Replay { rx: Some(rx), .. } => rx.try_recv().ok(),
            Feed::Replay { rx: None, .. } => None,
        }
    }

    /// The connection subscribes: a replay starts feeding it. Must happen before the
    /// replay decides the subscription's first frame.
    fn activate(&mut self) {
        if let Feed::Replay { replay, rx } = self {
            if rx.is_none() {
                *rx = Some(replay.register());
            }
        }
    }

    /// After a stall: a live feed skips what was published meanwhile (the client sees a
    /// gap, as after a real outage); a replay continues where it paused.
    fn skip_backlog(&mut self) {
        if let Feed::Live(rx) = self {
            *rx = rx.resubscribe();
        }
    }
}

/// The subscription keys of one connection, each with the first frame index it takes.
struct Subscriptions {
    from: Vec<Option<u64>>,
}

impl Subscriptions {
    fn wants(&self, frame: &Frame) -> bool {
        matches!(self.from.get(frame.stream as usize), Some(Some(from)) if frame.index >= *from)
    }
}

/// How long one batch write may block on a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches written before one flush, so a busy connection makes few syscalls.
const BATCHES_PER_FLUSH: usize = 64;

struct ConnectionGuard<'a>(&'a App);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.faults.counters.connections.fetch_sub(1, Relaxed);
    }
}

/// One client connection's state: the venue's view of it and its subscriptions.
struct Session<'a> {
    app: &'a App,
    endpoint: usize,
    ctx: ConnCtx,
    subs: Subscriptions,
}

impl Session<'_> {
    /// Adds the subscriptions of `list` the connection does not hold yet; returns them.
    fn add(&mut self, list: &[Sub]) -> Vec<Sub> {
        let mut fresh: Vec<Sub> = Vec::new();
        for sub in list {
            if !self.ctx.subs.contains(sub) {
                self.ctx.subs.push(sub.clone());
                fresh.push(sub.clone());
            }
        }
        fresh
    }

    /// Starts delivering `fresh` subscriptions (already added); returns the snapshots
    /// to send for books the client joins late.
    fn start(&mut self, fresh: &[Sub], feed: &mut Feed) -> Vec<String> {
        if fresh.is_empty() {
            return Vec::new();
        }
        // Registered first, so no frame after the subscription's first one is missed.
        feed.activate();
        let mut snapshots = Vec::new();
        for sub in fresh {
            let Some(key) = self.app.source.key_id(self.endpoint, sub) else {
                continue;
            };
            let (from, snapshot) = self.app.source.subscribe(key, sub, &mut self.ctx);
            if let Some(slot) = self.subs.from.get_mut(key as usize) {
                *slot = Some(from);
            }
            if let Some(s) = snapshot {
                self.app
                    .faults
                    .counters
                    .snapshots_sent
                    .fetch_add(1, Relaxed);
                snapshots.push(s);
            }
        }
        snapshots
    }

    fn unsubscribe(&mut self, list: &[Sub]) {
        self.ctx.subs.retain(|s| !list.contains(s));
        for sub in list {
            let key = self.app.source.key_id(self.endpoint, sub);
            if let Some(slot) = key.and_then(|k| self.subs.from.get_mut(k as usize)) {
                *slot = None;
            }
        }
    }

    /// Answers one client text frame: the frames to send back, in order (acks first,
    /// then snapshots for late book subscriptions).
    fn request(&mut self, text: &str, feed: &mut Feed) -> Vec<String> {
        let protocol = self.app.source.protocol();
        match protocol.request(text, &self.ctx) {
            Request::Reply(reply) => vec![reply],
            Request::Subscribe(list, id) => {
                let counters = &self.app.faults.counters;
                counters.subscribe_requests.fetch_add(1, Relaxed);
                let fresh = self.add(&list);
                self.ctx.clock = self.app.source.clock();
                let mut out = protocol.acks(true, &list, &id, &mut self.ctx);
                out.extend(self.start(&fresh, feed));
                out
            }
            Request::Unsubscribe(list, id) => {
                self.unsubscribe(&list);
                self.ctx.clock = self.app.source.clock();
                protocol.acks(false, &list, &id, &mut self.ctx)
            }
        }
    }
}

async fn connection(
    app: Arc<App>,
    socket: WebSocket,
    endpoint: usize,
    query: String,
    mut feed: Feed,
) {
    let counters = &app.faults.counters;
    counters.connections.fetch_add(1, Relaxed);
    let id = counters.connections_total.fetch_add(1, Relaxed) + 1;
    let _guard = ConnectionGuard(&app);
    let protocol = app.source.protocol();
    let path = app.source.endpoints().swap_remove(endpoint);
    let mut session = Session {
        app: &app,
        endpoint,
        ctx: ConnCtx::new(id, &path),
        subs: Subscriptions {
            from: vec![None; app.source.key_count()],
        },
    };
    let mut drops = app.faults.drops();
    let mut malformed_seen = app.faults.malformed_seen();
    let mut shutdown = app.shutdown.clone();
    let (mut tx, mut rx) = socket.split();
    if let Some(greeting) = protocol.greeting(&session.ctx) {
        if tx.send(Message::Text(greeting.into())).await.is_err() {
            return;
        }
    }
    let fresh = session.add(&protocol.url_subscriptions(&query));
    session.start(&fresh, &mut feed);
    let mut ping = tokio::time::interval_at(Instant::now() + app.ping_every, app.ping_every);
    let mut last_sent = Instant::now();

    loop {
        if let Some(until) = app.faults.stalled_until() {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    feed.skip_backlog();
                    ping.reset();
                    last_sent = Instant::now();
                    continue;
                }
                _ = drops.changed() => return,
                _ = shutdown.changed() => break,
            }
        }
        let heartbeat = protocol
            .heartbeat()
            .filter(|_| !session.ctx.subs.is_empty())
            .map(|(every, text)| (last_sent + every, text));
        // Biased: faults and shutdown first, then client requests, so a feed that is
        // always ready (a replay at full speed) cannot starve them.
        tokio::select! {
            biased;
            _ = drops.changed() => return,
            _ = shutdown.changed() => break,
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let replies = session.request(&text, &mut feed);
                    let write = async {
                        for r in replies {
                            tx.feed(Message::Text(r.into())).await?;
                        }
                        tx.flush().await
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => last_sent = Instant::now(),
                        Ok(Err(_)) | Err(_) => return,
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            next = feed.recv(&app) => {
                let Next::Batch(first) = next else { break };
                let write = async {
                    let mut batch = Some(first);
                    let (mut n, mut written) = (0, 0);
                    while let Some(b) = batch {
                        for f in b.iter().filter(|f| session.subs.wants(f)) {
                            if f.deleted {
                                protocol.deleted(&mut session.ctx);
                                continue;
                            }
                            if app.faults.take_malformed(&mut malformed_seen, &path) {
                                tx.feed(Message::Text(protocol.malformed().into())).await?;
                            }
                            let text = match protocol.rewrite(&f.text, &mut session.ctx) {
                                Some(t) => t.into(),
                                None => f.text.clone(),
                            };
                            tx.feed(Message::Text(text)).await?;
                            written += 1;
                        }
                        n += 1;
                        batch = if n < BATCHES_PER_FLUSH { feed.try_recv() } else { None };
                    }
                    tx.flush().await.map(|()| written)
                };
                tokio::select! {
                    r = tokio::time::timeout(WRITE_TIMEOUT, write) => match r {
                        // Only traffic the client saw keeps the venue's heartbeat away.
                        Ok(Ok(written)) if written > 0 => last_sent = Instant::now(),
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) | Err(_) => return,
                    },
                    _ = drops.changed() => return,
                }
            }
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            _ = async {
                match heartbeat {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((_, text)) = heartbeat {
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }
    // Shutdown: say goodbye properly.
    let _ = tx.send(Message::Close(None)).await;
}
