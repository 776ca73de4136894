//! Synthetic mode: a random-walk market at a chosen message rate, in the protocol of
//! Binance (spot, USD-M, COIN-M) or of Bybit v5 linear.
//!
//! Captures are short; load tests, soak tests and the offline demo need a market that
//! never ends, scales to any number of symbols and any rate, and still obeys every rule
//! a connector checks. One random walk (`walk`) moves every symbol's integer-tick book
//! and decides trades, liquidations and update ids; a venue's format only writes what
//! a step did in that venue's frames and answers its REST listings:
//!
//! * `binance`: combined streams on `/stream` (`@depth@100ms` diffs, `@aggTrade`,
//!   `@trade`, `@bookTicker`; futures add `pu`, `@markPrice@1s` and `@forceOrder`), REST
//!   depth snapshots and `exchangeInfo`;
//! * `bybit`: `/v5/public/linear` with `orderbook.200` snapshot and deltas,
//!   `publicTrade`, `tickers` (best bid and ask, mark and index price, funding),
//!   `allLiquidation`, and `GET /v5/market/instruments-info`.
//!
//! So the same seed gives both venues the same kind of market, and a fault (a deleted
//! delta, a skipped trade, a crossed book) means the same thing on both.
//!
//! **Joining a book.** Binance clients join the diffs to a REST snapshot, so a Binance
//! connection takes every frame generated since it connected. Bybit sends a snapshot on
//! the stream after each subscription (and a ticker snapshot, so a client knows every
//! field before the deltas); it is written under the book's lock together with the
//! number of the next frame (`Frame::index`: one counter for the whole market, taken
//! under the same lock for each frame), and the connection takes exactly the frames from
//! that number on, so the snapshot's `u` is followed by `u + 1`.
//!
//! The book and its ids change under one lock per symbol, and a REST depth answer reads
//! under the same lock, so a Binance snapshot's `lastUpdateId` is always the `u` of a
//! frame and a correct connector always syncs.
//!
//! Frames are formatted once, by hand (no serde per frame), and published over a
//! broadcast channel as soon as they are due, at most one batch per `--batch-us`
//! (100 µs by default); each connection filters the batch by its streams. A venue's feed
//! is a steady stream of frames spread over time, not a burst per timer tick: 1 ms
//! bursts made a latency harness measure the queue behind the burst's first frame,
//! not the server. Event times are the wall clock at generation, so a latency harness
//! can measure simulator-send → client-receive from them.

mod binance;
mod bybit;
mod walk;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;

use crate::control::Faults;
use crate::format::{push_decimal, Fixed};
use crate::replay::{Protocol, Sub};
use crate::server::{Api, Batch, Frame};
use crate::{App, SimArgs, SimVenue};
use walk::{Book, Changes, Ids, Liquidation, Trade, Walk};

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
    /// The shortest time between two batches of frames.
    pub batch_every: Duration,
}

impl From<&SimArgs> for Config {
    fn from(a: &SimArgs) -> Self {
        Config {
            venue: a.venue,
            symbols: a.symbols,
            rate: a.rate,
            levels: a.levels,
            seed: a.seed,
            batch_every: Duration::from_micros(a.batch_us),
        }
    }
}

/// The streams of one symbol; a frame's stream id is `symbol index * KINDS + kind`. A
/// venue may serve several kinds on one stream (Bybit's `tickers` carry the touch and
/// the mark price: both are [`Kind::Touch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Depth = 0,
    AggTrade = 1,
    Trade = 2,
    Touch = 3,
    Mark = 4,
    Liquidation = 5,
}

const KINDS: usize = 6;

impl Kind {
    const ALL: [Kind; KINDS] = [
        Kind::Depth,
        Kind::AggTrade,
        Kind::Trade,
        Kind::Touch,
        Kind::Mark,
        Kind::Liquidation,
    ];
}

/// Batches a connection may fall behind before it is closed (over a second at 10 k
/// batches/s).
const BROADCAST_CAPACITY: usize = 16_384;
/// The generator's longest sleep, so that it sees a shutdown soon.
const SHUTDOWN_POLL: Duration = Duration::from_millis(10);

/// How prices and sizes are written: integer ticks/lots printed at a fixed scale.
#[derive(Debug, Clone, Copy)]
struct Scales {
    /// Decimals of the tick size (0.01 → 2).
    pub tick: u32,
    /// Decimals the venue prints prices with (Binance spot always prints 8).
    pub price: u32,
    /// Decimals of the lot size.
    pub lot: u32,
    /// Decimals the venue prints sizes with.
    pub qty: u32,
}

impl Scales {
    pub fn price(self, ticks: u64) -> Fixed {
        Fixed {
            units: ticks * 10u64.pow(self.price - self.tick),
            scale: self.price,
        }
    }

    pub fn qty(self, lots: u64) -> Fixed {
        Fixed {
            units: lots * 10u64.pow(self.qty - self.lot),
            scale: self.qty,
        }
    }

    /// Appends a price as a JSON string.
    pub fn push_price(self, out: &mut String, ticks: u64) {
        let p = self.price(ticks);
        out.push('"');
        push_decimal(out, p.units, p.scale);
        out.push('"');
    }

    /// Appends a size as a JSON string.
    pub fn push_qty(self, out: &mut String, lots: u64) {
        let q = self.qty(lots);
        out.push('"');
        push_decimal(out, q.units, q.scale);
        out.push('"');
    }

    /// Appends `[["price","size"],..]`, the level list of Binance and Bybit alike.
    pub fn push_levels(self, out: &mut String, levels: impl Iterator<Item = (u64, u64)>) {
        out.push('[');
        for (n, (p, q)) in levels.enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push('[');
            self.push_price(out, p);
            out.push(',');
            self.push_qty(out, q);
            out.push(']');
        }
        out.push(']');
    }
}

/// Where a step's frames go: the batch, with each frame's stream id and number.
struct Out<'a> {
    frames: &'a mut Vec<Frame>,
    next_index: &'a AtomicU64,
    /// The index of the symbol whose frames these are.
    symbol: usize,
}

impl Out<'_> {
    /// Publishes `text` on the symbol's stream of `kind`.
    pub fn push(&mut self, kind: Kind, text: String) {
        self.frames.push(Frame {
            stream: (self.symbol * KINDS + kind as usize) as u32,
            index: self.next_index.fetch_add(1, Relaxed),
            text: text.into(),
            deleted: false,
        });
    }
}

/// What one venue's synthetic market writes. Every method that writes frames runs
/// under the symbol's book lock, after the step it describes.
trait Format: Send + Sync {
    /// The client protocol (requests, acks, pings) of the venue's streams.
    fn protocol(&self) -> &'static dyn Protocol;

    /// The WebSocket endpoint path.
    fn endpoint(&self) -> &'static str;

    /// The stream names of symbol `i`, with the kind each serves.
    fn streams(&self, i: usize) -> Vec<(String, Kind)>;

    /// The stream name a client's subscription asks for.
    fn key_name(&self, sub: &Sub) -> String;

    /// A book delta: `changes` with their `ids`, `book` after them.
    fn depth(&self, out: &mut Out, book: &Book, changes: &Changes, ids: Ids, now: u64);

    /// One trade; `book` holds its ids.
    fn trade(&self, out: &mut Out, book: &Book, trade: &Trade, now: u64);

    /// The touch changed to `bid`, `ask` (price, lots each).
    fn touch(&self, out: &mut Out, book: &Book, bid: (u64, u64), ask: (u64, u64), now: u64);

    /// The once-a-second mark price (futures).
    fn mark(&self, out: &mut Out, book: &Book, now: u64);

    fn liquidation(&self, out: &mut Out, liquidation: &Liquidation, now: u64);

    /// The frame a client subscribing to symbol `i`'s stream of `kind` gets first
    /// (`None`: the venue sends none, the client takes every frame since it connected).
    fn snapshot(&self, i: usize, kind: Kind, book: &Book, now: u64) -> Option<String>;

    /// A REST answer other than a Binance depth snapshot (listings, server time).
    fn rest(&self, path: &str, query: &str) -> Option<String>;

    /// A Binance REST depth snapshot of `book` (venues with REST books only).
    fn depth_snapshot(&self, _api: Api, _book: &Book, _limit: usize) -> Option<String> {
        None
    }
}

/// The synthetic market: symbol books, stream table and the broadcast of frames.
pub struct Market {
    config: Config,
    walk: Walk,
    format: Box<dyn Format>,
    symbols: Vec<String>,
    books: Vec<Mutex<Book>>,
    by_symbol: HashMap<String, usize>,
    streams: HashMap<String, u32>,
    /// The number of the next frame (see the module docs).
    next_index: AtomicU64,
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
        if config.venue == SimVenue::BybitLinear && config.levels > bybit::MAX_LEVELS {
            bail!(
                "--levels must be at most {} for bybit_linear: a side grows a quarter beyond \
                 it, and the orderbook.200 topic holds 200 levels a side",
                bybit::MAX_LEVELS
            );
        }
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let symbols: Vec<String> = (0..config.symbols)
            .map(|i| match config.venue {
                SimVenue::Coinm => format!("SYN{i}USD_PERP"),
                SimVenue::Spot | SimVenue::Usdm | SimVenue::BybitLinear => format!("SYN{i}USDT"),
            })
            .collect();
        let format: Box<dyn Format> = match config.venue {
            SimVenue::BybitLinear => Box::new(bybit::Bybit::new(&symbols)),
            SimVenue::Spot => Box::new(binance::Binance::new(Api::Spot, &symbols)),
            SimVenue::Usdm => Box::new(binance::Binance::new(Api::Usdm, &symbols)),
            SimVenue::Coinm => Box::new(binance::Binance::new(Api::Coinm, &symbols)),
        };
        let mut books = Vec::with_capacity(config.symbols);
        let mut by_symbol = HashMap::new();
        let mut streams = HashMap::new();
        for (i, symbol) in symbols.iter().enumerate() {
            for (name, kind) in format.streams(i) {
                streams.insert(name, (i * KINDS + kind as usize) as u32);
            }
            by_symbol.insert(symbol.clone(), i);
            books.push(Mutex::new(walk::initial_book(&mut rng, i, config.levels)));
        }
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(Market {
            config: config.clone(),
            walk: Walk {
                levels: config.levels,
                id_jumps: config.venue != SimVenue::BybitLinear,
                liquidations: config.venue != SimVenue::Spot,
            },
            format,
            symbols,
            books,
            by_symbol,
            streams,
            next_index: AtomicU64::new(0),
            tx,
        })
    }

    /// The upper-case symbols, in index order.
    pub fn symbols(&self) -> Vec<String> {
        self.symbols.clone()
    }

    pub(crate) fn protocol(&self) -> &'static dyn Protocol {
        self.format.protocol()
    }

    pub(crate) fn endpoint(&self) -> &'static str {
        self.format.endpoint()
    }

    /// Binance's REST rules (depth snapshots, its error bodies) apply.
    pub(crate) fn is_binance(&self) -> bool {
        self.config.venue != SimVenue::BybitLinear
    }

    pub(crate) fn key_id(&self, sub: &Sub) -> Option<u32> {
        self.streams.get(&self.format.key_name(sub)).copied()
    }

    pub(crate) fn stream_count(&self) -> usize {
        self.symbols.len() * KINDS
    }

    pub(crate) fn subscribe_feed(&self) -> broadcast::Receiver<Batch> {
        self.tx.subscribe()
    }

    /// A connection subscribes to stream `key`: the first frame number it takes and
    /// the snapshot to send first (see the module docs).
    pub(crate) fn subscribe(&self, key: u32) -> (u64, Option<String>) {
        let (i, kind) = (key as usize / KINDS, Kind::ALL[key as usize % KINDS]);
        let Some(book) = self.books.get(i) else {
            return (0, None);
        };
        let book = book.lock();
        match self
            .format
            .snapshot(i, kind, &book, crate::format::now_ms())
        {
            Some(snapshot) => (self.next_index.load(Relaxed), Some(snapshot)),
            None => (0, None),
        }
    }

    /// The current book, top `limit` levels per side, as Binance's REST depth answers.
    pub(crate) fn depth(&self, api: Api, symbol: &str, limit: usize) -> Option<String> {
        let book = self.books.get(*self.by_symbol.get(symbol)?)?.lock();
        self.format.depth_snapshot(api, &book, limit)
    }

    /// Other REST endpoints: listings and server time.
    pub(crate) fn rest(&self, path: &str, query: &str) -> Option<String> {
        self.format.rest(path, query)
    }

    /// The generator: frames at the configured rate, each batch sent as soon as its
    /// first frame is due but no sooner than `batch_every` after the last, plus mark
    /// prices every second for futures, until shutdown. It runs on a thread of its own
    /// because tokio's timers tick in whole milliseconds.
    pub(crate) async fn generate(self: Arc<Self>, app: Arc<App>) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("sim-generator".into())
            .spawn(move || {
                self.generate_until_shutdown(&app);
                drop(done_tx);
            });
        match spawned {
            // Resolves (with an error) when the thread drops its end.
            Ok(_) => {
                let _ = done_rx.await;
            }
            Err(e) => tracing::error!("sim: cannot start the generator thread: {e}"),
        }
    }

    fn generate_until_shutdown(&self, app: &App) {
        let shutdown = app.shutdown.clone();
        let mut rng = SmallRng::seed_from_u64(self.config.seed.wrapping_add(1));
        let mut changes = Changes::default();
        let rate = self.config.rate;
        let max_backlog = (rate / 20).max(1);
        let marks = self.config.venue != SimVenue::Spot;
        let start = Instant::now();
        let mut next_mark = start;
        let mut last_batch: Option<Instant> = None;
        let mut produced: u64 = 0;
        loop {
            let now = Instant::now();
            let mut wake = now + SHUTDOWN_POLL;
            if rate > 0 {
                let due = start + Duration::from_secs_f64((produced + 1) as f64 / rate as f64);
                let earliest = last_batch.map_or(due, |t| due.max(t + self.config.batch_every));
                wake = wake.min(earliest);
            }
            if marks {
                wake = wake.min(next_mark);
            }
            if wake > now {
                std::thread::sleep(wake - now);
            }
            // A shutdown, or the simulator is gone.
            if shutdown.has_changed().unwrap_or(true) {
                return;
            }
            let now = Instant::now();
            let due = (now.duration_since(start).as_secs_f64() * rate as f64) as u64;
            // Cannot keep up: let the excess go rather than burst for ever after.
            produced = produced.max(due.saturating_sub(max_backlog));
            let budget = due.saturating_sub(produced) as usize;
            let mut batch = Vec::with_capacity(budget + 4);
            while batch.len() < budget {
                let i = rng.random_range(0..self.symbols.len());
                self.step(i, &mut rng, &mut changes, &app.faults, &mut batch);
            }
            produced += batch.len() as u64;
            if marks && now >= next_mark {
                next_mark += Duration::from_secs(1);
                let now_ms = crate::format::now_ms();
                for (i, book) in self.books.iter().enumerate() {
                    let book = book.lock();
                    let mut out = self.out(&mut batch, i);
                    self.format.mark(&mut out, &book, now_ms);
                }
            }
            if !batch.is_empty() {
                last_batch = Some(now);
                app.faults
                    .counters
                    .frames_sent
                    .fetch_add(batch.len() as u64, Relaxed);
                // An error only means nobody is connected right now.
                let _ = self.tx.send(Arc::new(batch));
            }
        }
    }

    fn out<'a>(&'a self, frames: &'a mut Vec<Frame>, symbol: usize) -> Out<'a> {
        Out {
            frames,
            next_index: &self.next_index,
            symbol,
        }
    }

    /// One market event on symbol `i` and its frames, faults applied.
    fn step(
        &self,
        i: usize,
        rng: &mut SmallRng,
        changes: &mut Changes,
        faults: &Faults,
        batch: &mut Vec<Frame>,
    ) {
        let mut book = self.books[i].lock();
        let now = crate::format::now_ms();
        let step = self.walk.step(&mut book, rng, changes, now);
        let symbol = &self.symbols[i];
        let endpoint = self.format.endpoint();
        let mut out = self.out(batch, i);
        if let Some(trade) = &step.trade {
            if !faults.take_trade_gap(symbol) {
                self.format.trade(&mut out, &book, trade, now);
            }
        }
        if let Some(ids) = step.ids {
            if !faults.take_gap(endpoint, symbol) {
                // Written into this frame only; the book never holds the level.
                let cross = faults.take_cross(endpoint, symbol, || crossing(&book));
                if let Some((bid, level)) = cross {
                    changes.side(bid).push(level);
                }
                self.format.depth(&mut out, &book, changes, ids, now);
                if let Some((bid, _)) = cross {
                    changes.side(bid).pop();
                }
            }
        }
        if let Some((bid, ask)) = step.touch {
            self.format.touch(&mut out, &book, bid, ask, now);
        }
        if let Some(liquidation) = &step.liquidation {
            self.format.liquidation(&mut out, liquidation, now);
        }
    }
}

/// The next 8-hourly funding time after `now` (ms): 00:00, 08:00 and 16:00 UTC, as on
/// both venues.
fn next_funding_ms(now: u64) -> u64 {
    const EIGHT_HOURS_MS: u64 = 8 * 3600 * 1000;
    (now / EIGHT_HOURS_MS + 1) * EIGHT_HOURS_MS
}

/// The level that crosses `book`: a bid (true) at the best ask, else an ask at the best
/// bid, with that level's size.
fn crossing(book: &Book) -> Option<(bool, (u64, u64))> {
    let (bid, ask) = book.touch();
    ask.map(|a| (true, a)).or(bid.map(|b| (false, b)))
}
