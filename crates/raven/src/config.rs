//! Configuration: defaults, then the TOML file, then environment variables, then flags.
//!
//! The TOML file describes *what* to collect (venues, symbols, channels); the guide's
//! environment variables (`SERVER_HOST`, `SERVER_PORT`, `HEALTH_PORT`, `METRICS_PORT`,
//! and Raven's `HEALTH_HOST` and `METRICS_HOST`) say *where* to serve it, so a container can be re-pointed without a new file; flags
//! override both for one run. Every error names the key it is about and why it is
//! wrong, and the process exits non-zero before anything starts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raven_model::{Symbol, Venue};
use serde::Deserialize;

mod access;
pub use access::{access, AuthSection, TlsSection};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub hub: HubSection,
    pub redis: RedisSection,
    pub influxdb: InfluxSection,
    pub history: HistorySection,
    pub auth: AuthSection,
    #[serde(rename = "venues")]
    pub venues: Vec<VenueConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the gRPC listener binds, and the others unless they say (env SERVER_HOST).
    pub host: IpAddr,
    /// gRPC port (env SERVER_PORT).
    pub grpc_port: u16,
    /// Address of the health endpoints (env HEALTH_HOST); unset: `host`. Set it to
    /// 127.0.0.1 to keep them private while gRPC serves beyond the machine.
    pub health_host: Option<IpAddr>,
    /// Health endpoints port (env HEALTH_PORT).
    pub health_port: u16,
    /// Address of the Prometheus metrics (env METRICS_HOST); unset: `host`.
    pub metrics_host: Option<IpAddr>,
    /// Prometheus metrics port (env METRICS_PORT).
    pub metrics_port: u16,
    /// Heartbeat on idle Subscribe streams, milliseconds.
    pub heartbeat_ms: u64,
    /// Raven's own durable data: the SQLite history, the InfluxDB spill (env RAVEN_DATA_DIR).
    pub data_dir: PathBuf,
    /// Topics and pings one Subscribe stream's requests may carry per second (faster
    /// senders are read later, not refused).
    pub max_requests_per_sec: u32,
    /// `GetHistory` answers streaming at once, for the server and per client address.
    pub history_streams: usize,
    pub history_streams_per_client: usize,
    /// A `GetHistory` answer its client takes nothing of for this long is ended.
    pub history_idle_ms: u64,
    /// `Subscribe` streams open at once, for the server and per client address.
    pub subscribe_streams: usize,
    pub subscribe_streams_per_client: usize,
    /// `GetOrderBook`, `GetStatus`, `ListInstruments` and `GetHistory` calls one client
    /// address may make per second (beyond, `RESOURCE_EXHAUSTED`).
    pub calls_per_sec_per_client: u32,
    /// gRPC connections served at once; one beyond is answered `RESOURCE_EXHAUSTED`.
    pub max_connections: usize,
    /// Calls (streams) open at once on one connection.
    pub max_streams_per_connection: usize,
    /// The largest client message, bytes.
    pub max_request_bytes: usize,
    /// HTTP/2 keepalive pings on quiet connections, and how long an answer may take.
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
    /// A connection with no call open this long is closed (0: never).
    pub idle_timeout_secs: u64,
    /// Stored records one topic's replay from a time sends at most.
    pub max_replay_records: usize,
    /// TLS on the gRPC port; unset: plain text.
    pub tls: Option<TlsSection>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            grpc_port: 50051,
            health_host: None,
            health_port: 8080,
            metrics_host: None,
            metrics_port: 9090,
            heartbeat_ms: 5000,
            data_dir: PathBuf::from("data"),
            max_requests_per_sec: 200,
            history_streams: 32,
            history_streams_per_client: 4,
            history_idle_ms: 30_000,
            subscribe_streams: 1024,
            subscribe_streams_per_client: 256,
            calls_per_sec_per_client: 100,
            max_connections: 1024,
            max_streams_per_connection: 100,
            max_request_bytes: 256 * 1024,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 20,
            idle_timeout_secs: 300,
            max_replay_records: 1_000_000,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// Messages a subscriber may have queued before conflation/drops start.
    pub queue_capacity: usize,
    /// Bytes a subscriber may have queued before conflation/drops start.
    pub queue_max_bytes: usize,
    /// How long a subscriber may stay behind before it is disconnected, milliseconds.
    pub slow_consumer_limit_ms: u64,
    pub max_topics_per_stream: usize,
    /// How late a trade may be and still count in its candle, milliseconds.
    pub candle_grace_ms: u64,
    /// How often stores get each book's top levels and the open candles, milliseconds.
    pub tap_interval_ms: u64,
    /// Levels per side in those book samples.
    pub tap_book_depth: usize,
    /// How far ahead of Raven's clock an exchange time may be and still drive candles.
    pub max_clock_skew_ms: u64,
    /// Each instrument's top-N book views are rebuilt at most this often.
    pub book_view_interval_ms: u64,
    /// How long each topic keeps its messages for clients that resume, seconds (0: off).
    pub retention_secs: u64,
    /// Bytes one topic keeps at most, and all topics together.
    pub retention_bytes_per_topic: usize,
    pub retention_bytes: usize,
}

impl Default for HubSection {
    fn default() -> Self {
        let d = raven_hub::HubConfig::default();
        Self {
            queue_capacity: d.queue_capacity,
            queue_max_bytes: d.queue_max_bytes,
            slow_consumer_limit_ms: d.slow_consumer_limit.as_millis() as u64,
            max_topics_per_stream: d.max_topics_per_stream,
            candle_grace_ms: d.candle_grace.as_millis() as u64,
            tap_interval_ms: d.tap_interval.as_millis() as u64,
            tap_book_depth: d.tap_book_depth,
            max_clock_skew_ms: d.max_clock_skew.as_millis() as u64,
            book_view_interval_ms: d.book_view_interval.as_millis() as u64,
            retention_secs: d.retention.as_secs(),
            retention_bytes_per_topic: d.retention_bytes_per_topic,
            retention_bytes: d.retention_bytes,
        }
    }
}

/// The Redis latest-state store; off unless a URL is set (key or env `REDIS_URL`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    pub url: Option<String>,
    pub prefix: String,
    /// At most one write per key per this many milliseconds.
    pub interval_ms: u64,
    /// Also publish every event as JSON on pub/sub.
    pub publish: bool,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "raven".to_owned(),
            interval_ms: 100,
            publish: false,
        }
    }
}

impl RedisSection {
    /// The store's settings, when one is configured.
    pub fn store(&self) -> Option<raven_sinks::redis::RedisConfig> {
        let url = self.url.clone().filter(|u| !u.trim().is_empty())?;
        Some(raven_sinks::redis::RedisConfig {
            url,
            prefix: self.prefix.clone(),
            interval: Duration::from_millis(self.interval_ms),
            publish: self.publish,
        })
    }
}

/// The InfluxDB time-series store; off unless a URL is set (key or env `INFLUXDB_URL`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxSection {
    /// env INFLUXDB_URL
    pub url: Option<String>,
    /// env INFLUXDB_DATABASE
    pub database: String,
    /// env INFLUXDB_USERNAME
    pub username: Option<String>,
    /// env INFLUXDB_PASSWORD
    pub password: Option<String>,
    /// env INFLUXDB_TOKEN (2.x/3.x); takes precedence over username/password.
    pub token: Option<String>,
    pub batch_size: usize,
    pub batch_interval_ms: u64,
    /// Unsent points kept in memory before the oldest go to the spill on disk.
    pub memory_limit_points: usize,
    /// Bytes the spill and rejected batches may take on disk; beyond, points are lost
    /// (counted, store reported `losing`).
    pub spill_max_bytes: u64,
}

impl Default for InfluxSection {
    fn default() -> Self {
        Self {
            url: None,
            database: "market_data".to_owned(),
            username: None,
            password: None,
            token: None,
            batch_size: 5000,
            batch_interval_ms: 1000,
            memory_limit_points: 200_000,
            spill_max_bytes: 1 << 30,
        }
    }
}

impl InfluxSection {
    /// The store's settings, when one is configured; the spill lives under `data_dir`.
    pub fn store(&self, data_dir: &Path) -> Option<raven_sinks::influx::InfluxConfig> {
        let url = self.url.clone().filter(|u| !u.trim().is_empty())?;
        let mut c = raven_sinks::influx::InfluxConfig::new(
            url,
            self.database.clone(),
            data_dir.join("influx-spill"),
        );
        c.username = self.username.clone().filter(|s| !s.is_empty());
        c.password = self.password.clone().filter(|s| !s.is_empty());
        c.token = self.token.clone().filter(|s| !s.is_empty());
        c.batch_size = self.batch_size;
        c.batch_interval = Duration::from_millis(self.batch_interval_ms);
        c.memory_limit_points = self.memory_limit_points;
        c.spill_max_bytes = self.spill_max_bytes;
        Some(c)
    }
}

/// Which store keeps the history `GetHistory` serves.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HistoryStoreName {
    /// InfluxDB when `influxdb.url` is set, otherwise the embedded SQLite file.
    #[default]
    Auto,
    /// The embedded SQLite file, even when InfluxDB is configured too.
    Sqlite,
    /// InfluxDB only (its URL must be set).
    Influxdb,
    /// No history: `GetHistory` answers UNAVAILABLE.
    Off,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    pub store: HistoryStoreName,
    /// SQLite: hours of history kept; 0 keeps everything.
    pub retention_hours: u64,
}

impl Default for HistorySection {
    fn default() -> Self {
        Self {
            store: HistoryStoreName::Auto,
            retention_hours: 7 * 24,
        }
    }
}

/// Where history goes and where `GetHistory` reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryPlan {
    Sqlite(raven_sinks::sqlite::SqliteConfig),
    Influxdb,
    Off,
}

impl Config {
    /// The history store, resolved from `history.store` and whether InfluxDB is set.
    pub fn history_plan(&self) -> HistoryPlan {
        let influx = self.influxdb.store(&self.server.data_dir).is_some();
        let sqlite = || {
            let mut c =
                raven_sinks::sqlite::SqliteConfig::new(self.server.data_dir.join("history.sqlite"));
            c.retention = (self.history.retention_hours > 0)
                .then(|| Duration::from_secs(self.history.retention_hours.saturating_mul(3600)));
            HistoryPlan::Sqlite(c)
        };
        match self.history.store {
            HistoryStoreName::Auto if influx => HistoryPlan::Influxdb,
            HistoryStoreName::Auto | HistoryStoreName::Sqlite => sqlite(),
            HistoryStoreName::Influxdb => HistoryPlan::Influxdb,
            HistoryStoreName::Off => HistoryPlan::Off,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    Trades,
    Book,
    Bbo,
    Funding,
    Liquidations,
    Candles,
}

/// One configured venue. The keys here mean the same for every venue; any other key
/// belongs to the venue's family (Binance's `snapshot_limit`, OKX's `book_channel`, …),
/// which checks it against the venue's documented limits (see the README's venue
/// table).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VenueConfig {
    /// The venue's name, e.g. "binance_spot", "okx", "kraken".
    pub venue: String,
    pub symbols: Vec<String>,
    #[serde(default = "default_channels")]
    pub channels: Vec<ChannelName>,
    /// Override the WebSocket base URL (tests and the demo point it at `raven sim`).
    pub ws_url: Option<String>,
    /// Override the REST base URL.
    pub rest_url: Option<String>,
    /// Seconds without a frame before a connection is considered dead.
    pub stall_timeout_secs: Option<u64>,
    /// Seconds after which a connection is handed over to a new one (Binance: before
    /// its 24 h limit; default 23.5 h).
    pub max_connection_age_secs: Option<u64>,
    /// The family's own keys.
    #[serde(flatten)]
    pub options: toml::Table,
}

impl VenueConfig {
    /// The generic settings and the family's own keys, as the venue registry takes them.
    pub fn settings(&self) -> Result<(raven_venues::VenueSettings, serde_json::Value), String> {
        let venue: Venue = self.venue.parse().map_err(|e| format!("{e}"))?;
        let has = |n: ChannelName| self.channels.contains(&n);
        let settings = raven_venues::VenueSettings {
            venue,
            symbols: self.symbols.iter().map(|s| s.trim().to_owned()).collect(),
            channels: raven_venues::engine::Channels {
                trades: has(ChannelName::Trades) || has(ChannelName::Candles),
                book: has(ChannelName::Book),
                bbo: has(ChannelName::Bbo),
                funding: has(ChannelName::Funding),
                liquidations: has(ChannelName::Liquidations),
            },
            ws_url: self.ws_url.clone(),
            rest_url: self.rest_url.clone(),
            stall_timeout: self.stall_timeout_secs.map(Duration::from_secs),
            max_connection_age: self.max_connection_age_secs.map(Duration::from_secs),
            backoff: raven_venues::BackoffConfig::default(),
        };
        let options = serde_json::to_value(&self.options).map_err(|e| e.to_string())?;
        Ok((settings, options))
    }
}

fn default_channels() -> Vec<ChannelName> {
    vec![
        ChannelName::Trades,
        ChannelName::Book,
        ChannelName::Bbo,
        ChannelName::Candles,
    ]
}

/// An invalid configuration: which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Config {
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let span = e
                .span()
                .map(|s| line_of(text, s.start))
                .map_or(String::new(), |l| format!(" (line {l})"));
            invalid(
                format!("{}{span}", origin.display()),
                e.message().to_owned(),
            )
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("--config", format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, path)
    }

    /// Applies the guide's environment variables through `get` (std::env::var in main).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(url) = get("REDIS_URL") {
            self.redis.url = Some(url);
        }
        if let Some(dir) = get("RAVEN_DATA_DIR") {
            self.server.data_dir = PathBuf::from(dir);
        }
        let influx = &mut self.influxdb;
        for (key, slot) in [
            ("INFLUXDB_URL", &mut influx.url),
            ("INFLUXDB_USERNAME", &mut influx.username),
            ("INFLUXDB_PASSWORD", &mut influx.password),
            ("INFLUXDB_TOKEN", &mut influx.token),
        ] {
            if let Some(v) = get(key) {
                *slot = Some(v);
            }
        }
        if let Some(db) = get("INFLUXDB_DATABASE") {
            influx.database = db;
        }
        let address = |key: &str, v: String| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| invalid(key, format!("{v:?} is not an IP address")))
        };
        if let Some(v) = get("SERVER_HOST") {
            self.server.host = address("SERVER_HOST", v)?;
        }
        if let Some(v) = get("HEALTH_HOST") {
            self.server.health_host = Some(address("HEALTH_HOST", v)?);
        }
        if let Some(v) = get("METRICS_HOST") {
            self.server.metrics_host = Some(address("METRICS_HOST", v)?);
        }
        let (cert, key) = (get("RAVEN_TLS_CERT"), get("RAVEN_TLS_KEY"));
        if cert.is_some() || key.is_some() {
            let tls = self.server.tls.get_or_insert_with(TlsSection::default);
            if let Some(cert) = cert {
                tls.cert = PathBuf::from(cert);
            }
            if let Some(key) = key {
                tls.key = PathBuf::from(key);
            }
        }
        if let Some(ca) = get("RAVEN_TLS_CLIENT_CA") {
            let tls = self.server.tls.as_mut().ok_or_else(|| {
                invalid(
                    "RAVEN_TLS_CLIENT_CA",
                    "needs RAVEN_TLS_CERT and RAVEN_TLS_KEY (or server.tls)",
                )
            })?;
            tls.client_ca = Some(PathBuf::from(ca));
        }
        if let Some(file) = get("RAVEN_TOKENS_FILE") {
            self.auth.tokens_file = Some(PathBuf::from(file));
        }
        for (key, slot) in [
            ("SERVER_PORT", &mut self.server.grpc_port),
            ("HEALTH_PORT", &mut self.server.health_port),
            ("METRICS_PORT", &mut self.server.metrics_port),
        ] {
            if let Some(v) = get(key) {
                *slot = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, format!("{v:?} is not a port number (0-65535)")))?;
            }
        }
        Ok(())
    }

    /// Checks everything serde cannot: venues, symbols, channels, limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ports = [
            ("server.grpc_port", self.server.grpc_port),
            ("server.health_port", self.server.health_port),
            ("server.metrics_port", self.server.metrics_port),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb && *pa != 0 {
                    return Err(invalid(*b, format!("port {pb} is already used by {a}")));
                }
            }
        }
        if let Some(store) = self.redis.store() {
            raven_sinks::redis::validate(&store)
                .map_err(|e| invalid("redis.url (REDIS_URL)", e.0))?;
            if !(1..=3_600_000).contains(&self.redis.interval_ms) {
                return Err(invalid("redis.interval_ms", "must be 1 to 3600000"));
            }
        }
        if let Some(url) = self
            .influxdb
            .url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "influxdb.url (INFLUXDB_URL)",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            if self.influxdb.database.trim().is_empty() {
                return Err(invalid(
                    "influxdb.database (INFLUXDB_DATABASE)",
                    "must not be empty",
                ));
            }
            if self.influxdb.batch_size == 0 || self.influxdb.batch_interval_ms == 0 {
                return Err(invalid(
                    "influxdb.batch_size / influxdb.batch_interval_ms",
                    "must be at least 1",
                ));
            }
        }
        if self.history.store == HistoryStoreName::Influxdb
            && self.influxdb.store(&self.server.data_dir).is_none()
        {
            return Err(invalid(
                "history.store",
                "\"influxdb\" needs influxdb.url (INFLUXDB_URL)",
            ));
        }
        // Every number within what can work: at least one, and at most what keeps the
        // arithmetic on it (deadlines, buffer sizes) far from overflowing.
        const HOUR_MS: u64 = 3_600_000;
        const DAY_MS: u64 = 24 * HOUR_MS;
        let bounded: [(&str, u64, u64, u64); 27] = [
            ("server.heartbeat_ms", self.server.heartbeat_ms, 1, HOUR_MS),
            (
                "hub.slow_consumer_limit_ms",
                self.hub.slow_consumer_limit_ms,
                1,
                HOUR_MS,
            ),
            (
                "hub.book_view_interval_ms",
                self.hub.book_view_interval_ms,
                1,
                60_000,
            ),
            (
                "hub.max_clock_skew_ms",
                self.hub.max_clock_skew_ms,
                1,
                DAY_MS,
            ),
            ("hub.candle_grace_ms", self.hub.candle_grace_ms, 0, HOUR_MS),
            ("hub.tap_interval_ms", self.hub.tap_interval_ms, 1, HOUR_MS),
            (
                "hub.tap_book_depth",
                self.hub.tap_book_depth as u64,
                1,
                5000,
            ),
            (
                "hub.max_topics_per_stream",
                self.hub.max_topics_per_stream as u64,
                1,
                100_000,
            ),
            (
                "hub.queue_capacity",
                self.hub.queue_capacity as u64,
                16,
                10_000_000,
            ),
            (
                "hub.queue_max_bytes",
                self.hub.queue_max_bytes as u64,
                1 << 16,
                1 << 36,
            ),
            (
                "hub.retention_secs",
                self.hub.retention_secs,
                0,
                DAY_MS / 1000,
            ),
            (
                "hub.retention_bytes_per_topic",
                self.hub.retention_bytes_per_topic as u64,
                0,
                1 << 36,
            ),
            (
                "hub.retention_bytes",
                self.hub.retention_bytes as u64,
                0,
                1 << 40,
            ),
            (
                "server.max_requests_per_sec",
                u64::from(self.server.max_requests_per_sec),
                1,
                1_000_000,
            ),
            (
                "server.history_streams",
                self.server.history_streams as u64,
                1,
                100_000,
            ),
            (
                "server.history_streams_per_client",
                self.server.history_streams_per_client as u64,
                1,
                100_000,
            ),
            (
                "server.history_idle_ms",
                self.server.history_idle_ms,
                1,
                DAY_MS,
            ),
            (
                "server.subscribe_streams",
                self.server.subscribe_streams as u64,
                1,
                1_000_000,
            ),
            (
                "server.subscribe_streams_per_client",
                self.server.subscribe_streams_per_client as u64,
                1,
                1_000_000,
            ),
            (
                "server.calls_per_sec_per_client",
                u64::from(self.server.calls_per_sec_per_client),
                1,
                1_000_000,
            ),
            (
                "server.max_connections",
                self.server.max_connections as u64,
                1,
                1_000_000,
            ),
            (
                "server.max_streams_per_connection",
                self.server.max_streams_per_connection as u64,
                1,
                100_000,
            ),
            (
                "server.max_request_bytes",
                self.server.max_request_bytes as u64,
                1024,
                64 << 20,
            ),
            (
                "server.keepalive_interval_secs",
                self.server.keepalive_interval_secs,
                1,
                DAY_MS / 1000,
            ),
            (
                "server.keepalive_timeout_secs",
                self.server.keepalive_timeout_secs,
                1,
                3600,
            ),
            (
                "server.max_replay_records",
                self.server.max_replay_records as u64,
                1,
                100_000_000,
            ),
            (
                "server.idle_timeout_secs",
                self.server.idle_timeout_secs,
                0,
                DAY_MS / 1000,
            ),
        ];
        for (key, v, min, max) in bounded {
            if v < min {
                return Err(invalid(key, format!("must be at least {min}")));
            }
            if v > max {
                return Err(invalid(key, format!("{v} is more than the most, {max}")));
            }
        }
        if self.influxdb.url.is_some() && self.influxdb.spill_max_bytes < 1 << 20 {
            return Err(invalid(
                "influxdb.spill_max_bytes",
                "must be at least 1048576 (one batch must fit)",
            ));
        }
        raven_venues::registry::register_venues();
        let mut seen = Vec::new();
        for (i, v) in self.venues.iter().enumerate() {
            let key = |k: &str| format!("venues[{i}].{k}");
            let venue: Venue = v
                .venue
                .parse()
                .map_err(|e| invalid(key("venue"), format!("{e}")))?;
            if seen.contains(&venue) {
                return Err(invalid(
                    key("venue"),
                    format!("{venue} is configured twice"),
                ));
            }
            seen.push(venue);
            if v.symbols.is_empty() {
                return Err(invalid(key("symbols"), "list at least one symbol"));
            }
            for (j, s) in v.symbols.iter().enumerate() {
                if let Err(reason) = Symbol::check(s.trim()) {
                    return Err(invalid(format!("venues[{i}].symbols[{j}]"), reason));
                }
            }
            if v.channels.is_empty() {
                return Err(invalid(key("channels"), "list at least one channel"));
            }
            for (k, url) in [("ws_url", &v.ws_url), ("rest_url", &v.rest_url)] {
                if let Some(url) = url {
                    let ok = if k == "ws_url" {
                        url.starts_with("ws://") || url.starts_with("wss://")
                    } else {
                        url.starts_with("http://") || url.starts_with("https://")
                    };
                    if !ok {
                        return Err(invalid(key(k), format!("{url:?} has the wrong scheme")));
                    }
                }
            }
            if v.stall_timeout_secs == Some(0) {
                return Err(invalid(
                    key("stall_timeout_secs"),
                    "must be at least 1: 0 would drop every connection at once",
                ));
            }
            if let Some(t) = v.stall_timeout_secs.filter(|t| *t > 3600) {
                return Err(invalid(
                    key("stall_timeout_secs"),
                    format!("{t} is more than the most, 3600 (an hour of silence)"),
                ));
            }
            let (settings, options) = v.settings().map_err(|e| invalid(key("venue"), e))?;
            raven_venues::registry::configure(settings, options)
                .map_err(|e| invalid(key(&e.key), e.reason))?;
        }
        // After the venues: a principal's venues must name configured ones.
        access::validate(&self.auth, self.server.tls.as_ref())?;
        Ok(())
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.server.heartbeat_ms)
    }

    pub fn hub_config(&self) -> raven_hub::HubConfig {
        raven_hub::HubConfig {
            queue_capacity: self.hub.queue_capacity,
            queue_max_bytes: self.hub.queue_max_bytes,
            slow_consumer_limit: Duration::from_millis(self.hub.slow_consumer_limit_ms),
            max_topics_per_stream: self.hub.max_topics_per_stream,
            candle_grace: Duration::from_millis(self.hub.candle_grace_ms),
            max_clock_skew: Duration::from_millis(self.hub.max_clock_skew_ms),
            book_view_interval: Duration::from_millis(self.hub.book_view_interval_ms),
            tap_interval: Duration::from_millis(self.hub.tap_interval_ms),
            tap_book_depth: self.hub.tap_book_depth,
            retention: Duration::from_secs(self.hub.retention_secs),
            retention_bytes_per_topic: self.hub.retention_bytes_per_topic,
            retention_bytes: self.hub.retention_bytes,
        }
    }

    /// The gRPC service's limits and timings.
    pub fn service_config(&self) -> raven_api::grpc::ServiceConfig {
        raven_api::grpc::ServiceConfig {
            heartbeat: self.heartbeat(),
            max_requests_per_sec: self.server.max_requests_per_sec,
            request_burst: u32::try_from(self.hub.max_topics_per_stream).unwrap_or(u32::MAX),
            history_streams: self.server.history_streams,
            history_streams_per_client: self.server.history_streams_per_client,
            history_idle: Duration::from_millis(self.server.history_idle_ms),
            subscribe_streams: self.server.subscribe_streams,
            subscribe_streams_per_client: self.server.subscribe_streams_per_client,
            calls_per_sec_per_client: self.server.calls_per_sec_per_client,
            max_request_bytes: self.server.max_request_bytes,
            conn: raven_api::conn::ConnLimits {
                max_connections: self.server.max_connections,
                max_calls_per_connection: self.server.max_streams_per_connection,
                idle_timeout: (self.server.idle_timeout_secs > 0)
                    .then(|| Duration::from_secs(self.server.idle_timeout_secs)),
            },
            keepalive_interval: Duration::from_secs(self.server.keepalive_interval_secs),
            keepalive_timeout: Duration::from_secs(self.server.keepalive_timeout_secs),
            max_replay_records: self.server.max_replay_records,
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml(text, Path::new("raven.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/raven.example.toml");
        let c = Config::load(&path).unwrap();
        c.validate().unwrap();
        assert!(!c.venues.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[server]\ngrpc_prot = 1\n").unwrap_err().to_string();
        assert!(e.contains("grpc_prot") && e.contains("line 2"), "{e}");
        let e = parse("[[venues]]\nvenue = \"nowhere\"\nsymbols = [\"X\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("venues[0].venue") && e.contains("unknown venue"),
            "{e}"
        );
        let e = parse("[[venues]]\nvenue = \"binance_spot\"\nsymbols = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("venues[0].symbols"), "{e}");
        let e = parse("[[venues]]\nvenue = \"binance_spot\"\nsymbols = [\"BTCUSDT\"]\nchannels = [\"funding\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("venues[0].channels") && e.contains("does not publish funding"),
            "{e}"
        );
        let e = parse("[server]\nhealth_port = 50051\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.health_port"), "{e}");
    }

    #[test]
    fn venue_limits_are_the_venues_own() {
        let venue = |v: &str, extra: &str| {
            parse(&format!(
                "[[venues]]\nvenue = \"{v}\"\nsymbols = [\"BTCUSDT\"]\nchannels = [\"book\"]\n{extra}\n"
            ))
            .map(drop)
            .map_err(|e| e.to_string())
        };
        assert!(venue("binance_spot", "snapshot_limit = 5000").is_ok());
        assert!(venue("binance_spot", "snapshot_limit = 7").is_ok());
        assert!(venue("binance_usdm", "snapshot_limit = 1000").is_ok());
        let e = venue("binance_usdm", "snapshot_limit = 5000").unwrap_err();
        assert!(
            e.contains("venues[0].snapshot_limit") && e.contains("[5, 10, 20, 50, 100, 500, 1000]"),
            "{e}"
        );
        let e = venue("binance_coinm", "snapshot_limit = 200").unwrap_err();
        assert!(e.contains("snapshot_limit"), "{e}");
        let e = venue("binance_spot", "snapshot_limit = 6000").unwrap_err();
        assert!(e.contains("1..=5000"), "{e}");
        let e = venue("binance_spot", "stall_timeout_secs = 0").unwrap_err();
        assert!(e.contains("venues[0].stall_timeout_secs"), "{e}");
        // Values so large the deadlines built from them would overflow are refused.
        let e = venue("binance_spot", "stall_timeout_secs = 18446744073709551615").unwrap_err();
        assert!(
            e.contains("venues[0].stall_timeout_secs") && e.contains("3600"),
            "{e}"
        );
        for (section, key) in [
            ("hub", "book_view_interval_ms"),
            ("hub", "slow_consumer_limit_ms"),
            ("hub", "max_topics_per_stream"),
            ("server", "heartbeat_ms"),
            ("server", "history_idle_ms"),
        ] {
            let e = parse(&format!("[{section}]\n{key} = 18446744073709551615\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("{section}.{key}")) && e.contains("the most"),
                "{e}"
            );
        }
        let e = venue("binance_spot", "max_connection_age_secs = 90000").unwrap_err();
        assert!(
            e.contains("max_connection_age_secs") && e.contains("24 h"),
            "{e}"
        );
        let e = parse("[hub]\nslow_consumer_limit_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hub.slow_consumer_limit_ms"), "{e}");
        let e = parse("[influxdb]\nurl = \"http://x:8086\"\nspill_max_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("influxdb.spill_max_bytes"), "{e}");
    }

    #[test]
    fn the_guides_store_variables_configure_the_stores() {
        let mut c = parse("").unwrap();
        assert!(
            c.influxdb.store(Path::new("d")).is_none() && c.redis.store().is_none(),
            "stores are off by default"
        );
        let env = |k: &str| {
            Some(
                match k {
                    "INFLUXDB_URL" => "http://influxdb:8086",
                    "INFLUXDB_DATABASE" => "market_data",
                    "INFLUXDB_USERNAME" => "raven",
                    "INFLUXDB_PASSWORD" => "ravens_fly_at_dawn",
                    "REDIS_URL" => "redis://redis:6379",
                    "RAVEN_DATA_DIR" => "/var/lib/raven",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        c.apply_env(env).unwrap();
        c.validate().unwrap();
        let influx = c.influxdb.store(&c.server.data_dir).unwrap();
        assert_eq!(
            (influx.url.as_str(), influx.database.as_str()),
            ("http://influxdb:8086", "market_data")
        );
        assert_eq!(
            (influx.username.as_deref(), influx.password.as_deref()),
            (Some("raven"), Some("ravens_fly_at_dawn"))
        );
        assert_eq!(influx.data_dir, Path::new("/var/lib/raven/influx-spill"));
        assert_eq!(c.redis.store().unwrap().url, "redis://redis:6379");
        c.apply_env(|k| (k == "INFLUXDB_URL").then(|| "influxdb:8086".to_owned()))
            .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("INFLUXDB_URL"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_names_bad_values() {
        let mut c = parse("[server]\ngrpc_port = 1234\n").unwrap();
        c.apply_env(|k| (k == "SERVER_PORT").then(|| "4321".to_owned()))
            .unwrap();
        assert_eq!(c.server.grpc_port, 4321);
        let e = c
            .apply_env(|k| (k == "METRICS_PORT").then(|| "abc".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("METRICS_PORT"), "{e}");
    }

    #[test]
    fn health_and_metrics_bind_their_own_host_or_the_server_s() {
        let mut c = parse(
            "[server]
host = \"0.0.0.0\"
metrics_host = \"127.0.0.1\"
",
        )
        .unwrap();
        assert_eq!(c.server.health_host, None, "unset: the server's host");
        assert_eq!(c.server.metrics_host, Some(IpAddr::from([127, 0, 0, 1])));
        c.apply_env(|k| (k == "HEALTH_HOST").then(|| "::1".to_owned()))
            .unwrap();
        assert_eq!(c.server.health_host, Some("::1".parse().unwrap()));
        let e = c
            .apply_env(|k| (k == "METRICS_HOST").then(|| "localhost".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("METRICS_HOST") && e.contains("IP address"),
            "{e}"
        );
    }

    #[test]
    fn credentials_and_limits_errors_name_the_key() {
        let principal = |body: &str| {
            parse(&format!("[[auth.principals]]\n{body}\n"))
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert!(principal(&format!("name = \"desk\"\ntoken_sha256 = [\"{hash}\"]")).is_ok());
        for (body, key, why) in [
            ("name = \"a b\"", "auth.principals[0].name", "A-Z"),
            ("name = \"open\"", "auth.principals[0].name", "reserved"),
            (
                "name = \"desk\"\ntoken_sha256 = [\"abc\"]",
                "auth.principals[0].token_sha256[0]",
                "64",
            ),
            (
                "name = \"desk\"\nvenues = [\"nasdaq\"]",
                "auth.principals[0].venues[0]",
                "nasdaq",
            ),
            (
                "name = \"desk\"\nchannels = [\"quotes\"]",
                "line 3",
                "unknown variant `quotes`",
            ),
            (
                "name = \"desk\"\nmax_streams = 0",
                "auth.principals[0].max_streams",
                "at least 1",
            ),
            (
                "name = \"desk\"\nclient_cert_names = [\"desk.example\"]",
                "auth.principals[0].client_cert_names",
                "client_ca",
            ),
        ] {
            let e = principal(body).unwrap_err();
            assert!(e.contains(key) && e.contains(why), "{body}: {e}");
        }
        let e = parse("[[auth.principals]]\nname = \"a\"\n[[auth.principals]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.principals[1].name") && e.contains("twice"),
            "{e}"
        );
        let e = parse("[auth]\ntokens_file = \"/etc/raven/tokens\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.tokens_file"), "{e}");
        let e = parse("[server.tls]\ncert = \"\"\nkey = \"k.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.tls.cert"), "{e}");
        for (key, value, why) in [
            ("max_request_bytes", "100", "at least 1024"),
            ("max_connections", "0", "at least 1"),
            ("max_streams_per_connection", "0", "at least 1"),
            ("keepalive_interval_secs", "0", "at least 1"),
            ("idle_timeout_secs", "18446744073709551615", "the most"),
        ] {
            let e = parse(&format!("[server]\n{key} = {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("server.{key}")) && e.contains(why),
                "{e}"
            );
        }
        // The environment's TLS files come as a set.
        let mut c = parse("").unwrap();
        let e = c
            .apply_env(|k| (k == "RAVEN_TLS_CLIENT_CA").then(|| "ca.pem".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RAVEN_TLS_CLIENT_CA"), "{e}");
    }

    #[test]
    fn a_tokens_file_error_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# principal hash\nnobody 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n").unwrap();
        let c = parse(&format!(
            "[auth]\ntokens_file = \"{}\"\n[[auth.principals]]\nname = \"desk\"\n",
            file.display()
        ))
        .unwrap();
        let e = access(&c.auth, c.server.tls.as_ref())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("\"nobody\""), "{e}");
        // Without principals the server is open, and says so beyond loopback.
        let open = access(&AuthSection::default(), None).unwrap();
        assert!(open.auth.is_open());
        assert_eq!(open.warnings(IpAddr::from([0, 0, 0, 0])).len(), 2);
        assert!(open.warnings(IpAddr::from([127, 0, 0, 1])).is_empty());
    }
}
