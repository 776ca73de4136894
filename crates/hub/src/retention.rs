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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// What all topics' logs share: the bytes they may hold together, and the clock
/// their messages' ages are read on.
///
/// The clock is the hub's monotonic time in milliseconds, moved on by the hub's tick
/// (a few times a second): keeping a message then reads no clock, a wall-clock step
/// cannot age the log, and a 60 s window does not need finer than a tick.
#[derive(Debug)]
pub struct RetentionBudget {
    max_bytes: usize,
    used: AtomicUsize,
    clock_ms: AtomicU64,
}

impl RetentionBudget {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_bytes,
            used: AtomicUsize::new(0),
            clock_ms: AtomicU64::new(0),
        })
    }

    /// Moves the clock to `elapsed` since the hub started (never back).
    pub fn advance(&self, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.clock_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
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

/// One kept message: when it was kept (on the budget's clock) and its bytes. Its
/// sequence is its place in the log; 40 bytes of bookkeeping per message.
struct Retained {
    at_ms: u64,
    body: Bytes,
}

/// One topic's recent messages, oldest first, numbered without holes.
pub(crate) struct Retention {
    limits: RetentionLimits,
    budget: Arc<RetentionBudget>,
    /// The sequence of the oldest message kept.
    first: u64,
    log: VecDeque<Retained>,
    bytes: usize,
}

impl Retention {
    pub fn new(limits: RetentionLimits, budget: Arc<RetentionBudget>) -> Self {
        Self {
            limits,
            budget,
            first: 0,
            log: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps message `sequence` and lets go of what the bounds no longer allow. A
    /// sequence that does not follow the last one kept (a message that was not
    /// retained in between) starts the log afresh, so it never has a hole.
    pub fn push(&mut self, sequence: u64, body: &Bytes) {
        if self.log.is_empty() || self.first + self.log.len() as u64 != sequence {
            while self.pop_oldest() {}
            self.first = sequence;
        }
        let at_ms = self.budget.now_ms();
        self.log.push_back(Retained {
            at_ms,
            body: body.clone(),
        });
        self.bytes += body.len();
        self.budget.used.fetch_add(body.len(), Ordering::Relaxed);
        let max_age = u64::try_from(self.limits.max_age.as_millis()).unwrap_or(u64::MAX);
        let expired = move |r: &Retained| at_ms.saturating_sub(r.at_ms) > max_age;
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
        self.first += 1;
        self.bytes -= oldest.body.len();
        self.budget
            .used
            .fetch_sub(oldest.body.len(), Ordering::Relaxed);
        true
    }

    /// The oldest sequence kept.
    pub fn first(&self) -> Option<u64> {
        (!self.log.is_empty()).then_some(self.first)
    }

    /// Message `sequence`, if kept.
    pub fn get(&self, sequence: u64) -> Option<&Bytes> {
        let index = usize::try_from(sequence.checked_sub(self.first)?).ok()?;
        self.log.get(index).map(|r| &r.body)
    }

    /// The messages kept, oldest first (reference counts, not copies).
    pub fn messages(&self) -> Vec<Bytes> {
        self.log.iter().map(|r| r.body.clone()).collect()
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
        for seq in 1..=5 {
            r.push(seq, &body(30));
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
        let budget = RetentionBudget::new(1 << 20);
        let mut r = Retention::new(limits(1000, 1 << 20), budget.clone());
        r.push(1, &body(1));
        budget.advance(Duration::from_millis(500));
        r.push(2, &body(1));
        budget.advance(Duration::from_millis(1200));
        r.push(3, &body(1));
        assert_eq!(r.first(), Some(2));
        // The newest message is always kept, however old the rest.
        budget.advance(Duration::from_secs(10));
        r.push(4, &body(1));
        assert_eq!(r.first(), Some(4));
        // The clock never goes back.
        budget.advance(Duration::from_secs(1));
        assert_eq!(budget.now_ms(), 10_000);
    }

    #[test]
    fn a_spent_budget_shrinks_the_topic_that_pushes() {
        let budget = RetentionBudget::new(100);
        let mut quiet = Retention::new(limits(60_000, 1000), budget.clone());
        let mut busy = Retention::new(limits(60_000, 1000), budget.clone());
        quiet.push(1, &body(40));
        for seq in 1..=10 {
            busy.push(seq, &body(20));
        }
        assert!(budget.used() <= 100, "{}", budget.used());
        assert_eq!(quiet.len(), (1, 40), "the quiet topic keeps its message");
        assert_eq!(busy.first(), Some(8));
    }

    #[test]
    fn a_hole_in_the_numbers_starts_afresh() {
        let mut r = Retention::new(limits(60_000, 1000), RetentionBudget::new(1000));
        r.push(1, &body(1));
        r.push(2, &body(1));
        r.push(5, &body(1));
        assert_eq!(r.first(), Some(5));
        assert!(r.get(2).is_none());
    }
}
