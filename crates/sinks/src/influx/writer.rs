//! The HTTP side: InfluxDB's v1 write and query endpoints.
//!
//! `/write?db=…&precision=ns` and `/query` exist with the same meaning in InfluxDB 1.x,
//! in 2.x (the v1 compatibility API, authenticated with a token and a DBRP mapping) and
//! in 3.x, so one code path serves all three. The only differences are authentication
//! (a token header, or basic auth) and whether `CREATE DATABASE` is understood, whose
//! failure is therefore ignored.
//!
//! Every answer is classified for the store: 204 is success; 400 means InfluxDB refused
//! the content (a type conflict, a bad line) and retrying the same bytes can never
//! succeed; anything else (connection refused, timeout, 5xx, 401/403 while credentials
//! are fixed, 404 while a database is being created, 429) is worth retrying.
//!
//! Write bodies are gzip-compressed (`Content-Encoding: gzip`, accepted by the write
//! endpoint of all three versions): line protocol repeats measurement, tag and field
//! names on every line, so it shrinks about 7x, which matters when a spill
//! drains over a remote link. Only the request is compressed, at send time and on the
//! blocking pool, so memory batches and spill files stay plain text (readable, and
//! unchanged in format) and the async workers serving gRPC are not held up by it.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::{StatusCode, Url};

use super::InfluxConfig;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) enum WriteError {
    /// Worth retrying later.
    Retry(String),
    /// InfluxDB refused the content.
    Refused(String),
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Token(String),
    Basic(String, Option<String>),
}

#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    write_url: Url,
    create_url: Url,
    select_url: Url,
    auth: Auth,
    gzip: bool,
}

impl Client {
    pub(crate) fn new(config: &InfluxConfig) -> Result<Client, String> {
        let base = config.url.trim_end_matches('/');
        let endpoint = |path: &str| {
            Url::parse(&format!("{base}/{path}")).map_err(|e| format!("bad url {base:?}: {e}"))
        };
        let mut write_url = endpoint("write")?;
        write_url
            .query_pairs_mut()
            .append_pair("db", &config.database)
            .append_pair("precision", "ns");
        let mut create_url = endpoint("query")?;
        create_url.query_pairs_mut().append_pair(
            "q",
            &format!(
                "CREATE DATABASE \"{}\"",
                config.database.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        );
        let mut select_url = endpoint("query")?;
        select_url
            .query_pairs_mut()
            .append_pair("db", &config.database)
            .append_pair("epoch", "ns");
        let auth = match (&config.token, &config.username) {
            (Some(t), _) => Auth::Token(t.clone()),
            (None, Some(u)) => Auth::Basic(u.clone(), config.password.clone()),
            (None, None) => Auth::None,
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Client {
            http,
            write_url,
            create_url,
            select_url,
            auth,
            gzip: config.gzip,
        })
    }

    fn post(&self, url: &Url) -> reqwest::RequestBuilder {
        self.authorized(self.http.post(url.clone()))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Token(t) => request.header(reqwest::header::AUTHORIZATION, format!("Token {t}")),
            Auth::Basic(u, p) => request.basic_auth(u, p.as_deref()),
        }
    }

    /// `CREATE DATABASE` (idempotent in 1.x); errors are logged at debug level only,
    /// since 2.x/3.x may not support it and the write that follows reports real trouble.
    pub(crate) async fn create_database(&self) {
        match self.post(&self.create_url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::debug!(status = %r.status(), "influx: CREATE DATABASE not accepted"),
            Err(e) => tracing::debug!(error = %e, "influx: CREATE DATABASE failed"),
        }
    }

    /// Writes one batch of line protocol (gzip-compressed on the wire unless the
    /// config turned that off).
    pub(crate) async fn write(&self, body: Bytes) -> Result<(), WriteError> {
        let request = if self.gzip {
            // Compressing a 5000-point batch takes milliseconds of CPU: too long to
            // hold an async worker that also serves subscribers.
            let compressed = tokio::task::spawn_blocking(move || gzip(&body))
                .await
                .map_err(|e| WriteError::Retry(format!("gzip task: {e}")))?
                .map_err(|e| WriteError::Retry(format!("gzip: {e}")))?;
            self.post(&self.write_url)
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(compressed)
        } else {
            self.post(&self.write_url).body(body)
        };
        let started = Instant::now();
        let result = request.send().await;
        metrics::histogram!("raven_influx_write_seconds").record(started.elapsed().as_secs_f64());
        let response = result.map_err(|e| WriteError::Retry(e.to_string()))?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!("{status}: {}", text.trim());
        if status == StatusCode::BAD_REQUEST {
            Err(WriteError::Refused(message))
        } else {
            Err(WriteError::Retry(message))
        }
    }

    /// Runs one InfluxQL `SELECT` and returns the first statement's result
    /// (`{"series": [...]}`, or `{}` when nothing matched).
    pub(crate) async fn select(&self, influxql: &str) -> Result<serde_json::Value, String> {
        let started = Instant::now();
        let mut url = self.select_url.clone();
        url.query_pairs_mut().append_pair("q", influxql);
        let result = self.authorized(self.http.get(url)).send().await;
        metrics::histogram!("raven_influx_query_seconds").record(started.elapsed().as_secs_f64());
        let response = result.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", text.trim()));
        }
        let mut body: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("answer is not JSON: {e}"))?;
        let result = body
            .get_mut("results")
            .and_then(|r| r.get_mut(0))
            .map(serde_json::Value::take)
            .ok_or_else(|| format!("answer has no results: {}", text.trim()))?;
        if let Some(error) = result.get("error") {
            return Err(format!("InfluxDB: {error}"));
        }
        Ok(result)
    }
}

/// gzip at the fast level: it already shrinks line protocol about 7x at ~370 MB/s (a
/// 5000-point batch in ~4 ms); the default level reaches about 11x but at ~45 MB/s,
/// eight times the CPU (BENCHMARKS.md, "Storage: InfluxDB").
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}
