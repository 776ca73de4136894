//! The `raven.v1.MarketData` gRPC service.
//!
//! `Subscribe` is the product: one bidirectional stream per client. A reader task feeds
//! the client's requests to its hub [`raven_hub::Session`], no faster than the stream's
//! request rate allows ([`crate::limits::RequestRate`]); the response stream drains the
//! session's queue, stamps each message's send time as the transport takes it, sends a
//! heartbeat whenever the stream has been idle for the configured interval, and ends
//! with `RESOURCE_EXHAUSTED` if the hub disconnected the client as a slow consumer, or
//! `UNAVAILABLE` once what was queued is sent when the server stops. Dropping the
//! response stream (the client went away) drops the session, which unsubscribes
//! everything.
//!
//! Tracing: every call is one `grpc.request` span with OpenTelemetry's RPC attributes
//! (`rpc.method`, `rpc.grpc.status_code`, the peer). A streaming call's span lives as
//! long as its response stream, so a `Subscribe` is one span however many messages it
//! carries.
//!
//! `GetHistory` validates the request here (naming the bad field), takes a slot of the
//! client's share ([`crate::limits::HistorySlots`]), then streams the history store's
//! pages as they are read, converted with the same model → wire code as the live
//! stream, so stored and live decimals are the same strings. A forwarder task hands the
//! pages on; if the client takes none for `history_idle`, or the server stops, the
//! answer ends with a status saying so and its store reader and slot are freed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use raven_hub::encode::encode_untopiced;
use raven_hub::{Channel, EndReason, Hub, Next};
use raven_model::{InstrumentId, InstrumentKind, QtyUnit, Symbol, UnixNanos, Venue};
use raven_proto::pb::server_message::Payload;
use raven_proto::server::market_data_server::{MarketData, MarketDataServer};
use raven_proto::{pb, OutboundMessage, FILE_DESCRIPTOR_SET};
use raven_sinks::history::{HistoryError, HistoryItem, HistoryQuery, HistoryRow, SharedHistory};
use tonic::{Request, Response, Status, Streaming};

pub use crate::access::Access;
use crate::auth::Principal;
use crate::conn::{ConnInfo, ConnLimits};
use crate::limits::{ClientRates, RequestRate, Slots};
use crate::status::StatusSource;

/// The largest `GetOrderBook` depth.
pub const MAX_BOOK_DEPTH: u32 = 5000;

/// `GetHistory`'s default and largest `limit`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 10_000;
pub const MAX_HISTORY_LIMIT: u32 = 1_000_000;

/// What a stopping server tells the clients whose streams it ends.
pub const STOPPING: &str = "the server is shutting down; reconnect (to another instance)";

/// The service's limits and timings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Heartbeat on idle Subscribe streams.
    pub heartbeat: Duration,
    /// Topics and pings one Subscribe stream's requests may carry per second.
    pub max_requests_per_sec: u32,
    /// How many of them may come at once (a whole request's worth of topics).
    pub request_burst: u32,
    /// `GetHistory` answers streaming at once, for the server and per client.
    pub history_streams: usize,
    pub history_streams_per_client: usize,
    /// An answer its client takes nothing of for this long is ended.
    pub history_idle: Duration,
    /// `Subscribe` streams open at once, for the server and per client.
    pub subscribe_streams: usize,
    pub subscribe_streams_per_client: usize,
    /// One-shot calls (`GetOrderBook`, `GetStatus`, `ListInstruments`, `GetHistory`)
    /// per second per client.
    pub calls_per_sec_per_client: u32,
    /// The largest client message read. A bigger one is refused by the decoder before
    /// it is read into memory (`RESOURCE_EXHAUSTED`).
    pub max_request_bytes: usize,
    /// Connections: how many, calls on each, idle timeout (see [`crate::conn`]).
    pub conn: ConnLimits,
    /// HTTP/2 pings on a quiet connection, and how long an answer may take before the
    /// connection is taken for dead and closed.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Stored records one topic's replay from a time sends at most.
    pub max_replay_records: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            max_requests_per_sec: 200,
            request_burst: 1024,
            history_streams: 32,
            history_streams_per_client: 4,
            history_idle: Duration::from_secs(30),
            subscribe_streams: 1024,
            subscribe_streams_per_client: 256,
            calls_per_sec_per_client: 100,
            // A `Subscribe` of the most topics a stream may hold takes about a tenth.
            max_request_bytes: 256 * 1024,
            conn: ConnLimits::default(),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_replay_records: 1_000_000,
        }
    }
}

/// Who a call is from: the principal the gate authenticated, and its address.
struct Caller {
    principal: Arc<Principal>,
    peer: Option<SocketAddr>,
}

impl Caller {
    fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        let principal = request
            .extensions()
            .get::<Arc<Principal>>()
            .cloned()
            // Only a call that bypassed the gate has none: nothing is served to it.
            .ok_or_else(|| Status::unauthenticated("the call was not authenticated"))?;
        let peer = request.extensions().get::<ConnInfo>().map(ConnInfo::peer);
        Ok(Self { principal, peer })
    }

    /// Who the server's shares are counted for: the principal, or on a server that
    /// requires no credentials (everyone the same principal), the client's address.
    fn client(&self) -> String {
        if self.principal.name == crate::auth::OPEN_PRINCIPAL {
            self.peer
                .map_or_else(|| "an unknown address".to_owned(), |a| a.ip().to_string())
        } else {
            format!("principal {:?}", self.principal.name)
        }
    }

    /// `PERMISSION_DENIED` for a one-shot call beyond the principal's entitlements.
    fn entitled(&self, venue: Venue, channel: Channel) -> Result<(), Status> {
        match self.principal.refusal(venue, channel) {
            Some(reason) => Err(Status::permission_denied(reason)),
            None => Ok(()),
        }
    }
}

pub struct MarketDataService {
    status: StatusSource,
    config: ServiceConfig,
    history: SharedHistory,
    history_slots: Arc<Slots>,
    stream_slots: Arc<Slots>,
    calls: ClientRates,
    /// Turns true when the server stops.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl MarketDataService {
    pub fn new(
        status: StatusSource,
        config: ServiceConfig,
        history: SharedHistory,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let history_slots = Slots::new(
            "GetHistory answers",
            "history_streams",
            config.history_streams,
            config.history_streams_per_client,
        );
        let stream_slots = Slots::new(
            "Subscribe streams",
            "subscribe_streams",
            config.subscribe_streams,
            config.subscribe_streams_per_client,
        );
        let calls = ClientRates::new(config.calls_per_sec_per_client);
        Self {
            status,
            config,
            history,
            history_slots,
            stream_slots,
            calls,
            stop,
        }
    }

    /// Admits one one-shot call (see [`ClientRates`]).
    fn admit_call(&self, caller: &Caller) -> Result<(), Status> {
        self.calls
            .admit(&caller.client(), std::time::Instant::now())
            .map_err(Status::resource_exhausted)
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.status.hub
    }
}

/// The `grpc.request` span of one call; `rpc.grpc.status_code` is recorded when the
/// call ends ([`record_status`]).
fn call_span(method: &'static str, peer: Option<SocketAddr>) -> tracing::Span {
    tracing::info_span!(
        "grpc.request",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "raven.v1.MarketData",
        rpc.method = method,
        network.peer.address = peer.map(|a| tracing::field::display(a.ip())),
        network.peer.port = peer.map(|a| a.port()),
        rpc.grpc.status_code = tracing::field::Empty,
        rpc.messages_sent = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records a call's final status once. As OpenTelemetry's RPC conventions say for a
/// server, only the codes that mean the server failed mark the span as an error; a bad
/// request is the client's.
fn record_status(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.record("otel.status_code", "error");
    }
}

/// A streaming call's span, owned by its response stream: closed with the call's final
/// status when the stream ends or the client goes away.
struct StreamTrace {
    span: tracing::Span,
    code: tonic::Code,
    messages: u64,
}

impl StreamTrace {
    fn new(span: tracing::Span) -> Self {
        StreamTrace {
            span,
            code: tonic::Code::Ok,
            messages: 0,
        }
    }
}

impl Drop for StreamTrace {
    fn drop(&mut self) {
        self.span.record("rpc.messages_sent", self.messages);
        record_status(&self.span, self.code);
    }
}

/// Records a unary call's status on its span.
fn traced<T>(span: &tracing::Span, result: Result<T, Status>) -> Result<T, Status> {
    let code = result
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    record_status(span, code);
    result
}

/// Records a unary call's latency and outcome.
fn observe<T>(
    method: &'static str,
    started: Instant,
    result: Result<T, Status>,
) -> Result<T, Status> {
    metrics::histogram!("response_latency_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
    let code = match &result {
        Ok(_) => "OK",
        Err(status) => {
            metrics::counter!("errors_total", "kind" => "grpc_status").increment(1);
            code_name(status.code())
        }
    };
    metrics::counter!("raven_grpc_requests_total", "method" => method, "code" => code).increment(1);
    result
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        _ => "OTHER",
    }
}

fn parse_venue(venue: &str) -> Result<Venue, Status> {
    venue
        .parse()
        .map_err(|e| Status::invalid_argument(format!("venue: {e}")))
}

/// What a response stream takes from its queue at once: tonic's default yield threshold,
/// at which it cuts what it has encoded into one HTTP/2 write. (The framing and send
/// time each message gains make the encoded batch a little larger, so its last messages
/// may go in the next write, with the batch's send time.)
const BATCH_BYTES: usize = 32 << 10;

/// Messages a response stream has taken from its queue and not yet handed to tonic.
#[derive(Default)]
struct Batch {
    more: std::collections::VecDeque<bytes::Bytes>,
    send_time_ns: u64,
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<OutboundMessage, Status>> + Send>>;
type HistoryStream = Pin<Box<dyn Stream<Item = Result<pb::HistoryRecord, Status>> + Send>>;

/// Checks a `GetHistory` request and turns it into a store query.
fn history_query(req: &pb::GetHistoryRequest, now: UnixNanos) -> Result<HistoryQuery, Status> {
    let venue = parse_venue(&req.venue)?;
    let symbol = req.symbol.trim();
    Symbol::check(symbol).map_err(|e| Status::invalid_argument(format!("symbol: {e}")))?;
    let channel = match Channel::from_proto(req.channel) {
        None => {
            return Err(Status::invalid_argument(
                "channel: must be TRADES, BBO, FUNDING, LIQUIDATIONS or CANDLES_*",
            ))
        }
        Some(Channel::Book) => {
            return Err(Status::invalid_argument(
                "channel: BOOK history is not kept; GetOrderBook serves the live book",
            ))
        }
        Some(c) => c,
    };
    let end = if req.end_time_ns == 0 {
        now.as_nanos()
    } else {
        req.end_time_ns
    };
    if req.start_time_ns >= end {
        return Err(Status::invalid_argument(format!(
            "start_time_ns: {} is not before end_time_ns {end}",
            req.start_time_ns
        )));
    }
    let limit = match req.limit {
        0 => DEFAULT_HISTORY_LIMIT,
        n if n > MAX_HISTORY_LIMIT => {
            return Err(Status::invalid_argument(format!(
                "limit: {n} exceeds the maximum {MAX_HISTORY_LIMIT}"
            )))
        }
        n => n,
    };
    Ok(HistoryQuery {
        instrument: InstrumentId::new(venue, symbol),
        channel,
        start: UnixNanos(req.start_time_ns),
        end: UnixNanos(end),
        limit: limit as usize,
    })
}

/// A served instrument as `ListInstruments` answers it.
fn instrument(spec: raven_hub::ListedInstrument) -> pb::Instrument {
    let mut out = pb::Instrument {
        venue: spec.id.venue.as_str().to_owned(),
        symbol: spec.id.symbol.as_str().to_owned(),
        channels: spec.channels.iter().map(|c| c.to_proto() as i32).collect(),
        ..Default::default()
    };
    if let Some(l) = spec.listing {
        out.normalized_name = l.normalized_name();
        out.kind = l.kind.as_str().to_owned();
        out.base = l.base.clone();
        out.quote = l.quote.clone();
        out.settle = l.settle.clone().unwrap_or_default();
        out.tick_size = l.tick_size.to_string();
        out.lot_size = l.lot_size.to_string();
        out.quantity_unit = l.qty_unit.as_str().to_owned();
        out.contract_size = l.contract_size.map(|d| d.to_string()).unwrap_or_default();
        out.contract_unit = l.contract_unit.clone().unwrap_or_default();
        out.expiry_time_ns = match l.kind {
            InstrumentKind::Future { expiry } => expiry.as_nanos(),
            _ => 0,
        };
        out.trading = l.trading;
    }
    out
}

fn history_record(row: HistoryRow, unit: Option<QtyUnit>) -> pb::HistoryRecord {
    use pb::history_record::Payload as H;
    let payload = match row.item {
        HistoryItem::Event(kind) => match raven_hub::encode::event(&kind) {
            Payload::Trade(t) => Some(H::Trade(t)),
            Payload::Bbo(b) => Some(H::Bbo(b)),
            Payload::Funding(f) => Some(H::Funding(f)),
            Payload::Liquidation(l) => Some(H::Liquidation(l)),
            _ => None,
        },
        HistoryItem::Candle(c) => match raven_hub::encode::candle(&c, unit) {
            Payload::Candle(c) => Some(H::Candle(c)),
            _ => None,
        },
    };
    pb::HistoryRecord {
        time_ns: row.time.as_nanos(),
        exchange_time_ns: row.exchange_time.as_nanos(),
        receive_time_ns: row.receive_time.as_nanos(),
        payload,
    }
}

/// The pages of one `GetHistory` answer, handed on from the store by a task that holds
/// the answer's `slot`. It ends the answer with a status — and lets go of the store's
/// reader and the slot — when the client takes no page for `idle`, or the server stops.
fn forward(
    mut pages: raven_sinks::history::HistoryPages,
    slot: crate::limits::Slot,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::sync::mpsc::Receiver<Result<Vec<HistoryRow>, Status>> {
    use tokio::sync::mpsc::error::SendTimeoutError;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let ended = loop {
            let page = tokio::select! {
                page = pages.recv() => page,
                _ = stop.wait_for(|s| *s) => break Status::unavailable(STOPPING),
            };
            let page = match page {
                Some(Ok(rows)) => Ok(rows),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "GetHistory: the store failed mid-answer");
                    metrics::counter!("errors_total", "kind" => "history").increment(1);
                    Err(history_status(e))
                }
                None => return,
            };
            let failed = page.is_err();
            tokio::select! {
                sent = tx.send_timeout(page, idle) => match sent {
                    Ok(()) if failed => return,
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => {
                        break Status::resource_exhausted(format!(
                            "GetHistory: the answer was not read for {idle:?}; it was ended to \
                             free its slot"
                        ))
                    }
                    // The client went away.
                    Err(SendTimeoutError::Closed(_)) => return,
                },
                _ = stop.wait_for(|s| *s) => break Status::unavailable(STOPPING),
            }
        };
        // Free the store's reader and the slot now; the client learns why when it
        // reads again (or never, if it has gone).
        drop(pages);
        drop(slot);
        tracing::info!(reason = %ended.message(), "GetHistory answer ended early");
        let _ = tx.send(Err(ended)).await;
    });
    rx
}

/// Waits until `rate` has `cost` tokens for a stream's request.
async fn throttle(rate: &mut RequestRate, cost: u32) {
    let wait = rate.delay(cost, std::time::Instant::now());
    if !wait.is_zero() {
        metrics::counter!("raven_grpc_throttled_requests_total").increment(1);
        tokio::time::sleep(wait).await;
    }
}

/// What a `Subscribe` stream's response holds: its session, its slot and its reader
/// task, all let go when the response ends or its client goes away.
struct Held {
    _session: Arc<Mutex<raven_hub::Session>>,
    _slot: crate::limits::Slot,
    _reader: AbortOnDrop,
    _replays: Arc<Mutex<Vec<AbortOnDrop>>>,
}

/// What a stream's replays from a time share: the store, its reader slots, and who
/// the stream is for.
struct ReplayFrom {
    store: SharedHistory,
    slots: Arc<Slots>,
    client: String,
    max_records: usize,
    hub: Arc<raven_hub::Hub>,
}

impl ReplayFrom {
    /// Starts `start`'s replay (module `replay`); `None` without a store, where the
    /// session accepts none.
    fn spawn(
        &self,
        session: &Arc<Mutex<raven_hub::Session>>,
        sub: &Arc<raven_hub::Subscriber>,
        start: raven_hub::ReplayStart,
    ) -> Option<AbortOnDrop> {
        let store = self.store.clone()?;
        let task = crate::replay::ReplayTask {
            session: Arc::downgrade(session),
            sub: Arc::clone(sub),
            store,
            slot: self.slots.acquire(&self.client, None),
            unit: self.hub.listing(&start.key.instrument).map(|l| l.qty_unit),
            max_records: self.max_records,
        };
        Some(AbortOnDrop(tokio::spawn(task.run(start))))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a client message costs of its stream's request rate: one per topic, at least
/// one (a ping, an empty request).
fn request_cost(msg: &pb::ClientMessage) -> u32 {
    let topics = match &msg.kind {
        Some(pb::client_message::Kind::Subscribe(r)) => {
            r.topics.len() + r.resume.len() + r.replay.len()
        }
        Some(pb::client_message::Kind::Unsubscribe(r)) => r.topics.len(),
        _ => 1,
    };
    u32::try_from(topics).unwrap_or(u32::MAX).max(1)
}

fn history_status(e: HistoryError) -> Status {
    match e {
        HistoryError::Unavailable(_) => Status::unavailable(e.to_string()),
        HistoryError::Corrupt(_) => Status::data_loss(e.to_string()),
    }
}

#[tonic::async_trait]
impl MarketData for MarketDataService {
    type SubscribeStream = OutboundStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<OutboundStream>, Status> {
        let caller = Caller::of(&request)?;
        let mut trace = StreamTrace::new(call_span("Subscribe", caller.peer));
        // Held by the response stream: freed when the stream ends or its client goes.
        let share = caller.principal.max_streams;
        let slot = match self.stream_slots.acquire(&caller.client(), share) {
            Ok(slot) => slot,
            Err(reason) => {
                let status = Status::resource_exhausted(reason);
                trace.code = status.code();
                return observe("Subscribe", Instant::now(), Err(status));
            }
        };
        let peer = caller
            .peer
            .map_or_else(|| "unknown".to_owned(), |a: SocketAddr| a.to_string());
        let max_request_bytes = self.config.max_request_bytes;
        let mut inbound = request.into_inner();
        let grant = caller.principal.grant.clone();
        let mut hub_session = self.hub().session(peer.clone(), grant);
        hub_session.set_replay_refusal(self.history.is_none().then(|| {
            "history is off (history.store = \"off\"): there are no stored records to replay"
                .to_owned()
        }));
        let session = Arc::new(Mutex::new(hub_session));
        let subscriber = session.lock().subscriber();
        metrics::counter!("raven_grpc_requests_total", "method" => "Subscribe", "code" => "OK")
            .increment(1);

        // The reader holds the session weakly: when the client goes away the response
        // stream (the only strong owner) is dropped and the session with it, and the
        // reader is aborted with it (a client that keeps its request side open after
        // its stream ended must not keep a task).
        let reader_session = Arc::downgrade(&session);
        let reader_subscriber = Arc::clone(&subscriber);
        let mut rate =
            RequestRate::new(self.config.max_requests_per_sec, self.config.request_burst);
        // Replays from a time belong to the response stream, like the session: a client
        // that half-closes its side still gets them.
        let replays: Arc<Mutex<Vec<AbortOnDrop>>> = Arc::default();
        let replay_tasks = Arc::clone(&replays);
        let replay_from = ReplayFrom {
            store: self.history.clone(),
            slots: Arc::clone(&self.history_slots),
            client: caller.client(),
            max_records: self.config.max_replay_records,
            hub: self.hub().clone(),
        };
        let reader = tokio::spawn(async move {
            loop {
                match inbound.next().await {
                    Some(Ok(msg)) => {
                        // Read no faster than the stream's rate: a client that asks
                        // faster is slowed down by HTTP/2 flow control. What the
                        // message names is paid before it is handled, what its
                        // wildcards matched beyond that after.
                        let named = request_cost(&msg);
                        throttle(&mut rate, named).await;
                        let Some(session) = reader_session.upgrade() else {
                            break;
                        };
                        let started = Instant::now();
                        let (cost, replays) = {
                            let mut s = session.lock();
                            let cost = s.handle(msg);
                            (cost, s.take_replays())
                        };
                        metrics::histogram!("response_latency_seconds", "method" => "Subscribe")
                            .record(started.elapsed().as_secs_f64());
                        if !replays.is_empty() {
                            let mut tasks = replay_tasks.lock();
                            tasks.retain(|t| !t.0.is_finished());
                            tasks.extend(replays.into_iter().filter_map(|start| {
                                replay_from.spawn(&session, &reader_subscriber, start)
                            }));
                        }
                        drop(session);
                        let matched = u32::try_from(cost).unwrap_or(u32::MAX);
                        if matched > named {
                            throttle(&mut rate, matched - named).await;
                        }
                    }
                    Some(Err(status)) => {
                        tracing::debug!(%peer, %status, "subscribe stream: client side ended with an error");
                        // A message that could not be read (too large, not protobuf)
                        // ends the stream with the reason; a broken connection has no
                        // one left to tell.
                        match status.code() {
                            tonic::Code::OutOfRange => {
                                metrics::counter!("raven_limit_hits_total", "limit" => "request_bytes")
                                    .increment(1);
                                reader_subscriber.end_too_large(&format!(
                                    "{}: {}",
                                    crate::gate::too_large(max_request_bytes),
                                    status.message()
                                ));
                            }
                            tonic::Code::Internal | tonic::Code::InvalidArgument => {
                                reader_subscriber.end_bad_request(&format!(
                                    "a request could not be read: {}",
                                    status.message()
                                ));
                            }
                            _ => {}
                        }
                        break;
                    }
                    // The client half-closed: it may still want to receive.
                    None => break,
                }
            }
        });

        let heartbeat = self.config.heartbeat;
        let heartbeat_body = encode_untopiced(Payload::Heartbeat(pb::Heartbeat {}));
        let held = Held {
            _session: session,
            _slot: slot,
            _reader: AbortOnDrop(reader),
            _replays: replays,
        };
        // Messages are taken from the queue in batches of up to what tonic encodes into
        // one write; a batch's messages share one send time, the time it was taken.
        let state = (held, false, trace, Batch::default());
        let stream = futures_util::stream::unfold(
            state,
            move |(session, finished, mut trace, mut batch)| {
                let subscriber = subscriber.clone();
                let heartbeat_body = heartbeat_body.clone();
                async move {
                    if finished {
                        return None;
                    }
                    if let Some(body) = batch.more.pop_front() {
                        trace.messages += 1;
                        let send_time_ns = batch.send_time_ns;
                        return Some((
                            Ok(OutboundMessage { send_time_ns, body }),
                            (session, false, trace, batch),
                        ));
                    }
                    let deadline = tokio::time::Instant::now() + heartbeat;
                    let item = match subscriber
                        .next_batch(deadline, &mut batch.more, BATCH_BYTES)
                        .await
                    {
                        Next::Message(body) => {
                            trace.messages += 1;
                            batch.send_time_ns = UnixNanos::now().as_nanos();
                            Ok(OutboundMessage {
                                send_time_ns: batch.send_time_ns,
                                body,
                            })
                        }
                        Next::Idle => Ok(OutboundMessage {
                            send_time_ns: UnixNanos::now().as_nanos(),
                            body: heartbeat_body,
                        }),
                        Next::Ended(end) => {
                            let status = match *end {
                                EndReason::SlowConsumer(reason) => {
                                    metrics::counter!("errors_total", "kind" => "slow_consumer")
                                        .increment(1);
                                    Status::resource_exhausted(reason)
                                }
                                EndReason::Stopping(reason) => Status::unavailable(reason),
                                EndReason::BadRequest(reason) => Status::invalid_argument(reason),
                                EndReason::TooLarge(reason) => Status::resource_exhausted(reason),
                            };
                            trace.code = status.code();
                            return Some((Err(status), (session, true, trace, batch)));
                        }
                    };
                    Some((item, (session, false, trace, batch)))
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_order_book(
        &self,
        request: Request<pb::GetOrderBookRequest>,
    ) -> Result<Response<pb::BookSnapshot>, Status> {
        let started = Instant::now();
        let caller = Caller::of(&request)?;
        let span = call_span("GetOrderBook", caller.peer);
        let req = request.into_inner();
        let result = (|| {
            self.admit_call(&caller)?;
            let venue = parse_venue(&req.venue)?;
            caller.entitled(venue, Channel::Book)?;
            Symbol::check(req.symbol.trim())
                .map_err(|e| Status::invalid_argument(format!("symbol: {e}")))?;
            if req.depth > MAX_BOOK_DEPTH {
                return Err(Status::invalid_argument(format!(
                    "depth: {} exceeds the maximum {MAX_BOOK_DEPTH}",
                    req.depth
                )));
            }
            let name = req.symbol.trim();
            let id = self
                .hub()
                .instrument_id(venue, name)
                .unwrap_or_else(|| InstrumentId::new(venue, name));
            match self.hub().book(&id, req.depth as usize) {
                Err(_) => Err(Status::not_found(format!(
                    "instrument {id} is not configured (see ListInstruments)"
                ))),
                Ok(None) => Err(Status::unavailable(format!(
                    "book {id} is not in sync with the exchange; retry shortly"
                ))),
                Ok(Some((levels, known))) => Ok(Response::new(raven_hub::encode::book_snapshot(
                    &levels, false, known,
                ))),
            }
        })();
        traced(&span, observe("GetOrderBook", started, result))
    }

    async fn list_instruments(
        &self,
        request: Request<pb::ListInstrumentsRequest>,
    ) -> Result<Response<pb::ListInstrumentsResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::of(&request)?;
        let span = call_span("ListInstruments", caller.peer);
        let req = request.into_inner();
        let result = (|| {
            self.admit_call(&caller)?;
            let venue = if req.venue.is_empty() {
                None
            } else {
                Some(parse_venue(&req.venue)?)
            };
            let instruments = self
                .hub()
                .listed_instruments()
                .into_iter()
                .filter(|spec| venue.is_none_or(|v| spec.id.venue == v))
                // A principal sees the venues it may use.
                .filter(|spec| caller.principal.grant.covers_venue(spec.id.venue))
                .map(instrument)
                .collect();
            Ok(Response::new(pb::ListInstrumentsResponse { instruments }))
        })();
        traced(&span, observe("ListInstruments", started, result))
    }

    type GetHistoryStream = HistoryStream;

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<HistoryStream>, Status> {
        let started = Instant::now();
        let caller = Caller::of(&request)?;
        let span = call_span("GetHistory", caller.peer);
        let result: Result<Response<HistoryStream>, Status> = (|| {
            self.admit_call(&caller)?;
            let mut query = history_query(request.get_ref(), UnixNanos::now())?;
            caller.entitled(query.instrument.venue, query.channel)?;
            // A normalized name (BTC-USDT-PERP) names the exchange symbol it stands for.
            let hub = self.hub();
            if let Some(id) =
                hub.instrument_id(query.instrument.venue, query.instrument.symbol.as_str())
            {
                query.instrument = id;
            }
            let unit = hub.listing(&query.instrument).map(|l| l.qty_unit);
            let store = self.history.as_ref().ok_or_else(|| {
                Status::unavailable(
                    "history is off (history.store = \"off\" in the config file); set it to \
                     \"auto\", \"sqlite\" or \"influxdb\"",
                )
            })?;
            // Held by the answer's forwarder until it ends, is not read, or the server
            // stops.
            let slot = self
                .history_slots
                .acquire(&caller.client(), None)
                .map_err(Status::resource_exhausted)?;
            let pages = forward(
                store.query(query),
                slot,
                self.config.history_idle,
                self.stop.clone(),
            );
            // The call's span goes with the stream: it ends, with the final status,
            // when the answer does.
            let mut trace = StreamTrace::new(span.clone());
            let stream = tokio_stream::wrappers::ReceiverStream::new(pages).flat_map(move |page| {
                // The whole guard, not copies of its fields: it must live in the stream.
                let trace = &mut trace;
                let items: Vec<Result<pb::HistoryRecord, Status>> = match page {
                    Ok(rows) => {
                        trace.messages += rows.len() as u64;
                        rows.into_iter()
                            .map(|r| Ok(history_record(r, unit)))
                            .collect()
                    }
                    Err(status) => {
                        trace.code = status.code();
                        vec![Err(status)]
                    }
                };
                futures_util::stream::iter(items)
            });
            Ok(Response::new(Box::pin(stream) as HistoryStream))
        })();
        if let Err(status) = &result {
            record_status(&span, status.code());
        }
        observe("GetHistory", started, result)
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::of(&request)?;
        let span = call_span("GetStatus", caller.peer);
        let principal = &caller.principal;
        let result = self.admit_call(&caller).map(|()| {
            // Clients are shown to an admin; anyone else sees its own streams, without
            // addresses.
            let mut status = self.status.status();
            if !principal.admin {
                status.subscribers.retain(|s| s.principal == principal.name);
                for s in &mut status.subscribers {
                    s.peer.clear();
                }
            }
            Response::new(status)
        });
        traced(&span, observe("GetStatus", started, result))
    }
}

/// Serves MarketData, grpc.health.v1 and reflection on `listener` until `stop` turns
/// true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: StatusSource,
    config: ServiceConfig,
    access: Access,
    history: SharedHistory,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut stopped = stop.clone();
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MarketDataServer<MarketDataService>>()
        .await;
    // Both reflection versions: grpcurl and current tools ask v1; Python's
    // grpcio-reflection, Postman and older grpcurl still ask only v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let conn = config.conn.clone();
    let (keepalive, keepalive_timeout) = (config.keepalive_interval, config.keepalive_timeout);
    let max_request_bytes = config.max_request_bytes;
    let service = MarketDataServer::new(MarketDataService::new(status, config, history, stop))
        .max_decoding_message_size(max_request_bytes);
    let gate = crate::gate::GateLayer::new(
        access.auth,
        conn.max_calls_per_connection,
        max_request_bytes,
    );
    // HTTP/2's own stream limit is the hard stop behind the gate's, which answers with
    // a status: a client at the gate's limit can still open the stream that is told so.
    let h2_streams = u32::try_from(conn.max_calls_per_connection.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(16);
    let incoming = crate::conn::incoming(listener, access.tls, conn);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive_timeout))
        .max_concurrent_streams(h2_streams)
        .layer(gate)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
