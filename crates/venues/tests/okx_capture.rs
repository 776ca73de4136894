//! The OKX adapter on the recorded OKX v5 session of 2022-05-13
//! (shared/data/captures/OKX.jsonl.zst): `books`, `trades` and `tickers` of
//! BTC-USD-220527 (future), UNI-USD-SWAP (swap) and BTC-USDT (spot), and the REST
//! instrument listings.
//!
//! The expected counts were computed from the capture independently of Raven:
//!
//! ```text
//! zstd -dc OKX.jsonl.zst | python3 -c '
//! import sys, json, collections
//! c = collections.Counter(); trades = 0
//! for line in sys.stdin:
//!     d = json.loads(line)
//!     if d["t"] != "recv": continue
//!     c["frames"] += 1
//!     j = json.loads(d["data"])
//!     if "event" in j: c["event:" + j["event"]] += 1; continue
//!     ch = j["arg"]["channel"]; c[ch + ":" + j.get("action", "")] += len(j["data"])
//!     if ch == "trades": trades += len(j["data"])
//!     if ch == "books": c["checksums"] += sum(1 for m in j["data"] if m.get("checksum"))
//! print(c, trades)'
//! ```
//!
//! → 410 frames: 18 `subscribe` acks, 3 book snapshots, 287 book updates (290 book
//! messages, all with a non-zero checksum), 74 trades in 74 pushes, 28 tickers.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

use raven_model::book::OrderBook;
use raven_model::feed::BookRejected;
use raven_model::{EventKind, InstrumentKind, QtyUnit, TradeId, UnixNanos, Venue};
use raven_venues::engine::{Channels, FrameParser, Loss, Parsed, Sequence, VenueProtocol};
use raven_venues::okx::{OkxConfig, OkxProtocol, DEFAULT_WS_URL, VENUE};
use rust_decimal::Decimal;
use serde_json::Value;
use support::{EngineBook, Outcome};

const SYMBOLS: [&str; 3] = ["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"];

/// One line of the capture.
struct Line {
    kind: String,
    ts: f64,
    url: String,
    data: String,
}

fn capture() -> Vec<Line> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures/OKX.jsonl.zst");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Line {
                kind: s("t"),
                ts: v["ts"].as_f64().unwrap_or(0.0),
                url: s("url"),
                data: s("data"),
            }
        })
        .collect()
}

/// The recorded WebSocket frames with their receive times, in order.
fn frames() -> Vec<(UnixNanos, String)> {
    capture()
        .into_iter()
        .filter(|l| l.kind == "recv")
        .map(|l| (UnixNanos((l.ts * 1e9) as u64), l.data))
        .collect()
}

fn protocol() -> OkxProtocol {
    OkxProtocol::new(
        Venue::new(VENUE).unwrap(),
        DEFAULT_WS_URL,
        &OkxConfig::default(),
    )
}

fn symbols() -> Vec<String> {
    SYMBOLS.iter().map(|s| s.to_string()).collect()
}

/// Every output of every frame; any parse error fails the test.
fn parse_all(frames: &[(UnixNanos, String)]) -> Vec<Parsed> {
    let mut parser = protocol().parser(&symbols());
    let mut out = Vec::new();
    for (i, (rx, text)) in frames.iter().enumerate() {
        parser
            .parse(text, *rx, &mut out)
            .unwrap_or_else(|e| panic!("frame {i}: {e}: {text:.200}"));
    }
    out
}

#[derive(Default)]
struct BookRun {
    books: HashMap<String, EngineBook>,
    /// Gaps and refused updates, in order.
    losses: Vec<(String, Outcome)>,
    waiting: HashMap<String, usize>,
    stale: usize,
}

impl BookRun {
    /// The book messages on the engine's path: each judged by its sync, then applied
    /// once to its book under OKX's checks.
    fn of(outputs: Vec<Parsed>) -> Self {
        let p = protocol();
        let mut run = BookRun::default();
        for o in outputs {
            let Parsed::Book(m) = o else { continue };
            let symbol = m.instrument.symbol.as_str().to_owned();
            match run
                .books
                .entry(symbol.clone())
                .or_default()
                .on_message(&p, m)
            {
                Outcome::Applied { .. } => {}
                Outcome::Waiting => *run.waiting.entry(symbol).or_default() += 1,
                Outcome::Stale => run.stale += 1,
                lost => run.losses.push((symbol, lost)),
            }
        }
        run
    }

    fn checksums_verified(&self) -> u64 {
        self.books.values().map(|b| b.checksums_verified).sum()
    }

    fn live(&self, symbol: &str) -> bool {
        self.books.get(symbol).is_some_and(|b| b.sync.is_live())
    }
}

/// One side of a reference book: price → (price text, size text).
type RefSide = BTreeMap<Decimal, (String, String)>;

/// Books built straight from the raw JSON by OKX's documented rules (snapshot replaces,
/// size 0 removes, otherwise set; 400 levels per side), without Raven's parser.
fn reference_books(frames: &[(UnixNanos, String)]) -> HashMap<String, (RefSide, RefSide)> {
    let mut books: HashMap<String, (RefSide, RefSide)> = HashMap::new();
    for (_, text) in frames {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if v["arg"]["channel"] != "books" || v["data"].is_null() {
            continue;
        }
        let inst = v["arg"]["instId"].as_str().unwrap().to_owned();
        for m in v["data"].as_array().unwrap() {
            if v["action"] == "snapshot" {
                books.insert(inst.clone(), Default::default());
            }
            let (bids, asks) = books.get_mut(&inst).unwrap();
            for (side, key) in [(&mut *bids, "bids"), (&mut *asks, "asks")] {
                for level in m[key].as_array().unwrap() {
                    let px = level[0].as_str().unwrap();
                    let sz = level[1].as_str().unwrap();
                    let price = Decimal::from_str(px).unwrap();
                    if Decimal::from_str(sz).unwrap().is_zero() {
                        side.remove(&price);
                    } else {
                        side.insert(price, (px.to_owned(), sz.to_owned()));
                    }
                }
            }
            while bids.len() > 400 {
                bids.pop_first();
            }
            while asks.len() > 400 {
                asks.pop_last();
            }
        }
    }
    books
}

/// A side's levels as (price, size) text, best first.
type SideText = Vec<(String, String)>;

fn levels(book: &OrderBook) -> (SideText, SideText) {
    let text = |l: raven_model::Level| (l.price.to_string(), l.qty.to_string());
    (
        book.bids().map(text).collect(),
        book.asks().map(text).collect(),
    )
}

fn reference_levels(side: &RefSide, best_first_descending: bool) -> SideText {
    let values: Vec<_> = side.values().cloned().collect();
    if best_first_descending {
        values.into_iter().rev().collect()
    } else {
        values
    }
}

fn assert_matches_reference(run: &BookRun, frames: &[(UnixNanos, String)], symbols: &[&str]) {
    let reference = reference_books(frames);
    for symbol in symbols {
        let (ref_bids, ref_asks) = &reference[*symbol];
        let (bids, asks) = levels(&run.books[*symbol].book);
        assert_eq!(bids, reference_levels(ref_bids, true), "{symbol} bids");
        assert_eq!(asks, reference_levels(ref_asks, false), "{symbol} asks");
        assert!(!bids.is_empty() && !asks.is_empty(), "{symbol}");
    }
}

#[test]
fn every_recorded_frame_parses_into_the_expected_outputs() {
    let frames = frames();
    assert_eq!(frames.len(), 410);
    let out = parse_all(&frames);
    let mut count: HashMap<&str, usize> = HashMap::new();
    for o in &out {
        let kind = match o {
            Parsed::Book(m) if m.snapshot => "snapshot",
            Parsed::Book(_) => "update",
            Parsed::Event(e) => match e.kind {
                EventKind::Trade(_) => "trade",
                EventKind::Bbo(_) => "bbo",
                EventKind::MarkPrice(_) => "mark",
                EventKind::Liquidation(_) => "liquidation",
            },
            Parsed::Control => "control",
            Parsed::Refused(_) => "refused",
            Parsed::ConnectionSequence(_) => "connection sequence",
        };
        *count.entry(kind).or_default() += 1;
    }
    let want: HashMap<&str, usize> = [
        ("snapshot", 3),
        ("update", 287),
        ("trade", 74),
        ("bbo", 28),
        ("control", 18),
    ]
    .into_iter()
    .collect();
    assert_eq!(count, want);
    // The recording predates sequence ids; every book message has its checksum.
    for o in &out {
        if let Parsed::Book(m) = o {
            assert_eq!(m.sequence, Sequence::None);
            assert!(m.checksum.is_some());
            assert!(m.exchange_time.as_millis() > 1_652_459_000_000);
        }
    }
}

#[test]
fn books_sync_verify_every_checksum_and_match_a_reference_built_from_the_raw_json() {
    let frames = frames();
    let run = BookRun::of(parse_all(&frames));
    assert!(run.losses.is_empty(), "{:?}", run.losses);
    assert!(run.waiting.is_empty(), "{:?}", run.waiting);
    assert_eq!(run.stale, 0);
    for symbol in SYMBOLS {
        assert!(run.live(symbol), "{symbol}");
    }
    // 290 book messages, each with a non-zero checksum (see the module docs).
    assert_eq!(run.checksums_verified(), 290);
    assert_matches_reference(&run, &frames, &SYMBOLS);
    // The spot book was full: 400 levels a side.
    assert_eq!(run.books["BTC-USDT"].book.len(), (400, 400));
}

#[test]
fn trades_are_every_recorded_trade_with_its_number() {
    let frames = frames();
    let mut recorded = Vec::new();
    for (_, text) in &frames {
        let v: Value = serde_json::from_str(text).unwrap();
        if v["arg"]["channel"] == "trades" && v["data"].is_array() {
            for t in v["data"].as_array().unwrap() {
                recorded.push((
                    t["instId"].as_str().unwrap().to_owned(),
                    t["tradeId"].as_str().unwrap().parse::<u64>().unwrap(),
                    t["px"].as_str().unwrap().to_owned(),
                    t["sz"].as_str().unwrap().to_owned(),
                    t["side"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    assert_eq!(recorded.len(), 74);
    let parsed: Vec<_> = parse_all(&frames)
        .into_iter()
        .filter_map(|o| match o {
            Parsed::Event(e) => match e.kind {
                EventKind::Trade(t) => Some((
                    e.instrument.symbol.as_str().to_owned(),
                    t.trade_id.number().unwrap(),
                    t.price.to_string(),
                    t.qty.to_string(),
                    t.aggressor.as_str().to_owned(),
                    t.ordinal,
                )),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(parsed.len(), recorded.len());
    for (p, r) in parsed.iter().zip(&recorded) {
        assert_eq!((&p.0, p.1, &p.2, &p.3, &p.4), (&r.0, r.1, &r.2, &r.3, &r.4));
        assert_eq!(p.5, 0, "numbered trades need no ordinal");
    }
    assert!(parsed
        .iter()
        .all(|p| TradeId::Number(p.1).text() == p.1.to_string()));
}

/// The index of the `n`th book update of `symbol` among the frames.
fn nth_update(frames: &[(UnixNanos, String)], symbol: &str, n: usize) -> usize {
    frames
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| {
            t.contains(r#""channel":"books""#)
                && t.contains(&format!(r#""instId":"{symbol}""#))
                && t.contains(r#""action":"update""#)
        })
        .nth(n)
        .map(|(i, _)| i)
        .unwrap()
}

#[test]
fn a_deleted_delta_loses_that_book_only_by_its_checksum() {
    let mut frames = frames();
    frames.remove(nth_update(&frames, "BTC-USDT", 0));
    let run = BookRun::of(parse_all(&frames));
    let [(symbol, Outcome::Rejected(BookRejected::Checksum { expected, computed }))] =
        run.losses.as_slice()
    else {
        panic!("{:?}", run.losses)
    };
    assert_eq!(symbol, "BTC-USDT");
    assert_ne!(expected, computed);
    assert!(!run.live("BTC-USDT"));
    // Lost at its next update; the other 95 wait for the snapshot a resync would bring.
    assert_eq!(run.waiting.get("BTC-USDT"), Some(&95));
    assert_eq!(run.waiting.len(), 1);
    for other in ["BTC-USD-220527", "UNI-USD-SWAP"] {
        assert!(run.live(other), "{other}");
    }
    assert_matches_reference(&run, &frames, &["BTC-USD-220527", "UNI-USD-SWAP"]);
}

#[test]
fn a_corrupted_checksum_is_caught() {
    let mut frames = frames();
    let i = nth_update(&frames, "UNI-USD-SWAP", 10);
    let mut v: Value = serde_json::from_str(&frames[i].1).unwrap();
    let recorded = v["data"][0]["checksum"].as_i64().unwrap();
    v["data"][0]["checksum"] = Value::from(recorded ^ 1);
    frames[i].1 = v.to_string();
    let run = BookRun::of(parse_all(&frames));
    assert_eq!(run.losses.len(), 1, "{:?}", run.losses);
    let (symbol, loss) = &run.losses[0];
    assert_eq!(symbol, "UNI-USD-SWAP");
    assert_eq!(
        *loss,
        Outcome::Rejected(BookRejected::Checksum {
            expected: (recorded ^ 1) as i32 as u32,
            computed: recorded as i32 as u32,
        })
    );
    assert!(run.live("BTC-USDT") && run.live("BTC-USD-220527"));
}

/// The recording rewritten into today's shape: `seqId`/`prevSeqId` on every book push
/// (the snapshot's `prevSeqId` -1, each update naming the one before, steps of 7 as
/// OKX's ids jump) and the deprecated checksum fixed at 0.
fn as_today(frames: &[(UnixNanos, String)]) -> Vec<(UnixNanos, String)> {
    let mut seq: HashMap<String, i64> = HashMap::new();
    frames
        .iter()
        .map(|(rx, text)| {
            let mut v: Value = serde_json::from_str(text).unwrap();
            if v["arg"]["channel"] == "books" && v["data"].is_array() {
                let inst = v["arg"]["instId"].as_str().unwrap().to_owned();
                let snapshot = v["action"] == "snapshot";
                for m in v["data"].as_array_mut().unwrap() {
                    let last = seq.get(&inst).copied();
                    let next = last.map_or(1_000, |s| s + 7);
                    m["prevSeqId"] = Value::from(if snapshot { -1 } else { last.unwrap() });
                    m["seqId"] = Value::from(next);
                    m["checksum"] = Value::from(0);
                    seq.insert(inst.clone(), next);
                }
                return (*rx, v.to_string());
            }
            (*rx, text.clone())
        })
        .collect()
}

#[test]
fn today_s_sequence_ids_chain_the_books_and_a_deleted_delta_is_a_gap() {
    let today = as_today(&frames());
    let run = BookRun::of(parse_all(&today));
    assert!(run.losses.is_empty(), "{:?}", run.losses);
    assert_eq!(run.checksums_verified(), 0, "a zero checksum is none");
    assert_matches_reference(&run, &today, &SYMBOLS);

    let mut gapped = today.clone();
    gapped.remove(nth_update(&gapped, "BTC-USD-220527", 20));
    let run = BookRun::of(parse_all(&gapped));
    let [(symbol, Outcome::Lost(Loss::Gap { book, sequence }))] = run.losses.as_slice() else {
        panic!("{:?}", run.losses)
    };
    assert_eq!(symbol, "BTC-USD-220527");
    // The update after the missing one names the missing one's seqId.
    assert_eq!(
        *sequence,
        Sequence::Chained {
            prev: book + 7,
            last: book + 14
        }
    );
    assert!(run.live("BTC-USDT") && run.live("UNI-USD-SWAP"));
}

#[test]
fn the_subscription_plan_covers_what_the_recording_subscribed() {
    let plans = protocol().plan(
        &symbols(),
        &Channels {
            trades: true,
            book: true,
            bbo: true,
            funding: false,
            liquidations: false,
        },
    );
    assert_eq!(plans.len(), 1);
    let sent: Value = serde_json::from_str(&plans[0].subscribe[0]).unwrap();
    let mut ours: Vec<String> = sent["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["channel"], a["instId"]))
        .collect();
    // The recording's last subscribe message held all nine.
    let recorded = capture().into_iter().rfind(|l| l.kind == "send").unwrap();
    let recorded: Value = serde_json::from_str(&recorded.data).unwrap();
    let mut theirs: Vec<String> = recorded["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["channel"], a["instId"]))
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
}

#[test]
fn the_recorded_instrument_listings() {
    let p = protocol();
    // Each type's answer, recorded five times (options once per underlying).
    let mut by_type: HashMap<String, usize> = HashMap::new();
    let mut all = HashMap::new();
    for line in capture().into_iter().filter(|l| l.kind == "http") {
        let path = line.url.trim_start_matches("https://www.okx.com");
        let list = p
            .parse_instruments(path, &line.data)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let inst_type = path
            .split("instType=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let previous = by_type.insert(inst_type.to_owned(), list.len());
        assert!(previous.is_none_or(|n| n == list.len()), "{path}");
        for i in list {
            all.insert(i.id.symbol.as_str().to_owned(), i);
        }
    }
    // Options are skipped without error.
    let want: HashMap<String, usize> = [
        ("SPOT", 513),
        ("SWAP", 166),
        ("FUTURES", 104),
        ("OPTION", 0),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n))
    .collect();
    assert_eq!(by_type, want);
    assert!(
        all.values().all(|i| i.trading),
        "every recorded instrument is live"
    );
    let d = |s: &str| Decimal::from_str(s).unwrap();

    let spot = &all["BTC-USDT"];
    assert_eq!(spot.kind, InstrumentKind::Spot);
    assert_eq!(spot.normalized_name(), "BTC-USDT");
    assert_eq!((spot.tick_size, spot.lot_size), (d("0.1"), d("0.00000001")));
    assert_eq!(spot.qty_unit, QtyUnit::Base);
    assert_eq!((spot.contract_size, spot.settle.as_deref()), (None, None));

    let swap = &all["UNI-USD-SWAP"];
    assert_eq!(swap.kind, InstrumentKind::Perpetual);
    assert_eq!(swap.normalized_name(), "UNI-USD-PERP");
    assert_eq!((swap.tick_size, swap.lot_size), (d("0.001"), d("1")));
    assert_eq!(swap.qty_unit, QtyUnit::Contracts);
    assert_eq!(swap.contract_size, Some(d("10")));
    assert_eq!(swap.contract_unit.as_deref(), Some("USD"));
    assert_eq!(swap.settle.as_deref(), Some("UNI"));

    let linear = &all["BTC-USDT-SWAP"];
    assert_eq!(linear.normalized_name(), "BTC-USDT-PERP");
    assert_eq!(linear.contract_size, Some(d("0.01")));
    assert_eq!(linear.contract_unit.as_deref(), Some("BTC"));
    assert_eq!(linear.settle.as_deref(), Some("USDT"));

    let future = &all["BTC-USD-220527"];
    assert_eq!(
        future.kind,
        InstrumentKind::Future {
            expiry: UnixNanos::from_millis(1_653_638_400_000)
        }
    );
    assert_eq!(future.normalized_name(), "BTC-USD-20220527");
    assert_eq!((future.tick_size, future.lot_size), (d("0.1"), d("1")));
    assert_eq!(future.contract_size, Some(d("100")));
    assert_eq!(future.contract_unit.as_deref(), Some("USD"));
    assert_eq!(future.settle.as_deref(), Some("BTC"));
}

/// A book message must name its instrument: the parse of a frame of another symbol is
/// refused, never silently applied to a book.
#[test]
fn a_book_of_an_unsubscribed_instrument_is_refused() {
    let frames = frames();
    let i = nth_update(&frames, "BTC-USDT", 3);
    let other = frames[i]
        .1
        .replace(r#""instId":"BTC-USDT""#, r#""instId":"ETH-USDT""#);
    let mut parser = protocol().parser(&symbols());
    let mut out: Vec<Parsed> = Vec::new();
    assert!(parser.parse(&other, UnixNanos(1), &mut out).is_err());
    assert!(out.iter().all(|o| !matches!(o, Parsed::Book(_))));
}
