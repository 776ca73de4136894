//! Trust at the edges, end to end: real `raven sim` and `raven serve` processes on
//! loopback, and clients as a subscriber (or a hostile one) would be.
//!
//! * a lost connection, and a skipped trade, are announced on every event topic they
//!   concern (`FeedGap`), with their range, and counted;
//! * the scheduled reconnect (the exchange's 24 h limit, shortened here) hands over to
//!   the new connection with no reset, no gap and no repeat;
//! * a client that pings and never reads is cut within the slow-consumer limit and its
//!   queue stays bounded; a client that asks too fast is slowed down;
//! * `GetHistory` answers are shared per client and end when nobody reads them;
//! * a feed that is connected but silent makes its venue unready;
//! * a book synced from a depth-limited snapshot says how deep it is known;
//! * SIGTERM ends every stream promptly with `UNAVAILABLE`.
//!
//! Every message a subscriber receives goes through the invariant checker.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use raven_proto::pb;
use raven_proto::pb::server_message::Payload;

fn spot_venue(sim: &str, symbols: &[&str], channels: &str, extra: &str) -> String {
    let symbols: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [{}]\nchannels = {channels}\nws_url = \"ws://{sim}\"\nrest_url = \"http://{sim}\"\n{extra}\n",
        symbols.join(", ")
    )
}

async fn fault(sim: &str, json: &str) {
    let (code, body) = http_post_json(&format!("http://{sim}/sim/fault"), json).await;
    assert_eq!(code, 200, "fault {json} refused: {body}");
}

async fn sim_stats(sim: &str) -> serde_json::Value {
    let (_, body) = http_get(&format!("http://{sim}/sim/stats")).await;
    serde_json::from_str(&body).expect("sim stats")
}

/// Reads `sub` through the checker until `done` says so (or panics after `secs`).
async fn read_until(
    sub: &mut Subscription,
    checker: &mut Checker,
    secs: u64,
    mut done: impl FnMut(&pb::ServerMessage) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        assert!(Instant::now() < deadline, "timed out reading the stream");
        let Some(m) = sub.next(Duration::from_millis(200)).await else {
            continue;
        };
        let m = m.expect("the stream stays up");
        checker.check(&m);
        if done(&m) {
            return;
        }
    }
}

fn channel(m: &pb::ServerMessage) -> Option<pb::Channel> {
    m.topic
        .as_ref()
        .and_then(|t| pb::Channel::try_from(t.channel).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_announced_on_every_event_topic_until_data_flows_again() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "2000", "--ping-secs", "1"]);
    let server = spawn_serve(
        &spot_venue(
            &sim,
            &["SYN0USDT"],
            r#"["trades", "book", "bbo", "candles"]"#,
            "",
        ),
        "",
    );
    wait_synced(&server).await;
    let mut client = server.client().await;
    let topics = vec![
        topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0),
        topic("binance_spot", "SYN0USDT", pb::Channel::Bbo, 0),
        topic("binance_spot", "SYN0USDT", pb::Channel::Candles1m, 0),
    ];
    let mut sub = Subscription::open(&mut client, topics).await;
    let mut checker = Checker::default();
    let mut last_trade = 0;
    read_until(&mut sub, &mut checker, 30, |m| {
        if let Some(Payload::Trade(t)) = &m.payload {
            last_trade = t.trade_id;
        }
        last_trade > 0
    })
    .await;
    fault(&sim, r#"{"fault":"drop"}"#).await;

    // Per topic: the notice when the connection went, then the one when data flowed.
    let mut gaps: HashMap<pb::Channel, Vec<pb::FeedGap>> = HashMap::new();
    read_until(&mut sub, &mut checker, 30, |m| {
        match &m.payload {
            Some(Payload::Trade(t)) if gaps.is_empty() => last_trade = t.trade_id,
            Some(Payload::FeedGap(g)) => {
                gaps.entry(channel(m).unwrap()).or_default().push(g.clone())
            }
            _ => {}
        }
        gaps.len() == 3 && gaps.values().all(|g| g.len() >= 2)
    })
    .await;
    for (channel, notices) in &gaps {
        let (open, closed) = (&notices[0], &notices[1]);
        assert!(
            open.reason.starts_with("connection lost"),
            "{channel:?}: {open:?}"
        );
        assert_eq!(open.end_time_ns, 0, "{channel:?}: open while it lasts");
        assert!(open.start_time_ns > 0);
        assert_eq!(closed.start_time_ns, open.start_time_ns, "{channel:?}");
        assert!(
            closed.end_time_ns > closed.start_time_ns,
            "{channel:?}: {closed:?}"
        );
        if matches!(channel, pb::Channel::Trades | pb::Channel::Candles1m) {
            assert_eq!(
                open.last_id, last_trade,
                "{channel:?}: where to backfill from"
            );
        }
    }
    let status = server.status().await;
    let me = status
        .instruments
        .iter()
        .find(|i| i.symbol == "SYN0USDT")
        .unwrap();
    assert!(me.interruptions >= 1, "{me:?}");
    let metrics = server.metrics().await;
    assert!(
        metric(
            &metrics,
            "raven_feed_gaps_total{venue=\"binance_spot\",kind=\"interrupted\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_trade_is_announced_with_its_ids_and_counted() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "3000"]);
    let server = spawn_serve(
        &spot_venue(&sim, &["SYN0USDT"], r#"["trades", "candles"]"#, ""),
        "",
    );
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![
            topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0),
            topic("binance_spot", "SYN0USDT", pb::Channel::Candles1m, 0),
        ],
    )
    .await;
    let mut checker = Checker::default();
    let mut seen = 0;
    read_until(&mut sub, &mut checker, 30, |m| {
        seen += usize::from(matches!(m.payload, Some(Payload::Trade(_))));
        seen >= 5
    })
    .await;
    fault(&sim, r#"{"fault":"trade_gap","symbol":"SYN0USDT"}"#).await;
    let mut before = 0;
    let mut notices = Vec::new();
    read_until(&mut sub, &mut checker, 30, |m| {
        match &m.payload {
            Some(Payload::Trade(t)) if notices.is_empty() => before = t.trade_id,
            Some(Payload::FeedGap(g)) => notices.push((channel(m).unwrap(), g.clone())),
            _ => {}
        }
        notices.len() == 2
    })
    .await;
    for (channel, g) in &notices {
        assert_eq!(
            (g.last_id, g.next_id),
            (before, before + 2),
            "{channel:?}: one aggregate trade id skipped"
        );
        assert!(g.reason.contains("trade ids skipped"), "{g:?}");
        assert!(g.end_time_ns >= g.start_time_ns && g.start_time_ns > 0);
    }
    let status = server.status().await;
    let me = status
        .instruments
        .iter()
        .find(|i| i.symbol == "SYN0USDT")
        .unwrap();
    assert_eq!((me.trade_id_gaps, me.trades_missing), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_reconnect_hands_over_with_no_reset_gap_or_repeat() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "2", "--rate", "2000"]);
    let server = spawn_serve(
        &spot_venue(
            &sim,
            &["SYN0USDT", "SYN1USDT"],
            r#"["trades", "book", "bbo"]"#,
            "max_connection_age_secs = 3",
        ),
        "",
    );
    wait_synced(&server).await;
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![
            topic("binance_spot", "*", pb::Channel::Book, 0),
            topic("binance_spot", "*", pb::Channel::Trades, 0),
            topic("binance_spot", "*", pb::Channel::Bbo, 0),
        ],
    )
    .await;
    let mut checker = Checker {
        spot_continuity: true,
        no_history: true,
        ..Checker::default()
    };
    let connected_before = sim_stats(&sim).await["connections_total"].as_u64().unwrap();
    let mut trades: HashMap<String, u64> = HashMap::new();
    let mut gaps = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    read_until(&mut sub, &mut checker, 60, |m| {
        let symbol = m
            .topic
            .as_ref()
            .map(|t| t.symbol.clone())
            .unwrap_or_default();
        match &m.payload {
            Some(Payload::Trade(t)) => {
                if let Some(last) = trades.insert(symbol.clone(), t.trade_id) {
                    assert_eq!(
                        t.trade_id,
                        last + 1,
                        "{symbol}: trades exactly once, in order"
                    );
                }
            }
            Some(Payload::FeedGap(g)) => gaps.push(g.clone()),
            _ => {}
        }
        Instant::now() >= until
    })
    .await;
    let connected = sim_stats(&sim).await["connections_total"].as_u64().unwrap();
    assert!(
        connected >= connected_before + 2,
        "at least two hand-overs in 10 s: {connected_before} -> {connected}"
    );
    assert!(
        checker.resets.is_empty(),
        "no book reset: {:?}",
        checker.resets
    );
    assert!(gaps.is_empty(), "no hole announced: {gaps:?}");
    assert!(trades.values().all(|&n| n > 0));
    let status = server.status().await;
    assert!(
        status.books.iter().all(|b| b.resyncs == 0 && b.gaps == 0),
        "{:?}",
        status.books
    );
    assert!(status.connections[0].reconnects >= 2);
    let metrics = server.metrics().await;
    assert!(
        metric(
            &metrics,
            "raven_feed_handovers_total{venue=\"binance_spot\",outcome=\"completed\"}"
        ) >= 2.0,
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("handover"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pings_and_never_reads_is_cut_and_stays_bounded() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "200"]);
    let server = spawn_serve_with_server(
        tempfile::tempdir().unwrap(),
        &spot_venue(&sim, &["SYN0USDT"], r#"["trades"]"#, ""),
        "[hub]\nslow_consumer_limit_ms = 1000\nqueue_capacity = 256\n",
        "max_requests_per_sec = 1000000\n",
    );
    let mut client = server.client().await;
    // Nothing subscribed: only pongs would go back, and they are never read.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("Subscribe")
        .into_inner();
    let pinger = tokio::spawn(async move {
        for nonce in 0.. {
            let ping = pb::ClientMessage {
                kind: Some(pb::client_message::Kind::Ping(pb::Ping { nonce })),
            };
            if tx.send(ping).await.is_err() {
                return;
            }
        }
    });
    let mut observer = server.client().await;
    let mut deepest = 0;
    let started = Instant::now();
    let cut = loop {
        let s = observer
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        // The observer itself has no Subscribe stream: any subscriber is the pinger.
        match s.subscribers.first() {
            Some(x) => {
                deepest = deepest.max(x.queue_depth);
                assert!(
                    x.queue_depth <= 256 + 2 * 1024 + 64,
                    "the queue grew past its bound: {x:?}"
                );
            }
            None if started.elapsed() > Duration::from_millis(500) => break started.elapsed(),
            None => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never cut: {deepest} queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    pinger.abort();
    drop(stream);
    let metrics = server.metrics().await;
    assert!(
        metric(
            &metrics,
            "raven_subscriber_disconnects_total{reason=\"slow_consumer\"}"
        ) >= 1.0,
        "cut after {cut:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_faster_than_its_rate_is_slowed_down() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "200"]);
    let server = spawn_serve_with_server(
        tempfile::tempdir().unwrap(),
        &spot_venue(&sim, &["SYN0USDT"], r#"["trades"]"#, ""),
        "[hub]\nmax_topics_per_stream = 16\n",
        "max_requests_per_sec = 100\n",
    );
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(512);
    for nonce in 0..400 {
        tx.send(pb::ClientMessage {
            kind: Some(pb::client_message::Kind::Ping(pb::Ping { nonce })),
        })
        .await
        .unwrap();
    }
    let started = Instant::now();
    let mut stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("Subscribe")
        .into_inner();
    let mut pongs = 0;
    while pongs < 400 {
        match tokio::time::timeout(
            Duration::from_secs(30),
            tokio_stream::StreamExt::next(&mut stream),
        )
        .await
        {
            Ok(Some(Ok(m))) => pongs += u32::from(matches!(m.payload, Some(Payload::Pong(_)))),
            other => panic!("{other:?}"),
        }
    }
    // A second's worth (100) at once, then 100 a second: 300 more take at least 3 s.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2800),
        "400 pings answered in {took:?}"
    );
    let metrics = server.metrics().await;
    assert!(metric(&metrics, "raven_grpc_throttled_requests_total") >= 1.0);
}

/// A client connecting from another loopback address: another client to the server.
async fn client_from(
    local: std::net::IpAddr,
    server: &Server,
) -> pb::market_data_client::MarketDataClient<tonic::transport::Channel> {
    let target: std::net::SocketAddr = server.grpc.trim_start_matches("http://").parse().unwrap();
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        let stream = socket.connect(target).await?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone())
        .unwrap()
        .connect_with_connector(connector)
        .await
        .expect("connect from another address");
    pb::market_data_client::MarketDataClient::new(channel).max_decoding_message_size(64 << 20)
}

/// Opens a `Subscribe` stream whose requests are sent through the returned sender.
async fn open_stream(
    client: &mut pb::market_data_client::MarketDataClient<tonic::transport::Channel>,
) -> Result<
    (
        tokio::sync::mpsc::Sender<pb::ClientMessage>,
        tonic::Streaming<pb::ServerMessage>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

fn subscribe_to(topics: Vec<pb::Topic>) -> pb::ClientMessage {
    pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics,
            ..Default::default()
        })),
    }
}

/// The next message that is not a heartbeat, or the status the stream ended with.
async fn next_message(
    stream: &mut tonic::Streaming<pb::ServerMessage>,
) -> Result<pb::ServerMessage, tonic::Status> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(m))) if matches!(m.payload, Some(Payload::Heartbeat(_))) => {}
            Ok(Ok(Some(m))) => return Ok(m),
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => return Err(status),
            Err(_) => panic!("nothing for 30 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_s_streams_calls_and_names_are_bounded() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "200"]);
    let server = spawn_serve_with_server(
        tempfile::tempdir().unwrap(),
        &spot_venue(&sim, &["SYN0USDT"], r#"["trades"]"#, ""),
        "",
        "subscribe_streams_per_client = 2\ncalls_per_sec_per_client = 5\n",
    );
    let mut a = server.client().await;
    let (tx1, mut s1) = open_stream(&mut a).await.expect("first stream");
    let (tx2, mut s2) = open_stream(&mut a).await.expect("second stream");
    let refused = open_stream(&mut a).await.expect_err("a third stream");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("per client"),
        "{}",
        refused.message()
    );
    let mut b = client_from([127, 0, 0, 2].into(), &server).await;
    let _other = open_stream(&mut b).await.expect("another client's stream");

    // A name far too long is rejected, and only a short piece of it comes back.
    let long = "A".repeat(100_000);
    tx1.send(subscribe_to(vec![pb::Topic {
        venue: "binance_spot".into(),
        symbol: long.clone(),
        channel: pb::Channel::Trades as i32,
        depth: 0,
    }]))
    .await
    .unwrap();
    let ack = next_message(&mut s1).await.expect("an ack");
    let Some(Payload::Ack(a_ack)) = &ack.payload else {
        panic!("{ack:?}")
    };
    assert_eq!(a_ack.result(), pb::ack::Result::Rejected);
    assert!(
        a_ack.reason.contains("not an exchange symbol"),
        "{}",
        a_ack.reason
    );
    assert!(a_ack.reason.len() < 300 && ack.topic.as_ref().unwrap().symbol.len() <= 64);

    // A message over the size limit cannot be read: its stream ends saying so, and its
    // slot is free again although the client keeps its side open.
    tx2.send(subscribe_to(vec![pb::Topic {
        venue: "binance_spot".into(),
        symbol: "A".repeat(400_000),
        channel: pb::Channel::Trades as i32,
        depth: 0,
    }]))
    .await
    .unwrap();
    let ended = next_message(&mut s2).await.expect_err("the stream ends");
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
    assert!(
        ended
            .message()
            .contains("server.max_request_bytes (262144 bytes)"),
        "{}",
        ended.message()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let _third = loop {
        match open_stream(&mut a).await {
            Ok(s) => break s,
            Err(e) if e.code() == tonic::Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the ended stream kept its slot: {e:?}"),
        }
    };
    drop(tx2);

    // One-shot calls: five a second per client; beyond, refused, naming the setting.
    let book = pb::GetOrderBookRequest {
        venue: "binance_spot".into(),
        symbol: "SYN0USDT".into(),
        depth: 0,
    };
    let mut refused = None;
    for _ in 0..20 {
        if let Err(e) = a.get_order_book(book.clone()).await {
            if e.code() == tonic::Code::ResourceExhausted {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("20 calls at once are not all admitted");
    assert!(
        refused.message().contains("calls_per_sec_per_client"),
        "{}",
        refused.message()
    );
    b.get_status(pb::GetStatusRequest {})
        .await
        .expect("another client keeps its own rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_answers_are_shared_per_client_and_end_when_nobody_reads_them() {
    // 200 000 stored trades: far more than an unread answer's buffers hold (the
    // store's pages in flight, about 25 000 rows, and HTTP/2's 2 MiB stream window,
    // about as many again), so it cannot be sent whole without being read.
    const ROWS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/history.sqlite");
    raven_sinks::sqlite::open(&db).expect("schema");
    let start = raven_model::UnixNanos::now().as_nanos() - 3_600_000_000_000;
    {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare("INSERT INTO trades VALUES ('binance_spot', 'SYN0USDT', ?1, ?1, ?1, '100.5', '0.001', 'buy', ?2, CAST(?2 AS TEXT))")
                .unwrap();
            for i in 0..ROWS {
                let t = start as i64 + i * 1_000_000;
                insert.execute(rusqlite::params![t, i]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "200"]);
    let server = spawn_serve_with_server(
        dir,
        &spot_venue(&sim, &["SYN0USDT"], r#"["trades"]"#, ""),
        "[history]\nretention_hours = 0\n",
        "history_streams_per_client = 2\nhistory_idle_ms = 1500\n",
    );
    let request = pb::GetHistoryRequest {
        venue: "binance_spot".into(),
        symbol: "SYN0USDT".into(),
        channel: pb::Channel::Trades as i32,
        // Only the rows written above (the feed adds live ones after them).
        start_time_ns: start,
        end_time_ns: start + ROWS as u64 * 1_000_000,
        limit: ROWS as u32,
    };
    let mut a = server.client().await;
    // Two answers this client does not read: its whole share.
    let mut unread = Vec::new();
    for _ in 0..2 {
        unread.push(
            a.get_history(request.clone())
                .await
                .expect("GetHistory")
                .into_inner(),
        );
    }
    let refused = a
        .get_history(request.clone())
        .await
        .expect_err("a third one");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("per client"),
        "{}",
        refused.message()
    );

    // Another client is not held up by the first one's unread answers.
    let mut b = client_from([127, 0, 0, 2].into(), &server).await;
    let mut answer = b
        .get_history(request.clone())
        .await
        .expect("B's answer")
        .into_inner();
    let mut rows = 0;
    while let Some(r) = tokio_stream::StreamExt::next(&mut answer).await {
        r.expect("a record");
        rows += 1;
    }
    assert_eq!(rows, ROWS);

    // Unread for longer than history_idle_ms: ended, both slots free again. Two new
    // answers are held at once, so both old ones must have let go (one freed slot
    // alone would let a single new answer through while the other is still waiting).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fresh = Vec::new();
    while fresh.len() < 2 {
        match a.get_history(request.clone()).await {
            Ok(answer) => fresh.push(answer),
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    Instant::now() < deadline,
                    "the unread answers kept their slots"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    // Each says why it ended, after what it had sent before.
    for (i, answer) in unread.iter_mut().enumerate() {
        let mut got = 0;
        let ended = loop {
            match tokio_stream::StreamExt::next(answer).await {
                Some(Ok(_)) => got += 1,
                Some(Err(status)) => break status,
                None => panic!("unread answer {i} ended without saying why, after {got} rows"),
            }
        };
        assert!(got < ROWS, "unread answer {i} was sent whole");
        assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
        assert!(ended.message().contains("not read"), "{}", ended.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_connected_but_silent_makes_its_venue_unready() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "500", "--ping-secs", "1"]);
    // Trades only: no book whose state would give the stall away.
    let server = spawn_serve(
        &spot_venue(
            &sim,
            &["SYN0USDT"],
            r#"["trades"]"#,
            "stall_timeout_secs = 2",
        ),
        "",
    );
    let ready = format!("http://127.0.0.1:{}/health/ready", server.health_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_http_get(&ready).await {
            Some((200, _)) => break,
            other => assert!(Instant::now() < deadline, "never ready: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fault(&sim, r#"{"fault":"stall","seconds":12}"#).await;
    // The silent socket is replaced after its stall timeout; the new one connects, and
    // stays silent too: connected, yet nothing is served.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        if let Some((503, body)) = try_http_get(&ready).await {
            if body.contains("binance_spot: connected but no frame for") {
                break;
            }
            seen.push(body);
        }
        assert!(
            Instant::now() < deadline,
            "never unready for a connected but silent feed: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(
        "ready again once frames flow",
        Duration::from_secs(40),
        || async {
            try_http_get(&ready)
                .await
                .is_some_and(|(code, _)| code == 200)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_from_a_depth_limited_snapshot_says_how_deep_it_is_known() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "500", "--levels", "300"]);
    let server = spawn_serve(
        &spot_venue(&sim, &["SYN0USDT"], r#"["book"]"#, "snapshot_limit = 50"),
        "",
    );
    wait_synced(&server).await;
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0)],
    )
    .await;
    let mut checker = Checker::default();
    let mut snapshot = None;
    read_until(&mut sub, &mut checker, 30, |m| {
        if let Some(Payload::BookSnapshot(s)) = &m.payload {
            snapshot = Some(s.clone());
        }
        snapshot.is_some()
    })
    .await;
    let s = snapshot.unwrap();
    assert!(s.known_bid_levels > 0 && s.known_ask_levels > 0, "{s:?}");
    assert!(
        s.known_bid_levels <= 60 && s.known_ask_levels <= 60,
        "a 50-level snapshot is known to about 50 levels, not {}/{}",
        s.known_bid_levels,
        s.known_ask_levels
    );
    assert!(s.known_bid_levels as usize <= s.bids.len());
    let book = &server.status().await.books[0];
    assert!(
        book.known_bid_levels <= 60 && book.known_bid_levels > 0,
        "{book:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_stream_promptly_saying_the_server_is_stopping() {
    let (_sim, sim) = spawn_sim(0, &["--symbols", "1", "--rate", "1000"]);
    let server = spawn_serve(
        &spot_venue(&sim, &["SYN0USDT"], r#"["trades", "book"]"#, ""),
        "",
    );
    wait_synced(&server).await;
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![
            topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0),
            topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0),
        ],
    )
    .await;
    let mut checker = Checker::default();
    read_until(&mut sub, &mut checker, 30, |m| {
        matches!(m.payload, Some(Payload::BookDelta(_)))
    })
    .await;
    let pid = server.child.proc.id().to_string();
    let stopped_at = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let status = loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio_stream::StreamExt::next(&mut sub.stream),
        )
        .await
        {
            Ok(Some(Ok(m))) => checker.check(&m),
            Ok(Some(Err(status))) => break status,
            Ok(None) => panic!("the stream ended without a status"),
            Err(_) => panic!("the stream did not end within 10 s of SIGTERM"),
        }
    };
    let took = stopped_at.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    assert!(
        took < Duration::from_secs(4),
        "the stream ended {took:?} after SIGTERM"
    );
    let dir = server.terminate();
    drop(dir);
}
