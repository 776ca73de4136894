//! Property tests: the order book against the simplest model that could be right, and the
//! decimal types' text round trip.
//!
//! The reference book is a `BTreeMap<Price, Qty>` per side with no caching and no
//! shortcuts; every query is recomputed from the maps. Prices are drawn from small,
//! overlapping grids so that random deltas collide with existing levels, remove levels
//! the book never held, and sometimes cross the book, all of which the real book must
//! handle.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use proptest::prelude::*;
use raven_model::book::OrderBook;
use raven_model::feed::{BookChecks, BookChecksum, BookRejected, BookUpdate};
use raven_model::{BookLevels, Level, Price, Qty};
use rust_decimal::Decimal;

#[derive(Default)]
struct Reference {
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    /// The worst bid and ask of the last snapshot when its side came back full (its
    /// source may hold more beyond): levels past them are not known to be complete.
    bid_floor: Option<Price>,
    ask_ceiling: Option<Price>,
}

impl Reference {
    fn snapshot(&mut self, s: &BookLevels, limit: Option<usize>) {
        self.bids.clear();
        self.asks.clear();
        for l in &s.bids {
            if !l.qty.is_zero() {
                self.bids.insert(l.price, l.qty);
            }
        }
        for l in &s.asks {
            if !l.qty.is_zero() {
                self.asks.insert(l.price, l.qty);
            }
        }
        let full = |side: &[Level]| limit.is_some_and(|n| side.len() >= n);
        self.bid_floor = if full(&s.bids) {
            self.bids.keys().min().copied()
        } else {
            None
        };
        self.ask_ceiling = if full(&s.asks) {
            self.asks.keys().max().copied()
        } else {
            None
        };
    }

    fn known_depth(&self) -> (usize, usize) {
        let bids = self
            .bids
            .keys()
            .filter(|p| self.bid_floor.is_none_or(|f| **p >= f))
            .count();
        let asks = self
            .asks
            .keys()
            .filter(|p| self.ask_ceiling.is_none_or(|c| **p <= c))
            .count();
        (bids, asks)
    }

    /// Returns the number of removals of prices the side did not hold.
    fn delta(&mut self, d: &BookLevels) -> usize {
        let mut unknown = 0;
        for (side, levels) in [(&mut self.bids, &d.bids), (&mut self.asks, &d.asks)] {
            for l in levels {
                if l.qty.is_zero() {
                    if side.remove(&l.price).is_none() {
                        unknown += 1;
                    }
                } else {
                    side.insert(l.price, l.qty);
                }
            }
        }
        unknown
    }

    fn best_bid(&self) -> Option<Level> {
        self.bids
            .iter()
            .max_by_key(|(p, _)| **p)
            .map(|(p, q)| Level { price: *p, qty: *q })
    }

    fn best_ask(&self) -> Option<Level> {
        self.asks
            .iter()
            .min_by_key(|(p, _)| **p)
            .map(|(p, q)| Level { price: *p, qty: *q })
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// With the most levels per side its source returns (`None`: the whole book).
    Snapshot(BookLevels, Option<usize>),
    Delta(BookLevels),
}

/// A price on a tick grid (0.1 apart), written at a random scale ("1.5", "1.50", "1.500")
/// so that numerically equal prices with different text must land on the same level.
/// One in ten carries 20 more zeros ("1.500…0", 21 decimals): beside "40" that needs
/// more than a `u64`, so books widen their ranks in the middle of deltas too.
fn price(ticks: std::ops::RangeInclusive<i64>) -> impl Strategy<Value = Price> {
    let extra = prop_oneof![9 => 0u32..3, 1 => Just(20u32)];
    (ticks, extra).prop_map(|(ticks, extra)| {
        let mantissa = i128::from(ticks) * 10i128.pow(extra);
        Price::new(Decimal::from_i128_with_scale(mantissa, 1 + extra)).unwrap()
    })
}

/// Zero a third of the time: a removal.
fn qty() -> impl Strategy<Value = Qty> {
    prop_oneof![
        1 => Just(Qty::ZERO),
        2 => (1i64..=1000, 0u32..4).prop_map(|(m, s)| Qty::new(Decimal::new(m, s)).unwrap()),
    ]
}

fn levels(ticks: std::ops::RangeInclusive<i64>, max: usize) -> impl Strategy<Value = Vec<Level>> {
    prop::collection::vec(
        (price(ticks), qty()).prop_map(|(price, qty)| Level { price, qty }),
        0..max,
    )
}

fn book_levels(max: usize) -> impl Strategy<Value = BookLevels> {
    // Bids and asks overlap on ticks 19..=20 only: most books are not crossed, some are.
    (levels(1..=20, max), levels(19..=40, max), any::<u64>()).prop_map(|(bids, asks, id)| {
        BookLevels {
            bids,
            asks,
            first_update_id: id,
            last_update_id: id,
        }
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let limit = prop::option::of(1usize..=30);
    let op = prop_oneof![
        1 => (book_levels(30), limit.clone()).prop_map(|(s, l)| Op::Snapshot(s, l)),
        12 => book_levels(8).prop_map(Op::Delta),
    ];
    (book_levels(30), limit, prop::collection::vec(op, 0..60)).prop_map(
        |(first, limit, mut rest)| {
            rest.insert(0, Op::Snapshot(first, limit));
            rest
        },
    )
}

/// The book's touch tier: tiny ones make every spill and refill between its tiers
/// happen within a test's few dozen levels; the default holds them all in the tier.
fn touch_levels() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(2usize),
        Just(3),
        Just(5),
        Just(raven_model::book::DEFAULT_TOUCH_LEVELS)
    ]
}

fn check_sorted(snap: &BookLevels, depth: usize) -> Result<(), TestCaseError> {
    if depth > 0 {
        prop_assert!(snap.bids.len() <= depth && snap.asks.len() <= depth);
    }
    prop_assert!(snap.bids.windows(2).all(|w| w[0].price > w[1].price));
    prop_assert!(snap.asks.windows(2).all(|w| w[0].price < w[1].price));
    prop_assert!(snap.bids.iter().chain(&snap.asks).all(|l| !l.qty.is_zero()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn book_matches_the_reference(ops in ops(), depth in 0usize..12, touch in touch_levels()) {
        let mut book = OrderBook::with_touch_levels(touch);
        let mut reference = Reference::default();
        for op in &ops {
            let last_id = match op {
                Op::Snapshot(s, limit) => {
                    book.apply_snapshot(s, *limit).unwrap();
                    reference.snapshot(s, *limit);
                    s.last_update_id
                }
                Op::Delta(d) => {
                    let outcome = book.apply_delta(d).unwrap();
                    let unknown = reference.delta(d);
                    prop_assert_eq!(outcome.unknown_removals, unknown);
                    prop_assert_eq!(outcome.levels_applied, d.bids.len() + d.asks.len());
                    d.last_update_id
                }
            };
            prop_assert_eq!(book.last_update_id(), last_id);

            let best_bid = reference.best_bid();
            let best_ask = reference.best_ask();
            prop_assert_eq!(book.best_bid(), best_bid);
            prop_assert_eq!(book.best_ask(), best_ask);
            let crossed = matches!((best_bid, best_ask), (Some(b), Some(a)) if b.price >= a.price);
            prop_assert_eq!(book.is_crossed(), crossed);
            prop_assert_eq!(book.len(), (reference.bids.len(), reference.asks.len()));
            prop_assert_eq!(book.known_depth(), reference.known_depth());
            prop_assert_eq!(book.is_empty(), reference.bids.is_empty() && reference.asks.is_empty());

            let full = book.snapshot(0);
            check_sorted(&full, 0)?;
            let ref_bids: Vec<Level> = reference
                .bids
                .iter()
                .rev()
                .map(|(p, q)| Level { price: *p, qty: *q })
                .collect();
            let ref_asks: Vec<Level> = reference
                .asks
                .iter()
                .map(|(p, q)| Level { price: *p, qty: *q })
                .collect();
            prop_assert_eq!(&full.bids, &ref_bids);
            prop_assert_eq!(&full.asks, &ref_asks);
            prop_assert_eq!(book.bids().collect::<Vec<_>>(), ref_bids.clone());
            prop_assert_eq!(book.asks().collect::<Vec<_>>(), ref_asks.clone());

            let top = book.snapshot(depth);
            check_sorted(&top, depth)?;
            let n = if depth == 0 { usize::MAX } else { depth };
            prop_assert_eq!(&top.bids[..], &ref_bids[..ref_bids.len().min(n)]);
            prop_assert_eq!(&top.asks[..], &ref_asks[..ref_asks.len().min(n)]);
            prop_assert_eq!(top.last_update_id, last_id);
        }
    }
}

/// A checksum of the best `K` levels of each side, sensitive to their text (scale
/// included) as a venue's is.
fn top<const K: usize>(book: &OrderBook) -> u32 {
    let text: Vec<String> = book
        .bids()
        .take(K)
        .chain(book.asks().take(K))
        .map(|l| format!("{}:{}", l.price, l.qty))
        .collect();
    hash_of(&text) as u32
}

fn rule(levels: usize) -> BookChecksum {
    let compute = match levels {
        1 => top::<1>,
        2 => top::<2>,
        3 => top::<3>,
        4 => top::<4>,
        _ => top::<5>,
    };
    BookChecksum {
        levels: levels.clamp(1, 5),
        compute,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The book keeps its checksum while updates miss the levels it reads: what it
    /// answers must always be what computing afresh gives, with a top-N depth cut or
    /// without.
    #[test]
    fn a_kept_checksum_is_the_fresh_one(
        ops in ops(),
        levels in 1usize..=5,
        depth in prop::option::of(1usize..=8),
        touch in touch_levels(),
    ) {
        let checksum = rule(levels);
        let mut book = OrderBook::with_touch_levels(touch);
        let mut fresh = OrderBook::new();
        for op in ops {
            let update = match op {
                Op::Snapshot(levels, limit) => BookUpdate::Snapshot { levels, limit },
                Op::Delta(levels) => BookUpdate::Delta(levels),
            };
            let unchecked = BookChecks { depth, checksum: None };
            let _ = fresh.apply_checked(&mut update.clone(), &unchecked);
            let expected = (checksum.compute)(&fresh);
            let checks = BookChecks { depth, checksum: Some((expected, checksum)) };
            match book.apply_checked(&mut update.clone(), &checks) {
                Ok(()) | Err(BookRejected::Crossed) => {}
                Err(other) => prop_assert!(false, "{other}"),
            }
            prop_assert_eq!(book.bids().collect::<Vec<_>>(), fresh.bids().collect::<Vec<_>>());
            prop_assert_eq!(book.asks().collect::<Vec<_>>(), fresh.asks().collect::<Vec<_>>());
        }
    }
}

/// A canonical decimal string: no leading zeros, `scale` fraction digits (trailing zeros
/// kept), at most 28 significant digits so it fits a `Decimal` exactly.
fn decimal_text() -> impl Strategy<Value = (String, u32)> {
    (
        0u64..10_000_000_000,
        0u64..1_000_000_000_000_000_000,
        0u32..=18,
    )
        .prop_map(|(int, frac, scale)| {
            if scale == 0 {
                (int.to_string(), 0)
            } else {
                let frac = frac % 10u64.pow(scale);
                (
                    format!("{int}.{frac:0width$}", width = scale as usize),
                    scale,
                )
            }
        })
}

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decimal_text_round_trips((text, scale) in decimal_text()) {
        let qty = Qty::parse(&text).unwrap();
        prop_assert_eq!(qty.to_string(), text.clone());
        let qty_text = qty.text();
        prop_assert_eq!(qty_text.as_str(), text.as_str());
        prop_assert_eq!(qty.value().scale(), scale);
        match Price::parse(&text) {
            Ok(price) => {
                prop_assert_eq!(price.to_string(), text.clone());
                prop_assert_eq!(price.value(), qty.value());
            }
            Err(_) => prop_assert!(qty.is_zero()),
        }
    }

    #[test]
    fn equal_values_at_different_scales_are_one_key(
        (text, scale) in decimal_text(),
        extra in 1usize..=9,
    ) {
        // Stay within Decimal's 28 significant digits: past them rust_decimal rounds.
        let digits = text.chars().filter(char::is_ascii_digit).count();
        let extra = extra.min(28usize.saturating_sub(digits));
        prop_assume!(extra > 0);
        let padded = if scale == 0 {
            format!("{text}.{}", "0".repeat(extra))
        } else {
            format!("{text}{}", "0".repeat(extra))
        };
        let a = Qty::parse(&text).unwrap();
        let b = Qty::parse(&padded).unwrap();
        prop_assert_eq!(b.to_string(), padded.clone());
        prop_assert_eq!(a, b);
        prop_assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        prop_assert_eq!(hash_of(&a), hash_of(&b));
        if let (Ok(pa), Ok(pb)) = (Price::parse(&text), Price::parse(&padded)) {
            prop_assert_eq!(pa, pb);
            prop_assert_eq!(hash_of(&pa), hash_of(&pb));
            let mut side = BTreeMap::new();
            side.insert(pa, a);
            side.insert(pb, b);
            prop_assert_eq!(side.len(), 1);
        }
    }

    #[test]
    fn ordering_is_numeric((x, _) in decimal_text(), (y, _) in decimal_text()) {
        let (a, b) = (Qty::parse(&x).unwrap(), Qty::parse(&y).unwrap());
        prop_assert_eq!(a.cmp(&b), fixed_point(&x).cmp(&fixed_point(&y)));
    }

    #[test]
    fn price_ordering_is_numeric((x, _) in decimal_text(), (y, _) in decimal_text()) {
        prop_assume!(fixed_point(&x) > 0 && fixed_point(&y) > 0);
        let (a, b) = (Price::parse(&x).unwrap(), Price::parse(&y).unwrap());
        prop_assert_eq!(a.cmp(&b), fixed_point(&x).cmp(&fixed_point(&y)));
        prop_assert_eq!(a.cmp(&b) == std::cmp::Ordering::Equal, a == b);
    }

    /// Any mantissa a `Decimal` holds, at any two scales: the rescaling comparison is
    /// `Decimal`'s, including where it overflows and falls back.
    #[test]
    fn price_ordering_is_decimal_ordering(
        a in 1u128..(1 << 96), sa in 0u32..=28,
        b in 1u128..(1 << 96), sb in 0u32..=28,
        shift_a in 0u32..96, shift_b in 0u32..96,
    ) {
        // Mantissas of every width, not only near 2^96.
        let d = |m: u128, shift: u32, s: u32| {
            Decimal::from_i128_with_scale((m >> shift).max(1) as i128, s)
        };
        let (x, y) = (d(a, shift_a, sa), d(b, shift_b, sb));
        let (px, py) = (Price::new(x).unwrap(), Price::new(y).unwrap());
        prop_assert_eq!(px.cmp(&py), x.cmp(&y));
        prop_assert_eq!(px.cmp(&py) == std::cmp::Ordering::Equal, px == py);
    }
}

/// An independent oracle for ordering: the text as an integer count of 1e-18 units.
fn fixed_point(text: &str) -> u128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let int: u128 = int.parse().unwrap();
    let frac_units: u128 = format!("{frac:0<18}").parse().unwrap();
    int * 10u128.pow(18) + frac_units
}
