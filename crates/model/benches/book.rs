//! What a book update costs, per level, on a deep book.
//!
//! The hub applies every depth diff of every instrument on its hot path, so the cost that
//! matters is nanoseconds per level on a book as deep as Binance's REST snapshot (5 000
//! levels a side). Two delta shapes bound it: changes near the touch (the common case,
//! and the one that refreshes the cached best price) and changes spread across the whole
//! depth (the worst case for cache locality). Each shape is measured twice: quantity
//! updates of existing levels, and removals plus re-insertions, which change the tree's
//! shape. Every cycle of deltas leaves the book as it found it, so the book's depth is
//! the same for every iteration. Throughput is in levels, so criterion reports the time
//! per level directly.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raven_model::book::OrderBook;
use raven_model::{BookLevels, Level, Price, Qty};
use rust_decimal::Decimal;

const DEPTH: usize = 5_000;
/// Levels per side in one delta: a busy 100 ms Binance diff.
const PER_SIDE: usize = 10;
/// The best bid, in ticks of 0.01; the best ask is one tick above.
const MID_TICKS: i64 = 10_000_000;

fn bid(offset: usize) -> Price {
    Price::new(Decimal::new(MID_TICKS - offset as i64, 2)).unwrap()
}

fn ask(offset: usize) -> Price {
    Price::new(Decimal::new(MID_TICKS + 1 + offset as i64, 2)).unwrap()
}

fn qty(units: i64) -> Qty {
    Qty::new(Decimal::new(units, 3)).unwrap()
}

fn deep_book() -> OrderBook {
    let mut book = OrderBook::new();
    book.apply_snapshot(
        &BookLevels {
            bids: (0..DEPTH)
                .map(|i| Level {
                    price: bid(i),
                    qty: qty(1_000 + i as i64),
                })
                .collect(),
            asks: (0..DEPTH)
                .map(|i| Level {
                    price: ask(i),
                    qty: qty(1_000 + i as i64),
                })
                .collect(),
            first_update_id: 1,
            last_update_id: 1,
        },
        None,
    )
    .unwrap();
    book
}

/// One delta setting `qty` (zero removes) at the given offsets from the touch, both sides.
fn delta(offsets: &[usize], qty: Qty) -> BookLevels {
    BookLevels {
        bids: offsets
            .iter()
            .map(|&o| Level { price: bid(o), qty })
            .collect(),
        asks: offsets
            .iter()
            .map(|&o| Level { price: ask(o), qty })
            .collect(),
        first_update_id: 2,
        last_update_id: 2,
    }
}

/// Applies `cycle` round-robin, one delta per iteration.
fn bench_cycle(c: &mut Criterion, group: &str, name: &str, cycle: &[BookLevels]) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements((2 * PER_SIDE) as u64));
    let mut book = deep_book();
    let mut next = 0;
    g.bench_function(name, |b| {
        b.iter(|| {
            let d = &cycle[next];
            next = (next + 1) % cycle.len();
            black_box(book.apply_delta(black_box(d)).unwrap())
        })
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    let near: Vec<usize> = (0..PER_SIDE).collect();
    let spread: Vec<usize> = (0..PER_SIDE).map(|i| i * (DEPTH / PER_SIDE) + 7).collect();
    for (shape, offsets) in [("near_touch", &near), ("spread", &spread)] {
        let group = format!("apply_delta_5k/{shape}");
        let updates = [delta(offsets, qty(2_500)), delta(offsets, qty(3_500))];
        bench_cycle(c, &group, "update", &updates);
        let churn = [delta(offsets, Qty::ZERO), delta(offsets, qty(2_500))];
        bench_cycle(c, &group, "remove_reinsert", &churn);
    }
}

fn read(c: &mut Criterion) {
    let book = deep_book();
    let mut g = c.benchmark_group("snapshot_5k");
    for depth in [20, 0] {
        let levels = if depth == 0 { 2 * DEPTH } else { 2 * depth };
        g.throughput(Throughput::Elements(levels as u64));
        g.bench_with_input(BenchmarkId::from_parameter(depth), &depth, |b, &depth| {
            b.iter(|| black_box(book.snapshot(depth)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("best_bid_5k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("read", |b| {
        b.iter(|| black_box(black_box(&book).best_bid()))
    });
    g.finish();
}

criterion_group!(benches, apply, read);
criterion_main!(benches);
