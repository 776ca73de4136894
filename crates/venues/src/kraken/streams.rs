//! Which Kraken subscriptions to send, on how many connections, and how to get a fresh
//! book snapshot.
//!
//! Kraken WebSocket v1 (`wss://ws.kraken.com`) takes subscriptions as messages on a bare
//! endpoint, one per channel, each naming any number of pairs (v1 "Subscribe" and
//! channel pages, docs.kraken.com/api/docs/websocket-v1, seen 2026-08):
//!
//! ```json
//! {"event":"subscribe","pair":["XBT/USD","ETH/EUR"],"subscription":{"name":"book","depth":1000}}
//! ```
//!
//! Every pair of every subscription is acknowledged by its own `subscriptionStatus`
//! (`"status":"subscribed"`, or `"error"` with an `errorMessage`); `unsubscribe` takes
//! the same body. Raven subscribes:
//! * `book` at [`KrakenConfig::book_depth`] for the book channel;
//! * `trade` for trades;
//! * `spread` for the BBO: it is the channel Kraken documents as "the best bid and ask
//!   prices along with their volumes", pushed on every change of the top of the book.
//!   `ticker` also carries a best bid and ask (its `a`/`b`), and the parser reads them
//!   too (the recorded session has `ticker`, not `spread`), but it adds a day of
//!   statistics to every message and carries no time.
//!
//! Limits: Kraken documents no maximum of pairs per message or per connection, and its
//! WebSocket message rate limit is dynamic and unpublished (an over-limit client gets an
//! `"Exceeded msg rate"` error). Raven sends at most one frame per channel on connect and
//! two per book resync, spaced by [`SUBSCRIBE_INTERVAL`]. Connection attempts are limited
//! per IP by Kraken's Cloudflare front (the legacy v1 documentation gave about 150 per
//! rolling 10 minutes; today's pages only ask for backoff), which
//! [`KrakenConfig::pairs_per_connection`] keeps far away by packing pairs.
//!
//! All channels of one pair go on the same connection, so a disconnect resets whole
//! instruments.

use std::time::Duration;

use serde_json::json;

use super::config::KrakenConfig;
use crate::engine::{Channels, ConnectionPlan, Keepalive};

/// Pause between two subscription frames on one connection. Kraken publishes no fixed
/// message rate; a quarter second is far below anything it has been seen to refuse.
pub const SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(250);

/// How often Raven sends `{"event":"ping"}`. Kraken answers `pong`; its `heartbeat`
/// (about once a second without traffic) only flows while at least one subscription is
/// active, so the ping keeps a connection whose subscriptions were all refused from
/// looking stalled and being reopened again and again.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

/// One Kraken subscription (the `subscription` object of a subscribe message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    Book { depth: usize },
    Trade,
    Spread,
}

impl Subscription {
    fn body(self) -> serde_json::Value {
        match self {
            Subscription::Book { depth } => json!({"name": "book", "depth": depth}),
            Subscription::Trade => json!({"name": "trade"}),
            Subscription::Spread => json!({"name": "spread"}),
        }
    }
}

fn frame(event: &str, pairs: &[String], subscription: Subscription) -> String {
    json!({"event": event, "pair": pairs, "subscription": subscription.body()}).to_string()
}

/// The subscriptions for the channels asked; funding and liquidations do not exist on
/// Kraken spot.
fn subscriptions(config: &KrakenConfig, channels: &Channels) -> Vec<Subscription> {
    let mut out = Vec::with_capacity(3);
    if channels.book {
        out.push(Subscription::Book {
            depth: config.book_depth,
        });
    }
    if channels.trades {
        out.push(Subscription::Trade);
    }
    if channels.bbo {
        out.push(Subscription::Spread);
    }
    out
}

/// The connections for `symbols` (Kraken `wsname`s, `XBT/USD`): chunks of
/// [`KrakenConfig::pairs_per_connection`] pairs, each with one subscribe frame per
/// channel naming all its pairs.
pub fn plan(
    ws_url: &str,
    config: &KrakenConfig,
    symbols: &[String],
    channels: &Channels,
) -> Vec<ConnectionPlan> {
    let subscriptions = subscriptions(config, channels);
    if subscriptions.is_empty() {
        return Vec::new();
    }
    symbols
        .chunks(config.pairs_per_connection.max(1))
        .map(|pairs| ConnectionPlan {
            url: ws_url.to_owned(),
            symbols: pairs.to_vec(),
            subscribe: subscriptions
                .iter()
                .map(|s| frame("subscribe", pairs, *s))
                .collect(),
            send_interval: SUBSCRIBE_INTERVAL,
            streams: pairs.len() * subscriptions.len(),
        })
        .collect()
}

/// Unsubscribe and subscribe the book of one pair again: Kraken answers the subscribe
/// with a fresh snapshot.
pub fn resubscribe_book(config: &KrakenConfig, symbol: &str) -> Vec<String> {
    let pairs = [symbol.to_owned()];
    let book = Subscription::Book {
        depth: config.book_depth,
    };
    vec![
        frame("unsubscribe", &pairs, book),
        frame("subscribe", &pairs, book),
    ]
}

/// Kraken's application ping (see [`PING_INTERVAL`]).
pub fn keepalive() -> Keepalive {
    Keepalive {
        every: PING_INTERVAL,
        frame: r#"{"event":"ping"}"#.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("A{i}/USD")).collect()
    }

    fn all() -> Channels {
        Channels {
            trades: true,
            book: true,
            bbo: true,
            funding: true,
            liquidations: true,
        }
    }

    #[test]
    fn one_frame_per_channel_naming_every_pair_of_the_connection() {
        let plans = plan(
            "wss://ws.kraken.com",
            &KrakenConfig::default(),
            &["XBT/USD".to_owned(), "ETH/EUR".to_owned()],
            &all(),
        );
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(p.url, "wss://ws.kraken.com");
        assert_eq!(p.symbols, ["XBT/USD", "ETH/EUR"]);
        assert_eq!(p.streams, 6);
        assert_eq!(p.send_interval, SUBSCRIBE_INTERVAL);
        let frames: Vec<serde_json::Value> = p
            .subscribe
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(
            frames,
            [
                json!({"event":"subscribe","pair":["XBT/USD","ETH/EUR"],
                       "subscription":{"name":"book","depth":1000}}),
                json!({"event":"subscribe","pair":["XBT/USD","ETH/EUR"],
                       "subscription":{"name":"trade"}}),
                json!({"event":"subscribe","pair":["XBT/USD","ETH/EUR"],
                       "subscription":{"name":"spread"}}),
            ]
        );
    }

    #[test]
    fn pairs_are_split_over_connections_with_all_their_channels() {
        let config = KrakenConfig {
            pairs_per_connection: 4,
            ..KrakenConfig::default()
        };
        let channels = Channels {
            book: true,
            trades: true,
            ..Channels::default()
        };
        let plans = plan("wss://x", &config, &symbols(10), &channels);
        assert_eq!(
            plans.iter().map(|p| p.symbols.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        for p in &plans {
            assert_eq!(p.subscribe.len(), 2);
            for f in &p.subscribe {
                let v: serde_json::Value = serde_json::from_str(f).unwrap();
                assert_eq!(v["pair"], json!(p.symbols));
            }
        }
        let all: Vec<&String> = plans.iter().flat_map(|p| &p.symbols).collect();
        assert_eq!(all.len(), 10);
    }

    #[test]
    fn nothing_to_open_without_a_kraken_channel() {
        let derivatives_only = Channels {
            funding: true,
            liquidations: true,
            ..Channels::default()
        };
        let config = KrakenConfig::default();
        assert!(plan("wss://x", &config, &symbols(3), &derivatives_only).is_empty());
        assert!(plan("wss://x", &config, &[], &all()).is_empty());
    }

    #[test]
    fn a_book_resync_unsubscribes_then_subscribes_at_the_same_depth() {
        let config = KrakenConfig {
            book_depth: 25,
            ..KrakenConfig::default()
        };
        let frames: Vec<serde_json::Value> = resubscribe_book(&config, "XBT/USD")
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(
            frames,
            [
                json!({"event":"unsubscribe","pair":["XBT/USD"],
                       "subscription":{"name":"book","depth":25}}),
                json!({"event":"subscribe","pair":["XBT/USD"],
                       "subscription":{"name":"book","depth":25}}),
            ]
        );
        assert_eq!(keepalive().frame, r#"{"event":"ping"}"#);
    }
}
