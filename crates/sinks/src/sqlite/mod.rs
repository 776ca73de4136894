//! SQLite: the embedded history store, so `GetHistory` works with zero services.
//!
//! When no InfluxDB is configured Raven keeps its history in one SQLite file,
//! `data_dir/history.sqlite`. SQLite was chosen by measurement (BENCHMARKS.md, "Storage:
//! the embedded engine"): against redb and fjall on this workload it wrote 430 k rows/s
//! in 5000-row transactions, read 1.6 M rows/s by venue/symbol/time range, and reclaims
//! the space retention frees while it runs — and it is the one engine every user already
//! has tools for: `sqlite3`, DuckDB, pandas, Grafana's SQLite data source.
//!
//! # Schema (module `schema`)
//!
//! One table per kind — `trades`, `bbo`, `funding`, `liquidations`, `candles` (closed
//! only), `book_top` (top levels at the tap interval) — each keyed by
//! `(venue, symbol, time_ns)` (`candles`: `(venue, symbol, interval, open_time_ns)`) in
//! a `WITHOUT ROWID` table, so a range read by instrument and time is one B-tree walk.
//! Decimals are TEXT, the exchange's exact strings; times are integer Unix nanoseconds.
//! `time_ns` is the series time (module `series`), the same key InfluxDB gets, so a
//! replayed batch overwrites itself (`INSERT OR REPLACE`) and `GetHistory` pages the
//! same way whichever store answers.
//!
//! # Writing
//!
//! A collector task reads the hub's tap and seals batches at `batch_size` records or
//! every `batch_interval`; one writer thread (SQLite writes are synchronous) commits
//! each batch in one transaction, in WAL mode with `synchronous=NORMAL`: a crash of
//! Raven loses nothing committed; a power cut may lose the last commits. A failed
//! commit (disk full, I/O error) is retried with backoff while new batches wait in the
//! bounded queue behind it, then in the tap; only a full tap drops, counted and logged
//! (`raven_tap_dropped_total{tap="sqlite"}`). At shutdown (`stop` resolves, or the hub
//! drops the tap) the tap is closed and drained, and the writer gets one
//! [`SHUTDOWN_DRAIN`] in all to commit what is queued; what it cannot commit by then is
//! counted in `raven_sqlite_rows_dropped_total`, reported to the store's health and
//! logged as an error — never silently left behind.
//!
//! # Retention
//!
//! Every `retention_interval` the writer deletes rows older than `retention` (by
//! series time; candles by open time), one instrument and table at a time, then hands
//! the freed pages back to the file system (`auto_vacuum = INCREMENTAL`) and truncates
//! the WAL. Readers are never blocked (WAL); writes wait for the deletes, which the
//! tap absorbs.
//!
//! Each batch is one `store.batch` span (`store = sqlite`, rows, commit attempts,
//! outcome), from its first commit attempt to its commit or its loss.
//!
//! Metrics: `raven_sqlite_rows_written_total`, `raven_sqlite_rows_refused_total`,
//! `raven_sqlite_rows_dropped_total`, `raven_sqlite_rows_deleted_total`,
//! `raven_sqlite_errors_total`, `raven_sqlite_write_seconds` (histogram per batch),
//! `raven_sqlite_file_bytes` (database plus WAL).

mod history;
mod schema;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raven_hub::Record;
use raven_model::{InstrumentId, UnixNanos};
use rusqlite::Connection;
use tokio::sync::mpsc;

pub use history::SqliteHistory;

use crate::health::StoreHealth;
use crate::series::SeriesClock;

/// How long the writer may take, at shutdown, to commit what is queued.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The database file; created with its directory when missing.
    pub path: PathBuf,
    /// Rows older than this are deleted; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often retention runs (and the first run is at start).
    pub retention_interval: Duration,
    /// Records per transaction at most.
    pub batch_size: usize,
    /// The longest a record waits before its batch is committed.
    pub batch_interval: Duration,
}

impl SqliteConfig {
    /// Defaults: 7 days of retention checked every 10 minutes, 5000-record batches, 250 ms.
    pub fn new(path: PathBuf) -> Self {
        SqliteConfig {
            path,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_interval: Duration::from_secs(600),
            batch_size: 5000,
            batch_interval: Duration::from_millis(250),
        }
    }
}

/// Creates the database (and its directory) and the schema if missing. Call before
/// [`run`] and before serving history, so a bad path fails at start, not at first write.
pub fn open(path: &Path) -> Result<(), String> {
    schema::open_writer(path).map(drop)
}

/// What the collector hands the writer thread.
enum Job {
    Write(Vec<Record>),
    Prune,
}

/// Runs the store until `stop` resolves or the hub drops the tap, then commits what is
/// queued (see the module docs), reporting trouble and losses to `health`.
pub async fn run(
    config: SqliteConfig,
    records: &mut mpsc::Receiver<Record>,
    health: Arc<StoreHealth>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    for name in [
        "raven_sqlite_rows_written_total",
        "raven_sqlite_rows_refused_total",
        "raven_sqlite_rows_dropped_total",
        "raven_sqlite_rows_deleted_total",
        "raven_sqlite_errors_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    let conn = match schema::open_writer(&config.path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sqlite: cannot open the history database; history is not kept");
            health.degraded(format!("disabled: {e}"));
            return;
        }
    };
    // Two batches in flight at most: beyond that the tap is the buffer, and a store
    // that cannot keep up shows as tap drops rather than unbounded memory.
    let (jobs, queue) = mpsc::channel(2);
    let closing = Arc::new(AtomicBool::new(false));
    let writer_config = config.clone();
    let writer_closing = closing.clone();
    let writer_health = health.clone();
    let writer = std::thread::Builder::new()
        .name("raven-sqlite".into())
        .spawn(move || Writer::new(conn, writer_config, writer_health, writer_closing).run(queue));
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "sqlite: cannot start the writer thread; history is not kept");
            return;
        }
    };

    let batch_size = config.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut seal = tokio::time::interval(config.batch_interval.max(Duration::from_millis(1)));
    seal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Retention runs first, before anything new is written, then every interval.
    if config.retention.is_some() && jobs.send(Job::Prune).await.is_err() {
        return;
    }
    let every = config.retention_interval.max(Duration::from_secs(1));
    let mut prune = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    // Closing the tap ends intake; what it holds is still drained below. The writer is
    // told too, so a failing commit stops retrying at the drain deadline.
    let begin_stop = |records: &mut mpsc::Receiver<Record>| {
        records.close();
        closing.store(true, Ordering::Relaxed);
    };
    loop {
        let job = tokio::select! {
            record = records.recv() => match record {
                Some(r) => {
                    health.hold(1);
                    batch.push(r);
                    if batch.len() < batch_size {
                        continue;
                    }
                    Job::Write(std::mem::replace(&mut batch, Vec::with_capacity(batch_size)))
                }
                None => break,
            },
            _ = seal.tick() => {
                if batch.is_empty() {
                    continue;
                }
                Job::Write(std::mem::replace(&mut batch, Vec::with_capacity(batch_size)))
            }
            _ = prune.tick(), if config.retention.is_some() && !stopping => Job::Prune,
            _ = &mut stop, if !stopping => {
                stopping = true;
                begin_stop(records);
                continue;
            }
        };
        // Waiting for room in the writer's queue, still listening for the stop.
        let permit = loop {
            tokio::select! {
                permit = jobs.reserve() => break permit,
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    begin_stop(records);
                }
            }
        };
        match permit {
            Ok(permit) => permit.send(job),
            Err(_) => break,
        }
    }
    begin_stop(records);
    if !batch.is_empty() {
        let _ = jobs.send(Job::Write(batch)).await;
    }
    drop(jobs);
    // A writer that died is not a clean stop: its failure is this task's, for the
    // supervisor to see.
    if let Ok(Err(panic)) = tokio::task::spawn_blocking(move || writer.join()).await {
        std::panic::resume_unwind(panic);
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    config: SqliteConfig,
    clock: SeriesClock,
    /// Instruments already in the `series` table (retention walks it).
    known: HashSet<InstrumentId>,
    health: Arc<StoreHealth>,
    /// Set when the store is shutting down.
    closing: Arc<AtomicBool>,
    /// Once shutting down: when failing commits stop being retried (one for all batches).
    drain_deadline: Option<Instant>,
}

impl Writer {
    fn new(
        conn: Connection,
        config: SqliteConfig,
        health: Arc<StoreHealth>,
        closing: Arc<AtomicBool>,
    ) -> Self {
        Writer {
            conn,
            config,
            clock: SeriesClock::default(),
            known: HashSet::new(),
            health,
            closing,
            drain_deadline: None,
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        while let Some(job) = queue.blocking_recv() {
            match job {
                Job::Write(records) => self.write(&records),
                Job::Prune => self.prune(),
            }
            self.file_size_gauge();
        }
    }

    /// Commits one batch, retrying on failure; gives up only when shutting down and
    /// the drain deadline has passed.
    fn write(&mut self, records: &[Record]) {
        self.commit(records);
        // Committed, or counted lost: no longer held either way.
        self.health.release(records.len() as u64);
    }

    fn commit(&mut self, records: &[Record]) {
        // Series times are assigned once, so a retried batch writes the same keys.
        let rows = schema::rows(records, &mut self.clock);
        if rows.refused > 0 {
            metrics::counter!("raven_sqlite_rows_refused_total").increment(rows.refused);
        }
        let new: Vec<InstrumentId> = rows
            .instruments()
            .filter(|id| !self.known.contains(*id))
            .cloned()
            .collect();
        let span = tracing::info_span!(
            "store.batch",
            store = "sqlite",
            rows = rows.len(),
            refused = rows.refused,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let mut backoff = BACKOFF_START;
        let mut attempts: u64 = 0;
        loop {
            if self.past_drain_deadline() {
                metrics::counter!("raven_sqlite_rows_dropped_total").increment(rows.len() as u64);
                tracing::error!(
                    rows = rows.len(),
                    "sqlite: shutting down with rows that could not be committed; they are LOST"
                );
                self.health
                    .lost(rows.len() as u64, "rows not committed by shutdown");
                span.record("attempts", attempts);
                span.record("outcome", "dropped");
                span.record("otel.status_code", "error");
                return;
            }
            let started = Instant::now();
            attempts += 1;
            match schema::insert(&mut self.conn, &rows, &new) {
                Ok(()) => {
                    metrics::histogram!("raven_sqlite_write_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("raven_sqlite_rows_written_total")
                        .increment(rows.len() as u64);
                    self.known.extend(new);
                    if attempts > 1 {
                        self.health.ok();
                    }
                    span.record("attempts", attempts);
                    span.record("outcome", "committed");
                    return;
                }
                Err(e) => {
                    metrics::counter!("raven_sqlite_errors_total").increment(1);
                    tracing::warn!(error = %e, rows = rows.len(), retry_in = ?backoff, "sqlite: commit failed; retrying");
                    self.health.degraded(format!(
                        "commits failing ({e}); retrying while new records wait"
                    ));
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Whether the store is shutting down and has spent its [`SHUTDOWN_DRAIN`], counted
    /// from the first batch written after the stop.
    fn past_drain_deadline(&mut self) -> bool {
        if !self.closing.load(Ordering::Relaxed) {
            return false;
        }
        let deadline = *self
            .drain_deadline
            .get_or_insert_with(|| Instant::now() + SHUTDOWN_DRAIN);
        Instant::now() >= deadline
    }

    fn prune(&mut self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let cutoff = UnixNanos::now()
            .as_nanos()
            .saturating_sub(u64::try_from(retention.as_nanos()).unwrap_or(u64::MAX));
        let started = Instant::now();
        match schema::prune(&mut self.conn, cutoff) {
            Ok(0) => {}
            Ok(deleted) => {
                metrics::counter!("raven_sqlite_rows_deleted_total").increment(deleted);
                tracing::info!(deleted, took = ?started.elapsed(), "sqlite: retention removed old rows");
            }
            Err(e) => {
                metrics::counter!("raven_sqlite_errors_total").increment(1);
                tracing::warn!(error = %e, "sqlite: retention failed; will try again");
            }
        }
    }

    fn file_size_gauge(&self) {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.config.path.clone().into_os_string();
        wal.push("-wal");
        let bytes = size(&self.config.path) + size(Path::new(&wal));
        metrics::gauge!("raven_sqlite_file_bytes").set(bytes as f64);
    }
}
