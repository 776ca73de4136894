//! REST depth snapshots, fetched one at a time per venue, paced and rate-limit aware.
//!
//! Every book needs a REST snapshot to start and after every gap, and after a disconnect
//! every book of the connection needs one at once. Binance weighs `depth` requests by
//! `limit` (heavier for futures than spot) against a per-IP weight budget, answers HTTP
//! 429 when the budget is exceeded and 418 (an IP ban) when a client keeps going, both
//! with a `Retry-After` header in seconds (spot "General API Information" / futures
//! "Limits" pages). So a venue has one [`SnapshotFetcher`] task that:
//! * serves requests in order, spaced by `snapshot_spacing` so a mass resync becomes a
//!   steady trickle instead of a burst;
//! * on 429/418 stops *all* fetches of the venue until `Retry-After` has passed (the
//!   budget is per IP, not per symbol);
//! * retries any failed request with exponential backoff, re-queuing it so other symbols
//!   are not stuck behind it, and reports each failure so the book's status counts it;
//! * bounds every request with a timeout;
//! * serves a request only while the book's sync attempt that asked for it is still the
//!   current one ([`Generation`]): a snapshot asked for before a disconnect or a gap
//!   must never be applied after it, and is not even fetched (it would spend weight).
//!   Every reply carries its attempt's number, so the connection can discard one that
//!   crossed a new attempt in flight.
//!
//! Each attempt is traced as a `book.snapshot` span, a child of the `book.resync` span
//! the connection passed with the request, so a trace shows how many fetches (and which
//! refusals) a resync took.
//!
//! The spacing is the larger of `snapshot_spacing` and what the weight budget allows:
//! a `limit=1000` spot snapshot weighs 50 against 6 000 per minute, a futures one 20
//! against 2 400, so at half the budget one such snapshot per second is the steady rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raven_model::UnixNanos;

use super::market::Market;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::depth::DepthSnapshot;
use super::instruments::ListedSymbol;
use super::parse::{self, ParseError};
use crate::backoff::{Backoff, BackoffConfig};
use crate::status;

/// Binance's documented per-IP REST weight limit per minute (spot "General API
/// Information"; USD-M and COIN-M "General Info: Limits").
pub fn weight_limit_per_minute(market: Market) -> u32 {
    match market {
        Market::Spot => 6000,
        Market::Usdm | Market::Coinm => 2400,
    }
}

/// The weight of one depth request of `limit` levels (spot `GET /api/v3/depth`:
/// 5/25/50/250 by limit; futures `GET /fapi/v1/depth` and `/dapi/v1/depth`: 2/5/10/20).
pub fn depth_weight(market: Market, limit: u32) -> u32 {
    match market {
        Market::Spot => match limit {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        },
        Market::Usdm | Market::Coinm => match limit {
            0..=50 => 2,
            51..=100 => 5,
            101..=500 => 10,
            _ => 20,
        },
    }
}

/// The pause between depth requests that keeps them within `weight_per_minute`.
pub fn weight_spacing(market: Market, limit: u32, weight_per_minute: u32) -> Duration {
    let per_minute = weight_per_minute.max(1);
    Duration::from_secs(60) * depth_weight(market, limit) / per_minute
}

/// A 429/418 without a usable `Retry-After` pauses the venue this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why one snapshot attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("rate limited (HTTP {status}), venue paused for {retry_after:?}")]
    RateLimited { status: u16, retry_after: Duration },
    #[error("body is not UTF-8")]
    Utf8,
    #[error("bad body: {0}")]
    Parse(#[from] ParseError),
}

impl SnapshotError {
    /// The HTTP status the exchange answered with, when it answered with a refusal.
    fn http_status(&self) -> Option<u16> {
        match self {
            SnapshotError::Status(status) | SnapshotError::RateLimited { status, .. } => {
                Some(*status)
            }
            SnapshotError::Http(e) => e.status().map(|s| s.as_u16()),
            SnapshotError::Utf8 | SnapshotError::Parse(_) => None,
        }
    }
}

/// The number of a book's current sync attempt, shared by the connection (which
/// starts attempts) and the fetcher (which serves them). A new attempt starts at every
/// reset of the book: disconnect, gap, rejection.
#[derive(Debug, Clone, Default)]
pub struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Starts a new attempt; returns its number.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// What the fetcher reports back to the connection that owns the book.
#[derive(Debug)]
pub enum SnapshotReply {
    Fetched {
        symbol: String,
        /// The sync attempt it was fetched for.
        generation: u64,
        snapshot: DepthSnapshot,
    },
    /// One fetch failed; the fetcher retries on its own while the attempt is current.
    Failed {
        symbol: String,
        generation: u64,
        error: SnapshotError,
    },
}

struct Request {
    symbol: String,
    /// The book's sync attempt this is for, and where to see whether it still is.
    generation: u64,
    current: Generation,
    attempt: u32,
    reply: mpsc::UnboundedSender<SnapshotReply>,
    /// The span each attempt's `book.snapshot` span belongs under.
    parent: tracing::Span,
}

impl Request {
    /// Served only while its book's attempt is current and its connection listens.
    fn wanted(&self) -> bool {
        !self.reply.is_closed() && self.current.current() == self.generation
    }
}

/// Handle for queuing snapshot requests; cheap to clone.
#[derive(Clone)]
pub struct SnapshotFetcher {
    tx: mpsc::UnboundedSender<Request>,
}

impl SnapshotFetcher {
    /// Queues a snapshot of `symbol` (upper-case exchange symbol) for the current
    /// attempt of `generation`. The result, and every failed fetch, is sent to `reply`;
    /// the request is dropped once `reply` is closed or a newer attempt started. Each
    /// fetch is traced under `parent` ([`tracing::Span::none`] for a root span).
    pub fn request(
        &self,
        symbol: &str,
        generation: &Generation,
        reply: &mpsc::UnboundedSender<SnapshotReply>,
        parent: &tracing::Span,
    ) {
        // The fetcher only stops when the venue shuts down; a lost request then is moot.
        let _ = self.tx.send(Request {
            symbol: symbol.to_owned(),
            generation: generation.current(),
            current: generation.clone(),
            attempt: 0,
            reply: reply.clone(),
            parent: parent.clone(),
        });
    }
}

/// How a venue's fetcher behaves.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub market: Market,
    pub rest_url: String,
    pub limit: u32,
    pub spacing: Duration,
    pub backoff: BackoffConfig,
}

/// Creates the fetcher and the future that serves it (run it as a task). The future ends
/// when every [`SnapshotFetcher`] handle is dropped.
pub fn fetcher(
    client: reqwest::Client,
    config: FetcherConfig,
) -> (
    SnapshotFetcher,
    impl std::future::Future<Output = ()> + Send,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let weak = tx.downgrade();
    (SnapshotFetcher { tx }, serve(client, config, rx, weak))
}

async fn serve(
    client: reqwest::Client,
    config: FetcherConfig,
    mut rx: mpsc::UnboundedReceiver<Request>,
    requeue: mpsc::WeakUnboundedSender<Request>,
) {
    let venue = config.market.name();
    let fetches = metrics::counter!(status::METRIC_SNAPSHOT_FETCHES, "venue" => venue);
    let failures = metrics::counter!(status::METRIC_SNAPSHOT_FAILURES, "venue" => venue);
    let url = format!(
        "{}{}/depth",
        config.rest_url.trim_end_matches('/'),
        rest_prefix(config.market)
    );
    let limit = config.limit.to_string();
    let mut paused_until: Option<Instant> = None;

    while let Some(request) = rx.recv().await {
        if !request.wanted() {
            continue;
        }
        if let Some(until) = paused_until.take() {
            tokio::time::sleep_until(until).await;
            if !request.wanted() {
                continue;
            }
        }
        let span = tracing::info_span!(
            parent: &request.parent,
            "book.snapshot",
            venue,
            symbol = request.symbol.as_str(),
            snapshot.limit = config.limit,
            snapshot.attempt = request.attempt,
            outcome = tracing::field::Empty,
            snapshot.last_update_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = fetch_snapshot(&client, &url, &request.symbol, &limit).await;
        match &result {
            Ok(snapshot) => {
                span.record("snapshot.last_update_id", snapshot.last_update_id);
                span.record("outcome", "fetched");
            }
            Err(error) => {
                if let Some(status) = error.http_status() {
                    span.record("http.response.status_code", status);
                }
                span.record("error.message", tracing::field::display(error));
                span.record("outcome", "failed");
                span.record("otel.status_code", "error");
            }
        }
        drop(span);
        match result {
            Ok(snapshot) => {
                fetches.increment(1);
                let _ = request.reply.send(SnapshotReply::Fetched {
                    symbol: request.symbol,
                    generation: request.generation,
                    snapshot,
                });
            }
            Err(error) => {
                failures.increment(1);
                let mut delay =
                    Backoff::after_attempts(config.backoff, request.attempt).next_delay();
                if let SnapshotError::RateLimited { retry_after, .. } = &error {
                    paused_until = Some(Instant::now() + *retry_after);
                    delay = delay.max(*retry_after);
                }
                tracing::warn!(
                    venue,
                    symbol = %request.symbol,
                    attempt = request.attempt,
                    retry_in = ?delay,
                    %error,
                    "depth snapshot failed"
                );
                let retry = Request {
                    symbol: request.symbol.clone(),
                    generation: request.generation,
                    current: request.current.clone(),
                    attempt: request.attempt.saturating_add(1),
                    reply: request.reply.clone(),
                    parent: request.parent.clone(),
                };
                let _ = request.reply.send(SnapshotReply::Failed {
                    symbol: request.symbol,
                    generation: request.generation,
                    error,
                });
                if let Some(tx) = requeue.upgrade() {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(retry);
                    });
                }
            }
        }
        tokio::time::sleep(config.spacing).await;
    }
}

async fn fetch_snapshot(
    client: &reqwest::Client,
    url: &str,
    symbol: &str,
    limit: &str,
) -> Result<DepthSnapshot, SnapshotError> {
    // Symbols are [A-Z0-9_] (they come from the config, upper-cased), so no escaping.
    let body = get(client, &format!("{url}?symbol={symbol}&limit={limit}")).await?;
    let receive_time = UnixNanos::now();
    let text = std::str::from_utf8(&body).map_err(|_| SnapshotError::Utf8)?;
    Ok(parse::parse_snapshot(text, receive_time)?)
}

/// Fetches the venue's listed symbols (`exchangeInfo`).
pub async fn fetch_exchange_info(
    client: &reqwest::Client,
    market: Market,
    rest_url: &str,
) -> Result<Vec<ListedSymbol>, SnapshotError> {
    let url = format!(
        "{}{}/exchangeInfo",
        rest_url.trim_end_matches('/'),
        rest_prefix(market)
    );
    let body = get(client, &url).await?;
    let text = std::str::from_utf8(&body).map_err(|_| SnapshotError::Utf8)?;
    Ok(super::instruments::parse_exchange_info(market, text)?)
}

async fn get(client: &reqwest::Client, url: &str) -> Result<bytes::Bytes, SnapshotError> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    if status == 429 || status == 418 {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs);
        return Err(SnapshotError::RateLimited {
            status,
            retry_after,
        });
    }
    if !response.status().is_success() {
        return Err(SnapshotError::Status(status));
    }
    Ok(response.bytes().await?)
}

/// The REST path prefix of each venue.
pub fn rest_prefix(market: Market) -> &'static str {
    match market {
        Market::Spot => "/api/v3",
        Market::Usdm => "/fapi/v1",
        Market::Coinm => "/dapi/v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_budgets_space_thousand_level_snapshots_one_second_apart() {
        for market in Market::ALL {
            let spacing = weight_spacing(market, 1000, weight_limit_per_minute(market) / 2);
            assert_eq!(spacing, Duration::from_secs(1), "{market:?}");
        }
        assert_eq!(
            weight_spacing(Market::Spot, 5000, 3000),
            Duration::from_secs(5)
        );
        assert_eq!(
            weight_spacing(Market::Spot, 100, 3000),
            Duration::from_millis(100)
        );
        assert_eq!(
            weight_spacing(Market::Usdm, 100, 1200),
            Duration::from_millis(250)
        );
        // A zero budget is treated as one unit per minute, not a division by zero.
        assert_eq!(
            weight_spacing(Market::Spot, 1000, 0),
            Duration::from_secs(3000)
        );
    }
}
