//! Feed faults: the simulator drops the connection, stalls without closing, answers
//! 429 to snapshot requests, or loses a depth frame. Raven must recover on its own,
//! show it in GetStatus and metrics, and never publish a wrong book meanwhile: every
//! message the subscriber receives goes through the invariant checker.

mod common;

use std::time::Duration;

use common::*;
use raven_proto::pb;

const SYMBOLS: [&str; 3] = ["SYN0USDT", "SYN1USDT", "SYN2USDT"];

struct Rig {
    _sim: Child,
    sim_addr: String,
    server: Server,
    sub: Subscription,
    checker: Checker,
}

async fn rig() -> Rig {
    let (sim, sim_addr) = spawn_sim(0, &["--symbols", "3", "--rate", "1500", "--ping-secs", "1"]);
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\", \"SYN1USDT\", \"SYN2USDT\"]\nchannels = [\"trades\", \"book\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\nstall_timeout_secs = 2\n"
    );
    let server = spawn_serve(&venues, "");
    wait_synced(&server).await;
    let mut client = server.client().await;
    let sub = Subscription::open(
        &mut client,
        vec![topic("binance_spot", "*", pb::Channel::Book, 0)],
    )
    .await;
    Rig {
        _sim: sim,
        sim_addr,
        server,
        sub,
        checker: Checker {
            spot_continuity: true,
            ..Checker::default()
        },
    }
}

impl Rig {
    async fn fault(&self, json: &str) {
        let (code, body) =
            http_post_json(&format!("http://{}/sim/fault", self.sim_addr), json).await;
        assert_eq!(code, 200, "fault {json} refused: {body}");
    }

    /// Reads the subscription for `secs`, checking every message.
    async fn pump(&mut self, secs: f64) {
        let until = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        while tokio::time::Instant::now() < until {
            if let Some(m) = self.sub.next(Duration::from_millis(100)).await {
                self.checker
                    .check(&m.expect("the stream survives feed faults"));
            }
        }
    }

    /// Pumps until `check` holds on GetStatus.
    async fn pump_until(
        &mut self,
        what: &str,
        check: impl Fn(&pb::StatusResponse) -> bool,
    ) -> pb::StatusResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            self.pump(0.3).await;
            let s = self.server.status().await;
            if check(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}\n{}",
                self.server.log()
            );
        }
    }

    fn all_synced(s: &pb::StatusResponse) -> bool {
        s.books.iter().all(|b| b.state == "synced")
    }

    /// GetOrderBook answers a state the subscriber also received: the book at the same
    /// update id is identical on both paths.
    async fn books_match_server(&mut self) {
        let mut client = self.server.client().await;
        for s in SYMBOLS {
            let req = pb::GetOrderBookRequest {
                venue: "binance_spot".into(),
                symbol: s.into(),
                depth: 0,
            };
            // A book may be between resyncs right after a fault: UNAVAILABLE, retried.
            let mut tries = 0;
            let book = loop {
                match client.get_order_book(req.clone()).await {
                    Ok(r) => break r.into_inner(),
                    Err(status) if status.code() == tonic::Code::Unavailable && tries < 100 => {
                        tries += 1;
                        self.pump(0.1).await;
                    }
                    Err(status) => panic!("GetOrderBook {s}: {status:?}"),
                }
            };
            self.pump(0.5).await;
            let streamed = self
                .checker
                .published
                .iter()
                .find(|(sym, u, _)| sym == s && *u == book.last_update_id);
            let (_, _, streamed) = streamed.unwrap_or_else(|| {
                panic!(
                    "{s}: update {} never reached the subscriber",
                    book.last_update_id
                )
            });
            assert_eq!(
                streamed,
                &RefBook::from_snapshot(&book),
                "{s}: GetOrderBook and the stream disagree"
            );
        }
    }
}

#[tokio::test]
async fn dropped_connection_reconnects_and_resyncs() {
    let mut rig = rig().await;
    rig.pump(1.0).await;
    rig.fault(r#"{"fault":"drop"}"#).await;
    let s = rig
        .pump_until("a reconnect and all books synced again", |s| {
            s.connections
                .iter()
                .any(|c| c.reconnects >= 1 && c.state == "connected")
                && Rig::all_synced(s)
        })
        .await;
    assert!(
        s.books.iter().all(|b| b.resyncs >= 1),
        "every book of the dropped connection resynced: {s:?}"
    );
    rig.pump(1.0).await;
    for sym in SYMBOLS {
        assert!(
            rig.checker.resets.get(sym).copied().unwrap_or(0) >= 1,
            "{sym}: subscribers saw the reset"
        );
        assert!(
            rig.checker.snapshots[sym] >= 2,
            "{sym}: a fresh snapshot followed"
        );
    }
    rig.books_match_server().await;
    let metrics = rig.server.metrics().await;
    assert!(
        metric(&metrics, "raven_feed_reconnects_total") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn stalled_connection_is_detected_and_replaced() {
    let mut rig = rig().await;
    rig.pump(1.0).await;
    rig.fault(r#"{"fault":"stall","seconds":4}"#).await;
    // Past the end of the stall, so no connection is still waiting it out.
    rig.pump(5.0).await;
    let s = rig
        .pump_until("the stall detected, a new connection synced", |s| {
            s.connections
                .iter()
                .any(|c| c.reconnects >= 1 && c.state == "connected")
                && Rig::all_synced(s)
        })
        .await;
    assert!(s.books.iter().all(|b| b.resyncs >= 1), "{s:?}");
    rig.books_match_server().await;
}

#[tokio::test]
async fn rate_limited_snapshots_back_off_and_recover() {
    let mut rig = rig().await;
    rig.fault(r#"{"fault":"rate_limit","count":3}"#).await;
    rig.fault(r#"{"fault":"drop"}"#).await;
    let s = rig
        .pump_until("snapshots refused, then every book synced", |s| {
            s.books.iter().map(|b| b.snapshot_failures).sum::<u64>() >= 1 && Rig::all_synced(s)
        })
        .await;
    let failures: u64 = s.books.iter().map(|b| b.snapshot_failures).sum();
    assert!(failures >= 1, "{s:?}");
    let metrics = rig.server.metrics().await;
    assert!(
        metric(&metrics, "raven_snapshot_failures_total") >= 1.0,
        "{metrics}"
    );
    rig.books_match_server().await;
}

#[tokio::test]
async fn lost_depth_frame_resyncs_that_book_only() {
    let mut rig = rig().await;
    rig.pump(1.0).await;
    rig.fault(r#"{"fault":"gap","symbol":"SYN1USDT"}"#).await;
    let s = rig
        .pump_until("the gap detected and the book resynced", |s| {
            s.books
                .iter()
                .any(|b| b.symbol == "SYN1USDT" && b.gaps == 1 && b.resyncs >= 1)
                && Rig::all_synced(s)
        })
        .await;
    for b in &s.books {
        if b.symbol != "SYN1USDT" {
            assert_eq!((b.gaps, b.resyncs), (0, 0), "{b:?}");
        }
    }
    assert!(
        s.connections.iter().all(|c| c.reconnects == 0),
        "a gap never costs the connection: {s:?}"
    );
    rig.pump(1.0).await;
    assert_eq!(
        rig.checker.resets.keys().collect::<Vec<_>>(),
        vec!["SYN1USDT"]
    );
    rig.books_match_server().await;
    let metrics = rig.server.metrics().await;
    assert!(
        metric(&metrics, "raven_book_gaps_total") >= 1.0,
        "{metrics}"
    );
}
