//! What the InfluxDB store sustains against a real local `influxd` (Debian's
//! `influxdb` 1.6.x at /usr/bin/influxd, or `$INFLUXD`), started here in a temp dir.
//!
//! Criterion's repeat-the-closure model does not fit a measurement whose cost is
//! mostly in another process that accumulates state, so this is a plain program
//! (`harness = false`) that prints its numbers:
//!
//! - **write**: points/s from the store's channel into InfluxDB with 5000-point
//!   batches, gzip off and on (alternating rounds, a fresh influxd each), timed until
//!   InfluxDB counts every point;
//! - **gzip**: what compression does to the exact bytes the store sends (a spill file
//!   is the wire body): ratio and single-core speed at the fast and default levels;
//! - **drain**: points spilled to disk while InfluxDB is down (memory limit 0), then
//!   how fast a store started after InfluxDB is back replays them, timed until the last
//!   spill file is deleted (InfluxDB acknowledged it). That is the loop a running store
//!   drains with after an outage, minus the wait for its next retry (at most 5 s).
//!
//! `cargo bench -p raven-sinks --bench influx` (`POINTS=n` changes the 300 000 points
//! per round).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use raven_hub::Record;
use raven_model::{
    Bbo, EventKind, InstrumentId, MarketEvent, Price, Qty, Side, Trade, UnixNanos, Venue,
};
use raven_sinks::health::StoreHealth;
use raven_sinks::influx::InfluxConfig;
use tokio::sync::mpsc;

/// 2024-01-01T00:00:00Z in nanoseconds.
const T0: u64 = 1_704_067_200_000_000_000;
const SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"];
const ROUNDS: usize = 3;

// The store tests' server harness: a real influxd in a temp dir, killed on drop.
#[path = "../tests/support/influxd.rs"]
mod influxd;

use influxd::Influxd;

/// The store's task, owning its tap (the store borrows it, so that a supervisor can
/// restart a failed store on the same tap).
async fn run(
    config: InfluxConfig,
    mut records: tokio::sync::mpsc::Receiver<raven_hub::Record>,
    health: std::sync::Arc<raven_sinks::health::StoreHealth>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    raven_sinks::influx::run(config, &mut records, health, stop).await
}

impl Influxd {
    /// Points of `db` (trades and BBOs), 0 while the database does not exist.
    async fn count(&self, db: &str) -> u64 {
        let mut total = 0;
        for (measurement, field) in [("trades", "trade_id"), ("bbo", "update_id")] {
            let url = reqwest::Url::parse_with_params(
                &format!("{}/query", self.url()),
                [
                    ("db", db),
                    ("q", &format!("SELECT count({field}) FROM {measurement}")),
                ],
            )
            .expect("query url");
            let Ok(response) = self.http.get(url).send().await else {
                return 0;
            };
            let text = response.text().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            total += body["results"][0]["series"][0]["values"][0][1]
                .as_u64()
                .unwrap_or(0);
        }
        total
    }
}

/// `n` market events, half trades and half BBOs over four symbols, one millisecond
/// apart per symbol, with field values shaped like Binance spot's.
fn records(n: usize) -> Vec<Record> {
    (0..n as u64)
        .map(|i| {
            let symbol = SYMBOLS[(i % 4) as usize];
            let step = i / 8;
            let cents = 4_200_000 + (i * 7919) % 10_000;
            let price = |c: u64| Price::parse(&format!("{}.{:02}000000", c / 100, c % 100));
            let qty = |q: u64| Qty::parse(&format!("0.{q:08}"));
            let kind = if i % 8 < 4 {
                EventKind::Trade(Trade {
                    price: price(cents).expect("price"),
                    qty: qty(1 + (i * 31) % 99_999_999).expect("qty"),
                    aggressor: if i.is_multiple_of(3) {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    trade_id: raven_model::TradeId::Number(3_000_000_000 + step),
                    ordinal: 0,
                })
            } else {
                EventKind::Bbo(Bbo {
                    bid_price: price(cents).expect("price"),
                    bid_qty: qty(1 + (i * 37) % 99_999_999).expect("qty"),
                    ask_price: price(cents + 1).expect("price"),
                    ask_qty: qty(1 + (i * 41) % 99_999_999).expect("qty"),
                    update_id: 50_000_000_000 + step,
                })
            };
            let at = T0 + step * 1_000_000;
            Record::Event(MarketEvent {
                instrument: InstrumentId::new(Venue::new("binance_spot").unwrap(), symbol),
                exchange_time: UnixNanos(at),
                receive_time: UnixNanos(at + 1_500_000),
                kind,
            })
        })
        .collect()
}

fn config(url: &str, db: &str, data_dir: &Path, gzip: bool) -> InfluxConfig {
    let mut c = InfluxConfig::new(url, db, data_dir.to_owned());
    c.batch_size = 5000;
    c.batch_interval = Duration::from_millis(100);
    // Nothing may reach the spill in the write benchmark: it measures the network path.
    c.memory_limit_points = usize::MAX;
    c.gzip = gzip;
    c
}

/// Spill files in `dir`: how many, their points and bytes.
fn spill(dir: &Path) -> (usize, usize, Vec<u8>) {
    let mut files = 0;
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("spill-") {
            files += 1;
            bytes.extend(std::fs::read(e.path()).unwrap_or_default());
        }
    }
    let points = bytes.iter().filter(|&&b| b == b'\n').count();
    (files, points, bytes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One write round: the time until InfluxDB counts all of `batch`.
async fn write_round(influx: &Influxd, db: &str, gzip: bool, batch: Vec<Record>) -> Duration {
    let data = tempfile::tempdir().expect("tempdir");
    let n = batch.len() as u64;
    let (tx, rx) = mpsc::channel(65_536);
    let started = Instant::now();
    let store = tokio::spawn(run(
        config(&influx.url(), db, data.path(), gzip),
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));
    for r in batch {
        tx.send(r).await.expect("store running");
    }
    while influx.count(db).await < n {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{db}: points missing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    drop(tx);
    store.await.expect("store");
    assert_eq!(influx.count(db).await, n, "{db}: every point exactly once");
    elapsed
}

async fn write_benchmark(n: usize) {
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // Alternating which goes first, each on a fresh influxd: one that already holds
        // earlier rounds' points ingests more slowly (compactions), which would favour
        // whichever setting ran first.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for gzip in order {
            let mut influx = Influxd::new();
            influx.start_within(Duration::from_secs(30)).await;
            let took = write_round(&influx, "write", gzip, records(n)).await;
            let rate = n as f64 / took.as_secs_f64();
            println!(
                "write  gzip {:<3}  round {round}: {n} points in {:>6.2} s = {:>7.0} points/s",
                if gzip { "on" } else { "off" },
                took.as_secs_f64(),
                rate
            );
            rates[usize::from(gzip)].push(rate);
        }
    }
    println!(
        "write  median of {ROUNDS}: gzip off {:.0} points/s, gzip on {:.0} points/s",
        median(rates[0].clone()),
        median(rates[1].clone())
    );
}

/// Ratio and single-core speed of gzip on `body` at `level`.
fn gzip_stats(body: &[u8], level: flate2::Compression) -> (f64, f64) {
    let started = Instant::now();
    let mut out = 0;
    for chunk in body.chunks(1 << 20) {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
        e.write_all(chunk).expect("compress");
        out += e.finish().expect("compress").len();
    }
    let secs = started.elapsed().as_secs_f64();
    (
        body.len() as f64 / out as f64,
        body.len() as f64 / secs / 1e6,
    )
}

async fn drain_benchmark(n: usize) {
    for round in 0..ROUNDS {
        let mut influx = Influxd::new();
        let data = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(&influx.url(), "drain", data.path(), true);
        cfg.memory_limit_points = 0;

        // InfluxDB down: every sealed batch goes straight to disk.
        let (tx, rx) = mpsc::channel(65_536);
        let started = Instant::now();
        let store = tokio::spawn(run(
            cfg.clone(),
            rx,
            StoreHealth::new("influxdb"),
            std::future::pending(),
        ));
        for r in records(n) {
            tx.send(r).await.expect("store running");
        }
        while spill(data.path()).1 < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let spilled_in = started.elapsed();
        drop(tx);
        store.await.expect("store");
        let (files, points, bytes) = spill(data.path());
        assert_eq!(points, n, "every point spilled");
        if round == 0 {
            for (name, level) in [
                ("fast", flate2::Compression::fast()),
                ("default", flate2::Compression::default()),
            ] {
                let (ratio, speed) = gzip_stats(&bytes, level);
                println!(
                    "gzip   level {name:<7}: {:.1} MB of line protocol ({:.0} B/point) shrinks {ratio:.1}x at {speed:.0} MB/s on one core",
                    bytes.len() as f64 / 1e6,
                    bytes.len() as f64 / n as f64
                );
            }
        }

        // InfluxDB back: a new store replays the spill.
        influx.start_within(Duration::from_secs(30)).await;
        let (tx, rx) = mpsc::channel(1);
        let started = Instant::now();
        let store = tokio::spawn(run(
            cfg,
            rx,
            StoreHealth::new("influxdb"),
            std::future::pending(),
        ));
        while spill(data.path()).0 > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "spill not drained"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained_in = started.elapsed();
        drop(tx);
        store.await.expect("store");
        assert_eq!(
            influx.count("drain").await,
            n as u64,
            "every point exactly once"
        );
        println!(
            "drain  round {round}: {n} points spilled in {} files at {:.0} points/s, drained at {:.0} points/s ({:.2} s)",
            files,
            n as f64 / spilled_in.as_secs_f64(),
            n as f64 / drained_in.as_secs_f64(),
            drained_in.as_secs_f64()
        );
    }
}

fn main() {
    let n = std::env::var("POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    // `cargo bench` passes `--bench`; a filter argument picks one part.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if wanted("write") {
            write_benchmark(n).await;
        }
        if wanted("drain") {
            drain_benchmark(n).await;
        }
    });
}
