//! Which OKX channels to subscribe, on which connections, and the keepalive.
//!
//! OKX's public endpoint takes subscriptions as messages (OKX "Overview / WebSocket /
//! Subscribe", seen 2026-08, page dated 2026-07-03):
//! `{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},…]}`, each
//! argument acknowledged by its own `{"event":"subscribe","arg":{…}}`; `unsubscribe`
//! is the same with `op` changed. The limits that shape the plan ("Connect", page
//! dated 2026-07-08, and "WS / Order book channel"):
//! * 480 `subscribe`/`unsubscribe`/`login` requests per connection per hour: Raven
//!   sends one request per connection at start (all its arguments in one message) and
//!   two per book resync ([`resubscribe_book`]), so a connection can resync about 239
//!   books an hour. Should a plan ever need more messages, they are spaced by
//!   [`SUBSCRIBE_INTERVAL`], the hourly budget's average pace;
//! * the arguments of one message may total at most 64 KB: with at most
//!   [`super::config::MAX_SYMBOLS_PER_CONNECTION`] instruments and five channels each, a message is
//!   far below (tested on the longest symbols);
//! * fewer than 30 channels of 400 or 50 levels per connection (recommended), hence
//!   the per-connection instrument limit of the config;
//! * 3 new connections per second per IP: the engine's connection pacing, not a plan
//!   matter;
//! * a connection with no subscription, or no push, for 30 s is closed: Raven sends
//!   the text `ping` every [`super::OkxConfig::ping_interval_secs`] (OKX answers
//!   `pong`). OKX asks for a ping after N < 30 s without *receiving* anything; pinging
//!   every N s regardless is within that rule.
//!
//! Channels per instrument: the book channel, `trades`, `tickers` (BBO), and for
//! derivatives `mark-price` (swaps and futures) and `funding-rate` (swaps only), which
//! Raven merges into one mark-price event. Liquidations are one channel per instrument
//! *type* (`{"channel":"liquidation-orders","instType":"SWAP"}`), subscribed once on
//! every connection that carries instruments of that type; its parser keeps its own
//! instruments' liquidations. All channels of an instrument share its connection.

use std::time::Duration;

use serde_json::{json, Value};

use super::config::OkxConfig;
use super::symbol::InstClass;
use crate::engine::{Channels, ConnectionPlan, Keepalive};

/// 3600 s / 480 requests: the average pace the hourly request budget allows.
pub const SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(7_500);

/// OKX's limit on one message's arguments.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The connections for `symbols` (upper-case instIds) and `channels`.
pub fn plan(
    config: &OkxConfig,
    url: &str,
    symbols: &[String],
    channels: &Channels,
) -> Vec<ConnectionPlan> {
    symbols
        .chunks(config.symbols_per_connection.max(1))
        .filter_map(|chunk| {
            let args = connection_args(config, chunk, channels);
            (!args.is_empty()).then(|| ConnectionPlan {
                url: url.to_owned(),
                symbols: chunk.to_vec(),
                streams: args.len(),
                subscribe: vec![request("subscribe", args)],
                send_interval: SUBSCRIBE_INTERVAL,
            })
        })
        .collect()
}

/// Every subscription argument of one connection's instruments.
fn connection_args(config: &OkxConfig, symbols: &[String], channels: &Channels) -> Vec<Value> {
    let mut args = Vec::with_capacity(symbols.len() * 5 + 2);
    for symbol in symbols {
        let class = InstClass::of(symbol);
        if channels.book {
            args.push(instrument_arg(config.book_channel.name(), symbol));
        }
        if channels.trades {
            args.push(instrument_arg("trades", symbol));
        }
        if channels.bbo {
            args.push(instrument_arg("tickers", symbol));
        }
        if channels.funding && class.is_derivative() {
            if class == InstClass::Swap {
                args.push(instrument_arg("funding-rate", symbol));
            }
            args.push(instrument_arg("mark-price", symbol));
        }
    }
    if channels.liquidations {
        for inst_type in [InstClass::Swap, InstClass::Future] {
            if symbols.iter().any(|s| InstClass::of(s) == inst_type) {
                args.push(json!({
                    "channel": "liquidation-orders",
                    "instType": inst_type.inst_type(),
                }));
            }
        }
    }
    args
}

fn instrument_arg(channel: &str, symbol: &str) -> Value {
    json!({ "channel": channel, "instId": symbol })
}

fn request(op: &str, args: Vec<Value>) -> String {
    json!({ "op": op, "args": args }).to_string()
}

/// Unsubscribe the instrument's book channel, then subscribe it again: OKX answers the
/// subscription with a new snapshot.
pub fn resubscribe_book(config: &OkxConfig, symbol: &str) -> Vec<String> {
    let arg = || vec![instrument_arg(config.book_channel.name(), symbol)];
    vec![request("unsubscribe", arg()), request("subscribe", arg())]
}

/// The text `ping` every [`OkxConfig::ping_interval_secs`].
pub fn keepalive(config: &OkxConfig) -> Keepalive {
    Keepalive {
        every: Duration::from_secs(config.ping_interval_secs),
        frame: "ping".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::okx::config::{BookChannel, MAX_SYMBOLS_PER_CONNECTION};

    const URL: &str = "wss://ws.okx.com:8443/ws/v5/public";

    fn all() -> Channels {
        Channels {
            trades: true,
            book: true,
            bbo: true,
            funding: true,
            liquidations: true,
        }
    }

    fn symbols(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn args_of(frame: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(frame).unwrap();
        assert_eq!(v["op"], "subscribe");
        v["args"].as_array().unwrap().clone()
    }

    #[test]
    fn each_instrument_gets_the_channels_its_type_has() {
        let config = OkxConfig::default();
        let plans = plan(
            &config,
            URL,
            &symbols(&["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"]),
            &all(),
        );
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(p.url, URL);
        assert_eq!(p.subscribe.len(), 1);
        let args = args_of(&p.subscribe[0]);
        let want = [
            json!({"channel":"books","instId":"BTC-USD-220527"}),
            json!({"channel":"trades","instId":"BTC-USD-220527"}),
            json!({"channel":"tickers","instId":"BTC-USD-220527"}),
            json!({"channel":"mark-price","instId":"BTC-USD-220527"}),
            json!({"channel":"books","instId":"UNI-USD-SWAP"}),
            json!({"channel":"trades","instId":"UNI-USD-SWAP"}),
            json!({"channel":"tickers","instId":"UNI-USD-SWAP"}),
            json!({"channel":"funding-rate","instId":"UNI-USD-SWAP"}),
            json!({"channel":"mark-price","instId":"UNI-USD-SWAP"}),
            json!({"channel":"books","instId":"BTC-USDT"}),
            json!({"channel":"trades","instId":"BTC-USDT"}),
            json!({"channel":"tickers","instId":"BTC-USDT"}),
            json!({"channel":"liquidation-orders","instType":"SWAP"}),
            json!({"channel":"liquidation-orders","instType":"FUTURES"}),
        ];
        assert_eq!(args, want);
        assert_eq!(p.streams, want.len());
        assert_eq!(p.send_interval, Duration::from_millis(7_500));
    }

    #[test]
    fn connections_are_filled_to_the_configured_size_and_spot_only_has_no_derivative_channels() {
        let config = OkxConfig {
            symbols_per_connection: 2,
            book_channel: BookChannel::Books5,
            ..OkxConfig::default()
        };
        let list = symbols(&["A-USDT", "B-USDT", "C-USDT", "D-USDT", "E-USDT"]);
        let plans = plan(&config, URL, &list, &all());
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].symbols, symbols(&["A-USDT", "B-USDT"]));
        assert_eq!(plans[2].symbols, symbols(&["E-USDT"]));
        let args = args_of(&plans[2].subscribe[0]);
        assert_eq!(
            args,
            vec![
                json!({"channel":"books5","instId":"E-USDT"}),
                json!({"channel":"trades","instId":"E-USDT"}),
                json!({"channel":"tickers","instId":"E-USDT"}),
            ]
        );
        // Nothing to subscribe: no connection (OKX would close it after 30 s).
        let only_funding = Channels {
            funding: true,
            liquidations: true,
            ..Channels::default()
        };
        assert!(plan(&config, URL, &list, &only_funding).is_empty());
        assert!(plan(&config, URL, &[], &all()).is_empty());
    }

    #[test]
    fn the_largest_connection_fits_one_message() {
        let config = OkxConfig {
            symbols_per_connection: MAX_SYMBOLS_PER_CONNECTION,
            ..OkxConfig::default()
        };
        // The longest symbols Raven accepts, all swaps: every channel applies.
        let list: Vec<String> = (0..MAX_SYMBOLS_PER_CONNECTION)
            .map(|i| format!("{:A<55}{i:02}-SWAP", "B-"))
            .collect();
        assert!(list
            .iter()
            .all(|s| s.len() <= 64 && InstClass::of(s) == InstClass::Swap));
        let plans = plan(&config, URL, &list, &all());
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].streams, MAX_SYMBOLS_PER_CONNECTION * 5 + 1);
        assert!(plans[0].subscribe[0].len() < MAX_REQUEST_BYTES / 2);
    }

    #[test]
    fn a_book_resync_is_unsubscribe_then_subscribe() {
        let frames = resubscribe_book(&OkxConfig::default(), "BTC-USDT");
        let v: Vec<Value> = frames
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(
            v,
            vec![
                json!({"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}),
                json!({"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}),
            ]
        );
    }

    #[test]
    fn the_keepalive_is_a_text_ping() {
        let k = keepalive(&OkxConfig::default());
        assert_eq!(k.every, Duration::from_secs(20));
        assert_eq!(k.frame, "ping");
    }
}
