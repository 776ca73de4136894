//! Synthetic mode: a random-walk Binance market at a chosen message rate.
//!
//! Captures are short; load tests, soak tests and the offline demo need a market that
//! never ends, scales to any number of symbols and any rate, and still obeys every rule
//! a connector checks. This generator keeps, per symbol, an integer-tick book (price in
//! ticks, size in lots) and moves it one small event at a time:
//!
//! * **depth diffs** touch one to three levels, mostly within a few ticks of the touch
//!   and sometimes deep in the book; removals are sent as qty `"0"`; the side is topped
//!   up or trimmed to about `levels` levels;
//! * **trades** hit the touch (`@aggTrade` and `@trade`), shrinking or removing it;
//! * **improvements** place a new level inside the spread, so the mid walks at random;
//! * **`@bookTicker`** follows every change of the touch;
//! * the futures flavours add `pu`, `@markPrice@1s` every second and rare `@forceOrder`
//!   (at most one per symbol per second, as Binance documents).
//!
//! Update ids follow Binance exactly: `U = previous u + 1`, and futures `pu = previous
//! u`. The book and its ids change under one lock per symbol, and `GET .../depth` reads
//! under the same lock, so a snapshot's `lastUpdateId` is always the `u` of a frame and a
//! correct connector always syncs. Bids stay below asks by construction: levels are only
//! placed on their own side of the touch or strictly inside the spread.
//!
//! Frames are formatted once, by hand (no serde per frame), and published in batches
//! every millisecond over a broadcast channel; each connection filters the batch by its
//! streams. `E` is the wall-clock time at generation, so a latency harness can measure
//! simulator-send → client-receive from it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};

use crate::control::Faults;
use crate::format::{self, push_decimal, push_u64, Fixed};
use crate::server::{Api, Batch, Frame};
use crate::{App, SimArgs, SimVenue};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub venue: SimVenue,
    pub symbols: usize,
    /// Messages per second over all symbols and streams (mark prices excluded).
    pub rate: u64,
    /// About this many levels per side.
    pub levels: usize,
    pub seed: u64,
}

impl From<&SimArgs> for Config {
    fn from(a: &SimArgs) -> Self {
        Config {
            venue: a.venue,
            symbols: a.symbols,
            rate: a.rate,
            levels: a.levels,
            seed: a.seed,
        }
    }
}

/// The streams of one symbol; a frame's stream id is `symbol index * KINDS + kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Depth = 0,
    AggTrade = 1,
    Trade = 2,
    BookTicker = 3,
    MarkPrice = 4,
    ForceOrder = 5,
}

const KINDS: usize = 6;
const STREAM_SUFFIX: [&str; KINDS] = [
    "@depth@100ms",
    "@aggTrade",
    "@trade",
    "@bookTicker",
    "@markPrice@1s",
    "@forceOrder",
];

/// Batches a connection may fall behind before it is closed (about two seconds).
const BROADCAST_CAPACITY: usize = 2048;
/// One batch per tick.
const TICK: Duration = Duration::from_millis(1);

/// How prices and sizes are written: integer ticks/lots printed at a fixed scale.
#[derive(Debug, Clone, Copy)]
struct Scales {
    /// Decimals of the tick size (0.01 → 2).
    tick: u32,
    /// Decimals the venue prints prices with (spot always prints 8).
    price: u32,
    /// Decimals of the lot size.
    lot: u32,
    /// Decimals the venue prints sizes with.
    qty: u32,
}

impl Scales {
    fn of(venue: SimVenue) -> Scales {
        match venue {
            SimVenue::Spot => Scales {
                tick: 2,
                price: 8,
                lot: 3,
                qty: 8,
            },
            SimVenue::Usdm => Scales {
                tick: 2,
                price: 2,
                lot: 3,
                qty: 3,
            },
            SimVenue::Coinm => Scales {
                tick: 1,
                price: 1,
                lot: 0,
                qty: 0,
            },
        }
    }

    fn price(self, ticks: u64) -> Fixed {
        Fixed {
            units: ticks * 10u64.pow(self.price - self.tick),
            scale: self.price,
        }
    }

    fn qty(self, lots: u64) -> Fixed {
        Fixed {
            units: lots * 10u64.pow(self.qty - self.lot),
            scale: self.qty,
        }
    }
}

struct Spec {
    symbol: String,
    /// `{"stream":"<name>","data":` per kind.
    prefix: [String; KINDS],
}

/// One symbol's book in integer ticks and lots, with its id counters.
#[derive(Debug, Default)]
struct Book {
    bids: BTreeMap<u64, u64>,
    asks: BTreeMap<u64, u64>,
    last_u: u64,
    trade_id: u64,
    agg_id: u64,
    /// When the last `@forceOrder` was sent (ms): Binance pushes at most one liquidation
    /// snapshot per symbol per second.
    last_force_order_ms: u64,
}

type Touch = (Option<(u64, u64)>, Option<(u64, u64)>);

impl Book {
    fn touch(&self) -> Touch {
        (
            self.bids.last_key_value().map(|(p, q)| (*p, *q)),
            self.asks.first_key_value().map(|(p, q)| (*p, *q)),
        )
    }
}

/// The level changes of one diff, in order, one entry per price.
#[derive(Default)]
struct Changes {
    bids: Vec<(u64, u64)>,
    asks: Vec<(u64, u64)>,
}

impl Changes {
    fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }
}

/// Sets (lots > 0) or removes (lots = 0) a level and records the change.
fn set(side: &mut BTreeMap<u64, u64>, changes: &mut Vec<(u64, u64)>, price: u64, lots: u64) {
    if lots == 0 {
        side.remove(&price);
    } else {
        side.insert(price, lots);
    }
    match changes.iter_mut().find(|(p, _)| *p == price) {
        Some(c) => c.1 = lots,
        None => changes.push((price, lots)),
    }
}

/// The synthetic market: symbol books, stream table and the broadcast of frames.
pub struct Market {
    config: Config,
    scales: Scales,
    specs: Vec<Spec>,
    books: Vec<Mutex<Book>>,
    by_symbol: HashMap<String, usize>,
    streams: HashMap<String, u32>,
    tx: broadcast::Sender<Batch>,
}

impl Market {
    /// Builds the symbols and their initial books (deterministic for a seed).
    pub fn new(config: &Config) -> Result<Market> {
        if config.symbols == 0 || config.symbols > 100_000 {
            bail!("--symbols must be 1..=100000, got {}", config.symbols);
        }
        if config.levels == 0 || config.levels > 5000 {
            bail!("--levels must be 1..=5000, got {}", config.levels);
        }
        let futures = config.venue != SimVenue::Spot;
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let scales = Scales::of(config.venue);
        let mut specs = Vec::with_capacity(config.symbols);
        let mut books = Vec::with_capacity(config.symbols);
        let mut by_symbol = HashMap::new();
        let mut streams = HashMap::new();
        for i in 0..config.symbols {
            let symbol = match config.venue {
                SimVenue::Coinm => format!("SYN{i}USD_PERP"),
                SimVenue::Spot | SimVenue::Usdm => format!("SYN{i}USDT"),
            };
            let lower = symbol.to_ascii_lowercase();
            let prefix = STREAM_SUFFIX.map(|s| format!("{{\"stream\":\"{lower}{s}\",\"data\":"));
            for (k, suffix) in STREAM_SUFFIX.iter().enumerate() {
                if futures || k < Kind::MarkPrice as usize {
                    streams.insert(format!("{lower}{suffix}"), (i * KINDS + k) as u32);
                }
            }
            by_symbol.insert(symbol.clone(), i);
            specs.push(Spec { symbol, prefix });
            books.push(Mutex::new(initial_book(&mut rng, i, config.levels)));
        }
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(Market {
            config: config.clone(),
            scales,
            specs,
            books,
            by_symbol,
            streams,
            tx,
        })
    }

    /// The upper-case symbols, in index order.
    pub fn symbols(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.symbol.clone()).collect()
    }

    pub(crate) fn stream_id(&self, name: &str) -> Option<u32> {
        self.streams.get(name).copied()
    }

    pub(crate) fn stream_count(&self) -> usize {
        self.specs.len() * KINDS
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.tx.subscribe()
    }

    /// The current book, top `limit` levels per side, with its `lastUpdateId`.
    ///
    /// Spot: `lastUpdateId` is the `u` of the last diff, and the next diff starts at
    /// `lastUpdateId + 1`, as Binance's spot procedure expects. Futures: Binance's ids
    /// are one sequence shared by all symbols, so a snapshot's id falls *inside* the next
    /// diff's `U..=u` range, and the documented procedure requires exactly that
    /// (`U <= lastUpdateId <= u` for the first diff). The simulator reproduces it by
    /// answering `last u + 1`: the next diff of the symbol starts there, and no id in
    /// between changes the book.
    pub(crate) fn depth(&self, api: Api, symbol: &str, limit: usize) -> Option<String> {
        let book = self.books.get(*self.by_symbol.get(symbol)?)?.lock();
        let s = self.scales;
        let futures = self.config.venue != SimVenue::Spot;
        Some(format::depth_body(
            book.last_u + u64::from(futures),
            api.is_futures().then(format::now_ms),
            book.bids
                .iter()
                .rev()
                .take(limit)
                .map(|(p, q)| (s.price(*p), s.qty(*q))),
            book.asks
                .iter()
                .take(limit)
                .map(|(p, q)| (s.price(*p), s.qty(*q))),
        ))
    }

    /// Other REST endpoints: `exchangeInfo`, `time`, `ping` of the three APIs.
    pub(crate) fn rest(&self, path: &str) -> Option<String> {
        let (prefix, endpoint) = path.rsplit_once('/')?;
        if !["/api/v3", "/fapi/v1", "/dapi/v1"].contains(&prefix) {
            return None;
        }
        match endpoint {
            "exchangeInfo" => Some(self.exchange_info(prefix).to_string()),
            "time" => Some(format!("{{\"serverTime\":{}}}", format::now_ms())),
            "ping" => Some("{}".to_owned()),
            _ => None,
        }
    }

    fn exchange_info(&self, prefix: &str) -> serde_json::Value {
        use serde_json::json;
        let s = self.scales;
        let tick = s.price(1).to_string();
        let lot = s.qty(1).to_string();
        let symbols: Vec<serde_json::Value> = self
            .specs
            .iter()
            .map(|spec| {
                let filters = json!([
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": s.price(100_000_000).to_string(), "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": s.qty(100_000_000).to_string(), "stepSize": lot},
                ]);
                match prefix {
                    "/api/v3" => {
                        let base = spec.symbol.trim_end_matches("USDT");
                        json!({"symbol": spec.symbol, "status": "TRADING", "baseAsset": base,
                            "baseAssetPrecision": 8, "quoteAsset": "USDT", "quotePrecision": 8,
                            "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                            "isSpotTradingAllowed": true, "filters": filters, "permissions": ["SPOT"]})
                    }
                    "/fapi/v1" => {
                        let base = spec.symbol.trim_end_matches("USDT");
                        json!({"symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL",
                            "deliveryDate": 4133404800000u64, "onboardDate": 1569398400000u64,
                            "status": "TRADING", "baseAsset": base, "quoteAsset": "USDT",
                            "marginAsset": "USDT", "pricePrecision": s.tick, "quantityPrecision": s.lot,
                            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                            "filters": filters, "orderTypes": ["LIMIT", "MARKET"],
                            "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
                    }
                    _ => {
                        let pair = spec.symbol.trim_end_matches("_PERP");
                        let base = pair.trim_end_matches("USD");
                        json!({"symbol": spec.symbol, "pair": pair, "contractType": "PERPETUAL",
                            "deliveryDate": 4133404800000u64, "onboardDate": 1597042800000u64,
                            "contractStatus": "TRADING", "contractSize": 10, "marginAsset": base,
                            "baseAsset": base, "quoteAsset": "USD", "pricePrecision": s.tick,
                            "quantityPrecision": s.lot, "baseAssetPrecision": 8, "quotePrecision": 8,
                            "filters": filters, "orderTypes": ["LIMIT", "MARKET"],
                            "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
                    }
                }
            })
            .collect();
        let mut info = json!({
            "timezone": "UTC",
            "serverTime": format::now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": symbols,
        });
        if prefix == "/fapi/v1" {
            info["futuresType"] = json!("U_MARGINED");
        }
        info
    }

    /// The generator task: one batch of frames per millisecond at the configured rate,
    /// plus mark prices every second for futures, until shutdown.
    pub(crate) async fn generate(self: Arc<Self>, app: Arc<App>) {
        let mut shutdown = app.shutdown.clone();
        let mut rng = SmallRng::seed_from_u64(self.config.seed.wrapping_add(1));
        let mut changes = Changes::default();
        let rate = self.config.rate;
        let max_backlog = (rate / 20).max(1);
        let futures = self.config.venue != SimVenue::Spot;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let start = Instant::now();
        let mut next_mark = start;
        let mut produced: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = Instant::now();
            let due = (now.duration_since(start).as_secs_f64() * rate as f64) as u64;
            // Cannot keep up: let the excess go rather than burst for ever after.
            produced = produced.max(due.saturating_sub(max_backlog));
            let budget = due.saturating_sub(produced) as usize;
            let mut batch = Vec::with_capacity(budget + 4);
            while batch.len() < budget {
                let i = rng.random_range(0..self.specs.len());
                self.step(i, &mut rng, &mut changes, &app.faults, &mut batch);
            }
            produced += batch.len() as u64;
            if futures && now >= next_mark {
                next_mark += Duration::from_secs(1);
                for i in 0..self.specs.len() {
                    self.mark_price(i, &mut batch);
                }
            }
            if !batch.is_empty() {
                app.faults
                    .counters
                    .frames_sent
                    .fetch_add(batch.len() as u64, Relaxed);
                // An error only means nobody is connected right now.
                let _ = self.tx.send(Arc::new(batch));
            }
        }
    }

    /// One market event on symbol `i`; appends its frames to `out`.
    fn step(
        &self,
        i: usize,
        rng: &mut SmallRng,
        changes: &mut Changes,
        faults: &Faults,
        out: &mut Vec<Frame>,
    ) {
        let levels = self.config.levels;
        let futures = self.config.venue != SimVenue::Spot;
        let mut book = self.books[i].lock();
        let book = &mut *book;
        let before = book.touch();
        let (Some((bid, _)), Some((ask, _))) = before else {
            return;
        };
        let now = format::now_ms();
        changes.clear();
        let roll = rng.random_range(0..100u32);
        if roll < 10 {
            // A market order takes (part of) the touch on one side.
            let buy = rng.random_bool(0.5);
            let (side, ch, price) = if buy {
                (&mut book.asks, &mut changes.asks, ask)
            } else {
                (&mut book.bids, &mut changes.bids, bid)
            };
            let resting = side.get(&price).copied().unwrap_or(0);
            let mut lots = if rng.random_bool(0.3) {
                resting
            } else {
                rng.random_range(0..resting.max(1)) + 1
            };
            if side.len() == 1 {
                // Never empty a side: the walk needs a touch on both.
                lots = lots.min(resting.saturating_sub(1));
            }
            if lots > 0 {
                set(side, ch, price, resting - lots.min(resting));
                book.trade_id += 1;
                book.agg_id += 1;
                if !faults.take_trade_gap(&self.specs[i].symbol) {
                    self.trade_frames(i, book, price, lots, !buy, now, futures, out);
                }
            }
        } else if roll < 18 && ask - bid > 1 {
            // A limit order improves one side inside the spread.
            let price = rng.random_range(bid + 1..ask);
            let lots = rng.random_range(1..=5_000);
            if rng.random_bool(0.5) {
                set(&mut book.bids, &mut changes.bids, price, lots);
            } else {
                set(&mut book.asks, &mut changes.asks, price, lots);
            }
        } else {
            // Orders come and go, mostly near the touch.
            for _ in 0..rng.random_range(1..=3) {
                let d = if rng.random_bool(0.85) {
                    rng.random_range(0..5u64)
                } else {
                    rng.random_range(0..(levels as u64 * 5 / 4).max(1))
                };
                let bid_side = rng.random_bool(0.5);
                let (side, ch, price) = if bid_side {
                    match bid.checked_sub(d).filter(|p| *p > 0) {
                        Some(p) => (&mut book.bids, &mut changes.bids, p),
                        None => continue,
                    }
                } else {
                    (&mut book.asks, &mut changes.asks, ask + d)
                };
                let lots = if side.contains_key(&price) && side.len() > 1 && rng.random_bool(0.3) {
                    0
                } else {
                    rng.random_range(1..=5_000)
                };
                set(side, ch, price, lots);
            }
        }
        maintain_depth(&mut book.bids, &mut changes.bids, levels, rng, true);
        maintain_depth(&mut book.asks, &mut changes.asks, levels, rng, false);
        if changes.is_empty() {
            return;
        }
        let first = book.last_u + 1;
        let u = first + rng.random_range(0..3);
        let pu = book.last_u;
        book.last_u = u;
        debug_assert!(!matches!(book.touch(), (Some(b), Some(a)) if b.0 >= a.0));
        if !faults.take_gap("/stream", &self.specs[i].symbol) {
            self.depth_frame(i, changes, first, u, pu, now, futures, out);
        }
        let after = book.touch();
        if after != before {
            if let (Some(b), Some(a)) = after {
                self.book_ticker(i, u, b, a, now, futures, out);
            }
        }
        if futures && rng.random_ratio(1, 500) && now >= book.last_force_order_ms + 1000 {
            book.last_force_order_ms = now;
            let lots = rng.random_range(1..=100);
            self.force_order(
                i,
                if rng.random_bool(0.5) { bid } else { ask },
                lots,
                now,
                out,
            );
        }
    }

    fn begin(&self, i: usize, kind: Kind) -> String {
        let mut s = String::with_capacity(320);
        s.push_str(&self.specs[i].prefix[kind as usize]);
        s
    }

    fn finish(&self, i: usize, kind: Kind, mut text: String, out: &mut Vec<Frame>) {
        text.push('}');
        out.push(Frame {
            stream: (i * KINDS + kind as usize) as u32,
            index: 0,
            text: text.into(),
            deleted: false,
        });
    }

    fn push_price(&self, out: &mut String, ticks: u64) {
        out.push('"');
        push_decimal(
            out,
            ticks * 10u64.pow(self.scales.price - self.scales.tick),
            self.scales.price,
        );
        out.push('"');
    }

    fn push_qty(&self, out: &mut String, lots: u64) {
        out.push('"');
        push_decimal(
            out,
            lots * 10u64.pow(self.scales.qty - self.scales.lot),
            self.scales.qty,
        );
        out.push('"');
    }

    fn push_levels(&self, out: &mut String, levels: &[(u64, u64)]) {
        out.push('[');
        for (n, (p, q)) in levels.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push('[');
            self.push_price(out, *p);
            out.push(',');
            self.push_qty(out, *q);
            out.push(']');
        }
        out.push(']');
    }

    fn push_symbol(&self, out: &mut String, i: usize) {
        out.push_str(",\"s\":\"");
        out.push_str(&self.specs[i].symbol);
        out.push('"');
    }

    #[allow(clippy::too_many_arguments)]
    fn depth_frame(
        &self,
        i: usize,
        changes: &Changes,
        first: u64,
        u: u64,
        pu: u64,
        now: u64,
        futures: bool,
        out: &mut Vec<Frame>,
    ) {
        let mut s = self.begin(i, Kind::Depth);
        s.push_str("{\"e\":\"depthUpdate\",\"E\":");
        push_u64(&mut s, now);
        if futures {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
        }
        self.push_symbol(&mut s, i);
        s.push_str(",\"U\":");
        push_u64(&mut s, first);
        s.push_str(",\"u\":");
        push_u64(&mut s, u);
        if futures {
            s.push_str(",\"pu\":");
            push_u64(&mut s, pu);
        }
        s.push_str(",\"b\":");
        self.push_levels(&mut s, &changes.bids);
        s.push_str(",\"a\":");
        self.push_levels(&mut s, &changes.asks);
        s.push('}');
        self.finish(i, Kind::Depth, s, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn trade_frames(
        &self,
        i: usize,
        book: &Book,
        price: u64,
        lots: u64,
        buyer_is_maker: bool,
        now: u64,
        futures: bool,
        out: &mut Vec<Frame>,
    ) {
        let maker = if buyer_is_maker { "true" } else { "false" };
        let mut s = self.begin(i, Kind::AggTrade);
        s.push_str("{\"e\":\"aggTrade\",\"E\":");
        push_u64(&mut s, now);
        if futures {
            s.push_str(",\"a\":");
            push_u64(&mut s, book.agg_id);
            self.push_symbol(&mut s, i);
        } else {
            self.push_symbol(&mut s, i);
            s.push_str(",\"a\":");
            push_u64(&mut s, book.agg_id);
        }
        s.push_str(",\"p\":");
        self.push_price(&mut s, price);
        s.push_str(",\"q\":");
        self.push_qty(&mut s, lots);
        s.push_str(",\"f\":");
        push_u64(&mut s, book.trade_id);
        s.push_str(",\"l\":");
        push_u64(&mut s, book.trade_id);
        s.push_str(",\"T\":");
        push_u64(&mut s, now);
        s.push_str(",\"m\":");
        s.push_str(maker);
        s.push_str(if futures { "}" } else { ",\"M\":true}" });
        self.finish(i, Kind::AggTrade, s, out);

        let mut s = self.begin(i, Kind::Trade);
        s.push_str("{\"e\":\"trade\",\"E\":");
        push_u64(&mut s, now);
        if futures {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
        }
        self.push_symbol(&mut s, i);
        s.push_str(",\"t\":");
        push_u64(&mut s, book.trade_id);
        s.push_str(",\"p\":");
        self.push_price(&mut s, price);
        s.push_str(",\"q\":");
        self.push_qty(&mut s, lots);
        if futures {
            s.push_str(",\"X\":\"MARKET\",\"m\":");
            s.push_str(maker);
            s.push('}');
        } else {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
            s.push_str(",\"m\":");
            s.push_str(maker);
            s.push_str(",\"M\":true}");
        }
        self.finish(i, Kind::Trade, s, out);
    }

    /// Spot's `@bookTicker` has no event time on Binance; the simulator appends `E` so
    /// latency can be measured on every stream.
    #[allow(clippy::too_many_arguments)]
    fn book_ticker(
        &self,
        i: usize,
        u: u64,
        bid: (u64, u64),
        ask: (u64, u64),
        now: u64,
        futures: bool,
        out: &mut Vec<Frame>,
    ) {
        let mut s = self.begin(i, Kind::BookTicker);
        s.push_str(if futures {
            "{\"e\":\"bookTicker\",\"u\":"
        } else {
            "{\"u\":"
        });
        push_u64(&mut s, u);
        self.push_symbol(&mut s, i);
        s.push_str(",\"b\":");
        self.push_price(&mut s, bid.0);
        s.push_str(",\"B\":");
        self.push_qty(&mut s, bid.1);
        s.push_str(",\"a\":");
        self.push_price(&mut s, ask.0);
        s.push_str(",\"A\":");
        self.push_qty(&mut s, ask.1);
        if futures {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
        }
        s.push_str(",\"E\":");
        push_u64(&mut s, now);
        s.push('}');
        self.finish(i, Kind::BookTicker, s, out);
    }

    fn mark_price(&self, i: usize, out: &mut Vec<Frame>) {
        let (Some((bid, _)), Some((ask, _))) = self.books[i].lock().touch() else {
            return;
        };
        let now = format::now_ms();
        // The mid, exact at 8 decimals: (bid + ask) / 2 ticks.
        let mid = (bid + ask) * 10u64.pow(8 - self.scales.tick) / 2;
        const EIGHT_HOURS_MS: u64 = 8 * 3600 * 1000;
        let next_funding = (now / EIGHT_HOURS_MS + 1) * EIGHT_HOURS_MS;
        let mut s = self.begin(i, Kind::MarkPrice);
        s.push_str("{\"e\":\"markPriceUpdate\",\"E\":");
        push_u64(&mut s, now);
        self.push_symbol(&mut s, i);
        for key in ["p", "i", "P"] {
            s.push_str(",\"");
            s.push_str(key);
            s.push_str("\":\"");
            push_decimal(&mut s, mid, 8);
            s.push('"');
        }
        s.push_str(",\"r\":\"0.00010000\",\"T\":");
        push_u64(&mut s, next_funding);
        s.push('}');
        self.finish(i, Kind::MarkPrice, s, out);
    }

    fn force_order(&self, i: usize, price: u64, lots: u64, now: u64, out: &mut Vec<Frame>) {
        let mut s = self.begin(i, Kind::ForceOrder);
        s.push_str("{\"e\":\"forceOrder\",\"E\":");
        push_u64(&mut s, now);
        s.push_str(",\"o\":{\"s\":\"");
        let symbol = &self.specs[i].symbol;
        s.push_str(symbol);
        s.push('"');
        if let Some(pair) = symbol.strip_suffix("_PERP") {
            s.push_str(",\"ps\":\"");
            s.push_str(pair);
            s.push('"');
        }
        s.push_str(",\"S\":\"SELL\",\"o\":\"LIMIT\",\"f\":\"IOC\",\"q\":");
        self.push_qty(&mut s, lots);
        s.push_str(",\"p\":");
        self.push_price(&mut s, price);
        s.push_str(",\"ap\":");
        self.push_price(&mut s, price);
        s.push_str(",\"X\":\"FILLED\",\"l\":");
        self.push_qty(&mut s, lots);
        s.push_str(",\"z\":");
        self.push_qty(&mut s, lots);
        s.push_str(",\"T\":");
        push_u64(&mut s, now);
        s.push_str("}}");
        self.finish(i, Kind::ForceOrder, s, out);
    }
}

/// Tops a side up towards `levels` (one level per event, behind the worst) and trims it
/// when it grew a quarter beyond.
fn maintain_depth(
    side: &mut BTreeMap<u64, u64>,
    changes: &mut Vec<(u64, u64)>,
    levels: usize,
    rng: &mut SmallRng,
    bids: bool,
) {
    while side.len() > levels + levels / 4 {
        let worst = if bids {
            side.first_key_value()
        } else {
            side.last_key_value()
        };
        let Some((&p, _)) = worst else { break };
        set(side, changes, p, 0);
    }
    if side.len() < levels {
        let gap = rng.random_range(1..=3);
        let price = if bids {
            side.first_key_value()
                .and_then(|(p, _)| p.checked_sub(gap))
                .filter(|p| *p > 0)
        } else {
            side.last_key_value().map(|(p, _)| p + gap)
        };
        if let Some(p) = price {
            set(side, changes, p, rng.random_range(1..=5_000));
        }
    }
}

/// A book of about `levels` levels per side around a symbol-specific mid.
fn initial_book(rng: &mut SmallRng, i: usize, levels: usize) -> Book {
    let mid = 100_000 + 7_919 * i as u64;
    let mut book = Book {
        last_u: 1_000_000 + rng.random_range(0..1_000_000),
        trade_id: 10_000,
        agg_id: 5_000,
        ..Book::default()
    };
    let mut d = 0;
    while book.bids.len() < levels && d < mid {
        if d == 0 || rng.random_bool(0.85) {
            book.bids.insert(mid - d, rng.random_range(1..=5_000));
        }
        d += 1;
    }
    d = 0;
    while book.asks.len() < levels {
        if d == 0 || rng.random_bool(0.85) {
            book.asks.insert(mid + 1 + d, rng.random_range(1..=5_000));
        }
        d += 1;
    }
    book
}
