//! End-to-end benchmark: `raven sim` → `raven serve` → N gRPC subscribers, all real
//! processes on loopback.
//!
//! The hub micro-benchmarks measure fan-out in isolation; this measures what a client
//! actually sees: the WebSocket read, JSON decode, book update, encode, per-subscriber
//! queue, HTTP/2 and protobuf decode in the client. For each scenario it starts a
//! synthetic spot simulator and the release `raven serve` on free ports, waits for
//! `/health/ready`, opens N `Subscribe` streams (full book `*` at depth 0 plus trades
//! `*`), lets them warm up, then records for a fixed window:
//!
//! * **rates**: frames/s the simulator generated (`/sim/stats` `frames_sent`, every
//!   stream: depth, aggTrade, trade, bookTicker), frames/s Raven read from its WebSocket
//!   (`raven_feed_frames_total`, only the streams it subscribes to), messages/s each
//!   subscriber received and the total;
//! * **latency**, per data message (book delta, trade): client receive wall clock −
//!   `receive_time_ns` (Raven's own latency including gRPC transport and the client's
//!   decode), `send_time_ns − receive_time_ns` (inside Raven, up to the hand-off to the
//!   transport) and client receive − `exchange_time_ns` (from the simulator's `E`, which
//!   Binance gives in **milliseconds**: it adds 0–1 ms of truncation plus the sim's
//!   batching (`--sim-batch-us`), so only its tail is meaningful);
//! * **resources**: CPU of Raven, the simulator, this bench process and the rest of the
//!   machine over the window (`/proc/<pid>/stat` utime+stime and `/proc/stat`, % of one
//!   core; a busy "other" means the run was disturbed), Raven's RSS at the end, the book
//!   levels it holds and how long it took from start until every book was synced;
//! * **slow-consumer events**: conflated snapshots and `Dropped` notices the clients saw
//!   (0 when everyone keeps up) and streams that ended with an error.
//!
//! Latency samples are kept whole (a sorted `Vec<u64>`), so percentiles are exact.
//!
//! Everything — simulator, server and these clients — shares the machine's cores, so
//! the numbers are a lower bound for Raven on a dedicated box; the output says so.
//!
//! Usage (`scripts/bench-e2e.sh` wraps the first):
//!
//! ```text
//! cargo bench -p raven --bench e2e                       # all scenarios
//! cargo bench -p raven --bench e2e -- latency memory     # some of them
//! cargo bench -p raven --bench e2e -- --duration 30 --warmup 5
//! cargo bench -p raven --bench e2e -- fanout --rate 20000 --subscribers 50
//! cargo bench -p raven --bench e2e -- isolation --tls      # gRPC over TLS
//! ```
//!
//! `--tls` serves the gRPC port over TLS with a certificate made for the run (rcgen),
//! and every client connects with it: the difference to a plain run is what TLS costs.
//!
//! `--sim-batch-us MICROS` sets the simulator's shortest time between two batches
//! (`raven sim --batch-us`; 1000 gives the millisecond bursts of earlier runs).
//!
//! `--batch-us MICROS` has every subscriber ask for that batch delay
//! (`SubscribeRequest.max_batch_delay_us`): fewer, larger writes for up to that much
//! latency.
//!
//! `--raven-workers N` gives Raven's runtime N worker threads (`TOKIO_WORKER_THREADS`)
//! instead of one per CPU.
//!
//! `--pin-raven CPU` starts Raven on that CPU alone (`taskset`, so its runtime sizes
//! itself to one worker) and moves this process, its clients and the simulator to the
//! other CPUs: Raven's latency without the load generator competing for its core.
//!
//! Environment equivalents: `RAVEN_E2E_SCENARIOS` (comma-separated),
//! `RAVEN_E2E_DURATION`, `RAVEN_E2E_WARMUP` (seconds).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use raven_proto::pb;
use raven_proto::pb::market_data_client::MarketDataClient;
use raven_proto::pb::server_message::Payload;
use tokio_stream::StreamExt;

const RAVEN: &str = env!("CARGO_BIN_EXE_raven");
const VENUE: &str = "binance_spot";
/// Linux USER_HZ: the unit of utime/stime in `/proc/<pid>/stat`.
const CLOCK_TICKS: f64 = 100.0;

// ---------------------------------------------------------------- scenarios and options

#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    what: String,
    symbols: usize,
    levels: usize,
    /// Simulator `--rate`: frames/s generated over all symbols and streams.
    rate: u64,
    subscribers: usize,
    snapshot_limit: Option<u32>,
    /// Add one hostile stream beside the measured subscribers (see [`run_hostile`]).
    hostile: bool,
    target: &'static str,
}

fn default_scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "latency",
            what: "(a) 50 k msgs/s, 10 subscribers".into(),
            symbols: 10,
            levels: 1000,
            rate: 50_000,
            subscribers: 10,
            snapshot_limit: None,
            hostile: false,
            target: "p99 ≤ 1 ms",
        },
        Scenario {
            name: "fanout",
            what: "(b) 10 k msgs/s, 100 subscribers".into(),
            symbols: 10,
            levels: 1000,
            rate: 10_000,
            subscribers: 100,
            snapshot_limit: None,
            hostile: false,
            target: "report deliveries/s",
        },
        Scenario {
            name: "memory",
            what: "(c) 100 books × 5 000 levels".into(),
            symbols: 100,
            levels: 5000,
            rate: 2_000,
            subscribers: 1,
            snapshot_limit: Some(5000),
            hostile: false,
            target: "RSS ≤ 150 MB",
        },
        Scenario {
            name: "isolation",
            what: "(d) 10 k frames/s, 1 subscriber, no hostile stream".into(),
            symbols: 10,
            levels: 1000,
            rate: 14_700,
            subscribers: 1,
            snapshot_limit: None,
            hostile: false,
            target: "baseline for (e)",
        },
        Scenario {
            name: "hostile",
            what: "(e) as (d) plus one hostile stream".into(),
            symbols: 10,
            levels: 1000,
            rate: 14_700,
            subscribers: 1,
            snapshot_limit: None,
            hostile: true,
            target: "p99 and Raven read/s within 10 % of (d)",
        },
    ]
}

struct Options {
    scenarios: Vec<Scenario>,
    warmup: Duration,
    duration: Duration,
    /// Serve gRPC over TLS (a certificate made for the run) and connect with it.
    tls: bool,
    /// Run Raven on this CPU alone and everything else on the others.
    pin_raven: Option<usize>,
    /// The simulator's `--batch-us` (its own default when not given).
    sim_batch_us: Option<u64>,
    /// Raven's runtime worker threads (tokio's `TOKIO_WORKER_THREADS`; one per CPU when
    /// not given).
    raven_workers: Option<usize>,
    /// The batch delay every subscriber asks for.
    batch_us: Option<u32>,
}

const USAGE: &str =
    "usage: cargo bench -p raven --bench e2e -- [latency|fanout|memory|isolation|hostile ...] \
[--duration SECS] [--warmup SECS] [--rate MSGS_PER_S] [--subscribers N] [--tls] [--pin-raven CPU] [--sim-batch-us MICROS] [--raven-workers N] [--batch-us MICROS]";

fn parse_options() -> Result<Options> {
    let secs = |what: &str, v: &str| -> Result<Duration> {
        let s: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("{what}: {v:?} is not a number of seconds"))?;
        if !(s.is_finite() && s > 0.0) {
            bail!("{what}: {v:?} must be a positive number of seconds");
        }
        Ok(Duration::from_secs_f64(s))
    };
    let mut warmup = Duration::from_secs(3);
    let mut duration = Duration::from_secs(15);
    let mut names: Vec<String> = Vec::new();
    let (mut rate, mut subscribers): (Option<u64>, Option<usize>) = (None, None);
    let mut tls = false;
    let mut pin_raven: Option<usize> = None;
    let mut sim_batch_us: Option<u64> = None;
    let mut raven_workers: Option<usize> = None;
    let mut batch_us: Option<u32> = None;
    if let Ok(v) = std::env::var("RAVEN_E2E_DURATION") {
        duration = secs("RAVEN_E2E_DURATION", &v)?;
    }
    if let Ok(v) = std::env::var("RAVEN_E2E_WARMUP") {
        warmup = secs("RAVEN_E2E_WARMUP", &v)?;
    }
    if let Ok(v) = std::env::var("RAVEN_E2E_SCENARIOS") {
        names.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            // cargo passes --bench to harness = false targets.
            "--bench" => {}
            "--duration" => duration = secs("--duration", &value("--duration")?)?,
            "--warmup" => warmup = secs("--warmup", &value("--warmup")?)?,
            "--rate" => {
                let v = value("--rate")?;
                rate = Some(
                    v.parse()
                        .with_context(|| format!("--rate: {v:?} is not a whole number"))?,
                );
            }
            "--subscribers" => {
                let v = value("--subscribers")?;
                subscribers = Some(
                    v.parse()
                        .with_context(|| format!("--subscribers: {v:?} is not a whole number"))?,
                );
            }
            "--tls" => tls = true,
            "--pin-raven" => {
                let v = value("--pin-raven")?;
                let cpu: usize = v
                    .parse()
                    .with_context(|| format!("--pin-raven: {v:?} is not a CPU number"))?;
                let cpus = machine_cpus();
                if cpus < 2 || cpu >= cpus {
                    bail!("--pin-raven: CPU {cpu} leaves no other CPU of the machine's {cpus}");
                }
                pin_raven = Some(cpu);
            }
            "--raven-workers" => {
                let v = value("--raven-workers")?;
                raven_workers = match v.parse() {
                    Ok(n) if n > 0 => Some(n),
                    _ => bail!("--raven-workers: {v:?} is not a positive whole number"),
                };
            }
            "--batch-us" => {
                let v = value("--batch-us")?;
                batch_us = Some(v.parse().with_context(|| {
                    format!("--batch-us: {v:?} is not a whole number of microseconds")
                })?);
            }
            "--sim-batch-us" => {
                let v = value("--sim-batch-us")?;
                sim_batch_us = Some(v.parse().with_context(|| {
                    format!("--sim-batch-us: {v:?} is not a whole number of microseconds")
                })?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            f if f.starts_with('-') => bail!("unknown flag {f}\n{USAGE}"),
            _ => names.push(arg),
        }
    }

    let all = default_scenarios();
    let mut scenarios = if names.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for n in &names {
            let s = all
                .iter()
                .find(|s| s.name == n || s.what.starts_with(&format!("({n})")))
                .ok_or_else(|| {
                    anyhow!(
                        "unknown scenario {n:?}: choose from latency (a), fanout (b), memory (c), isolation (d), hostile (e)"
                    )
                })?;
            chosen.push(s.clone());
        }
        chosen
    };
    for s in &mut scenarios {
        if let Some(r) = rate {
            s.rate = r;
        }
        if let Some(n) = subscribers {
            s.subscribers = n;
        }
        if rate.is_some() || subscribers.is_some() {
            // The default title names the default load; say what runs instead.
            let letter = s.what.split_once(' ').map_or("", |(l, _)| l).to_owned();
            s.what = format!(
                "{letter} {}: sim {} msgs/s, {} subscribers{}",
                s.name,
                s.rate,
                s.subscribers,
                if s.hostile {
                    ", plus one hostile stream"
                } else {
                    ""
                }
            );
        }
        if tls {
            if s.hostile {
                bail!(
                    "--tls: the hostile client of ({}) speaks plain text only",
                    s.name
                );
            }
            s.what.push_str(", over TLS");
        }
        if let Some(cpu) = pin_raven {
            s.what.push_str(&format!(", Raven alone on CPU {cpu}"));
        }
        if let Some(n) = raven_workers {
            s.what
                .push_str(&format!(", Raven on {n} runtime worker(s)"));
        }
        if let Some(us) = sim_batch_us {
            s.what.push_str(&format!(", sim batches ≥ {us} µs apart"));
        }
        if let Some(us) = batch_us {
            s.what.push_str(&format!(", batch delay {us} µs"));
        }
    }
    Ok(Options {
        scenarios,
        warmup,
        duration,
        tls,
        pin_raven,
        sim_batch_us,
        raven_workers,
        batch_us,
    })
}

// ---------------------------------------------------------------- processes

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr().context("local addr")?.port())
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Starts `raven sim` on a free port; returns it and its `host:port`.
fn spawn_sim(s: &Scenario, opts: &Options) -> Result<(Child, String)> {
    let mut command = Command::new(RAVEN);
    command.arg("sim");
    if let Some(us) = opts.sim_batch_us {
        command.args(["--batch-us", &us.to_string()]);
    }
    let mut proc = command
        .args(["--listen", "127.0.0.1:0", "--venue", "spot"])
        .args(["--symbols", &s.symbols.to_string()])
        .args(["--rate", &s.rate.to_string()])
        .args(["--levels", &s.levels.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {RAVEN} sim"))?;
    let stdout = proc.stdout.take().context("sim stdout")?;
    let child = Child(proc);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).context("read the sim banner")?;
    // Keep draining: a closed pipe would kill the sim at its next print.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    if !line.contains("listening on") {
        bail!("raven sim did not start: {line:?}");
    }
    // "raven sim listening on ADDR (VENUE)".
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    Ok((child, addr))
}

/// How clients reach the server's gRPC port: its URL, and the CA to trust when it
/// speaks TLS (its certificate names `localhost`).
#[derive(Clone)]
struct Dial {
    url: String,
    ca: Option<Vec<u8>>,
}

impl Dial {
    async fn channel(&self) -> Result<tonic::transport::Channel> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.url.clone())
            .with_context(|| format!("endpoint {}", self.url))?;
        if let Some(ca) = &self.ca {
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                        .domain_name("localhost"),
                )
                .context("TLS settings")?;
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("connect {}", self.url))
    }
}

/// A CA and a `localhost` certificate it signed, in `dir`; the `[server.tls]` lines
/// naming them, and the CA's PEM.
fn make_tls(dir: &Path) -> Result<(String, Vec<u8>)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().context("CA key")?;
    let ca = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().context("server key")?;
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .context("server params")?
        .signed_by(&key, &issuer)
        .context("server certificate")?;
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert_path, cert.pem()).context("write the certificate")?;
    std::fs::write(&key_path, key.serialize_pem()).context("write the key")?;
    let lines = format!(
        "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    );
    Ok((lines, ca.pem().into_bytes()))
}

struct Server {
    child: Child,
    grpc: Dial,
    health_port: u16,
    metrics_port: u16,
    dir: tempfile::TempDir,
}

/// Starts `raven serve` pointed at the simulator at `sim_addr`, its gRPC port over TLS
/// when `tls`.
fn spawn_serve(s: &Scenario, sim_addr: &str, opts: &Options) -> Result<Server> {
    let tls = opts.tls;
    let dir = tempfile::tempdir().context("tempdir")?;
    let (tls_lines, ca) = if tls {
        let (lines, ca) = make_tls(dir.path())?;
        (lines, Some(ca))
    } else {
        (String::new(), None)
    };
    let (grpc, health, metrics) = (free_port()?, free_port()?, free_port()?);
    let symbols: Vec<String> = (0..s.symbols).map(|i| format!("\"SYN{i}USDT\"")).collect();
    let limit = s
        .snapshot_limit
        .map(|l| format!("snapshot_limit = {l}\n"))
        .unwrap_or_default();
    let data = dir.path().join("data");
    let config = format!(
        "[server]\nhost = \"127.0.0.1\"\ngrpc_port = {grpc}\nhealth_port = {health}\nmetrics_port = {metrics}\nheartbeat_ms = 1000\ndata_dir = \"{}\"\n{tls_lines}\n\
         [[venues]]\nvenue = \"{VENUE}\"\nsymbols = [{}]\nchannels = [\"trades\", \"book\"]\n\
         ws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n\
         rest_weight_per_minute = 1000000\n{limit}",
        data.display(),
        symbols.join(", ")
    );
    let path = dir.path().join("raven.toml");
    std::fs::write(&path, config).context("write config")?;
    let log = std::fs::File::create(dir.path().join("serve.log")).context("log file")?;
    let err = log.try_clone().context("log file")?;
    // `taskset` execs Raven, so the pid (for CPU and RSS readings) is Raven's.
    let mut command = match opts.pin_raven {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), RAVEN]);
            c
        }
        None => Command::new(RAVEN),
    };
    if let Some(n) = opts.raven_workers {
        command.env("TOKIO_WORKER_THREADS", n.to_string());
    }
    let proc = command
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        // The environment beats the file: an inherited RAVEN_DATA_DIR (a shell with the
        // deployment's variables) would put the SQLite history there, a relative one in
        // the source tree (cargo runs the bench from crates/raven). Pinned, it stays in
        // the temp dir removed with `Server`. An inherited store URL would have the run
        // write to someone's Redis or InfluxDB, and measure them too.
        .env("RAVEN_DATA_DIR", &data)
        .env_remove("REDIS_URL")
        .env_remove("INFLUXDB_URL")
        .env_remove("SERVER_HOST")
        .env_remove("SERVER_PORT")
        .env_remove("HEALTH_PORT")
        .env_remove("METRICS_PORT")
        .stdout(log)
        .stderr(err)
        .spawn()
        .with_context(|| format!("spawn {RAVEN} serve"))?;
    Ok(Server {
        child: Child(proc),
        grpc: Dial {
            url: format!(
                "{}://127.0.0.1:{grpc}",
                if ca.is_some() { "https" } else { "http" }
            ),
            ca,
        },
        health_port: health,
        metrics_port: metrics,
        dir,
    })
}

impl Server {
    /// The last lines of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&self, http: &reqwest::Client, timeout: Duration) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/health/ready", self.health_port);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "raven serve not ready after {timeout:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn metrics(&self, http: &reqwest::Client) -> Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        http.get(&url)
            .send()
            .await
            .context("GET /metrics")?
            .text()
            .await
            .context("read /metrics")
    }

    /// One read of `/metrics` at a window's edge: `raven_feed_frames_total` (summed
    /// over its label sets) and the cumulative buckets of
    /// `raven_publish_latency_seconds` (upper bound, count).
    async fn window_edge(&self, http: &reqwest::Client) -> Result<(u64, Vec<(f64, u64)>)> {
        let text = self.metrics(http).await?;
        let frames = text
            .lines()
            .filter(|l| l.starts_with("raven_feed_frames_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
        let buckets = text
            .lines()
            .filter_map(|l| l.strip_prefix("raven_publish_latency_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (le, count) = l.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse::<f64>().ok()? as u64))
            })
            .collect();
        Ok((frames, buckets))
    }
}

/// The server's view of its books, over gRPC.
async fn book_status(grpc: &Dial) -> Result<Vec<pb::BookStatus>> {
    let mut client = MarketDataClient::new(grpc.channel().await?);
    Ok(client
        .get_status(pb::GetStatusRequest {})
        .await
        .context("GetStatus")?
        .into_inner()
        .books)
}

/// Waits until `/health/ready` answers 200 and every configured book is synced.
async fn wait_synced(
    server: &Server,
    http: &reqwest::Client,
    books: usize,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    server.wait_ready(http, timeout).await?;
    loop {
        let status = book_status(&server.grpc).await?;
        let synced = status.iter().filter(|b| b.state == "synced").count();
        if status.len() >= books && synced == status.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {synced} of {books} books synced after {timeout:?}; log tail:\n{}",
                server.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A counter read at a moment: rates divide by the time between two reads, not by the
/// recording window, so a slow HTTP answer under load does not skew them.
#[derive(Clone, Copy)]
struct Reading(u64, Instant);

fn rate(a: Reading, b: Reading) -> f64 {
    b.0.saturating_sub(a.0) as f64 / b.1.duration_since(a.1).as_secs_f64().max(1e-9)
}

async fn sim_frames_sent(http: &reqwest::Client, sim_addr: &str) -> Result<u64> {
    let url = format!("http://{sim_addr}/sim/stats");
    let body: serde_json::Value = serde_json::from_str(
        &http
            .get(&url)
            .send()
            .await
            .context("GET /sim/stats")?
            .text()
            .await
            .context("read /sim/stats")?,
    )
    .context("/sim/stats is not JSON")?;
    body["frames_sent"]
        .as_u64()
        .ok_or_else(|| anyhow!("/sim/stats has no frames_sent: {body}"))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses: state is f[0], utime f[11], stime f[12].
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .context("malformed /proc stat")
    };
    Ok(num(11)? + num(12)?)
}

/// Busy ticks of the whole machine (every CPU) from `/proc/stat`.
fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    if f.len() < 8 {
        bail!("malformed /proc/stat: {line:?}");
    }
    Ok(f[0] + f[1] + f[2] + f[5] + f[6] + f[7])
}

/// CPU ticks of Raven, the simulator, this process and the whole machine.
fn cpu_sample(raven: u32, sim: u32) -> Result<[u64; 4]> {
    Ok([
        cpu_ticks(raven)?,
        cpu_ticks(sim)?,
        cpu_ticks(std::process::id())?,
        machine_busy_ticks()?,
    ])
}

/// (VmRSS, VmHWM) of `pid`, in bytes.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("malformed {line:?}"))?;
        Ok(kb * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

// ---------------------------------------------------------------- subscribers

const WARMUP: u8 = 0;
const RECORD: u8 = 1;
const DONE: u8 = 2;

/// What one subscriber saw during the recording window.
#[derive(Default)]
struct SubResult {
    delivered: u64,
    /// Client receive − `receive_time_ns`, ns.
    raven: Vec<u64>,
    /// `send_time_ns` − `receive_time_ns`, ns.
    internal: Vec<u64>,
    /// Client receive − `exchange_time_ns`, ns.
    exchange: Vec<u64>,
    /// Over the whole run, warm-up included.
    conflated: u64,
    dropped: u64,
    rejected: u64,
    error: Option<String>,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn topic(symbol: &str, channel: pb::Channel) -> pb::Topic {
    pb::Topic {
        venue: VENUE.into(),
        symbol: symbol.into(),
        channel: channel as i32,
        depth: 0,
    }
}

/// Connects its own HTTP/2 connection and subscribes to every book and trade.
async fn open_subscriber(
    dial: Dial,
    batch_us: Option<u32>,
) -> Result<(
    tokio::sync::mpsc::Sender<pb::ClientMessage>,
    tonic::Streaming<pb::ServerMessage>,
)> {
    let mut client =
        MarketDataClient::new(dial.channel().await?).max_decoding_message_size(256 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let topics = vec![
        topic("*", pb::Channel::Book),
        topic("*", pb::Channel::Trades),
    ];
    let msg = pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics,
            max_batch_delay_us: batch_us,
            ..Default::default()
        })),
    };
    tx.send(msg).await.context("queue the subscribe request")?;
    let stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("Subscribe")?
        .into_inner();
    Ok((tx, stream))
}

async fn run_subscriber(
    _tx: tokio::sync::mpsc::Sender<pb::ClientMessage>,
    mut stream: tonic::Streaming<pb::ServerMessage>,
    phase: Arc<AtomicU8>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> SubResult {
    let mut r = SubResult::default();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            biased;
            _ = &mut stopped => break,
            m = stream.next() => m,
        };
        let now = wall_ns();
        let m = match msg {
            Some(Ok(m)) => m,
            Some(Err(status)) => {
                r.error = Some(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
            None => {
                r.error = Some("stream ended".into());
                break;
            }
        };
        let phase = phase.load(Relaxed);
        if phase == DONE {
            break;
        }
        let data = match &m.payload {
            Some(Payload::BookDelta(_)) | Some(Payload::Trade(_)) => true,
            Some(Payload::BookSnapshot(s)) => {
                r.conflated += u64::from(s.conflated);
                false
            }
            Some(Payload::Dropped(d)) => {
                r.dropped += d.count;
                false
            }
            Some(Payload::Ack(a)) => {
                r.rejected += u64::from(a.result == pb::ack::Result::Rejected as i32);
                continue;
            }
            Some(Payload::Heartbeat(_)) | Some(Payload::Pong(_)) | None => continue,
            Some(_) => false,
        };
        if phase != RECORD {
            continue;
        }
        r.delivered += 1;
        if data && m.receive_time_ns > 0 {
            r.raven.push(now.saturating_sub(m.receive_time_ns));
            r.internal
                .push(m.send_time_ns.saturating_sub(m.receive_time_ns));
            if m.exchange_time_ns > 0 {
                r.exchange.push(now.saturating_sub(m.exchange_time_ns));
            }
        }
    }
    r
}

/// The hostile client's process: subscribes as [`run_hostile`] says and prints, every
/// 200 ms, the messages and bytes received so far; until killed.
fn hostile_client(url: String) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the hostile client's runtime");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    match rt.block_on(run_hostile(url, stop_rx)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The hostile stream of scenario (e): what a client probing Raven did — one stream
/// subscribing one symbol's book at every depth 1..=1000 (Raven now accepts the eight
/// view depths among them and rejects the rest) — and then reading as fast as it can.
/// It runs in a process of its own (this bench binary, `--hostile-client URL`), as a
/// hostile client would, so it does not share the measured subscriber's runtime; and
/// its messages are counted, not decoded (a raw codec), so its own CPU takes as little
/// as possible of the shared cores: what is left is the cost Raven pays for it.
async fn run_hostile(
    url: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(u64, u64, Option<String>)> {
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("endpoint {url}"))?
        .connect()
        .await
        .with_context(|| format!("connect {url}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.context("hostile: channel not ready")?;
    let topics = (1..=1000)
        .map(|depth| pb::Topic {
            depth,
            ..topic("SYN0USDT", pb::Channel::Book)
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics,
            ..Default::default()
        })),
    })
    .await
    .context("queue the hostile subscribe")?;
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/raven.v1.MarketData/Subscribe");
    let mut stream = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path,
            RawCodec,
        )
        .await
        .context("hostile Subscribe")?
        .into_inner();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut ended = None;
    let mut report = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = report.tick() => println!("{messages} {bytes}"),
            m = stream.next() => match m {
                Some(Ok(n)) => {
                    messages += 1;
                    bytes += n as u64;
                }
                Some(Err(status)) => {
                    ended = Some(format!("{:?}: {}", status.code(), status.message()));
                    break;
                }
                None => {
                    ended = Some("stream ended".to_owned());
                    break;
                }
            },
        }
    }
    drop(tx);
    println!("{messages} {bytes}");
    if let Some(why) = &ended {
        println!("ended early: {why}");
    }
    Ok((messages, bytes, ended))
}

/// Encodes requests with prost; "decodes" each response to its length only.
struct RawCodec;

struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = usize;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<usize>, tonic::Status> {
        use bytes::Buf;
        let n = src.remaining();
        src.advance(n);
        Ok(Some(n))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = pb::ClientMessage;
    type Decode = usize;
    type Encoder = <tonic_prost::ProstCodec<pb::ClientMessage, pb::ServerMessage> as tonic::codec::Codec>::Encoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        tonic::codec::Codec::encoder(&mut tonic_prost::ProstCodec::<
            pb::ClientMessage,
            pb::ServerMessage,
        >::default())
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

// ---------------------------------------------------------------- results

/// Exact percentiles of a set of samples.
struct Histogram(Vec<u64>);

impl Histogram {
    fn new(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Histogram(samples)
    }

    /// The `q`-quantile (0..=1) in µs, or NaN without samples.
    fn quantile_us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1] as f64 / 1e3
    }

    fn summary(&self) -> [f64; 4] {
        [
            self.quantile_us(0.5),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
            self.quantile_us(1.0),
        ]
    }
}

/// The p50, p99 and p99.9 of what a cumulative histogram counted between two readings:
/// each the upper bound of the bucket it falls in (`None` with nothing counted).
fn bucket_quantiles(before: &[(f64, u64)], after: &[(f64, u64)]) -> [Option<f64>; 3] {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(l, _)| l == le).map_or(0, |(_, n)| *n);
            (*le, n.saturating_sub(was))
        })
        .collect();
    let total = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    [0.5, 0.99, 0.999].map(|q| {
        let rank = (q * total as f64).ceil() as u64;
        (total > 0)
            .then(|| counts.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le))
            .flatten()
    })
}

struct Outcome {
    scenario: Scenario,
    window: Duration,
    sim_rate: f64,
    feed_rate: f64,
    per_sub_mean: f64,
    per_sub_min: f64,
    total_rate: f64,
    raven: Histogram,
    internal: Histogram,
    /// Raven's receive → queued for every subscriber, per frame (p50, p99, p99.9), from
    /// its histogram: each the upper bound of the bucket the quantile falls in.
    publish: [Option<f64>; 3],
    exchange: Histogram,
    cpu_raven: f64,
    cpu_sim: f64,
    cpu_bench: f64,
    /// Everything else on the machine (other builds, the kernel's softirqs for loopback).
    cpu_other: f64,
    sync_secs: f64,
    levels: u64,
    rss: u64,
    rss_peak: u64,
    conflated: u64,
    dropped: u64,
    errors: Vec<String>,
    /// Scenario (e): the hostile stream's messages/s and MB/s over the whole run.
    hostile: Option<(f64, f64)>,
}

async fn run_scenario(s: &Scenario, opts: &Options, http: &reqwest::Client) -> Result<Outcome> {
    let (sim, sim_addr) = spawn_sim(s, opts)?;
    let started = Instant::now();
    let server = spawn_serve(s, &sim_addr, opts)?;
    wait_synced(&server, http, s.symbols, Duration::from_secs(300)).await?;
    let sync_secs = started.elapsed().as_secs_f64();

    let phase = Arc::new(AtomicU8::new(WARMUP));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut opened = Vec::with_capacity(s.subscribers);
    for _ in 0..s.subscribers {
        opened.push(tokio::spawn(open_subscriber(
            server.grpc.clone(),
            opts.batch_us,
        )));
    }
    let mut tasks = Vec::with_capacity(s.subscribers);
    for o in opened {
        let (tx, stream) = o
            .await
            .context("subscriber task")?
            .with_context(|| server.log_tail())?;
        tasks.push(tokio::spawn(run_subscriber(
            tx,
            stream,
            phase.clone(),
            stop_rx.clone(),
        )));
    }
    let hostile = if s.hostile {
        let exe = std::env::current_exe().context("the bench's own path")?;
        let child = Command::new(exe)
            .args(["--hostile-client", &server.grpc.url])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn the hostile client")?;
        Some((Instant::now(), child))
    } else {
        None
    };
    tokio::time::sleep(opts.warmup).await;

    let (raven_pid, sim_pid) = (server.child.pid(), sim.pid());
    let sim0 = Reading(sim_frames_sent(http, &sim_addr).await?, Instant::now());
    let (frames0, publish0) = server.window_edge(http).await?;
    let feed0 = Reading(frames0, Instant::now());
    let cpu0 = cpu_sample(raven_pid, sim_pid)?;
    let t0 = Instant::now();
    phase.store(RECORD, Relaxed);

    tokio::time::sleep(opts.duration).await;

    phase.store(DONE, Relaxed);
    let window = t0.elapsed();
    let cpu1 = cpu_sample(raven_pid, sim_pid)?;
    let sim1 = Reading(sim_frames_sent(http, &sim_addr).await?, Instant::now());
    let (frames1, publish1) = server.window_edge(http).await?;
    let feed1 = Reading(frames1, Instant::now());
    let publish = bucket_quantiles(&publish0, &publish1);
    let (rss, rss_peak) = memory(raven_pid)?;
    let levels: u64 = book_status(&server.grpc)
        .await?
        .iter()
        .map(|b| u64::from(b.bid_levels) + u64::from(b.ask_levels))
        .sum();
    let _ = stop_tx.send(true);

    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.context("subscriber task panicked")?);
    }
    let mut hostile_ended = None;
    let hostile = match hostile {
        Some((started, mut child)) => {
            // It reads until killed; what it printed last (every 200 ms: messages and
            // bytes so far) is its total.
            let secs = started.elapsed().as_secs_f64();
            let _ = child.kill();
            let out = child.wait_with_output().context("the hostile client")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let last = text
                .lines()
                .rev()
                .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or("0 0");
            let mut f = last.split_whitespace();
            let messages: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let bytes: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            if let Some(why) = text.lines().find(|l| l.starts_with("ended")) {
                hostile_ended = Some(format!("the hostile stream {why}"));
            }
            Some((messages / secs, bytes / secs / 1e6))
        }
        None => None,
    };
    drop(server);
    drop(sim);

    let secs = window.as_secs_f64();
    let pct = |i: usize| cpu1[i].saturating_sub(cpu0[i]) as f64 / CLOCK_TICKS / secs * 100.0;
    let rates: Vec<f64> = results.iter().map(|r| r.delivered as f64 / secs).collect();
    let total: f64 = rates.iter().sum();
    let mut errors: HashMap<String, usize> = HashMap::new();
    for r in &results {
        if let Some(e) = &r.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
        if r.rejected > 0 {
            *errors
                .entry(format!("{} topics rejected", r.rejected))
                .or_default() += 1;
        }
    }
    let mut errors: Vec<String> = errors
        .into_iter()
        .map(|(e, n)| format!("{n}× {e}"))
        .collect();
    errors.extend(hostile_ended);
    errors.sort();
    let (mut raven, mut internal, mut exchange) = (Vec::new(), Vec::new(), Vec::new());
    let (mut conflated, mut dropped) = (0, 0);
    for r in results {
        raven.extend(r.raven);
        internal.extend(r.internal);
        exchange.extend(r.exchange);
        conflated += r.conflated;
        dropped += r.dropped;
    }
    Ok(Outcome {
        scenario: s.clone(),
        window,
        publish,
        sim_rate: rate(sim0, sim1),
        feed_rate: rate(feed0, feed1),
        per_sub_mean: if rates.is_empty() {
            0.0
        } else {
            total / rates.len() as f64
        },
        per_sub_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        total_rate: total,
        raven: Histogram::new(raven),
        internal: Histogram::new(internal),
        exchange: Histogram::new(exchange),
        cpu_raven: pct(0),
        cpu_sim: pct(1),
        cpu_bench: pct(2),
        cpu_other: (pct(3) - pct(0) - pct(1) - pct(2)).max(0.0),
        sync_secs,
        levels,
        rss,
        rss_peak,
        conflated,
        dropped,
        errors,
        hostile,
    })
}

/// Moves this process to every CPU it may use except `cpu` (`taskset`, util-linux).
fn pin_self_off(cpu: usize) -> Result<()> {
    let cpus = machine_cpus();
    let others: Vec<String> = (0..cpus)
        .filter(|&c| c != cpu)
        .map(|c| c.to_string())
        .collect();
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &others.join(",")])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .context("run taskset")?;
    if !status.success() {
        bail!("taskset -p -c {} failed: {status}", others.join(","));
    }
    Ok(())
}

// ---------------------------------------------------------------- report

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The machine's CPUs (numbered from 0), whatever this process is pinned to.
fn machine_cpus() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0)
        .max(1)
}

fn machine() -> String {
    let cores = machine_cpus();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB RAM", kb as f64 / (1u64 << 20) as f64)
        });
    format!("{cores} cores ({model}){mem}")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn fmt_us(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1e3)
    } else {
        format!("{v:.0} µs")
    }
}

fn report(outcomes: &[Outcome], opts: &Options) -> String {
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let rev = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_default();
    let dirty = command_output(
        "git",
        &["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain"],
    )
    .is_some_and(|s| !s.is_empty());
    let mut o = String::new();
    let _ = writeln!(
        o,
        "### End-to-end: raven sim → raven serve → gRPC subscribers\n"
    );
    let _ = writeln!(
        o,
        "Machine: {}. Date: {date}. Commit: {rev}{}. Window: {:.0} s after {:.0} s warm-up per scenario; release build.",
        machine(),
        if dirty { " + uncommitted changes" } else { "" },
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64(),
    );
    let _ = writeln!(
        o,
        "**The simulator, the server and every subscriber client share these cores**: the client \
         columns include protobuf decoding in the bench process, and the CPU columns show who used them.\n"
    );
    let _ = writeln!(
        o,
        "| Scenario | Symbols × levels | Subs | Sim generated/s | Raven read/s | Delivered/s per sub (min) | Delivered/s total | CPU Raven / sim / clients / other | Raven RSS (peak) | Levels held | Synced after | Conflated / dropped | Target |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
    );
    for r in outcomes {
        let s = &r.scenario;
        let _ = writeln!(
            o,
            "| {} | {} × {} | {} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.0} | {:.0} / {:.0} / {:.0} / {:.0} % | {:.1} MB ({:.1}) | {} | {:.1} s | {} / {} | {} |",
            s.what, s.symbols, s.levels, s.subscribers, r.sim_rate, r.feed_rate, r.per_sub_mean, r.per_sub_min,
            r.total_rate, r.cpu_raven, r.cpu_sim, r.cpu_bench, r.cpu_other, mb(r.rss), mb(r.rss_peak), r.levels,
            r.sync_secs, r.conflated, r.dropped, s.target,
        );
    }
    let _ = writeln!(
        o,
        "\nLatency per book delta / trade, p50 / p99 / p99.9 / max:\n"
    );
    let _ = writeln!(
        o,
        "| Scenario | Samples | Client recv − Raven recv (Raven + gRPC) | Raven send − Raven recv (inside Raven) | of which recv → queued, per frame (p50 / p99 / p99.9, ≤ bucket) | Client recv − exchange `E` (ms resolution) |"
    );
    let _ = writeln!(o, "|---|---:|---|---|---|---|");
    for r in outcomes {
        let row = |h: &Histogram| h.summary().map(fmt_us).join(" / ");
        let publish = r
            .publish
            .map(|q| q.map_or("?".into(), |s| format!("≤ {}", fmt_us(s * 1e6))))
            .join(" / ");
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario.what,
            r.raven.0.len(),
            row(&r.raven),
            row(&r.internal),
            publish,
            row(&r.exchange)
        );
    }
    let _ = writeln!(
        o,
        "\n`Sim generated/s` counts every synthetic stream (depth, aggTrade, trade, bookTicker); \
         `Raven read/s` only the depth and aggTrade frames Raven subscribes to. `E` is Binance's \
         millisecond event time, truncated, so the last column carries up to ~1 ms of resolution \
         error (plus the simulator's batching, `--batch-us`). CPU is % of one core over the window; \
         `other` is the rest of the machine's busy time (other processes, and kernel softirq \
         time such as loopback TCP not charged to a process)."
    );
    for r in outcomes {
        if r.cpu_other > 25.0 {
            let _ = writeln!(
                o,
                "\n{}: the rest of the machine used {:.0} % of a core during the window; \
                 rerun on a quiet machine for clean numbers.",
                r.scenario.what, r.cpu_other
            );
        }
        if let Some((messages, mb)) = r.hostile {
            let _ = writeln!(
                o,
                "\n{}: the hostile stream received {messages:.0} messages/s ({mb:.1} MB/s).",
                r.scenario.what
            );
        }
        if !r.errors.is_empty() {
            let _ = writeln!(
                o,
                "\n{}: stream errors: {}",
                r.scenario.what,
                r.errors.join("; ")
            );
        }
        let measured = r.window.as_secs_f64();
        if (measured - opts.duration.as_secs_f64()).abs() > 1.0 {
            let _ = writeln!(
                o,
                "\n{}: the window ran {measured:.1} s (asked for {:.1} s)",
                r.scenario.what,
                opts.duration.as_secs_f64()
            );
        }
    }
    o
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--hostile-client") {
        return hostile_client(args.next().unwrap_or_default());
    }
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("e2e: {e:#}");
            return ExitCode::from(2);
        }
    };
    if !Path::new(RAVEN).exists() {
        eprintln!("e2e: the raven binary {RAVEN} does not exist; run through `cargo bench -p raven --bench e2e`");
        return ExitCode::FAILURE;
    }
    if let Some(cpu) = opts.pin_raven {
        // Before the runtime exists, so every thread and child (simulator, hostile
        // client) inherits the mask.
        if let Err(e) = pin_self_off(cpu) {
            eprintln!("e2e: --pin-raven: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    raven_venues::http::install_crypto_provider();
    // Generous: under a hostile load (scenario e, before the views were bounded) Raven's
    // own endpoints took tens of seconds to answer, and that is a result, not a failure.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("build the HTTP client");

    let mut outcomes = Vec::new();
    let mut failed = false;
    for s in &opts.scenarios {
        eprintln!(
            "e2e: {} — sim {} symbols × {} levels at {} frames/s, {} subscribers, {:.0} s + {:.0} s warm-up …",
            s.what,
            s.symbols,
            s.levels,
            s.rate,
            s.subscribers,
            opts.duration.as_secs_f64(),
            opts.warmup.as_secs_f64()
        );
        match rt.block_on(run_scenario(s, &opts, &http)) {
            Ok(r) => {
                eprintln!(
                    "e2e:   delivered {:.0}/s total, Raven p99 {}, Raven CPU {:.0} %, RSS {:.1} MB",
                    r.total_rate,
                    fmt_us(r.raven.quantile_us(0.99)),
                    r.cpu_raven,
                    mb(r.rss)
                );
                outcomes.push(r);
            }
            Err(e) => {
                eprintln!("e2e: {} failed: {e:#}", s.what);
                failed = true;
            }
        }
    }
    println!("\n{}", report(&outcomes, &opts));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
