//! What the venue tests share: the recorded captures (shared/data/captures) as entries in
//! the order they happened, a sink that keeps real books like the hub and records
//! everything else it is told, and one in-stream book on the engine's path without a
//! socket ([`EngineBook`]).
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use raven_model::book::OrderBook;
use raven_model::feed::{BookChecks, BookRejected, BookUpdate, FeedGap, FeedSink};
use raven_model::{InstrumentId, MarketEvent, UnixNanos, Venue};
use raven_venues::binance::connection::{ConnectionConfig, Feed};
use raven_venues::binance::parse::parse_snapshot;
use raven_venues::binance::snapshot::{self, FetcherConfig, SnapshotReply};
use raven_venues::binance::Market;
use raven_venues::engine::{book_checks, BookMessage, BookSync, Loss, Step, VenueProtocol};
use raven_venues::status::FeedStatus;
use raven_venues::BackoffConfig;

pub enum Entry {
    /// A WebSocket frame, with its receive time.
    Recv(f64, String),
    /// A REST depth snapshot: receive time, symbol, body.
    Snapshot(f64, String, String),
}

pub fn capture(name: &str) -> Vec<Entry> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures")
        .join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = zstd::decode_all(raw.as_slice()).unwrap();
    let mut entries: Vec<Entry> = String::from_utf8(text)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ts = v["ts"].as_f64().unwrap_or(0.0);
            let data = v["data"].as_str().unwrap_or_default().to_owned();
            match v["t"].as_str() {
                Some("recv") => Some(Entry::Recv(ts, data)),
                Some("http") => {
                    let url = v["url"].as_str().unwrap_or_default();
                    let symbol = url.split("symbol=").nth(1)?.split('&').next()?;
                    url.contains("/depth")
                        .then(|| Entry::Snapshot(ts, symbol.to_owned(), data))
                }
                _ => None,
            }
        })
        .collect();
    // The file lists REST answers first; replay everything in the order it happened.
    entries.sort_by(|a, b| ts(a).total_cmp(&ts(b)));
    entries
}

pub fn ts(e: &Entry) -> f64 {
    match e {
        Entry::Recv(t, _) | Entry::Snapshot(t, _, _) => *t,
    }
}

pub const SPOT_SYMBOLS: [&str; 4] = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"];
pub const FUTURES_SYMBOLS: [&str; 4] = ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"];

pub fn frames(entries: &[Entry]) -> impl Iterator<Item = &str> {
    entries.iter().filter_map(|e| match e {
        Entry::Recv(_, d) => Some(d.as_str()),
        Entry::Snapshot(..) => None,
    })
}

/// A sink that keeps real books and refuses crossed ones, like the hub.
#[derive(Default)]
pub struct BookSink {
    pub books: Mutex<HashMap<InstrumentId, OrderBook>>,
    pub events: Mutex<Vec<MarketEvent>>,
    pub resets: Mutex<Vec<(InstrumentId, String)>>,
    pub snapshots: Mutex<usize>,
    pub gaps: Mutex<Vec<(InstrumentId, FeedGap)>>,
}

impl FeedSink for BookSink {
    fn market_event(&self, event: MarketEvent) {
        self.events.lock().push(event);
    }

    fn book_update(
        &self,
        instrument: &InstrumentId,
        mut update: BookUpdate,
        checks: &BookChecks,
        _exchange_time: UnixNanos,
        _receive_time: UnixNanos,
    ) -> Result<(), BookRejected> {
        let mut books = self.books.lock();
        let book = match update {
            BookUpdate::Snapshot { .. } => {
                *self.snapshots.lock() += 1;
                books.entry(instrument.clone()).or_default()
            }
            BookUpdate::Delta(_) => books.get_mut(instrument).ok_or(BookRejected::NotSynced)?,
        };
        if let Err(rejected) = book.apply_checked(&mut update, checks) {
            books.remove(instrument);
            return Err(rejected);
        }
        Ok(())
    }

    fn book_reset(&self, instrument: &InstrumentId, reason: &str) {
        self.books.lock().remove(instrument);
        self.resets
            .lock()
            .push((instrument.clone(), reason.to_owned()));
    }

    fn feed_gap(&self, instrument: &InstrumentId, gap: FeedGap, _receive_time: UnixNanos) {
        self.gaps.lock().push((instrument.clone(), gap));
    }
}

/// The recorded snapshot `body` as the fetcher would answer it for `feed`'s current
/// attempt at `symbol`'s book.
pub fn fetched(feed: &Feed, symbol: String, body: &str) -> SnapshotReply {
    let generation = feed
        .snapshot_generation(&symbol)
        .expect("a book of the feed");
    SnapshotReply::Fetched {
        symbol,
        generation,
        snapshot: parse_snapshot(body, UnixNanos::now()).unwrap(),
    }
}

pub fn feed_for(venue: Venue, symbols: &[&str], status: &FeedStatus, sink: Arc<BookSink>) -> Feed {
    let market = Market::of(venue).expect("a Binance venue");
    let config = ConnectionConfig {
        venue,
        market,
        name: format!("{venue}#test"),
        url: String::new(),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        books: true,
        streams: symbols.len() * 3,
        stall_timeout: Duration::from_secs(30),
        max_connection_age: Duration::from_secs(3600),
        backoff: BackoffConfig::default(),
        max_buffered_diffs: 10_000,
        snapshot_limit: 1000,
    };
    // The fetcher's serving future is never run: requests just queue, and the test plays
    // the recorded snapshots in their place.
    let client = raven_venues::http::client().unwrap();
    let (fetcher, _serve) = snapshot::fetcher(
        client,
        FetcherConfig {
            market,
            rest_url: String::new(),
            limit: 1000,
            spacing: Duration::ZERO,
            backoff: BackoffConfig::default(),
        },
    );
    Feed::new(&config, sink, status, fetcher).0
}

pub fn replay_through_feed(
    name: &str,
    venue: Venue,
    symbols: &[&str],
) -> (Arc<BookSink>, FeedStatus) {
    let status = FeedStatus::new();
    let sink = Arc::new(BookSink::default());
    let mut feed = feed_for(venue, symbols, &status, Arc::clone(&sink));
    for e in capture(name) {
        match e {
            Entry::Recv(_, text) => feed.on_text(&text, UnixNanos::now()),
            Entry::Snapshot(_, symbol, body) => {
                let reply = fetched(&feed, symbol, &body);
                feed.on_snapshot_reply(reply)
            }
        }
    }
    (sink, status)
}

/// What became of one book message on the engine's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to the book; `checked`: it carried a checksum, and the book matched it.
    Applied { checked: bool },
    /// No snapshot yet.
    Waiting,
    /// A repeat, dropped.
    Stale,
    /// [`BookSync`] found a gap.
    Lost(Loss),
    /// The book refused it (a checksum mismatch, crossed).
    Rejected(BookRejected),
}

/// One in-stream book as the engine's connection keeps it, without a socket: the
/// sequence judged by [`BookSync`], each update applied once to the book with the
/// checks the connection builds ([`book_checks`]), as the sink does; a refused update
/// resets the sync, as the connection's resync does.
#[derive(Default)]
pub struct EngineBook {
    pub sync: BookSync,
    pub book: OrderBook,
    /// Updates applied with a matching checksum: what the connection counts.
    pub checksums_verified: u64,
}

impl EngineBook {
    pub fn on_message(&mut self, protocol: &impl VenueProtocol, msg: BookMessage) -> Outcome {
        let checks = book_checks(protocol, msg.checksum);
        match self.sync.on_message(msg) {
            Step::Apply(mut update) => match self.book.apply_checked(&mut update, &checks) {
                Ok(()) => {
                    let checked = checks.checksum.is_some();
                    self.checksums_verified += u64::from(checked);
                    Outcome::Applied { checked }
                }
                Err(rejected) => {
                    self.sync.reset();
                    Outcome::Rejected(rejected)
                }
            },
            Step::Waiting => Outcome::Waiting,
            Step::Stale => Outcome::Stale,
            Step::Lost(loss) => Outcome::Lost(loss),
        }
    }
}
