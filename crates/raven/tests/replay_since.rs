//! Replay from a time, end to end: a topic asked "since T" gets the history store's
//! records from T, a `ReplayComplete`, then its live stream, and the join is exact —
//! proven by trade ids against a subscriber that was there all along — on a busy
//! market whose last second is in the live log but not yet in the store.

mod common;

use std::time::{Duration, Instant};

use common::*;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

fn trades() -> pb::Topic {
    topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0)
}

async fn replay_from(server: &Server, topic: pb::Topic, since_time_ns: u64) -> Subscription {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            replay: vec![pb::Replay {
                topic: Some(topic),
                since_time_ns,
            }],
            ..Default::default()
        })),
    })
    .await
    .expect("queue subscribe");
    let stream = server
        .client()
        .await
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("Subscribe")
        .into_inner();
    Subscription { tx, stream }
}

/// The next message that is not a heartbeat.
async fn next(s: &mut Subscription) -> pb::ServerMessage {
    loop {
        match s.next(Duration::from_secs(20)).await {
            Some(Ok(pb::ServerMessage {
                payload: Some(Payload::Heartbeat(_)),
                ..
            })) => continue,
            Some(Ok(m)) => return m,
            other => panic!("stream ended: {other:?}"),
        }
    }
}

fn trade_of(m: &pb::ServerMessage) -> Option<&pb::Trade> {
    match &m.payload {
        Some(Payload::Trade(t)) => Some(t),
        _ => None,
    }
}

/// Trades of the reference subscriber as (exchange time, trade id, price, quantity).
type Tape = Vec<(u64, u64, String, String)>;

fn tape_entry(m: &pb::ServerMessage, t: &pb::Trade) -> (u64, u64, String, String) {
    (
        m.exchange_time_ns,
        t.trade_id,
        t.price.clone(),
        t.quantity.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_a_time_joins_the_live_stream_exactly() {
    let (_sim, server) = one_symbol_rig(2000, "[\"trades\", \"book\"]", "").await;

    // The reference: subscribed throughout, its tape contiguous by sequence.
    let mut client = server.client().await;
    let mut reference = Subscription::open(&mut client, vec![trades()]).await;
    let mut tape: Tape = Vec::new();
    let mut last_seq = 0;
    let take = |m: pb::ServerMessage, tape: &mut Tape, last_seq: &mut u64| {
        if let Some(t) = trade_of(&m) {
            assert!(
                *last_seq == 0 || m.sequence == *last_seq + 1,
                "reference: {} after {}",
                m.sequence,
                last_seq
            );
            *last_seq = m.sequence;
            tape.push(tape_entry(&m, t));
        }
    };
    // Two seconds of trades, so the start lies well inside what the store has.
    while tape.last().map_or(0, |t| t.0) < tape.first().map_or(u64::MAX, |t| t.0 + 2_000_000_000) {
        let m = next(&mut reference).await;
        take(m, &mut tape, &mut last_seq);
    }
    // A whole millisecond (Binance stamps milliseconds), after the first few trades.
    let since = tape[5].0 / 1_000_000 * 1_000_000;

    let mut replayed = replay_from(&server, trades(), since).await;
    let ack = next(&mut replayed).await;
    let Some(Payload::Ack(a)) = &ack.payload else {
        panic!("{ack:?}")
    };
    assert_eq!(a.result(), pb::ack::Result::Subscribed, "{}", a.reason);

    // Stored records, then the marker, then live messages numbered from its sequence.
    let mut got: Tape = Vec::new();
    let complete = loop {
        let m = next(&mut replayed).await;
        match &m.payload {
            Some(Payload::Trade(t)) => {
                assert!(m.replayed && m.sequence == 0, "a stored record: {m:?}");
                got.push(tape_entry(&m, t));
            }
            Some(Payload::ReplayComplete(c)) => break (m.sequence, c.clone()),
            other => panic!("before the replay's end: {other:?}"),
        }
    };
    let (join, marker) = complete;
    assert!(marker.exact, "the join is proven: {}", marker.reason);
    assert_eq!(marker.records as usize, got.len());
    assert!(
        marker.records > 100,
        "two seconds of a busy market were stored: {}",
        marker.records
    );
    let stored = got.len();
    let mut live_seq = join;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Live until well past the join, and past what the reference has now.
    let until = tape.last().map_or(0, |t| t.1) + 200;
    while got.last().map_or(0, |t| t.1) < until {
        assert!(Instant::now() < deadline, "the live stream stalled");
        let m = next(&mut replayed).await;
        assert!(!m.replayed, "a stored record after the replay's end");
        assert_eq!(m.sequence, live_seq + 1, "live numbers follow the marker");
        live_seq = m.sequence;
        if let Some(t) = trade_of(&m) {
            got.push(tape_entry(&m, t));
        }
    }
    assert!(got.len() > stored, "the live stream joined");
    // The reference catches up to the same trade.
    while tape.last().map_or(0, |t| t.1) < got.last().map_or(0, |t| t.1) {
        let m = next(&mut reference).await;
        take(m, &mut tape, &mut last_seq);
    }

    // Exactly the reference's trades from `since` on: none missing, none twice, the
    // same exact decimals, across the join.
    let from = tape
        .iter()
        .position(|t| t.0 >= since)
        .expect("the start is on the tape");
    let expected: Vec<_> = tape[from..]
        .iter()
        .take_while(|t| t.1 <= got.last().map_or(0, |g| g.1))
        .cloned()
        .collect();
    if got != expected {
        let first_diff = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "replayed + live differ from the reference at {first_diff} (join after {stored} stored records): got {:?}, expected {:?}",
            got.get(first_diff.saturating_sub(2)..(first_diff + 3).min(got.len())),
            expected.get(first_diff.saturating_sub(2)..(first_diff + 3).min(expected.len()))
        );
    }

    // The topic is now like any subscribed one; what a replay cannot be is refused by
    // name.
    let now = raven_model::UnixNanos::now().as_nanos();
    for (topic, since, why) in [
        (
            topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0),
            since,
            "book history is not kept",
        ),
        (trades(), now + 3_600_000_000_000, "in the future"),
        (
            topic("binance_spot", "*", pb::Channel::Trades, 0),
            since,
            "wildcard",
        ),
    ] {
        let mut s = replay_from(&server, topic, since).await;
        let m = next(&mut s).await;
        let Some(Payload::Ack(a)) = &m.payload else {
            panic!("{m:?}")
        };
        assert_eq!(a.result(), pb::ack::Result::Rejected);
        assert!(a.reason.contains(why), "{}", a.reason);
    }
    // `raven sub --since` does the same.
    let out = std::process::Command::new(RAVEN)
        .args(["sub", "--server", &server.grpc, "--json", "--no-reconnect"])
        .args([
            "binance_spot:SYN0USDT:trades",
            "--since",
            "2s",
            "--duration",
            "4",
        ])
        .output()
        .expect("raven sub");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let marker = lines
        .iter()
        .position(|l| l["type"] == "replay_complete")
        .expect("the replay's end is printed");
    assert_eq!(lines[marker]["exact"], true, "{}", lines[marker]);
    assert!(lines[..marker]
        .iter()
        .filter(|l| l["type"] == "trade")
        .all(|l| l["replayed"] == true));
    assert!(lines[marker + 1..]
        .iter()
        .all(|l| l.get("replayed").is_none()));

    let metrics = server.metrics().await;
    assert!(metric(&metrics, "raven_replays_total{result=\"exact\"}") >= 2.0);
}

/// Without a live log to join at, the join cannot be proven: the marker says so and
/// why, and the live stream follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_cannot_be_proven_says_so() {
    let (_sim, server) =
        one_symbol_rig(500, "[\"trades\", \"book\"]", "[hub]\nretention_secs = 0\n").await;
    // A trade published first, so there is something live the join could miss.
    let mut client = server.client().await;
    let mut live = Subscription::open(&mut client, vec![trades()]).await;
    while trade_of(&next(&mut live).await).is_none() {}
    let since = raven_model::UnixNanos::now().as_nanos() - 60_000_000_000;
    let mut s = replay_from(&server, trades(), since).await;
    let marker = loop {
        let m = next(&mut s).await;
        if let Some(Payload::ReplayComplete(c)) = m.payload {
            break (m.sequence, c);
        }
    };
    let (join, marker) = marker;
    assert!(!marker.exact);
    assert!(
        marker.reason.contains("retention_secs"),
        "{}",
        marker.reason
    );
    loop {
        let m = next(&mut s).await;
        if trade_of(&m).is_some() {
            assert!(m.sequence > join, "live after the marker");
            break;
        }
    }
    let metrics = server.metrics().await;
    assert!(metric(&metrics, "raven_replays_total{result=\"inexact\"}") >= 1.0);
}
