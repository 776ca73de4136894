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
//!
//! The adapter also says how its venue's books are checked ([`BookChecks`]): a top-N
//! depth and the checksum a message carries. The checks run where the one book lives,
//! in the sink, through [`OrderBook::apply_checked`]: the adapter keeps no copy of its
//! own, so each update is applied once.

use crate::book::OrderBook;
use crate::{BookLevels, InstrumentId, MarketEvent, Price, UnixNanos};

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

/// A venue's book checksum rule: the function that computes it from a book, the way
/// the venue documents (which levels, how they are written, CRC32 and its signedness),
/// as the unsigned 32-bit value (a venue that sends a signed value gives its unsigned
/// bits, `i32 as u32`), and how many of each side's best levels it reads.
///
/// `levels` is what lets a book skip the work: most updates of a deep book change
/// nothing among its best levels, and then its checksum is the one it had
/// ([`OrderBook::apply_checked`] keeps it). A rule that reads whole sides says
/// `usize::MAX`.
#[derive(Debug, Clone, Copy)]
pub struct BookChecksum {
    pub levels: usize,
    pub compute: fn(&OrderBook) -> u32,
}

/// What the venue's rules say about its books, checked on every update by
/// [`OrderBook::apply_checked`]. The default checks nothing (Binance: a full-depth
/// book kept by its update ids alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct BookChecks {
    /// The levels per side the venue keeps, for a top-N book: levels pushed beyond N
    /// are dropped (the venue sends no removal for them) and a snapshot is known at
    /// most N deep.
    pub depth: Option<usize>,
    /// The checksum the message carries and the venue's function that computes it from
    /// the book after the update.
    pub checksum: Option<(u32, BookChecksum)>,
}

/// Why the sink refused a book update. The adapter must resync that instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BookRejected {
    #[error("book crossed after applying the update")]
    Crossed,
    #[error("delta for a book that has no snapshot")]
    NotSynced,
    /// The book after the update does not have the venue's checksum: Raven's copy is
    /// wrong (an update was lost or misapplied).
    #[error("book checksum mismatch: the venue sent {expected}, the book gives {computed}")]
    Checksum { expected: u32, computed: u32 },
    /// The price cannot be held exactly beside the book's others: at the finest scale
    /// among them it would need more than 38 digits (see [`crate::book`]).
    #[error("price {price} cannot be held exactly beside the book's other prices (more than 38 digits at their common scale)")]
    PriceRange { price: Price },
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

    /// A book snapshot or delta, to apply under the venue's `checks` (a sink keeping
    /// the book uses [`OrderBook::apply_checked`]). `Ok` means it applied and passed
    /// them; `Err` means the sink's book is now unusable and the adapter must resync
    /// this instrument (it must not send more deltas before a snapshot).
    fn book_update(
        &self,
        instrument: &InstrumentId,
        update: BookUpdate,
        checks: &BookChecks,
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
