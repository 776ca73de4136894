//! The Coinbase family's own settings, with the venue limits they must respect.
//!
//! Only what is Coinbase's is here; symbols, channels, URLs and stall timeouts are the
//! engine's generic settings.
//!
//! * **Products per connection.** Coinbase documents no limit, but refuses level2
//!   beyond some count on one connection with `{"type":"error","message":"too many L2
//!   streams requested in a single session"}`: a user measured 16 products accepted and
//!   32 refused (JKorf/Coinbase.Net issue #19, 2026-01-07; seen 2026-08). Raven keeps
//!   [`DEFAULT_PRODUCTS_PER_CONNECTION`] by default and refuses more than
//!   [`MAX_PRODUCTS_PER_CONNECTION`], the largest count known to work. Fewer products
//!   per connection also means a lost message (a `sequence_num` jump, which resets every
//!   book of its connection) costs fewer books.
//! * **Pause between subscribe messages.** "Advanced Trade API WebSocket unauthenticated
//!   messages are rate-limited at 8 per second per IP address" (Advanced Trade WebSocket
//!   Rate Limits, docs.cdp.coinbase.com, seen 2026-08). One message a
//!   [`MIN_SUBSCRIBE_INTERVAL`] is the whole IP's budget; the default of twice that
//!   leaves half of it to a second connection starting at the same moment and to
//!   resubscribes. Four messages (heartbeats, level2, market_trades, ticker) then take
//!   0.75 s, well inside the 5 s in which a new connection must subscribe.

use std::time::Duration;

/// Raven's default products per connection (see the module docs).
pub const DEFAULT_PRODUCTS_PER_CONNECTION: usize = 10;

/// The most level2 products one connection is known to be granted.
pub const MAX_PRODUCTS_PER_CONNECTION: usize = 16;

/// One message per this long is the documented per-IP limit (8/s).
pub const MIN_SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(125);

/// Raven's default pause between two subscribe messages of a connection.
pub const DEFAULT_SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(250);

/// The longest pause allowed: four messages must fit the venue's 5 s subscribe deadline.
pub const MAX_SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoinbaseConfig {
    /// Products (all their channels) per WebSocket connection.
    pub products_per_connection: usize,
    /// Milliseconds between two subscribe/unsubscribe messages on a connection.
    pub subscribe_interval_ms: u64,
}

impl Default for CoinbaseConfig {
    fn default() -> Self {
        Self {
            products_per_connection: DEFAULT_PRODUCTS_PER_CONNECTION,
            subscribe_interval_ms: DEFAULT_SUBSCRIBE_INTERVAL.as_millis() as u64,
        }
    }
}

impl CoinbaseConfig {
    pub fn subscribe_interval(&self) -> Duration {
        Duration::from_millis(self.subscribe_interval_ms)
    }

    /// `(key, reason)` for a value outside the venue's limits.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_PRODUCTS_PER_CONNECTION).contains(&self.products_per_connection) {
            return Err((
                "products_per_connection".into(),
                format!(
                    "must be 1 to {MAX_PRODUCTS_PER_CONNECTION}: Coinbase refuses more level2 \
                     products on one connection (\"too many L2 streams requested in a single \
                     session\")"
                ),
            ));
        }
        let (min, max) = (
            MIN_SUBSCRIBE_INTERVAL.as_millis() as u64,
            MAX_SUBSCRIBE_INTERVAL.as_millis() as u64,
        );
        if !(min..=max).contains(&self.subscribe_interval_ms) {
            return Err((
                "subscribe_interval_ms".into(),
                format!(
                    "must be {min} to {max}: Coinbase allows 8 unauthenticated messages per \
                     second per IP, and a connection must subscribe within 5 s"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_limits_are_enforced() {
        let ok = CoinbaseConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.subscribe_interval(), DEFAULT_SUBSCRIBE_INTERVAL);
        for (config, key) in [
            (
                CoinbaseConfig {
                    products_per_connection: 0,
                    ..ok.clone()
                },
                "products_per_connection",
            ),
            (
                CoinbaseConfig {
                    products_per_connection: 17,
                    ..ok.clone()
                },
                "products_per_connection",
            ),
            (
                CoinbaseConfig {
                    subscribe_interval_ms: 124,
                    ..ok.clone()
                },
                "subscribe_interval_ms",
            ),
            (
                CoinbaseConfig {
                    subscribe_interval_ms: 1001,
                    ..ok.clone()
                },
                "subscribe_interval_ms",
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().0, key);
        }
        let edge = CoinbaseConfig {
            products_per_connection: 16,
            subscribe_interval_ms: 125,
        };
        assert_eq!(edge.validate(), Ok(()));
    }

    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let c: CoinbaseConfig = serde_json::from_str(r#"{"products_per_connection":4}"#).unwrap();
        assert_eq!(c.products_per_connection, 4);
        assert_eq!(c.subscribe_interval_ms, 250);
        assert!(serde_json::from_str::<CoinbaseConfig>(r#"{"depth":50}"#).is_err());
    }
}
