//! The connector against a scripted server on loopback: subscription URL, snapshot
//! join over HTTP, pong flushing, reconnect after a server close, stall detection.
//!
//! The socket-level behaviours cannot be proven with the pure parts alone: they depend
//! on timers and on what actually goes over the wire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use raven_model::feed::{BookRejected, BookUpdate, FeedSink};
use raven_model::{InstrumentId, MarketEvent, UnixNanos, Venue};
use raven_venues::status::{BookSyncState, FeedStatus};
use raven_venues::{spawn, BackoffConfig, BinanceConfig};
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
}

impl FeedSink for Recorder {
    fn market_event(&self, _event: MarketEvent) {
        self.events.fetch_add(1, Ordering::SeqCst);
    }

    fn book_update(
        &self,
        _instrument: &InstrumentId,
        update: BookUpdate,
        _exchange_time: UnixNanos,
        _receive_time: UnixNanos,
    ) -> Result<(), BookRejected> {
        match update {
            BookUpdate::Snapshot(_) => self.snapshots.fetch_add(1, Ordering::SeqCst),
            BookUpdate::Delta(_) => self.deltas.fetch_add(1, Ordering::SeqCst),
        };
        Ok(())
    }

    fn book_reset(&self, _instrument: &InstrumentId, reason: &str) {
        self.resets.lock().push(reason.to_owned());
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

    let mut config = BinanceConfig::new(Venue::BinanceSpot);
    config.ws_url = format!("ws://127.0.0.1:{ws_port}");
    config.rest_url = format!("http://127.0.0.1:{rest_port}");
    config.symbols = vec!["btcusdt".into()];
    config.stall_timeout = Duration::from_millis(700);
    config.snapshot_spacing = Duration::from_millis(10);
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        jitter: 0.5,
    };
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
    raven_venues::binance::snapshot::install_crypto_provider();
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
    assert!(raven_venues::binance::snapshot::http_client().is_ok());
}
