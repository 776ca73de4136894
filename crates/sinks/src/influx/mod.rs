//! InfluxDB: every event as a time series, for charts, research and replay.
//!
//! One code path serves InfluxDB 1.x, 2.x and 3.x through the v1-compatible HTTP API
//! (`POST /write?db=…&precision=ns` with line protocol; see the `writer` module).
//!
//! # Schema
//!
//! Tags are low-cardinality only (`venue`, `symbol`, `side`, `interval`): every id,
//! price and time is a field, or InfluxDB's series index would grow with the market.
//! Every decimal `x` is written twice: `x` (float, for charts and aggregates) and
//! `x_exact` (string, the exchange's exact text). Integers carry the `i` suffix. The
//! timestamp precision is nanoseconds.
//!
//! | measurement | tags | fields | timestamp (ns) |
//! |---|---|---|---|
//! | `trades` | venue, symbol, side (aggressor) | price, quantity (+`_exact`), trade_id (0 when not a number), trade_id_text, exchange_time_ns, receive_time_ns | exchange ms + `trade_id % 1e6`; trades without a number: exchange time + ordinal |
//! | `bbo` | venue, symbol | bid_price, bid_quantity, ask_price, ask_quantity (+`_exact`), update_id, exchange_time_ns, receive_time_ns | exchange ms + `update_id % 1e6` |
//! | `funding` | venue, symbol | mark_price, index_price (when given), funding_rate (+`_exact`), next_funding_time_ns, exchange_time_ns, receive_time_ns | exchange time (+n for the n-th repeat) |
//! | `liquidations` | venue, symbol, side | price, quantity (+`_exact`), exchange_time_ns, receive_time_ns | exchange time (+n for the n-th repeat in the instrument) |
//! | `candles` (closed only) | venue, symbol, interval | open, high, low, close, volume (+`_exact`), trade_count, close_time_ns | open time |
//! | `book_top` | venue, symbol | bid_price, bid_quantity, ask_price, ask_quantity (+`_exact`, absent for an empty side), last_update_id, receive_time_ns | exchange ms + `last_update_id % 1e6` |
//!
//! "Exchange time" falls back to the receive time when the exchange gave none.
//!
//! # Why the timestamps look like that
//!
//! InfluxDB keeps one point per series and timestamp, so each point's time is its
//! series time (module `series`): exchange milliseconds plus the trade or update id in
//! the sub-millisecond digits. Unique, and deterministic, so a retried or replayed batch
//! overwrites itself instead of duplicating. The true exchange time is kept as the
//! `exchange_time_ns` field.
//!
//! # Delivery
//!
//! Batch by size and time, gzip, retry with backoff. Records are encoded into a batch
//! that is sealed at `batch_size` points or every `batch_interval`. One write is in
//! flight at a time, off the receive loop, so the tap is read continuously even while
//! InfluxDB hangs; its body is gzip-compressed there, at send time (`gzip`, on by
//! default), while memory and spill keep plain line protocol. A failed write is
//! retried with exponential backoff (0.1 s doubling to 5 s). Meanwhile sealed batches
//! wait in memory up to `memory_limit_points`; beyond that the oldest move to the spill
//! (module `spill`) in `data_dir`, fsync'd, so the oldest data is always on disk and
//! the drain order — spill files oldest first, then memory — is also time order. A
//! spill file is deleted only after InfluxDB answered 204. At start the spill left by a
//! previous run is sent before anything new; when the tap closes, the in-flight write
//! is awaited, InfluxDB gets up to [`SHUTDOWN_DRAIN`] (retried on the usual backoff) to
//! take the rest, and what remains is spilled.
//!
//! What can still be lost, each counted or logged: points only in memory when the
//! process is killed (up to `memory_limit_points` plus the open batch); points whose
//! spill write failed or found the spill full at `spill_max_bytes` (1 GiB by default;
//! spill and rejected files count together) (`raven_influx_points_dropped_total`, logged
//! as errors, the store reported `losing`); records
//! the encoder refuses (an integer beyond i64, a line break in a symbol:
//! `raven_influx_points_refused_total`). A batch InfluxDB itself refuses (HTTP 400) is
//! moved to `data_dir/rejected-*.lp` for inspection rather than retried forever.
//!
//! Metrics: `raven_influx_points_written_total`, `raven_influx_points_dropped_total`,
//! `raven_influx_points_refused_total`, `raven_influx_errors_total`,
//! `raven_influx_backlog_points` and `raven_influx_backlog_age_seconds` (gauges: unsent
//! points and the age of the oldest), `raven_influx_write_seconds` (histogram).

mod history;
mod line;
mod spill;
mod writer;

pub use history::InfluxHistory;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raven_hub::Record;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::health::StoreHealth;
use line::{Encoded, Encoder};
use spill::Spill;
use writer::{Client, WriteError};

/// How long InfluxDB may take, at shutdown, to accept what is buffered before the rest
/// is spilled to disk.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Database (1.x) or the database/retention-policy mapped to a bucket (2.x, 3.x).
    pub database: String,
    /// Basic auth (1.x, or 2.x v1-compat with any user name and the token as password).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Sent as `Authorization: Token …`; takes precedence over basic auth.
    pub token: Option<String>,
    /// Where the spill files live.
    pub data_dir: PathBuf,
    /// Points per write request at most.
    pub batch_size: usize,
    /// The longest a point waits in an unsealed batch.
    pub batch_interval: Duration,
    /// Unsent points kept in memory before the oldest batches go to disk.
    pub memory_limit_points: usize,
    /// Bytes the spill and the rejected files may take on disk; beyond, points are
    /// lost, counted and reported.
    pub spill_max_bytes: u64,
    /// Send write bodies gzip-compressed (`Content-Encoding: gzip`). On by default; off
    /// only for an endpoint in front of InfluxDB that cannot decompress, and to measure
    /// what compression costs and saves.
    pub gzip: bool,
}

impl InfluxConfig {
    /// A config with the defaults: no auth, 5000-point batches, 1 s, 200 000 points in
    /// memory, 1 GiB of spill, gzip.
    pub fn new(url: impl Into<String>, database: impl Into<String>, data_dir: PathBuf) -> Self {
        InfluxConfig {
            url: url.into(),
            database: database.into(),
            username: None,
            password: None,
            token: None,
            data_dir,
            batch_size: 5000,
            batch_interval: Duration::from_secs(1),
            memory_limit_points: 200_000,
            spill_max_bytes: 1 << 30,
            gzip: true,
        }
    }
}

/// Runs the writer until `stop` resolves or the hub drops the tap (then closes the tap,
/// drains or spills, see the module docs), reporting trouble and losses to `health`.
pub async fn run(
    config: InfluxConfig,
    records: &mut mpsc::Receiver<Record>,
    health: Arc<StoreHealth>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    let client = match Client::new(&config) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "influx: invalid configuration; the InfluxDB store is disabled");
            health.degraded(format!("disabled: {e}"));
            return;
        }
    };
    let batch_size = config.batch_size.max(1);
    let spill = match Spill::open(config.data_dir.clone(), batch_size, config.spill_max_bytes).await
    {
        Ok(s) => {
            if s.points() > 0 {
                tracing::info!(points = s.points(), dir = %config.data_dir.display(), "influx: replaying the spill of a previous run");
            }
            s
        }
        Err(e) => {
            tracing::error!(error = %e, dir = %config.data_dir.display(), "influx: cannot open the spill directory; points beyond the memory limit will be dropped");
            Spill::unusable(config.data_dir.clone())
        }
    };
    for name in [
        "raven_influx_points_written_total",
        "raven_influx_points_dropped_total",
        "raven_influx_points_refused_total",
        "raven_influx_errors_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    let mut store = Store {
        client,
        encoder: Encoder::default(),
        spill,
        open: String::new(),
        open_points: 0,
        open_since: Instant::now(),
        memory: VecDeque::new(),
        memory_points: 0,
        inflight: None,
        failures: 0,
        health,
        retry_at: Instant::now(),
        need_create: true,
        batch_size,
        memory_limit: config.memory_limit_points,
    };
    let mut tick = tokio::time::interval(config.batch_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        store.start_send();
        store.gauges();
        let waiting = store.inflight.is_none() && store.has_backlog();
        tokio::select! {
            record = records.recv() => match record {
                Some(r) => store.absorb(&r).await,
                None => break,
            },
            // No new records; what the tap holds is still read, then the loop ends.
            _ = &mut stop, if !stopping => {
                stopping = true;
                records.close();
            }
            _ = tick.tick() => store.seal().await,
            done = join(&mut store.inflight), if store.inflight.is_some() => store.finished(done).await,
            _ = tokio::time::sleep_until(store.retry_at), if waiting => {}
        }
    }
    store.shutdown().await;
}

/// Waits for the in-flight write; only polled while there is one.
async fn join(inflight: &mut Option<Inflight>) -> (Source, Result<(), WriteError>) {
    let Some(f) = inflight.as_mut() else {
        return std::future::pending().await;
    };
    let result = match (&mut f.handle).await {
        Ok(r) => r,
        Err(e) => Err(WriteError::Retry(format!("write task: {e}"))),
    };
    let source = inflight
        .take()
        .map_or(Source::Spill { points: 0 }, |f| f.source);
    (source, result)
}

/// A sealed batch: complete lines.
struct Batch {
    body: Bytes,
    points: usize,
    since: Instant,
}

/// Where the in-flight batch came from, to put it back or delete it.
enum Source {
    Memory(Batch),
    Spill { points: usize },
}

struct Inflight {
    source: Source,
    since: Instant,
    handle: JoinHandle<Result<(), WriteError>>,
}

struct Store {
    client: Arc<Client>,
    encoder: Encoder,
    spill: Spill,
    /// The batch being filled.
    open: String,
    open_points: usize,
    open_since: Instant,
    /// Sealed batches, oldest first.
    memory: VecDeque<Batch>,
    memory_points: usize,
    inflight: Option<Inflight>,
    /// Consecutive failed writes.
    failures: u32,
    health: Arc<StoreHealth>,
    retry_at: Instant,
    need_create: bool,
    batch_size: usize,
    memory_limit: usize,
}

impl Store {
    async fn absorb(&mut self, record: &Record) {
        if self.open_points == 0 {
            self.open_since = Instant::now();
        }
        match self.encoder.encode(record, &mut self.open) {
            Encoded::Point => self.open_points += 1,
            Encoded::Skipped => {}
            Encoded::Refused(why) => {
                metrics::counter!("raven_influx_points_refused_total").increment(1);
                tracing::warn!(why, ?record, "influx: record cannot be written; skipped");
            }
        }
        if self.open_points >= self.batch_size {
            self.seal().await;
        }
    }

    /// Closes the open batch into the memory queue, spilling the oldest beyond the limit.
    async fn seal(&mut self) {
        if self.open_points > 0 {
            let body = Bytes::from(std::mem::take(&mut self.open));
            self.memory.push_back(Batch {
                body,
                points: std::mem::take(&mut self.open_points),
                since: self.open_since,
            });
            self.memory_points += self.memory.back().map_or(0, |b| b.points);
        }
        self.enforce_memory_limit().await;
    }

    async fn enforce_memory_limit(&mut self) {
        while self.memory_points > self.memory_limit {
            let Some(batch) = self.memory.pop_front() else {
                break;
            };
            self.memory_points -= batch.points;
            self.spill_batch(batch).await;
        }
    }

    async fn spill_batch(&mut self, batch: Batch) {
        let points = batch.points;
        if let Err(e) = self
            .spill
            .append(batch.body, points, batch.since.into_std())
            .await
        {
            metrics::counter!("raven_influx_points_dropped_total").increment(points as u64);
            tracing::error!(error = %e, points, "influx: SPILL WRITE FAILED; points are LOST");
            self.health
                .lost(points as u64, format!("spill write failed: {e}"));
        }
    }

    fn has_backlog(&self) -> bool {
        self.spill.front().is_some() || !self.memory.is_empty()
    }

    /// Starts the next write, if none is in flight and the backoff allows: the oldest
    /// spill file first, then the oldest memory batch.
    fn start_send(&mut self) {
        if self.inflight.is_some() || Instant::now() < self.retry_at {
            return;
        }
        let (source, since, body) = if let Some(f) = self.spill.take_front_for_sending() {
            let since = Instant::from_std(f.since);
            (
                Source::Spill { points: f.points },
                since,
                Err(f.path.clone()),
            )
        } else if let Some(batch) = self.memory.pop_front() {
            self.memory_points -= batch.points;
            let (since, body) = (batch.since, batch.body.clone());
            (Source::Memory(batch), since, Ok(body))
        } else {
            return;
        };
        let client = Arc::clone(&self.client);
        let create = self.need_create;
        let (points, from) = match &source {
            Source::Memory(b) => (b.points, "memory"),
            Source::Spill { points } => (*points, "spill"),
        };
        let span = tracing::info_span!(
            "store.batch",
            store = "influxdb",
            rows = points,
            source = from,
            outcome = tracing::field::Empty,
            error.message = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let write = async move {
            let body = match body {
                Ok(b) => b,
                Err(path) => {
                    tokio::task::spawn_blocking(move || spill::read_complete(&path))
                        .await
                        .map_err(|e| WriteError::Retry(e.to_string()))?
                        .map_err(|e| WriteError::Refused(format!("unreadable spill file: {e}")))?
                        .0
                }
            };
            if create {
                client.create_database().await;
            }
            let result = client.write(body).await;
            let span = tracing::Span::current();
            match &result {
                Ok(()) => span.record("outcome", "written"),
                Err(WriteError::Retry(e)) => span
                    .record("outcome", "retry")
                    .record("error.message", e.as_str())
                    .record("otel.status_code", "error"),
                Err(WriteError::Refused(e)) => span
                    .record("outcome", "refused")
                    .record("error.message", e.as_str())
                    .record("otel.status_code", "error"),
            };
            result
        };
        let handle = tokio::spawn(tracing::Instrument::instrument(write, span));
        self.inflight = Some(Inflight {
            source,
            since,
            handle,
        });
    }

    async fn finished(&mut self, (source, result): (Source, Result<(), WriteError>)) {
        match result {
            Ok(()) => {
                let points = match &source {
                    Source::Memory(b) => b.points,
                    Source::Spill { points } => *points,
                };
                metrics::counter!("raven_influx_points_written_total").increment(points as u64);
                if self.failures > 0 {
                    tracing::info!(
                        failures = self.failures,
                        "influx: writes succeed again; draining the backlog"
                    );
                }
                self.failures = 0;
                self.need_create = false;
                self.health.ok();
                if matches!(source, Source::Spill { .. }) {
                    if let Err(e) = self.spill.remove_front().await {
                        tracing::error!(error = %e, "influx: cannot delete a written spill file; its points will be written again (idempotent)");
                    }
                }
            }
            Err(WriteError::Retry(error)) => {
                metrics::counter!("raven_influx_errors_total").increment(1);
                self.failures += 1;
                self.need_create = true;
                let backoff = BACKOFF_START
                    .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
                    .min(BACKOFF_MAX);
                self.retry_at = Instant::now() + backoff;
                self.health.degraded(format!(
                    "writes failing ({error}); buffering and retrying, spilling to disk beyond the memory limit"
                ));
                if self.failures == 1 {
                    tracing::warn!(%error, "influx: write failed; buffering and retrying");
                } else {
                    tracing::debug!(%error, failures = self.failures, ?backoff, "influx: write failed again");
                }
                if let Source::Memory(batch) = source {
                    self.memory_points += batch.points;
                    self.memory.push_front(batch);
                    self.enforce_memory_limit().await;
                }
            }
            Err(WriteError::Refused(error)) => {
                metrics::counter!("raven_influx_errors_total").increment(1);
                match source {
                    Source::Spill { points } => match self.spill.reject_front().await {
                        Ok(path) => {
                            tracing::error!(%error, points, path = %path.display(), "influx: batch refused; kept aside")
                        }
                        Err(e) => {
                            tracing::error!(%error, io_error = %e, points, "influx: batch refused and could not be kept aside")
                        }
                    },
                    Source::Memory(batch) => match self.spill.write_rejected(&batch.body).await {
                        Ok(path) => {
                            tracing::error!(%error, points = batch.points, path = %path.display(), "influx: batch refused; kept aside")
                        }
                        Err(e) => {
                            metrics::counter!("raven_influx_points_dropped_total")
                                .increment(batch.points as u64);
                            self.health.lost(
                                batch.points as u64,
                                format!("batch refused ({error}) and could not be kept aside: {e}"),
                            );
                            tracing::error!(%error, io_error = %e, points = batch.points, "influx: batch refused and could not be kept aside; points are LOST")
                        }
                    },
                }
            }
        }
    }

    fn gauges(&self) {
        let inflight_points = self.inflight.as_ref().map_or(0, |f| match &f.source {
            Source::Memory(b) => b.points,
            Source::Spill { points } => *points,
        });
        let spill_inflight = matches!(
            self.inflight.as_ref().map(|f| &f.source),
            Some(Source::Spill { .. })
        );
        let backlog = self.open_points
            + self.memory_points
            + self.spill.points()
            + if spill_inflight { 0 } else { inflight_points };
        metrics::gauge!("raven_influx_backlog_points").set(backlog as f64);
        // What a failure of this task would lose: everything not yet written or on disk.
        let in_memory = self.open_points
            + self.memory_points
            + if spill_inflight { 0 } else { inflight_points };
        self.health.set_held(in_memory as u64);
        let oldest = [
            self.inflight.as_ref().map(|f| f.since),
            self.spill.front().map(|f| Instant::from_std(f.since)),
            self.memory.front().map(|b| b.since),
            (self.open_points > 0).then_some(self.open_since),
        ]
        .into_iter()
        .flatten()
        .min();
        let age = oldest.map_or(0.0, |t| t.elapsed().as_secs_f64());
        metrics::gauge!("raven_influx_backlog_age_seconds").set(age);
    }

    async fn shutdown(&mut self) {
        self.seal().await;
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        loop {
            if self.inflight.is_some() {
                let done = join(&mut self.inflight).await;
                self.finished(done).await;
            }
            if !self.has_backlog() || Instant::now() >= deadline {
                break;
            }
            // A failure just before shutdown (InfluxDB still starting, a hiccup) is
            // retried on the usual backoff until the deadline, not spilled at once.
            tokio::time::sleep_until(self.retry_at.min(deadline)).await;
            if Instant::now() >= deadline {
                break;
            }
            self.start_send();
        }
        while let Some(batch) = self.memory.pop_front() {
            self.memory_points -= batch.points;
            self.spill_batch(batch).await;
        }
        self.gauges();
        tracing::info!(
            spilled = self.spill.points(),
            "influx: stopped; unsent points are in the spill"
        );
    }
}
