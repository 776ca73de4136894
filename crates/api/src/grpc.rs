//! The `raven.v1.MarketData` gRPC service.
//!
//! `Subscribe` is the product: one bidirectional stream per client. A reader task feeds
//! the client's requests to its hub [`raven_hub::Session`]; the response stream drains the
//! session's queue, stamps each message's send time as the transport takes it, sends a
//! heartbeat whenever the stream has been idle for the configured interval, and ends
//! with `RESOURCE_EXHAUSTED` if the hub disconnected the client as a slow consumer.
//! Dropping the response stream (the client went away) drops the session, which
//! unsubscribes everything.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use raven_hub::encode::encode_untopiced;
use raven_hub::{Hub, Next};
use raven_model::{InstrumentId, UnixNanos, Venue};
use raven_proto::pb::server_message::Payload;
use raven_proto::server::market_data_server::{MarketData, MarketDataServer};
use raven_proto::{pb, OutboundMessage, FILE_DESCRIPTOR_SET};
use tonic::{Request, Response, Status, Streaming};

use crate::status::StatusSource;

/// The largest `GetOrderBook` depth.
pub const MAX_BOOK_DEPTH: u32 = 5000;

pub struct MarketDataService {
    status: StatusSource,
    heartbeat: Duration,
}

impl MarketDataService {
    pub fn new(status: StatusSource, heartbeat: Duration) -> Self {
        Self { status, heartbeat }
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.status.hub
    }
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
        _ => "OTHER",
    }
}

fn parse_venue(venue: &str) -> Result<Venue, Status> {
    venue
        .parse()
        .map_err(|e| Status::invalid_argument(format!("venue: {e}")))
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<OutboundMessage, Status>> + Send>>;

#[tonic::async_trait]
impl MarketData for MarketDataService {
    type SubscribeStream = OutboundStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<OutboundStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a: SocketAddr| a.to_string());
        let mut inbound = request.into_inner();
        let session = Arc::new(Mutex::new(self.hub().session(peer.clone())));
        let subscriber = session.lock().subscriber();
        metrics::counter!("raven_grpc_requests_total", "method" => "Subscribe", "code" => "OK")
            .increment(1);

        // The reader holds the session weakly: when the client goes away the response
        // stream (the only strong owner) is dropped and the session with it.
        let reader_session = Arc::downgrade(&session);
        tokio::spawn(async move {
            loop {
                match inbound.next().await {
                    Some(Ok(msg)) => {
                        let Some(session) = reader_session.upgrade() else {
                            break;
                        };
                        let started = Instant::now();
                        session.lock().handle(msg);
                        metrics::histogram!("response_latency_seconds", "method" => "Subscribe")
                            .record(started.elapsed().as_secs_f64());
                    }
                    Some(Err(status)) => {
                        tracing::debug!(%peer, %status, "subscribe stream: client side ended with an error");
                        break;
                    }
                    // The client half-closed: it may still want to receive.
                    None => break,
                }
            }
        });

        let heartbeat = self.heartbeat;
        let heartbeat_body = encode_untopiced(Payload::Heartbeat(pb::Heartbeat {}));
        let state = (session, false);
        let stream = futures_util::stream::unfold(state, move |(session, finished)| {
            let subscriber = subscriber.clone();
            let heartbeat_body = heartbeat_body.clone();
            async move {
                if finished {
                    return None;
                }
                let deadline = tokio::time::Instant::now() + heartbeat;
                let item = match subscriber.next(deadline).await {
                    Next::Message(body) => Ok(OutboundMessage {
                        send_time_ns: UnixNanos::now().as_nanos(),
                        body,
                    }),
                    Next::Idle => Ok(OutboundMessage {
                        send_time_ns: UnixNanos::now().as_nanos(),
                        body: heartbeat_body,
                    }),
                    Next::Killed(reason) => {
                        metrics::counter!("errors_total", "kind" => "slow_consumer").increment(1);
                        return Some((Err(Status::resource_exhausted(reason)), (session, true)));
                    }
                };
                Some((item, (session, false)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_order_book(
        &self,
        request: Request<pb::GetOrderBookRequest>,
    ) -> Result<Response<pb::BookSnapshot>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = (|| {
            let venue = parse_venue(&req.venue)?;
            if req.symbol.trim().is_empty() {
                return Err(Status::invalid_argument("symbol: must not be empty"));
            }
            if req.depth > MAX_BOOK_DEPTH {
                return Err(Status::invalid_argument(format!(
                    "depth: {} exceeds the maximum {MAX_BOOK_DEPTH}",
                    req.depth
                )));
            }
            let id = InstrumentId::new(venue, req.symbol.trim());
            match self.hub().book(&id, req.depth as usize) {
                Err(_) => Err(Status::not_found(format!(
                    "instrument {id} is not configured (see ListInstruments)"
                ))),
                Ok(None) => Err(Status::unavailable(format!(
                    "book {id} is not in sync with the exchange; retry shortly"
                ))),
                Ok(Some(levels)) => Ok(Response::new(raven_hub::encode::book_snapshot(
                    &levels, false,
                ))),
            }
        })();
        observe("GetOrderBook", started, result)
    }

    async fn list_instruments(
        &self,
        request: Request<pb::ListInstrumentsRequest>,
    ) -> Result<Response<pb::ListInstrumentsResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let result = (|| {
            let venue = if req.venue.is_empty() {
                None
            } else {
                Some(parse_venue(&req.venue)?)
            };
            let instruments = self
                .hub()
                .instruments()
                .into_iter()
                .filter(|spec| venue.is_none_or(|v| spec.id.venue == v))
                .map(|spec| pb::Instrument {
                    venue: spec.id.venue.as_str().to_owned(),
                    symbol: spec.id.symbol.as_str().to_owned(),
                    channels: spec.channels.iter().map(|c| c.to_proto() as i32).collect(),
                })
                .collect();
            Ok(Response::new(pb::ListInstrumentsResponse { instruments }))
        })();
        observe("ListInstruments", started, result)
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let started = Instant::now();
        observe(
            "GetStatus",
            started,
            Ok(Response::new(self.status.status())),
        )
    }
}

/// Serves MarketData, grpc.health.v1 and reflection on `listener` until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: StatusSource,
    heartbeat: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MarketDataServer<MarketDataService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection = reflection?;
    let service = MarketDataServer::new(MarketDataService::new(status, heartbeat));
    // Market data is many small messages: Nagle's algorithm would hold them back for
    // up to a delayed-ACK period (~40 ms). The builder's `tcp_nodelay` does not apply to
    // a listener we bound ourselves, so it is set on the incoming stream.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
