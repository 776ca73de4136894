//! The settings only OKX has, with the limits its documentation sets on them.
//!
//! Everything generic (symbols, channels, URLs, the stall timeout) is the engine's; what
//! is left is how Raven uses OKX's public WebSocket:
//! * which order book channel carries the book ([`BookChannel`]): `books` (400 levels,
//!   snapshot then 100 ms increments, public) by default, or `books5` (a fresh 5-level
//!   snapshot every 100 ms, public) for a light top-of-book. The tick-by-tick books
//!   (`books-l2-tbt`, `books50-l2-tbt`) need a logged-in VIP4 account (error 64003
//!   otherwise) and `bbo-tbt` is one level: none is offered here (OKX "WS / Order book
//!   channel", seen 2026-08, page dated 2026-07-07);
//! * how many instruments share a connection: OKX recommends fewer than 30 channels of
//!   400 or 50 levels per connection (same page), and every instrument carries one
//!   book channel, so at most 29;
//! * how often to send the text `ping`: OKX closes a connection that received nothing
//!   for 30 s and asks for a `ping` after N < 30 s of silence ("Overview / WebSocket /
//!   Connect", seen 2026-08, page dated 2026-07-08).

use serde::Deserialize;

/// The order book channel Raven subscribes for each instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BookChannel {
    /// `books`: a 400-level snapshot, then every 100 ms the levels that changed.
    #[serde(rename = "books")]
    Books,
    /// `books5`: every 100 ms (when they changed) the best 5 levels, whole.
    #[serde(rename = "books5")]
    Books5,
}

impl BookChannel {
    /// The channel's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            BookChannel::Books => "books",
            BookChannel::Books5 => "books5",
        }
    }

    /// The levels per side the channel keeps.
    pub fn depth(self) -> usize {
        match self {
            BookChannel::Books => 400,
            BookChannel::Books5 => 5,
        }
    }
}

/// Fewer than 30 book channels per connection, as OKX recommends.
pub const MAX_SYMBOLS_PER_CONNECTION: usize = 29;

/// OKX closes a connection after 30 s without traffic; the ping must come before.
pub const MAX_PING_INTERVAL_SECS: u64 = 29;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OkxConfig {
    /// The book channel (default `books`).
    pub book_channel: BookChannel,
    /// Instruments per connection (default 20: a disconnect resets at most 20 books, and
    /// the connection stays well under OKX's recommended 30 book channels).
    pub symbols_per_connection: usize,
    /// Seconds between two `ping`s (default 20, under OKX's 30 s idle cut).
    pub ping_interval_secs: u64,
}

impl Default for OkxConfig {
    fn default() -> Self {
        Self {
            book_channel: BookChannel::Books,
            symbols_per_connection: 20,
            ping_interval_secs: 20,
        }
    }
}

impl OkxConfig {
    /// The first setting outside OKX's documented limits, as (key, reason).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_SYMBOLS_PER_CONNECTION).contains(&self.symbols_per_connection) {
            return Err((
                "symbols_per_connection".into(),
                format!(
                    "must be 1..={MAX_SYMBOLS_PER_CONNECTION}: OKX recommends fewer than 30 \
                     book channels per connection (got {})",
                    self.symbols_per_connection
                ),
            ));
        }
        if !(1..=MAX_PING_INTERVAL_SECS).contains(&self.ping_interval_secs) {
            return Err((
                "ping_interval_secs".into(),
                format!(
                    "must be 1..={MAX_PING_INTERVAL_SECS}: OKX closes a connection after 30 s \
                     without traffic (got {})",
                    self.ping_interval_secs
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
        assert_eq!(OkxConfig::default().validate(), Ok(()));
        for (symbols, ping, key) in [
            (0, 20, "symbols_per_connection"),
            (30, 20, "symbols_per_connection"),
            (20, 0, "ping_interval_secs"),
            (20, 30, "ping_interval_secs"),
        ] {
            let config = OkxConfig {
                symbols_per_connection: symbols,
                ping_interval_secs: ping,
                ..OkxConfig::default()
            };
            assert_eq!(config.validate().unwrap_err().0, key);
        }
        let edge = OkxConfig {
            symbols_per_connection: 29,
            ping_interval_secs: 29,
            ..OkxConfig::default()
        };
        assert_eq!(edge.validate(), Ok(()));
    }

    #[test]
    fn reads_from_config_text_and_refuses_unknown_keys() {
        let c: OkxConfig =
            serde_json::from_str(r#"{"book_channel":"books5","symbols_per_connection":5}"#)
                .unwrap();
        assert_eq!(c.book_channel, BookChannel::Books5);
        assert_eq!(c.symbols_per_connection, 5);
        assert_eq!(c.ping_interval_secs, 20);
        assert!(serde_json::from_str::<OkxConfig>(r#"{"depth":400}"#).is_err());
        assert!(serde_json::from_str::<OkxConfig>(r#"{"book_channel":"books-l2-tbt"}"#).is_err());
    }
}
