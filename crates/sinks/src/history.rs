//! Reading back what a store kept: the query behind `GetHistory`.
//!
//! Every history store (InfluxDB, the embedded store) answers the same
//! [`HistoryQuery`] — one instrument, one channel, a half-open range of series times
//! (module `series`), a row limit — with rows in series-time order. Rows come back as
//! model values ([`EventKind`], [`Candle`]) rebuilt from the exact decimal text the store
//! kept, so the API encodes them with the same code as the live stream and a client sees
//! the same strings either way.
//!
//! Answers stream: a store reads a page at a time and sends each as it arrives, so a
//! million-row request neither waits for the last row nor holds them all in memory.

use std::sync::Arc;

use raven_hub::Channel;
use raven_model::candle::Candle;
use raven_model::{EventKind, InstrumentId, Price, Qty, Side, UnixNanos};
use rust_decimal::Decimal;
use tokio::sync::mpsc;

/// Rows a store reads and sends at a time.
pub const PAGE_ROWS: usize = 5000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub instrument: InstrumentId,
    /// Trades, BBO, funding, liquidations or candles; never book.
    pub channel: Channel,
    /// Inclusive.
    pub start: UnixNanos,
    /// Exclusive.
    pub end: UnixNanos,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The row's series time: unique and increasing within the query's series.
    pub time: UnixNanos,
    /// Zero for candles.
    pub exchange_time: UnixNanos,
    /// Zero for candles.
    pub receive_time: UnixNanos,
    pub item: HistoryItem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryItem {
    Event(EventKind),
    Candle(Candle),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    /// The store could not answer (unreachable, failed query); retrying may help.
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    /// The store returned a row it cannot turn back into exact values.
    #[error("history store returned a bad row: {0}")]
    Corrupt(String),
}

/// The pages of one answer; ends after the last page or the first error.
pub type HistoryPages = mpsc::Receiver<Result<Vec<HistoryRow>, HistoryError>>;

/// A store that can answer history queries.
pub trait HistoryStore: Send + Sync + 'static {
    /// Starts answering `query`; the caller validated it (never [`Channel::Book`]).
    fn query(&self, query: HistoryQuery) -> HistoryPages;
}

/// The store `GetHistory` reads from; `None` when Raven keeps no history.
pub type SharedHistory = Option<Arc<dyn HistoryStore>>;

// Rebuilding model values from a store's exact text; any failure means the store holds
// something Raven never wrote, reported rather than guessed at.

pub(crate) fn price(s: &str) -> Result<Price, HistoryError> {
    Price::parse(s).map_err(|e| HistoryError::Corrupt(e.to_string()))
}

pub(crate) fn qty(s: &str) -> Result<Qty, HistoryError> {
    Qty::parse(s).map_err(|e| HistoryError::Corrupt(e.to_string()))
}

/// A signed decimal (funding rates), refused rather than rounded past 28 digits.
pub(crate) fn rate(s: &str) -> Result<Decimal, HistoryError> {
    Decimal::from_str_exact(s).map_err(|_| HistoryError::Corrupt(format!("not a decimal: {s:?}")))
}

pub(crate) fn side(s: &str) -> Result<Side, HistoryError> {
    match s {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(HistoryError::Corrupt(format!("unknown side {other:?}"))),
    }
}
