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
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut scale: Option<u32> = None;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' if digits < 19 => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
            }
            // One dot, with digits on both sides.
            b'.' if scale.is_none() && i > 0 && i + 1 < b.len() => {
                scale = Some((b.len() - i - 1) as u32)
            }
            _ => return None,
        }
    }
    Some(Decimal::from_i128_with_scale(
        i128::from(mantissa),
        scale.unwrap_or(0),
    ))
}

/// A strictly positive, exact price.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Price(Decimal);

/// Prices are the keys of every book lookup, and an instrument's prices almost always
/// share the exchange's scale ("7.6110", "7.6090"). At equal scales the numeric order is
/// the order of the integer mantissas, a single `i128` comparison; `Decimal`'s general
/// comparison (which rescales) is kept for mixed scales. Both agree with `Eq`.
impl Ord for Price {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0.scale() == other.0.scale() {
            self.0.mantissa().cmp(&other.0.mantissa())
        } else {
            self.0.cmp(&other.0)
        }
    }
}

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
/// made without allocating: the encoders of every book message use it for each level.
pub struct DecimalText {
    buf: [u8; 64],
    len: usize,
}

impl DecimalText {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, '.' and '-' are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.buf.len());
        self.buf[self.len..end].copy_from_slice(&bytes[..end - self.len]);
        self.len = end;
    }

    /// The text of any decimal (funding rates are signed: not a [`Price`] or [`Qty`]).
    pub fn of(d: Decimal) -> Self {
        let mut text = DecimalText {
            buf: [0; 64],
            len: 0,
        };
        match u64::try_from(d.mantissa()) {
            // What exchanges send: a non-negative mantissa of at most 20 digits.
            Ok(mantissa) => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(mantissa).as_bytes();
                let scale = d.scale() as usize;
                if scale == 0 {
                    text.push(digits);
                } else if digits.len() > scale {
                    let point = digits.len() - scale;
                    text.push(&digits[..point]);
                    text.push(b".");
                    text.push(&digits[point..]);
                } else {
                    text.push(b"0.");
                    for _ in 0..scale - digits.len() {
                        text.push(b"0");
                    }
                    text.push(digits);
                }
            }
            // Negative or wider: `Decimal`'s own text (at most 31 bytes).
            Err(_) => {
                let _ = fmt::Write::write_fmt(&mut text, format_args!("{d}"));
            }
        }
        text
    }
}

impl fmt::Write for DecimalText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
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
