//! Resuming a topic where a client left off: the missed messages from the topic's log,
//! then the live ones, each once and in order; and the documented answers when that is
//! not possible (another epoch, messages no longer kept, a topic that keeps none).

mod support;

use raven_hub::{HubConfig, Subscriber};
use raven_model::feed::FeedSink;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use support::*;

/// Trade ids and sequence numbers of the trade messages among `msgs`.
fn trades(msgs: &[pb::ServerMessage]) -> Vec<(u64, u64)> {
    msgs.iter()
        .filter_map(|m| match &m.payload {
            Some(Payload::Trade(t)) => Some((m.sequence, t.trade_id)),
            _ => None,
        })
        .collect()
}

/// Subscribes trades on a fresh stream, takes `n` trades, and returns the epoch and the
/// last sequence it saw (the stream then goes away).
async fn first_stream(hub: &std::sync::Arc<raven_hub::Hub>, n: u64) -> (u64, u64) {
    let mut session = hub.session("first".into(), open_grant());
    let sub = session.subscriber();
    let trades_topic = topic(&btc(), pb::Channel::Trades, 0);
    subscribe(&mut session, vec![trades_topic]);
    let (_, _, epoch) = resume_ack(&recv(&sub).await);
    for i in 0..n {
        hub.market_event(trade_event(&btc(), i));
    }
    let seen = trades(&drain(&sub).await);
    assert_eq!(seen.len() as u64, n);
    (epoch, seen.last().map_or(0, |(s, _)| *s))
}

/// Resumes BTCUSDT's trades after `last` in `epoch` on a new stream: the stream, and
/// its ack's resume result, reason and epoch.
async fn resume_trades(
    hub: &std::sync::Arc<raven_hub::Hub>,
    epoch: u64,
    last: u64,
) -> (
    raven_hub::Session,
    std::sync::Arc<Subscriber>,
    (pb::ack::ResumeResult, String, u64),
) {
    let mut session = hub.session("back".into(), open_grant());
    let sub = session.subscriber();
    resume(
        &mut session,
        &topic(&btc(), pb::Channel::Trades, 0),
        epoch,
        last,
    );
    let answer = resume_ack(&recv(&sub).await);
    (session, sub, answer)
}

#[tokio::test(start_paused = true)]
async fn a_resumed_trade_stream_gets_every_missed_trade_once_then_the_live_ones() {
    let hub = new_hub(HubConfig::default());
    let (epoch, last) = first_stream(&hub, 10).await;
    // Missed while away.
    for i in 10..15 {
        hub.market_event(trade_event(&btc(), i));
    }
    let (_session, sub, (result, reason, again)) = resume_trades(&hub, epoch, last).await;
    assert_eq!(result, pb::ack::ResumeResult::ResumeReplayed, "{reason}");
    assert_eq!(again, epoch, "one epoch for the server's run");
    for i in 15..18 {
        hub.market_event(trade_event(&btc(), i));
    }
    let got = trades(&drain(&sub).await);
    let expected: Vec<(u64, u64)> = (10..18).map(|i| (last + 1 + (i - 10), 1000 + i)).collect();
    assert_eq!(got, expected, "missed then live, each once, in order");
}

#[tokio::test(start_paused = true)]
async fn a_replay_longer_than_the_queue_arrives_whole_as_the_client_reads() {
    // A queue of 16 messages and 200 missed trades: the replay goes on as the client
    // takes them (the tick moves a quiet topic's replay on), and live trades join it.
    let hub = new_hub(small_queue(16));
    let (epoch, last) = first_stream(&hub, 3).await;
    for i in 3..203 {
        hub.market_event(trade_event(&btc(), i));
    }
    let (_session, sub, (result, ..)) = resume_trades(&hub, epoch, last).await;
    assert_eq!(result, pb::ack::ResumeResult::ResumeReplayed);
    let mut got = Vec::new();
    let mut live = 203;
    while got.len() < 210 {
        let batch = drain(&sub).await;
        assert!(
            batch
                .iter()
                .all(|m| !matches!(m.payload, Some(Payload::Dropped(_)))),
            "nothing is dropped: {batch:?}"
        );
        got.extend(trades(&batch));
        if live < 213 {
            hub.market_event(trade_event(&btc(), live));
            live += 1;
        }
        hub.tick();
    }
    let expected: Vec<(u64, u64)> = (3..213).map(|i| (last + 1 + (i - 3), 1000 + i)).collect();
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_book_replays_deltas_resets_and_snapshots_to_the_live_book() {
    let (hub, mut reference) = synced_hub(HubConfig::default());
    let book_topic = topic(&btc(), pb::Channel::Book, 0);
    let mut client = ClientBook::default();
    let (epoch, mut last) = {
        let mut session = hub.session("first".into(), open_grant());
        let sub = session.subscriber();
        subscribe(&mut session, vec![book_topic.clone()]);
        let (_, _, epoch) = resume_ack(&recv(&sub).await);
        let first = recv(&sub).await;
        client.replace(snapshot(&first));
        let mut last = first.sequence;
        for n in 0..5 {
            publish_delta(&hub, &mut reference, n);
        }
        for m in drain(&sub).await {
            client.apply(book_delta(&m));
            last = m.sequence;
        }
        (epoch, last)
    };
    // Away: more deltas, a reset and a fresh snapshot, more deltas.
    for n in 5..8 {
        publish_delta(&hub, &mut reference, n);
    }
    hub.book_reset(&btc(), "test");
    reference = sync_btc(&hub);
    for n in 8..11 {
        publish_delta(&hub, &mut reference, n);
    }

    let mut session = hub.session("back".into(), open_grant());
    let sub = session.subscriber();
    resume(&mut session, &book_topic, epoch, last);
    let (result, ..) = resume_ack(&recv(&sub).await);
    assert_eq!(result, pb::ack::ResumeResult::ResumeReplayed);
    let mut kinds = Vec::new();
    for m in drain(&sub).await {
        assert_eq!(m.sequence, last + 1, "contiguous: {m:?}");
        last = m.sequence;
        match &m.payload {
            Some(Payload::BookDelta(d)) => {
                kinds.push("delta");
                client.apply(d);
            }
            Some(Payload::BookReset(_)) => kinds.push("reset"),
            Some(Payload::BookSnapshot(s)) => {
                assert!(!s.conflated);
                kinds.push("snapshot");
                client.replace(s);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let want = [
        "delta", "delta", "delta", "reset", "snapshot", "delta", "delta", "delta",
    ];
    assert_eq!(kinds, want);
    client.matches(&reference);
}

#[tokio::test(start_paused = true)]
async fn messages_no_longer_kept_are_counted_in_a_dropped_notice() {
    // A topic keeps 2 KiB: far fewer than the 300 trades missed.
    let hub = new_hub(HubConfig {
        retention_bytes_per_topic: 2048,
        ..HubConfig::default()
    });
    let (epoch, last) = first_stream(&hub, 2).await;
    for i in 2..302 {
        hub.market_event(trade_event(&btc(), i));
    }
    let current = last + 300;
    let (_session, sub, (result, reason, _)) = resume_trades(&hub, epoch, last).await;
    assert_eq!(result, pb::ack::ResumeResult::ResumeOutOfRange);
    assert!(
        reason.contains("keeps sequences") && reason.contains(&current.to_string()),
        "{reason}"
    );
    let notice = recv(&sub).await;
    assert_eq!(
        notice.payload,
        Some(Payload::Dropped(pb::Dropped { count: 300 }))
    );
    assert_eq!(
        notice.sequence, current,
        "numbered as the last message lost"
    );
    hub.market_event(trade_event(&btc(), 302));
    assert_eq!(trades(&drain(&sub).await), vec![(current + 1, 1302)]);
}

#[tokio::test(start_paused = true)]
async fn another_epoch_or_a_number_ahead_starts_afresh() {
    let (hub, reference) = synced_hub(HubConfig::default());
    let book_topic = topic(&btc(), pb::Channel::Book, 0);
    let fresh_start = |sub: std::sync::Arc<Subscriber>, want: pb::ack::ResumeResult| async move {
        let (result, reason, _) = resume_ack(&recv(&sub).await);
        assert_eq!(result, want, "{reason}");
        recv(&sub).await
    };
    let mut session = hub.session("restarted".into(), open_grant());
    resume(&mut session, &book_topic, hub.epoch() + 1, 3);
    let first = fresh_start(
        session.subscriber(),
        pb::ack::ResumeResult::ResumeEpochChanged,
    )
    .await;
    assert_eq!(snapshot(&first), &expected_snapshot(&reference, 0, false));

    let mut session = hub.session("ahead".into(), open_grant());
    resume(&mut session, &book_topic, hub.epoch(), 1_000_000);
    let first = fresh_start(
        session.subscriber(),
        pb::ack::ResumeResult::ResumeOutOfRange,
    )
    .await;
    assert_eq!(snapshot(&first), &expected_snapshot(&reference, 0, false));

    // A top-N view keeps nothing: it starts with its snapshot.
    let hub = {
        let (hub, _) = synced_hub(views_now());
        hub
    };
    let mut session = hub.session("view".into(), open_grant());
    let sub = session.subscriber();
    resume(
        &mut session,
        &topic(&btc(), pb::Channel::Book, 5),
        hub.epoch(),
        1,
    );
    let (result, ..) = resume_ack(&recv(&sub).await);
    assert_eq!(result, pb::ack::ResumeResult::ResumeUnavailable);
}

#[tokio::test(start_paused = true)]
async fn a_wildcard_cannot_be_resumed_and_retention_off_keeps_nothing() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("wild".into(), open_grant());
    let sub = session.subscriber();
    resume(
        &mut session,
        &wire_topic("binance_spot", "*", pb::Channel::Trades as i32, 0),
        hub.epoch(),
        1,
    );
    expect_rejected(&sub, "wildcard").await;

    let hub = new_hub(HubConfig {
        retention: std::time::Duration::ZERO,
        ..HubConfig::default()
    });
    let (epoch, last) = first_stream(&hub, 2).await;
    hub.market_event(trade_event(&btc(), 2));
    assert_eq!(hub.retained_bytes(), 0);
    let (_session, _, (result, ..)) = resume_trades(&hub, epoch, last).await;
    assert_eq!(result, pb::ack::ResumeResult::ResumeUnavailable);
}
