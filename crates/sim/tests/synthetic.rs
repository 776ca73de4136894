//! Synthetic mode seen by a correct connector: a REST snapshot joined to the diff stream
//! by Binance's rules stays in sync, never crosses, and equals the simulator's own book.

mod common;

use std::time::Duration;

use common::*;
use raven_model::book::OrderBook;
use raven_sim::{Sim, SimArgs, SimVenue};

fn args(venue: SimVenue) -> SimArgs {
    SimArgs {
        venue,
        symbols: 3,
        rate: 20_000,
        levels: 50,
        seed: 7,
        ..SimArgs::default()
    }
}

/// Syncs one symbol for a while, then checks the client's book against a fresh snapshot.
async fn client_stays_in_sync(venue: SimVenue, depth_path: &str) {
    let futures = venue != SimVenue::Spot;
    let sim = Sim::start(args(venue)).await.unwrap();
    let symbol = sim.symbols()[1].clone();
    let lower = symbol.to_ascii_lowercase();
    let streams = vec![
        format!("{lower}@depth@100ms"),
        format!("{lower}@bookTicker"),
    ];
    let mut ws = connect(&sim.ws_url(), &streams).await;
    // Subscribe first, then snapshot: the buffered diffs join it.
    let target = format!("{depth_path}?symbol={symbol}&limit=1000");
    let first = get(sim.local_addr(), &target).await;
    assert_eq!(first.status, 200);
    let mut client = SyncedBook::new(&snapshot_levels(&first.body), futures);

    let mut diffs = 0;
    let mut tickers = 0;
    let mut apply = |client: &mut SyncedBook, text: &str| {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let data = &v["data"];
        assert!(
            data["E"].as_u64().unwrap() > 1_600_000_000_000,
            "E is wall-clock ms"
        );
        if v["stream"].as_str().unwrap().ends_with("@bookTicker") {
            let bid: f64 = data["b"].as_str().unwrap().parse().unwrap();
            let ask: f64 = data["a"].as_str().unwrap().parse().unwrap();
            assert!(bid < ask, "crossed bookTicker {text}");
            tickers += 1;
            return;
        }
        assert_eq!(data["s"], symbol.as_str());
        assert!(client.apply(data), "sequence gap at {text}");
        assert!(!client.book.is_crossed(), "crossed after {text}");
        diffs += 1;
    };
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        apply(&mut client, &t);
    }
    // A later snapshot shows the book as of a `u` the stream reaches exactly (futures
    // snapshots name the id after it, inside the next diff); compare there.
    let later = snapshot_levels(&get(sim.local_addr(), &target).await.body);
    let as_of = later.last_update_id - u64::from(futures);
    while client.last_u() < as_of {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        apply(&mut client, &t);
    }
    assert_eq!(client.last_u(), as_of);
    let mut sim_book = OrderBook::new();
    sim_book.apply_snapshot(&later, None).unwrap();
    assert_eq!(book_text(&client.book), book_text(&sim_book));
    assert!(diffs > 500, "only {diffs} diffs");
    assert!(tickers > 10, "only {tickers} book tickers");
    let (bids, asks) = sim_book.len();
    assert!(
        (25..=70).contains(&bids) && (25..=70).contains(&asks),
        "depth {bids}/{asks}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_client_stays_in_sync() {
    client_stays_in_sync(SimVenue::Spot, "/api/v3/depth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdm_client_stays_in_sync() {
    client_stays_in_sync(SimVenue::Usdm, "/fapi/v1/depth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinm_client_stays_in_sync() {
    client_stays_in_sync(SimVenue::Coinm, "/dapi/v1/depth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_streams_and_subscribe() {
    let sim = Sim::start(SimArgs {
        rate: 5_000,
        ..args(SimVenue::Usdm)
    })
    .await
    .unwrap();
    let mut ws = connect(&sim.ws_url(), &[]).await;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let sub = r#"{"method":"SUBSCRIBE","params":["syn0usdt@markPrice@1s","syn0usdt@aggTrade","syn0usdt@trade","syn0usdt@forceOrder"],"id":7}"#;
    ws.send(Message::text(sub)).await.unwrap();
    assert_eq!(
        next_text(&mut ws, Duration::from_secs(2)).await.unwrap(),
        r#"{"id":7,"result":null}"#
    );
    let mut seen = std::collections::BTreeSet::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until && seen.len() < 4 {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        seen.insert(v["data"]["e"].as_str().unwrap().to_owned());
    }
    assert!(
        seen.contains("markPriceUpdate") && seen.contains("aggTrade") && seen.contains("trade"),
        "{seen:?}"
    );
    assert_eq!(sim.venue_ws_url(), Some(sim.ws_url()));
    let info = get(sim.local_addr(), "/fapi/v1/exchangeInfo").await;
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["symbols"][0]["symbol"], "SYN0USDT");
    assert_eq!(info["symbols"][0]["filters"][0]["tickSize"], "0.01");
    sim.shutdown().await;
}
