//! Starting an in-stream venue: load its listings, plan its connections, register its
//! books, supervise its connection tasks.
//!
//! The listings come first, from the venue's REST reference endpoints
//! ([`VenueProtocol::instrument_paths`]): they go to the sink (tick, lot, kind, quantity
//! unit for `ListInstruments` and normalized names), and once every listing answered, a
//! configured symbol the venue does not list is dropped with a warning, since it would
//! never sync and would hold readiness down forever. A listing that fails (within
//! [`LISTINGS_TIMEOUT`]) is logged; what the others gave is still used, but with one
//! missing no symbol is dropped.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use raven_model::feed::FeedSink;
use raven_model::{InstrumentId, InstrumentInfo, Venue};
use tokio::sync::watch;

use super::connection::{self, Conn, ConnectionSettings};
use super::protocol::{Channels, VenueProtocol};
use crate::backoff::BackoffConfig;
use crate::handle::VenueHandle;
use crate::status::FeedStatus;

/// How long the listings may take at start before Raven subscribes without them.
pub const LISTINGS_TIMEOUT: Duration = Duration::from_secs(10);

/// What the engine needs of a venue besides its protocol.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub venue: Venue,
    /// Upper-case exchange symbols.
    pub symbols: Vec<String>,
    pub channels: Channels,
    /// The REST base URL the listings are under.
    pub rest_url: String,
    pub stall_timeout: Duration,
    pub backoff: BackoffConfig,
}

/// Starts the venue on the current tokio runtime. Its books are registered in `status`
/// (as syncing) before this returns, so readiness is false until they sync.
pub fn spawn<P: VenueProtocol>(
    protocol: P,
    mut config: EngineConfig,
    sink: Arc<dyn FeedSink>,
    status: Arc<FeedStatus>,
) -> VenueHandle {
    let venue = config.venue;
    let books = config.channels.book;
    if books {
        for symbol in &config.symbols {
            status.register_book(&InstrumentId::new(venue, symbol));
        }
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let protocol = Arc::new(protocol);
        let (listed, complete) = load_listings(protocol.as_ref(), &config).await;
        if complete {
            let names: HashSet<&str> = listed.iter().map(|i| i.id.symbol.as_str()).collect();
            config.symbols.retain(|symbol| {
                let known = names.contains(symbol.as_str());
                if !known {
                    tracing::warn!(%venue, %symbol, "symbol not listed by the venue; skipped");
                    status.remove_book(&InstrumentId::new(venue, symbol));
                }
                known
            });
        }
        sink.instruments_listed(listed);
        let plans = protocol.plan(&config.symbols, &config.channels);
        let settings: Vec<ConnectionSettings> = (0..plans.len())
            .map(|index| ConnectionSettings {
                venue,
                name: format!("{venue}#{index}"),
                books,
                channels: config.channels,
                stall_timeout: config.stall_timeout,
                backoff: config.backoff,
            })
            .collect();
        let names = settings.iter().map(|s| s.name.clone()).collect();
        let run = |index: usize| {
            let conn = Conn::new(
                Arc::clone(&protocol),
                &plans[index],
                &settings[index],
                Arc::clone(&sink),
                &status,
            );
            connection::run(
                plans[index].clone(),
                settings[index].clone(),
                conn,
                shutdown_rx.clone(),
            )
        };
        let failed = |index: usize, reason: &str| {
            connection::task_failed(venue, &plans[index], books, sink.as_ref(), &status, reason)
        };
        crate::supervise::connections(
            venue,
            names,
            config.backoff,
            &status,
            shutdown_rx.clone(),
            run,
            failed,
        )
        .await;
    });
    VenueHandle::new(venue, shutdown, task)
}

/// Every instrument the venue's listings gave, and whether every listing answered
/// (each failure logged).
async fn load_listings<P: VenueProtocol>(
    protocol: &P,
    config: &EngineConfig,
) -> (Vec<InstrumentInfo>, bool) {
    let venue = config.venue;
    let client = match crate::http::client() {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%venue, %error, "cannot build the HTTP client; subscribing without listings");
            return (Vec::new(), false);
        }
    };
    let mut complete = true;
    let base = config.rest_url.trim_end_matches('/');
    let mut listed = Vec::new();
    for path in protocol.instrument_paths() {
        let url = format!("{base}{path}");
        let answer = tokio::time::timeout(LISTINGS_TIMEOUT, async {
            let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let code = response.status();
            if !code.is_success() {
                return Err(format!("HTTP {code}"));
            }
            response.text().await.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        let parsed = answer.and_then(|body| {
            protocol
                .parse_instruments(&path, &body)
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(mut instruments) => listed.append(&mut instruments),
            Err(error) => {
                tracing::warn!(%venue, %url, %error, "listing failed; no symbol is dropped as unlisted");
                complete = false;
            }
        }
    }
    (listed, complete)
}
