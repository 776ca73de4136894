//! The InfluxDB store against a real `influxd` (Debian package `influxdb`, 1.6.x, at
//! /usr/bin/influxd, or `$INFLUXD`): one server per test, on free loopback ports, in a
//! temporary directory, killed on drop.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raven_hub::Record;
use raven_model::candle::{Candle, CandleInterval};
use raven_model::{
    Bbo, BookLevels, EventKind, InstrumentId, Level, Liquidation, MarkPrice, MarketEvent, Price,
    Qty, Side, Trade, UnixNanos, Venue,
};
use raven_sinks::health::StoreHealth;
use raven_sinks::influx::InfluxConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

mod support;

use support::influxd::Influxd;

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

const DB: &str = "raven";
/// 2024-01-01T00:00:00.123Z in nanoseconds.
const T0: u64 = 1_704_067_200_123_000_000;

impl Influxd {
    /// The rows of `q` as column → value maps (times in ns).
    async fn rows(&self, q: &str) -> Vec<HashMap<String, Value>> {
        let mut url = reqwest::Url::parse(&format!("{}/query", self.url())).unwrap();
        url.query_pairs_mut()
            .append_pair("db", DB)
            .append_pair("epoch", "ns")
            .append_pair("q", q);
        let text = self
            .http
            .get(url)
            .send()
            .await
            .expect("query")
            .text()
            .await
            .expect("body");
        let body: Value = serde_json::from_str(&text).expect("json");
        let Some(series) = body["results"][0]["series"].as_array() else {
            // Before the store's first write the database does not exist yet.
            let error = body["results"][0]["error"].as_str().unwrap_or_default();
            assert!(
                error.is_empty() || error.starts_with("database not found"),
                "{body}"
            );
            return Vec::new();
        };
        let mut rows = Vec::new();
        for s in series {
            let columns: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            for v in s["values"].as_array().unwrap() {
                let v = v.as_array().unwrap();
                rows.push(columns.iter().cloned().zip(v.iter().cloned()).collect());
            }
        }
        rows
    }

    async fn trade_ids(&self) -> Vec<u64> {
        self.rows("SELECT trade_id FROM trades")
            .await
            .iter()
            .map(|r| r["trade_id"].as_u64().unwrap())
            .collect()
    }
}

/// A loopback relay in front of influxd that keeps a copy of every request byte: the
/// only way to see what the store puts on the wire, since InfluxDB answers with the
/// decoded points either way.
struct Relay {
    url: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        // Bound at once and kept, so port 0 cannot be taken by anyone else first.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay listener");
        let url = format!("http://{}", listener.local_addr().expect("relay address"));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let copy = Arc::clone(&sent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("influxd behind the relay");
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                let copy = Arc::clone(&copy);
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        copy.lock()
                            .expect("relay copy")
                            .extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Relay { url, sent }
    }

    /// Everything sent so far, ASCII-lowercased (header names are case-insensitive).
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().expect("relay copy")).to_ascii_lowercase()
    }
}

fn id() -> InstrumentId {
    InstrumentId::new(Venue::new("binance_spot").unwrap(), "BTCUSDT")
}

fn event(at: u64, kind: EventKind) -> Record {
    Record::Event(MarketEvent {
        instrument: id(),
        exchange_time: UnixNanos(at),
        receive_time: UnixNanos(at + 2_000_017),
        kind,
    })
}

fn trade(at: u64, trade_id: u64, price: &str) -> Record {
    event(
        at,
        EventKind::Trade(Trade {
            price: Price::parse(price).unwrap(),
            qty: Qty::parse("0.00100000").unwrap(),
            aggressor: match trade_id % 2 {
                0 => Side::Buy,
                _ => Side::Sell,
            },
            trade_id: raven_model::TradeId::Number(trade_id),
            ordinal: 0,
        }),
    )
}

fn config(url: &str, data_dir: &Path) -> InfluxConfig {
    let mut c = InfluxConfig::new(url, DB, data_dir.to_owned());
    c.batch_interval = Duration::from_millis(50);
    c
}

/// Points in the spill files (`spill-*.lp`), and whether any batch was rejected.
fn spilled(dir: &Path) -> (usize, bool) {
    let mut points = 0;
    let mut rejected = false;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("spill-") {
            points += std::fs::read_to_string(e.path()).unwrap().lines().count();
        }
        rejected |= name.starts_with("rejected-");
    }
    (points, rejected)
}

async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 20 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_exact_text_and_timestamps() {
    let influx = Influxd::started().await;
    let data = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(100);
    let store = tokio::spawn(run(
        config(&influx.url(), data.path()),
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));

    let p = |s: &str| Price::parse(s).unwrap();
    let q = |s: &str| Qty::parse(s).unwrap();
    let candle = |open: u64| Candle {
        interval: CandleInterval::M1,
        open_time: UnixNanos(open),
        close_time: UnixNanos(open + 60_000_000_000),
        open: p("42000.10"),
        high: p("42100.00"),
        low: p("41999.99"),
        close: p("42050.5"),
        volume: q("0.30000001"),
        trade_count: 3,
        incomplete: true,
    };
    let records = vec![
        trade(T0, 5_000_001, "42000.10000000"),
        trade(T0, 5_000_002, "0.00000001"),
        event(
            T0 + 1_000_000,
            EventKind::Bbo(Bbo {
                bid_price: p("42000.00"),
                bid_qty: q("1.500"),
                ask_price: p("42000.01"),
                ask_qty: q("0.2"),
                update_id: 987_654_321,
            }),
        ),
        event(
            T0,
            EventKind::MarkPrice(MarkPrice {
                mark_price: p("42001.12345678"),
                index_price: None,
                funding_rate: "-0.00010000".parse().unwrap(),
                next_funding_time: UnixNanos(1_704_096_000_000_000_000),
            }),
        ),
        event(
            T0,
            EventKind::Liquidation(Liquidation {
                side: Side::Sell,
                price: p("41000"),
                qty: q("3"),
            }),
        ),
        event(
            T0,
            EventKind::Liquidation(Liquidation {
                side: Side::Sell,
                price: p("41001"),
                qty: q("4"),
            }),
        ),
        Record::Candle {
            instrument: id(),
            candle: candle(1_704_067_200_000_000_000),
            closed: true,
        },
        // Open candles are not stored.
        Record::Candle {
            instrument: id(),
            candle: candle(1_704_067_260_000_000_000),
            closed: false,
        },
        Record::Book {
            instrument: id(),
            levels: BookLevels {
                bids: vec![Level {
                    price: p("41999.50"),
                    qty: q("2.25"),
                }],
                asks: vec![Level {
                    price: p("42000.75"),
                    qty: q("0.010"),
                }],
                first_update_id: 10,
                last_update_id: 20,
            },
            exchange_time: UnixNanos(T0 + 3_000_000),
            receive_time: UnixNanos(T0 + 4_000_000),
        },
    ];
    for r in records {
        tx.send(r).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(15), store)
        .await
        .expect("run returns after the tap closes")
        .unwrap();

    let trades = influx.rows("SELECT * FROM trades").await;
    assert_eq!(trades.len(), 2);
    assert_eq!(trades[0]["time"].as_u64(), Some(T0 + 1));
    assert_eq!(s(&trades[0]["price_exact"]), "42000.10000000");
    assert_eq!(trades[0]["price"].as_f64(), Some(42000.1));
    assert_eq!(s(&trades[0]["quantity_exact"]), "0.00100000");
    assert_eq!(trades[0]["trade_id"].as_u64(), Some(5_000_001));
    assert_eq!(trades[0]["receive_time_ns"].as_u64(), Some(T0 + 2_000_017));
    assert_eq!(s(&trades[0]["side"]), "sell");
    assert_eq!(s(&trades[0]["venue"]), "binance_spot");
    assert_eq!(s(&trades[0]["symbol"]), "BTCUSDT");
    assert_eq!(trades[1]["time"].as_u64(), Some(T0 + 2));
    assert_eq!(s(&trades[1]["price_exact"]), "0.00000001");
    assert_eq!(s(&trades[1]["side"]), "buy");

    let bbo = influx.rows("SELECT * FROM bbo").await;
    assert_eq!(bbo.len(), 1);
    assert_eq!(bbo[0]["time"].as_u64(), Some(T0 + 1_000_000 + 654_321));
    assert_eq!(s(&bbo[0]["bid_quantity_exact"]), "1.500");
    assert_eq!(s(&bbo[0]["ask_price_exact"]), "42000.01");
    assert_eq!(bbo[0]["update_id"].as_u64(), Some(987_654_321));

    let funding = influx.rows("SELECT * FROM funding").await;
    assert_eq!(funding.len(), 1);
    assert_eq!(funding[0]["time"].as_u64(), Some(T0));
    assert_eq!(s(&funding[0]["funding_rate_exact"]), "-0.00010000");
    assert_eq!(s(&funding[0]["mark_price_exact"]), "42001.12345678");
    assert!(funding[0]
        .get("index_price_exact")
        .is_none_or(Value::is_null));

    let liq = influx.rows("SELECT * FROM liquidations").await;
    let liq: Vec<_> = liq
        .iter()
        .map(|r| (r["time"].as_u64().unwrap(), s(&r["price_exact"]).to_owned()))
        .collect();
    assert_eq!(
        liq,
        [(T0, "41000".to_owned()), (T0 + 1, "41001".to_owned())]
    );

    let candles = influx.rows("SELECT * FROM candles").await;
    assert_eq!(candles.len(), 1, "open candles must not be stored");
    assert_eq!(candles[0]["time"].as_u64(), Some(1_704_067_200_000_000_000));
    assert_eq!(s(&candles[0]["interval"]), "1m");
    assert_eq!(s(&candles[0]["volume_exact"]), "0.30000001");
    assert_eq!(s(&candles[0]["close_exact"]), "42050.5");
    assert_eq!(candles[0]["trade_count"].as_u64(), Some(3));
    assert_eq!(candles[0]["incomplete"].as_bool(), Some(true));

    let book = influx.rows("SELECT * FROM book_top").await;
    assert_eq!(book.len(), 1);
    assert_eq!(book[0]["time"].as_u64(), Some(T0 + 3_000_000 + 20));
    assert_eq!(s(&book[0]["bid_price_exact"]), "41999.50");
    assert_eq!(s(&book[0]["ask_quantity_exact"]), "0.010");
    assert_eq!(book[0]["last_update_id"].as_u64(), Some(20));

    assert_eq!(spilled(data.path()), (0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_trades_in_one_millisecond_all_survive() {
    let influx = Influxd::started().await;
    let data = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(2000);
    let store = tokio::spawn(run(
        config(&influx.url(), data.path()),
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));
    for i in 0..1000u64 {
        tx.send(trade(T0, 77_000_000 + i, &format!("{}.5", 100 + i)))
            .await
            .unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(15), store)
        .await
        .unwrap()
        .unwrap();
    let rows = influx.rows("SELECT * FROM trades").await;
    assert_eq!(rows.len(), 1000);
    for (i, r) in rows.iter().enumerate() {
        let i = i as u64;
        assert_eq!(r["trade_id"].as_u64(), Some(77_000_000 + i));
        assert_eq!(r["time"].as_u64(), Some(T0 + i));
        assert_eq!(s(&r["price_exact"]), format!("{}.5", 100 + i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_spills_to_disk_and_recovers_every_point_once() {
    let mut influx = Influxd::started().await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&influx.url(), data.path());
    cfg.batch_size = 200;
    cfg.memory_limit_points = 500;
    let (tx, rx) = mpsc::channel(10_000);
    let store = tokio::spawn(run(
        cfg,
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));
    // Each trade in its own millisecond.
    let nth = |i: u64| trade(T0 + i * 1_000_000, i, "1.25");

    for i in 0..1000 {
        tx.send(nth(i)).await.unwrap();
    }
    eventually("the first 1000 trades", 10, || async {
        influx.trade_ids().await.len() == 1000
    })
    .await;

    influx.stop();
    for i in 1000..6000 {
        tx.send(nth(i)).await.unwrap();
    }
    // Memory holds at most 500 points (+ the open batch); the rest is on disk.
    eventually("the spill to hold the outage", 10, || async {
        spilled(data.path()).0 >= 5000 - 500 - 200
    })
    .await;
    let (on_disk, rejected) = spilled(data.path());
    assert!(on_disk <= 5000 && !rejected, "{on_disk} {rejected}");

    influx.start().await;
    eventually("every trade after recovery", 20, || async {
        influx.trade_ids().await.len() >= 6000
    })
    .await;
    drop(tx);
    tokio::time::timeout(Duration::from_secs(15), store)
        .await
        .unwrap()
        .unwrap();

    let ids = influx.trade_ids().await;
    assert_eq!(ids.len(), 6000, "each point exactly once");
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<_>>(),
        (0..6000).collect()
    );
    assert_eq!(
        spilled(data.path()),
        (0, false),
        "spill files are deleted once written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_outage_replays_the_previous_runs_spill_first() {
    let mut influx = Influxd::new();
    let data = tempfile::tempdir().unwrap();
    let nth = |i: u64| trade(T0 + i * 1_000_000, i, "3.000");

    // Run 1, InfluxDB down: a crash (abort) after half, with everything written ahead
    // to disk (memory limit 0) ...
    let mut cfg = config(&influx.url(), data.path());
    cfg.batch_size = 100;
    cfg.memory_limit_points = 0;
    let (tx, rx) = mpsc::channel(10_000);
    let crashed = tokio::spawn(run(
        cfg.clone(),
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));
    for i in 0..1000 {
        tx.send(nth(i)).await.unwrap();
    }
    eventually("run 1 to spill its points", 10, || async {
        spilled(data.path()).0 == 1000
    })
    .await;
    crashed.abort();
    let _ = crashed.await;
    drop(tx);

    // ... then run 2, still down, with points only in memory, shut down cleanly: the
    // shutdown must spill them.
    cfg.memory_limit_points = 1_000_000;
    let (tx, rx) = mpsc::channel(10_000);
    let clean = tokio::spawn(run(
        cfg.clone(),
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));
    for i in 1000..2000 {
        tx.send(nth(i)).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(15), clean)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spilled(data.path()), (2000, false));

    // Run 3 with InfluxDB up: both earlier runs' points arrive, and the new ones.
    influx.start().await;
    let (tx, rx) = mpsc::channel(10_000);
    let store = tokio::spawn(run(
        cfg,
        rx,
        StoreHealth::new("influxdb"),
        std::future::pending(),
    ));
    for i in 2000..2500 {
        tx.send(nth(i)).await.unwrap();
    }
    eventually("all three runs' trades", 20, || async {
        influx.trade_ids().await.len() >= 2500
    })
    .await;
    drop(tx);
    tokio::time::timeout(Duration::from_secs(15), store)
        .await
        .unwrap()
        .unwrap();
    let ids = influx.trade_ids().await;
    assert_eq!(ids.len(), 2500);
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<_>>(),
        (0..2500).collect()
    );
    assert_eq!(spilled(data.path()), (0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_gzipped_on_the_wire_unless_turned_off() {
    let influx = Influxd::started().await;
    let upstream = format!("127.0.0.1:{}", influx.port);
    let nth = |i: u64| trade(T0 + i * 1_000_000, i, "2.5");
    for (round, gzip) in [true, false].into_iter().enumerate() {
        let relay = Relay::start(upstream.clone()).await;
        let data = tempfile::tempdir().unwrap();
        let mut cfg = config(&relay.url, data.path());
        cfg.gzip = gzip;
        let (tx, rx) = mpsc::channel(2000);
        let store = tokio::spawn(run(
            cfg,
            rx,
            StoreHealth::new("influxdb"),
            std::future::pending(),
        ));
        let first = round as u64 * 1000;
        for i in first..first + 1000 {
            tx.send(nth(i)).await.unwrap();
        }
        drop(tx);
        tokio::time::timeout(Duration::from_secs(15), store)
            .await
            .expect("run returns after the tap closes")
            .unwrap();
        let sent = relay.sent();
        assert!(sent.contains("post /write?"), "{sent}");
        assert_eq!(
            sent.contains("content-encoding: gzip"),
            gzip,
            "gzip {gzip}: the header"
        );
        assert_eq!(
            sent.contains("trades,venue=binance_spot"),
            !gzip,
            "gzip {gzip}: line protocol in clear on the wire"
        );
    }
    let ids = influx.trade_ids().await;
    assert_eq!(ids.len(), 2000);
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<_>>(),
        (0..2000).collect()
    );
}

/// An outage longer than the disk may hold: beyond `spill_max_bytes` points are lost,
/// and that is counted and reported (`losing`), never a full disk. (No `influxd`: the
/// URL points at a port nothing listens on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_counts_its_losses_instead_of_filling_the_disk() {
    raven_venues::http::install_crypto_provider();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&format!("http://127.0.0.1:{port}"), dir.path());
    cfg.memory_limit_points = 0;
    cfg.batch_size = 100;
    cfg.spill_max_bytes = 20_000;
    let health = StoreHealth::new("influxdb");
    let (tx, rx) = mpsc::channel(100_000);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let store = tokio::spawn(run(cfg, rx, health.clone(), async {
        let _ = stop_rx.await;
    }));
    for i in 0..2_000 {
        tx.send(trade(T0 + i * 1_000_000, i, "42000.10000000"))
            .await
            .unwrap();
    }
    eventually("the spill to fill up and points to be lost", 30, || {
        let report = health.report();
        async move { report.lost > 0 }
    })
    .await;
    let report = health.report();
    assert_eq!(report.state.as_str(), "losing", "{report:?}");
    assert!(
        report.reason.contains("spill_max_bytes"),
        "{}",
        report.reason
    );
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 20_000, "{on_disk} bytes on disk");
    drop(tx);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), store)
        .await
        .expect("the store stops")
        .unwrap();
    let (points, _) = spilled(dir.path());
    let report = health.report();
    assert_eq!(
        report.lost as usize + points,
        2_000,
        "every point is either on disk or counted lost"
    );
}
