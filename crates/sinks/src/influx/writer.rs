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

use std::time::{Duration, Instant};

use bytes::Bytes;
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
    auth: Auth,
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
            auth,
        })
    }

    fn post(&self, url: &Url) -> reqwest::RequestBuilder {
        let request = self.http.post(url.clone());
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

    /// Writes one batch of line protocol.
    pub(crate) async fn write(&self, body: Bytes) -> Result<(), WriteError> {
        let started = Instant::now();
        let result = self.post(&self.write_url).body(body).send().await;
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
}
