//! The continuity a connection guarantees, on real recorded sessions: a snapshot asked for
//! before a reset is never applied after it, a lost connection interrupts every
//! instrument's streams until the next one is up, a missing trade is reported by its
//! ids, and handing a connection over to the next one (make before break) loses and
//! repeats nothing, whether the new connection lags or leads.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use raven_model::feed::FeedGap;
use raven_model::{EventKind, InstrumentId, MarketEvent, UnixNanos, Venue};
use raven_venues::binance::parse::parse_snapshot;
use raven_venues::binance::snapshot::SnapshotReply;
use raven_venues::sequencer::Source;
use raven_venues::status::{BookSyncState, FeedStatus};
use support::*;

const FUTURES: &str = "BINANCE_FUTURES.jsonl.zst";

fn futures_feed() -> (
    raven_venues::binance::connection::Feed,
    Arc<BookSink>,
    FeedStatus,
) {
    let status = FeedStatus::new();
    let sink = Arc::new(BookSink::default());
    let feed = feed_for(
        Venue::new("binance_usdm").unwrap(),
        &FUTURES_SYMBOLS,
        &status,
        Arc::clone(&sink),
    );
    (feed, sink, status)
}

fn recorded_snapshot(symbol: &str) -> String {
    capture(FUTURES)
        .into_iter()
        .find_map(|e| match e {
            Entry::Snapshot(_, s, body) if s == symbol => Some(body),
            _ => None,
        })
        .expect("a recorded snapshot")
}

#[test]
fn a_snapshot_of_an_earlier_sync_attempt_is_never_applied() {
    let (mut feed, sink, status) = futures_feed();
    let symbol = "SUSHIUSDT";
    let id = InstrumentId::new(Venue::new("binance_usdm").unwrap(), symbol);
    // The first attempt asks for a snapshot (a quiet book: no diff yet)...
    feed.request_missing_snapshots();
    let first = feed.snapshot_generation(symbol).unwrap();
    // ...and the connection drops while it is in flight.
    feed.on_disconnect("connection lost", "reset by peer");
    assert_ne!(feed.snapshot_generation(symbol), Some(first));
    // The old attempt's answer arrives during the next session: discarded, not applied
    // to a book that would then pass for synced with pre-disconnect levels.
    let body = recorded_snapshot(symbol);
    feed.on_snapshot_reply(SnapshotReply::Fetched {
        symbol: symbol.to_owned(),
        generation: first,
        snapshot: parse_snapshot(&body, UnixNanos::now()).unwrap(),
    });
    assert!(
        !sink.books.lock().contains_key(&id),
        "a stale snapshot was applied"
    );
    let book = status.book(&id).unwrap();
    assert_ne!(book.state(), BookSyncState::Synced);
    // The current attempt's answer syncs it.
    let reply = fetched(&feed, symbol.to_owned(), &body);
    feed.on_snapshot_reply(reply);
    assert_eq!(book.state(), BookSyncState::Synced);
    assert!(sink.books.lock().contains_key(&id));
}

#[test]
fn a_lost_connection_interrupts_every_instrument_until_the_next_one_is_up() {
    let (mut feed, sink, _status) = futures_feed();
    let last = UnixNanos(1_700_000_000_000_000_000);
    for (i, text) in capture(FUTURES)
        .iter()
        .filter_map(|e| match e {
            Entry::Recv(_, t) => Some(t),
            Entry::Snapshot(..) => None,
        })
        .take(50)
        .enumerate()
    {
        feed.on_text(text, UnixNanos(last.0 - 50 + i as u64 + 1));
    }
    feed.on_disconnect("connection lost", "reset by peer");
    let gaps = sink.gaps.lock().clone();
    assert_eq!(gaps.len(), FUTURES_SYMBOLS.len());
    for (_, gap) in &gaps {
        assert_eq!(
            gap,
            &FeedGap::Interrupted {
                reason: "connection lost: reset by peer".into(),
                since: last,
            },
            "from the last frame received"
        );
    }
    let at = UnixNanos(last.0 + 5_000_000_000);
    feed.on_connected(at);
    let gaps = sink.gaps.lock().clone();
    assert_eq!(gaps.len(), 2 * FUTURES_SYMBOLS.len());
    assert!(gaps[FUTURES_SYMBOLS.len()..]
        .iter()
        .all(|(_, g)| g == &FeedGap::Resumed { at }));
}

/// The key a stream orders events by, with the stream's name.
fn key(e: &MarketEvent) -> (&'static str, u64) {
    match &e.kind {
        EventKind::Trade(t) => ("trade", t.trade_id.number().unwrap_or_default()),
        EventKind::Bbo(b) => ("bbo", b.update_id),
        EventKind::MarkPrice(_) => ("mark", e.exchange_time.as_nanos()),
        EventKind::Liquidation(_) => ("liquidation", e.exchange_time.as_nanos()),
    }
}

/// Events per instrument and stream, in delivery order.
fn streams(events: &[MarketEvent]) -> BTreeMap<(String, &'static str), Vec<u64>> {
    let mut out: BTreeMap<_, Vec<u64>> = BTreeMap::new();
    for e in events {
        let (stream, k) = key(e);
        out.entry((e.instrument.symbol.as_str().to_owned(), stream))
            .or_default()
            .push(k);
    }
    out
}

#[test]
fn a_missing_trade_is_reported_with_its_ids() {
    let (mut feed, sink, _status) = futures_feed();
    let mut seen = 0;
    let mut removed = None;
    for e in capture(FUTURES) {
        match e {
            Entry::Recv(_, text) => {
                if text.contains("\"e\":\"aggTrade\"") && text.contains("SUSHIUSDT") {
                    seen += 1;
                    if seen == 3 {
                        removed = Some(text);
                        continue;
                    }
                }
                feed.on_text(&text, UnixNanos::now());
            }
            Entry::Snapshot(_, symbol, body) => {
                let reply = fetched(&feed, symbol, &body);
                feed.on_snapshot_reply(reply);
            }
        }
    }
    let removed = removed.expect("SUSHIUSDT trades in the capture");
    let id: u64 = removed
        .split("\"a\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let gaps = sink.gaps.lock().clone();
    assert_eq!(
        gaps,
        [(
            InstrumentId::new(Venue::new("binance_usdm").unwrap(), "SUSHIUSDT"),
            FeedGap::TradeIds {
                last: id - 1,
                next: id + 1
            }
        )]
    );
}

/// Replays the capture's frames through two connections: the primary alone up to frame
/// `primary_at_start`, then both — the primary on to frame `primary_end`, the standby
/// from frame `standby_start` (its subscription) to the end, `standby_pace` frames per
/// frame of the primary — and the standby alone once the primary has closed.
fn hand_over(
    primary_at_start: usize,
    standby_start: usize,
    primary_end: usize,
    standby_pace: usize,
) -> (Arc<BookSink>, FeedStatus) {
    let (mut feed, sink, status) = futures_feed();
    let entries = capture(FUTURES);
    let mut frames = Vec::new();
    for e in entries {
        match e {
            Entry::Recv(_, text) => frames.push(text),
            Entry::Snapshot(_, symbol, body) => {
                // Snapshots all come first in this recording: play the frames before it.
                for text in frames.drain(..) {
                    feed.on_text(&text, UnixNanos::now());
                }
                let reply = fetched(&feed, symbol, &body);
                feed.on_snapshot_reply(reply);
            }
        }
    }
    let mut primary = 0;
    while primary < primary_at_start {
        feed.on_text(&frames[primary], UnixNanos::now());
        primary += 1;
    }
    feed.begin_handover();
    let mut standby = standby_start;
    while primary < primary_end || standby < frames.len() {
        if primary < primary_end {
            feed.on_text_from(&frames[primary], UnixNanos::now(), Source::Primary);
            primary += 1;
        }
        for _ in 0..standby_pace {
            if standby < frames.len() {
                feed.on_text_from(&frames[standby], UnixNanos::now(), Source::Standby);
                standby += 1;
            }
        }
        if primary == primary_end {
            feed.finish_handover();
            for text in &frames[standby..] {
                feed.on_text(text, UnixNanos::now());
            }
            break;
        }
    }
    (sink, status)
}

fn assert_same_as_one_connection(sink: &BookSink, status: &FeedStatus, what: &str) {
    let (reference, _) = replay_through_feed(
        FUTURES,
        Venue::new("binance_usdm").unwrap(),
        &FUTURES_SYMBOLS,
    );
    assert!(
        sink.resets.lock().is_empty(),
        "{what}: {:?}",
        sink.resets.lock()
    );
    assert!(
        sink.gaps.lock().is_empty(),
        "{what}: {:?}",
        sink.gaps.lock()
    );
    assert!(status.all_books_synced(), "{what}");
    assert_eq!(
        streams(&sink.events.lock()),
        streams(&reference.events.lock()),
        "{what}: every event once, in order"
    );
    let books = sink.books.lock();
    let expect = reference.books.lock();
    for (id, book) in expect.iter() {
        let got = &books[id];
        assert_eq!(got.snapshot(0), book.snapshot(0), "{what}: {id}");
    }
}

#[test]
fn a_hand_over_to_a_lagging_connection_loses_and_repeats_nothing() {
    // The standby's stream starts 300 frames before where the primary is.
    let (sink, status) = hand_over(800, 500, 900, 2);
    assert_same_as_one_connection(&sink, &status, "standby behind");
}

#[test]
fn a_hand_over_to_a_leading_connection_loses_and_repeats_nothing() {
    // The standby's stream starts 100 frames ahead of what the primary has delivered: the
    // primary still brings those hundred (and more), slower.
    let (sink, status) = hand_over(500, 600, 800, 3);
    assert_same_as_one_connection(&sink, &status, "standby ahead");
}
