//! The venue-neutral engine every venue family runs on.
//!
//! A family (one folder beside this one) fills in [`protocol::VenueProtocol`] and its
//! [`protocol::FrameParser`]; the engine does the rest the same way for every venue.
//! * [`protocol`]: the form a venue fills in, and the venue-neutral outputs of parsing;
//! * [`book`]: one in-stream book kept in sequence, checksummed, cut to its depth;
//! * [`symbols`]: the subscribed symbols of a connection;
//! * [`ordinals`]: keys for trades that have no number.

pub mod book;
pub mod ordinals;
pub mod protocol;
pub mod symbols;

pub use book::{BookSync, Loss, Step};
pub use ordinals::Ordinals;
pub use protocol::{
    BookMessage, Channels, ChecksumFn, ConnectionPlan, FrameParser, Keepalive, ParseError, Parsed,
    Sequence, VenueProtocol,
};
pub use symbols::SymbolMap;
