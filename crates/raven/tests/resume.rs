//! A client whose connection is cut mid-stream resumes where it left off.
//!
//! `raven sub` reads trades and the full book through a TCP proxy the test controls;
//! the proxy cuts every connection it carries, twice, while the market keeps moving.
//! A second `raven sub` reads the same topics straight from the server, never
//! interrupted. The resumed one must have every message exactly once: for each topic,
//! sequence numbers without a hole or a repeat across the cuts, and for every sequence
//! both saw, the same message (trade ids, book deltas level for level).
//!
//! Then the server restarts: a resume from the old epoch is answered as such and the
//! topics start afresh (a book with its snapshot).

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child as Process, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to `target` whose connections the test can cut at once.
struct Proxy {
    url: String,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().expect("lock").push(conn);
            }
        });
        Proxy {
            url,
            connections,
            accept,
        }
    }

    /// Drops every connection it carries (both sockets close); new ones are accepted.
    fn cut(&self) {
        for conn in self.connections.lock().expect("lock").drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A `raven sub --json` whose lines arrive on a channel.
struct Sub {
    process: Process,
    lines: std::sync::mpsc::Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Sub {
    fn start(server: &str, topics: &[&str]) -> Sub {
        let mut process = Command::new(RAVEN)
            .args(["sub", "--json", "--server", server])
            .args(topics)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("raven sub");
        let stdout = process.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    break;
                };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr_text: Arc<Mutex<String>> = Arc::default();
        let sink = stderr_text.clone();
        let stderr = process.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().expect("lock").push_str(&(line + "\n"));
            }
        });
        Sub {
            process,
            lines,
            stderr: stderr_text,
        }
    }

    /// Messages until `done`, asked after each, says so (30 s at most).
    fn read_until(&self, into: &mut Vec<Value>, mut done: impl FnMut(&[Value]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    into.push(v);
                    if done(into) {
                        return;
                    }
                }
                Err(e) => panic!(
                    "raven sub stopped short ({e}) after {} messages; stderr:\n{}",
                    into.len(),
                    self.stderr.lock().expect("lock")
                ),
            }
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The market data messages of `channel`, by sequence, with the times that differ
/// between two subscribers taken out.
fn by_sequence(msgs: &[Value], channel: &str) -> Vec<(u64, Value)> {
    msgs.iter()
        .filter(|m| m["channel"] == channel && m["type"] != "ack")
        .map(|m| {
            let mut m = m.clone();
            if let Value::Object(o) = &mut m {
                o.remove("send_time_ns");
            }
            (m["sequence"].as_u64().unwrap_or_default(), m)
        })
        .collect()
}

fn trades_seen(msgs: &[Value]) -> usize {
    msgs.iter().filter(|m| m["type"] == "trade").count()
}

fn is_trade(m: Option<&Value>) -> bool {
    m.is_some_and(|m| m["type"] == "trade")
}

fn is_replayed_ack(m: Option<&Value>) -> bool {
    m.is_some_and(|m| m["type"] == "ack" && m["resume"] == "RESUME_REPLAYED")
}

/// Every sequence once, contiguous, from the first.
fn assert_contiguous(what: &str, msgs: &[(u64, Value)]) {
    for pair in msgs.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "{what}: sequence {} then {} (a hole or a repeat)",
            pair[0].0,
            pair[1].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_resumes_with_every_message_exactly_once() {
    let (_sim, server) = one_symbol_rig(800, r#"["trades", "book"]"#, "").await;
    let target = server.grpc.trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(target).await;
    let topics = ["binance_spot:SYN0USDT:trades", "binance_spot:SYN0USDT:book"];
    let reference = Sub::start(&server.grpc, &topics);
    let resumed = Sub::start(&proxy.url, &topics);

    let mut got = Vec::new();
    // Reads until `n` more messages of a kind came (counted as they come: the
    // message lists grow long).
    let read_more = |got: &mut Vec<Value>, n: usize, kind: fn(Option<&Value>) -> bool| {
        let mut seen = 0;
        tokio::task::block_in_place(|| {
            resumed.read_until(got, |m| {
                seen += usize::from(kind(m.last()));
                seen >= n
            })
        });
    };
    for _ in 0..2 {
        read_more(&mut got, 100, is_trade);
        proxy.cut();
        // The cut is seen, the client waits its backoff, reconnects and resumes both
        // topics.
        read_more(&mut got, 2, is_replayed_ack);
    }
    read_more(&mut got, 100, is_trade);
    assert!(trades_seen(&got) >= 300);
    let stderr = resumed.stderr.lock().expect("lock").clone();
    assert_eq!(
        stderr.matches("reconnecting").count(),
        2,
        "one reconnect per cut: {stderr}"
    );

    // The reference reads on until it has everything the resumed one has.
    let last_trade = by_sequence(&got, "trades")
        .last()
        .map(|(s, _)| *s)
        .unwrap_or_default();
    let last_book = by_sequence(&got, "book")
        .last()
        .map(|(s, _)| *s)
        .unwrap_or_default();
    let mut all = Vec::new();
    let reached = |m: &Value, channel: &str, last: u64| {
        m["channel"] == channel && m["type"] != "ack" && m["sequence"].as_u64() >= Some(last)
    };
    let (mut trades_done, mut book_done) = (false, false);
    tokio::task::block_in_place(|| {
        reference.read_until(&mut all, |m| {
            if let Some(newest) = m.last() {
                trades_done |= reached(newest, "trades", last_trade);
                book_done |= reached(newest, "book", last_book);
            }
            trades_done && book_done
        })
    });

    for channel in ["trades", "book"] {
        let resumed_msgs = by_sequence(&got, channel);
        assert_contiguous(&format!("resumed {channel}"), &resumed_msgs);
        let reference_msgs: BTreeMap<u64, Value> = by_sequence(&all, channel).into_iter().collect();
        let mut compared = 0;
        for (sequence, msg) in &resumed_msgs {
            if let Some(want) = reference_msgs.get(sequence) {
                // Both streams' first book message is their own snapshot.
                if want["type"] == "book_snapshot" || msg["type"] == "book_snapshot" {
                    continue;
                }
                assert_eq!(msg, want, "{channel} sequence {sequence}");
                compared += 1;
            }
        }
        assert!(
            compared > 50,
            "{channel}: only {compared} messages in common"
        );
    }
}

/// The stream's next message, which must be an ack.
async fn next_ack(stream: &mut Subscription) -> raven_proto::pb::Ack {
    let msg = stream
        .next(Duration::from_secs(10))
        .await
        .expect("ack")
        .expect("ok");
    match msg.payload {
        Some(raven_proto::pb::server_message::Payload::Ack(a)) => a,
        _ => panic!("expected an ack: {msg:?}"),
    }
}

#[tokio::test]
async fn a_resume_across_a_restart_starts_afresh_and_says_why() {
    let (sim, sim_addr) = spawn_sim(0, &["--symbols", "1", "--rate", "500"]);
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\"]\nchannels = [\"trades\", \"book\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n"
    );
    let server = spawn_serve(&venues, "");
    wait_synced(&server).await;
    let book = topic(
        "binance_spot",
        "SYN0USDT",
        raven_proto::pb::Channel::Book,
        0,
    );
    let mut client = server.client().await;
    let mut first = Subscription::open(&mut client, vec![book.clone()]).await;
    let epoch = next_ack(&mut first).await.epoch;
    assert_ne!(epoch, 0);
    let snapshot = first
        .next(Duration::from_secs(10))
        .await
        .expect("snapshot")
        .expect("ok");
    drop(first);

    let dir = server.terminate();
    let server = spawn_serve_in(dir, &venues, "");
    wait_synced(&server).await;
    let mut client = server.client().await;
    let mut again = Subscription::resume(&mut client, &book, epoch, snapshot.sequence).await;
    let a = next_ack(&mut again).await;
    assert_eq!(
        a.resume(),
        raven_proto::pb::ack::ResumeResult::ResumeEpochChanged,
        "{a:?}"
    );
    assert_ne!(a.epoch, epoch, "a restarted server has a new epoch");
    let start = again
        .next(Duration::from_secs(10))
        .await
        .expect("snapshot")
        .expect("ok");
    assert!(
        matches!(
            start.payload,
            Some(raven_proto::pb::server_message::Payload::BookSnapshot(_))
        ),
        "the book starts afresh with its snapshot: {start:?}"
    );
    drop(sim);
}
