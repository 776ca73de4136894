//! One subscriber stream: its bounded queue and its slow-consumer state.
//!
//! Every gRPC `Subscribe` stream gets one [`Subscriber`]. Publishers (feed tasks, under
//! an instrument's lock) push encoded messages into its queue and must never wait for
//! it, so the queue is a plain mutex-guarded `VecDeque`, bounded both in messages and in
//! bytes, with two lanes of admission:
//!
//! * **data** (trades, deltas, snapshots — including the snapshot a subscribe starts
//!   with) is admitted only while the queue is below both bounds; when it is not, the
//!   publisher applies the topic's policy (conflate or drop, see [`crate::topic`]) and
//!   the subscriber is marked *behind*. A message larger than the byte bound is still
//!   admitted into an empty queue, so one deep book can always be sent;
//! * **control** (acks, pongs, resets, drop notices, feed-gap notices) is admitted past
//!   the data bounds, so a request is never left unanswered and a client always learns
//!   that its data has a hole — but only up to a headroom ([`QueueLimits`]) sized for
//!   what a reading client can have pending: one full request's acks and a notice for
//!   each of its topics. A client that lets more pile up is not reading, and is cut.
//!
//! A recovering topic's notice and the message after it are admitted together or not at
//! all ([`Subscriber::offer_recovery`]): publishers of other instruments push into the
//! same queue concurrently, and a notice followed by a refused message would be a gap
//! the notice does not explain.
//!
//! A subscriber is *behind* from the first data message it could not take until it next
//! drains its queue empty; it is *not reading* while messages wait and it has taken none
//! of them. Staying behind, or not reading, for longer than the configured limit gets it
//! *ended*: its queue is cleared, the reason is stored, and its stream ends with that
//! status. Being behind is checked when a message is refused; not reading by
//! [`Subscriber::sweep`], which the hub runs a few times a second and which compares
//! how many messages were read since its last look, so a stream that never reads is cut
//! within the limit (plus one sweep) whatever it does, and delivering a message never
//! reads the clock. Between sweeps, the bounds above keep its memory bounded. The
//! consumer side is [`Subscriber::next`], awaited by the gRPC response stream.
//!
//! A third producer is a replay from the history store ([`Subscriber::offer_replayed`]):
//! it is not a publisher that must never wait but a task that can, so it takes only
//! the first half of the queue (live data keeps the rest) and waits for the reader to
//! make room ([`Subscriber::room`]) instead of falling behind.
//!
//! A stream may ask for a *batch delay* (`SubscribeRequest.max_batch_delay_us`): then
//! the reader takes messages in batches at most one per delay, the first message after
//! a quiet spell at once and the ones that follow it within the delay together when the
//! delay is up. Each message the reader takes wakes the HTTP/2 connection and makes a
//! socket write; with a batch they are one wake-up and one write for all. While the
//! reader holds a batch, publishers do not wake it for every message, only when the
//! queue passes half its bounds (then the batch leaves at once, so a delay never makes
//! a stream conflate). The wait is [`crate::pacer`]'s, since tokio's timer cannot wait
//! less than a millisecond.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why a stream was ended by the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// It stayed behind, or did not read, past the slow-consumer limit.
    SlowConsumer(String),
    /// The server is shutting down.
    Stopping(String),
    /// The client sent what cannot be read (not protobuf): its requests are lost, so
    /// the stream ends rather than going on deaf.
    BadRequest(String),
    /// The client sent a message over the server's size limit (same reasoning).
    TooLarge(String),
}

/// What the consumer gets from its queue.
#[derive(Debug, PartialEq)]
pub enum Next {
    Message(Bytes),
    /// The hub ended this subscriber. (Boxed: the rare case must not make every
    /// message's `Next` larger.)
    Ended(Box<EndReason>),
    /// Nothing arrived before the deadline (time for a heartbeat).
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Accepted,
    Full,
}

/// The bounds of one stream's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Data messages queued before the topics conflate or drop.
    pub capacity: usize,
    /// Data bytes queued before the topics conflate or drop.
    pub max_bytes: usize,
    /// Control messages admitted beyond the data bounds (bytes: a quarter of
    /// `max_bytes`).
    pub control_headroom: usize,
    /// How long a stream may stay behind, or not read, before it is ended.
    pub slow_limit: Duration,
}

struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    /// When the subscriber first failed to take a data message, if it has not caught up.
    behind_since: Option<Instant>,
    ended: Option<EndReason>,
    /// What the last sweep saw: `reads` then, and since when messages have waited
    /// without one being read (`None`: the queue was empty or being read).
    swept: (u64, Option<Instant>),
    /// Messages the consumer has taken so far.
    reads: u64,
    /// When the reader started taking its last batch (batch delay only).
    batch_started: Option<Instant>,
    /// The reader is taking a batch: the rest of what is queued goes without waiting.
    sending: bool,
    /// The reader waits for its batch delay: publishers wake it only when the queue
    /// passes half its bounds.
    holding: bool,
}

impl Queue {
    fn push(&mut self, msg: Bytes) {
        self.bytes += msg.len();
        self.items.push_back(msg);
    }
}

pub struct Subscriber {
    pub id: u64,
    pub peer: String,
    pub principal: String,
    limits: QueueLimits,
    queue: Mutex<Queue>,
    ready: Notify,
    /// A replay waits for room ([`Subscriber::room`]); the reader wakes it.
    room_wanted: AtomicBool,
    room: Notify,
    conflations: AtomicU64,
    dropped: AtomicU64,
    topics: AtomicU64,
    /// The stream's batch delay in nanoseconds (0: every message as soon as it is
    /// queued).
    batch_delay_ns: AtomicU64,
}

/// Counters of one subscriber, for `GetStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub id: u64,
    pub peer: String,
    /// Who the client authenticated as.
    pub principal: String,
    pub topics: u64,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub queue_bytes: usize,
    pub queue_max_bytes: usize,
    pub conflations: u64,
    pub dropped: u64,
    /// The stream's batch delay (zero: none).
    pub batch_delay: Duration,
}

impl Subscriber {
    pub(crate) fn new(id: u64, peer: String, principal: String, limits: QueueLimits) -> Self {
        Self {
            id,
            peer,
            principal,
            limits: QueueLimits {
                capacity: limits.capacity.max(2),
                max_bytes: limits.max_bytes.max(1),
                ..limits
            },
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(64),
                bytes: 0,
                behind_since: None,
                reads: 0,
                swept: (0, None),
                ended: None,
                batch_started: None,
                sending: false,
                holding: false,
            }),
            ready: Notify::new(),
            room_wanted: AtomicBool::new(false),
            room: Notify::new(),
            conflations: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            topics: AtomicU64::new(0),
            batch_delay_ns: AtomicU64::new(0),
        }
    }

    /// Sets the stream's batch delay (see the module docs); zero sends every message
    /// as soon as it is queued.
    pub(crate) fn set_batch_delay(&self, delay: Duration) {
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.batch_delay_ns.store(ns, Ordering::Relaxed);
    }

    fn batch_delay(&self) -> Duration {
        Duration::from_nanos(self.batch_delay_ns.load(Ordering::Relaxed))
    }

    /// Whether a publisher that just queued a message must wake the reader: not while
    /// it holds a batch, unless the queue is past half its bounds.
    fn must_wake(&self, q: &Queue) -> bool {
        !q.holding || !self.half_free(q)
    }

    /// Whether `extra` more messages of `bytes` fit the data bounds now.
    fn fits_data(&self, q: &Queue, extra: usize, bytes: usize) -> bool {
        q.items.is_empty()
            || (q.items.len() + extra <= self.limits.capacity
                && q.bytes + bytes <= self.limits.max_bytes)
    }

    /// Admits a data message if the queue has room. A full queue marks the subscriber
    /// behind, and ends it past the slow limit.
    pub(crate) fn offer_data(&self, msg: &Bytes) -> Admit {
        let mut q = self.queue.lock();
        if q.ended.is_some() {
            return Admit::Full;
        }
        if self.fits_data(&q, 1, msg.len()) {
            q.push(msg.clone());
            let wake = self.must_wake(&q);
            drop(q);
            if wake {
                self.ready.notify_one();
            }
            Admit::Accepted
        } else {
            self.fall_behind_locked(&mut q);
            Admit::Full
        }
    }

    /// True when a recovering topic may try to send again: at least half the queue is
    /// free, in messages and in bytes. A cheap check before building the recovery
    /// message; only [`Subscriber::offer_recovery`] admits it. Refusing keeps the
    /// subscriber behind (its slow-consumer clock running), as a refused offer does.
    pub(crate) fn room_to_recover(&self) -> bool {
        let mut q = self.queue.lock();
        if q.ended.is_some() {
            return false;
        }
        if self.half_free(&q) {
            return true;
        }
        self.fall_behind_locked(&mut q);
        false
    }

    fn half_free(&self, q: &Queue) -> bool {
        q.items.len() * 2 < self.limits.capacity && q.bytes * 2 < self.limits.max_bytes
    }

    /// Admits all of `msgs` (a recovering topic's notice and the message after it, or a
    /// fresh snapshot) in one step, or none: only when at least half the queue is free
    /// and they fit. Otherwise the subscriber stays behind (its slow-consumer clock keeps
    /// running) exactly as a refused [`Subscriber::offer_data`] does.
    pub(crate) fn offer_recovery(&self, msgs: &[&Bytes]) -> bool {
        let bytes: usize = msgs.iter().map(|m| m.len()).sum();
        let mut q = self.queue.lock();
        if q.ended.is_some() {
            return false;
        }
        if !(self.half_free(&q) && self.fits_data(&q, msgs.len(), bytes)) {
            self.fall_behind_locked(&mut q);
            return false;
        }
        for m in msgs {
            q.push((*m).clone());
        }
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Admits a replay's stored record while the queue is less than half full, in
    /// messages and bytes (or empty); `false` otherwise, which is not falling behind:
    /// the replay waits for [`Subscriber::room`]. An ended stream takes nothing.
    pub fn offer_replayed(&self, msg: &Bytes) -> bool {
        let mut q = self.queue.lock();
        if q.ended.is_some() {
            return false;
        }
        let fits = self.replay_fits(&q, msg.len());
        if fits {
            q.push(msg.clone());
            let wake = self.must_wake(&q);
            drop(q);
            if wake {
                self.ready.notify_one();
            }
        }
        fits
    }

    fn replay_fits(&self, q: &Queue, bytes: usize) -> bool {
        q.items.is_empty() || (self.half_free(q) && q.bytes + bytes <= self.limits.max_bytes / 2)
    }

    /// Waits until the reader has made room for a replayed record of `bytes` (see
    /// [`Subscriber::offer_replayed`]) or the stream has ended; then offer again.
    pub async fn room(&self, bytes: usize) {
        self.room_wanted.store(true, Ordering::Release);
        {
            let q = self.queue.lock();
            if q.ended.is_some() || self.replay_fits(&q, bytes) {
                return;
            }
        }
        // A notify_one before this await leaves a permit, so no wakeup is lost.
        self.room.notified().await;
    }

    /// Admits control messages (in order) past the data bounds, up to the headroom (see
    /// the module docs); beyond it the client is not reading, and is ended.
    pub(crate) fn push_control(&self, msgs: &[Bytes]) {
        let bytes: usize = msgs.iter().map(Bytes::len).sum();
        let mut q = self.queue.lock();
        if q.ended.is_some() {
            return;
        }
        let max_items = self.limits.capacity + self.limits.control_headroom;
        let max_bytes = self.limits.max_bytes + self.limits.max_bytes / 4;
        if q.items.len() + msgs.len() > max_items || q.bytes + bytes > max_bytes {
            let reason = format!(
                "slow consumer: {} messages ({} bytes) waiting unread, beyond the queue's \
                 headroom for control messages",
                q.items.len(),
                q.bytes
            );
            self.end_locked(&mut q, EndReason::SlowConsumer(reason));
            return;
        }
        for m in msgs {
            q.push(m.clone());
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Marks the subscriber behind, and ends it once it has been behind past the limit.
    fn fall_behind_locked(&self, q: &mut Queue) {
        let since = *q.behind_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.limits.slow_limit {
            let reason = format!(
                "slow consumer: queue of {} messages / {} bytes stayed full for more than {:?}",
                self.limits.capacity, self.limits.max_bytes, self.limits.slow_limit
            );
            self.end_locked(q, EndReason::SlowConsumer(reason));
        }
    }

    /// The periodic check: ends the subscriber if messages have waited without it
    /// reading any for longer than the limit, or it has been behind that long.
    pub(crate) fn sweep(&self) {
        let mut q = self.queue.lock();
        if q.ended.is_some() {
            return;
        }
        let now = Instant::now();
        let unread_since = match q.swept {
            _ if q.items.is_empty() => None,
            (reads, since) if reads == q.reads => since.or(Some(now)),
            _ => Some(now),
        };
        q.swept = (q.reads, unread_since);
        if unread_since.is_some_and(|t| now.duration_since(t) >= self.limits.slow_limit) {
            let reason = format!(
                "slow consumer: {} messages waited unread for more than {:?}",
                q.items.len(),
                self.limits.slow_limit
            );
            return self.end_locked(&mut q, EndReason::SlowConsumer(reason));
        }
        if q.behind_since
            .is_some_and(|t| now.duration_since(t) >= self.limits.slow_limit)
        {
            self.fall_behind_locked(&mut q);
        }
    }

    fn end_locked(&self, q: &mut Queue, reason: EndReason) {
        if q.ended.is_some() {
            return;
        }
        match &reason {
            EndReason::SlowConsumer(why) => {
                tracing::warn!(subscriber = self.id, peer = %self.peer, reason = %why, "disconnecting subscriber");
                metrics::counter!("raven_subscriber_disconnects_total", "reason" => "slow_consumer")
                    .increment(1);
                // Nothing more will be sent: free the memory now.
                q.items.clear();
                q.bytes = 0;
            }
            EndReason::Stopping(_) => {
                metrics::counter!("raven_subscriber_disconnects_total", "reason" => "shutdown")
                    .increment(1);
            }
            EndReason::BadRequest(why) | EndReason::TooLarge(why) => {
                tracing::info!(subscriber = self.id, peer = %self.peer, reason = %why, "ending a stream whose requests cannot be read");
                metrics::counter!("raven_subscriber_disconnects_total", "reason" => "bad_request")
                    .increment(1);
            }
        }
        q.ended = Some(reason);
        self.ready.notify_one();
        self.room.notify_one();
    }

    /// Ends the stream because the server stops: what is queued is still delivered,
    /// then the stream ends with `reason`.
    pub(crate) fn stop(&self, reason: &str) {
        let mut q = self.queue.lock();
        self.end_locked(&mut q, EndReason::Stopping(reason.to_owned()));
    }

    /// Ends the stream because its client's requests cannot be read; what is queued is
    /// sent first.
    pub fn end_bad_request(&self, reason: &str) {
        let mut q = self.queue.lock();
        self.end_locked(&mut q, EndReason::BadRequest(reason.to_owned()));
    }

    /// Ends the stream because its client sent a message over the size limit; what is
    /// queued is sent first.
    pub fn end_too_large(&self, reason: &str) {
        let mut q = self.queue.lock();
        self.end_locked(&mut q, EndReason::TooLarge(reason.to_owned()));
    }

    pub fn is_ended(&self) -> bool {
        self.queue.lock().ended.is_some()
    }

    /// Waits for the next message, up to `deadline`, holding it for the stream's batch
    /// delay when one is set.
    pub async fn next(&self, deadline: tokio::time::Instant) -> Next {
        self.next_batch(deadline, &mut VecDeque::new(), 0).await
    }

    /// [`Subscriber::next`], and with the message it returns also takes those queued
    /// after it, into `more`, while they total at most `max_bytes` with it. One lock,
    /// and one look at the clock by the caller, for what the response stream encodes
    /// into one HTTP/2 write anyway.
    pub async fn next_batch(
        &self,
        deadline: tokio::time::Instant,
        more: &mut VecDeque<Bytes>,
        max_bytes: usize,
    ) -> Next {
        let mut released = false;
        loop {
            let batching = !self.batch_delay().is_zero();
            if batching {
                self.forget_stale_wakeup();
            }
            let hold = {
                let mut q = self.queue.lock();
                q.holding = false;
                // A slow consumer's queue was cleared; a stopping stream gets what was
                // queued first.
                if let Some(reason @ EndReason::SlowConsumer(_)) = &q.ended {
                    return Next::Ended(Box::new(reason.clone()));
                }
                let hold = if batching && !q.items.is_empty() {
                    self.hold_until(&mut q, released)
                } else {
                    None
                };
                if hold.is_some() {
                    q.holding = true;
                } else if let Some(msg) = q.items.pop_front() {
                    let mut taken = msg.len();
                    let mut also = 0;
                    // `max_bytes` 0 (`next`): this message alone, even if empty.
                    for next in q.items.iter().take_while(|_| max_bytes > 0) {
                        if taken + next.len() > max_bytes {
                            break;
                        }
                        taken += next.len();
                        also += 1;
                    }
                    more.extend(q.items.drain(..also));
                    q.bytes -= taken;
                    q.reads += 1 + also as u64;
                    if q.items.is_empty() {
                        q.behind_since = None;
                    }
                    if self.room_wanted.load(Ordering::Acquire) && self.half_free(&q) {
                        self.room_wanted.store(false, Ordering::Release);
                        self.room.notify_one();
                    }
                    return Next::Message(msg);
                } else {
                    q.sending = false;
                    if let Some(reason) = &q.ended {
                        return Next::Ended(Box::new(reason.clone()));
                    }
                }
                hold
            };
            if let Some(due) = hold {
                // Until the delay is up, or a publisher finds the queue half full, or
                // the stream ends; whichever, the batch then leaves.
                tokio::select! {
                    () = crate::pacer::until(due) => {}
                    () = self.ready.notified() => {}
                }
                released = true;
                continue;
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

    /// When the reader must wait before taking the next batch (`None`: take it now).
    /// A batch starts at most once per delay; it leaves early once `released`, when the
    /// queue is past half its bounds, or when the stream ends.
    fn hold_until(&self, q: &mut Queue, released: bool) -> Option<Instant> {
        if q.sending {
            return None;
        }
        let now = Instant::now();
        if !released && q.ended.is_none() && self.half_free(q) {
            if let Some(due) = q.batch_started.map(|at| at + self.batch_delay()) {
                if now < due {
                    return Some(due);
                }
            }
        }
        q.batch_started = Some(now);
        q.sending = true;
        None
    }

    /// Takes a wake-up left from before: a publisher's `notify_one` while nobody waited
    /// leaves a permit, which would end the next batch hold at once. (The queue is
    /// looked at under its lock after this, so a message never waits for a wake-up.)
    fn forget_stale_wakeup(&self) {
        let notified = pin!(self.ready.notified());
        let _ = notified.poll(&mut Context::from_waker(Waker::noop()));
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
        let (queue_depth, queue_bytes) = {
            let q = self.queue.lock();
            (q.items.len(), q.bytes)
        };
        SubscriberInfo {
            id: self.id,
            peer: self.peer.clone(),
            principal: self.principal.clone(),
            topics: self.topics.load(Ordering::Relaxed),
            queue_depth,
            queue_capacity: self.limits.capacity,
            queue_bytes,
            queue_max_bytes: self.limits.max_bytes,
            conflations: self.conflations.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            batch_delay: self.batch_delay(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn msg(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    fn sub(capacity: usize, max_bytes: usize, slow_ms: u64) -> Subscriber {
        Subscriber::new(
            1,
            "t".into(),
            "test".into(),
            QueueLimits {
                capacity,
                max_bytes,
                control_headroom: capacity,
                slow_limit: Duration::from_millis(slow_ms),
            },
        )
    }

    fn far() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(1)
    }

    #[tokio::test]
    async fn data_is_bounded_and_control_has_headroom() {
        let s = sub(3, 1 << 20, 60_000);
        assert_eq!(s.offer_data(&msg(1)), Admit::Accepted);
        assert_eq!(s.offer_data(&msg(2)), Admit::Accepted);
        assert_eq!(s.offer_data(&msg(3)), Admit::Accepted);
        assert_eq!(s.offer_data(&msg(4)), Admit::Full);
        s.push_control(&[msg(9)]);
        assert_eq!(s.info().queue_depth, 4);
        for expect in [1, 2, 3, 9] {
            assert_eq!(s.next(far()).await, Next::Message(msg(expect)));
        }
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        assert_eq!(s.next(soon).await, Next::Idle);
    }

    #[tokio::test]
    async fn data_is_bounded_in_bytes_but_one_large_message_always_fits() {
        let s = sub(100, 10, 60_000);
        let big = Bytes::from(vec![0u8; 25]);
        assert_eq!(
            s.offer_data(&big),
            Admit::Accepted,
            "an empty queue takes it"
        );
        assert_eq!(s.offer_data(&msg(1)), Admit::Full);
        assert_eq!(s.next(far()).await, Next::Message(big));
        for _ in 0..10 {
            assert_eq!(s.offer_data(&msg(1)), Admit::Accepted);
        }
        assert_eq!(s.offer_data(&msg(1)), Admit::Full, "10 bytes is the bound");
        assert_eq!(s.info().queue_bytes, 10);
    }

    #[tokio::test]
    async fn control_beyond_its_headroom_ends_the_stream() {
        let s = sub(4, 1 << 20, 60_000);
        for _ in 0..8 {
            s.push_control(&[msg(7)]);
        }
        assert!(!s.is_ended(), "twice the capacity is the headroom");
        s.push_control(&[msg(7)]);
        assert!(s.is_ended());
        assert_eq!(s.info().queue_depth, 0, "an ended stream holds nothing");
        match s.next(far()).await {
            Next::Ended(end) => match *end {
                EndReason::SlowConsumer(why) => assert!(why.contains("unread"), "{why}"),
                other => panic!("{other:?}"),
            },
            other => panic!("expected an end, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stream_that_never_reads_is_ended_within_the_limit_whatever_it_is_sent() {
        let s = sub(1000, 1 << 20, 20);
        // Pongs and acks only: the data bounds are never reached.
        s.push_control(&[msg(1)]);
        s.sweep();
        tokio::time::sleep(Duration::from_millis(30)).await;
        s.sweep();
        assert!(s.is_ended(), "nothing read for longer than the limit");
        // A reader is not cut for an old message it takes in time.
        let r = sub(1000, 1 << 20, 50);
        r.push_control(&[msg(1)]);
        r.push_control(&[msg(2)]);
        r.push_control(&[msg(3)]);
        r.sweep();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(r.next(far()).await, Next::Message(msg(1)));
        r.sweep();
        tokio::time::sleep(Duration::from_millis(30)).await;
        r.sweep();
        assert!(!r.is_ended(), "it read 30 ms ago");
    }

    #[tokio::test]
    async fn recovery_is_all_or_nothing() {
        let s = sub(4, 1 << 20, 60_000);
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        // Half full: not yet.
        assert!(!s.room_to_recover());
        assert!(!s.offer_recovery(&[&msg(8), &msg(9)]));
        assert_eq!(s.info().queue_depth, 2);
        s.next(far()).await;
        assert!(s.room_to_recover());
        assert!(s.offer_recovery(&[&msg(8), &msg(9)]));
        for expect in [2, 8, 9] {
            assert_eq!(s.next(far()).await, Next::Message(msg(expect)));
        }
    }

    #[tokio::test]
    async fn staying_behind_past_the_limit_ends_the_stream() {
        let s = sub(2, 1 << 20, 20);
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        assert!(s.is_ended());
        match s.next(far()).await {
            Next::Ended(end) => match *end {
                EndReason::SlowConsumer(reason) => {
                    assert!(reason.contains("slow consumer"), "{reason}")
                }
                other => panic!("{other:?}"),
            },
            other => panic!("expected an end, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_topic_that_cannot_recover_keeps_the_clock_running() {
        let s = sub(2, 1 << 20, 20);
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        // Read one: the queue never empties, but the reader is not idle either.
        s.next(far()).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The topic is conflating or dropping now, so it only asks whether it may recover.
        assert!(!s.room_to_recover());
        assert!(s.is_ended());
    }

    #[tokio::test]
    async fn draining_the_queue_resets_the_clock() {
        let s = sub(2, 1 << 20, 40);
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        assert_eq!(s.offer_data(&msg(3)), Admit::Full);
        tokio::time::sleep(Duration::from_millis(25)).await;
        s.next(far()).await;
        s.next(far()).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
        s.offer_data(&msg(4));
        s.offer_data(&msg(5));
        assert_eq!(s.offer_data(&msg(6)), Admit::Full);
        assert!(
            !s.is_ended(),
            "the limit counts from the last time the queue was empty"
        );
    }

    #[tokio::test]
    async fn reading_slower_than_the_feed_still_gets_ended() {
        let s = sub(2, 1 << 20, 20);
        s.offer_data(&msg(1));
        s.offer_data(&msg(2));
        for _ in 0..10 {
            // One message read, two offered: the queue never empties.
            assert!(matches!(
                s.next(far()).await,
                Next::Message(_) | Next::Ended(_)
            ));
            s.offer_data(&msg(3));
            s.offer_data(&msg(4));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(s.is_ended(), "a consumer that never catches up is cut");
    }

    #[tokio::test]
    async fn a_replay_takes_half_the_queue_and_waits_for_the_reader() {
        let s = Arc::new(sub(4, 1 << 20, 60_000));
        assert!(s.offer_replayed(&msg(1)));
        assert!(s.offer_replayed(&msg(2)));
        assert!(!s.offer_replayed(&msg(3)), "half of 4 is taken");
        assert_eq!(
            s.offer_data(&msg(9)),
            Admit::Accepted,
            "live data has the rest"
        );
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move {
                s.room(1).await;
                s.offer_replayed(&msg(3))
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no room yet");
        assert_eq!(s.next(far()).await, Next::Message(msg(1)));
        assert_eq!(s.next(far()).await, Next::Message(msg(2)));
        assert!(waiter.await.unwrap(), "the reader made room");
        assert_eq!(s.next(far()).await, Next::Message(msg(9)));
        assert_eq!(s.next(far()).await, Next::Message(msg(3)));
        // An ended stream wakes a waiting replay, and takes nothing more.
        for n in 0..4 {
            s.offer_data(&msg(n));
        }
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move {
                s.room(1).await;
                s.offer_replayed(&msg(3))
            })
        };
        s.stop("stopping");
        assert!(!waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_stopping_stream_delivers_what_is_queued_then_ends() {
        let s = sub(4, 1 << 20, 60_000);
        s.offer_data(&msg(1));
        s.stop("server is stopping");
        assert_eq!(
            s.offer_data(&msg(2)),
            Admit::Full,
            "nothing new after the stop"
        );
        assert_eq!(s.next(far()).await, Next::Message(msg(1)));
        assert_eq!(
            s.next(far()).await,
            Next::Ended(Box::new(EndReason::Stopping("server is stopping".into())))
        );
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_up_to_its_bytes() {
        let s = sub(16, 1 << 20, 60_000);
        for n in 1..=5 {
            s.offer_data(&msg(n));
        }
        let mut more = VecDeque::new();
        assert_eq!(
            s.next_batch(far(), &mut more, 3).await,
            Next::Message(msg(1))
        );
        assert_eq!(more, [msg(2), msg(3)]);
        assert_eq!(s.info().queue_depth, 2);
        assert_eq!(s.info().queue_bytes, 2);
    }

    #[tokio::test]
    async fn with_a_batch_delay_what_follows_a_message_waits_for_the_delay_then_leaves_together() {
        let delay = Duration::from_millis(200);
        let s = sub(64, 1 << 20, 60_000);
        s.set_batch_delay(delay);
        s.offer_data(&msg(1));
        let first = Instant::now();
        // After a quiet spell the first message is not held.
        assert_eq!(s.next(far()).await, Next::Message(msg(1)));
        assert!(first.elapsed() < delay, "the first message waited");
        // The reader finds the queue empty (as tonic does when it has taken all): the
        // batch is over.
        assert_eq!(s.next(tokio::time::Instant::now()).await, Next::Idle);
        s.offer_data(&msg(2));
        s.offer_data(&msg(3));
        let heartbeat = tokio::time::Instant::now() + Duration::from_secs(10);
        assert_eq!(s.next(heartbeat).await, Next::Message(msg(2)));
        assert!(
            first.elapsed() + crate::pacer::SLACK >= delay,
            "not held: {:?}",
            first.elapsed()
        );
        // The rest of the batch goes without another wait.
        let taken = Instant::now();
        assert_eq!(s.next(heartbeat).await, Next::Message(msg(3)));
        assert!(taken.elapsed() < delay, "the batch was split");
        assert_eq!(s.info().batch_delay, delay);
    }

    #[tokio::test]
    async fn a_queue_past_half_full_or_a_stop_ends_the_hold() {
        let s = Arc::new(sub(4, 1 << 20, 60_000));
        // A delay no test waits out: only the queue or the stop can end the hold.
        s.set_batch_delay(Duration::from_secs(3600));
        s.offer_data(&msg(1));
        assert_eq!(s.next(far()).await, Next::Message(msg(1)));
        assert_eq!(s.next(tokio::time::Instant::now()).await, Next::Idle);
        let held = {
            let s = s.clone();
            tokio::spawn(async move { s.next(far()).await })
        };
        s.offer_data(&msg(2));
        tokio::task::yield_now().await;
        assert!(!held.is_finished());
        s.offer_data(&msg(3));
        let got = tokio::time::timeout(Duration::from_secs(10), held).await;
        assert_eq!(got.unwrap().unwrap(), Next::Message(msg(2)));
        assert_eq!(s.next(far()).await, Next::Message(msg(3)));
        assert_eq!(s.next(tokio::time::Instant::now()).await, Next::Idle);

        s.offer_data(&msg(4));
        let held = {
            let s = s.clone();
            tokio::spawn(async move { s.next(far()).await })
        };
        tokio::task::yield_now().await;
        s.stop("server is stopping");
        let got = tokio::time::timeout(Duration::from_secs(10), held).await;
        assert_eq!(got.unwrap().unwrap(), Next::Message(msg(4)));
    }
}
