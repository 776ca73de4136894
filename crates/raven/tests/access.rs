//! Who may connect and what each may do, end to end: TLS and mutual TLS with
//! certificates made here, bearer tokens and entitlements, credentials reloaded
//! without a restart, and each server limit answered with its status and counted.
//!
//! Every server is a real `raven serve` on loopback fed by `raven sim`; clients are
//! tonic's, and the `raven` CLI's own flags are exercised too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use raven_proto::pb;
use raven_proto::pb::market_data_client::MarketDataClient;
use raven_proto::pb::server_message::Payload;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

// ---------------------------------------------------------------- certificates

/// A certificate authority made for one test, writing PEM files into `dir`.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca, cert.pem()).expect("write CA");
        Pki {
            dir: dir.to_owned(),
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// A leaf certificate for `dns` names (and `uri` names), as `<file>.crt`/`.key`.
    fn leaf(&self, file: &str, dns: &[&str], uri: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        for u in uri {
            params
                .subject_alt_names
                .push(SanType::URI((*u).try_into().expect("URI name")));
        }
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let (crt, pem) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write cert");
        std::fs::write(&pem, key.serialize_pem()).expect("write key");
        (crt, pem)
    }
}

// ---------------------------------------------------------------- rig

/// The one-symbol sim and a Raven with `server` lines in `[server]` (and any tables
/// after it), its gRPC port possibly TLS; waits until its book is synced (over the
/// plain health port, which needs no credentials).
async fn rig(dir: tempfile::TempDir, server: &str) -> (Child, Server) {
    let (sim, sim_addr) = spawn_sim(0, &["--symbols", "1", "--rate", "200"]);
    let venues = format!(
        "[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"SYN0USDT\"]\nchannels = [\"trades\", \"book\"]\nws_url = \"ws://{sim_addr}\"\nrest_url = \"http://{sim_addr}\"\n"
    );
    let server = spawn_serve_with_server(dir, &venues, "", server);
    let ready = format!("http://127.0.0.1:{}/health/ready", server.health_port);
    wait_until("raven serve ready", Duration::from_secs(60), || async {
        matches!(try_http_get(&ready).await, Some((200, _)))
    })
    .await;
    (sim, server)
}

fn port(server: &Server) -> u16 {
    server
        .grpc
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("grpc port")
}

/// TLS settings trusting `ca`, checking the name `localhost`, with an optional
/// client certificate.
fn tls(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> ClientTlsConfig {
    let read = |p: &Path| std::fs::read(p).expect("read PEM");
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)))
        .domain_name("localhost");
    if let Some((crt, key)) = identity {
        config = config.identity(Identity::from_pem(read(crt), read(key)));
    }
    config
}

async fn connect_tls(
    server: &Server,
    config: ClientTlsConfig,
) -> Result<MarketDataClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", port(server)))?
        .tls_config(config)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(MarketDataClient::new(channel))
}

/// A plain connection (one HTTP/2 connection per call of this).
async fn connect(server: &Server) -> MarketDataClient<Channel> {
    let channel = Endpoint::from_shared(server.grpc.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    MarketDataClient::new(channel)
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header value"),
        );
    }
    req
}

/// Opens a Subscribe stream for `topics` with `token`; the stream's first answer
/// (headers) or its refusal.
async fn subscribe(
    client: &mut MarketDataClient<Channel>,
    token: Option<&str>,
    topics: Vec<pb::Topic>,
) -> Result<Subscription, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics,
            ..Default::default()
        })),
    })
    .await
    .expect("queue subscribe");
    let stream = client
        .subscribe(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            token,
        ))
        .await?
        .into_inner();
    Ok(Subscription { tx, stream })
}

/// The stream's next ack (skipping market data and heartbeats).
async fn next_ack(s: &mut Subscription) -> (pb::ack::Result, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.next(left).await {
            Some(Ok(pb::ServerMessage {
                payload: Some(Payload::Ack(a)),
                ..
            })) => return (a.result(), a.reason),
            Some(Ok(_)) => continue,
            other => panic!("no ack: {other:?}"),
        }
    }
}

/// Waits for the stream's first trade.
async fn first_trade(s: &mut Subscription) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.next(left).await {
            Some(Ok(pb::ServerMessage {
                payload: Some(Payload::Trade(_)),
                ..
            })) => return,
            Some(Ok(_)) => continue,
            other => panic!("no trade: {other:?}"),
        }
    }
}

/// `status` has `code` and a message that says `needle`.
fn assert_status(status: &tonic::Status, code: tonic::Code, needle: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {status:?}"
    );
}

fn trades() -> pb::Topic {
    topic("binance_spot", "SYN0USDT", pb::Channel::Trades, 0)
}

fn book() -> pb::Topic {
    topic("binance_spot", "SYN0USDT", pb::Channel::Book, 0)
}

fn sha256_hex(token: &str) -> String {
    let hash = raven_api::auth::sha256(token.as_bytes());
    raven_api::auth::hex(&hash)
}

fn signal(server: &Server, sig: &str) {
    let pid = server.child.proc.id().to_string();
    let status = Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// `raven sub <topic> --count 1` with `args`: its exit status and output.
fn raven_sub(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(RAVEN)
        .arg("sub")
        .args(args)
        .args([
            "binance_spot:SYN0USDT:trades",
            "--count",
            "1",
            "--no-reconnect",
        ])
        .args(["--duration", "30"])
        .env_remove("RAVEN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run raven sub");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------- TLS

/// A server with a certificate from files serves TLS only; with a client CA it
/// requires a client certificate from it, and the certificate's name is the caller's
/// principal. New files are served after SIGHUP without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_with_reloaded_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "raven");
    let (crt, key) = pki.leaf("server", &["localhost"], &[]);
    let desk = pki.leaf("desk", &["desk.research.example"], &[]);
    let spiffe = pki.leaf("bot", &[], &["spiffe://example/bot"]);
    let stranger = pki.leaf("stranger", &["stranger.example"], &[]);
    let rogue_pki = Pki::new(dir.path(), "rogue");
    let rogue = rogue_pki.leaf("rogue", &["desk.research.example"], &[]);
    let server_lines = format!(
        "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\n\
         [[auth.principals]]\nname = \"desk\"\nclient_cert_names = [\"desk.research.example\"]\nchannels = [\"trades\"]\n\n\
         [[auth.principals]]\nname = \"bot\"\nclient_cert_names = [\"spiffe://example/bot\"]\nadmin = true\n",
        crt.display(),
        key.display(),
        pki.ca.display()
    );
    let (_sim, server) = rig(dir, &server_lines).await;

    // The right certificate: served, as its principal, whose entitlements apply.
    let mut client = connect_tls(&server, tls(&pki.ca, Some(&desk)))
        .await
        .expect("mTLS connect");
    let mut s = subscribe(&mut client, None, vec![trades()])
        .await
        .expect("subscribe");
    assert_eq!(next_ack(&mut s).await.0, pb::ack::Result::Subscribed);
    first_trade(&mut s).await;
    let mut refused = subscribe(&mut client, None, vec![book()])
        .await
        .expect("subscribe");
    let (result, reason) = next_ack(&mut refused).await;
    assert_eq!(result, pb::ack::Result::Rejected);
    assert!(
        reason.contains("\"desk\"") && reason.contains("channel book"),
        "{reason}"
    );
    // A URI name (SPIFFE) is a name too; this principal is an admin.
    let mut bot = connect_tls(&server, tls(&pki.ca, Some(&spiffe)))
        .await
        .expect("mTLS connect");
    let status = bot
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("admin status")
        .into_inner();
    assert!(
        status
            .subscribers
            .iter()
            .any(|s| s.principal == "desk" && s.peer.starts_with("127.0.0.1:")),
        "{:?}",
        status.subscribers
    );

    // A certificate the CA signed that names nobody: UNAUTHENTICATED, saying so.
    let mut nobody = connect_tls(&server, tls(&pki.ca, Some(&stranger)))
        .await
        .expect("mTLS connect");
    let err = nobody
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("unknown certificate");
    assert_status(&err, tonic::Code::Unauthenticated, "names no principal");

    // No certificate, one from another CA, or plain text: no connection at all.
    for (what, config) in [
        ("no client certificate", tls(&pki.ca, None)),
        ("another CA's certificate", tls(&pki.ca, Some(&rogue))),
    ] {
        // TLS 1.3 may finish the client's side of the handshake before the server
        // checks the certificate: then the first call fails, on the transport.
        if let Ok(mut c) = connect_tls(&server, config).await {
            let err = c.get_status(pb::GetStatusRequest {}).await.expect_err(what);
            assert!(
                !matches!(err.code(), tonic::Code::Unauthenticated | tonic::Code::Ok),
                "{what}: the TLS layer let it through: {err:?}"
            );
        }
    }
    let plain = Endpoint::from_shared(server.grpc.clone()).expect("endpoint");
    let plain = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => MarketDataClient::new(ch)
            .get_status(pb::GetStatusRequest {})
            .await
            .is_err(),
    };
    assert!(plain, "plain text was served on the TLS port");
    // A client that trusts another CA refuses the server.
    assert!(
        connect_tls(&server, tls(&rogue_pki.ca, Some(&desk)))
            .await
            .is_err(),
        "the client accepted a certificate its CA did not sign"
    );

    // The CLI: --tls-ca with a client certificate.
    let addr = format!("https://127.0.0.1:{}", port(&server));
    let (ok, out) = raven_sub(
        &[
            "--server",
            &addr,
            "--tls-domain",
            "localhost",
            "--tls-ca",
            &pki.ca.to_string_lossy(),
            "--tls-cert",
            &desk.0.to_string_lossy(),
            "--tls-key",
            &desk.1.to_string_lossy(),
        ],
        &[],
    );
    assert!(ok, "raven sub over mTLS: {out}");
    assert!(out.contains("SYN0USDT"), "{out}");

    // New certificate files, from a new CA: served to new connections after SIGHUP;
    // the connection already open keeps its stream.
    let dir = server.dir.path();
    let next = Pki::new(dir, "next");
    let (next_crt, next_key) = next.leaf("server-next", &["localhost"], &[]);
    std::fs::copy(&next_crt, &crt).expect("replace cert");
    std::fs::copy(&next_key, &key).expect("replace key");
    signal(&server, "-HUP");
    wait_until(
        "the new certificate served",
        Duration::from_secs(20),
        || {
            let config = tls(&next.ca, Some(&desk));
            let server = &server;
            async move {
                match connect_tls(server, config).await {
                    Ok(mut c) => c.get_status(pb::GetStatusRequest {}).await.is_ok(),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    first_trade(&mut s).await;
    let metrics = server.metrics().await;
    assert!(
        metric(&metrics, "raven_tls_reloads_total{result=\"ok\"}") >= 1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "raven_tls_handshake_failures_total") >= 2.0);
    assert!(
        metric(
            &metrics,
            "raven_auth_failures_total{reason=\"unknown_certificate\"}"
        ) >= 1.0
    );
}

// ---------------------------------------------------------------- tokens

/// Tokens name principals; each principal is held to its venues, channels, streams
/// and status view; a tokens file is read again on SIGHUP, and no token is ever
/// written to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_name_principals_held_to_their_entitlements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (desk, ops, later) = ("desk-token-3f9a", "ops-token-77c1", "later-token-0b2e");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# principal sha256\nops {}\n", sha256_hex(ops)),
    )
    .expect("tokens file");
    let server_lines = format!(
        "\n[auth]\ntokens_file = \"{}\"\n\n\
         [[auth.principals]]\nname = \"desk\"\ntoken_sha256 = [\"{}\"]\nvenues = [\"binance_spot\"]\nchannels = [\"trades\"]\nmax_streams = 2\n\n\
         [[auth.principals]]\nname = \"ops\"\nadmin = true\n",
        tokens.display(),
        sha256_hex(desk)
    );
    let (_sim, server) = rig(dir, &server_lines).await;
    let mut client = connect(&server).await;

    // No token, a malformed header, a wrong token: UNAUTHENTICATED, each saying why.
    let missing = client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("no token");
    assert_status(
        &missing,
        tonic::Code::Unauthenticated,
        "credentials required",
    );
    let mut basic = tonic::Request::new(pb::GetStatusRequest {});
    basic
        .metadata_mut()
        .insert("authorization", "Basic ZGVzaw==".parse().expect("header"));
    let malformed = client.get_status(basic).await.expect_err("basic auth");
    assert_status(&malformed, tonic::Code::Unauthenticated, "Bearer");
    let wrong = subscribe(&mut client, Some("not-a-token"), vec![trades()])
        .await
        .err()
        .expect("wrong token refused");
    assert_status(&wrong, tonic::Code::Unauthenticated, "not valid");
    // Health checks need no credentials.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Endpoint::from_shared(server.grpc.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect"),
    );
    let health = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");

    // The desk: trades of its venue, nothing else; unary calls beyond it refused.
    let mut s = subscribe(&mut client, Some(desk), vec![trades()])
        .await
        .expect("subscribe");
    assert_eq!(next_ack(&mut s).await.0, pb::ack::Result::Subscribed);
    first_trade(&mut s).await;
    s.tx.send(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics: vec![book()],
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    let (result, reason) = next_ack(&mut s).await;
    assert_eq!(result, pb::ack::Result::Rejected);
    assert!(
        reason.contains("\"desk\"") && reason.contains("channel book"),
        "{reason}"
    );
    s.tx.send(pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Subscribe(pb::SubscribeRequest {
            topics: vec![topic("binance_usdm", "BTCUSDT", pb::Channel::Trades, 0)],
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    let (result, reason) = next_ack(&mut s).await;
    assert_eq!(result, pb::ack::Result::Rejected);
    assert!(reason.contains("venue binance_usdm"), "{reason}");
    let book_call = client
        .get_order_book(with_token(
            pb::GetOrderBookRequest {
                venue: "binance_spot".into(),
                symbol: "SYN0USDT".into(),
                depth: 10,
            },
            Some(desk),
        ))
        .await
        .expect_err("book beyond the desk's channels");
    assert_status(&book_call, tonic::Code::PermissionDenied, "book");
    let instruments = client
        .list_instruments(with_token(
            pb::ListInstrumentsRequest::default(),
            Some(desk),
        ))
        .await
        .expect("instruments")
        .into_inner();
    assert!(instruments
        .instruments
        .iter()
        .all(|i| i.venue == "binance_spot"));

    // Its streams: two at most, on any number of connections.
    let mut other = connect(&server).await;
    let _second = subscribe(&mut other, Some(desk), vec![trades()])
        .await
        .expect("second stream");
    let third = subscribe(&mut other, Some(desk), vec![trades()]).await;
    let third = match third {
        Err(status) => status,
        Ok(mut s) => match s.next(Duration::from_secs(20)).await {
            Some(Err(status)) => status,
            other => panic!("a third stream was served: {other:?}"),
        },
    };
    assert_eq!(third.code(), tonic::Code::ResourceExhausted, "{third:?}");

    // Status: the desk sees its own streams without addresses; the admin sees all.
    let own = client
        .get_status(with_token(pb::GetStatusRequest {}, Some(desk)))
        .await
        .expect("desk status")
        .into_inner();
    assert!(!own.subscribers.is_empty());
    assert!(
        own.subscribers
            .iter()
            .all(|s| s.principal == "desk" && s.peer.is_empty()),
        "{:?}",
        own.subscribers
    );
    let all = client
        .get_status(with_token(pb::GetStatusRequest {}, Some(ops)))
        .await
        .expect("ops status")
        .into_inner();
    assert!(all.subscribers.iter().all(|s| !s.peer.is_empty()));
    assert!(all.subscribers.iter().any(|s| s.principal == "desk"));

    // The CLI sends RAVEN_TOKEN (the admin's: the desk holds all its streams).
    let (ok, out) = raven_sub(&["--server", &server.grpc], &[("RAVEN_TOKEN", ops)]);
    assert!(ok, "raven sub with RAVEN_TOKEN: {out}");
    let (ok, out) = raven_sub(&["--server", &server.grpc], &[]);
    assert!(!ok && out.contains("credentials required"), "{out}");

    // A token added to the file works after SIGHUP; one removed stops working.
    assert_eq!(
        client
            .get_status(with_token(pb::GetStatusRequest {}, Some(later)))
            .await
            .expect_err("not yet")
            .code(),
        tonic::Code::Unauthenticated
    );
    std::fs::write(&tokens, format!("desk {}\n", sha256_hex(later))).expect("tokens file");
    signal(&server, "-HUP");
    wait_until("the new token accepted", Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            client
                .get_status(with_token(pb::GetStatusRequest {}, Some(later)))
                .await
                .is_ok()
        }
    })
    .await;
    let gone = client
        .get_status(with_token(pb::GetStatusRequest {}, Some(ops)))
        .await
        .expect_err("ops's token was removed");
    assert_eq!(gone.code(), tonic::Code::Unauthenticated);
    // The configured token stays valid.
    assert!(client
        .get_status(with_token(pb::GetStatusRequest {}, Some(desk)))
        .await
        .is_ok());

    // A connection that keeps guessing is closed after 8 failed attempts.
    let open_connections = |m: &str| metric(m, "raven_grpc_connections ");
    let before = open_connections(&server.metrics().await);
    let mut guesser = connect(&server).await;
    for attempt in 1..=8 {
        let err = guesser
            .get_status(with_token(
                pb::GetStatusRequest {},
                Some(&format!("guess-{attempt}")),
            ))
            .await
            .expect_err("a guess");
        if attempt < 8 {
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        }
    }
    wait_until(
        "the guessing connection closed",
        Duration::from_secs(20),
        || {
            let server = &server;
            async move { open_connections(&server.metrics().await) <= before }
        },
    )
    .await;

    // Counted by principal and reason, never by token; no token in the log.
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "raven_limit_hits_total{limit=\"auth_failures\"}"),
        1.0
    );
    assert!(metric(&metrics, "raven_token_reloads_total{result=\"ok\"}") >= 1.0);
    assert!(metric(&metrics, "raven_auth_failures_total{reason=\"missing\"}") >= 1.0);
    assert!(metric(&metrics, "raven_auth_failures_total{reason=\"malformed\"}") >= 1.0);
    assert!(
        metric(
            &metrics,
            "raven_auth_failures_total{reason=\"unknown_token\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &metrics,
            "raven_principal_calls_total{principal=\"desk\",method=\"Subscribe\"}"
        ) >= 3.0,
        "{metrics}"
    );
    let log = server.log();
    for token in [desk, ops, later, "not-a-token"] {
        assert!(
            !metrics.contains(token) && !log.contains(token),
            "{token} leaked"
        );
    }
}

// ---------------------------------------------------------------- limits

/// Each connection limit answers with RESOURCE_EXHAUSTED naming its setting, frees
/// its slot when the holder goes, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_answer_and_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_lines = "max_connections = 2\nmax_streams_per_connection = 2\nmax_request_bytes = 1024\nidle_timeout_secs = 1\n";
    let (_sim, server) = rig(dir, server_lines).await;

    // Streams per connection: the third call on one connection is refused.
    let mut first = connect(&server).await;
    let _a = subscribe(&mut first, None, vec![trades()])
        .await
        .expect("first stream");
    let mut b = subscribe(&mut first, None, vec![trades()])
        .await
        .expect("second stream");
    first_trade(&mut b).await;
    let third = first
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("a third call on the connection");
    assert_status(
        &third,
        tonic::Code::ResourceExhausted,
        "server.max_streams_per_connection = 2",
    );
    drop(b);
    wait_until(
        "the ended stream's slot free",
        Duration::from_secs(20),
        || {
            let mut first = first.clone();
            async move { first.get_status(pb::GetStatusRequest {}).await.is_ok() }
        },
    )
    .await;

    // Connections: a third is answered, not served, and may connect once one goes.
    let mut second = connect(&server).await;
    assert!(second.get_status(pb::GetStatusRequest {}).await.is_ok());
    let mut over = connect(&server).await;
    let refused = over
        .get_status(pb::GetStatusRequest {})
        .await
        .expect_err("a third connection");
    assert_status(
        &refused,
        tonic::Code::ResourceExhausted,
        "server.max_connections",
    );
    drop(over);
    drop(second);
    wait_until("a connection slot free", Duration::from_secs(20), || {
        let server = &server;
        async move {
            connect(server)
                .await
                .get_status(pb::GetStatusRequest {})
                .await
                .is_ok()
        }
    })
    .await;

    // A request over max_request_bytes: a one-shot call and a stream, both
    // RESOURCE_EXHAUSTED naming the setting.
    let big = pb::GetOrderBookRequest {
        venue: "binance_spot".into(),
        symbol: "S".repeat(4096),
        depth: 0,
    };
    let err = first.get_order_book(big).await.expect_err("too large");
    assert_status(
        &err,
        tonic::Code::ResourceExhausted,
        "server.max_request_bytes",
    );
    let mut s = subscribe(
        &mut first,
        None,
        vec![topic(
            "binance_spot",
            &"S".repeat(4096),
            pb::Channel::Trades,
            0,
        )],
    )
    .await
    .expect("stream opens");
    let ended = loop {
        match s.next(Duration::from_secs(20)).await {
            Some(Err(status)) => break status,
            Some(Ok(_)) => continue,
            None => panic!("the stream ended without a status"),
        }
    };
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");

    // Idle: a connection with no call open is closed after idle_timeout_secs. (Once
    // the server has let go of the probes above, so this one is not over the limit.)
    wait_until(
        "only the first connection open",
        Duration::from_secs(20),
        || {
            let server = &server;
            async move { metric(&server.metrics().await, "raven_grpc_connections ") == 1.0 }
        },
    )
    .await;
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port(&server)))
        .await
        .expect("tcp connect");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncReadExt;
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection stayed open");

    let metrics = server.metrics().await;
    for limit in [
        "streams_per_connection",
        "connections",
        "request_bytes",
        "idle_timeout",
    ] {
        assert!(
            metric(
                &metrics,
                &format!("raven_limit_hits_total{{limit=\"{limit}\"}}")
            ) >= 1.0,
            "{limit} not counted:\n{metrics}"
        );
    }
    // The streams held open in this test keep their connection alive past the
    // idle timeout: they are not idle.
    assert!(first.get_status(pb::GetStatusRequest {}).await.is_ok());
}
