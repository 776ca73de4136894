//! The connector against a scripted server on loopback: subscription URL, snapshot
//! join over HTTP, pong flushing, reconnect after a server close, stall detection, the
//! hand-over before the age limit, backoff against a venue that drops every connection,
//! and the restart of a connection task that failed.
//!
//! The socket-level behaviours cannot be proven with the pure parts alone: they depend
//! on timers and on what actually goes over the wire.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use raven_model::feed::{BookChecks, BookRejected, BookUpdate, FeedGap, FeedSink};
use raven_model::{EventKind, InstrumentId, MarketEvent, UnixNanos};
use raven_venues::binance::{spawn, BinanceConfig, Market};
use raven_venues::status::{BookSyncState, FeedStatus};
use raven_venues::BackoffConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Recorder {
    snapshots: AtomicUsize,
    deltas: AtomicUsize,
    events: AtomicUsize,
    resets: Mutex<Vec<String>>,
    gaps: Mutex<Vec<FeedGap>>,
    trade_ids: Mutex<Vec<u64>>,
    /// The deltas' update id ranges, in order.
    delta_ids: Mutex<Vec<(u64, u64)>>,
    /// Panic on the next event (once): a bug anywhere below the connection's task.
    panic_next_event: AtomicBool,
}

impl FeedSink for Recorder {
    fn market_event(&self, event: MarketEvent) {
        if self.panic_next_event.swap(false, Ordering::SeqCst) {
            panic!("sink bug");
        }
        self.events.fetch_add(1, Ordering::SeqCst);
        if let EventKind::Trade(t) = event.kind {
            self.trade_ids
                .lock()
                .push(t.trade_id.number().unwrap_or_default());
        }
    }

    fn book_update(
        &self,
        _instrument: &InstrumentId,
        update: BookUpdate,
        _checks: &BookChecks,
        _exchange_time: UnixNanos,
        _receive_time: UnixNanos,
    ) -> Result<(), BookRejected> {
        match update {
            BookUpdate::Snapshot { .. } => self.snapshots.fetch_add(1, Ordering::SeqCst),
            BookUpdate::Delta(d) => {
                self.delta_ids
                    .lock()
                    .push((d.first_update_id, d.last_update_id));
                self.deltas.fetch_add(1, Ordering::SeqCst)
            }
        };
        Ok(())
    }

    fn book_reset(&self, _instrument: &InstrumentId, reason: &str) {
        self.resets.lock().push(reason.to_owned());
    }

    fn feed_gap(&self, _instrument: &InstrumentId, gap: FeedGap, _receive_time: UnixNanos) {
        self.gaps.lock().push(gap);
    }
}

fn spot_config(ws_port: u16, rest_port: u16) -> BinanceConfig {
    let mut config = BinanceConfig::new(Market::Spot);
    config.ws_url = format!("ws://127.0.0.1:{ws_port}");
    config.rest_url = format!("http://127.0.0.1:{rest_port}");
    config.symbols = vec!["btcusdt".into()];
    config.snapshot_spacing = Duration::from_millis(10);
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        jitter: 0.5,
    };
    config
}

async fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const DIFF: &str = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":101,"u":105,"b":[["100.0","1"]],"a":[["101.0","2"]]}}"#;
const TRADE: &str = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"100.5","q":"1","f":1,"l":1,"T":1,"m":false}}"#;
const SNAPSHOT: &str = r#"{"lastUpdateId":102,"bids":[["99.0","1"]],"asks":[["102.0","1"]]}"#;
const EXCHANGE_INFO: &str = r#"{"symbols":[{"symbol":"BTCUSDT","status":"TRADING"}]}"#;

/// Minimal HTTP/1.1: answers `/depth` and `/exchangeInfo`, one request per connection.
async fn rest_server(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let body = if request.starts_with("GET /api/v3/depth?symbol=BTCUSDT&limit=1000 ") {
                SNAPSHOT
            } else if request.starts_with("GET /api/v3/exchangeInfo ") {
                EXCHANGE_INFO
            } else {
                ""
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// What the scripted WebSocket server observed.
#[derive(Debug)]
enum Seen {
    Connected(usize, String),
    Pong(usize),
}

/// Connection 0: a diff, a trade, a ping (expects a pong), then close.
/// Connection 1: silence, so the client must detect the stall.
/// Connection 2 onwards: a diff, then stays open.
async fn ws_server(listener: TcpListener, seen: mpsc::UnboundedSender<Seen>) {
    let mut index = 0;
    while let Ok((stream, _)) = listener.accept().await {
        let seen = seen.clone();
        let n = index;
        index += 1;
        tokio::spawn(async move {
            let path = Arc::new(Mutex::new(String::new()));
            let p = Arc::clone(&path);
            // The callback's signature (and its large error type) is tungstenite's.
            #[allow(clippy::result_large_err)]
            let callback = move |req: &Request, resp: Response| {
                *p.lock() = req.uri().to_string();
                Ok(resp)
            };
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                return;
            };
            let _ = seen.send(Seen::Connected(n, path.lock().clone()));
            match n {
                0 => {
                    let _ = ws.send(Message::text(DIFF)).await;
                    let _ = ws.send(Message::text(TRADE)).await;
                    // Give the client time to fetch the snapshot and sync.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = ws.send(Message::Ping(b"hi".to_vec().into())).await;
                    let pong = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
                    if let Ok(Some(Ok(Message::Pong(payload)))) = pong {
                        if payload.as_ref() == b"hi" {
                            let _ = seen.send(Seen::Pong(n));
                        }
                    }
                    let _ = ws.close(None).await;
                }
                1 => {
                    // Read (so close frames are handled) but never send.
                    while let Some(Ok(_)) = ws.next().await {}
                }
                _ => {
                    let _ = ws.send(Message::text(DIFF)).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }
            }
        });
    }
}

#[tokio::test]
async fn reconnects_after_close_and_after_a_stall() {
    let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_port = ws_listener.local_addr().unwrap().port();
    let rest_port = rest_listener.local_addr().unwrap().port();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(ws_server(ws_listener, seen_tx));
    tokio::spawn(rest_server(rest_listener));

    let mut config = spot_config(ws_port, rest_port);
    config.stall_timeout = Duration::from_millis(700);
    let sink = Arc::new(Recorder::default());
    let status = Arc::new(FeedStatus::new());
    let handle = spawn(config, sink.clone(), Arc::clone(&status));
    assert!(
        !status.all_books_synced(),
        "books are registered before spawn returns"
    );

    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !events.iter().any(|e| matches!(e, Seen::Connected(2, _))) {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(e)) => events.push(e),
            _ => panic!("server saw only {events:?}"),
        }
    }
    let Some(Seen::Connected(0, path)) = events.first() else {
        panic!("{events:?}");
    };
    assert_eq!(
        path,
        "/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade/btcusdt@bookTicker"
    );
    assert!(
        events.iter().any(|e| matches!(e, Seen::Pong(0))),
        "pong not flushed: {events:?}"
    );

    // Connection 2 sends a diff; the book resyncs from a new snapshot.
    let synced = async {
        while !status.all_books_synced() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), synced)
        .await
        .expect("book resynced after reconnect");

    let snap = status.snapshot();
    let conn = &snap.connections[0];
    assert!(conn.reconnects >= 2, "{conn:?}");
    assert_eq!(conn.malformed, 0);
    let book = &snap.books[0];
    assert_eq!(book.state, BookSyncState::Synced);
    assert!(book.resyncs >= 1, "{book:?}");
    assert!(sink.snapshots.load(Ordering::SeqCst) >= 2);
    assert!(sink.deltas.load(Ordering::SeqCst) >= 2);
    assert_eq!(sink.events.load(Ordering::SeqCst), 1);
    assert!(
        sink.resets.lock().len() >= 2,
        "one reset per lost connection"
    );

    let started = std::time::Instant::now();
    handle.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown closes sockets promptly"
    );
}

/// The real endpoints are `wss://` and `https://`: the TLS features must be compiled in
/// (a loopback test with `ws://` would not notice if they were not).
#[tokio::test]
async fn tls_schemes_are_supported() {
    use tokio_tungstenite::tungstenite::error::{Error, UrlError};
    raven_venues::http::install_crypto_provider();
    // Nothing listens on a just-released port: the attempt fails at TCP, not at "no TLS".
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = tokio_tungstenite::connect_async(format!("wss://127.0.0.1:{port}/stream")).await;
    assert!(
        !matches!(result, Err(Error::Url(UrlError::TlsFeatureNotEnabled))),
        "{result:?}"
    );
    assert!(raven_venues::http::client().is_ok());
}

/// A live market every connection sees from the moment it connects, like an exchange:
/// every 10 ms a diff continuing the last (`U = previous u + 1`) and a trade with the
/// next id.
async fn market_server(
    listener: TcpListener,
    connections: Arc<AtomicUsize>,
    book_id: Arc<AtomicU64>,
) {
    let (tx, _) = tokio::sync::broadcast::channel::<String>(10_000);
    let publisher = tx.clone();
    tokio::spawn(async move {
        let mut u = book_id.load(Ordering::SeqCst);
        let mut trade = 1u64;
        let mut every = tokio::time::interval(Duration::from_millis(10));
        loop {
            every.tick().await;
            let diff = format!(
                r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{},"u":{},"b":[["100.0","{}"]],"a":[]}}}}"#,
                u + 1,
                u + 2,
                u % 7 + 1
            );
            u += 2;
            book_id.store(u, Ordering::SeqCst);
            let trade_frame = format!(
                r#"{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","E":1,"s":"BTCUSDT","a":{trade},"p":"100.5","q":"1","f":1,"l":1,"T":1,"m":false}}}}"#
            );
            trade += 1;
            let _ = publisher.send(diff);
            let _ = publisher.send(trade_frame);
        }
    });
    while let Ok((stream, _)) = listener.accept().await {
        let mut frames = tx.subscribe();
        connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            loop {
                tokio::select! {
                    f = frames.recv() => match f {
                        Ok(text) => if ws.send(Message::text(text)).await.is_err() { return },
                        Err(_) => return,
                    },
                    m = ws.next() => match m {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        _ => {}
                    },
                }
            }
        });
    }
}

/// REST for the market above: a depth snapshot at the market's current update id.
async fn market_rest(listener: TcpListener, book_id: Arc<AtomicU64>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let book_id = book_id.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let body = format!(
                r#"{{"lastUpdateId":{},"bids":[["99.0","1"]],"asks":[["102.0","1"]]}}"#,
                book_id.load(Ordering::SeqCst)
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// A live market on two fresh loopback ports: (ws port, rest port, connections seen).
async fn market() -> (u16, u16, Arc<AtomicUsize>) {
    let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ports = (
        ws_listener.local_addr().unwrap().port(),
        rest_listener.local_addr().unwrap().port(),
    );
    let connections = Arc::new(AtomicUsize::new(0));
    let book_id = Arc::new(AtomicU64::new(102));
    tokio::spawn(market_server(
        ws_listener,
        connections.clone(),
        book_id.clone(),
    ));
    tokio::spawn(market_rest(rest_listener, book_id));
    (ports.0, ports.1, connections)
}

#[tokio::test]
async fn a_scheduled_reconnect_hands_over_with_no_reset_gap_or_loss() {
    let (ws_port, rest_port, connections) = market().await;
    let mut config = spot_config(ws_port, rest_port);
    config.check_symbols = false;
    // Short-lived connections: several hand-overs in a few seconds.
    config.max_connection_age = Duration::from_millis(1500);
    let sink = Arc::new(Recorder::default());
    let status = Arc::new(FeedStatus::new());
    let handle = spawn(config, sink.clone(), Arc::clone(&status));
    wait_for("the book synced", Duration::from_secs(10), || {
        status.all_books_synced()
    })
    .await;
    let resets_at_sync = sink.resets.lock().len();
    let trades_at_sync = sink.trade_ids.lock().len();
    let deltas_at_sync = sink.delta_ids.lock().len();
    wait_for("three hand-overs", Duration::from_secs(20), || {
        connections.load(Ordering::SeqCst) >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.shutdown().await;

    assert_eq!(
        sink.resets.lock().len(),
        resets_at_sync + 1,
        "only the shutdown resets the book: {:?}",
        sink.resets.lock()
    );
    let gaps = sink.gaps.lock().clone();
    assert!(
        gaps.iter()
            .all(|g| matches!(g, FeedGap::Resumed { .. }) || matches!(g, FeedGap::Interrupted { reason, .. } if reason.contains("shutting down"))),
        "no hole announced by a hand-over: {gaps:?}"
    );
    let trades = sink.trade_ids.lock().clone();
    assert!(
        trades.len() > trades_at_sync + 100,
        "{} trades",
        trades.len()
    );
    assert!(
        trades.windows(2).all(|w| w[1] == w[0] + 1),
        "every trade exactly once, in order"
    );
    let deltas = sink.delta_ids.lock().clone();
    assert!(
        deltas[deltas_at_sync..]
            .windows(2)
            .all(|w| w[1].0 == w[0].1 + 1),
        "every delta continues the previous one"
    );
    let conn = &status.snapshot().connections[0];
    assert!(conn.reconnects >= 3, "{conn:?}");
}

#[tokio::test]
async fn a_venue_that_drops_every_connection_is_not_hammered() {
    let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws_port, rest_port) = (
        ws_listener.local_addr().unwrap().port(),
        rest_listener.local_addr().unwrap().port(),
    );
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    // Accepts, sends one frame (data flows!), closes.
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws_listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
                    let _ = ws.send(Message::text(TRADE)).await;
                    let _ = ws.close(None).await;
                }
            });
        }
    });
    tokio::spawn(rest_server(rest_listener));
    let mut config = spot_config(ws_port, rest_port);
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(5),
        jitter: 0.0,
    };
    let handle = spawn(
        config,
        Arc::new(Recorder::default()),
        Arc::new(FeedStatus::new()),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    handle.shutdown().await;
    // Backing off 50, 100, 200, 400, 800, 1600 ms: at most 7 connections in 3 s. Had
    // each one's frame reset the backoff, there would be one every 50 ms.
    let n = connections.load(Ordering::SeqCst);
    assert!(n <= 8, "{n} connections in 3 s");
}

#[tokio::test]
async fn a_connection_task_that_fails_resets_its_books_and_is_restarted() {
    let (ws_port, rest_port, connections) = market().await;
    let mut config = spot_config(ws_port, rest_port);
    config.check_symbols = false;
    let sink = Arc::new(Recorder::default());
    let status = Arc::new(FeedStatus::new());
    let handle = spawn(config, sink.clone(), Arc::clone(&status));
    wait_for("the book synced", Duration::from_secs(10), || {
        status.all_books_synced()
    })
    .await;

    // The next event makes the connection's task panic.
    sink.panic_next_event.store(true, Ordering::SeqCst);
    wait_for("the failure reported", Duration::from_secs(5), || {
        sink.resets
            .lock()
            .iter()
            .any(|r| r == "connection task failed")
    })
    .await;
    assert!(sink.gaps.lock().iter().any(
        |g| matches!(g, FeedGap::Interrupted { reason, .. } if reason.contains("connection task failed: sink bug"))
    ));
    let restarts = AtomicU64::new(0);
    wait_for(
        "the task restarted and the book synced again",
        Duration::from_secs(10),
        || {
            let snap = status.snapshot();
            restarts.store(snap.connections[0].restarts, Ordering::SeqCst);
            snap.connections[0].restarts == 1 && status.all_books_synced()
        },
    )
    .await;
    assert!(connections.load(Ordering::SeqCst) >= 2, "a new connection");
    handle.shutdown().await;
}
