//! Keeping a venue's connection tasks alive.
//!
//! A connection task that fails (panics) must not leave its books looking synced or its
//! streams looking whole, and must not stay dead: the supervisor reports the failure
//! (the caller resets the books and announces the interruption) and starts the task
//! again after a backoff, which starts over once the task has run healthy for
//! [`HEALTHY_AFTER`]. Used by every venue family.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use raven_model::Venue;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backoff::{Backoff, BackoffConfig};
use crate::status::{self, ConnectionState, FeedStatus};

/// A connection up and delivering this long is healthy: the reconnect backoff starts
/// over.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Runs `count` connection tasks made by `run(index)` until `shutdown` turns true,
/// restarting any that panics. `names[index]` is the connection's status entry;
/// `failed(index, reason)` reports what the dead task can no longer report.
pub async fn connections<R, Fut, F>(
    venue: Venue,
    names: Vec<String>,
    backoff: BackoffConfig,
    status: &FeedStatus,
    shutdown: watch::Receiver<bool>,
    run: R,
    mut failed: F,
) where
    R: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    F: FnMut(usize, &str),
{
    // From zero, so dashboards and alerts on their increase see the first one.
    metrics::counter!(status::METRIC_TASK_RESTARTS, "venue" => venue.as_str()).absolute(0);
    let mut tasks = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut restarts: Vec<(Backoff, tokio::time::Instant)> = names
        .iter()
        .map(|_| (Backoff::new(backoff), tokio::time::Instant::now()))
        .collect();
    let start = |tasks: &mut JoinSet<()>, index: usize, delay: Duration| {
        let task = run(index);
        let mut shutdown = shutdown.clone();
        tasks
            .spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                task.await
            })
            .id()
    };
    for index in 0..names.len() {
        running.insert(start(&mut tasks, index, Duration::ZERO), index);
    }
    while let Some(result) = tasks.join_next_with_id().await {
        let (id, error) = match result {
            Ok((id, ())) => {
                running.remove(&id);
                continue;
            }
            Err(error) => (error.id(), error),
        };
        let Some(index) = running.remove(&id) else {
            continue;
        };
        if !error.is_panic() || *shutdown.borrow() {
            continue;
        }
        let name = &names[index];
        let reason = crate::task::panic_message(error.into_panic());
        let (backoff, started) = &mut restarts[index];
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        *started = tokio::time::Instant::now() + delay;
        tracing::error!(%venue, connection = %name, %reason, restart_in = ?delay, "connection task failed; restarting it");
        metrics::counter!(status::METRIC_TASK_RESTARTS, "venue" => venue.as_str()).increment(1);
        failed(index, &reason);
        if let Some(conn) = status.connection(name) {
            conn.restarted();
            conn.set_state(ConnectionState::Backoff);
        }
        running.insert(start(&mut tasks, index, delay), index);
    }
}
