//! Redis: the latest state of every instrument, for services that only want "now".
//!
//! Key schema (values are JSON; decimals are the exchange's exact strings, times are
//! Unix nanoseconds):
//!
//! | key | value |
//! |---|---|
//! | `{prefix}:{venue}:{symbol}:trade` | last trade |
//! | `{prefix}:{venue}:{symbol}:bbo` | best bid and offer |
//! | `{prefix}:{venue}:{symbol}:book` | top N levels of the in-sync book, sampled at the hub's tap interval |
//! | `{prefix}:{venue}:{symbol}:funding` | mark price, index price, funding rate (futures) |
//! | `{prefix}:{venue}:{symbol}:liquidation` | last liquidation (futures) |
//! | `{prefix}:{venue}:{symbol}:candle:{1m,5m,1h}` | the open candle |
//! | `{prefix}:{venue}:{symbol}:candle:{1m,5m,1h}:closed` | the last closed candle |
//!
//! Writes are conflated: records only update an in-memory map, and every `interval` the
//! keys that changed are written in one pipeline, so each key is written at most once
//! per interval however fast the market moves. With `publish` on, every event is also
//! published as JSON on the channel named like its key (not conflated).
//!
//! Redis being down never touches the hub: this task keeps absorbing records into the
//! map (bounded by the number of keys), counts the failed flush, drops the connection,
//! and reconnects at the next interval; the first successful flush writes the latest
//! state of every key that changed meanwhile.
//!
//! Each flush that has something to write is one `store.batch` span (`store = redis`,
//! keys written, messages published, outcome): at most one per interval, whatever the
//! message rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use raven_hub::Record;
use raven_model::InstrumentId;
use tokio::sync::mpsc;

use crate::health::StoreHealth;
use crate::json;

/// Pub/sub messages waiting for the next flush, at most; beyond, the oldest are dropped
/// (subscribers of a pub/sub channel only ever see live messages anyway).
const MAX_PENDING_PUBLISH: usize = 100_000;

/// How long one connect or pipeline may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` (env `REDIS_URL`).
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// How often changed keys are written.
    pub interval: Duration,
    /// Also publish every event on pub/sub.
    pub publish: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

/// Checks the URL without connecting (a bad URL is a configuration error; an absent
/// server is not).
pub fn validate(config: &RedisConfig) -> Result<(), UrlError> {
    redis::Client::open(config.url.as_str())
        .map(|_| ())
        .map_err(|e| UrlError(e.to_string()))
}

/// Runs the writer until `stop` resolves or the hub drops the tap, then writes what
/// changed last; reports its state to `health`.
pub async fn run(
    config: RedisConfig,
    records: &mut mpsc::Receiver<Record>,
    health: Arc<StoreHealth>,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    for name in [
        "raven_redis_writes_total",
        "raven_redis_publishes_total",
        "raven_redis_publish_dropped_total",
        "raven_redis_errors_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    let client = match redis::Client::open(config.url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "redis: invalid URL; the Redis store is disabled");
            health.degraded(format!("disabled: {e}"));
            return;
        }
    };
    let mut state = State {
        prefix: config.prefix.clone(),
        changed: HashMap::new(),
        publish: VecDeque::new(),
        publish_on: config.publish,
        health,
    };
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut every = tokio::time::interval(config.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics::gauge!("raven_redis_up").set(0.0);
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        tokio::select! {
            record = records.recv() => match record {
                Some(r) => state.absorb(r),
                None => break,
            },
            // No new records; what the tap holds is still read, then the loop ends.
            _ = &mut stop, if !stopping => {
                stopping = true;
                records.close();
            }
            _ = every.tick() => state.flush(&client, &mut conn).await,
        }
    }
    state.flush(&client, &mut conn).await;
}

struct State {
    prefix: String,
    /// Key → latest JSON, for keys changed since the last successful flush.
    changed: HashMap<String, String>,
    publish: VecDeque<(String, String)>,
    publish_on: bool,
    health: Arc<StoreHealth>,
}

impl State {
    fn key(&self, id: &InstrumentId, suffix: &str) -> String {
        format!(
            "{}:{}:{}:{suffix}",
            self.prefix,
            id.venue.as_str(),
            id.symbol.as_str()
        )
    }

    fn absorb(&mut self, record: Record) {
        let (key, value) = match &record {
            Record::Event(e) => {
                let (name, value) = json::event(e);
                (self.key(&e.instrument, name), value.to_string())
            }
            Record::Candle {
                instrument,
                candle,
                closed,
            } => {
                let suffix = if *closed {
                    format!("candle:{}:closed", candle.interval.as_str())
                } else {
                    format!("candle:{}", candle.interval.as_str())
                };
                (
                    self.key(instrument, &suffix),
                    json::candle(candle).to_string(),
                )
            }
            Record::Book {
                instrument,
                levels,
                exchange_time,
                receive_time,
            } => (
                self.key(instrument, "book"),
                json::book(levels, *exchange_time, *receive_time).to_string(),
            ),
        };
        if self.publish_on && matches!(record, Record::Event(_)) {
            if self.publish.len() >= MAX_PENDING_PUBLISH {
                self.publish.pop_front();
                metrics::counter!("raven_redis_publish_dropped_total").increment(1);
            }
            self.publish.push_back((key.clone(), value.clone()));
        }
        self.changed.insert(key, value);
        self.note_held();
    }

    /// What a failure of this task would lose: the changes and messages not yet sent.
    fn note_held(&self) {
        self.health
            .set_held((self.changed.len() + self.publish.len()) as u64);
    }

    async fn flush(
        &mut self,
        client: &redis::Client,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
    ) {
        if self.changed.is_empty() && self.publish.is_empty() {
            return;
        }
        let span = tracing::info_span!(
            "store.batch",
            store = "redis",
            rows = self.changed.len(),
            published = self.publish.len(),
            outcome = tracing::field::Empty,
            error.message = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        match self.write(client, conn).await {
            Ok(()) => {
                span.record("outcome", "written");
            }
            Err(error) => {
                span.record("outcome", "failed");
                span.record("error.message", error.as_str());
                span.record("otel.status_code", "error");
                self.failed(conn, &error);
            }
        }
        self.note_held();
    }

    /// One pipeline with every changed key and pending publish; cleared once written.
    async fn write(
        &mut self,
        client: &redis::Client,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
    ) -> Result<(), String> {
        let c = match conn {
            Some(c) => c,
            None => {
                let connect = client.get_multiplexed_async_connection();
                match tokio::time::timeout(IO_TIMEOUT, connect).await {
                    Ok(Ok(c)) => {
                        tracing::info!("redis: connected");
                        conn.insert(c)
                    }
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("connect timed out".to_owned()),
                }
            }
        };
        let mut pipe = redis::pipe();
        for (k, v) in &self.changed {
            pipe.set(k, v).ignore();
        }
        for (channel, message) in &self.publish {
            pipe.publish(channel, message).ignore();
        }
        match tokio::time::timeout(IO_TIMEOUT, pipe.query_async::<()>(c)).await {
            Ok(Ok(())) => {
                metrics::counter!("raven_redis_writes_total").increment(self.changed.len() as u64);
                metrics::counter!("raven_redis_publishes_total")
                    .increment(self.publish.len() as u64);
                metrics::gauge!("raven_redis_up").set(1.0);
                self.health.ok();
                self.changed.clear();
                self.publish.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("write timed out".to_owned()),
        }
    }

    /// Keeps everything for the next flush and forces a reconnect.
    fn failed(&self, conn: &mut Option<redis::aio::MultiplexedConnection>, error: &str) {
        if conn.is_some() {
            tracing::warn!(%error, "redis: write failed; reconnecting");
        } else {
            tracing::debug!(%error, "redis: unavailable");
        }
        *conn = None;
        metrics::counter!("raven_redis_errors_total").increment(1);
        metrics::counter!("errors_total", "kind" => "redis").increment(1);
        metrics::gauge!("raven_redis_up").set(0.0);
        self.health.degraded(format!(
            "unreachable ({error}); the latest values wait in memory and are rewritten on reconnect"
        ));
    }
}
