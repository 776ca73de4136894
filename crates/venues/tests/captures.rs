//! The Binance adapter against real recorded sessions (shared/data/captures).
//!
//! Synthetic frames only test what their author thought of; these recordings are what
//! Binance actually sent. Every frame must parse, every book must sync by the documented
//! procedure, and deleting one diff must be caught as a gap.

mod support;

use raven_model::book::OrderBook;
use std::sync::Arc;

use raven_model::{EventKind, InstrumentId, MarketEvent, Side, UnixNanos, Venue};
use raven_venues::binance::depth::{DepthRules, DepthSync, DiffOutcome, SnapshotOutcome};
use raven_venues::binance::parse::{parse_frame, parse_snapshot, Frame, SymbolMap};
use raven_venues::status::{BookSyncState, FeedStatus};
use support::*;

#[derive(Default, Debug)]
struct Kinds {
    depth: usize,
    trades: usize,
    bbo: usize,
    ignored: usize,
}

fn parse_all(entries: &[Entry], symbols: &SymbolMap) -> (Kinds, Vec<Frame>) {
    let mut kinds = Kinds::default();
    let mut out = Vec::new();
    for text in frames(entries) {
        let frame = parse_frame(text, symbols, UnixNanos(1))
            .unwrap_or_else(|e| panic!("malformed: {e}: {text}"));
        match &frame {
            Frame::Depth { .. } => kinds.depth += 1,
            Frame::Event(e) => match e.kind {
                EventKind::Trade(_) => kinds.trades += 1,
                EventKind::Bbo(_) => kinds.bbo += 1,
                _ => panic!("unexpected kind"),
            },
            Frame::Ignored => kinds.ignored += 1,
            Frame::Control => {}
        }
        out.push(frame);
    }
    (kinds, out)
}

#[test]
fn every_spot_frame_parses() {
    let entries = capture("BINANCE.jsonl.zst");
    let symbols = SymbolMap::new(Venue::new("binance_spot").unwrap(), SPOT_SYMBOLS);
    let (kinds, parsed) = parse_all(&entries, &symbols);
    assert_eq!(
        (kinds.depth, kinds.trades, kinds.bbo, kinds.ignored),
        (177, 2, 84, 2)
    );
    // The first aggTrade, exactly.
    let trade = parsed
        .iter()
        .find_map(|f| match f {
            Frame::Event(MarketEvent {
                kind: EventKind::Trade(t),
                instrument,
                exchange_time,
                ..
            }) => Some((instrument.clone(), *exchange_time, t.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        trade.0,
        InstrumentId::new(Venue::new("binance_spot").unwrap(), "NKNUSDT")
    );
    assert_eq!(trade.1, UnixNanos::from_millis(1633998523963));
    assert_eq!(trade.2.price.to_string(), "0.35280000");
    assert_eq!(trade.2.qty.to_string(), "58.00000000");
    assert_eq!(trade.2.trade_id, raven_model::TradeId::Number(15683430));
    assert_eq!(trade.2.aggressor, Side::Buy);
    // The first bookTicker: spot has no event time.
    let bbo = parsed
        .iter()
        .find_map(|f| match f {
            Frame::Event(e) => match &e.kind {
                EventKind::Bbo(b) => Some((e.exchange_time, b.clone())),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(bbo.0, UnixNanos(0));
    assert_eq!(bbo.1.update_id, 499869768);
    assert_eq!(bbo.1.bid_price.to_string(), "0.35210000");
    assert_eq!(bbo.1.ask_qty.to_string(), "3199.00000000");
}

#[test]
fn every_futures_frame_parses() {
    let entries = capture("BINANCE_FUTURES.jsonl.zst");
    let symbols = SymbolMap::new(Venue::new("binance_usdm").unwrap(), FUTURES_SYMBOLS);
    let (kinds, parsed) = parse_all(&entries, &symbols);
    assert_eq!(
        (kinds.depth, kinds.trades, kinds.bbo, kinds.ignored),
        (764, 91, 613, 67)
    );
    let first_depth = parsed
        .iter()
        .find_map(|f| match f {
            Frame::Depth { instrument, diff } => Some((instrument.clone(), diff.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(first_depth.0.symbol.as_str(), "SUSHIUSDT");
    let d = first_depth.1;
    assert_eq!(
        (d.first_update_id, d.last_update_id, d.prev_last_update_id),
        (600859599090, 600859600917, Some(600859598061))
    );
    assert_eq!(d.exchange_time, UnixNanos::from_millis(1626992741037));
    assert_eq!(d.bids[0].price.to_string(), "7.5040");
    assert_eq!(d.bids[1].qty.to_string(), "0");
    assert_eq!(d.asks[1].qty.to_string(), "3284");
}

#[test]
fn rest_snapshots_parse() {
    for name in ["BINANCE.jsonl.zst", "BINANCE_FUTURES.jsonl.zst"] {
        for e in capture(name) {
            if let Entry::Snapshot(_, symbol, body) = e {
                let s = parse_snapshot(&body, UnixNanos(0)).unwrap();
                assert!(!s.bids.is_empty() && !s.asks.is_empty(), "{symbol}");
                assert!(s.bids[0].price < s.asks[0].price, "{symbol}");
            }
        }
    }
}

/// Replays one symbol's diffs and snapshot, in recorded order, through [`DepthSync`],
/// optionally deleting the `skip`-th diff; returns (applied diffs, gaps, final id).
fn sync_symbol(
    entries: &[Entry],
    venue: Venue,
    symbols: &SymbolMap,
    symbol: &str,
    skip: Option<usize>,
) -> (usize, usize, Option<u64>) {
    let mut sync = DepthSync::new(
        DepthRules::for_market(raven_venues::binance::Market::of(venue).expect("a Binance venue")),
        10_000,
    );
    let mut book = OrderBook::new();
    let (mut applied, mut gaps, mut index) = (0, 0, 0);
    for e in entries {
        match e {
            Entry::Recv(_, text) => {
                let Ok(Frame::Depth { instrument, diff }) =
                    parse_frame(text, symbols, UnixNanos(0))
                else {
                    continue;
                };
                if instrument.symbol.as_str() != symbol {
                    continue;
                }
                index += 1;
                if Some(index) == skip {
                    continue;
                }
                match sync.on_diff(diff) {
                    DiffOutcome::Apply(d) => {
                        book.apply_delta(&d.into_levels()).unwrap();
                        assert!(!book.is_crossed(), "{symbol} crossed");
                        applied += 1;
                    }
                    DiffOutcome::Gap(_) => gaps += 1,
                    DiffOutcome::Buffered | DiffOutcome::Stale => {}
                    DiffOutcome::Overflow => panic!("overflow"),
                    DiffOutcome::ApplyAll(_) | DiffOutcome::Held => {
                        panic!("no hand-over here")
                    }
                }
            }
            Entry::Snapshot(_, s, body) if s == symbol => {
                match sync.on_snapshot(parse_snapshot(body, UnixNanos(0)).unwrap()) {
                    SnapshotOutcome::Synced { snapshot, replay } => {
                        book.apply_snapshot(&snapshot.into_levels(), None).unwrap();
                        for d in replay {
                            book.apply_delta(&d.into_levels()).unwrap();
                            applied += 1;
                        }
                        assert!(!book.is_crossed(), "{symbol} crossed");
                    }
                    other => panic!("{symbol}: snapshot did not join: {other:?}"),
                }
            }
            Entry::Snapshot(..) => {}
        }
    }
    (applied, gaps, sync.update_id())
}

#[test]
fn spot_books_sync_from_the_capture() {
    let entries = capture("BINANCE.jsonl.zst");
    let symbols = SymbolMap::new(Venue::new("binance_spot").unwrap(), SPOT_SYMBOLS);
    for symbol in SPOT_SYMBOLS {
        let (applied, gaps, id) = sync_symbol(
            &entries,
            Venue::new("binance_spot").unwrap(),
            &symbols,
            symbol,
            None,
        );
        assert_eq!(gaps, 0, "{symbol}");
        assert!(applied > 0, "{symbol}");
        assert!(id.is_some(), "{symbol} live");
    }
}

#[test]
fn futures_books_sync_from_the_capture() {
    let entries = capture("BINANCE_FUTURES.jsonl.zst");
    let symbols = SymbolMap::new(Venue::new("binance_usdm").unwrap(), FUTURES_SYMBOLS);
    for symbol in FUTURES_SYMBOLS {
        let (applied, gaps, id) = sync_symbol(
            &entries,
            Venue::new("binance_usdm").unwrap(),
            &symbols,
            symbol,
            None,
        );
        assert_eq!(gaps, 0, "{symbol}");
        assert!(applied > 50, "{symbol}: {applied}");
        assert!(id.is_some(), "{symbol} live");
    }
}

#[test]
fn deleting_one_diff_is_a_gap() {
    // Spot: NKNUSDT has enough diffs after its snapshot; delete one late in the stream.
    let spot = capture("BINANCE.jsonl.zst");
    let spot_symbols = SymbolMap::new(Venue::new("binance_spot").unwrap(), SPOT_SYMBOLS);
    let (_, gaps, id) = sync_symbol(
        &spot,
        Venue::new("binance_spot").unwrap(),
        &spot_symbols,
        "NKNUSDT",
        Some(20),
    );
    assert_eq!(gaps, 1);
    assert_eq!(id, None, "the book is waiting for a new snapshot");

    let fut = capture("BINANCE_FUTURES.jsonl.zst");
    let fut_symbols = SymbolMap::new(Venue::new("binance_usdm").unwrap(), FUTURES_SYMBOLS);
    let (_, gaps, id) = sync_symbol(
        &fut,
        Venue::new("binance_usdm").unwrap(),
        &fut_symbols,
        "SUSHIUSDT",
        Some(100),
    );
    assert_eq!(gaps, 1, "pu break");
    assert_eq!(id, None);
}

#[test]
fn feed_syncs_every_book_and_forwards_events() {
    for (name, venue, symbols, events) in [
        (
            "BINANCE.jsonl.zst",
            Venue::new("binance_spot").unwrap(),
            &SPOT_SYMBOLS,
            86,
        ),
        (
            "BINANCE_FUTURES.jsonl.zst",
            Venue::new("binance_usdm").unwrap(),
            &FUTURES_SYMBOLS,
            704,
        ),
    ] {
        let (sink, status) = replay_through_feed(name, venue, symbols);
        assert!(
            status.all_books_synced(),
            "{name}: {:?}",
            status.snapshot().books
        );
        assert_eq!(*sink.snapshots.lock(), 4, "{name}");
        assert!(sink.resets.lock().is_empty(), "{name}");
        assert_eq!(sink.events.lock().len(), events, "{name}");
        let snap = status.snapshot();
        assert!(snap.books.iter().all(|b| b.gaps == 0 && b.crossed == 0));
        assert_eq!(snap.connections[0].malformed, 0);
        for book in sink.books.lock().values() {
            assert!(!book.is_crossed());
        }
    }
}

#[test]
fn feed_counts_malformed_and_resets_on_disconnect() {
    let status = FeedStatus::new();
    let sink = Arc::new(BookSink::default());
    let mut feed = feed_for(
        Venue::new("binance_usdm").unwrap(),
        &FUTURES_SYMBOLS,
        &status,
        Arc::clone(&sink),
    );
    feed.on_text("{not json", UnixNanos::now());
    feed.on_text(r#"{"result":null,"id":1}"#, UnixNanos::now());
    assert_eq!(status.snapshot().connections[0].malformed, 1);

    for e in capture("BINANCE_FUTURES.jsonl.zst") {
        match e {
            Entry::Recv(_, text) => feed.on_text(&text, UnixNanos::now()),
            Entry::Snapshot(_, symbol, body) => {
                let reply = fetched(&feed, symbol, &body);
                feed.on_snapshot_reply(reply)
            }
        }
    }
    assert!(status.all_books_synced());
    feed.on_disconnect("connection lost", "reset by peer");
    assert_eq!(sink.resets.lock().len(), 4);
    let books = status.snapshot().books;
    assert!(books
        .iter()
        .all(|b| b.state == BookSyncState::Resyncing && b.resyncs == 1));
    assert!(!status.all_books_synced());
}
