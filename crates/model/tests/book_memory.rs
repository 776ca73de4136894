//! The order book's memory per level, measured with a counting allocator.
//!
//! Raven keeps a full-depth book (5 000+ levels a side) for every instrument it serves,
//! so the bytes a level costs decide how many instruments fit in a process. This test
//! pins the figure so that a change of representation that multiplies it is noticed. It
//! lives in its own test binary because it replaces the global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use raven_model::book::OrderBook;
use raven_model::{BookLevels, Level, Price, Qty};
use rust_decimal::Decimal;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged and only counts the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn bytes_per_level() {
    const DEPTH: i64 = 5_000;
    let level = |ticks: i64| Level {
        price: Price::new(Decimal::new(ticks, 2)).unwrap(),
        qty: Qty::new(Decimal::new(1_234, 3)).unwrap(),
    };
    let snapshot = BookLevels {
        bids: (0..DEPTH).map(|i| level(10_000_000 - i)).collect(),
        asks: (0..DEPTH).map(|i| level(10_000_001 + i)).collect(),
        first_update_id: 1,
        last_update_id: 1,
    };

    let before = LIVE.load(Ordering::Relaxed);
    let mut book = OrderBook::new();
    book.apply_snapshot(&snapshot, None).unwrap();
    let used = LIVE.load(Ordering::Relaxed) - before;
    let levels = 2 * DEPTH as usize;
    let per_level = used / levels;
    println!("order book: {used} bytes for {levels} levels = ~{per_level} bytes/level");

    // A price and a quantity are 16 bytes each; the B-tree adds node overhead and slack.
    assert!(per_level >= 32, "{per_level}");
    assert!(per_level <= 96, "{per_level} bytes per level");
    drop(book);
}
