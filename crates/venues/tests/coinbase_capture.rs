//! The Coinbase family on the recorded session (shared/data/captures/COINBASE.jsonl.zst:
//! one connection to advanced-trade-ws.coinbase.com, 2026-08-09, level2, market_trades,
//! ticker, candles and heartbeats for BTC-USD and ETH-USD, and the REST product
//! listing).
//!
//! Every count asserted here was computed from the raw capture, independently of the
//! parser, with:
//!
//! ```text
//! zstd -dc COINBASE.jsonl.zst | python3 -c "
//! import json,sys,collections
//! c=collections.Counter()
//! for l in sys.stdin:
//!     o=json.loads(l)
//!     if o['t']!='recv': continue
//!     d=json.loads(o['data']); c['frames']+=1; ch=d['channel']
//!     for e in d['events']:
//!         if ch=='l2_data': c['book_'+e['type']]+=1; c['levels']+=len(e['updates'])
//!         if ch=='market_trades': c['trades_'+e['type']]+=len(e['trades'])
//!         if ch=='ticker': c['bbo']+=sum(1 for t in e['tickers'] if t.get('best_bid') and t.get('best_ask'))
//!     if ch in('heartbeats','subscriptions'): c['control']+=1
//! print(dict(c))"
//! ```
//!
//! which prints `frames 1030, book_snapshot 2, book_update 773, levels 74193,
//! trades_update 79, trades_snapshot 200, bbo 160, control 30`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

use raven_model::{EventKind, InstrumentKind, QtyUnit, Side, UnixNanos, Venue};
use raven_venues::coinbase::{CoinbaseConfig, CoinbaseProtocol, DEFAULT_WS_URL, VENUES};
use raven_venues::engine::{Channels, FrameParser, Parsed, Sequence, VenueProtocol};
use rust_decimal::Decimal;
use serde_json::Value;
use support::{EngineBook, Outcome};

const SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];

/// The recording's lines, in order: what was sent, received, and fetched.
struct Capture {
    sent: Vec<String>,
    frames: Vec<String>,
    /// REST answers: url, body.
    http: Vec<(String, String)>,
}

fn capture() -> Capture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures/COINBASE.jsonl.zst");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
    let mut c = Capture {
        sent: Vec::new(),
        frames: Vec::new(),
        http: Vec::new(),
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let data = v["data"].as_str().unwrap_or_default().to_owned();
        match v["t"].as_str() {
            Some("send") => c.sent.push(data),
            Some("recv") => c.frames.push(data),
            Some("http") => c.http.push((v["url"].as_str().unwrap().to_owned(), data)),
            _ => {}
        }
    }
    c
}

fn protocol() -> CoinbaseProtocol {
    let venue = Venue::new(VENUES[0]).unwrap();
    CoinbaseProtocol::new(venue, DEFAULT_WS_URL, &CoinbaseConfig::default())
}

fn symbols() -> Vec<String> {
    SYMBOLS.iter().map(|s| s.to_string()).collect()
}

/// Every frame through one connection's parser; the outputs of each frame.
fn parse_all(frames: &[String]) -> Vec<Vec<Parsed>> {
    let mut parser = protocol().parser(&symbols());
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut out = Vec::new();
            parser
                .parse(f, UnixNanos(i as u64), &mut out)
                .unwrap_or_else(|e| panic!("frame {i}: {e}: {}", &f[..f.len().min(300)]));
            out
        })
        .collect()
}

/// The connection-sequence rule the engine applies: each number is the previous + 1.
/// Returns the jumps as (previous, next).
fn sequence_jumps(outputs: &[Vec<Parsed>]) -> Vec<(u64, u64)> {
    let mut last: Option<u64> = None;
    let mut jumps = Vec::new();
    for p in outputs.iter().flatten() {
        if let Parsed::ConnectionSequence(n) = p {
            if let Some(l) = last {
                if *n != l + 1 {
                    jumps.push((l, *n));
                }
            }
            last = Some(*n);
        }
    }
    jumps
}

#[test]
fn every_recorded_frame_parses_into_exactly_what_it_holds() {
    let c = capture();
    assert_eq!(c.frames.len(), 1030);
    let outputs = parse_all(&c.frames);
    let mut count: HashMap<&str, usize> = HashMap::new();
    for p in outputs.iter().flatten() {
        let kind = match p {
            Parsed::Book(b) if b.snapshot => "book_snapshot",
            Parsed::Book(_) => "book_update",
            Parsed::Event(e) => match e.kind {
                EventKind::Trade(_) => "trade",
                EventKind::Bbo(_) => "bbo",
                _ => "other_event",
            },
            Parsed::ConnectionSequence(_) => "sequence",
            Parsed::Control => "control",
            Parsed::Refused(_) => "refused",
        };
        *count.entry(kind).or_default() += 1;
    }
    let expected: HashMap<&str, usize> = [
        ("sequence", 1030),
        ("book_snapshot", 2),
        ("book_update", 773),
        ("trade", 79),
        ("bbo", 160),
        ("control", 30),
    ]
    .into();
    assert_eq!(count, expected);
    let levels: usize = outputs
        .iter()
        .flatten()
        .map(|p| match p {
            Parsed::Book(b) => b.bids.len() + b.asks.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(levels, 74193);
    // Every frame starts with its connection sequence, and they run 0..=1029 unbroken.
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out.first(), Some(&Parsed::ConnectionSequence(i as u64)));
    }
    assert_eq!(sequence_jumps(&outputs), []);
}

#[test]
fn the_fast_scanner_and_the_general_parser_agree_on_every_frame() {
    let c = capture();
    // A space after the opening brace is valid JSON the scanner refuses, so the
    // spaced copy of each frame is read by the general parser.
    let spaced: Vec<String> = c.frames.iter().map(|f| format!("{{ {}", &f[1..])).collect();
    assert_eq!(parse_all(&c.frames), parse_all(&spaced));
}

/// An independent book per product from the raw JSON: Coinbase's rule ("new_quantity
/// is the updated size at a price level (not a delta); "0" removes it"; a snapshot
/// replaces the book). Price (numeric) -> the quantity text last sent.
type RefBook = [BTreeMap<Decimal, String>; 2];

fn reference_books(frames: &[String]) -> HashMap<String, RefBook> {
    let mut books: HashMap<String, RefBook> = HashMap::new();
    for f in frames {
        let v: Value = serde_json::from_str(f).unwrap();
        if v["channel"] != "l2_data" {
            continue;
        }
        for e in v["events"].as_array().unwrap() {
            let book = books
                .entry(e["product_id"].as_str().unwrap().to_owned())
                .or_default();
            if e["type"] == "snapshot" {
                *book = Default::default();
            }
            for u in e["updates"].as_array().unwrap() {
                let side = usize::from(u["side"] == "offer");
                let price = Decimal::from_str(u["price_level"].as_str().unwrap()).unwrap();
                let qty = u["new_quantity"].as_str().unwrap();
                if Decimal::from_str(qty).unwrap().is_zero() {
                    book[side].remove(&price);
                } else {
                    book[side].insert(price, qty.to_owned());
                }
            }
        }
    }
    books
}

/// The parsed book messages on the engine's path: judged by the book sync, applied once
/// to real books.
struct Synced {
    books: HashMap<String, EngineBook>,
    /// Gaps and refused updates.
    lost: usize,
    applied: usize,
}

fn sync_books(outputs: &[Vec<Parsed>]) -> Synced {
    let p = protocol();
    let mut s = Synced {
        books: HashMap::new(),
        lost: 0,
        applied: 0,
    };
    for msg in outputs.iter().flatten() {
        let Parsed::Book(msg) = msg else { continue };
        assert_eq!(msg.sequence, Sequence::None);
        let symbol = msg.instrument.symbol.as_str().to_owned();
        match s
            .books
            .entry(symbol)
            .or_default()
            .on_message(&p, msg.clone())
        {
            Outcome::Applied { .. } => s.applied += 1,
            Outcome::Lost(_) | Outcome::Rejected(_) => s.lost += 1,
            Outcome::Waiting | Outcome::Stale => {}
        }
    }
    s
}

/// (price, quantity text) of one side, ascending by price.
fn side(levels: impl Iterator<Item = raven_model::Level>) -> Vec<(Decimal, String)> {
    let mut v: Vec<(Decimal, String)> = levels
        .map(|l| (l.price.value(), l.qty.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn books_sync_and_equal_an_independent_reference() {
    let c = capture();
    let outputs = parse_all(&c.frames);
    let s = sync_books(&outputs);
    assert_eq!(s.lost, 0);
    assert_eq!(s.applied, 775);
    for symbol in SYMBOLS {
        assert!(s.books[symbol].sync.is_live(), "{symbol}");
    }
    // Coinbase's level2 carries no checksum: none verified, none to verify.
    let carrying_checksum = c
        .frames
        .iter()
        .filter(|f| f.contains("\"l2_data\"") && f.contains("\"checksum\""))
        .count();
    let verified: u64 = s.books.values().map(|b| b.checksums_verified).sum();
    assert_eq!((verified, carrying_checksum), (0, 0));

    let reference = reference_books(&c.frames);
    assert_eq!(reference.len(), 2);
    for (symbol, [ref_bids, ref_asks]) in &reference {
        let book = &s.books[symbol].book;
        let want = |m: &BTreeMap<Decimal, String>| -> Vec<(Decimal, String)> {
            m.iter().map(|(p, q)| (*p, q.clone())).collect()
        };
        assert_eq!(side(book.bids()), want(ref_bids), "{symbol} bids");
        assert_eq!(side(book.asks()), want(ref_asks), "{symbol} asks");
        assert!(!book.is_crossed(), "{symbol}");
        assert!(book.len().0 > 1000 && book.len().1 > 1000, "{symbol}");
    }
}

#[test]
fn every_live_trade_is_emitted_once_oldest_first_with_the_taker_side() {
    let c = capture();
    let outputs = parse_all(&c.frames);
    // The raw update trades, by id: the maker's side as recorded.
    let mut raw: HashMap<u64, (String, String)> = HashMap::new();
    for f in &c.frames {
        let v: Value = serde_json::from_str(f).unwrap();
        if v["channel"] != "market_trades" {
            continue;
        }
        for e in v["events"].as_array().unwrap() {
            if e["type"] != "update" {
                continue;
            }
            for t in e["trades"].as_array().unwrap() {
                let id: u64 = t["trade_id"].as_str().unwrap().parse().unwrap();
                let side = t["side"].as_str().unwrap().to_owned();
                raw.insert(id, (t["product_id"].as_str().unwrap().to_owned(), side));
            }
        }
    }
    assert_eq!(raw.len(), 79);
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen = 0;
    for p in outputs.iter().flatten() {
        let Parsed::Event(e) = p else { continue };
        let EventKind::Trade(t) = &e.kind else {
            continue;
        };
        let id = t.trade_id.number().expect("Coinbase trade ids are numbers");
        let (product, maker_side) = &raw[&id];
        assert_eq!(e.instrument.symbol.as_str(), product);
        let taker = if maker_side == "SELL" {
            Side::Buy
        } else {
            Side::Sell
        };
        assert_eq!(t.aggressor, taker, "trade {id}");
        assert_eq!(t.ordinal, 0);
        // Each product's ids rise one by one: the first follows the snapshot's newest
        // (1068572090 and 833140778), which is not emitted.
        let prev = last
            .entry(product.clone())
            .or_insert(if product == "BTC-USD" {
                1_068_572_090
            } else {
                833_140_778
            });
        assert_eq!(id, *prev + 1, "{product}");
        *prev = id;
        seen += 1;
    }
    assert_eq!(seen, 79);
}

#[test]
fn a_lost_message_of_any_channel_is_a_connection_sequence_jump() {
    let c = capture();
    // The last book delta before the end (its levels change no more afterwards, so
    // losing it leaves the book wrong) and the last ticker.
    let last_frame = c.frames.len() - 1;
    let lost_delta = (0..last_frame)
        .rfind(|&i| c.frames[i].contains("\"l2_data\"") && c.frames[i].contains("\"update\""))
        .unwrap();
    let lost_ticker = (0..last_frame)
        .rfind(|&i| c.frames[i].starts_with("{\"channel\":\"ticker\""))
        .unwrap();
    for lost in [lost_delta, lost_ticker] {
        let mut frames = c.frames.clone();
        frames.remove(lost);
        let outputs = parse_all(&frames);
        // The frame at `lost` was sequence_num `lost` (they count from 0 unbroken).
        assert_eq!(
            sequence_jumps(&outputs),
            [(lost as u64 - 1, lost as u64 + 1)],
            "frame {lost}"
        );
        if lost == lost_delta {
            // The book itself cannot tell: level2 has no per-book sequence or checksum,
            // so only the connection sequence catches the loss, and the book is wrong.
            let s = sync_books(&outputs);
            assert_eq!(s.lost, 0);
            let reference = reference_books(&c.frames);
            let product = if c.frames[lost].contains("BTC-USD") {
                "BTC-USD"
            } else {
                "ETH-USD"
            };
            let book = &s.books[product].book;
            let [ref_bids, ref_asks] = &reference[product];
            let reference_levels: Vec<(Decimal, String)> = ref_bids
                .iter()
                .chain(ref_asks)
                .map(|(p, q)| (*p, q.clone()))
                .collect();
            let mut raven_levels = side(book.bids());
            raven_levels.extend(side(book.asks()));
            assert!(
                raven_levels != reference_levels,
                "{product}: the loss changed nothing"
            );
        }
    }
}

#[test]
fn the_plan_sends_what_the_recording_sent_for_its_channels() {
    let c = capture();
    let all = Channels {
        trades: true,
        book: true,
        bbo: true,
        funding: true,
        liquidations: true,
    };
    let plans = protocol().plan(&symbols(), &all);
    assert_eq!(plans.len(), 1);
    for frame in &plans[0].subscribe[1..] {
        assert!(c.sent.contains(frame), "{frame} not in {:?}", c.sent);
    }
    assert_eq!(
        plans[0].subscribe[0],
        r#"{"type":"subscribe","channel":"heartbeats"}"#
    );
    // The recording's heartbeats subscription named products; the documented one
    // does not, and the server's answer lists heartbeats under "heartbeats" either way.
    assert!(c
        .frames
        .iter()
        .any(|f| f.contains(r#""heartbeats":["heartbeats"]"#)));
}

#[test]
fn the_recorded_product_listing_parses() {
    let c = capture();
    assert_eq!(c.http.len(), 1);
    let (url, body) = &c.http[0];
    let path = url.trim_start_matches("https://api.coinbase.com");
    assert_eq!(path, "/api/v3/brokerage/market/products");
    let list = protocol().parse_instruments(path, body).unwrap();
    // 920 products, all SPOT: 912 online, 8 delisted with trading disabled.
    assert_eq!(list.len(), 920);
    assert_eq!(list.iter().filter(|i| i.trading).count(), 912);
    assert!(list.iter().all(|i| i.kind == InstrumentKind::Spot));
    let btc = list
        .iter()
        .find(|i| i.id.symbol.as_str() == "BTC-USD")
        .unwrap();
    assert_eq!(btc.normalized_name(), "BTC-USD");
    assert_eq!((btc.base.as_str(), btc.quote.as_str()), ("BTC", "USD"));
    assert_eq!(btc.settle, None);
    assert_eq!(btc.tick_size.to_string(), "0.01");
    assert_eq!(btc.lot_size.to_string(), "0.00000001");
    assert_eq!(btc.qty_unit, QtyUnit::Base);
    assert_eq!((btc.contract_size, btc.contract_unit.clone()), (None, None));
    assert!(btc.trading);
    let delisted: Vec<&str> = list
        .iter()
        .filter(|i| !i.trading)
        .map(|i| i.id.symbol.as_str())
        .collect();
    assert_eq!(delisted.len(), 8);
}
