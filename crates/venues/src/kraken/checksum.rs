//! Kraken's book checksum: how Raven proves its copy of a Kraken book is the exchange's.
//!
//! Kraken v1 numbers nothing per book, so a lost update would go unseen but for this
//! checksum, which every update message carries in `"c"` (never the snapshot). The rule,
//! from "Book checksum (WebSocket v1)" (docs.kraken.com/exchange/guides/websockets/
//! book-checksum-v1, seen 2026-08; the same rule as the legacy v1 page, and the v2 page
//! keeps it):
//! 1. apply every level of the message first (and cut the book to the subscribed depth);
//! 2. for each of the best 10 asks, lowest price first, take the price text, remove the
//!    `.`, strip the leading zeros (`"0.05000"` → `"5000"`), then the same for the
//!    volume, and append price then volume; timestamps are not included;
//! 3. the same for the best 10 bids, highest price first, appended after the asks;
//! 4. CRC-32 of that string, as an unsigned 32-bit integer; the message has it as a
//!    decimal string (`"c":"974947235"`).
//!
//! The texts are the exchange's own: [`raven_model::Price`] and [`raven_model::Qty`] keep
//! the scale they were parsed with, so `"0.05000"` is held as 5000 × 10⁻⁵, trailing zeros
//! included, and never becomes scientific notation (the bug other clients hit by
//! formatting parsed floats). A side with fewer than 10 levels contributes what it has.
//!
//! Removing the point and the leading zeros of such a text leaves exactly the decimal
//! digits of its integer mantissa (`"0.05000"` → 5000, `"56218.30000"` → 5621830000), so
//! that is what is written ([`DecimalText::write_mantissa`]), straight into the
//! checksum's buffer, rather than formatting 40 texts and editing them after every book
//! message. The tests hold it to the literal rule.
//!
//! A level's price is the book's key, written as the message that created the level
//! wrote it; Kraken writes every price of a pair with the same number of decimals (which
//! may be more than the pair's REST `pair_decimals`: `XBT/CHF` has 1 there and
//! `"56218.30000"` on the wire), so an update's price text is the key's.

use raven_model::book::OrderBook;
use raven_model::DecimalText;
use rust_decimal::Decimal;

/// Levels per side the checksum covers, whatever the subscribed depth.
pub const CHECKSUM_DEPTH: usize = 10;

/// The checksum string of the best [`CHECKSUM_DEPTH`] levels of each side, built on the
/// stack: two values per level, each written in a slot of [`DecimalText::MAX`] bytes.
struct ChecksumText {
    buf: [u8; 2 * 2 * CHECKSUM_DEPTH * DecimalText::MAX],
    len: usize,
}

impl ChecksumText {
    /// Appends the text of `value` without its point and leading zeros: its mantissa's
    /// digits (nothing for zero), written in place.
    fn push(&mut self, value: Decimal) {
        let slot = self.buf.get_mut(self.len..self.len + DecimalText::MAX);
        if let Some(Ok(slot)) = slot.map(<&mut [u8; DecimalText::MAX]>::try_from) {
            self.len += DecimalText::write_mantissa(value, slot);
        }
    }
}

/// Kraken's checksum of `book` (see the module docs).
pub fn checksum(book: &OrderBook) -> u32 {
    let mut text = ChecksumText {
        buf: [0; 2 * 2 * CHECKSUM_DEPTH * DecimalText::MAX],
        len: 0,
    };
    // Asks, then bids (two loops: a chained iterator costs a branch per level).
    for level in book.asks().take(CHECKSUM_DEPTH) {
        text.push(level.price.value());
        text.push(level.qty.value());
    }
    for level in book.bids().take(CHECKSUM_DEPTH) {
        text.push(level.price.value());
        text.push(level.qty.value());
    }
    crc32fast::hash(&text.buf[..text.len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{BookLevels, Level, Price, Qty};

    fn lv(price: &str, qty: &str) -> Level {
        Level {
            price: Price::parse(price).unwrap(),
            qty: Qty::parse(qty).unwrap(),
        }
    }

    fn book(asks: &[(&str, &str)], bids: &[(&str, &str)]) -> OrderBook {
        let mut book = OrderBook::new();
        book.apply_snapshot(
            &BookLevels {
                bids: bids.iter().map(|(p, q)| lv(p, q)).collect(),
                asks: asks.iter().map(|(p, q)| lv(p, q)).collect(),
                ..BookLevels::default()
            },
            None,
        )
        .unwrap();
        book
    }

    #[test]
    fn the_documented_example() {
        // The book of Kraken's checksum guide, whose checksum it gives as 974947235.
        let v = "0.00000500";
        let asks = [
            "0.05005", "0.05010", "0.05015", "0.05020", "0.05025", "0.05030", "0.05035", "0.05040",
            "0.05045", "0.05050",
        ]
        .map(|p| (p, v));
        let bids = [
            "0.05000", "0.04995", "0.04990", "0.04980", "0.04975", "0.04970", "0.04965", "0.04960",
            "0.04955", "0.04950",
        ]
        .map(|p| (p, v));
        assert_eq!(checksum(&book(&asks, &bids)), 974_947_235);
    }

    #[test]
    fn a_recorded_update() {
        // KSM/XBT, 2021-04-17: the snapshot's best 10 per side, then
        // [3648,{"b":[["0.00753600","5.00000000","1618678133.567659"]],"c":"2884602505"},…]
        // whose new bid is below the best 10, so the checksum is the snapshot's.
        let asks = [
            ("0.00756500", "2.18055889"),
            ("0.00757200", "0.21000000"),
            ("0.00757600", "41.56388316"),
            ("0.00757700", "0.47100000"),
            ("0.00757900", "9.34778714"),
            ("0.00758200", "5.00000000"),
            ("0.00760500", "9.00000000"),
            ("0.00760600", "0.13453307"),
            ("0.00761100", "1.04974438"),
            ("0.00761400", "57.00000000"),
        ];
        let bids = [
            ("0.00755800", "0.37890103"),
            ("0.00755500", "1.08952000"),
            ("0.00755400", "0.56900000"),
            ("0.00755200", "2.27388316"),
            ("0.00755100", "2.17903000"),
            ("0.00755000", "0.63900000"),
            ("0.00754600", "4.54816772"),
            ("0.00754500", "39.41000000"),
            ("0.00754400", "3.26863000"),
            ("0.00754300", "4.80000000"),
        ];
        let mut b = book(&asks, &bids);
        b.apply_delta(&BookLevels {
            bids: vec![lv("0.00753600", "5.00000000")],
            ..BookLevels::default()
        })
        .unwrap();
        assert_eq!(checksum(&b), 2_884_602_505);
    }

    // Expected values below: Python's zlib.crc32 over the documented string, e.g.
    // "".join(f(p)+f(q) for p, q in levels) with f = lambda s: s.replace(".", "").lstrip("0").

    #[test]
    fn trailing_zeros_stay_and_integers_have_no_point() {
        // "100"+"1" + "10050"+"100000" + "99"+"250"
        let b = book(&[("100.50", "0.00100000"), ("100", "1")], &[("99", "25.0")]);
        assert_eq!(checksum(&b), 1_516_651_188);
    }

    #[test]
    fn a_short_or_empty_side_gives_what_it_has() {
        // No asks; one bid "0.000022890"/"31.75709827" → "22890" + "3175709827".
        let b = book(&[], &[("0.000022890", "31.75709827")]);
        assert_eq!(checksum(&b), 2_161_093_280);
        assert_eq!(checksum(&OrderBook::new()), 0);
    }

    #[test]
    fn mantissa_digits_are_the_text_without_point_and_leading_zeros() {
        // The documented rule, literally, on the exchange's text.
        fn literal(text: &str) -> String {
            text.replace('.', "").trim_start_matches('0').to_owned()
        }
        fn written(text: &str) -> String {
            let mut t = ChecksumText {
                buf: [0; 2 * 2 * CHECKSUM_DEPTH * DecimalText::MAX],
                len: 0,
            };
            t.push(Qty::parse(text).unwrap().value());
            String::from_utf8(t.buf[..t.len].to_vec()).unwrap()
        }
        for text in [
            "0",
            "0.0",
            "0.00000000",
            "1",
            "9",
            "10",
            "99",
            "100",
            "101",
            "0.05000",
            "0.000022900",
            "56218.30000",
            "0.00000001",
            "1234567890.123456789",
            "18446744073709551615",
            "79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "7.0",
        ] {
            assert_eq!(written(text), literal(text), "{text}");
        }
        for i in 0..20_000u64 {
            let text = format!("{}.{:08}", i * 7919 % 100_000, i * 104_729 % 100_000_000);
            assert_eq!(written(&text), literal(&text), "{text}");
        }
    }

    #[test]
    fn only_the_best_ten_count() {
        // Eleven asks 10.5 … 20.5; removing the best brings the eleventh in.
        let prices: Vec<String> = (10..21).map(|i| format!("{i}.5")).collect();
        let asks: Vec<(&str, &str)> = prices.iter().map(|p| (p.as_str(), "1.0")).collect();
        let mut b = book(&asks, &[]);
        let before = checksum(&b);
        b.apply_delta(&BookLevels {
            asks: vec![lv("10.5", "0")],
            ..BookLevels::default()
        })
        .unwrap();
        assert_eq!(checksum(&b), 2_250_337_087);
        assert_ne!(before, checksum(&b));
    }
}
