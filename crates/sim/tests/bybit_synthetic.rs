//! `raven sim --venue bybit_linear` seen by a client written from Bybit's v5 docs
//! ("Connect", "Orderbook", "Ticker", "Trade", "Get Instruments Info"), not from the
//! simulator's code:
//!
//! * a subscription is acknowledged, and a book topic starts with a `snapshot` whose
//!   `u` the `delta`s continue one by one (`u = previous u + 1`); a book built so never
//!   crosses, and a ticker's `bid1Price`/`ask1Price` is the book's touch;
//! * a resubscription (`unsubscribe`, `subscribe`) gets a fresh snapshot, equal to the
//!   book of a client that followed every delta up to that `u`;
//! * the faults: a deleted delta breaks `u`, a crossing level crosses the client's book
//!   and a resubscription recovers from both with a right snapshot; a malformed frame
//!   arrives and nothing is lost; drops, stalls, skipped trades and rate limits;
//! * the REST listing names every symbol with its tick and lot.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{closes_within, get, http, next_text, Ws};
use futures_util::SinkExt;
use raven_model::{Price, Qty};
use raven_sim::{Sim, SimArgs, SimVenue};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const PATH: &str = "/v5/public/linear";

fn args() -> SimArgs {
    SimArgs {
        venue: SimVenue::BybitLinear,
        symbols: 3,
        rate: 20_000,
        levels: 50,
        seed: 11,
        ..SimArgs::default()
    }
}

async fn connect(sim: &Sim) -> Ws {
    tokio_tungstenite::connect_async(sim.ws_url_for(PATH))
        .await
        .unwrap()
        .0
}

async fn send(ws: &mut Ws, op: &str, topics: &[String]) {
    let req = serde_json::json!({ "op": op, "args": topics });
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
}

async fn post_fault(sim: &Sim, body: &str) {
    let r = http(sim.local_addr(), "POST", "/sim/fault", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// One `orderbook.200` book, kept by the docs: a snapshot replaces it, a delta sets
/// sizes (`"0"` removes) and must carry the next `u`.
#[derive(Debug, Clone, Default, PartialEq)]
struct ClientBook {
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    u: Option<u64>,
}

/// What a book frame did to the client's book.
#[derive(Debug, PartialEq)]
enum Applied {
    Snapshot,
    Delta,
    /// `u` did not follow: the book is unusable until a new snapshot.
    Gap {
        expected: u64,
        got: u64,
    },
}

impl ClientBook {
    fn apply(&mut self, data: &Value, snapshot: bool) -> Applied {
        let u = data["u"].as_u64().unwrap();
        if snapshot {
            *self = ClientBook::default();
        } else {
            let expected = self.u.unwrap() + 1;
            if u != expected {
                return Applied::Gap { expected, got: u };
            }
        }
        for (side, key) in [(&mut self.bids, "b"), (&mut self.asks, "a")] {
            for l in data[key].as_array().unwrap() {
                let price = Price::parse(l[0].as_str().unwrap()).unwrap();
                let qty = Qty::parse(l[1].as_str().unwrap()).unwrap();
                if qty.is_zero() {
                    side.remove(&price);
                } else {
                    side.insert(price, qty);
                }
            }
        }
        self.u = Some(u);
        if snapshot {
            Applied::Snapshot
        } else {
            Applied::Delta
        }
    }

    fn best_bid(&self) -> Option<Price> {
        self.bids.keys().next_back().copied()
    }

    fn best_ask(&self) -> Option<Price> {
        self.asks.keys().next().copied()
    }

    fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b >= a)
    }
}

/// The next data frame (with a `topic`), skipping acks and pongs; panics on silence.
async fn next_data(ws: &mut Ws) -> Value {
    loop {
        let t = next_text(ws, Duration::from_secs(3))
            .await
            .expect("a frame");
        let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
        if v.get("topic").is_some() {
            return v;
        }
        assert_eq!(v["success"], true, "{t}");
    }
}

/// Reads frames of `topic` until its book reaches `u`, applying them; panics on a gap.
async fn follow_to(ws: &mut Ws, book: &mut ClientBook, topic: &str, u: u64) {
    while book.u.unwrap() < u {
        let v = next_data(ws).await;
        if v["topic"] == topic {
            assert_eq!(book.apply(&v["data"], false), Applied::Delta);
        }
    }
    assert_eq!(book.u, Some(u));
}

/// Reads until a snapshot of `topic` arrives; returns it.
async fn snapshot_of(ws: &mut Ws, topic: &str) -> Value {
    loop {
        let v = next_data(ws).await;
        if v["topic"] == topic && v["type"] == "snapshot" {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_continue_u_and_tickers_show_the_touch() {
    let sim = Sim::start(args()).await.unwrap();
    assert_eq!(sim.endpoints(), [PATH]);
    assert_eq!(sim.venue_ws_url(), Some(format!("{}{PATH}", sim.ws_url())));
    assert_eq!(sim.symbols(), ["SYN0USDT", "SYN1USDT", "SYN2USDT"]);
    let mut ws = connect(&sim).await;
    let topics: Vec<String> = ["orderbook.200", "tickers", "publicTrade"]
        .iter()
        .map(|c| format!("{c}.SYN1USDT"))
        .collect();
    ws.send(Message::Text(
        r#"{"op":"subscribe","args":["orderbook.200.SYN1USDT","tickers.SYN1USDT","publicTrade.SYN1USDT"],"req_id":"a1"}"#.into(),
    ))
    .await
    .unwrap();
    let ack: Value =
        serde_json::from_str(&next_text(&mut ws, Duration::from_secs(2)).await.unwrap()).unwrap();
    assert_eq!(
        (&ack["success"], &ack["op"], &ack["req_id"]),
        (
            &Value::from(true),
            &Value::from("subscribe"),
            &Value::from("a1")
        )
    );
    let mut book = ClientBook::default();
    let (mut deltas, mut tickers, mut trades) = (0, 0, 0);
    let mut ticker_snapshot = false;
    let mut trade_ids = std::collections::HashSet::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        let v = next_data(&mut ws).await;
        let topic = v["topic"].as_str().unwrap();
        assert!(v["ts"].as_u64().unwrap() > 1_600_000_000_000, "ts is ms");
        if topic == topics[0] {
            let snapshot = v["type"] == "snapshot";
            assert_eq!(
                snapshot,
                book.u.is_none(),
                "one snapshot, first: {}",
                v["type"]
            );
            assert_eq!(v["data"]["s"], "SYN1USDT");
            assert!(v["data"]["seq"].as_u64().is_some() && v["cts"].as_u64().is_some());
            let applied = book.apply(&v["data"], snapshot);
            assert!(!matches!(applied, Applied::Gap { .. }), "{applied:?}");
            assert!(!book.is_crossed(), "crossed after {v}");
            assert!(book.bids.len() <= 200 && book.asks.len() <= 200);
            deltas += usize::from(!snapshot);
        } else if topic == topics[1] {
            let d = &v["data"];
            if v["type"] == "snapshot" {
                ticker_snapshot = true;
                for field in ["markPrice", "indexPrice", "fundingRate", "nextFundingTime"] {
                    assert!(d[field].as_str().is_some(), "{field} in {v}");
                }
            }
            assert!(ticker_snapshot, "the ticker snapshot comes first");
            // A delta is sent right after the book change that moved the touch (the
            // snapshot is of the moment the subscription was read).
            if let Some(bid) = d["bid1Price"].as_str().filter(|_| v["type"] == "delta") {
                assert_eq!(Some(Price::parse(bid).unwrap()), book.best_bid(), "{v}");
                let ask = Price::parse(d["ask1Price"].as_str().unwrap()).unwrap();
                assert_eq!(Some(ask), book.best_ask());
                tickers += 1;
            }
        } else {
            assert_eq!(topic, topics[2]);
            let t = &v["data"][0];
            assert!(t["S"] == "Buy" || t["S"] == "Sell");
            Price::parse(t["p"].as_str().unwrap()).unwrap();
            assert!(trade_ids.insert(t["i"].as_str().unwrap().to_owned()));
            trades += 1;
        }
    }
    assert!(
        deltas > 500 && tickers > 20 && trades > 20,
        "{deltas} {tickers} {trades}"
    );
    let (bids, asks) = (book.bids.len(), book.asks.len());
    assert!(
        (25..=70).contains(&bids) && (25..=70).contains(&asks),
        "{bids}/{asks}"
    );
    // A ping is answered.
    ws.send(Message::Text(r#"{"op":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = loop {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        if !t.starts_with("{\"topic\"") {
            break t;
        }
    };
    let pong: Value = serde_json::from_str(&pong).unwrap();
    assert_eq!(
        (&pong["op"], &pong["ret_msg"]),
        (&Value::from("ping"), &Value::from("pong"))
    );
    sim.shutdown().await;
}

/// A follower that sees every delta, and a client that resubscribes: each fresh
/// snapshot equals the follower's book at its `u`, and the deltas continue it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscription_gets_a_snapshot_that_joins() {
    let sim = Sim::start(args()).await.unwrap();
    let topic = "orderbook.200.SYN2USDT".to_owned();
    let topics = [topic.clone()];
    let mut follower = connect(&sim).await;
    send(&mut follower, "subscribe", &topics).await;
    let mut reference = ClientBook::default();
    let snap = snapshot_of(&mut follower, &topic).await;
    reference.apply(&snap["data"], true);
    let mut ws = connect(&sim).await;
    for round in 0..3 {
        send(&mut ws, "subscribe", &topics).await;
        let snap = snapshot_of(&mut ws, &topic).await;
        let mut book = ClientBook::default();
        book.apply(&snap["data"], true);
        follow_to(&mut follower, &mut reference, &topic, book.u.unwrap()).await;
        assert_eq!(book, reference, "round {round}");
        for _ in 0..200 {
            let v = next_data(&mut ws).await;
            assert_eq!(book.apply(&v["data"], false), Applied::Delta);
        }
        send(&mut ws, "unsubscribe", &topics).await;
        // What was in flight before the unsubscription still comes; then nothing.
        while let Some(t) = next_text(&mut ws, Duration::from_millis(300)).await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v.get("topic").is_some() {
                assert_eq!(book.apply(&v["data"], false), Applied::Delta);
            }
        }
    }
    // Three book snapshots for `ws`, one for the follower.
    assert_eq!(sim.stats().snapshots_sent, 4);
    sim.shutdown().await;
}

/// Follows `topic` on `ws` until the book breaks (a gap or a crossed book); returns
/// how it broke and the book.
async fn until_broken(ws: &mut Ws, book: &mut ClientBook, topic: &str) -> (Applied, Value) {
    loop {
        let v = next_data(ws).await;
        if v["topic"] != topic {
            continue;
        }
        let applied = book.apply(&v["data"], v["type"] == "snapshot");
        if matches!(applied, Applied::Gap { .. }) || book.is_crossed() {
            return (applied, v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_and_crossed_books_are_detected_and_a_resubscription_recovers() {
    let sim = Sim::start(args()).await.unwrap();
    let topic = "orderbook.200.SYN0USDT".to_owned();
    let topics = [topic.clone()];
    let mut ws = connect(&sim).await;
    send(&mut ws, "subscribe", &topics).await;
    let mut book = ClientBook::default();
    let snap = snapshot_of(&mut ws, &topic).await;
    book.apply(&snap["data"], true);
    for _ in 0..100 {
        let v = next_data(&mut ws).await;
        assert_eq!(book.apply(&v["data"], false), Applied::Delta);
    }

    // A deleted delta: the next one skips a `u`.
    post_fault(&sim, r#"{"fault":"gap","symbol":"syn0usdt"}"#).await;
    let (applied, _) = until_broken(&mut ws, &mut book, &topic).await;
    let Applied::Gap { expected, got } = applied else {
        panic!("{applied:?}")
    };
    assert_eq!(got, expected + 1);

    // Resync by resubscribing; the book is right again.
    send(&mut ws, "unsubscribe", &topics).await;
    send(&mut ws, "subscribe", &topics).await;
    let snap = snapshot_of(&mut ws, &topic).await;
    book.apply(&snap["data"], true);
    let mut follower = connect(&sim).await;
    send(&mut follower, "subscribe", &topics).await;
    let mut reference = ClientBook::default();
    let f_snap = snapshot_of(&mut follower, &topic).await;
    reference.apply(&f_snap["data"], true);
    follow_to(&mut ws, &mut book, &topic, reference.u.unwrap()).await;
    assert_eq!(book, reference, "after the resync");

    // A crossing level: one delta, in the venue's scale, at the simulator's best ask,
    // which the simulator's own book does not take.
    post_fault(
        &sim,
        r#"{"fault":"cross","symbol":"SYN0USDT","endpoint":"/v5/public/linear"}"#,
    )
    .await;
    let (applied, frame) = until_broken(&mut ws, &mut book, &topic).await;
    assert_eq!(applied, Applied::Delta);
    let best_ask = book.best_ask().unwrap();
    let crossing: Vec<&Value> = frame["data"]["b"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| Price::parse(l[0].as_str().unwrap()).unwrap() >= best_ask)
        .collect();
    assert_eq!(crossing.len(), 1, "{frame}");
    let price = crossing[0][0].as_str().unwrap();
    assert_eq!(price.split('.').nth(1).map(str::len), Some(2), "{frame}");
    assert_eq!(Price::parse(price).unwrap(), best_ask, "at the best ask");
    // The follower saw the same frame; without the extra bid its book is not crossed.
    follow_to(&mut follower, &mut reference, &topic, book.u.unwrap()).await;
    assert_eq!(reference, book);
    let mut without = reference.clone();
    without.bids.remove(&Price::parse(price).unwrap());
    assert!(!without.is_crossed());
    // The resync's snapshot: the simulator's book, without the level.
    send(&mut ws, "unsubscribe", &topics).await;
    send(&mut ws, "subscribe", &topics).await;
    let snap = snapshot_of(&mut ws, &topic).await;
    let mut fresh = ClientBook::default();
    fresh.apply(&snap["data"], true);
    assert!(!fresh.is_crossed());
    let u = fresh.u.unwrap();
    // The follower, at that `u`, minus the crossing bid (unless a later delta set it).
    let mut touched = false;
    while reference.u.unwrap() < u {
        let v = next_data(&mut follower).await;
        assert_eq!(reference.apply(&v["data"], false), Applied::Delta);
        touched |= v["data"]["b"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l[0] == price);
    }
    if !touched {
        reference.bids.remove(&Price::parse(price).unwrap());
    }
    assert_eq!(fresh, reference);
    let stats = sim.stats();
    assert_eq!((stats.faults.gaps, stats.faults.crossed), (1, 1));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_is_inserted_and_nothing_is_lost() {
    let sim = Sim::start(args()).await.unwrap();
    let topic = "orderbook.200.SYN1USDT".to_owned();
    let mut ws = connect(&sim).await;
    send(&mut ws, "subscribe", std::slice::from_ref(&topic)).await;
    let mut book = ClientBook::default();
    let snap = snapshot_of(&mut ws, &topic).await;
    book.apply(&snap["data"], true);
    post_fault(
        &sim,
        r#"{"fault":"malformed","endpoint":"/v5/public/linear"}"#,
    )
    .await;
    let mut malformed = Vec::new();
    for _ in 0..300 {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        match serde_json::from_str::<Value>(&t) {
            Err(_) => malformed.push(t),
            Ok(v) => assert_eq!(book.apply(&v["data"], false), Applied::Delta),
        }
    }
    assert_eq!(malformed.len(), 1, "{malformed:?}");
    assert!(malformed[0].starts_with("{\"topic\":"));
    assert_eq!(sim.stats().faults.malformed, 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_stalls_trade_gaps_and_rate_limits() {
    let sim = Sim::start(args()).await.unwrap();
    let topic = "orderbook.200.SYN1USDT".to_owned();
    let topics = [topic.clone(), "publicTrade.SYN1USDT".to_owned()];
    let mut ws = connect(&sim).await;
    send(&mut ws, "subscribe", &topics).await;
    snapshot_of(&mut ws, &topic).await;
    post_fault(&sim, r#"{"fault":"trade_gap","symbol":"SYN1USDT"}"#).await;
    // Trades keep coming after the skipped one.
    let mut trades = 0;
    while trades < 5 {
        trades += usize::from(next_data(&mut ws).await["topic"] == topics[1]);
    }
    assert_eq!(sim.stats().faults.trade_gaps, 1);

    post_fault(&sim, r#"{"fault":"stall","seconds":0.8}"#).await;
    // Frames already in flight may still arrive; then silence, then the stream again.
    let start = tokio::time::Instant::now();
    let mut arrivals = vec![start];
    while start.elapsed() < Duration::from_millis(1200) {
        next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        arrivals.push(tokio::time::Instant::now());
    }
    let longest = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest >= Duration::from_millis(600), "{longest:?}");

    post_fault(&sim, r#"{"fault":"drop"}"#).await;
    assert!(closes_within(&mut ws, Duration::from_secs(2)).await);
    // A new connection starts again with a snapshot.
    let mut ws = connect(&sim).await;
    send(&mut ws, "subscribe", &topics).await;
    let snap = snapshot_of(&mut ws, &topic).await;
    assert_eq!(snap["data"]["s"], "SYN1USDT");

    post_fault(&sim, r#"{"fault":"rate_limit","count":1}"#).await;
    let path = "/v5/market/instruments-info?category=linear";
    let r = get(sim.local_addr(), path).await;
    assert_eq!((r.status, r.body.as_str()), (403, "access too frequent"));
    assert_eq!(get(sim.local_addr(), path).await.status, 200);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.faults.stalls,
            stats.faults.drops,
            stats.faults.rate_limited
        ),
        (1, 1, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_listing_names_every_symbol_with_its_steps() {
    let sim = Sim::start(SimArgs {
        symbols: 5,
        ..args()
    })
    .await
    .unwrap();
    let r = get(
        sim.local_addr(),
        "/v5/market/instruments-info?category=linear&limit=1000",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (&v["retCode"], &v["result"]["category"]),
        (&Value::from(0), &Value::from("linear"))
    );
    let list = v["result"]["list"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|i| i["symbol"].as_str().unwrap()).collect();
    assert_eq!(names, sim.symbols());
    for item in list {
        assert_eq!(item["contractType"], "LinearPerpetual");
        assert_eq!(item["status"], "Trading");
        assert_eq!(item["settleCoin"], "USDT");
        assert_eq!(item["priceFilter"]["tickSize"], "0.01");
        assert_eq!(item["lotSizeFilter"]["qtyStep"], "0.001");
    }
    assert_eq!(v["result"]["nextPageCursor"], "");
    let time: Value =
        serde_json::from_str(&get(sim.local_addr(), "/v5/market/time").await.body).unwrap();
    assert_eq!(time["retCode"], 0);
    assert_eq!(
        get(sim.local_addr(), "/api/v3/depth?symbol=SYN0USDT")
            .await
            .status,
        404
    );
    // A side never outgrows the 200-level topic.
    assert!(Sim::start(SimArgs {
        levels: 161,
        ..args()
    })
    .await
    .is_err());
    sim.shutdown().await;
}
