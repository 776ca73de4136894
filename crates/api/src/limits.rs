//! What one client may take of the server's shared resources.
//!
//! * [`RequestRate`]: how fast one `Subscribe` stream's requests are read. Every topic of
//!   a subscribe or unsubscribe — a wildcard counted as the instruments it matched —
//!   and every ping costs one token; tokens come back at `max_requests_per_sec`, and a
//!   full bucket holds a whole request's worth of topics. A stream that asks faster is
//!   not refused: its requests are read later, so HTTP/2 flow control slows the client
//!   down and nothing queues in Raven.
//! * [`Slots`]: how many `Subscribe` streams, and how many `GetHistory` answers, are
//!   open at once, for the server and per client (its principal, or on a server that
//!   requires no credentials, its IP address); a principal may have its own share. Each stream holds a queue and a reader task; each answer holds a
//!   store reader (for SQLite, a blocking-pool thread) until its client has read it.
//!   An answer its client stops reading is ended after `idle` with `RESOURCE_EXHAUSTED`
//!   and its slot freed (see `grpc`).
//! * [`ClientRates`]: how many one-shot calls (`GetOrderBook`, `GetStatus`,
//!   `ListInstruments`, starting a `GetHistory`) one client may make per second. Each
//!   copies state under a lock the feeds need; beyond its rate a call is refused with
//!   `RESOURCE_EXHAUSTED` rather than queued, so a client polling in a loop costs a
//!   bounded share of a core however many connections it opens.

use std::collections::HashMap;
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

    /// Spends `cost` tokens at `now` (at most a full bucket's worth); returns how long
    /// to wait before the request may be handled (zero while the bucket has them).
    pub fn delay(&mut self, cost: u32, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= f64::from(cost.max(1)).min(self.burst);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }

    /// Spends one token at `now` if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket is full at `now`: it is no different from a new one.
    fn is_full(&self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens + earned >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.last = now;
        self.tokens = (self.tokens + earned).min(self.burst);
    }
}

/// The one-shot calls per second of each client.
#[derive(Debug)]
pub struct ClientRates {
    per_sec: u32,
    clients: Mutex<HashMap<String, RequestRate>>,
}

/// Clients remembered before those whose bucket has refilled are forgotten.
const RATES_KEPT: usize = 4096;

impl ClientRates {
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one call of `client` at `now`, or says why not (the reason it sees).
    pub fn admit(&self, client: &str, now: Instant) -> Result<(), String> {
        let mut clients = self.clients.lock();
        if clients.len() >= RATES_KEPT && !clients.contains_key(client) {
            clients.retain(|_, rate| !rate.is_full(now));
            // Still full (many addresses at once): one is forgotten, so memory stays
            // bounded; it starts again from a full bucket.
            if clients.len() >= RATES_KEPT {
                if let Some(any) = clients.keys().next().cloned() {
                    clients.remove(&any);
                }
            }
        }
        let rate = match clients.get_mut(client) {
            Some(rate) => rate,
            None => clients
                .entry(client.to_owned())
                .or_insert_with(|| RequestRate::new(self.per_sec, self.per_sec)),
        };
        if rate.try_take(now) {
            Ok(())
        } else {
            metrics::counter!("raven_limit_hits_total", "limit" => "calls_per_sec").increment(1);
            Err(format!(
                "this client makes more than {} calls per second (server.calls_per_sec_per_client); \
                 slow down",
                self.per_sec
            ))
        }
    }
}

/// What is open now (`Subscribe` streams, `GetHistory` answers), for the server and per
/// client.
#[derive(Debug)]
pub struct Slots {
    /// What one slot holds, plural, for the reasons a client sees.
    what: &'static str,
    limit: &'static str,
    max: usize,
    per_client: usize,
    /// Slots held per client; the sum is the server's.
    in_use: Mutex<HashMap<String, usize>>,
}

/// One slot; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    client: String,
}

impl Slots {
    /// `limit` names the metric label of `raven_limit_hits_total` this pool counts
    /// its refusals under (`<limit>` and `<limit>_per_client`).
    pub fn new(
        what: &'static str,
        limit: &'static str,
        max: usize,
        per_client: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            what,
            limit,
            max,
            per_client: per_client.max(1),
            in_use: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `client`, or why there is none (the reason a client sees). `share`
    /// overrides the per-client limit (a principal's own `max_streams`).
    pub fn acquire(self: &Arc<Self>, client: &str, share: Option<usize>) -> Result<Slot, String> {
        let per_client = share.unwrap_or(self.per_client);
        let mut in_use = self.in_use.lock();
        let total: usize = in_use.values().sum();
        let mine = in_use.get(client).copied().unwrap_or(0);
        if mine >= per_client {
            metrics::counter!("raven_limit_hits_total", "limit" => format!("{}_per_client", self.limit))
                .increment(1);
            return Err(format!(
                "{client} already has {mine} {} open (at most {per_client} per client); end one first",
                self.what
            ));
        }
        if total >= self.max {
            metrics::counter!("raven_limit_hits_total", "limit" => self.limit).increment(1);
            return Err(format!(
                "{total} {} are already open (at most {}); retry shortly",
                self.what, self.max
            ));
        }
        *in_use.entry(client.to_owned()).or_default() += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            client: client.to_owned(),
        })
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.in_use.lock().values().sum()
    }
}

impl Drop for Slot {
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
    fn one_request_never_costs_more_than_a_full_bucket() {
        let t0 = Instant::now();
        let mut rate = RequestRate::new(100, 200);
        // Two million topics (refused whole by the hub) wait two seconds, not hours.
        let wait = rate.delay(2_000_000, t0);
        assert_eq!(wait, Duration::ZERO, "a full bucket pays it");
        let wait = rate.delay(2_000_000, t0);
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn each_client_gets_its_rate_of_calls() {
        let rates = ClientRates::new(10);
        let t0 = Instant::now();
        let (a, b) = ("127.0.0.1", "principal desk");
        for _ in 0..10 {
            rates.admit(a, t0).unwrap();
        }
        let e = rates.admit(a, t0).unwrap_err();
        assert!(e.contains("10 calls per second"), "{e}");
        rates.admit(b, t0).expect("another client has its own");
        rates
            .admit(a, t0 + Duration::from_millis(100))
            .expect("one back after 100 ms");
        // Clients are forgotten once their bucket refilled, so the map stays bounded.
        let later = t0 + Duration::from_secs(10);
        for i in 0..(RATES_KEPT as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            rates.admit(&ip, later).unwrap();
        }
        assert!(rates.clients.lock().len() <= RATES_KEPT);
    }

    #[test]
    fn each_client_gets_its_share_of_the_server_s_slots() {
        let slots = Slots::new("GetHistory answers", "history_streams", 4, 2);
        let (a, b, c) = ("127.0.0.1", "127.0.0.2", "principal desk");
        let a1 = slots.acquire(a, None).unwrap();
        let _a2 = slots.acquire(a, None).unwrap();
        let e = slots.acquire(a, None).unwrap_err();
        assert!(e.contains("per client"), "{e}");
        let _b1 = slots.acquire(b, None).unwrap();
        // A principal with its own share of one.
        let _c1 = slots.acquire(c, Some(1)).unwrap();
        let e = slots.acquire(c, Some(1)).unwrap_err();
        assert!(e.contains("at most 1 per client"), "{e}");
        let e = slots.acquire(b, None).unwrap_err();
        assert!(e.contains("at most 4"), "{e}");
        drop(a1);
        let _b2 = slots.acquire(b, None).unwrap();
        assert_eq!(slots.in_use(), 4);
    }
}
