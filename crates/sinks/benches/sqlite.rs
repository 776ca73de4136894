//! What the embedded SQLite store sustains, through its public entry points:
//!
//! - **write**: records from the store's channel to committed rows (`run` until it
//!   returns: batches of 5000, one transaction each, WAL, `synchronous=NORMAL`), a mix
//!   of 70 % trades and 30 % BBO over 20 instruments, into a fresh file each sample;
//! - **read**: `GetHistory`'s range read — one instrument, a window of 10 000 trades,
//!   decoded back to exact values — from a file holding 1 000 000 trades.
//!
//! `cargo bench -p raven-sinks --bench sqlite`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raven_hub::{Channel, Record};
use raven_model::{
    Bbo, EventKind, InstrumentId, MarketEvent, Price, Qty, Side, Trade, UnixNanos, Venue,
};
use raven_sinks::health::StoreHealth;
use raven_sinks::history::{HistoryQuery, HistoryStore};
use raven_sinks::sqlite::{open, SqliteConfig, SqliteHistory};
use tokio::sync::mpsc;

/// The store's task, owning its tap (the store borrows it, so that a supervisor can
/// restart a failed store on the same tap).
async fn run(
    config: SqliteConfig,
    mut records: tokio::sync::mpsc::Receiver<raven_hub::Record>,
    health: std::sync::Arc<raven_sinks::health::StoreHealth>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    raven_sinks::sqlite::run(config, &mut records, health, stop).await
}

/// 2024-01-01T00:00:00Z in nanoseconds.
const T0: u64 = 1_704_067_200_000_000_000;
const INSTRUMENTS: u64 = 20;

fn instrument(i: u64) -> InstrumentId {
    InstrumentId::new(
        Venue::new("binance_spot").unwrap(),
        &format!("SYM{i:02}USDT"),
    )
}

/// The n-th record: trades and BBO, round-robin over the instruments, 50 µs apart
/// per instrument.
fn record(n: u64) -> Record {
    let at = T0 + (n / INSTRUMENTS) * 50_000;
    let price = Price::parse(&format!("43{:03}.{:08}", n % 1000, n % 99_999_999)).unwrap();
    let qty = Qty::parse("0.00120000").unwrap();
    let kind = if n % 10 < 7 {
        EventKind::Trade(Trade {
            price,
            qty,
            aggressor: if n.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            trade_id: raven_model::TradeId::Number(n),
            ordinal: 0,
        })
    } else {
        EventKind::Bbo(Bbo {
            bid_price: price,
            bid_qty: qty,
            ask_price: price,
            ask_qty: qty,
            update_id: n,
        })
    };
    Record::Event(MarketEvent {
        instrument: instrument(n % INSTRUMENTS),
        exchange_time: UnixNanos(at),
        receive_time: UnixNanos(at + 700_000),
        kind,
    })
}

fn config(dir: &std::path::Path) -> SqliteConfig {
    let mut c = SqliteConfig::new(dir.join("history.sqlite"));
    c.retention = None;
    c
}

/// Writes `records` through the store and returns how long until all were committed.
fn write(rt: &tokio::runtime::Runtime, config: SqliteConfig, records: Vec<Record>) -> Duration {
    open(&config.path).expect("open");
    rt.block_on(async {
        let (tx, rx) = mpsc::channel(records.len());
        for r in records {
            tx.try_send(r).expect("queue");
        }
        drop(tx);
        let started = Instant::now();
        run(
            config,
            rx,
            StoreHealth::new("sqlite"),
            std::future::pending(),
        )
        .await;
        started.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("sqlite");
    group.sample_size(10);

    const WRITE: u64 = 200_000;
    group.throughput(Throughput::Elements(WRITE));
    group.bench_function(BenchmarkId::new("write", "trades+bbo"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let dir = tempfile::tempdir().expect("tempdir");
                    write(&rt, config(dir.path()), (0..WRITE).map(record).collect())
                })
                .sum()
        })
    });

    // 1 000 000 trades (the `record` mix minus BBO is uneven, so write trades only).
    let dir = tempfile::tempdir().expect("tempdir");
    let trades: Vec<Record> = (0..1_430_000)
        .map(record)
        .filter(|r| matches!(r, Record::Event(e) if matches!(e.kind, EventKind::Trade(_))))
        .take(1_000_000)
        .collect();
    write(&rt, config(dir.path()), trades);
    let history = SqliteHistory::new(dir.path().join("history.sqlite"));
    const WINDOW: u64 = 10_000;
    group.throughput(Throughput::Elements(WINDOW));
    group.bench_function(
        BenchmarkId::new("read", "10k trades of one instrument"),
        |b| {
            let mut k = 0u64;
            b.iter(|| {
                k = (k + 1) % 4;
                // Each instrument holds 50 000 trades, ~71 µs apart on average.
                let start = T0 + k * WINDOW * 71_000;
                let rows = rt.block_on(async {
                    let mut pages = history.query(HistoryQuery {
                        instrument: instrument(3),
                        channel: Channel::Trades,
                        start: UnixNanos(start),
                        end: UnixNanos(u64::MAX),
                        limit: WINDOW as usize,
                    });
                    let mut n = 0;
                    while let Some(page) = pages.recv().await {
                        n += page.expect("page").len();
                    }
                    n
                });
                assert_eq!(rows, WINDOW as usize);
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
