//! The conformance suite every venue adapter must pass, Binance included.
//!
//! Each adapter replays its recorded session from `raven sim --replay` through the real
//! connector, with one fault injected by the simulator (`POST /sim/fault`), and must
//! show the documented behaviour in what subscribers receive and in `GetStatus`:
//! * a **deleted book frame** is detected (by the venue's sequence or its checksum) and
//!   only that book resyncs; a venue whose continuity is per connection (Coinbase's
//!   `sequence_num`) replaces the connection instead;
//! * a **corrupted checksum** (OKX, Kraken) is a mismatch, counted, and that book
//!   resyncs;
//! * a **dropped connection** resets its books, announces the interruption on their
//!   streams, and everything resyncs on the next connection;
//! * a **stalled connection** is replaced after `stall_timeout_secs`;
//! * a **malformed frame** is counted and skipped, and nothing else changes;
//! * a **crossed book** (an update that puts the best bid at or above the best ask) is
//!   refused, counted, and that book resyncs (by checksum first where the venue sends
//!   one: either way it is not served crossed).
//!
//! After each fault the books must again equal the reference built from the recording
//! (the simulator's fresh snapshots are of its own book, which kept every frame).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::venues;
use common::*;
use raven_proto::pb;

struct Adapter {
    venue: &'static str,
    capture: &'static str,
    /// The WebSocket endpoint under the simulator's address.
    ws_path: &'static str,
    extra: &'static str,
    books: BTreeMap<String, RefBook>,
    /// A symbol with many book updates after its snapshot: the one faults target.
    target: &'static str,
    /// Continuity is per connection: a lost frame replaces the whole connection.
    per_connection: bool,
    /// Books resync from REST snapshots of this many levels (Binance): after a resync
    /// only that many of each side's best levels are known, so only they are compared.
    resync_depth: Option<usize>,
    /// Faults on a book must wait until it synced: before, the venue's REST snapshot
    /// already covers a lost diff, so there would be nothing to detect.
    rest_snapshots: bool,
}

fn binance(
    venue: &'static str,
    capture: &'static str,
    futures: bool,
    target: &'static str,
) -> Adapter {
    let r = reference(&read_capture(capture), futures);
    Adapter {
        venue,
        capture,
        ws_path: "",
        extra: "",
        books: r
            .symbols
            .iter()
            .map(|s| (s.clone(), r.final_book(s).clone()))
            .collect(),
        target,
        per_connection: false,
        resync_depth: Some(1000),
        rest_snapshots: true,
    }
}

fn adapter(venue: &str) -> Adapter {
    match venue {
        "binance_spot" => binance("binance_spot", "BINANCE.jsonl.zst", false, "NKNUSDT"),
        "binance_usdm" => binance(
            "binance_usdm",
            "BINANCE_FUTURES.jsonl.zst",
            true,
            "SUSHIUSDT",
        ),
        "coinbase" => Adapter {
            venue: "coinbase",
            capture: "COINBASE.jsonl.zst",
            ws_path: "/",
            extra: "",
            books: venues::coinbase(&read_capture("COINBASE.jsonl.zst")).books,
            target: "BTC-USD",
            per_connection: true,
            resync_depth: None,
            rest_snapshots: false,
        },
        "bybit_linear" => Adapter {
            venue: "bybit_linear",
            capture: "BYBIT.jsonl.zst",
            ws_path: "/v5/public/linear",
            extra: "book_depth = 200",
            books: venues::bybit(&read_capture("BYBIT.jsonl.zst"), &["BYBIT.ws.2"], 200).books,
            target: "BTCUSDT",
            per_connection: false,
            resync_depth: None,
            rest_snapshots: false,
        },
        "okx" => Adapter {
            venue: "okx",
            capture: "OKX.jsonl.zst",
            ws_path: "/ws/v5/public",
            extra: "",
            books: venues::okx(&read_capture("OKX.jsonl.zst")).books,
            target: "BTC-USDT",
            per_connection: false,
            resync_depth: None,
            rest_snapshots: false,
        },
        "kraken" => Adapter {
            venue: "kraken",
            capture: "KRAKEN.jsonl.zst",
            ws_path: "/",
            extra: "book_depth = 1000",
            books: venues::kraken(&read_capture("KRAKEN.jsonl.zst"), 1000).books,
            target: "XMR/USD",
            per_connection: false,
            resync_depth: None,
            rest_snapshots: false,
        },
        other => panic!("no adapter {other}"),
    }
}

/// A replay of one adapter's capture with Raven subscribed to its books.
struct Rig {
    adapter: Adapter,
    _sim: Child,
    sim_addr: String,
    server: Server,
    sub: Subscription,
    checker: Checker,
    /// Feed-gap notices received, per symbol.
    gaps: BTreeMap<String, u64>,
}

impl Rig {
    /// Starts the simulator (replaying at `speed`, 0 as fast as read), injects `faults`
    /// before anything is played, then starts Raven (stall timeout `stall_secs`) and
    /// subscribes to every book and trade topic.
    async fn start(venue: &str, faults: &[String], stall_secs: u64, speed: &str) -> Rig {
        let adapter = adapter(venue);
        let path = captures_dir().join(adapter.capture);
        // Pings every second: a replay that has ended is quiet, and only a stall fault
        // may make a connection look dead.
        let (sim, sim_addr) = spawn_sim(
            0,
            &[
                "--replay",
                path.to_str().expect("utf-8 path"),
                "--ping-secs",
                "1",
                "--speed",
                speed,
            ],
        );
        for f in faults {
            let (code, body) = http_post_json(&format!("http://{sim_addr}/sim/fault"), f).await;
            assert_eq!(code, 200, "fault {f} refused: {body}");
        }
        let symbols: Vec<String> = adapter.books.keys().map(|s| format!("{s:?}")).collect();
        let config = format!(
            "[[venues]]\nvenue = \"{}\"\nsymbols = [{}]\nchannels = [\"trades\", \"book\"]\n\
             ws_url = \"ws://{sim_addr}{}\"\nrest_url = \"http://{sim_addr}\"\n\
             stall_timeout_secs = {stall_secs}\n{}\n",
            adapter.venue,
            symbols.join(", "),
            adapter.ws_path,
            adapter.extra
        );
        let server = spawn_serve(&config, "");
        let mut client = server.client().await;
        let sub = Subscription::open(
            &mut client,
            vec![
                topic(adapter.venue, "*", pb::Channel::Book, 0),
                topic(adapter.venue, "*", pb::Channel::Trades, 0),
            ],
        )
        .await;
        Rig {
            adapter,
            _sim: sim,
            sim_addr,
            server,
            sub,
            checker: Checker {
                no_history: true,
                ..Checker::default()
            },
            gaps: BTreeMap::new(),
        }
    }

    /// Reads the stream until every book equals the reference and every book of
    /// `GetStatus` is synced.
    async fn converge(&mut self, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut status = self.server.status().await;
        let mut asked = tokio::time::Instant::now();
        loop {
            // At most a few calls a second: one-shot calls are rate limited per client.
            if asked.elapsed() >= Duration::from_millis(250) {
                status = self.server.status().await;
                asked = tokio::time::Instant::now();
            }
            let known: std::collections::HashMap<String, (usize, usize)> = status
                .books
                .iter()
                .map(|b| {
                    let known = (b.known_bid_levels as usize, b.known_ask_levels as usize);
                    (b.symbol.clone(), known)
                })
                .collect();
            let differ: Vec<&String> = self
                .adapter
                .books
                .iter()
                .filter(|(s, b)| {
                    let k = known.get(*s).copied();
                    self.checker.books.get(*s).map(|c| self.top(c, k)) != Some(self.top(b, k))
                })
                .map(|(s, _)| s)
                .collect();
            // A book reset on the stream must have been followed by a new snapshot
            // (the old book the checker holds is no longer what the stream serves).
            let served_again = self.adapter.books.keys().all(|s| {
                let key = (
                    self.adapter.venue.to_owned(),
                    s.clone(),
                    pb::Channel::Book as i32,
                    0,
                );
                self.checker
                    .topics
                    .get(&key)
                    .is_some_and(|t| t.has_snapshot)
            });
            if differ.is_empty() && served_again && status.books.iter().all(|b| b.state == "synced")
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} {what}: books did not converge to the reference (differ: {differ:?}); status {:?}; log:\n{}",
                    self.adapter.venue,
                    status.books,
                    self.server.log()
                );
            }
            self.read(Duration::from_millis(200)).await;
        }
    }

    /// The part of a book that must equal the reference: after a resync from a REST
    /// snapshot of `resync_depth` levels, only the levels the book knows completely
    /// (`known`, from `GetStatus`) can.
    fn top(&self, book: &RefBook, known: Option<(usize, usize)>) -> RefBook {
        let mut top = book.clone();
        if let (Some(_), Some((bids, asks))) = (self.adapter.resync_depth, known) {
            while top.bids.len() > bids {
                top.bids.pop_first();
            }
            while top.asks.len() > asks {
                top.asks.pop_last();
            }
        }
        top
    }

    /// Reads the stream until each book of the adapter was reset at least `n` times.
    async fn await_resets(&mut self, n: u64, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self
            .adapter
            .books
            .keys()
            .all(|s| self.checker.resets.get(s).copied().unwrap_or(0) >= n)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} {what}: not every book was reset on the stream: {:?}",
                self.adapter.venue,
                self.checker.resets
            );
            self.read(Duration::from_millis(200)).await;
        }
    }

    /// Waits until GetStatus shows a connection that reconnected.
    async fn await_reconnect(&self, what: &str) {
        let server = &self.server;
        wait_until(what, Duration::from_secs(30), || async {
            server
                .status()
                .await
                .connections
                .iter()
                .any(|c| c.reconnects >= 1)
        })
        .await;
    }

    async fn read(&mut self, wait: Duration) {
        if let Some(m) = self.sub.next(wait).await {
            let m = m.expect("stream ok");
            if let (Some(t), Some(pb::server_message::Payload::FeedGap(_))) = (&m.topic, &m.payload)
            {
                *self.gaps.entry(t.symbol.clone()).or_default() += 1;
            }
            self.checker.check(&m);
        }
    }

    async fn fault(&self, json: &str) {
        let (code, body) =
            http_post_json(&format!("http://{}/sim/fault", self.sim_addr), json).await;
        assert_eq!(code, 200, "fault {json} refused: {body}");
    }

    async fn book_status(&self) -> BTreeMap<String, pb::BookStatus> {
        self.server
            .status()
            .await
            .books
            .into_iter()
            .map(|b| (b.symbol.clone(), b))
            .collect()
    }
}

fn fault_json(kind: &str, symbol: &str) -> String {
    format!("{{\"fault\":\"{kind}\",\"symbol\":{symbol:?}}}")
}

/// A deleted book frame is detected, and only that book resyncs (the whole connection
/// where continuity is per connection).
async fn deleted_frame(venue: &str) {
    let a = adapter(venue);
    let target = a.target;
    let mut rig = if a.rest_snapshots {
        // Played at twice its pace, so many frames still come once the book synced
        // (the deleted one must not be the book's last: nothing could show its loss).
        let rig = Rig::start(venue, &[], 30, "2").await;
        let server = &rig.server;
        let synced_at = || async {
            server
                .status()
                .await
                .books
                .iter()
                .find(|b| b.symbol == target && b.state == "synced")
                .map(|b| b.last_update_id)
        };
        wait_until(
            "the target book synced",
            Duration::from_secs(30),
            || async { synced_at().await.is_some() },
        )
        .await;
        // Frames the snapshot already covers may still be on their way, and deleting
        // one of those loses nothing: delete only once the book has moved on.
        let seen = synced_at().await;
        wait_until(
            "the target book applied a diff past its snapshot",
            Duration::from_secs(30),
            || async { synced_at().await > seen },
        )
        .await;
        rig.fault(&fault_json("gap", target)).await;
        rig
    } else {
        Rig::start(venue, &[fault_json("gap", target)], 30, "0").await
    };
    rig.converge("after a deleted frame").await;
    let books = rig.book_status().await;
    let status = rig.server.status().await;
    let hit = &books[target];
    if rig.adapter.per_connection {
        assert!(
            status.connections.iter().any(|c| c.reconnects >= 1),
            "{venue}: a lost frame must replace the connection: {:?}",
            status.connections
        );
        assert!(hit.resyncs >= 1, "{hit:?}");
    } else {
        let (_, sim_stats) = http_get(&format!("http://{}/sim/stats", rig.sim_addr)).await;
        assert!(
            hit.gaps + hit.checksum_mismatches >= 1,
            "{venue}: the deleted frame was not detected: {hit:?}; sim: {sim_stats}"
        );
        assert!(hit.resyncs >= 1, "{hit:?}");
        for (s, b) in &books {
            if s != target {
                assert_eq!(
                    b.resyncs, 0,
                    "{venue}: {s} resynced for {target}'s gap: {b:?}"
                );
            }
        }
        assert!(
            status.connections.iter().all(|c| c.reconnects == 0),
            "{venue}: one book's gap must not replace the connection: {:?}",
            status.connections
        );
        assert_eq!(
            rig.checker.resets.keys().collect::<Vec<_>>(),
            vec![target],
            "{venue}: only the gapped book is reset on the stream"
        );
    }
    let m = rig.server.metrics().await;
    assert!(
        metric(
            &m,
            &format!("raven_book_resyncs_total{{venue=\"{venue}\"}}")
        ) >= 1.0,
        "{venue}: resync not counted"
    );
}

/// A corrupted checksum is a counted mismatch, and that book resyncs alone.
async fn corrupted_checksum(venue: &str) {
    let target = adapter(venue).target;
    let mut rig = Rig::start(venue, &[fault_json("corrupt_checksum", target)], 30, "0").await;
    rig.converge("after a corrupted checksum").await;
    let books = rig.book_status().await;
    let hit = &books[target];
    assert!(hit.checksum_mismatches >= 1, "{venue}: {hit:?}");
    assert!(hit.resyncs >= 1, "{hit:?}");
    for (s, b) in &books {
        if s != target {
            assert_eq!(
                (b.resyncs, b.checksum_mismatches),
                (0, 0),
                "{venue}: {s}: {b:?}"
            );
            assert!(b.checksums_verified > 0, "{venue}: {s}: {b:?}");
        }
    }
    let m = rig.server.metrics().await;
    assert!(
        metric(
            &m,
            &format!("raven_book_checksums_total{{outcome=\"mismatch\",venue=\"{venue}\"}}")
        ) >= 1.0
            || metric(
                &m,
                &format!("raven_book_checksums_total{{venue=\"{venue}\",outcome=\"mismatch\"}}")
            ) >= 1.0,
        "{venue}: mismatch not counted"
    );
}

/// A dropped connection: books reset, streams announce the interruption, all resync.
async fn dropped_connection(venue: &str) {
    let mut rig = Rig::start(venue, &[], 30, "0").await;
    rig.converge("at first").await;
    rig.fault("{\"fault\":\"drop\"}").await;
    rig.await_resets(1, "after the drop").await;
    rig.await_reconnect("a reconnect").await;
    rig.converge("after the drop").await;
    let books = rig.book_status().await;
    assert!(books.values().all(|b| b.resyncs >= 1), "{venue}: {books:?}");
    assert!(
        rig.adapter
            .books
            .keys()
            .all(|s| rig.checker.resets.get(s).copied().unwrap_or(0) >= 1),
        "{venue}: every book is reset on the stream: {:?}",
        rig.checker.resets
    );
    let status = rig.server.status().await;
    assert!(
        status.instruments.iter().all(|i| i.interruptions >= 1),
        "{venue}: the interruption is counted: {:?}",
        status.instruments
    );
    assert!(
        rig.adapter
            .books
            .keys()
            .all(|s| rig.gaps.get(s).copied().unwrap_or(0) >= 1),
        "{venue}: every trade stream is told: {:?}",
        rig.gaps
    );
}

/// A connection that goes silent is replaced after the stall timeout.
async fn stalled_connection(venue: &str) {
    let mut rig = Rig::start(venue, &[], 2, "0").await;
    rig.converge("at first").await;
    rig.fault("{\"fault\":\"stall\",\"seconds\":4}").await;
    rig.await_reconnect("a reconnect after the stall").await;
    rig.converge("after the stall").await;
    let m = rig.server.metrics().await;
    assert!(
        metric(
            &m,
            &format!("raven_feed_reconnects_total{{venue=\"{venue}\"}}")
        ) >= 1.0,
        "{venue}: reconnect not counted"
    );
}

/// A frame that is not valid for the venue is counted and skipped; nothing is lost.
async fn malformed_frame(venue: &str) {
    // The fault goes into frames sent after it on open connections, so it is injected
    // once the first book synced, with the replay still playing (a few seconds at
    // this pace; OKX's session is sparse and long, so it plays faster).
    let speed = if venue == "okx" { "32" } else { "8" };
    let mut rig = Rig::start(venue, &[], 30, speed).await;
    let server = &rig.server;
    wait_until("a book synced", Duration::from_secs(30), || async {
        server
            .status()
            .await
            .books
            .iter()
            .any(|b| b.state == "synced")
    })
    .await;
    rig.fault("{\"fault\":\"malformed\"}").await;
    rig.converge("after a malformed frame").await;
    let status = rig.server.status().await;
    assert!(
        status
            .connections
            .iter()
            .map(|c| c.malformed_frames)
            .sum::<u64>()
            >= 1,
        "{venue}: the malformed frame is counted: {:?}",
        status.connections
    );
    assert!(
        status.books.iter().all(|b| b.resyncs == 0),
        "{venue}: {:?}",
        status.books
    );
    assert!(
        status.connections.iter().all(|c| c.reconnects == 0),
        "{venue}: {:?}",
        status.connections
    );
    let m = rig.server.metrics().await;
    assert!(
        metric(
            &m,
            &format!("raven_feed_malformed_frames_total{{venue=\"{venue}\"}}")
        ) >= 1.0,
        "{venue}: malformed frame not in the metrics"
    );
}

/// An update that crosses the book is refused and that book resyncs; no crossed book
/// is ever published (the checker asserts it on every message).
async fn crossed_book(venue: &str) {
    let a = adapter(venue);
    let target = a.target;
    let mut rig = if a.rest_snapshots {
        let rig = Rig::start(venue, &[], 30, "2").await;
        let server = &rig.server;
        wait_until(
            "the target book synced",
            Duration::from_secs(30),
            || async {
                server
                    .status()
                    .await
                    .books
                    .iter()
                    .any(|b| b.symbol == target && b.state == "synced")
            },
        )
        .await;
        rig.fault(&fault_json("cross", target)).await;
        rig
    } else {
        Rig::start(venue, &[fault_json("cross", target)], 30, "0").await
    };
    rig.converge("after a crossed book").await;
    let books = rig.book_status().await;
    let hit = &books[target];
    assert!(
        hit.crossed + hit.checksum_mismatches >= 1,
        "{venue}: the crossed update was not refused: {hit:?}"
    );
    assert!(hit.resyncs >= 1, "{hit:?}");
    if !a.per_connection {
        for (s, b) in &books {
            if s != target {
                assert_eq!(b.resyncs, 0, "{venue}: {s}: {b:?}");
            }
        }
    }
}

macro_rules! conformance {
    ($($name:ident: $venue:literal;)*) => {$(
        mod $name {
            use super::*;


            #[tokio::test]
            async fn a_dropped_connection_resets_announces_and_resyncs() {
                dropped_connection($venue).await;
            }

            #[tokio::test]
            async fn a_stalled_connection_is_replaced() {
                stalled_connection($venue).await;
            }

            #[tokio::test]
            async fn a_malformed_frame_is_counted_and_skipped() {
                malformed_frame($venue).await;
            }

            #[tokio::test]
            async fn a_crossed_book_is_refused_and_resynced() {
                crossed_book($venue).await;
            }
        }
    )*};
}

conformance! {
    binance_spot: "binance_spot";
    binance_usdm: "binance_usdm";
    coinbase: "coinbase";
    bybit_linear: "bybit_linear";
    okx: "okx";
    kraken: "kraken";
}

macro_rules! deleted_frame {
    ($($name:ident: $venue:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            deleted_frame($venue).await;
        }
    )*};
}

deleted_frame! {
    binance_spot_a_deleted_book_frame_is_detected_and_resynced: "binance_spot";
    binance_usdm_a_deleted_book_frame_is_detected_and_resynced: "binance_usdm";
    coinbase_a_deleted_book_frame_is_detected_and_resynced: "coinbase";
    bybit_linear_a_deleted_book_frame_is_detected_and_resynced: "bybit_linear";
    okx_a_deleted_book_frame_is_detected_and_resynced: "okx";
    kraken_a_deleted_book_frame_is_detected_and_resynced: "kraken";
}

/// The venues whose book messages carry a checksum.
#[tokio::test]
async fn okx_a_corrupted_checksum_resyncs_that_book() {
    corrupted_checksum("okx").await;
}

#[tokio::test]
async fn kraken_a_corrupted_checksum_resyncs_that_book() {
    corrupted_checksum("kraken").await;
}
