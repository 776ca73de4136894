//! Raven → InfluxDB end to end, against a real `influxd` (Debian's `influxdb` 1.x,
//! installed by scripts/setup-services.sh): what the connectors receive is written with
//! the exchange's exact text. The store's delivery guarantees (spill, outage, restart)
//! are tested in crates/sinks/tests/influx.rs.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

struct Influxd {
    _child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start_influxd() -> Influxd {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, rpc) = (free_port(), free_port());
    let d = dir.path().display();
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n"
    );
    std::fs::write(dir.path().join("influxdb.conf"), config).expect("config");
    let bin = std::env::var("INFLUXD").unwrap_or_else(|_| "/usr/bin/influxd".to_owned());
    let proc = Command::new(&bin)
        .arg("-config")
        .arg(dir.path().join("influxdb.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} (scripts/setup-services.sh installs it): {e}"));
    let url = format!("http://127.0.0.1:{port}");
    wait_until("influxd answers /ping", Duration::from_secs(20), || async {
        try_http_get(&format!("{url}/ping"))
            .await
            .is_some_and(|(code, _)| code == 204)
    })
    .await;
    Influxd {
        _child: Child {
            name: "influxd",
            proc,
        },
        url,
        _dir: dir,
    }
}

/// The rows of an InfluxQL query: column names and values.
async fn query(url: &str, db: &str, q: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let (code, body) = http_get(&format!(
        "{url}/query?db={db}&epoch=ns&q={}",
        q.replace(' ', "%20").replace('*', "%2A")
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
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
    let influx = start_influxd().await;
    let (_sim, sim_addr) = spawn_sim(0, &["--symbols", "2", "--rate", "1000"]);
    let venues = format!(
        "[influxdb]\nurl = \"{}\"\ndatabase = \"market_data\"\nbatch_interval_ms = 200\n\n[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\", \"SYN1USDT\"]\nchannels = [\"trades\", \"book\", \"bbo\", \"candles\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\nrest_weight_per_minute = 1000000\n",
        influx.url
    );
    let server = spawn_serve(&venues, "[hub]\ntap_interval_ms = 200\n");
    wait_synced(&server).await;
    wait_until(
        "trades, bbo and book samples in InfluxDB",
        Duration::from_secs(30),
        || async {
            let mut all = true;
            for m in ["trades", "bbo", "book_top"] {
                all &= !query(
                    &influx.url,
                    "market_data",
                    &format!("SELECT * FROM {m} LIMIT 1"),
                )
                .await
                .is_empty();
            }
            all
        },
    )
    .await;
    let trades = query(&influx.url, "market_data", "SELECT * FROM trades LIMIT 50").await;
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
