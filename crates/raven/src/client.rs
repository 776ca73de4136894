//! Client commands: `sub`, `book`, `status` and `health` (`history` has its own module).
//!
//! They are the quickest way to see what Raven serves, and `sub --json` is meant for
//! scripts: one JSON object per message, decimals as the exact strings the API sends.

use std::process::ExitCode;
use std::time::Duration;

use crate::dial::ServerArg;
use anyhow::{bail, Context};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use serde_json::{json, Value};
use tokio_stream::StreamExt;

/// `println!` that returns the write's error rather than panicking: a reader that goes
/// away (`raven sub … | head`) ends the command, and `main` ends it quietly, as Unix
/// tools do.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(crate::stdout_error)
    }};
}

#[derive(clap::Args, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Topics as VENUE:SYMBOL:CHANNEL[:DEPTH], e.g. binance_spot:BTCUSDT:book:10,
    /// binance_usdm:*:trades. Channels: trades, book, bbo, funding, liquidations,
    /// candles_1m, candles_5m, candles_1h. Book depth 0 (default) = full depth + deltas.
    #[arg(required = true, value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Print one JSON object per line instead of readable text.
    #[arg(long)]
    pub json: bool,
    /// Exit after this many market data messages (acks and heartbeats do not count).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Print heartbeats too.
    #[arg(long)]
    pub heartbeats: bool,
    /// Exit when the stream breaks, instead of reconnecting (with backoff) and
    /// resuming every topic after the last message received.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Start each topic (but books and wildcards) with the server's stored records
    /// since this time — a duration ago like 10m, an RFC 3339 time, or a Unix time —
    /// then its live stream, joined without a gap. A stream that breaks during the
    /// replay replays again on the next.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Let the server hold messages up to this many microseconds to send them
    /// together, in fewer writes (at most 50000; default: each at once).
    #[arg(long, value_name = "MICROS")]
    pub batch_us: Option<u32>,
}

#[derive(clap::Args, Debug)]
pub struct BookArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Venue, as the server names it (binance_spot, coinbase, okx, ...).
    pub venue: String,
    /// Exchange symbol, e.g. BTCUSDT.
    pub symbol: String,
    /// Levels per side (0 = full book).
    #[arg(long, default_value_t = 10)]
    pub depth: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// Health URL to check. Default: http://127.0.0.1:$HEALTH_PORT/health/ready.
    #[arg(long)]
    pub url: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

const CHANNELS: &[(&str, pb::Channel)] = &[
    ("trades", pb::Channel::Trades),
    ("book", pb::Channel::Book),
    ("bbo", pb::Channel::Bbo),
    ("funding", pb::Channel::Funding),
    ("liquidations", pb::Channel::Liquidations),
    ("candles_1m", pb::Channel::Candles1m),
    ("candles_5m", pb::Channel::Candles5m),
    ("candles_1h", pb::Channel::Candles1h),
];

/// A channel by its CLI name (`trades`, `candles_1m`, ...).
pub fn parse_channel(name: &str) -> anyhow::Result<pb::Channel> {
    CHANNELS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
        .with_context(|| {
            let names: Vec<&str> = CHANNELS.iter().map(|(n, _)| *n).collect();
            format!("unknown channel {name:?} (one of {})", names.join(", "))
        })
}

/// Parses `VENUE:SYMBOL:CHANNEL[:DEPTH]`. The server validates venue and symbol.
pub fn parse_topic(spec: &str) -> anyhow::Result<pb::Topic> {
    let parts: Vec<&str> = spec.split(':').collect();
    if !(3..=4).contains(&parts.len()) {
        bail!("topic {spec:?}: expected VENUE:SYMBOL:CHANNEL[:DEPTH]");
    }
    let channel = parse_channel(parts[2]).map_err(|e| anyhow::anyhow!("topic {spec:?}: {e}"))?;
    let depth = match parts.get(3) {
        Some(d) => d
            .parse()
            .with_context(|| format!("topic {spec:?}: depth {d:?} is not a number"))?,
        None => 0,
    };
    Ok(pb::Topic {
        venue: parts[0].to_owned(),
        symbol: parts[1].to_owned(),
        channel: channel as i32,
        depth,
    })
}

fn channel_name(c: i32) -> &'static str {
    CHANNELS
        .iter()
        .find(|(_, ch)| *ch as i32 == c)
        .map_or("unspecified", |(n, _)| n)
}

pub async fn sub(args: SubArgs) -> anyhow::Result<ExitCode> {
    let topics = args
        .topics
        .iter()
        .map(|t| parse_topic(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let since = args
        .since
        .as_deref()
        .map(|t| crate::history::parse_time(t, std::time::SystemTime::now()))
        .transpose()
        .context("--since")?;
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut progress = Progress::default();
    let mut backoff = raven_venues::backoff::Backoff::new(Default::default());
    loop {
        let lost = match stream_once(&args, &topics, since, deadline, &mut progress).await {
            Ok(StreamEnd::Done) => return Ok(ExitCode::SUCCESS),
            Ok(StreamEnd::Lost(why)) => why,
            Err(e) => return Err(e),
        };
        if args.no_reconnect {
            bail!("{lost}");
        }
        if progress.delivered_since_connect > 0 {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        eprintln!(
            "raven sub: {lost}; reconnecting in {} ms to resume {} topics",
            delay.as_millis(),
            progress.last.len()
        );
        match deadline {
            Some(d) if tokio::time::Instant::now() + delay >= d => return Ok(ExitCode::SUCCESS),
            _ => tokio::time::sleep(delay).await,
        }
    }
}

/// What `raven sub` knows of the streams it had: the server's epoch and the last
/// sequence of each topic, which a new stream resumes from.
#[derive(Default)]
struct Progress {
    epoch: u64,
    last: std::collections::BTreeMap<TopicId, (pb::Topic, u64)>,
    /// Market data messages printed, over all streams (for `--count`).
    data: u64,
    delivered_since_connect: u64,
}

/// A topic as the server names it, for the map of last sequences.
type TopicId = (String, String, i32, u32);

fn topic_id(t: &pb::Topic) -> TopicId {
    (t.venue.clone(), t.symbol.clone(), t.channel, t.depth)
}

enum StreamEnd {
    /// `--count` or `--duration` reached.
    Done,
    /// The stream broke (connection lost, server gone); worth resuming.
    Lost(String),
}

/// One stream: subscribe (resuming every topic it has a sequence for), print what
/// comes, and say how it ended. Errors that another attempt would repeat (a rejected
/// request, a closed standard output) are returned as errors.
async fn stream_once(
    args: &SubArgs,
    topics: &[pb::Topic],
    since: Option<u64>,
    deadline: Option<tokio::time::Instant>,
    progress: &mut Progress,
) -> anyhow::Result<StreamEnd> {
    progress.delivered_since_connect = 0;
    let mut client = match args.server.connect().await {
        Ok(c) => c,
        Err(e) => return Ok(StreamEnd::Lost(format!("{e:#}"))),
    };
    let resume: Vec<pb::Resume> = progress
        .last
        .values()
        .map(|(topic, sequence)| pb::Resume {
            topic: Some(topic.clone()),
            epoch: progress.epoch,
            after_sequence: *sequence,
        })
        .collect();
    // The topics as asked, but those resumed under the same name (a wildcard's
    // topics and renamed ones get "already subscribed").
    let asked = topics
        .iter()
        .filter(|t| !progress.last.contains_key(&topic_id(t)))
        .cloned();
    // With --since, what can be replayed is (a book keeps no history; a wildcard's
    // topics are not known here).
    let replayable =
        |t: &pb::Topic| t.channel != pb::Channel::Book as i32 && t.symbol.trim() != "*";
    let (replay, asked): (Vec<pb::Topic>, Vec<pb::Topic>) = match since {
        Some(_) => asked.partition(replayable),
        None => (Vec::new(), asked.collect()),
    };
    let replay = replay
        .into_iter()
        .map(|topic| pb::Replay {
            topic: Some(topic),
            since_time_ns: since.unwrap_or_default(),
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics: asked,
            resume,
            replay,
            max_batch_delay_us: args.batch_us,
        })),
    })
    .await?;
    let mut stream = match client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) if retryable(&status) => return Ok(StreamEnd::Lost(status_text(&status))),
        Err(status) => bail!("subscribe: {}", status_text(&status)),
    };
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(StreamEnd::Done),
            },
            None => stream.next().await,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(status)) if retryable(&status) => {
                return Ok(StreamEnd::Lost(format!(
                    "stream ended: {}",
                    status_text(&status)
                )))
            }
            Some(Err(status)) => bail!("stream ended: {}", status_text(&status)),
            None => return Ok(StreamEnd::Lost("the server ended the stream".into())),
        };
        if let Some(Payload::Ack(a)) = &msg.payload {
            if a.epoch != 0 {
                progress.epoch = a.epoch;
            }
        }
        let is_data = !matches!(
            msg.payload,
            Some(
                Payload::Ack(_)
                    | Payload::Heartbeat(_)
                    | Payload::Pong(_)
                    | Payload::ReplayComplete(_)
            ) | None
        );
        // A topic's place is its last live number; a replay's end says where the live
        // stream takes over. Replayed records have none.
        let placed = is_data || matches!(msg.payload, Some(Payload::ReplayComplete(_)));
        if placed && !msg.replayed {
            if let Some(topic) = &msg.topic {
                progress
                    .last
                    .insert(topic_id(topic), (topic.clone(), msg.sequence));
            }
        }
        if matches!(msg.payload, Some(Payload::Heartbeat(_))) && !args.heartbeats {
            continue;
        }
        if args.json {
            say!("{}", message_json(&msg))?;
        } else {
            say!("{}", message_text(&msg))?;
        }
        if is_data {
            progress.data += 1;
            progress.delivered_since_connect += 1;
            if args.count.is_some_and(|c| progress.data >= c) {
                return Ok(StreamEnd::Done);
            }
        }
    }
}

/// A stream failure another connection may not have: the transport, the server going
/// away or restarting. Refusals (bad arguments, limits, credentials) are not.
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::Internal
    )
}

fn status_text(status: &tonic::Status) -> String {
    format!("{} ({})", status.message(), status.code())
}

fn levels_json(levels: &[pb::PriceLevel]) -> Value {
    Value::Array(
        levels
            .iter()
            .map(|l| json!([l.price, l.quantity]))
            .collect(),
    )
}

pub fn side_name(s: i32) -> &'static str {
    match pb::Side::try_from(s) {
        Ok(pb::Side::Buy) => "buy",
        Ok(pb::Side::Sell) => "sell",
        _ => "unspecified",
    }
}

/// One message as a JSON object: `type`, the topic, sequence, the three times, and the
/// payload's fields.
pub fn message_json(m: &pb::ServerMessage) -> Value {
    let mut v = json!({
        "sequence": m.sequence,
        "exchange_time_ns": m.exchange_time_ns,
        "receive_time_ns": m.receive_time_ns,
        "send_time_ns": m.send_time_ns,
    });
    if let Some(t) = &m.topic {
        v["venue"] = json!(t.venue);
        v["symbol"] = json!(t.symbol);
        v["channel"] = json!(channel_name(t.channel));
        v["depth"] = json!(t.depth);
    }
    let (kind, body) = match &m.payload {
        Some(Payload::Ack(a)) => (
            "ack",
            json!({"result": pb::ack::Result::try_from(a.result).map_or("unspecified", |r| r.as_str_name()), "reason": a.reason, "epoch": a.epoch, "resume": a.resume().as_str_name()}),
        ),
        Some(Payload::BookSnapshot(s)) => (
            "book_snapshot",
            json!({"bids": levels_json(&s.bids), "asks": levels_json(&s.asks), "last_update_id": s.last_update_id, "conflated": s.conflated, "known_bid_levels": s.known_bid_levels, "known_ask_levels": s.known_ask_levels}),
        ),
        Some(Payload::BookDelta(d)) => (
            "book_delta",
            json!({"bids": levels_json(&d.bids), "asks": levels_json(&d.asks), "first_update_id": d.first_update_id, "last_update_id": d.last_update_id}),
        ),
        Some(Payload::BookReset(r)) => ("book_reset", json!({"reason": r.reason})),
        Some(Payload::Trade(t)) => (
            "trade",
            json!({"price": t.price, "quantity": t.quantity, "aggressor": side_name(t.aggressor), "trade_id": t.trade_id_text}),
        ),
        Some(Payload::Bbo(b)) => (
            "bbo",
            json!({"bid_price": b.bid_price, "bid_quantity": b.bid_quantity, "ask_price": b.ask_price, "ask_quantity": b.ask_quantity, "update_id": b.update_id}),
        ),
        Some(Payload::Funding(f)) => (
            "funding",
            json!({"mark_price": f.mark_price, "index_price": f.index_price, "funding_rate": f.funding_rate, "next_funding_time_ns": f.next_funding_time_ns}),
        ),
        Some(Payload::Liquidation(l)) => (
            "liquidation",
            json!({"side": side_name(l.side), "price": l.price, "quantity": l.quantity}),
        ),
        Some(Payload::Candle(c)) => (
            "candle",
            json!({"open_time_ns": c.open_time_ns, "close_time_ns": c.close_time_ns, "open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume, "trade_count": c.trade_count, "incomplete": c.incomplete}),
        ),
        Some(Payload::Dropped(d)) => ("dropped", json!({"count": d.count})),
        Some(Payload::FeedGap(g)) => (
            "feed_gap",
            json!({"reason": g.reason, "start_time_ns": g.start_time_ns, "end_time_ns": g.end_time_ns, "last_id": g.last_id, "next_id": g.next_id}),
        ),
        Some(Payload::ReplayComplete(r)) => (
            "replay_complete",
            json!({"records": r.records, "exact": r.exact, "reason": r.reason, "last_time_ns": r.last_time_ns}),
        ),
        Some(Payload::Heartbeat(_)) => ("heartbeat", json!({})),
        Some(Payload::Pong(p)) => ("pong", json!({"nonce": p.nonce})),
        None => ("empty", json!({})),
    };
    v["type"] = json!(kind);
    if m.replayed {
        v["replayed"] = json!(true);
    }
    if let (Value::Object(dst), Value::Object(src)) = (&mut v, body) {
        dst.extend(src);
    }
    v
}

fn fmt_levels(levels: &[pb::PriceLevel], n: usize) -> String {
    let shown: Vec<String> = levels
        .iter()
        .take(n)
        .map(|l| format!("{}@{}", l.quantity, l.price))
        .collect();
    let more = levels.len().saturating_sub(n);
    if more > 0 {
        format!("[{} +{more}]", shown.join(" "))
    } else {
        format!("[{}]", shown.join(" "))
    }
}

fn clock(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:06}", (ns % 1_000_000_000) / 1000)
}

/// One message as a readable line.
pub fn message_text(m: &pb::ServerMessage) -> String {
    let topic = m.topic.as_ref().map_or(String::new(), |t| {
        let depth = if t.depth > 0 {
            format!(":{}", t.depth)
        } else {
            String::new()
        };
        format!(
            "{}:{}:{}{depth}",
            t.venue,
            t.symbol,
            channel_name(t.channel)
        )
    });
    let what = match &m.payload {
        Some(Payload::Ack(a)) => {
            let resume = match a.resume() {
                pb::ack::ResumeResult::ResumeNotAsked => String::new(),
                r => format!(
                    " {}",
                    r.as_str_name().trim_start_matches("RESUME_").to_lowercase()
                ),
            };
            format!(
                "ack {}{resume} {}",
                pb::ack::Result::try_from(a.result)
                    .map_or("?", |r| r.as_str_name())
                    .trim_start_matches("RESULT_")
                    .to_lowercase(),
                a.reason
            )
        }
        Some(Payload::BookSnapshot(s)) => format!(
            "snapshot{} id={} bids={} asks={}{}",
            if s.conflated { " (conflated)" } else { "" },
            s.last_update_id,
            fmt_levels(&s.bids, 5),
            fmt_levels(&s.asks, 5),
            if s.known_bid_levels as usize == s.bids.len()
                && s.known_ask_levels as usize == s.asks.len()
            {
                String::new()
            } else {
                format!(
                    " (complete to {} bids, {} asks)",
                    s.known_bid_levels, s.known_ask_levels
                )
            }
        ),
        Some(Payload::BookDelta(d)) => format!(
            "delta id={} bids={} asks={}",
            d.last_update_id,
            fmt_levels(&d.bids, 5),
            fmt_levels(&d.asks, 5)
        ),
        Some(Payload::BookReset(r)) => format!("RESET {}", r.reason),
        Some(Payload::Trade(t)) => format!(
            "trade {} {} @ {} id={}",
            side_name(t.aggressor),
            t.quantity,
            t.price,
            t.trade_id_text
        ),
        Some(Payload::Bbo(b)) => format!(
            "bbo {} @ {} | {} @ {}",
            b.bid_quantity, b.bid_price, b.ask_quantity, b.ask_price
        ),
        Some(Payload::Funding(f)) => format!(
            "funding mark={} index={} rate={}",
            f.mark_price, f.index_price, f.funding_rate
        ),
        Some(Payload::Liquidation(l)) => format!(
            "liquidation {} {} @ {}",
            side_name(l.side),
            l.quantity,
            l.price
        ),
        Some(Payload::Candle(c)) => format!(
            "candle {} o={} h={} l={} c={} v={} n={}{}",
            clock(c.open_time_ns),
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.trade_count,
            if c.incomplete { " INCOMPLETE" } else { "" }
        ),
        Some(Payload::Dropped(d)) => format!("DROPPED {} messages (slow consumer)", d.count),
        Some(Payload::FeedGap(g)) => format!(
            "GAP {} from {} {} (last id {}{})",
            g.reason,
            clock(g.start_time_ns),
            if g.end_time_ns == 0 {
                "ongoing".to_owned()
            } else {
                format!("to {}", clock(g.end_time_ns))
            },
            g.last_id,
            if g.next_id > 0 {
                format!(", next {}", g.next_id)
            } else {
                String::new()
            }
        ),
        Some(Payload::ReplayComplete(r)) => format!(
            "REPLAY COMPLETE {} stored records, {}",
            r.records,
            if r.exact {
                "joined live exactly".to_owned()
            } else {
                format!("joined live NOT exactly: {}", r.reason)
            }
        ),
        Some(Payload::Heartbeat(_)) => "heartbeat".to_owned(),
        Some(Payload::Pong(p)) => format!("pong {}", p.nonce),
        None => "empty".to_owned(),
    };
    if m.replayed {
        // A stored record has no live number: its exchange time places it.
        return format!("{} {topic} stored {what}", clock(m.exchange_time_ns));
    }
    format!("{} {topic} #{} {what}", clock(m.send_time_ns), m.sequence)
}

pub async fn book(args: BookArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let req = pb::GetOrderBookRequest {
        venue: args.venue.clone(),
        symbol: args.symbol.clone(),
        depth: args.depth,
    };
    let book = match client.get_order_book(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => bail!("{} ({})", status.message(), status.code()),
    };
    if args.json {
        say!(
            "{}",
            json!({"venue": args.venue, "symbol": args.symbol, "last_update_id": book.last_update_id, "bids": levels_json(&book.bids), "asks": levels_json(&book.asks)})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{} {}  last_update_id={}",
        args.venue,
        args.symbol.to_uppercase(),
        book.last_update_id
    )?;
    say!(
        "{:>20} {:>20} | {:<20} {:<20}",
        "bid qty",
        "bid",
        "ask",
        "ask qty"
    )?;
    for i in 0..book.bids.len().max(book.asks.len()) {
        let (bq, bp) = book
            .bids
            .get(i)
            .map_or(("", ""), |l| (l.quantity.as_str(), l.price.as_str()));
        let (ap, aq) = book
            .asks
            .get(i)
            .map_or(("", ""), |l| (l.price.as_str(), l.quantity.as_str()));
        say!("{bq:>20} {bp:>20} | {ap:<20} {aq:<20}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let s = client
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|st| anyhow::anyhow!("{} ({})", st.message(), st.code()))?
        .into_inner();
    if args.json {
        let conns: Vec<Value> = s.connections.iter().map(|c| json!({"venue": c.venue, "name": c.name, "state": c.state, "last_message_age_ms": c.last_message_age_ms, "reconnects": c.reconnects, "frames": c.frames, "malformed_frames": c.malformed_frames, "streams": c.streams, "restarts": c.restarts, "stall_timeout_ms": c.stall_timeout_ms})).collect();
        let books: Vec<Value> = s.books.iter().map(|b| json!({"venue": b.venue, "symbol": b.symbol, "state": b.state, "last_message_age_ms": b.last_message_age_ms, "gaps": b.gaps, "resyncs": b.resyncs, "crossed": b.crossed, "bid_levels": b.bid_levels, "ask_levels": b.ask_levels, "last_update_id": b.last_update_id, "snapshot_failures": b.snapshot_failures, "known_bid_levels": b.known_bid_levels, "known_ask_levels": b.known_ask_levels, "checksums_verified": b.checksums_verified, "checksum_mismatches": b.checksum_mismatches})).collect();
        let subs: Vec<Value> = s.subscribers.iter().map(|x| json!({"id": x.id, "peer": x.peer, "topics": x.topics, "queue_depth": x.queue_depth, "queue_capacity": x.queue_capacity, "conflations": x.conflations, "dropped": x.dropped, "queue_bytes": x.queue_bytes, "queue_max_bytes": x.queue_max_bytes, "batch_delay_us": x.batch_delay_us})).collect();
        let instruments: Vec<Value> = s.instruments.iter().map(|i| json!({"venue": i.venue, "symbol": i.symbol, "interruptions": i.interruptions, "trade_id_gaps": i.trade_id_gaps, "trades_missing": i.trades_missing, "late_trades": i.late_trades, "rejected_trades": i.rejected_trades, "future_events": i.future_events})).collect();
        let stores: Vec<Value> = s.stores.iter().map(|x| json!({"name": x.name, "state": x.state, "reason": x.reason, "dropped": x.dropped})).collect();
        say!(
            "{}",
            json!({"ready": s.ready, "uptime_ms": s.uptime_ms, "connections": conns, "books": books, "subscribers": subs, "stores": stores, "instruments": instruments})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    say!("ready={} uptime={}s", s.ready, s.uptime_ms / 1000)?;
    say!("\nconnections:")?;
    for c in &s.connections {
        say!(
            "  {:<18} {:<10} streams={:<4} frames={:<10} malformed={} reconnects={} restarts={} age={}ms",
            c.name,
            c.state,
            c.streams,
            c.frames,
            c.malformed_frames,
            c.reconnects,
            c.restarts,
            c.last_message_age_ms
        )?;
    }
    say!("\nbooks:")?;
    for b in &s.books {
        say!(
            "  {:<14} {:<14} {:<10} levels={}/{} (complete {}/{}) gaps={} resyncs={} crossed={} snapshot_failures={} checksums={}/{} age={}ms",
            b.venue, b.symbol, b.state, b.bid_levels, b.ask_levels, b.known_bid_levels, b.known_ask_levels, b.gaps, b.resyncs, b.crossed, b.snapshot_failures, b.checksums_verified, b.checksums_verified + b.checksum_mismatches, b.last_message_age_ms
        )?;
    }
    say!("\nstreams:")?;
    for i in &s.instruments {
        say!(
            "  {:<14} {:<14} interruptions={} trade_id_gaps={} (missing {}) late_trades={} rejected_trades={} future_events={}",
            i.venue, i.symbol, i.interruptions, i.trade_id_gaps, i.trades_missing, i.late_trades, i.rejected_trades, i.future_events
        )?;
    }
    say!("\nsubscribers:")?;
    for x in &s.subscribers {
        say!(
            "  #{:<4} {:<22} topics={} queue={}/{} ({} of {} bytes) conflations={} dropped={} batch_delay_us={}",
            x.id,
            x.peer,
            x.topics,
            x.queue_depth,
            x.queue_capacity,
            x.queue_bytes,
            x.queue_max_bytes,
            x.conflations,
            x.dropped,
            x.batch_delay_us
        )?;
    }
    say!("\nstores:")?;
    for x in &s.stores {
        say!(
            "  {:<10} {:<9} dropped={} {}",
            x.name,
            x.state,
            x.dropped,
            x.reason
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let url = match args.url {
        Some(u) => u,
        None => {
            let port = std::env::var("HEALTH_PORT").unwrap_or_else(|_| "8080".to_owned());
            format!("http://127.0.0.1:{}/health/ready", port.trim())
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    match client.get(&url).send().await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            let body = resp.text().await.unwrap_or_default();
            say!("{body}")?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("raven health: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topic_specs() {
        let t = parse_topic("binance_spot:BTCUSDT:book:10").unwrap();
        assert_eq!(
            (t.venue.as_str(), t.symbol.as_str(), t.channel, t.depth),
            ("binance_spot", "BTCUSDT", pb::Channel::Book as i32, 10)
        );
        assert_eq!(parse_topic("binance_usdm:*:trades").unwrap().depth, 0);
        assert!(parse_topic("binance_spot:BTCUSDT").is_err());
        assert!(parse_topic("binance_spot:BTCUSDT:nope")
            .unwrap_err()
            .to_string()
            .contains("unknown channel"));
        assert!(parse_topic("binance_spot:BTCUSDT:book:x")
            .unwrap_err()
            .to_string()
            .contains("depth"));
    }
}
