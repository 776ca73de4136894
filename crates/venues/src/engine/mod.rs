//! The venue-neutral engine every venue family runs on.
//!
//! A family (one folder beside this one) fills in [`protocol::VenueProtocol`] and its
//! [`protocol::FrameParser`]; the engine does the rest the same way for every venue.
//! * [`protocol`]: the form a venue fills in, and the venue-neutral outputs of parsing;
//! * [`venue`]: starting a venue: its connections planned, its books registered,
//!   its tasks supervised;
//! * [`family`]: an in-stream family's registry entry (settings read and checked);
//! * [`connection`]: one connection's loop (subscribe, read, keep alive, resync one
//!   book, reconnect) and its synchronous heart;
//! * [`book`]: one in-stream book kept in sequence (its checksum and depth are checked
//!   by the sink, on its book);
//! * [`symbols`]: the subscribed symbols of a connection;
//! * [`ordinals`]: keys for trades that have no number;
//! * [`malformed`]: counting and logging unusable frames.

pub mod book;
pub mod connection;
pub mod family;
pub mod malformed;
pub mod ordinals;
pub mod protocol;
pub mod symbols;
pub mod venue;

pub use book::{BookSync, Loss, Step};
pub use ordinals::Ordinals;
pub use protocol::{
    book_checks, BookChecksum, BookMessage, Channels, ConnectionPlan, FrameParser, Keepalive,
    ParseError, Parsed, Sequence, VenueProtocol,
};
pub use symbols::{BuildSymbolHasher, SymbolHasher, SymbolMap};
pub use venue::{spawn, EngineConfig};
