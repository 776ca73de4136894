//! Cheap, exact text for numbers and the REST depth body, and the few encodings the
//! replayed venues need (CRC-32, RFC 3339 times, JSON strings).
//!
//! The synthetic market emits up to hundreds of thousands of frames a second, so frames
//! are written by hand into a `String` instead of going through serde: integers with
//! `itoa`, prices and sizes from integer ticks with a fixed number of decimals. That is
//! also what makes them exact: a price never exists as a binary float, it is an integer
//! count of `10^-scale` units printed with its decimal point put back.
//!
//! The replay writes book snapshots for late subscribers the same way, from the
//! exchange's own decimal strings; OKX puts a CRC-32 of the book in them and Coinbase
//! stamps its messages with RFC 3339 times, hence [`crc32`] and [`rfc3339`].

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

/// Appends `text` as a JSON string literal, quotes included.
pub(crate) fn push_json_str(out: &mut String, text: &str) {
    // Serializing a &str into a String cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// The CRC-32 (IEEE 802.3, reflected, as zlib computes it) of `bytes`: the checksum
/// OKX and Kraken put on their books.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `secs` since the Unix epoch as `2026-08-09T21:05:48.228847000Z` (UTC, nine
/// decimals as Coinbase prints its `timestamp`; an `f64` of today's epoch seconds holds
/// microseconds, so that is the precision). Times before 1970 print as the epoch.
pub(crate) fn rfc3339(secs: f64) -> String {
    let secs = secs.max(0.0);
    let micros = (secs.fract() * 1e6).round() as u64;
    let day_secs = secs.trunc() as u64 + micros / 1_000_000;
    let nanos = micros % 1_000_000 * 1000;
    let (days, rem) = (day_secs / 86_400, day_secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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
    fn crc32_and_times() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500000000Z");
        assert_eq!(rfc3339(1_786_309_548.25), "2026-08-09T21:05:48.250000000Z");
        let mut s = String::new();
        push_json_str(&mut s, "a\"b");
        assert_eq!(s, r#""a\"b""#);
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
