//! The Redis latest-state store against a real `redis-server`: keys appear with exact
//! decimals, conflated; Redis killed and restarted → the keys come back while the
//! gRPC stream never stalls.

mod common;

use std::time::Duration;

use common::*;
use raven_proto::pb;

fn redis_get(url: &str, key: &str) -> Option<serde_json::Value> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let text: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).ok()?;
    serde_json::from_str(&text?).ok()
}

fn decimal(v: &serde_json::Value) -> rust_decimal::Decimal {
    v.as_str()
        .expect("decimals are strings")
        .parse()
        .expect("exact decimal")
}

#[tokio::test]
async fn latest_state_reaches_redis_and_survives_a_redis_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let redis = spawn_redis(port, dir.path());

    let (_sim, sim_addr) = spawn_sim(0, &["--symbols", "2", "--rate", "1000"]);
    let venues = format!(
        "[redis]\nurl = \"{url}\"\ninterval_ms = 100\n\n[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\", \"SYN1USDT\"]\nchannels = [\"trades\", \"book\", \"bbo\", \"candles\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\nrest_weight_per_minute = 1000000\n"
    );
    let server = spawn_serve(
        &venues,
        "[hub]\ntap_interval_ms = 200\ntap_book_depth = 5\n",
    );
    wait_synced(&server).await;

    let key = |suffix: &str| format!("raven:binance_spot:SYN0USDT:{suffix}");
    wait_until(
        "bbo, trade, book and candle keys in Redis",
        Duration::from_secs(20),
        || async {
            ["bbo", "trade", "book", "candle:1m"]
                .iter()
                .all(|s| redis_get(&url, &key(s)).is_some())
        },
    )
    .await;
    let bbo = redis_get(&url, &key("bbo")).expect("bbo");
    assert!(
        decimal(&bbo["bid_price"]) < decimal(&bbo["ask_price"]),
        "{bbo}"
    );
    assert!(bbo["receive_time_ns"].as_u64().expect("time") > 0);
    let trade = redis_get(&url, &key("trade")).expect("trade");
    assert!(
        decimal(&trade["price"]) > rust_decimal::Decimal::ZERO
            && decimal(&trade["quantity"]) > rust_decimal::Decimal::ZERO
    );
    let book = redis_get(&url, &key("book")).expect("book");
    let bids = book["bids"].as_array().expect("bids");
    assert_eq!(bids.len(), 5, "top-5 as configured: {book}");
    assert!(
        decimal(&bids[0][0]) < decimal(&book["asks"][0][0]),
        "not crossed: {book}"
    );
    assert_eq!(
        redis_get(&url, &key("candle:1m")).expect("candle")["interval"],
        "1m"
    );

    // Kill Redis: Raven keeps streaming, counts the errors, and rewrites every key once
    // Redis is back (empty, as a restarted cache would be).
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0)],
    )
    .await;
    drop(redis);
    let mut during_outage = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        if let Some(m) = sub.next(Duration::from_millis(200)).await {
            m.expect("the stream is unaffected by Redis");
            during_outage += 1;
        }
    }
    assert!(
        during_outage > 100,
        "the stream kept flowing while Redis was down ({during_outage} messages)"
    );
    assert!(metric(&server.metrics().await, "raven_redis_errors_total") >= 1.0);
    assert_eq!(redis_get(&url, &key("bbo")), None, "Redis is really down");

    let _redis = spawn_redis(port, dir.path());
    wait_until(
        "keys rewritten after Redis came back",
        Duration::from_secs(20),
        || async {
            ["bbo", "trade", "book"]
                .iter()
                .all(|s| redis_get(&url, &key(s)).is_some())
        },
    )
    .await;
    assert!(metric(&server.metrics().await, "raven_redis_up") >= 1.0);
}
