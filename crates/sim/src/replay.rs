//! Replay mode: a recorded Binance session played back as if it were live.
//!
//! A capture is the only ground truth available offline, so replay is how connectors are
//! checked for byte-level compatibility. The rules:
//!
//! * **REST** is answered from the recorded `http` lines, matched by path and `symbol`
//!   (other query parameters are ignored). The *first* depth request for a symbol gets
//!   the recorded body byte for byte. A *later* one (a resync after a gap or a
//!   reconnect) cannot be answered from the recording, which holds one snapshot per
//!   symbol, so the simulator builds it from its own [`OrderBook`]: the recorded
//!   snapshot plus every depth frame played so far, with `lastUpdateId` = the last
//!   played `u`. That snapshot joins the rest of the stream by Binance's rules.
//! * **WebSocket** frames (`recv` lines) are played in recorded order by one player
//!   whose cursor is shared by all connections, like a live exchange: a client that
//!   reconnects continues where the stream is, not at the start. Each connection gets the
//!   frames of the streams it asked for (the frame's `stream` field). The player waits
//!   while no connection has streams, and waits for slow readers (back-pressure) instead
//!   of dropping frames, so a test sees every recorded frame.
//! * After the last frame the connections stay open (with periodic pings).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use parking_lot::Mutex;
use raven_model::book::OrderBook;
use raven_model::{BookLevels, Level, Price, Qty};
use serde::Deserialize;
use tokio::sync::{mpsc, watch, Notify};

use crate::capture::{Capture, CaptureEvent};
use crate::format;
use crate::server::{Api, Batch, Frame};
use crate::App;

/// A loaded capture and the replay's shared state.
pub struct Replay {
    frames: Vec<Played>,
    streams: HashMap<String, u32>,
    /// Recorded REST bodies by (path, upper-case `symbol` parameter); first one wins.
    recorded: HashMap<(String, Option<String>), String>,
    /// The simulator's book per symbol: recorded snapshot + depth frames played.
    books: Mutex<HashMap<String, OrderBook>>,
    /// (depth path, symbol) pairs whose recorded body was already served.
    served: Mutex<HashSet<(&'static str, String)>>,
    conns: Mutex<Vec<mpsc::Sender<Batch>>>,
    wake: Notify,
    finished: watch::Sender<bool>,
    symbols: Vec<String>,
    speed: f64,
}

struct Played {
    frame: Frame,
    ts: f64,
    depth: Option<(String, BookLevels)>,
}

/// Batches a connection may have queued before the player waits for it.
const CONNECTION_QUEUE: usize = 64;

#[derive(Deserialize)]
struct Combined {
    stream: String,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct DepthUpdate {
    s: String,
    #[serde(rename = "U")]
    first: u64,
    u: u64,
    b: Vec<(String, String)>,
    a: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct DepthSnapshot {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    bids: Vec<(String, String)>,
    asks: Vec<(String, String)>,
}

fn levels(raw: &[(String, String)]) -> Result<Vec<Level>> {
    raw.iter()
        .map(|(p, q)| {
            Ok(Level {
                price: Price::parse(p)?,
                qty: Qty::parse(q)?,
            })
        })
        .collect()
}

/// Splits a recorded URL into its path and upper-case `symbol` parameter.
fn path_and_symbol(url: &str) -> (String, Option<String>) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let symbol = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "symbol")
        .map(|(_, v)| v.to_ascii_uppercase());
    (path.to_owned(), symbol)
}

impl Replay {
    /// Reads the capture and prepares frames, recorded REST bodies and books.
    pub fn load(path: &Path, speed: f64) -> Result<Replay> {
        let capture = Capture::open(path)?;
        Self::from_capture(&capture, speed)
    }

    /// Prepares a replay of an already read capture. `speed`: 0 = as fast as the
    /// clients read, 1 = recorded pace.
    pub fn from_capture(capture: &Capture, speed: f64) -> Result<Replay> {
        let mut recorded = HashMap::new();
        let mut books = HashMap::new();
        let mut symbols = HashSet::new();
        let mut streams = HashMap::new();
        let mut frames = Vec::new();
        for event in &capture.events {
            match event {
                CaptureEvent::Http { url, data, .. } => {
                    let (path, symbol) = path_and_symbol(url);
                    if path.ends_with("/depth") {
                        if let Some(sym) = &symbol {
                            if !books.contains_key(sym) {
                                let snap: DepthSnapshot = serde_json::from_str(data)
                                    .with_context(|| format!("recorded depth body of {url}"))?;
                                let mut book = OrderBook::new();
                                book.apply_snapshot(
                                    &BookLevels {
                                        bids: levels(&snap.bids)?,
                                        asks: levels(&snap.asks)?,
                                        first_update_id: snap.last_update_id,
                                        last_update_id: snap.last_update_id,
                                    },
                                    None,
                                );
                                books.insert(sym.clone(), book);
                                symbols.insert(sym.clone());
                            }
                        }
                    }
                    recorded
                        .entry((path, symbol))
                        .or_insert_with(|| data.clone());
                }
                CaptureEvent::Recv { ts, data, .. } => {
                    // Frames without a stream (subscription replies) are not market data.
                    let Ok(combined) = serde_json::from_str::<Combined>(data) else {
                        continue;
                    };
                    let next_id = streams.len() as u32;
                    let stream = *streams.entry(combined.stream.clone()).or_insert(next_id);
                    if let Some((sym, _)) = combined.stream.split_once('@') {
                        symbols.insert(sym.to_ascii_uppercase());
                    }
                    let depth =
                        if combined.data.get("e").and_then(|e| e.as_str()) == Some("depthUpdate") {
                            let d: DepthUpdate = serde_json::from_value(combined.data)
                                .with_context(|| format!("recorded depth frame {data}"))?;
                            Some((
                                d.s.to_ascii_uppercase(),
                                BookLevels {
                                    bids: levels(&d.b)?,
                                    asks: levels(&d.a)?,
                                    first_update_id: d.first,
                                    last_update_id: d.u,
                                },
                            ))
                        } else {
                            None
                        };
                    frames.push(Played {
                        frame: Frame {
                            stream,
                            text: data.as_str().into(),
                        },
                        ts: *ts,
                        depth,
                    });
                }
                CaptureEvent::Connect { .. } | CaptureEvent::Send { .. } => {}
            }
        }
        let mut symbols: Vec<String> = symbols.into_iter().collect();
        symbols.sort();
        Ok(Replay {
            frames,
            streams,
            recorded,
            books: Mutex::new(books),
            served: Mutex::new(HashSet::new()),
            conns: Mutex::new(Vec::new()),
            wake: Notify::new(),
            finished: watch::Sender::new(false),
            symbols,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
        })
    }

    /// Upper-case symbols that appear in the recording.
    pub fn symbols(&self) -> Vec<String> {
        self.symbols.clone()
    }

    pub(crate) fn stream_id(&self, name: &str) -> Option<u32> {
        self.streams.get(name).copied()
    }

    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// A new listener: the player starts (or resumes) once one exists.
    pub(crate) fn register(&self) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(CONNECTION_QUEUE);
        self.conns.lock().push(tx);
        self.wake.notify_one();
        rx
    }

    pub(crate) async fn finished(&self) {
        let mut rx = self.finished.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|f| *f).await;
    }

    /// The recorded body first, then snapshots of the simulator's own book.
    pub(crate) fn depth(&self, api: Api, symbol: &str, limit: usize) -> Option<String> {
        let path = api.depth_path();
        if self.served.lock().insert((path, symbol.to_owned())) {
            if let Some(body) = self
                .recorded
                .get(&(path.to_owned(), Some(symbol.to_owned())))
            {
                return Some(body.clone());
            }
        }
        let snap = self.books.lock().get(symbol)?.snapshot(limit);
        Some(format::depth_body(
            snap.last_update_id,
            api.is_futures().then(format::now_ms),
            snap.bids.iter().map(|l| (l.price, l.qty)),
            snap.asks.iter().map(|l| (l.price, l.qty)),
        ))
    }

    /// Any other recorded REST response (e.g. `exchangeInfo`).
    pub(crate) fn recorded(&self, path: &str, symbol: Option<&str>) -> Option<String> {
        let key = (path.to_owned(), symbol.map(str::to_owned));
        self.recorded
            .get(&key)
            .or_else(|| self.recorded.get(&(path.to_owned(), None)))
            .cloned()
    }

    /// The player: walks the frames once, in order, for all connections.
    pub(crate) async fn play(self: Arc<Self>, app: Arc<App>) {
        let mut shutdown = app.shutdown.clone();
        let mut prev_ts: Option<f64> = None;
        for played in &self.frames {
            // Wait out stalls, and wait for someone to play to.
            loop {
                if let Some(until) = app.faults.stalled_until() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
                {
                    let mut conns = self.conns.lock();
                    conns.retain(|c| !c.is_closed());
                    if !conns.is_empty() {
                        break;
                    }
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = shutdown.changed() => return,
                }
            }
            if let Some(prev) = prev_ts.filter(|_| self.speed > 0.0) {
                let delay = ((played.ts - prev) / self.speed).max(0.0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(delay)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            prev_ts = Some(played.ts);
            if let Some((symbol, levels)) = &played.depth {
                let skip = app.faults.take_gap(symbol);
                if let Some(book) = self.books.lock().get_mut(symbol) {
                    if levels.last_update_id > book.last_update_id() {
                        book.apply_delta(levels);
                    }
                }
                if skip {
                    continue;
                }
            }
            let batch: Batch = Arc::new(vec![played.frame.clone()]);
            let conns = self.conns.lock().clone();
            for conn in conns {
                if conn.send(batch.clone()).await.is_err() {
                    self.conns.lock().retain(|c| !c.same_channel(&conn));
                }
            }
            app.faults.counters.frames_sent.fetch_add(1, Relaxed);
        }
        self.finished.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_recorded_urls() {
        assert_eq!(
            path_and_symbol("https://api.binance.com/api/v3/depth?symbol=nknusdt&limit=1000"),
            ("/api/v3/depth".to_owned(), Some("NKNUSDT".to_owned()))
        );
        assert_eq!(
            path_and_symbol("https://fapi.binance.com/fapi/v1/exchangeInfo"),
            ("/fapi/v1/exchangeInfo".to_owned(), None)
        );
    }
}
