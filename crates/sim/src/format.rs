//! Cheap, exact text for numbers and the REST depth body.
//!
//! The synthetic market emits up to hundreds of thousands of frames a second, so frames
//! are written by hand into a `String` instead of going through serde: integers with
//! `itoa`, prices and sizes from integer ticks with a fixed number of decimals. That is
//! also what makes them exact: a price never exists as a binary float, it is an integer
//! count of `10^-scale` units printed with its decimal point put back.

use std::fmt::{self, Display, Write};

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends `units * 10^-scale` with exactly `scale` decimals (`12345, 2` → `123.45`).
pub(crate) fn push_decimal(out: &mut String, units: u64, scale: u32) {
    if scale == 0 {
        return push_u64(out, units);
    }
    let pow = 10u64.pow(scale);
    push_u64(out, units / pow);
    out.push('.');
    let mut buf = itoa::Buffer::new();
    let frac = buf.format(units % pow);
    for _ in frac.len()..scale as usize {
        out.push('0');
    }
    out.push_str(frac);
}

/// A fixed-point number for `Display` contexts (REST bodies, exchangeInfo).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fixed {
    pub units: u64,
    pub scale: u32,
}

impl Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(24);
        push_decimal(&mut s, self.units, self.scale);
        f.write_str(&s)
    }
}

/// Writes a Binance depth snapshot body. Futures bodies (`/fapi`, `/dapi`) carry the
/// message and transaction times `E` and `T` after `lastUpdateId`, as Binance sends them.
pub(crate) fn depth_body<P: Display, Q: Display>(
    last_update_id: u64,
    futures_time_ms: Option<u64>,
    bids: impl Iterator<Item = (P, Q)>,
    asks: impl Iterator<Item = (P, Q)>,
) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("{\"lastUpdateId\":");
    push_u64(&mut out, last_update_id);
    if let Some(ms) = futures_time_ms {
        out.push_str(",\"E\":");
        push_u64(&mut out, ms);
        out.push_str(",\"T\":");
        push_u64(&mut out, ms);
    }
    out.push_str(",\"bids\":[");
    push_levels(&mut out, bids);
    out.push_str("],\"asks\":[");
    push_levels(&mut out, asks);
    out.push_str("]}");
    out
}

fn push_levels<P: Display, Q: Display>(out: &mut String, levels: impl Iterator<Item = (P, Q)>) {
    for (i, (p, q)) in levels.enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "[\"{p}\",\"{q}\"]");
    }
}

/// Milliseconds since the Unix epoch, the unit of Binance's `E` and `T`.
pub(crate) fn now_ms() -> u64 {
    raven_model::UnixNanos::now().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_scale() {
        let f = |u, s| {
            let mut o = String::new();
            push_decimal(&mut o, u, s);
            o
        };
        assert_eq!(f(12345, 2), "123.45");
        assert_eq!(f(5, 8), "0.00000005");
        assert_eq!(f(100, 2), "1.00");
        assert_eq!(f(0, 3), "0.000");
        assert_eq!(f(42, 0), "42");
        assert_eq!(
            Fixed {
                units: 35210000,
                scale: 8
            }
            .to_string(),
            "0.35210000"
        );
    }

    #[test]
    fn depth_body_matches_binance_layout() {
        let b = depth_body(
            7,
            None,
            [("1.0", "2")].into_iter(),
            std::iter::empty::<(&str, &str)>(),
        );
        assert_eq!(b, r#"{"lastUpdateId":7,"bids":[["1.0","2"]],"asks":[]}"#);
        let b = depth_body(
            7,
            Some(9),
            std::iter::empty::<(&str, &str)>(),
            std::iter::empty::<(&str, &str)>(),
        );
        assert_eq!(b, r#"{"lastUpdateId":7,"E":9,"T":9,"bids":[],"asks":[]}"#);
    }
}
