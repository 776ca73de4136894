//! How each store is doing, for `/health/ready`, `GetStatus` and the operator.
//!
//! A store reports its own trouble here as it happens: *degraded* while its backend is
//! unreachable but nothing is lost yet (InfluxDB spilling to disk, Redis reconnecting,
//! a SQLite commit being retried), and *losing* when data was actually dropped. Losing
//! data makes Raven unready for a minute after the last loss (see `raven_api::status`);
//! degraded does not, because subscribers are still served exactly and the data waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long after a loss a store still counts as losing data.
pub const LOSS_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    Ok,
    Degraded,
    Losing,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Ok => "ok",
            StoreState::Degraded => "degraded",
            StoreState::Losing => "losing",
        }
    }
}

/// A point-in-time view of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    pub name: &'static str,
    pub state: StoreState,
    /// Why it is not ok; empty when it is.
    pub reason: String,
    /// Records the store itself lost since start (tap drops are counted by the hub).
    pub lost: u64,
}

#[derive(Debug, Default)]
struct Inner {
    trouble: Option<String>,
    lost: u64,
    last_loss: Option<(Instant, String)>,
}

/// Shared between a store's task (writing) and the status endpoints (reading).
#[derive(Debug)]
pub struct StoreHealth {
    name: &'static str,
    inner: Mutex<Inner>,
}

impl StoreHealth {
    pub fn new(name: &'static str) -> Arc<StoreHealth> {
        Arc::new(StoreHealth {
            name,
            inner: Mutex::new(Inner::default()),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The backend works again.
    pub fn ok(&self) {
        self.inner.lock().trouble = None;
    }

    /// The backend fails, but what it should hold is kept for later.
    pub fn degraded(&self, reason: impl Into<String>) {
        self.inner.lock().trouble = Some(reason.into());
    }

    /// `n` records were dropped for `reason`.
    pub fn lost(&self, n: u64, reason: impl Into<String>) {
        let mut inner = self.inner.lock();
        inner.lost += n;
        inner.last_loss = Some((Instant::now(), reason.into()));
    }

    pub fn report(&self) -> StoreReport {
        let inner = self.inner.lock();
        let recent_loss = inner
            .last_loss
            .as_ref()
            .filter(|(at, _)| at.elapsed() < LOSS_WINDOW);
        let (state, reason) = match (recent_loss, &inner.trouble) {
            (Some((_, why)), _) => (StoreState::Losing, why.clone()),
            (None, Some(why)) => (StoreState::Degraded, why.clone()),
            (None, None) => (StoreState::Ok, String::new()),
        };
        StoreReport {
            name: self.name,
            state,
            reason,
            lost: inner.lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_outranks_trouble_and_trouble_clears() {
        let h = StoreHealth::new("x");
        assert_eq!(h.report().state, StoreState::Ok);
        h.degraded("unreachable");
        assert_eq!(
            (h.report().state, h.report().reason.as_str()),
            (StoreState::Degraded, "unreachable")
        );
        h.lost(3, "disk full");
        let r = h.report();
        assert_eq!(
            (r.state, r.reason.as_str(), r.lost),
            (StoreState::Losing, "disk full", 3)
        );
        h.ok();
        assert_eq!(
            h.report().state,
            StoreState::Losing,
            "a recent loss stays visible"
        );
    }
}
