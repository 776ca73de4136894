//! Bybit v5 public streams (`/v5/public/linear`, `/spot`, `/inverse`, `/option`). The
//! synthetic Bybit market speaks the client side of this protocol too.
//!
//! Rules, from Bybit's v5 docs ("Connect" and "Orderbook" pages, seen 2026-05) and the
//! recording (2026-08-09):
//!
//! * A client subscribes with `{"op":"subscribe","args":["orderbook.200.BTCUSDT",..],
//!   "req_id":".."}`; a topic is `<channel>.<symbol>` and the channel may itself hold
//!   dots (`orderbook.200`, `kline.1`), so the key splits at the *last* dot.
//! * The reply differs per endpoint, and is written as the recording shows it:
//!   linear/inverse `{"success":true,"ret_msg":"","conn_id":"..","req_id":"","op":"subscribe"}`,
//!   spot `{"success":true,"ret_msg":"subscribe","conn_id":"..","op":"subscribe"}` (with
//!   `req_id` only when the client sent one). `{"op":"ping"}` gets the same shape with
//!   `"ret_msg":"pong"` and `"op":"ping"`.
//! * Books: `{"topic":"orderbook.200.BTCUSDT","type":"snapshot"|"delta","ts":..,
//!   "data":{"s":..,"b":[[p,q]..],"a":[..],"u":..,"seq":..},"cts":..}`; size `"0"`
//!   removes a level; a delta with `u` = 1 is a snapshot (a service restart); the book
//!   is kept at the topic's depth. A late subscriber's snapshot carries the last
//!   played `u`, `seq`, `ts` and `cts`, so the next recorded delta has `u` + 1.
//! * No checksum. REST rate limiting on the public API is by IP and answered with
//!   HTTP 403 "access too frequent" (docs "Rate Limit", IP limit), which is what the
//!   rate-limit fault sends.

use anyhow::{anyhow, Result};
use serde::Deserialize;

use super::{
    cross_levels, BookFrame, ConnCtx, Protocol, Recorded, RecordedLevel, ReqId, Request,
    RestAnswer, SimBook, Sub,
};
use crate::format::{push_json_str, push_u64};

/// The Bybit v5 protocol.
pub(crate) struct Bybit;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    topic: Option<&'a str>,
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(default)]
    ts: Option<u64>,
    #[serde(default)]
    cts: Option<u64>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BookData {
    b: Vec<(String, String)>,
    a: Vec<(String, String)>,
    u: u64,
    #[serde(default)]
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct ClientOp {
    op: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    req_id: Option<String>,
}

fn topic_sub(topic: &str) -> Sub {
    let (channel, symbol) = topic.rsplit_once('.').unwrap_or((topic, ""));
    Sub::new(channel, symbol)
}

fn levels(raw: &[(String, String)]) -> Result<Vec<RecordedLevel>> {
    raw.iter()
        .map(|(p, q)| RecordedLevel::new(p, q, ""))
        .collect()
}

/// True for the spot endpoint, whose replies omit an empty `req_id`.
fn is_spot(ctx: &ConnCtx) -> bool {
    ctx.path.ends_with("/spot")
}

/// `{"success":true,"ret_msg":MSG,"conn_id":..,["req_id":..,]"op":OP}`.
fn reply(ctx: &ConnCtx, ret_msg: &str, op: &str, req_id: Option<&str>) -> String {
    let mut s = String::with_capacity(128);
    s.push_str("{\"success\":true,\"ret_msg\":");
    push_json_str(&mut s, ret_msg);
    s.push_str(",\"conn_id\":");
    push_json_str(&mut s, &conn_id(ctx));
    match req_id {
        Some(id) => {
            s.push_str(",\"req_id\":");
            push_json_str(&mut s, id);
        }
        None if !is_spot(ctx) => s.push_str(",\"req_id\":\"\""),
        None => {}
    }
    s.push_str(",\"op\":");
    push_json_str(&mut s, op);
    s.push('}');
    s
}

fn conn_id(ctx: &ConnCtx) -> String {
    format!("raven-sim-{:08x}", ctx.id)
}

impl Protocol for Bybit {
    fn recorded(&self, text: &str) -> Result<Recorded> {
        let frame: Frame = serde_json::from_str(text)?;
        let Some(topic) = frame.topic else {
            // `{"success":..,"op":..}` replies.
            return Ok(Recorded::Control);
        };
        let sub = topic_sub(topic);
        if !sub.channel.starts_with("orderbook.") {
            return Ok(Recorded::Data { sub, book: None });
        }
        let data = frame
            .data
            .ok_or_else(|| anyhow!("book frame without data"))?;
        let d: BookData = serde_json::from_value(data)?;
        let mut meta = vec![("u", d.u.to_string())];
        for (name, value) in [("ts", frame.ts), ("cts", frame.cts), ("seq", d.seq)] {
            if let Some(v) = value {
                meta.push((name, v.to_string()));
            }
        }
        let book = BookFrame {
            snapshot: frame.kind == Some("snapshot") || d.u == 1,
            bids: levels(&d.b)?,
            asks: levels(&d.a)?,
            update_id: Some(d.u),
            meta,
            checksum: false,
        };
        Ok(Recorded::Data {
            sub,
            book: Some(book),
        })
    }

    /// `orderbook.200` keeps 200 levels a side.
    fn depth(&self, channel: &str) -> Option<usize> {
        channel.strip_prefix("orderbook.")?.parse().ok()
    }

    fn request(&self, text: &str, ctx: &ConnCtx) -> Request {
        let Ok(req) = serde_json::from_str::<ClientOp>(text) else {
            return Request::Reply(error(ctx, "error:invalid json", ""));
        };
        let id = req.req_id.map(serde_json::Value::String);
        match req.op.as_str() {
            "subscribe" => Request::Subscribe(req.args.iter().map(|t| topic_sub(t)).collect(), id),
            "unsubscribe" => {
                Request::Unsubscribe(req.args.iter().map(|t| topic_sub(t)).collect(), id)
            }
            "ping" => Request::Reply(reply(
                ctx,
                "pong",
                "ping",
                id.as_ref().and_then(|v| v.as_str()),
            )),
            op => Request::Reply(error(ctx, &format!("error:unknown op {op}"), op)),
        }
    }

    fn acks(&self, subscribe: bool, _subs: &[Sub], id: &ReqId, ctx: &mut ConnCtx) -> Vec<String> {
        let op = if subscribe {
            "subscribe"
        } else {
            "unsubscribe"
        };
        // Spot echoes the operation in `ret_msg`, linear leaves it empty (recorded).
        let ret_msg = if is_spot(ctx) { op } else { "" };
        vec![reply(
            ctx,
            ret_msg,
            op,
            id.as_ref().and_then(|v| v.as_str()),
        )]
    }

    fn snapshot(&self, sub: &Sub, book: &SimBook, _ctx: &mut ConnCtx) -> Option<String> {
        let mut s = String::with_capacity(64 + 40 * 400);
        s.push_str("{\"topic\":");
        push_json_str(&mut s, &format!("{}.{}", sub.channel, sub.symbol));
        s.push_str(",\"type\":\"snapshot\",\"ts\":");
        s.push_str(book.meta("ts").unwrap_or("0"));
        s.push_str(",\"data\":{\"s\":");
        push_json_str(&mut s, &sub.symbol);
        for (name, side) in [
            ("b", book.bids().collect::<Vec<_>>()),
            ("a", book.asks().collect()),
        ] {
            s.push_str(",\"");
            s.push_str(name);
            s.push_str("\":[");
            for (i, e) in side.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("[\"");
                s.push_str(&e.price);
                s.push_str("\",\"");
                s.push_str(&e.qty);
                s.push_str("\"]");
            }
            s.push(']');
        }
        s.push_str(",\"u\":");
        push_u64(&mut s, book.update_id().unwrap_or(0));
        if let Some(seq) = book.meta("seq") {
            s.push_str(",\"seq\":");
            s.push_str(seq);
        }
        s.push('}');
        if let Some(cts) = book.meta("cts") {
            s.push_str(",\"cts\":");
            s.push_str(cts);
        }
        s.push('}');
        Some(s)
    }

    fn cross(&self, text: &str, book: &SimBook) -> Option<String> {
        cross_levels(text, book, "\"b\":[", "\"a\":[", |e, _| {
            format!("[\"{}\",\"{}\"]", e.price, e.qty)
        })
    }

    fn malformed(&self) -> &'static str {
        r#"{"topic":"orderbook."#
    }

    fn rate_limited(&self) -> RestAnswer {
        RestAnswer::text(403, "access too frequent")
    }

    fn not_found(&self) -> RestAnswer {
        RestAnswer::text(404, "404 page not found")
    }
}

fn error(ctx: &ConnCtx, msg: &str, op: &str) -> String {
    reply(ctx, msg, op, None).replacen("\"success\":true", "\"success\":false", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_split_at_the_last_dot() {
        assert_eq!(
            topic_sub("orderbook.200.BTCUSDT"),
            Sub::new("orderbook.200", "BTCUSDT")
        );
        assert_eq!(topic_sub("tickers.ETHUSDT"), Sub::new("tickers", "ETHUSDT"));
        assert_eq!(Bybit.depth("orderbook.200"), Some(200));
        assert_eq!(Bybit.depth("tickers"), None);
    }

    #[test]
    fn replies_have_the_recorded_shapes() {
        let mut linear = ConnCtx::new(1, "/v5/public/linear");
        let mut spot = ConnCtx::new(2, "/v5/public/spot");
        assert_eq!(
            Bybit.acks(true, &[], &None, &mut linear),
            [
                r#"{"success":true,"ret_msg":"","conn_id":"raven-sim-00000001","req_id":"","op":"subscribe"}"#
            ]
        );
        assert_eq!(
            Bybit.acks(true, &[], &None, &mut spot),
            [
                r#"{"success":true,"ret_msg":"subscribe","conn_id":"raven-sim-00000002","op":"subscribe"}"#
            ]
        );
        let Request::Reply(pong) = Bybit.request(r#"{"op":"ping","req_id":"7"}"#, &spot) else {
            panic!("no pong")
        };
        assert_eq!(
            pong,
            r#"{"success":true,"ret_msg":"pong","conn_id":"raven-sim-00000002","req_id":"7","op":"ping"}"#
        );
        let Request::Reply(bad) = Bybit.request(r#"{"op":"dance"}"#, &spot) else {
            panic!("no error")
        };
        assert!(bad.starts_with(r#"{"success":false"#), "{bad}");
    }

    #[test]
    fn a_delta_with_u_1_is_a_snapshot() {
        let text = r#"{"topic":"orderbook.50.X","type":"delta","ts":5,"data":{"s":"X","b":[["1","2"]],"a":[],"u":1,"seq":9},"cts":4}"#;
        let Recorded::Data { book: Some(b), .. } = Bybit.recorded(text).unwrap() else {
            panic!("no book")
        };
        assert!(b.snapshot);
        let mut book = SimBook::new(Some(50));
        book.apply(&b);
        let snap = Bybit
            .snapshot(
                &Sub::new("orderbook.50", "X"),
                &book,
                &mut ConnCtx::new(0, ""),
            )
            .unwrap();
        assert_eq!(
            snap,
            r#"{"topic":"orderbook.50.X","type":"snapshot","ts":5,"data":{"s":"X","b":[["1","2"]],"a":[],"u":1,"seq":9},"cts":4}"#
        );
    }
}
