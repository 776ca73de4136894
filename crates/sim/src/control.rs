//! Fault injection and statistics, shared by the replay and synthetic modes.
//!
//! A connector is only as good as its recovery paths, and a real exchange exercises them
//! at random: it drops sockets, goes silent, rate-limits snapshot requests and loses a
//! diff now and then. [`Faults`] lets a test trigger each of those on demand, either in
//! process (`Sim::faults()`) or, for a `raven sim` child process, over HTTP with
//! `POST /sim/fault` and a JSON [`Fault`] body. `GET /sim/stats` answers [`Stats`], so a
//! test can also see what the simulator did (frames sent, depth requests, faults applied).
//!
//! The modes consult the flags at their natural points: connection tasks watch the drop
//! signal and the stall deadline, the depth handler takes rate-limit tokens, and the
//! frame producer takes gap tokens before publishing a depth frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// One fault, as accepted by `POST /sim/fault`, e.g. `{"fault":"drop"}`,
/// `{"fault":"stall","seconds":2.5}`, `{"fault":"rate_limit","count":3}`,
/// `{"fault":"gap","symbol":"BTCUSDT"}`, `{"fault":"trade_gap","symbol":"BTCUSDT"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Close every WebSocket connection now (no close handshake, like a network failure).
    Drop,
    /// Keep connections open but send nothing at all (no data, pings or pongs) for this long.
    Stall { seconds: f64 },
    /// Answer the next `count` depth requests with HTTP 429 and `Retry-After: 1`.
    RateLimit { count: u64 },
    /// Silently skip the next depth frame of `symbol`; the simulator's own book still
    /// applies it, so a later REST snapshot is right and a resync recovers.
    Gap { symbol: String },
    /// Silently skip the next trade of `symbol` (synthetic mode): its trade and aggregate
    /// ids are used, so the stream's ids jump, as when a frame is lost.
    TradeGap { symbol: String },
}

/// Why a fault request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultError(pub String);

impl std::fmt::Display for FaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultError {}

/// What the simulator has done since it started (`GET /sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Frames published to connections (each frame counted once, however many
    /// connections received it; frames removed by a `gap` fault are not counted).
    pub frames_sent: u64,
    /// WebSocket connections open now.
    pub connections: u64,
    /// WebSocket connections accepted since start.
    pub connections_total: u64,
    /// Connections closed by the simulator because they fell too far behind.
    pub connections_lagged: u64,
    /// Depth requests received (including those refused with 429).
    pub depth_requests: u64,
    pub faults: FaultStats,
}

/// Faults applied so far: requested drops and stalls, 429 answers sent, frames skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    pub drops: u64,
    pub stalls: u64,
    pub rate_limited: u64,
    pub gaps: u64,
    pub trade_gaps: u64,
}

/// The fault switches and counters of one simulator.
#[derive(Debug)]
pub struct Faults {
    drop_epoch: watch::Sender<u64>,
    stall_until: Mutex<Option<Instant>>,
    rate_limit: AtomicU64,
    gaps: Mutex<HashMap<String, u64>>,
    trade_gaps: Mutex<HashMap<String, u64>>,
    pub(crate) counters: Counters,
}

/// Atomic counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_sent: AtomicU64,
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_lagged: AtomicU64,
    pub depth_requests: AtomicU64,
    drops: AtomicU64,
    stalls: AtomicU64,
    rate_limited: AtomicU64,
    gaps: AtomicU64,
    trade_gaps: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drop_epoch: watch::Sender::new(0),
            stall_until: Mutex::new(None),
            rate_limit: AtomicU64::new(0),
            gaps: Mutex::new(HashMap::new()),
            trade_gaps: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }
}

impl Faults {
    /// Applies one fault. Only a stall with a negative or non-finite duration is refused.
    pub fn apply(&self, fault: &Fault) -> Result<(), FaultError> {
        match fault {
            Fault::Drop => self.drop_connections(),
            Fault::Stall { seconds } => {
                let d = Duration::try_from_secs_f64(*seconds)
                    .map_err(|e| FaultError(format!("stall seconds {seconds}: {e}")))?;
                self.stall(d);
            }
            Fault::RateLimit { count } => self.rate_limit(*count),
            Fault::Gap { symbol } => self.gap(symbol),
            Fault::TradeGap { symbol } => {
                *self
                    .trade_gaps
                    .lock()
                    .entry(symbol.to_ascii_uppercase())
                    .or_default() += 1;
            }
        }
        Ok(())
    }

    /// Closes every WebSocket connection now.
    pub fn drop_connections(&self) {
        self.counters.drops.fetch_add(1, Relaxed);
        self.drop_epoch.send_modify(|e| *e += 1);
    }

    /// Sends nothing on any connection for `duration` from now.
    pub fn stall(&self, duration: Duration) {
        self.counters.stalls.fetch_add(1, Relaxed);
        *self.stall_until.lock() = Some(Instant::now() + duration);
    }

    /// Answers the next `count` depth requests with 429 (replaces any pending count).
    pub fn rate_limit(&self, count: u64) {
        self.rate_limit.store(count, Relaxed);
    }

    /// Skips the next depth frame of `symbol` (case-insensitive); repeatable.
    pub fn gap(&self, symbol: &str) {
        *self
            .gaps
            .lock()
            .entry(symbol.to_ascii_uppercase())
            .or_default() += 1;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            frames_sent: c.frames_sent.load(Relaxed),
            connections: c.connections.load(Relaxed),
            connections_total: c.connections_total.load(Relaxed),
            connections_lagged: c.connections_lagged.load(Relaxed),
            depth_requests: c.depth_requests.load(Relaxed),
            faults: FaultStats {
                drops: c.drops.load(Relaxed),
                stalls: c.stalls.load(Relaxed),
                rate_limited: c.rate_limited.load(Relaxed),
                gaps: c.gaps.load(Relaxed),
                trade_gaps: c.trade_gaps.load(Relaxed),
            },
        }
    }

    /// A receiver that changes every time [`Faults::drop_connections`] is called.
    pub(crate) fn drops(&self) -> watch::Receiver<u64> {
        self.drop_epoch.subscribe()
    }

    /// The end of the current stall, if one is in progress.
    pub(crate) fn stalled_until(&self) -> Option<Instant> {
        let mut until = self.stall_until.lock();
        match *until {
            Some(t) if t > Instant::now() => Some(t),
            Some(_) => {
                *until = None;
                None
            }
            None => None,
        }
    }

    /// True (and one token used) when this depth request must be refused with 429.
    pub(crate) fn take_rate_limit(&self) -> bool {
        let taken = self
            .rate_limit
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.counters.rate_limited.fetch_add(1, Relaxed);
        }
        taken
    }

    /// True (and one token used) when the next depth frame of `symbol` must be skipped.
    /// `symbol` is upper-case.
    pub(crate) fn take_gap(&self, symbol: &str) -> bool {
        take(&self.gaps, symbol, &self.counters.gaps)
    }

    /// True (and one token used) when the next trade of `symbol` must be skipped.
    pub(crate) fn take_trade_gap(&self, symbol: &str) -> bool {
        take(&self.trade_gaps, symbol, &self.counters.trade_gaps)
    }
}

/// Uses one of `symbol`'s tokens in `tokens`, counting it; false when it has none.
fn take(tokens: &Mutex<HashMap<String, u64>>, symbol: &str, counter: &AtomicU64) -> bool {
    {
        let mut gaps = tokens.lock();
        if gaps.is_empty() {
            return false;
        }
        let Some(n) = gaps.get_mut(symbol) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            gaps.remove(symbol);
        }
    }
    counter.fetch_add(1, Relaxed);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_http_fault_bodies() {
        let f: Fault = serde_json::from_str(r#"{"fault":"stall","seconds":1.5}"#).unwrap();
        assert_eq!(f, Fault::Stall { seconds: 1.5 });
        let f: Fault = serde_json::from_str(r#"{"fault":"rate_limit","count":2}"#).unwrap();
        assert_eq!(f, Fault::RateLimit { count: 2 });
        let f: Fault = serde_json::from_str(r#"{"fault":"gap","symbol":"x"}"#).unwrap();
        assert_eq!(f, Fault::Gap { symbol: "x".into() });
        let f: Fault = serde_json::from_str(r#"{"fault":"drop"}"#).unwrap();
        assert_eq!(f, Fault::Drop);
        let f: Fault = serde_json::from_str(r#"{"fault":"trade_gap","symbol":"x"}"#).unwrap();
        assert_eq!(f, Fault::TradeGap { symbol: "x".into() });
        assert!(Faults::default()
            .apply(&Fault::Stall { seconds: -1.0 })
            .is_err());
    }

    #[test]
    fn tokens_run_out() {
        let f = Faults::default();
        f.rate_limit(2);
        assert!(f.take_rate_limit() && f.take_rate_limit());
        assert!(!f.take_rate_limit());
        f.gap("btcusdt");
        assert!(!f.take_gap("ETHUSDT"));
        assert!(f.take_gap("BTCUSDT"));
        assert!(!f.take_gap("BTCUSDT"));
        let s = f.stats();
        assert_eq!((s.faults.rate_limited, s.faults.gaps), (2, 1));
    }
}
