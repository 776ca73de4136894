//! A clock for waits shorter than a millisecond: [`until`].
//!
//! A stream with a batch delay (`SubscribeRequest.max_batch_delay_us`, see
//! [`crate::subscriber`]) holds its messages for a fraction of a millisecond so that
//! they leave in one write instead of one write and two task wake-ups each. Tokio's
//! timer cannot wait that long: its wheel ticks in whole milliseconds, so a 200 µs
//! sleep lasts 1 to 2 ms. This clock is one thread that sleeps until the earliest
//! deadline anyone waits for and then wakes every waiter due by then, plus a
//! [`SLACK`]: streams due within a few tens of microseconds of each other are woken
//! together, in one pass, which is the point of holding them.
//!
//! The thread starts with the first wait and parks, costing nothing, while nobody waits.
//! A waiter is woken at its deadline or up to `SLACK` before it, never later than the
//! operating system's timer lets a thread sleep (on Linux about 50–100 µs late). If the
//! thread cannot be started (the process is out of threads), every wait ends at once:
//! streams then send as if they had no batch delay, which loses nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Waiters due this close after the earliest are woken with it.
pub const SLACK: Duration = Duration::from_micros(50);

/// Resolves at `deadline` (or up to [`SLACK`] before it).
pub fn until(deadline: Instant) -> Until {
    Until { deadline, id: None }
}

/// The future of [`until`]. Dropping it withdraws the wait.
pub struct Until {
    deadline: Instant,
    /// Set while registered with the clock; the clock removes the entry when it fires.
    id: Option<u64>,
}

struct Clock {
    waiters: Mutex<Waiters>,
    next_id: AtomicU64,
    thread: Thread,
}

#[derive(Default)]
struct Waiters {
    by_deadline: BTreeMap<(Instant, u64), Waker>,
    /// When the clock thread will next look (`None`: it sleeps until unparked).
    wakes_at: Option<Instant>,
}

/// The clock, started on first use; `None` if its thread could not be started.
fn clock() -> Option<&'static Clock> {
    static CLOCK: OnceLock<Option<Clock>> = OnceLock::new();
    CLOCK
        .get_or_init(|| {
            // The thread needs the clock and the clock needs the thread's handle, so
            // the thread waits for the `OnceLock` it is being stored in.
            let spawned = std::thread::Builder::new()
                .name("raven-pacer".into())
                .spawn(|| {
                    if let Some(clock) = clock() {
                        run(clock);
                    }
                });
            match spawned {
                Ok(handle) => Some(Clock {
                    waiters: Mutex::new(Waiters::default()),
                    next_id: AtomicU64::new(0),
                    thread: handle.thread().clone(),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the batch pacer thread; batch delays are off");
                    None
                }
            }
        })
        .as_ref()
}

fn run(clock: &Clock) {
    let mut due = Vec::new();
    loop {
        let next_at = {
            let mut w = clock.waiters.lock();
            let now = Instant::now();
            let horizon = now + SLACK;
            while let Some(entry) = w.by_deadline.first_entry() {
                if entry.key().0 > horizon {
                    break;
                }
                due.push(entry.remove());
            }
            w.wakes_at = w.by_deadline.keys().next().map(|(at, _)| *at);
            w.wakes_at
        };
        // Woken outside the lock: a woken task may run at once and wait again.
        for waker in due.drain(..) {
            waker.wake();
        }
        // A waiter that registers after the lock was released unparks this thread if
        // it is due sooner; the unpark token makes the park below return at once. The
        // sleep is measured from now, after the wakes, so they do not make it late.
        match next_at {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

impl Future for Until {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        if self.id.is_none() && Instant::now() >= deadline {
            return Poll::Ready(());
        }
        let Some(clock) = clock() else {
            return Poll::Ready(());
        };
        let mut w = clock.waiters.lock();
        let id = match self.id {
            Some(id) => match w.by_deadline.get_mut(&(deadline, id)) {
                Some(waker) => {
                    waker.clone_from(cx.waker());
                    return Poll::Pending;
                }
                // The clock fired and removed the entry.
                None => {
                    drop(w);
                    self.id = None;
                    return Poll::Ready(());
                }
            },
            None => clock.next_id.fetch_add(1, Ordering::Relaxed),
        };
        w.by_deadline.insert((deadline, id), cx.waker().clone());
        let sooner = w.wakes_at.is_none_or(|at| deadline < at);
        if sooner {
            w.wakes_at = Some(deadline);
        }
        drop(w);
        self.id = Some(id);
        if sooner {
            clock.thread.unpark();
        }
        Poll::Pending
    }
}

impl Drop for Until {
    fn drop(&mut self) {
        if let (Some(id), Some(clock)) = (self.id, clock()) {
            clock
                .waiters
                .lock()
                .by_deadline
                .remove(&(self.deadline, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline_not_a_millisecond_tick_later() {
        for micros in [0u64, 150, 400] {
            let start = Instant::now();
            until(start + Duration::from_micros(micros)).await;
            // Not before the deadline less the slack; how late is the system's business
            // (benchmarks measure it, a test on a shared machine cannot).
            assert!(start.elapsed() + SLACK >= Duration::from_micros(micros));
        }
    }

    #[tokio::test]
    async fn many_waiters_are_all_woken_whatever_order_they_register_in() {
        let start = Instant::now();
        let waits: Vec<_> = (0..64u64)
            .map(|i| {
                let at = start + Duration::from_micros((i * 37) % 1000);
                tokio::spawn(async move {
                    until(at).await;
                    Instant::now() + SLACK >= at
                })
            })
            .collect();
        for w in waits {
            assert!(w.await.unwrap());
        }
    }

    fn waits_until(at: Instant) -> bool {
        let clock = clock().expect("the test process can start a thread");
        clock.waiters.lock().by_deadline.keys().any(|k| k.0 == at)
    }

    #[tokio::test]
    async fn a_dropped_wait_is_withdrawn() {
        let far = Instant::now() + Duration::from_secs(3600);
        {
            let mut wait = Box::pin(until(far));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert!(waits_until(far));
        }
        assert!(!waits_until(far));
    }
}
