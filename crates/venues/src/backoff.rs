//! Exponential backoff with jitter, shared by WebSocket reconnects and REST retries.
//!
//! When an exchange drops every client at once (maintenance, the 24 h cut, a load
//! balancer restart), clients that retry on a fixed timer reconnect in lock-step and hit
//! the exchange's connection-rate limit together; Binance bans IPs that are disconnected
//! repeatedly. Doubling the delay bounds the load a broken endpoint sees from us, and the
//! random jitter spreads our own connections (and other clients') apart in time.

use std::time::Duration;

use rand::Rng;

/// How a [`Backoff`] grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The delay never grows past this.
    pub max: Duration,
    /// Fraction of each delay that is randomized: the delay is drawn uniformly from
    /// `[d * (1 - jitter), d]`. 0 disables jitter; values are clamped to `0..=1`.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            jitter: 0.5,
        }
    }
}

/// The retry state of one reconnecting or retrying thing.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// A backoff that already handed out `attempts` delays (for retries that are
    /// re-queued rather than looped, so the count travels with the request).
    pub fn after_attempts(config: BackoffConfig, attempts: u32) -> Self {
        Self {
            config,
            attempt: attempts,
        }
    }

    /// The delay to wait before the next attempt; each call doubles the base delay up to
    /// `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base_delay();
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || base.is_zero() {
            return base;
        }
        let factor = rand::rng().random_range((1.0 - jitter)..=1.0);
        base.mul_f64(factor)
    }

    /// Call after a success: the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn base_delay(&self) -> Duration {
        // 2^attempt overflows quickly; past 2^20 the cap has long been reached anyway.
        let factor = 1u32 << self.attempt.min(20);
        self.config
            .initial
            .checked_mul(factor)
            .map_or(self.config.max, |d| d.min(self.config.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let mut b = Backoff::new(config(0.0));
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.attempts(), 7);
    }

    #[test]
    fn resumes_from_a_known_attempt_count() {
        let mut b = Backoff::after_attempts(config(0.0), 2);
        assert_eq!(b.next_delay(), Duration::from_millis(400));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(config(0.0));
        b.next_delay();
        b.next_delay();
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_the_band() {
        let mut b = Backoff::new(config(0.5));
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut b = Backoff::new(config(1.0));
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }
}
