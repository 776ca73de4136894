//! Which Coinbase channels to subscribe, on which connections, and how.
//!
//! The rules, from "Advanced Trade WebSocket Overview" and "Advanced Trade WebSocket
//! Channels" (docs.cdp.coinbase.com, seen 2026-08):
//! * one endpoint, `wss://advanced-trade-ws.coinbase.com`; subscriptions are messages
//!   `{"type":"subscribe","product_ids":[…],"channel":"…"}`, **one channel per message**
//!   with a list of products; `unsubscribe` has the same shape and is answered, like
//!   `subscribe`, by a `subscriptions` message listing everything now subscribed;
//! * a connection that has not subscribed within **5 seconds** is closed;
//! * `heartbeats`, `level2`, `market_trades`, `ticker` (and `candles`, `status`,
//!   `ticker_batch`) need no authentication; only `user` and `futures_balance_summary`
//!   do. Raven subscribes without a JWT (the docs recommend one "for the most reliable
//!   connection"; Raven holds no Coinbase credentials);
//! * "Most channels close within 60-90 seconds if no updates are sent. Subscribe to
//!   heartbeats to keep all subscriptions open": every connection subscribes
//!   `heartbeats` first (it takes no products), so a quiet product's connection stays
//!   open and the server's one-per-second heartbeat is proof of life for the stall
//!   timer. No client-side keepalive frame exists or is needed;
//! * unauthenticated messages are limited to 8 per second per IP: frames are spaced by
//!   [`super::CoinbaseConfig::subscribe_interval`];
//! * `-USDC` products other than USDT-USDC and EURC-USDC "return the same data as the
//!   corresponding -USD based products" on market-data channels: subscribe the `-USD`
//!   product (a `-USDC` subscription's frames name the `-USD` product, which the
//!   connection's parser does not know).
//!
//! Raven's channels map to `level2` (book), `market_trades` (trades) and `ticker`
//! (BBO). Coinbase publishes no funding or liquidations on the WebSocket (funding of
//! its perpetual-style futures is only in the REST product listing), so those are not
//! subscribed. Products are spread over connections of at most
//! [`super::CoinbaseConfig::products_per_connection`], every channel of a product on the
//! same connection, so a disconnect resets whole instruments.
//!
//! **Resubscribing one book.** Coinbase's level2 sends a `snapshot` event as the first
//! message of a subscription, then `update`s. Unsubscribing level2 for the product and
//! subscribing it again therefore yields a fresh snapshot on the same connection
//! (updates for it that arrive between the two are for a book waiting for its
//! snapshot and are dropped by the book sync).

use std::collections::HashSet;

use serde::Serialize;

use crate::engine::{Channels, ConnectionPlan};

use super::CoinbaseConfig;

/// The book channel's name in subscriptions (its frames say `l2_data`).
pub const LEVEL2: &str = "level2";
pub const MARKET_TRADES: &str = "market_trades";
pub const TICKER: &str = "ticker";
pub const HEARTBEATS: &str = "heartbeats";

/// A subscribe or unsubscribe message, fields in the documented order.
#[derive(Serialize)]
struct Request<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "no_products")]
    product_ids: &'a [&'a str],
    channel: &'a str,
}

/// `heartbeats` takes no products: the field is left out.
fn no_products(ids: &&[&str]) -> bool {
    ids.is_empty()
}

fn request(kind: &str, channel: &str, product_ids: &[&str]) -> String {
    let r = Request {
        kind,
        product_ids,
        channel,
    };
    // Serializing strings and a slice of strings cannot fail.
    serde_json::to_string(&r).unwrap_or_default()
}

/// `{"type":"subscribe","product_ids":[…],"channel":…}`.
pub fn subscribe(channel: &str, product_ids: &[&str]) -> String {
    request("subscribe", channel, product_ids)
}

/// `{"type":"unsubscribe","product_ids":[…],"channel":…}`.
pub fn unsubscribe(channel: &str, product_ids: &[&str]) -> String {
    request("unsubscribe", channel, product_ids)
}

/// The product channels Raven subscribes for `channels`, in the order they are sent.
pub fn product_channels(channels: &Channels) -> Vec<&'static str> {
    [
        (channels.book, LEVEL2),
        (channels.trades, MARKET_TRADES),
        (channels.bbo, TICKER),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// The connections for `symbols` (any case; duplicates subscribed once).
pub fn plan(
    ws_url: &str,
    config: &CoinbaseConfig,
    symbols: &[String],
    channels: &Channels,
) -> Vec<ConnectionPlan> {
    let product_channels = product_channels(channels);
    if product_channels.is_empty() {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let products: Vec<String> = symbols
        .iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect();
    let per_connection = config.products_per_connection.max(1);
    products
        .chunks(per_connection)
        .map(|chunk| {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let mut subscribe_frames = vec![subscribe(HEARTBEATS, &[])];
            subscribe_frames.extend(product_channels.iter().map(|c| subscribe(c, &ids)));
            ConnectionPlan {
                url: ws_url.to_owned(),
                symbols: chunk.to_vec(),
                subscribe: subscribe_frames,
                send_interval: config.subscribe_interval(),
                streams: 1 + ids.len() * product_channels.len(),
            }
        })
        .collect()
}

/// Unsubscribe then subscribe level2 of one product: Coinbase answers with a new
/// snapshot (see the module docs).
pub fn resubscribe_book(symbol: &str) -> Vec<String> {
    let product = symbol.trim().to_ascii_uppercase();
    vec![
        unsubscribe(LEVEL2, &[&product]),
        subscribe(LEVEL2, &[&product]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn all() -> Channels {
        Channels {
            trades: true,
            book: true,
            bbo: true,
            funding: true,
            liquidations: true,
        }
    }

    fn symbols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_message_per_channel_heartbeats_first() {
        let plans = plan(
            "wss://x",
            &CoinbaseConfig::default(),
            &symbols(&["btc-usd", "ETH-USD"]),
            &all(),
        );
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(p.url, "wss://x");
        assert_eq!(p.symbols, ["BTC-USD", "ETH-USD"]);
        assert_eq!(
            p.subscribe,
            [
                r#"{"type":"subscribe","channel":"heartbeats"}"#,
                r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}"#,
                r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"market_trades"}"#,
                r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"ticker"}"#,
            ]
        );
        assert_eq!(p.send_interval, Duration::from_millis(250));
        // Funding and liquidations are not on Coinbase's WebSocket.
        assert_eq!(p.streams, 1 + 2 * 3);
    }

    #[test]
    fn products_are_split_with_all_their_channels_together() {
        let config = CoinbaseConfig {
            products_per_connection: 2,
            ..CoinbaseConfig::default()
        };
        let only_book = Channels {
            book: true,
            ..Channels::default()
        };
        let plans = plan(
            "wss://x",
            &config,
            &symbols(&["A-USD", "B-USD", "a-usd", " ", "C-USD"]),
            &only_book,
        );
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].symbols, ["A-USD", "B-USD"]);
        assert_eq!(plans[1].symbols, ["C-USD"]);
        assert_eq!(
            plans[1].subscribe,
            [
                r#"{"type":"subscribe","channel":"heartbeats"}"#,
                r#"{"type":"subscribe","product_ids":["C-USD"],"channel":"level2"}"#,
            ]
        );
        assert_eq!(plans[1].streams, 2);
    }

    #[test]
    fn nothing_coinbase_publishes_means_no_connection() {
        let derivatives_only = Channels {
            funding: true,
            liquidations: true,
            ..Channels::default()
        };
        let s = symbols(&["BTC-USD"]);
        assert!(plan("wss://x", &CoinbaseConfig::default(), &s, &derivatives_only).is_empty());
        assert!(plan("wss://x", &CoinbaseConfig::default(), &[], &all()).is_empty());
    }

    #[test]
    fn resubscribing_a_book_is_unsubscribe_then_subscribe_level2() {
        assert_eq!(
            resubscribe_book("btc-usd"),
            [
                r#"{"type":"unsubscribe","product_ids":["BTC-USD"],"channel":"level2"}"#,
                r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}"#,
            ]
        );
    }

    #[test]
    fn product_ids_are_json_escaped() {
        assert_eq!(
            subscribe(TICKER, &["A\"B"]),
            r#"{"type":"subscribe","product_ids":["A\"B"],"channel":"ticker"}"#
        );
    }
}
