//! Binance (spot, USD-M, COIN-M): combined streams and REST depth snapshots.
//!
//! Binance differs from the other venues in where books come from: its streams carry
//! only diffs, and a client joins them to a REST snapshot (`GET /api/v3/depth`,
//! `/fapi/v1/depth`, `/dapi/v1/depth`). So this module has no WebSocket snapshot; it
//! has REST rules instead ([`Rest`]):
//!
//! * the *first* depth request for a symbol gets the recorded body byte for byte;
//! * a *later* one (a resync after a gap or a reconnect) cannot be answered from the
//!   recording, which holds one snapshot per symbol, so it is built from the
//!   simulator's book: the recorded snapshot plus every `depthUpdate` played so far,
//!   with `lastUpdateId` = the last played `u`. That snapshot joins the rest of the
//!   stream by Binance's rules;
//! * other recorded REST bodies (`exchangeInfo`) are matched by path and `symbol`
//!   (other parameters ignored).
//!
//! Streams: `GET /stream?streams=a/b/c` subscribes in the URL; `SUBSCRIBE`,
//! `UNSUBSCRIBE` and `LIST_SUBSCRIPTIONS` requests are answered as Binance does
//! (`{"result":null,"id":1}`); frames are `{"stream":..,"data":..}` and their key is
//! the stream name split at its first `@` (`nknusdt` + `depth@100ms`). The synthetic
//! market speaks the same protocol, so the connection code uses this module for it too.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use parking_lot::Mutex;
use serde::Deserialize;

use super::rest::split_url;
use super::{
    cross_levels, BookFrame, ConnCtx, Protocol, RecordedLevel, ReqId, Request, RestAnswer, SimBook,
    Sub,
};
use crate::format;
use crate::server::Api;

/// The Binance protocol.
pub(crate) struct Binance;

#[derive(Deserialize)]
struct Combined<'a> {
    #[serde(borrow)]
    stream: &'a str,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct DepthUpdate {
    u: u64,
    b: Vec<(String, String)>,
    a: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct DepthSnapshot {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    bids: Vec<(String, String)>,
    asks: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct ControlRequest {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    #[serde(default)]
    id: serde_json::Value,
}

fn levels(raw: &[(String, String)]) -> Result<Vec<RecordedLevel>> {
    raw.iter()
        .map(|(p, q)| RecordedLevel::new(p, q, ""))
        .collect()
}

/// `nknusdt@depth@100ms` → (`nknusdt`, `depth@100ms`); a name without `@` is all symbol.
pub(crate) fn stream_sub(name: &str) -> Sub {
    let (symbol, channel) = name.split_once('@').unwrap_or((name, ""));
    Sub::new(channel, symbol)
}

/// The stream name of a key, as the client wrote it.
pub(crate) fn stream_name(sub: &Sub) -> String {
    if sub.channel.is_empty() {
        sub.symbol.clone()
    } else {
        format!("{}@{}", sub.symbol, sub.channel)
    }
}

impl Protocol for Binance {
    fn recorded(&self, text: &str) -> Result<super::Recorded> {
        // Frames without a stream (subscription replies) are not market data.
        let Ok(combined) = serde_json::from_str::<Combined>(text) else {
            return Ok(super::Recorded::Control);
        };
        let sub = stream_sub(combined.stream);
        let book = if combined.data.get("e").and_then(|e| e.as_str()) == Some("depthUpdate") {
            let d: DepthUpdate = serde_json::from_value(combined.data)?;
            Some(BookFrame {
                snapshot: false,
                bids: levels(&d.b)?,
                asks: levels(&d.a)?,
                update_id: Some(d.u),
                meta: Vec::new(),
                checksum: false,
            })
        } else {
            None
        };
        Ok(super::Recorded::Data { sub, book })
    }

    /// `depth`, `depth@100ms`, `depth20` ... are views of one book.
    fn book_name<'a>(&self, channel: &'a str) -> &'a str {
        channel.split('@').next().unwrap_or(channel)
    }

    fn url_subscriptions(&self, query: &str) -> Vec<Sub> {
        query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("streams="))
            .flat_map(|streams| streams.split('/'))
            .filter(|name| !name.is_empty())
            .map(stream_sub)
            .collect()
    }

    fn request(&self, text: &str, ctx: &ConnCtx) -> Request {
        let Ok(req) = serde_json::from_str::<ControlRequest>(text) else {
            return Request::Reply(
                r#"{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},"id":null}"#
                    .to_owned(),
            );
        };
        let subs = || req.params.iter().map(|p| stream_sub(p)).collect();
        match req.method.as_str() {
            "SUBSCRIBE" => Request::Subscribe(subs(), Some(req.id.clone())),
            "UNSUBSCRIBE" => Request::Unsubscribe(subs(), Some(req.id.clone())),
            "LIST_SUBSCRIPTIONS" => {
                let names: Vec<String> = ctx.subs.iter().map(stream_name).collect();
                Request::Reply(serde_json::json!({ "result": names, "id": req.id }).to_string())
            }
            _ => Request::Reply(
                serde_json::json!({
                    "error": {"code": 1, "msg": "Invalid request: unknown method"},
                    "id": req.id,
                })
                .to_string(),
            ),
        }
    }

    fn acks(&self, _subscribe: bool, _subs: &[Sub], id: &ReqId, _ctx: &mut ConnCtx) -> Vec<String> {
        let id = id.clone().unwrap_or(serde_json::Value::Null);
        vec![serde_json::json!({ "result": serde_json::Value::Null, "id": id }).to_string()]
    }

    fn cross(&self, text: &str, book: &SimBook) -> Option<String> {
        cross_levels(text, book, "\"b\":[", "\"a\":[", |e, _| {
            format!("[\"{}\",\"{}\"]", e.price, e.qty)
        })
    }

    fn malformed(&self) -> &'static str {
        r#"{"stream":""#
    }

    fn rate_limited(&self) -> RestAnswer {
        RestAnswer::json(429, error_body(-1003, "Too many requests; current limit is exceeded. Please use WebSocket Streams for live updates to avoid bans.")).retry_after()
    }

    fn not_found(&self) -> RestAnswer {
        RestAnswer::json(404, error_body(-1000, "Unknown path."))
    }

    fn display_symbol(&self, symbol: &str) -> String {
        symbol.to_ascii_uppercase()
    }
}

/// Binance's REST error body.
pub(crate) fn error_body(code: i32, msg: &str) -> String {
    serde_json::json!({ "code": code, "msg": msg }).to_string()
}

/// Recorded REST bodies by (path, upper-case `symbol` parameter); first one wins.
#[derive(Debug, Default)]
pub(crate) struct Rest {
    recorded: HashMap<(String, Option<String>), String>,
    /// Upper-case symbols of the recorded depth snapshots.
    depth_symbols: HashSet<String>,
    /// (depth path, symbol) pairs whose recorded body was already served.
    served: Mutex<HashSet<(&'static str, String)>>,
}

/// The path and upper-case `symbol` parameter of a URL or request.
fn path_and_symbol(url: &str) -> (String, Option<String>) {
    let (path, query) = split_url(url);
    (path.to_owned(), query_symbol(query))
}

fn query_symbol(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "symbol")
        .map(|(_, v)| v.to_ascii_uppercase())
}

/// A recorded depth snapshot: lower-case symbol, levels and `lastUpdateId`.
pub(crate) type RecordedDepth = (String, Vec<RecordedLevel>, Vec<RecordedLevel>, u64);

impl Rest {
    /// Keeps a recorded body; a depth snapshot is returned to start the symbol's book
    /// (only the first of each symbol).
    pub fn insert(&mut self, url: &str, body: &str) -> Result<Option<RecordedDepth>> {
        let (path, symbol) = path_and_symbol(url);
        let mut depth = None;
        if path.ends_with("/depth") {
            if let Some(sym) = &symbol {
                if self.depth_symbols.insert(sym.clone()) {
                    let snap: DepthSnapshot = serde_json::from_str(body)
                        .with_context(|| format!("recorded depth body of {url}"))?;
                    depth = Some((
                        sym.to_ascii_lowercase(),
                        levels(&snap.bids)?,
                        levels(&snap.asks)?,
                        snap.last_update_id,
                    ));
                }
            }
        }
        self.recorded
            .entry((path, symbol))
            .or_insert_with(|| body.to_owned());
        Ok(depth)
    }

    pub fn symbols(&self) -> impl Iterator<Item = String> + '_ {
        self.depth_symbols.iter().cloned()
    }

    /// The recorded depth body the first time a symbol's depth is asked for.
    pub fn first_answer(&self, api: Api, symbol: &str) -> Option<String> {
        let path = api.depth_path();
        if !self.served.lock().insert((path, symbol.to_owned())) {
            return None;
        }
        self.recorded
            .get(&(path.to_owned(), Some(symbol.to_owned())))
            .cloned()
    }

    /// Any other recorded body, by path and `symbol`, or by path alone.
    pub fn recorded(&self, path: &str, query: &str) -> Option<String> {
        let key = (path.to_owned(), query_symbol(query));
        self.recorded
            .get(&key)
            .or_else(|| self.recorded.get(&(path.to_owned(), None)))
            .cloned()
    }
}

/// A depth snapshot body of the simulator's book (`None` before it started).
pub(crate) fn depth_body(api: Api, book: &SimBook, limit: usize) -> Option<String> {
    if !book.started() {
        return None;
    }
    Some(format::depth_body(
        book.update_id().unwrap_or(0),
        api.is_futures().then(format::now_ms),
        book.bids().take(limit).map(|e| (&e.price, &e.qty)),
        book.asks().take(limit).map(|e| (&e.price, &e.qty)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_and_url_subscriptions() {
        assert_eq!(
            stream_sub("nknusdt@depth@100ms"),
            Sub::new("depth@100ms", "nknusdt")
        );
        assert_eq!(stream_name(&stream_sub("x@aggTrade")), "x@aggTrade");
        assert_eq!(stream_name(&stream_sub("odd")), "odd");
        assert_eq!(
            Binance.url_subscriptions("streams=a@depth/b@trade&x=1"),
            [Sub::new("depth", "a"), Sub::new("trade", "b")]
        );
        assert_eq!(Binance.book_name("depth@100ms"), "depth");
    }

    #[test]
    fn splits_recorded_urls() {
        assert_eq!(
            path_and_symbol("https://api.binance.com/api/v3/depth?symbol=nknusdt&limit=1000"),
            ("/api/v3/depth".to_owned(), Some("NKNUSDT".to_owned()))
        );
        assert_eq!(
            path_and_symbol("https://fapi.binance.com/fapi/v1/exchangeInfo"),
            ("/fapi/v1/exchangeInfo".to_owned(), None)
        );
    }

    #[test]
    fn requests_and_acks() {
        let mut ctx = ConnCtx::new(1, "/stream");
        let Request::Subscribe(subs, id) = Binance.request(
            r#"{"method":"SUBSCRIBE","params":["a@trade"],"id":7}"#,
            &ctx,
        ) else {
            panic!("not a subscribe")
        };
        assert_eq!(subs, [Sub::new("trade", "a")]);
        assert_eq!(
            Binance.acks(true, &subs, &id, &mut ctx),
            [r#"{"id":7,"result":null}"#]
        );
        ctx.subs = subs;
        let Request::Reply(list) =
            Binance.request(r#"{"method":"LIST_SUBSCRIPTIONS","id":8}"#, &ctx)
        else {
            panic!("not a reply")
        };
        assert_eq!(list, r#"{"id":8,"result":["a@trade"]}"#);
        assert!(
            matches!(Binance.request("nope", &ctx), Request::Reply(e) if e.contains("\"code\":2"))
        );
    }
}
