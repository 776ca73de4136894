//! Raven → InfluxDB end to end, against a real `influxd` (Debian's `influxdb` 1.x,
//! installed by scripts/setup-services.sh): what the connectors receive is written with
//! the exchange's exact text, and an InfluxDB outage, or a Raven restart in the middle
//! of one, loses and duplicates nothing. The ground truth for "nothing" is an
//! independent gRPC subscriber: every trade and BBO it was sent must be in InfluxDB
//! exactly once. The store's own mechanics (spill files, backoff, replay order) are
//! tested piece by piece in crates/sinks/tests/influx.rs.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

const DB: &str = "market_data";
const SYMBOLS: [&str; 4] = ["SYN0USDT", "SYN1USDT", "SYN2USDT", "SYN3USDT"];

/// The rows of an InfluxQL query: column names and values.
async fn query(url: &str, db: &str, q: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let url = reqwest::Url::parse_with_params(
        &format!("{url}/query"),
        [("db", db), ("epoch", "ns"), ("q", q)],
    )
    .expect("query url");
    let (code, body) = http_get(url.as_str()).await;
    assert_eq!(code, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    // Before the store's first write the database does not exist yet: nothing stored.
    let error = v["results"][0]["error"].as_str().unwrap_or_default();
    if error.starts_with("database not found") {
        return Vec::new();
    }
    assert!(error.is_empty(), "{q}: {body}");
    let Some(series) = v["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for s in series {
        let columns: Vec<String> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect();
        for values in s["values"].as_array().expect("values") {
            let values = values.as_array().expect("row");
            rows.push(
                columns
                    .iter()
                    .cloned()
                    .zip(values.iter().cloned())
                    .collect(),
            );
        }
    }
    rows
}

#[tokio::test]
async fn trades_and_books_reach_influxdb_exactly() {
    let influx = Influxd::start().await;
    let (_sim, sim_addr) = spawn_sim(0, &["--symbols", "2", "--rate", "1000"]);
    let venues = format!(
        "[influxdb]\nurl = \"{}\"\ndatabase = \"market_data\"\nbatch_interval_ms = 200\n\n[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\", \"SYN1USDT\"]\nchannels = [\"trades\", \"book\", \"bbo\", \"candles\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\nrest_weight_per_minute = 1000000\n",
        influx.url
    );
    let server = spawn_serve(&venues, "[hub]\ntap_interval_ms = 200\n");
    wait_synced(&server).await;
    // Generous: the outage tests of this file run beside this one on the same cores.
    wait_until(
        "trades, bbo and book samples in InfluxDB",
        Duration::from_secs(120),
        || async {
            let mut all = true;
            for m in ["trades", "bbo", "book_top"] {
                all &= !query(&influx.url, DB, &format!("SELECT * FROM {m} LIMIT 1"))
                    .await
                    .is_empty();
            }
            all
        },
    )
    .await;
    let trades = query(&influx.url, DB, "SELECT * FROM trades LIMIT 50").await;
    for t in &trades {
        let exact: rust_decimal::Decimal = t["price_exact"]
            .as_str()
            .expect("exact text")
            .parse()
            .expect("decimal");
        assert!(exact > rust_decimal::Decimal::ZERO);
        assert!(
            t["symbol"] == "SYN0USDT" || t["symbol"] == "SYN1USDT",
            "{t:?}"
        );
        assert!(
            t["venue"] == "binance_spot" && (t["side"] == "buy" || t["side"] == "sell"),
            "{t:?}"
        );
        assert!(
            t["trade_id"].as_u64().is_some() && t["receive_time_ns"].as_u64().is_some(),
            "{t:?}"
        );
    }
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "raven_influx_points_written_total") > 0.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "raven_influx_points_dropped_total"), 0.0);
}

// ---------------------------------------------------------------- outages

/// `[[venues]]`/`[influxdb]` and `[hub]` TOML for the outage tests: the four symbols of
/// the sim at `sim_addr`, stored in `influx`. At most 50 000 points wait in memory, so
/// an outage at this rate goes through the spill on disk too. The subscriber's queue
/// and patience are far beyond what the rate needs, so a loaded machine cannot make it
/// lose messages, which would leave no complete ground truth to compare with.
fn outage_config(influx: &str, sim_addr: &str) -> (String, String) {
    let venues = format!(
        "[influxdb]\nurl = \"{influx}\"\ndatabase = \"{DB}\"\nbatch_interval_ms = 200\nmemory_limit_points = 50000\n\n[[venues]]\nvenue = \"binance_spot\"\nsymbols = {SYMBOLS:?}\nchannels = [\"trades\", \"bbo\", \"book\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\nrest_weight_per_minute = 1000000\n"
    );
    let hub = "[hub]\nqueue_capacity = 262144\nslow_consumer_limit_ms = 120000\n".to_owned();
    (venues, hub)
}

/// The synthetic market of the outage tests: about 10 000 frames/s over four symbols.
fn outage_sim() -> (Child, String) {
    spawn_sim(0, &["--symbols", "4", "--rate", "10000"])
}

/// Every trade id and BBO update id one subscriber received, per symbol.
#[derive(Debug, Default)]
struct Seen {
    trades: HashMap<String, BTreeSet<u64>>,
    bbo: HashMap<String, BTreeSet<u64>>,
}

impl Seen {
    fn total(&self) -> usize {
        self.trades
            .values()
            .chain(self.bbo.values())
            .map(BTreeSet::len)
            .sum()
    }
}

/// A subscriber to the trades and BBO of every symbol, reading in its own task (so it
/// keeps up while the test waits) until [`Recorder::stop`]. Every message goes through
/// the [`Checker`], and the recorder fails if any was dropped.
struct Recorder {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Seen>,
}

impl Recorder {
    async fn start(server: &Server) -> Recorder {
        let mut client = server.client().await;
        let topics: Vec<pb::Topic> = SYMBOLS
            .iter()
            .flat_map(|s| {
                [pb::Channel::Trades, pb::Channel::Bbo].map(|c| topic("binance_spot", s, c, 0))
            })
            .collect();
        let expected_acks = topics.len();
        let mut sub = Subscription::open(&mut client, topics).await;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut checker = Checker {
                no_history: true,
                ..Checker::default()
            };
            let mut seen = Seen::default();
            loop {
                let message = tokio::select! {
                    _ = &mut stopped => break,
                    m = sub.next(Duration::from_secs(60)) => m,
                };
                let m = match message {
                    Some(Ok(m)) => m,
                    Some(Err(status)) => panic!("subscription failed: {status}"),
                    None => panic!("subscription ended, or was silent for 60 s"),
                };
                checker.check(&m);
                let symbol = m.topic.as_ref().map(|t| t.symbol.clone());
                let (ids, id) = match (&m.payload, symbol) {
                    (Some(Payload::Trade(t)), Some(s)) => (seen.trades.entry(s), t.trade_id),
                    (Some(Payload::Bbo(b)), Some(s)) => (seen.bbo.entry(s), b.update_id),
                    _ => continue,
                };
                let key = ids.key().clone();
                assert!(ids.or_default().insert(id), "{key}: id {id} was sent twice");
            }
            assert_eq!(checker.acks.len(), expected_acks, "{:?}", checker.acks);
            assert!(
                checker
                    .acks
                    .iter()
                    .all(|a| a.result == pb::ack::Result::Subscribed as i32),
                "{:?}",
                checker.acks
            );
            assert_eq!(
                (checker.dropped, checker.conflated),
                (0, 0),
                "the subscriber itself lost messages, so it is no ground truth"
            );
            seen
        });
        Recorder { stop, task }
    }

    /// Stops reading here, so the ids seen so far are the ground truth.
    async fn stop(self) -> Seen {
        let _ = self.stop.send(());
        self.task.await.expect("the subscriber's checks")
    }
}

/// Waits until InfluxDB holds trades of every symbol: the write path works end to end.
async fn wait_stored(url: &str) {
    wait_until(
        "trades of every symbol in InfluxDB",
        Duration::from_secs(120),
        || async {
            let rows = query(url, DB, "SELECT last(trade_id) FROM trades GROUP BY symbol").await;
            rows.len() == SYMBOLS.len()
        },
    )
    .await;
}

/// Points in the spill files of a Raven data directory.
fn spilled_points(data_dir: &Path) -> usize {
    let spill = data_dir.join("data").join("influx-spill");
    std::fs::read_dir(spill)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("spill-"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

/// Waits, once the feed has stopped, until the store has nothing left to send: no
/// backlog on two polls a second apart with nothing written between them. The gauge
/// alone is not enough, since records still in the tap's channel are not counted yet.
async fn wait_drained(server: &Server) {
    let started = Instant::now();
    let mut previous: Option<f64> = None;
    loop {
        let m = server.metrics().await;
        assert!(m.contains("raven_influx_backlog_points"), "{m}");
        let backlog = metric(&m, "raven_influx_backlog_points");
        let written = metric(&m, "raven_influx_points_written_total");
        if backlog == 0.0 && previous == Some(written) {
            eprintln!(
                "drained {written} points written in {:.1} s after the feed stopped",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the store did not drain in 300 s: {backlog} points left\n{m}"
        );
        previous = (backlog == 0.0).then_some(written);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The values of integer `field` of `measurement` for `symbol` between `lo` and `hi`.
async fn stored_ids(
    url: &str,
    measurement: &str,
    field: &str,
    symbol: &str,
    lo: u64,
    hi: u64,
) -> Vec<u64> {
    query(
        url,
        DB,
        &format!(
            "SELECT {field} FROM {measurement} WHERE venue = 'binance_spot' AND symbol = '{symbol}' AND {field} >= {lo} AND {field} <= {hi}"
        ),
    )
    .await
    .iter()
    .map(|r| r[field].as_u64().unwrap_or_else(|| panic!("{measurement}.{field}: {r:?}")))
    .collect()
}

/// One aggregate over all of a symbol's points of `measurement`.
async fn count(url: &str, measurement: &str, expr: &str, symbol: &str) -> u64 {
    let rows = query(
        url,
        DB,
        &format!(
            "SELECT {expr} FROM {measurement} WHERE venue = 'binance_spot' AND symbol = '{symbol}'"
        ),
    )
    .await;
    rows.first()
        .and_then(|r| r["count"].as_u64())
        .unwrap_or_else(|| panic!("{expr} of {measurement}/{symbol}: {rows:?}"))
}

/// Asserts that InfluxDB holds what each subscriber saw, exactly once.
///
/// A subscriber joins after Raven started and stops before the feed does, so InfluxDB
/// holds more than it saw, and only at the edges: ids are increasing per symbol, and
/// a subscriber that lost nothing was sent every id between its first and its last.
/// So within that id range the stored ids must equal the received ones, point for
/// point. Over all of a symbol's points, `count` equal to `count(distinct)` shows that
/// no event was stored twice under two timestamps (the same timestamp would overwrite).
async fn assert_stored_exactly_once(url: &str, runs: &[&Seen]) {
    for (measurement, field) in [("trades", "trade_id"), ("bbo", "update_id")] {
        for seen in runs {
            let by_symbol = match measurement {
                "trades" => &seen.trades,
                _ => &seen.bbo,
            };
            assert_eq!(
                by_symbol.len(),
                SYMBOLS.len(),
                "{measurement}: a symbol saw nothing"
            );
            for (symbol, ids) in by_symbol {
                let (Some(&lo), Some(&hi)) = (ids.first(), ids.last()) else {
                    panic!("{measurement}/{symbol}: no ids");
                };
                let stored = stored_ids(url, measurement, field, symbol, lo, hi).await;
                let unique: BTreeSet<u64> = stored.iter().copied().collect();
                let missing: Vec<_> = ids.difference(&unique).take(10).collect();
                let extra: Vec<_> = unique.difference(ids).take(10).collect();
                assert!(
                    missing.is_empty() && extra.is_empty() && stored.len() == unique.len(),
                    "{measurement}/{symbol} {lo}..={hi}: {} received, {} stored ({} distinct); missing {missing:?}, not received {extra:?}",
                    ids.len(),
                    stored.len(),
                    unique.len()
                );
            }
        }
        for symbol in SYMBOLS {
            let all = count(url, measurement, &format!("count({field})"), symbol).await;
            let distinct = count(
                url,
                measurement,
                &format!("count(distinct({field}))"),
                symbol,
            )
            .await;
            assert_eq!(
                all,
                distinct,
                "{measurement}/{symbol}: {} stored twice",
                all - distinct
            );
        }
    }
}

/// Asserts that a Raven process lost nothing on the way to the store.
fn assert_nothing_dropped(metrics: &str) {
    for name in [
        "raven_influx_points_dropped_total",
        "raven_tap_dropped_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
        assert_eq!(metric(metrics, name), 0.0, "{name}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_influxdb_outage_loses_and_duplicates_nothing() {
    let mut influx = Influxd::start().await;
    let (sim, sim_addr) = outage_sim();
    let (venues, hub) = outage_config(&influx.url, &sim_addr);
    let server = spawn_serve(&venues, &hub);
    wait_synced(&server).await;
    let recorder = Recorder::start(&server).await;
    wait_stored(&influx.url).await;

    influx.kill();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = server.metrics().await;
    let on_disk = spilled_points(server.dir.path());
    assert!(
        metric(&during, "raven_influx_errors_total") > 0.0,
        "{during}"
    );
    assert!(
        on_disk > 0,
        "a 30 s outage at this rate must overflow memory into the spill"
    );
    // Down but losing nothing: reported with its reason, and Raven stays ready.
    let (code, health) = http_get(&format!(
        "http://127.0.0.1:{}/health/ready",
        server.health_port
    ))
    .await;
    let health: serde_json::Value = serde_json::from_str(&health).expect("health json");
    let store = &health["components"]["stores"][0];
    assert_eq!(
        (code, &store["name"], &store["state"]),
        (200, &"influxdb".into(), &"degraded".into()),
        "{health}"
    );
    assert!(
        store["reason"]
            .as_str()
            .is_some_and(|r| r.contains("writes failing")),
        "{health}"
    );
    influx.restart().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = recorder.stop().await;
    drop(sim);

    wait_drained(&server).await;
    eprintln!(
        "outage: backlog {} points ({on_disk} spilled) after 30 s; {} ids received",
        metric(&during, "raven_influx_backlog_points"),
        seen.total()
    );
    assert_stored_exactly_once(&influx.url, &[&seen]).await;
    assert_eq!(spilled_points(server.dir.path()), 0, "the spill is drained");
    assert_nothing_dropped(&server.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raven_restart_during_an_influxdb_outage_loses_and_duplicates_nothing() {
    let mut influx = Influxd::start().await;
    let (sim, sim_addr) = outage_sim();
    let (venues, hub) = outage_config(&influx.url, &sim_addr);
    let server = spawn_serve(&venues, &hub);
    wait_synced(&server).await;
    let recorder = Recorder::start(&server).await;
    wait_stored(&influx.url).await;

    // Run 1: InfluxDB goes down, Raven buffers, then is stopped the way an orchestrator
    // stops it; what it could not send must be in its spill.
    influx.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first = recorder.stop().await;
    assert_nothing_dropped(&server.metrics().await);
    let dir = server.terminate();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("unsent points are in the spill"),
        "run 1 did not finish its shutdown:\n{log}"
    );
    let on_disk = spilled_points(dir.path());
    assert!(on_disk > 0, "run 1 left no spill:\n{log}");

    // Run 2, same data directory, InfluxDB still down; then it comes back.
    let server = spawn_serve_in(dir, &venues, &hub);
    wait_synced(&server).await;
    let recorder = Recorder::start(&server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    influx.restart().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = recorder.stop().await;
    drop(sim);

    wait_drained(&server).await;
    eprintln!(
        "restart: run 1 spilled {on_disk} points; {} + {} ids received",
        first.total(),
        second.total()
    );
    let log = server.log();
    assert!(
        log.contains("replaying the spill of a previous run"),
        "run 2 did not find run 1's spill:\n{log}"
    );
    assert!(!log.contains("LOST"), "{log}");
    assert_stored_exactly_once(&influx.url, &[&first, &second]).await;
    assert_eq!(spilled_points(server.dir.path()), 0, "the spill is drained");
    assert_nothing_dropped(&server.metrics().await);
}
