//! What a topic keeps of its recent messages, so a client that lost its stream can
//! resume where it left off.
//!
//! A topic's sequence numbers are hub-wide (every subscriber sees message N as the same
//! bytes), so resuming is a replay of the topic's own log: a [`Retention`] keeps the
//! encoded messages of the last `max_age`, at most `max_bytes` of them, in sequence
//! order. Each is the same `Bytes` the live subscribers were handed, so keeping it costs
//! a reference count and its share of the buffer, never a copy.
//!
//! Only messages that carry the topic's own numbers are kept: events, book deltas and
//! the snapshots that follow a resync, `BookReset` and `FeedGap` notices. What one
//! subscriber alone receives (its first snapshot, a conflated snapshot, a `Dropped`
//! notice) is not the topic's history.
//!
//! Bounds: per topic by age and bytes, and across all topics by a shared byte budget
//! ([`RetentionBudget`]): a topic that pushes while the budget is spent gives up its own
//! oldest messages, so the busiest topics, which fill it, are the ones that shrink.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The bytes every topic's retained messages may hold together.
#[derive(Debug)]
pub struct RetentionBudget {
    max_bytes: usize,
    used: AtomicUsize,
}

impl RetentionBudget {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_bytes,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes retained now, over all topics.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn spent(&self) -> bool {
        self.used() > self.max_bytes
    }
}

/// How long and how much a topic keeps.
#[derive(Debug, Clone, Copy)]
pub struct RetentionLimits {
    pub max_age: Duration,
    pub max_bytes: usize,
}

struct Retained {
    sequence: u64,
    at: Instant,
    body: Bytes,
}

/// One topic's recent messages, oldest first, numbered without holes.
pub(crate) struct Retention {
    limits: RetentionLimits,
    budget: Arc<RetentionBudget>,
    log: VecDeque<Retained>,
    bytes: usize,
}

impl Retention {
    pub fn new(limits: RetentionLimits, budget: Arc<RetentionBudget>) -> Self {
        Self {
            limits,
            budget,
            log: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps message `sequence` and lets go of what the bounds no longer allow. A
    /// sequence that does not follow the last one kept (a message that was not
    /// retained in between) starts the log afresh, so it never has a hole.
    pub fn push(&mut self, sequence: u64, body: &Bytes, now: Instant) {
        if self
            .log
            .back()
            .is_some_and(|last| last.sequence + 1 != sequence)
        {
            while self.pop_oldest() {}
        }
        self.log.push_back(Retained {
            sequence,
            at: now,
            body: body.clone(),
        });
        self.bytes += body.len();
        self.budget.used.fetch_add(body.len(), Ordering::Relaxed);
        let max_age = self.limits.max_age;
        let expired = move |r: &Retained| now.saturating_duration_since(r.at) > max_age;
        while self.log.len() > 1
            && (self.bytes > self.limits.max_bytes
                || self.budget.spent()
                || self.log.front().is_some_and(expired))
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) -> bool {
        let Some(oldest) = self.log.pop_front() else {
            return false;
        };
        self.bytes -= oldest.body.len();
        self.budget
            .used
            .fetch_sub(oldest.body.len(), Ordering::Relaxed);
        true
    }

    /// The oldest sequence kept.
    pub fn first(&self) -> Option<u64> {
        self.log.front().map(|r| r.sequence)
    }

    /// Message `sequence`, if kept.
    pub fn get(&self, sequence: u64) -> Option<&Bytes> {
        let first = self.first()?;
        let index = usize::try_from(sequence.checked_sub(first)?).ok()?;
        self.log.get(index).map(|r| &r.body)
    }

    /// Messages and bytes kept.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        (self.log.len(), self.bytes)
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_age_ms: u64, max_bytes: usize) -> RetentionLimits {
        RetentionLimits {
            max_age: Duration::from_millis(max_age_ms),
            max_bytes,
        }
    }

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn keeps_messages_by_sequence_within_its_bytes() {
        let budget = RetentionBudget::new(1 << 20);
        let mut r = Retention::new(limits(60_000, 100), budget.clone());
        let t = Instant::now();
        for seq in 1..=5 {
            r.push(seq, &body(30), t);
        }
        // 100 bytes hold three messages of 30.
        assert_eq!(r.len(), (3, 90));
        assert_eq!(r.first(), Some(3));
        assert!(r.get(2).is_none());
        assert_eq!(r.get(5).map(Bytes::len), Some(30));
        assert!(r.get(6).is_none());
        assert_eq!(budget.used(), 90);
        drop(r);
        assert_eq!(budget.used(), 0, "a dropped topic returns its bytes");
    }

    #[test]
    fn lets_go_of_what_is_older_than_its_age() {
        let mut r = Retention::new(limits(1000, 1 << 20), RetentionBudget::new(1 << 20));
        let t = Instant::now();
        r.push(1, &body(1), t);
        r.push(2, &body(1), t + Duration::from_millis(500));
        r.push(3, &body(1), t + Duration::from_millis(1200));
        assert_eq!(r.first(), Some(2));
        // The newest message is always kept, however old the rest.
        r.push(4, &body(1), t + Duration::from_secs(10));
        assert_eq!(r.first(), Some(4));
    }

    #[test]
    fn a_spent_budget_shrinks_the_topic_that_pushes() {
        let budget = RetentionBudget::new(100);
        let t = Instant::now();
        let mut quiet = Retention::new(limits(60_000, 1000), budget.clone());
        let mut busy = Retention::new(limits(60_000, 1000), budget.clone());
        quiet.push(1, &body(40), t);
        for seq in 1..=10 {
            busy.push(seq, &body(20), t);
        }
        assert!(budget.used() <= 100, "{}", budget.used());
        assert_eq!(quiet.len(), (1, 40), "the quiet topic keeps its message");
        assert_eq!(busy.first(), Some(8));
    }

    #[test]
    fn a_hole_in_the_numbers_starts_afresh() {
        let mut r = Retention::new(limits(60_000, 1000), RetentionBudget::new(1000));
        let t = Instant::now();
        r.push(1, &body(1), t);
        r.push(2, &body(1), t);
        r.push(5, &body(1), t);
        assert_eq!(r.first(), Some(5));
        assert!(r.get(2).is_none());
    }
}
