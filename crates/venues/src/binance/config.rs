//! The Binance family's own settings, checked against Binance's documented limits, and
//! its entry in the venue registry.

use std::time::Duration;

use raven_model::Venue;
use serde::Deserialize;

use super::market::Market;
use super::{spawn, BinanceConfig, Channels, TradeStream};
use crate::engine;
use crate::registry::{self, ConfiguredVenue, Family, SettingError, VenueSettings};

/// The registry entry: `binance_spot`, `binance_usdm`, `binance_coinm`.
pub const FAMILY: Family = Family {
    name: "binance",
    venues: &["binance_spot", "binance_usdm", "binance_coinm"],
    channels: offered,
    configure,
};

/// The keys of a Binance venue's table besides the generic ones.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BinanceOptions {
    /// `aggTrade` (default: trades aggregated per taker order and price) or `trade`
    /// (every fill; spot only).
    #[serde(default)]
    pub trade_stream: TradeStreamName,
    /// REST depth snapshot size: spot 1..=5000, futures one of 5/10/20/50/100/500/1000
    /// (`GET /api/v3/depth`, `/fapi/v1/depth`, `/dapi/v1/depth`). Default 1000.
    pub snapshot_limit: Option<u32>,
    /// REST weight per minute Raven may spend on depth snapshots (default: half the
    /// venue's per-IP limit, 6000 spot and 2400 futures).
    pub rest_weight_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum TradeStreamName {
    #[default]
    #[serde(rename = "aggTrade")]
    AggTrade,
    #[serde(rename = "trade")]
    Trade,
}

/// Binance's documented futures depth `limit` values.
const FUTURES_LIMITS: [u32; 7] = [5, 10, 20, 50, 100, 500, 1000];

fn offered(venue: Venue) -> engine::Channels {
    let futures = Market::of(venue).is_some_and(Market::is_futures);
    engine::Channels {
        trades: true,
        book: true,
        bbo: true,
        funding: futures,
        liquidations: futures,
    }
}

fn configure(
    settings: VenueSettings,
    options: serde_json::Value,
) -> Result<Box<dyn ConfiguredVenue>, SettingError> {
    let market = Market::of(settings.venue).ok_or_else(|| {
        SettingError::new(
            "venue",
            format!("{} is not a Binance market", settings.venue),
        )
    })?;
    let options: BinanceOptions = registry::options(options)?;
    if options.trade_stream == TradeStreamName::Trade && market.is_futures() {
        return Err(SettingError::new(
            "trade_stream",
            "\"trade\" is a spot stream; futures venues use \"aggTrade\"",
        ));
    }
    if let Some(limit) = options.snapshot_limit {
        if market.is_futures() && !FUTURES_LIMITS.contains(&limit) {
            return Err(SettingError::new(
                "snapshot_limit",
                format!(
                    "{limit} is not one of {}'s depth limits {FUTURES_LIMITS:?}",
                    settings.venue
                ),
            ));
        }
        if !market.is_futures() && !(1..=5000).contains(&limit) {
            return Err(SettingError::new(
                "snapshot_limit",
                format!(
                    "{limit} is outside {}'s depth limits 1..=5000",
                    settings.venue
                ),
            ));
        }
    }
    if options.rest_weight_per_minute == Some(0) {
        return Err(SettingError::new(
            "rest_weight_per_minute",
            "must be at least 1",
        ));
    }
    if let Some(age) = settings.max_connection_age {
        if !(Duration::from_secs(2)..Duration::from_secs(24 * 3600)).contains(&age) {
            return Err(SettingError::new(
                "max_connection_age_secs",
                format!(
                    "{} is outside 2..86400 (Binance ends a connection at 24 h)",
                    age.as_secs()
                ),
            ));
        }
    }
    let mut c = BinanceConfig::new(market);
    c.symbols = settings.symbols;
    c.channels = Channels {
        trades: settings
            .channels
            .trades
            .then_some(match options.trade_stream {
                TradeStreamName::AggTrade => TradeStream::AggTrade,
                TradeStreamName::Trade => TradeStream::Trade,
            }),
        book: settings.channels.book,
        bbo: settings.channels.bbo,
        mark_price: settings.channels.funding,
        liquidations: settings.channels.liquidations,
    };
    if let Some(url) = settings.ws_url {
        c.ws_url = url;
    }
    if let Some(url) = settings.rest_url {
        c.rest_url = url;
    }
    if let Some(limit) = options.snapshot_limit {
        c.snapshot_limit = limit;
    }
    if let Some(t) = settings.stall_timeout {
        c.stall_timeout = t;
    }
    if let Some(weight) = options.rest_weight_per_minute {
        c.rest_weight_per_minute = weight;
    }
    if let Some(age) = settings.max_connection_age {
        c.max_connection_age = age;
    }
    c.backoff = settings.backoff;
    Ok(Box::new(Configured(c)))
}

struct Configured(BinanceConfig);

impl ConfiguredVenue for Configured {
    fn spawn(
        self: Box<Self>,
        sink: std::sync::Arc<dyn raven_model::feed::FeedSink>,
        status: std::sync::Arc<crate::status::FeedStatus>,
    ) -> crate::handle::VenueHandle {
        spawn(self.0, sink, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(venue: &str) -> VenueSettings {
        crate::registry::register_venues();
        VenueSettings {
            venue: Venue::new(venue).unwrap(),
            symbols: vec!["BTCUSDT".into()],
            channels: engine::Channels {
                trades: true,
                book: true,
                ..Default::default()
            },
            ws_url: None,
            rest_url: None,
            stall_timeout: None,
            max_connection_age: None,
            backoff: Default::default(),
        }
    }

    fn check(venue: &str, options: serde_json::Value) -> Result<(), SettingError> {
        registry::configure(settings(venue), options).map(|_| ())
    }

    #[test]
    fn limits_follow_binance_docs() {
        assert!(check("binance_spot", json!({"snapshot_limit": 5000})).is_ok());
        assert!(check("binance_spot", json!({"snapshot_limit": 7})).is_ok());
        assert!(check("binance_usdm", json!({"snapshot_limit": 1000})).is_ok());
        let e = check("binance_usdm", json!({"snapshot_limit": 5000})).unwrap_err();
        assert_eq!(e.key, "snapshot_limit");
        assert!(check("binance_coinm", json!({"snapshot_limit": 200})).is_err());
        assert!(check("binance_spot", json!({"snapshot_limit": 6000})).is_err());
        let e = check("binance_usdm", json!({"trade_stream": "trade"})).unwrap_err();
        assert_eq!(e.key, "trade_stream");
        let e = check("binance_spot", json!({"nope": 1})).unwrap_err();
        assert_eq!(e.key, "nope");
        let e = check("binance_spot", json!({"rest_weight_per_minute": 0})).unwrap_err();
        assert_eq!(e.key, "rest_weight_per_minute");
    }

    #[test]
    fn futures_channels_are_refused_on_spot() {
        let mut s = settings("binance_spot");
        s.channels.funding = true;
        let e = registry::configure(s, json!({})).map(|_| ()).unwrap_err();
        assert_eq!(e.key, "channels");
    }
}
