//! Exact price and quantity types.
//!
//! Exchanges send prices and sizes as decimal strings ("0.35210000"). Parsing them into an
//! `f64` would make `0.1 + 0.2 != 0.3` and, worse, make two equal prices unequal book keys.
//! [`Price`] and [`Qty`] wrap [`rust_decimal::Decimal`] (96-bit mantissa, scale up to 28),
//! keep the scale they were written with (so they print back exactly as received), and
//! enforce the invariants the book relies on at construction: a price is strictly
//! positive, a quantity is never negative. Equality and ordering are numeric, so
//! "1.0" and "1.00" are the same book level.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal number: {0:?}")]
    Syntax(String),
    #[error("price must be positive, got {0}")]
    NonPositivePrice(Decimal),
    #[error("quantity must not be negative, got {0}")]
    NegativeQty(Decimal),
}

fn parse_decimal(s: &str) -> Result<Decimal, DecimalError> {
    if let Some(d) = parse_plain(s.as_bytes()) {
        return Ok(d);
    }
    // `from_str_exact` refuses input it would have to round (over 28 significant digits).
    Decimal::from_str_exact(s).map_err(|_| DecimalError::Syntax(s.to_owned()))
}

/// The fast path for what exchanges actually send: `digits[.digits]`, at most 19 digits
/// in all, so the mantissa fits a `u64` and the scale is at most 19 — exact by
/// construction. Anything else (signs, exponents, longer numbers) returns `None` and
/// takes the general parser.
fn parse_plain(b: &[u8]) -> Option<Decimal> {
    plain_prefix(b)
        .filter(|(_, len)| *len == b.len())
        .map(|(d, _)| d)
}

/// The plain decimal at the start of `b` (see [`parse_plain`]), ending before the first
/// byte that is neither a digit nor its one point, and the length of its text. `None`
/// when there is none, or when it breaks a rule of the plain form (a point without
/// digits on both sides, more than 19 digits).
///
/// Always inlined around [`plain_digits`], which answers in two registers: a `Decimal`
/// returned through memory is written as four 32-bit fields and read back as one
/// 128-bit load, which the CPU cannot forward from its store buffer, and that stall
/// was the largest single cost of reading a book level.
#[inline(always)]
fn plain_prefix(b: &[u8]) -> Option<(Decimal, usize)> {
    let (mantissa, scale_len) = plain_digits(b)?;
    let (scale, len) = (u32::from(scale_len >> 8), usize::from(scale_len & 0xff));
    let d = Decimal::from_parts(mantissa as u32, (mantissa >> 32) as u32, 0, false, scale);
    Some((d, len))
}

/// [`plain_prefix`]'s digits: the mantissa, and the scale (high byte) and text length
/// (low byte; at most 20) packed in a `u16`.
#[inline]
fn plain_digits(b: &[u8]) -> Option<(u64, u16)> {
    let (integer, int_len) = digit_run(b);
    if int_len == 0 || int_len > 19 {
        return None;
    }
    let (mut mantissa, mut len, mut scale) = (integer, int_len, 0);
    if b.get(len) == Some(&b'.') {
        let (fraction, frac_len) = digit_run(&b[len + 1..]);
        if frac_len == 0 || int_len + frac_len > 19 {
            return None;
        }
        // At most 19 digits in all: no overflow.
        mantissa = integer * POW10[frac_len] + fraction;
        len += 1 + frac_len;
        scale = frac_len;
    }
    // Both at most 20: they fit a byte each.
    Some((mantissa, (scale as u16) << 8 | len as u16))
}

/// The run of ASCII digits at the start of `b`: its value and its length, for runs of
/// up to 19 digits (exact). A longer run gives some length past 19 and a meaningless
/// value: the caller refuses it.
/// Eight bytes are classified and combined at a time (SWAR: per-byte arithmetic in a
/// `u64`, no carries between bytes), so a price costs one or two steps rather than a
/// branch per byte; the last bytes of a buffer shorter than eight go one by one. Frame
/// scanners read their integers (update ids, times) with it too.
#[inline]
pub fn digit_run(b: &[u8]) -> (u64, usize) {
    let (mut value, mut len) = (0u64, 0usize);
    while let Some(chunk) = b.get(len..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*chunk);
        let n = leading_digits(x);
        if n > 0 {
            value = value
                .wrapping_mul(POW10[n])
                .wrapping_add(digits_value(x, n));
            len += n;
        }
        if n < 8 || len > 19 {
            return (value, len);
        }
    }
    for &c in b.get(len..).unwrap_or_default() {
        if !c.is_ascii_digit() {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        len += 1;
    }
    (value, len)
}

const LANES_HIGH: u64 = 0x8080_8080_8080_8080;

/// How many of the eight bytes of `x` (first byte lowest) are ASCII digits before the
/// first that is not. Each byte's high bit says "digit": `(b | 0x80) - 0x30` keeps it
/// when `b & 0x7f ≥ '0'`, `0xb9 - (b & 0x7f)` when `b & 0x7f ≤ '9'`, neither borrows
/// from the next byte, and a byte with its own high bit set is no digit.
#[inline]
fn leading_digits(x: u64) -> usize {
    let at_least_0 = (x | LANES_HIGH).wrapping_sub(0x3030_3030_3030_3030);
    let at_most_9 = 0xb9b9_b9b9_b9b9_b9b9u64.wrapping_sub(x & !LANES_HIGH);
    let digit = at_least_0 & at_most_9 & !x & LANES_HIGH;
    ((!digit & LANES_HIGH).trailing_zeros() / 8) as usize
}

/// The value of the first `n` (1 to 8) bytes of `x`, all digits, first one most
/// significant: shifted up so the digits fill the top bytes (the bytes below, zero,
/// are leading zeros), then combined in pairs, fours and eights by multiplication.
#[inline]
fn digits_value(x: u64, n: usize) -> u64 {
    let v = (x.wrapping_sub(0x3030_3030_3030_3030) & 0x0f0f_0f0f_0f0f_0f0f) << (8 * (8 - n));
    let v = (v.wrapping_mul(10 * 256 + 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_ffff_0000_ffff;
    v.wrapping_mul(10_000 * (1 << 32) + 1) >> 32
}

/// A strictly positive, exact price.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Price(Decimal);

/// Prices are the keys of every book lookup, so this comparison is the innermost loop
/// of every book update. A price is positive, so its value is its unsigned 96-bit
/// mantissa × 10^-scale. An instrument's prices mostly share the exchange's scale
/// ("7.6110", "7.6090"): then the numeric order is the order of the mantissas, one
/// integer comparison. Venues that drop trailing zeros (OKX "30249.4" beside "30261",
/// Coinbase "65062.5" beside "65061.91") mix scales within a book: then the mantissa
/// of the smaller scale is multiplied by the power of ten between the scales, and the
/// two are again compared as integers — one 64 × 64 → 128-bit multiplication for what
/// exchanges send (mantissas of at most 64 bits, scales at most 19 apart). Both are
/// exact, so the order is numeric and agrees with `Eq`; wider values take `Decimal`'s
/// general comparison.
impl Ord for Price {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (sa, sb) = (self.0.scale(), other.0.scale());
        let (ma, mb) = (magnitude(&self.0), magnitude(&other.0));
        if sa == sb {
            return ma.cmp(&mb);
        }
        match (u64::try_from(ma), u64::try_from(mb)) {
            (Ok(ma), Ok(mb)) if sa < sb && sb - sa < 20 => {
                (u128::from(ma) * u128::from(POW10[(sb - sa) as usize])).cmp(&u128::from(mb))
            }
            (Ok(ma), Ok(mb)) if sb < sa && sa - sb < 20 => {
                u128::from(ma).cmp(&(u128::from(mb) * u128::from(POW10[(sa - sb) as usize])))
            }
            _ => self.0.cmp(&other.0),
        }
    }
}

/// The unsigned 96-bit mantissa.
#[inline]
fn magnitude(d: &Decimal) -> u128 {
    let u = d.unpack();
    u128::from(u.lo) | u128::from(u.mid) << 32 | u128::from(u.hi) << 64
}

/// 10⁰ to 10¹⁹: the factors between two scales at most 19 apart, and the bounds of
/// each `u64` digit count.
const POW10: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Price {
    /// Parses an exchange price string exactly.
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        Self::new(parse_decimal(s)?)
    }

    /// The plain price (`digits[.digits]`, at most 19 digits) at the start of `bytes`,
    /// and the length of its text: how a frame scanner reads a price in place, in one
    /// pass. `None` when the text there is not of that form or not a positive price;
    /// the caller then takes [`Price::parse`], which reads every form and says why.
    #[inline(always)]
    pub fn parse_prefix(bytes: &[u8]) -> Option<(Self, usize)> {
        let (d, len) = plain_prefix(bytes)?;
        Some((Self::new(d).ok()?, len))
    }

    pub fn new(value: Decimal) -> Result<Self, DecimalError> {
        if value.is_sign_positive() && !value.is_zero() {
            Ok(Self(value))
        } else {
            Err(DecimalError::NonPositivePrice(value))
        }
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// A non-negative, exact quantity. Zero is meaningful: in a book delta it removes a level.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Qty(Decimal);

impl Qty {
    pub const ZERO: Qty = Qty(Decimal::ZERO);

    /// Parses an exchange quantity string exactly.
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        Self::new(parse_decimal(s)?)
    }

    /// The plain quantity at the start of `bytes` and the length of its text, as
    /// [`Price::parse_prefix`] (a plain text is never negative).
    #[inline(always)]
    pub fn parse_prefix(bytes: &[u8]) -> Option<(Self, usize)> {
        plain_prefix(bytes).map(|(d, len)| (Self(d), len))
    }

    pub fn new(value: Decimal) -> Result<Self, DecimalError> {
        if value.is_sign_negative() && !value.is_zero() {
            Err(DecimalError::NegativeQty(value))
        } else {
            Ok(Self(value))
        }
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

/// A decimal's text, exactly as `Decimal` prints it (the scale it was written with),
/// made without allocating: the encoders of every book message use it for each level,
/// and the venues' checksums write it straight into their buffers ([`DecimalText::write`]).
pub struct DecimalText {
    buf: [u8; DecimalText::MAX],
    len: usize,
}

impl DecimalText {
    /// The longest text of a decimal: a sign, 29 digits, a point and a leading zero
    /// ("-0.0000000000000000000000000001" is 31 bytes).
    pub const MAX: usize = 32;

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, '.' and '-' are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text of any decimal (funding rates are signed: not a [`Price`] or [`Qty`]).
    pub fn of(d: Decimal) -> Self {
        let mut text = DecimalText {
            buf: [0; Self::MAX],
            len: 0,
        };
        text.len = Self::write(d, &mut text.buf);
        text
    }

    /// Writes the text of `d` at the start of `out` and returns its length: what a
    /// checksum over the exchange's text needs, with no copy between.
    #[inline]
    pub fn write(d: Decimal, out: &mut [u8; Self::MAX]) -> usize {
        match u64::try_from(d.mantissa()) {
            // What exchanges send: a non-negative mantissa of at most 20 digits.
            Ok(mantissa) => write_plain(mantissa, d.scale() as usize, out),
            // Negative or wider: `Decimal`'s own text (at most 31 bytes).
            Err(_) => {
                let mut text = Overflowing { out, len: 0 };
                let _ = fmt::Write::write_fmt(&mut text, format_args!("{d}"));
                text.len
            }
        }
    }

    /// Writes the decimal digits of the magnitude of `d`'s mantissa (its text without
    /// sign, point and leading zeros: `"0.05000"` → `5000`; nothing for zero) at the
    /// start of `out` and returns how many: Kraken's checksum text.
    #[inline]
    pub fn write_mantissa(d: Decimal, out: &mut [u8; Self::MAX]) -> usize {
        let m = magnitude(&d);
        if m == 0 {
            return 0;
        }
        match u64::try_from(m) {
            Ok(n) => {
                let digits = digit_count(n);
                put_digits(n, digits, out, 0);
                digits
            }
            // Wider mantissas (up to 29 digits), one digit at a time, then moved to
            // the start.
            Err(_) => {
                let (mut n, mut i) = (m, Self::MAX);
                while n > 0 {
                    i -= 1;
                    out[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                out.copy_within(i.., 0);
                Self::MAX - i
            }
        }
    }
}

/// How many decimal digits `n` has (one for zero): the bit length gives ⌊log10⌋ to
/// within one (× log10 2 ≈ 1233 / 4096), and one comparison settles it.
#[inline]
fn digit_count(n: u64) -> usize {
    let bits = 64 - (n | 1).leading_zeros() as usize;
    let t = (bits * 1233) >> 12;
    (t + usize::from(n >= POW10[t])).max(1)
}

/// Writes the low `width` decimal digits of `n` (zero-padded) at `out[at..at + width]`,
/// eight bytes at a time ([`eight_digits`]): each store is one 8-byte write, the first
/// one (the leading, partial chunk) writing zeros past its digits, up to `at + 8`, which
/// the next stores (or the caller) write over. This runs for every value of every
/// checksum, so it has no loop and no table.
#[inline]
fn put_digits(n: u64, width: usize, out: &mut [u8; DecimalText::MAX], at: usize) {
    let low = (n % 100_000_000) as u32;
    match width {
        0 => {}
        1..=8 => store(out, at, eight_digits(low) >> (8 * (8 - width))),
        9..=16 => {
            let high = ((n / 100_000_000) % 100_000_000) as u32;
            store(out, at, eight_digits(high) >> (8 * (16 - width)));
            store(out, at + width - 8, eight_digits(low));
        }
        17..=20 => {
            let (top, high) = (n / 10_000_000_000_000_000, (n / 100_000_000) % 100_000_000);
            store(out, at, eight_digits(top as u32) >> (8 * (24 - width)));
            store(out, at + width - 16, eight_digits(high as u32));
            store(out, at + width - 8, eight_digits(low));
        }
        // Leading zeros beyond the 20 digits a `u64` has (a small value at a scale
        // over 20).
        _ => {
            let zeros = width - 20;
            if let Some(pad) = out.get_mut(at..at + zeros) {
                pad.fill(b'0');
            }
            put_digits(n, 20, out, at + zeros);
        }
    }
}

/// One 8-byte store of eight ASCII digits (first digit in the lowest byte).
#[inline]
fn store(out: &mut [u8; DecimalText::MAX], at: usize, digits: u64) {
    if let Some(slot) = out.get_mut(at..at + 8) {
        slot.copy_from_slice(&digits.to_le_bytes());
    }
}

/// The eight decimal digits of `v` (below 10⁸), zero-padded, as ASCII bytes of a `u64`
/// whose lowest byte is the first digit. SWAR: `v` is split into two 4-digit halves in
/// 32-bit lanes, each into two 2-digit quarters in 16-bit lanes, each into two digits
/// in bytes, every lane at once, by multiply-shift division (`× 10486 >> 20` is `/ 100`
/// below 10⁴, `× 103 >> 10` is `/ 10` below 100) that never carries between lanes.
#[inline]
fn eight_digits(v: u32) -> u64 {
    let x = u64::from(v / 10_000) | (u64::from(v % 10_000) << 32);
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = tens | ((x - tens * 10) << 8);
    x | 0x3030_3030_3030_3030
}

/// `n × 10^-scale` as `Decimal` prints it, written in place: the integer digits (at
/// least one), then for a scale the point and `scale` fraction digits (leading zeros
/// included).
#[inline]
fn write_plain(n: u64, scale: usize, out: &mut [u8; DecimalText::MAX]) -> usize {
    if scale == 0 {
        let digits = digit_count(n);
        put_digits(n, digits, out, 0);
        return digits;
    }
    // Past 19, the scale is longer than any `u64`: all of it is fraction.
    let (integer, fraction) = match POW10.get(scale) {
        Some(&p) => (n / p, n % p),
        None => (0, n),
    };
    let int_len = digit_count(integer);
    put_digits(integer, int_len, out, 0);
    out[int_len] = b'.';
    put_digits(fraction, scale, out, int_len + 1);
    int_len + 1 + scale
}

/// `Decimal`'s `Display` into a fixed buffer (the rare wide or negative values).
struct Overflowing<'a> {
    out: &'a mut [u8; DecimalText::MAX],
    len: usize,
}

impl fmt::Write for Overflowing<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = (self.len + s.len()).min(self.out.len());
        self.out[self.len..end].copy_from_slice(&s.as_bytes()[..end - self.len]);
        self.len = end;
        Ok(())
    }
}

macro_rules! decimal_text {
    ($t:ty) => {
        impl $t {
            /// The exact text, as [`fmt::Display`] prints it, without allocating.
            pub fn text(self) -> DecimalText {
                DecimalText::of(self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl FromStr for $t {
            type Err = DecimalError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}
decimal_text!(Price);
decimal_text!(Qty);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_what_decimal_prints() {
        for text in [
            "0",
            "7",
            "0.35210000",
            "672.00000000",
            "1234567890.123456789",
            "0.000000000000000001",
            "0.0",
            "0.000",
            "10",
            "100.5",
            "18446744073709551615",
            "18446744073709551616",
            "79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "1.000000000000000000000000001",
        ] {
            let q = Qty::parse(text).unwrap();
            assert_eq!(q.text().as_str(), q.to_string(), "{text}");
            assert_eq!(q.text().as_str(), text);
        }
        let negative = Decimal::from_str("-12.500").unwrap();
        assert_eq!(DecimalText::of(negative).as_str(), "-12.500");
    }

    /// Mantissas around every digit count and the edges of `u64` and of the 96 bits a
    /// `Decimal` holds, where an exact rescale overflows an `i128`.
    fn mantissas() -> Vec<i128> {
        let max = Decimal::MAX.mantissa();
        let mut m = vec![0, 1, 2, 5, 9, 11, 99, 101, 12_345, 3_036_610, 999_999];
        for k in 0..29 {
            let p = 10i128.pow(k);
            m.extend([p - 1, p, p + 1, 7 * p / 3]);
        }
        let wide = [
            u64::MAX as i128,
            u64::MAX as i128 + 1,
            max / 3,
            max - 1,
            max,
        ];
        m.extend(wide);
        m.retain(|v| (0..=max).contains(v));
        m
    }

    #[test]
    fn text_is_what_decimal_prints_at_every_scale() {
        for m in mantissas() {
            for scale in 0..=28 {
                let d = Decimal::from_i128_with_scale(m, scale);
                assert_eq!(DecimalText::of(d).as_str(), d.to_string(), "{m} {scale}");
                if m != 0 {
                    assert_eq!(
                        DecimalText::of(-d).as_str(),
                        (-d).to_string(),
                        "-{m} {scale}"
                    );
                }
            }
        }
    }

    #[test]
    fn eight_digits_at_once() {
        // The lanes are independent: every value of each half, with the other fixed.
        for half in 0..10_000u32 {
            for v in [
                half,
                half * 10_000,
                half * 10_000 + 9_999,
                5_678 * 10_000 + half,
            ] {
                let text = format!("{v:08}");
                assert_eq!(eight_digits(v).to_le_bytes(), text.as_bytes(), "{v}");
            }
        }
        assert_eq!(&eight_digits(99_999_999).to_le_bytes(), b"99999999");
    }

    #[test]
    fn digit_counts_and_mantissa_digits() {
        for k in 0..20 {
            let p = 10u64.pow(k);
            assert_eq!(digit_count(p), k as usize + 1, "{p}");
            assert_eq!(digit_count(p - 1), (k as usize).max(1), "{}", p - 1);
        }
        assert_eq!(digit_count(u64::MAX), 20);
        for m in mantissas() {
            for scale in 0..=28 {
                let d = Decimal::from_i128_with_scale(m, scale);
                let mut out = [0u8; DecimalText::MAX];
                let n = DecimalText::write_mantissa(d, &mut out);
                // The documented rule, literally: the text without point and leading zeros.
                let literal = d.to_string().replace('.', "");
                let literal = literal.trim_start_matches('0');
                assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), literal, "{d}");
            }
        }
    }

    #[test]
    fn price_order_is_decimal_order_and_agrees_with_eq() {
        let mut prices = Vec::new();
        for m in mantissas().into_iter().filter(|m| *m > 0) {
            for scale in 0..=28 {
                prices.push(Price::new(Decimal::from_i128_with_scale(m, scale)).unwrap());
            }
        }
        // Equal values written at different scales: "1.5", "1.50", …
        for scale in 1..=27 {
            prices.push(Price::new(Decimal::from_i128_with_scale(15, 1)).unwrap());
            let m = 15 * 10i128.pow(scale as u32 - 1);
            prices.push(Price::new(Decimal::from_i128_with_scale(m, scale as u32)).unwrap());
        }
        let mut compared = 0u64;
        for a in &prices {
            for b in &prices {
                let ours = a.cmp(b);
                assert_eq!(ours, a.0.cmp(&b.0), "{a} vs {b}");
                assert_eq!(ours == std::cmp::Ordering::Equal, a == b, "{a} vs {b}");
                compared += 1;
            }
        }
        assert!(compared > 5_000_000, "{compared}");
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        for text in [
            "0",
            "7",
            "0.35210000",
            "672.00000000",
            "1234567890.123456789",
            "9999999999999999999",
            "0.000000000000000001",
            "00012.50",
        ] {
            let fast = parse_plain(text.as_bytes()).unwrap();
            let general = Decimal::from_str_exact(text).unwrap();
            assert_eq!(fast, general, "{text}");
            assert_eq!(fast.to_string(), general.to_string(), "{text}");
        }
        for text in [
            "",
            ".",
            "1.",
            ".5",
            "1.2.3",
            "-1",
            "+1",
            "1e5",
            "12345678901234567890",
            " 1",
            "1,5",
        ] {
            assert_eq!(
                parse_plain(text.as_bytes()),
                None,
                "{text:?} must take the general path"
            );
        }
    }

    /// The digit run, byte by byte: the reference for the eight-at-a-time one.
    fn digit_run_bytewise(b: &[u8]) -> (u64, usize) {
        let len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let value = b[..len].iter().fold(0u64, |v, c| {
            v.wrapping_mul(10).wrapping_add(u64::from(c - b'0'))
        });
        (value, len)
    }

    #[test]
    fn digit_runs_at_every_length_and_position() {
        // Digits, then every byte that could be mistaken for one (neighbours of '0' and
        // '9', '.', '"', bytes with the high bit set), at every offset of a buffer of
        // every length up to 24.
        let stops = [
            b'/', b':', b'.', b'"', 0x00, 0x7f, 0x80, 0xb0, 0xb9, 0xff, b'a',
        ];
        for total in 0..=24usize {
            for digits in 0..=total {
                for &stop in &stops {
                    let mut buf: Vec<u8> = (0..digits)
                        .map(|i| b'0' + ((i * 7 + 3) % 10) as u8)
                        .collect();
                    buf.extend(std::iter::repeat_n(stop, total - digits));
                    assert_eq!(digit_run(&buf), digit_run_bytewise(&buf), "{buf:?}");
                }
            }
        }
        for x in [0u64, 1, 9, 10, 99_999_999, 12_345_678, u64::MAX / 3] {
            let text = format!("{x}\"");
            assert_eq!(digit_run(text.as_bytes()), (x, text.len() - 1), "{text}");
        }
    }

    #[test]
    fn a_prefix_is_read_as_the_whole_text_would_be() {
        for (text, len) in [
            ("0.35210000\"", 10),
            ("7,", 1),
            ("00012.50]", 8),
            ("9999999999999999999\"", 19),
            ("1.2.3", 3),
        ] {
            let (q, n) = Qty::parse_prefix(text.as_bytes()).unwrap();
            assert_eq!(n, len, "{text}");
            assert_eq!(q.to_string(), Qty::parse(&text[..len]).unwrap().to_string());
        }
        for text in [
            "",
            "\"1\"",
            ".5",
            "1.\"",
            "-1",
            "12345678901234567890\"",
            "1e5",
        ] {
            let prefix = Qty::parse_prefix(text.as_bytes());
            assert!(
                prefix.is_none() || prefix.is_some_and(|(_, n)| n < text.len()),
                "{text:?}"
            );
        }
        assert_eq!(Qty::parse_prefix(b"1e5").map(|(_, n)| n), Some(1));
        assert!(Price::parse_prefix(b"0.000\"").is_none(), "not a price");
        assert_eq!(
            Price::parse_prefix(b"65062.5\"").map(|(p, n)| (p.to_string(), n)),
            Some(("65062.5".to_owned(), 7))
        );
    }

    #[test]
    fn keeps_the_exchange_scale() {
        assert_eq!(
            Price::parse("0.35210000").unwrap().to_string(),
            "0.35210000"
        );
        assert_eq!(
            Qty::parse("672.00000000").unwrap().to_string(),
            "672.00000000"
        );
    }

    #[test]
    fn equal_values_are_equal_keys() {
        assert_eq!(Price::parse("1.0").unwrap(), Price::parse("1.00").unwrap());
        assert!(Price::parse("0.1").unwrap() < Price::parse("0.10000001").unwrap());
    }

    #[test]
    fn refuses_what_a_book_cannot_hold() {
        assert!(matches!(
            Price::parse("0"),
            Err(DecimalError::NonPositivePrice(_))
        ));
        assert!(matches!(
            Price::parse("-1"),
            Err(DecimalError::NonPositivePrice(_))
        ));
        assert!(matches!(
            Qty::parse("-0.1"),
            Err(DecimalError::NegativeQty(_))
        ));
        assert!(matches!(Qty::parse("1e400"), Err(DecimalError::Syntax(_))));
        assert!(matches!(Price::parse("abc"), Err(DecimalError::Syntax(_))));
        assert!(matches!(
            Price::parse("1.00000000000000000000000000001"),
            Err(DecimalError::Syntax(_))
        ));
        assert!(Qty::parse("0.00000000").unwrap().is_zero());
    }
}
