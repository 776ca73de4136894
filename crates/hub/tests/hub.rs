//! The hub's contract as a subscriber sees it: every message a [`Subscriber`] yields is
//! decoded as a `raven.v1.ServerMessage` and checked against `proto/raven/v1/raven.proto`
//! (acks per topic, snapshot then contiguous deltas, resets, conflation, drop notices,
//! slow-consumer disconnects, candles).

mod support;

use std::time::Duration;

use raven_hub::{EndReason, Hub, HubConfig, InstrumentSpec, Next, Subscriber};
use raven_model::book::OrderBook;
use raven_model::feed::{BookChecks, BookChecksum, BookRejected, BookUpdate, FeedSink};
use raven_model::{CandleInterval, EventKind, MarketEvent, Price, Qty, Side, Trade, UnixNanos};
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use support::*;

// ------------------------------------------------------------------ books

#[tokio::test(start_paused = true)]
async fn synced_book_starts_with_its_snapshot_then_contiguous_deltas() {
    let (hub, mut reference) = synced_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let book_topic = topic(&btc(), pb::Channel::Book, 0);
    subscribe(&mut session, vec![book_topic.clone()]);

    expect_ack(&sub, &book_topic, pb::ack::Result::Subscribed).await;
    let first = recv(&sub).await;
    assert_eq!(first.topic.as_ref(), Some(&book_topic));
    assert_eq!(snapshot(&first), &expected_snapshot(&reference, 0, false));
    assert_eq!(
        (first.exchange_time_ns, first.receive_time_ns),
        (t(1).as_nanos(), t(2).as_nanos())
    );

    for n in 0..20 {
        let d = publish_delta(&hub, &mut reference, n);
        let msg = recv(&sub).await;
        assert_eq!(msg.topic.as_ref(), Some(&book_topic));
        assert_eq!(
            msg.sequence,
            first.sequence + 1 + n,
            "deltas continue from the snapshot"
        );
        assert_eq!(book_delta(&msg), &expected_delta(&d));
        assert_eq!(msg.exchange_time_ns, t(10 + n).as_nanos());
        assert_eq!(msg.receive_time_ns, t(20 + n).as_nanos());
    }
    assert_idle(&sub).await;
    assert_eq!(
        hub.book(&btc(), 0).unwrap(),
        Some((reference.snapshot(0), reference.known_depth()))
    );
}

#[tokio::test(start_paused = true)]
async fn subscribing_before_sync_waits_for_the_first_snapshot() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let book_topic = topic(&btc(), pb::Channel::Book, 0);
    subscribe(&mut session, vec![book_topic.clone()]);
    expect_ack(&sub, &book_topic, pb::ack::Result::Subscribed).await;
    assert_idle(&sub).await;

    assert_eq!(
        hub.book_update(
            &btc(),
            BookUpdate::Delta(delta(0)),
            &BookChecks::default(),
            t(3),
            t(4)
        ),
        Err(BookRejected::NotSynced),
        "a delta before any snapshot has nothing to apply to"
    );
    assert_idle(&sub).await;
    assert_eq!(hub.book(&btc(), 0).unwrap(), None);

    let snap = initial_book();
    hub.book_update(
        &btc(),
        whole(snap.clone()),
        &BookChecks::default(),
        t(5),
        t(6),
    )
    .unwrap();
    let mut reference = OrderBook::new();
    reference.apply_snapshot(&snap, None).unwrap();
    let first = recv(&sub).await;
    assert_eq!(snapshot(&first), &expected_snapshot(&reference, 0, false));
    assert_eq!(
        (first.exchange_time_ns, first.receive_time_ns),
        (t(5).as_nanos(), t(6).as_nanos())
    );

    for n in 0..5 {
        let d = publish_delta(&hub, &mut reference, n);
        let msg = recv(&sub).await;
        assert_eq!(msg.sequence, first.sequence + 1 + n);
        assert_eq!(book_delta(&msg), &expected_delta(&d));
    }
    assert_idle(&sub).await;
}

#[tokio::test(start_paused = true)]
async fn top_n_view_sends_snapshots_only_when_the_top_levels_change() {
    let (hub, mut reference) = synced_hub(views_now());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let top5 = topic(&btc(), pb::Channel::Book, 5);
    subscribe(&mut session, vec![top5.clone()]);
    expect_ack(&sub, &top5, pb::ack::Result::Subscribed).await;
    let first = recv(&sub).await;
    assert_eq!(snapshot(&first), &expected_snapshot(&reference, 5, false));

    let mut sequence = first.sequence;
    let (mut changed, mut unchanged) = (0, 0);
    for n in 0..300 {
        let before = reference.snapshot(5);
        publish_delta(&hub, &mut reference, n);
        assert_idle(&sub).await;
        build_views(&hub);
        let after = reference.snapshot(5);
        let got = drain(&sub).await;
        if (before.bids, before.asks) == (after.bids, after.asks) {
            assert!(
                got.is_empty(),
                "delta {n} left the top 5 alone but the view sent {got:?}"
            );
            unchanged += 1;
        } else {
            assert_eq!(
                got.len(),
                1,
                "delta {n} changed the top 5: exactly one snapshot, got {got:?}"
            );
            sequence += 1;
            assert_eq!(got[0].sequence, sequence);
            assert_eq!(got[0].topic.as_ref(), Some(&top5));
            assert_eq!(snapshot(&got[0]), &expected_snapshot(&reference, 5, false));
            changed += 1;
        }
    }
    assert!(
        changed > 10 && unchanged > 10,
        "the series must exercise both cases: {changed} changed, {unchanged} not"
    );
}

#[tokio::test(start_paused = true)]
async fn book_reset_stops_deltas_until_the_next_snapshot() {
    let (hub, mut reference) = synced_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Book, 0)]);
    recv(&sub).await;
    let first = recv(&sub).await;
    publish_delta(&hub, &mut reference, 0);
    assert_eq!(recv(&sub).await.sequence, first.sequence + 1);

    hub.book_reset(&btc(), "update id gap");
    let reset = recv(&sub).await;
    assert_eq!(reset.sequence, first.sequence + 2);
    assert_eq!(
        reset.payload,
        Some(Payload::BookReset(pb::BookReset {
            reason: "update id gap".into()
        }))
    );
    assert_eq!(
        hub.book(&btc(), 0).unwrap(),
        None,
        "a reset book is not served"
    );
    assert_eq!(
        hub.book_update(
            &btc(),
            BookUpdate::Delta(delta(1)),
            &BookChecks::default(),
            t(30),
            t(31)
        ),
        Err(BookRejected::NotSynced)
    );
    assert_idle(&sub).await;

    let resync = book_levels(&[("98.0", "3")], &[("102.0", "4")], 500, 500);
    hub.book_update(
        &btc(),
        whole(resync.clone()),
        &BookChecks::default(),
        t(40),
        t(41),
    )
    .unwrap();
    reference.apply_snapshot(&resync, None).unwrap();
    let snap = recv(&sub).await;
    assert_eq!(snap.sequence, first.sequence + 3);
    assert_eq!(snapshot(&snap), &expected_snapshot(&reference, 0, false));

    let d = book_levels(&[("98.5", "1")], &[], 501, 501);
    hub.book_update(
        &btc(),
        BookUpdate::Delta(d.clone()),
        &BookChecks::default(),
        t(42),
        t(43),
    )
    .unwrap();
    let msg = recv(&sub).await;
    assert_eq!(msg.sequence, first.sequence + 4);
    assert_eq!(book_delta(&msg), &expected_delta(&d));
    assert_idle(&sub).await;
}

#[tokio::test(start_paused = true)]
async fn a_crossing_delta_is_rejected_and_never_published() {
    let (hub, mut reference) = synced_hub(views_now());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let top5 = topic(&btc(), pb::Channel::Book, 5);
    subscribe(
        &mut session,
        vec![topic(&btc(), pb::Channel::Book, 0), top5.clone()],
    );
    let start = drain(&sub).await;
    assert_eq!(start.len(), 4, "two acks and two snapshots: {start:?}");
    let full_seq = start[1].sequence;
    let top_seq = start[3].sequence;

    // Bid 100.5 is above the best ask 100.0.
    let crossing = book_levels(&[("100.5", "1")], &[], 101, 101);
    assert_eq!(
        hub.book_update(
            &btc(),
            BookUpdate::Delta(crossing),
            &BookChecks::default(),
            t(5),
            t(6)
        ),
        Err(BookRejected::Crossed)
    );
    let got = drain(&sub).await;
    assert_eq!(
        got.len(),
        2,
        "one BookReset per book topic and nothing else: {got:?}"
    );
    for (msg, seq) in got.iter().zip([full_seq + 1, top_seq + 1]) {
        assert!(
            matches!(msg.payload, Some(Payload::BookReset(_))),
            "{msg:?}"
        );
        assert_eq!(msg.sequence, seq);
    }
    assert_eq!(
        hub.book(&btc(), 0).unwrap(),
        None,
        "the crossed book is not served"
    );

    // A newcomer meanwhile gets its ack and no snapshot of the crossed state.
    let mut late = hub.session("late".into(), open_grant());
    let late_sub = late.subscriber();
    subscribe(&mut late, vec![topic(&btc(), pb::Channel::Book, 0)]);
    assert_eq!(drain(&late_sub).await.len(), 1);

    // A crossed snapshot is refused the same way.
    let crossed = book_levels(&[("101", "1")], &[("100", "1")], 200, 200);
    assert_eq!(
        hub.book_update(&btc(), whole(crossed), &BookChecks::default(), t(7), t(8)),
        Err(BookRejected::Crossed)
    );
    assert!(drain(&late_sub)
        .await
        .iter()
        .all(|m| matches!(m.payload, Some(Payload::BookReset(_)))));
    assert_eq!(hub.book(&btc(), 0).unwrap(), None);

    let snap = initial_book();
    hub.book_update(
        &btc(),
        whole(snap.clone()),
        &BookChecks::default(),
        t(9),
        t(10),
    )
    .unwrap();
    reference.apply_snapshot(&snap, None).unwrap();
    build_views(&hub);
    let got = drain(&sub).await;
    let snapshots: Vec<_> = got
        .iter()
        .filter(|m| matches!(m.payload, Some(Payload::BookSnapshot(_))))
        .collect();
    assert_eq!(snapshots.len(), 2, "{got:?}");
    assert_eq!(
        snapshot(snapshots[0]),
        &expected_snapshot(&reference, 0, false)
    );
    assert_eq!(
        snapshot(snapshots[1]),
        &expected_snapshot(&reference, 5, false)
    );
    let late_snap = recv(&late_sub).await;
    assert_eq!(
        snapshot(&late_snap),
        &expected_snapshot(&reference, 0, false)
    );
}

// ------------------------------------------------------------------ trades and requests

/// A made-up venue checksum: the number of levels in the book.
fn level_count(book: &OrderBook) -> u32 {
    let (bids, asks) = book.len();
    (bids + asks) as u32
}

#[tokio::test(start_paused = true)]
async fn a_venue_s_checks_run_on_the_hub_s_book_and_what_they_cut_is_published() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let book_topic = topic(&btc(), pb::Channel::Book, 0);
    subscribe(&mut session, vec![book_topic.clone()]);
    expect_ack(&sub, &book_topic, pb::ack::Result::Subscribed).await;
    // A top-10 venue with a checksum: the snapshot's 20 levels.
    let checks = |expected| BookChecks {
        depth: Some(10),
        checksum: Some((
            expected,
            BookChecksum {
                levels: usize::MAX,
                compute: level_count,
            },
        )),
    };
    hub.book_update(&btc(), whole(initial_book()), &checks(20), t(1), t(2))
        .unwrap();
    let mut reference = OrderBook::new();
    reference.apply_snapshot(&initial_book(), Some(10)).unwrap();
    assert_eq!(
        snapshot(&recv(&sub).await),
        &expected_snapshot(&reference, 0, false)
    );

    // A new best bid pushes 99.0 beyond the 10 the venue keeps: the delta published
    // carries its removal, which the venue never sends.
    let d = book_levels(&[("99.95", "1")], &[], 101, 101);
    hub.book_update(
        &btc(),
        BookUpdate::Delta(d.clone()),
        &checks(20),
        t(3),
        t(4),
    )
    .unwrap();
    let mut cut = d.clone();
    cut.bids.push(lvl("99.0", "0"));
    assert_eq!(book_delta(&recv(&sub).await), &expected_delta(&cut));
    reference.apply_delta(&cut).unwrap();
    assert_eq!(
        hub.book(&btc(), 0).unwrap().unwrap().0,
        reference.snapshot(0)
    );

    // A checksum the book does not have: refused, and the book reset like a crossed one.
    let d = book_levels(&[("99.96", "1")], &[], 102, 102);
    assert_eq!(
        hub.book_update(&btc(), BookUpdate::Delta(d), &checks(7), t(5), t(6)),
        Err(BookRejected::Checksum {
            expected: 7,
            computed: 20
        })
    );
    let reset = recv(&sub).await;
    let Some(Payload::BookReset(reset)) = reset.payload else {
        panic!("{reset:?}")
    };
    assert_eq!(reset.reason, "checksum mismatch");
    assert_eq!(hub.book(&btc(), 0).unwrap(), None, "not served");
    assert_idle(&sub).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_costs_what_it_resolves_to() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let request = |kind| pb::ClientMessage { kind: Some(kind) };
    let wildcard = wire_topic("binance_spot", "*", pb::Channel::Book as i32, 0);
    // One wildcard topic, a snapshot for each of the venue's two books.
    let cost = session.handle(request(pb::client_message::Kind::Subscribe(
        pb::SubscribeRequest {
            topics: vec![wildcard.clone()],
            ..Default::default()
        },
    )));
    assert_eq!(cost, 2);
    let cost = session.handle(request(pb::client_message::Kind::Unsubscribe(
        pb::UnsubscribeRequest {
            topics: vec![wildcard],
        },
    )));
    assert_eq!(cost, 2);
    // A ping, a rejected topic: one each.
    let ping = pb::client_message::Kind::Ping(pb::Ping { nonce: 1 });
    assert_eq!(session.handle(request(ping)), 1);
    let unknown = wire_topic("binance_spot", "NOPE", pb::Channel::Trades as i32, 0);
    let cost = session.handle(request(pb::client_message::Kind::Subscribe(
        pb::SubscribeRequest {
            topics: vec![unknown],
            ..Default::default()
        },
    )));
    assert_eq!(cost, 1);
}

#[tokio::test(start_paused = true)]
async fn wildcard_trades_ack_each_symbol_and_arrive_contiguously() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    subscribe(
        &mut session,
        vec![wire_topic(
            "binance_spot",
            "*",
            pb::Channel::Trades as i32,
            0,
        )],
    );
    let acks = drain(&sub).await;
    let mut acked: Vec<_> = acks
        .iter()
        .map(|m| {
            assert_eq!(ack(m).0, pb::ack::Result::Subscribed);
            m.topic.clone().unwrap()
        })
        .collect();
    acked.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    assert_eq!(
        acked,
        vec![
            topic(&btc(), pb::Channel::Trades, 0),
            topic(&eth(), pb::Channel::Trades, 0)
        ]
    );

    for n in 0..60 {
        hub.market_event(trade_event(&btc(), n));
        hub.market_event(trade_event(&eth(), n));
        hub.market_event(trade_event(&btc_perp(), n)); // another venue: not subscribed
    }
    let got = drain(&sub).await;
    assert_eq!(got.len(), 120);
    for id in [btc(), eth()] {
        let mine: Vec<_> = got
            .iter()
            .filter(|m| m.topic.as_ref().unwrap().symbol == id.symbol.as_str())
            .collect();
        assert_eq!(mine.len(), 60);
        for (n, msg) in mine.iter().enumerate() {
            let n = n as u64;
            assert_eq!(
                msg.sequence,
                mine[0].sequence + n,
                "{id} trades are contiguous"
            );
            let EventKind::Trade(expect) = trade_event(&id, n).kind else {
                unreachable!()
            };
            let expect_side = if expect.aggressor == Side::Buy {
                pb::Side::Buy
            } else {
                pb::Side::Sell
            };
            assert_eq!(
                msg.payload,
                Some(Payload::Trade(pb::Trade {
                    price: expect.price.to_string(),
                    quantity: expect.qty.to_string(),
                    aggressor: expect_side as i32,
                    trade_id: expect.trade_id.number().unwrap_or_default(),
                    trade_id_text: expect.trade_id.text().into_owned(),
                }))
            );
            assert_eq!(
                (msg.exchange_time_ns, msg.receive_time_ns),
                (t(n).as_nanos(), t(n + 500).as_nanos())
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_rejected_with_a_reason_and_the_session_keeps_working() {
    let hub = new_hub(HubConfig {
        max_topics_per_stream: 2,
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let trades = pb::Channel::Trades as i32;

    let cases: Vec<(pb::Topic, &str)> = vec![
        (wire_topic("nowhere", "BTCUSDT", trades, 0), "unknown venue"),
        (
            wire_topic("binance_spot", "DOGEUSDT", trades, 0),
            "unknown symbol",
        ),
        (
            wire_topic("binance_spot", "BTCUSDT", 99, 0),
            "unknown channel",
        ),
        (
            wire_topic(
                "binance_spot",
                "BTCUSDT",
                pb::Channel::Unspecified as i32,
                0,
            ),
            "unknown channel",
        ),
        (
            topic(&btc(), pb::Channel::Funding, 0),
            "does not carry CHANNEL_FUNDING",
        ),
        (
            topic(&btc(), pb::Channel::Trades, 5),
            "depth is only valid for CHANNEL_BOOK",
        ),
        (topic(&btc(), pb::Channel::Book, 5000), "not offered"),
        (topic(&btc(), pb::Channel::Book, 7), "not offered"),
        (wire_topic("binance_spot", "", trades, 0), "symbol is empty"),
    ];
    for (bad, reason) in &cases {
        subscribe(&mut session, vec![bad.clone()]);
        let msg = recv(&sub).await;
        assert_eq!(
            msg.topic.as_ref(),
            Some(bad),
            "the rejection names the requested topic"
        );
        let (result, got) = ack(&msg);
        assert_eq!(result, pb::ack::Result::Rejected);
        assert!(got.contains(reason), "{got:?} should mention {reason:?}");
    }

    session.handle(pb::ClientMessage { kind: None });
    expect_rejected(&sub, "empty client message").await;

    unsubscribe(&mut session, vec![topic(&eth(), pb::Channel::Trades, 0)]);
    expect_rejected(&sub, "not subscribed").await;

    // A request with more topics than a stream may hold is refused whole, in one ack.
    let wanted = [
        topic(&btc(), pb::Channel::Trades, 0),
        topic(&eth(), pb::Channel::Trades, 0),
        topic(&btc(), pb::Channel::Bbo, 0),
    ];
    subscribe(&mut session, wanted.to_vec());
    expect_rejected(&sub, "request has 3 topics; at most 2 per request").await;
    assert_idle(&sub).await;
    assert_eq!(hub.subscriber_infos()[0].topics, 0);

    // Per-topic answers otherwise: two fit the limit of 2, a third does not.
    subscribe(&mut session, wanted[..2].to_vec());
    expect_ack(&sub, &wanted[0], pb::ack::Result::Subscribed).await;
    expect_ack(&sub, &wanted[1], pb::ack::Result::Subscribed).await;
    subscribe(&mut session, wanted[2..].to_vec());
    expect_rejected(&sub, "topic limit reached").await;
    assert_idle(&sub).await;
    assert_eq!(hub.subscriber_infos()[0].topics, 2);

    hub.market_event(trade_event(&btc(), 1));
    let msg = recv(&sub).await;
    assert_eq!(msg.topic.as_ref(), Some(&wanted[0]));
    assert!(matches!(msg.payload, Some(Payload::Trade(_))));

    // After an unsubscribe there is room again.
    unsubscribe(&mut session, vec![wanted[1].clone()]);
    expect_ack(&sub, &wanted[1], pb::ack::Result::Unsubscribed).await;
    subscribe(&mut session, vec![wanted[2].clone()]);
    expect_ack(&sub, &wanted[2], pb::ack::Result::Subscribed).await;
}

#[tokio::test(start_paused = true)]
async fn ping_pong_and_unsubscribe() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    session.handle(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Ping(pb::Ping {
            nonce: 0xdead_beef,
        })),
    });
    let pong = recv(&sub).await;
    assert_eq!(pong.topic, None);
    assert_eq!(
        pong.payload,
        Some(Payload::Pong(pb::Pong { nonce: 0xdead_beef }))
    );

    let trades = topic(&btc(), pb::Channel::Trades, 0);
    let bbo = topic(&btc(), pb::Channel::Bbo, 0);
    subscribe(&mut session, vec![trades.clone(), bbo.clone()]);
    expect_ack(&sub, &trades, pb::ack::Result::Subscribed).await;
    expect_ack(&sub, &bbo, pb::ack::Result::Subscribed).await;
    hub.market_event(trade_event(&btc(), 1));
    assert_eq!(recv(&sub).await.topic.as_ref(), Some(&trades));

    unsubscribe(&mut session, vec![trades.clone()]);
    expect_ack(&sub, &trades, pb::ack::Result::Unsubscribed).await;
    hub.market_event(trade_event(&btc(), 2));
    assert_idle(&sub).await;
    assert_eq!(hub.subscriber_infos()[0].topics, 1);
}

// ------------------------------------------------------------------ slow consumers

#[tokio::test(start_paused = true)]
async fn a_slow_book_subscriber_is_conflated_to_a_fresh_snapshot() {
    let (hub, mut reference) = synced_hub(small_queue(16));
    let mut session = hub.session("slow".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Book, 0)]);

    for n in 0..100 {
        publish_delta(&hub, &mut reference, n);
    }
    assert_eq!(
        sub.info().queue_depth,
        16,
        "data stops at the queue capacity"
    );

    let queued = drain(&sub).await;
    assert_eq!(queued.len(), 16);
    ack(&queued[0]);
    let mut client = ClientBook::default();
    client.replace(snapshot(&queued[1]));
    for (i, msg) in queued[2..].iter().enumerate() {
        assert_eq!(msg.sequence, queued[1].sequence + 1 + i as u64);
        client.apply(book_delta(msg));
    }
    let last_queued = queued.last().unwrap().sequence;

    // With room again, the next publication brings a conflated snapshot of the book as
    // it is then, numbered as that publication, and deltas resume after it.
    publish_delta(&hub, &mut reference, 100);
    let conflated = recv(&sub).await;
    let snap = snapshot(&conflated);
    assert_eq!(snap, &expected_snapshot(&reference, 0, true));
    assert_eq!(
        conflated.sequence,
        last_queued + 100 - 14 + 1,
        "the sequence jumps over the skipped deltas"
    );
    client.replace(snap);
    for n in 101..110 {
        publish_delta(&hub, &mut reference, n);
        let msg = recv(&sub).await;
        assert_eq!(msg.sequence, conflated.sequence + n - 100);
        client.apply(book_delta(&msg));
    }
    client.matches(&reference);
    assert!(sub.info().conflations >= 1);
    assert_eq!(sub.info().dropped, 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_trade_subscriber_is_told_how_many_trades_it_missed() {
    let hub = new_hub(small_queue(16));
    let mut session = hub.session("slow".into(), open_grant());
    let sub = session.subscriber();
    subscribe(&mut session, vec![topic(&btc(), pb::Channel::Trades, 0)]);

    for n in 0..100 {
        hub.market_event(trade_event(&btc(), n));
    }
    let mut got = drain(&sub).await;
    assert_eq!(got.len(), 16, "the ack and the trades that fit");
    hub.market_event(trade_event(&btc(), 100));
    got.extend(drain(&sub).await);

    let mut expect_seq = got[1].sequence;
    let mut dropped = 0;
    for msg in &got[1..] {
        match &msg.payload {
            Some(Payload::Dropped(d)) => {
                expect_seq += d.count;
                assert_eq!(
                    msg.sequence,
                    expect_seq - 1,
                    "a Dropped notice is numbered as the last skipped trade"
                );
                dropped += d.count;
            }
            Some(Payload::Trade(_)) => {
                assert_eq!(msg.sequence, expect_seq);
                expect_seq += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        expect_seq,
        got[1].sequence + 101,
        "every trade is either delivered or counted"
    );
    assert_eq!(dropped, 100 - 15);
    assert_eq!(sub.info().dropped, dropped);
}

/// Publishes on BTCUSDT until `slow` is killed (giving up after `give_up`), draining
/// `fast` after each publication; returns what `fast` received.
async fn publish_until_killed(
    hub: &Hub,
    slow: &Subscriber,
    fast: &Subscriber,
    publish: &mut dyn FnMut(&Hub, u64),
) -> (u64, Vec<pb::ServerMessage>) {
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut published = 0;
    while !slow.is_ended() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a subscriber stuck behind for 10 s with a 50 ms limit was never disconnected"
        );
        publish(hub, published);
        published += 1;
        received.extend(drain(fast).await);
        std::thread::sleep(Duration::from_millis(1));
    }
    (published, received)
}

fn kill_config() -> HubConfig {
    HubConfig {
        queue_capacity: 16,
        slow_consumer_limit: Duration::from_millis(50),
        ..HubConfig::default()
    }
}

async fn expect_killed(sub: &Subscriber) {
    match sub.next(far()).await {
        Next::Ended(end) if matches!(&*end, EndReason::SlowConsumer(r) if r.contains("slow consumer")) =>
            {}
        other => panic!("expected a kill, got {other:?}"),
    }
}

#[tokio::test]
async fn a_trade_subscriber_behind_past_the_limit_is_killed_and_others_unaffected() {
    let hub = new_hub(kill_config());
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    let mut slow_session = hub.session("slow".into(), open_grant());
    let mut fast_session = hub.session("fast".into(), open_grant());
    subscribe(&mut slow_session, vec![trades.clone()]);
    subscribe(&mut fast_session, vec![trades.clone()]);
    let (slow, fast) = (slow_session.subscriber(), fast_session.subscriber());
    expect_ack(&fast, &trades, pb::ack::Result::Subscribed).await;

    let (published, received) = publish_until_killed(&hub, &slow, &fast, &mut |hub, n| {
        hub.market_event(trade_event(&btc(), n))
    })
    .await;
    expect_killed(&slow).await;
    assert_eq!(
        received.len() as u64,
        published,
        "the fast subscriber got every trade"
    );
    for (i, msg) in received.iter().enumerate() {
        assert!(matches!(msg.payload, Some(Payload::Trade(_))));
        assert_eq!(msg.sequence, received[0].sequence + i as u64);
    }
    assert!(!fast.is_ended());
}

#[tokio::test]
async fn a_book_subscriber_behind_past_the_limit_is_killed_and_others_unaffected() {
    let (hub, mut reference) = synced_hub(kill_config());
    let book = topic(&btc(), pb::Channel::Book, 0);
    let mut slow_session = hub.session("slow".into(), open_grant());
    let mut fast_session = hub.session("fast".into(), open_grant());
    subscribe(&mut slow_session, vec![book.clone()]);
    subscribe(&mut fast_session, vec![book.clone()]);
    let (slow, fast) = (slow_session.subscriber(), fast_session.subscriber());
    expect_ack(&fast, &book, pb::ack::Result::Subscribed).await;
    let first = recv(&fast).await;
    let mut client = ClientBook::default();
    client.replace(snapshot(&first));

    let (published, received) = publish_until_killed(&hub, &slow, &fast, &mut |hub, n| {
        drop(publish_delta(hub, &mut reference, n))
    })
    .await;
    expect_killed(&slow).await;
    assert_eq!(received.len() as u64, published);
    for (i, msg) in received.iter().enumerate() {
        assert_eq!(msg.sequence, first.sequence + 1 + i as u64);
        client.apply(book_delta(msg));
    }
    client.matches(&reference);
}

// ------------------------------------------------------------------ candles and sessions

#[tokio::test(start_paused = true)]
async fn trades_in_the_past_close_candles_on_the_clock() {
    let hub = new_hub(HubConfig {
        candle_grace: Duration::ZERO,
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let intervals = [
        (CandleInterval::M1, pb::Channel::Candles1m),
        (CandleInterval::M5, pb::Channel::Candles5m),
        (CandleInterval::H1, pb::Channel::Candles1h),
    ];
    subscribe(
        &mut session,
        intervals
            .iter()
            .map(|(_, c)| topic(&btc(), *c, 0))
            .collect(),
    );
    assert_eq!(drain(&sub).await.len(), 3);

    // Two hours ago, on an hour boundary: every interval's bucket has long ended.
    const HOUR: u64 = 3_600_000_000_000;
    let open = UnixNanos::now().as_nanos() / HOUR * HOUR - 2 * HOUR;
    for (offset_s, price, qty) in [(1, "100.0", "1"), (30, "102.5", "0.5"), (45, "99.0", "2")] {
        let at = UnixNanos(open + offset_s * 1_000_000_000);
        hub.market_event(MarketEvent {
            instrument: btc(),
            exchange_time: at,
            receive_time: at,
            kind: EventKind::Trade(Trade {
                price: Price::parse(price).unwrap(),
                qty: Qty::parse(qty).unwrap(),
                aggressor: Side::Buy,
                trade_id: raven_model::TradeId::Number(offset_s),
                ordinal: 0,
            }),
        });
    }
    assert_idle(&sub).await;
    // The candle clock runs on Raven's monotonic clock from the last trade's arrival:
    // two hours later, every interval's bucket has ended.
    hub.tick_at(
        std::time::Instant::now() + Duration::from_secs(2 * 3600),
        UnixNanos::now(),
    );
    let got = drain(&sub).await;

    for (interval, channel) in intervals {
        let wire = topic(&btc(), channel, 0);
        let step = interval.as_nanos();
        let candles: Vec<_> = got
            .iter()
            .filter(|m| m.topic.as_ref() == Some(&wire))
            .collect();
        assert!(!candles.is_empty(), "{interval:?} closed nothing");
        let first = match &candles[0].payload {
            Some(Payload::Candle(c)) => c,
            other => panic!("expected a candle, got {other:?}"),
        };
        assert_eq!(
            first,
            &pb::Candle {
                open_time_ns: open,
                close_time_ns: open + step,
                open: "100.0".into(),
                high: "102.5".into(),
                low: "99.0".into(),
                close: "99.0".into(),
                volume: "3.5".into(),
                trade_count: 3,
                incomplete: true,
                volume_unit: String::new(),
            },
            "the first candle began before the first trade Raven saw"
        );
        let mut prev_close = first.close_time_ns;
        for (i, msg) in candles.iter().enumerate() {
            assert_eq!(
                msg.sequence,
                candles[0].sequence + i as u64,
                "{interval:?} candles are contiguous"
            );
            let Some(Payload::Candle(c)) = &msg.payload else {
                panic!("{msg:?}")
            };
            assert_eq!(msg.exchange_time_ns, c.close_time_ns);
            if i > 0 {
                assert_eq!(c.open_time_ns, prev_close, "no gap between candles");
                assert_eq!(
                    (
                        c.open.as_str(),
                        c.close.as_str(),
                        c.volume.as_str(),
                        c.trade_count,
                        c.incomplete
                    ),
                    ("99.0", "99.0", "0", 0, false)
                );
                prev_close = c.close_time_ns;
            }
        }
        // The exchange clock then stands at the last trade plus two hours: every bucket
        // that ended by then is closed, and none after it.
        let ticked = open + 45 * 1_000_000_000 + 2 * HOUR;
        assert!(
            prev_close + step > ticked,
            "{interval:?}: the last closed bucket ends at {prev_close}"
        );
        assert!(prev_close <= ticked);
    }
    assert_eq!(
        got.len(),
        got.iter()
            .filter(|m| matches!(m.payload, Some(Payload::Candle(_))))
            .count()
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_session_unsubscribes_it() {
    let (hub, mut reference) = synced_hub(views_now());
    let mut gone = hub.session("gone".into(), open_grant());
    let mut stays = hub.session("stays".into(), open_grant());
    let topics = vec![
        topic(&btc(), pb::Channel::Book, 0),
        topic(&btc(), pb::Channel::Book, 5),
        topic(&btc(), pb::Channel::Trades, 0),
    ];
    subscribe(&mut gone, topics.clone());
    subscribe(&mut stays, topics);
    let (gone_sub, stays_sub) = (gone.subscriber(), stays.subscriber());
    let ids: Vec<u64> = hub.subscriber_infos().iter().map(|i| i.id).collect();
    assert_eq!(ids, vec![gone_sub.id, stays_sub.id]);
    drain(&gone_sub).await;
    drain(&stays_sub).await;

    drop(gone);
    let infos = hub.subscriber_infos();
    assert_eq!(infos.len(), 1);
    assert_eq!(
        (infos[0].id, infos[0].peer.as_str(), infos[0].topics),
        (stays_sub.id, "stays", 3)
    );

    publish_delta(&hub, &mut reference, 0);
    build_views(&hub);
    hub.market_event(trade_event(&btc(), 0));
    assert_idle(&gone_sub).await;
    assert_eq!(
        drain(&stays_sub).await.len(),
        3,
        "delta, top-5 snapshot and trade still flow to the other session"
    );
}

#[tokio::test]
async fn taps_get_events_closed_candles_and_periodic_samples() {
    // Large: the clock two hours past the trade closes two hours of flat 1m candles.
    let (tap, mut rx) = raven_hub::Tap::new("test", 100_000);
    let hub = Hub::new(
        HubConfig {
            candle_grace: Duration::ZERO,
            tap_interval: Duration::ZERO,
            tap_book_depth: 1,
            ..HubConfig::default()
        },
        vec![InstrumentSpec {
            id: btc(),
            channels: spot_channels(),
        }],
        vec![tap],
    );
    hub.book_update(
        &btc(),
        whole(initial_book()),
        &BookChecks::default(),
        t(1),
        t(2),
    )
    .unwrap();
    let trade = trade_event(&btc(), 1);
    hub.market_event(trade.clone());
    assert_eq!(rx.try_recv().unwrap(), raven_hub::Record::Event(trade));

    hub.tick_at(
        std::time::Instant::now() + Duration::from_secs(2 * 3600),
        UnixNanos::now(),
    );
    let mut books = Vec::new();
    let mut closed = 0;
    let mut open = 0;
    while let Ok(record) = rx.try_recv() {
        match record {
            raven_hub::Record::Book {
                instrument,
                levels,
                exchange_time,
                receive_time,
            } => {
                assert_eq!(instrument, btc());
                assert_eq!(
                    (exchange_time, receive_time),
                    (t(1), t(2)),
                    "the book's own update times"
                );
                books.push(levels);
            }
            raven_hub::Record::Candle {
                instrument,
                closed: true,
                ..
            } => {
                assert_eq!(instrument, btc());
                closed += 1;
            }
            raven_hub::Record::Candle { closed: false, .. } => open += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut reference = OrderBook::new();
    reference.apply_snapshot(&initial_book(), None).unwrap();
    assert_eq!(
        books,
        vec![reference.snapshot(1)],
        "one top-1 sample of the synced book"
    );
    assert!(
        closed >= 3,
        "the trade's candles closed on the clock (1m, 5m, 1h)"
    );
    assert_eq!(open, 3, "the open candle of each interval is sampled");
}

// ------------------------------------------------------------------ entitlements

#[tokio::test(start_paused = true)]
async fn a_topic_beyond_the_grant_is_rejected_naming_the_entitlement() {
    let hub = new_hub(HubConfig::default());
    let spot = btc().venue;
    let grant = std::sync::Arc::new(raven_hub::Grant::new(
        "desk",
        Some(vec![spot]),
        Some(vec!["trades", "book"]),
        Some(3),
    ));
    let mut a = hub.session("a".into(), grant.clone());
    let mut b = hub.session("b".into(), grant.clone());
    let (sa, sb) = (a.subscriber(), b.subscriber());

    // A channel outside the grant, named one by one or by wildcard.
    let bbo = topic(&btc(), pb::Channel::Bbo, 0);
    subscribe(&mut a, vec![bbo.clone()]);
    let (result, reason) = ack(&recv(&sa).await);
    assert_eq!(result, pb::ack::Result::Rejected);
    assert!(
        reason.contains("\"desk\"") && reason.contains("channel bbo"),
        "{reason}"
    );
    // A venue outside it: the reason names the entitlement, not whether it exists.
    let perp = topic(&btc_perp(), pb::Channel::Trades, 0);
    subscribe(&mut a, vec![perp]);
    let (result, reason) = ack(&recv(&sa).await);
    assert_eq!(result, pb::ack::Result::Rejected);
    assert!(reason.contains("entitlement: venues"), "{reason}");

    // Three topics for the principal, whichever of its streams holds them.
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    let book = topic(&btc(), pb::Channel::Book, 0);
    let eth_trades = topic(&eth(), pb::Channel::Trades, 0);
    subscribe(&mut a, vec![trades.clone(), book.clone()]);
    expect_ack(&sa, &trades, pb::ack::Result::Subscribed).await;
    expect_ack(&sa, &book, pb::ack::Result::Subscribed).await;
    subscribe(&mut b, vec![trades.clone(), eth_trades.clone()]);
    expect_ack(&sb, &trades, pb::ack::Result::Subscribed).await;
    let (result, reason) = ack(&recv(&sb).await);
    assert_eq!(result, pb::ack::Result::Rejected);
    assert!(reason.contains("max_topics = 3"), "{reason}");
    assert_eq!(grant.topics_held(), 3);

    // What a stream gives back, by unsubscribing or going away, the others may take.
    unsubscribe(&mut a, vec![book]);
    drop(a);
    assert_eq!(grant.topics_held(), 1);
    subscribe(&mut b, vec![eth_trades.clone()]);
    expect_ack(&sb, &eth_trades, pb::ack::Result::Subscribed).await;
    assert_eq!(grant.topics_held(), 2);
}

#[tokio::test]
async fn a_batch_delay_is_bounded_and_a_refused_one_changes_nothing() {
    let hub = new_hub(HubConfig {
        slow_consumer_limit: Duration::from_millis(40),
        ..HubConfig::default()
    });
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    let asking = |micros: u32| pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics: vec![trades.clone()],
            max_batch_delay_us: Some(micros),
            ..Default::default()
        })),
    };
    session.handle(asking(20_000));
    expect_ack(&sub, &trades, pb::ack::Result::Subscribed).await;
    assert_eq!(
        hub.subscriber_infos()[0].batch_delay,
        Duration::from_millis(20)
    );

    // More than half the slow-consumer limit: refused whole, the delay as it was.
    session.handle(asking(20_001));
    expect_rejected(&sub, "max_batch_delay_us: 20001 exceeds the maximum 20000").await;
    assert_idle(&sub).await;
    assert_eq!(
        hub.subscriber_infos()[0].batch_delay,
        Duration::from_millis(20)
    );

    // Unset leaves it; zero turns it off.
    subscribe(&mut session, vec![topic(&eth(), pb::Channel::Trades, 0)]);
    expect_ack(
        &sub,
        &topic(&eth(), pb::Channel::Trades, 0),
        pb::ack::Result::Subscribed,
    )
    .await;
    assert_eq!(
        hub.subscriber_infos()[0].batch_delay,
        Duration::from_millis(20)
    );
    session.handle(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            max_batch_delay_us: Some(0),
            ..Default::default()
        })),
    });
    assert_eq!(hub.subscriber_infos()[0].batch_delay, Duration::ZERO);

    // With the default limit, 50 ms is the most.
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("test".into(), open_grant());
    let sub = session.subscriber();
    session.handle(asking(50_001));
    expect_rejected(&sub, "max_batch_delay_us: 50001 exceeds the maximum 50000").await;
    session.handle(asking(50_000));
    expect_ack(&sub, &trades, pb::ack::Result::Subscribed).await;
    assert_eq!(
        hub.subscriber_infos()[0].batch_delay,
        Duration::from_millis(50)
    );
}
