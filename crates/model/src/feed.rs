//! The contract between a venue adapter and whatever consumes its output.
//!
//! A venue adapter owns the exchange protocol (connections, sequence numbers, snapshot
//! joining) and pushes normalized results into a [`FeedSink`]. The sink (Raven's hub)
//! owns the books and the subscribers. Keeping the trait here, in the pure model, means
//! venues never depend on the hub and the hub never depends on an exchange.
//!
//! Besides data, the adapter reports what it knows about *missing* data, because only
//! it can tell: a book that lost sync ([`FeedSink::book_reset`]), and a stream of events
//! that may have a hole ([`FeedSink::feed_gap`]) — the connection carrying it went away,
//! or the exchange's own numbering skipped. The sink turns both into explicit messages
//! for its consumers; nothing is ever lost silently.

use crate::{BookLevels, InstrumentId, MarketEvent, UnixNanos};

/// A change to one instrument's book, already checked against the exchange's sequence
/// rules by the venue adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookUpdate {
    /// Replace the book: the adapter (re)synced from a snapshot. `limit` is the most
    /// levels per side the snapshot's source returns (a REST `limit`, a channel's depth),
    /// `None` when it returns the whole book: a side that came back with `limit` levels
    /// may go deeper at the exchange, so the book only knows it down to its last level.
    Snapshot {
        levels: BookLevels,
        limit: Option<usize>,
    },
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

/// What the adapter knows about data of an instrument's event streams (trades, BBO,
/// funding, liquidations) that may never have reached Raven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedGap {
    /// The connection carrying the instrument is gone (lost, stalled, its task
    /// restarted): anything the exchange sent after the frame Raven received at `since`
    /// may be missing, until [`FeedGap::Resumed`].
    Interrupted { reason: String, since: UnixNanos },
    /// A new connection carries the instrument again: everything the exchange sends
    /// from `at` on arrives. Ends the interruption.
    Resumed { at: UnixNanos },
    /// The exchange numbers trades contiguously and skipped: trade ids `last + 1` to
    /// `next - 1` were not received (the trade with id `next` follows this call).
    TradeIds { last: u64, next: u64 },
}

pub trait FeedSink: Send + Sync + 'static {
    /// What the venue lists about its instruments (tick, lot, kind, quantity unit),
    /// loaded at start; the sink keeps those of instruments it serves. A sink that keeps
    /// no reference data ignores it.
    fn instruments_listed(&self, listed: Vec<crate::InstrumentInfo>) {
        let _ = listed;
    }

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

    /// Events of this instrument may be missing (see [`FeedGap`]); `receive_time` is
    /// when the adapter learned it.
    fn feed_gap(&self, instrument: &InstrumentId, gap: FeedGap, receive_time: UnixNanos);
}
