//! The live health of every feed: one registry the connectors write and the API reads.
//!
//! Operators need to know, per connection, whether it is up and still receiving, and per
//! book, whether Raven's copy is trustworthy (synced) and how often it had to be rebuilt.
//! Connectors update plain atomics on their hot path (one relaxed store per frame, no
//! lock); the registry's lock is taken only to add or remove an entry and to read a
//! [`FeedStatus::snapshot`], which the gRPC `GetStatus` and the health endpoints call.
//!
//! Ages are measured on the monotonic clock, so a wall-clock step cannot make a
//! connection look stalled or fresh.
//!
//! The metric names the connectors export are defined here too, so dashboards and tests
//! refer to one list.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use raven_model::{InstrumentId, Venue};

/// Counter: WebSocket frames read (label `venue`).
pub const METRIC_FRAMES: &str = "raven_feed_frames_total";
/// Counter: frames processed into events or state changes (label `venue`).
pub const METRIC_MESSAGES_PROCESSED: &str = "messages_processed_total";
/// Counter: frames that could not be parsed and were skipped (label `venue`).
pub const METRIC_MALFORMED: &str = "raven_feed_malformed_frames_total";
/// Counter: WebSocket reconnects, for any reason (label `venue`).
pub const METRIC_RECONNECTS: &str = "raven_feed_reconnects_total";
/// Counter: sequence gaps found in a depth stream (label `venue`).
pub const METRIC_GAPS: &str = "raven_book_gaps_total";
/// Counter: book resyncs started (gap, disconnect, rejection, overflow) (label `venue`).
pub const METRIC_RESYNCS: &str = "raven_book_resyncs_total";
/// Counter: book updates the sink refused as crossed or unsynced (label `venue`).
pub const METRIC_CROSSED: &str = "raven_book_rejected_total";
/// Counter: REST depth snapshots fetched successfully (label `venue`).
pub const METRIC_SNAPSHOT_FETCHES: &str = "raven_snapshot_fetches_total";
/// Counter: REST depth snapshot attempts that failed (label `venue`).
pub const METRIC_SNAPSHOT_FAILURES: &str = "raven_snapshot_failures_total";
/// Counter: events and depth diffs dropped as repeats of ones already delivered (labels
/// `venue`), mostly while two connections overlap during a hand-over.
pub const METRIC_DUPLICATES: &str = "raven_feed_duplicates_total";
/// Counter: events whose key (trade id, update id, event time) was below the last one
/// on the same connection (label `venue`): delivered, and the stream goes on from them.
pub const METRIC_OUT_OF_ORDER: &str = "raven_feed_out_of_order_events_total";
/// Counter: connection hand-overs before the age limit, by `outcome` (`completed`,
/// `timed_out`, `failed`: the new connection could not be opened) (label `venue`).
pub const METRIC_HANDOVERS: &str = "raven_feed_handovers_total";
/// The `outcome` label values of [`METRIC_HANDOVERS`].
pub const HANDOVER_OUTCOMES: [&str; 3] = ["completed", "timed_out", "failed"];
/// Counter: book checksums compared with the venue's, by `outcome` (`verified`,
/// `mismatch`: the book resyncs) (label `venue`).
pub const METRIC_CHECKSUMS: &str = "raven_book_checksums_total";
/// The `outcome` label values of [`METRIC_CHECKSUMS`].
pub const CHECKSUM_OUTCOMES: [&str; 2] = ["verified", "mismatch"];
/// Counter: requests the exchange refused (a subscription it rejects) (label `venue`).
pub const METRIC_REFUSED: &str = "raven_feed_refused_requests_total";
/// Counter: connection tasks that failed (panicked) and were restarted (label `venue`).
pub const METRIC_TASK_RESTARTS: &str = "raven_feed_task_restarts_total";

/// What a connection is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected,
    /// Waiting before the next connect attempt.
    Backoff,
}

/// Whether a book can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookSyncState {
    /// First sync since start: buffering diffs, waiting for a snapshot that joins them.
    Syncing,
    /// Snapshot joined and every diff since passed the sequence checks.
    Synced,
    /// Lost sync (gap, disconnect, rejection) and rebuilding from a new snapshot.
    Resyncing,
}

/// A point-in-time copy of one connection's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub venue: Venue,
    pub name: String,
    pub state: ConnectionState,
    /// Time since the last frame; `None` before the first.
    pub last_frame_age: Option<Duration>,
    pub reconnects: u64,
    pub frames: u64,
    pub malformed: u64,
    pub streams: usize,
    /// Times the connection's task failed and was restarted.
    pub restarts: u64,
    /// No frame for this long and the connection is replaced (and its venue unready).
    pub stall_timeout: Duration,
}

/// A point-in-time copy of one book's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookInfo {
    pub instrument: InstrumentId,
    pub state: BookSyncState,
    /// Time since the last depth message for this book; `None` before the first.
    pub last_message_age: Option<Duration>,
    pub gaps: u64,
    pub resyncs: u64,
    /// Updates the sink refused (crossed or not synced).
    pub crossed: u64,
    pub snapshot_failures: u64,
    /// Venue checksums the book matched, and those it did not (each one resynced it).
    pub checksums_verified: u64,
    pub checksum_mismatches: u64,
}

/// Everything [`FeedStatus::snapshot`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub connections: Vec<ConnectionInfo>,
    pub books: Vec<BookInfo>,
}

/// The shared registry. Create one per process and hand an `Arc` to every venue.
#[derive(Debug)]
pub struct FeedStatus {
    epoch: Instant,
    connections: RwLock<BTreeMap<String, Arc<ConnectionStatus>>>,
    books: RwLock<BTreeMap<InstrumentId, Arc<BookStatus>>>,
}

impl Default for FeedStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedStatus {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            connections: RwLock::new(BTreeMap::new()),
            books: RwLock::new(BTreeMap::new()),
        }
    }

    /// Adds (or replaces) a connection entry and returns the handle its task updates.
    /// Adds a connection entry and returns the handle its task updates; a connection
    /// registered again (its task restarted) keeps its entry and counters.
    pub fn register_connection(
        &self,
        venue: Venue,
        name: &str,
        streams: usize,
        stall_timeout: Duration,
    ) -> Arc<ConnectionStatus> {
        let mut connections = self.connections.write();
        if let Some(existing) = connections.get(name) {
            return Arc::clone(existing);
        }
        let entry = Arc::new(ConnectionStatus {
            venue,
            epoch: self.epoch,
            state: AtomicU8::new(ConnectionState::Connecting as u8),
            last_frame: AtomicU64::new(NEVER),
            reconnects: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            streams,
            stall_timeout,
        });
        connections.insert(name.to_owned(), Arc::clone(&entry));
        entry
    }

    /// Adds (or replaces) a book entry in state [`BookSyncState::Syncing`].
    pub fn register_book(&self, instrument: &InstrumentId) -> Arc<BookStatus> {
        let entry = Arc::new(BookStatus {
            epoch: self.epoch,
            state: AtomicU8::new(BookSyncState::Syncing as u8),
            last_message: AtomicU64::new(NEVER),
            gaps: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            crossed: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            checksums_verified: AtomicU64::new(0),
            checksum_mismatches: AtomicU64::new(0),
        });
        self.books
            .write()
            .insert(instrument.clone(), Arc::clone(&entry));
        entry
    }

    /// Forgets a book (the venue does not list the symbol, or the venue shut down).
    pub fn remove_book(&self, instrument: &InstrumentId) {
        self.books.write().remove(instrument);
    }

    /// Forgets a connection.
    pub fn remove_connection(&self, name: &str) {
        self.connections.write().remove(name);
    }

    /// The registered connection's handle, if any.
    pub fn connection(&self, name: &str) -> Option<Arc<ConnectionStatus>> {
        self.connections.read().get(name).cloned()
    }

    /// The registered book's handle, if any.
    pub fn book(&self, instrument: &InstrumentId) -> Option<Arc<BookStatus>> {
        self.books.read().get(instrument).cloned()
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let now = self.elapsed_nanos();
        let connections = self
            .connections
            .read()
            .iter()
            .map(|(name, c)| ConnectionInfo {
                venue: c.venue,
                name: name.clone(),
                state: c.state(),
                last_frame_age: age(now, c.last_frame.load(Ordering::Relaxed)),
                reconnects: c.reconnects.load(Ordering::Relaxed),
                frames: c.frames.load(Ordering::Relaxed),
                malformed: c.malformed.load(Ordering::Relaxed),
                streams: c.streams,
                restarts: c.restarts.load(Ordering::Relaxed),
                stall_timeout: c.stall_timeout,
            })
            .collect();
        let books = self
            .books
            .read()
            .iter()
            .map(|(id, b)| BookInfo {
                instrument: id.clone(),
                state: b.state(),
                last_message_age: age(now, b.last_message.load(Ordering::Relaxed)),
                gaps: b.gaps.load(Ordering::Relaxed),
                resyncs: b.resyncs.load(Ordering::Relaxed),
                crossed: b.crossed.load(Ordering::Relaxed),
                snapshot_failures: b.snapshot_failures.load(Ordering::Relaxed),
                checksums_verified: b.checksums_verified.load(Ordering::Relaxed),
                checksum_mismatches: b.checksum_mismatches.load(Ordering::Relaxed),
            })
            .collect();
        StatusSnapshot { connections, books }
    }

    /// Readiness: every registered book is synced (vacuously true with no books).
    pub fn all_books_synced(&self) -> bool {
        self.books
            .read()
            .values()
            .all(|b| b.state() == BookSyncState::Synced)
    }

    fn elapsed_nanos(&self) -> u64 {
        nanos_since(self.epoch)
    }
}

/// Sentinel for "never happened" in the timestamp atomics.
const NEVER: u64 = u64::MAX;

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
}

fn age(now: u64, then: u64) -> Option<Duration> {
    (then != NEVER).then(|| Duration::from_nanos(now.saturating_sub(then)))
}

/// One connection's live counters; updated by its task without locking.
#[derive(Debug)]
pub struct ConnectionStatus {
    venue: Venue,
    epoch: Instant,
    state: AtomicU8,
    last_frame: AtomicU64,
    reconnects: AtomicU64,
    frames: AtomicU64,
    malformed: AtomicU64,
    restarts: AtomicU64,
    streams: usize,
    stall_timeout: Duration,
}

impl ConnectionStatus {
    /// Its task failed and is being restarted.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_state(&self, state: ConnectionState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> ConnectionState {
        match self.state.load(Ordering::Relaxed) {
            x if x == ConnectionState::Connected as u8 => ConnectionState::Connected,
            x if x == ConnectionState::Backoff as u8 => ConnectionState::Backoff,
            _ => ConnectionState::Connecting,
        }
    }

    /// A frame arrived now.
    pub fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_frame
            .store(nanos_since(self.epoch), Ordering::Relaxed);
    }

    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// One book's live counters; updated by the connection task that owns the book.
#[derive(Debug)]
pub struct BookStatus {
    epoch: Instant,
    state: AtomicU8,
    last_message: AtomicU64,
    gaps: AtomicU64,
    resyncs: AtomicU64,
    crossed: AtomicU64,
    snapshot_failures: AtomicU64,
    checksums_verified: AtomicU64,
    checksum_mismatches: AtomicU64,
}

impl BookStatus {
    pub fn set_state(&self, state: BookSyncState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> BookSyncState {
        match self.state.load(Ordering::Relaxed) {
            x if x == BookSyncState::Synced as u8 => BookSyncState::Synced,
            x if x == BookSyncState::Resyncing as u8 => BookSyncState::Resyncing,
            _ => BookSyncState::Syncing,
        }
    }

    /// A depth message for this book arrived now.
    pub fn message(&self) {
        self.last_message
            .store(nanos_since(self.epoch), Ordering::Relaxed);
    }

    pub fn gap(&self) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }

    /// A resync started: the book is not servable until the next snapshot joins.
    pub fn resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        self.set_state(BookSyncState::Resyncing);
    }

    pub fn crossed(&self) {
        self.crossed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot_failure(&self) {
        self.snapshot_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` more checksums matched.
    pub fn checksums_verified(&self, n: u64) {
        self.checksums_verified.fetch_add(n, Ordering::Relaxed);
    }

    pub fn checksum_mismatch(&self) {
        self.checksum_mismatches.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_every_book() {
        let status = FeedStatus::new();
        assert!(status.all_books_synced(), "no books: vacuously ready");
        let a = status.register_book(&InstrumentId::new(
            Venue::new("binance_spot").unwrap(),
            "BTCUSDT",
        ));
        let b = status.register_book(&InstrumentId::new(
            Venue::new("binance_usdm").unwrap(),
            "BTCUSDT",
        ));
        assert!(!status.all_books_synced());
        a.set_state(BookSyncState::Synced);
        assert!(!status.all_books_synced());
        b.set_state(BookSyncState::Synced);
        assert!(status.all_books_synced());
        b.resync();
        assert!(!status.all_books_synced());
        let info = status.snapshot();
        let usdm = info
            .books
            .iter()
            .find(|i| i.instrument.venue == Venue::new("binance_usdm").unwrap())
            .map(|i| (i.state, i.resyncs));
        assert_eq!(usdm, Some((BookSyncState::Resyncing, 1)));
    }

    #[test]
    fn connection_counters_and_ages() {
        let status = FeedStatus::new();
        let c = status.register_connection(
            Venue::new("binance_spot").unwrap(),
            "binance_spot#0",
            12,
            Duration::from_secs(30),
        );
        let before = status.snapshot();
        assert_eq!(before.connections[0].last_frame_age, None);
        c.set_state(ConnectionState::Connected);
        c.frame();
        c.frame();
        c.malformed();
        c.reconnected();
        c.restarted();
        // Registered again after a restart: the same entry, counters kept.
        let again = status.register_connection(
            Venue::new("binance_spot").unwrap(),
            "binance_spot#0",
            12,
            Duration::from_secs(30),
        );
        assert!(Arc::ptr_eq(&c, &again));
        let info = &status.snapshot().connections[0];
        assert_eq!(info.restarts, 1);
        assert_eq!(info.name, "binance_spot#0");
        assert_eq!(info.state, ConnectionState::Connected);
        assert_eq!((info.frames, info.malformed, info.reconnects), (2, 1, 1));
        assert_eq!(info.streams, 12);
        assert!(info
            .last_frame_age
            .is_some_and(|a| a < Duration::from_secs(5)));
    }
}
