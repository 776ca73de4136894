//! What an in-stream family's registry entry shares: its settings read and checked, its
//! protocol built, and the engine started with it.

use std::time::Duration;

use raven_model::Venue;
use serde::de::DeserializeOwned;

use super::protocol::VenueProtocol;
use super::venue::{spawn, EngineConfig};
use crate::registry::{self, ConfiguredVenue, SettingError, VenueSettings};

/// No frame for this long means a connection is dead, unless the venue's config says
/// otherwise. Every in-stream venue sends something (data, heartbeats, pongs) within
/// its keepalive period, which is well below this.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A family's own settings: read from the venue's table (unknown keys refused, absent
/// ones defaulted) and checked against the venue's documented limits.
pub trait FamilyConfig: DeserializeOwned {
    /// `(key, reason)` for the first setting outside the venue's limits.
    fn validate(&self) -> Result<(), (String, String)>;
}

/// The registry's `configure` for an in-stream family: `protocol(venue, ws_url,
/// config)` builds the venue's protocol once its settings are checked.
pub fn configure<C, P>(
    settings: VenueSettings,
    options: serde_json::Value,
    default_ws_url: &str,
    default_rest_url: &str,
    protocol: impl FnOnce(Venue, &str, &C) -> P,
) -> Result<Box<dyn ConfiguredVenue>, SettingError>
where
    C: FamilyConfig,
    P: VenueProtocol,
{
    let options = if options.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        options
    };
    let config: C = registry::options(options)?;
    config
        .validate()
        .map_err(|(key, reason)| SettingError::new(key, reason))?;
    if settings.max_connection_age.is_some() {
        return Err(SettingError::new(
            "max_connection_age_secs",
            format!(
                "{} does not limit a connection's age, so Raven does not replace its connections",
                settings.venue
            ),
        ));
    }
    let ws_url = settings.ws_url.as_deref().unwrap_or(default_ws_url);
    let protocol = protocol(settings.venue, ws_url, &config);
    Ok(Box::new(EngineVenue {
        protocol,
        config: EngineConfig {
            venue: settings.venue,
            symbols: settings
                .symbols
                .iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .collect(),
            channels: settings.channels,
            rest_url: settings
                .rest_url
                .unwrap_or_else(|| default_rest_url.to_owned()),
            stall_timeout: settings.stall_timeout.unwrap_or(DEFAULT_STALL_TIMEOUT),
            backoff: settings.backoff,
        },
    }))
}

struct EngineVenue<P> {
    protocol: P,
    config: EngineConfig,
}

impl<P: VenueProtocol> ConfiguredVenue for EngineVenue<P> {
    fn spawn(
        self: Box<Self>,
        sink: std::sync::Arc<dyn raven_model::feed::FeedSink>,
        status: std::sync::Arc<crate::status::FeedStatus>,
    ) -> crate::handle::VenueHandle {
        spawn(self.protocol, self.config, sink, status)
    }
}
