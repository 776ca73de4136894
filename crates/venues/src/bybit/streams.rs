//! Which Bybit topics to subscribe, and how to spread them over connections and
//! requests.
//!
//! Bybit serves each category on its own bare endpoint (`/v5/public/spot`,
//! `/v5/public/linear`) and takes subscriptions as messages:
//! `{"op":"subscribe","args":["orderbook.200.BTCUSDT",…]}`, answered by
//! `{"success":true,"ret_msg":…,"op":"subscribe",…}`; `unsubscribe` is the same with
//! another op. The rules, from bybit-exchange/docs @072c197 (2026-07-24), "Connect" page:
//! * one public connection's args may not exceed **21,000 characters** in all;
//! * spot takes at most **10 args per request** (futures: no limit); Raven sends at most
//!   [`BybitConfig::args_per_request`] (≤ 10) on both;
//! * Bybit documents no request rate for public streams; Raven paces requests at
//!   [`SEND_INTERVAL`] (10 per second), which brings a 200-topic connection up in 2 s;
//! * the keepalive is `{"op":"ping"}`, recommended every **20 s** ([`keepalive`]); the
//!   pong is `{"success":true,"ret_msg":"pong","op":"ping",…}` on spot and linear;
//! * IP limits (not per connection, left to the engine): at most 500 connections per
//!   5 minutes per domain, 1,000 market-data connections per IP and market.
//!
//! Topics per symbol (pages "Orderbook", "Trade", "Ticker", "All Liquidation"):
//! * book: `orderbook.{depth}.{symbol}`, depth 50/200/1000;
//! * trades: `publicTrade.{symbol}`;
//! * linear BBO and mark price / funding: `tickers.{symbol}` (one topic serves both:
//!   `bid1Price`… and `markPrice`, `fundingRate`…);
//! * spot BBO: `orderbook.1.{symbol}`. Spot tickers carry no bid or ask (only last
//!   price, 24 h statistics and `usdIndexPrice`), while level 1 of the book is pushed
//!   every 10 ms as a full snapshot with its update id, the venue's own best bid and
//!   offer;
//! * linear liquidations: `allLiquidation.{symbol}` (the old `liquidation.{symbol}`,
//!   one per second at most, was deprecated on 2025-03-05). Spot has no funding and no
//!   liquidations: those channels are not asked of it.
//!
//! All topics of one symbol go on the same connection, so a disconnect resets whole
//! instruments.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::config::BybitConfig;
use super::Category;
use crate::engine::{Channels, ConnectionPlan, Keepalive};

/// Bybit's limit on the characters of one public connection's args.
pub const MAX_ARGS_CHARS_PER_CONNECTION: usize = 21_000;

/// Raven's pause between two requests on one connection (see the module docs).
pub const SEND_INTERVAL: Duration = Duration::from_millis(100);

/// Bybit's recommended keepalive period.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// The keepalive request (its `req_id` is optional and Raven sends none).
pub const PING_FRAME: &str = r#"{"op":"ping"}"#;

/// The topic of a symbol's book at `depth`.
pub fn book_topic(depth: u32, symbol: &str) -> String {
    format!("orderbook.{depth}.{symbol}")
}

/// The topics of one upper-case symbol, in a fixed order.
pub fn topics(category: Category, depth: u32, symbol: &str, channels: &Channels) -> Vec<String> {
    let mut out = Vec::with_capacity(4);
    if channels.book {
        out.push(book_topic(depth, symbol));
    }
    if channels.trades {
        out.push(format!("publicTrade.{symbol}"));
    }
    match category {
        Category::Linear => {
            if channels.bbo || channels.funding {
                out.push(format!("tickers.{symbol}"));
            }
            if channels.liquidations {
                out.push(format!("allLiquidation.{symbol}"));
            }
        }
        Category::Spot => {
            if channels.bbo {
                out.push(format!("orderbook.1.{symbol}"));
            }
        }
    }
    out
}

/// The connections for `symbols` (any case, duplicates subscribed once).
pub fn plan(
    category: Category,
    config: &BybitConfig,
    ws_url: &str,
    symbols: &[String],
    channels: &Channels,
) -> Vec<ConnectionPlan> {
    let per_connection = config.topics_per_connection.max(1);
    let mut seen = HashSet::new();
    // Symbols, topics and the characters of the topics' args array, per connection.
    let mut groups: Vec<(Vec<String>, Vec<String>, usize)> = Vec::new();
    for symbol in symbols {
        let upper = symbol.trim().to_ascii_uppercase();
        if upper.is_empty() || !seen.insert(upper.clone()) {
            continue;
        }
        let topics = topics(category, config.book_depth, &upper, channels);
        if topics.is_empty() {
            continue;
        }
        let chars: usize = topics.iter().map(|t| arg_chars(t)).sum();
        let fits = groups.last().is_some_and(|(_, t, c)| {
            t.len() + topics.len() <= per_connection
                && c + chars + 2 <= MAX_ARGS_CHARS_PER_CONNECTION
        });
        if !fits {
            groups.push((Vec::new(), Vec::new(), 0));
        }
        if let Some((s, t, c)) = groups.last_mut() {
            s.push(upper);
            t.extend(topics);
            *c += chars;
        }
    }
    groups
        .into_iter()
        .map(|(symbols, topics, _)| ConnectionPlan {
            url: ws_url.to_owned(),
            subscribe: topics
                .chunks(config.args_per_request.max(1))
                .map(|args| request("subscribe", args))
                .collect(),
            streams: topics.len(),
            symbols,
            send_interval: SEND_INTERVAL,
        })
        .collect()
}

/// Unsubscribe and subscribe again: Bybit answers a subscription with a fresh snapshot.
pub fn resubscribe_book(depth: u32, symbol: &str) -> Vec<String> {
    let topic = [book_topic(depth, &symbol.trim().to_ascii_uppercase())];
    vec![request("unsubscribe", &topic), request("subscribe", &topic)]
}

pub fn keepalive() -> Keepalive {
    Keepalive {
        every: PING_INTERVAL,
        frame: PING_FRAME.to_owned(),
    }
}

/// A topic's characters in a JSON args array: the text, two quotes and a comma.
fn arg_chars(topic: &str) -> usize {
    topic.len() + 3
}

/// `{"op":…,"args":[…]}`, serialized (so any symbol text is escaped properly).
fn request(op: &str, args: &[String]) -> String {
    #[derive(Serialize)]
    struct Request<'a> {
        op: &'a str,
        args: &'a [String],
    }
    serde_json::to_string(&Request { op, args }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Channels {
        Channels {
            trades: true,
            book: true,
            bbo: true,
            funding: true,
            liquidations: true,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn topics_follow_each_category() {
        assert_eq!(
            topics(Category::Linear, 200, "BTCUSDT", &all()),
            [
                "orderbook.200.BTCUSDT",
                "publicTrade.BTCUSDT",
                "tickers.BTCUSDT",
                "allLiquidation.BTCUSDT"
            ]
        );
        // Spot: BBO from level 1 of the book; no funding, no liquidations.
        assert_eq!(
            topics(Category::Spot, 50, "ETHUSDT", &all()),
            [
                "orderbook.50.ETHUSDT",
                "publicTrade.ETHUSDT",
                "orderbook.1.ETHUSDT"
            ]
        );
        // Tickers serve both BBO and funding on linear: asked for either.
        let funding_only = Channels {
            funding: true,
            ..Channels::default()
        };
        assert_eq!(
            topics(Category::Linear, 200, "X", &funding_only),
            ["tickers.X"]
        );
        assert!(topics(Category::Spot, 200, "X", &funding_only).is_empty());
    }

    #[test]
    fn requests_hold_at_most_args_per_request_and_symbols_stay_whole() {
        let config = BybitConfig {
            topics_per_connection: 7,
            args_per_request: 2,
            ..BybitConfig::default()
        };
        let symbols = names(&["btcusdt", "ETHUSDT", "BTCUSDT", " ", "solusdt"]);
        let plans = plan(Category::Spot, &config, "wss://x", &symbols, &all());
        // Three topics per symbol, seven per connection: two symbols, then one.
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].symbols, ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(plans[1].symbols, ["SOLUSDT"]);
        assert_eq!(plans[0].streams, 6);
        assert_eq!(
            plans[0].subscribe,
            [
                r#"{"op":"subscribe","args":["orderbook.200.BTCUSDT","publicTrade.BTCUSDT"]}"#,
                r#"{"op":"subscribe","args":["orderbook.1.BTCUSDT","orderbook.200.ETHUSDT"]}"#,
                r#"{"op":"subscribe","args":["publicTrade.ETHUSDT","orderbook.1.ETHUSDT"]}"#,
            ]
        );
        assert_eq!(plans[0].url, "wss://x");
        assert_eq!(plans[0].send_interval, SEND_INTERVAL);
    }

    #[test]
    fn a_connection_s_args_stay_under_21000_characters() {
        let config = BybitConfig {
            topics_per_connection: usize::MAX,
            ..BybitConfig::default()
        };
        let symbols: Vec<String> = (0..2000).map(|i| format!("SYMBOL{i:05}USDT")).collect();
        let plans = plan(Category::Linear, &config, "wss://x", &symbols, &all());
        assert!(plans.len() > 1);
        let mut total = 0;
        for p in &plans {
            let args: Vec<String> = p
                .subscribe
                .iter()
                .flat_map(|f| {
                    let v: serde_json::Value = serde_json::from_str(f).unwrap();
                    v["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            let chars = serde_json::to_string(&args).unwrap().len();
            assert!(chars <= MAX_ARGS_CHARS_PER_CONNECTION, "{chars}");
            assert_eq!(args.len(), p.streams);
            total += p.symbols.len();
        }
        assert_eq!(total, 2000);
    }

    #[test]
    fn nothing_to_subscribe_opens_nothing() {
        let plans = plan(
            Category::Spot,
            &BybitConfig::default(),
            "wss://x",
            &names(&["BTCUSDT"]),
            &Channels {
                liquidations: true,
                ..Channels::default()
            },
        );
        assert!(plans.is_empty());
    }

    #[test]
    fn resubscribing_a_book_and_the_keepalive() {
        assert_eq!(
            resubscribe_book(1000, "btcusdt"),
            [
                r#"{"op":"unsubscribe","args":["orderbook.1000.BTCUSDT"]}"#,
                r#"{"op":"subscribe","args":["orderbook.1000.BTCUSDT"]}"#
            ]
        );
        let k = keepalive();
        assert_eq!(k.every, Duration::from_secs(20));
        assert_eq!(k.frame, r#"{"op":"ping"}"#);
    }
}
