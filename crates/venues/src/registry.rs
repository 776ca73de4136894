//! Every venue family Raven speaks, behind one venue-neutral entry point.
//!
//! The server, the demo and the stores never name an exchange: they hand each
//! configured venue's generic settings ([`VenueSettings`]) and the family's own table
//! (as JSON, whatever the config format) to [`configure`], which finds the family by
//! the venue's name, lets it validate its own keys against the venue's documented
//! limits, and returns something to start ([`ConfiguredVenue`]). Adding a venue family
//! is one folder beside this file and one line in [`FAMILIES`].

use std::sync::Arc;
use std::time::Duration;

use raven_model::feed::FeedSink;
use raven_model::Venue;

use crate::backoff::BackoffConfig;
use crate::engine::Channels;
use crate::handle::VenueHandle;
use crate::status::FeedStatus;

/// A configured venue's settings that mean the same for every family.
#[derive(Debug, Clone, PartialEq)]
pub struct VenueSettings {
    pub venue: Venue,
    /// Exchange symbols as configured.
    pub symbols: Vec<String>,
    pub channels: Channels,
    /// Overrides of the family's endpoints (tests and the demo point them at `raven sim`).
    pub ws_url: Option<String>,
    pub rest_url: Option<String>,
    /// No frame for this long means a connection is dead (`None`: the family's default).
    pub stall_timeout: Option<Duration>,
    /// Replace connections after this long (`None`: the family's default, which is no
    /// limit for venues that set none).
    pub max_connection_age: Option<Duration>,
    pub backoff: BackoffConfig,
}

/// A setting a family refused: the key (within the venue's table) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingError {
    pub key: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A validated venue, ready to start.
pub trait ConfiguredVenue: Send {
    /// Starts the venue on the current tokio runtime. Its books are registered in
    /// `status` (as syncing) before this returns, so readiness is false until they sync.
    fn spawn(self: Box<Self>, sink: Arc<dyn FeedSink>, status: Arc<FeedStatus>) -> VenueHandle;
}

/// One exchange family.
pub struct Family {
    /// The folder's name (`binance`, `okx`).
    pub name: &'static str,
    /// Its venues' names.
    pub venues: &'static [&'static str],
    /// The channels a venue of the family can give (`Channels` as a set).
    pub channels: fn(Venue) -> Channels,
    /// Validates `settings` and the family's own keys (`options`, a JSON object; keys
    /// it does not know are refused) and builds the venue.
    pub configure:
        fn(VenueSettings, serde_json::Value) -> Result<Box<dyn ConfiguredVenue>, SettingError>,
}

/// Every family, in the order the docs list them.
pub const FAMILIES: &[&Family] = &[
    &crate::binance::FAMILY,
    &crate::coinbase::FAMILY,
    &crate::bybit::FAMILY,
    &crate::okx::FAMILY,
    &crate::kraken::FAMILY,
];

/// Names every venue of every family, so clients' venue names resolve from the start.
pub fn register_venues() {
    for family in FAMILIES {
        for name in family.venues {
            if let Err(e) = Venue::new(name) {
                unreachable!("{e}");
            }
        }
    }
}

/// The family of the venue named `name`, if any.
pub fn family_of(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.venues.contains(&name))
}

/// Every venue name Raven speaks, for error messages and docs.
pub fn venue_names() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.venues.iter().copied())
        .collect()
}

/// Finds `settings.venue`'s family and has it validate and build the venue.
pub fn configure(
    settings: VenueSettings,
    options: serde_json::Value,
) -> Result<Box<dyn ConfiguredVenue>, SettingError> {
    let family = family_of(settings.venue.as_str()).ok_or_else(|| {
        SettingError::new(
            "venue",
            format!(
                "{} is not a venue Raven speaks (known: {})",
                settings.venue,
                venue_names().join(", ")
            ),
        )
    })?;
    let offered = (family.channels)(settings.venue);
    let wanted = settings.channels;
    for (name, asked, has) in [
        ("trades", wanted.trades, offered.trades),
        ("book", wanted.book, offered.book),
        ("bbo", wanted.bbo, offered.bbo),
        ("funding", wanted.funding, offered.funding),
        ("liquidations", wanted.liquidations, offered.liquidations),
    ] {
        if asked && !has {
            return Err(SettingError::new(
                "channels",
                format!("{} does not publish {name}", settings.venue),
            ));
        }
    }
    (family.configure)(settings, options)
}

/// Deserializes a family's own keys, naming the key that is wrong.
pub fn options<T: serde::de::DeserializeOwned>(
    options: serde_json::Value,
) -> Result<T, SettingError> {
    serde_json::from_value(options).map_err(|e| {
        let text = e.to_string();
        // serde names the field in its message ("unknown field `x`", "invalid type ... for key `y`").
        let key = text
            .split('`')
            .nth(1)
            .map_or_else(|| "venue options".to_owned(), str::to_owned);
        SettingError::new(key, text)
    })
}
