//! Keeping the server's long-lived tasks alive.
//!
//! A task that panics must not die quietly. The venues supervise their own connections
//! (`raven_venues::binance`); this module does it for the rest of `raven serve`:
//!
//! * a **store** is run on a tap receiver the supervisor owns, so a store that fails
//!   leaves its tap open (records keep queueing, and a full tap counts its drops) and the
//!   restarted store reads on from where the failed one was; what the failed one held
//!   and had not made durable is reported lost ([`StoreHealth::task_failed`]), so the
//!   store shows `losing`, with the reason, in GetStatus, metrics and readiness;
//! * the **ticker** and the **view task** are restarted as they were.
//!
//! Restarts back off (the venues' backoff), and the backoff starts over once a task ran
//! for a while.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use raven_hub::Record;
use raven_sinks::health::StoreHealth;
use raven_venues::backoff::{Backoff, BackoffConfig};
use raven_venues::task::panic_message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How restarts back off.
const RESTART_BACKOFF: BackoffConfig = BackoffConfig {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(30),
    jitter: 0.5,
};

/// Store tasks restarted, by store; other supervised tasks restarted, by task.
const METRIC_STORE_RESTARTS: &str = "raven_store_task_restarts_total";
const METRIC_TASK_RESTARTS: &str = "raven_task_restarts_total";

/// A task that ran this long before failing was healthy: the backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Resolves once `stop` turns true.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One run of a store on the supervisor's receiver, until told to stop.
pub type StoreRun = Box<
    dyn for<'a> FnMut(
            &'a mut mpsc::Receiver<Record>,
            Pin<Box<dyn Future<Output = ()> + Send>>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
        + Send,
>;

/// Runs the store `name` on `records` until `stop` (a clean end), restarting it when it
/// fails.
pub fn store(
    name: &'static str,
    health: Arc<StoreHealth>,
    mut records: mpsc::Receiver<Record>,
    stop: watch::Receiver<bool>,
    mut run: StoreRun,
) -> JoinHandle<()> {
    // From zero, so an alert on its increase sees the first restart.
    metrics::counter!(METRIC_STORE_RESTARTS, "store" => name).absolute(0);
    tokio::spawn(async move {
        let mut backoff = Backoff::new(RESTART_BACKOFF);
        loop {
            let started = tokio::time::Instant::now();
            let attempt = run(&mut records, Box::pin(stopped(stop.clone())));
            let Err(panic) = AssertUnwindSafe(attempt).catch_unwind().await else {
                return;
            };
            let why = panic_message(panic);
            metrics::counter!(METRIC_STORE_RESTARTS, "store" => name).increment(1);
            health.task_failed(&why);
            if *stop.borrow() {
                // Stopping anyway: what still waits in the tap is lost, and counted.
                let left = records.len() as u64;
                tracing::error!(store = name, %why, left, "store task failed while stopping");
                health.lost(left, format!("store task failed while stopping ({why})"));
                return;
            }
            if started.elapsed() >= HEALTHY_AFTER {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::error!(store = name, %why, restart_in = ?delay, "store task failed; restarting it");
            tokio::time::sleep(delay).await;
        }
    })
}

/// Runs the task `make` builds, forever, restarting it (with backoff) when it fails or
/// ends. Aborted with its handle.
pub fn forever<F, Fut>(name: &'static str, mut make: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    metrics::counter!(METRIC_TASK_RESTARTS, "task" => name).absolute(0);
    tokio::spawn(async move {
        let mut backoff = Backoff::new(RESTART_BACKOFF);
        loop {
            let started = tokio::time::Instant::now();
            let why = match AssertUnwindSafe(make()).catch_unwind().await {
                Ok(()) => "it ended".to_owned(),
                Err(panic) => panic_message(panic),
            };
            metrics::counter!(METRIC_TASK_RESTARTS, "task" => name).increment(1);
            if started.elapsed() >= HEALTHY_AFTER {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::error!(task = name, %why, restart_in = ?delay, "task failed; restarting it");
            tokio::time::sleep(delay).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_sinks::health::StoreState;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn record() -> Record {
        Record::Event(raven_model::MarketEvent {
            instrument: raven_model::InstrumentId::new(
                raven_model::Venue::new("binance_spot").unwrap(),
                "X",
            ),
            exchange_time: raven_model::UnixNanos(1),
            receive_time: raven_model::UnixNanos(1),
            kind: raven_model::EventKind::Trade(raven_model::Trade {
                price: raven_model::Price::parse("1").unwrap(),
                qty: raven_model::Qty::parse("1").unwrap(),
                aggressor: raven_model::Side::Buy,
                trade_id: raven_model::TradeId::Number(1),
                ordinal: 0,
            }),
        })
    }

    #[tokio::test]
    async fn a_failed_store_is_restarted_on_the_same_tap_and_its_loss_reported() {
        let (tx, rx) = mpsc::channel(100);
        let (stop_tx, stop_rx) = watch::channel(false);
        let health = StoreHealth::new("test");
        let runs = Arc::new(AtomicUsize::new(0));
        let read = Arc::new(AtomicUsize::new(0));
        let (h, r, n) = (health.clone(), read.clone(), runs.clone());
        let task = store(
            "test",
            health.clone(),
            rx,
            stop_rx,
            Box::new(move |records, stop| {
                let (h, r, n) = (h.clone(), r.clone(), n.clone());
                Box::pin(async move {
                    let first = n.fetch_add(1, Ordering::SeqCst) == 0;
                    let mut stop = stop;
                    loop {
                        tokio::select! {
                            got = records.recv() => match got {
                                Some(_) => {
                                    r.fetch_add(1, Ordering::SeqCst);
                                    h.hold(1);
                                    // The first run fails holding three records.
                                    if first && h.held() == 3 {
                                        panic!("store bug");
                                    }
                                }
                                None => return,
                            },
                            _ = &mut stop => return,
                        }
                    }
                })
            }),
        );
        for _ in 0..10 {
            tx.send(record()).await.unwrap();
        }
        while read.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "restarted once");
        let report = health.report();
        assert_eq!((report.state, report.lost), (StoreState::Losing, 3));
        assert!(report.reason.contains("store bug"), "{}", report.reason);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a clean stop ends the supervisor")
            .unwrap();
    }
}
