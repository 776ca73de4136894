//! OpenTelemetry export end to end: `raven serve` sends its spans over OTLP/gRPC to a
//! real receiver (the `opentelemetry.proto.collector.trace.v1.TraceService` a Jaeger or
//! an OpenTelemetry Collector serves) running in this test. The spans must carry the
//! names and attributes the README documents, the configured service name, and stay
//! few: none per market data message.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use raven_proto::pb;

/// One received span, flattened: attribute values as text.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attrs: HashMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }

    fn int(&self, key: &str) -> i64 {
        self.attr(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not an integer: {self:?}"))
    }
}

fn text(attrs: &[KeyValue]) -> HashMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The OTLP trace receiver: keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    /// Serves on a free loopback port; returns the receiver and its endpoint URL.
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
            .await
            .expect("bind the OTLP receiver");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (receiver, endpoint)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }

    fn named(&self, name: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| text(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        name: span.name,
                        kind: span.kind,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attrs: text(&span.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// OTLP span kind SERVER.
const SPAN_KIND_SERVER: i32 = 2;

#[tokio::test]
async fn spans_reach_a_real_otlp_receiver() {
    let (receiver, endpoint) = Receiver::start().await;
    let redis_dir = tempfile::tempdir().expect("tempdir");
    let redis_port = free_port();
    let _redis = spawn_redis(redis_port, redis_dir.path());
    let (_sim, sim_addr) = spawn_sim(0, &["--symbols", "2", "--rate", "1000"]);
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\", \"SYN1USDT\"]\nchannels = [\"trades\", \"book\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n"
    );
    // SQLite history is on by default (data_dir); Redis is the second store.
    let stores = format!("[redis]\nurl = \"redis://127.0.0.1:{redis_port}\"\n");
    let server = spawn_serve_with_env(
        &venues,
        &stores,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "raven-test"),
            // Export every 200 ms instead of 5 s, so the test does not wait.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    wait_synced(&server).await;

    let mut client = server.client().await;
    client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("GetStatus");
    let book = |symbol: &str| pb::GetOrderBookRequest {
        venue: "binance_spot".into(),
        symbol: symbol.into(),
        depth: 5,
    };
    client
        .get_order_book(book("SYN0USDT"))
        .await
        .expect("GetOrderBook");
    let missing = client
        .get_order_book(book("NOPEUSDT"))
        .await
        .expect_err("not configured");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut received = 0;
    {
        let mut sub = Subscription::open(
            &mut client,
            vec![
                topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0),
                topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0),
            ],
        )
        .await;
        while received < 300 {
            match sub.next(Duration::from_secs(10)).await {
                Some(Ok(_)) => received += 1,
                other => panic!("subscription ended early: {other:?}"),
            }
        }
    } // The client goes away: the Subscribe call, and its span, end.

    // A lost depth frame: SYN1USDT resyncs from a new snapshot.
    let (code, body) = http_post_json(
        &format!("http://{sim_addr}/sim/fault"),
        r#"{"fault":"gap","symbol":"SYN1USDT"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    wait_until("SYN1USDT resynced", Duration::from_secs(60), || async {
        let s = server.status().await;
        s.books
            .iter()
            .any(|b| b.symbol == "SYN1USDT" && b.resyncs >= 1)
            && s.books.iter().all(|b| b.state == "synced")
    })
    .await;

    // Spans that end while Raven runs arrive with the next batch.
    wait_until(
        "the calls', resync's and stores' spans at the receiver",
        Duration::from_secs(30),
        || async {
            let spans = receiver.spans();
            let has = |name: &str, key: &str, value: &str| {
                spans.iter().any(|s| s.name == name && s.attr(key) == value)
            };
            has("grpc.request", "rpc.method", "Subscribe")
                && has("book.resync", "reason", "sequence gap")
                && has("store.batch", "store", "sqlite")
                && has("store.batch", "store", "redis")
        },
    )
    .await;

    let (_, stats) = http_get(&format!("http://{sim_addr}/sim/stats")).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats json");
    let frames = stats["frames_sent"].as_u64().expect("frames_sent");
    // Shutdown exports what is still open or queued: the connection spans end here.
    // Waited for off the runtime: the receiver must keep answering meanwhile.
    let dir = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("terminate");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let spans = receiver.spans();
    let context = || format!("{} spans, {frames} frames\n{spans:#?}\n{log}", spans.len());

    // Only Raven's spans, all from the configured service.
    for s in &spans {
        assert_eq!(s.service, "raven-test", "{s:?}");
        assert!(
            [
                "venue.connection",
                "book.resync",
                "book.snapshot",
                "grpc.request",
                "store.batch"
            ]
            .contains(&s.name.as_str()),
            "unexpected span {s:?}"
        );
    }
    // None per market data message: a few a second at most, whatever the message rate.
    assert!(
        frames >= 1000 && (spans.len() as u64) * 5 < frames,
        "{}",
        context()
    );

    // gRPC calls: one span each, with the status code the client saw.
    let grpc = receiver.named("grpc.request");
    let call = |method: &str, code: i64| {
        grpc.iter()
            .find(|s| s.attr("rpc.method") == method && s.int("rpc.grpc.status_code") == code)
            .unwrap_or_else(|| panic!("no {method} span with status {code}: {grpc:#?}"))
    };
    let status = call("GetStatus", 0);
    call("GetOrderBook", 0);
    call("GetOrderBook", tonic::Code::NotFound as i64);
    let subscribe = call("Subscribe", 0);
    for s in [status, subscribe] {
        assert_eq!(s.kind, SPAN_KIND_SERVER, "{s:?}");
        assert_eq!(s.attr("rpc.system"), "grpc", "{s:?}");
        assert_eq!(s.attr("rpc.service"), "raven.v1.MarketData", "{s:?}");
        assert_eq!(s.attr("network.peer.address"), "127.0.0.1", "{s:?}");
        assert!(s.int("network.peer.port") > 0, "{s:?}");
    }
    assert!(
        subscribe.int("rpc.messages_sent") >= received,
        "{subscribe:?}"
    );
    assert_eq!(
        grpc.iter()
            .filter(|s| s.attr("rpc.method") == "Subscribe")
            .count(),
        1,
        "one span per stream, not per message: {grpc:#?}"
    );

    // The connection: one attempt, closed at shutdown.
    let connections = receiver.named("venue.connection");
    assert_eq!(connections.len(), 1, "{}", context());
    let conn = &connections[0];
    assert_eq!(conn.attr("venue"), "binance_spot");
    assert_eq!(conn.attr("connection.name"), "binance_spot#0");
    assert_eq!(conn.int("connection.streams"), 4, "{conn:?}");
    assert_eq!(conn.int("connection.attempt"), 1, "{conn:?}");
    assert!(conn.attr("outcome") == "shutdown", "{conn:?}");

    // Book resyncs: the initial sync of each book, then the gap's, under the connection.
    let resyncs = receiver.named("book.resync");
    for r in &resyncs {
        assert_eq!(r.trace_id, conn.trace_id, "{r:?}");
        assert_eq!(r.parent_span_id, conn.span_id, "{r:?}");
        assert_eq!(r.attr("venue"), "binance_spot", "{r:?}");
        assert_eq!(r.attr("connection.name"), "binance_spot#0", "{r:?}");
        assert_eq!(r.attr("outcome"), "synced", "{r:?}");
        assert!(r.int("snapshot.last_update_id") > 0, "{r:?}");
        assert!(r.int("snapshot.attempts") >= 1, "{r:?}");
        assert!(r.attrs.contains_key("replayed_diffs"), "{r:?}");
    }
    let resynced = |symbol: &str, reason: &str| {
        resyncs
            .iter()
            .filter(|r| r.attr("symbol") == symbol && r.attr("reason") == reason)
            .count()
    };
    assert_eq!(resynced("SYN0USDT", "initial sync"), 1, "{resyncs:#?}");
    assert_eq!(resynced("SYN1USDT", "initial sync"), 1, "{resyncs:#?}");
    assert_eq!(resynced("SYN1USDT", "sequence gap"), 1, "{resyncs:#?}");
    assert_eq!(resyncs.len(), 3, "{resyncs:#?}");

    // Snapshot fetches: children of a resync.
    let snapshots = receiver.named("book.snapshot");
    assert!(snapshots.len() >= 3, "{snapshots:#?}");
    for f in &snapshots {
        let parent = resyncs
            .iter()
            .find(|r| r.span_id == f.parent_span_id)
            .unwrap_or_else(|| panic!("snapshot fetch outside a resync: {f:?}"));
        assert_eq!(f.attr("symbol"), parent.attr("symbol"), "{f:?}");
        assert_eq!(f.attr("outcome"), "fetched", "{f:?}");
        assert_eq!(f.int("snapshot.limit"), 1000, "{f:?}");
        assert!(f.int("snapshot.last_update_id") > 0, "{f:?}");
    }

    // Store batches: rows per committed batch or flush.
    let batches = receiver.named("store.batch");
    for (store, outcome) in [("sqlite", "committed"), ("redis", "written")] {
        let ok: Vec<&Span> = batches
            .iter()
            .filter(|b| b.attr("store") == store && b.attr("outcome") == outcome)
            .collect();
        assert!(!ok.is_empty(), "no {outcome} {store} batch: {batches:#?}");
        assert!(ok.iter().all(|b| b.int("rows") > 0), "{ok:#?}");
    }
}
