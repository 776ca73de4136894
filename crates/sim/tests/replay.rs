//! Replay mode against the real Binance captures: recorded frames arrive byte-exact and
//! in order, the first depth request gets the recorded body, later ones a snapshot that
//! joins the stream.

mod common;

use std::time::Duration;

use common::*;
use raven_model::book::OrderBook;
use raven_sim::capture::{Capture, CaptureEvent};
use raven_sim::{Sim, SimArgs};

fn args(file: &str) -> SimArgs {
    SimArgs {
        replay: Some(capture(file)),
        ..SimArgs::default()
    }
}

/// Recorded frames of `streams`, in order.
fn recorded_frames(c: &Capture, streams: &[String]) -> Vec<String> {
    c.events
        .iter()
        .filter_map(|e| match e {
            CaptureEvent::Recv { data, .. } => Some(data),
            _ => None,
        })
        .filter(|d| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            streams.iter().any(|s| v["stream"] == s.as_str())
        })
        .cloned()
        .collect()
}

fn recorded_body(c: &Capture, url_part: &str) -> String {
    c.events
        .iter()
        .find_map(|e| match e {
            CaptureEvent::Http { url, data, .. } if url.contains(url_part) => Some(data.clone()),
            _ => None,
        })
        .unwrap()
}

/// Plays one symbol's depth (and one other stream) and checks frames and both snapshots.
async fn replay_one_symbol(file: &str, depth_path: &str, symbol: &str, futures: bool) {
    let capture = Capture::open(capture(file)).unwrap();
    let sim = Sim::start(args(file)).await.unwrap();
    assert!(sim.symbols().contains(&symbol.to_owned()));
    let lower = symbol.to_ascii_lowercase();
    let streams = vec![
        format!("{lower}@depth@100ms"),
        format!("{lower}@bookTicker"),
    ];
    let expected = recorded_frames(&capture, &streams);
    assert!(expected.len() > 20);

    // First depth request: the recorded body, byte for byte.
    let target = format!("{depth_path}?symbol={symbol}&limit=1000");
    let first = get(sim.local_addr(), &target).await;
    assert_eq!(first.status, 200);
    let recorded = recorded_body(&capture, &format!("symbol={symbol}&"));
    assert_eq!(first.body, recorded);

    let mut ws = connect(&sim.ws_url(), &streams).await;
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match next_text(&mut ws, Duration::from_secs(5)).await {
            Some(t) => got.push(t),
            None => break,
        }
    }
    assert_eq!(got, expected);
    assert!(sim.replay_finished().await);
    assert!(
        next_text(&mut ws, Duration::from_millis(200))
            .await
            .is_none(),
        "frames after the end"
    );

    // The client's book: recorded snapshot + the diffs it received, by Binance's rules.
    let mut client = SyncedBook::new(&snapshot_levels(&first.body), futures);
    for t in &got {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        if v["data"]["e"] == "depthUpdate" {
            assert!(client.apply(&v["data"]));
        }
    }
    // A later request: built by the simulator from its own book.
    // Deep enough for the whole book: diffs add levels beyond the recorded 1000.
    let later = get(
        sim.local_addr(),
        &format!("{depth_path}?symbol={symbol}&limit=5000"),
    )
    .await;
    assert_eq!(later.status, 200);
    let later_v: serde_json::Value = serde_json::from_str(&later.body).unwrap();
    assert_eq!(later_v.get("E").is_some(), futures);
    let snap = snapshot_levels(&later.body);
    assert_eq!(snap.last_update_id, client.last_u());
    let mut sim_book = OrderBook::new();
    sim_book.apply_snapshot(&snap, None).unwrap();
    assert_eq!(book_text(&sim_book), book_text(&client.book));
    assert!(!sim_book.is_crossed());
    sim.shutdown().await;
}

#[tokio::test]
async fn spot_replay_is_exact_and_later_snapshots_join() {
    replay_one_symbol("BINANCE.jsonl.zst", "/api/v3/depth", "NKNUSDT", false).await;
}

#[tokio::test]
async fn futures_replay_is_exact_and_later_snapshots_join() {
    replay_one_symbol(
        "BINANCE_FUTURES.jsonl.zst",
        "/fapi/v1/depth",
        "SUSHIUSDT",
        true,
    )
    .await;
}

#[tokio::test]
async fn recorded_exchange_info_and_unknown_symbols() {
    let capture = Capture::open(capture("BINANCE.jsonl.zst")).unwrap();
    let sim = Sim::start(args("BINANCE.jsonl.zst")).await.unwrap();
    let info = get(sim.local_addr(), "/api/v3/exchangeInfo").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body, recorded_body(&capture, "/api/v3/exchangeInfo"));
    let bad = get(sim.local_addr(), "/api/v3/depth?symbol=NOPE").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("-1121"));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reconnecting_client_continues_where_the_stream_was() {
    let capture = Capture::open(capture("BINANCE_FUTURES.jsonl.zst")).unwrap();
    // Ten times the recorded pace: the 30 s recording must not end while we reconnect.
    let sim = Sim::start(SimArgs {
        speed: 10.0,
        ..args("BINANCE_FUTURES.jsonl.zst")
    })
    .await
    .unwrap();
    let streams = vec!["sushiusdt@bookTicker".to_owned()];
    let expected = recorded_frames(&capture, &streams);
    let mut ws = connect(&sim.ws_url(), &streams).await;
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(next_text(&mut ws, Duration::from_secs(5)).await.unwrap());
    }
    assert_eq!(first, expected[..10]);
    drop(ws);
    let mut ws = connect(&sim.ws_url(), &streams).await;
    let resumed = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    let pos = expected.iter().position(|f| *f == resumed).unwrap();
    assert!(pos >= 10, "reconnect restarted the replay at frame {pos}");
    sim.shutdown().await;
}

/// Malformed and crossing faults on a Binance replay: the malformed frame comes before
/// the first recorded frame and every recorded frame still arrives; the symbol's first
/// diff carries one bid at the simulator's best ask, which crosses the client's book;
/// a REST snapshot afterwards is the recorded book, which never took the level.
#[tokio::test]
async fn malformed_and_crossing_faults_on_a_replay() {
    let file = "BINANCE.jsonl.zst";
    let (symbol, depth_path) = ("NKNUSDT", "/api/v3/depth");
    let capture = Capture::open(capture(file)).unwrap();
    let sim = Sim::start(args(file)).await.unwrap();
    let lower = symbol.to_ascii_lowercase();
    let streams = vec![format!("{lower}@depth@100ms")];
    let expected = recorded_frames(&capture, &streams);
    let target = format!("{depth_path}?symbol={symbol}&limit=5000");
    let first = get(sim.local_addr(), &target).await;
    let mut ws = connect(&sim.ws_url(), &streams).await;
    for body in [
        r#"{"fault":"malformed","endpoint":"/stream"}"#.to_owned(),
        format!(r#"{{"fault":"cross","symbol":"{lower}"}}"#),
    ] {
        let r = http(sim.local_addr(), "POST", "/sim/fault", &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let text = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(next_text(&mut ws, Duration::from_secs(5)).await.unwrap());
    }
    let mut client = SyncedBook::new(&snapshot_levels(&first.body), false);
    let mut reference = SyncedBook::new(&snapshot_levels(&first.body), false);
    let mut crossed = 0;
    for (g, w) in got.iter().zip(&expected) {
        let g: serde_json::Value = serde_json::from_str(g).unwrap();
        let w: serde_json::Value = serde_json::from_str(w).unwrap();
        assert!(client.apply(&g["data"]) && reference.apply(&w["data"]));
        if g != w {
            // The only change: one bid more, first, at the best ask after the diff.
            let (gb, wb) = (
                g["data"]["b"].as_array().unwrap(),
                w["data"]["b"].as_array().unwrap(),
            );
            assert_eq!(gb[1..], wb[..]);
            let best_ask = reference.book.best_ask().unwrap();
            assert_eq!(gb[0][0].as_str().unwrap(), best_ask.price.to_string());
            assert_eq!(gb[0][1].as_str().unwrap(), best_ask.qty.to_string());
            assert!(client.book.is_crossed());
            crossed += 1;
        }
    }
    assert_eq!(crossed, 1);
    assert!(sim.replay_finished().await);
    let later = snapshot_levels(&get(sim.local_addr(), &target).await.body);
    let mut sim_book = OrderBook::new();
    sim_book.apply_snapshot(&later, None).unwrap();
    assert_eq!(book_text(&sim_book), book_text(&reference.book));
    let stats = sim.stats();
    assert_eq!((stats.faults.malformed, stats.faults.crossed), (1, 1));
    sim.shutdown().await;
}
