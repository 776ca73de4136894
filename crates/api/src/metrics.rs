//! Prometheus metrics on METRICS_PORT.
//!
//! Code all over Raven records through the `metrics` facade (`counter!`, `gauge!`,
//! `histogram!`); this module installs the Prometheus recorder once, serves its text
//! exposition on `/metrics`, and adds the process gauges the exporter lacks, read from
//! `/proc/self` at scrape time so they cost nothing between scrapes.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 10 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The `kind` label values of `errors_total`.
pub const ERROR_KINDS: &[&str] = &["rejected_topic", "grpc_status", "slow_consumer", "redis"];

/// Installs the process-wide recorder. Call once, before anything records.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    // Series that exist from the start, so dashboards and alerts read 0, not "no data".
    metrics::gauge!("grpc_active_connections").set(0.0);
    for kind in ERROR_KINDS {
        metrics::counter!("errors_total", "kind" => *kind).absolute(0);
    }
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("grpc_active_connections", "Open gRPC Subscribe streams.");
    describe_counter!(
        "messages_processed_total",
        "Exchange frames processed, by venue."
    );
    describe_histogram!(
        "response_latency_seconds",
        Unit::Seconds,
        "Time to answer a gRPC request, by method."
    );
    describe_counter!("errors_total", "Errors, by kind.");
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident set size."
    );
    describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time (monotonic; a gauge because it is fractional)."
    );
    describe_gauge!("process_open_fds", "Open file descriptors.");
    describe_gauge!("process_threads", "OS threads.");
}

pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(handle)
}

async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    record_process();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// Reads RSS, CPU time, threads and open fds of this process (Linux; elsewhere no-op).
fn record_process() {
    // /proc/self/stat: fields after the command name, which is in parentheses.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After ")": state is f[0], so utime=f[11], stime=f[12], threads=f[17], rss pages=f[21].
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let ticks = 100.0; // USER_HZ on Linux
            if let (Some(u), Some(s)) = (num(11), num(12)) {
                metrics::gauge!("process_cpu_seconds_total").set((u + s) as f64 / ticks);
            }
            if let Some(t) = num(17) {
                metrics::gauge!("process_threads").set(t as f64);
            }
            if let Some(pages) = num(21) {
                metrics::gauge!("process_resident_memory_bytes").set((pages * 4096) as f64);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(dir.count() as f64);
    }
}
