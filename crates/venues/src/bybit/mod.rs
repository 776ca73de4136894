//! Bybit v5 public market data: spot and linear (USDT/USDC perpetuals and futures).
//!
//! The two venues share one protocol (subscribe messages on a bare endpoint, in-stream
//! book snapshots and deltas numbered by `u`, the same trade and reply shapes) and
//! differ in endpoint, in which topics exist and in a few fields, so one implementation
//! serves both; the venue's name decides its [`Category`]. The pieces:
//! * [`config`]: the family's own settings (book depth, topics per connection);
//! * [`streams`]: which topics, on which connections, in which requests; the keepalive;
//! * [`parse`]: frames into books, trades, BBOs, mark prices and liquidations;
//! * `book_scan`: the fast path for book frames;
//! * `tickers`: linear ticker deltas merged into full values;
//! * [`instruments`]: the REST listings.
//!
//! Bybit's rules as implemented here come from its official API docs
//! (github.com/bybit-exchange/docs, the source of bybit-exchange.github.io/docs), read
//! on 2026-12-02 in the newest copy available, commit 072c197 of 2026-07-24: pages
//! "Connect", "Orderbook", "Trade", "Ticker", "All Liquidation", "Get Instruments
//! Info", "Rate Limit Rules" and the V5 changelog. Each module says which rules it
//! implements. The recording (`BYBIT.jsonl.zst`, 2026-08-09) agrees with those pages;
//! the shape of a refused subscription (`"success":false`, `ret_msg`
//! `"error:handler not found,topic:…"`) is from a reply quoted in sieblyio/bybit-api
//! issue #561 (2026-08-04), as the docs show only successes.

mod book_scan;
pub mod config;
pub mod instruments;
pub mod parse;
pub mod streams;
mod tickers;

use raven_model::{InstrumentInfo, Venue};

use crate::engine::{
    BookChecksum, Channels, ConnectionPlan, Keepalive, ParseError, SymbolMap, VenueProtocol,
};
pub use config::BybitConfig;
pub use parse::BybitParser;

/// The venues of the family: spot, and linear (USDT and USDC contracts).
pub const VENUES: &[&str] = &["bybit_spot", "bybit_linear"];

/// Spot's public WebSocket endpoint.
pub const DEFAULT_WS_URL_SPOT: &str = "wss://stream.bybit.com/v5/public/spot";

/// Linear's public WebSocket endpoint (USDT, USDC perpetuals and USDT futures).
pub const DEFAULT_WS_URL_LINEAR: &str = "wss://stream.bybit.com/v5/public/linear";

/// The REST base of both.
pub const DEFAULT_REST_URL: &str = "https://api.bybit.com";

/// A Bybit product category, as its `category` parameter spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Spot,
    Linear,
}

impl Category {
    /// The category of a venue: a name ending in `spot` (`bybit_spot`) is spot, every
    /// other (`bybit_linear`) linear.
    pub fn of(venue: Venue) -> Category {
        if venue.as_str().ends_with("spot") {
            Category::Spot
        } else {
            Category::Linear
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Spot => "spot",
            Category::Linear => "linear",
        }
    }

    /// The official public endpoint of the category.
    pub fn default_ws_url(self) -> &'static str {
        match self {
            Category::Spot => DEFAULT_WS_URL_SPOT,
            Category::Linear => DEFAULT_WS_URL_LINEAR,
        }
    }
}

/// One Bybit venue with its configuration.
#[derive(Debug, Clone)]
pub struct BybitProtocol {
    venue: Venue,
    category: Category,
    ws_url: String,
    config: BybitConfig,
}

impl BybitProtocol {
    pub fn new(venue: Venue, ws_url: &str, config: &BybitConfig) -> Self {
        Self {
            venue,
            category: Category::of(venue),
            ws_url: ws_url.to_owned(),
            config: config.clone(),
        }
    }

    pub fn category(&self) -> Category {
        self.category
    }
}

impl VenueProtocol for BybitProtocol {
    type Parser = BybitParser;

    fn plan(&self, symbols: &[String], channels: &Channels) -> Vec<ConnectionPlan> {
        streams::plan(self.category, &self.config, &self.ws_url, symbols, channels)
    }

    fn parser(&self, symbols: &[String]) -> BybitParser {
        BybitParser::new(
            SymbolMap::new(self.venue, symbols.iter().map(String::as_str)),
            self.config.book_depth,
        )
    }

    fn resubscribe_book(&self, symbol: &str) -> Vec<String> {
        streams::resubscribe_book(self.config.book_depth, symbol)
    }

    fn keepalive(&self) -> Option<Keepalive> {
        Some(streams::keepalive())
    }

    /// Bybit's book messages carry no checksum.
    fn book_checksum(&self) -> Option<BookChecksum> {
        None
    }

    fn book_depth(&self) -> Option<usize> {
        Some(self.config.book_depth as usize)
    }

    fn instrument_paths(&self) -> Vec<String> {
        vec![instruments::path(self.category)]
    }

    fn parse_instruments(
        &self,
        _path: &str,
        body: &str,
    ) -> Result<Vec<InstrumentInfo>, ParseError> {
        instruments::parse_instruments(self.venue, self.category, body)
    }
}

/// The registry entry of the family.
pub const FAMILY: crate::registry::Family = crate::registry::Family {
    name: "bybit",
    venues: VENUES,
    channels: offered,
    configure,
};

/// The channels a Bybit venue (funding and liquidations on linear only) publishes.
fn offered(venue: Venue) -> Channels {
    Channels {
        trades: true,
        book: true,
        bbo: true,
        funding: Category::of(venue) == Category::Linear,
        liquidations: Category::of(venue) == Category::Linear,
    }
}

fn configure(
    settings: crate::registry::VenueSettings,
    options: serde_json::Value,
) -> Result<Box<dyn crate::registry::ConfiguredVenue>, crate::registry::SettingError> {
    let default_ws = Category::of(settings.venue).default_ws_url();
    crate::engine::family::configure(
        settings,
        options,
        default_ws,
        DEFAULT_REST_URL,
        |venue, ws_url, config: &BybitConfig| BybitProtocol::new(venue, ws_url, config),
    )
}

impl crate::engine::family::FamilyConfig for BybitConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        BybitConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_venue_name_decides_the_category() {
        let spot = Venue::new(VENUES[0]).unwrap();
        let linear = Venue::new(VENUES[1]).unwrap();
        let p = BybitProtocol::new(spot, DEFAULT_WS_URL_SPOT, &BybitConfig::default());
        assert_eq!(p.category(), Category::Spot);
        assert_eq!(
            p.instrument_paths(),
            ["/v5/market/instruments-info?category=spot&status=Trading&limit=1000"]
        );
        let p = BybitProtocol::new(linear, DEFAULT_WS_URL_LINEAR, &BybitConfig::default());
        assert_eq!(p.category(), Category::Linear);
        assert_eq!(
            p.instrument_paths(),
            ["/v5/market/instruments-info?category=linear&status=Trading&limit=1000"]
        );
        assert_eq!(Category::Linear.default_ws_url(), DEFAULT_WS_URL_LINEAR);
        assert_eq!(p.book_depth(), Some(200));
        assert!(p.book_checksum().is_none());
        assert!(p.keepalive().is_some());
    }

    #[test]
    fn the_plan_uses_the_given_endpoint() {
        let linear = Venue::new("bybit_linear").unwrap();
        let p = BybitProtocol::new(linear, "ws://127.0.0.1:9", &BybitConfig::default());
        let plans = p.plan(
            &["BTCUSDT".to_owned()],
            &Channels {
                book: true,
                ..Channels::default()
            },
        );
        assert_eq!(plans[0].url, "ws://127.0.0.1:9");
        assert_eq!(
            plans[0].subscribe,
            [r#"{"op":"subscribe","args":["orderbook.200.BTCUSDT"]}"#]
        );
    }
}
