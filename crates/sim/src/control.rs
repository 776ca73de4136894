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
//! signal and the stall deadline and insert malformed frames, the REST handlers take
//! rate-limit tokens (Binance: its depth requests; other venues: every REST request),
//! and the frame producer takes gap, checksum and cross tokens before publishing a book
//! delta.
//!
//! The faults are the same for every venue; what a client sees is the venue's own
//! shape of it: a 429 (Bybit: its documented 403) in the venue's error body, a deleted
//! delta that breaks the venue's sequence (Binance `U`/`pu`, Bybit `u`, a hole in
//! Coinbase's `sequence_num`) or its checksum (OKX, Kraken), a checksum that does not
//! match the book (OKX, Kraken; refused for venues without one), a truncated frame
//! shaped like the venue's data frames, a delta with one extra level at the other
//! side's best price, written like the venue's own levels. A malformed frame is
//! *inserted*, so nothing recorded is lost: a correct client counts it and carries on.
//! A crossing level is sent but never applied to the simulator's own book, so a client
//! that notices the crossed book and asks for a fresh snapshot gets the right one; a
//! checksum on the crossing frame is left as it was (a client sees the crossed book or
//! a checksum mismatch, either one a detection). A book fault names a
//! symbol as the venue spells it, case-insensitively, and may name the endpoint path
//! too when one symbol is served on several (Bybit's `BTCUSDT` on `/v5/public/linear`
//! and `/v5/public/spot`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// One fault, as accepted by `POST /sim/fault`, e.g. `{"fault":"drop"}`,
/// `{"fault":"stall","seconds":2.5}`, `{"fault":"rate_limit","count":3}`,
/// `{"fault":"gap","symbol":"BTCUSDT"}`,
/// `{"fault":"gap","symbol":"BTCUSDT","endpoint":"/v5/public/spot"}`,
/// `{"fault":"corrupt_checksum","symbol":"BTC-USDT"}`,
/// `{"fault":"trade_gap","symbol":"BTCUSDT"}`, `{"fault":"malformed"}`,
/// `{"fault":"cross","symbol":"BTCUSDT","endpoint":"/v5/public/linear"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Close every WebSocket connection now (no close handshake, like a network failure).
    Drop,
    /// Keep connections open but send nothing at all (no data, pings or pongs) for this long.
    Stall { seconds: f64 },
    /// Answer the next `count` REST requests (Binance: depth requests) as the venue
    /// answers a request over its limit: HTTP 429 with `Retry-After: 1` and the venue's
    /// error body (Bybit: HTTP 403 "access too frequent").
    RateLimit { count: u64 },
    /// Silently delete the next book delta of `symbol` (on `endpoint` if given); the
    /// simulator's own book still applies it, so a later snapshot (REST or a
    /// resubscription) is right and a resync recovers.
    Gap {
        symbol: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// Send the next book delta of `symbol` that carries a checksum (on `endpoint` if
    /// given) with a wrong checksum (OKX, Kraken; refused for venues without one).
    CorruptChecksum {
        symbol: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// Silently skip the next trade of `symbol` (synthetic mode): its trade and aggregate
    /// ids are used, so the stream's ids jump, as when a frame is lost.
    TradeGap { symbol: String },
    /// Insert one text frame that is not valid for the venue (a data frame cut short)
    /// before the next market-data frame of every connection open now (on `endpoint`
    /// if given). Nothing is replaced: every recorded or generated frame still arrives.
    Malformed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// Send the next book delta of `symbol` (on `endpoint` if given) that changes the
    /// book (not a stale one) with one extra bid at the simulator's best ask after it
    /// (or, when the frame has no bid side, an ask at its best bid), so a client's book
    /// is crossed. The simulator's own book does not get the level: a fresh snapshot
    /// after the client's resync is right.
    Cross {
        symbol: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
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
    /// The venue served: the capture's `exchange` (`BINANCE`, `BYBIT`, ...), or
    /// `synthetic`.
    #[serde(default)]
    pub venue: String,
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
    /// REST requests received, depth included (including those refused).
    #[serde(default)]
    pub rest_requests: u64,
    /// Subscribe requests received over WebSocket (URL subscriptions not counted).
    #[serde(default)]
    pub subscribe_requests: u64,
    /// Snapshots written for subscribing clients: replayed books joined after their
    /// recorded snapshot, and the synthetic Bybit market's books and tickers.
    #[serde(default)]
    pub snapshots_sent: u64,
    pub faults: FaultStats,
}

/// Faults applied so far: requested drops and stalls, rate-limit answers sent, frames
/// deleted, checksums corrupted, malformed frames inserted (one per connection that got
/// one), book deltas sent crossed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    pub drops: u64,
    pub stalls: u64,
    pub rate_limited: u64,
    pub gaps: u64,
    pub trade_gaps: u64,
    #[serde(default)]
    pub corrupted_checksums: u64,
    #[serde(default)]
    pub malformed: u64,
    #[serde(default)]
    pub crossed: u64,
}

/// Fault tokens by (endpoint path or any, upper-case symbol).
type Tokens = Mutex<HashMap<(Option<String>, String), u64>>;

/// The fault switches and counters of one simulator.
#[derive(Debug)]
pub struct Faults {
    venue: String,
    has_checksum: bool,
    drop_epoch: watch::Sender<u64>,
    stall_until: Mutex<Option<Instant>>,
    rate_limit: AtomicU64,
    gaps: Tokens,
    corruptions: Tokens,
    trade_gaps: Tokens,
    crosses: Tokens,
    /// The endpoint (or any) of every malformed fault, in order: a connection inserts
    /// one frame if any fault after the last one it saw names its endpoint.
    malformed: Mutex<Vec<Option<String>>>,
    malformed_epoch: AtomicU64,
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
    pub rest_requests: AtomicU64,
    pub subscribe_requests: AtomicU64,
    pub snapshots_sent: AtomicU64,
    drops: AtomicU64,
    stalls: AtomicU64,
    rate_limited: AtomicU64,
    gaps: AtomicU64,
    trade_gaps: AtomicU64,
    corrupted_checksums: AtomicU64,
    malformed: AtomicU64,
    crossed: AtomicU64,
}

impl Default for Faults {
    /// The faults of the synthetic (Binance) market.
    fn default() -> Self {
        Self::new("synthetic", false)
    }
}

impl Faults {
    /// The faults of a simulator serving `venue`, whose books carry a checksum or not.
    pub fn new(venue: &str, has_checksum: bool) -> Self {
        Self {
            venue: venue.to_owned(),
            has_checksum,
            drop_epoch: watch::Sender::new(0),
            stall_until: Mutex::new(None),
            rate_limit: AtomicU64::new(0),
            gaps: Mutex::new(HashMap::new()),
            corruptions: Mutex::new(HashMap::new()),
            trade_gaps: Mutex::new(HashMap::new()),
            crosses: Mutex::new(HashMap::new()),
            malformed: Mutex::new(Vec::new()),
            malformed_epoch: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// Applies one fault. Refused: a stall with a negative or non-finite duration, and a
    /// corrupt checksum on a venue without checksums.
    pub fn apply(&self, fault: &Fault) -> Result<(), FaultError> {
        match fault {
            Fault::Drop => self.drop_connections(),
            Fault::Stall { seconds } => {
                let d = Duration::try_from_secs_f64(*seconds)
                    .map_err(|e| FaultError(format!("stall seconds {seconds}: {e}")))?;
                self.stall(d);
            }
            Fault::RateLimit { count } => self.rate_limit(*count),
            Fault::Gap { symbol, endpoint } => add(&self.gaps, endpoint.as_deref(), symbol),
            Fault::CorruptChecksum { symbol, endpoint } => {
                if !self.has_checksum {
                    return Err(FaultError(format!(
                        "{} books carry no checksum to corrupt",
                        self.venue
                    )));
                }
                add(&self.corruptions, endpoint.as_deref(), symbol);
            }
            Fault::TradeGap { symbol } => add(&self.trade_gaps, None, symbol),
            Fault::Malformed { endpoint } => {
                let mut faults = self.malformed.lock();
                faults.push(endpoint.clone());
                // Under the lock: a connection that sees the new count and then takes
                // the lock sees the fault too.
                self.malformed_epoch.store(faults.len() as u64, Relaxed);
            }
            Fault::Cross { symbol, endpoint } => add(&self.crosses, endpoint.as_deref(), symbol),
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

    /// Deletes the next book delta of `symbol` (case-insensitive, any endpoint);
    /// repeatable.
    pub fn gap(&self, symbol: &str) {
        add(&self.gaps, None, symbol);
    }

    /// Corrupts the checksum of the next book delta of `symbol` that has one (any
    /// endpoint); refused when the venue's books carry none.
    pub fn corrupt_checksum(&self, symbol: &str) -> Result<(), FaultError> {
        self.apply(&Fault::CorruptChecksum {
            symbol: symbol.to_owned(),
            endpoint: None,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            venue: self.venue.clone(),
            frames_sent: c.frames_sent.load(Relaxed),
            connections: c.connections.load(Relaxed),
            connections_total: c.connections_total.load(Relaxed),
            connections_lagged: c.connections_lagged.load(Relaxed),
            depth_requests: c.depth_requests.load(Relaxed),
            rest_requests: c.rest_requests.load(Relaxed),
            subscribe_requests: c.subscribe_requests.load(Relaxed),
            snapshots_sent: c.snapshots_sent.load(Relaxed),
            faults: FaultStats {
                drops: c.drops.load(Relaxed),
                stalls: c.stalls.load(Relaxed),
                rate_limited: c.rate_limited.load(Relaxed),
                gaps: c.gaps.load(Relaxed),
                trade_gaps: c.trade_gaps.load(Relaxed),
                corrupted_checksums: c.corrupted_checksums.load(Relaxed),
                malformed: c.malformed.load(Relaxed),
                crossed: c.crossed.load(Relaxed),
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

    /// True (and one token used) when this REST request must be refused.
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

    /// True (and one token used) when the next book delta of `symbol` on `endpoint`
    /// must be deleted. `symbol` is upper-case.
    pub(crate) fn take_gap(&self, endpoint: &str, symbol: &str) -> bool {
        take(&self.gaps, endpoint, symbol, &self.counters.gaps)
    }

    /// True (and one token used) when the checksum of this book delta of `symbol` on
    /// `endpoint` must be corrupted. `symbol` is upper-case.
    pub(crate) fn take_corrupt(&self, endpoint: &str, symbol: &str) -> bool {
        take(
            &self.corruptions,
            endpoint,
            symbol,
            &self.counters.corrupted_checksums,
        )
    }

    /// True (and one token used) when the next trade of `symbol` must be skipped.
    pub(crate) fn take_trade_gap(&self, symbol: &str) -> bool {
        take(&self.trade_gaps, "", symbol, &self.counters.trade_gaps)
    }

    /// When this book delta of `symbol` on `endpoint` must cross the client's book:
    /// the frame `cross` writes, and one token used. A token stays while `cross` finds
    /// nothing to cross (the book has not started, or the frame has no such side).
    /// `symbol` is upper-case.
    pub(crate) fn take_cross<T>(
        &self,
        endpoint: &str,
        symbol: &str,
        cross: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        take_with(
            &self.crosses,
            endpoint,
            symbol,
            &self.counters.crossed,
            cross,
        )
    }

    /// The malformed faults applied so far: a new connection starts from here, so only
    /// faults applied while it is open reach it.
    pub(crate) fn malformed_seen(&self) -> u64 {
        self.malformed.lock().len() as u64
    }

    /// True (and counted) when a connection on `endpoint` that saw the malformed faults
    /// up to `seen` must insert a malformed frame now; `seen` moves to the latest.
    pub(crate) fn take_malformed(&self, seen: &mut u64, endpoint: &str) -> bool {
        // The common case, no new fault, without the lock.
        if self.malformed_epoch.load(Relaxed) == *seen {
            return false;
        }
        let faults = self.malformed.lock();
        let from = std::mem::replace(seen, faults.len() as u64) as usize;
        let hit = faults.get(from..).is_some_and(|new| {
            new.iter()
                .any(|e| e.as_deref().is_none_or(|e| e == endpoint))
        });
        if hit {
            self.counters.malformed.fetch_add(1, Relaxed);
        }
        hit
    }
}

/// One more token for `symbol` (upper-cased), on `endpoint` or any.
fn add(tokens: &Tokens, endpoint: Option<&str>, symbol: &str) {
    *tokens
        .lock()
        .entry((endpoint.map(str::to_owned), symbol.to_ascii_uppercase()))
        .or_default() += 1;
}

/// Uses one of `symbol`'s tokens for `endpoint` (or for any endpoint), counting it;
/// false when it has none.
fn take(tokens: &Tokens, endpoint: &str, symbol: &str, counter: &AtomicU64) -> bool {
    take_with(tokens, endpoint, symbol, counter, || Some(())).is_some()
}

/// Like [`take`], but the token is used (and counted) only when `apply` gives a value,
/// which it returns. `apply` runs under the tokens' lock.
fn take_with<T>(
    tokens: &Tokens,
    endpoint: &str,
    symbol: &str,
    counter: &AtomicU64,
    apply: impl FnOnce() -> Option<T>,
) -> Option<T> {
    let value = {
        let mut tokens = tokens.lock();
        if tokens.is_empty() {
            return None;
        }
        let specific = (Some(endpoint.to_owned()), symbol.to_owned());
        let any = (None, symbol.to_owned());
        let key = if tokens.contains_key(&specific) {
            specific
        } else {
            any
        };
        let n = tokens.get_mut(&key)?;
        let value = apply()?;
        *n -= 1;
        if *n == 0 {
            tokens.remove(&key);
        }
        value
    };
    counter.fetch_add(1, Relaxed);
    Some(value)
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
        assert_eq!(
            f,
            Fault::Gap {
                symbol: "x".into(),
                endpoint: None
            }
        );
        let f: Fault = serde_json::from_str(
            r#"{"fault":"corrupt_checksum","symbol":"x","endpoint":"/ws/v5/public"}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            Fault::CorruptChecksum {
                symbol: "x".into(),
                endpoint: Some("/ws/v5/public".into())
            }
        );
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
        assert!(!f.take_gap("/stream", "ETHUSDT"));
        assert!(f.take_gap("/stream", "BTCUSDT"));
        assert!(!f.take_gap("/stream", "BTCUSDT"));
        let s = f.stats();
        assert_eq!((s.faults.rate_limited, s.faults.gaps), (2, 1));
        assert_eq!(s.venue, "synthetic");
    }

    #[test]
    fn book_faults_may_name_an_endpoint() {
        let f = Faults::new("BYBIT", false);
        let gap = |endpoint: &str| Fault::Gap {
            symbol: "btcusdt".into(),
            endpoint: Some(endpoint.into()),
        };
        f.apply(&gap("/v5/public/spot")).unwrap();
        assert!(!f.take_gap("/v5/public/linear", "BTCUSDT"));
        assert!(f.take_gap("/v5/public/spot", "BTCUSDT"));
        assert!(f
            .corrupt_checksum("BTCUSDT")
            .unwrap_err()
            .0
            .contains("BYBIT"));
        let f = Faults::new("OKX", true);
        f.corrupt_checksum("btc-usdt").unwrap();
        assert!(f.take_corrupt("/ws/v5/public", "BTC-USDT"));
        assert_eq!(f.stats().faults.corrupted_checksums, 1);
    }

    #[test]
    fn malformed_frames_reach_the_connections_open_at_the_fault() {
        let f = Faults::default();
        let (mut early, mut spot) = (f.malformed_seen(), f.malformed_seen());
        f.apply(&serde_json::from_str(r#"{"fault":"malformed"}"#).unwrap())
            .unwrap();
        let mut late = f.malformed_seen();
        assert!(f.take_malformed(&mut early, "/stream"));
        assert!(!f.take_malformed(&mut early, "/stream"), "once");
        assert!(!f.take_malformed(&mut late, "/stream"), "opened after it");
        let only_spot = Fault::Malformed {
            endpoint: Some("/v5/public/spot".into()),
        };
        f.apply(&only_spot).unwrap();
        assert!(!f.take_malformed(&mut late, "/v5/public/linear"));
        assert!(
            f.take_malformed(&mut spot, "/v5/public/spot"),
            "both faults, one frame"
        );
        assert_eq!(f.stats().faults.malformed, 2);
    }

    #[test]
    fn a_cross_token_waits_for_a_frame_it_can_cross() {
        let f = Faults::new("OKX", true);
        let cross: Fault =
            serde_json::from_str(r#"{"fault":"cross","symbol":"btc-usdt"}"#).unwrap();
        assert_eq!(
            cross,
            Fault::Cross {
                symbol: "btc-usdt".into(),
                endpoint: None
            }
        );
        f.apply(&cross).unwrap();
        assert_eq!(
            f.take_cross("/ws/v5/public", "BTC-USDT", || None::<()>),
            None
        );
        assert_eq!(f.take_cross("/ws/v5/public", "ETH-USDT", || Some(1)), None);
        assert_eq!(
            f.take_cross("/ws/v5/public", "BTC-USDT", || Some(2)),
            Some(2)
        );
        assert_eq!(f.take_cross("/ws/v5/public", "BTC-USDT", || Some(3)), None);
        assert_eq!(f.stats().faults.crossed, 1);
    }
}
