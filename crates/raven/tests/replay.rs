//! Golden replays of real Binance sessions through the real connectors.
//!
//! `raven sim --replay` serves a recorded capture on loopback (REST snapshots from the
//! recorded `http` lines, WebSocket frames in recorded order); `raven serve` connects to
//! it exactly as it would to Binance. A subscriber is attached before the replay starts
//! and every message it receives goes through the invariant checker. The books Raven
//! publishes must equal, state by state, a reference built independently in
//! `common::reference` (sorted maps over the same frames).

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use raven_proto::pb;

struct Run {
    checker: Checker,
    status: pb::StatusResponse,
    books: Vec<(String, pb::BookSnapshot)>,
    reference: Reference,
}

/// Replays `capture` (a path) for `venue` at `speed` (0 = as fast as possible) until
/// the subscriber holds `reference`'s final books and has seen all its trades.
async fn replay(
    capture: &std::path::Path,
    venue: &str,
    reference: Reference,
    spot_continuity: bool,
    speed: &str,
) -> Run {
    let sim_port = free_port();
    let symbols: Vec<String> = reference
        .symbols
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    let venues = format!(
        "[[venues]]\nvenue = \"{venue}\"\nsymbols = [{}]\nchannels = [\"trades\", \"book\"]\nws_url = \"ws://127.0.0.1:{sim_port}\"\nrest_url = \"http://127.0.0.1:{sim_port}\"\n",
        symbols.join(", ")
    );
    // Raven first, so the subscriber is attached before the first frame exists; its
    // connector retries until the sim is up.
    let server = spawn_serve(&venues, "");
    let mut client = server.client().await;
    let topics = vec![
        topic(venue, "*", pb::Channel::Book, 0),
        topic(venue, "*", pb::Channel::Trades, 0),
    ];
    let mut sub = Subscription::open(&mut client, topics).await;
    let mut checker = Checker {
        spot_continuity,
        ..Checker::default()
    };
    for _ in 0..2 * reference.symbols.len() {
        let m = sub
            .next(Duration::from_secs(10))
            .await
            .expect("ack")
            .expect("ack ok");
        checker.check(&m);
    }
    assert!(
        checker
            .acks
            .iter()
            .all(|a| a.result == pb::ack::Result::Subscribed as i32),
        "{:?}",
        checker.acks
    );

    let path = capture.to_str().expect("utf-8 path");
    let (_sim, _) = spawn_sim(sim_port, &["--replay", path, "--speed", speed]);

    let expected_trades: u64 = reference.trades.values().sum();
    let done = |c: &Checker| {
        c.trades.values().sum::<u64>() == expected_trades
            && reference
                .symbols
                .iter()
                .all(|s| c.books.get(s) == Some(reference.final_book(s)))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&checker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay did not converge; log:\n{}",
            server.log()
        );
        if let Some(m) = sub.next(Duration::from_millis(500)).await {
            checker.check(&m.expect("stream ok"));
        }
    }
    let status = server.status().await;
    let mut books = Vec::new();
    for s in &reference.symbols {
        let req = pb::GetOrderBookRequest {
            venue: venue.into(),
            symbol: s.clone(),
            depth: 0,
        };
        books.push((
            s.clone(),
            client
                .get_order_book(req)
                .await
                .expect("GetOrderBook")
                .into_inner(),
        ));
    }
    Run {
        checker,
        status,
        books,
        reference,
    }
}

fn assert_golden(run: &Run) {
    let r = &run.reference;
    for (sym, book) in &run.books {
        assert_eq!(
            &RefBook::from_snapshot(book),
            r.final_book(sym),
            "{sym}: GetOrderBook differs from the reference"
        );
    }
    for (sym, u, book) in &run.checker.published {
        let expected = r.states[sym]
            .get(u)
            .unwrap_or_else(|| panic!("{sym}: published update id {u} is not a reference state"));
        assert_eq!(
            book, expected,
            "{sym}: published book at update {u} differs from the reference"
        );
    }
    assert_eq!(
        run.checker.trades, r.trades,
        "trades received differ from the trade frames"
    );
    for b in &run.status.books {
        assert_eq!(b.state, "synced", "{b:?}");
        assert_eq!(b.gaps, 0, "{b:?}");
        assert_eq!(b.crossed, 0, "{b:?}");
    }
    assert!(
        run.status
            .connections
            .iter()
            .all(|c| c.malformed_frames == 0),
        "{:?}",
        run.status.connections
    );
}

#[tokio::test]
async fn binance_spot_capture_replays_exactly() {
    let lines = read_capture("BINANCE.jsonl.zst");
    let run = replay(
        &captures_dir().join("BINANCE.jsonl.zst"),
        "binance_spot",
        reference(&lines, false),
        true,
        "0",
    )
    .await;
    assert_eq!(run.reference.symbols.len(), 4);
    assert_golden(&run);
}

#[tokio::test]
async fn binance_usdm_capture_replays_exactly() {
    let lines = read_capture("BINANCE_FUTURES.jsonl.zst");
    let run = replay(
        &captures_dir().join("BINANCE_FUTURES.jsonl.zst"),
        "binance_usdm",
        reference(&lines, true),
        false,
        "0",
    )
    .await;
    assert_eq!(run.reference.symbols.len(), 4);
    assert_golden(&run);
}

/// One depth frame removed from the recording: Raven must see the gap, resync that one
/// symbol, never publish a delta across the gap, and leave the others untouched.
#[tokio::test]
async fn a_missing_depth_frame_resyncs_only_its_symbol() {
    let lines = read_capture("BINANCE.jsonl.zst");
    let victim = "NKNUSDT";
    let mut seen = 0;
    let mut removed = None;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gap.jsonl");
    let mut out = std::fs::File::create(&path).expect("create");
    let mut kept = Vec::new();
    for line in &lines {
        let is_victim_depth = line["t"] == "recv" && {
            let f: serde_json::Value =
                serde_json::from_str(line["data"].as_str().unwrap_or("{}")).unwrap_or_default();
            f["data"]["e"] == "depthUpdate" && f["data"]["s"] == victim
        };
        if is_victim_depth {
            seen += 1;
            if seen == 80 {
                removed = Some(line.clone());
                continue;
            }
        }
        writeln!(out, "{line}").expect("write");
        kept.push(line.clone());
    }
    assert!(
        removed.is_some(),
        "the capture has at least 80 {victim} depth frames"
    );
    drop(out);

    // The sim answers a resync with its own current book, which never saw the removed
    // frame: the reference is therefore built from the same edited recording. Replayed
    // at 4x the recorded pace, so the gap (15 s into the recording) hits a live book.
    let run = replay(&path, "binance_spot", reference(&kept, false), true, "4").await;
    assert_golden_except_gaps(&run, victim);
}

fn assert_golden_except_gaps(run: &Run, victim: &str) {
    let r = &run.reference;
    for (sym, book) in &run.books {
        assert_eq!(
            &RefBook::from_snapshot(book),
            r.final_book(sym),
            "{sym}: final book"
        );
    }
    for b in &run.status.books {
        assert_eq!(b.state, "synced", "{b:?}");
        if b.symbol == victim {
            assert_eq!(b.gaps, 1, "the gap is detected once: {b:?}");
            assert!(b.resyncs >= 1, "{b:?}");
        } else {
            assert_eq!(
                (b.gaps, b.resyncs),
                (0, 0),
                "other symbols are untouched: {b:?}"
            );
        }
    }
    assert!(
        run.checker.resets.get(victim).copied().unwrap_or(0) >= 1,
        "subscribers were told the book became invalid"
    );
    assert!(
        run.checker.snapshots[victim] >= 2,
        "a fresh snapshot followed the resync"
    );
    for (sym, n) in &run.checker.resets {
        assert_eq!(sym, victim, "{sym} was reset {n} times");
    }
    // Every state published before the gap and after the resync is a true state.
    for (sym, u, book) in &run.checker.published {
        if let Some(expected) = r.states[sym].get(u) {
            assert_eq!(book, expected, "{sym}: published book at update {u}");
        } else {
            assert_eq!(
                sym, victim,
                "{sym}: published update id {u} is not a reference state"
            );
        }
    }
}
