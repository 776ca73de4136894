//! Reference books and counts for the in-stream venues' captures, built straight from
//! the recorded JSON by each venue's documented book rules, with none of Raven's code:
//! the golden replays compare what Raven serves against these.
//!
//! Per venue: a snapshot replaces the book, an update sets each level's quantity
//! (zero removes it), and a top-N book keeps only its N best levels per side (the venue
//! sends no removal for a level pushed beyond N).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use super::RefBook;

/// What a correct connector must end with for one venue of a capture.
#[derive(Debug, Default)]
pub struct VenueReference {
    pub books: BTreeMap<String, RefBook>,
    pub trades: HashMap<String, u64>,
    /// Book messages that carry a checksum (each must be verified).
    pub checksums: u64,
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().expect("decimal string")).expect("decimal")
}

fn set(side: &mut BTreeMap<Decimal, Decimal>, price: &Value, qty: &Value) {
    let (p, q) = (dec(price), dec(qty));
    if q.is_zero() {
        side.remove(&p);
    } else {
        side.insert(p, q);
    }
}

/// Keeps the best `depth` levels per side.
fn cut(book: &mut RefBook, depth: usize) {
    while book.bids.len() > depth {
        book.bids.pop_first();
    }
    while book.asks.len() > depth {
        book.asks.pop_last();
    }
}

/// The recorded frames of connections whose name is in `conns` (all when empty).
fn frames<'a>(lines: &'a [Value], conns: &'a [&str]) -> impl Iterator<Item = Value> + 'a {
    lines
        .iter()
        .filter(move |l| {
            l["t"] == "recv"
                && (conns.is_empty() || conns.contains(&l["conn"].as_str().unwrap_or_default()))
        })
        .filter_map(|l| serde_json::from_str(l["data"].as_str()?).ok())
}

/// Coinbase Advanced Trade: `l2_data` events (snapshot/update, `side` bid/offer,
/// `price_level`, `new_quantity`); trades of `market_trades` update events (the
/// snapshot's recent history is not live and is not served).
pub fn coinbase(lines: &[Value]) -> VenueReference {
    let mut r = VenueReference::default();
    for f in frames(lines, &[]) {
        match f["channel"].as_str() {
            Some("l2_data") => {
                for e in f["events"].as_array().into_iter().flatten() {
                    let product = e["product_id"].as_str().expect("product").to_owned();
                    let book = r.books.entry(product).or_default();
                    if e["type"] == "snapshot" {
                        *book = RefBook::default();
                    }
                    for u in e["updates"].as_array().into_iter().flatten() {
                        let side = if u["side"] == "bid" {
                            &mut book.bids
                        } else {
                            &mut book.asks
                        };
                        set(side, &u["price_level"], &u["new_quantity"]);
                    }
                }
            }
            Some("market_trades") => {
                for e in f["events"].as_array().into_iter().flatten() {
                    if e["type"] != "update" {
                        continue;
                    }
                    for t in e["trades"].as_array().into_iter().flatten() {
                        let product = t["product_id"].as_str().expect("product").to_owned();
                        *r.trades.entry(product).or_default() += 1;
                    }
                }
            }
            _ => {}
        }
    }
    r
}

/// Bybit v5 on the connections `conns`: `orderbook.N.*` snapshot/delta (`u == 1` is a
/// snapshot too), books of `depth` levels; `publicTrade` trades.
pub fn bybit(lines: &[Value], conns: &[&str], depth: usize) -> VenueReference {
    let mut r = VenueReference::default();
    for f in frames(lines, conns) {
        let topic = f["topic"].as_str().unwrap_or_default();
        if topic.starts_with("orderbook.") {
            let d = &f["data"];
            let book = r
                .books
                .entry(d["s"].as_str().expect("symbol").to_owned())
                .or_default();
            if f["type"] == "snapshot" || d["u"] == 1 {
                *book = RefBook::default();
            }
            for l in d["b"].as_array().into_iter().flatten() {
                set(&mut book.bids, &l[0], &l[1]);
            }
            for l in d["a"].as_array().into_iter().flatten() {
                set(&mut book.asks, &l[0], &l[1]);
            }
            cut(book, depth);
        } else if topic.starts_with("publicTrade.") {
            for t in f["data"].as_array().into_iter().flatten() {
                *r.trades
                    .entry(t["s"].as_str().expect("symbol").to_owned())
                    .or_default() += 1;
            }
        }
    }
    r
}

/// OKX v5: `books` snapshot/update (`[px, sz, _, _]` levels, 400 kept per side), the
/// `checksum` each carries; `trades`.
pub fn okx(lines: &[Value]) -> VenueReference {
    let mut r = VenueReference::default();
    for f in frames(lines, &[]) {
        let inst = f["arg"]["instId"].as_str().unwrap_or_default().to_owned();
        match f["arg"]["channel"].as_str() {
            Some("books") if f.get("action").is_some() => {
                let d = &f["data"][0];
                let book = r.books.entry(inst).or_default();
                if f["action"] == "snapshot" {
                    *book = RefBook::default();
                }
                for l in d["bids"].as_array().into_iter().flatten() {
                    set(&mut book.bids, &l[0], &l[1]);
                }
                for l in d["asks"].as_array().into_iter().flatten() {
                    set(&mut book.asks, &l[0], &l[1]);
                }
                cut(book, 400);
                if d["checksum"].as_i64().is_some_and(|c| c != 0) {
                    r.checksums += 1;
                }
            }
            Some("trades") => {
                for t in f["data"].as_array().into_iter().flatten() {
                    *r.trades
                        .entry(t["instId"].as_str().expect("instId").to_owned())
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    r
}

/// Kraken WebSocket v1: `book-N` arrays (`as`/`bs` snapshots, `a`/`b` updates, `c`
/// checksums), books of `depth` levels; `trade` arrays.
pub fn kraken(lines: &[Value], depth: usize) -> VenueReference {
    let mut r = VenueReference::default();
    for f in frames(lines, &[]) {
        let Some(items) = f.as_array() else { continue };
        if items.len() < 4 {
            continue;
        }
        let pair = items[items.len() - 1]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let channel = items[items.len() - 2].as_str().unwrap_or_default();
        if channel.starts_with("book") {
            let book = r.books.entry(pair).or_default();
            for part in &items[1..items.len() - 2] {
                if part.get("as").is_some() || part.get("bs").is_some() {
                    *book = RefBook::default();
                }
                for key in ["as", "a"] {
                    for l in part[key].as_array().into_iter().flatten() {
                        set(&mut book.asks, &l[0], &l[1]);
                    }
                }
                for key in ["bs", "b"] {
                    for l in part[key].as_array().into_iter().flatten() {
                        set(&mut book.bids, &l[0], &l[1]);
                    }
                }
                if part.get("c").is_some() {
                    r.checksums += 1;
                }
            }
            cut(book, depth);
        } else if channel == "trade" {
            *r.trades.entry(pair).or_default() += items[1].as_array().map_or(0, Vec::len) as u64;
        }
    }
    r
}
