//! The hub at its edges: what a subscriber is told when the exchange's data has holes,
//! candles that say they are incomplete, exchange clocks that cannot be trusted, top-N
//! views kept off the feed's path, queues bounded in bytes on every lane, clients that
//! never read, honest book depth and a clean stop.

mod support;

use std::time::{Duration, Instant};

use raven_hub::{EndReason, HubConfig, Next};
use raven_model::book::OrderBook;
use raven_model::feed::{BookChecks, BookUpdate, FeedGap, FeedSink};
use raven_model::{Bbo, EventKind, InstrumentId, MarketEvent, Price, Qty, Side, Trade, UnixNanos};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use support::*;

fn gap(msg: &pb::ServerMessage) -> &pb::FeedGap {
    match &msg.payload {
        Some(Payload::FeedGap(g)) => g,
        other => panic!("expected a FeedGap, got {other:?}"),
    }
}

fn candle(msg: &pb::ServerMessage) -> &pb::Candle {
    match &msg.payload {
        Some(Payload::Candle(c)) => c,
        other => panic!("expected a candle, got {other:?}"),
    }
}

fn bbo_event(id: &InstrumentId, update_id: u64, at: UnixNanos) -> MarketEvent {
    MarketEvent {
        instrument: id.clone(),
        exchange_time: at,
        receive_time: at,
        kind: EventKind::Bbo(Bbo {
            bid_price: Price::parse("99.9").unwrap(),
            bid_qty: Qty::parse("1").unwrap(),
            ask_price: Price::parse("100.0").unwrap(),
            ask_qty: Qty::parse("2").unwrap(),
            update_id,
        }),
    }
}

/// A trade of BTCUSDT with id `id` at exchange (and receive) time `at`.
fn trade_at(id: u64, price: &str, at: UnixNanos) -> MarketEvent {
    MarketEvent {
        instrument: btc(),
        exchange_time: at,
        receive_time: at,
        kind: EventKind::Trade(Trade {
            price: Price::parse(price).unwrap(),
            qty: Qty::parse("1").unwrap(),
            aggressor: Side::Buy,
            trade_id: raven_model::TradeId::Number(id),
            ordinal: 0,
        }),
    }
}

const MINUTE: u64 = 60_000_000_000;

/// The start of the minute before the current one: a bucket that has ended.
fn last_minute() -> u64 {
    UnixNanos::now().as_nanos() / MINUTE * MINUTE - MINUTE
}

#[tokio::test(start_paused = true)]
async fn an_interruption_is_announced_on_every_event_topic_and_closed_with_its_range() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let topics = vec![
        topic(&btc(), pb::Channel::Trades, 0),
        topic(&btc(), pb::Channel::Bbo, 0),
        topic(&btc(), pb::Channel::Candles1m, 0),
    ];
    subscribe(&mut session, topics.clone());
    assert_eq!(drain(&sub).await.len(), 3);
    hub.market_event(trade_event(&btc(), 1));
    hub.market_event(bbo_event(&btc(), 77, t(3)));
    let before = drain(&sub).await;
    assert_eq!(before.len(), 2);

    let since = t(900);
    hub.feed_gap(
        &btc(),
        FeedGap::Interrupted {
            reason: "connection lost: reset by peer".into(),
            since,
        },
        t(1000),
    );
    // Another instrument is not concerned; a second report of the same hole says nothing.
    hub.feed_gap(
        &btc(),
        FeedGap::Interrupted {
            reason: "again".into(),
            since: t(950),
        },
        t(1001),
    );
    let open = drain(&sub).await;
    assert_eq!(open.len(), 3, "one notice per event topic: {open:?}");
    let expect_last = |topic: &pb::Topic| match pb::Channel::try_from(topic.channel).unwrap() {
        pb::Channel::Bbo => 77,
        _ => 1001, // the trade, also for the candles built from trades
    };
    for msg in &open {
        let g = gap(msg);
        let t_ = msg.topic.as_ref().unwrap();
        assert_eq!(g.reason, "connection lost: reset by peer");
        assert_eq!((g.start_time_ns, g.end_time_ns), (since.as_nanos(), 0));
        assert_eq!((g.last_id, g.next_id), (expect_last(t_), 0));
        assert_eq!(msg.receive_time_ns, t(1000).as_nanos());
    }
    // Sequences stay contiguous: the notice takes the next number.
    let trade_seq = before[0].sequence;
    assert_eq!(open[0].sequence, trade_seq + 1);
    assert_eq!(open[1].sequence, before[1].sequence + 1);
    assert_eq!(open[2].sequence, 1, "the candle topic's first message");

    hub.feed_gap(&btc(), FeedGap::Resumed { at: t(2000) }, t(2000));
    let closed = drain(&sub).await;
    assert_eq!(closed.len(), 3);
    for (msg, opened) in closed.iter().zip(&open) {
        let g = gap(msg);
        assert_eq!(g.reason, gap(opened).reason);
        assert_eq!(
            (g.start_time_ns, g.end_time_ns),
            (since.as_nanos(), t(2000).as_nanos())
        );
        assert_eq!(msg.sequence, opened.sequence + 1);
    }
    hub.feed_gap(&btc(), FeedGap::Resumed { at: t(3000) }, t(3000));
    assert_idle(&sub).await;
    let info = hub
        .instrument_infos()
        .into_iter()
        .find(|i| i.instrument == btc())
        .unwrap();
    assert_eq!(info.interruptions, 1);
}

#[tokio::test(start_paused = true)]
async fn a_trade_id_jump_is_announced_with_the_missing_ids_and_marks_its_candles() {
    let hub = new_hub(HubConfig {
        candle_grace: Duration::ZERO,
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    let candles = topic(&btc(), pb::Channel::Candles1m, 0);
    subscribe(&mut session, vec![trades.clone(), candles.clone()]);
    drain(&sub).await;

    let m0 = last_minute() - 2 * MINUTE;
    hub.market_event(trade_at(1, "10", UnixNanos(m0 + 1)));
    hub.market_event(trade_at(2, "11", UnixNanos(m0 + MINUTE + 1)));
    let gap_at = UnixNanos(m0 + MINUTE + 2);
    hub.feed_gap(&btc(), FeedGap::TradeIds { last: 2, next: 6 }, gap_at);
    hub.market_event(trade_at(6, "12", UnixNanos(m0 + MINUTE + 3)));
    hub.market_event(trade_at(7, "13", UnixNanos(m0 + 2 * MINUTE + 1)));
    let got = drain(&sub).await;

    let notices: Vec<_> = got
        .iter()
        .filter(|m| matches!(m.payload, Some(Payload::FeedGap(_))))
        .collect();
    assert_eq!(
        notices.len(),
        2,
        "the trades topic and the candles built from them"
    );
    for n in &notices {
        let g = gap(n);
        assert_eq!((g.last_id, g.next_id), (2, 6));
        assert!(g.reason.contains("3 to 5"), "{}", g.reason);
        assert_eq!(
            g.start_time_ns,
            m0 + MINUTE + 1,
            "the last trade's receive time"
        );
        assert_eq!(g.end_time_ns, gap_at.as_nanos());
    }
    let closed: Vec<_> = got
        .iter()
        .filter(|m| m.topic.as_ref() == Some(&candles))
        .filter(|m| matches!(m.payload, Some(Payload::Candle(_))))
        .map(candle)
        .collect();
    assert_eq!(closed.len(), 2);
    assert!(closed[0].incomplete, "the first candle began unseen");
    assert!(closed[1].incomplete, "the minute with the skipped trades");
    // The next minute is whole again.
    hub.tick_at(Instant::now() + Duration::from_secs(120), UnixNanos::now());
    let later: Vec<_> = drain(&sub)
        .await
        .into_iter()
        .filter(|m| m.topic.as_ref() == Some(&candles))
        .collect();
    assert!(!later.is_empty());
    assert!(!candle(&later[0]).incomplete, "{later:?}");
    let info = hub
        .instrument_infos()
        .into_iter()
        .find(|i| i.instrument == btc())
        .unwrap();
    assert_eq!((info.trade_id_gaps, info.trades_missing), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_notice_owed_is_sent_before_a_feed_gap() {
    let hub = new_hub(small_queue(16));
    let mut session = hub.session("slow".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Trades, 0)]);
    for n in 0..100 {
        hub.market_event(trade_event(&btc(), n));
    }
    let mut got = drain(&sub).await;
    hub.feed_gap(
        &btc(),
        FeedGap::Interrupted {
            reason: "stalled".into(),
            since: t(5),
        },
        t(6),
    );
    got.extend(drain(&sub).await);
    let tail = &got[got.len() - 2..];
    let Some(Payload::Dropped(d)) = &tail[0].payload else {
        panic!("expected the owed Dropped notice first: {tail:?}")
    };
    let last_trade = got[got.len() - 3].sequence;
    assert_eq!(tail[0].sequence, last_trade + d.count);
    assert_eq!(tail[1].sequence, tail[0].sequence + 1);
    gap(&tail[1]);
}

#[tokio::test]
async fn a_quiet_topic_announces_what_it_dropped_without_waiting_for_its_next_message() {
    let hub = new_hub(small_queue(16));
    let mut session = hub.session("slow".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Trades, 0)]);
    for n in 0..100 {
        hub.market_event(trade_event(&btc(), n));
    }
    // The topic goes quiet; the client reads what it had, then the hub ticks.
    let mut got = drain(&sub).await;
    assert!(
        !got.iter()
            .any(|m| matches!(m.payload, Some(Payload::Dropped(_)))),
        "nothing to announce it with yet"
    );
    hub.tick();
    got.extend(drain(&sub).await);
    let last = got.last().expect("messages");
    let Some(Payload::Dropped(d)) = &last.payload else {
        panic!("expected the Dropped notice on the tick: {last:?}")
    };
    let before = &got[got.len() - 2];
    assert_eq!(
        last.sequence,
        before.sequence + d.count,
        "numbered as the last skipped"
    );
    // Owed once: the next trade follows it in step.
    hub.tick();
    hub.market_event(trade_event(&btc(), 100));
    let next = drain(&sub).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].sequence, last.sequence + 1);

    // A stream that stops owing a notice gets it before it ends.
    for n in 101..200 {
        hub.market_event(trade_event(&btc(), n));
    }
    hub.stop_subscribers("stopping");
    let mut tail = Vec::new();
    loop {
        match sub
            .next(tokio::time::Instant::now() + Duration::from_secs(5))
            .await
        {
            Next::Message(m) => tail.push(decode(&m)),
            Next::Ended(_) => break,
            Next::Idle => panic!("the stream did not end"),
        }
    }
    let last = tail.last().expect("messages before the end");
    assert!(
        matches!(last.payload, Some(Payload::Dropped(_))),
        "the stream ends on its Dropped notice: {last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_far_future_timestamp_does_not_poison_the_candles() {
    let hub = new_hub(HubConfig {
        candle_grace: Duration::ZERO,
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    let candles = topic(&btc(), pb::Channel::Candles1m, 0);
    subscribe(&mut session, vec![trades.clone(), candles.clone()]);
    drain(&sub).await;

    let now = UnixNanos::now().as_nanos();
    hub.market_event(trade_at(1, "10", UnixNanos(now)));
    let year = 365 * 24 * 60 * MINUTE;
    let mut future = trade_at(2, "99", UnixNanos(now + year));
    future.receive_time = UnixNanos(now);
    hub.market_event(future);
    hub.market_event(trade_at(3, "11", UnixNanos(now + 1)));
    hub.tick_at(Instant::now(), UnixNanos::now());
    let got = drain(&sub).await;
    assert_eq!(
        got.iter()
            .filter(|m| matches!(m.payload, Some(Payload::Trade(_))))
            .count(),
        3,
        "the trade is still published as the exchange sent it"
    );
    assert!(
        got.iter().all(|m| m.topic.as_ref() != Some(&candles)),
        "no candle closed by a timestamp a year ahead: {got:?}"
    );
    let info = hub
        .instrument_infos()
        .into_iter()
        .find(|i| i.instrument == btc())
        .unwrap();
    assert_eq!(
        (info.future_events, info.rejected_trades, info.late_trades),
        (1, 1, 0)
    );
    // The trades around it built the candle: it closes on the clock with both.
    hub.tick_at(Instant::now() + Duration::from_secs(61), UnixNanos::now());
    let closed: Vec<_> = drain(&sub)
        .await
        .into_iter()
        .filter(|m| m.topic.as_ref() == Some(&candles))
        .collect();
    let c = candle(&closed[0]);
    assert_eq!((c.high.as_str(), c.trade_count), ("11", 2));
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_step_does_not_close_candles_early() {
    let hub = new_hub(HubConfig {
        candle_grace: Duration::ZERO,
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Candles1m, 0)]);
    drain(&sub).await;
    // A trade just after a minute began.
    let now = UnixNanos::now().as_nanos();
    hub.market_event(trade_at(1, "10", UnixNanos(now - now % MINUTE + 1)));
    // NTP steps the wall clock an hour ahead: the monotonic clock has not moved.
    hub.tick_at(Instant::now(), UnixNanos(now + 60 * MINUTE));
    assert_idle(&sub).await;
    // A minute of real time later the candle closes.
    hub.tick_at(
        Instant::now() + Duration::from_secs(61),
        UnixNanos(now + 61 * MINUTE),
    );
    assert!(!drain(&sub).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn views_are_built_off_the_feed_path_and_coalesce_at_their_interval() {
    let interval = Duration::from_millis(50);
    let (hub, mut reference) = synced_hub(HubConfig {
        book_view_interval: interval,
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let top5 = topic(&btc(), pb::Channel::Book, 5);
    subscribe(&mut session, vec![top5.clone()]);
    let start = drain(&sub).await;
    assert_eq!(start.len(), 2, "the ack and the view as it stands");
    let mut sequence = start[1].sequence;

    let t0 = Instant::now();
    let mut published = 0;
    // Deltas that change the top 5 until one did: the feed call alone sends nothing.
    while published < 20 {
        publish_delta(&hub, &mut reference, published);
        published += 1;
    }
    assert_idle(&sub).await;
    assert_eq!(hub.build_views(t0), None);
    let built = drain(&sub).await;
    assert_eq!(built.len(), 1, "twenty changes, one view: {built:?}");
    sequence += 1;
    assert_eq!(built[0].sequence, sequence);
    assert_eq!(
        snapshot(&built[0]),
        &expected_snapshot(&reference, 5, false)
    );

    // More changes within the interval wait for it; nothing is sent before. (Until the
    // top 5 differs from what was sent: the deltas are a fixed series.)
    let sent = reference.snapshot(5);
    loop {
        publish_delta(&hub, &mut reference, published);
        published += 1;
        let now = reference.snapshot(5);
        if (now.bids, now.asks) != (sent.bids.clone(), sent.asks.clone()) {
            break;
        }
    }
    let due = hub.build_views(t0 + interval / 2);
    assert_eq!(due, Some(t0 + interval));
    assert_idle(&sub).await;
    assert_eq!(hub.build_views(t0 + interval), None);
    let built = drain(&sub).await;
    assert_eq!(built.len(), 1);
    assert_eq!(built[0].sequence, sequence + 1);
    assert_eq!(
        snapshot(&built[0]),
        &expected_snapshot(&reference, 5, false)
    );
}

#[tokio::test(start_paused = true)]
async fn a_view_built_from_a_book_that_was_reset_meanwhile_is_not_sent() {
    let (hub, mut reference) = synced_hub(views_now());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Book, 5)]);
    drain(&sub).await;
    publish_delta(&hub, &mut reference, 0);
    hub.book_reset(&btc(), "gap");
    build_views(&hub);
    let got = drain(&sub).await;
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].payload, Some(Payload::BookReset(_))));
}

#[tokio::test(start_paused = true)]
async fn a_view_waiting_since_a_reset_starts_when_another_subscriber_asks_for_it() {
    let (hub, _) = synced_hub(views_now());
    let mut first = hub.session("first".into(), open_grant());
    let a = first.subscriber();
    subscribe(&mut first, vec![topic(&btc(), pb::Channel::Book, 5)]);
    drain(&a).await;
    hub.book_reset(&btc(), "gap");
    // Resynced to the same levels; before the view task runs, a second subscriber.
    hub.book_update(
        &btc(),
        whole(initial_book()),
        &BookChecks::default(),
        t(20),
        t(21),
    )
    .unwrap();
    let mut second = hub.session("second".into(), open_grant());
    let b = second.subscriber();
    subscribe(&mut second, vec![topic(&btc(), pb::Channel::Book, 5)]);
    build_views(&hub);
    let got_a = drain(&a).await;
    let got_b = drain(&b).await;
    let snapshot = |got: &[pb::ServerMessage]| {
        got.iter()
            .rev()
            .find(|m| matches!(m.payload, Some(Payload::BookSnapshot(_))))
            .cloned()
    };
    let (Some(sa), Some(sb)) = (snapshot(&got_a), snapshot(&got_b)) else {
        panic!("both start from a snapshot: {got_a:?} / {got_b:?}")
    };
    assert!(matches!(got_a[0].payload, Some(Payload::BookReset(_))));
    assert_eq!(sa.sequence, sb.sequence, "the same view, the same number");
    assert_eq!(sa.payload, sb.payload);
}

#[tokio::test(start_paused = true)]
async fn every_lane_is_bounded_in_bytes_and_snapshots_count() {
    // Room for one book snapshot (about 400 bytes) and the acks, not for three.
    let (hub, _) = synced_hub(HubConfig {
        queue_max_bytes: 700,
        ..HubConfig::default()
    });
    for id in [eth(), btc_perp()] {
        hub.book_update(
            &id,
            whole(initial_book()),
            &BookChecks::default(),
            t(1),
            t(2),
        )
        .unwrap();
    }
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let books: Vec<_> = [btc(), eth(), btc_perp()]
        .iter()
        .map(|id| topic(id, pb::Channel::Book, 0))
        .collect();
    subscribe(&mut session, books.clone());
    let info = sub.info();
    assert!(
        info.queue_bytes <= info.queue_max_bytes,
        "{} bytes queued, bound {}",
        info.queue_bytes,
        info.queue_max_bytes
    );
    let first = drain(&sub).await;
    let snapshots = first
        .iter()
        .filter(|m| matches!(m.payload, Some(Payload::BookSnapshot(_))))
        .count();
    assert_eq!(first.len() - snapshots, 3, "every ack arrives");
    assert!(snapshots < 3, "not every snapshot fit: {snapshots}");

    // With room again, each book that did not fit starts with a (conflated) snapshot on
    // its next change, and the client ends up with all three.
    let mut refs: Vec<OrderBook> = (0..3)
        .map(|_| {
            let mut b = OrderBook::new();
            b.apply_snapshot(&initial_book(), None).unwrap();
            b
        })
        .collect();
    for (i, id) in [btc(), eth(), btc_perp()].iter().enumerate() {
        let d = delta(0);
        hub.book_update(
            id,
            BookUpdate::Delta(d.clone()),
            &BookChecks::default(),
            t(10),
            t(11),
        )
        .unwrap();
        refs[i].apply_delta(&d).unwrap();
    }
    let later = drain(&sub).await;
    for (i, book) in books.iter().enumerate() {
        let mut mine = first
            .iter()
            .chain(&later)
            .filter(|m| m.topic.as_ref() == Some(book))
            .filter(|m| !matches!(m.payload, Some(Payload::Ack(_))));
        let start = mine.next().expect("a snapshot");
        let mut client = ClientBook::default();
        client.replace(snapshot(start));
        for m in mine {
            match &m.payload {
                Some(Payload::BookDelta(d)) => client.apply(d),
                Some(Payload::BookSnapshot(s)) => client.replace(s),
                other => panic!("{other:?}"),
            }
        }
        client.matches(&refs[i]);
    }
}

#[tokio::test]
async fn a_stream_that_never_reads_is_cut_within_the_limit_whatever_it_sends() {
    let hub = new_hub(HubConfig {
        slow_consumer_limit: Duration::from_millis(50),
        queue_capacity: 64,
        max_topics_per_stream: 32,
        ..HubConfig::default()
    });
    // Data capacity plus the control headroom for two requests' worth of topics.
    let bound = 64 + 2 * 32 + 64;
    let mut session = hub.session("pinger".into(), open_grant());
    let sub = session.subscriber();
    let ping = |session: &mut raven_hub::Session, nonce| {
        session.handle(pb::ClientMessage {
            kind: Some(pb::client_message::Kind::Ping(pb::Ping { nonce })),
        })
    };
    // Pings as fast as it can, never reading: the pongs are bounded.
    for n in 0..100_000 {
        ping(&mut session, n);
        assert!(sub.info().queue_depth <= bound, "pongs beyond the headroom");
        if sub.is_ended() {
            break;
        }
    }
    assert!(
        sub.is_ended(),
        "a client that fills the control headroom unread is cut"
    );

    // A client that pings slowly and never reads is cut by the sweep, in time.
    let mut session = hub.session("quiet".into(), open_grant());
    let sub = session.subscriber();
    ping(&mut session, 1);
    // One sweep sees the pong waiting, the next one, past the limit, cuts the stream.
    hub.tick();
    std::thread::sleep(Duration::from_millis(60));
    hub.tick();
    match sub.next(far()).await {
        Next::Ended(end) if matches!(&*end, EndReason::SlowConsumer(why) if why.contains("unread")) =>
            {}
        other => panic!("expected the stream to be cut, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_depth_limited_snapshot_says_how_deep_the_book_is_known() {
    let hub = new_hub(HubConfig::default());
    // The snapshot source returned 10 levels per side, its limit: both sides may go on.
    hub.book_update(
        &btc(),
        BookUpdate::Snapshot {
            levels: initial_book(),
            limit: Some(10),
        },
        &BookChecks::default(),
        t(1),
        t(2),
    )
    .unwrap();
    // A level below the last known bid arrives: held, but not known to be complete.
    let beyond = book_levels(&[("98.5", "1")], &[], 101, 101);
    hub.book_update(
        &btc(),
        BookUpdate::Delta(beyond),
        &BookChecks::default(),
        t(3),
        t(4),
    )
    .unwrap();
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    subscribe(
        &mut session,
        vec![
            topic(&btc(), pb::Channel::Book, 0),
            topic(&btc(), pb::Channel::Book, 5),
        ],
    );
    let got = drain(&sub).await;
    let full = snapshot(&got[1]);
    assert_eq!((full.bids.len(), full.known_bid_levels), (11, 10));
    assert_eq!((full.asks.len(), full.known_ask_levels), (10, 10));
    let top = snapshot(&got[3]);
    assert_eq!((top.known_bid_levels, top.known_ask_levels), (5, 5));
    let info = hub
        .instrument_infos()
        .into_iter()
        .find(|i| i.instrument == btc())
        .unwrap();
    assert_eq!((info.bid_levels, info.known_levels), (11, (10, 10)));

    // A limit above what came back: the whole book is known.
    hub.book_update(
        &btc(),
        BookUpdate::Snapshot {
            levels: initial_book(),
            limit: Some(1000),
        },
        &BookChecks::default(),
        t(5),
        t(6),
    )
    .unwrap();
    let resync = drain(&sub).await;
    let full = snapshot(&resync[0]);
    assert_eq!((full.known_bid_levels, full.known_ask_levels), (10, 10));
}

#[tokio::test(start_paused = true)]
async fn stopping_ends_every_stream_after_what_is_queued() {
    let (hub, mut reference) = synced_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Book, 0)]);
    publish_delta(&hub, &mut reference, 0);
    hub.stop_subscribers("server is shutting down");
    publish_delta(&hub, &mut reference, 1);
    let mut got = Vec::new();
    loop {
        match sub.next(far()).await {
            Next::Message(m) => got.push(decode(&m)),
            Next::Ended(end) => {
                assert_eq!(*end, EndReason::Stopping("server is shutting down".into()));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got.len(),
        3,
        "ack, snapshot and the delta queued before the stop"
    );
}
