//! `raven serve`: wire the venues into the hub and the hub into the API.
//!
//! Start-up order matters: configuration is fully validated before anything binds; the
//! metrics recorder is installed before any task records; every listener is bound
//! before the venues connect, so a port conflict fails fast with the key to change
//! instead of after minutes of syncing books.
//!
//! So does the order of a stop (SIGTERM, Ctrl-C): every Subscribe stream is ended with
//! `UNAVAILABLE` once what is queued for it is sent, and `GetHistory` answers likewise,
//! so the servers finish promptly instead of waiting out their clients; the venues close
//! their connections meanwhile; then the stores close their taps — nothing new reaches
//! them once the venues are down — and flush in parallel, all within one deadline.
//!
//! Every long-lived task is supervised (module `supervise`); a server that stops by
//! itself (its listener failed) stops Raven, with an error, for the orchestrator to
//! restart.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use raven_api::StatusSource;
use raven_hub::{Channel, Hub, InstrumentSpec};
use raven_model::candle::CandleInterval;
use raven_model::feed::FeedSink;
use raven_model::{InstrumentId, Venue};
use raven_sinks::health::StoreHealth;
use raven_sinks::history::SharedHistory;
use raven_venues::status::FeedStatus;

use crate::config::{ChannelName, Config, HistoryPlan, VenueConfig};
use crate::supervise;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (venues, symbols, channels, limits). Default: ./raven.toml
    /// if present. See config/raven.example.toml.
    #[arg(long, env = "RAVEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Offline demo: run synthetic Binance spot, Binance USD-M and Bybit linear exchanges
    /// in-process and connect to them through the real connectors. Replaces the
    /// configured venues.
    #[arg(long)]
    pub demo: bool,

    /// Demo market: messages per second per simulated venue.
    #[arg(long, default_value_t = 2000, value_name = "MSGS_PER_S")]
    pub demo_rate: u64,

    /// Demo market: symbols per simulated venue.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub demo_symbols: usize,

    /// Address to bind (overrides server.host and SERVER_HOST).
    #[arg(long, value_name = "IP")]
    pub host: Option<std::net::IpAddr>,

    /// gRPC port (overrides server.grpc_port and SERVER_PORT).
    #[arg(long, value_name = "PORT")]
    pub grpc_port: Option<u16>,

    /// Address of the health endpoints (overrides server.health_host and HEALTH_HOST).
    #[arg(long, value_name = "IP")]
    pub health_host: Option<std::net::IpAddr>,

    /// Address of the metrics endpoint (overrides server.metrics_host and METRICS_HOST).
    #[arg(long, value_name = "IP")]
    pub metrics_host: Option<std::net::IpAddr>,

    /// Health port (overrides server.health_port and HEALTH_PORT).
    #[arg(long, value_name = "PORT")]
    pub health_port: Option<u16>,

    /// Metrics port (overrides server.metrics_port and METRICS_PORT).
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
}

/// Builds the effective configuration: defaults < file < environment < flags.
fn effective_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match args.config.clone().or_else(crate::default_config_path) {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(h) = args.host {
        config.server.host = h;
    }
    if let Some(h) = args.health_host {
        config.server.health_host = Some(h);
    }
    if let Some(h) = args.metrics_host {
        config.server.metrics_host = Some(h);
    }
    for (flag, slot) in [
        (args.grpc_port, &mut config.server.grpc_port),
        (args.health_port, &mut config.server.health_port),
        (args.metrics_port, &mut config.server.metrics_port),
    ] {
        if let Some(p) = flag {
            *slot = p;
        }
    }
    Ok(config)
}

/// The hub's channels for a configured venue.
fn hub_channels(v: &VenueConfig) -> Vec<Channel> {
    let mut out = Vec::new();
    for c in &v.channels {
        match c {
            ChannelName::Trades => out.push(Channel::Trades),
            ChannelName::Book => out.push(Channel::Book),
            ChannelName::Bbo => out.push(Channel::Bbo),
            ChannelName::Funding => out.push(Channel::Funding),
            ChannelName::Liquidations => out.push(Channel::Liquidations),
            ChannelName::Candles => out.extend(CandleInterval::ALL.map(Channel::Candles)),
        }
    }
    out
}

/// One venue of the demo: the synthetic market it connects to, its channels and any
/// venue option it needs against a local simulator.
struct DemoVenue {
    market: raven_sim::SimVenue,
    venue: &'static str,
    channels: &'static [ChannelName],
    options: &'static [(&'static str, i64)],
}

/// The demo's venues: two families, so the demo shows a REST-snapshot venue (Binance)
/// and an in-stream one (Bybit) side by side.
const DEMO_VENUES: &[DemoVenue] = &[
    DemoVenue {
        market: raven_sim::SimVenue::Spot,
        venue: "binance_spot",
        channels: &[
            ChannelName::Trades,
            ChannelName::Book,
            ChannelName::Bbo,
            ChannelName::Candles,
        ],
        // The local simulator has no weight limit: sync every demo book at once.
        options: &[("rest_weight_per_minute", 1_000_000)],
    },
    DemoVenue {
        market: raven_sim::SimVenue::Usdm,
        venue: "binance_usdm",
        channels: &[
            ChannelName::Trades,
            ChannelName::Book,
            ChannelName::Bbo,
            ChannelName::Candles,
            ChannelName::Funding,
            ChannelName::Liquidations,
        ],
        options: &[("rest_weight_per_minute", 1_000_000)],
    },
    DemoVenue {
        market: raven_sim::SimVenue::BybitLinear,
        venue: "bybit_linear",
        channels: &[
            ChannelName::Trades,
            ChannelName::Book,
            ChannelName::Bbo,
            ChannelName::Candles,
            ChannelName::Funding,
            ChannelName::Liquidations,
        ],
        options: &[],
    },
];

/// Starts the in-process demo exchanges and returns them with venues pointing at them.
async fn start_demo(args: &ServeArgs) -> anyhow::Result<(Vec<raven_sim::Sim>, Vec<VenueConfig>)> {
    let mut sims = Vec::new();
    let mut venues = Vec::new();
    for demo in DEMO_VENUES {
        let venue = demo.venue;
        let sim = raven_sim::Sim::start(raven_sim::SimArgs {
            venue: demo.market,
            rate: args.demo_rate,
            symbols: args.demo_symbols,
            ..raven_sim::SimArgs::default()
        })
        .await
        .with_context(|| format!("starting the demo exchange for {venue}"))?;
        let ws_url = sim
            .venue_ws_url()
            .with_context(|| format!("the demo exchange for {venue} has no single endpoint"))?;
        tracing::info!(%venue, ws = %ws_url, rest = %sim.rest_url(), "demo exchange running");
        venues.push(VenueConfig {
            venue: venue.to_owned(),
            symbols: sim.symbols(),
            channels: demo.channels.to_vec(),
            ws_url: Some(ws_url),
            rest_url: Some(sim.rest_url()),
            stall_timeout_secs: None,
            max_connection_age_secs: None,
            options: demo
                .options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), toml::Value::Integer(*v)))
                .collect(),
        });
        sims.push(sim);
    }
    Ok((sims, venues))
}

/// Records a store's channel absorbs while its task is busy (a flush, a reconnect).
const STORE_TAP_CAPACITY: usize = 65_536;

/// How long stores get to flush at shutdown, all together (InfluxDB drains for up to 5 s,
/// then spills).
const STORE_SHUTDOWN: Duration = Duration::from_secs(10);

/// How long servers get to finish their calls at shutdown before they are aborted.
const SERVER_SHUTDOWN: Duration = Duration::from_secs(5);

async fn bind(key: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = effective_config(&args)?;
    let (sims, demo_venues) = if args.demo {
        start_demo(&args).await?
    } else {
        (Vec::new(), Vec::new())
    };
    if args.demo {
        config.venues = demo_venues;
    }
    config.validate()?;
    if config.venues.is_empty() {
        anyhow::bail!("venues: nothing to collect; add [[venues]] to the config file (see config/raven.example.toml) or run with --demo");
    }

    // Certificates and tokens are read before anything binds: a bad file stops Raven
    // with the key at fault.
    let access = crate::config::access(&config.auth, config.server.tls.as_ref())?;
    let metrics = raven_api::metrics::install().context("installing the metrics recorder")?;
    raven_api::metrics::register_principals(&access.auth.principal_names());
    for warning in access.warnings(config.server.host) {
        tracing::warn!("{warning}");
    }

    let host = config.server.host;
    let grpc = bind(
        "server.grpc_port (SERVER_PORT)",
        SocketAddr::new(host, config.server.grpc_port),
    )
    .await?;
    let health = bind(
        "server.health_port (HEALTH_PORT)",
        SocketAddr::new(
            config.server.health_host.unwrap_or(host),
            config.server.health_port,
        ),
    )
    .await?;
    let metrics_listener = bind(
        "server.metrics_port (METRICS_PORT)",
        SocketAddr::new(
            config.server.metrics_host.unwrap_or(host),
            config.server.metrics_port,
        ),
    )
    .await?;

    // Validated above, so parsing cannot fail here; done once for both uses below.
    let venues_by_id = config
        .venues
        .iter()
        .map(|v| Ok((v.venue.parse::<Venue>()?, v)))
        .collect::<Result<Vec<_>, raven_model::VenueParseError>>()?;
    let mut specs = Vec::new();
    for &(venue, v) in &venues_by_id {
        for s in &v.symbols {
            specs.push(InstrumentSpec {
                id: InstrumentId::new(venue, s),
                channels: hub_channels(v),
            });
        }
    }
    // Set once at shutdown: servers stop accepting and end their streams.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Set once the venues are down: stores close their taps and flush.
    let (stores_stop_tx, stores_stop_rx) = tokio::sync::watch::channel(false);
    let mut taps = Vec::new();
    let mut stores = Vec::new();
    let mut store_health = Vec::new();
    if let Some(redis) = config.redis.store() {
        let (tap, records) = raven_hub::Tap::new("redis", STORE_TAP_CAPACITY);
        taps.push(tap);
        let health = StoreHealth::new("redis");
        store_health.push(health.clone());
        tracing::info!(url = %redis.url, "redis latest-state store enabled");
        let h = health.clone();
        stores.push(supervise::store(
            "redis",
            health,
            records,
            stores_stop_rx.clone(),
            Box::new(move |records, stop| {
                Box::pin(raven_sinks::redis::run(
                    redis.clone(),
                    records,
                    h.clone(),
                    stop,
                ))
            }),
        ));
    }
    let mut history: SharedHistory = None;
    let plan = config.history_plan();
    if let Some(influx) = config.influxdb.store(&config.server.data_dir) {
        let (tap, records) = raven_hub::Tap::new("influxdb", STORE_TAP_CAPACITY);
        taps.push(tap);
        let health = StoreHealth::new("influxdb");
        store_health.push(health.clone());
        tracing::info!(url = %influx.url, database = %influx.database, spill = %influx.data_dir.display(), "influxdb store enabled");
        if plan == HistoryPlan::Influxdb {
            let reader = raven_sinks::influx::InfluxHistory::new(&influx)
                .map_err(|e| anyhow::anyhow!("influxdb.url (INFLUXDB_URL): {e}"))?;
            history = Some(Arc::new(reader));
        }
        let h = health.clone();
        stores.push(supervise::store(
            "influxdb",
            health,
            records,
            stores_stop_rx.clone(),
            Box::new(move |records, stop| {
                Box::pin(raven_sinks::influx::run(
                    influx.clone(),
                    records,
                    h.clone(),
                    stop,
                ))
            }),
        ));
    }
    if let HistoryPlan::Sqlite(sqlite) = plan {
        raven_sinks::sqlite::open(&sqlite.path)
            .map_err(|e| anyhow::anyhow!("server.data_dir (RAVEN_DATA_DIR): {e}"))?;
        let (tap, records) = raven_hub::Tap::new("sqlite", STORE_TAP_CAPACITY);
        taps.push(tap);
        let health = StoreHealth::new("sqlite");
        store_health.push(health.clone());
        tracing::info!(path = %sqlite.path.display(), retention = ?sqlite.retention, "sqlite history store enabled");
        history = Some(Arc::new(raven_sinks::sqlite::SqliteHistory::new(
            sqlite.path.clone(),
        )));
        let h = health.clone();
        stores.push(supervise::store(
            "sqlite",
            health,
            records,
            stores_stop_rx.clone(),
            Box::new(move |records, stop| {
                Box::pin(raven_sinks::sqlite::run(
                    sqlite.clone(),
                    records,
                    h.clone(),
                    stop,
                ))
            }),
        ));
    }
    let hub = Hub::new(config.hub_config(), specs, taps);
    let feeds = Arc::new(FeedStatus::new());
    let status = StatusSource {
        hub: hub.clone(),
        feeds: feeds.clone(),
        stores: store_health,
        started: Instant::now(),
    };

    tracing::info!(
        grpc = %grpc.local_addr()?, health = %health.local_addr()?, metrics = %metrics_listener.local_addr()?,
        "raven serving"
    );
    tokio::spawn(access.clone().watch(stop_rx.clone()));
    let mut grpc_task = tokio::spawn(raven_api::grpc::serve(
        grpc,
        status.clone(),
        config.service_config(),
        access,
        history,
        stop_rx.clone(),
    ));
    let mut health_task = tokio::spawn(
        axum::serve(health, raven_api::health::router(status.clone()))
            .with_graceful_shutdown(supervise::stopped(stop_rx.clone()))
            .into_future(),
    );
    let mut metrics_task = tokio::spawn(
        axum::serve(
            metrics_listener,
            raven_api::metrics::router(metrics, status.clone()),
        )
        .with_graceful_shutdown(supervise::stopped(stop_rx.clone()))
        .into_future(),
    );

    let sink: Arc<dyn FeedSink> = hub.clone();
    let mut venues = Vec::new();
    for &(venue, v) in &venues_by_id {
        // Validated with the rest of the config, so this cannot fail here.
        let (settings, options) = v
            .settings()
            .map_err(|e| anyhow::anyhow!("venue {venue}: {e}"))?;
        let configured = raven_venues::registry::configure(settings, options)
            .map_err(|e| anyhow::anyhow!("venue {venue}: {e}"))?;
        venues.push(configured.spawn(sink.clone(), feeds.clone()));
    }

    let ticker_hub = hub.clone();
    let ticker = supervise::forever("ticker", move || {
        let hub = ticker_hub.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                hub.tick();
            }
        }
    });
    // Top-N views are built on a thread of their own, at a lower priority: however
    // deep the views clients ask for, building them never takes a runtime worker from
    // the feeds and streams, and the OS runs them when those have nothing to do. A view
    // is a snapshot, so a late one only coalesces more changes.
    let views_hub = hub.clone();
    let views_stop = stop_rx.clone();
    std::thread::Builder::new()
        .name("raven-views".into())
        .spawn(move || {
            lower_this_threads_priority();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(async move {
                    let views = supervise::forever("views", move || views_hub.clone().run_views());
                    supervise::stopped(views_stop).await;
                    views.abort();
                }),
                Err(e) => tracing::error!(error = %e, "cannot start the view builder's runtime"),
            }
        })
        .context("starting the view builder's thread")?;

    // A server that stops by itself takes Raven down: without it, nothing is served.
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        r = &mut grpc_task => Some(("gRPC", server_end(r))),
        r = &mut health_task => Some(("health", server_end(r.map(|r| r.map_err(Into::into))))),
        r = &mut metrics_task => Some(("metrics", server_end(r.map(|r| r.map_err(Into::into))))),
    };
    match &failed {
        None => tracing::info!("shutting down"),
        Some((server, why)) => {
            tracing::error!(server, %why, "a server stopped by itself; shutting down")
        }
    }
    let stopping = Instant::now();
    ticker.abort();
    // Streams end once what is queued for them is sent; the servers stop accepting.
    hub.stop_subscribers(raven_api::grpc::STOPPING);
    let _ = stop_tx.send(true);
    // Meanwhile the exchange connections close cleanly (their spans end as `shutdown`).
    let venues_down = futures_util::future::join_all(venues.into_iter().map(|v| v.shutdown()));
    let servers = async {
        let done = tokio::time::timeout(SERVER_SHUTDOWN, async {
            if failed.is_none() {
                let _ = (&mut grpc_task).await;
                let _ = (&mut health_task).await;
                let _ = (&mut metrics_task).await;
            }
        })
        .await;
        if done.is_err() {
            tracing::warn!(
                "clients still connected after {SERVER_SHUTDOWN:?}; closing their connections"
            );
        }
        grpc_task.abort();
        health_task.abort();
        metrics_task.abort();
    };
    futures_util::join!(venues_down, servers);
    // Nothing new reaches the hub now: the stores close their taps and flush, together.
    let _ = stores_stop_tx.send(true);
    drop((hub, sink, status));
    if tokio::time::timeout(STORE_SHUTDOWN, futures_util::future::join_all(stores))
        .await
        .is_err()
    {
        tracing::warn!("the stores did not finish flushing within {STORE_SHUTDOWN:?}");
    }
    for sim in sims {
        sim.shutdown().await;
    }
    tracing::info!(took = ?stopping.elapsed(), "stopped");
    Ok(match failed {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
    })
}

/// Best-effort work's niceness: the OS prefers every normal thread to it.
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux: niceness is per thread).
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let result = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE)
        };
        if result != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the view builder's priority");
        }
    }
}

/// Why a server task ended.
fn server_end(
    r: Result<Result<(), Box<dyn std::error::Error + Send + Sync>>, tokio::task::JoinError>,
) -> String {
    match r {
        Ok(Ok(())) => "it ended".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
