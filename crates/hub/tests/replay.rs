//! A topic asked from a past time: held between its ack and its join, then joined to
//! its live stream after the last stored record, found among the live messages.

mod support;

use raven_hub::replay::replayed_message;
use raven_hub::{HubConfig, ReplayEnd};
use raven_model::feed::FeedSink;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;
use support::*;

fn replay_request(topic: pb::Topic, since_time_ns: u64) -> pb::ClientMessage {
    pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            replay: vec![pb::Replay {
                topic: Some(topic),
                since_time_ns,
            }],
            ..Default::default()
        })),
    }
}

/// What a store would have sent for trade `n`: the record and what the join compares.
fn stored_trade(n: u64) -> ReplayEnd {
    let e = trade_event(&btc(), n);
    let (_, end) = replayed_message(
        &topic(&btc(), pb::Channel::Trades, 0),
        e.exchange_time,
        e.receive_time,
        raven_hub::encode::event(&e.kind),
    );
    ReplayEnd {
        last: Some(end),
        last_time_ns: e.exchange_time.as_nanos(),
        records: n + 1,
        cut_short: None,
    }
}

/// A stream of a hub that may replay, asking BTCUSDT's trades since `t(0)`: acked and
/// waiting for its records.
async fn replaying_trades(
    hub: &std::sync::Arc<raven_hub::Hub>,
) -> (
    raven_hub::Session,
    std::sync::Arc<raven_hub::Subscriber>,
    Vec<raven_hub::ReplayStart>,
) {
    let mut session = hub.session("c".into(), open_grant());
    session.set_replay_refusal(None);
    let sub = session.subscriber();
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    session.handle(replay_request(trades.clone(), t(0).as_nanos()));
    expect_ack(&sub, &trades, pb::ack::Result::Subscribed).await;
    let started = session.take_replays();
    assert_eq!(started.len(), 1);
    (session, sub, started)
}

#[tokio::test]
async fn a_stream_without_history_refuses_a_replay_by_name() {
    let hub = new_hub(HubConfig::default());
    let mut session = hub.session("c".into(), open_grant());
    let sub = session.subscriber();
    session.handle(replay_request(topic(&btc(), pb::Channel::Trades, 0), 1));
    expect_rejected(&sub, "no history").await;
    assert!(session.take_replays().is_empty());
}

#[tokio::test]
async fn the_live_stream_takes_over_after_the_last_stored_record() {
    let hub = new_hub(HubConfig::default());
    let (mut session, sub, started) = replaying_trades(&hub).await;
    // While the store is read the market moves on; nothing live reaches the stream.
    for n in 0..10 {
        hub.market_event(trade_event(&btc(), n));
    }
    assert_idle(&sub).await;
    // The store had trades 0 to 6; the live stream goes on from 7.
    assert!(session.join_replay(&started[0], stored_trade(6)));
    let msgs = drain(&sub).await;
    let Some(Payload::ReplayComplete(done)) = &msgs[0].payload else {
        panic!("{:?}", msgs[0])
    };
    assert!(done.exact, "{}", done.reason);
    assert_eq!(done.records, 7);
    let ids: Vec<(u64, u64)> = msgs[1..]
        .iter()
        .map(|m| match &m.payload {
            Some(Payload::Trade(t)) => (m.sequence, t.trade_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![(8, 1007), (9, 1008), (10, 1009)]);
    assert_eq!(msgs[0].sequence, 7, "the marker's sequence is the join's");
    hub.market_event(trade_event(&btc(), 10));
    let live = recv(&sub).await;
    assert_eq!(live.sequence, 11);
}

#[tokio::test]
async fn a_topic_unsubscribed_during_its_replay_is_not_joined() {
    let hub = new_hub(HubConfig::default());
    let (mut session, sub, started) = replaying_trades(&hub).await;
    let trades = topic(&btc(), pb::Channel::Trades, 0);
    assert!(session.is_replaying(&started[0].key));
    unsubscribe(&mut session, vec![trades.clone()]);
    expect_ack(&sub, &trades, pb::ack::Result::Unsubscribed).await;
    assert!(!session.is_replaying(&started[0].key));
    assert!(!session.join_replay(&started[0], stored_trade(3)));
    hub.market_event(trade_event(&btc(), 0));
    assert_idle(&sub).await;
}
