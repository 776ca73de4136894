//! Both sides of a book at one rank width: prices turned into integer ranks, and every
//! query the book answers in terms of them.
//!
//! A price's key is its exact value in integer units of the book's scale (the most
//! decimals any of its prices was written with): "0.35210000" at scale 8 is 35 210 000.
//! A bid ranks by its key, an ask by the key's complement, so on both sides a higher
//! rank is better and the touch is the highest. A price with more decimals than the
//! book has seen moves every rank to the finer scale, once. A price whose key (or the
//! re-ranked book) does not fit `R` is [`Unfit`]: the book then moves to a wider `R`
//! (see the parent module), or, at the widest, refuses the price.

use super::side::{Rank, Set, Side};
use super::ApplyOutcome;
use crate::{BookLevels, Level, Price, Qty};

/// A price whose key does not fit the book's rank width beside its other prices.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unfit(pub Price);

#[derive(Debug, Clone)]
pub(super) struct Ranked<R> {
    bids: Side<R>,
    asks: Side<R>,
    /// Every key is a price × 10^scale.
    scale: u32,
    /// Bids ranked at or above this are complete; `None`: the whole side is.
    known_bid_floor: Option<R>,
    /// Asks ranked at or above this (priced at or below it) are complete.
    known_ask_ceiling: Option<R>,
    /// The venue checksum last computed, while no change has reached the levels it
    /// read (see [`super::OrderBook::apply_checked`]).
    memo: Option<ChecksumMemo<R>>,
}

/// A book's checksum and the rank of the worst level of each side among those it was
/// computed from: a change ranked below leaves those levels, and so the checksum, as
/// they were. `None` for a side the checksum read whole (fewer levels than it reads):
/// any change there counts.
#[derive(Debug, Clone, Copy)]
struct ChecksumMemo<R> {
    value: u32,
    bid_edge: Option<R>,
    ask_edge: Option<R>,
}

fn keeps<R: Rank>(edge: Option<R>, rank: R) -> bool {
    edge.is_some_and(|edge| rank < edge)
}

/// 10⁰ to 10²⁸: the factors between a price's scale and a book's (both at most 28).
const POW10: [u128; 29] = {
    let mut p = [1u128; 29];
    let mut i = 1;
    while i < 29 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// `price` in integer units of 10^-`scale`, when it has at most `scale` decimals and
/// fits an `R` there.
#[inline]
fn key_at<R: Rank>(price: Price, scale: u32) -> Option<R> {
    let value = price.value();
    let factor = POW10[scale.checked_sub(value.scale())? as usize];
    // A price is positive, so its mantissa is its magnitude.
    R::from_key((value.mantissa() as u128).checked_mul(factor)?)
}

impl<R: Rank> Ranked<R> {
    pub(super) fn new(touch: usize) -> Self {
        Self {
            bids: Side::new(touch),
            asks: Side::new(touch),
            scale: 0,
            known_bid_floor: None,
            known_ask_ceiling: None,
            memo: None,
        }
    }

    /// Fills an empty book from a snapshot (see [`super::OrderBook::apply_snapshot`]).
    pub(super) fn fill(
        &mut self,
        snapshot: &BookLevels,
        limit: Option<usize>,
    ) -> Result<(), Unfit> {
        self.scale = snapshot
            .bids
            .iter()
            .chain(&snapshot.asks)
            .map(|l| l.price.value().scale())
            .max()
            .unwrap_or(0);
        for l in snapshot.bids.iter().filter(|l| !l.qty.is_zero()) {
            let rank = self.bid_rank(l.price)?;
            self.bids.set(rank, *l);
        }
        for l in snapshot.asks.iter().filter(|l| !l.qty.is_zero()) {
            let rank = self.ask_rank(l.price)?;
            self.asks.set(rank, *l);
        }
        let truncated = |side: &[Level]| limit.is_some_and(|n| side.len() >= n);
        if truncated(&snapshot.bids) {
            self.known_bid_floor = self.bids.worst_rank();
        }
        if truncated(&snapshot.asks) {
            self.known_ask_ceiling = self.asks.worst_rank();
        }
        Ok(())
    }

    /// Applies the delta's levels from the `from`th on (bids first, then asks), adding
    /// to `out`. On `Err` the level at the index returned was not applied, those before
    /// it were.
    pub(super) fn apply(
        &mut self,
        delta: &BookLevels,
        from: usize,
        out: &mut ApplyOutcome,
    ) -> Result<(), (Unfit, usize)> {
        let mut memo_kept = self.memo.is_some();
        let n_bids = delta.bids.len();
        for (i, l) in delta.bids.iter().enumerate().skip(from) {
            let rank = self.bid_rank(l.price).map_err(|u| (u, i))?;
            memo_kept = memo_kept && self.memo.is_some_and(|m| keeps(m.bid_edge, rank));
            out.unknown_removals += usize::from(self.bids.set(rank, *l) == Set::UnknownRemoval);
        }
        for (i, l) in delta
            .asks
            .iter()
            .enumerate()
            .skip(from.saturating_sub(n_bids))
        {
            let rank = self.ask_rank(l.price).map_err(|u| (u, n_bids + i))?;
            memo_kept = memo_kept && self.memo.is_some_and(|m| keeps(m.ask_edge, rank));
            out.unknown_removals += usize::from(self.asks.set(rank, *l) == Set::UnknownRemoval);
        }
        if !memo_kept {
            self.memo = None;
        }
        Ok(())
    }

    /// See [`super::OrderBook::truncate`].
    pub(super) fn truncate(&mut self, depth: usize, removed: &mut BookLevels) {
        let edges = self.memo.map(|m| (m.bid_edge, m.ask_edge));
        for (side, edge, out) in [
            (&mut self.bids, edges.map(|e| e.0), &mut removed.bids),
            (&mut self.asks, edges.map(|e| e.1), &mut removed.asks),
        ] {
            while side.len() > depth {
                let Some((rank, level)) = side.pop_worst() else {
                    break;
                };
                if edge.is_some_and(|edge| !keeps(edge, rank)) {
                    self.memo = None;
                }
                out.push(Level {
                    price: level.price,
                    qty: Qty::ZERO,
                });
            }
        }
    }

    /// After a cut to `depth`: a side that had more is known down to its new last level.
    pub(super) fn known_after_cut(&mut self, before: (usize, usize), depth: usize) {
        if before.0 > depth {
            self.known_bid_floor = self.bids.worst_rank();
        }
        if before.1 > depth {
            self.known_ask_ceiling = self.asks.worst_rank();
        }
    }

    /// The checksum kept since it was computed, while no change reached its levels.
    pub(super) fn kept_checksum(&self) -> Option<u32> {
        self.memo.map(|m| m.value)
    }

    /// Keeps `value`, the checksum of the best `levels` of each side.
    pub(super) fn keep_checksum(&mut self, value: u32, levels: usize) {
        // The worst level read per side, when the side has more than that.
        let edge = |side: &Side<R>| {
            (side.len() > levels)
                .then(|| levels.checked_sub(1).and_then(|i| side.nth_rank(i)))
                .flatten()
        };
        self.memo = Some(ChecksumMemo {
            value,
            bid_edge: edge(&self.bids),
            ask_edge: edge(&self.asks),
        });
    }

    pub(super) fn known_depth(&self) -> (usize, usize) {
        let known = |side: &Side<R>, edge: Option<R>| match edge {
            None => side.len(),
            Some(rank) => side.count_at_or_above(rank),
        };
        (
            known(&self.bids, self.known_bid_floor),
            known(&self.asks, self.known_ask_ceiling),
        )
    }

    pub(super) fn best_bid(&self) -> Option<Level> {
        self.bids.best_level()
    }

    pub(super) fn best_ask(&self) -> Option<Level> {
        self.asks.best_level()
    }

    pub(super) fn is_crossed(&self) -> bool {
        // Both keys are at the book's scale; an ask's rank is its key's complement.
        matches!((self.bids.best(), self.asks.best()), (Some((bid, _)), Some((ask, _))) if bid >= !ask)
    }

    pub(super) fn len(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    pub(super) fn bids(&self) -> impl Iterator<Item = &Level> + '_ {
        self.bids.iter()
    }

    pub(super) fn asks(&self) -> impl Iterator<Item = &Level> + '_ {
        self.asks.iter()
    }

    /// The best `depth` bids and asks.
    pub(super) fn best_levels(&self, depth: usize) -> (Vec<Level>, Vec<Level>) {
        (self.bids.best_levels(depth), self.asks.best_levels(depth))
    }

    #[inline]
    fn bid_rank(&mut self, price: Price) -> Result<R, Unfit> {
        self.key(price)
    }

    #[inline]
    fn ask_rank(&mut self, price: Price) -> Result<R, Unfit> {
        self.key(price).map(|key| !key)
    }

    /// `price` at the book's scale, moving the book to a finer scale first when the
    /// price has more decimals than any before it.
    #[inline]
    fn key(&mut self, price: Price) -> Result<R, Unfit> {
        if let Some(key) = key_at(price, self.scale) {
            return Ok(key);
        }
        let scale = price.value().scale();
        if scale > self.scale {
            self.rescale(scale, price)?;
        }
        key_at(price, self.scale).ok_or(Unfit(price))
    }

    /// Moves every rank to `scale` (finer than the book's), or leaves the book as it was
    /// when its largest price would not fit there (`price` is the one that asked).
    fn rescale(&mut self, scale: u32, price: Price) -> Result<(), Unfit> {
        // The largest keys: the best bid, the worst ask, and the known edges.
        let largest = [
            self.bids.best().map(|(r, _)| r),
            self.known_bid_floor,
            self.asks.worst_rank().map(|r| !r),
            self.known_ask_ceiling.map(|r| !r),
        ];
        if largest.iter().flatten().next().is_some() {
            let factor = R::from_key(POW10[(scale - self.scale) as usize]).ok_or(Unfit(price))?;
            if largest
                .iter()
                .flatten()
                .any(|key| key.checked_times(factor).is_none())
            {
                return Err(Unfit(price));
            }
            // Every key fits at the new scale, so these multiplications do not overflow.
            self.bids.rerank(|r| r * factor);
            self.asks.rerank(|r| !(!r * factor));
            self.known_bid_floor = self.known_bid_floor.map(|r| r * factor);
            self.known_ask_ceiling = self.known_ask_ceiling.map(|r| !(!r * factor));
        }
        self.memo = None;
        self.scale = scale;
        Ok(())
    }
}

impl Ranked<u64> {
    /// The same book at `u128` ranks (without its kept checksum).
    pub(super) fn widen(&self) -> Ranked<u128> {
        let ask = |r: u64| !u128::from(!r);
        Ranked {
            bids: self.bids.convert(u128::from),
            asks: self.asks.convert(ask),
            scale: self.scale,
            known_bid_floor: self.known_bid_floor.map(u128::from),
            known_ask_ceiling: self.known_ask_ceiling.map(ask),
            memo: None,
        }
    }
}
