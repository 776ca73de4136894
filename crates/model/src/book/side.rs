//! One side of a book, laid out for where its changes happen: at the touch.
//!
//! Recorded Binance USD-M depth diffs change a level a median 8 places from the touch;
//! 93 % of the changes are within 64 places and 97 % are quantity updates of a level the
//! book holds (spot: 99 % within 64). Spot books are as deep as 5 000 levels, though,
//! and a few changes land deep in them. So a side is two tiers:
//!
//! * **near**: the best levels, in sorted ring buffers (`VecDeque`) of ranks and levels,
//!   touch last. A lookup is a binary search over a few cache lines of `u64`s; an insert
//!   or removal moves only the levels between it and the nearer end, usually the touch;
//!   dropping the worst (a top-N venue's cut) is a pop from the front.
//! * **far**: every level worse than the near tier's worst, in a `BTreeMap`, so a change
//!   deep in the book costs O(log n) and never moves thousands of levels.
//!
//! The near tier holds between `touch/2` and `2 × touch` levels whenever the far tier is
//! not empty: beyond 2 × touch its worst `touch` levels move to the far tier, below
//! touch/2 it takes back the far tier's best. Both moves are amortised over at least
//! `touch/2` changes.
//!
//! A side knows nothing of prices: it orders levels by an unsigned integer *rank*
//! ([`Rank`]: `u64`, or `u128` for a book whose prices need it), higher is better (the
//! book derives ranks from exact prices: a bid's rank is its price in integer units of
//! the book's scale, an ask's is the bitwise complement of that, so the lowest ask
//! ranks highest). Comparing ranks is one integer comparison.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::ops::{Mul, Not};

use crate::Level;

/// The integer a side orders its levels by.
pub(super) trait Rank: Copy + Ord + Debug + Not<Output = Self> + Mul<Output = Self> {
    /// `key` at this width, when it fits.
    fn from_key(key: u128) -> Option<Self>;
    fn checked_times(self, factor: Self) -> Option<Self>;
}

impl Rank for u64 {
    #[inline]
    fn from_key(key: u128) -> Option<Self> {
        u64::try_from(key).ok()
    }

    fn checked_times(self, factor: Self) -> Option<Self> {
        self.checked_mul(factor)
    }
}

impl Rank for u128 {
    #[inline]
    fn from_key(key: u128) -> Option<Self> {
        Some(key)
    }

    fn checked_times(self, factor: Self) -> Option<Self> {
        self.checked_mul(factor)
    }
}

/// The near tier's nominal size when the book is not told otherwise: 128 levels of
/// ranks are 1 KiB, and a near-tier insert moves at most that many levels of the
/// shorter half.
pub const DEFAULT_TOUCH_LEVELS: usize = 128;

/// The best levels a lookup scans before it binary-searches (see `Side::near_position`).
const TOUCH_SCAN: usize = 16;

#[derive(Debug, Clone)]
pub(super) struct Side<R> {
    /// Ascending ranks of the near tier (the touch is the last).
    near_ranks: VecDeque<R>,
    /// The levels of `near_ranks`, at the same positions.
    near_levels: VecDeque<Level>,
    /// Every level ranked below `near_ranks[0]`.
    far: BTreeMap<R, Level>,
    /// The near tier's nominal size (at least 2).
    touch: usize,
}

/// What setting one level did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Set {
    Inserted,
    Updated,
    Removed,
    /// A zero quantity for a rank the side does not hold.
    UnknownRemoval,
}

impl<R: Rank> Side<R> {
    pub(super) fn new(touch: usize) -> Self {
        Self {
            near_ranks: VecDeque::new(),
            near_levels: VecDeque::new(),
            far: BTreeMap::new(),
            touch: touch.max(2),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.near_ranks.len() + self.far.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.near_ranks.is_empty()
    }

    /// The best level and its rank.
    pub(super) fn best(&self) -> Option<(R, Level)> {
        Some((*self.near_ranks.back()?, *self.near_levels.back()?))
    }

    #[inline]
    pub(super) fn best_level(&self) -> Option<Level> {
        self.near_levels.back().copied()
    }

    /// Whether `rank` belongs to the near tier: at or above its worst rank.
    #[inline]
    fn in_near(&self, rank: R) -> bool {
        self.near_ranks.front().is_some_and(|worst| rank >= *worst)
    }

    /// Where `rank` is or would go in the near tier: the number of its ranks below it.
    /// Half of all changes land within the best [`TOUCH_SCAN`] levels; those are
    /// counted in one branch-free pass, the rest binary-searched.
    #[inline]
    fn near_position(&self, rank: R) -> usize {
        let n = self.near_ranks.len();
        match n.checked_sub(TOUCH_SCAN) {
            Some(from) if self.near_ranks[from] <= rank => {
                from + self.near_ranks.range(from..).filter(|r| **r < rank).count()
            }
            _ => self.near_ranks.partition_point(|r| *r < rank),
        }
    }

    /// Sets the level at `rank`: a zero quantity removes it, a level already held keeps
    /// its price (as first written) and takes the new quantity.
    #[inline]
    pub(super) fn set(&mut self, rank: R, level: Level) -> Set {
        if self.in_near(rank) {
            let at = self.near_position(rank);
            let held = self.near_ranks.get(at) == Some(&rank);
            match (held, level.qty.is_zero()) {
                (true, false) => {
                    self.near_levels[at].qty = level.qty;
                    Set::Updated
                }
                (true, true) => {
                    self.near_ranks.remove(at);
                    self.near_levels.remove(at);
                    self.refill();
                    Set::Removed
                }
                (false, false) => {
                    self.near_ranks.insert(at, rank);
                    self.near_levels.insert(at, level);
                    self.spill();
                    Set::Inserted
                }
                (false, true) => Set::UnknownRemoval,
            }
        } else if level.qty.is_zero() {
            if self.far.remove(&rank).is_some() {
                Set::Removed
            } else {
                Set::UnknownRemoval
            }
        } else if let Some(held) = self.far.get_mut(&rank) {
            held.qty = level.qty;
            Set::Updated
        } else if self
            .far
            .last_key_value()
            .is_some_and(|(best, _)| rank < *best)
        {
            self.far.insert(rank, level);
            Set::Inserted
        } else {
            // Between the tiers (or the side is empty): the near tier's new worst.
            self.near_ranks.push_front(rank);
            self.near_levels.push_front(level);
            self.spill();
            Set::Inserted
        }
    }

    /// Removes and returns the worst level and its rank.
    pub(super) fn pop_worst(&mut self) -> Option<(R, Level)> {
        if let Some(worst) = self.far.pop_first() {
            return Some(worst);
        }
        Some((self.near_ranks.pop_front()?, self.near_levels.pop_front()?))
    }

    /// Levels from best to worst.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Level> + '_ {
        self.near_levels.iter().rev().chain(self.far.values().rev())
    }

    /// The best `n` levels, best first (a snapshot's side): copied slice by slice, which
    /// is several times faster than collecting [`Side::iter`].
    pub(super) fn best_levels(&self, n: usize) -> Vec<Level> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        let (front, back) = self.near_levels.as_slices();
        for part in [back, front] {
            let room = n - out.len();
            out.extend(part.iter().rev().take(room).copied());
        }
        let room = n - out.len();
        out.extend(self.far.values().rev().take(room).copied());
        out
    }

    /// How many levels rank at or above `rank`.
    pub(super) fn count_at_or_above(&self, rank: R) -> usize {
        if self.in_near(rank) {
            self.near_ranks.len() - self.near_ranks.partition_point(|r| *r < rank)
        } else {
            self.near_ranks.len() + self.far.range(rank..).count()
        }
    }

    /// The worst rank held.
    pub(super) fn worst_rank(&self) -> Option<R> {
        match self.far.first_key_value() {
            Some((rank, _)) => Some(*rank),
            None => self.near_ranks.front().copied(),
        }
    }

    /// The rank of the `n`th best level (0 = the best).
    pub(super) fn nth_rank(&self, n: usize) -> Option<R> {
        let near = self.near_ranks.len();
        if n < near {
            self.near_ranks.get(near - 1 - n).copied()
        } else {
            self.far.keys().rev().nth(n - near).copied()
        }
    }

    /// Applies `f`, which must preserve order, to every rank: how a book moves its
    /// levels to a finer scale.
    pub(super) fn rerank(&mut self, f: impl Fn(R) -> R) {
        for r in &mut self.near_ranks {
            *r = f(*r);
        }
        let far = std::mem::take(&mut self.far);
        self.far = far.into_iter().map(|(r, l)| (f(r), l)).collect();
    }

    /// The same side ranked at another width by `f`, which must preserve order.
    pub(super) fn convert<S: Rank>(&self, f: impl Fn(R) -> S) -> Side<S> {
        Side {
            near_ranks: self.near_ranks.iter().map(|r| f(*r)).collect(),
            near_levels: self.near_levels.clone(),
            far: self.far.iter().map(|(r, l)| (f(*r), *l)).collect(),
            touch: self.touch,
        }
    }

    /// Beyond twice its size, the near tier's worst `touch` levels move to the far tier.
    #[inline]
    fn spill(&mut self) {
        if self.near_ranks.len() <= 2 * self.touch {
            return;
        }
        for _ in 0..self.touch {
            if let (Some(rank), Some(level)) =
                (self.near_ranks.pop_front(), self.near_levels.pop_front())
            {
                self.far.insert(rank, level);
            }
        }
    }

    /// Below half its size, the near tier takes back the far tier's best levels.
    #[inline]
    fn refill(&mut self) {
        if self.near_ranks.len() >= self.touch / 2 || self.far.is_empty() {
            return;
        }
        while self.near_ranks.len() < self.touch {
            let Some((rank, level)) = self.far.pop_last() else {
                break;
            };
            self.near_ranks.push_front(rank);
            self.near_levels.push_front(level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Price, Qty};
    use rust_decimal::Decimal;

    fn level(rank: u64, qty: i64) -> Level {
        Level {
            price: Price::new(Decimal::new(rank as i64, 0)).unwrap(),
            qty: Qty::new(Decimal::new(qty, 0)).unwrap(),
        }
    }

    fn ranks(side: &Side<u64>) -> Vec<u64> {
        side.iter()
            .map(|l| l.price.value().mantissa() as u64)
            .collect()
    }

    #[test]
    fn the_near_tier_spills_and_refills_and_the_order_holds() {
        let mut side: Side<u64> = Side::new(4);
        // Best first, as snapshots come: 8 fit the near tier, the 9th spills 4.
        for r in (1..=20).rev() {
            assert_eq!(side.set(r, level(r, 1)), Set::Inserted);
        }
        assert_eq!(side.len(), 20);
        assert!(side.near_ranks.len() <= 8 && !side.far.is_empty());
        assert_eq!(ranks(&side), (1..=20).rev().collect::<Vec<_>>());
        // Removing from the touch down refills from the far tier.
        for r in (11..=20).rev() {
            assert_eq!(side.set(r, level(r, 0)), Set::Removed);
            assert!(side.near_ranks.len() >= 2, "{:?}", side.near_ranks);
        }
        assert_eq!(ranks(&side), (1..=10).rev().collect::<Vec<_>>());
        assert_eq!(side.best().map(|b| b.0), Some(10));
        // Updates keep the first price, in either tier; unknown removals are said.
        assert_eq!(side.set(10, level(10, 7)), Set::Updated);
        assert_eq!(side.set(1, level(1, 7)), Set::Updated);
        assert_eq!(side.set(30, level(30, 0)), Set::UnknownRemoval);
        assert_eq!(side.set(0, level(1, 0)), Set::UnknownRemoval);
        let seven = Some(Qty::new(Decimal::new(7, 0)).unwrap());
        assert_eq!(side.iter().next().map(|l| l.qty), seven);
        assert_eq!(side.iter().last().map(|l| l.qty), seven);
        assert_eq!((side.nth_rank(0), side.nth_rank(9)), (Some(10), Some(1)));
        assert_eq!(side.count_at_or_above(5), 6);
        assert_eq!(side.worst_rank(), Some(1));
        assert_eq!(
            side.pop_worst().map(|(r, l)| (r, l.price)),
            Some((1, level(1, 1).price))
        );
        side.rerank(|r| r * 10);
        assert_eq!(
            (side.best().map(|b| b.0), side.worst_rank()),
            (Some(100), Some(20))
        );
    }
}
