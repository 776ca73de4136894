//! The Bybit family's own settings: which book depth to subscribe and how subscriptions
//! are spread over connections and requests.
//!
//! Only what differs from every other venue lives here; symbols, channels, URLs and
//! stall timeouts are the engine's. The limits checked by [`BybitConfig::validate`] are
//! Bybit's documented ones (bybit-exchange/docs @072c197, 2026-07-24):
//! * "Orderbook" page: the depths offered on spot and linear are 1, 50, 200 and 1000
//!   (500 was removed for futures on 2025-09-11, 1000 added on 2025-08-14). Level 1 is
//!   snapshot-only and is what Raven reads as the spot BBO, so a book is 50, 200 or 1000;
//! * "Connect" page, "Public channel - Args limits": spot takes at most 10 args per
//!   subscription request (futures: no limit), and one public connection's args may not
//!   exceed 21,000 characters in all (applied by [`super::streams`] whatever is set here).

use serde::Deserialize;

/// Book depths Raven may subscribe as a book (`orderbook.{depth}.{symbol}`).
pub const BOOK_DEPTHS: [u32; 3] = [50, 200, 1000];

/// Bybit's most args in one spot subscribe request (linear has no limit; one setting
/// serves both venues, so the stricter one bounds it).
pub const MAX_ARGS_PER_REQUEST: usize = 10;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BybitConfig {
    /// Levels per side of the subscribed book: 50 (pushed every 20 ms), 200 (100 ms) or
    /// 1000 (200 ms), on spot and linear alike. Default 200: deep enough for most
    /// consumers at a tenth of the 1000-level book's snapshot size.
    pub book_depth: u32,
    /// Most topics (one per channel per symbol) on one connection. Default 200, so one
    /// disconnect resets at most ~50 books; the 21,000-character args limit may cut a
    /// connection shorter.
    pub topics_per_connection: usize,
    /// Topics per `subscribe` request, 1 to 10. Default 10 (spot's maximum): fewer
    /// frames, and a refused request names at most 10 topics.
    pub args_per_request: usize,
}

impl Default for BybitConfig {
    fn default() -> Self {
        Self {
            book_depth: 200,
            topics_per_connection: 200,
            args_per_request: MAX_ARGS_PER_REQUEST,
        }
    }
}

impl BybitConfig {
    /// `(key, reason)` for the first setting outside Bybit's documented limits.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !BOOK_DEPTHS.contains(&self.book_depth) {
            return Err((
                "book_depth".into(),
                format!(
                    "{} is not a Bybit book depth (50, 200 or 1000; level 1 is the BBO channel)",
                    self.book_depth
                ),
            ));
        }
        if self.topics_per_connection == 0 {
            return Err(("topics_per_connection".into(), "must be at least 1".into()));
        }
        if !(1..=MAX_ARGS_PER_REQUEST).contains(&self.args_per_request) {
            return Err((
                "args_per_request".into(),
                format!(
                    "{} is outside 1..={MAX_ARGS_PER_REQUEST} (Bybit spot takes at most 10 args per request)",
                    self.args_per_request
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
        assert_eq!(BybitConfig::default().validate(), Ok(()));
        for depth in BOOK_DEPTHS {
            let c = BybitConfig {
                book_depth: depth,
                ..BybitConfig::default()
            };
            assert_eq!(c.validate(), Ok(()));
        }
        for (config, key) in [
            (
                BybitConfig {
                    book_depth: 1,
                    ..BybitConfig::default()
                },
                "book_depth",
            ),
            (
                BybitConfig {
                    book_depth: 500,
                    ..BybitConfig::default()
                },
                "book_depth",
            ),
            (
                BybitConfig {
                    topics_per_connection: 0,
                    ..BybitConfig::default()
                },
                "topics_per_connection",
            ),
            (
                BybitConfig {
                    args_per_request: 11,
                    ..BybitConfig::default()
                },
                "args_per_request",
            ),
            (
                BybitConfig {
                    args_per_request: 0,
                    ..BybitConfig::default()
                },
                "args_per_request",
            ),
        ] {
            assert_eq!(config.validate().map_err(|(k, _)| k), Err(key.to_owned()));
        }
    }

    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let c: BybitConfig = serde_json::from_str(r#"{"book_depth":1000}"#).unwrap();
        assert_eq!(
            c,
            BybitConfig {
                book_depth: 1000,
                ..BybitConfig::default()
            }
        );
        assert!(serde_json::from_str::<BybitConfig>(r#"{"depth":50}"#).is_err());
    }
}
