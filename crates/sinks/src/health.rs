//! How each store is doing, for `/health/ready`, `GetStatus` and the operator.
//!
//! A store reports its own trouble here as it happens: *degraded* while its backend is
//! unreachable but nothing is lost yet (InfluxDB spilling to disk, Redis reconnecting,
//! a SQLite commit being retried), and *losing* when data was actually dropped. Losing
//! data makes Raven unready for a minute after the last loss (see `raven_api::status`);
//! degraded does not, because subscribers are still served exactly and the data waits.
//!
//! A store also says how many records it *holds*: taken from its tap, not yet durable
//! (written, or spilled to disk). If its task fails, those are what is lost, and the
//! supervisor that restarts it reports them ([`StoreHealth::task_failed`]).

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Records taken from the tap and not yet durable.
    held: AtomicU64,
}

impl StoreHealth {
    pub fn new(name: &'static str) -> Arc<StoreHealth> {
        Arc::new(StoreHealth {
            name,
            inner: Mutex::new(Inner::default()),
            held: AtomicU64::new(0),
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

    /// `n` more records are held (taken from the tap, not yet durable).
    pub fn hold(&self, n: u64) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` held records are durable now, or were counted as lost.
    pub fn release(&self, n: u64) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(n))
            });
    }

    /// For stores that know their whole holding at once: it is `n` now.
    pub fn set_held(&self, n: u64) {
        self.held.store(n, Ordering::Relaxed);
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The store's task failed (`why`) and is being restarted: what it held is lost.
    pub fn task_failed(&self, why: &str) {
        let held = self.held.swap(0, Ordering::Relaxed);
        self.lost(
            held,
            format!("store task failed ({why}); the {held} records it held are lost; restarted"),
        );
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

    #[test]
    fn a_failed_task_loses_what_it_held() {
        let h = StoreHealth::new("x");
        h.hold(10);
        h.release(4);
        h.task_failed("panicked");
        let r = h.report();
        assert_eq!((r.state, r.lost), (StoreState::Losing, 6));
        assert!(r.reason.contains("6 records"), "{}", r.reason);
        assert_eq!(h.held(), 0);
    }
}
