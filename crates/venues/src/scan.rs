//! The byte cursor every frame scanner is written with.
//!
//! Each venue's busiest frames (book updates) come in one fixed, compact shape, and each
//! venue has a scanner that accepts exactly that shape and nothing else, falling back to
//! serde, the reference, on anything unexpected (module docs of each scanner). What
//! they read is the same few things — literal keys, strings without escapes, unsigned
//! and signed integers, decimal prices and sizes in quotes — so the cursor is written
//! once, here, and made fast for all:
//! * literals are matched as constants (`eat` is inlined at every call site, so each
//!   comparison is a few fixed-size loads rather than a `memcmp` call);
//! * a quoted price or size is read in one pass, digits straight into the mantissa
//!   ([`Price::parse_prefix`]), without first finding the closing quote; a text that
//!   is not of the plain form is read as a string and parsed by the model's general
//!   parser, so the result is always [`Price::parse`]'s.
//!
//! Every method returns `None` (or `false`) at the first byte that does not fit, and
//! never panics on any input.

use raven_model::{digit_run, Level, Price, Qty};

pub(crate) struct Cursor<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, i: 0 }
    }

    /// Every byte was read.
    pub fn at_end(&self) -> bool {
        self.i == self.text.len()
    }

    fn rest(&self) -> &'a [u8] {
        &self.text.as_bytes()[self.i..]
    }

    /// Skips `lit` if the text continues with it. A literal's length is a constant at
    /// every call site, so this is a few fixed-size loads and compares.
    #[inline(always)]
    pub fn eat<const N: usize>(&mut self, lit: &[u8; N]) -> bool {
        let hit = self.rest().first_chunk::<N>() == Some(lit);
        if hit {
            self.i += N;
        }
        hit
    }

    #[inline(always)]
    pub fn lit<const N: usize>(&mut self, lit: &[u8; N]) -> Option<()> {
        self.eat(lit).then_some(())
    }

    /// An unsigned integer without sign, exponent or leading zeros that fits a `u64`.
    #[inline]
    pub fn number(&mut self) -> Option<u64> {
        let rest = self.rest();
        let (n, digits) = digit_run(rest);
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        // Up to 19 digits always fit; 20 may (`u64::MAX` has 20): checked the slow way.
        let n = match digits {
            ..=19 => n,
            20 => rest[..20].iter().try_fold(0u64, |n, &b| {
                n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })?,
            _ => return None,
        };
        self.i += digits;
        Some(n)
    }

    /// A JSON integer (optional `-`, no leading zeros, no fraction or exponent) that
    /// fits an `i64`.
    #[inline]
    pub fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b"-");
        let n = self.number()?;
        // A fraction or exponent is not an integer.
        if matches!(self.rest().first(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        if negative {
            0i64.checked_sub_unsigned(n)
        } else {
            i64::try_from(n).ok()
        }
    }

    /// A string without escapes or control characters (no venue escapes the ids,
    /// times, prices or sizes these frames hold).
    #[inline]
    pub fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = self.rest();
        let len = string_len(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        // Quotes are ASCII, so both ends are char boundaries.
        let s = self.text.get(self.i..self.i + len)?;
        self.i += len + 1;
        Some(s)
    }

    /// A string that is most likely `likely` (the one read at the same place before:
    /// Coinbase repeats one `event_time` for every level of a frame): matched whole,
    /// without searching for its end; anything else is read as [`Cursor::string`].
    /// `likely` must be a string this cursor's text gave (so it has no quote or escape).
    #[inline]
    pub fn string_like(&mut self, likely: &'a str) -> Option<&'a str> {
        let n = likely.len();
        let rest = self.rest();
        let same = n > 0
            && rest.first() == Some(&b'"')
            && rest.get(1..=n) == Some(likely.as_bytes())
            && rest.get(n + 1) == Some(&b'"');
        if same {
            self.i += n + 2;
            return Some(likely);
        }
        self.string()
    }

    /// A price in quotes; `None` for a value the model refuses (the general parser
    /// then reports it).
    #[inline]
    pub fn price(&mut self) -> Option<Price> {
        self.quoted(Price::parse_prefix, |s| Price::parse(s).ok())
    }

    /// A size in quotes, as [`Cursor::price`].
    #[inline]
    pub fn qty(&mut self) -> Option<Qty> {
        self.quoted(Qty::parse_prefix, |s| Qty::parse(s).ok())
    }

    /// A quoted value: read in place when its whole text is plain, else as a string
    /// through the general parser.
    #[inline(always)]
    fn quoted<T>(
        &mut self,
        plain: impl Fn(&[u8]) -> Option<(T, usize)>,
        general: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let rest = self.rest();
        if rest.first() == Some(&b'"') {
            if let Some((value, len)) = plain(&rest[1..]) {
                if rest.get(len + 1) == Some(&b'"') {
                    self.i += len + 2;
                    return Some(value);
                }
            }
        }
        general(self.string()?)
    }

    /// `[["price","size"],…]` (with `extra`, any further strings of a level are
    /// skipped: `["price","size","0","4"]`), or `[]`, into exact levels.
    pub fn levels(&mut self, capacity: usize, extra: bool) -> Option<Vec<Level>> {
        self.lit(b"[")?;
        if self.eat(b"]") {
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(capacity);
        loop {
            self.lit(b"[")?;
            let price = self.price()?;
            self.lit(b",")?;
            let qty = self.qty()?;
            while extra && self.eat(b",") {
                self.string()?;
            }
            self.lit(b"]")?;
            out.push(Level { price, qty });
            if self.eat(b"]") {
                return Some(out);
            }
            self.lit(b",")?;
        }
    }
}

const LANES_HIGH: u64 = 0x8080_8080_8080_8080;
const LANES_LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Where the first quote, backslash or control character of `b` is: the end of a string's
/// text, or what makes the scanner give up on it. Eight bytes are looked at a time
/// (SWAR: per-byte arithmetic in a `u64` whose lanes never carry into each other); the
/// last bytes of a buffer shorter than eight go one by one.
#[inline]
fn string_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*chunk);
        let stop = zero_lanes(x ^ 0x2222_2222_2222_2222)
            | zero_lanes(x ^ 0x5c5c_5c5c_5c5c_5c5c)
            // Below 0x20: the high bit of `(b | 0x80) - 0x20` is clear, and `b`'s own is.
            | !((x | LANES_HIGH).wrapping_sub(0x2020_2020_2020_2020) | x) & LANES_HIGH;
        if stop != 0 {
            return Some(i + (stop.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = b.get(i..)?;
    let at = tail
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(i + at)
}

/// The high bit of each byte of `v` that is zero, and no other bit: `(b & 0x7f) + 0x7f`
/// sets it for any other byte (without carrying out), as does the byte's own high bit.
#[inline]
fn zero_lanes(v: u64) -> u64 {
    !(((v & LANES_LOW).wrapping_add(LANES_LOW)) | v | LANES_LOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_what_the_model_parses() {
        for text in [
            "0.35210000",
            "7",
            "00012.50",
            "9999999999999999999",
            // Not plain: the general parser reads them.
            "12345678901234567890",
            "0.00000000000000000001",
            "1e2",
            "+1",
            "1.",
        ] {
            let quoted = format!("\"{text}\",");
            let mut c = Cursor::new(&quoted);
            let got = c.qty();
            assert_eq!(
                got.map(|q| q.to_string()),
                Qty::parse(text).ok().map(|q| q.to_string()),
                "{text}"
            );
            if got.is_some() {
                assert!(c.eat(b","), "{text}: the cursor is after the closing quote");
                assert!(c.at_end());
            }
            let mut c = Cursor::new(&quoted);
            assert_eq!(c.price(), Price::parse(text).ok(), "{text}");
        }
        for bad in ["\"0\"", "\"-1\"", "\"\"", "1", "\"1", "\"1\\u0030\""] {
            assert_eq!(Cursor::new(bad).price(), None, "{bad}");
        }
        assert_eq!(Cursor::new("\"0\"").qty(), Some(Qty::ZERO));
    }

    #[test]
    fn numbers_strings_and_levels() {
        let mut c = Cursor::new("123,-45,\"ab\",[[\"1.5\",\"2\",\"0\",\"3\"]]");
        assert_eq!(c.number(), Some(123));
        assert!(c.eat(b","));
        assert_eq!(c.integer(), Some(-45));
        assert!(c.eat(b","));
        assert_eq!(c.string(), Some("ab"));
        assert!(c.eat(b","));
        let mut like = Cursor::new("\"ab\",\"abc\",\"ab\"");
        assert_eq!(like.string_like("ab"), Some("ab"));
        assert!(like.eat(b","));
        assert_eq!(like.string_like("ab"), Some("abc"), "only a whole match");
        assert!(like.eat(b","));
        assert_eq!(like.string_like(""), Some("ab"));
        assert!(like.at_end());
        let levels = c.levels(4, true).unwrap();
        assert_eq!(levels.len(), 1);
        assert_eq!(levels[0].price.to_string(), "1.5");
        assert!(c.at_end());
        // Extra level fields only where asked for.
        assert_eq!(Cursor::new("[[\"1\",\"2\",\"0\"]]").levels(4, false), None);
        assert_eq!(Cursor::new("[]").levels(4, false), Some(Vec::new()));
        for bad in [
            "0123",
            "",
            "-",
            "18446744073709551616",
            "123456789012345678901",
        ] {
            assert_eq!(Cursor::new(bad).number(), None, "{bad}");
        }
        for bad in [
            "-0123",
            "1.5",
            "2e3",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            assert_eq!(Cursor::new(bad).integer(), None, "{bad}");
        }
        for (text, n) in [("0", 0), ("7,", 7), ("18446744073709551615", u64::MAX)] {
            assert_eq!(Cursor::new(text).number(), Some(n), "{text}");
        }
        for (text, n) in [("-9223372036854775808", i64::MIN), ("-1", -1), ("0", 0)] {
            assert_eq!(Cursor::new(text).integer(), Some(n), "{text}");
        }
        for bad in ["\"a\\\"b\"", "\"a\nb\"", "\"ab"] {
            assert_eq!(Cursor::new(bad).string(), None, "{bad:?}");
        }
    }

    #[test]
    fn string_ends_are_found_at_every_position() {
        let bytewise = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let fill = [
            b'a', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xa2, 0xdc, 0xff, b' ',
        ];
        let stops = [b'"', b'\\', 0x00, 0x1f, b'\n'];
        for total in 0..=20usize {
            for at in 0..=total {
                for &f in &fill {
                    for &stop in &stops {
                        let mut buf = vec![f; total];
                        if at < total {
                            buf[at] = stop;
                        }
                        assert_eq!(string_len(&buf), bytewise(&buf), "{buf:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let text = "[[\"1.5\",\"2\",\"0\"],[\"12345678901234567890\",\"1e2\"]],-12,\"x\"";
        for end in 0..=text.len() {
            let t = &text[..end];
            let _ = Cursor::new(t).levels(2, true);
            let _ = Cursor::new(t).levels(2, false);
            let mut c = Cursor::new(t);
            let _ = (c.integer(), c.number(), c.string(), c.price(), c.qty());
            let _ = Cursor::new(t).string_like("[[");
        }
    }
}
