//! The full-depth L2 order book.
//!
//! A book is two price-ordered sides of levels. It knows nothing of exchange sequence
//! numbers or sockets: the venue adapter decides *whether* a batch of levels may be
//! applied (snapshot/diff joining, gap detection), and the book only applies it.
//!
//! Design choices, each for a reason:
//! * Levels are found by an integer *rank*, not by comparing decimals ([`ranked`]): every
//!   price of a book is its exact value in integer units of the book's scale (the most
//!   decimals any of its prices was written with; "0.35210000" at scale 8 is
//!   35 210 000), so ordering two levels is one integer comparison. Ranks are `u64`,
//!   which holds every real instrument (19 digits from its largest price to its finest
//!   decimal); a book whose prices need more moves to `u128` ranks (38 digits) until its
//!   next snapshot, and only a book beyond that is refused
//!   ([`BookRejected::PriceRange`]): exact always, never rounded. Each level keeps its
//!   price as the venue wrote it, so it prints back (and checksums) exactly.
//! * Each side favours the touch, where almost every change lands ([`side`]): its best
//!   levels in sorted arrays, the deep rest in a B-tree.
//! * Removing a level the book does not hold is normal: exchanges announce removals of
//!   levels that were outside the snapshot's depth. It is counted, not an error.
//! * A crossed book (best bid ≥ best ask) means Raven's copy is wrong; [`OrderBook::is_crossed`]
//!   lets the caller refuse to publish it and resync instead.
//! * A snapshot may hold only a side's best levels (a REST `limit`): the exchange's side
//!   may go deeper. Levels at or better than the snapshot's last one are then known
//!   exactly for as long as the book is in sync, because every change to them arrives as
//!   a delta; levels beyond it are only those deltas happened to touch, with unknown
//!   levels between them. [`OrderBook::known_depth`] says how many of each side's best
//!   levels are complete.
//! * A venue's own rules about its book are checked here, on the one book Raven keeps,
//!   by [`OrderBook::apply_checked`] ([`BookChecks`]): a top-N venue's book is cut to N
//!   after each update, and the removals the venue never sends are appended to the
//!   delta, so whoever follows the deltas holds the same book; a checksum is computed
//!   on the book after the update and a mismatch refuses it. Keeping these checks with
//!   the book, rather than on a second copy in the adapter, is what lets every update
//!   be applied exactly once.

mod ranked;
mod side;

use ranked::{Ranked, Unfit};
pub use side::DEFAULT_TOUCH_LEVELS;

use crate::feed::{BookChecks, BookChecksum, BookRejected, BookUpdate};
use crate::{BookLevels, Level};

#[derive(Debug, Clone)]
pub struct OrderBook {
    layout: Layout,
    last_update_id: u64,
    /// The sides' touch tier (see [`side`]).
    touch: usize,
}

/// The rank width the book's prices need (see the module docs).
#[derive(Debug, Clone)]
enum Layout {
    Narrow(Ranked<u64>),
    Wide(Ranked<u128>),
}

/// Runs `$e` on the book's ranks, whichever their width.
macro_rules! ranks {
    ($book:expr, $r:ident => $e:expr) => {
        match $book {
            Layout::Narrow($r) => $e,
            Layout::Wide($r) => $e,
        }
    };
}

impl Default for OrderBook {
    fn default() -> Self {
        Self::with_touch_levels(DEFAULT_TOUCH_LEVELS)
    }
}

/// How many of the bid and ask sides' best levels are complete (see
/// [`OrderBook::known_depth`]).
pub type KnownDepth = (usize, usize);

/// What one [`OrderBook::apply_delta`] did, for metrics and for depth-limited views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub levels_applied: usize,
    /// Zero-quantity levels for prices the book did not hold.
    pub unknown_removals: usize,
}

impl OrderBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// A book whose sides keep about `levels` best levels in their touch tier (see
    /// [`side`]); [`OrderBook::new`] takes [`DEFAULT_TOUCH_LEVELS`]. Only the layout
    /// changes, never what the book holds: tests use a tiny tier to cross its edges.
    pub fn with_touch_levels(levels: usize) -> Self {
        Self {
            layout: Layout::Narrow(Ranked::new(levels)),
            last_update_id: 0,
            touch: levels,
        }
    }

    /// Replaces the whole book with a snapshot. Zero-quantity levels are ignored.
    /// `limit` is the most levels per side the snapshot could hold (`None`: the whole
    /// book); a side that came back full may go deeper (see the module docs). On `Err`
    /// the book is empty.
    pub fn apply_snapshot(
        &mut self,
        snapshot: &BookLevels,
        limit: Option<usize>,
    ) -> Result<(), BookRejected> {
        self.last_update_id = snapshot.last_update_id;
        let mut narrow = Ranked::new(self.touch);
        if narrow.fill(snapshot, limit).is_ok() {
            self.layout = Layout::Narrow(narrow);
            return Ok(());
        }
        let mut wide = Ranked::new(self.touch);
        let filled = wide.fill(snapshot, limit);
        self.layout = match filled {
            Ok(()) => Layout::Wide(wide),
            Err(_) => Layout::Narrow(Ranked::new(self.touch)),
        };
        filled.map_err(|Unfit(price)| BookRejected::PriceRange { price })
    }

    /// Applies a snapshot or delta under the venue's `checks`, rewriting `update` into
    /// what was applied: with a depth, each side is cut to it, the levels cut from a
    /// delta are appended to it with zero quantity, a snapshot keeps only the levels it
    /// left and its `limit` is at most the depth. With a checksum, the book after the
    /// update must have it ([`BookRejected::Checksum`]); and it must not be crossed
    /// ([`BookRejected::Crossed`]). On `Err` the book is wrong and must be resynced.
    pub fn apply_checked(
        &mut self,
        update: &mut BookUpdate,
        checks: &BookChecks,
    ) -> Result<(), BookRejected> {
        match update {
            BookUpdate::Snapshot { levels, limit } => {
                if let Some(depth) = checks.depth {
                    *limit = Some(limit.map_or(depth, |l| l.min(depth)));
                }
                self.apply_snapshot(levels, *limit)?;
                let before = self.len();
                if let Some(depth) = checks.depth.filter(|d| before.0.max(before.1) > *d) {
                    // A snapshot deeper than the book keeps: only N per side count, and
                    // a side that was cut is known down to its new last level.
                    self.truncate(depth, &mut BookLevels::default());
                    ranks!(&mut self.layout, r => r.known_after_cut(before, depth));
                    let kept = self.snapshot(0);
                    levels.bids = kept.bids;
                    levels.asks = kept.asks;
                }
            }
            BookUpdate::Delta(delta) => {
                self.apply_delta(delta)?;
                if let Some(depth) = checks.depth {
                    self.truncate(depth, delta);
                }
            }
        }
        if let Some((expected, checksum)) = checks.checksum {
            let computed = self.checksum(checksum);
            if computed != expected {
                return Err(BookRejected::Checksum { expected, computed });
            }
        }
        if self.is_crossed() {
            return Err(BookRejected::Crossed);
        }
        Ok(())
    }

    /// The venue's checksum of the book: the last one computed while no change since
    /// has reached the best `checksum.levels` of either side, else computed afresh.
    /// Only the venue's rule ever checks a book (one instrument, one venue), so the
    /// kept value is never another rule's.
    fn checksum(&mut self, checksum: BookChecksum) -> u32 {
        if let Some(value) = ranks!(&self.layout, r => r.kept_checksum()) {
            return value;
        }
        let value = (checksum.compute)(self);
        ranks!(&mut self.layout, r => r.keep_checksum(value, checksum.levels));
        value
    }

    /// How many of the best bid and ask levels are complete: every level the exchange
    /// has at those prices is in the book. Equal to [`OrderBook::len`] when the last
    /// snapshot held whole sides.
    pub fn known_depth(&self) -> KnownDepth {
        ranks!(&self.layout, r => r.known_depth())
    }

    /// Applies a batch of level changes: a positive quantity sets the level, zero
    /// removes it. On `Err` ([`BookRejected::PriceRange`]) the levels before the one
    /// refused were applied: the book is wrong and must be resynced.
    pub fn apply_delta(&mut self, delta: &BookLevels) -> Result<ApplyOutcome, BookRejected> {
        let mut out = ApplyOutcome::default();
        let mut from = 0;
        loop {
            let applied = ranks!(&mut self.layout, r => r.apply(delta, from, &mut out));
            match (applied, &self.layout) {
                (Ok(()), _) => break,
                // A price the narrow ranks cannot hold: the book widens and goes on
                // from the level that did not fit.
                (Err((_, at)), Layout::Narrow(narrow)) => {
                    self.layout = Layout::Wide(narrow.widen());
                    from = at;
                }
                (Err((Unfit(price), _)), Layout::Wide(_)) => {
                    return Err(BookRejected::PriceRange { price })
                }
            }
        }
        out.levels_applied = delta.bids.len() + delta.asks.len();
        self.last_update_id = delta.last_update_id;
        Ok(out)
    }

    /// Keeps at most `depth` levels per side, dropping the worst; each dropped level is
    /// appended to `removed` with zero quantity (a top-N venue sends no removal for a
    /// level pushed beyond N, so whoever follows this book learns it from `removed`).
    pub fn truncate(&mut self, depth: usize, removed: &mut BookLevels) {
        ranks!(&mut self.layout, r => r.truncate(depth, removed))
    }

    pub fn best_bid(&self) -> Option<Level> {
        ranks!(&self.layout, r => r.best_bid())
    }

    pub fn best_ask(&self) -> Option<Level> {
        ranks!(&self.layout, r => r.best_ask())
    }

    /// True when the best bid is at or above the best ask: the copy is wrong.
    pub fn is_crossed(&self) -> bool {
        ranks!(&self.layout, r => r.is_crossed())
    }

    /// The exchange update id of the last snapshot or delta applied.
    pub fn last_update_id(&self) -> u64 {
        self.last_update_id
    }

    /// Number of bid and ask levels.
    pub fn len(&self) -> (usize, usize) {
        ranks!(&self.layout, r => r.len())
    }

    pub fn is_empty(&self) -> bool {
        ranks!(&self.layout, r => r.is_empty())
    }

    /// The best `depth` levels of each side (0 = all): bids descending, asks ascending.
    pub fn snapshot(&self, depth: usize) -> BookLevels {
        let take = if depth == 0 { usize::MAX } else { depth };
        let (bids, asks) = ranks!(&self.layout, r => r.best_levels(take));
        BookLevels {
            bids,
            asks,
            first_update_id: self.last_update_id,
            last_update_id: self.last_update_id,
        }
    }

    /// Bids from best to worst.
    pub fn bids(&self) -> impl Iterator<Item = Level> + '_ {
        match &self.layout {
            Layout::Narrow(r) => Either::Narrow(r.bids().copied()),
            Layout::Wide(r) => Either::Wide(r.bids().copied()),
        }
    }

    /// Asks from best to worst.
    pub fn asks(&self) -> impl Iterator<Item = Level> + '_ {
        match &self.layout {
            Layout::Narrow(r) => Either::Narrow(r.asks().copied()),
            Layout::Wide(r) => Either::Wide(r.asks().copied()),
        }
    }
}

/// A side's levels, from whichever layout holds them.
enum Either<A, B> {
    Narrow(A),
    Wide(B),
}

impl<A: Iterator<Item = Level>, B: Iterator<Item = Level>> Iterator for Either<A, B> {
    type Item = Level;

    #[inline]
    fn next(&mut self) -> Option<Level> {
        match self {
            Either::Narrow(a) => a.next(),
            Either::Wide(b) => b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::BookChecksum;
    use crate::{Price, Qty};

    fn l(price: &str, qty: &str) -> Level {
        Level {
            price: Price::parse(price).unwrap(),
            qty: Qty::parse(qty).unwrap(),
        }
    }

    fn levels(bids: &[&str], asks: &[&str]) -> BookLevels {
        BookLevels {
            bids: bids.iter().map(|p| l(p, "1")).collect(),
            asks: asks.iter().map(|p| l(p, "1")).collect(),
            first_update_id: 1,
            last_update_id: 1,
        }
    }

    #[test]
    fn a_full_snapshot_side_is_known_only_down_to_its_last_level() {
        let mut book = OrderBook::new();
        // Limit 3: the bid side came back full (the exchange may hold more below 97),
        // the ask side did not (it is the whole side).
        book.apply_snapshot(&levels(&["99", "98", "97"], &["101", "102"]), Some(3))
            .unwrap();
        assert_eq!(book.known_depth(), (3, 2));
        // A delta beyond the known range adds a level that is held but not "known":
        // there may be levels between 97 and 95 Raven never heard of.
        book.apply_delta(&levels(&["95"], &["110"])).unwrap();
        assert_eq!(book.len(), (4, 3));
        assert_eq!(
            book.known_depth(),
            (3, 3),
            "the ask side is whole: all known"
        );
        // Levels inside the known range come and go exactly.
        book.apply_delta(&BookLevels {
            bids: vec![l("98.5", "2"), l("99", "0")],
            ..BookLevels::default()
        })
        .unwrap();
        assert_eq!(book.known_depth(), (3, 3));
        // A market falling through the boundary leaves nothing known on that side.
        book.apply_delta(&BookLevels {
            bids: vec![l("98.5", "0"), l("98", "0"), l("97", "0")],
            ..BookLevels::default()
        })
        .unwrap();
        assert_eq!(book.len().0, 1);
        assert_eq!(book.known_depth().0, 0);
        // The next snapshot without a limit knows everything.
        book.apply_snapshot(&levels(&["99"], &["101"]), None)
            .unwrap();
        assert_eq!(book.known_depth(), (1, 1));
    }

    #[test]
    fn a_finer_price_moves_the_book_to_its_scale_and_every_price_prints_as_written() {
        let mut book = OrderBook::new();
        book.apply_snapshot(&levels(&["100", "99.5"], &["101"]), None)
            .unwrap();
        book.apply_delta(&levels(&["100.25", "99.50"], &["100.750"]))
            .unwrap();
        let text = |it: &mut dyn Iterator<Item = Level>| -> Vec<String> {
            it.map(|l| l.price.to_string()).collect()
        };
        // "99.50" is the level "99.5" already held: it keeps its first text.
        assert_eq!(text(&mut book.bids()), ["100.25", "100", "99.5"]);
        assert_eq!(text(&mut book.asks()), ["100.750", "101"]);
        assert!(!book.is_crossed());
        book.apply_delta(&levels(&[], &["100.2500"])).unwrap();
        assert!(
            book.is_crossed(),
            "an ask at the best bid, at yet another scale"
        );
    }

    #[test]
    fn a_book_whose_prices_need_more_than_19_digits_widens_and_stays_exact() {
        let mut book = OrderBook::new();
        book.apply_snapshot(&levels(&["100000000000"], &["100000000001"]), None)
            .unwrap();
        // 10^11 at 9 decimals is 10^20 units, past a u64: the book widens in the middle
        // of this delta and applies every level of it, once.
        let outcome = book
            .apply_delta(&levels(&["99", "0.000000001"], &["100000000002"]))
            .unwrap();
        assert_eq!(outcome.levels_applied, 3);
        assert!(matches!(book.layout, Layout::Wide(_)));
        let bids: Vec<String> = book.bids().map(|l| l.price.to_string()).collect();
        assert_eq!(bids, ["100000000000", "99", "0.000000001"]);
        assert_eq!(book.len(), (3, 2));
        assert!(!book.is_crossed());
        // The next snapshot that fits starts narrow again.
        book.apply_snapshot(&levels(&["1.5"], &["2"]), None)
            .unwrap();
        assert!(matches!(book.layout, Layout::Narrow(_)));
    }

    #[test]
    fn a_price_beyond_38_digits_of_the_others_is_refused_never_rounded() {
        let mut book = OrderBook::new();
        book.apply_snapshot(&levels(&["1000000000000000000000000000"], &[]), None)
            .unwrap();
        let tiny = l("0.0000000000000000000000000001", "1").price;
        assert_eq!(
            book.apply_delta(&levels(&["0.0000000000000000000000000001"], &[])),
            Err(BookRejected::PriceRange { price: tiny })
        );
        assert_eq!(book.len(), (1, 0), "the refused level is not applied");
        assert_eq!(
            book.apply_snapshot(
                &levels(
                    &[
                        "0.0000000000000000000000000001",
                        "1000000000000000000000000000"
                    ],
                    &[]
                ),
                None
            ),
            // A snapshot takes its finest scale first: the large price is the one out.
            Err(BookRejected::PriceRange {
                price: l("1000000000000000000000000000", "1").price
            })
        );
        assert!(book.is_empty(), "a refused snapshot leaves no half-book");
    }

    fn checked(
        checks: &BookChecks,
    ) -> impl FnMut(&mut OrderBook, BookUpdate) -> Result<BookUpdate, BookRejected> + '_ {
        move |book, mut update| book.apply_checked(&mut update, checks).map(|()| update)
    }

    #[test]
    fn a_top_n_book_drops_what_falls_beyond_n_and_says_so() {
        let checks = BookChecks {
            depth: Some(2),
            checksum: None,
        };
        let mut apply = checked(&checks);
        let mut book = OrderBook::new();
        let snapshot = BookUpdate::Snapshot {
            levels: levels(&["10", "9", "8"], &["11"]),
            limit: None,
        };
        let Ok(BookUpdate::Snapshot {
            levels: kept,
            limit,
        }) = apply(&mut book, snapshot)
        else {
            panic!()
        };
        // Only the best 2 count, and the cut side is known down to its last level.
        assert_eq!(kept.bids, vec![l("10", "1"), l("9", "1")]);
        assert_eq!(kept.asks, vec![l("11", "1")]);
        assert_eq!(limit, Some(2));
        assert_eq!((book.len(), book.known_depth()), ((2, 1), (2, 1)));
        let delta = BookUpdate::Delta(BookLevels {
            bids: vec![l("10.5", "2")],
            ..BookLevels::default()
        });
        let Ok(BookUpdate::Delta(applied)) = apply(&mut book, delta) else {
            panic!()
        };
        // The new best bid pushed 9 out: its removal travels with the delta.
        assert_eq!(applied.bids, vec![l("10.5", "2"), l("9", "0")]);
        let bids: Vec<Level> = book.bids().collect();
        assert_eq!(bids, vec![l("10.5", "2"), l("10", "1")]);
        // Following the delta as sent gives the same book.
        let mut follower = OrderBook::new();
        follower.apply_snapshot(&kept, limit).unwrap();
        follower.apply_delta(&applied).unwrap();
        assert_eq!(follower.bids().collect::<Vec<_>>(), bids);
    }

    #[test]
    fn a_checksum_that_differs_is_refused() {
        fn best_bid_qty(book: &OrderBook) -> u32 {
            book.best_bid()
                .map_or(0, |l| l.qty.value().mantissa() as u32)
        }
        let with = |expected| BookChecks {
            depth: None,
            checksum: Some((
                expected,
                BookChecksum {
                    levels: 1,
                    compute: best_bid_qty,
                },
            )),
        };
        let mut book = OrderBook::new();
        let mut snapshot = BookUpdate::Snapshot {
            levels: BookLevels {
                bids: vec![l("10", "3")],
                ..BookLevels::default()
            },
            limit: None,
        };
        assert_eq!(book.apply_checked(&mut snapshot, &with(3)), Ok(()));
        let mut delta = BookUpdate::Delta(BookLevels {
            bids: vec![l("10", "4")],
            ..BookLevels::default()
        });
        assert_eq!(
            book.apply_checked(&mut delta.clone(), &with(4)),
            Ok(()),
            "the checksum is of the book after the update"
        );
        assert_eq!(
            book.apply_checked(&mut delta, &with(5)),
            Err(BookRejected::Checksum {
                expected: 5,
                computed: 4
            })
        );
    }

    #[test]
    fn a_crossed_book_is_refused_and_no_checks_is_a_plain_apply() {
        let none = BookChecks::default();
        let mut book = OrderBook::new();
        let mut snapshot = BookUpdate::Snapshot {
            levels: levels(&["99", "98"], &["101", "102"]),
            limit: Some(5),
        };
        assert_eq!(book.apply_checked(&mut snapshot, &none), Ok(()));
        assert_eq!(book.known_depth(), (2, 2));
        let mut delta = BookUpdate::Delta(levels(&["100"], &[]));
        let before = delta.clone();
        assert_eq!(book.apply_checked(&mut delta, &none), Ok(()));
        assert_eq!(delta, before, "nothing added without a depth");
        let mut crossing = BookUpdate::Delta(levels(&["101.5"], &[]));
        assert_eq!(
            book.apply_checked(&mut crossing, &none),
            Err(BookRejected::Crossed)
        );
    }
}
