//! Replay of every non-Binance capture on its venue's own protocol, seen by clients
//! written here from the venues' documentation (not from the simulator's code):
//!
//! * clients connect to the recorded endpoints as recorded (Bybit: linear and spot;
//!   Kraken: three connections to `/`), send the recorded subscribe frames, and receive
//!   every recorded market-data frame of their keys, in order, byte for byte (Coinbase:
//!   except `sequence_num`, which is renumbered per connection and must be contiguous);
//!   the acks are the venue's (Kraken's and OKX's equal the recorded ones);
//! * a client subscribing to a book in the middle of the replay gets a snapshot that
//!   joins the recorded deltas (every later OKX/Kraken checksum matches, Bybit's `u`
//!   continues) and ends equal to the book of a client that saw everything, and to the
//!   simulator's own book;
//! * each fault does what it says: a deleted delta is missing and detected by the
//!   venue's own rule, a corrupted checksum fails exactly once, rate limits answer in
//!   the venue's shape, drops close connections and a resubscription resyncs, a stall
//!   pauses the replay without losing a frame;
//! * recorded REST answers are found by path and parameters in any order;
//! * a malformed frame is inserted before a connection's next market-data frame and
//!   nothing recorded is lost; a crossing level makes the client's book crossed (a bid
//!   at the best ask, written like the venue's levels) and a resubscription's snapshot
//!   is the simulator's book, which never took the level.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{capture, closes_within, get, http, next_text, Ws};
use futures_util::SinkExt;
use raven_model::book::OrderBook;
use raven_model::{BookLevels, Level, Price, Qty};
use raven_sim::capture::{Capture, CaptureEvent};
use raven_sim::{Sim, SimArgs};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Venue {
    Coinbase,
    Bybit,
    Okx,
    Kraken,
}

impl Venue {
    fn file(self) -> &'static str {
        match self {
            Venue::Coinbase => "COINBASE.jsonl.zst",
            Venue::Bybit => "BYBIT.jsonl.zst",
            Venue::Okx => "OKX.jsonl.zst",
            Venue::Kraken => "KRAKEN.jsonl.zst",
        }
    }

    /// Not market data: acks, pongs, status, heartbeats (Kraken's), as each venue
    /// documents its control messages.
    fn is_control(self, text: &str) -> bool {
        let v: Value = serde_json::from_str(text).unwrap();
        match self {
            Venue::Coinbase => v["channel"] == "subscriptions",
            Venue::Bybit => v.get("topic").is_none(),
            Venue::Okx => v.get("event").is_some(),
            Venue::Kraken => v.is_object(),
        }
    }

    /// Book depth the venue's recorded book channel keeps.
    fn depth(self) -> Option<usize> {
        match self {
            Venue::Coinbase => None,
            Venue::Bybit => Some(200),
            Venue::Okx => Some(400),
            Venue::Kraken => Some(1000),
        }
    }

    /// A speed at which the replay lasts a few seconds.
    fn speed(self) -> f64 {
        match self {
            Venue::Coinbase => 6.0,
            Venue::Bybit => 10.0,
            Venue::Okx => 3.0,
            Venue::Kraken => 8.0,
        }
    }
}

/// One recorded WebSocket connection.
struct RecordedConn {
    path: String,
    sends: Vec<String>,
    data: Vec<String>,
    controls: Vec<String>,
}

fn path_of(addr: &str) -> String {
    let rest = addr.split_once("://").unwrap().1;
    match rest.find('/') {
        Some(i) => rest[i..].to_owned(),
        None => "/".to_owned(),
    }
}

fn recorded_conns(venue: Venue, c: &Capture) -> Vec<RecordedConn> {
    let mut order: Vec<String> = Vec::new();
    let mut conns: BTreeMap<String, RecordedConn> = BTreeMap::new();
    for e in &c.events {
        match e {
            CaptureEvent::Connect { conn, addr, .. } => {
                order.push(conn.clone());
                conns.insert(
                    conn.clone(),
                    RecordedConn {
                        path: path_of(addr),
                        sends: Vec::new(),
                        data: Vec::new(),
                        controls: Vec::new(),
                    },
                );
            }
            CaptureEvent::Send { conn, data, .. } => {
                conns.get_mut(conn).unwrap().sends.push(data.clone())
            }
            CaptureEvent::Recv { conn, data, .. } => {
                let rc = conns.get_mut(conn).unwrap();
                if venue.is_control(data) {
                    rc.controls.push(data.clone());
                } else {
                    rc.data.push(data.clone());
                }
            }
            CaptureEvent::Http { .. } => {}
        }
    }
    order.iter().map(|c| conns.remove(c).unwrap()).collect()
}

/// Coinbase frames with their `sequence_num` blanked, and the number.
fn split_seq(text: &str) -> (String, Option<u64>) {
    let mut v: Value = serde_json::from_str(text).unwrap();
    let seq = v.get("sequence_num").and_then(Value::as_u64);
    if seq.is_some() {
        v["sequence_num"] = Value::from(0);
    }
    (v.to_string(), seq)
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// What one client connection received.
#[derive(Default)]
struct Received {
    data: Vec<String>,
    controls: Vec<String>,
    /// Frames that are not JSON, each with the number of market-data frames before it.
    malformed: Vec<(usize, String)>,
}

/// Reads `ws` until `want` market-data frames arrived, or no market data came for
/// 10 s (Kraken's heartbeats keep coming).
async fn read_data(venue: Venue, mut ws: Ws, want: usize) -> (Ws, Received) {
    let mut got = Received::default();
    let mut last_data = tokio::time::Instant::now();
    while got.data.len() < want && last_data.elapsed() < Duration::from_secs(10) {
        let Some(t) = next_text(&mut ws, Duration::from_secs(10)).await else {
            break;
        };
        if serde_json::from_str::<Value>(&t).is_err() {
            got.malformed.push((got.data.len(), t));
        } else if venue.is_control(&t) {
            got.controls.push(t);
        } else {
            got.data.push(t);
            last_data = tokio::time::Instant::now();
        }
    }
    (ws, got)
}

fn args(venue: Venue, speed: f64) -> SimArgs {
    SimArgs {
        replay: Some(capture(venue.file())),
        speed,
        start_grace: 30.0,
        ..SimArgs::default()
    }
}

async fn post_fault(sim: &Sim, body: &str) -> u16 {
    http(sim.local_addr(), "POST", "/sim/fault", body)
        .await
        .status
}

/// Opens the recorded connections, sends the recorded subscriptions and reads until
/// each connection has `expected[i]` market-data frames. Returns what each received.
async fn play_as_recorded(
    sim: &Sim,
    venue: Venue,
    conns: &[RecordedConn],
    expected: &[usize],
) -> Vec<Received> {
    play_with_fault(sim, venue, conns, expected, None).await
}

/// [`play_as_recorded`], posting `fault` once every connection is open and before any
/// subscribes (so before the replay starts).
async fn play_with_fault(
    sim: &Sim,
    venue: Venue,
    conns: &[RecordedConn],
    expected: &[usize],
    fault: Option<&str>,
) -> Vec<Received> {
    let mut sockets = Vec::new();
    for rc in conns {
        sockets.push(connect(&sim.ws_url_for(&rc.path)).await);
    }
    if let Some(body) = fault {
        assert_eq!(post_fault(sim, body).await, 200, "{body}");
    }
    let mut tasks = Vec::new();
    for ((rc, &want), mut ws) in conns.iter().zip(expected).zip(sockets) {
        for s in &rc.sends {
            ws.send(Message::Text(s.as_str().into())).await.unwrap();
        }
        tasks.push(tokio::spawn(read_data(venue, ws, want)));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (mut ws, got) = t.await.unwrap();
        assert!(sim.replay_finished().await);
        // Nothing but control frames (Kraken heartbeats) after the recording's end.
        while let Some(t) = next_text(&mut ws, Duration::from_millis(300)).await {
            assert!(venue.is_control(&t), "frame after the end: {t:.200}");
        }
        out.push(got);
    }
    out
}

/// Compares received market data with the recorded frames, Coinbase's numbering
/// aside, and checks that numbering: contiguous from 0 over all messages, with
/// `holes` (deleted frames) allowed.
fn assert_frames(venue: Venue, got: &Received, want: &[String], holes: usize) {
    assert_eq!(got.data.len(), want.len());
    if venue != Venue::Coinbase {
        for (i, (g, w)) in got.data.iter().zip(want).enumerate() {
            assert_eq!(g, w, "frame {i}");
        }
        return;
    }
    for (i, (g, w)) in got.data.iter().zip(want).enumerate() {
        assert_eq!(split_seq(g).0, split_seq(w).0, "frame {i}");
    }
    let mut seqs: Vec<u64> = got
        .data
        .iter()
        .chain(&got.controls)
        .map(|t| split_seq(t).1.unwrap())
        .collect();
    seqs.sort_unstable();
    let expected_last = (seqs.len() + holes) as u64 - 1;
    assert_eq!(seqs[0], 0);
    assert_eq!(*seqs.last().unwrap(), expected_last, "numbering");
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        got.data.len() + got.controls.len(),
        "numbers repeat"
    );
}

async fn every_recorded_frame_arrives(venue: Venue) {
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let sim = Sim::start(args(venue, 0.0)).await.unwrap();
    let mut paths: Vec<String> = conns.iter().map(|c| c.path.clone()).collect();
    paths.dedup();
    assert_eq!(sim.endpoints(), paths);
    let expected: Vec<usize> = conns.iter().map(|c| c.data.len()).collect();
    let received = play_as_recorded(&sim, venue, &conns, &expected).await;
    for (rc, got) in conns.iter().zip(&received) {
        assert_frames(venue, got, &rc.data, 0);
        check_acks(venue, rc, got);
    }
    let stats = sim.stats();
    assert_eq!(stats.venue, c.exchange().unwrap());
    assert_eq!(stats.frames_sent as usize, expected.iter().sum::<usize>());
    assert_eq!(
        stats.snapshots_sent, 0,
        "every book started with its recorded snapshot"
    );
    sim.shutdown().await;
}

/// The simulator's acks against the recorded ones.
fn check_acks(venue: Venue, rc: &RecordedConn, got: &Received) {
    match venue {
        // Alphabetical objects with the recorded channel ids: equal, but for the
        // greeting's connection id; heartbeats come as the connection idles.
        Venue::Kraken => {
            let status = |t: &&String| t.contains("subscriptionStatus");
            let got_acks: Vec<&String> = got.controls.iter().filter(status).collect();
            let want: Vec<&String> = rc.controls.iter().filter(status).collect();
            assert_eq!(got_acks, want);
            let greeting: Value = serde_json::from_str(&got.controls[0]).unwrap();
            assert_eq!(greeting["event"], "systemStatus");
            assert_eq!(greeting["version"], "1.8.3");
            assert!(got.controls.iter().all(|t| status(&t)
                || t.contains("systemStatus")
                || t == r#"{"event":"heartbeat"}"#));
        }
        Venue::Okx => assert_eq!(got.controls, rc.controls),
        // The recorded replies with the simulator's own connection id.
        Venue::Bybit => {
            assert_eq!(got.controls.len(), rc.controls.len());
            for (g, w) in got.controls.iter().zip(&rc.controls) {
                let mut g: Value = serde_json::from_str(g).unwrap();
                let mut w: Value = serde_json::from_str(w).unwrap();
                assert!(g["conn_id"].as_str().unwrap().starts_with("raven-sim-"));
                g["conn_id"] = Value::Null;
                w["conn_id"] = Value::Null;
                assert_eq!(g, w);
            }
        }
        // One `subscriptions` message per request, the last listing everything.
        Venue::Coinbase => {
            assert_eq!(got.controls.len(), rc.sends.len());
            let last: Value = serde_json::from_str(got.controls.last().unwrap()).unwrap();
            let subs = &last["events"][0]["subscriptions"];
            for ch in ["market_trades", "candles", "ticker", "level2"] {
                assert_eq!(subs[ch], serde_json::json!(["BTC-USD", "ETH-USD"]), "{ch}");
            }
            assert_eq!(subs["heartbeats"], serde_json::json!(["heartbeats"]));
        }
    }
}

#[tokio::test]
async fn coinbase_frames_arrive_in_order_renumbered() {
    every_recorded_frame_arrives(Venue::Coinbase).await;
}

#[tokio::test]
async fn bybit_linear_and_spot_frames_arrive_in_order() {
    every_recorded_frame_arrives(Venue::Bybit).await;
}

#[tokio::test]
async fn okx_frames_arrive_in_order() {
    every_recorded_frame_arrives(Venue::Okx).await;
}

#[tokio::test]
async fn kraken_three_connections_get_their_frames_in_order() {
    every_recorded_frame_arrives(Venue::Kraken).await;
}

// ---------------------------------------------------------------------------------
// A client-side book, written from the venues' documentation.

/// One book frame as a client reads it.
#[derive(Debug)]
struct BookMsg {
    /// (channel, symbol) as the frame names them.
    key: (String, String),
    snapshot: bool,
    /// (bid side, price, size) in frame order.
    levels: Vec<(bool, String, String)>,
    checksum: Option<i64>,
    update_id: Option<u64>,
}

fn book_msg(venue: Venue, text: &str) -> Option<BookMsg> {
    let v: Value = serde_json::from_str(text).ok()?;
    let pair = |l: &Value| {
        (
            l[0].as_str().unwrap().to_owned(),
            l[1].as_str().unwrap().to_owned(),
        )
    };
    let mut levels = Vec::new();
    let mut push = |bid: bool, side: &Value| {
        for l in side.as_array().unwrap() {
            let (p, q) = pair(l);
            levels.push((bid, p, q));
        }
    };
    match venue {
        Venue::Okx => {
            if v["arg"]["channel"] != "books" || v.get("action").is_none() {
                return None;
            }
            let d = &v["data"][0];
            push(true, &d["bids"]);
            push(false, &d["asks"]);
            Some(BookMsg {
                key: ("books".into(), v["arg"]["instId"].as_str()?.into()),
                snapshot: v["action"] == "snapshot",
                levels,
                checksum: d["checksum"].as_i64(),
                update_id: None,
            })
        }
        Venue::Kraken => {
            let a = v.as_array()?;
            let channel = a[a.len() - 2].as_str()?;
            if !channel.starts_with("book-") {
                return None;
            }
            let mut snapshot = false;
            let mut checksum = None;
            for part in &a[1..a.len() - 2] {
                for (k, side) in part.as_object().unwrap() {
                    match k.as_str() {
                        "as" | "bs" => {
                            snapshot = true;
                            push(k == "bs", side);
                        }
                        "a" | "b" => push(k == "b", side),
                        "c" => checksum = side.as_str().unwrap().parse().ok(),
                        _ => panic!("unknown book field {k}"),
                    }
                }
            }
            Some(BookMsg {
                key: (channel.into(), a[a.len() - 1].as_str()?.into()),
                snapshot,
                levels,
                checksum,
                update_id: None,
            })
        }
        Venue::Bybit => {
            let topic = v["topic"].as_str()?;
            if !topic.starts_with("orderbook.") {
                return None;
            }
            let (channel, symbol) = topic.rsplit_once('.').unwrap();
            push(true, &v["data"]["b"]);
            push(false, &v["data"]["a"]);
            let u = v["data"]["u"].as_u64();
            Some(BookMsg {
                key: (channel.into(), symbol.into()),
                snapshot: v["type"] == "snapshot" || u == Some(1),
                levels,
                checksum: None,
                update_id: u,
            })
        }
        Venue::Coinbase => {
            if v["channel"] != "l2_data" {
                return None;
            }
            let e = &v["events"][0];
            for u in e["updates"].as_array().unwrap() {
                levels.push((
                    u["side"] == "bid",
                    u["price_level"].as_str().unwrap().to_owned(),
                    u["new_quantity"].as_str().unwrap().to_owned(),
                ));
            }
            Some(BookMsg {
                key: ("l2_data".into(), e["product_id"].as_str()?.into()),
                snapshot: e["type"] == "snapshot",
                levels,
                checksum: None,
                update_id: None,
            })
        }
    }
}

/// Levels as the exchange printed them, ordered by exact price.
#[derive(Debug, Default, Clone, PartialEq)]
struct ClientBook {
    bids: BTreeMap<Price, (String, String)>,
    asks: BTreeMap<Price, (String, String)>,
}

impl ClientBook {
    fn apply(&mut self, m: &BookMsg, depth: Option<usize>) {
        if m.snapshot {
            *self = ClientBook::default();
        }
        for (bid, p, q) in &m.levels {
            let side = if *bid { &mut self.bids } else { &mut self.asks };
            let price = Price::parse(p).unwrap();
            if Qty::parse(q).unwrap().is_zero() {
                side.remove(&price);
            } else {
                side.insert(price, (p.clone(), q.clone()));
            }
        }
        if let Some(d) = depth {
            while self.bids.len() > d {
                self.bids.pop_first();
            }
            while self.asks.len() > d {
                self.asks.pop_last();
            }
        }
    }

    fn best_bids(&self) -> impl Iterator<Item = &(String, String)> {
        self.bids.values().rev()
    }

    fn best_asks(&self) -> impl Iterator<Item = &(String, String)> {
        self.asks.values()
    }

    /// The venue's checksum of this book, as its docs define it.
    fn checksum(&self, venue: Venue) -> i64 {
        match venue {
            Venue::Okx => {
                let bids: Vec<_> = self.best_bids().take(25).collect();
                let asks: Vec<_> = self.best_asks().take(25).collect();
                let mut parts = Vec::new();
                for i in 0..25 {
                    for l in [bids.get(i), asks.get(i)].into_iter().flatten() {
                        parts.push(format!("{}:{}", l.0, l.1));
                    }
                }
                i64::from(crc32(parts.join(":").as_bytes()) as i32)
            }
            Venue::Kraken => {
                let f = |s: &str| s.replace('.', "").trim_start_matches('0').to_owned();
                let text: String = self
                    .best_asks()
                    .take(10)
                    .chain(self.best_bids().take(10))
                    .map(|(p, q)| f(p) + &f(q))
                    .collect();
                i64::from(crc32(text.as_bytes()))
            }
            Venue::Bybit | Venue::Coinbase => unreachable!("no checksum"),
        }
    }

    fn same_as(&self, book: &OrderBook) -> bool {
        let level = |(p, q): &(String, String)| Level {
            price: Price::parse(p).unwrap(),
            qty: Qty::parse(q).unwrap(),
        };
        let mut mine = OrderBook::new();
        mine.apply_snapshot(
            &BookLevels {
                bids: self.best_bids().map(level).collect(),
                asks: self.best_asks().map(level).collect(),
                first_update_id: 0,
                last_update_id: 0,
            },
            None,
        )
        .unwrap();
        let text = |b: &OrderBook| {
            let t = |l: Level| (l.price.to_string(), l.qty.to_string());
            (
                b.bids().map(t).collect::<Vec<_>>(),
                b.asks().map(t).collect::<Vec<_>>(),
            )
        };
        text(&mine) == text(book)
    }
}

/// Bitwise CRC-32 (IEEE), written independently of the simulator's table version.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Per venue: the late subscriber's endpoint, subscribe frame, frame key and the
/// simulator's (channel, symbol) for `Sim::book`.
fn late_book(
    venue: Venue,
) -> (
    &'static str,
    &'static str,
    (&'static str, &'static str),
    (&'static str, &'static str),
) {
    match venue {
        Venue::Okx => (
            "/ws/v5/public",
            r#"{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}"#,
            ("books", "BTC-USDT"),
            ("books", "BTC-USDT"),
        ),
        Venue::Kraken => (
            "/",
            r#"{"event":"subscribe","pair":["XMR/USD"],"subscription":{"name":"book","depth":1000}}"#,
            ("book-1000", "XMR/USD"),
            ("book-1000", "XMR/USD"),
        ),
        Venue::Bybit => (
            "/v5/public/linear",
            r#"{"op":"subscribe","args":["orderbook.200.BTCUSDT"],"req_id":"late"}"#,
            ("orderbook.200", "BTCUSDT"),
            ("orderbook.200", "BTCUSDT"),
        ),
        Venue::Coinbase => (
            "/",
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}"#,
            ("l2_data", "BTC-USD"),
            ("level2", "BTC-USD"),
        ),
    }
}

/// Applies every book frame of `key` in `frames` (a client that saw everything).
fn book_of(venue: Venue, frames: &[String], key: (&str, &str)) -> ClientBook {
    let mut book = ClientBook::default();
    for t in frames {
        if let Some(m) = book_msg(venue, t).filter(|m| m.key == (key.0.into(), key.1.into())) {
            book.apply(&m, venue.depth());
        }
    }
    book
}

async fn late_subscriber_joins(venue: Venue) {
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let (path, subscribe, key, sim_key) = late_book(venue);
    let sim = Sim::start(args(venue, venue.speed())).await.unwrap();
    let expected: Vec<usize> = conns.iter().map(|c| c.data.len()).collect();
    let sim_ref = &sim;
    let conns_ref = &conns;
    let everything = async move { play_as_recorded(sim_ref, venue, conns_ref, &expected).await };
    let late = async {
        // Once the recorded snapshot has played, a new subscriber needs one written
        // for it.
        while sim.book(path, sim_key.0, sim_key.1).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut ws = connect(&sim.ws_url_for(path)).await;
        ws.send(Message::Text(subscribe.into())).await.unwrap();
        let mut book = ClientBook::default();
        let (mut snapshots, mut deltas, mut checked) = (0, 0, 0);
        let mut last_u: Option<u64> = None;
        let mut seqs = Vec::new();
        let (mut snapshot_book, mut late_deltas) = (ClientBook::default(), Vec::new());
        // Until no book frame came for 2 s (Kraken's heartbeats keep coming).
        let mut last_book = tokio::time::Instant::now();
        while last_book.elapsed() < Duration::from_secs(2) {
            let Some(t) = next_text(&mut ws, Duration::from_secs(2)).await else {
                break;
            };
            if venue == Venue::Coinbase {
                seqs.push(split_seq(&t).1.unwrap());
            }
            let Some(m) = book_msg(venue, &t) else {
                continue;
            };
            last_book = tokio::time::Instant::now();
            assert_eq!(m.key, (key.0.to_owned(), key.1.to_owned()));
            if snapshots == 0 {
                assert!(m.snapshot, "the first book frame is a snapshot");
            }
            if m.snapshot {
                snapshots += 1;
            } else {
                deltas += 1;
                late_deltas.push(if venue == Venue::Coinbase {
                    split_seq(&t).0
                } else {
                    t.clone()
                });
            }
            book.apply(&m, venue.depth());
            if m.snapshot {
                snapshot_book = book.clone();
            }
            if let Some(expected) = m.checksum {
                assert_eq!(
                    book.checksum(venue),
                    expected,
                    "checksum after {deltas} deltas"
                );
                checked += 1;
            }
            if let Some(u) = m.update_id {
                if let Some(prev) = last_u.filter(|_| !m.snapshot) {
                    assert_eq!(u, prev + 1, "Bybit u continues the snapshot's");
                }
                last_u = Some(u);
            }
        }
        assert_eq!(snapshots, 1);
        assert!(deltas > 5, "joined too late: {deltas} deltas");
        if matches!(venue, Venue::Okx | Venue::Kraken) {
            assert_eq!(checked, deltas + usize::from(venue == Venue::Okx));
        }
        if venue == Venue::Coinbase {
            assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
        }
        (book, snapshot_book, late_deltas)
    };
    let (received, (late_book, snapshot_book, late_deltas)) = tokio::join!(everything, late);
    // Bybit serves BTCUSDT on two endpoints: the book of the late one's.
    let all: Vec<String> = received
        .into_iter()
        .zip(&conns)
        .filter(|(_, rc)| rc.path == path)
        .flat_map(|(r, _)| r.data)
        .collect();
    let full = book_of(venue, &all, key);
    assert_eq!(late_book, full, "late subscriber's book");
    // The deltas after the snapshot are exactly the recorded ones that followed it:
    // the snapshot is the book of every recorded frame before them.
    let of_key: Vec<&String> = all
        .iter()
        .filter(|t| book_msg(venue, t).is_some_and(|m| m.key == (key.0.into(), key.1.into())))
        .collect();
    let start = of_key.len() - late_deltas.len();
    let tail: Vec<String> = of_key[start..]
        .iter()
        .map(|t| {
            if venue == Venue::Coinbase {
                split_seq(t).0
            } else {
                (*t).clone()
            }
        })
        .collect();
    assert_eq!(late_deltas, tail);
    let before: Vec<String> = of_key[..start].iter().map(|t| (*t).clone()).collect();
    assert_eq!(snapshot_book, book_of(venue, &before, key), "snapshot");
    let sim_book = sim.book(path, sim_key.0, sim_key.1).unwrap();
    assert!(full.same_as(&sim_book), "simulator's book");
    assert_eq!(sim.stats().snapshots_sent, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn okx_late_book_snapshot_joins_the_checksums() {
    late_subscriber_joins(Venue::Okx).await;
}

#[tokio::test]
async fn kraken_late_book_snapshot_joins_the_checksums() {
    late_subscriber_joins(Venue::Kraken).await;
}

#[tokio::test]
async fn bybit_late_book_snapshot_continues_u() {
    late_subscriber_joins(Venue::Bybit).await;
}

#[tokio::test]
async fn coinbase_late_book_snapshot_joins_and_numbers_continue() {
    late_subscriber_joins(Venue::Coinbase).await;
}

// ---------------------------------------------------------------------------------
// Faults.

/// Index, among `frames`, of the first book delta of `key` (with a checksum if asked).
fn first_delta(venue: Venue, frames: &[String], key: (&str, &str), with_checksum: bool) -> usize {
    frames
        .iter()
        .position(|t| {
            book_msg(venue, t).is_some_and(|m| {
                !m.snapshot
                    && m.key == (key.0.into(), key.1.into())
                    && (!with_checksum || m.checksum.is_some())
            })
        })
        .unwrap()
}

/// The client's verdict on one book of a stream: deltas whose checksum failed, and
/// sequence jumps (Bybit `u`).
fn verdict(venue: Venue, frames: &[String], key: (&str, &str)) -> (usize, usize) {
    let mut book = ClientBook::default();
    let (mut bad_checksums, mut jumps) = (0, 0);
    let mut last_u = None;
    for t in frames {
        let Some(m) = book_msg(venue, t).filter(|m| m.key == (key.0.into(), key.1.into())) else {
            continue;
        };
        book.apply(&m, venue.depth());
        if m.checksum.is_some_and(|c| c != book.checksum(venue)) {
            bad_checksums += 1;
        }
        if let (Some(u), Some(prev)) = (m.update_id, last_u) {
            if !m.snapshot && u != prev + 1 {
                jumps += 1;
            }
        }
        last_u = m.update_id;
    }
    (bad_checksums, jumps)
}

/// The recorded connection carrying `key` on `path`.
fn conn_of(venue: Venue, conns: &[RecordedConn], path: &str, key: (&str, &str)) -> usize {
    conns
        .iter()
        .position(|c| {
            c.path == path
                && c.data.iter().any(|t| {
                    book_msg(venue, t).is_some_and(|m| m.key == (key.0.into(), key.1.into()))
                })
        })
        .unwrap()
}

async fn deleted_delta_is_detected(venue: Venue, symbol: &str, endpoint: &str) {
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let (_, _, key, _) = late_book(venue);
    let key = (key.0, symbol);
    let sim = Sim::start(args(venue, 0.0)).await.unwrap();
    // Fault symbols are case-insensitive.
    let body = format!(
        r#"{{"fault":"gap","symbol":"{}","endpoint":"{endpoint}"}}"#,
        symbol.to_lowercase()
    );
    assert_eq!(post_fault(&sim, &body).await, 200);
    let target = conn_of(venue, &conns, endpoint, key);
    let mut want: Vec<Vec<String>> = conns.iter().map(|c| c.data.clone()).collect();
    let deleted = first_delta(venue, &want[target], key, false);
    want[target].remove(deleted);
    let expected: Vec<usize> = want.iter().map(Vec::len).collect();
    let received = play_as_recorded(&sim, venue, &conns, &expected).await;
    for (i, (got, want)) in received.iter().zip(&want).enumerate() {
        assert_frames(venue, got, want, usize::from(i == target));
    }
    let (bad_checksums, jumps) = verdict(venue, &received[target].data, key);
    match venue {
        // The book is wrong from the lost delta on, until a resync.
        Venue::Okx | Venue::Kraken => assert!(bad_checksums >= 1, "{venue:?}"),
        Venue::Bybit => assert_eq!((bad_checksums, jumps), (0, 1)),
        // Found by the hole in `sequence_num`, checked by assert_frames.
        Venue::Coinbase => {}
    }
    // Other books are untouched.
    let (_, other) = late_book(venue).2;
    if other != symbol {
        assert_eq!(
            verdict(venue, &received[target].data, (key.0, other)),
            (0, 0)
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.faults.gaps, 1);
    assert_eq!(stats.frames_sent as usize, expected.iter().sum::<usize>());
    sim.shutdown().await;
}

#[tokio::test]
async fn okx_deleted_delta_breaks_the_checksum() {
    deleted_delta_is_detected(Venue::Okx, "UNI-USD-SWAP", "/ws/v5/public").await;
}

#[tokio::test]
async fn kraken_deleted_delta_breaks_the_checksum() {
    deleted_delta_is_detected(Venue::Kraken, "SC/EUR", "/").await;
}

#[tokio::test]
async fn bybit_deleted_spot_delta_jumps_u() {
    deleted_delta_is_detected(Venue::Bybit, "ETHUSDT", "/v5/public/spot").await;
}

#[tokio::test]
async fn coinbase_deleted_delta_leaves_a_sequence_hole() {
    deleted_delta_is_detected(Venue::Coinbase, "ETH-USD", "/").await;
}

async fn corrupted_checksum_fails_once(venue: Venue, symbol: &str) {
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let (path, _, key, _) = late_book(venue);
    let key = (key.0, symbol);
    let sim = Sim::start(args(venue, 0.0)).await.unwrap();
    let body = format!(
        r#"{{"fault":"corrupt_checksum","symbol":"{}"}}"#,
        symbol.to_lowercase()
    );
    assert_eq!(post_fault(&sim, &body).await, 200);
    let target = conn_of(venue, &conns, path, key);
    let expected: Vec<usize> = conns.iter().map(|c| c.data.len()).collect();
    let received = play_as_recorded(&sim, venue, &conns, &expected).await;
    let got = &received[target].data;
    let corrupted = first_delta(venue, &conns[target].data, key, true);
    for (i, (g, w)) in got.iter().zip(&conns[target].data).enumerate() {
        if i == corrupted {
            let (g, w) = (book_msg(venue, g).unwrap(), book_msg(venue, w).unwrap());
            assert_eq!(g.levels, w.levels);
            assert_ne!(g.checksum, w.checksum);
        } else {
            assert_eq!(g, w, "frame {i}");
        }
    }
    assert_eq!(verdict(venue, got, key), (1, 0));
    assert_eq!(sim.stats().faults.corrupted_checksums, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn okx_corrupted_checksum_fails_once() {
    corrupted_checksum_fails_once(Venue::Okx, "BTC-USD-220527").await;
}

#[tokio::test]
async fn kraken_corrupted_checksum_fails_once() {
    corrupted_checksum_fails_once(Venue::Kraken, "XMR/USD").await;
}

#[tokio::test]
async fn venues_without_checksums_refuse_to_corrupt_one() {
    for venue in [Venue::Bybit, Venue::Coinbase] {
        let sim = Sim::start(args(venue, 0.0)).await.unwrap();
        let r = http(
            sim.local_addr(),
            "POST",
            "/sim/fault",
            r#"{"fault":"corrupt_checksum","symbol":"BTCUSDT"}"#,
        )
        .await;
        assert_eq!(r.status, 400, "{venue:?}");
        assert!(r.body.contains("no checksum"), "{}", r.body);
        assert!(sim.faults().corrupt_checksum("x").is_err());
        sim.shutdown().await;
    }
}

/// The first recorded REST URL of a capture, as (path?query).
fn first_url(c: &Capture) -> (String, String) {
    c.events
        .iter()
        .find_map(|e| match e {
            CaptureEvent::Http { url, data, .. } => {
                let rest = url.split_once("://").unwrap().1;
                Some((rest[rest.find('/').unwrap()..].to_owned(), data.clone()))
            }
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn rate_limits_answer_in_each_venues_shape() {
    for (venue, status, needle) in [
        (Venue::Okx, 429, "50011"),
        (Venue::Kraken, 429, "EGeneral:Too many requests"),
        (Venue::Coinbase, 429, "RATE_LIMIT_EXCEEDED"),
        (Venue::Bybit, 403, "access too frequent"),
    ] {
        let c = Capture::open(capture(venue.file())).unwrap();
        let (target, body) = first_url(&c);
        let sim = Sim::start(args(venue, 0.0)).await.unwrap();
        assert_eq!(
            post_fault(&sim, r#"{"fault":"rate_limit","count":2}"#).await,
            200
        );
        for _ in 0..2 {
            let r = get(sim.local_addr(), &target).await;
            assert_eq!(r.status, status, "{venue:?}");
            assert!(r.body.contains(needle), "{venue:?}: {}", r.body);
            assert_eq!(r.header("retry-after").is_some(), status == 429);
        }
        let r = get(sim.local_addr(), &target).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body);
        let stats = sim.stats();
        assert_eq!((stats.rest_requests, stats.faults.rate_limited), (3, 2));
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn recorded_rest_answers_match_by_path_and_parameters() {
    let cases = [
        (
            Venue::Bybit,
            "/v5/market/instruments-info?limit=1000&status=Trading&category=spot",
            "\"category\":\"spot\"",
        ),
        (
            Venue::Bybit,
            "/v5/market/instruments-info?&category=linear&status=Trading&limit=1000",
            "\"category\":\"linear\"",
        ),
        (
            Venue::Okx,
            "/api/v5/public/instruments?instType=SWAP",
            "\"instType\":\"SWAP\"",
        ),
        (
            Venue::Okx,
            "/api/v5/public/instruments?uly=BTC-USD&instType=OPTION",
            "\"instType\":\"OPTION\"",
        ),
        (
            Venue::Kraken,
            "/0/public/AssetPairs",
            "\"wsname\":\"AAVE\\/AUD\"",
        ),
        (
            Venue::Coinbase,
            "/api/v3/brokerage/market/products",
            "\"product_id\":\"BTC-USD\"",
        ),
    ];
    for (venue, target, needle) in cases {
        let sim = Sim::start(args(venue, 0.0)).await.unwrap();
        let r = get(sim.local_addr(), target).await;
        assert_eq!(r.status, 200, "{target}");
        assert!(r.body.contains(needle), "{target}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let missing = get(sim.local_addr(), "/no/such/path").await;
        assert_eq!(missing.status, 404);
        let partial = get(sim.local_addr(), target.split('?').next().unwrap()).await;
        assert_eq!(
            partial.status == 200,
            venue == Venue::Kraken || venue == Venue::Coinbase
        );
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn pings_are_answered_in_each_venues_shape() {
    for (venue, path, ping, pong) in [
        (Venue::Okx, "/ws/v5/public", "ping", "pong".to_owned()),
        (
            Venue::Kraken,
            "/",
            r#"{"event":"ping","reqid":42}"#,
            r#"{"event":"pong","reqid":42}"#.to_owned(),
        ),
        (
            Venue::Bybit,
            "/v5/public/spot",
            r#"{"op":"ping","req_id":"p1"}"#,
            r#"{"success":true,"ret_msg":"pong","conn_id":"raven-sim-00000001","req_id":"p1","op":"ping"}"#
                .to_owned(),
        ),
        (
            Venue::Bybit,
            "/v5/public/linear",
            r#"{"op":"ping"}"#,
            r#"{"success":true,"ret_msg":"pong","conn_id":"raven-sim-00000001","req_id":"","op":"ping"}"#
                .to_owned(),
        ),
    ] {
        let sim = Sim::start(args(venue, 0.0)).await.unwrap();
        let mut ws = connect(&sim.ws_url_for(path)).await;
        ws.send(Message::Text(ping.into())).await.unwrap();
        let mut reply = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        if venue == Venue::Kraken {
            assert!(reply.contains("systemStatus"), "greeting first: {reply}");
            reply = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        }
        assert_eq!(reply, pong, "{venue:?}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn after_a_drop_a_resubscription_resyncs_the_book() {
    let venue = Venue::Okx;
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let (path, subscribe, key, sim_key) = late_book(venue);
    let sim = Sim::start(args(venue, 0.0)).await.unwrap();
    let expected: Vec<usize> = conns.iter().map(|c| c.data.len()).collect();
    let received = play_as_recorded(&sim, venue, &conns, &expected).await;
    let full = book_of(venue, &received[0].data, key);
    // Subscribing after the recorded snapshot: the ack, then a snapshot of the book as
    // it is now; after a drop, the same again.
    let mut ws = connect(&sim.ws_url_for(path)).await;
    for round in 0..2 {
        ws.send(Message::Text(subscribe.into())).await.unwrap();
        let ack = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        assert_eq!(
            ack,
            r#"{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}"#
        );
        let snap = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        let m = book_msg(venue, &snap).unwrap();
        assert!(m.snapshot);
        let mut book = ClientBook::default();
        book.apply(&m, venue.depth());
        assert_eq!(book, full, "round {round}");
        assert_eq!(
            m.checksum,
            Some(book.checksum(venue)),
            "the snapshot's own checksum"
        );
        assert!(book.same_as(&sim.book(path, sim_key.0, sim_key.1).unwrap()));
        if round == 0 {
            assert_eq!(post_fault(&sim, r#"{"fault":"drop"}"#).await, 200);
            assert!(closes_within(&mut ws, Duration::from_secs(2)).await);
            ws = connect(&sim.ws_url_for(path)).await;
        }
    }
    let stats = sim.stats();
    assert_eq!((stats.faults.drops, stats.snapshots_sent), (1, 2));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_stall_silences_the_replay_and_it_resumes_where_it_was() {
    let venue = Venue::Bybit;
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let sim = Sim::start(SimArgs {
        start_grace: 0.2,
        ..args(venue, venue.speed())
    })
    .await
    .unwrap();
    let linear = &conns[0];
    let mut ws = connect(&sim.ws_url_for(&linear.path)).await;
    for s in &linear.sends {
        ws.send(Message::Text(s.as_str().into())).await.unwrap();
    }
    let (mut arrivals, mut data) = (Vec::new(), Vec::new());
    while data.len() < 200 {
        let t = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
        if venue.is_control(&t) {
            continue;
        }
        if data.len() == 50 {
            assert_eq!(
                post_fault(&sim, r#"{"fault":"stall","seconds":0.8}"#).await,
                200
            );
        }
        arrivals.push(tokio::time::Instant::now());
        data.push(t);
    }
    // The grace for the unsubscribed spot connection passed before the first frame;
    // from then on the longest silence is the stall's.
    let longest = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest >= Duration::from_millis(600),
        "longest silence {longest:?}"
    );
    assert!(
        longest < Duration::from_millis(1500),
        "did not resume: {longest:?}"
    );
    // Nothing was lost or reordered by the pause.
    assert_eq!(data, linear.data[..200]);
    assert_eq!(sim.stats().faults.stalls, 1);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------
// Malformed frames and crossed books.

/// A malformed fault (for `endpoint`, or all) while the recorded connections are open:
/// each connection it names gets one frame that is not JSON, before its first
/// market-data frame, and every recorded frame still arrives, in order.
async fn a_malformed_frame_is_inserted(venue: Venue, endpoint: Option<&str>) {
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let sim = Sim::start(args(venue, 0.0)).await.unwrap();
    let body = match endpoint {
        Some(e) => format!(r#"{{"fault":"malformed","endpoint":"{e}"}}"#),
        None => r#"{"fault":"malformed"}"#.to_owned(),
    };
    let expected: Vec<usize> = conns.iter().map(|c| c.data.len()).collect();
    let received = play_with_fault(&sim, venue, &conns, &expected, Some(&body)).await;
    let mut hit = 0;
    for (rc, got) in conns.iter().zip(&received) {
        assert_frames(venue, got, &rc.data, 0);
        if endpoint.is_none_or(|e| e == rc.path) {
            assert_eq!(got.malformed.len(), 1, "{}", rc.path);
            let (before, text) = &got.malformed[0];
            assert_eq!(*before, 0, "before the first market-data frame");
            assert!(!text.is_empty());
            hit += 1;
        } else {
            assert!(got.malformed.is_empty(), "{}", rc.path);
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.faults.malformed, hit);
    assert_eq!(stats.frames_sent as usize, expected.iter().sum::<usize>());
    sim.shutdown().await;
}

#[tokio::test]
async fn okx_malformed_frame_is_inserted() {
    a_malformed_frame_is_inserted(Venue::Okx, None).await;
}

#[tokio::test]
async fn kraken_malformed_frame_reaches_every_connection() {
    a_malformed_frame_is_inserted(Venue::Kraken, None).await;
}

#[tokio::test]
async fn bybit_malformed_frame_only_on_its_endpoint() {
    a_malformed_frame_is_inserted(Venue::Bybit, Some("/v5/public/spot")).await;
}

#[tokio::test]
async fn coinbase_malformed_frame_keeps_the_numbering() {
    a_malformed_frame_is_inserted(Venue::Coinbase, None).await;
}

/// `got` is `want` with one more element; returns it.
fn one_more<'a, T: PartialEq + std::fmt::Debug>(got: &'a [T], want: &[T]) -> &'a T {
    assert_eq!(got.len(), want.len() + 1, "{got:?}");
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(want.len());
    assert_eq!(&got[..at], &want[..at]);
    assert_eq!(&got[at + 1..], &want[at..]);
    &got[at]
}

/// A crossing fault on the late-book key: the key's first delta arrives with one more
/// level, a bid at the best ask (or an ask at the best bid) in the venue's own text,
/// which crosses the client's book; the rest is as recorded. A subscription after the
/// replay gets a snapshot of the recorded book, the simulator's own.
async fn a_crossing_level_crosses_the_client_book(venue: Venue) {
    let c = Capture::open(capture(venue.file())).unwrap();
    let conns = recorded_conns(venue, &c);
    let (path, subscribe, key, sim_key) = late_book(venue);
    let sim = Sim::start(args(venue, 0.0)).await.unwrap();
    let body = format!(
        r#"{{"fault":"cross","symbol":"{}","endpoint":"{path}"}}"#,
        key.1.to_lowercase()
    );
    let expected: Vec<usize> = conns.iter().map(|c| c.data.len()).collect();
    let received = play_with_fault(&sim, venue, &conns, &expected, Some(&body)).await;
    let target = conn_of(venue, &conns, path, key);
    let crossed_at = first_delta(venue, &conns[target].data, key, false);
    let of_key = |m: &BookMsg| m.key == (key.0.into(), key.1.into());
    let mut book = ClientBook::default();
    let mut crossed = false;
    for (i, (g, w)) in received[target]
        .data
        .iter()
        .zip(&conns[target].data)
        .enumerate()
    {
        if i != crossed_at {
            let strip = |t: &str| {
                if venue == Venue::Coinbase {
                    split_seq(t).0
                } else {
                    t.to_owned()
                }
            };
            assert_eq!(strip(g), strip(w), "frame {i}");
        }
        let Some(m) = book_msg(venue, g).filter(of_key) else {
            continue;
        };
        let before = book.clone();
        book.apply(&m, venue.depth());
        if i < crossed_at {
            continue;
        }
        let recorded = book_msg(venue, w).unwrap();
        let (bid, price, qty) = one_more(&m.levels, &recorded.levels);
        // At the other side's best price after the delta, with that level's own text.
        let mut after_recorded = before.clone();
        after_recorded.apply(&recorded, venue.depth());
        let best = if *bid {
            after_recorded.best_asks().next()
        } else {
            after_recorded.best_bids().next()
        };
        assert_eq!(Some(&(price.clone(), qty.clone())), best, "bid: {bid}");
        let (b, a) = (book.best_bids().next(), book.best_asks().next());
        let p = |l: Option<&(String, String)>| Price::parse(&l.unwrap().0).unwrap();
        assert!(p(b) >= p(a), "crossed: {b:?} {a:?}");
        crossed = true;
        break;
    }
    assert!(crossed, "no crossing frame");
    if matches!(venue, Venue::Okx | Venue::Kraken) {
        // The recorded checksum no longer matches the crossed book.
        assert!(verdict(venue, &received[target].data, key).0 >= 1);
    }
    // After the replay: a fresh subscription's snapshot is the recorded book.
    let all: Vec<String> = conns
        .iter()
        .filter(|rc| rc.path == path)
        .flat_map(|rc| rc.data.clone())
        .collect();
    let recorded_book = book_of(venue, &all, key);
    let mut ws = connect(&sim.ws_url_for(path)).await;
    ws.send(Message::Text(subscribe.into())).await.unwrap();
    let snapshot = loop {
        let t = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
        if let Some(m) = book_msg(venue, &t) {
            break m;
        }
    };
    assert!(snapshot.snapshot);
    let mut fresh = ClientBook::default();
    fresh.apply(&snapshot, venue.depth());
    assert_eq!(fresh, recorded_book);
    assert!(fresh.same_as(&sim.book(path, sim_key.0, sim_key.1).unwrap()));
    assert_eq!(sim.stats().faults.crossed, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn okx_crossing_level_crosses_the_client_book() {
    a_crossing_level_crosses_the_client_book(Venue::Okx).await;
}

#[tokio::test]
async fn kraken_crossing_level_crosses_the_client_book() {
    a_crossing_level_crosses_the_client_book(Venue::Kraken).await;
}

#[tokio::test]
async fn bybit_crossing_level_crosses_the_client_book() {
    a_crossing_level_crosses_the_client_book(Venue::Bybit).await;
}

#[tokio::test]
async fn coinbase_crossing_level_crosses_the_client_book() {
    a_crossing_level_crosses_the_client_book(Venue::Coinbase).await;
}
