//! The full-depth L2 order book.
//!
//! A book is two price-ordered maps of level quantities. It knows nothing of exchange
//! sequence numbers or sockets: the venue adapter decides *whether* a batch of levels may
//! be applied (snapshot/diff joining, gap detection), and the book only applies it.
//!
//! Design choices, each for a reason:
//! * `BTreeMap<Price, Qty>` per side: updates land anywhere in a deep book (Binance sends
//!   changes 5 % away from the touch), so an ordered tree's O(log n) is the safe bound;
//!   a sorted `Vec` would be faster near the touch and O(n) far from it.
//! * The best bid and ask are cached after every change, so reading the touch is O(1)
//!   for the BBO checks the hub runs after every delta.
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

use std::collections::BTreeMap;

use crate::feed::{BookChecks, BookChecksum, BookRejected, BookUpdate};
use crate::{BookLevels, Level, Price, Qty};

#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    best_bid: Option<Level>,
    best_ask: Option<Level>,
    last_update_id: u64,
    /// Bids at or above this price are complete; `None`: the whole side is.
    known_bid_floor: Option<Price>,
    /// Asks at or below this price are complete; `None`: the whole side is.
    known_ask_ceiling: Option<Price>,
    /// The venue checksum last computed, while no change has reached the levels it
    /// read (see [`OrderBook::apply_checked`]).
    checksum_memo: Option<ChecksumMemo>,
}

/// A book's checksum and the worst price of each side among the levels it was computed
/// from: a change at a worse price leaves those levels, and so the checksum, as they
/// were. `None` for a side the checksum read whole (fewer levels than it reads): any
/// change there counts.
#[derive(Debug, Clone, Copy)]
struct ChecksumMemo {
    value: u32,
    bid_edge: Option<Price>,
    ask_edge: Option<Price>,
}

impl ChecksumMemo {
    fn keeps_bid(&self, price: Price) -> bool {
        self.bid_edge.is_some_and(|edge| price < edge)
    }

    fn keeps_ask(&self, price: Price) -> bool {
        self.ask_edge.is_some_and(|edge| price > edge)
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

    /// Replaces the whole book with a snapshot. Zero-quantity levels are ignored.
    /// `limit` is the most levels per side the snapshot could hold (`None`: the whole
    /// book); a side that came back full may go deeper (see the module docs).
    pub fn apply_snapshot(&mut self, snapshot: &BookLevels, limit: Option<usize>) {
        self.checksum_memo = None;
        self.bids.clear();
        self.asks.clear();
        for l in snapshot.bids.iter().filter(|l| !l.qty.is_zero()) {
            self.bids.insert(l.price, l.qty);
        }
        for l in snapshot.asks.iter().filter(|l| !l.qty.is_zero()) {
            self.asks.insert(l.price, l.qty);
        }
        self.last_update_id = snapshot.last_update_id;
        let truncated = |side: &[Level]| limit.is_some_and(|n| side.len() >= n);
        self.known_bid_floor = truncated(&snapshot.bids)
            .then(|| self.bids.first_key_value().map(|(p, _)| *p))
            .flatten();
        self.known_ask_ceiling = truncated(&snapshot.asks)
            .then(|| self.asks.last_key_value().map(|(p, _)| *p))
            .flatten();
        self.refresh_best_bid();
        self.refresh_best_ask();
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
                self.apply_snapshot(levels, *limit);
                if let Some(depth) = checks
                    .depth
                    .filter(|d| self.bids.len().max(self.asks.len()) > *d)
                {
                    // A snapshot deeper than the book keeps: only N per side count, and
                    // a side that was cut is known down to its new last level.
                    let cut = self.len();
                    self.truncate(depth, &mut BookLevels::default());
                    if cut.0 > depth {
                        self.known_bid_floor = self.bids.first_key_value().map(|(p, _)| *p);
                    }
                    if cut.1 > depth {
                        self.known_ask_ceiling = self.asks.last_key_value().map(|(p, _)| *p);
                    }
                    levels.bids = self.bids().collect();
                    levels.asks = self.asks().collect();
                }
            }
            BookUpdate::Delta(delta) => {
                self.apply_delta(delta);
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
    /// memo is never another rule's.
    fn checksum(&mut self, checksum: BookChecksum) -> u32 {
        if let Some(memo) = self.checksum_memo {
            return memo.value;
        }
        let value = (checksum.compute)(self);
        // The worst level read per side, when the side has more than that.
        let n = checksum.levels;
        self.checksum_memo = Some(ChecksumMemo {
            value,
            bid_edge: (self.bids.len() > n)
                .then(|| n.checked_sub(1).and_then(|i| self.bids.keys().rev().nth(i)))
                .flatten()
                .copied(),
            ask_edge: (self.asks.len() > n)
                .then(|| n.checked_sub(1).and_then(|i| self.asks.keys().nth(i)))
                .flatten()
                .copied(),
        });
        value
    }

    /// How many of the best bid and ask levels are complete: every level the exchange
    /// has at those prices is in the book. Equal to [`OrderBook::len`] when the last
    /// snapshot held whole sides.
    pub fn known_depth(&self) -> KnownDepth {
        let bids = match self.known_bid_floor {
            None => self.bids.len(),
            Some(floor) => self.bids.range(floor..).count(),
        };
        let asks = match self.known_ask_ceiling {
            None => self.asks.len(),
            Some(ceiling) => self.asks.range(..=ceiling).count(),
        };
        (bids, asks)
    }

    /// Applies a batch of level changes: a positive quantity sets the level, zero removes it.
    pub fn apply_delta(&mut self, delta: &BookLevels) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let mut bid_touched = false;
        let mut memo_kept = self.checksum_memo.is_some();
        for l in &delta.bids {
            bid_touched |= self.best_bid.is_none_or(|b| l.price >= b.price);
            memo_kept = memo_kept && self.checksum_memo.is_some_and(|m| m.keeps_bid(l.price));
            out.unknown_removals += usize::from(set_level(&mut self.bids, *l));
        }
        let mut ask_touched = false;
        for l in &delta.asks {
            ask_touched |= self.best_ask.is_none_or(|a| l.price <= a.price);
            memo_kept = memo_kept && self.checksum_memo.is_some_and(|m| m.keeps_ask(l.price));
            out.unknown_removals += usize::from(set_level(&mut self.asks, *l));
        }
        if !memo_kept {
            self.checksum_memo = None;
        }
        if bid_touched {
            self.refresh_best_bid();
        }
        if ask_touched {
            self.refresh_best_ask();
        }
        out.levels_applied = delta.bids.len() + delta.asks.len();
        self.last_update_id = delta.last_update_id;
        out
    }

    /// Keeps at most `depth` levels per side, dropping the worst; each dropped level is
    /// appended to `removed` with zero quantity (a top-N venue sends no removal for a
    /// level pushed beyond N, so whoever follows this book learns it from `removed`).
    pub fn truncate(&mut self, depth: usize, removed: &mut BookLevels) {
        while self.bids.len() > depth {
            if let Some((price, _)) = self.bids.pop_first() {
                if self.checksum_memo.is_some_and(|m| !m.keeps_bid(price)) {
                    self.checksum_memo = None;
                }
                removed.bids.push(Level {
                    price,
                    qty: Qty::ZERO,
                });
            }
        }
        while self.asks.len() > depth {
            if let Some((price, _)) = self.asks.pop_last() {
                if self.checksum_memo.is_some_and(|m| !m.keeps_ask(price)) {
                    self.checksum_memo = None;
                }
                removed.asks.push(Level {
                    price,
                    qty: Qty::ZERO,
                });
            }
        }
        if self.bids.is_empty() || self.asks.is_empty() {
            self.refresh_best_bid();
            self.refresh_best_ask();
        }
    }

    pub fn best_bid(&self) -> Option<Level> {
        self.best_bid
    }

    pub fn best_ask(&self) -> Option<Level> {
        self.best_ask
    }

    /// True when the best bid is at or above the best ask: the copy is wrong.
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid, self.best_ask), (Some(b), Some(a)) if b.price >= a.price)
    }

    /// The exchange update id of the last snapshot or delta applied.
    pub fn last_update_id(&self) -> u64 {
        self.last_update_id
    }

    /// Number of bid and ask levels.
    pub fn len(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }

    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// The best `depth` levels of each side (0 = all): bids descending, asks ascending.
    pub fn snapshot(&self, depth: usize) -> BookLevels {
        let take = if depth == 0 { usize::MAX } else { depth };
        BookLevels {
            bids: self.bids.iter().rev().take(take).map(level).collect(),
            asks: self.asks.iter().take(take).map(level).collect(),
            first_update_id: self.last_update_id,
            last_update_id: self.last_update_id,
        }
    }

    /// Bids from best to worst.
    pub fn bids(&self) -> impl Iterator<Item = Level> + '_ {
        self.bids.iter().rev().map(level)
    }

    /// Asks from best to worst.
    pub fn asks(&self) -> impl Iterator<Item = Level> + '_ {
        self.asks.iter().map(level)
    }

    fn refresh_best_bid(&mut self) {
        self.best_bid = self.bids.last_key_value().map(level);
    }

    fn refresh_best_ask(&mut self) {
        self.best_ask = self.asks.first_key_value().map(level);
    }
}

fn level((price, qty): (&Price, &Qty)) -> Level {
    Level {
        price: *price,
        qty: *qty,
    }
}

/// Sets or removes one level; returns true when it removed a price the side did not hold.
fn set_level(side: &mut BTreeMap<Price, Qty>, l: Level) -> bool {
    if l.qty.is_zero() {
        side.remove(&l.price).is_none()
    } else {
        side.insert(l.price, l.qty);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::BookChecksum;

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
        book.apply_snapshot(&levels(&["99", "98", "97"], &["101", "102"]), Some(3));
        assert_eq!(book.known_depth(), (3, 2));
        // A delta beyond the known range adds a level that is held but not "known":
        // there may be levels between 97 and 95 Raven never heard of.
        book.apply_delta(&levels(&["95"], &["110"]));
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
        });
        assert_eq!(book.known_depth(), (3, 3));
        // A market falling through the boundary leaves nothing known on that side.
        book.apply_delta(&BookLevels {
            bids: vec![l("98.5", "0"), l("98", "0"), l("97", "0")],
            ..BookLevels::default()
        });
        assert_eq!(book.len().0, 1);
        assert_eq!(book.known_depth().0, 0);
        // The next snapshot without a limit knows everything.
        book.apply_snapshot(&levels(&["99"], &["101"]), None);
        assert_eq!(book.known_depth(), (1, 1));
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
        follower.apply_snapshot(&kept, limit);
        follower.apply_delta(&applied);
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
