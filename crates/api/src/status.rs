//! The one view of "how is Raven doing" shared by `GetStatus` and the health endpoints,
//! so the two can never disagree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use raven_hub::Hub;
use raven_proto::pb;
use raven_sinks::health::{StoreHealth, StoreState, LOSS_WINDOW};
use raven_venues::status::{BookSyncState, ConnectionState, FeedStatus};

/// Where status comes from: the hub (books as served, subscribers) and the feeds
/// (connections, sequence health).
#[derive(Clone)]
pub struct StatusSource {
    pub hub: Arc<Hub>,
    pub feeds: Arc<FeedStatus>,
    /// Every configured store; each has a hub tap of the same name.
    pub stores: Vec<Arc<StoreHealth>>,
    pub started: Instant,
}

/// Whether Raven should receive traffic, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reasons: Vec<String>,
}

fn connection_state(s: ConnectionState) -> &'static str {
    match s {
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Backoff => "backoff",
    }
}

fn book_state(s: BookSyncState) -> &'static str {
    match s {
        BookSyncState::Syncing => "syncing",
        BookSyncState::Synced => "synced",
        BookSyncState::Resyncing => "resyncing",
    }
}

impl StatusSource {
    /// The full status, `ready` included.
    pub fn status(&self) -> pb::StatusResponse {
        self.status_and_readiness().0
    }

    /// Status and readiness from one look at the hub and the feeds.
    pub fn status_and_readiness(&self) -> (pb::StatusResponse, Readiness) {
        let mut status = self.status_without_readiness();
        let readiness = readiness(&status);
        status.ready = readiness.ready;
        (status, readiness)
    }

    fn status_without_readiness(&self) -> pb::StatusResponse {
        let feeds = self.feeds.snapshot();
        let feed_books: HashMap<_, _> = feeds.books.iter().map(|f| (&f.instrument, f)).collect();
        let hub_books = self.hub.instrument_infos();
        let connections = feeds
            .connections
            .iter()
            .map(|c| pb::ConnectionStatus {
                venue: c.venue.as_str().to_owned(),
                name: c.name.clone(),
                state: connection_state(c.state).to_owned(),
                last_message_age_ms: c.last_frame_age.map_or(0, |d| d.as_millis() as u64),
                reconnects: c.reconnects,
                frames: c.frames,
                malformed_frames: c.malformed,
                streams: c.streams as u32,
                restarts: c.restarts,
                stall_timeout_ms: c.stall_timeout.as_millis() as u64,
            })
            .collect();
        // Books of the instruments that carry one: a trades-only instrument has none to
        // wait for.
        let books = hub_books
            .iter()
            .filter(|b| b.has_book)
            .map(|b| {
                let feed = feed_books.get(&b.instrument);
                pb::BookStatus {
                    venue: b.instrument.venue.as_str().to_owned(),
                    symbol: b.instrument.symbol.as_str().to_owned(),
                    state: match feed {
                        Some(f) => book_state(f.state),
                        None if b.synced => "synced",
                        None => "syncing",
                    }
                    .to_owned(),
                    last_message_age_ms: b
                        .last_message_at
                        .map_or(0, |t| t.elapsed().as_millis() as u64),
                    gaps: feed.map_or(0, |f| f.gaps),
                    resyncs: feed.map_or(0, |f| f.resyncs),
                    crossed: feed.map_or(0, |f| f.crossed),
                    bid_levels: b.bid_levels as u32,
                    ask_levels: b.ask_levels as u32,
                    last_update_id: b.last_update_id,
                    snapshot_failures: feed.map_or(0, |f| f.snapshot_failures),
                    checksums_verified: feed.map_or(0, |f| f.checksums_verified),
                    checksum_mismatches: feed.map_or(0, |f| f.checksum_mismatches),
                    known_bid_levels: b.known_levels.0 as u32,
                    known_ask_levels: b.known_levels.1 as u32,
                }
            })
            .collect();
        let instruments = hub_books
            .iter()
            .map(|i| pb::InstrumentStatus {
                venue: i.instrument.venue.as_str().to_owned(),
                symbol: i.instrument.symbol.as_str().to_owned(),
                interruptions: i.interruptions,
                trade_id_gaps: i.trade_id_gaps,
                trades_missing: i.trades_missing,
                late_trades: i.late_trades,
                rejected_trades: i.rejected_trades,
                future_events: i.future_events,
            })
            .collect();
        let subscribers = self
            .hub
            .subscriber_infos()
            .into_iter()
            .map(|s| pb::SubscriberStatus {
                id: s.id,
                peer: s.peer,
                topics: s.topics as u32,
                queue_depth: s.queue_depth as u32,
                queue_capacity: s.queue_capacity as u32,
                conflations: s.conflations,
                dropped: s.dropped,
                queue_bytes: s.queue_bytes as u64,
                queue_max_bytes: s.queue_max_bytes as u64,
                principal: s.principal,
                batch_delay_us: u32::try_from(s.batch_delay.as_micros()).unwrap_or(u32::MAX),
            })
            .collect();
        pb::StatusResponse {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            connections,
            books,
            subscribers,
            ready: false,
            stores: self.stores(),
            instruments,
        }
    }

    /// Each store's own report, with what the hub dropped because it fell behind.
    fn stores(&self) -> Vec<pb::StoreStatus> {
        self.stores
            .iter()
            .map(|store| {
                let mut report = store.report();
                if let Some(tap) = self.hub.taps().iter().find(|t| t.name() == report.name) {
                    report.lost += tap.dropped();
                    let recent = tap.last_drop().is_some_and(|t| t.elapsed() < LOSS_WINDOW);
                    if recent && report.state != StoreState::Losing {
                        report.state = StoreState::Losing;
                        report.reason = format!(
                            "not keeping up: the hub dropped {} records for it",
                            tap.dropped()
                        );
                    }
                }
                pb::StoreStatus {
                    name: report.name.to_owned(),
                    state: report.state.as_str().to_owned(),
                    reason: report.reason,
                    dropped: report.lost,
                }
            })
            .collect()
    }
}

/// Ready when at least one book is served in sync, every configured venue has a
/// connection that is up *and delivering* (a frame within its stall timeout: a socket
/// that is open but silent serves nothing), and no store lost data within the last
/// minute. A single book resyncing does not make Raven unready: the others are still
/// good, and the resync is visible per book. Nor does a store that is down but keeping
/// its data for later (degraded): subscribers are still served exactly.
fn readiness(status: &pb::StatusResponse) -> Readiness {
    let mut reasons = Vec::new();
    for store in status.stores.iter().filter(|s| s.state == "losing") {
        reasons.push(format!("{}: losing data: {}", store.name, store.reason));
    }
    let synced = status.books.iter().filter(|b| b.state == "synced").count();
    if !status.books.is_empty() && synced == 0 {
        reasons.push(format!("no book in sync yet (0 of {})", status.books.len()));
    }
    // Every configured venue (it has instruments, books or not) needs a live connection,
    // including a venue whose connections are not even registered yet.
    let mut venues: Vec<&str> = status
        .instruments
        .iter()
        .map(|i| i.venue.as_str())
        .chain(status.books.iter().map(|b| b.venue.as_str()))
        .chain(status.connections.iter().map(|c| c.venue.as_str()))
        .collect();
    venues.sort_unstable();
    venues.dedup();
    for venue in venues {
        let conns: Vec<_> = status
            .connections
            .iter()
            .filter(|c| c.venue == venue && c.state == "connected")
            .collect();
        if conns.is_empty() {
            reasons.push(format!("{venue}: no connection to the exchange"));
            continue;
        }
        let fresh = |c: &&pb::ConnectionStatus| {
            c.frames > 0 && c.last_message_age_ms < c.stall_timeout_ms.max(1)
        };
        if !conns.iter().any(fresh) {
            let newest = conns
                .iter()
                .filter(|c| c.frames > 0)
                .map(|c| c.last_message_age_ms)
                .min();
            reasons.push(match newest {
                Some(age) => format!(
                    "{venue}: connected but no frame for {age} ms (stall timeout {} ms)",
                    conns[0].stall_timeout_ms
                ),
                None => format!("{venue}: connected but no frame received yet"),
            });
        }
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(store_state: &str) -> pb::StatusResponse {
        pb::StatusResponse {
            connections: vec![pb::ConnectionStatus {
                venue: "binance_spot".into(),
                state: "connected".into(),
                frames: 10,
                last_message_age_ms: 5,
                stall_timeout_ms: 30_000,
                ..Default::default()
            }],
            books: vec![pb::BookStatus {
                venue: "binance_spot".into(),
                symbol: "BTCUSDT".into(),
                state: "synced".into(),
                ..Default::default()
            }],
            stores: vec![pb::StoreStatus {
                name: "influxdb".into(),
                state: store_state.into(),
                reason: "spill write failed: disk full".into(),
                dropped: 5,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_store_losing_data_makes_raven_unready_a_degraded_one_does_not() {
        assert!(readiness(&status("ok")).ready);
        assert!(readiness(&status("degraded")).ready);
        let losing = readiness(&status("losing"));
        assert!(!losing.ready);
        assert_eq!(
            losing.reasons,
            ["influxdb: losing data: spill write failed: disk full"]
        );
    }

    #[test]
    fn a_connection_open_but_silent_past_its_stall_timeout_makes_its_venue_unready() {
        let mut s = status("ok");
        s.connections[0].last_message_age_ms = 31_000;
        assert_eq!(
            readiness(&s).reasons,
            ["binance_spot: connected but no frame for 31000 ms (stall timeout 30000 ms)"]
        );
        s.connections[0].frames = 0;
        assert_eq!(
            readiness(&s).reasons,
            ["binance_spot: connected but no frame received yet"]
        );
        // A venue without books (trades only) is judged the same way.
        let mut s = status("ok");
        s.books.clear();
        s.instruments.push(pb::InstrumentStatus {
            venue: "binance_usdm".into(),
            symbol: "BTCUSDT".into(),
            ..Default::default()
        });
        assert_eq!(
            readiness(&s).reasons,
            ["binance_usdm: no connection to the exchange"]
        );
    }

    #[test]
    fn a_venue_without_a_connection_makes_raven_unready() {
        let mut s = status("ok");
        s.connections[0].state = "backoff".into();
        assert_eq!(
            readiness(&s).reasons,
            ["binance_spot: no connection to the exchange"]
        );
    }
}
