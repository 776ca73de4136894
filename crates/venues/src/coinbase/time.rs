//! RFC 3339 timestamps to [`UnixNanos`], exactly and without a date library.
//!
//! Coinbase writes every time as RFC 3339 text with a variable number of fraction
//! digits: the envelope's `timestamp` has up to 9 (`2026-08-09T21:05:48.228568804Z`),
//! book `event_time`s and trade `time`s up to 6 with trailing zeros dropped
//! (`…:38.50436Z`), futures' `contract_expiry` none (`2026-04-24T15:00:00Z`). A float
//! would lose the nanoseconds (2^53 ns is only 104 days), so the text is read digit by
//! digit into integer nanoseconds:
//! * `YYYY-MM-DD`, `T` (or `t`, or a space as RFC 3339 §5.6 permits), `hh:mm:ss`, an
//!   optional `.` with 1 or more digits, then `Z`/`z` or `±hh:mm`;
//! * fraction digits past the 9th cannot be represented in nanoseconds and are
//!   truncated (floor), as a nanosecond clock would read the same instant;
//! * dates are checked (month 1–12, the month's real length, leap years), hours
//!   0–23, minutes 0–59, seconds 0–60 (a leap second counts as the next second's
//!   start, as POSIX time does);
//! * times before 1970 do not fit [`UnixNanos`] and are refused.
//!
//! Days since the epoch use Howard Hinnant's `days_from_civil`, the inverse of the
//! algorithm `raven_model::normalized_name` uses to print expiry dates.

use raven_model::UnixNanos;

/// Why a timestamp was refused (the text, for the error message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time after 1970: {0:?}")]
pub struct TimeError(pub String);

/// Parses an RFC 3339 timestamp (see the module docs) to nanoseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<UnixNanos, TimeError> {
    parse(text.as_bytes()).ok_or_else(|| TimeError(text.chars().take(64).collect()))
}

fn parse(b: &[u8]) -> Option<UnixNanos> {
    if b.len() < 20 {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        let written = i - start;
        if written == 0 {
            return None;
        }
        for _ in written..9 {
            nanos *= 10;
        }
    }
    // The offset to UTC, in seconds east of Greenwich.
    let offset: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (digits(&b[i + 1..i + 3])?, digits(&b[i + 4..i + 6])?);
            if h > 23 || m > 59 {
                return None;
            }
            let east = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                east
            } else {
                -east
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    let seconds = u64::try_from(seconds).ok()?;
    seconds
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
        .map(UnixNanos)
}

/// A fixed-width run of ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{normalized_name, InstrumentKind};

    fn ns(text: &str) -> u64 {
        parse_rfc3339(text).unwrap().as_nanos()
    }

    #[test]
    fn every_fraction_length_is_exact() {
        // 2026-08-09T21:05:48Z = 1786309548 s (the capture's header says 1786309548.03).
        let base = 1_786_309_548_000_000_000;
        assert_eq!(ns("2026-08-09T21:05:48Z"), base);
        assert_eq!(ns("2026-08-09T21:05:48.2Z"), base + 200_000_000);
        assert_eq!(ns("2026-08-09T21:05:48.50436Z"), base + 504_360_000);
        assert_eq!(ns("2026-08-09T21:05:48.228568Z"), base + 228_568_000);
        assert_eq!(ns("2026-08-09T21:05:48.228568804Z"), base + 228_568_804);
        assert_eq!(ns("2026-08-09T21:05:48.000000001Z"), base + 1);
        // Past the 9th digit: truncated, never rounded up.
        assert_eq!(ns("2026-08-09T21:05:48.2285688049999Z"), base + 228_568_804);
    }

    #[test]
    fn offsets_and_spellings() {
        let utc = ns("2026-08-09T21:05:48.5Z");
        assert_eq!(ns("2026-08-09T23:05:48.5+02:00"), utc);
        assert_eq!(ns("2026-08-09T16:35:48.5-04:30"), utc);
        assert_eq!(ns("2026-08-09t21:05:48.5z"), utc);
        assert_eq!(ns("2026-08-09 21:05:48.5Z"), utc);
        assert_eq!(ns("1970-01-01T00:00:00Z"), 0);
        assert_eq!(ns("1970-01-01T01:00:00+01:00"), 0);
    }

    #[test]
    fn calendar_edges_agree_with_the_model_s_printer() {
        for (text, ymd) in [
            ("2000-02-29T00:00:00Z", "20000229"),
            ("2024-02-29T23:59:59.999999999Z", "20240229"),
            ("2100-03-01T00:00:00Z", "21000301"),
            ("2030-12-20T16:00:00Z", "20301220"),
            ("1999-12-31T23:59:59Z", "19991231"),
        ] {
            let expiry = parse_rfc3339(text).unwrap();
            let name = normalized_name("A", "B", InstrumentKind::Future { expiry });
            assert_eq!(name, format!("A-B-{ymd}"), "{text}");
        }
        // A leap second is the start of the next second.
        assert_eq!(ns("2016-12-31T23:59:60Z"), ns("2017-01-01T00:00:00Z"));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "2026-08-09",
            "2026-08-09T21:05:48",     // no offset
            "2026-08-09T21:05:48.Z",   // a dot without digits
            "2026-08-09T21:05:48.5ZZ", // trailing byte
            "2026-08-09T21:05:48+0200",
            "2026-13-09T21:05:48Z",
            "2026-00-09T21:05:48Z",
            "2026-02-29T21:05:48Z", // not a leap year
            "1900-02-29T21:05:48Z", // not a leap year either
            "2026-04-31T21:05:48Z",
            "2026-08-09T24:00:00Z",
            "2026-08-09T21:60:00Z",
            "2026-08-09T21:05:61Z",
            "2026-08-09T21:05:48+24:00",
            "1969-12-31T23:59:59Z", // before the epoch
            "1970-01-01T00:00:00+00:01",
            "2026/08/09T21:05:48Z",
            "2026-08-09T21:05:4xZ",
            "+2026-08-09T21:05:48Z",
            "2026-08-09 21:05:48.854840045 +0000 UTC", // Go's time.String (heartbeats)
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte() {
        let text = "2026-08-09T21:05:48.228568804+02:00";
        for end in 0..text.len() {
            let _ = parse_rfc3339(&text[..end]);
        }
        for i in 0..text.len() {
            for c in ['9', 'Z', '.', '-', ':', 'é'] {
                let mut s = text.to_owned();
                s.replace_range(i..i + 1, &c.to_string());
                let _ = parse_rfc3339(&s);
            }
        }
    }
}
