//! The settings only Kraken has: how deep a book to subscribe and how many pairs share
//! one connection.
//!
//! Everything generic (symbols, channels, URLs, stall timeout) is the engine's; what is
//! here is checked against Kraken's own rules by [`KrakenConfig::validate`]:
//! * `book_depth`: the `book` subscription's `depth`, one of 10, 25, 100, 500, 1000
//!   levels per side (WebSocket v1 "Book" page, docs.kraken.com/api/docs/websocket-v1/book,
//!   seen 2026-08). Raven defaults to the deepest, 1000: a book is for depth, and the
//!   BBO has its own channel. The checksum covers the top 10 whatever the depth.
//! * `pairs_per_connection`: Kraken documents no limit of pairs or subscriptions per
//!   connection nor per subscribe message (v1 reference pages and the Spot WebSocket
//!   introduction, seen 2026-08), so only 0 is refused. The default of 20 is Raven's (and
//!   cryptofeed's) choice: a `book-1000` snapshot is 50–100 KB per pair, so 20 pairs keep
//!   the burst after a subscribe to a few MB, and one disconnect resets at most 20 books;
//!   it also keeps the number of connections, and so the reconnect attempts Cloudflare
//!   counts per IP, small.

use serde::Deserialize;

/// The depths Kraken's `book` channel offers, levels per side.
pub const BOOK_DEPTHS: [usize; 5] = [10, 25, 100, 500, 1000];

/// Raven's default book depth: the deepest Kraken offers.
pub const DEFAULT_BOOK_DEPTH: usize = 1000;

/// Raven's default pairs per connection (see the module docs).
pub const DEFAULT_PAIRS_PER_CONNECTION: usize = 20;

/// Configuration of the Kraken family.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KrakenConfig {
    /// Levels per side of the subscribed `book` (10, 25, 100, 500 or 1000); the local
    /// book is kept at this depth.
    pub book_depth: usize,
    /// Pairs per WebSocket connection; all channels of a pair share its connection.
    pub pairs_per_connection: usize,
}

impl Default for KrakenConfig {
    fn default() -> Self {
        Self {
            book_depth: DEFAULT_BOOK_DEPTH,
            pairs_per_connection: DEFAULT_PAIRS_PER_CONNECTION,
        }
    }
}

impl KrakenConfig {
    /// The first setting outside Kraken's documented limits, as (key, reason).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !BOOK_DEPTHS.contains(&self.book_depth) {
            return Err((
                "book_depth".into(),
                format!(
                    "{} is not a Kraken book depth (one of {BOOK_DEPTHS:?})",
                    self.book_depth
                ),
            ));
        }
        if self.pairs_per_connection == 0 {
            return Err(("pairs_per_connection".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_depths_only() {
        let config = KrakenConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.book_depth, 1000);
        for depth in BOOK_DEPTHS {
            let c = KrakenConfig {
                book_depth: depth,
                ..KrakenConfig::default()
            };
            assert_eq!(c.validate(), Ok(()), "{depth}");
        }
        for depth in [0, 1, 50, 200, 1001] {
            let c = KrakenConfig {
                book_depth: depth,
                ..KrakenConfig::default()
            };
            assert_eq!(c.validate().unwrap_err().0, "book_depth", "{depth}");
        }
        let c = KrakenConfig {
            pairs_per_connection: 0,
            ..KrakenConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "pairs_per_connection");
    }

    #[test]
    fn reads_partial_settings_and_refuses_unknown_keys() {
        let c: KrakenConfig = serde_json::from_str(r#"{"book_depth":25}"#).unwrap();
        assert_eq!(
            c,
            KrakenConfig {
                book_depth: 25,
                pairs_per_connection: DEFAULT_PAIRS_PER_CONNECTION
            }
        );
        assert!(serde_json::from_str::<KrakenConfig>(r#"{"depth":25}"#).is_err());
    }
}
