//! Coinbase Advanced Trade market data (`wss://advanced-trade-ws.coinbase.com`).
//!
//! One venue, `coinbase`: the spot products of Coinbase's exchange and the futures of
//! its US derivatives exchange (perpetual-style and dated), all on one public
//! WebSocket endpoint and one REST listing. What makes Coinbase different from the
//! other families, and how this folder handles it:
//!
//! * **Continuity is per connection, not per book.** level2 numbers nothing per book
//!   and has no checksum; the envelope's `sequence_num` numbers every message of the
//!   connection across all channels. The parser gives it for every frame
//!   ([`crate::engine::Parsed::ConnectionSequence`]); a jump means something of any
//!   channel was lost, so the whole connection's books and streams are suspect. Book
//!   messages are [`crate::engine::Sequence::None`] and the book is full depth
//!   ([`crate::engine::VenueProtocol::book_depth`] is `None`).
//! * **Subscriptions are messages**, one channel each, with a 5 s deadline after
//!   connecting, 8 unauthenticated messages per second per IP, and a `heartbeats`
//!   subscription to keep quiet connections open ([`streams`], [`config`]).
//! * **Times are RFC 3339 text** with up to nanosecond digits, read exactly
//!   ([`time`]).
//! * **Trades name the maker's side**, newest first, and a subscription begins with a
//!   snapshot of past trades that Raven does not replay ([`parse`]).
//!
//! The pieces: [`config`] (the family's settings and their limits), [`streams`]
//! (connections and subscribe frames), [`parse`] with its scanner `l2_scan` (frames),
//! [`time`] (timestamps), [`instruments`] (the REST product listing). Rules are cited
//! in each file with the page they come from and when it was read.

pub mod config;
pub mod instruments;
mod l2_scan;
pub mod parse;
pub mod streams;
pub mod time;

use raven_model::{InstrumentInfo, Venue};

use crate::engine::{
    BookChecksum, Channels, ConnectionPlan, Keepalive, ParseError, SymbolMap, VenueProtocol,
};

pub use config::CoinbaseConfig;
pub use parse::CoinbaseParser;

/// The market-data WebSocket endpoint ("Advanced Trade WebSocket Overview").
pub const DEFAULT_WS_URL: &str = "wss://advanced-trade-ws.coinbase.com";

/// The REST base of the public product listing.
pub const DEFAULT_REST_URL: &str = "https://api.coinbase.com";

/// The venue this family serves.
pub const VENUES: &[&str] = &["coinbase"];

/// Coinbase Advanced Trade as the engine runs it.
#[derive(Debug, Clone)]
pub struct CoinbaseProtocol {
    venue: Venue,
    ws_url: String,
    config: CoinbaseConfig,
}

impl CoinbaseProtocol {
    pub fn new(venue: Venue, ws_url: &str, config: &CoinbaseConfig) -> Self {
        Self {
            venue,
            ws_url: ws_url.to_owned(),
            config: config.clone(),
        }
    }
}

impl VenueProtocol for CoinbaseProtocol {
    type Parser = CoinbaseParser;

    fn plan(&self, symbols: &[String], channels: &Channels) -> Vec<ConnectionPlan> {
        streams::plan(&self.ws_url, &self.config, symbols, channels)
    }

    fn parser(&self, symbols: &[String]) -> CoinbaseParser {
        CoinbaseParser::new(SymbolMap::new(
            self.venue,
            symbols.iter().map(String::as_str),
        ))
    }

    fn resubscribe_book(&self, symbol: &str) -> Vec<String> {
        streams::resubscribe_book(symbol)
    }

    /// None: the `heartbeats` subscription keeps the connection open; Coinbase reads
    /// no application ping from clients.
    fn keepalive(&self) -> Option<Keepalive> {
        None
    }

    /// None: level2 carries no checksum.
    fn book_checksum(&self) -> Option<BookChecksum> {
        None
    }

    /// None: level2 is the full book (its snapshot holds every level).
    fn book_depth(&self) -> Option<usize> {
        None
    }

    fn instrument_paths(&self) -> Vec<String> {
        instruments::instrument_paths()
    }

    fn parse_instruments(&self, path: &str, body: &str) -> Result<Vec<InstrumentInfo>, ParseError> {
        instruments::parse_instruments(self.venue, path, body)
    }
}

/// The registry entry of the family.
pub const FAMILY: crate::registry::Family = crate::registry::Family {
    name: "coinbase",
    venues: VENUES,
    channels: offered,
    configure,
};

/// The channels Coinbase Advanced Trade publishes.
fn offered(_venue: Venue) -> Channels {
    Channels {
        trades: true,
        book: true,
        bbo: true,
        funding: false,
        liquidations: false,
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
        |venue, ws_url, config: &CoinbaseConfig| CoinbaseProtocol::new(venue, ws_url, config),
    )
}

impl crate::engine::family::FamilyConfig for CoinbaseConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        CoinbaseConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{FrameParser, Parsed};
    use raven_model::UnixNanos;

    #[test]
    fn the_protocol_wires_its_parts() {
        let venue = Venue::new(VENUES[0]).unwrap();
        let p = CoinbaseProtocol::new(venue, DEFAULT_WS_URL, &CoinbaseConfig::default());
        let symbols = vec!["BTC-USD".to_owned()];
        let plans = p.plan(
            &symbols,
            &Channels {
                book: true,
                ..Channels::default()
            },
        );
        assert_eq!(plans[0].url, DEFAULT_WS_URL);
        assert_eq!(p.resubscribe_book("BTC-USD").len(), 2);
        assert_eq!((p.keepalive(), p.book_depth()), (None, None));
        assert!(p.book_checksum().is_none());
        assert_eq!(p.instrument_paths().len(), 2);
        let mut parser = p.parser(&symbols);
        let mut out = Vec::new();
        parser
            .parse(
                r#"{"channel":"heartbeats","timestamp":"2026-08-09T21:05:48Z","sequence_num":4,"events":[]}"#,
                UnixNanos(1),
                &mut out,
            )
            .unwrap();
        assert_eq!(out, [Parsed::ConnectionSequence(4), Parsed::Control]);
    }
}
