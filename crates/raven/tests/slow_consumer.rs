//! The slow-consumer policy end to end: one client that reads far slower than the feed
//! is conflated, then disconnected with RESOURCE_EXHAUSTED, while a fast client on the
//! same topics receives every message in order; and a stream that asks for a batch
//! delay gets every message, in batches at most one per delay.

mod common;

use std::time::Duration;

use common::*;
use raven_proto::pb;

#[tokio::test]
async fn slow_client_is_conflated_then_cut_while_fast_client_keeps_full_rate() {
    let hub = "[hub]\nqueue_capacity = 1024\nslow_consumer_limit_ms = 2000\n";
    let (_sim, server) = one_symbol_rig(4000, r#"["trades", "book"]"#, hub).await;
    let mut client = server.client().await;

    let topics = || {
        vec![
            topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0),
            topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0),
        ]
    };
    let mut fast = Subscription::open(&mut client, topics()).await;
    let mut slow = Subscription::open(&mut client, topics()).await;

    // The slow client reads one message every 20 ms until the server has cut it; then
    // it reads what the transport still holds, as fast as it can, to reach the status
    // (it cannot see the status before the bytes queued ahead of it).
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow_cut = cut.clone();
    let slow_task = tokio::spawn(async move {
        let mut checker = Checker {
            spot_continuity: true,
            no_history: true,
            ..Checker::default()
        };
        loop {
            match slow.next(Duration::from_secs(30)).await {
                Some(Ok(m)) => checker.check(&m),
                Some(Err(status)) => return (checker, status),
                None => panic!("the slow stream ended without a status"),
            }
            if !slow_cut.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let mut checker = Checker {
        spot_continuity: true,
        no_history: true,
        ..Checker::default()
    };
    let mut received = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut next_check = tokio::time::Instant::now();
    while !slow_task.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow client was never disconnected:\n{}",
            server.log()
        );
        if let Some(m) = fast.next(Duration::from_millis(200)).await {
            checker.check(&m.expect("the fast stream is never cut"));
            received += 1;
        }
        if tokio::time::Instant::now() >= next_check {
            next_check += Duration::from_secs(1);
            if metric(
                &server.metrics().await,
                "raven_subscriber_disconnects_total",
            ) >= 1.0
            {
                cut.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    // The slow stream passed the invariant checker up to its end.
    let (_, status) = slow_task.await.expect("slow task");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("slow consumer"), "{status:?}");

    assert_eq!(checker.conflated, 0, "the fast client was never conflated");
    assert_eq!(checker.dropped, 0, "the fast client never lost a message");
    assert!(
        received > 1000,
        "the fast client kept receiving ({received} messages)"
    );

    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "raven_subscriber_disconnects_total") >= 1.0,
        "{metrics}"
    );
    // Only the slow client can have fallen behind: the fast one saw neither.
    assert!(
        metric(&metrics, "raven_subscriber_conflations_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "raven_subscriber_dropped_messages_total") >= 1.0,
        "{metrics}"
    );
    let status = server.status().await;
    assert_eq!(
        status.subscribers.len(),
        1,
        "only the fast client is left: {:?}",
        status.subscribers
    );
}

#[tokio::test]
async fn a_paused_client_gets_a_conflated_snapshot_and_continues() {
    // A generous slow limit: the client pauses, falls behind, then catches up.
    let hub = "[hub]\nqueue_capacity = 32\nslow_consumer_limit_ms = 60000\n";
    let (_sim, server) = one_symbol_rig(4000, r#"["book"]"#, hub).await;
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0)],
    )
    .await;
    let mut checker = Checker {
        spot_continuity: true,
        ..Checker::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Pause in bursts until the transport's buffers are full and the hub conflates.
    while checker.conflated == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never conflated");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while let Some(m) = sub.next(Duration::from_millis(50)).await {
            checker.check(&m.expect("stream ok"));
            if checker.conflated > 0 {
                break;
            }
        }
    }
    // After the conflated snapshot, deltas continue contiguously and the book is right.
    let before = checker.published.len();
    while checker.published.len() < before + 200 {
        let m = sub
            .next(Duration::from_secs(5))
            .await
            .expect("deltas continue")
            .expect("stream ok");
        checker.check(&m);
    }
    // GetOrderBook answers a state the stream also delivers. Retried: if the client
    // falls behind again, a second conflation may legitimately skip over that state.
    let mut matched = false;
    for _ in 0..20 {
        let req = pb::GetOrderBookRequest {
            venue: "binance_spot".into(),
            symbol: "SYN0USDT".into(),
            depth: 0,
        };
        let book = client
            .get_order_book(req)
            .await
            .expect("GetOrderBook")
            .into_inner();
        while checker
            .published
            .last()
            .is_none_or(|(_, u, _)| *u < book.last_update_id)
        {
            checker.check(
                &sub.next(Duration::from_secs(5))
                    .await
                    .expect("message")
                    .expect("ok"),
            );
        }
        if let Some((_, _, streamed)) = checker
            .published
            .iter()
            .find(|(_, u, _)| *u == book.last_update_id)
        {
            assert_eq!(
                streamed,
                &RefBook::from_snapshot(&book),
                "the conflated client's book is exact"
            );
            matched = true;
            break;
        }
    }
    assert!(matched, "never saw a GetOrderBook state on the stream");
    let status = server.status().await;
    assert!(
        status.subscribers.iter().any(|s| s.conflations >= 1),
        "{:?}",
        status.subscribers
    );
}

#[tokio::test]
async fn a_stream_with_a_batch_delay_gets_everything_in_batches_one_per_delay() {
    let (_sim, server) = one_symbol_rig(4000, r#"["trades", "book"]"#, "").await;
    let mut client = server.client().await;
    let delay_us = 3000u64;
    let mut sub = Subscription::request(
        &mut client,
        pb::SubscribeRequest {
            topics: vec![
                topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0),
                topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0),
            ],
            max_batch_delay_us: Some(delay_us as u32),
            ..Default::default()
        },
    )
    .await;
    let mut checker = Checker {
        spot_continuity: true,
        no_history: true,
        ..Checker::default()
    };
    // A batch's messages share one send time; batches start at least a delay apart.
    let mut send_times = Vec::new();
    while send_times.len() < 3000 {
        let m = sub
            .next(Duration::from_secs(30))
            .await
            .expect("the stream goes on")
            .expect("no error");
        checker.check(&m);
        if matches!(
            m.payload,
            Some(pb::server_message::Payload::BookDelta(_) | pb::server_message::Payload::Trade(_))
        ) {
            send_times.push(m.send_time_ns);
        }
    }
    assert_eq!(checker.conflated + checker.dropped, 0, "nothing lost");
    let mut starts = send_times.clone();
    starts.dedup();
    assert!(
        starts.len() * 3 < send_times.len(),
        "{} messages in {} batches: not batched",
        send_times.len(),
        starts.len()
    );
    // A batch cut at tonic's write size goes on at once; nearly all are a delay apart
    // (less the pacer's slack and a little for the clock read after the take).
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let spaced = gaps
        .iter()
        .filter(|g| **g + 100_000 >= delay_us * 1000)
        .count();
    assert!(
        spaced * 10 >= gaps.len() * 9,
        "{spaced} of {} batches a delay apart: {:?}",
        gaps.len(),
        &gaps[..gaps.len().min(40)]
    );
    let status = server.status().await;
    assert_eq!(status.subscribers[0].batch_delay_us, delay_us as u32);
}
