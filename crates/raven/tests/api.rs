//! The server's outward contract beyond market data: standard gRPC health and
//! reflection, heartbeats on idle streams, the health endpoints, and the metric names
//! the deployment guide promises.

mod common;

use std::time::Duration;

use common::*;
use raven_proto::pb::server_message::Payload;
use tokio_stream::StreamExt;

#[tokio::test]
async fn standard_services_heartbeats_health_and_metrics() {
    let (_sim, server) = one_symbol_rig(500, r#"["trades", "book"]"#, "").await;
    let channel = tonic::transport::Channel::from_shared(server.grpc.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    // grpc.health.v1: the service and the server as a whole are SERVING.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "raven.v1.MarketData"] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            resp.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    // Server reflection lists the API, so grpcurl works without the proto.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.next().await.expect("an answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"raven.v1.MarketData"), "{names:?}");

    // And the older v1alpha, which Python's grpcio-reflection, Postman and older
    // grpcurl still ask.
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let answer = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1alpha reflection")
            .into_inner()
            .next()
            .await
            .expect("an answer")
            .expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a service list: {answer:?}")
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"raven.v1.MarketData"), "{names:?}");
    }

    // An idle stream (nothing subscribed) gets heartbeats at the configured 1 s.
    let mut client = server.client().await;
    let mut idle = Subscription::open(&mut client, vec![]).await;
    let mut heartbeats = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    while tokio::time::Instant::now() < until {
        if let Some(m) = idle.next(Duration::from_millis(500)).await {
            let m = m.expect("stream ok");
            assert!(
                matches!(m.payload, Some(Payload::Heartbeat(_))),
                "only heartbeats on an idle stream: {m:?}"
            );
            assert!(m.send_time_ns > 0);
            heartbeats += 1;
        }
    }
    assert!(
        (2..=4).contains(&heartbeats),
        "about one heartbeat a second, got {heartbeats}"
    );

    // Health endpoints.
    let (code, body) = http_get(&format!(
        "http://127.0.0.1:{}/health/live",
        server.health_port
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&format!(
        "http://127.0.0.1:{}/health/ready",
        server.health_port
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["components"]["books"]["books"][0]["state"], "synced",
        "{ready}"
    );

    // The guide's metric names, and some feed metrics, are exported.
    let metrics = server.metrics().await;
    for name in [
        "grpc_active_connections",
        "messages_processed_total",
        "response_latency_seconds_bucket",
        "errors_total",
        "process_resident_memory_bytes",
        "raven_feed_frames_total",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        metric(&metrics, "grpc_active_connections") >= 1.0,
        "the idle stream is counted"
    );
    assert!(metric(&metrics, "process_resident_memory_bytes") > 1e6);

    // The guide's docker health check: `raven health` exits 0 when ready.
    let out = std::process::Command::new(RAVEN)
        .args([
            "health",
            "--url",
            &format!("http://127.0.0.1:{}/health/ready", server.health_port),
        ])
        .output()
        .expect("raven health");
    assert!(out.status.success(), "{out:?}");

    // `raven sub … | head`: the reader goes away after one line, and `raven sub` ends
    // quietly and successfully, as Unix tools do, rather than panicking.
    let mut sub = std::process::Command::new(RAVEN)
        .args([
            "sub",
            "--server",
            &server.grpc,
            "binance_spot:SYN0USDT:trades",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("raven sub");
    let stdout = sub.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).expect("a line");
    assert!(!first.is_empty(), "raven sub printed nothing");
    // The reader (and with it the pipe's only read end) is dropped here.
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output())
        .await
        .expect("join")
        .expect("raven sub exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked") && err.trim().is_empty(), "{err}");
    drop(idle);
}

#[tokio::test]
async fn every_guide_metric_exists_before_the_first_call_and_each_listener_binds_its_own_host() {
    // A venue pointed at a closed port: nothing connects and no gRPC call is made.
    let port = free_port();
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"BTCUSDT\"]\nws_url = \"ws://127.0.0.1:{port}\"\nrest_url = \"http://127.0.0.1:{port}\"\n"
    );
    // gRPC and metrics on 127.0.0.1 (the server's host), health alone on 127.0.0.2.
    let server = spawn_serve_with_server(
        tempfile::tempdir().expect("tempdir"),
        &venues,
        "",
        "health_host = \"127.0.0.2\"",
    );
    let url = format!("http://127.0.0.1:{}/metrics", server.metrics_port);
    wait_until(
        "the metrics port answers",
        Duration::from_secs(30),
        || async { try_http_get(&url).await.is_some() },
    )
    .await;
    let metrics = server.metrics().await;
    for method in [
        "Subscribe",
        "GetOrderBook",
        "ListInstruments",
        "GetHistory",
        "GetStatus",
    ] {
        let count = format!("response_latency_seconds_count{{method=\"{method}\"}}");
        assert!(
            metrics.lines().any(|l| l.starts_with(&count)),
            "{count} missing before the first call:\n{metrics}"
        );
        assert_eq!(metric(&metrics, &count), 0.0);
    }

    let health = |host: &str| format!("http://{host}:{}/health/live", server.health_port);
    wait_until(
        "health answers on 127.0.0.2",
        Duration::from_secs(30),
        || async { try_http_get(&health("127.0.0.2")).await.is_some() },
    )
    .await;
    assert!(
        try_http_get(&health("127.0.0.1")).await.is_none(),
        "health must listen on its own host only"
    );
    assert!(
        try_http_get(&format!("http://127.0.0.2:{}/metrics", server.metrics_port))
            .await
            .is_none(),
        "metrics stay on the server's host"
    );
}

#[tokio::test]
async fn unready_until_a_book_syncs_and_health_says_why() {
    // A venue pointed at a closed port never connects.
    let port = free_port();
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"BTCUSDT\"]\nws_url = \"ws://127.0.0.1:{port}\"\nrest_url = \"http://127.0.0.1:{port}\"\n"
    );
    let server = spawn_serve(&venues, "");
    let url = format!("http://127.0.0.1:{}/health/ready", server.health_port);
    wait_until(
        "the health port answers",
        Duration::from_secs(30),
        || async { try_http_get(&url).await.is_some() },
    )
    .await;
    let (code, body) = http_get(&url).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("no book in sync") && body.contains("no connection"),
        "{body}"
    );
    let out = std::process::Command::new(RAVEN)
        .args(["health", "--url", &url])
        .output()
        .expect("raven health");
    assert!(!out.status.success(), "raven health must fail when unready");
}

#[test]
fn invalid_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"BTCUSDT\"]\nchannels = [\"funding\"]\n",
    )
    .expect("write");
    // Should a check ever come after the stores open, their files land in the temp dir,
    // not in the default `data` under cargo's working directory (the source tree).
    let data = dir.path().join("data");
    let out = std::process::Command::new(RAVEN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RAVEN_DATA_DIR", &data)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("venues[0].channels"), "{err}");
    let out = std::process::Command::new(RAVEN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RAVEN_DATA_DIR", &data)
        .env("SERVER_PORT", "http")
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SERVER_PORT"),
        "{out:?}"
    );
}

/// The futures channels end to end: a USD-M synthetic market publishes `@markPrice@1s`,
/// and subscribers get exact funding messages.
#[tokio::test]
async fn futures_funding_reaches_subscribers() {
    let (_sim, sim_addr) = spawn_sim(0, &["--venue", "usdm", "--symbols", "2", "--rate", "500"]);
    let venues = format!(
        "[[venues]]\nvenue = \"binance_usdm\"\nsymbols = [\"SYN0USDT\", \"SYN1USDT\"]\nchannels = [\"book\", \"funding\", \"liquidations\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n"
    );
    let server = spawn_serve(&venues, "");
    wait_synced(&server).await;
    let mut client = server.client().await;
    let mut sub = Subscription::open(
        &mut client,
        vec![topic(
            "binance_usdm",
            "*",
            raven_proto::pb::Channel::Funding,
            0,
        )],
    )
    .await;
    let mut seen = std::collections::HashSet::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 {
        assert!(
            tokio::time::Instant::now() < until,
            "funding for both symbols within 10 s, got {seen:?}"
        );
        let Some(m) = sub.next(Duration::from_secs(3)).await else {
            continue;
        };
        let m = m.expect("stream ok");
        if let Some(Payload::Funding(f)) = &m.payload {
            let mark: rust_decimal::Decimal = f.mark_price.parse().expect("exact mark price");
            assert!(mark > rust_decimal::Decimal::ZERO, "{f:?}");
            f.funding_rate
                .parse::<rust_decimal::Decimal>()
                .expect("exact funding rate");
            assert!(
                f.next_funding_time_ns > 0 && m.exchange_time_ns > 0,
                "{m:?}"
            );
            seen.insert(m.topic.expect("topic").symbol);
        }
    }
}
