//! Admission under concurrency: feeds of different instruments publish from their own
//! threads into the same subscriber's queue, which is tiny, while the subscriber reads in
//! bursts. Topics drop, conflate and recover all the time; whatever the interleaving, no
//! topic's sequence may jump without a message that explains it (a `Dropped` notice, a
//! conflated snapshot), and no delta may follow a skipped one.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raven_hub::{Channel, Hub, HubConfig, InstrumentSpec, Next};
use raven_model::feed::{BookChecks, BookUpdate, FeedSink};
use raven_model::{InstrumentId, Venue};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use support::*;

const FEEDS: usize = 4;
/// Publishes per feed at least; the feeds go on until the consumer has read
/// `CONSUMED` messages, so the test's reach does not depend on how fast the feed threads
/// run against the consumer (a release build's feeds finish 20 000 in a blink).
const PUBLISHES: u64 = 20_000;
const CONSUMED: u64 = 2_000;
/// A consumer that stops reading must not hang the test: the feeds give up here, and
/// the assertion on what it read says why.
const PUBLISHES_MAX: u64 = 50 * PUBLISHES;

fn instrument(i: usize) -> InstrumentId {
    InstrumentId::new(Venue::new("binance_spot").unwrap(), &format!("S{i}USDT"))
}

/// Per topic: the last sequence seen, and whether the book is known (snapshot since the
/// last reset).
#[derive(Default)]
struct Seen {
    last: Option<u64>,
    has_book: bool,
}

fn check(seen: &mut HashMap<(String, i32), Seen>, m: &pb::ServerMessage) -> Result<(), String> {
    let Some(t) = &m.topic else { return Ok(()) };
    let payload = m.payload.as_ref().ok_or("no payload")?;
    if matches!(payload, Payload::Ack(_)) {
        return Ok(());
    }
    let s = seen.entry((t.symbol.clone(), t.channel)).or_default();
    let explained_jump = matches!(payload, Payload::BookSnapshot(b) if b.conflated)
        || matches!(payload, Payload::BookReset(_));
    if let Some(prev) = s.last {
        let ok = match payload {
            Payload::Dropped(d) => m.sequence == prev + d.count,
            _ if explained_jump => m.sequence > prev,
            _ => m.sequence == prev + 1,
        };
        if !ok {
            return Err(format!(
                "{} {}: sequence {prev} then {} ({payload:?})",
                t.symbol, t.channel, m.sequence
            ));
        }
    }
    s.last = Some(m.sequence);
    match payload {
        Payload::BookSnapshot(_) => s.has_book = true,
        Payload::BookDelta(_) if !s.has_book => {
            return Err(format!("{}: a delta without a snapshot", t.symbol))
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn concurrent_feeds_never_leave_an_unexplained_gap() {
    let specs = (0..FEEDS)
        .map(|i| InstrumentSpec {
            id: instrument(i),
            channels: vec![Channel::Trades, Channel::Book],
        })
        .collect();
    let hub = Hub::new(
        HubConfig {
            queue_capacity: 4,
            slow_consumer_limit: Duration::from_secs(600),
            ..HubConfig::default()
        },
        specs,
        Vec::new(),
    );
    for i in 0..FEEDS {
        hub.book_update(
            &instrument(i),
            whole(initial_book()),
            &BookChecks::default(),
            t(1),
            t(2),
        )
        .unwrap();
    }
    let mut session = hub.session("stress".into(), open_grant());
    let sub = session.subscriber();
    let topics = (0..FEEDS)
        .flat_map(|i| {
            [
                topic(&instrument(i), pb::Channel::Trades, 0),
                topic(&instrument(i), pb::Channel::Book, 0),
            ]
        })
        .collect();
    subscribe(&mut session, topics);

    let done = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (sub, done, consumed) = (sub.clone(), done.clone(), consumed.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut seen = HashMap::new();
                let (mut messages, mut explained) = (0u64, 0u64);
                let mut burst = 0u32;
                loop {
                    let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
                    match sub.next(deadline).await {
                        Next::Message(bytes) => {
                            let m = decode(&bytes);
                            check(&mut seen, &m)?;
                            messages += 1;
                            consumed.store(messages, Ordering::Release);
                            explained += u64::from(matches!(
                                m.payload,
                                Some(Payload::Dropped(_))
                            ) || matches!(&m.payload, Some(Payload::BookSnapshot(s)) if s.conflated));
                            burst += 1;
                            // Read in bursts, so the queue fills, drops and recovers.
                            if burst.is_multiple_of(3) {
                                std::thread::sleep(Duration::from_micros(20));
                            }
                        }
                        Next::Idle if done.load(Ordering::Acquire) => {
                            return Ok::<_, String>((messages, explained))
                        }
                        Next::Idle => {}
                        Next::Ended(why) => return Err(format!("ended: {why:?}")),
                    }
                }
            })
        })
    };
    let feeds: Vec<_> = (0..FEEDS)
        .map(|i| {
            let (hub, consumed) = (hub.clone(), consumed.clone());
            std::thread::spawn(move || {
                let id = instrument(i);
                let mut n = 0;
                while n < PUBLISHES_MAX
                    && (n < PUBLISHES || consumed.load(Ordering::Acquire) < CONSUMED)
                {
                    if n.is_multiple_of(2) {
                        hub.market_event(trade_event(&id, n));
                    } else {
                        hub.book_update(
                            &id,
                            BookUpdate::Delta(delta(n)),
                            &BookChecks::default(),
                            t(n),
                            t(n),
                        )
                        .unwrap();
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for f in feeds {
        f.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let (messages, explained) = consumer.join().unwrap().unwrap();
    assert!(
        messages >= CONSUMED,
        "the consumer read {messages} messages"
    );
    assert!(
        explained > 100,
        "the queue must have overflowed often for this to test anything: {explained} recoveries"
    );
}
