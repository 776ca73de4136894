//! Binance market data: Spot, USD-M futures and COIN-M futures.
//!
//! The three venues share one protocol family (combined streams, REST depth snapshots,
//! the same event shapes) and differ in endpoints, in the `pu` field of futures depth
//! diffs and in which streams exist, so one implementation serves all three, chosen by
//! [`BinanceConfig::market`]. The pieces:
//! * [`streams`]: which streams to subscribe and how to spread them over connections;
//! * [`parse`]: frames and REST bodies into exact, normalized types;
//! * [`depth`]: the pure snapshot/diff join and gap detection;
//! * [`snapshot`]: the paced, rate-limit-aware REST snapshot fetcher;
//! * [`connection`]: one socket with its books, reconnects and liveness checks.
//!
//! [`spawn`] wires them together on the tokio runtime and returns a [`VenueHandle`] that
//! owns every task. It supervises the connection tasks: one that fails (panics) must not
//! leave its books looking synced or its streams looking whole, so its books are reset,
//! its instruments reported interrupted, and the task is started again with a fresh
//! [`connection::Feed`] after a backoff (counted in `restarts` in GetStatus and in
//! `raven_feed_task_restarts_total`).

mod config;
pub mod connection;
pub mod depth;
mod depth_scan;
pub mod instruments;
pub mod market;
pub mod parse;
pub mod snapshot;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use raven_model::feed::FeedSink;
use raven_model::InstrumentId;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backoff::BackoffConfig;
use crate::handle::VenueHandle;
use crate::status::FeedStatus;
pub use config::{BinanceOptions, FAMILY};
use connection::{ConnectionConfig, Feed};
pub use market::Market;
use snapshot::FetcherConfig;
pub use streams::{Channels, TradeStream};

/// Bound of each book's diff buffer while it waits for a snapshot. At 10 diffs/s this
/// is over 15 minutes of a busy symbol; a snapshot later than that is useless anyway.
pub const MAX_BUFFERED_DIFFS: usize = 10_000;

/// How long `exchangeInfo` may take at start before Raven subscribes without it.
const EXCHANGE_INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of one Binance venue.
#[derive(Debug, Clone)]
pub struct BinanceConfig {
    pub market: Market,
    /// WebSocket base URL, e.g. `wss://stream.binance.com:9443` (tests: `ws://127.0.0.1:PORT`).
    pub ws_url: String,
    /// REST base URL, e.g. `https://api.binance.com` (tests: `http://127.0.0.1:PORT`).
    pub rest_url: String,
    /// Exchange symbols, any case.
    pub symbols: Vec<String>,
    pub channels: Channels,
    /// REST depth `limit`.
    pub snapshot_limit: u32,
    pub streams_per_connection: usize,
    /// No frame for this long means the connection is dead.
    pub stall_timeout: Duration,
    /// Reconnect proactively after this long (jittered down by up to 5 %), before
    /// Binance's 24 h cut.
    pub max_connection_age: Duration,
    pub backoff: BackoffConfig,
    /// Minimum pause between two REST snapshot fetches of this venue.
    pub snapshot_spacing: Duration,
    /// REST request weight per minute Raven allows itself for snapshots; fetches are
    /// spaced so that they never spend more (see [`snapshot::weight_spacing`]). Default:
    /// half of the venue's documented per-IP limit, leaving room for other clients on
    /// the same IP and for bursts of resyncs without ever reaching 429s and 418 bans.
    pub rest_weight_per_minute: u32,
    /// Ask `exchangeInfo` at start and skip symbols the venue does not list.
    pub check_symbols: bool,
}

impl BinanceConfig {
    /// Defaults for `market`, with Binance's official endpoints and no symbols.
    pub fn new(market: Market) -> Self {
        let (ws_url, rest_url) = match market {
            Market::Spot => ("wss://stream.binance.com:9443", "https://api.binance.com"),
            Market::Usdm => ("wss://fstream.binance.com", "https://fapi.binance.com"),
            Market::Coinm => ("wss://dstream.binance.com", "https://dapi.binance.com"),
        };
        Self {
            market,
            ws_url: ws_url.to_owned(),
            rest_url: rest_url.to_owned(),
            symbols: Vec::new(),
            channels: Channels::all(market),
            snapshot_limit: 1000,
            streams_per_connection: streams::DEFAULT_STREAMS_PER_CONNECTION,
            stall_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(23 * 3600 + 30 * 60),
            backoff: BackoffConfig::default(),
            snapshot_spacing: Duration::from_millis(250),
            rest_weight_per_minute: snapshot::weight_limit_per_minute(market) / 2,
            check_symbols: true,
        }
    }
}

/// Starts the venue on the current tokio runtime. Its books are registered in `status`
/// (as syncing) before this returns, so readiness is false until they sync.
pub fn spawn(
    config: BinanceConfig,
    sink: Arc<dyn FeedSink>,
    status: Arc<FeedStatus>,
) -> VenueHandle {
    if config.channels.book {
        for symbol in config.symbols.iter().map(|s| s.trim()) {
            if !symbol.is_empty() {
                status.register_book(&InstrumentId::new(config.market.venue(), symbol));
            }
        }
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let venue = config.market.venue();
    let task = tokio::spawn(supervise(config, sink, status, shutdown_rx));
    VenueHandle::new(venue, shutdown, task)
}

async fn supervise(
    mut config: BinanceConfig,
    sink: Arc<dyn FeedSink>,
    status: Arc<FeedStatus>,
    shutdown: watch::Receiver<bool>,
) {
    let venue = config.market.venue();
    let market = config.market;
    let client = match crate::http::client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%venue, %error, "cannot build the HTTP client; venue not started");
            return;
        }
    };
    if config.check_symbols {
        load_listings(&client, &mut config, &status, sink.as_ref()).await;
    }

    let (fetcher, serve) = snapshot::fetcher(
        client,
        FetcherConfig {
            market,
            rest_url: config.rest_url.clone(),
            limit: config.snapshot_limit,
            spacing: config.snapshot_spacing.max(snapshot::weight_spacing(
                market,
                config.snapshot_limit,
                config.rest_weight_per_minute,
            )),
            backoff: config.backoff,
        },
    );
    // Separate from the connections: retries it re-queues may keep it alive, so it is
    // aborted (by the drop at the end of this function) rather than awaited.
    let mut fetcher_task = JoinSet::new();
    fetcher_task.spawn(serve);
    let partitions = streams::partition(
        market,
        &config.symbols,
        &config.channels,
        config.streams_per_connection,
    );
    let configs: Vec<ConnectionConfig> = partitions
        .into_iter()
        .enumerate()
        .map(|(index, part)| ConnectionConfig {
            venue,
            market,
            name: format!("{venue}#{index}"),
            url: streams::combined_url(&config.ws_url, &part.streams),
            streams: part.streams.len(),
            symbols: part.symbols,
            books: config.channels.book,
            stall_timeout: config.stall_timeout,
            max_connection_age: config.max_connection_age,
            backoff: config.backoff,
            max_buffered_diffs: MAX_BUFFERED_DIFFS,
            snapshot_limit: config.snapshot_limit,
        })
        .collect();
    for outcome in crate::status::HANDOVER_OUTCOMES {
        metrics::counter!(crate::status::METRIC_HANDOVERS, "venue" => venue.as_str(), "outcome" => outcome)
            .absolute(0);
    }
    let names = configs.iter().map(|c| c.name.clone()).collect();
    let run = |index: usize| {
        let conn_config = configs[index].clone();
        let (feed, replies) = Feed::new(&conn_config, Arc::clone(&sink), &status, fetcher.clone());
        connection::run(conn_config, feed, replies, shutdown.clone())
    };
    let failed = |index: usize, reason: &str| {
        connection::task_failed(&configs[index], sink.as_ref(), &status, reason)
    };
    crate::supervise::connections(
        venue,
        names,
        config.backoff,
        &status,
        shutdown.clone(),
        run,
        failed,
    )
    .await;
    drop(fetcher);
}

/// Hands the venue's listings (`exchangeInfo`) to the sink and removes symbols it does
/// not list: they would never sync and would hold readiness down forever. If the venue
/// cannot be asked, everything is kept.
async fn load_listings(
    client: &reqwest::Client,
    config: &mut BinanceConfig,
    status: &FeedStatus,
    sink: &dyn FeedSink,
) {
    let venue = config.market.venue();
    let info = tokio::time::timeout(
        EXCHANGE_INFO_TIMEOUT,
        snapshot::fetch_exchange_info(client, config.market, &config.rest_url),
    )
    .await;
    let listed = match info {
        Ok(Ok(listed)) => listed,
        Ok(Err(error)) => {
            tracing::warn!(%venue, %error, "exchangeInfo failed; subscribing without checking symbols");
            return;
        }
        Err(_) => {
            tracing::warn!(%venue, "exchangeInfo timed out; subscribing without checking symbols");
            return;
        }
    };
    sink.instruments_listed(listed.iter().filter_map(|s| s.info.clone()).collect());
    let by_name: std::collections::HashMap<&str, &str> = listed
        .iter()
        .map(|s| (s.symbol.as_str(), s.status.as_str()))
        .collect();
    config.symbols.retain(|symbol| {
        let upper = symbol.trim().to_ascii_uppercase();
        match by_name.get(upper.as_str()) {
            None => {
                tracing::warn!(%venue, symbol = %upper, "symbol not listed by the venue; skipped");
                status.remove_book(&InstrumentId::new(venue, &upper));
                false
            }
            Some(&state) => {
                if state != "TRADING" {
                    tracing::warn!(%venue, symbol = %upper, status = state, "symbol is not trading");
                }
                true
            }
        }
    });
}
