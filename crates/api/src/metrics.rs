//! Prometheus metrics on METRICS_PORT.
//!
//! Two kinds of metric, exposed on one `/metrics` page:
//!
//! * **Events** — frames, gaps, resyncs, requests, store writes — are counted where they
//!   happen, all over Raven, through the `metrics` facade (`counter!`, `histogram!`). This
//!   module installs the Prometheus recorder once and describes them.
//! * **State** — is a connection up, how old is its last frame, how deep is a book, how
//!   full are the subscriber queues, is a store healthy, how much memory and CPU does the
//!   process use — is read at scrape time: from [`StatusSource`] (the same view
//!   `GetStatus` and `/health/ready` use, so the three never disagree) and from
//!   `/proc/self`. Nothing is kept between scrapes, so a connection or book that goes
//!   away simply stops being reported instead of leaving a stale series behind, and the
//!   hot path pays nothing for these gauges.
//!
//! Labels stay bounded by configuration: venue, connection name, symbol, book side,
//! store, gRPC method and code, error kind. Never a client, peer or stream id: the
//! subscriber gauges are aggregates over all streams.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use raven_proto::pb;

use crate::status::StatusSource;

/// Latency buckets in seconds: 10 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The `kind` label values of `errors_total`.
pub const ERROR_KINDS: &[&str] = &[
    "rejected_topic",
    "grpc_status",
    "slow_consumer",
    "redis",
    "history",
];

/// The `method` label values of `response_latency_seconds` and
/// `raven_grpc_requests_total`: the MarketData methods.
pub const METHODS: &[&str] = &[
    "Subscribe",
    "GetOrderBook",
    "ListInstruments",
    "GetHistory",
    "GetStatus",
];

/// Every `limit` of `raven_limit_hits_total`: each refusal a server limit makes.
pub const LIMITS: &[&str] = &[
    "connections",
    "streams_per_connection",
    "subscribe_streams",
    "subscribe_streams_per_client",
    "history_streams",
    "history_streams_per_client",
    "calls_per_sec",
    "request_bytes",
    "idle_timeout",
    "tls_handshake_timeout",
    "auth_failures",
];

/// Registers the per-principal series (their label values are configured names).
pub fn register_principals(names: &[String]) {
    for name in names {
        for method in METHODS {
            metrics::counter!("raven_principal_calls_total", "principal" => name.clone(), "method" => *method)
                .absolute(0);
        }
    }
}

/// Installs the process-wide recorder. Call once, before anything records.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    // Series that exist from the start, so dashboards and alerts read 0, not "no data",
    // until the first event.
    metrics::gauge!("grpc_active_connections").set(0.0);
    for method in METHODS {
        // Registered, not recorded: the histogram's series exist with zero counts.
        let _ = metrics::histogram!("response_latency_seconds", "method" => *method);
    }
    for kind in ERROR_KINDS {
        metrics::counter!("errors_total", "kind" => *kind).absolute(0);
    }
    metrics::counter!("raven_subscriber_conflations_total").absolute(0);
    metrics::counter!("raven_subscriber_dropped_messages_total").absolute(0);
    for reason in ["slow_consumer", "shutdown", "bad_request"] {
        metrics::counter!("raven_subscriber_disconnects_total", "reason" => reason).absolute(0);
    }
    metrics::counter!("raven_grpc_throttled_requests_total").absolute(0);
    metrics::gauge!("raven_retention_bytes").set(0.0);
    metrics::gauge!("raven_grpc_connections").set(0.0);
    for limit in LIMITS {
        metrics::counter!("raven_limit_hits_total", "limit" => *limit).absolute(0);
    }
    for reason in crate::auth::AUTH_FAILURE_REASONS {
        metrics::counter!("raven_auth_failures_total", "reason" => reason).absolute(0);
    }
    metrics::counter!("raven_tls_handshake_failures_total").absolute(0);
    for result in ["ok", "failed"] {
        metrics::counter!("raven_tls_reloads_total", "result" => result).absolute(0);
        metrics::counter!("raven_token_reloads_total", "result" => result).absolute(0);
    }
    for result in raven_hub::RESUME_RESULTS {
        metrics::counter!("raven_resumes_total", "result" => result).absolute(0);
    }
    for result in raven_hub::REPLAY_RESULTS {
        metrics::counter!("raven_replays_total", "result" => result).absolute(0);
    }
    Ok(handle)
}

/// HELP text for the event metrics recorded through the facade.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("grpc_active_connections", "Open gRPC Subscribe streams.");
    describe_counter!(
        "messages_processed_total",
        "Exchange frames processed into events or book changes, by venue."
    );
    describe_histogram!(
        raven_hub::PUBLISH_LATENCY,
        Unit::Seconds,
        "Time from a frame's receive time to its messages queued for every subscriber: parse, sequence checks, book apply, encode, fan-out."
    );
    describe_histogram!(
        "response_latency_seconds",
        Unit::Seconds,
        "Time to answer a gRPC request (Subscribe: time to the first message), by method."
    );
    describe_counter!("errors_total", "Errors, by kind.");
    describe_gauge!(
        "raven_retention_bytes",
        "Bytes of recent messages topics keep for clients that resume, over all topics."
    );
    describe_counter!(
        "raven_resumes_total",
        "Topics asked to resume where a client left off, by result (replayed, epoch_changed, out_of_range, unavailable)."
    );
    describe_counter!(
        "raven_replays_total",
        "Topics replayed from a time and joined to their live stream, by result: exact (the join is proven), inexact (ReplayComplete says why)."
    );
    describe_gauge!(
        "raven_grpc_connections",
        "Open gRPC connections (TCP; those still in their TLS handshake included)."
    );
    describe_counter!(
        "raven_limit_hits_total",
        "Calls or connections refused or closed by a server limit, by limit (server.max_connections, server.max_streams_per_connection, ...)."
    );
    describe_counter!(
        "raven_auth_failures_total",
        "Calls refused UNAUTHENTICATED, by reason (missing, malformed, unknown_token, unknown_certificate, conflict)."
    );
    describe_counter!(
        "raven_principal_calls_total",
        "Authenticated gRPC calls, by principal (a configured name; \"open\" without credentials) and method."
    );
    describe_counter!(
        "raven_tls_handshake_failures_total",
        "TLS handshakes on the gRPC port that failed (no or untrusted client certificate, wrong protocol)."
    );
    describe_counter!(
        "raven_tls_reloads_total",
        "Reads of the TLS certificate, key and client CA after start, by result; a failed one keeps the files in use."
    );
    describe_counter!(
        "raven_token_reloads_total",
        "Reads of the tokens file after start, by result; a failed one keeps the tokens in use."
    );
    describe_counter!(
        "raven_grpc_requests_total",
        "gRPC requests, by method and status code."
    );
    describe_counter!(
        "raven_feed_frames_total",
        "WebSocket frames read, by venue."
    );
    describe_counter!(
        "raven_feed_malformed_frames_total",
        "Frames that could not be parsed and were skipped, by venue."
    );
    describe_counter!(
        "raven_feed_reconnects_total",
        "WebSocket reconnects, for any reason, by venue."
    );
    describe_counter!(
        "raven_book_gaps_total",
        "Sequence gaps found in depth streams, by venue."
    );
    describe_counter!(
        "raven_book_resyncs_total",
        "Book resyncs started (gap, disconnect, rejection), by venue."
    );
    describe_counter!(
        "raven_book_rejected_total",
        "Book updates refused as crossed or unsynced, by venue."
    );
    describe_counter!(
        "raven_book_checksums_total",
        "Venue book checksums compared with Raven's book, by venue and outcome (verified, mismatch: the book resyncs)."
    );
    describe_counter!(
        "raven_feed_refused_requests_total",
        "Requests the exchange refused (a subscription it rejects), by venue."
    );
    describe_counter!(
        "raven_snapshot_fetches_total",
        "REST depth snapshots fetched, by venue."
    );
    describe_counter!(
        "raven_snapshot_failures_total",
        "REST depth snapshot attempts that failed, by venue."
    );
    describe_counter!(
        "raven_subscriber_conflations_total",
        "Book topics conflated to a fresh snapshot because a stream's queue was full."
    );
    describe_counter!(
        "raven_subscriber_dropped_messages_total",
        "Messages dropped because a stream's queue was full."
    );
    describe_counter!(
        "raven_subscriber_disconnects_total",
        "Streams ended by Raven, by reason."
    );
    describe_counter!(
        "raven_feed_duplicates_total",
        "Events and depth diffs dropped as repeats of ones already delivered (mostly while \
         two connections overlap in a hand-over), by venue."
    );
    describe_counter!(
        "raven_feed_out_of_order_events_total",
        "Events whose key (trade id, update id, event time) went below the last one on the \
         same connection, by venue; delivered, and the stream goes on from them."
    );
    describe_counter!(
        "raven_feed_handovers_total",
        "Connection hand-overs before the age limit, by venue and outcome (completed, \
         timed_out, failed)."
    );
    describe_counter!(
        "raven_feed_task_restarts_total",
        "Connection tasks that failed and were restarted, by venue."
    );
    describe_counter!(
        "raven_feed_gaps_total",
        "Holes in event streams announced to subscribers (FeedGap), by venue and kind \
         (interrupted, resumed, trade_ids)."
    );
    describe_counter!(
        "raven_feed_future_events_total",
        "Events stamped further ahead of Raven's clock than hub.max_clock_skew_ms, by venue."
    );
    describe_counter!(
        "raven_candle_late_trades_total",
        "Trades left out of a candle whose interval had closed, by venue (summed over \
         intervals)."
    );
    describe_counter!(
        "raven_candle_rejected_trades_total",
        "Trades left out of candles, by venue and reason (future_time, overflow)."
    );
    describe_counter!(
        "raven_grpc_throttled_requests_total",
        "Subscribe requests read late because their stream exceeded its request rate."
    );
    describe_counter!(
        "raven_store_task_restarts_total",
        "Store tasks that failed and were restarted, by store."
    );
    describe_counter!(
        "raven_task_restarts_total",
        "Other supervised tasks (ticker, views) that failed or ended and were restarted, by task."
    );
    describe_counter!(
        "raven_tap_dropped_total",
        "Records a store's hub tap dropped because the store fell behind, by tap."
    );
}

/// What the `/metrics` handler reads: the facade's recorder and the live status.
#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    status: StatusSource,
}

/// `/metrics`: the facade's metrics followed by the state read now.
pub fn router(handle: PrometheusHandle, status: StatusSource) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(Scrape { handle, status })
}

async fn render(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut body = scrape.handle.render();
    let config = scrape.status.hub.config();
    let (capacity, max_bytes) = (config.queue_capacity, config.queue_max_bytes);
    write_status(&mut body, &scrape.status.status(), capacity, max_bytes);
    if let Some(process) = Process::read() {
        process.write(&mut body);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Writes Prometheus text exposition, one metric family at a time.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

const CONNECTION_STATES: &[&str] = &["connecting", "connected", "backoff"];
const BOOK_STATES: &[&str] = &["syncing", "synced", "resyncing"];
const STORE_STATES: &[&str] = &["ok", "degraded", "losing"];

/// The state gauges, from one `GetStatus` view. `capacity` and `max_bytes` are a
/// stream's queue bounds.
fn write_status(out: &mut String, s: &pb::StatusResponse, capacity: usize, max_bytes: usize) {
    let mut f = Family::new(
        out,
        "raven_ready",
        "gauge",
        "1 when /health/ready answers 200.",
    );
    f.sample(&[], flag(s.ready));
    let mut f = Family::new(
        out,
        "raven_uptime_seconds",
        "gauge",
        "Seconds since Raven started serving.",
    );
    f.sample(&[], s.uptime_ms as f64 / 1e3);

    let mut f = Family::new(
        out,
        "raven_feed_connection_up",
        "gauge",
        "1 while the exchange connection is connected.",
    );
    for c in &s.connections {
        f.sample(
            &[("venue", &c.venue), ("connection", &c.name)],
            flag(c.state == "connected"),
        );
    }
    let mut f = Family::new(
        out,
        "raven_feed_connection_state",
        "gauge",
        "1 for the connection's current state (connecting, connected, backoff).",
    );
    for c in &s.connections {
        for state in CONNECTION_STATES {
            f.sample(
                &[
                    ("venue", &c.venue),
                    ("connection", &c.name),
                    ("state", state),
                ],
                flag(c.state == *state),
            );
        }
    }
    let mut f = Family::new(
        out,
        "raven_feed_last_message_age_seconds",
        "gauge",
        "Seconds since the connection's last frame (absent before the first).",
    );
    for c in s.connections.iter().filter(|c| c.frames > 0) {
        f.sample(
            &[("venue", &c.venue), ("connection", &c.name)],
            c.last_message_age_ms as f64 / 1e3,
        );
    }
    let mut f = Family::new(
        out,
        "raven_feed_streams",
        "gauge",
        "Exchange streams carried by the connection.",
    );
    for c in &s.connections {
        f.sample(
            &[("venue", &c.venue), ("connection", &c.name)],
            f64::from(c.streams),
        );
    }

    let mut f = Family::new(
        out,
        "raven_book_synced",
        "gauge",
        "1 while the book is in sync and served.",
    );
    for b in &s.books {
        f.sample(
            &[("venue", &b.venue), ("symbol", &b.symbol)],
            flag(b.state == "synced"),
        );
    }
    let mut f = Family::new(
        out,
        "raven_book_state",
        "gauge",
        "1 for the book's current state (syncing, synced, resyncing).",
    );
    for b in &s.books {
        for state in BOOK_STATES {
            f.sample(
                &[("venue", &b.venue), ("symbol", &b.symbol), ("state", state)],
                flag(b.state == *state),
            );
        }
    }
    let mut f = Family::new(
        out,
        "raven_book_levels",
        "gauge",
        "Price levels in the served book, by side.",
    );
    for b in &s.books {
        for (side, n) in [("bid", b.bid_levels), ("ask", b.ask_levels)] {
            f.sample(
                &[("venue", &b.venue), ("symbol", &b.symbol), ("side", side)],
                f64::from(n),
            );
        }
    }
    let mut f = Family::new(
        out,
        "raven_book_known_levels",
        "gauge",
        "Best levels of the book known to be complete, by side (the rest, beyond a \
         depth-limited snapshot, may miss levels).",
    );
    for b in &s.books {
        for (side, n) in [("bid", b.known_bid_levels), ("ask", b.known_ask_levels)] {
            f.sample(
                &[("venue", &b.venue), ("symbol", &b.symbol), ("side", side)],
                f64::from(n),
            );
        }
    }
    let mut f = Family::new(
        out,
        "raven_book_last_message_age_seconds",
        "gauge",
        "Seconds since the book's last update (absent before the first).",
    );
    for b in s.books.iter().filter(|b| b.last_update_id > 0) {
        f.sample(
            &[("venue", &b.venue), ("symbol", &b.symbol)],
            b.last_message_age_ms as f64 / 1e3,
        );
    }

    let depths = s.subscribers.iter().map(|x| f64::from(x.queue_depth));
    let mut f = Family::new(
        out,
        "raven_subscriber_queue_depth_max",
        "gauge",
        "Messages queued on the fullest Subscribe stream.",
    );
    f.sample(&[], depths.clone().fold(0.0, f64::max));
    let mut f = Family::new(
        out,
        "raven_subscriber_queued_messages",
        "gauge",
        "Messages queued over all Subscribe streams.",
    );
    f.sample(&[], depths.sum());
    let mut f = Family::new(
        out,
        "raven_subscriber_queue_capacity",
        "gauge",
        "Messages one stream may queue before conflating or dropping (hub.queue_capacity).",
    );
    f.sample(&[], capacity as f64);
    let mut f = Family::new(
        out,
        "raven_subscriber_queued_bytes",
        "gauge",
        "Bytes queued over all Subscribe streams.",
    );
    f.sample(
        &[],
        s.subscribers.iter().map(|x| x.queue_bytes as f64).sum(),
    );
    let mut f = Family::new(
        out,
        "raven_subscriber_queue_max_bytes",
        "gauge",
        "Bytes one stream may queue before conflating or dropping (hub.queue_max_bytes).",
    );
    f.sample(&[], max_bytes as f64);
    let mut f = Family::new(
        out,
        "raven_subscriber_topics",
        "gauge",
        "Topics subscribed over all Subscribe streams.",
    );
    f.sample(&[], s.subscribers.iter().map(|x| f64::from(x.topics)).sum());

    let mut f = Family::new(
        out,
        "raven_store_up",
        "gauge",
        "1 while the store is ok (0: degraded or losing data).",
    );
    for st in &s.stores {
        f.sample(&[("store", &st.name)], flag(st.state == "ok"));
    }
    let mut f = Family::new(
        out,
        "raven_store_state",
        "gauge",
        "1 for the store's current state (ok, degraded, losing).",
    );
    for st in &s.stores {
        for state in STORE_STATES {
            f.sample(
                &[("store", &st.name), ("state", state)],
                flag(st.state == *state),
            );
        }
    }
    let mut f = Family::new(
        out,
        "raven_store_dropped_records_total",
        "counter",
        "Records a store lost: dropped by the store itself or by its hub tap.",
    );
    for st in &s.stores {
        f.sample(&[("store", &st.name)], st.dropped as f64);
    }
}

/// This process's resources, read from `/proc/self` (Linux only; elsewhere `None`).
#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
    /// Per interface: received and transmitted bytes.
    network: Vec<(String, f64, f64)>,
}

/// Clock ticks per second of `/proc` times: USER_HZ, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

impl Process {
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mut p = Process::parse(&stat, &status)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l));
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        p.start_time_seconds = match (boot, start_ticks(&stat)) {
            (Some(boot), Some(ticks)) => Some(boot + ticks / USER_HZ),
            _ => None,
        };
        p.network = std::fs::read_to_string("/proc/self/net/dev")
            .map(|d| net_dev(&d))
            .unwrap_or_default();
        Some(p)
    }

    /// CPU time from `/proc/self/stat`; memory and threads from `/proc/self/status`,
    /// whose sizes are in kB, so no page size is assumed.
    fn parse(stat: &str, status: &str) -> Option<Process> {
        // The fields after the command name, which is in parentheses and may hold spaces:
        // state is f[0], utime f[11], stime f[12].
        let (_, rest) = stat.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some(Process {
            cpu_seconds: (num(11)? + num(12)?) as f64 / USER_HZ,
            resident_bytes: kb("VmRSS:")? * 1024.0,
            virtual_bytes: kb("VmSize:")? * 1024.0,
            threads: kb("Threads:")?,
            ..Process::default()
        })
    }

    fn write(&self, out: &mut String) {
        let mut f = Family::new(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time.",
        );
        f.sample(&[], self.cpu_seconds);
        let mut f = Family::new(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident set size.",
        );
        f.sample(&[], self.resident_bytes);
        let mut f = Family::new(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size.",
        );
        f.sample(&[], self.virtual_bytes);
        let mut f = Family::new(out, "process_threads", "gauge", "OS threads.");
        f.sample(&[], self.threads);
        let mut f = Family::new(out, "process_open_fds", "gauge", "Open file descriptors.");
        f.sample(&[], self.open_fds);
        if let Some(max) = self.max_fds {
            let mut f = Family::new(
                out,
                "process_max_fds",
                "gauge",
                "Limit on open file descriptors.",
            );
            f.sample(&[], max);
        }
        if let Some(start) = self.start_time_seconds {
            let mut f = Family::new(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process, seconds since the Unix epoch.",
            );
            f.sample(&[], start);
        }
        let mut f = Family::new(
            out,
            "raven_network_receive_bytes_total",
            "counter",
            "Bytes received per interface of Raven's network namespace (its container's).",
        );
        for (device, rx, _) in &self.network {
            f.sample(&[("device", device)], *rx);
        }
        let mut f = Family::new(
            out,
            "raven_network_transmit_bytes_total",
            "counter",
            "Bytes sent per interface of Raven's network namespace (its container's).",
        );
        for (device, _, tx) in &self.network {
            f.sample(&[("device", device)], *tx);
        }
    }
}

/// `/proc/self/net/dev`: per interface, received bytes (first column after the name)
/// and transmitted bytes (ninth).
fn net_dev(dev: &str) -> Vec<(String, f64, f64)> {
    dev.lines()
        .filter_map(|l| {
            let (name, counters) = l.split_once(':')?;
            let c: Vec<f64> = counters
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            Some((name.trim().to_owned(), *c.first()?, *c.get(8)?))
        })
        .collect()
}

/// The soft limit of "Max open files" in `/proc/self/limits` ("unlimited" → `None`).
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: boot time, seconds since the Unix epoch.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Field 22 of `/proc/self/stat`, `starttime`: clock ticks from boot to the process start.
fn start_ticks(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> pb::StatusResponse {
        pb::StatusResponse {
            uptime_ms: 1500,
            ready: true,
            connections: vec![pb::ConnectionStatus {
                venue: "binance_spot".into(),
                name: "binance_spot#0".into(),
                state: "backoff".into(),
                last_message_age_ms: 2500,
                frames: 7,
                streams: 4,
                ..Default::default()
            }],
            books: vec![pb::BookStatus {
                venue: "binance_spot".into(),
                symbol: "BTCUSDT".into(),
                state: "synced".into(),
                last_message_age_ms: 100,
                bid_levels: 10,
                ask_levels: 12,
                last_update_id: 5,
                ..Default::default()
            }],
            subscribers: vec![
                pb::SubscriberStatus {
                    id: 1,
                    peer: "10.0.0.1:5000".into(),
                    topics: 2,
                    queue_depth: 3,
                    ..Default::default()
                },
                pb::SubscriberStatus {
                    id: 2,
                    peer: "10.0.0.2:5000".into(),
                    topics: 1,
                    queue_depth: 9,
                    ..Default::default()
                },
            ],
            stores: vec![pb::StoreStatus {
                name: "influxdb".into(),
                state: "degraded".into(),
                reason: "connection refused".into(),
                dropped: 4,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn state_gauges_follow_the_status_and_name_no_client() {
        let mut out = String::new();
        write_status(&mut out, &status(), 8192, 1 << 20);
        for line in [
            "raven_ready 1",
            "raven_uptime_seconds 1.5",
            r#"raven_feed_connection_up{venue="binance_spot",connection="binance_spot#0"} 0"#,
            r#"raven_feed_connection_state{venue="binance_spot",connection="binance_spot#0",state="backoff"} 1"#,
            r#"raven_feed_connection_state{venue="binance_spot",connection="binance_spot#0",state="connected"} 0"#,
            r#"raven_feed_last_message_age_seconds{venue="binance_spot",connection="binance_spot#0"} 2.5"#,
            r#"raven_book_synced{venue="binance_spot",symbol="BTCUSDT"} 1"#,
            r#"raven_book_levels{venue="binance_spot",symbol="BTCUSDT",side="ask"} 12"#,
            r#"raven_book_last_message_age_seconds{venue="binance_spot",symbol="BTCUSDT"} 0.1"#,
            "raven_subscriber_queue_depth_max 9",
            "raven_subscriber_queued_messages 12",
            "raven_subscriber_queue_capacity 8192",
            "raven_subscriber_queue_max_bytes 1048576",
            "raven_subscriber_topics 3",
            r#"raven_store_up{store="influxdb"} 0"#,
            r#"raven_store_state{store="influxdb",state="degraded"} 1"#,
            r#"raven_store_dropped_records_total{store="influxdb"} 4"#,
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("10.0.0"), "no peer label: {out}");
        // Every sample belongs to the family declared just above it.
        let mut family = "";
        for line in out.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                family = t.split(' ').next().unwrap_or_default();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(family), "{line} outside {family}");
            }
        }
    }

    #[test]
    fn ages_are_absent_before_the_first_message() {
        let mut s = status();
        s.connections[0].frames = 0;
        s.books[0].last_update_id = 0;
        s.subscribers.clear();
        let mut out = String::new();
        write_status(&mut out, &s, 16, 1 << 20);
        assert!(!out.contains("age_seconds{"), "{out}");
        assert!(
            out.contains("\nraven_subscriber_queue_depth_max 0\n"),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        Family::new(&mut out, "x", "gauge", "h").sample(&[("l", "a\"b\\c\nd")], 1.0);
        assert!(out.ends_with("x{l=\"a\\\"b\\\\c\\nd\"} 1\n"), "{out}");
    }

    #[test]
    fn proc_files_parse() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000000 500";
        let status = "Name:\tx\nVmSize:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n";
        let p = Process::parse(stat, status).expect("parses");
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 1024.0 * 1024.0);
        assert_eq!(p.virtual_bytes, 2048.0 * 1024.0);
        assert_eq!(p.threads, 7.0);
        assert_eq!(start_ticks(stat), Some(12345.0));
        assert_eq!(boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert!(Process::parse("garbage", status).is_none());
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  100 2 0 0 0 0 0 0  100 2 0 0 0 0 0 0\n  eth0: 5000 9 0 0 0 0 0 0 700 5 0 0 0 0 0 0\n";
        assert_eq!(
            net_dev(dev),
            vec![
                ("lo".to_owned(), 100.0, 100.0),
                ("eth0".to_owned(), 5000.0, 700.0)
            ]
        );
    }

    #[test]
    fn this_process_is_read() {
        let p = Process::read().expect("Linux /proc");
        assert!(
            p.resident_bytes > 0.0 && p.threads >= 1.0 && p.open_fds >= 1.0,
            "{p:?}"
        );
        assert!(p.start_time_seconds.is_some_and(|t| t > 1e9), "{p:?}");
    }
}
