//! Logs and traces: where the output of Raven's `tracing` calls goes.
//!
//! Every crate of Raven reports through `tracing`; this module installs the one
//! subscriber that decides where that ends up.
//!
//! * **Logs** go to stderr for every command, filtered by `RUST_LOG` (default `info`),
//!   as text or, with `LOG_FORMAT=json`, as JSON lines for log shippers.
//! * **Traces** are exported by `raven serve` only, and only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set:
//!   OTLP over gRPC, e.g. `http://localhost:4317` for Jaeger all-in-one or an
//!   OpenTelemetry Collector. Without an endpoint there is no exporter and no
//!   OpenTelemetry layer at all, so tracing costs nothing. The client commands never
//!   export: they are short-lived tools, not the service being observed.
//!
//! Only Raven's own spans (targets `raven*`, level INFO and up) are exported: connection
//! lifecycles, book resyncs and their snapshot fetches, gRPC calls, store batches —
//! none is created per market data message. Library spans (tonic, hyper, h2) are left
//! out: they are noise here, and the exporter's own would feed back into the export.
//!
//! The OpenTelemetry SDK reads the standard variables itself: `OTEL_SERVICE_NAME` (Raven
//! defaults it to `raven` instead of `unknown_service`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_TIMEOUT` and
//! the batch processor's `OTEL_BSP_*`; `OTEL_SDK_DISABLED=true` turns export off.
//!
//! Spans leave through the SDK's batch span processor: finishing a span only queues it
//! (a bounded queue; when full, spans are dropped, never waited for), and a background
//! thread hands batches to the tonic exporter, whose connection runs on the tokio
//! runtime — which is why the exporter is built inside it. A collector that is down
//! costs one failed export per batch and a warning at most once a minute; it never
//! blocks or stops Raven. At shutdown [`Telemetry::shutdown`] exports what is queued.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
const DEFAULT_SERVICE_NAME: &str = "raven";

/// How long shutdown waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// At most one warning about failed exports per this interval.
const EXPORT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The installed subscriber's trace export, if any; see [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the process-wide subscriber: logs always, OTLP trace export when `traces`
/// and an endpoint is configured. With `traces`, call inside the tokio runtime that
/// will keep running until [`Telemetry::shutdown`].
pub fn init(traces: bool) -> Telemetry {
    let env = |key: &str| std::env::var(key).ok();
    let (provider, export_error) = if traces {
        match tracer_provider(&env) {
            Ok(provider) => (provider, None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        if env("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")) {
            vec![fmt.json().with_filter(filter).boxed()]
        } else {
            vec![fmt.with_filter(filter).boxed()]
        };
    if let Some(provider) = &provider {
        let exported = tracing_subscriber::filter::filter_fn(|meta| {
            meta.target().starts_with("raven") && *meta.level() <= tracing::Level::INFO
        });
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("raven"))
                // Spans are created and closed, rarely entered; busy/idle timing and
                // thread ids per entry would add work and say nothing.
                .with_tracked_inactivity(false)
                .with_threads(false)
                // Nothing in Raven reads the OpenTelemetry context of an entered span.
                .with_context_activation(false)
                .with_filter(exported)
                .boxed(),
        );
    }
    if let Err(e) = tracing_subscriber::registry().with(layers).try_init() {
        eprintln!("raven: cannot install the log subscriber: {e}");
    }
    if let Some(e) = export_error {
        tracing::warn!(error = %e, "traces: cannot set up the OTLP exporter; traces are not exported");
    } else if provider.is_some() {
        tracing::info!("traces: exporting spans over OTLP/gRPC");
    }
    Telemetry { provider }
}

impl Telemetry {
    /// Exports the spans still queued, waiting at most [`SHUTDOWN_TIMEOUT`]. Call while
    /// the runtime still runs (the exporter's connection lives on it) but not on one of
    /// its worker threads: this blocks.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %e, "traces: the last spans may not have been exported");
            }
        }
    }
}

/// Whether `env` configures trace export: an OTLP endpoint set and the SDK not disabled.
fn exporting(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |key: &str| env(key).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracer provider with its OTLP exporter, or `None` when `env` configures no export.
/// The endpoint, sampler and batch settings themselves are read by the SDK.
fn tracer_provider(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SdkTracerProvider>, opentelemetry_otlp::ExporterBuildError> {
    if !exporting(env) {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Warned::new(exporter))
        .with_resource(resource(Resource::builder().build()))
        .build();
    Ok(Some(provider))
}

/// The `detected` resource (environment, SDK) with Raven's version, and `raven` as the
/// service name unless one was configured.
fn resource(detected: Resource) -> Resource {
    let named = detected
        .get(&Key::new("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let resource = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(
            detected
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
    if named {
        resource.build()
    } else {
        resource.with_service_name(DEFAULT_SERVICE_NAME).build()
    }
}

/// An exporter whose failures are logged, at most once per [`EXPORT_WARNING_INTERVAL`]
/// with the number of failed exports since the last warning: the SDK itself stays
/// silent, and a collector that is down must not flood the log either.
#[derive(Debug)]
struct Warned<E> {
    inner: E,
    warnings: Mutex<Warnings>,
}

#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    failed: u64,
}

impl<E> Warned<E> {
    fn new(inner: E) -> Self {
        Warned {
            inner,
            warnings: Mutex::new(Warnings::default()),
        }
    }

    fn failed(&self, spans: usize, error: &dyn std::fmt::Display) {
        let Ok(mut w) = self.warnings.lock() else {
            return;
        };
        w.failed += 1;
        let now = Instant::now();
        if w.last
            .is_none_or(|t| now.duration_since(t) >= EXPORT_WARNING_INTERVAL)
        {
            tracing::warn!(
                %error,
                spans,
                failed_exports = w.failed,
                "traces: cannot export spans to the OTLP collector; dropping them"
            );
            w.last = Some(now);
            w.failed = 0;
        }
    }
}

impl<E: SpanExporter> SpanExporter for Warned<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            self.failed(spans, error);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn no_endpoint_no_exporter() {
        for vars in [
            &[][..],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")][..],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")][..],
            &[("OTEL_SERVICE_NAME", "raven-test")][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_SDK_DISABLED", "true"),
            ][..],
        ] {
            let provider = tracer_provider(&env_of(vars)).expect("no exporter to build");
            assert!(provider.is_none(), "{vars:?}");
        }
    }

    #[tokio::test]
    async fn an_endpoint_builds_the_exporter() {
        for vars in [
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")][..],
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4317",
            )][..],
        ] {
            let provider = tracer_provider(&env_of(vars)).expect("exporter");
            let provider = provider.expect("an endpoint turns export on");
            // Nothing queued: shutdown does not need the collector. Off the runtime's
            // thread, as in `main`.
            tokio::task::spawn_blocking(move || provider.shutdown())
                .await
                .expect("join")
                .expect("shutdown");
        }
    }

    #[test]
    fn service_name_defaults_to_raven_but_a_configured_one_wins() {
        let name = |r: &Resource| r.get(&Key::new("service.name")).map(|v| v.to_string());
        let unnamed = Resource::builder_empty()
            .with_service_name("unknown_service:raven")
            .with_attribute(KeyValue::new("deployment.environment", "test"))
            .build();
        let r = resource(unnamed);
        assert_eq!(name(&r).as_deref(), Some("raven"));
        assert!(r.get(&Key::new("deployment.environment")).is_some());
        assert!(r.get(&Key::new("service.version")).is_some());

        let named = Resource::builder_empty()
            .with_service_name("raven-eu-1")
            .build();
        assert_eq!(name(&resource(named)).as_deref(), Some("raven-eu-1"));
    }
}
