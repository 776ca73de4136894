//! Coinbase Advanced Trade market data (`wss://advanced-trade-ws.coinbase.com`, path
//! `/`).
//!
//! Rules, from Coinbase's Advanced Trade WebSocket docs ("Overview", "Channels",
//! "Heartbeats", seen 2026-05) and the recording (2026-08-09):
//!
//! * `{"type":"subscribe","product_ids":["BTC-USD",..],"channel":"level2"}`, one
//!   channel per message (`heartbeats` needs no products). Each (un)subscription is
//!   answered with a `subscriptions` message listing everything the connection is
//!   subscribed to now: `{"channel":"subscriptions","timestamp":"..","sequence_num":N,
//!   "events":[{"subscriptions":{"level2":["BTC-USD"],"heartbeats":["heartbeats"]}}]}`.
//! * Every message carries `sequence_num`, numbered per connection from 0 over all its
//!   channels; a client detects a lost message by a hole. The recording's numbers are
//!   those of the recorded connection, so the simulator renumbers every frame it sends
//!   on each connection, and a frame deleted by a fault leaves a hole, as a lost
//!   message does.
//! * Keys: `l2_data` frames belong to the `level2` subscription; `market_trades`,
//!   `ticker`, `ticker_batch`, `candles`, `status` frames to their own name; the
//!   product is the event's `product_id` (or that of its trades, tickers, candles).
//! * Books: `l2_data` events `{"type":"snapshot"|"update","product_id":..,"updates":
//!   [{"side":"bid"|"offer","event_time":..,"price_level":..,"new_quantity":..}]}`;
//!   quantity 0 removes the level; the snapshot is the whole book, bids best first,
//!   then offers. No checksum, no application ping (WebSocket pings only).
//! * REST over the limit: HTTP 429 (the documented status; the body shape is the
//!   Advanced Trade error object).

use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::Value;

use super::{
    cross_levels, BookFrame, ConnCtx, Protocol, Recorded, RecordedLevel, ReqId, Request,
    RestAnswer, SimBook, Sub,
};
use crate::format::{push_json_str, push_u64, rfc3339};

/// The Coinbase Advanced Trade protocol.
pub(crate) struct Coinbase;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    events: Vec<Value>,
}

#[derive(Deserialize)]
struct L2Event {
    #[serde(rename = "type")]
    kind: String,
    product_id: String,
    updates: Vec<L2Update>,
}

#[derive(Deserialize)]
struct L2Update {
    side: String,
    event_time: String,
    price_level: String,
    new_quantity: String,
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    channel: Option<String>,
}

/// The subscription a frame's channel belongs to.
fn subscription_channel(frame_channel: &str) -> &str {
    match frame_channel {
        "l2_data" => "level2",
        other => other,
    }
}

/// The product of a non-book event.
fn product(event: &Value) -> Option<&str> {
    if let Some(p) = event.get("product_id").and_then(Value::as_str) {
        return Some(p);
    }
    ["trades", "tickers", "candles"].iter().find_map(|list| {
        event
            .get(list)?
            .as_array()?
            .first()?
            .get("product_id")?
            .as_str()
    })
}

/// The channel without products; its key has an empty symbol, and the
/// `subscriptions` message lists it as `"heartbeats":["heartbeats"]`.
const HEARTBEATS: &str = "heartbeats";

impl Protocol for Coinbase {
    fn recorded(&self, text: &str) -> Result<Recorded> {
        let frame: Frame = serde_json::from_str(text)?;
        let channel = subscription_channel(frame.channel);
        match channel {
            "subscriptions" => return Ok(Recorded::Control),
            HEARTBEATS => {
                return Ok(Recorded::Data {
                    sub: Sub::new(HEARTBEATS, ""),
                    book: None,
                })
            }
            _ => {}
        }
        let first = frame
            .events
            .first()
            .ok_or_else(|| anyhow!("{channel} frame without events"))?;
        if channel != "level2" {
            let symbol =
                product(first).ok_or_else(|| anyhow!("{channel} frame without product"))?;
            return Ok(Recorded::Data {
                sub: Sub::new(channel, symbol),
                book: None,
            });
        }
        let mut book = BookFrame {
            snapshot: false,
            bids: Vec::new(),
            asks: Vec::new(),
            update_id: None,
            meta: frame
                .timestamp
                .map(|t| ("timestamp", t))
                .into_iter()
                .collect(),
            checksum: false,
        };
        let mut symbol = None;
        for event in frame.events {
            let e: L2Event = serde_json::from_value(event)?;
            if *symbol.get_or_insert_with(|| e.product_id.clone()) != e.product_id {
                return Err(anyhow!("l2_data frame with two products"));
            }
            book.snapshot |= e.kind == "snapshot";
            for u in e.updates {
                let level = RecordedLevel::new(&u.price_level, &u.new_quantity, u.event_time)?;
                match u.side.as_str() {
                    "bid" => book.bids.push(level),
                    "offer" | "ask" => book.asks.push(level),
                    other => return Err(anyhow!("l2_data side {other:?}")),
                }
            }
        }
        let symbol = symbol.ok_or_else(|| anyhow!("l2_data frame without events"))?;
        Ok(Recorded::Data {
            sub: Sub::new("level2", symbol),
            book: Some(book),
        })
    }

    fn request(&self, text: &str, _ctx: &ConnCtx) -> Request {
        let error = |msg: &str| {
            let mut s = String::from("{\"type\":\"error\",\"message\":");
            push_json_str(&mut s, msg);
            s.push('}');
            Request::Reply(s)
        };
        let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
            return error("failure to parse message");
        };
        let Some(channel) = msg.channel else {
            return error("channel is required");
        };
        let subs: Vec<Sub> = if channel == HEARTBEATS {
            vec![Sub::new(HEARTBEATS, "")]
        } else if msg.product_ids.is_empty() {
            return error("product_ids is required");
        } else {
            msg.product_ids
                .iter()
                .map(|p| Sub::new(channel.as_str(), p.as_str()))
                .collect()
        };
        match msg.kind.as_str() {
            "subscribe" => Request::Subscribe(subs, None),
            "unsubscribe" => Request::Unsubscribe(subs, None),
            _ => error("unknown message type"),
        }
    }

    fn acks(&self, _subscribe: bool, _subs: &[Sub], _id: &ReqId, ctx: &mut ConnCtx) -> Vec<String> {
        // Channels in the order first subscribed, each with its products.
        let mut channels: Vec<(&str, Vec<&str>)> = Vec::new();
        for sub in &ctx.subs {
            let product = if sub.symbol.is_empty() {
                &sub.channel
            } else {
                &sub.symbol
            };
            match channels.iter_mut().find(|(c, _)| *c == sub.channel) {
                Some((_, products)) => products.push(product),
                None => channels.push((&sub.channel, vec![product])),
            }
        }
        let mut s = String::with_capacity(192);
        s.push_str("{\"channel\":\"subscriptions\",\"timestamp\":\"");
        s.push_str(&rfc3339(ctx.clock));
        s.push_str("\",\"sequence_num\":");
        let seq = ctx.seq;
        push_u64(&mut s, seq);
        s.push_str(",\"events\":[{\"subscriptions\":{");
        for (i, (channel, products)) in channels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_json_str(&mut s, channel);
            s.push_str(":[");
            for (j, p) in products.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                push_json_str(&mut s, p);
            }
            s.push(']');
        }
        s.push_str("}}]}");
        ctx.seq += 1;
        vec![s]
    }

    fn snapshot(&self, sub: &Sub, book: &SimBook, ctx: &mut ConnCtx) -> Option<String> {
        let (bids, asks) = book.len();
        let mut s = String::with_capacity(160 + 120 * (bids + asks));
        s.push_str("{\"channel\":\"l2_data\",\"timestamp\":");
        match book.meta("timestamp") {
            Some(t) => push_json_str(&mut s, t),
            None => push_json_str(&mut s, &rfc3339(ctx.clock)),
        }
        s.push_str(",\"sequence_num\":");
        push_u64(&mut s, ctx.next_seq());
        s.push_str(",\"events\":[{\"type\":\"snapshot\",\"product_id\":");
        push_json_str(&mut s, &sub.symbol);
        s.push_str(",\"updates\":[");
        let levels = book
            .bids()
            .map(|e| ("bid", e))
            .chain(book.asks().map(|e| ("offer", e)));
        for (i, (side, e)) in levels.enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"side\":\"");
            s.push_str(side);
            s.push_str("\",\"event_time\":");
            push_json_str(&mut s, &e.extra);
            s.push_str(",\"price_level\":\"");
            s.push_str(&e.price);
            s.push_str("\",\"new_quantity\":\"");
            s.push_str(&e.qty);
            s.push_str("\"}");
        }
        s.push_str("]}]}");
        Some(s)
    }

    /// Writes the connection's own `sequence_num` into the frame.
    fn rewrite(&self, text: &str, ctx: &mut ConnCtx) -> Option<String> {
        const FIELD: &str = "\"sequence_num\":";
        let seq = ctx.next_seq();
        let start = text.find(FIELD)? + FIELD.len();
        let len = text[start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len() - start);
        let mut out = String::with_capacity(text.len() + 8);
        out.push_str(&text[..start]);
        push_u64(&mut out, seq);
        out.push_str(&text[start + len..]);
        Some(out)
    }

    /// Bids and offers share `updates`; the level keeps its `event_time`.
    fn cross(&self, text: &str, book: &SimBook) -> Option<String> {
        let marker = "\"updates\":[";
        cross_levels(text, book, marker, marker, |e, bid| {
            let mut s = String::with_capacity(128);
            s.push_str(if bid {
                "{\"side\":\"bid\",\"event_time\":"
            } else {
                "{\"side\":\"offer\",\"event_time\":"
            });
            push_json_str(&mut s, &e.extra);
            s.push_str(",\"price_level\":\"");
            s.push_str(&e.price);
            s.push_str("\",\"new_quantity\":\"");
            s.push_str(&e.qty);
            s.push_str("\"}");
            s
        })
    }

    fn malformed(&self) -> &'static str {
        r#"{"channel":"l2_data","timestamp":"#
    }

    fn deleted(&self, ctx: &mut ConnCtx) {
        ctx.seq += 1;
    }

    fn rate_limited(&self) -> RestAnswer {
        RestAnswer::json(
            429,
            r#"{"error":"RATE_LIMIT_EXCEEDED","error_details":"Too many requests","message":"Too many requests"}"#,
        )
        .retry_after()
    }

    fn not_found(&self) -> RestAnswer {
        RestAnswer::json(
            404,
            r#"{"error":"NOT_FOUND","error_details":"Not Found","message":"Not Found"}"#,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_list_the_whole_connection() {
        let mut ctx = ConnCtx::new(0, "/");
        ctx.clock = 1_786_309_548.25;
        let Request::Subscribe(subs, _) = Coinbase.request(
            r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}"#,
            &ctx,
        ) else {
            panic!("not a subscribe")
        };
        ctx.subs = subs.clone();
        ctx.subs.push(Sub::new(HEARTBEATS, ""));
        assert_eq!(
            Coinbase.acks(true, &subs, &None, &mut ctx),
            [
                r#"{"channel":"subscriptions","timestamp":"2026-08-09T21:05:48.250000000Z","sequence_num":0,"events":[{"subscriptions":{"level2":["BTC-USD","ETH-USD"],"heartbeats":["heartbeats"]}}]}"#
            ]
        );
        assert_eq!(ctx.seq, 1);
        let Request::Reply(e) =
            Coinbase.request(r#"{"type":"subscribe","channel":"ticker"}"#, &ctx)
        else {
            panic!("no error")
        };
        assert!(e.starts_with(r#"{"type":"error""#));
    }

    #[test]
    fn frames_are_renumbered_per_connection() {
        let mut ctx = ConnCtx::new(0, "/");
        ctx.seq = 7;
        let t = r#"{"channel":"ticker","timestamp":"x","sequence_num":123,"events":[]}"#;
        assert_eq!(
            Coinbase.rewrite(t, &mut ctx).unwrap(),
            r#"{"channel":"ticker","timestamp":"x","sequence_num":7,"events":[]}"#
        );
        Coinbase.deleted(&mut ctx);
        assert_eq!(ctx.seq, 9);
    }
}
