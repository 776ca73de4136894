//! OKX market data: spot, perpetual swaps and expiry futures, as one venue (`okx`).
//!
//! OKX's v5 API serves every instrument type on one public WebSocket endpoint,
//! `wss://ws.okx.com:8443/ws/v5/public`, and its instrument ids are unique across
//! types (`BTC-USDT`, `BTC-USDT-SWAP`, `BTC-USD-220527`), so Raven names one venue for
//! all of them and tells the types apart by the id's shape ([`symbol`]). The pieces,
//! each with the rules it implements and where they come from:
//! * [`config`]: the book channel (`books`, 400 levels, by default), instruments per
//!   connection, ping interval;
//! * [`streams`]: subscribe messages, their limits (480 requests per connection per
//!   hour, 64 KB per message), the book resync (unsubscribe + subscribe) and the text
//!   `ping` keepalive;
//! * [`parse`]: frames into books, trades, BBOs, mark prices and liquidations;
//!   acks, notices and `pong` are control, `error` events are refusals;
//! * [`book`]: snapshot and update pushes, `seqId`/`prevSeqId` chaining (maintenance
//!   resets and heartbeats included), the checksum field; `book_scan`, the fast path
//!   for their one canonical shape;
//! * [`mark`]: `mark-price` and `funding-rate` merged into one mark-price event;
//! * [`checksum`]: the CRC32 of the best 25 levels of each side;
//! * [`instruments`]: the REST listings of spot, swaps and futures.
//!
//! Sources: OKX API v5 documentation (www.okx.com/docs-v5/en), pages "Overview /
//! WebSocket", "WS / Order book channel", "WS / Trades channel", "WS / Tickers
//! channel", "Mark price channel", "Funding rate channel", "Liquidation orders
//! channel", "Get instruments", and the API changelog (www.okx.com/docs-v5/log_en),
//! read in copies dated 2026-07 (seen 2026-08).
//!
//! What changed since the recording (2022-05-13) and how both are served:
//! * **Sequence ids.** The recorded `books` pushes have no `seqId`/`prevSeqId`; today
//!   every `books` push has both, and an update must name the previous `seqId`. A push
//!   without them is [`crate::engine::Sequence::None`] (continuity by checksum alone),
//!   one with them is [`crate::engine::Sequence::Chained`].
//! * **Checksum.** The recorded pushes carry a real CRC32; since 2026-06-23 (changelog
//!   "Order book channels checksum field deprecation", announced 2026-05-21) the field
//!   is still sent but always `0`, and `0` is read as "no checksum". An earlier plan in
//!   the changelog (2026-02-12) to drop the initial snapshot from the book channels
//!   was not what shipped: the 2026-06-23 entry keeps snapshots, with the checksum
//!   fixed at 0, and today's channel page still documents the snapshot.
//! * Instruments: derivatives then had only `uly`, today also `instFamily`; both name
//!   base and quote.
//!
//! Not used: `books-l2-tbt` and `books50-l2-tbt` (tick-by-tick, need login and VIP4,
//! error 64003 otherwise), `bbo-tbt` (one level), `trades-all` (individual fills, on
//! the business endpoint), `books-rpi` (the book with Retail Price Improvement orders
//! merged in, since 2026-07-28; no checksum).

pub mod book;
mod book_scan;
pub mod checksum;
pub mod config;
pub mod instruments;
pub mod mark;
pub mod parse;
pub mod streams;
pub mod symbol;

use raven_model::{InstrumentInfo, Venue};

pub use config::{BookChannel, OkxConfig};
pub use parse::OkxParser;

use crate::engine::{BookChecksum, Channels, ConnectionPlan, Keepalive, ParseError, VenueProtocol};

/// The venue's name.
pub const VENUE: &str = "okx";

/// The venues of this family.
pub const VENUES: &[&str] = &[VENUE];

/// OKX's public WebSocket endpoint (all instrument types).
pub const DEFAULT_WS_URL: &str = "wss://ws.okx.com:8443/ws/v5/public";

/// OKX's REST base. The docs moved to this dedicated API host on 2026-05-20;
/// `https://www.okx.com` answers the same and stays.
pub const DEFAULT_REST_URL: &str = "https://openapi.okx.com";

/// The OKX venue as the engine runs it.
#[derive(Debug, Clone)]
pub struct OkxProtocol {
    venue: Venue,
    ws_url: String,
    config: OkxConfig,
}

impl OkxProtocol {
    pub fn new(venue: Venue, ws_url: &str, config: &OkxConfig) -> Self {
        Self {
            venue,
            ws_url: ws_url.to_owned(),
            config: config.clone(),
        }
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }
}

impl VenueProtocol for OkxProtocol {
    type Parser = OkxParser;

    fn plan(&self, symbols: &[String], channels: &Channels) -> Vec<ConnectionPlan> {
        streams::plan(&self.config, &self.ws_url, symbols, channels)
    }

    fn parser(&self, symbols: &[String]) -> OkxParser {
        OkxParser::new(self.venue, symbols)
    }

    fn resubscribe_book(&self, symbol: &str) -> Vec<String> {
        streams::resubscribe_book(&self.config, symbol)
    }

    fn keepalive(&self) -> Option<Keepalive> {
        Some(streams::keepalive(&self.config))
    }

    fn book_checksum(&self) -> Option<BookChecksum> {
        match self.config.book_channel {
            BookChannel::Books => Some(BookChecksum {
                levels: checksum::CHECKSUM_LEVELS,
                compute: checksum::checksum,
            }),
            // `books5` pushes carry no checksum.
            BookChannel::Books5 => None,
        }
    }

    fn book_depth(&self) -> Option<usize> {
        Some(self.config.book_channel.depth())
    }

    fn instrument_paths(&self) -> Vec<String> {
        instruments::INSTRUMENT_PATHS
            .iter()
            .map(|p| (*p).to_owned())
            .collect()
    }

    fn parse_instruments(&self, path: &str, body: &str) -> Result<Vec<InstrumentInfo>, ParseError> {
        instruments::parse_instruments(self.venue, path, body)
    }
}

/// The registry entry of the family.
pub const FAMILY: crate::registry::Family = crate::registry::Family {
    name: "okx",
    venues: VENUES,
    channels: offered,
    configure,
};

/// The channels OKX (funding and liquidations of its swaps and futures) publishes.
fn offered(_venue: Venue) -> Channels {
    Channels {
        trades: true,
        book: true,
        bbo: true,
        funding: true,
        liquidations: true,
    }
}

fn configure(
    settings: crate::registry::VenueSettings,
    options: serde_json::Value,
) -> Result<Box<dyn crate::registry::ConfiguredVenue>, crate::registry::SettingError> {
    crate::engine::family::configure(
        settings,
        options,
        DEFAULT_WS_URL,
        DEFAULT_REST_URL,
        |venue, ws_url, config: &OkxConfig| OkxProtocol::new(venue, ws_url, config),
    )
}

impl crate::engine::family::FamilyConfig for OkxConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        OkxConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_wires_its_parts() {
        let venue = Venue::new(VENUE).unwrap();
        let p = OkxProtocol::new(venue, DEFAULT_WS_URL, &OkxConfig::default());
        assert_eq!(p.venue().as_str(), "okx");
        assert_eq!(p.book_depth(), Some(400));
        assert!(p.book_checksum().is_some());
        assert_eq!(p.keepalive().unwrap().frame, "ping");
        assert_eq!(p.instrument_paths().len(), 3);
        let plans = p.plan(
            &["BTC-USDT".to_owned()],
            &Channels {
                book: true,
                ..Channels::default()
            },
        );
        assert_eq!(plans[0].url, DEFAULT_WS_URL);
        let light = OkxProtocol::new(
            venue,
            DEFAULT_WS_URL,
            &OkxConfig {
                book_channel: BookChannel::Books5,
                ..OkxConfig::default()
            },
        );
        assert_eq!(light.book_depth(), Some(5));
        assert!(light.book_checksum().is_none());
        assert_eq!(light.resubscribe_book("BTC-USDT").len(), 2);
    }
}
