//! Shared harness for Raven's end-to-end tests: real `raven sim` and `raven serve`
//! processes on free loopback ports, a gRPC client, an independent reference order book
//! built straight from the capture files, and an invariant checker that every message
//! a subscriber receives goes through.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use raven_proto::pb;
use raven_proto::pb::market_data_client::MarketDataClient;
use raven_proto::pb::server_message::Payload;
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_stream::StreamExt;

pub mod venues;

pub const RAVEN: &str = env!("CARGO_BIN_EXE_raven");

pub fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/captures")
}

/// A free loopback port below Linux's ephemeral range (32768+). Ports the OS hands out
/// for port 0 come from that range, which is also where every outgoing connection takes
/// its source port, so a port picked that way can be taken by a connection attempt
/// before the server that was meant to use it binds it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed when dropped.
pub struct Child {
    pub name: &'static str,
    pub proc: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// Starts `raven sim` with `args`; `port` 0 lets it choose. Returns the child and its address.
pub fn spawn_sim(port: u16, args: &[&str]) -> (Child, String) {
    let listen = format!("127.0.0.1:{port}");
    let mut proc = Command::new(RAVEN)
        .arg("sim")
        .args(["--listen", &listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn raven sim");
    let stdout = proc.stdout.take().expect("sim stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read sim banner");
    // Keep draining: a closed pipe would kill the sim at its next print.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    // "raven sim listening on ADDR" (a replay adds "(EXCHANGE)").
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains("listening on"),
        "raven sim did not start: {line:?}"
    );
    (Child { name: "sim", proc }, addr)
}

pub struct Server {
    pub child: Child,
    pub grpc: String,
    pub health_port: u16,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
}

/// Starts `raven serve` with the given `[[venues]]` (and optional `[hub]`) TOML.
pub fn spawn_serve(venues: &str, hub: &str) -> Server {
    spawn_serve_in(tempfile::tempdir().expect("tempdir"), venues, hub)
}

/// [`spawn_serve`] in `dir`, whose `data` directory a restarted server finds again.
pub fn spawn_serve_in(dir: tempfile::TempDir, venues: &str, hub: &str) -> Server {
    spawn_serve_full(dir, venues, hub, &[], "")
}

/// [`spawn_serve`] with extra environment variables for the server process (e.g. the
/// OpenTelemetry ones), which the configuration file cannot carry.
pub fn spawn_serve_with_env(venues: &str, hub: &str, env: &[(&str, &str)]) -> Server {
    spawn_serve_full(tempfile::tempdir().expect("tempdir"), venues, hub, env, "")
}

/// [`spawn_serve_in`] with extra `[server]` keys (`server` is TOML lines).
pub fn spawn_serve_with_server(
    dir: tempfile::TempDir,
    venues: &str,
    hub: &str,
    server: &str,
) -> Server {
    spawn_serve_full(dir, venues, hub, &[], server)
}

fn spawn_serve_full(
    dir: tempfile::TempDir,
    venues: &str,
    hub: &str,
    env: &[(&str, &str)],
    server: &str,
) -> Server {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let data = dir.path().join("data");
    let config = format!(
        "[server]\nhost = \"127.0.0.1\"\ngrpc_port = {grpc}\nhealth_port = {health}\nmetrics_port = {metrics}\nheartbeat_ms = 1000\ndata_dir = \"{}\"\n{server}\n\n{hub}\n\n{venues}\n",
        data.display()
    );
    let path = dir.path().join("raven.toml");
    std::fs::write(&path, config).expect("write config");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("serve.log"))
        .expect("log file");
    let err = log.try_clone().expect("log file");
    let proc = Command::new(RAVEN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        // The environment beats the file: an inherited RAVEN_DATA_DIR would have every
        // test server share that directory, a relative one in the source tree (cargo
        // runs the tests from crates/raven). Pinned, it stays in the test's temp dir.
        .env("RAVEN_DATA_DIR", &data)
        .envs(env.iter().copied())
        .stdout(log)
        .stderr(err)
        .spawn()
        .expect("spawn raven serve");
    Server {
        child: Child {
            name: "serve",
            proc,
        },
        grpc: format!("http://127.0.0.1:{grpc}"),
        health_port: health,
        metrics_port: metrics,
        dir,
    }
}

impl Server {
    /// Stops the server as `docker stop` would (SIGTERM, then wait) and hands back its
    /// directory for a restart.
    pub fn terminate(mut self) -> tempfile::TempDir {
        let pid = self.child.proc.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.proc.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub async fn client(&self) -> MarketDataClient<tonic::transport::Channel> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match MarketDataClient::connect(self.grpc.clone()).await {
                Ok(c) => return c.max_decoding_message_size(64 << 20),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to raven serve: {e}\n{}", self.log()),
            }
        }
    }

    pub async fn status(&self) -> pb::StatusResponse {
        self.client()
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("GetStatus")
            .into_inner()
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .1
    }
}

fn http() -> reqwest::Client {
    raven_venues::http::install_crypto_provider();
    reqwest::Client::new()
}

/// GET `url`: status and body, or `None` if nothing answered.
pub async fn try_http_get(url: &str) -> Option<(u16, String)> {
    let resp = http().get(url).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.unwrap_or_default()))
}

pub async fn http_get(url: &str) -> (u16, String) {
    try_http_get(url)
        .await
        .unwrap_or_else(|| panic!("GET {url}: no answer"))
}

pub async fn http_post_json(url: &str, body: &str) -> (u16, String) {
    let resp = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

/// Polls `check` until it returns true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every configured book of `server` is in sync.
pub async fn wait_synced(server: &Server) {
    wait_until("every book synced", Duration::from_secs(60), || async {
        let s = server.status().await;
        !s.books.is_empty() && s.books.iter().all(|b| b.state == "synced")
    })
    .await;
}

/// A synthetic one-symbol spot market (`SYN0USDT`) at `rate` frames/s and a Raven
/// serving `channels` of it with the given `[hub]` section, synced.
pub async fn one_symbol_rig(rate: u32, channels: &str, hub: &str) -> (Child, Server) {
    let (sim, sim_addr) = spawn_sim(0, &["--symbols", "1", "--rate", &rate.to_string()]);
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\"]\nchannels = {channels}\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n"
    );
    let server = spawn_serve(&venues, hub);
    wait_synced(&server).await;
    (sim, server)
}

/// The value of a Prometheus sample whose line starts with `prefix` (summed over lines).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------- subscriptions

pub fn topic(venue: &str, symbol: &str, channel: pb::Channel, depth: u32) -> pb::Topic {
    pb::Topic {
        venue: venue.into(),
        symbol: symbol.into(),
        channel: channel as i32,
        depth,
    }
}

pub struct Subscription {
    pub tx: tokio::sync::mpsc::Sender<pb::ClientMessage>,
    pub stream: tonic::Streaming<pb::ServerMessage>,
}

impl Subscription {
    pub async fn open(
        client: &mut MarketDataClient<tonic::transport::Channel>,
        topics: Vec<pb::Topic>,
    ) -> Subscription {
        Self::request(
            client,
            pb::SubscribeRequest {
                topics,
                ..Default::default()
            },
        )
        .await
    }

    /// Subscribes `topic` where a client left off: after `after`, in `epoch`.
    pub async fn resume(
        client: &mut MarketDataClient<tonic::transport::Channel>,
        topic: &pb::Topic,
        epoch: u64,
        after: u64,
    ) -> Subscription {
        let resume = vec![pb::Resume {
            topic: Some(topic.clone()),
            epoch,
            after_sequence: after,
        }];
        Self::request(
            client,
            pb::SubscribeRequest {
                resume,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn request(
        client: &mut MarketDataClient<tonic::transport::Channel>,
        request: pb::SubscribeRequest,
    ) -> Subscription {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let msg = pb::ClientMessage {
            kind: Some(pb::client_message::Kind::Subscribe(request)),
        };
        tx.send(msg).await.expect("queue subscribe");
        let stream = client
            .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("Subscribe")
            .into_inner();
        Subscription { tx, stream }
    }

    /// The next message, or `None` on timeout/end.
    pub async fn next(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<pb::ServerMessage, tonic::Status>> {
        tokio::time::timeout(timeout, self.stream.next())
            .await
            .ok()
            .flatten()
    }
}

// ---------------------------------------------------------------- reference books

/// The simplest possible book: sorted maps of exact decimals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefBook {
    pub bids: BTreeMap<Decimal, Decimal>,
    pub asks: BTreeMap<Decimal, Decimal>,
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().expect("decimal string")).expect("decimal")
}

impl RefBook {
    fn apply_json(&mut self, bids: &Value, asks: &Value) {
        for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            for l in levels.as_array().expect("levels") {
                let (p, q) = (dec(&l[0]), dec(&l[1]));
                if q.is_zero() {
                    side.remove(&p);
                } else {
                    side.insert(p, q);
                }
            }
        }
    }

    pub fn apply_levels(&mut self, bids: &[pb::PriceLevel], asks: &[pb::PriceLevel]) {
        for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            for l in levels {
                let p = Decimal::from_str(&l.price).expect("price");
                let q = Decimal::from_str(&l.quantity).expect("qty");
                assert!(p > Decimal::ZERO, "non-positive price {}", l.price);
                assert!(q >= Decimal::ZERO, "negative quantity {}", l.quantity);
                if q.is_zero() {
                    side.remove(&p);
                } else {
                    side.insert(p, q);
                }
            }
        }
    }

    pub fn from_snapshot(s: &pb::BookSnapshot) -> RefBook {
        let mut b = RefBook::default();
        for l in s.bids.iter().chain(&s.asks) {
            assert!(
                Decimal::from_str(&l.quantity).expect("qty") > Decimal::ZERO,
                "zero quantity in a snapshot"
            );
        }
        b.apply_levels(&s.bids, &s.asks);
        b
    }

    pub fn is_crossed(&self) -> bool {
        matches!((self.bids.last_key_value(), self.asks.first_key_value()), (Some((b, _)), Some((a, _))) if b >= a)
    }
}

/// Every recv/http line of a capture, decoded.
pub fn read_capture(name: &str) -> Vec<Value> {
    let file = std::fs::File::open(captures_dir().join(name))
        .unwrap_or_else(|e| panic!("open capture {name}: {e}"));
    let mut text = String::new();
    zstd::Decoder::new(file)
        .expect("zstd")
        .read_to_string(&mut text)
        .expect("read capture");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("capture line"))
        .collect()
}

/// The books a correct connector must hold: per symbol, the state after every applied
/// update id, built from the recorded snapshot and diffs by Binance's procedure.
pub struct Reference {
    pub states: HashMap<String, BTreeMap<u64, RefBook>>,
    pub trades: HashMap<String, u64>,
    pub symbols: Vec<String>,
}

impl Reference {
    pub fn final_book(&self, symbol: &str) -> &RefBook {
        self.states[symbol].values().next_back().expect("a state")
    }
}

/// `futures`: USD-M rules (drop u < L; first U <= L <= u) instead of spot (drop u <= L).
pub fn reference(lines: &[Value], futures: bool) -> Reference {
    let mut snapshots: HashMap<String, Value> = HashMap::new();
    let mut trades: HashMap<String, u64> = HashMap::new();
    let mut diffs: HashMap<String, Vec<Value>> = HashMap::new();
    for line in lines {
        match line["t"].as_str() {
            Some("http") => {
                let url = line["url"].as_str().unwrap_or_default();
                if let Some(sym) = url
                    .split("symbol=")
                    .nth(1)
                    .map(|s| s.split('&').next().unwrap_or(s).to_owned())
                {
                    if url.contains("depth") {
                        let body: Value =
                            serde_json::from_str(line["data"].as_str().expect("data"))
                                .expect("snapshot json");
                        snapshots.insert(sym, body);
                    }
                }
            }
            Some("recv") => {
                let frame: Value =
                    serde_json::from_str(line["data"].as_str().expect("data")).expect("frame json");
                let data = &frame["data"];
                let sym = data["s"].as_str().unwrap_or_default().to_owned();
                match data["e"].as_str() {
                    Some("depthUpdate") => diffs.entry(sym).or_default().push(data.clone()),
                    Some("aggTrade") | Some("trade") => *trades.entry(sym).or_default() += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut states = HashMap::new();
    let mut symbols: Vec<String> = snapshots.keys().cloned().collect();
    symbols.sort();
    for sym in &symbols {
        let snap = &snapshots[sym];
        let last = snap["lastUpdateId"].as_u64().expect("lastUpdateId");
        let mut book = RefBook::default();
        book.apply_json(&snap["bids"], &snap["asks"]);
        let mut by_id = BTreeMap::new();
        by_id.insert(last, book.clone());
        for d in diffs.get(sym).into_iter().flatten() {
            let u = d["u"].as_u64().expect("u");
            if (futures && u < last) || (!futures && u <= last) {
                continue;
            }
            book.apply_json(&d["b"], &d["a"]);
            by_id.insert(u, book.clone());
        }
        states.insert(sym.clone(), by_id);
    }
    Reference {
        states,
        trades,
        symbols,
    }
}

// ---------------------------------------------------------------- invariants

#[derive(Default)]
pub struct TopicState {
    last_sequence: Option<u64>,
    /// A book topic holds a snapshot (false after a reset until the next one).
    pub has_snapshot: bool,
}

/// Checks the stream contract on every message and keeps what the client would hold.
#[derive(Default)]
pub struct Checker {
    pub topics: HashMap<(String, String, i32, u32), TopicState>,
    pub books: HashMap<String, RefBook>,
    /// (symbol, last_update_id, book) after every snapshot and delta, in order.
    pub published: Vec<(String, u64, RefBook)>,
    pub trades: HashMap<String, u64>,
    pub resets: HashMap<String, u64>,
    pub snapshots: HashMap<String, u64>,
    pub conflated: u64,
    pub dropped: u64,
    pub acks: Vec<pb::Ack>,
    /// Spot streams: every delta must continue the previous update id exactly
    /// (`first == previous last + 1`) unless a reset and snapshot came between.
    pub spot_continuity: bool,
    /// Skip recording `published` (a book copy per message) where a test reads fast.
    pub no_history: bool,
    pub last_update: HashMap<String, u64>,
}

impl Checker {
    pub fn check(&mut self, m: &pb::ServerMessage) {
        let Some(t) = &m.topic else { return };
        let key = (t.venue.clone(), t.symbol.clone(), t.channel, t.depth);
        let sym = t.symbol.clone();
        let state = self.topics.entry(key.clone()).or_default();
        let payload = m.payload.as_ref().expect("payload");
        if let Payload::Ack(a) = payload {
            self.acks.push(a.clone());
            return;
        }
        let conflated = matches!(payload, Payload::BookSnapshot(s) if s.conflated);
        if let Some(prev) = state.last_sequence {
            match payload {
                Payload::Dropped(d) => assert_eq!(
                    m.sequence,
                    prev + d.count,
                    "{key:?}: a drop notice covers exactly the skipped numbers"
                ),
                _ if conflated || matches!(payload, Payload::BookReset(_)) => {
                    assert!(m.sequence > prev, "{key:?}: sequence went backwards")
                }
                _ => assert_eq!(
                    m.sequence,
                    prev + 1,
                    "{key:?}: sequence numbers must be contiguous"
                ),
            }
        }
        state.last_sequence = Some(m.sequence);
        assert!(m.send_time_ns > 0, "send time missing");
        match payload {
            Payload::BookSnapshot(s) => {
                state.has_snapshot = true;
                self.conflated += u64::from(s.conflated);
                let book = RefBook::from_snapshot(s);
                assert!(!book.is_crossed(), "{sym}: crossed snapshot published");
                if t.depth == 0 {
                    *self.snapshots.entry(sym.clone()).or_default() += 1;
                    self.last_update.insert(sym.clone(), s.last_update_id);
                    self.published
                        .push((sym.clone(), s.last_update_id, book.clone()));
                    self.books.insert(sym, book);
                }
            }
            Payload::BookDelta(d) => {
                assert!(state.has_snapshot, "{sym}: delta before snapshot");
                if self.spot_continuity {
                    let prev = self.last_update[&sym];
                    assert!(
                        d.first_update_id <= prev + 1 && prev < d.last_update_id,
                        "{sym}: delta {}..={} published across a gap after {prev}",
                        d.first_update_id,
                        d.last_update_id
                    );
                }
                self.last_update.insert(sym.clone(), d.last_update_id);
                let book = self.books.get_mut(&sym).expect("book for delta");
                book.apply_levels(&d.bids, &d.asks);
                assert!(
                    !book.is_crossed(),
                    "{sym}: crossed book published at update {}",
                    d.last_update_id
                );
                if !self.no_history {
                    self.published.push((sym, d.last_update_id, book.clone()));
                }
            }
            Payload::BookReset(_) => {
                state.has_snapshot = false;
                *self.resets.entry(sym).or_default() += 1;
            }
            Payload::Trade(tr) => {
                assert!(Decimal::from_str(&tr.price).expect("price") > Decimal::ZERO);
                assert!(Decimal::from_str(&tr.quantity).expect("qty") > Decimal::ZERO);
                *self.trades.entry(sym).or_default() += 1;
            }
            Payload::Dropped(d) => self.dropped += d.count,
            _ => {}
        }
    }
}

/// A real `influxd` (Debian's `influxdb` 1.x, installed by scripts/setup-services.sh)
/// on a free port in a temp dir; it can be killed and restarted on the same port and
/// data, the way an outage looks to Raven.
pub struct Influxd {
    child: Option<Child>,
    pub url: String,
    port: u16,
    rpc: u16,
    dir: tempfile::TempDir,
}

impl Influxd {
    pub async fn start() -> Influxd {
        let mut influx = Influxd {
            child: None,
            url: String::new(),
            port: free_port(),
            rpc: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        influx.url = format!("http://127.0.0.1:{}", influx.port);
        influx.restart().await;
        influx
    }

    /// SIGKILL: no goodbye, like a crashed or unplugged server.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Starts it again on the same port and data; returns once it answers `/ping`.
    pub async fn restart(&mut self) {
        let d = self.dir.path().display();
        let (port, rpc) = (self.port, self.rpc);
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n"
        );
        std::fs::write(self.dir.path().join("influxdb.conf"), config).expect("config");
        let bin = std::env::var("INFLUXD").unwrap_or_else(|_| "/usr/bin/influxd".to_owned());
        let proc = Command::new(&bin)
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} (scripts/setup-services.sh installs it): {e}"));
        self.child = Some(Child {
            name: "influxd",
            proc,
        });
        let url = self.url.clone();
        wait_until("influxd answers /ping", Duration::from_secs(30), || async {
            try_http_get(&format!("{url}/ping"))
                .await
                .is_some_and(|(code, _)| code == 204)
        })
        .await;
    }
}

/// A real `redis-server` (scripts/setup-services.sh installs it) on `port`, without
/// persistence, in `dir`.
pub fn spawn_redis(port: u16, dir: &Path) -> Child {
    let proc = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/setup-services.sh installs it)");
    Child {
        name: "redis",
        proc,
    }
}
