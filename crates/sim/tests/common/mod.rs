//! Helpers shared by the simulator's integration tests: a minimal HTTP/1.1 client (the
//! tests need status codes and headers, not a full client library), WebSocket reads with
//! a deadline, the capture folder, and a client-side book that joins a Binance depth
//! stream to a REST snapshot exactly as the documentation prescribes.

#![allow(dead_code)] // each test binary uses its own subset of the helpers

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use raven_model::book::OrderBook;
use raven_model::{BookLevels, Level, Price, Qty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub fn capture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures")
        .join(name)
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    body: &str,
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub async fn get(addr: std::net::SocketAddr, target: &str) -> HttpResponse {
    http(addr, "GET", target, "").await
}

pub async fn connect(ws_url: &str, streams: &[String]) -> Ws {
    let url = format!("{ws_url}/stream?streams={}", streams.join("/"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next text frame, or None when the connection ended or nothing came in `wait`.
pub async fn next_text(ws: &mut Ws, wait: Duration) -> Option<String> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// True when the connection ends (close, error or EOF) within `wait`.
pub async fn closes_within(ws: &mut Ws, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub fn levels(v: &serde_json::Value) -> Vec<Level> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| Level {
            price: Price::parse(l[0].as_str().unwrap()).unwrap(),
            qty: Qty::parse(l[1].as_str().unwrap()).unwrap(),
        })
        .collect()
}

pub fn snapshot_levels(body: &str) -> BookLevels {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let id = v["lastUpdateId"].as_u64().unwrap();
    BookLevels {
        bids: levels(&v["bids"]),
        asks: levels(&v["asks"]),
        first_update_id: id,
        last_update_id: id,
    }
}

/// Levels as (price, qty) text, so comparisons include the scale.
pub type LevelsText = Vec<(String, String)>;

/// (bids, asks) text of a book's levels.
pub fn book_text(book: &OrderBook) -> (LevelsText, LevelsText) {
    let t = |l: Level| (l.price.to_string(), l.qty.to_string());
    (book.bids().map(t).collect(), book.asks().map(t).collect())
}

/// A connector's view of one book: REST snapshot + diffs joined by Binance's rules.
pub struct SyncedBook {
    pub book: OrderBook,
    futures: bool,
    synced: bool,
    prev_u: u64,
    pub gaps: usize,
}

impl SyncedBook {
    pub fn new(snapshot: &BookLevels, futures: bool) -> Self {
        let mut book = OrderBook::new();
        book.apply_snapshot(snapshot, None).unwrap();
        Self {
            book,
            futures,
            synced: false,
            prev_u: 0,
            gaps: 0,
        }
    }

    /// Applies one `depthUpdate` data object; returns false on a sequence gap (the
    /// caller must resync).
    pub fn apply(&mut self, data: &serde_json::Value) -> bool {
        let first = data["U"].as_u64().unwrap();
        let u = data["u"].as_u64().unwrap();
        let lid = self.book.last_update_id();
        if !self.synced {
            if self.futures {
                if u < lid {
                    return true;
                }
                assert!(
                    first <= lid && u >= lid,
                    "first futures diff {first}..{u} does not cover {lid}"
                );
            } else {
                if u <= lid {
                    return true;
                }
                assert!(
                    first <= lid + 1 && lid < u,
                    "first spot diff {first}..{u} does not follow {lid}"
                );
            }
            self.synced = true;
        } else {
            let joined = if self.futures {
                data["pu"].as_u64().unwrap() == self.prev_u
            } else {
                first == self.prev_u + 1
            };
            if !joined {
                self.gaps += 1;
                return false;
            }
        }
        self.prev_u = u;
        self.book
            .apply_delta(&BookLevels {
                bids: levels(&data["b"]),
                asks: levels(&data["a"]),
                first_update_id: first,
                last_update_id: u,
            })
            .unwrap();
        true
    }

    pub fn last_u(&self) -> u64 {
        self.book.last_update_id()
    }
}
