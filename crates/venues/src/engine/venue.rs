//! Starting an in-stream venue: plan its connections, register its books, supervise.

use std::sync::Arc;
use std::time::Duration;

use raven_model::feed::FeedSink;
use raven_model::{InstrumentId, Venue};
use tokio::sync::watch;

use super::connection::{self, Conn, ConnectionSettings};
use super::protocol::{Channels, VenueProtocol};
use crate::backoff::BackoffConfig;
use crate::handle::VenueHandle;
use crate::status::FeedStatus;

/// What the engine needs of a venue besides its protocol.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub venue: Venue,
    /// Upper-case exchange symbols.
    pub symbols: Vec<String>,
    pub channels: Channels,
    pub stall_timeout: Duration,
    pub backoff: BackoffConfig,
}

/// Starts the venue on the current tokio runtime. Its books are registered in `status`
/// (as syncing) before this returns, so readiness is false until they sync.
pub fn spawn<P: VenueProtocol>(
    protocol: P,
    config: EngineConfig,
    sink: Arc<dyn FeedSink>,
    status: Arc<FeedStatus>,
) -> VenueHandle {
    let venue = config.venue;
    let protocol = Arc::new(protocol);
    let plans = protocol.plan(&config.symbols, &config.channels);
    let books = config.channels.book;
    if books {
        for symbol in plans.iter().flat_map(|p| &p.symbols) {
            status.register_book(&InstrumentId::new(venue, symbol));
        }
    }
    let settings: Vec<ConnectionSettings> = (0..plans.len())
        .map(|index| ConnectionSettings {
            venue,
            name: format!("{venue}#{index}"),
            books,
            stall_timeout: config.stall_timeout,
            backoff: config.backoff,
        })
        .collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
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
