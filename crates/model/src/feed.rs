//! The contract between a venue adapter and whatever consumes its output.
//!
//! A venue adapter owns the exchange protocol (connections, sequence numbers, snapshot
//! joining) and pushes normalized results into a [`FeedSink`]. The sink (Raven's hub)
//! owns the books and the subscribers. Keeping the trait here, in the pure model, means
//! venues never depend on the hub and the hub never depends on an exchange.

use crate::{BookLevels, InstrumentId, MarketEvent, UnixNanos};

/// A change to one instrument's book, already checked against the exchange's sequence
/// rules by the venue adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookUpdate {
    /// Replace the book: the adapter (re)synced from a REST snapshot.
    Snapshot(BookLevels),
    /// Apply level changes in order.
    Delta(BookLevels),
}

/// Why the sink refused a book update. The adapter must resync that instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BookRejected {
    #[error("book crossed after applying the update")]
    Crossed,
    #[error("delta for a book that has no snapshot")]
    NotSynced,
}

pub trait FeedSink: Send + Sync + 'static {
    /// A trade, BBO, mark price or liquidation.
    fn market_event(&self, event: MarketEvent);

    /// A book snapshot or delta. `Err` means the sink's book is now unusable and the
    /// adapter must resync this instrument (it must not send more deltas before a
    /// snapshot).
    fn book_update(
        &self,
        instrument: &InstrumentId,
        update: BookUpdate,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    ) -> Result<(), BookRejected>;

    /// The adapter lost sync for this book (gap, disconnect): stop serving it until the
    /// next snapshot.
    fn book_reset(&self, instrument: &InstrumentId, reason: &str);
}
