//! The Kraken adapter against the recorded session (shared/data/captures/KRAKEN.jsonl.zst:
//! WebSocket v1 on 2021-04-17, one connection each for `trade`, `ticker` and `book` depth
//! 1000 of 10 pairs, and REST `AssetPairs`).
//!
//! Every count asserted here was computed from the raw capture independently of Raven,
//! with Python; the one-liners are next to the numbers. The books are checked twice:
//! on the engine's path (`BookSync`, then one apply under Kraken's checksum and depth),
//! and against a reference book built here straight from the raw JSON by the documented
//! rules.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use raven_model::feed::BookRejected;
use raven_model::{EventKind, InstrumentKind, QtyUnit, TradeId, UnixNanos, Venue};
use raven_venues::engine::{BookMessage, FrameParser, Parsed, VenueProtocol};
use raven_venues::kraken::{KrakenConfig, KrakenProtocol, DEFAULT_WS_URL, VENUES};
use rust_decimal::Decimal;
use serde_json::Value;
use support::{EngineBook, Outcome};

/// One line of the capture that matters here.
enum Entry {
    /// A frame received on connection `conn` at `ts` (Unix seconds).
    Recv { conn: String, ts: f64, data: String },
    /// A frame the recording client sent.
    Send { data: String },
    /// A REST answer.
    Http { url: String, data: String },
}

fn capture() -> Vec<Entry> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures/KRAKEN.jsonl.zst");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
    text.lines()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            match v["t"].as_str()? {
                "recv" => Some(Entry::Recv {
                    conn: s("conn"),
                    ts: v["ts"].as_f64().unwrap(),
                    data: s("data"),
                }),
                "send" => Some(Entry::Send { data: s("data") }),
                "http" => Some(Entry::Http {
                    url: s("url"),
                    data: s("data"),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The recorded frames as (connection, receive time, text).
fn frames(entries: &[Entry]) -> Vec<(&str, UnixNanos, &str)> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Recv { conn, ts, data } => {
                Some((conn.as_str(), UnixNanos((ts * 1e9) as u64), data.as_str()))
            }
            _ => None,
        })
        .collect()
}

/// The pairs the recording subscribed (the same 10 on each connection).
fn pairs(entries: &[Entry]) -> Vec<String> {
    let Some(Entry::Send { data }) = entries.iter().find(|e| matches!(e, Entry::Send { .. }))
    else {
        panic!("no subscribe frame")
    };
    let v: Value = serde_json::from_str(data).unwrap();
    v["pair"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn protocol() -> KrakenProtocol {
    KrakenProtocol::new(
        Venue::new(VENUES[0]).unwrap(),
        DEFAULT_WS_URL,
        &KrakenConfig::default(),
    )
}

/// Every output of every frame, one parser per recorded connection as the engine has.
fn parse_all(
    protocol: &KrakenProtocol,
    entries: &[Entry],
    frames: &[(&str, UnixNanos, &str)],
) -> Vec<Parsed> {
    let pairs = pairs(entries);
    let mut parsers = HashMap::new();
    let mut out = Vec::new();
    for (conn, ts, text) in frames {
        let parser = parsers
            .entry(*conn)
            .or_insert_with(|| protocol.parser(&pairs));
        parser
            .parse(text, *ts, &mut out)
            .unwrap_or_else(|e| panic!("{e}: {text}"));
    }
    out
}

fn book_messages(outputs: Vec<Parsed>) -> Vec<BookMessage> {
    outputs
        .into_iter()
        .filter_map(|o| match o {
            Parsed::Book(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn every_recorded_frame_parses_into_the_expected_outputs() {
    let entries = capture();
    let frames = frames(&entries);
    // Counted from the raw capture, printing 4430 125 10 4269 10 18 4269 (frames, event
    // objects, book snapshots, book updates, trades, tickers, book objects with "c"):
    //   zstd -dc KRAKEN.jsonl.zst | python3 -c 'import json,sys; R=[json.loads(o["data"])
    //   for o in map(json.loads,sys.stdin) if o["t"]=="recv"]; L=[d for d in R if
    //   isinstance(d,list)]; B=[d for d in L if d[-2].startswith("book-")]; print(len(R),
    //   sum(isinstance(d,dict) for d in R), sum("as" in d[1] for d in B), sum("as" not in
    //   d[1] for d in B), sum(len(d[1]) for d in L if d[-2]=="trade"), sum(d[-2]=="ticker"
    //   for d in L), sum("c" in x for d in B for x in d[1:-2]))'
    // The 125 objects are 3 systemStatus, 30 subscriptionStatus and 92 heartbeats.
    assert_eq!(frames.len(), 4430);
    let outputs = parse_all(&protocol(), &entries, &frames);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &outputs {
        let kind = match o {
            Parsed::Book(m) if m.snapshot => "book snapshot",
            Parsed::Book(_) => "book update",
            Parsed::Event(e) => match e.kind {
                EventKind::Trade(_) => "trade",
                EventKind::Bbo(_) => "bbo",
                EventKind::MarkPrice(_) => "mark price",
                EventKind::Liquidation(_) => "liquidation",
            },
            Parsed::Control => "control",
            Parsed::Refused(_) => "refused",
            Parsed::ConnectionSequence(_) => "connection sequence",
        };
        *counts.entry(kind).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            ("bbo", 18),
            ("book snapshot", 10),
            ("book update", 4269),
            ("control", 125),
            ("trade", 10),
        ])
    );
    // Events carry the exchange's time where it sends one, and always Raven's.
    for o in &outputs {
        if let Parsed::Event(e) = o {
            assert!(e.receive_time.as_nanos() > 1_618_678_000_000_000_000);
            if let EventKind::Trade(t) = &e.kind {
                assert_eq!(t.trade_id, TradeId::None);
                assert!(e.exchange_time.as_nanos() > 1_618_678_000_000_000_000);
            }
        }
    }
}

#[test]
fn every_recorded_trade_is_parsed_exactly() {
    let entries = capture();
    let frames = frames(&entries);
    // The raw trades, read independently: (pair, price, volume, time, side).
    let mut raw = Vec::new();
    for (_, _, text) in &frames {
        let v: Value = serde_json::from_str(text).unwrap();
        if v.get(2).and_then(Value::as_str) == Some("trade") {
            for t in v[1].as_array().unwrap() {
                let s = |i: usize| t[i].as_str().unwrap().to_owned();
                raw.push((v[3].as_str().unwrap().to_owned(), s(0), s(1), s(2), s(3)));
            }
        }
    }
    assert_eq!(raw.len(), 10);
    let parsed: Vec<_> = parse_all(&protocol(), &entries, &frames)
        .into_iter()
        .filter_map(|o| match o {
            Parsed::Event(e) => match e.kind {
                EventKind::Trade(t) => Some((e.instrument, e.exchange_time, t)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(parsed.len(), raw.len());
    for ((instrument, time, trade), (pair, price, volume, ts, side)) in parsed.iter().zip(&raw) {
        assert_eq!(instrument.symbol.as_str(), pair);
        assert_eq!(trade.price.to_string(), *price);
        assert_eq!(trade.qty.to_string(), *volume);
        let (secs, micros) = ts.split_once('.').unwrap();
        let expected =
            secs.parse::<u64>().unwrap() * 1_000_000_000 + micros.parse::<u64>().unwrap() * 1000;
        assert_eq!(time.as_nanos(), expected);
        assert_eq!(
            trade.aggressor.as_str(),
            if side == "b" { "buy" } else { "sell" }
        );
    }
}

#[test]
fn the_plan_subscribes_what_the_recording_subscribed() {
    let entries = capture();
    let pairs = pairs(&entries);
    let plans = protocol().plan(
        &pairs,
        &raven_venues::engine::Channels {
            trades: true,
            book: true,
            bbo: true,
            ..Default::default()
        },
    );
    assert_eq!(plans.len(), 1, "10 pairs fit one connection");
    let sent: Vec<Value> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Send { data } => Some(serde_json::from_str(data).unwrap()),
            _ => None,
        })
        .collect();
    let planned: Vec<Value> = plans[0]
        .subscribe
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    // The recording's book and trade subscriptions, byte for byte in meaning; for the
    // BBO Raven subscribes `spread` where the recording had `ticker`.
    let name = |v: &Value| v["subscription"]["name"].as_str().unwrap().to_owned();
    for wanted in ["book", "trade"] {
        let s = sent.iter().find(|v| name(v) == wanted).unwrap();
        let p = planned.iter().find(|v| name(v) == wanted).unwrap();
        assert_eq!(s, p, "{wanted}");
    }
    assert!(planned.iter().any(|v| name(v) == "spread"));
}

/// One side of the reference book: price → (price text, volume text).
type RefSide = BTreeMap<Decimal, (String, String)>;

/// The books built from the raw JSON by the documented v1 rules, without Raven's parser:
/// `as`/`bs` replace the book; `a`/`b` levels apply in order (volume 0 removes); then
/// each side is cut to the subscribed depth (1000). Also counts the update messages that
/// carry a checksum.
fn reference_books(
    frames: &[(&str, UnixNanos, &str)],
    depth: usize,
) -> (HashMap<String, [RefSide; 2]>, usize) {
    let mut books: HashMap<String, [RefSide; 2]> = HashMap::new();
    let mut with_checksum = 0;
    for (_, _, text) in frames {
        let v: Value = serde_json::from_str(text).unwrap();
        let Some(items) = v.as_array() else { continue };
        let n = items.len();
        if !items[n - 2].as_str().unwrap().starts_with("book-") {
            continue;
        }
        let pair = items[n - 1].as_str().unwrap().to_owned();
        let book = books.entry(pair).or_default();
        for part in &items[1..n - 2] {
            let part = part.as_object().unwrap();
            if part.contains_key("as") {
                book[0].clear();
                book[1].clear();
            }
            for (key, side) in [("as", 0), ("bs", 1), ("a", 0), ("b", 1)] {
                for level in part
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let price = level[0].as_str().unwrap().to_owned();
                    let volume = level[1].as_str().unwrap().to_owned();
                    let key: Decimal = price.parse().unwrap();
                    if volume.parse::<Decimal>().unwrap().is_zero() {
                        book[side].remove(&key);
                    } else {
                        book[side].insert(key, (price, volume));
                    }
                }
            }
            with_checksum += usize::from(part.contains_key("c"));
        }
        while book[0].len() > depth {
            book[0].pop_last();
        }
        while book[1].len() > depth {
            book[1].pop_first();
        }
    }
    (books, with_checksum)
}

/// What the engine does with book messages: one `BookSync` per book, every update it
/// passes applied once to the book under Kraken's checksum and depth, as the sink does.
struct Engine {
    books: HashMap<String, EngineBook>,
    /// Gaps and refused updates.
    lost: Vec<(String, Outcome)>,
}

impl Engine {
    fn run(protocol: &KrakenProtocol, messages: Vec<BookMessage>) -> Engine {
        let mut e = Engine {
            books: HashMap::new(),
            lost: Vec::new(),
        };
        for m in messages {
            let symbol = m.instrument.symbol.as_str().to_owned();
            let outcome = e
                .books
                .entry(symbol.clone())
                .or_default()
                .on_message(protocol, m);
            if matches!(outcome, Outcome::Lost(_) | Outcome::Rejected(_)) {
                e.lost.push((symbol, outcome));
            }
        }
        e
    }

    fn verified(&self) -> u64 {
        self.books.values().map(|b| b.checksums_verified).sum()
    }
}

#[test]
fn books_stay_in_sync_and_equal_a_reference_built_from_the_raw_json() {
    let entries = capture();
    let frames = frames(&entries);
    let protocol = protocol();
    let depth = protocol.book_depth().unwrap();
    assert_eq!(depth, 1000);
    let (reference, with_checksum) = reference_books(&frames, depth);
    // The last number of the one-liner in `every_recorded_frame_parses_…`: 4269.
    assert_eq!(with_checksum, 4269);
    let engine = Engine::run(
        &protocol,
        book_messages(parse_all(&protocol, &entries, &frames)),
    );
    assert!(engine.lost.is_empty(), "{:?}", engine.lost);
    assert_eq!(engine.verified(), with_checksum as u64);
    assert_eq!(engine.books.len(), 10);
    assert!(engine.books.values().all(|b| b.sync.is_live()));
    assert_eq!(reference.len(), 10);
    for (pair, [asks, bids]) in &reference {
        let book = &engine.books[pair].book;
        let text = |l: raven_model::Level| (l.price.to_string(), l.qty.to_string());
        let ours_asks: Vec<_> = book.asks().map(text).collect();
        let ours_bids: Vec<_> = book.bids().map(text).collect();
        let ref_asks: Vec<_> = asks.values().cloned().collect();
        let ref_bids: Vec<_> = bids.values().rev().cloned().collect();
        assert_eq!(ours_asks, ref_asks, "{pair} asks");
        assert_eq!(ours_bids, ref_bids, "{pair} bids");
        assert!(!ours_asks.is_empty() && !ours_bids.is_empty());
        assert!(!book.is_crossed(), "{pair}");
    }
}

#[test]
fn a_deleted_update_loses_that_book_only() {
    let entries = capture();
    let frames = frames(&entries);
    let protocol = protocol();
    let all = book_messages(parse_all(&protocol, &entries, &frames));
    // The first XMR/USD update: [992,{"b":[["354.15000000","5.00000000",…]],"c":"2583817756"},…],
    // a new second-best bid, so every later checksum of the book differs without it.
    let victim = all
        .iter()
        .position(|m| !m.snapshot && m.instrument.symbol.as_str() == "XMR/USD")
        .unwrap();
    assert_eq!(all[victim].checksum, Some(2_583_817_756));
    let mut messages = all.clone();
    messages.remove(victim);
    let engine = Engine::run(&protocol, messages);
    assert_eq!(engine.lost.len(), 1, "{:?}", engine.lost);
    let (pair, loss) = &engine.lost[0];
    assert_eq!(pair, "XMR/USD");
    assert!(matches!(
        loss,
        Outcome::Rejected(BookRejected::Checksum { .. })
    ));
    // The lost book waits for a snapshot (none comes in the recording); the nine others
    // verify every checksum they did before.
    assert!(!engine.books["XMR/USD"].sync.is_live());
    let whole = Engine::run(&protocol, all);
    for (pair, book) in &engine.books {
        if pair != "XMR/USD" {
            assert!(book.sync.is_live(), "{pair}");
            assert_eq!(
                book.checksums_verified, whole.books[pair].checksums_verified,
                "{pair}"
            );
        }
    }
}

#[test]
fn a_corrupted_checksum_is_caught() {
    let entries = capture();
    let frames = frames(&entries);
    let protocol = protocol();
    let mut messages = book_messages(parse_all(&protocol, &entries, &frames));
    let target = messages
        .iter()
        .rposition(|m| m.instrument.symbol.as_str() == "ADA/XBT" && m.checksum.is_some())
        .unwrap();
    let recorded = messages[target].checksum.unwrap();
    messages[target].checksum = Some(recorded ^ 1);
    let engine = Engine::run(&protocol, messages);
    assert_eq!(engine.lost.len(), 1);
    assert_eq!(engine.lost[0].0, "ADA/XBT");
    assert_eq!(
        engine.lost[0].1,
        Outcome::Rejected(BookRejected::Checksum {
            expected: recorded ^ 1,
            computed: recorded
        })
    );
}

#[test]
fn the_recorded_asset_pairs_parse() {
    let entries = capture();
    let Some(Entry::Http { url, data }) = entries.iter().find(|e| matches!(e, Entry::Http { .. }))
    else {
        panic!("no REST answer")
    };
    let protocol = protocol();
    let path = url.strip_prefix("https://api.kraken.com").unwrap();
    assert_eq!(protocol.instrument_paths(), [path]);
    let list = protocol.parse_instruments(path, data).unwrap();
    // r=json.loads(data)['result']; len(r) → 304; sum('wsname' in v for v in r.values()) → 293
    // (the 11 without a wsname are the '.d' dark-pool pairs)
    assert_eq!(list.len(), 293);
    assert!(list
        .iter()
        .all(|i| i.kind == InstrumentKind::Spot && i.trading));
    let find = |s: &str| list.iter().find(|i| i.id.symbol.as_str() == s).unwrap();
    // "XBTCHF": wsname "XBT/CHF", base "XXBT", quote "CHF", pair_decimals 1, lot_decimals 8.
    let xbt = find("XBT/CHF");
    assert_eq!(xbt.normalized_name(), "XBT-CHF");
    assert_eq!((xbt.base.as_str(), xbt.quote.as_str()), ("XBT", "CHF"));
    assert_eq!(xbt.tick_size, Decimal::new(1, 1));
    assert_eq!(xbt.lot_size, Decimal::new(1, 8));
    assert_eq!(xbt.qty_unit, QtyUnit::Base);
    assert_eq!(
        (
            xbt.contract_size,
            xbt.contract_unit.as_deref(),
            xbt.settle.as_deref()
        ),
        (None, None, None)
    );
    // "XDGUSD": dogecoin keeps Kraken's XDG; pair_decimals 7.
    let xdg = find("XDG/USD");
    assert_eq!(xdg.normalized_name(), "XDG-USD");
    assert_eq!(xdg.tick_size, Decimal::new(1, 7));
    // Every recorded pair is listed.
    for pair in pairs(&entries) {
        find(&pair);
    }
}
