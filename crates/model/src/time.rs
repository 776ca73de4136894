//! Nanoseconds since the Unix epoch, the one time unit inside Raven.
//!
//! Exchanges speak milliseconds (Binance `E`/`T`) and Raven measures its own receive and
//! send times in nanoseconds; one integer type for all three keeps arithmetic between
//! them honest and the proto fields uniform.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixNanos(pub u64);

impl UnixNanos {
    /// The wall clock now. Used for Raven's receive and send times.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(d.as_nanos() as u64)
    }

    pub fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000_000))
    }

    pub fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }
}
