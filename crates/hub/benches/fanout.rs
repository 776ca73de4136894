//! Hub fan-out: deliveries per second from one instrument to 1, 10 and 100 subscribers.
//!
//! Each iteration publishes one realistic message through the [`FeedSink`] a venue uses
//! (a book delta touching a few levels near the touch, or a trade); it is numbered,
//! encoded once and queued for every subscriber of the topic. Every `DRAIN_EVERY`
//! publications each subscriber's queue is emptied the way the gRPC response stream
//! does it, so queues never fill and every subscriber takes the delivery path (no
//! conflation, no drops). Throughput is set to the subscriber count, so criterion's
//! elements/s are deliveries/s.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raven_hub::{Channel, Hub, HubConfig, InstrumentSpec, Next, Session, Subscriber, Tap};
use raven_model::feed::{BookChecks, BookUpdate, FeedSink};
use raven_model::{
    BookLevels, EventKind, InstrumentId, Level, MarketEvent, Price, Qty, Side, Trade, UnixNanos,
    Venue,
};
use raven_proto::pb;

/// Publications between drains; well below the queue capacity.
const DRAIN_EVERY: usize = 64;
const SUBSCRIBERS: [usize; 3] = [1, 10, 100];

fn level(price: String, qty: &str) -> Level {
    Level {
        price: Price::parse(&price).unwrap(),
        qty: Qty::parse(qty).unwrap(),
    }
}

/// 20 levels a side around 50 000.00, like a BTCUSDT book near the touch.
fn snapshot() -> BookLevels {
    BookLevels {
        bids: (0..20)
            .map(|i| level(format!("49999.{:02}", 99 - i), "0.50000000"))
            .collect(),
        asks: (0..20)
            .map(|i| level(format!("50000.{i:02}"), "0.75000000"))
            .collect(),
        first_update_id: 1,
        last_update_id: 1,
    }
}

/// Deltas of four levels (two a side) near the touch, never crossing.
fn deltas() -> Vec<BookLevels> {
    let quantities = ["0.12300000", "1.50000000", "0.00000000", "3.25000000"];
    (0..64u64)
        .map(|n| {
            let q = |k: u64| quantities[((n + k) % 4) as usize];
            BookLevels {
                bids: vec![
                    level(format!("49999.{:02}", 99 - n % 10), q(0)),
                    level(format!("49999.{:02}", 89 - n % 7), q(1)),
                ],
                asks: vec![
                    level(format!("50000.{:02}", n % 10), q(2)),
                    level(format!("50000.{:02}", 10 + n % 7), q(3)),
                ],
                first_update_id: 2 + n,
                last_update_id: 2 + n,
            }
        })
        .collect()
}

fn trade(id: &InstrumentId, n: u64) -> MarketEvent {
    MarketEvent {
        instrument: id.clone(),
        exchange_time: UnixNanos(1_700_000_000_000_000_000 + n),
        receive_time: UnixNanos(1_700_000_000_000_500_000 + n),
        kind: EventKind::Trade(Trade {
            price: Price::parse(&format!("50000.{:02}", n % 100)).unwrap(),
            qty: Qty::parse("0.01200000").unwrap(),
            aggressor: if n.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            trade_id: raven_model::TradeId::Number(1_000_000 + n),
            ordinal: 0,
        }),
    }
}

/// One synced instrument and `n` sessions subscribed to `channel` (full depth for books).
fn setup(
    channel: pb::Channel,
    n: usize,
    taps: Vec<Tap>,
) -> (Arc<Hub>, InstrumentId, Vec<Session>, Vec<Arc<Subscriber>>) {
    let id = InstrumentId::new(Venue::new("binance_spot").unwrap(), "BTCUSDT");
    let hub = Hub::new(
        HubConfig::default(),
        vec![InstrumentSpec {
            id: id.clone(),
            channels: vec![Channel::Trades, Channel::Book],
        }],
        taps,
    );
    hub.book_update(
        &id,
        BookUpdate::Snapshot {
            levels: snapshot(),
            limit: None,
        },
        &BookChecks::default(),
        UnixNanos(1),
        UnixNanos(2),
    )
    .unwrap();
    let mut sessions = Vec::with_capacity(n);
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let mut session = hub.session(format!("bench-{i}"), open_grant());
        let topic = pb::Topic {
            venue: id.venue.as_str().into(),
            symbol: id.symbol.as_str().into(),
            channel: channel as i32,
            depth: 0,
        };
        session.handle(pb::ClientMessage {
            kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
                topics: vec![topic],
                ..Default::default()
            })),
        });
        let sub = session.subscriber();
        // The ack, and for books the snapshot: the queue then holds only what is published.
        let start = if channel == pb::Channel::Book { 2 } else { 1 };
        take(&sub, start);
        sessions.push(session);
        subs.push(sub);
    }
    (hub, id, sessions, subs)
}

/// Takes `count` queued messages, polling `Subscriber::next` once each as the response
/// stream would when messages are waiting (so it never sleeps).
fn take(sub: &Subscriber, count: usize) {
    let deadline = tokio::time::Instant::now();
    for _ in 0..count {
        let next = pin!(sub.next(deadline));
        match next.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Next::Message(bytes)) => {
                black_box(bytes);
            }
            other => panic!("expected a queued message, got {other:?}"),
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for (name, channel) in [
        ("book_delta", pb::Channel::Book),
        ("trade", pb::Channel::Trades),
    ] {
        for n in SUBSCRIBERS {
            let (hub, id, _sessions, subs) = setup(channel, n, Vec::new());
            let deltas = deltas();
            let mut published = 0usize;
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    let seq = published as u64;
                    if channel == pb::Channel::Book {
                        let delta = deltas[published % deltas.len()].clone();
                        hub.book_update(
                            &id,
                            BookUpdate::Delta(delta),
                            &BookChecks::default(),
                            UnixNanos(10 + seq),
                            UnixNanos(20 + seq),
                        )
                        .unwrap();
                    } else {
                        hub.market_event(trade(&id, seq));
                    }
                    published += 1;
                    if published.is_multiple_of(DRAIN_EVERY) {
                        for sub in &subs {
                            take(sub, DRAIN_EVERY);
                        }
                    }
                })
            });
            // Every publication reached every subscriber: nothing was conflated or dropped.
            assert!(subs
                .iter()
                .all(|s| s.info().conflations == 0 && s.info().dropped == 0));
        }
    }
    group.finish();
}

/// What feeding stores adds to the hot path: trades to 10 subscribers with no store,
/// and with two (the Redis and InfluxDB taps), whose channels are drained like a store
/// task would.
fn stores(c: &mut Criterion) {
    let mut group = c.benchmark_group("stores");
    for taps in [0usize, 2] {
        let (senders, mut receivers): (Vec<Tap>, Vec<_>) = (0..taps)
            .map(|_| Tap::new("bench", 4 * DRAIN_EVERY))
            .unzip();
        let (hub, id, _sessions, subs) = setup(pb::Channel::Trades, 10, senders);
        let mut published = 0usize;
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("trade_10_subscribers_taps", taps), |b| {
            b.iter(|| {
                hub.market_event(trade(&id, published as u64));
                published += 1;
                if published.is_multiple_of(DRAIN_EVERY) {
                    for sub in &subs {
                        take(sub, DRAIN_EVERY);
                    }
                    for rx in &mut receivers {
                        while let Ok(record) = rx.try_recv() {
                            black_box(record);
                        }
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout, stores);
criterion_main!(benches);

/// Everything, no budget: what a server without credentials grants.
fn open_grant() -> std::sync::Arc<raven_hub::Grant> {
    std::sync::Arc::new(raven_hub::Grant::open("test"))
}
