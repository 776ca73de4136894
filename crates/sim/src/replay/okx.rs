//! OKX v5 public WebSocket (`/ws/v5/public`).
//!
//! Rules, from OKX's v5 API docs ("WebSocket" overview, "Order book channel" and the
//! checksum section, seen 2026-05) and the recording (2022-05-13):
//!
//! * `{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},..]}`; every
//!   argument is acknowledged on its own, `{"event":"subscribe","arg":{..}}`, even when
//!   it was already subscribed (the recording subscribes `tickers` three times). Today
//!   OKX adds `connId` (and echoes an `id`); the recording has neither, and the replies
//!   are written as recorded, with `id` when the client sent one. An unreadable request
//!   gets `{"event":"error","code":"60012","msg":"Invalid request: .."}`.
//! * Keepalive: the text `ping` is answered with the text `pong`.
//! * Books (`books`: 400 levels, `books-l2-tbt`: 400, `books50-l2-tbt`: 50):
//!   `{"arg":..,"action":"snapshot"|"update","data":[{"asks":[[px,sz,"0",orders]..],
//!   "bids":[..],"ts":"..","checksum":N}]}`; size `"0"` removes a level. Newer frames
//!   also carry `seqId`/`prevSeqId`; a late subscriber's snapshot carries the last
//!   played `seqId` (and `prevSeqId` -1, as OKX's snapshots do) when the recording has
//!   them.
//! * Checksum: the best 25 bids and asks interleaved as `bid_px:bid_sz:ask_px:ask_sz:..`
//!   (a side that runs out simply stops), the exchange's own strings, CRC-32, sent as
//!   a *signed* 32-bit integer. The simulator computes it for the snapshots it writes.
//! * REST over the limit: HTTP 429 `{"msg":"Too Many Requests","code":"50011"}`.

use anyhow::{anyhow, Result};
use serde::Deserialize;

use super::{
    cross_levels, BookFrame, ConnCtx, Protocol, Recorded, RecordedLevel, ReqId, Request,
    RestAnswer, SimBook, Sub,
};
use crate::format::{crc32, push_json_str};

/// The OKX v5 protocol.
pub(crate) struct Okx;

#[derive(Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(rename = "instId", default)]
    inst_id: Option<&'a str>,
    #[serde(rename = "instFamily", default)]
    inst_family: Option<&'a str>,
    #[serde(rename = "instType", default)]
    inst_type: Option<&'a str>,
}

impl Arg<'_> {
    /// The symbol of a key: the instrument, else the family or type it names.
    fn sub(&self) -> Sub {
        let symbol = self.inst_id.or(self.inst_family).or(self.inst_type);
        Sub::new(self.channel, symbol.unwrap_or(""))
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    arg: Option<Arg<'a>>,
    #[serde(default)]
    event: Option<&'a str>,
    #[serde(default)]
    action: Option<&'a str>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BookData {
    asks: Vec<Vec<String>>,
    bids: Vec<Vec<String>>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    checksum: Option<i64>,
    #[serde(rename = "seqId", default)]
    seq_id: Option<i64>,
}

#[derive(Deserialize)]
struct ClientOp<'a> {
    op: &'a str,
    #[serde(borrow, default)]
    args: Vec<Arg<'a>>,
    #[serde(default)]
    id: Option<String>,
}

fn levels(raw: &[Vec<String>]) -> Result<Vec<RecordedLevel>> {
    raw.iter()
        .map(|l| match l.as_slice() {
            [p, q, rest @ ..] => {
                let extra: Vec<String> = rest.iter().map(|f| format!("\"{f}\"")).collect();
                RecordedLevel::new(p, q, extra.join(","))
            }
            _ => Err(anyhow!("book level {l:?} has no price and size")),
        })
        .collect()
}

/// OKX's checksum of the book's best 25 levels (see the module docs), signed.
pub(crate) fn checksum(book: &SimBook) -> i32 {
    let mut text = String::with_capacity(25 * 2 * 24);
    let (mut bids, mut asks) = (book.bids().take(25), book.asks().take(25));
    loop {
        let (bid, ask) = (bids.next(), asks.next());
        if bid.is_none() && ask.is_none() {
            break;
        }
        for e in [bid, ask].into_iter().flatten() {
            if !text.is_empty() {
                text.push(':');
            }
            text.push_str(&e.price);
            text.push(':');
            text.push_str(&e.qty);
        }
    }
    crc32(text.as_bytes()) as i32
}

fn push_arg(s: &mut String, sub: &Sub) {
    s.push_str("{\"channel\":");
    push_json_str(s, &sub.channel);
    s.push_str(",\"instId\":");
    push_json_str(s, &sub.symbol);
    s.push('}');
}

impl Protocol for Okx {
    fn recorded(&self, text: &str) -> Result<Recorded> {
        let frame: Frame = serde_json::from_str(text)?;
        let (Some(arg), None) = (&frame.arg, frame.event) else {
            return Ok(Recorded::Control);
        };
        let sub = arg.sub();
        let Some(action) = frame.action else {
            return Ok(Recorded::Data { sub, book: None });
        };
        let data = frame
            .data
            .ok_or_else(|| anyhow!("book frame without data"))?;
        let [d]: [BookData; 1] = serde_json::from_value(data)?;
        let mut meta = Vec::new();
        if let Some(ts) = d.ts {
            meta.push(("ts", ts));
        }
        if let Some(seq) = d.seq_id {
            meta.push(("seqId", seq.to_string()));
        }
        let book = BookFrame {
            snapshot: action == "snapshot",
            bids: levels(&d.bids)?,
            asks: levels(&d.asks)?,
            update_id: None,
            meta,
            checksum: d.checksum.is_some(),
        };
        Ok(Recorded::Data {
            sub,
            book: Some(book),
        })
    }

    fn depth(&self, channel: &str) -> Option<usize> {
        match channel {
            "books" | "books-l2-tbt" => Some(400),
            "books50-l2-tbt" => Some(50),
            _ => None,
        }
    }

    fn request(&self, text: &str, _ctx: &ConnCtx) -> Request {
        if text == "ping" {
            return Request::Reply("pong".to_owned());
        }
        let parsed = serde_json::from_str::<ClientOp>(text);
        let Ok(req) = parsed else {
            return Request::Reply(format!(
                "{{\"event\":\"error\",\"code\":\"60012\",\"msg\":{}}}",
                serde_json::Value::String(format!("Invalid request: {text}"))
            ));
        };
        let subs = req.args.iter().map(Arg::sub).collect();
        let id = req.id.map(serde_json::Value::String);
        match req.op {
            "subscribe" => Request::Subscribe(subs, id),
            "unsubscribe" => Request::Unsubscribe(subs, id),
            _ => Request::Reply(format!(
                "{{\"event\":\"error\",\"code\":\"60012\",\"msg\":{}}}",
                serde_json::Value::String(format!("Invalid request: {text}"))
            )),
        }
    }

    fn acks(&self, subscribe: bool, subs: &[Sub], id: &ReqId, _ctx: &mut ConnCtx) -> Vec<String> {
        let event = if subscribe {
            "subscribe"
        } else {
            "unsubscribe"
        };
        subs.iter()
            .map(|sub| {
                let mut s = String::with_capacity(96);
                s.push('{');
                if let Some(id) = id.as_ref().and_then(|v| v.as_str()) {
                    s.push_str("\"id\":");
                    push_json_str(&mut s, id);
                    s.push(',');
                }
                s.push_str("\"event\":\"");
                s.push_str(event);
                s.push_str("\",\"arg\":");
                push_arg(&mut s, sub);
                s.push('}');
                s
            })
            .collect()
    }

    fn snapshot(&self, sub: &Sub, book: &SimBook, _ctx: &mut ConnCtx) -> Option<String> {
        let mut s = String::with_capacity(128 + 48 * 800);
        s.push_str("{\"arg\":");
        push_arg(&mut s, sub);
        s.push_str(",\"action\":\"snapshot\",\"data\":[{");
        for (i, (name, side)) in [
            ("asks", book.asks().collect::<Vec<_>>()),
            ("bids", book.bids().collect()),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                s.push(',');
            }
            s.push('"');
            s.push_str(name);
            s.push_str("\":[");
            for (j, e) in side.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str("[\"");
                s.push_str(&e.price);
                s.push_str("\",\"");
                s.push_str(&e.qty);
                s.push('"');
                if !e.extra.is_empty() {
                    s.push(',');
                    s.push_str(&e.extra);
                }
                s.push(']');
            }
            s.push(']');
        }
        if let Some(ts) = book.meta("ts") {
            s.push_str(",\"ts\":");
            push_json_str(&mut s, ts);
        }
        s.push_str(",\"checksum\":");
        s.push_str(itoa::Buffer::new().format(checksum(book)));
        if let Some(seq) = book.meta("seqId") {
            s.push_str(",\"prevSeqId\":-1,\"seqId\":");
            s.push_str(seq);
        }
        s.push_str("}]}");
        Some(s)
    }

    fn has_checksum(&self) -> bool {
        true
    }

    fn corrupt_checksum(&self, text: &str) -> Option<String> {
        let start = text.find("\"checksum\":")? + "\"checksum\":".len();
        let len = text[start..]
            .find(|c: char| c != '-' && !c.is_ascii_digit())
            .unwrap_or(text.len() - start);
        let value: i32 = text[start..start + len].parse().ok()?;
        Some(format!(
            "{}{}{}",
            &text[..start],
            value.wrapping_add(1),
            &text[start + len..]
        ))
    }

    /// The level keeps OKX's four fields, the other side's `"0"` and order count.
    fn cross(&self, text: &str, book: &SimBook) -> Option<String> {
        cross_levels(text, book, "\"bids\":[", "\"asks\":[", |e, _| {
            let mut s = format!("[\"{}\",\"{}\"", e.price, e.qty);
            if !e.extra.is_empty() {
                s.push(',');
                s.push_str(&e.extra);
            }
            s.push(']');
            s
        })
    }

    fn malformed(&self) -> &'static str {
        r#"{"arg":{"channel":"books","instId":"#
    }

    fn rate_limited(&self) -> RestAnswer {
        RestAnswer::json(429, r#"{"msg":"Too Many Requests","code":"50011"}"#).retry_after()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_pings_and_errors() {
        let mut ctx = ConnCtx::new(0, "/ws/v5/public");
        let Request::Subscribe(subs, id) = Okx.request(
            r#"{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},{"channel":"tickers","instId":"X"}]}"#,
            &ctx,
        ) else {
            panic!("not a subscribe")
        };
        assert_eq!(
            Okx.acks(true, &subs, &id, &mut ctx),
            [
                r#"{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}"#,
                r#"{"event":"subscribe","arg":{"channel":"tickers","instId":"X"}}"#
            ]
        );
        assert!(matches!(Okx.request("ping", &ctx), Request::Reply(p) if p == "pong"));
        assert!(matches!(Okx.request("{", &ctx), Request::Reply(e) if e.contains("60012")));
    }

    #[test]
    fn checksums_are_corrupted_in_place() {
        let t = r#"{"data":[{"ts":"1","checksum":-914047754}]}"#;
        assert_eq!(
            Okx.corrupt_checksum(t).unwrap(),
            r#"{"data":[{"ts":"1","checksum":-914047753}]}"#
        );
        assert_eq!(
            Okx.corrupt_checksum(r#"{"checksum":2147483647}"#).unwrap(),
            r#"{"checksum":-2147483648}"#
        );
        assert!(Okx.corrupt_checksum("{}").is_none());
    }

    #[test]
    fn checksum_interleaves_the_best_levels() {
        // Two bids, one ask: "b1:q:a1:q:b2:q".
        let frame = BookFrame {
            snapshot: true,
            bids: vec![
                RecordedLevel::new("3366.1", "7", "").unwrap(),
                RecordedLevel::new("3366.8", "9", "").unwrap(),
            ],
            asks: vec![RecordedLevel::new("3366.9", "1.10", "").unwrap()],
            update_id: None,
            meta: Vec::new(),
            checksum: false,
        };
        let mut book = SimBook::new(Some(400));
        book.apply(&frame);
        let text = "3366.8:9:3366.9:1.10:3366.1:7";
        assert_eq!(checksum(&book), crc32(text.as_bytes()) as i32);
    }
}
