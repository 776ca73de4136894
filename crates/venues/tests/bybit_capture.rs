//! The Bybit adapter against a real recorded session (`BYBIT.jsonl.zst`, 2026-08-09: a
//! linear connection with BTC/ETH/SOL/DOGE USDT and a spot one with BTC/ETH USDT).
//!
//! Every recorded frame must parse; the outputs are counted against numbers computed
//! independently from the raw JSON (the Python one-liners are beside them); the books the
//! engine keeps from the parsed messages must equal, level for level, books built
//! straight from the raw JSON by Bybit's documented rules; faults injected into the
//! stream must be caught for the book they touch and no other; and the recorded REST
//! listings must give the instruments Bybit describes.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

use raven_model::book::OrderBook;
use raven_model::{EventKind, InstrumentId, InstrumentKind, QtyUnit, TradeId, UnixNanos, Venue};
use raven_venues::bybit::{
    BybitConfig, BybitParser, BybitProtocol, Category, DEFAULT_WS_URL_LINEAR, DEFAULT_WS_URL_SPOT,
    VENUES,
};
use raven_venues::engine::{Channels, FrameParser, Loss, Parsed, VenueProtocol};
use rust_decimal::Decimal;
use serde_json::Value;
use support::{EngineBook, Outcome};

/// One line of the recording.
struct Line {
    kind: String,
    conn: String,
    ts: f64,
    addr: String,
    url: String,
    data: String,
}

fn capture() -> Vec<Line> {
    // `shared/` is beside the checkout (`../../../shared` from this crate), or beside the
    // folder holding a git worktree of it: the nearest ancestor that has it.
    let path: PathBuf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data/captures/BYBIT.jsonl.zst"))
        .find(|path| path.exists())
        .expect("shared/data/captures/BYBIT.jsonl.zst beside the checkout");
    let raw = std::fs::read(&path).unwrap();
    let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Line {
                kind: s("t"),
                conn: s("conn"),
                ts: v["ts"].as_f64().unwrap_or(0.0),
                addr: s("addr"),
                url: s("url"),
                data: s("data"),
            }
        })
        .collect()
}

fn all_channels() -> Channels {
    Channels {
        trades: true,
        book: true,
        bbo: true,
        funding: true,
        liquidations: true,
    }
}

/// The two recorded connections: category and the frames received, in order.
struct Session {
    category: Category,
    frames: Vec<(UnixNanos, String)>,
    /// Topics the recording subscribed.
    subscribed: Vec<String>,
}

fn sessions(lines: &[Line]) -> Vec<Session> {
    let mut by_conn: BTreeMap<&str, Session> = BTreeMap::new();
    for l in lines {
        match l.kind.as_str() {
            "connect" => {
                let category = if l.addr == DEFAULT_WS_URL_SPOT {
                    Category::Spot
                } else {
                    assert_eq!(l.addr, DEFAULT_WS_URL_LINEAR);
                    Category::Linear
                };
                by_conn.insert(
                    &l.conn,
                    Session {
                        category,
                        frames: Vec::new(),
                        subscribed: Vec::new(),
                    },
                );
            }
            "send" => {
                let v: Value = serde_json::from_str(&l.data).unwrap();
                let s = by_conn.get_mut(l.conn.as_str()).unwrap();
                for a in v["args"].as_array().unwrap() {
                    s.subscribed.push(a.as_str().unwrap().to_owned());
                }
            }
            "recv" => by_conn
                .get_mut(l.conn.as_str())
                .unwrap()
                .frames
                .push((UnixNanos((l.ts * 1e9) as u64), l.data.clone())),
            _ => {}
        }
    }
    by_conn.into_values().collect()
}

fn venue(category: Category) -> Venue {
    Venue::new(match category {
        Category::Spot => VENUES[0],
        Category::Linear => VENUES[1],
    })
    .unwrap()
}

fn protocol(category: Category) -> BybitProtocol {
    BybitProtocol::new(
        venue(category),
        category.default_ws_url(),
        &BybitConfig::default(),
    )
}

fn symbols(category: Category) -> Vec<String> {
    let list: &[&str] = match category {
        Category::Linear => &["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"],
        Category::Spot => &["BTCUSDT", "ETHUSDT"],
    };
    list.iter().map(|s| s.to_string()).collect()
}

fn parser(category: Category) -> BybitParser {
    let plans = protocol(category).plan(&symbols(category), &all_channels());
    assert_eq!(plans.len(), 1);
    protocol(category).parser(&plans[0].symbols)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    books: usize,
    trades: usize,
    number_ids: usize,
    bbo: usize,
    mark: usize,
    liquidations: usize,
    control: usize,
    refused: usize,
}

fn parse_all(category: Category, frames: &[(UnixNanos, String)]) -> (Counts, Vec<Parsed>) {
    let mut p = parser(category);
    let mut out = Vec::new();
    for (t, f) in frames {
        p.parse(f, *t, &mut out)
            .unwrap_or_else(|e| panic!("{e}: {f}"));
    }
    let mut c = Counts::default();
    for o in &out {
        match o {
            Parsed::Book(_) => c.books += 1,
            Parsed::Event(e) => match &e.kind {
                EventKind::Trade(t) => {
                    c.trades += 1;
                    c.number_ids += usize::from(matches!(t.trade_id, TradeId::Number(_)));
                }
                EventKind::Bbo(_) => c.bbo += 1,
                EventKind::MarkPrice(_) => c.mark += 1,
                EventKind::Liquidation(_) => c.liquidations += 1,
            },
            Parsed::Control => c.control += 1,
            Parsed::Refused(_) => c.refused += 1,
            Parsed::ConnectionSequence(_) => panic!("Bybit numbers no connection"),
        }
    }
    (c, out)
}

fn session(category: Category) -> Session {
    sessions(&capture())
        .into_iter()
        .find(|s| s.category == category)
        .unwrap()
}

#[test]
fn the_plan_subscribes_what_the_recording_did() {
    let lines = capture();
    for s in sessions(&lines) {
        let plans = protocol(s.category).plan(&symbols(s.category), &all_channels());
        let mut ours: Vec<String> = plans[0]
            .subscribe
            .iter()
            .flat_map(|f| {
                let v: Value = serde_json::from_str(f).unwrap();
                let args: Vec<String> = v["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect();
                assert!(args.len() <= 10);
                args
            })
            .collect();
        let mut recorded = s.subscribed.clone();
        // Raven takes no klines; spot tickers have no BBO, which spot takes from
        // level 1 of the book instead.
        let spot_ticker = |t: &str| s.category == Category::Spot && t.starts_with("tickers.");
        recorded.retain(|t| !t.starts_with("kline.") && !spot_ticker(t));
        if s.category == Category::Spot {
            ours.retain(|t| !t.starts_with("orderbook.1."));
        }
        ours.sort();
        recorded.sort();
        assert_eq!(ours, recorded, "{:?}", s.category);
    }
}

/// Counts computed from the raw capture, independently of the adapter:
/// ```text
/// python3 - <<'EOF'
/// import json,collections,zstandard
/// c=collections.Counter(); cat={}; st={}
/// for l in zstandard.ZstdDecompressor().stream_reader(open('BYBIT.jsonl.zst','rb')).read().decode().splitlines():
///     v=json.loads(l)
///     if v['t']=='connect': cat[v['conn']]='spot' if v['addr'].endswith('spot') else 'linear'
///     if v['t']!='recv': continue
///     k=cat[v['conn']]; d=json.loads(v['data']); t=d.get('topic','')
///     if 'op' in d: c[k,'control']+=1
///     elif t.startswith('orderbook.'): c[k,'books']+=1
///     elif t.startswith('publicTrade.'): c[k,'trades']+=len(d['data']); c[k,'number_ids']+=sum(x['i'].isdigit() for x in d['data'])
///     elif t.startswith('tickers.') and k=='linear':
///         x=d['data']; s=st.setdefault(x['symbol'],{})
///         if d['type']=='snapshot': s.clear()
///         s.update(x); B=['bid1Price','bid1Size','ask1Price','ask1Size']; M=['markPrice','indexPrice','fundingRate','nextFundingTime']
///         c[k,'bbo']+=any(f in x for f in B) and all(s.get(f) for f in B)
///         c[k,'mark']+=any(f in x for f in M) and bool(s.get('markPrice')) and 'fundingRate' in s and 'nextFundingTime' in s
/// print(sorted(c.items()))
/// EOF
/// ```
#[test]
fn every_recorded_frame_parses_into_the_expected_outputs() {
    let lines = capture();
    let sessions = sessions(&lines);
    let frames: usize = sessions.iter().map(|s| s.frames.len()).sum();
    assert_eq!(frames, 3227);
    for s in &sessions {
        let (counts, _) = parse_all(s.category, &s.frames);
        let expected = match s.category {
            Category::Linear => Counts {
                books: 1598,
                trades: 327,
                number_ids: 0,
                bbo: 638,
                mark: 140,
                liquidations: 0,
                control: 17,
                refused: 0,
            },
            Category::Spot => Counts {
                books: 550,
                trades: 20,
                number_ids: 20,
                bbo: 0,
                mark: 0,
                liquidations: 0,
                control: 7,
                refused: 0,
            },
        };
        assert_eq!(counts, expected, "{:?}", s.category);
    }
}

#[test]
fn every_recorded_trade_is_parsed() {
    for s in sessions(&capture()) {
        let recorded: usize = s
            .frames
            .iter()
            .map(|(_, f)| serde_json::from_str::<Value>(f).unwrap())
            .filter(|v| {
                v["topic"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("publicTrade."))
            })
            .map(|v| v["data"].as_array().unwrap().len())
            .sum();
        let (counts, _) = parse_all(s.category, &s.frames);
        assert_eq!(counts.trades, recorded, "{:?}", s.category);
    }
}

/// A price level's key in the reference book: its exact value.
type RefSide = BTreeMap<Decimal, String>;

/// Books built from the raw JSON by Bybit's documented rules ("Orderbook" page): a
/// snapshot (or `u == 1`) replaces the book, a delta sets each level, `"0"` removes it,
/// and `u` goes up by one per message.
fn reference_books(frames: &[(UnixNanos, String)]) -> BTreeMap<String, (RefSide, RefSide)> {
    let mut books: BTreeMap<String, (RefSide, RefSide)> = BTreeMap::new();
    let mut last_u: HashMap<String, u64> = HashMap::new();
    for (_, f) in frames {
        let v: Value = serde_json::from_str(f).unwrap();
        let Some(topic) = v["topic"].as_str() else {
            continue;
        };
        if !topic.starts_with("orderbook.200.") {
            continue;
        }
        let data = &v["data"];
        let symbol = data["s"].as_str().unwrap().to_owned();
        let u = data["u"].as_u64().unwrap();
        let snapshot = v["type"] == "snapshot" || u == 1;
        let book = books.entry(symbol.clone()).or_default();
        if snapshot {
            *book = Default::default();
        } else {
            assert_eq!(Some(u - 1), last_u.get(&symbol).copied(), "{symbol}");
        }
        last_u.insert(symbol.clone(), u);
        for (key, side) in [("b", &mut book.0), ("a", &mut book.1)] {
            for level in data[key].as_array().unwrap() {
                let price = Decimal::from_str(level[0].as_str().unwrap()).unwrap();
                let qty = level[1].as_str().unwrap();
                if Decimal::from_str(qty).unwrap().is_zero() {
                    side.remove(&price);
                } else {
                    side.insert(price, qty.to_owned());
                }
            }
            // Bybit removes what leaves its top 200 itself: no cut is ever needed.
            assert!(side.len() <= 200, "{symbol} has {} levels", side.len());
        }
    }
    books
}

/// The engine's side of the story: every parsed book message judged by its sync, each
/// update applied once to its book under Bybit's checks (its depth).
struct EngineBooks {
    books: HashMap<InstrumentId, EngineBook>,
    /// Gaps and refused updates.
    losses: Vec<(InstrumentId, Outcome)>,
    stale: usize,
    waiting: usize,
}

fn engine_books(category: Category, parsed: Vec<Parsed>) -> EngineBooks {
    let p = protocol(category);
    let mut e = EngineBooks {
        books: HashMap::new(),
        losses: Vec::new(),
        stale: 0,
        waiting: 0,
    };
    for o in parsed {
        let Parsed::Book(msg) = o else { continue };
        let id = msg.instrument.clone();
        match e.books.entry(id.clone()).or_default().on_message(&p, msg) {
            Outcome::Applied { .. } => {}
            Outcome::Waiting => e.waiting += 1,
            Outcome::Stale => e.stale += 1,
            lost => e.losses.push((id, lost)),
        }
    }
    e
}

fn assert_same_book(engine: &OrderBook, reference: &(RefSide, RefSide), what: &str) {
    let text = |it: &mut dyn Iterator<Item = raven_model::Level>| -> Vec<(Decimal, String)> {
        it.map(|l| (l.price.value(), l.qty.to_string())).collect()
    };
    let bids: Vec<(Decimal, String)> = reference
        .0
        .iter()
        .rev()
        .map(|(p, q)| (*p, q.clone()))
        .collect();
    let asks: Vec<(Decimal, String)> = reference.1.iter().map(|(p, q)| (*p, q.clone())).collect();
    assert_eq!(text(&mut engine.bids()), bids, "{what} bids");
    assert_eq!(text(&mut engine.asks()), asks, "{what} asks");
    assert!(!engine.is_crossed(), "{what} is crossed");
}

#[test]
fn engine_books_equal_books_built_from_the_raw_json() {
    let mut book_messages = 0;
    for s in sessions(&capture()) {
        let (counts, parsed) = parse_all(s.category, &s.frames);
        book_messages += counts.books;
        let reference = reference_books(&s.frames);
        let e = engine_books(s.category, parsed);
        assert!(e.losses.is_empty(), "{:?}", e.losses);
        assert_eq!((e.stale, e.waiting), (0, 0));
        assert_eq!(e.books.len(), symbols(s.category).len());
        assert_eq!(reference.len(), e.books.len());
        for (symbol, r) in &reference {
            let id = InstrumentId::new(venue(s.category), symbol);
            let EngineBook {
                sync,
                book,
                checksums_verified,
            } = &e.books[&id];
            assert!(sync.is_live(), "{id} not synced");
            assert_eq!(book.len(), (200, 200), "{id}");
            assert_same_book(book, r, &id.to_string());
            // Bybit sends no checksum: none to verify, none verified.
            assert_eq!(*checksums_verified, 0);
        }
    }
    assert_eq!(book_messages, 2148);
    let with_checksum = sessions(&capture())
        .iter()
        .flat_map(|s| s.frames.iter())
        .filter(|(_, f)| f.starts_with("{\"topic\":\"orderbook.") && f.contains("checksum"))
        .count();
    assert_eq!(with_checksum, 0);
}

/// The index of the `n`-th book delta of `symbol` among the frames.
fn nth_delta(frames: &[(UnixNanos, String)], symbol: &str, n: usize) -> usize {
    let topic = format!("\"topic\":\"orderbook.200.{symbol}\"");
    frames
        .iter()
        .enumerate()
        .filter(|(_, (_, f))| f.contains(&topic) && f.contains("\"type\":\"delta\""))
        .nth(n)
        .map(|(i, _)| i)
        .unwrap()
}

#[test]
fn a_deleted_delta_loses_that_book_only() {
    for (category, symbol) in [(Category::Linear, "ETHUSDT"), (Category::Spot, "BTCUSDT")] {
        let mut s = session(category);
        let removed = nth_delta(&s.frames, symbol, 40);
        s.frames.remove(removed);
        let (_, parsed) = parse_all(category, &s.frames);
        let e = engine_books(category, parsed);
        let id = InstrumentId::new(venue(category), symbol);
        assert_eq!(e.losses.len(), 1, "{:?}", e.losses);
        assert_eq!(e.losses[0].0, id);
        assert!(matches!(e.losses[0].1, Outcome::Lost(Loss::Gap { .. })));
        // The rest of that book's deltas wait for a snapshot that never comes.
        assert!(e.waiting > 0);
        for (other, b) in &e.books {
            assert_eq!(b.sync.is_live(), *other != id, "{other}");
        }
    }
}

#[test]
fn a_replayed_delta_is_stale_not_a_loss() {
    let mut s = session(Category::Linear);
    let i = nth_delta(&s.frames, "SOLUSDT", 10);
    let again = s.frames[i].clone();
    s.frames.insert(i + 1, again);
    let reference = reference_books(&session(Category::Linear).frames);
    let (_, parsed) = parse_all(Category::Linear, &s.frames);
    let e = engine_books(Category::Linear, parsed);
    assert!(e.losses.is_empty());
    assert_eq!(e.stale, 1);
    let id = InstrumentId::new(venue(Category::Linear), "SOLUSDT");
    assert_same_book(&e.books[&id].book, &reference["SOLUSDT"], "SOLUSDT");
}

#[test]
fn a_restart_with_u_1_starts_the_book_again() {
    let mut s = session(Category::Linear);
    let end = s.frames.last().unwrap().0;
    // After the recording: Bybit's service restarts and numbers DOGEUSDT from 1 again.
    for (u, bids) in [
        (1, r#"[["0.07050","100"],["0.07049","5"]]"#),
        (2, r#"[["0.07049","0"]]"#),
    ] {
        s.frames.push((
            end,
            format!(
                r#"{{"topic":"orderbook.200.DOGEUSDT","type":"delta","ts":1786311000000,"data":{{"s":"DOGEUSDT","b":{bids},"a":[["0.07060","7"]],"u":{u},"seq":1}},"cts":1786311000000}}"#
            ),
        ));
    }
    let (_, parsed) = parse_all(Category::Linear, &s.frames);
    let e = engine_books(Category::Linear, parsed);
    assert!(e.losses.is_empty(), "{:?}", e.losses);
    let EngineBook { sync, book, .. } =
        &e.books[&InstrumentId::new(venue(Category::Linear), "DOGEUSDT")];
    assert!(sync.is_live());
    let levels: Vec<String> = book
        .bids()
        .chain(book.asks())
        .map(|l| format!("{}@{}", l.qty, l.price))
        .collect();
    assert_eq!(levels, ["100@0.07050", "7@0.07060"]);
}

#[test]
fn the_recorded_listings_give_the_instruments_bybit_describes() {
    let lines = capture();
    let http: Vec<&Line> = lines.iter().filter(|l| l.kind == "http").collect();
    assert_eq!(http.len(), 2);
    let mut by_venue = HashMap::new();
    for l in http {
        let category = if l.url.contains("category=spot") {
            Category::Spot
        } else {
            Category::Linear
        };
        let p = protocol(category);
        let path = l.url.trim_start_matches("https://api.bybit.com");
        let list = p.parse_instruments(path, &l.data).unwrap();
        // The other category's protocol refuses the answer.
        let other = protocol(match category {
            Category::Spot => Category::Linear,
            Category::Linear => Category::Spot,
        });
        assert!(other.parse_instruments(path, &l.data).is_err());
        by_venue.insert(category.as_str(), list);
    }
    let linear = &by_venue["linear"];
    let spot = &by_venue["spot"];
    // python: len(list) per answer; contractType counts 760 LinearPerpetual, 40 LinearFutures.
    assert_eq!((linear.len(), spot.len()), (800, 557));
    let futures = linear
        .iter()
        .filter(|i| matches!(i.kind, InstrumentKind::Future { .. }))
        .count();
    assert_eq!(futures, 40);
    assert!(linear
        .iter()
        .chain(spot)
        .all(|i| i.trading && i.qty_unit == QtyUnit::Base));

    let find = |list: &[raven_model::InstrumentInfo], symbol: &str| {
        list.iter()
            .find(|i| i.id.symbol.as_str() == symbol)
            .cloned()
            .unwrap()
    };
    let d = |s: &str| Decimal::from_str(s).unwrap();

    let perp = find(linear, "BTCUSDT");
    assert_eq!(perp.id.venue, venue(Category::Linear));
    assert_eq!(perp.kind, InstrumentKind::Perpetual);
    assert_eq!(perp.normalized_name(), "BTC-USDT-PERP");
    assert_eq!((perp.base.as_str(), perp.quote.as_str()), ("BTC", "USDT"));
    assert_eq!(perp.settle.as_deref(), Some("USDT"));
    assert_eq!((perp.tick_size, perp.lot_size), (d("0.10"), d("0.001")));
    assert_eq!(
        (perp.contract_size, perp.contract_unit.as_deref()),
        (None, None)
    );

    let usdc = find(linear, "BTCPERP");
    assert_eq!(usdc.normalized_name(), "BTC-USDC-PERP");
    assert_eq!(usdc.settle.as_deref(), Some("USDC"));

    let future = find(linear, "BTCUSDT-25SEP26");
    assert_eq!(
        future.kind,
        InstrumentKind::Future {
            expiry: UnixNanos::from_millis(1790323200000)
        }
    );
    assert_eq!(future.normalized_name(), "BTC-USDT-20260925");
    assert_eq!((future.tick_size, future.lot_size), (d("0.10"), d("0.001")));

    let btc = find(spot, "BTCUSDT");
    assert_eq!(btc.id.venue, venue(Category::Spot));
    assert_eq!(btc.kind, InstrumentKind::Spot);
    assert_eq!(btc.normalized_name(), "BTC-USDT");
    assert_eq!(btc.settle, None);
    assert_eq!((btc.tick_size, btc.lot_size), (d("0.1"), d("0.000001")));
    assert_eq!(btc.lot_size.to_string(), "0.000001");
}
