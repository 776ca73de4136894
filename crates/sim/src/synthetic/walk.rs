//! The random walk behind every synthetic market, whatever venue's frames it is written
//! in.
//!
//! A venue's format only decides how an event is spelled; what happens to a book must
//! be the same for every venue, or a load test on one venue would not say anything about
//! another. So this module owns the market itself: per symbol an integer-tick book
//! (price in ticks, size in lots) with its id counters, moved one small event at a time
//! by [`Walk::step`]:
//!
//! * **orders come and go**, touching one to three levels, mostly within a few ticks of
//!   the touch and sometimes deep in the book; a removal is a change to zero lots; each
//!   side is topped up or trimmed to about `levels` levels ([`maintain_depth`]);
//! * **trades** hit the touch, shrinking or removing it (never emptying a side: the walk
//!   needs a touch on both);
//! * **improvements** place a new level inside the spread, so the mid walks at random;
//! * rare **liquidations** (futures only, at most one per symbol per second, as Binance
//!   documents for its `@forceOrder` stream and Bybit's `allLiquidation` pushes at most
//!   too).
//!
//! Bids stay below asks by construction: levels are only placed on their own side of
//! the touch or strictly inside the spread. Every step that changes the book takes new
//! update ids: `u` grows by one per step on venues whose ids are per book and
//! contiguous (Bybit), by one to three on Binance, whose ids are shared by all symbols
//! of the exchange, so a symbol's ids jump. A cross sequence (`seq`) counts every event
//! of the symbol. What a step did comes back as a [`Step`], for the format to write.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::Rng;

/// One symbol's book in integer ticks and lots, with its id counters.
#[derive(Debug, Default)]
pub(super) struct Book {
    pub bids: BTreeMap<u64, u64>,
    pub asks: BTreeMap<u64, u64>,
    /// The update id of the last change (Binance `u`, Bybit `u`).
    pub last_u: u64,
    pub trade_id: u64,
    pub agg_id: u64,
    /// The symbol's cross sequence: one more for every event (Bybit `seq`, `cs`).
    pub seq: u64,
    /// When the last liquidation was sent (ms).
    last_liquidation_ms: u64,
    /// The last trade's price and the direction of the last price change.
    last_trade: Option<(u64, bool)>,
}

/// The best bid and ask, (price, lots) each.
pub(super) type Touch = (Option<(u64, u64)>, Option<(u64, u64)>);

impl Book {
    pub fn touch(&self) -> Touch {
        (
            self.bids.last_key_value().map(|(p, q)| (*p, *q)),
            self.asks.first_key_value().map(|(p, q)| (*p, *q)),
        )
    }

    /// The price of the last trade, if any.
    pub fn last_trade_price(&self) -> Option<u64> {
        self.last_trade.map(|(price, _)| price)
    }

    /// The mid price in units of `10^-scale` (rounded down) for a tick of
    /// `tick_decimals` decimals: exact when `scale` has one more decimal than the tick.
    pub fn mid(&self, tick_decimals: u32, scale: u32) -> Option<u64> {
        let (Some((bid, _)), Some((ask, _))) = self.touch() else {
            return None;
        };
        Some((bid + ask) * 10u64.pow(scale - tick_decimals) / 2)
    }
}

/// The level changes of one step, in order, one entry per price (lots 0: removed).
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub bids: Vec<(u64, u64)>,
    pub asks: Vec<(u64, u64)>,
}

impl Changes {
    fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// The bid (true) or ask changes.
    pub fn side(&mut self, bids: bool) -> &mut Vec<(u64, u64)> {
        if bids {
            &mut self.bids
        } else {
            &mut self.asks
        }
    }
}

/// How a trade's price moved from the previous trade's (Bybit's `L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TickDirection {
    Plus,
    ZeroPlus,
    Minus,
    ZeroMinus,
}

/// A market order that took (part of) the touch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trade {
    pub price: u64,
    pub lots: u64,
    /// The taker bought (took asks).
    pub buy: bool,
    pub tick: TickDirection,
}

/// The update ids of a step that changed the book: Binance's `U` (`first`), `u` and
/// `pu` (the previous `u`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ids {
    pub first: u64,
    pub u: u64,
    pub pu: u64,
}

/// A liquidation order: a sell that closed a long position at `price`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Liquidation {
    pub price: u64,
    pub lots: u64,
}

/// What one step did to a book.
#[derive(Debug, Default)]
pub(super) struct Step {
    pub trade: Option<Trade>,
    /// Set when the book changed; the changes are in the caller's [`Changes`].
    pub ids: Option<Ids>,
    /// The new touch, when it changed.
    pub touch: Option<((u64, u64), (u64, u64))>,
    pub liquidation: Option<Liquidation>,
}

/// The rules of one market's walk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Walk {
    /// About this many levels per side.
    pub levels: usize,
    /// Update ids jump by up to three per step (Binance) instead of one (Bybit).
    pub id_jumps: bool,
    /// Liquidations happen (futures).
    pub liquidations: bool,
}

impl Walk {
    /// One market event on `book` at `now_ms`; `changes` gets the level changes.
    pub fn step(
        &self,
        book: &mut Book,
        rng: &mut SmallRng,
        changes: &mut Changes,
        now_ms: u64,
    ) -> Step {
        let mut step = Step::default();
        let before = book.touch();
        let (Some((bid, _)), Some((ask, _))) = before else {
            return step;
        };
        changes.clear();
        let roll = rng.random_range(0..100u32);
        if roll < 10 {
            // A market order takes (part of) the touch on one side.
            let buy = rng.random_bool(0.5);
            let (side, ch, price) = if buy {
                (&mut book.asks, &mut changes.asks, ask)
            } else {
                (&mut book.bids, &mut changes.bids, bid)
            };
            let resting = side.get(&price).copied().unwrap_or(0);
            let mut lots = if rng.random_bool(0.3) {
                resting
            } else {
                rng.random_range(0..resting.max(1)) + 1
            };
            if side.len() == 1 {
                // Never empty a side: the walk needs a touch on both.
                lots = lots.min(resting.saturating_sub(1));
            }
            if lots > 0 {
                set(side, ch, price, resting - lots.min(resting));
                book.trade_id += 1;
                book.agg_id += 1;
                let tick = match book.last_trade {
                    Some((last, _)) if price > last => TickDirection::Plus,
                    Some((last, _)) if price < last => TickDirection::Minus,
                    Some((_, false)) => TickDirection::ZeroMinus,
                    Some((_, true)) | None => TickDirection::ZeroPlus,
                };
                let rose = matches!(tick, TickDirection::Plus | TickDirection::ZeroPlus);
                book.last_trade = Some((price, rose));
                step.trade = Some(Trade {
                    price,
                    lots,
                    buy,
                    tick,
                });
            }
        } else if roll < 18 && ask - bid > 1 {
            // A limit order improves one side inside the spread.
            let price = rng.random_range(bid + 1..ask);
            let lots = rng.random_range(1..=5_000);
            if rng.random_bool(0.5) {
                set(&mut book.bids, &mut changes.bids, price, lots);
            } else {
                set(&mut book.asks, &mut changes.asks, price, lots);
            }
        } else {
            // Orders come and go, mostly near the touch.
            for _ in 0..rng.random_range(1..=3) {
                let d = if rng.random_bool(0.85) {
                    rng.random_range(0..5u64)
                } else {
                    rng.random_range(0..(self.levels as u64 * 5 / 4).max(1))
                };
                let bid_side = rng.random_bool(0.5);
                let (side, ch, price) = if bid_side {
                    match bid.checked_sub(d).filter(|p| *p > 0) {
                        Some(p) => (&mut book.bids, &mut changes.bids, p),
                        None => continue,
                    }
                } else {
                    (&mut book.asks, &mut changes.asks, ask + d)
                };
                let lots = if side.contains_key(&price) && side.len() > 1 && rng.random_bool(0.3) {
                    0
                } else {
                    rng.random_range(1..=5_000)
                };
                set(side, ch, price, lots);
            }
        }
        maintain_depth(&mut book.bids, &mut changes.bids, self.levels, rng, true);
        maintain_depth(&mut book.asks, &mut changes.asks, self.levels, rng, false);
        book.seq += 1;
        if changes.is_empty() {
            return step;
        }
        let first = book.last_u + 1;
        let u = if self.id_jumps {
            first + rng.random_range(0..3)
        } else {
            first
        };
        step.ids = Some(Ids {
            first,
            u,
            pu: book.last_u,
        });
        book.last_u = u;
        debug_assert!(!matches!(book.touch(), (Some(b), Some(a)) if b.0 >= a.0));
        let after = book.touch();
        if after != before {
            if let (Some(b), Some(a)) = after {
                step.touch = Some((b, a));
            }
        }
        if self.liquidations
            && rng.random_ratio(1, 500)
            && now_ms >= book.last_liquidation_ms + 1000
        {
            book.last_liquidation_ms = now_ms;
            step.liquidation = Some(Liquidation {
                lots: rng.random_range(1..=100),
                price: if rng.random_bool(0.5) { bid } else { ask },
            });
        }
        step
    }
}

/// Sets (lots > 0) or removes (lots = 0) a level and records the change.
fn set(side: &mut BTreeMap<u64, u64>, changes: &mut Vec<(u64, u64)>, price: u64, lots: u64) {
    if lots == 0 {
        side.remove(&price);
    } else {
        side.insert(price, lots);
    }
    match changes.iter_mut().find(|(p, _)| *p == price) {
        Some(c) => c.1 = lots,
        None => changes.push((price, lots)),
    }
}

/// Tops a side up towards `levels` (one level per event, behind the worst) and trims it
/// when it grew a quarter beyond, so a side never holds more than `levels * 5 / 4`.
fn maintain_depth(
    side: &mut BTreeMap<u64, u64>,
    changes: &mut Vec<(u64, u64)>,
    levels: usize,
    rng: &mut SmallRng,
    bids: bool,
) {
    while side.len() > levels + levels / 4 {
        let worst = if bids {
            side.first_key_value()
        } else {
            side.last_key_value()
        };
        let Some((&p, _)) = worst else { break };
        set(side, changes, p, 0);
    }
    if side.len() < levels {
        let gap = rng.random_range(1..=3);
        let price = if bids {
            side.first_key_value()
                .and_then(|(p, _)| p.checked_sub(gap))
                .filter(|p| *p > 0)
        } else {
            side.last_key_value().map(|(p, _)| p + gap)
        };
        if let Some(p) = price {
            set(side, changes, p, rng.random_range(1..=5_000));
        }
    }
}

/// A book of about `levels` levels per side around a symbol-specific mid.
pub(super) fn initial_book(rng: &mut SmallRng, i: usize, levels: usize) -> Book {
    let mid = 100_000 + 7_919 * i as u64;
    let mut book = Book {
        last_u: 1_000_000 + rng.random_range(0..1_000_000),
        trade_id: 10_000,
        agg_id: 5_000,
        seq: 1_000_000_000 + rng.random_range(0..1_000_000),
        ..Book::default()
    };
    let mut d = 0;
    while book.bids.len() < levels && d < mid {
        if d == 0 || rng.random_bool(0.85) {
            book.bids.insert(mid - d, rng.random_range(1..=5_000));
        }
        d += 1;
    }
    d = 0;
    while book.asks.len() < levels {
        if d == 0 || rng.random_bool(0.85) {
            book.asks.insert(mid + 1 + d, rng.random_range(1..=5_000));
        }
        d += 1;
    }
    book
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Many steps: the book never crosses, keeps its depth, and its ids follow the rule.
    #[test]
    fn the_walk_keeps_books_sane_and_ids_in_order() {
        for id_jumps in [false, true] {
            let walk = Walk {
                levels: 40,
                id_jumps,
                liquidations: true,
            };
            let mut rng = SmallRng::seed_from_u64(3);
            let mut book = initial_book(&mut rng, 0, walk.levels);
            let mut changes = Changes::default();
            let (mut trades, mut liquidations) = (0, 0);
            for n in 0..20_000u64 {
                let last_u = book.last_u;
                let step = walk.step(&mut book, &mut rng, &mut changes, n * 10);
                if let Some(ids) = step.ids {
                    assert_eq!((ids.first, ids.pu), (last_u + 1, last_u));
                    assert!(ids.u >= ids.first && ids.u <= ids.first + 2);
                    if !id_jumps {
                        assert_eq!(ids.u, ids.first);
                    }
                    assert_eq!(book.last_u, ids.u);
                } else {
                    assert_eq!(book.last_u, last_u);
                }
                trades += usize::from(step.trade.is_some());
                liquidations += usize::from(step.liquidation.is_some());
                let (Some(b), Some(a)) = book.touch() else {
                    panic!("a side emptied")
                };
                assert!(b.0 < a.0, "crossed");
                assert!(book.bids.len() <= 50 && book.asks.len() <= 50);
            }
            assert!(trades > 1000 && liquidations > 5, "{trades} {liquidations}");
        }
    }
}
