//! Fixtures shared by the hub's tests: a hub with three instruments, deterministic
//! books, trades and deltas, and a subscriber's view of its queue (every message decoded
//! and checked as a `raven.v1.ServerMessage`).
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use raven_hub::{Channel, Hub, HubConfig, InstrumentSpec, Next, Session, Subscriber};
use raven_model::book::OrderBook;
use raven_model::feed::{BookChecks, BookUpdate, FeedSink};
use raven_model::{
    BookLevels, CandleInterval, EventKind, InstrumentId, Level, MarketEvent, Price, Qty, Side,
    Trade, UnixNanos, Venue,
};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

// ------------------------------------------------------------------ fixtures

pub fn btc() -> InstrumentId {
    InstrumentId::new(Venue::new("binance_spot").unwrap(), "BTCUSDT")
}

pub fn eth() -> InstrumentId {
    InstrumentId::new(Venue::new("binance_spot").unwrap(), "ETHUSDT")
}

pub fn btc_perp() -> InstrumentId {
    InstrumentId::new(Venue::new("binance_usdm").unwrap(), "BTCUSDT")
}

pub fn spot_channels() -> Vec<Channel> {
    let mut channels = vec![Channel::Trades, Channel::Book, Channel::Bbo];
    channels.extend(CandleInterval::ALL.map(Channel::Candles));
    channels
}

/// Everything, no budget: what a server without credentials grants.
pub fn open_grant() -> Arc<raven_hub::Grant> {
    Arc::new(raven_hub::Grant::open("test"))
}

pub fn new_hub(config: HubConfig) -> Arc<Hub> {
    let mut perp_channels = spot_channels();
    perp_channels.extend([Channel::Funding, Channel::Liquidations]);
    Hub::new(
        config,
        vec![
            InstrumentSpec {
                id: btc(),
                channels: spot_channels(),
            },
            InstrumentSpec {
                id: eth(),
                channels: spot_channels(),
            },
            InstrumentSpec {
                id: btc_perp(),
                channels: perp_channels,
            },
        ],
        Vec::new(),
    )
}

pub fn small_queue(capacity: usize) -> HubConfig {
    HubConfig {
        queue_capacity: capacity,
        ..HubConfig::default()
    }
}

pub fn lvl(price: &str, qty: &str) -> Level {
    Level {
        price: Price::parse(price).unwrap(),
        qty: Qty::parse(qty).unwrap(),
    }
}

pub fn book_levels(
    bids: &[(&str, &str)],
    asks: &[(&str, &str)],
    first: u64,
    last: u64,
) -> BookLevels {
    BookLevels {
        bids: bids.iter().map(|(p, q)| lvl(p, q)).collect(),
        asks: asks.iter().map(|(p, q)| lvl(p, q)).collect(),
        first_update_id: first,
        last_update_id: last,
    }
}

/// A two-sided book, bids 99.9 down to 99.0, asks 100.0 up to 100.9, at update id 100.
pub fn initial_book() -> BookLevels {
    let bids: Vec<Level> = (0..10)
        .map(|i| lvl(&format!("99.{}", 9 - i), "1"))
        .collect();
    let asks: Vec<Level> = (0..10).map(|i| lvl(&format!("100.{i}"), "2")).collect();
    BookLevels {
        bids,
        asks,
        first_update_id: 100,
        last_update_id: 100,
    }
}

/// The `n`th of a deterministic series of deltas that never cross: bids stay below 100,
/// asks at or above 100. Update ids continue from [`initial_book`].
pub fn delta(n: u64) -> BookLevels {
    let pick = |salt: u64| {
        (n.wrapping_mul(2654435761)
            .wrapping_add(salt.wrapping_mul(40503)))
            % 13
    };
    let qty = |salt: u64| {
        if pick(salt + 7) % 4 == 0 {
            "0".to_owned()
        } else {
            format!("{}.5", pick(salt + 3))
        }
    };
    BookLevels {
        bids: vec![Level {
            price: Price::parse(&format!("99.{}", pick(1) % 10)).unwrap(),
            qty: Qty::parse(&qty(1)).unwrap(),
        }],
        asks: vec![
            Level {
                price: Price::parse(&format!("100.{}", pick(2) % 10)).unwrap(),
                qty: Qty::parse(&qty(2)).unwrap(),
            },
            Level {
                price: Price::parse(&format!("101.{}", pick(5) % 10)).unwrap(),
                qty: Qty::parse(&qty(5)).unwrap(),
            },
        ],
        first_update_id: 101 + n,
        last_update_id: 101 + n,
    }
}

pub fn t(n: u64) -> UnixNanos {
    UnixNanos(1_700_000_000_000_000_000 + n)
}

pub fn trade_event(id: &InstrumentId, n: u64) -> MarketEvent {
    MarketEvent {
        instrument: id.clone(),
        exchange_time: t(n),
        receive_time: t(n + 500),
        kind: EventKind::Trade(Trade {
            price: Price::parse(&format!("100.{}", n % 10)).unwrap(),
            qty: Qty::parse("0.25").unwrap(),
            aggressor: if n.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            trade_id: raven_model::TradeId::Number(1000 + n),
            ordinal: 0,
        }),
    }
}

pub fn topic(id: &InstrumentId, channel: pb::Channel, depth: u32) -> pb::Topic {
    wire_topic(id.venue.as_str(), id.symbol.as_str(), channel as i32, depth)
}

pub fn wire_topic(venue: &str, symbol: &str, channel: i32, depth: u32) -> pb::Topic {
    pb::Topic {
        venue: venue.into(),
        symbol: symbol.into(),
        channel,
        depth,
    }
}

pub fn subscribe(session: &mut Session, topics: Vec<pb::Topic>) {
    session.handle(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics,
            ..Default::default()
        })),
    });
}

/// Subscribes `topic` where a client left off: after `after`, in `epoch`.
pub fn resume(session: &mut Session, topic: &pb::Topic, epoch: u64, after: u64) {
    session.handle(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics: Vec::new(),
            resume: vec![pb::Resume {
                topic: Some(topic.clone()),
                epoch,
                after_sequence: after,
            }],
            ..Default::default()
        })),
    });
}

/// The ack of a subscribed topic: its resume result, reason and epoch.
pub fn resume_ack(msg: &pb::ServerMessage) -> (pb::ack::ResumeResult, String, u64) {
    match &msg.payload {
        Some(Payload::Ack(a)) => {
            assert_eq!(a.result(), pb::ack::Result::Subscribed, "{a:?}");
            (a.resume(), a.reason.clone(), a.epoch)
        }
        other => panic!("expected an ack, got {other:?}"),
    }
}

pub fn unsubscribe(session: &mut Session, topics: Vec<pb::Topic>) {
    session.handle(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Unsubscribe(
            pb::UnsubscribeRequest { topics },
        )),
    });
}

pub fn wire(levels: &[Level]) -> Vec<pb::PriceLevel> {
    levels
        .iter()
        .map(|l| pb::PriceLevel {
            price: l.price.to_string(),
            quantity: l.qty.to_string(),
        })
        .collect()
}

pub fn expected_snapshot(book: &OrderBook, depth: usize, conflated: bool) -> pb::BookSnapshot {
    let levels = book.snapshot(depth);
    let (known_bids, known_asks) = book.known_depth();
    pb::BookSnapshot {
        bids: wire(&levels.bids),
        asks: wire(&levels.asks),
        last_update_id: levels.last_update_id,
        conflated,
        known_bid_levels: known_bids.min(levels.bids.len()) as u32,
        known_ask_levels: known_asks.min(levels.asks.len()) as u32,
    }
}

/// A snapshot update holding whole sides.
pub fn whole(levels: BookLevels) -> BookUpdate {
    BookUpdate::Snapshot {
        levels,
        limit: None,
    }
}

/// Views are built off the feed's path: builds every dirty one now.
pub fn build_views(hub: &Hub) {
    assert_eq!(
        hub.build_views(std::time::Instant::now()),
        None,
        "with book_view_interval 0 nothing is left for later"
    );
}

pub fn views_now() -> HubConfig {
    HubConfig {
        book_view_interval: Duration::ZERO,
        ..HubConfig::default()
    }
}

pub fn expected_delta(delta: &BookLevels) -> pb::BookDelta {
    pb::BookDelta {
        bids: wire(&delta.bids),
        asks: wire(&delta.asks),
        first_update_id: delta.first_update_id,
        last_update_id: delta.last_update_id,
    }
}

/// A client's copy of a book, rebuilt only from what it received.
#[derive(Default)]
pub struct ClientBook {
    pub bids: Vec<pb::PriceLevel>,
    pub asks: Vec<pb::PriceLevel>,
}

impl ClientBook {
    pub fn replace(&mut self, s: &pb::BookSnapshot) {
        self.bids = s.bids.clone();
        self.asks = s.asks.clone();
    }

    pub fn apply(&mut self, d: &pb::BookDelta) {
        fn side(levels: &mut Vec<pb::PriceLevel>, changes: &[pb::PriceLevel], descending: bool) {
            for c in changes {
                let price: rust_decimal::Decimal = c.price.parse().unwrap();
                levels.retain(|l| l.price.parse::<rust_decimal::Decimal>().unwrap() != price);
                if !c
                    .quantity
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
                    .is_zero()
                {
                    levels.push(c.clone());
                }
            }
            levels.sort_by_key(|l| l.price.parse::<rust_decimal::Decimal>().unwrap());
            if descending {
                levels.reverse();
            }
        }
        side(&mut self.bids, &d.bids, true);
        side(&mut self.asks, &d.asks, false);
    }

    pub fn matches(&self, book: &OrderBook) {
        let expect = expected_snapshot(book, 0, false);
        assert_eq!(
            self.bids, expect.bids,
            "client bids diverged from the hub's book"
        );
        assert_eq!(
            self.asks, expect.asks,
            "client asks diverged from the hub's book"
        );
    }
}

// ------------------------------------------------------------------ reading

pub fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

pub fn decode(bytes: &[u8]) -> pb::ServerMessage {
    let msg = pb::ServerMessage::decode(bytes).expect("a valid ServerMessage encoding");
    assert_eq!(
        msg.send_time_ns, 0,
        "the hub leaves the send time to the transport"
    );
    msg
}

pub async fn recv(sub: &Subscriber) -> pb::ServerMessage {
    match sub.next(far()).await {
        Next::Message(bytes) => decode(&bytes),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Everything queued now.
pub async fn drain(sub: &Subscriber) -> Vec<pb::ServerMessage> {
    let mut out = Vec::new();
    loop {
        match sub.next(tokio::time::Instant::now()).await {
            Next::Message(bytes) => out.push(decode(&bytes)),
            Next::Idle => return out,
            Next::Ended(reason) => panic!("unexpected end: {reason:?}"),
        }
    }
}

pub async fn assert_idle(sub: &Subscriber) {
    let rest = drain(sub).await;
    assert!(rest.is_empty(), "expected nothing, got {rest:?}");
}

pub fn ack(msg: &pb::ServerMessage) -> (pb::ack::Result, String) {
    match &msg.payload {
        Some(Payload::Ack(a)) => (a.result(), a.reason.clone()),
        other => panic!("expected an ack, got {other:?}"),
    }
}

pub async fn expect_ack(sub: &Subscriber, topic: &pb::Topic, result: pb::ack::Result) {
    let msg = recv(sub).await;
    assert_eq!(msg.topic.as_ref(), Some(topic));
    let (got, reason) = ack(&msg);
    assert_eq!(got, result, "reason: {reason}");
}

pub async fn expect_rejected(sub: &Subscriber, needle: &str) {
    let msg = recv(sub).await;
    let (got, reason) = ack(&msg);
    assert_eq!(
        got,
        pb::ack::Result::Rejected,
        "expected a rejection mentioning {needle:?}: {msg:?}"
    );
    assert!(
        reason.contains(needle),
        "reason {reason:?} should mention {needle:?}"
    );
}

pub fn snapshot(msg: &pb::ServerMessage) -> &pb::BookSnapshot {
    match &msg.payload {
        Some(Payload::BookSnapshot(s)) => s,
        other => panic!("expected a book snapshot, got {other:?}"),
    }
}

pub fn book_delta(msg: &pb::ServerMessage) -> &pb::BookDelta {
    match &msg.payload {
        Some(Payload::BookDelta(d)) => d,
        other => panic!("expected a book delta, got {other:?}"),
    }
}

pub fn synced_hub(config: HubConfig) -> (Arc<Hub>, OrderBook) {
    let hub = new_hub(config);
    let reference = sync_btc(&hub);
    (hub, reference)
}

/// Syncs BTCUSDT's book from the initial snapshot; returns the reference book.
pub fn sync_btc(hub: &Hub) -> OrderBook {
    let snap = initial_book();
    hub.book_update(
        &btc(),
        whole(snap.clone()),
        &BookChecks::default(),
        t(1),
        t(2),
    )
    .unwrap();
    let mut reference = OrderBook::new();
    reference.apply_snapshot(&snap, None).unwrap();
    reference
}

/// Publishes delta `n` to BTCUSDT and applies it to the reference book.
pub fn publish_delta(hub: &Hub, reference: &mut OrderBook, n: u64) -> BookLevels {
    let d = delta(n);
    hub.book_update(
        &btc(),
        BookUpdate::Delta(d.clone()),
        &BookChecks::default(),
        t(10 + n),
        t(20 + n),
    )
    .unwrap();
    reference.apply_delta(&d).unwrap();
    d
}
