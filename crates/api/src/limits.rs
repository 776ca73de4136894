//! What one client may take of the server's shared resources.
//!
//! * [`RequestRate`]: how fast one `Subscribe` stream's requests are read. Every topic of
//!   a subscribe or unsubscribe, and every ping, costs one token; tokens come back at
//!   `max_requests_per_sec`, and a full bucket holds a whole request's worth of topics.
//!   A stream that asks faster is not refused: its requests are read later, so HTTP/2
//!   flow control slows the client down and nothing queues in Raven.
//! * [`HistorySlots`]: how many `GetHistory` answers stream at once. Each holds a store
//!   reader (for SQLite, a blocking-pool thread) until its client has read it, so they are
//!   bounded for the server, and each client (an IP address, until clients have
//!   identities) may hold only its share. An answer its client stops reading is ended
//!   after `idle` with `RESOURCE_EXHAUSTED` and its slot freed (see `grpc`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket for one stream's requests.
#[derive(Debug)]
pub struct RequestRate {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RequestRate {
    /// `per_sec` tokens a second, at most `burst` saved up; starts full.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        let burst = f64::from(burst.max(1)).max(per_sec);
        Self {
            per_sec,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Spends `cost` tokens at `now`; returns how long to wait before the request may be
    /// handled (zero while the bucket has them).
    pub fn delay(&mut self, cost: u32, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.last = now;
        self.tokens = (self.tokens + earned).min(self.burst) - f64::from(cost.max(1));
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

/// The `GetHistory` answers streaming now, for the server and per client.
#[derive(Debug)]
pub struct HistorySlots {
    max: usize,
    per_client: usize,
    /// Answers streaming per client; the sum is the server's.
    in_use: Mutex<HashMap<IpAddr, usize>>,
}

/// One answer's slot; freed when dropped.
#[derive(Debug)]
pub struct HistorySlot {
    slots: Arc<HistorySlots>,
    client: IpAddr,
}

impl HistorySlots {
    pub fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_client: per_client.max(1),
            in_use: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `client`, or why there is none (the reason a client sees).
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Result<HistorySlot, String> {
        let mut in_use = self.in_use.lock();
        let total: usize = in_use.values().sum();
        let mine = in_use.get(&client).copied().unwrap_or(0);
        if mine >= self.per_client {
            return Err(format!(
                "this client already has {mine} GetHistory answers streaming (at most {} per \
                 client); read or cancel one first",
                self.per_client
            ));
        }
        if total >= self.max {
            return Err(format!(
                "{total} GetHistory answers are already streaming (at most {}); retry shortly",
                self.max
            ));
        }
        *in_use.entry(client).or_default() += 1;
        Ok(HistorySlot {
            slots: Arc::clone(self),
            client,
        })
    }

    /// Answers streaming now.
    pub fn in_use(&self) -> usize {
        self.in_use.lock().values().sum()
    }
}

impl Drop for HistorySlot {
    fn drop(&mut self) {
        let mut in_use = self.slots.in_use.lock();
        if let Some(n) = in_use.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_free_then_requests_wait_for_their_tokens() {
        let t0 = Instant::now();
        let mut rate = RequestRate::new(100, 200);
        assert_eq!(rate.delay(200, t0), Duration::ZERO, "a full bucket");
        let wait = rate.delay(50, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // A second later 100 tokens came back, the 50 owed are paid: 50 left.
        assert_eq!(rate.delay(50, t0 + Duration::from_secs(1)), Duration::ZERO);
        // A ping costs one, even when it names no topic.
        let mut ping = RequestRate::new(1, 1);
        assert_eq!(ping.delay(0, t0), Duration::ZERO);
        assert!(ping.delay(0, t0) > Duration::ZERO);
    }

    #[test]
    fn each_client_gets_its_share_of_the_server_s_slots() {
        let slots = HistorySlots::new(3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [127, 0, 0, 1].into(),
            [127, 0, 0, 2].into(),
            [127, 0, 0, 3].into(),
        );
        let a1 = slots.acquire(a).unwrap();
        let _a2 = slots.acquire(a).unwrap();
        let e = slots.acquire(a).unwrap_err();
        assert!(e.contains("per client"), "{e}");
        let _b1 = slots.acquire(b).unwrap();
        let e = slots.acquire(c).unwrap_err();
        assert!(e.contains("at most 3"), "{e}");
        drop(a1);
        let _c1 = slots.acquire(c).unwrap();
        assert_eq!(slots.in_use(), 3);
    }
}
