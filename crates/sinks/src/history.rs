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
use raven_model::{EventKind, InstrumentId, Price, Qty, Side, TradeId, UnixNanos};
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

/// The paging both stores share: which page to read next, and when the answer is done.
/// A page starts 1 ns after the previous page's last row (series times are unique), so
/// nothing is skipped or repeated.
pub(crate) struct Pager {
    start: u64,
    end: u64,
    remaining: usize,
}

impl Pager {
    /// Pages over `query`, with the end clamped to what the store can represent.
    pub(crate) fn new(query: &HistoryQuery, max_end: u64) -> Pager {
        Pager {
            start: query.start.0,
            end: query.end.0.min(max_end),
            remaining: query.limit,
        }
    }

    /// The next page to read, `(start, end, rows)`, or `None` when the answer is complete.
    pub(crate) fn next(&self) -> Option<(u64, u64, usize)> {
        (self.remaining > 0 && self.start < self.end)
            .then(|| (self.start, self.end, self.remaining.min(PAGE_ROWS)))
    }

    /// Takes the page just read (for `rows` asked); returns it if it should be sent,
    /// and moves on. After an error or a short or empty page, [`Pager::next`] is `None`.
    pub(crate) fn take(
        &mut self,
        rows: usize,
        page: Result<Vec<HistoryRow>, HistoryError>,
    ) -> Option<Result<Vec<HistoryRow>, HistoryError>> {
        match &page {
            Ok(got) if got.is_empty() => {
                self.remaining = 0;
                return None;
            }
            Ok(got) if got.len() == rows => {
                self.remaining -= got.len();
                self.start = got.last().map_or(self.end, |r| r.time.0.saturating_add(1));
            }
            _ => self.remaining = 0,
        }
        Some(page)
    }
}

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
    Side::from_name(s).ok_or_else(|| HistoryError::Corrupt(format!("unknown side {s:?}")))
}

/// A stored trade's id and ordinal, from its text (`None` for rows written before the
/// text was kept: their id is the number) and its series time: a trade without a number
/// sits at its exchange time plus its ordinal (module [`crate::series`]).
pub(crate) fn trade_id(
    number: u64,
    text: Option<&str>,
    time: UnixNanos,
    exchange_time: UnixNanos,
) -> (TradeId, u32) {
    match text {
        None => (TradeId::Number(number), 0),
        Some("") => (TradeId::None, ordinal(time, exchange_time)),
        Some(t) => match t.parse::<u64>() {
            Ok(n) if n == number => (TradeId::Number(n), 0),
            _ => (TradeId::Text(t.into()), ordinal(time, exchange_time)),
        },
    }
}

fn ordinal(time: UnixNanos, exchange_time: UnixNanos) -> u32 {
    u32::try_from(time.0.saturating_sub(exchange_time.0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Venue;

    fn row(time: u64) -> HistoryRow {
        HistoryRow {
            time: UnixNanos(time),
            exchange_time: UnixNanos(0),
            receive_time: UnixNanos(0),
            item: HistoryItem::Event(EventKind::Liquidation(raven_model::Liquidation {
                side: Side::Buy,
                price: Price::parse("1").unwrap(),
                qty: Qty::parse("1").unwrap(),
            })),
        }
    }

    fn query(limit: usize) -> HistoryQuery {
        HistoryQuery {
            instrument: InstrumentId::new(Venue::new("binance_spot").unwrap(), "X"),
            channel: Channel::Liquidations,
            start: UnixNanos(10),
            end: UnixNanos(u64::MAX),
            limit,
        }
    }

    #[test]
    fn a_full_page_continues_after_its_last_row_and_a_short_one_ends() {
        let mut pager = Pager::new(&query(PAGE_ROWS + 3), 1_000_000);
        assert_eq!(pager.next(), Some((10, 1_000_000, PAGE_ROWS)));
        let full: Vec<_> = (0..PAGE_ROWS as u64).map(|i| row(20 + i)).collect();
        assert!(pager.take(PAGE_ROWS, Ok(full)).is_some());
        let after = 20 + PAGE_ROWS as u64;
        assert_eq!(pager.next(), Some((after, 1_000_000, 3)));
        assert!(pager.take(3, Ok(vec![row(after + 5)])).is_some());
        assert_eq!(pager.next(), None);
    }

    #[test]
    fn an_empty_page_is_not_sent_and_an_error_is_sent_last() {
        let mut pager = Pager::new(&query(10), 1_000);
        assert!(pager.take(10, Ok(Vec::new())).is_none());
        assert_eq!(pager.next(), None);
        let mut pager = Pager::new(&query(10), 1_000);
        let err = pager.take(10, Err(HistoryError::Unavailable("down".into())));
        assert!(matches!(err, Some(Err(HistoryError::Unavailable(_)))));
        assert_eq!(pager.next(), None);
    }
}
