//! The operator's view, end to end: the Grafana dashboards and Prometheus alert rules
//! under deploy/ are checked against real servers, not by eye.
//!
//! A real `prometheus` (Debian's package, installed by scripts/setup-services.sh)
//! scrapes two real Ravens fed by `raven sim` — one storing to a real `influxd` and
//! `redis-server` (history from InfluxDB), one keeping history in SQLite — so that every
//! store's metrics exist. Every PromQL expression of every dashboard (and every
//! variable query) must return data through Prometheus's HTTP API, and every InfluxQL
//! query of the market dashboard must return data from `influxd`: a dashboard panel
//! that stays empty on a healthy system is a bug, typically a misspelt metric or label.
//!
//! Then faults are induced — InfluxDB killed, a feed stalled and then gone — and the
//! alerts of deploy/prometheus/alerts.yml must fire. The rules are loaded with the
//! file's exact expressions; only their `for:` durations are shortened so the test
//! does not wait minutes. promtool validates the rule file and
//! the stack's scrape config as shipped.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use raven_proto::pb;
use serde_json::Value;

const SYMBOLS: [&str; 2] = ["SYN0USDT", "SYN1USDT"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn bin(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        Path::new(&path).exists(),
        "{path} missing: scripts/setup-services.sh installs it"
    );
    path
}

// ---------------------------------------------------------------- servers

/// A real Prometheus on a free loopback port, with `config` and the files it names
/// in its own temp dir.
struct Prometheus {
    _child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("rule file");
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let proc = Command::new(bin("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let prometheus = Prometheus {
            _child: Child {
                name: "prometheus",
                proc,
            },
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        wait_until("prometheus ready", Duration::from_secs(60), || async {
            try_http_get(&ready)
                .await
                .is_some_and(|(code, _)| code == 200)
        })
        .await;
        prometheus
    }

    /// `GET /api/v1/{path}` with `params`; the `data` of a successful answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), params)
            .expect("api url");
        let (code, body) = http_get(url.as_str()).await;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            code == 200 && v["status"] == "success",
            "{path} {params:?}: {code} {body}"
        );
        v["data"].clone()
    }

    /// The samples an instant query returns now.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                data["result"].as_array().cloned().unwrap_or_default()
            }
            // A scalar or string always has a value.
            _ => vec![data["result"].clone()],
        }
    }

    /// The (alertname, instance) of every firing alert.
    async fn firing(&self) -> BTreeSet<(String, String)> {
        let data = self.api("alerts", &[]).await;
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
                (label("alertname"), label("instance"))
            })
            .collect()
    }
}

/// The series of an InfluxQL query against the test's `influxd`.
async fn influxql(url: &str, q: &str) -> Vec<Value> {
    let url = reqwest::Url::parse_with_params(
        &format!("{url}/query"),
        [("db", "market_data"), ("epoch", "ms"), ("q", q)],
    )
    .expect("query url");
    let (code, body) = http_get(url.as_str()).await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(code, 200, "{q}: {body}");
    let error = v["results"][0]["error"].as_str().unwrap_or_default();
    if error.starts_with("database not found") {
        return Vec::new();
    }
    assert!(error.is_empty(), "{q}: {body}");
    v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// True when some series has a row with a non-null value besides the time.
fn has_values(series: &[Value]) -> bool {
    series.iter().any(|s| {
        s["values"].as_array().into_iter().flatten().any(|row| {
            row.as_array()
                .is_some_and(|r| r.iter().skip(1).any(|v| !v.is_null()))
        })
    })
}

// ---------------------------------------------------------------- dashboards

/// Replaces Grafana's template variables (`$name`, `${name}`, `${name:format}`) with
/// `value(name)`; a `$` that starts no name (as in the regex `/^$venue$/`) stays.
fn substitute(text: &str, value: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').expect("closed ${...}");
            let name = inner[..end].split(':').next().unwrap_or_default();
            out.push_str(&value(name));
            rest = &inner[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&value(&after[..len]));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// Values for PromQL: the stack's 5 s scrape gives Grafana a 20 s `$__rate_interval`;
/// every dashboard variable is a regex matcher, so "All" is `.*`.
fn prom_value(name: &str) -> String {
    match name {
        "__rate_interval" => "20s",
        "__interval" => "5s",
        "__range" => "5m",
        _ => ".*",
    }
    .to_owned()
}

/// Values for InfluxQL: the last five minutes at one-second resolution.
fn influx_value(name: &str) -> String {
    match name {
        "timeFilter" => "time > now() - 5m",
        "__interval" => "1s",
        "__interval_ms" => "1000",
        _ => ".*",
    }
    .to_owned()
}

/// One query a dashboard runs: where it is, its datasource uid, and its text.
#[derive(Debug)]
struct Query {
    at: String,
    datasource: String,
    text: String,
}

fn datasource_uid(v: &Value) -> String {
    v["datasource"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Every dashboard under deploy/grafana/dashboards, checked for the structure Grafana
/// needs, with its panel and variable queries.
fn dashboards(datasources: &HashSet<String>) -> (Vec<(String, usize)>, Vec<Query>, Vec<Query>) {
    let dir = deploy().join("grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/grafana/dashboards")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut boards, mut targets, mut variables) = (Vec::new(), Vec::new(), Vec::new());
    let mut uids = HashSet::new();
    for file in files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read"))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let title = d["title"].as_str().expect("title").to_owned();
        let uid = d["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_owned()), "{title}: uid {uid} repeated");
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{title}: schemaVersion"
        );
        let mut ids = HashSet::new();
        let mut panels = 0;
        for p in d["panels"].as_array().expect("panels") {
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{title}: panel ids"
            );
            assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
            if p["type"] == "row" {
                continue;
            }
            panels += 1;
            let panel = p["title"].as_str().unwrap_or_default();
            let ts = p["targets"].as_array().expect("targets");
            assert!(!ts.is_empty(), "{title} / {panel}: no query");
            for t in ts {
                let ds = datasource_uid(t);
                assert!(
                    datasources.contains(&ds) && ds == datasource_uid(p),
                    "{title} / {panel}: datasource {ds:?} not provisioned"
                );
                let text = t["expr"].as_str().or(t["query"].as_str()).expect("query");
                targets.push(Query {
                    at: format!("{title} / {panel} / {}", t["refId"]),
                    datasource: ds,
                    text: text.to_owned(),
                });
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let ds = datasource_uid(v);
            assert!(
                datasources.contains(&ds),
                "{title}: variable datasource {ds:?}"
            );
            let text = v["query"]["query"].as_str().or(v["query"].as_str());
            variables.push(Query {
                at: format!("{title} / ${}", v["name"].as_str().unwrap_or_default()),
                datasource: ds,
                text: text.expect("variable query").to_owned(),
            });
        }
        boards.push((title, panels));
    }
    (boards, targets, variables)
}

/// The uids of deploy/grafana/provisioning/datasources/datasources.yml.
fn provisioned_datasources() -> HashSet<String> {
    let path = deploy().join("grafana/provisioning/datasources/datasources.yml");
    std::fs::read_to_string(path)
        .expect("datasources.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(|uid| uid.trim().to_owned())
        .collect()
}

/// What a dashboard query is missing now, or `None` when it returns data.
async fn missing(q: &Query, prom: &Prometheus, influx: &str) -> Option<String> {
    let ok = match q.datasource.as_str() {
        "prometheus" => {
            if let Some(args) = q
                .text
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
            {
                let (selector, label) = args.rsplit_once(',').expect("label_values(m, l)");
                let selector = substitute(selector, &prom_value);
                let series = prom.api("series", &[("match[]", &selector)]).await;
                series
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s[label.trim()].is_string()))
            } else {
                !prom
                    .query(&substitute(&q.text, &prom_value))
                    .await
                    .is_empty()
            }
        }
        "influxdb" => {
            let series = influxql(influx, &substitute(&q.text, &influx_value)).await;
            has_values(&series)
        }
        other => panic!("{}: no check for datasource {other}", q.at),
    };
    (!ok).then(|| format!("{}: {}", q.at, q.text))
}

// ---------------------------------------------------------------- rules

/// deploy/prometheus/alerts.yml with every `for:` shortened to 1 s; expressions untouched.
fn rules_for_test() -> String {
    let text = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).expect("alerts.yml");
    let mut shortened = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.split_once("for:") {
            Some((indent, _)) if indent.trim().is_empty() => {
                shortened += 1;
                format!("{indent}for: 1s")
            }
            _ => l.to_owned(),
        })
        .collect();
    assert!(shortened > 0, "alerts.yml has no `for:` to shorten");
    lines.join("\n") + "\n"
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new(bin("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- the test

fn venues(sim: &str, extra: &str) -> String {
    format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = {SYMBOLS:?}\nchannels = [\"trades\", \"book\", \"bbo\"]\nws_url = \"ws://{sim}\"\nrest_url = \"http://{sim}\"\nrest_weight_per_minute = 1000000\n{extra}"
    )
}

/// Reads a subscription until it ends, so the stream stays healthy and counted.
fn drain(mut sub: Subscription) {
    tokio::spawn(
        async move { while let Some(Ok(_)) = sub.next(Duration::from_secs(3600)).await {} },
    );
}

/// One of each request, so every method's request and latency series exists.
async fn requests(server: &Server) {
    let mut client = server.client().await;
    client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("GetStatus");
    client
        .list_instruments(pb::ListInstrumentsRequest::default())
        .await
        .expect("ListInstruments");
    client
        .get_order_book(pb::GetOrderBookRequest {
            venue: "binance_spot".into(),
            symbol: "SYN0USDT".into(),
            depth: 10,
        })
        .await
        .expect("GetOrderBook");
    let unknown = client
        .get_order_book(pb::GetOrderBookRequest {
            venue: "binance_spot".into(),
            symbol: "NOSUCHUSDT".into(),
            depth: 10,
        })
        .await;
    assert_eq!(
        unknown.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );
    let mut history = client
        .get_history(pb::GetHistoryRequest {
            venue: "binance_spot".into(),
            symbol: "SYN0USDT".into(),
            channel: pb::Channel::Trades as i32,
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("GetHistory")
        .into_inner();
    while let Some(r) = tokio_stream::StreamExt::next(&mut history).await {
        r.expect("history record");
    }
    drain(
        Subscription::open(
            &mut client,
            vec![
                topic("binance_spot", "*", pb::Channel::Book, 0),
                topic("binance_spot", "*", pb::Channel::Trades, 0),
            ],
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_show_data_and_alerts_fire() {
    // The shipped files as they are.
    promtool(
        &["check", "rules", "alerts.yml"],
        &deploy().join("prometheus"),
    );
    let stack = tempfile::tempdir().expect("tempdir");
    for f in ["prometheus.yml", "alerts.yml"] {
        std::fs::copy(deploy().join("prometheus").join(f), stack.path().join(f)).expect("copy");
    }
    promtool(&["check", "config", "prometheus.yml"], stack.path());
    let datasources = provisioned_datasources();
    for uid in ["prometheus", "influxdb", "jaeger"] {
        assert!(datasources.contains(uid), "datasource {uid} provisioned");
    }
    let (boards, targets, variables) = dashboards(&datasources);
    let titles: Vec<&str> = boards.iter().map(|(t, _)| t.as_str()).collect();
    for title in [
        "Raven Overview",
        "gRPC Metrics",
        "Database Performance",
        "System Resources",
        "Raven Market",
    ] {
        assert!(titles.contains(&title), "dashboard {title:?} in {titles:?}");
    }

    // Raven A: InfluxDB and Redis (history from InfluxDB). Raven B: SQLite history, and
    // a feed that may stall without being replaced.
    let mut influx = Influxd::start().await;
    let redis_dir = tempfile::tempdir().expect("tempdir");
    let redis_port = free_port();
    let _redis = spawn_redis(redis_port, redis_dir.path());
    let (_sim_a, sim_a) = spawn_sim(0, &["--symbols", "2", "--rate", "200"]);
    let (sim_b_child, sim_b) = spawn_sim(0, &["--symbols", "2", "--rate", "200"]);
    let a = spawn_serve(
        &format!(
            "[influxdb]\nurl = \"{}\"\ndatabase = \"market_data\"\nbatch_interval_ms = 200\n\n[redis]\nurl = \"redis://127.0.0.1:{redis_port}\"\n\n{}",
            influx.url,
            venues(&sim_a, "")
        ),
        "[hub]\ntap_interval_ms = 200\n",
    );
    let b = spawn_serve(&venues(&sim_b, "stall_timeout_secs = 600\n"), "");
    let prom = Prometheus::start(
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\nscrape_configs:\n  - job_name: raven\n    static_configs:\n      - targets: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            a.metrics_port, b.metrics_port
        ),
        &[("alerts.yml", &rules_for_test())],
    )
    .await;
    let (a_instance, b_instance) = (
        format!("127.0.0.1:{}", a.metrics_port),
        format!("127.0.0.1:{}", b.metrics_port),
    );
    wait_synced(&a).await;
    wait_synced(&b).await;
    wait_until(
        "trades, bbo and book samples in InfluxDB",
        Duration::from_secs(60),
        || async {
            let mut all = true;
            for m in ["trades", "bbo", "book_top"] {
                all &=
                    has_values(&influxql(&influx.url, &format!("SELECT * FROM {m} LIMIT 1")).await);
            }
            all
        },
    )
    .await;
    requests(&a).await;
    requests(&b).await;

    // Every panel and variable returns data. Rates need two scrapes in their window,
    // so the queries are retried until they all answer or the deadline passes.
    let started = tokio::time::Instant::now();
    let all: Vec<&Query> = targets.iter().chain(&variables).collect();
    let mut failing: Vec<String> = Vec::new();
    while started.elapsed() < Duration::from_secs(90) {
        failing.clear();
        for q in &all {
            if let Some(m) = missing(q, &prom, &influx.url).await {
                failing.push(m);
            }
        }
        if failing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        failing.is_empty(),
        "{} of {} dashboard queries return no data:\n{}",
        failing.len(),
        all.len(),
        failing.join("\n")
    );
    let promql = targets
        .iter()
        .filter(|q| q.datasource == "prometheus")
        .count();
    eprintln!(
        "dashboards {boards:?}: {promql} PromQL and {} InfluxQL panel queries and {} variables return data",
        targets.len() - promql,
        variables.len()
    );

    // A healthy system raises no alert, even with every `for:` shortened.
    let firing = prom.firing().await;
    assert!(firing.is_empty(), "alerts on a healthy system: {firing:?}");

    // Faults. A: InfluxDB dies, so its store degrades and the backlog grows, and its
    // exchange skips a trade id. B: the feed goes silent (its stall timeout is far
    // away), then its exchange goes away.
    influx.kill();
    let (code, body) = http_post_json(
        &format!("http://{sim_a}/sim/fault"),
        &format!(r#"{{"fault":"trade_gap","symbol":"{}"}}"#, SYMBOLS[0]),
    )
    .await;
    assert_eq!(code, 200, "trade_gap refused: {body}");
    let (code, body) = http_post_json(
        &format!("http://{sim_b}/sim/fault"),
        r#"{"fault":"stall","seconds":600}"#,
    )
    .await;
    assert_eq!(code, 200, "stall refused: {body}");
    let mut expected: BTreeSet<(String, String)> = [
        ("RavenStoreDown", &a_instance),
        ("RavenStoreBacklogGrowing", &a_instance),
        ("RavenTradeIdsSkipped", &a_instance),
        ("RavenFeedSilent", &b_instance),
    ]
    .into_iter()
    .map(|(n, i)| (n.to_owned(), i.clone()))
    .collect();
    wait_alerts(&prom, &expected, &a, &b).await;

    // B's exchange goes away entirely: the feed is down.
    drop(sim_b_child);
    expected.insert(("RavenFeedDown".to_owned(), b_instance.clone()));
    wait_alerts(&prom, &expected, &a, &b).await;
    eprintln!("firing: {:?}", prom.firing().await);
}

/// Waits until every `expected` (alert, instance) is firing.
async fn wait_alerts(
    prom: &Prometheus,
    expected: &BTreeSet<(String, String)>,
    a: &Server,
    b: &Server,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let firing = prom.firing().await;
        if expected.is_subset(&firing) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alerts not firing: {:?}\nfiring: {firing:?}\nA metrics:\n{}\nB metrics:\n{}",
            expected.difference(&firing).collect::<Vec<_>>(),
            a.metrics().await,
            b.metrics().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
