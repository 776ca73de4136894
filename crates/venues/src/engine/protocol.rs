//! The form a venue family fills in: what the engine asks of an exchange protocol.
//!
//! Everything every venue shares (sockets, reconnects, stall detection, backoff,
//! keepalives, per-book sync state, checksums, feed-gap announcements, status and
//! metrics) is the engine's. What differs between exchanges is small and is said here,
//! once per family:
//! * which connections to open and what to send on them ([`VenueProtocol::plan`]);
//! * how to read a frame ([`FrameParser`]), into venue-neutral [`Parsed`] outputs;
//! * how its books are kept in sequence ([`Sequence`]) and checked ([`BookChecksum`]),
//!   how deep they are ([`VenueProtocol::book_depth`]) and how to get a fresh snapshot
//!   of one book ([`VenueProtocol::resubscribe_book`]); the checks of each message
//!   ([`book_checks`]) go with it to the sink, which applies them to its book;
//! * its application keepalive ([`Keepalive`]);
//! * where its instrument listings are ([`VenueProtocol::instrument_paths`]).
//!
//! A parser does no I/O and keeps only the state its venue's frames need (Bybit's
//! ticker deltas carry only the fields that changed; trades without ids need an ordinal),
//! so each one is tested on recorded frames alone.

use std::time::Duration;

use raven_model::feed::BookChecks;
use raven_model::{InstrumentId, InstrumentInfo, Level, MarketEvent, UnixNanos};

/// Why a frame or REST body was refused. The engine counts it as malformed and skips it.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON or field: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid decimal: {0}")]
    Decimal(#[from] raven_model::DecimalError),
    #[error("symbol {0:?} is not subscribed")]
    UnknownSymbol(String),
    #[error("{0}")]
    Invalid(String),
}

/// The channels Raven can take from a venue, for every subscribed symbol. A venue
/// ignores those it does not publish (funding on spot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channels {
    pub trades: bool,
    /// The full (or deepest offered) order book, kept in sequence.
    pub book: bool,
    /// Best bid and offer as the venue publishes it.
    pub bbo: bool,
    /// Mark price and funding (derivatives).
    pub funding: bool,
    /// Forced liquidations (derivatives).
    pub liquidations: bool,
}

/// One WebSocket connection to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// The full URL (subscriptions in the URL, as Binance, or a bare endpoint).
    pub url: String,
    /// Upper-case exchange symbols this connection carries: a disconnect resets their
    /// books and announces a gap on their streams.
    pub symbols: Vec<String>,
    /// Text frames to send once the socket is open, in order.
    pub subscribe: Vec<String>,
    /// Pause between two of those frames, from the venue's documented request-rate
    /// limit per connection.
    pub send_interval: Duration,
    /// How many subscriptions (streams, topics) the connection carries, for status.
    pub streams: usize,
}

/// An application-level keepalive the venue requires on top of WebSocket pings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalive {
    /// Send `frame` whenever this long passed without sending one.
    pub every: Duration,
    pub frame: String,
}

/// A venue's book checksum (defined in the model, where the book is checked). The
/// parser puts the venue's value in [`BookMessage::checksum`] as the unsigned bits the
/// function returns (`i32 as u32` for a signed one).
pub use raven_model::feed::BookChecksum;

/// The checks of one book message of `protocol`'s venue, for the sink's
/// [`raven_model::book::OrderBook::apply_checked`]: the venue's depth, and its checksum
/// when the message carries one.
pub fn book_checks<P: VenueProtocol>(protocol: &P, checksum: Option<u32>) -> BookChecks {
    BookChecks {
        depth: protocol.book_depth(),
        checksum: checksum.zip(protocol.book_checksum()),
    }
}

/// How a book message's sequence numbers chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// The venue numbers nothing per book (Kraken v1): continuity rests on the checksum.
    None,
    /// Update ids `first..=last`. A delta follows a book at `b` when `first == b + 1`;
    /// one with `last <= b` is a stale repeat (ignored). A snapshot puts the book at
    /// `last`. Bybit's `u` is `first == last`.
    Contiguous { first: u64, last: u64 },
    /// A delta follows a book at `b` when `prev == b` (OKX `prevSeqId` → `seqId`; an
    /// update with no change repeats `prev == last`); any other `prev` is a gap, even a
    /// lower one. A snapshot puts the book at `last`.
    Chained { prev: u64, last: u64 },
}

/// A book snapshot or delta as the venue sent it, with what its rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    pub instrument: InstrumentId,
    /// Replace the book: a snapshot, or a venue's reset signal (Bybit `u == 1`).
    pub snapshot: bool,
    /// Level changes (zero quantity removes), or the snapshot's levels; any order.
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub sequence: Sequence,
    /// The venue's checksum of the book after this message, when it sends one.
    pub checksum: Option<u32>,
    pub exchange_time: UnixNanos,
    pub receive_time: UnixNanos,
}

/// One output of a frame. A frame may give several (a batch of trades, books of two
/// symbols) or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Book(BookMessage),
    /// A trade, BBO, mark price / funding or liquidation.
    Event(MarketEvent),
    /// The connection-wide message number the frame carried (Coinbase
    /// `sequence_num`): the engine checks it is contiguous, and a jump means something
    /// of anything on the connection was lost.
    ConnectionSequence(u64),
    /// A subscription acknowledgement, heartbeat or pong: proof of life only.
    Control,
    /// The exchange refused a request (a subscription): logged and counted.
    Refused(String),
}

/// Reads one connection's frames. One per connection, made by
/// [`VenueProtocol::parser`]; the state it keeps is that connection's.
pub trait FrameParser: Send + 'static {
    /// Parses one text frame received at `receive_time`, pushing what it holds to `out`.
    /// A frame Raven does not use (klines, a channel not asked for) gives nothing and is
    /// no error; an `Err` is counted as malformed and skipped.
    fn parse(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError>;
}

/// One venue of a family, with its configuration, as the engine runs it.
pub trait VenueProtocol: Send + Sync + 'static {
    type Parser: FrameParser;

    /// The connections for these upper-case exchange symbols and channels, within the
    /// venue's documented limits (subscriptions per connection, message rates).
    fn plan(&self, symbols: &[String], channels: &Channels) -> Vec<ConnectionPlan>;

    /// A parser for a connection carrying `symbols` (upper-case exchange symbols;
    /// frames of any other symbol are [`ParseError::UnknownSymbol`]).
    fn parser(&self, symbols: &[String]) -> Self::Parser;

    /// Frames that make the exchange send a fresh snapshot of one book on the
    /// connection (unsubscribe and subscribe again); empty when the venue has no way,
    /// and the engine reconnects instead.
    fn resubscribe_book(&self, symbol: &str) -> Vec<String>;

    /// The venue's application keepalive, if it needs one.
    fn keepalive(&self) -> Option<Keepalive>;

    /// The venue's book checksum, if its book messages carry one.
    fn book_checksum(&self) -> Option<BookChecksum>;

    /// The levels per side the venue keeps in the subscribed book, when it is a
    /// top-N book: levels pushed beyond N are dropped locally (the venue sends no
    /// removal for them) and a snapshot of N levels per side may go deeper.
    fn book_depth(&self) -> Option<usize>;

    /// REST paths (with query) under the REST base URL that list the venue's
    /// instruments, fetched at start.
    fn instrument_paths(&self) -> Vec<String>;

    /// The instruments of one such answer.
    fn parse_instruments(&self, path: &str, body: &str) -> Result<Vec<InstrumentInfo>, ParseError>;
}
