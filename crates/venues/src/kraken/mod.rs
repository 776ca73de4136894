//! Kraken spot market data over WebSocket v1 (`wss://ws.kraken.com`).
//!
//! One venue, `kraken`. Kraken serves two public WebSocket APIs: v1, which the recorded
//! session speaks and Kraken still serves ("v1 is maintained for existing clients", Spot
//! WebSocket reference, docs.kraken.com/exchange/api-reference/spot-websocket, seen
//! 2026-08), and v2 (`/v2`), where new features go. This family implements v1:
//! * [`streams`]: subscribe messages (`book`, `trade`, `spread`) packed per connection,
//!   the book resync (unsubscribe + subscribe gives a fresh snapshot), the `ping`;
//! * [`parse`]: v1's array frames and events into Raven's outputs (book frames through
//!   a scanner of their compact shape, `book_scan`);
//! * [`checksum`]: the CRC32 over the best 10 levels that every book
//!   update carries, the only continuity check v1 books have ([`crate::engine::Sequence::None`]);
//! * [`instruments`]: the pairs of REST `AssetPairs`;
//! * [`config`]: the book depth and pairs per connection.
//!
//! **Symbols** are Kraken's `wsname`s, upper case as Kraken writes them: `XBT/USD`,
//! `ETH/EUR`, `XDG/USD`. They are what v1 frames name (`…,"book-1000","XBT/USD"]`), so
//! they map to Raven symbols one to one with no translation; REST's own pair keys
//! (`XXBTZUSD`) and asset codes (`XXBT`, `ZUSD`) are used nowhere else. An instrument's
//! base and quote are the wsname's halves (`XBT`, `USD`).
//!
//! **Books** are top-N books: Kraken sends a snapshot of `depth` levels per side, then
//! updates, and no removal for a level pushed beyond the depth, so the engine keeps each
//! book cut to [`KrakenConfig::book_depth`] ([`VenueProtocol::book_depth`]) and checks
//! the checksum after every update. A mismatch means the book is wrong; the engine
//! resubscribes that pair.
//!
//! **What v2 changes** (not implemented here; Spot WebSocket reference "v2 vs v1" and
//! "Book checksum (WebSocket v2)", seen 2026-08): JSON objects
//! (`{"channel":"book","type":"snapshot"|"update","data":[…]}`) instead of arrays;
//! `BTC/USD` instead of `XBT/USD`; RFC 3339 times; prices and quantities as JSON numbers
//! written at full precision, whose text the checksum still uses (so they must be read
//! as decimal text, never as floats); the same checksum rule, sent on snapshots too;
//! sequential trade ids; `{"method":"ping"}` and a `heartbeat` channel; a `level3`
//! order-by-order book with its own checksum.

mod book_scan;
pub mod checksum;
pub mod config;
pub mod instruments;
pub mod parse;
pub mod streams;

use raven_model::{InstrumentInfo, Venue};

use crate::engine::{BookChecksum, Channels, ConnectionPlan, Keepalive, ParseError, VenueProtocol};
pub use config::KrakenConfig;
pub use parse::KrakenParser;

/// The venues of this family.
pub const VENUES: &[&str] = &["kraken"];

/// Kraken's public WebSocket v1 endpoint.
pub const DEFAULT_WS_URL: &str = "wss://ws.kraken.com";

/// Kraken's spot REST API.
pub const DEFAULT_REST_URL: &str = "https://api.kraken.com";

/// Kraken spot, WebSocket v1, as the engine runs it.
#[derive(Debug, Clone)]
pub struct KrakenProtocol {
    venue: Venue,
    ws_url: String,
    config: KrakenConfig,
}

impl KrakenProtocol {
    pub fn new(venue: Venue, ws_url: &str, config: &KrakenConfig) -> Self {
        Self {
            venue,
            ws_url: ws_url.to_owned(),
            config: config.clone(),
        }
    }
}

impl VenueProtocol for KrakenProtocol {
    type Parser = KrakenParser;

    fn plan(&self, symbols: &[String], channels: &Channels) -> Vec<ConnectionPlan> {
        streams::plan(&self.ws_url, &self.config, symbols, channels)
    }

    fn parser(&self, symbols: &[String]) -> KrakenParser {
        KrakenParser::new(self.venue, symbols)
    }

    fn resubscribe_book(&self, symbol: &str) -> Vec<String> {
        streams::resubscribe_book(&self.config, symbol)
    }

    fn keepalive(&self) -> Option<Keepalive> {
        Some(streams::keepalive())
    }

    fn book_checksum(&self) -> Option<BookChecksum> {
        Some(BookChecksum {
            levels: checksum::CHECKSUM_DEPTH,
            compute: checksum::checksum,
        })
    }

    fn book_depth(&self) -> Option<usize> {
        Some(self.config.book_depth)
    }

    fn instrument_paths(&self) -> Vec<String> {
        vec![instruments::ASSET_PAIRS_PATH.to_owned()]
    }

    fn parse_instruments(&self, path: &str, body: &str) -> Result<Vec<InstrumentInfo>, ParseError> {
        instruments::parse_instruments(self.venue, path, body)
    }
}

/// The registry entry of the family.
pub const FAMILY: crate::registry::Family = crate::registry::Family {
    name: "kraken",
    venues: VENUES,
    channels: offered,
    configure,
};

/// The channels Kraken spot publishes.
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
        |venue, ws_url, config: &KrakenConfig| KrakenProtocol::new(venue, ws_url, config),
    )
}

impl crate::engine::family::FamilyConfig for KrakenConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        KrakenConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{book_checks, BookSync, FrameParser, Parsed, Sequence, Step};
    use raven_model::book::OrderBook;
    use raven_model::feed::{BookRejected, BookUpdate};
    use raven_model::UnixNanos;

    /// The engine's path for one pair at depth 10 (the sync's judgment, then one apply
    /// under Kraken's checks, as the sink does): snapshot, updates, a truncation the
    /// venue never announces, and a checksum that catches a lost update.
    #[test]
    fn a_depth_10_book_is_cut_and_checked_through_the_engine() {
        let venue = Venue::new(VENUES[0]).unwrap();
        let config = KrakenConfig {
            book_depth: 10,
            ..KrakenConfig::default()
        };
        let protocol = KrakenProtocol::new(venue, DEFAULT_WS_URL, &config);
        let mut parser = protocol.parser(&["XBT/USD".to_owned()]);
        let mut sync = BookSync::new();
        let mut book = OrderBook::new();
        let mut verified = 0;
        let mut feed = |text: &str| {
            let mut out = Vec::new();
            parser.parse(text, UnixNanos(1), &mut out).unwrap();
            let [Parsed::Book(m)] = &out[..] else {
                panic!("{out:?}")
            };
            assert_eq!(m.sequence, Sequence::None);
            let checks = book_checks(&protocol, m.checksum);
            let Step::Apply(mut update) = sync.on_message(m.clone()) else {
                panic!("not applied")
            };
            let applied = book.apply_checked(&mut update, &checks);
            if applied.is_ok() && checks.checksum.is_some() {
                verified += 1;
            }
            applied.map(|()| update)
        };
        // The documented example book: asks 0.05005…0.05050, bids 0.05000…0.04950.
        let asks: Vec<String> = (0..10)
            .map(|i| format!(r#"["0.{:05}","0.00000500","1582905487.0"]"#, 5005 + 5 * i))
            .collect();
        let bids: Vec<String> = [5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955, 4950]
            .iter()
            .map(|p| format!(r#"["0.{p:05}","0.00000500","1582905487.0"]"#))
            .collect();
        let snapshot = format!(
            r#"[0,{{"as":[{}],"bs":[{}]}},"book-10","XBT/USD"]"#,
            asks.join(","),
            bids.join(",")
        );
        assert!(matches!(feed(&snapshot), Ok(BookUpdate::Snapshot { .. })));
        // An update with the documented checksum of that book: a level far away that
        // the depth-10 book drops again, so the top 10 stay the example's.
        let applied = feed(
            r#"[0,{"a":[["0.06000","1.00000000","1582905488.0"]],"c":"974947235"},"book-10","XBT/USD"]"#,
        );
        let Ok(BookUpdate::Delta(levels)) = applied else {
            panic!("{applied:?}")
        };
        assert_eq!(
            levels.asks.len(),
            2,
            "the new ask and its removal at depth 10"
        );
        // An update whose checksum is not of the book Raven holds: lost.
        assert!(matches!(
            feed(
                r#"[0,{"b":[["0.04999","1.00000000","1582905489.0"]],"c":"974947235"},"book-10","XBT/USD"]"#
            ),
            Err(BookRejected::Checksum {
                expected: 974_947_235,
                ..
            })
        ));
        assert_eq!(verified, 1);
        assert_eq!(protocol.instrument_paths(), ["/0/public/AssetPairs"]);
        assert_eq!(protocol.resubscribe_book("XBT/USD").len(), 2);
    }
}
