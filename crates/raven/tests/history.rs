//! `GetHistory` end to end, for each history store: what a subscriber saw live comes
//! back from the store through `GetHistory` equal — the same decimal text, ids and
//! times — pages join without gaps or repeats, stored candles agree with the stored
//! trades they were built from, and bad requests get a status naming the field.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use raven_proto::pb;
use raven_proto::pb::history_record::Payload as H;
use raven_proto::pb::server_message::Payload;
use rust_decimal::Decimal;
use tokio_stream::StreamExt;

const SYMBOL: &str = "SYN0USDT";
const VENUE: &str = "binance_usdm";

async fn history(
    server: &Server,
    channel: pb::Channel,
    start: u64,
    end: u64,
    limit: u32,
) -> Result<Vec<pb::HistoryRecord>, tonic::Status> {
    let mut stream = server
        .client()
        .await
        .get_history(pb::GetHistoryRequest {
            venue: VENUE.into(),
            symbol: SYMBOL.into(),
            channel: channel as i32,
            start_time_ns: start,
            end_time_ns: end,
            limit,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.next().await {
        out.push(r?);
    }
    Ok(out)
}

/// Everything from `start` on, once `done` says it is complete.
async fn poll_history(
    server: &Server,
    channel: pb::Channel,
    start: u64,
    timeout: Duration,
    done: impl Fn(&[pb::HistoryRecord]) -> bool,
) -> Vec<pb::HistoryRecord> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let records = history(server, channel, start, 0, 1_000_000)
            .await
            .expect("GetHistory");
        if done(&records) {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel:?} history incomplete after {timeout:?}: {} records\n{}",
            records.len(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Live messages of one subscription, by payload kind.
#[derive(Default)]
struct Live {
    trades: Vec<pb::ServerMessage>,
    bbo: Vec<pb::ServerMessage>,
    funding: Vec<pb::ServerMessage>,
}

async fn collect_live(server: &Server, trades: usize) -> Live {
    let mut client = server.client().await;
    let topics = [pb::Channel::Trades, pb::Channel::Bbo, pb::Channel::Funding]
        .map(|c| topic(VENUE, SYMBOL, c, 0))
        .to_vec();
    let mut sub = Subscription::open(&mut client, topics).await;
    let mut checker = Checker::default();
    let mut live = Live::default();
    while live.trades.len() < trades || live.funding.len() < 2 {
        let m = sub
            .next(Duration::from_secs(10))
            .await
            .expect("live messages keep coming")
            .expect("stream ok");
        checker.check(&m);
        match &m.payload {
            Some(Payload::Trade(_)) => live.trades.push(m),
            Some(Payload::Bbo(_)) => live.bbo.push(m),
            Some(Payload::Funding(_)) => live.funding.push(m),
            Some(Payload::Dropped(d)) => panic!("the test subscriber fell behind: {d:?}"),
            _ => {}
        }
    }
    live
}

async fn round_trip(store: &str) {
    let (_sim, sim_addr) = spawn_sim(0, &["--venue", "usdm", "--symbols", "1", "--rate", "400"]);
    let venues = format!(
        "{store}\n[[venues]]\nvenue = \"{VENUE}\"\nsymbols = [\"{SYMBOL}\"]\nchannels = [\"book\", \"trades\", \"bbo\", \"funding\", \"candles\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\nrest_weight_per_minute = 1000000\n"
    );
    let server = spawn_serve(&venues, "[hub]\ntap_interval_ms = 200\n");
    wait_synced(&server).await;
    let live = collect_live(&server, 300).await;
    let first = live.trades[0].exchange_time_ns - 1_000_000_000;

    // Everything seen live is stored (the stores batch, so wait for it).
    let last_trade_id = match &live.trades.last().expect("trades").payload {
        Some(Payload::Trade(t)) => t.trade_id,
        _ => unreachable!(),
    };
    let stored = poll_history(
        &server,
        pb::Channel::Trades,
        first,
        Duration::from_secs(30),
        |rs| {
            rs.iter()
                .any(|r| matches!(&r.payload, Some(H::Trade(t)) if t.trade_id == last_trade_id))
        },
    )
    .await;

    // Trades: equal field by field, times included.
    let by_id: HashMap<u64, &pb::HistoryRecord> = stored
        .iter()
        .filter_map(|r| match &r.payload {
            Some(H::Trade(t)) => Some((t.trade_id, r)),
            _ => None,
        })
        .collect();
    assert_eq!(by_id.len(), stored.len(), "one record per trade id");
    for m in &live.trades {
        let Some(Payload::Trade(t)) = &m.payload else {
            unreachable!()
        };
        let r = by_id
            .get(&t.trade_id)
            .unwrap_or_else(|| panic!("trade {} missing from history", t.trade_id));
        assert_eq!(
            r.payload,
            Some(H::Trade(t.clone())),
            "exact trade {}",
            t.trade_id
        );
        assert_eq!(
            (r.exchange_time_ns, r.receive_time_ns),
            (m.exchange_time_ns, m.receive_time_ns)
        );
    }
    assert!(
        stored.windows(2).all(|w| w[0].time_ns < w[1].time_ns),
        "time_ns strictly increases"
    );

    // BBO and funding the same way.
    let bbo = history(&server, pb::Channel::Bbo, first, 0, 1_000_000)
        .await
        .expect("GetHistory bbo");
    let bbo_by_id: HashMap<u64, &pb::HistoryRecord> = bbo
        .iter()
        .filter_map(|r| match &r.payload {
            Some(H::Bbo(b)) => Some((b.update_id, r)),
            _ => None,
        })
        .collect();
    for m in &live.bbo {
        let Some(Payload::Bbo(b)) = &m.payload else {
            unreachable!()
        };
        let r = bbo_by_id
            .get(&b.update_id)
            .unwrap_or_else(|| panic!("bbo {} missing from history", b.update_id));
        assert_eq!(r.payload, Some(H::Bbo(b.clone())));
        assert_eq!(r.receive_time_ns, m.receive_time_ns);
    }
    let funding = history(&server, pb::Channel::Funding, first, 0, 1000)
        .await
        .expect("GetHistory funding");
    for m in &live.funding {
        let Some(Payload::Funding(f)) = &m.payload else {
            unreachable!()
        };
        assert!(
            funding
                .iter()
                .any(|r| r.payload == Some(H::Funding(f.clone()))
                    && r.exchange_time_ns == m.exchange_time_ns
                    && r.receive_time_ns == m.receive_time_ns),
            "funding {f:?} at {} missing from {funding:?}",
            m.exchange_time_ns
        );
    }

    // Pages join exactly: two pages of 7 are the first 14 of the whole.
    let page1 = history(&server, pb::Channel::Trades, first, 0, 7)
        .await
        .expect("page 1");
    let page2 = history(&server, pb::Channel::Trades, page1[6].time_ns + 1, 0, 7)
        .await
        .expect("page 2");
    assert_eq!([page1, page2].concat(), stored[..14].to_vec());

    // Candles: each stored 1m candle is exactly what the stored trades of its minute
    // make. The first closes at the next minute boundary plus the grace period; it
    // opened before the first trade seen, so both reads start from the beginning.
    let candles = poll_history(
        &server,
        pb::Channel::Candles1m,
        0,
        Duration::from_secs(100),
        |rs| !rs.is_empty(),
    )
    .await;
    let trades = history(&server, pb::Channel::Trades, 0, 0, 1_000_000)
        .await
        .expect("GetHistory trades");
    // Raven started within the first stored candle's minute: trades of it before the
    // start were never seen, and the candle says so, in the store too.
    let Some(H::Candle(first_candle)) = &candles[0].payload else {
        panic!("{:?}", candles[0])
    };
    assert!(first_candle.incomplete, "{first_candle:?}");
    for r in &candles {
        let Some(H::Candle(c)) = &r.payload else {
            panic!("{r:?}")
        };
        assert_eq!(r.time_ns, c.open_time_ns);
        let inside: Vec<&pb::Trade> = trades
            .iter()
            .filter(|t| (c.open_time_ns..c.close_time_ns).contains(&t.exchange_time_ns))
            .filter_map(|t| match &t.payload {
                Some(H::Trade(t)) => Some(t),
                _ => None,
            })
            .collect();
        let d = |s: &str| s.parse::<Decimal>().expect("decimal");
        assert_eq!(c.trade_count as usize, inside.len(), "{c:?}");
        if let (Some(open), Some(close)) = (inside.first(), inside.last()) {
            assert_eq!((d(&c.open), d(&c.close)), (d(&open.price), d(&close.price)));
            let high = inside.iter().map(|t| d(&t.price)).max().expect("trades");
            let low = inside.iter().map(|t| d(&t.price)).min().expect("trades");
            let volume: Decimal = inside.iter().map(|t| d(&t.quantity)).sum();
            assert_eq!((d(&c.high), d(&c.low), d(&c.volume)), (high, low, volume));
        }
    }

    // Bad requests name the field.
    for (channel, start, end, limit, field) in [
        (pb::Channel::Book, 0, 0, 0, "channel"),
        (pb::Channel::Unspecified, 0, 0, 0, "channel"),
        (pb::Channel::Trades, 10, 5, 0, "start_time_ns"),
        (pb::Channel::Trades, 0, 0, 2_000_000, "limit"),
    ] {
        let status = history(&server, channel, start, end, limit)
            .await
            .expect_err("a bad request");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    let status = server
        .client()
        .await
        .get_history(pb::GetHistoryRequest {
            venue: VENUE.into(),
            symbol: "X\nDROP".into(),
            channel: pb::Channel::Trades as i32,
            ..Default::default()
        })
        .await
        .expect_err("a symbol no exchange uses");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("symbol"), "{status:?}");
}

#[tokio::test]
async fn influxdb_history_round_trip() {
    let influx = Influxd::start().await;
    round_trip(&format!(
        "[influxdb]\nurl = \"{}\"\ndatabase = \"market_data\"\nbatch_interval_ms = 100\n",
        influx.url
    ))
    .await;
}

/// With no InfluxDB the embedded SQLite store is the default.
#[tokio::test]
async fn sqlite_history_round_trip() {
    round_trip("").await;
}

#[tokio::test]
async fn history_off_is_unavailable_and_says_how_to_turn_it_on() {
    let (_sim, sim_addr) = spawn_sim(0, &["--symbols", "1", "--rate", "100"]);
    let server = spawn_serve(
        &format!("[history]\nstore = \"off\"\n\n[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\"]\nchannels = [\"book\", \"trades\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n"),
        "",
    );
    let status = server
        .client()
        .await
        .get_history(pb::GetHistoryRequest {
            venue: "binance_spot".into(),
            symbol: "SYN0USDT".into(),
            channel: pb::Channel::Trades as i32,
            ..Default::default()
        })
        .await
        .expect_err("no history store");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("history.store"), "{status:?}");
}
