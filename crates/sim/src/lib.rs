//! `raven sim`: a local exchange on loopback.
//!
//! Testing connectors against real exchanges is slow, flaky and impossible offline. The
//! simulator speaks an exchange's wire protocol on one local port (HTTP and WebSocket
//! upgrade share the listener), so a connector pointed at [`Sim::rest_url`] and
//! [`Sim::ws_urls`] cannot tell the difference.
//!
//! Two sources feed it. [`replay`] plays a recorded capture of any supported venue back
//! byte for byte, on that venue's protocol (Binance, Coinbase Advanced Trade, Bybit v5,
//! OKX v5, Kraken v1: recorded REST answers, its subscribe/ack and ping exchange, frames
//! in order, several WebSocket endpoints and connections as recorded); it is the
//! reference for correctness. [`synthetic`] generates a random-walk market at a chosen
//! rate (the reference for load), in one of two venue families' protocols: Binance
//! (combined streams `GET /stream?streams=a/b/c`, `SUBSCRIBE`/`UNSUBSCRIBE`/
//! `LIST_SUBSCRIPTIONS`, REST depth and `exchangeInfo` for spot `/api/v3`, USD-M
//! `/fapi/v1` and COIN-M `/dapi/v1`) or Bybit v5 linear (`/v5/public/linear` with
//! in-stream book snapshots, `instruments-info`). Both share [`control`]: fault
//! injection (drops, stalls, rate limits, deleted book deltas and trades, corrupted
//! checksums, malformed frames, crossed books) and statistics, in process and over
//! `POST /sim/fault` / `GET /sim/stats`.

pub mod capture;
pub mod control;
mod format;
pub mod replay;
mod server;
pub mod synthetic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use control::{Faults, Stats};

/// The flags of the `raven sim` subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to serve HTTP and WebSocket on (one listener for both). Port 0 picks a
    /// free port; the chosen URLs are printed at start.
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub listen: SocketAddr,

    /// Replay this capture file (JSONL, optionally zstd-compressed) instead of
    /// generating a synthetic market. REST answers come from its recorded `http` lines
    /// and WebSocket frames from its `recv` lines, in recorded order.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// Replay speed: 0 sends frames as fast as the clients read them, 1 at the recorded
    /// pace, 2 twice as fast, and so on. Replay mode only.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub speed: f64,

    /// Number of synthetic symbols (SYN0USDT, SYN1USDT, ...; COIN-M: SYN0USD_PERP, ...).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub symbols: usize,

    /// Synthetic messages per second, all symbols and streams together (depth diffs,
    /// trades, book tickers). Mark prices (futures, 1 per symbol per second) come on top.
    #[arg(long, value_name = "MSGS_PER_S", default_value_t = 1000)]
    pub rate: u64,

    /// Synthetic market: Binance spot, or USD-M / COIN-M futures, which add `pu` to
    /// depth diffs and publish `@markPrice@1s` and `@forceOrder` streams; or Bybit v5
    /// linear (`/v5/public/linear`: `orderbook.200`, `publicTrade`, `tickers`,
    /// `allLiquidation`; at most 160 `--levels`).
    #[arg(long, value_enum, default_value_t = SimVenue::Spot)]
    pub venue: SimVenue,

    /// Synthetic book depth: about this many price levels per side.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub levels: usize,

    /// Seed of the synthetic market's random walk; the same seed and rate give the same
    /// sequence of updates.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Synthetic mode: the shortest time between two batches of frames, in
    /// microseconds. Frames go out as they fall due, so a fast market is a steady
    /// stream of small batches, as a venue's feed is; 1000 makes millisecond bursts.
    #[arg(long, value_name = "MICROS", default_value_t = 100)]
    pub batch_us: u64,

    /// Seconds between the WebSocket pings the simulator sends on every connection.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub ping_secs: u64,

    /// Replay mode: the replay starts once clients hold every subscription the
    /// recording made before its first frame, or this many seconds after the first
    /// subscription when they want fewer.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub start_grace: f64,
}

impl Default for SimArgs {
    /// The defaults of the command line, listening on a free loopback port.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            replay: None,
            speed: 0.0,
            symbols: 4,
            rate: 1000,
            venue: SimVenue::Spot,
            levels: 100,
            seed: 1,
            batch_us: 100,
            ping_secs: 20,
            start_grace: 1.0,
        }
    }
}

/// Which market the synthetic mode imitates: a Binance market, or Bybit's linear
/// contracts (named as Raven names the venue).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimVenue {
    /// Binance spot (`/api/v3`, streams on `/stream`).
    Spot,
    /// Binance USD-M futures (`/fapi/v1`).
    Usdm,
    /// Binance COIN-M futures (`/dapi/v1`).
    Coinm,
    /// Bybit v5 linear perpetuals (`/v5/public/linear`, `/v5/market/...`).
    #[value(name = "bybit_linear")]
    BybitLinear,
}

/// Where frames and REST answers come from.
pub(crate) enum Source {
    Replay(Arc<replay::Replay>),
    Synthetic(Arc<synthetic::Market>),
}

/// Everything the HTTP handlers and connection tasks share.
pub(crate) struct App {
    pub source: Source,
    pub faults: Faults,
    pub shutdown: watch::Receiver<bool>,
    pub ping_every: Duration,
}

/// A running simulator.
pub struct Sim {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Loads or builds the market, binds the listener and spawns the server and the
    /// frame producer. Returns once the port accepts connections.
    pub async fn start(args: SimArgs) -> anyhow::Result<Sim> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (source, producer, faults) = match &args.replay {
            Some(path) => {
                let grace = Duration::try_from_secs_f64(args.start_grace)
                    .with_context(|| format!("--start-grace {}", args.start_grace))?;
                let r = Arc::new(replay::Replay::load(path, args.speed, grace)?);
                let faults = Faults::new(r.exchange(), r.protocol().has_checksum());
                (
                    Source::Replay(r.clone()),
                    server::Producer::Replay(r),
                    faults,
                )
            }
            None => {
                let m = Arc::new(synthetic::Market::new(&synthetic::Config::from(&args))?);
                let faults = Faults::default();
                (
                    Source::Synthetic(m.clone()),
                    server::Producer::Synthetic(m),
                    faults,
                )
            }
        };
        let app = Arc::new(App {
            source,
            faults,
            shutdown: shutdown_rx,
            ping_every: Duration::from_secs(args.ping_secs.max(1)),
        });
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let tasks = vec![
            tokio::spawn(server::serve(listener, app.clone())),
            tokio::spawn(producer.run(app.clone())),
        ];
        Ok(Sim {
            addr,
            app,
            shutdown: shutdown_tx,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://IP:PORT`, the base of every WebSocket endpoint: Binance's combined
    /// streams live at `{ws_url}/stream?streams=...`, a replayed venue's endpoints at
    /// their recorded paths (see [`Sim::ws_urls`]).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The WebSocket endpoint paths served (`/stream`; a replay's recorded paths such
    /// as `/v5/public/linear`, `/ws/v5/public` or `/`), in order of first connect.
    pub fn endpoints(&self) -> Vec<String> {
        self.app.source.endpoints()
    }

    /// The full URL of every WebSocket endpoint, `ws://IP:PORT/path` (the root path
    /// without its slash, as exchanges print `wss://ws.kraken.com`).
    pub fn ws_urls(&self) -> Vec<String> {
        self.endpoints()
            .iter()
            .map(|p| self.ws_url_for(p))
            .collect()
    }

    /// The `ws_url` a Raven venue is configured with to reach this simulator: the base
    /// URL for Binance, whose connector adds `/stream?streams=...` itself, and the
    /// endpoint's full URL for the other venues, which connect to the URL they are
    /// given. `None` when a replay serves several endpoints (Bybit's spot and linear):
    /// then [`Sim::ws_url_for`] the one the venue uses.
    pub fn venue_ws_url(&self) -> Option<String> {
        if self.app.source.is_binance() {
            return Some(self.ws_url());
        }
        match self.endpoints().as_slice() {
            [one] => Some(self.ws_url_for(one)),
            _ => None,
        }
    }

    /// The full URL of one endpoint path.
    pub fn ws_url_for(&self, path: &str) -> String {
        match path {
            "/" => self.ws_url(),
            p => format!("{}{p}", self.ws_url()),
        }
    }

    /// The venue served: the capture's `exchange` (`BINANCE`, `BYBIT`, `OKX`, ...) or
    /// `synthetic`.
    pub fn venue(&self) -> String {
        match &self.app.source {
            Source::Replay(r) => r.exchange().to_owned(),
            Source::Synthetic(_) => "synthetic".to_owned(),
        }
    }

    /// Replay mode: the simulator's own book behind (endpoint path, channel, symbol),
    /// as the venue spells them (`"/ws/v5/public", "books", "BTC-USDT"`): the recorded
    /// snapshot plus every delta played so far, at the venue's depth. `None` before its
    /// snapshot played, for unknown books, in synthetic mode, and when the recorded
    /// prices cannot make a Raven book.
    pub fn book(
        &self,
        path: &str,
        channel: &str,
        symbol: &str,
    ) -> Option<raven_model::book::OrderBook> {
        match &self.app.source {
            Source::Replay(r) => r.book(path, channel, symbol),
            Source::Synthetic(_) => None,
        }
    }

    /// `http://IP:PORT`; e.g. `{rest_url}/api/v3/depth?symbol=SYN0USDT`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The symbols this simulator serves (Binance and synthetic: upper-case; other
    /// venues as they spell them, `BTC-USDT`, `XBT/EUR`).
    pub fn symbols(&self) -> Vec<String> {
        match &self.app.source {
            Source::Replay(r) => r.symbols(),
            Source::Synthetic(m) => m.symbols(),
        }
    }

    /// In-process fault injection and statistics.
    pub fn faults(&self) -> &Faults {
        &self.app.faults
    }

    /// What the simulator has done so far (same as `GET /sim/stats`).
    pub fn stats(&self) -> Stats {
        self.app.faults.stats()
    }

    /// Frames published to connections so far.
    pub fn frames_sent(&self) -> u64 {
        self.stats().frames_sent
    }

    /// Replay mode: waits until the last recorded frame has been handed to the
    /// connections, then returns true. Synthetic mode never finishes: returns false at once.
    pub async fn replay_finished(&self) -> bool {
        match &self.app.source {
            Source::Replay(r) => {
                r.finished().await;
                true
            }
            Source::Synthetic(_) => false,
        }
    }

    /// Stops the producer, closes every connection and the listener.
    pub async fn shutdown(self) {
        // Receivers live in `self.app`, so the send cannot fail while `self` exists.
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("sim task did not stop within 5 s");
            }
        }
    }
}

/// The `raven sim` command: start, print the URLs, run until ctrl-c.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let sim = Sim::start(args).await?;
    println!(
        "raven sim listening on {} ({})",
        sim.local_addr(),
        sim.venue()
    );
    println!("  REST:      {}", sim.rest_url());
    if sim.endpoints() == ["/stream"] {
        println!("  WebSocket: {}/stream?streams=...", sim.ws_url());
    } else {
        for url in sim.ws_urls() {
            println!("  WebSocket: {url}");
        }
    }
    println!("  symbols:   {}", sim.symbols().join(","));
    println!(
        "  control:   POST {0}/sim/fault, GET {0}/sim/stats",
        sim.rest_url()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn command_line_defaults_and_flags() {
        // clap's own consistency checks of the derived command.
        <Cli as clap::CommandFactory>::command().debug_assert();
        let d = Cli::parse_from(["raven-sim"]).sim;
        assert_eq!(d.listen, SocketAddr::from(([127, 0, 0, 1], 9443)));
        assert_eq!(
            (d.symbols, d.rate, d.levels, d.venue),
            (4, 1000, 100, SimVenue::Spot)
        );
        assert!(d.replay.is_none());
        let a = Cli::parse_from([
            "raven-sim",
            "--listen",
            "127.0.0.1:0",
            "--replay",
            "x.jsonl.zst",
            "--speed",
            "1",
            "--venue",
            "coinm",
            "--symbols",
            "9",
            "--rate",
            "200000",
            "--levels",
            "20",
            "--seed",
            "3",
            "--start-grace",
            "0.5",
        ])
        .sim;
        assert_eq!((d.start_grace, a.start_grace), (1.0, 0.5));
        let b = Cli::parse_from(["raven-sim", "--venue", "bybit_linear"]).sim;
        assert_eq!(b.venue, SimVenue::BybitLinear);
        assert_eq!(a.replay, Some(PathBuf::from("x.jsonl.zst")));
        assert_eq!(
            (a.speed, a.venue, a.symbols, a.rate),
            (1.0, SimVenue::Coinm, 9, 200_000)
        );
    }
}
