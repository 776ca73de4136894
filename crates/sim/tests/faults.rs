//! Fault injection, in process and over `POST /sim/fault`: 429s with `Retry-After`,
//! dropped connections, stalls and sequence gaps.

mod common;

use std::time::Duration;

use common::*;
use raven_sim::{Sim, SimArgs};

fn args() -> SimArgs {
    SimArgs {
        symbols: 2,
        rate: 5_000,
        levels: 30,
        ..SimArgs::default()
    }
}

#[tokio::test]
async fn rate_limit_answers_429_then_recovers() {
    let sim = Sim::start(args()).await.unwrap();
    let r = http(
        sim.local_addr(),
        "POST",
        "/sim/fault",
        r#"{"fault":"rate_limit","count":2}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..2 {
        let r = get(sim.local_addr(), "/api/v3/depth?symbol=SYN0USDT").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.body.contains("-1003"));
    }
    assert_eq!(
        get(sim.local_addr(), "/api/v3/depth?symbol=SYN0USDT")
            .await
            .status,
        200
    );
    let stats: serde_json::Value =
        serde_json::from_str(&get(sim.local_addr(), "/sim/stats").await.body).unwrap();
    assert_eq!(stats["depth_requests"], 3);
    assert_eq!(stats["faults"]["rate_limited"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_closes_every_connection() {
    let sim = Sim::start(args()).await.unwrap();
    let streams = vec!["syn0usdt@depth@100ms".to_owned()];
    let mut a = connect(&sim.ws_url(), &streams).await;
    let mut b = connect(&sim.ws_url(), &streams).await;
    assert!(next_text(&mut a, Duration::from_secs(2)).await.is_some());
    assert!(next_text(&mut b, Duration::from_secs(2)).await.is_some());
    assert_eq!(sim.stats().connections, 2);
    let r = http(
        sim.local_addr(),
        "POST",
        "/sim/fault",
        r#"{"fault":"drop"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(closes_within(&mut a, Duration::from_secs(2)).await);
    assert!(closes_within(&mut b, Duration::from_secs(2)).await);
    // Reconnecting works, and the stream continues.
    let mut c = connect(&sim.ws_url(), &streams).await;
    assert!(next_text(&mut c, Duration::from_secs(2)).await.is_some());
    assert_eq!(sim.stats().faults.drops, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn stall_sends_nothing_for_its_duration() {
    let sim = Sim::start(args()).await.unwrap();
    let mut ws = connect(&sim.ws_url(), &["syn1usdt@depth@100ms".to_owned()]).await;
    assert!(next_text(&mut ws, Duration::from_secs(2)).await.is_some());
    sim.faults().stall(Duration::from_millis(800));
    // Frames already in flight may still arrive; then silence, then the stream again.
    let mut arrivals = vec![tokio::time::Instant::now()];
    while next_text(&mut ws, Duration::from_secs(2)).await.is_some() {
        arrivals.push(tokio::time::Instant::now());
        if arrivals.len() > 20
            && arrivals[arrivals.len() - 1] - arrivals[0] > Duration::from_millis(1200)
        {
            break;
        }
    }
    let longest = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest >= Duration::from_millis(600),
        "longest silence {longest:?}"
    );
    assert!(
        longest < Duration::from_millis(1500),
        "did not resume: {longest:?}"
    );
    assert_eq!(sim.stats().faults.stalls, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn gap_skips_one_diff_and_a_resync_recovers() {
    let sim = Sim::start(args()).await.unwrap();
    let mut ws = connect(&sim.ws_url(), &["syn0usdt@depth@100ms".to_owned()]).await;
    let target = "/api/v3/depth?symbol=SYN0USDT&limit=1000";
    let mut client = SyncedBook::new(
        &snapshot_levels(&get(sim.local_addr(), target).await.body),
        false,
    );
    for _ in 0..50 {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert!(client.apply(&v["data"]));
    }
    sim.faults().gap("syn0usdt");
    let gap_found = loop {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if !client.apply(&v["data"]) {
            break true;
        }
    };
    assert!(gap_found && client.gaps == 1);
    // Resync: a fresh snapshot joins the stream again.
    let mut client = SyncedBook::new(
        &snapshot_levels(&get(sim.local_addr(), target).await.body),
        false,
    );
    for _ in 0..50 {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert!(client.apply(&v["data"]));
    }
    assert_eq!(sim.stats().faults.gaps, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_fault_requests_are_refused() {
    let sim = Sim::start(args()).await.unwrap();
    let r = http(
        sim.local_addr(),
        "POST",
        "/sim/fault",
        r#"{"fault":"stall","seconds":-3}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = http(
        sim.local_addr(),
        "POST",
        "/sim/fault",
        r#"{"fault":"explode"}"#,
    )
    .await;
    assert!(r.status >= 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_malformed_frame_is_inserted_and_no_diff_is_lost() {
    let sim = Sim::start(args()).await.unwrap();
    let mut ws = connect(&sim.ws_url(), &["syn0usdt@depth@100ms".to_owned()]).await;
    let target = "/api/v3/depth?symbol=SYN0USDT&limit=1000";
    let mut client = SyncedBook::new(
        &snapshot_levels(&get(sim.local_addr(), target).await.body),
        false,
    );
    let r = http(
        sim.local_addr(),
        "POST",
        "/sim/fault",
        r#"{"fault":"malformed"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let mut malformed = 0;
    for _ in 0..200 {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        match serde_json::from_str::<serde_json::Value>(&t) {
            Err(_) => malformed += 1,
            Ok(v) => assert!(client.apply(&v["data"]), "a diff was lost"),
        }
    }
    assert_eq!(malformed, 1);
    assert_eq!(sim.stats().faults.malformed, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_crossing_bid_crosses_the_book_and_a_resync_recovers() {
    let sim = Sim::start(args()).await.unwrap();
    let mut ws = connect(&sim.ws_url(), &["syn1usdt@depth@100ms".to_owned()]).await;
    let target = "/api/v3/depth?symbol=SYN1USDT&limit=1000";
    let mut client = SyncedBook::new(
        &snapshot_levels(&get(sim.local_addr(), target).await.body),
        false,
    );
    let r = http(
        sim.local_addr(),
        "POST",
        "/sim/fault",
        r#"{"fault":"cross","symbol":"syn1usdt"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    loop {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        let best_ask = client.book.best_ask().map(|l| l.price);
        assert!(client.apply(&v["data"]), "no gap");
        if client.book.is_crossed() {
            // One bid at the best ask, at Binance spot's 8 decimals.
            let bid = client.book.best_bid().unwrap();
            assert_eq!(Some(bid.price), client.book.best_ask().map(|l| l.price));
            assert!(best_ask.is_some());
            assert!(t.contains(&format!("[\"{}\",", bid.price)), "{t}");
            break;
        }
    }
    // A fresh snapshot (the simulator's book never took the level) joins the stream.
    let mut client = SyncedBook::new(
        &snapshot_levels(&get(sim.local_addr(), target).await.body),
        false,
    );
    assert!(!client.book.is_crossed());
    for _ in 0..100 {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert!(client.apply(&v["data"]));
        assert!(!client.book.is_crossed());
    }
    assert_eq!(sim.stats().faults.crossed, 1);
    sim.shutdown().await;
}
