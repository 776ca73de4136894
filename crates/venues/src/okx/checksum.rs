//! OKX's order book checksum: CRC32 of the best 25 levels of each side, interleaved.
//!
//! The rule (OKX "WS / Order book channel", section "Checksum", as the v5 pages gave it
//! until the field's deprecation; OKEx's v3 depth docs gave the same rule and examples):
//! * take the best 25 bids and the best 25 asks of the book after the message;
//! * write each level as `price:size`, with the exchange's own strings (so `"3366.10"`
//!   stays `3366.10`: the exchange computes on its text, not on the number);
//! * interleave them `bid:ask:bid:ask:…`; when one side has fewer than 25 levels, its
//!   missing levels are left out and the other side's follow
//!   (`bid:ask:ask:ask:…`);
//! * join everything with `:` and take the CRC32 (IEEE, as zlib's `crc32`) of the
//!   bytes, read as a signed 32-bit integer. Raven compares the unsigned bits.
//!
//! The docs' worked examples: `3366.1:7:3366.8:9:3366:6:3368:8` → `-1881014294` and
//! `3366.1:7:3366.8:9:3368:8:3372:8` → `831078360` (tested below).
//!
//! **Deprecated on 2026-06-23.** OKX's changelog of that day ("Order book channels
//! checksum field deprecation", announced 2026-05-21, demo 2026-06-02): the `checksum`
//! field stays in `books`, `books-l2-tbt` and `books50-l2-tbt` snapshots and updates
//! but is always `0`; continuity rests on `seqId`/`prevSeqId` alone. The parser treats
//! `0` as "no checksum" ([`super::book`]), so this function only runs on feeds that
//! still carry one, such as the 2022 recording.
//!
//! Cost: this runs after every book message, so the text is never formatted on its
//! own: each price and size is written ([`DecimalText::write`]) straight into a stack
//! buffer, which goes to the CRC (crc32fast, hardware-accelerated) whenever it is
//! nearly full and at the end. Nothing is allocated or copied twice.

use raven_model::book::OrderBook;
use raven_model::{DecimalText, Level};

/// Levels per side in the checksum.
pub const CHECKSUM_LEVELS: usize = 25;

/// OKX's checksum of `book`, as the unsigned bits of the signed CRC32.
pub fn checksum(book: &OrderBook) -> u32 {
    let mut text = Text::new();
    let mut bids = book.bids().take(CHECKSUM_LEVELS);
    let mut asks = book.asks().take(CHECKSUM_LEVELS);
    loop {
        let (bid, ask) = (bids.next(), asks.next());
        if bid.is_none() && ask.is_none() {
            break;
        }
        for level in [bid, ask].into_iter().flatten() {
            text.level(level);
        }
    }
    text.finish()
}

/// CRC32 (IEEE 802.3, reflected, polynomial 0xEDB88320) of `bytes`: zlib's `crc32`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The most one level adds: `price:size:`.
const LEVEL_MAX: usize = 2 * (DecimalText::MAX + 1);

/// The checksum text, `price:size:` per level, fed to the CRC in long runs (its SIMD
/// path needs them).
struct Text {
    hasher: crc32fast::Hasher,
    buf: [u8; 1024],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Self {
            hasher: crc32fast::Hasher::new(),
            buf: [0; 1024],
            len: 0,
        }
    }

    fn level(&mut self, level: Level) {
        if self.len + LEVEL_MAX > self.buf.len() {
            self.hasher.update(&self.buf[..self.len]);
            self.len = 0;
        }
        self.value(level.price.value());
        self.value(level.qty.value());
    }

    /// One value and its `:`; [`Text::level`] made the room.
    fn value(&mut self, value: rust_decimal::Decimal) {
        let slot = &mut self.buf[self.len..self.len + DecimalText::MAX];
        if let Ok(slot) = <&mut [u8; DecimalText::MAX]>::try_from(slot) {
            let written = DecimalText::write(value, slot);
            // A text is shorter than its slot: the separator fits after it.
            self.buf[self.len + written] = b':';
            self.len += written + 1;
        }
    }

    /// The CRC of everything written, without the last `:`.
    fn finish(mut self) -> u32 {
        self.hasher.update(&self.buf[..self.len.saturating_sub(1)]);
        self.hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{BookLevels, Level, Price, Qty};

    fn book(bids: &[(&str, &str)], asks: &[(&str, &str)]) -> OrderBook {
        let lv = |&(p, q): &(&str, &str)| Level {
            price: Price::parse(p).unwrap(),
            qty: Qty::parse(q).unwrap(),
        };
        let mut b = OrderBook::new();
        b.apply_snapshot(
            &BookLevels {
                bids: bids.iter().map(lv).collect(),
                asks: asks.iter().map(lv).collect(),
                first_update_id: 0,
                last_update_id: 0,
            },
            None,
        )
        .unwrap();
        b
    }

    fn signed(v: u32) -> i32 {
        v as i32
    }

    #[test]
    fn crc32_is_zlib_s() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn the_docs_worked_examples() {
        assert_eq!(
            signed(crc32(b"3366.1:7:3366.8:9:3366:6:3368:8")),
            -1_881_014_294
        );
        let both = book(
            &[("3366.1", "7"), ("3366", "6")],
            &[("3366.8", "9"), ("3368", "8")],
        );
        assert_eq!(signed(checksum(&both)), -1_881_014_294);
        // One side shorter: its missing levels are skipped.
        let short = book(
            &[("3366.1", "7")],
            &[("3366.8", "9"), ("3368", "8"), ("3372", "8")],
        );
        assert_eq!(signed(checksum(&short)), 831_078_360);
    }

    #[test]
    fn only_the_best_25_of_each_side_count() {
        let prices: Vec<String> = (0..40).map(|i| format!("{}", 100 - i)).collect();
        let asks: Vec<String> = (0..40).map(|i| format!("{}", 200 + i)).collect();
        let deep = book(
            &prices.iter().map(|p| (p.as_str(), "1")).collect::<Vec<_>>(),
            &asks.iter().map(|p| (p.as_str(), "2")).collect::<Vec<_>>(),
        );
        let top = book(
            &prices[..25]
                .iter()
                .map(|p| (p.as_str(), "1"))
                .collect::<Vec<_>>(),
            &asks[..25]
                .iter()
                .map(|p| (p.as_str(), "2"))
                .collect::<Vec<_>>(),
        );
        assert_eq!(checksum(&deep), checksum(&top));
        let text: Vec<String> = (0..25)
            .map(|i| format!("{}:1:{}:2", prices[i], asks[i]))
            .collect();
        assert_eq!(checksum(&deep), crc32(text.join(":").as_bytes()));
    }

    #[test]
    fn the_exchange_s_text_is_kept_trailing_zeros_and_all() {
        // OKX computes on its strings: "1.10" and "1.1" are different checksums.
        let a = book(&[("1.10", "2.500")], &[("1.20", "0.0100")]);
        assert_eq!(checksum(&a), crc32(b"1.10:2.500:1.20:0.0100"));
        let b = book(&[("1.1", "2.5")], &[("1.2", "0.01")]);
        assert_eq!(checksum(&b), crc32(b"1.1:2.5:1.2:0.01"));
        assert_ne!(checksum(&a), checksum(&b));
        // Only asks, and an empty book.
        assert_eq!(checksum(&book(&[], &[("5", "1")])), crc32(b"5:1"));
        assert_eq!(checksum(&OrderBook::new()), 0);
    }

    #[test]
    fn a_long_text_streams_through_the_buffer() {
        // 50 levels of wide numbers overflow the 1 KiB buffer several times.
        let bids: Vec<String> = (0..25)
            .map(|i| format!("{}.123456789012345678", 900_000 - i))
            .collect();
        let asks: Vec<String> = (0..25)
            .map(|i| format!("{}.123456789012345678", 900_100 + i))
            .collect();
        let size = "123456.123456789012345678";
        let b = book(
            &bids.iter().map(|p| (p.as_str(), size)).collect::<Vec<_>>(),
            &asks.iter().map(|p| (p.as_str(), size)).collect::<Vec<_>>(),
        );
        let text: Vec<String> = (0..25)
            .map(|i| format!("{}:{size}:{}:{size}", bids[i], asks[i]))
            .collect();
        let text = text.join(":");
        assert!(text.len() > 2048);
        assert_eq!(checksum(&b), crc32(text.as_bytes()));
    }
}
