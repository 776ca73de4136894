//! The embedded SQLite history store: what goes in through the tap comes back through
//! the history query exactly, same-millisecond events all survive, a replayed batch
//! does not duplicate, retention deletes old rows and gives the space back, and the
//! file is plain SQL for any SQLite tool.

use std::path::Path;
use std::time::Duration;

use raven_hub::{Channel, Record};
use raven_model::candle::{Candle, CandleInterval};
use raven_model::{
    Bbo, BookLevels, EventKind, InstrumentId, Level, Liquidation, MarkPrice, MarketEvent, Price,
    Qty, Side, Trade, UnixNanos, Venue,
};
use raven_sinks::health::StoreHealth;
use raven_sinks::history::{HistoryItem, HistoryQuery, HistoryRow, HistoryStore};
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

fn id() -> InstrumentId {
    InstrumentId::new(Venue::new("binance_usdm").unwrap(), "BTCUSDT")
}

fn event(at: u64, kind: EventKind) -> Record {
    Record::Event(MarketEvent {
        instrument: id(),
        exchange_time: UnixNanos(at),
        receive_time: UnixNanos(at + 1_234_567),
        kind,
    })
}

fn trade(at: u64, trade_id: u64, price: &str) -> Record {
    event(
        at,
        EventKind::Trade(Trade {
            price: Price::parse(price).unwrap(),
            qty: Qty::parse("0.00100000").unwrap(),
            aggressor: if trade_id.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            trade_id: raven_model::TradeId::Number(trade_id),
            ordinal: 0,
        }),
    )
}

fn now_ms() -> u64 {
    let now = UnixNanos::now().as_nanos();
    now - now % 1_000_000
}

/// Runs the store over `records` until they are committed and the store has stopped.
async fn store(config: SqliteConfig, records: Vec<Record>) {
    open(&config.path).expect("open");
    let (tx, rx) = mpsc::channel(records.len().max(1));
    for r in records {
        tx.send(r).await.expect("queue");
    }
    drop(tx);
    tokio::time::timeout(
        Duration::from_secs(30),
        run(
            config,
            rx,
            StoreHealth::new("sqlite"),
            std::future::pending(),
        ),
    )
    .await
    .expect("the store finishes");
}

async fn read(path: &Path, channel: Channel, limit: usize) -> Vec<HistoryRow> {
    let mut pages = SqliteHistory::new(path.to_owned()).query(HistoryQuery {
        instrument: id(),
        channel,
        start: UnixNanos(0),
        end: UnixNanos(u64::MAX),
        limit,
    });
    let mut rows = Vec::new();
    while let Some(page) = pages.recv().await {
        rows.extend(page.expect("page"));
    }
    rows
}

fn config(dir: &Path) -> SqliteConfig {
    let mut c = SqliteConfig::new(dir.join("history.sqlite"));
    c.batch_size = 1000;
    c.batch_interval = Duration::from_millis(10);
    c
}

#[tokio::test]
async fn every_kind_round_trips_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = now_ms();
    // 3000 trades in one millisecond: each keeps its own row.
    let mut records: Vec<Record> = (0..3000)
        .map(|i| trade(t0, 500_000 + i, "43251.12000000"))
        .collect();
    let bbo = Bbo {
        bid_price: Price::parse("0.35210000").unwrap(),
        bid_qty: Qty::parse("12.5").unwrap(),
        ask_price: Price::parse("0.35220000").unwrap(),
        ask_qty: Qty::parse("0").unwrap(),
        update_id: 77,
    };
    records.push(event(t0, EventKind::Bbo(bbo.clone())));
    let funding = MarkPrice {
        mark_price: Price::parse("43250.00000000").unwrap(),
        index_price: None,
        funding_rate: "-0.00012345".parse().unwrap(),
        next_funding_time: UnixNanos(t0 + 3_600_000_000_000),
    };
    records.push(event(t0, EventKind::MarkPrice(funding.clone())));
    // Two liquidations, opposite sides, same millisecond: both kept.
    for side in [Side::Buy, Side::Sell] {
        records.push(event(
            t0,
            EventKind::Liquidation(Liquidation {
                side,
                price: Price::parse("43000.1").unwrap(),
                qty: Qty::parse("2.000").unwrap(),
            }),
        ));
    }
    let candle = Candle {
        interval: CandleInterval::M5,
        open_time: UnixNanos(t0 - t0 % 300_000_000_000),
        close_time: UnixNanos(t0 - t0 % 300_000_000_000 + 300_000_000_000),
        open: Price::parse("1.10").unwrap(),
        high: Price::parse("1.30").unwrap(),
        low: Price::parse("1.05").unwrap(),
        close: Price::parse("1.20").unwrap(),
        volume: Qty::parse("1234.5678").unwrap(),
        trade_count: 42,
        // Built across a hole in the feed: the flag must survive the store.
        incomplete: true,
    };
    for closed in [false, true] {
        records.push(Record::Candle {
            instrument: id(),
            candle: candle.clone(),
            closed,
        });
    }
    records.push(Record::Book {
        instrument: id(),
        levels: BookLevels {
            bids: vec![Level {
                price: Price::parse("1.5").unwrap(),
                qty: Qty::parse("3").unwrap(),
            }],
            asks: vec![],
            first_update_id: 1,
            last_update_id: 9,
        },
        exchange_time: UnixNanos(t0),
        receive_time: UnixNanos(t0 + 5),
    });
    store(config(dir.path()), records).await;
    let path = dir.path().join("history.sqlite");

    let trades = read(&path, Channel::Trades, 1_000_000).await;
    assert_eq!(trades.len(), 3000);
    for (i, row) in trades.iter().enumerate() {
        let want = trade(t0, 500_000 + i as u64, "43251.12000000");
        let Record::Event(e) = want else {
            unreachable!()
        };
        assert_eq!(row.time, UnixNanos(t0 + 500_000 + i as u64));
        assert_eq!(
            (row.exchange_time, row.receive_time),
            (e.exchange_time, e.receive_time)
        );
        assert_eq!(row.item, HistoryItem::Event(e.kind));
    }
    let HistoryItem::Event(EventKind::Trade(t)) = &trades[0].item else {
        panic!()
    };
    assert_eq!(
        (t.price.to_string(), t.qty.to_string()),
        ("43251.12000000".to_owned(), "0.00100000".to_owned())
    );

    let bbos = read(&path, Channel::Bbo, 10).await;
    assert_eq!(bbos.len(), 1);
    assert_eq!(bbos[0].item, HistoryItem::Event(EventKind::Bbo(bbo)));
    let fundings = read(&path, Channel::Funding, 10).await;
    assert_eq!(
        fundings[0].item,
        HistoryItem::Event(EventKind::MarkPrice(funding))
    );
    let HistoryItem::Event(EventKind::MarkPrice(m)) = &fundings[0].item else {
        panic!()
    };
    assert_eq!(m.funding_rate.to_string(), "-0.00012345");
    assert_eq!(read(&path, Channel::Liquidations, 10).await.len(), 2);
    let candles = read(&path, Channel::Candles(CandleInterval::M5), 10).await;
    assert_eq!(candles.len(), 1, "the open candle is not stored");
    assert_eq!(candles[0].item, HistoryItem::Candle(candle));
    assert!(read(&path, Channel::Candles(CandleInterval::M1), 10)
        .await
        .is_empty());

    // A limit is a limit, across pages too.
    assert_eq!(read(&path, Channel::Trades, 7).await.len(), 7);
    assert_eq!(read(&path, Channel::Trades, 2500).await.len(), 2500);
}

#[tokio::test]
async fn a_replayed_batch_overwrites_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = now_ms();
    let batch: Vec<Record> = (0..100).map(|i| trade(t0 + i * 1000, i, "2.5")).collect();
    store(config(dir.path()), batch.clone()).await;
    store(config(dir.path()), batch).await;
    let path = dir.path().join("history.sqlite");
    assert_eq!(read(&path, Channel::Trades, 1000).await.len(), 100);
}

#[tokio::test]
async fn retention_deletes_old_rows_and_returns_the_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    let two_hours_ago = now - 2 * 3600 * 1_000_000_000;
    let mut cfg = config(dir.path());
    cfg.retention = None;
    let old: Vec<Record> = (0..50_000)
        .map(|i| trade(two_hours_ago + i * 1000, i, "100.01"))
        .collect();
    store(cfg.clone(), old).await;
    let path = dir.path().join("history.sqlite");
    let size_full = std::fs::metadata(&path).expect("db").len();

    cfg.retention = Some(Duration::from_secs(3600));
    let fresh: Vec<Record> = (0..10)
        .map(|i| trade(now + i * 1000, 1_000_000 + i, "100.02"))
        .collect();
    store(cfg, fresh).await;
    let trades = read(&path, Channel::Trades, 1_000_000).await;
    assert_eq!(trades.len(), 10, "only the last hour is kept");
    assert!(trades.iter().all(|r| r.time.0 >= now));
    let size_pruned = std::fs::metadata(&path).expect("db").len();
    assert!(
        size_pruned < size_full / 2,
        "freed pages go back to the file system: {size_full} -> {size_pruned} bytes"
    );
}

/// A file written by the first schema (no candle flag) is migrated in place: its
/// candles read back as complete, new ones keep their flag.
#[tokio::test]
async fn a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE candles (
                venue TEXT NOT NULL, symbol TEXT NOT NULL, interval TEXT NOT NULL,
                open_time_ns INTEGER NOT NULL, close_time_ns INTEGER NOT NULL,
                open TEXT NOT NULL, high TEXT NOT NULL, low TEXT NOT NULL, close TEXT NOT NULL,
                volume TEXT NOT NULL, trade_count INTEGER NOT NULL,
                PRIMARY KEY (venue, symbol, interval, open_time_ns)) WITHOUT ROWID;
             INSERT INTO candles VALUES ('binance_usdm', 'BTCUSDT', '1m', 60000000000,
                120000000000, '1', '2', '1', '2', '3', 4);
             PRAGMA user_version = 1;",
        )
        .expect("a version 1 file");
    }
    let at = now_ms() - now_ms() % 60_000_000_000;
    let candle = Candle {
        interval: CandleInterval::M1,
        open_time: UnixNanos(at),
        close_time: UnixNanos(at + 60_000_000_000),
        open: Price::parse("1").unwrap(),
        high: Price::parse("1").unwrap(),
        low: Price::parse("1").unwrap(),
        close: Price::parse("1").unwrap(),
        volume: Qty::parse("1").unwrap(),
        trade_count: 1,
        incomplete: true,
    };
    let mut cfg = config(dir.path());
    cfg.retention = None;
    store(
        cfg,
        vec![Record::Candle {
            instrument: id(),
            candle,
            closed: true,
        }],
    )
    .await;
    let candles = read(&path, Channel::Candles(CandleInterval::M1), 10).await;
    let flags: Vec<bool> = candles
        .iter()
        .map(|r| match &r.item {
            HistoryItem::Candle(c) => c.incomplete,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(flags, [false, true]);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
}

/// A version 2 file (trades without the id's text) is migrated: its numbered trades
/// read back as numbers, and trades without numbers (Kraken's none, Bybit's text)
/// round-trip, each under its own key, and a replay overwrites rather than duplicates.
#[tokio::test]
async fn trades_of_any_id_form_round_trip_and_a_version_2_file_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.sqlite");
    let t0 = now_ms();
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE trades (
                venue TEXT NOT NULL, symbol TEXT NOT NULL, time_ns INTEGER NOT NULL,
                exchange_time_ns INTEGER NOT NULL, receive_time_ns INTEGER NOT NULL,
                price TEXT NOT NULL, quantity TEXT NOT NULL, side TEXT NOT NULL,
                trade_id INTEGER NOT NULL,
                PRIMARY KEY (venue, symbol, time_ns)) WITHOUT ROWID;
             INSERT INTO trades VALUES ('binance_usdm', 'BTCUSDT', {}, {t0}, {t0}, '1', '1',
                'buy', 42);
             PRAGMA user_version = 2;",
            t0 + 42
        ))
        .expect("a version 2 file");
    }
    let unnumbered = |n: u32, id: raven_model::TradeId| {
        event(
            t0 + 5_000_000,
            EventKind::Trade(Trade {
                price: Price::parse("2.50").unwrap(),
                qty: Qty::parse("1").unwrap(),
                aggressor: Side::Sell,
                trade_id: id,
                ordinal: n,
            }),
        )
    };
    let batch = vec![
        unnumbered(0, raven_model::TradeId::None),
        unnumbered(1, raven_model::TradeId::None),
        unnumbered(2, raven_model::TradeId::Text("a9188a0a-82bc".into())),
    ];
    let mut cfg = config(dir.path());
    cfg.retention = None;
    store(cfg.clone(), batch.clone()).await;
    store(cfg, batch).await;
    let rows = read(&path, Channel::Trades, 10).await;
    let ids: Vec<(raven_model::TradeId, u32)> = rows
        .iter()
        .map(|r| match &r.item {
            HistoryItem::Event(EventKind::Trade(t)) => (t.trade_id.clone(), t.ordinal),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        [
            (raven_model::TradeId::Number(42), 0),
            (raven_model::TradeId::None, 0),
            (raven_model::TradeId::None, 1),
            (raven_model::TradeId::Text("a9188a0a-82bc".into()), 2),
        ]
    );
}

/// The README's example query, run as any SQLite tool would run it.
#[tokio::test]
async fn the_file_is_plain_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = now_ms();
    store(config(dir.path()), vec![trade(t0, 7, "0.35210000")]).await;
    let conn = rusqlite::Connection::open(dir.path().join("history.sqlite")).expect("open");
    let row: (String, String, String, i64) = conn
        .query_row(
            "SELECT price, quantity, side, trade_id FROM trades \
             WHERE venue = 'binance_usdm' AND symbol = 'BTCUSDT' ORDER BY time_ns DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("query");
    assert_eq!(
        row,
        (
            "0.35210000".to_owned(),
            "0.00100000".to_owned(),
            "sell".to_owned(),
            7
        )
    );
}

/// A store whose commits keep failing still stops when told to, within its drain
/// deadline, and counts what it could not write instead of leaving it behind silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_store_stops_on_time_and_counts_its_losses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.retention = None;
    let path = cfg.path.clone();
    let health = StoreHealth::new("sqlite");
    let (tx, rx) = mpsc::channel(100_000);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let store = tokio::spawn(run(cfg, rx, health.clone(), async {
        let _ = stop_rx.await;
    }));
    let t0 = now_ms();
    tx.send(trade(t0, 0, "1.5")).await.expect("queue");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        read(&path, Channel::Trades, 10).await.len(),
        1,
        "the store runs"
    );
    // Another connection takes the write lock: every commit waits out the busy
    // timeout and fails, as on a disk that stopped taking writes.
    let blocker = rusqlite::Connection::open(&path).expect("open");
    blocker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    for i in 1..=20_000 {
        tx.send(trade(t0 + i * 1000, i, "1.5"))
            .await
            .expect("queue");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(());
    // The hub is still alive (`tx` is held): the stop alone must end the store.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), store)
        .await
        .expect("the store stops despite failing commits")
        .expect("store task");
    let report = health.report();
    assert_eq!(
        report.state,
        raven_sinks::health::StoreState::Losing,
        "{report:?}"
    );
    assert_eq!(
        report.lost, 20_000,
        "every record counted as lost: {report:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(tx);
    drop(blocker);
}
