//! The HTTP and WebSocket front of the simulator, identical for both sources.
//!
//! Binance serves REST and streams from different hosts; the simulator serves both from
//! one listener so a test needs one port. This module owns the parts that do not depend
//! on where frames come from: routing, the REST error shapes Binance uses, fault
//! handling at the edge (429s, drops, stalls), and the per-connection task that filters
//! published frames by the connection's stream set and writes them.
//!
//! Frames reach connections as [`Batch`]es of pre-formatted, reference-counted text:
//! formatting happens once per frame, never per connection. The synthetic market
//! broadcasts batches (a connection that falls too far behind is closed, as an exchange
//! does); the replay hands them to each connection with back-pressure, so a slow client
//! never loses recorded frames.

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
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::control::Fault;
use crate::{replay::Replay, synthetic::Market, App, Source};

/// One published frame: the id of its stream and its complete text.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub stream: u32,
    pub text: Utf8Bytes,
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

pub(crate) async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut router = Router::new()
        .route("/stream", get(ws_upgrade))
        .route("/sim/fault", post(fault))
        .route("/sim/stats", get(stats));
    for api in [Api::Spot, Api::Usdm, Api::Coinm] {
        router = router.route(
            api.depth_path(),
            get(move |s: State<Arc<App>>, q: Query<HashMap<String, String>>| depth(s, q, api)),
        );
    }
    let router = router.fallback(recorded).with_state(app);
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
    let body = serde_json::json!({ "code": code, "msg": msg });
    (status, Json(body)).into_response()
}

fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn depth(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
    api: Api,
) -> Response {
    app.faults.counters.depth_requests.fetch_add(1, Relaxed);
    if app.faults.take_rate_limit() {
        let mut r = binance_error(
            StatusCode::TOO_MANY_REQUESTS,
            -1003,
            "Too many requests; current limit is exceeded. Please use WebSocket Streams for live updates to avoid bans.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
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

/// Any other GET: a recorded response in replay mode, `exchangeInfo` in synthetic mode.
async fn recorded(
    State(app): State<Arc<App>>,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let symbol = params.get("symbol").map(|s| s.to_ascii_uppercase());
    let body = match &app.source {
        Source::Replay(r) => r.recorded(uri.path(), symbol.as_deref()),
        Source::Synthetic(m) => m.rest(uri.path()),
    };
    match body {
        Some(b) => json_text(b),
        None => binance_error(StatusCode::NOT_FOUND, -1000, "Unknown path."),
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

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    streams: String,
}

async fn ws_upgrade(
    State(app): State<Arc<App>>,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    // Subscribe before answering 101: a client that connects and then asks for a
    // snapshot must receive every diff generated after its connect returned.
    let feed = Feed::new(&app.source);
    ws.write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| connection(app, socket, q.streams, feed))
}

/// Where a connection's batches come from.
enum Feed {
    Live(broadcast::Receiver<Batch>),
    /// Registered with the replay once the connection has streams.
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
            Source::Synthetic(m) => Feed::Live(m.subscribe()),
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

    /// The connection has streams now: a replay starts feeding it.
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

/// The streams one connection asked for.
struct Subscriptions {
    on: Vec<bool>,
    names: Vec<String>,
}

impl Subscriptions {
    fn add(&mut self, source: &Source, name: &str) {
        if name.is_empty() || self.names.iter().any(|n| n == name) {
            return;
        }
        if let Some(id) = stream_id(source, name) {
            if let Some(slot) = self.on.get_mut(id as usize) {
                *slot = true;
            }
        }
        self.names.push(name.to_owned());
    }

    fn remove(&mut self, source: &Source, name: &str) {
        self.names.retain(|n| n != name);
        if let Some(slot) = stream_id(source, name).and_then(|id| self.on.get_mut(id as usize)) {
            *slot = false;
        }
    }

    fn wants(&self, stream: u32) -> bool {
        self.on.get(stream as usize).copied().unwrap_or(false)
    }
}

fn stream_id(source: &Source, name: &str) -> Option<u32> {
    match source {
        Source::Replay(r) => r.stream_id(name),
        Source::Synthetic(m) => m.stream_id(name),
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

async fn connection(app: Arc<App>, socket: WebSocket, streams: String, mut feed: Feed) {
    let counters = &app.faults.counters;
    counters.connections.fetch_add(1, Relaxed);
    counters.connections_total.fetch_add(1, Relaxed);
    let _guard = ConnectionGuard(&app);

    let stream_count = match &app.source {
        Source::Replay(r) => r.stream_count(),
        Source::Synthetic(m) => m.stream_count(),
    };
    let mut subs = Subscriptions {
        on: vec![false; stream_count],
        names: Vec::new(),
    };
    for name in streams.split('/') {
        subs.add(&app.source, name);
    }
    if !subs.names.is_empty() {
        feed.activate();
    }
    let mut drops = app.faults.drops();
    let mut shutdown = app.shutdown.clone();
    let (mut tx, mut rx) = socket.split();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + app.ping_every, app.ping_every);

    loop {
        if let Some(until) = app.faults.stalled_until() {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    feed.skip_backlog();
                    ping.reset();
                    continue;
                }
                _ = drops.changed() => return,
                _ = shutdown.changed() => break,
            }
        }
        // Biased: faults and shutdown first, then client requests, so a feed that is
        // always ready (a replay at full speed) cannot starve them.
        tokio::select! {
            biased;
            _ = drops.changed() => return,
            _ = shutdown.changed() => break,
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let reply = control_request(&app.source, &mut subs, &text);
                    if !subs.names.is_empty() {
                        feed.activate();
                    }
                    if tx.send(Message::Text(reply.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            next = feed.recv(&app) => {
                let Next::Batch(first) = next else { break };
                let write = async {
                    let mut batch = Some(first);
                    let mut n = 0;
                    while let Some(b) = batch {
                        for f in b.iter().filter(|f| subs.wants(f.stream)) {
                            tx.feed(Message::Text(f.text.clone())).await?;
                        }
                        n += 1;
                        batch = if n < BATCHES_PER_FLUSH { feed.try_recv() } else { None };
                    }
                    tx.flush().await
                };
                tokio::select! {
                    r = tokio::time::timeout(WRITE_TIMEOUT, write) => match r {
                        Ok(Ok(())) => {}
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
        }
    }
    // Shutdown: say goodbye properly.
    let _ = tx.send(Message::Close(None)).await;
}

#[derive(Deserialize)]
struct ControlRequest {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    #[serde(default)]
    id: serde_json::Value,
}

/// Answers a `SUBSCRIBE` / `UNSUBSCRIBE` / `LIST_SUBSCRIPTIONS` request as Binance does.
fn control_request(source: &Source, subs: &mut Subscriptions, text: &str) -> String {
    let Ok(req) = serde_json::from_str::<ControlRequest>(text) else {
        return r#"{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},"id":null}"#.to_owned();
    };
    let result = match req.method.as_str() {
        "SUBSCRIBE" => {
            for p in &req.params {
                subs.add(source, p);
            }
            serde_json::Value::Null
        }
        "UNSUBSCRIBE" => {
            for p in &req.params {
                subs.remove(source, p);
            }
            serde_json::Value::Null
        }
        "LIST_SUBSCRIPTIONS" => serde_json::json!(subs.names),
        _ => {
            return serde_json::json!({
                "error": {"code": 1, "msg": "Invalid request: unknown method"},
                "id": req.id,
            })
            .to_string()
        }
    };
    serde_json::json!({ "result": result, "id": req.id }).to_string()
}
