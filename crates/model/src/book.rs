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

use std::collections::BTreeMap;

use crate::{BookLevels, Level, Price, Qty};

#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    best_bid: Option<Level>,
    best_ask: Option<Level>,
    last_update_id: u64,
}

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
    pub fn apply_snapshot(&mut self, snapshot: &BookLevels) {
        self.bids.clear();
        self.asks.clear();
        for l in snapshot.bids.iter().filter(|l| !l.qty.is_zero()) {
            self.bids.insert(l.price, l.qty);
        }
        for l in snapshot.asks.iter().filter(|l| !l.qty.is_zero()) {
            self.asks.insert(l.price, l.qty);
        }
        self.last_update_id = snapshot.last_update_id;
        self.refresh_best_bid();
        self.refresh_best_ask();
    }

    /// Applies a batch of level changes: a positive quantity sets the level, zero removes it.
    pub fn apply_delta(&mut self, delta: &BookLevels) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let mut bid_touched = false;
        for l in &delta.bids {
            bid_touched |= self.best_bid.is_none_or(|b| l.price >= b.price);
            out.unknown_removals += usize::from(set_level(&mut self.bids, *l));
        }
        let mut ask_touched = false;
        for l in &delta.asks {
            ask_touched |= self.best_ask.is_none_or(|a| l.price <= a.price);
            out.unknown_removals += usize::from(set_level(&mut self.asks, *l));
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
