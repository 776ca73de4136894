//! One subscriber stream: its bounded queue and its slow-consumer state.
//!
//! Every gRPC `Subscribe` stream gets one [`Subscriber`]. Publishers (feed tasks, under
//! an instrument's lock) push encoded messages into its queue and must never wait for
//! it, so the queue is a plain mutex-guarded `VecDeque` with two lanes of admission:
//!
//! * **data** (trades, deltas, snapshots) is admitted only while the queue is below its
//!   capacity; when it is full the publisher applies the topic's policy (conflate or
//!   drop, see [`crate::instrument`]) and the subscriber is marked *behind*;
//! * **control** (acks, pongs, resets, drop notices) is always admitted, so a request is
//!   never left unanswered and a client always learns that its book became invalid.
//!
//! A subscriber is *behind* from the first data message it could not take until it next
//! drains its queue empty. A healthy consumer empties its queue many times a second, even
//! after a burst; a consumer slower than its feed never does, however often one of its
//! topics is conflated or told of drops. One that stays behind longer than the configured
//! limit is *killed*: its queue is cleared, the reason is stored, and its stream ends with
//! that status. The consumer side is [`Subscriber::next`], awaited by the gRPC response
//! stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// What the consumer gets from its queue.
#[derive(Debug, PartialEq)]
pub enum Next {
    Message(Bytes),
    /// The hub disconnected this subscriber; the string says why.
    Killed(String),
    /// Nothing arrived before the deadline (time for a heartbeat).
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Accepted,
    Full,
}

struct Queue {
    items: VecDeque<Bytes>,
    /// When the subscriber first failed to take a data message, if it has not caught up.
    behind_since: Option<Instant>,
    killed: Option<String>,
}

pub struct Subscriber {
    pub id: u64,
    pub peer: String,
    capacity: usize,
    slow_limit: Duration,
    queue: Mutex<Queue>,
    ready: Notify,
    conflations: AtomicU64,
    dropped: AtomicU64,
    topics: AtomicU64,
}

/// Counters of one subscriber, for `GetStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub id: u64,
    pub peer: String,
    pub topics: u64,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub conflations: u64,
    pub dropped: u64,
}

impl Subscriber {
    pub(crate) fn new(id: u64, peer: String, capacity: usize, slow_limit: Duration) -> Self {
        Self {
            id,
            peer,
            capacity: capacity.max(2),
            slow_limit,
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(64),
                behind_since: None,
                killed: None,
            }),
            ready: Notify::new(),
            conflations: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            topics: AtomicU64::new(0),
        }
    }

    /// Admits a data message if the queue has room. A full queue marks the subscriber
    /// behind, and kills it past the slow limit.
    pub(crate) fn offer_data(&self, msg: &Bytes) -> Admit {
        let mut q = self.queue.lock();
        if q.killed.is_some() {
            return Admit::Full;
        }
        if q.items.len() < self.capacity {
            q.items.push_back(msg.clone());
            drop(q);
            self.ready.notify_one();
            Admit::Accepted
        } else {
            self.fall_behind_locked(&mut q);
            Admit::Full
        }
    }

    /// Marks the subscriber behind, and kills it once it has been behind past the limit.
    fn fall_behind_locked(&self, q: &mut Queue) {
        let since = *q.behind_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.slow_limit {
            self.kill_locked(
                q,
                format!(
                    "slow consumer: queue of {} messages stayed full for more than {:?}",
                    self.capacity, self.slow_limit
                ),
            );
        }
    }

    /// Admits a control message regardless of the data capacity.
    pub(crate) fn push_control(&self, msg: Bytes) {
        let mut q = self.queue.lock();
        if q.killed.is_none() {
            q.items.push_back(msg);
            drop(q);
            self.ready.notify_one();
        }
    }

    /// True when data for a recovering topic may be admitted: at least half the queue free.
    /// Otherwise the topic's message is skipped, which keeps the subscriber behind (and
    /// the slow-consumer clock running) exactly as a refused [`Self::offer_data`] does.
    pub(crate) fn try_recover(&self) -> bool {
        let mut q = self.queue.lock();
        if q.killed.is_some() {
            return false;
        }
        if q.items.len() * 2 < self.capacity {
            return true;
        }
        self.fall_behind_locked(&mut q);
        false
    }

    fn kill_locked(&self, q: &mut Queue, reason: String) {
        if q.killed.is_none() {
            tracing::warn!(subscriber = self.id, peer = %self.peer, %reason, "disconnecting subscriber");
            metrics::counter!("raven_subscriber_disconnects_total", "reason" => "slow_consumer")
                .increment(1);
            q.items.clear();
            q.killed = Some(reason);
            self.ready.notify_one();
        }
    }

    pub fn is_killed(&self) -> bool {
        self.queue.lock().killed.is_some()
    }

    /// Waits for the next message, up to `deadline`.
    pub async fn next(&self, deadline: tokio::time::Instant) -> Next {
        loop {
            {
                let mut q = self.queue.lock();
                if let Some(reason) = &q.killed {
                    return Next::Killed(reason.clone());
                }
                if let Some(msg) = q.items.pop_front() {
                    if q.items.is_empty() {
                        q.behind_since = None;
                    }
                    return Next::Message(msg);
                }
            }
            // A notify_one before this await leaves a permit, so no wakeup is lost.
            if tokio::time::timeout_at(deadline, self.ready.notified())
                .await
                .is_err()
            {
                return Next::Idle;
            }
        }
    }

    pub(crate) fn count_conflation(&self) {
        self.conflations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("raven_subscriber_conflations_total").increment(1);
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("raven_subscriber_dropped_messages_total").increment(n);
    }

    pub(crate) fn set_topic_count(&self, n: usize) {
        self.topics.store(n as u64, Ordering::Relaxed);
    }

    pub fn info(&self) -> SubscriberInfo {
        SubscriberInfo {
            id: self.id,
            peer: self.peer.clone(),
            topics: self.topics.load(Ordering::Relaxed),
            queue_depth: self.queue.lock().items.len(),
            queue_capacity: self.capacity,
            conflations: self.conflations.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[tokio::test]
    async fn data_is_bounded_and_control_is_not() {
        let s = Subscriber::new(1, "t".into(), 3, Duration::from_secs(60));
        assert_eq!(s.offer_data(&msg(1)), Admit::Accepted);
        assert_eq!(s.offer_data(&msg(2)), Admit::Accepted);
        assert_eq!(s.offer_data(&msg(3)), Admit::Accepted);
        assert_eq!(s.offer_data(&msg(4)), Admit::Full);
        s.push_control(msg(9));
        assert_eq!(s.info().queue_depth, 4);
        let far = tokio::time::Instant::now() + Duration::from_secs(1);
        for expect in [1, 2, 3, 9] {
            assert_eq!(s.next(far).await, Next::Message(msg(expect)));
        }
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        assert_eq!(s.next(soon).await, Next::Idle);
    }

    #[tokio::test]
    async fn staying_behind_past_the_limit_kills() {
        let s = Subscriber::new(1, "t".into(), 2, Duration::from_millis(20));
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        assert!(s.is_killed());
        let far = tokio::time::Instant::now() + Duration::from_secs(1);
        match s.next(far).await {
            Next::Killed(reason) => assert!(reason.contains("slow consumer"), "{reason}"),
            other => panic!("expected a kill, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_topic_that_cannot_recover_keeps_the_clock_running() {
        let s = Subscriber::new(1, "t".into(), 2, Duration::from_millis(20));
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The topic is conflating or dropping now, so it only asks whether it may recover.
        assert!(!s.try_recover());
        assert!(s.is_killed());
    }

    #[tokio::test]
    async fn draining_the_queue_resets_the_clock() {
        let s = Subscriber::new(1, "t".into(), 2, Duration::from_millis(20));
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let far = tokio::time::Instant::now() + Duration::from_secs(1);
        s.next(far).await;
        s.next(far).await;
        s.offer_data(&msg(4));
        s.offer_data(&msg(5));
        assert_eq!(s.offer_data(&msg(6)), Admit::Full);
        assert!(
            !s.is_killed(),
            "the limit counts from the last time the queue was empty"
        );
    }

    #[tokio::test]
    async fn reading_slower_than_the_feed_still_gets_killed() {
        let s = Subscriber::new(1, "t".into(), 2, Duration::from_millis(20));
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        let far = tokio::time::Instant::now() + Duration::from_secs(1);
        for _ in 0..10 {
            // One message read, two offered: the queue never empties.
            assert!(matches!(
                s.next(far).await,
                Next::Message(_) | Next::Killed(_)
            ));
            s.offer_data(&msg(3));
            s.offer_data(&msg(4));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(s.is_killed(), "a consumer that never catches up is cut");
    }
}
