//! Raven's market-data model.
//!
//! Everything a venue adapter produces and every consumer reads is defined here, and
//! nothing here does I/O: the types can be built, compared and tested without a socket,
//! a clock source or a runtime. Three rules shape the module:
//!
//! * **Exactness.** Prices and quantities are [`Price`] and [`Qty`], decimal newtypes that
//!   cannot hold a binary float, a negative size or a non-positive price. The exchange's
//!   text is parsed once, exactly, and printed back with the same scale.
//! * **Time is three clocks.** An event carries the exchange's event time and Raven's
//!   receive time; the API adds the send time when the message leaves the process.
//! * **The book is pure.** [`book::OrderBook`] applies levels and answers queries; sequence
//!   checking against the exchange's update ids belongs to the venue adapter that knows
//!   the exchange's rules.

pub mod book;
pub mod candle;
mod decimal;
mod event;
pub mod feed;
mod instrument;
mod listing;
mod time;

pub use candle::{Candle, CandleAggregator, CandleInterval};
pub use decimal::{digit_run, DecimalError, DecimalText, Price, Qty};
pub use event::{
    Bbo, BookLevels, EventKind, Level, Liquidation, MarkPrice, MarketEvent, Side, Trade, TradeId,
};
pub use instrument::{InstrumentId, Symbol, Venue, VenueParseError};
pub use listing::{normalized_name, InstrumentInfo, InstrumentKind, QtyUnit};
pub use time::UnixNanos;
