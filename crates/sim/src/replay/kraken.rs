//! Kraken spot WebSocket v1 (`wss://ws.kraken.com`, path `/`).
//!
//! Rules, from Kraken's "Spot WebSocket v1" reference (subscribe, ping, heartbeat,
//! systemStatus, book pages) and "Book checksum (WebSocket v1)" guide (seen 2026-05),
//! and the recording (2021-04-17):
//!
//! * On connect the server sends `{"connectionID":..,"event":"systemStatus",
//!   "status":"online","version":".."}` (the version is the recording's).
//! * `{"event":"subscribe","pair":["XBT/EUR",..],"subscription":{"name":"book",
//!   "depth":1000},"reqid":N}` is answered per pair with `{"channelID":..,
//!   "channelName":"book-1000","event":"subscriptionStatus","pair":"XBT/EUR",
//!   "reqid":N,"status":"subscribed","subscription":{"depth":1000,"name":"book"}}`.
//!   Kraken writes these objects with their keys in alphabetical order, and the
//!   channel ids are the recorded ones, so the replies equal the recorded replies.
//!   The channel name is `book-<depth>` (depth 10 when not given), `ohlc-<interval>`
//!   (interval 1), else the subscription name.
//! * `{"event":"ping","reqid":N}` → `{"event":"pong","reqid":N}`; a connection with
//!   subscriptions and no traffic for about a second gets `{"event":"heartbeat"}`.
//! * Data frames are arrays `[channelID, payload.., channelName, pair]`, so a frame's
//!   key is its last two elements. Books: the snapshot has `as`/`bs`, updates `a`
//!   and/or `b` (sometimes in two objects) with levels `[price, volume, timestamp]`
//!   plus an optional `"r"` (republished); volume 0 removes the level; the book is
//!   truncated to the subscribed depth after every update (Kraken sends no removal
//!   for levels pushed out of scope). The checksum `"c"` is in the last object of an
//!   update: CRC-32 (unsigned, decimal string) of the best 10 asks then best 10 bids,
//!   each as price then volume with the `.` and leading zeros removed. Snapshots
//!   carry none.
//! * REST over the limit: HTTP 429 `{"error":["EGeneral:Too many requests"]}`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    cross_levels, BookFrame, ConnCtx, Protocol, Recorded, RecordedLevel, ReqId, Request,
    RestAnswer, SimBook, Sub,
};
use crate::capture::{Capture, CaptureEvent};
use crate::format::push_json_str;

/// The Kraken v1 protocol, with the recording's channel ids.
pub(crate) struct Kraken {
    /// Channel id per (channel name, pair): recorded, or handed out for new pairs.
    channel_ids: Mutex<HashMap<Sub, u64>>,
    version: String,
    /// The recording's first connection id; later connections count up from it.
    first_connection_id: u64,
}

#[derive(Deserialize)]
struct Status<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(rename = "channelID", default)]
    channel_id: Option<u64>,
    #[serde(rename = "channelName", default)]
    channel_name: Option<&'a str>,
    #[serde(default)]
    pair: Option<&'a str>,
    #[serde(default)]
    version: Option<&'a str>,
    #[serde(rename = "connectionID", default)]
    connection_id: Option<u64>,
}

#[derive(Deserialize)]
struct Subscription {
    name: String,
    #[serde(default)]
    depth: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct ClientEvent {
    event: String,
    #[serde(default)]
    pair: Vec<String>,
    #[serde(default)]
    subscription: Option<Subscription>,
    #[serde(default)]
    reqid: Option<Value>,
}

impl Subscription {
    fn channel(&self) -> String {
        match self.name.as_str() {
            "book" => format!("book-{}", self.depth.unwrap_or(10)),
            "ohlc" => format!("ohlc-{}", self.interval.unwrap_or(1)),
            name => name.to_owned(),
        }
    }
}

/// The `subscription` object of a channel name, keys in Kraken's (alphabetical) order.
fn subscription_of(channel: &str) -> Value {
    let (name, n) = channel.split_once('-').unwrap_or((channel, ""));
    let n: Option<u64> = n.parse().ok();
    match (name, n) {
        ("book", Some(depth)) => json!({ "depth": depth, "name": "book" }),
        ("ohlc", Some(interval)) => json!({ "interval": interval, "name": "ohlc" }),
        _ => json!({ "name": channel }),
    }
}

/// Kraken's objects list their keys alphabetically; `serde_json`'s default map is
/// sorted, and this writer keeps that order whatever features are enabled.
fn sorted_object(fields: &mut [(&str, Value)]) -> String {
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_json_str(&mut s, k);
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
}

fn levels(raw: &Value) -> Result<Vec<RecordedLevel>> {
    let raw = raw
        .as_array()
        .ok_or_else(|| anyhow!("book side is not an array"))?;
    raw.iter()
        .map(|l| {
            let f = |i: usize| l.get(i).and_then(Value::as_str);
            match (f(0), f(1), f(2)) {
                (Some(p), Some(v), Some(t)) => RecordedLevel::new(p, v, t),
                _ => Err(anyhow!("book level {l} is not [price, volume, time]")),
            }
        })
        .collect()
}

impl Kraken {
    /// Learns the recorded channel ids, status version and connection ids.
    pub fn new(capture: &Capture) -> Result<Kraken> {
        let mut channel_ids = HashMap::new();
        let mut version = None;
        let mut first_connection_id = None;
        for event in &capture.events {
            let CaptureEvent::Recv { data, .. } = event else {
                continue;
            };
            if let Ok(status) = serde_json::from_str::<Status>(data) {
                if let (Some(id), Some(name), Some(pair)) =
                    (status.channel_id, status.channel_name, status.pair)
                {
                    channel_ids.insert(Sub::new(name, pair), id);
                }
                if status.event == "systemStatus" {
                    version = version.or(status.version.map(str::to_owned));
                    first_connection_id = first_connection_id.or(status.connection_id);
                }
            } else if let Ok(Value::Array(frame)) = serde_json::from_str::<Value>(data) {
                if let (Some(id), Some(Recorded::Data { sub, .. })) =
                    (frame.first().and_then(Value::as_u64), Kraken::key(&frame))
                {
                    channel_ids.entry(sub).or_insert(id);
                }
            }
        }
        Ok(Kraken {
            channel_ids: Mutex::new(channel_ids),
            version: version.unwrap_or_else(|| "1.9.0".to_owned()),
            first_connection_id: first_connection_id.unwrap_or(1),
        })
    }

    /// The key of a data array: its last two elements.
    fn key(frame: &[Value]) -> Option<Recorded> {
        let [.., Value::String(channel), Value::String(pair)] = frame else {
            return None;
        };
        Some(Recorded::Data {
            sub: Sub::new(channel.as_str(), pair.as_str()),
            book: None,
        })
    }

    fn channel_id(&self, sub: &Sub) -> u64 {
        let mut ids = self.channel_ids.lock();
        if let Some(&id) = ids.get(sub) {
            return id;
        }
        let id = ids.values().max().map_or(1, |m| m + 1);
        ids.insert(sub.clone(), id);
        id
    }
}

impl Protocol for Kraken {
    fn recorded(&self, text: &str) -> Result<Recorded> {
        let Value::Array(frame) = serde_json::from_str::<Value>(text)? else {
            // Status, subscription replies and heartbeats.
            return Ok(Recorded::Control);
        };
        let Some(Recorded::Data { sub, .. }) = Kraken::key(&frame) else {
            return Err(anyhow!("data frame without channel name and pair"));
        };
        if !sub.channel.starts_with("book-") {
            return Ok(Recorded::Data { sub, book: None });
        }
        let mut book = BookFrame {
            snapshot: false,
            bids: Vec::new(),
            asks: Vec::new(),
            update_id: None,
            meta: Vec::new(),
            checksum: false,
        };
        for payload in &frame[1..frame.len() - 2] {
            let payload = payload
                .as_object()
                .ok_or_else(|| anyhow!("book payload is not an object"))?;
            for (name, side) in payload {
                match name.as_str() {
                    "as" | "bs" => book.snapshot = true,
                    "a" | "b" => {}
                    "c" => {
                        book.checksum = true;
                        continue;
                    }
                    other => return Err(anyhow!("unknown book field {other:?}")),
                }
                let levels = levels(side)?;
                if name.starts_with('a') {
                    book.asks.extend(levels);
                } else {
                    book.bids.extend(levels);
                }
            }
        }
        Ok(Recorded::Data {
            sub,
            book: Some(book),
        })
    }

    /// `book-1000` keeps 1000 levels a side.
    fn depth(&self, channel: &str) -> Option<usize> {
        channel.strip_prefix("book-")?.parse().ok()
    }

    fn request(&self, text: &str, _ctx: &ConnCtx) -> Request {
        let error = |msg: &str| {
            Request::Reply(sorted_object(&mut [
                ("errorMessage", Value::from(msg)),
                ("event", Value::from("error")),
            ]))
        };
        let Ok(req) = serde_json::from_str::<ClientEvent>(text) else {
            return error("Malformed request");
        };
        match req.event.as_str() {
            "ping" => {
                let mut fields = vec![("event", Value::from("pong"))];
                fields.extend(req.reqid.map(|id| ("reqid", id)));
                Request::Reply(sorted_object(&mut fields))
            }
            "subscribe" | "unsubscribe" => {
                let Some(subscription) = req.subscription else {
                    return error("Subscription object must be provided");
                };
                let channel = subscription.channel();
                let subs = req
                    .pair
                    .iter()
                    .map(|p| Sub::new(channel.as_str(), p.as_str()))
                    .collect();
                if req.event == "subscribe" {
                    Request::Subscribe(subs, req.reqid)
                } else {
                    Request::Unsubscribe(subs, req.reqid)
                }
            }
            _ => error("Unsupported event"),
        }
    }

    fn acks(&self, subscribe: bool, subs: &[Sub], id: &ReqId, _ctx: &mut ConnCtx) -> Vec<String> {
        let status = if subscribe {
            "subscribed"
        } else {
            "unsubscribed"
        };
        subs.iter()
            .map(|sub| {
                let mut fields = vec![
                    ("channelID", Value::from(self.channel_id(sub))),
                    ("channelName", Value::from(sub.channel.as_str())),
                    ("event", Value::from("subscriptionStatus")),
                    ("pair", Value::from(sub.symbol.as_str())),
                    ("status", Value::from(status)),
                    ("subscription", subscription_of(&sub.channel)),
                ];
                fields.extend(id.clone().map(|id| ("reqid", id)));
                sorted_object(&mut fields)
            })
            .collect()
    }

    fn snapshot(&self, sub: &Sub, book: &SimBook, _ctx: &mut ConnCtx) -> Option<String> {
        let mut s = String::with_capacity(64 + 64 * 2000);
        s.push('[');
        s.push_str(itoa::Buffer::new().format(self.channel_id(sub)));
        s.push_str(",{");
        for (i, (name, side)) in [
            ("as", book.asks().collect::<Vec<_>>()),
            ("bs", book.bids().collect()),
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
                s.push_str("\",\"");
                s.push_str(&e.extra);
                s.push_str("\"]");
            }
            s.push(']');
        }
        s.push_str("},");
        push_json_str(&mut s, &sub.channel);
        s.push(',');
        push_json_str(&mut s, &sub.symbol);
        s.push(']');
        Some(s)
    }

    fn has_checksum(&self) -> bool {
        true
    }

    fn corrupt_checksum(&self, text: &str) -> Option<String> {
        let start = text.rfind("\"c\":\"")? + "\"c\":\"".len();
        let len = text[start..].find('"')?;
        let value: u32 = text[start..start + len].parse().ok()?;
        Some(format!(
            "{}{}{}",
            &text[..start],
            value.wrapping_add(1),
            &text[start + len..]
        ))
    }

    /// An update holds `"a"` and/or `"b"`: a bid at the best ask when it has bids, else
    /// an ask at the best bid; the level keeps its timestamp.
    fn cross(&self, text: &str, book: &SimBook) -> Option<String> {
        cross_levels(text, book, "\"b\":[", "\"a\":[", |e, _| {
            format!("[\"{}\",\"{}\",\"{}\"]", e.price, e.qty, e.extra)
        })
    }

    fn malformed(&self) -> &'static str {
        r#"[0,{"a":[[""#
    }

    fn greeting(&self, ctx: &ConnCtx) -> Option<String> {
        Some(sorted_object(&mut [
            (
                "connectionID",
                Value::from(self.first_connection_id.wrapping_add(ctx.id)),
            ),
            ("event", Value::from("systemStatus")),
            ("status", Value::from("online")),
            ("version", Value::from(self.version.as_str())),
        ]))
    }

    fn heartbeat(&self) -> Option<(Duration, &'static str)> {
        Some((Duration::from_secs(1), r#"{"event":"heartbeat"}"#))
    }

    fn rate_limited(&self) -> RestAnswer {
        RestAnswer::json(429, r#"{"error":["EGeneral:Too many requests"]}"#).retry_after()
    }

    fn not_found(&self) -> RestAnswer {
        RestAnswer::json(404, r#"{"error":["EGeneral:Unknown method"]}"#)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::crc32;

    fn kraken() -> Kraken {
        let capture = Capture::read(
            concat!(
                "{\"t\":\"header\",\"exchange\":\"KRAKEN\"}\n",
                "{\"t\":\"recv\",\"conn\":\"w\",\"ts\":1,\"data\":\"{\\\"connectionID\\\":100,\\\"event\\\":\\\"systemStatus\\\",\\\"status\\\":\\\"online\\\",\\\"version\\\":\\\"1.8.3\\\"}\"}\n",
                "{\"t\":\"recv\",\"conn\":\"w\",\"ts\":1,\"data\":\"[42,{\\\"b\\\":[],\\\"c\\\":\\\"1\\\"},\\\"book-10\\\",\\\"XBT/EUR\\\"]\"}\n",
            )
            .as_bytes(),
        )
        .unwrap();
        Kraken::new(&capture).unwrap()
    }

    #[test]
    fn replies_are_alphabetical_with_recorded_channel_ids() {
        let k = kraken();
        let mut ctx = ConnCtx::new(2, "/");
        assert_eq!(
            k.greeting(&ctx).unwrap(),
            r#"{"connectionID":102,"event":"systemStatus","status":"online","version":"1.8.3"}"#
        );
        let Request::Subscribe(subs, id) = k.request(
            r#"{"event":"subscribe","pair":["XBT/EUR","A/B"],"subscription":{"name":"book"},"reqid":5}"#,
            &ctx,
        ) else {
            panic!("not a subscribe")
        };
        let acks = k.acks(true, &subs, &id, &mut ctx);
        assert_eq!(
            acks[0],
            r#"{"channelID":42,"channelName":"book-10","event":"subscriptionStatus","pair":"XBT/EUR","reqid":5,"status":"subscribed","subscription":{"depth":10,"name":"book"}}"#
        );
        assert!(acks[1].starts_with(r#"{"channelID":43,"#), "{}", acks[1]);
        let Request::Reply(pong) = k.request(r#"{"event":"ping","reqid":9}"#, &ctx) else {
            panic!("no pong")
        };
        assert_eq!(pong, r#"{"event":"pong","reqid":9}"#);
        assert!(matches!(k.request("[]", &ctx), Request::Reply(e) if e.contains("errorMessage")));
    }

    #[test]
    fn book_frames_and_checksums() {
        let k = kraken();
        let text = r#"[42,{"a":[["2.0","1.0","1.5"]]},{"b":[["1.0","0.5","1.6","r"]],"c":"4294967295"},"book-10","XBT/EUR"]"#;
        let Recorded::Data { book: Some(b), .. } = k.recorded(text).unwrap() else {
            panic!("no book")
        };
        assert!(!b.snapshot && b.checksum);
        assert_eq!((b.bids.len(), b.asks.len()), (1, 1));
        assert_eq!(&*b.bids[0].extra, "1.6");
        assert_eq!(
            k.corrupt_checksum(text).unwrap(),
            text.replace("4294967295", "0")
        );
        // The documented example: asks then bids, '.' and leading zeros removed.
        let mut book = SimBook::new(Some(10));
        book.apply(&BookFrame {
            snapshot: true,
            bids: vec![RecordedLevel::new("0.04765", "0.00000500", "t").unwrap()],
            asks: vec![RecordedLevel::new("0.05120", "0.00000500", "t").unwrap()],
            update_id: None,
            meta: Vec::new(),
            checksum: false,
        });
        assert_eq!(checksum(&book), crc32(b"51205004765500"));
        let snap = k.snapshot(
            &Sub::new("book-10", "XBT/EUR"),
            &book,
            &mut ConnCtx::new(0, "/"),
        );
        assert_eq!(
            snap.unwrap(),
            r#"[42,{"as":[["0.05120","0.00000500","t"]],"bs":[["0.04765","0.00000500","t"]]},"book-10","XBT/EUR"]"#
        );
    }

    /// Kraken's checksum of a book (see the module docs).
    pub(crate) fn checksum(book: &SimBook) -> u32 {
        let strip = |s: &str| s.replace('.', "").trim_start_matches('0').to_owned();
        let mut text = String::new();
        for e in book.asks().take(10).chain(book.bids().take(10)) {
            text.push_str(&strip(&e.price));
            text.push_str(&strip(&e.qty));
        }
        crc32(text.as_bytes())
    }
}
