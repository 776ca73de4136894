//! A scanner for the frame shape that is most of Coinbase's input: `l2_data`.
//!
//! A busy product's level2 sends several book frames a second, each an array of level
//! objects repeating four keys (`side`, `event_time`, `price_level`, `new_quantity`),
//! about 100 bytes a level and 830 bytes a frame on the recording; a general JSON
//! parser matches every key of every level by name. Coinbase writes these frames in one
//! fixed, compact shape:
//!
//! ```text
//! {"channel":"l2_data"[,"client_id":"…"],"timestamp":"…","sequence_num":N,"events":[
//!   {"type":"snapshot"|"update","product_id":"…","updates":[
//!     {"side":"bid"|"offer","event_time":"…","price_level":"…","new_quantity":"…"},…]},…]}
//! ```
//!
//! [`scan`] accepts exactly that shape, byte by byte, and nothing else: another key
//! order, whitespace, an escape, a number form, a value the model or the time parser
//! refuses, or a trailing byte make it return `None`, and the caller falls back to the
//! general parser ([`super::parse`]), which is the reference and reports the error. The
//! tests hold the two to the same answer on every recorded frame and on mutated ones.

use raven_model::Level;

use super::parse::{BookEvent, LatestTime};
use crate::scan::Cursor;

/// An `l2_data` frame, as the general parser would read it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ScannedL2<'a> {
    pub timestamp: &'a str,
    pub sequence_num: u64,
    pub events: Vec<BookEvent<'a>>,
}

/// Scans a canonical `l2_data` frame; `None` for anything else.
pub(super) fn scan(text: &str) -> Option<ScannedL2<'_>> {
    let mut c = Cursor::new(text);
    c.lit(b"{\"channel\":\"l2_data\",")?;
    if c.eat(b"\"client_id\":") {
        c.string()?;
        c.lit(b",")?;
    }
    c.lit(b"\"timestamp\":")?;
    let timestamp = c.string()?;
    c.lit(b",\"sequence_num\":")?;
    let sequence_num = c.number()?;
    c.lit(b",\"events\":[")?;
    let mut events = Vec::with_capacity(1);
    if !c.eat(b"]") {
        loop {
            events.push(event(&mut c)?);
            if c.eat(b"]") {
                break;
            }
            c.lit(b",")?;
        }
    }
    c.lit(b"}")?;
    c.at_end().then_some(ScannedL2 {
        timestamp,
        sequence_num,
        events,
    })
}

fn event<'a>(c: &mut Cursor<'a>) -> Option<BookEvent<'a>> {
    c.lit(b"{\"type\":")?;
    let snapshot = match c.string()? {
        "snapshot" => true,
        "update" => false,
        _ => return None,
    };
    c.lit(b",\"product_id\":")?;
    let product_id = c.string()?;
    c.lit(b",\"updates\":[")?;
    let mut event = BookEvent {
        snapshot,
        product_id,
        bids: Vec::new(),
        asks: Vec::new(),
        latest: LatestTime::default(),
    };
    if !c.eat(b"]") {
        loop {
            level(c, &mut event)?;
            if c.eat(b"]") {
                break;
            }
            c.lit(b",")?;
        }
    }
    c.lit(b"}")?;
    Some(event)
}

fn level<'a>(c: &mut Cursor<'a>, event: &mut BookEvent<'a>) -> Option<()> {
    c.lit(b"{\"side\":")?;
    let side = c.string()?;
    c.lit(b",\"event_time\":")?;
    let time = c.string_like(event.latest.text())?;
    c.lit(b",\"price_level\":")?;
    let price = c.price()?;
    c.lit(b",\"new_quantity\":")?;
    let qty = c.qty()?;
    c.lit(b"}")?;
    event.latest.see(time).ok()?;
    let level = Level { price, qty };
    match side {
        "bid" => event.bids.push(level),
        "offer" => event.asks.push(level),
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &str = r#"{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.506659391Z","sequence_num":15,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"offer","event_time":"2026-08-09T21:05:48.264069Z","price_level":"65106.54","new_quantity":"0.15361938"},{"side":"bid","event_time":"2026-08-09T21:05:48.264069Z","price_level":"65155.5","new_quantity":"0"}]}]}"#;

    #[test]
    fn scans_the_canonical_shape() {
        let s = scan(UPDATE).unwrap();
        assert_eq!(s.timestamp, "2026-08-09T21:05:48.506659391Z");
        assert_eq!(s.sequence_num, 15);
        let e = &s.events[0];
        assert!(!e.snapshot);
        assert_eq!(e.product_id, "BTC-USD");
        assert_eq!(e.asks[0].price.to_string(), "65106.54");
        assert_eq!(e.asks[0].qty.to_string(), "0.15361938");
        assert!(e.bids[0].qty.is_zero());
        assert_eq!(
            e.latest.time().map(|t| t.as_nanos()),
            Some(1_786_309_548_264_069_000)
        );
        let with_client_id = UPDATE.replace("\"l2_data\",", "\"l2_data\",\"client_id\":\"\",");
        assert_eq!(scan(&with_client_id), Some(s));
        let empty = r#"{"channel":"l2_data","timestamp":"t","sequence_num":0,"events":[]}"#;
        assert_eq!(scan(empty).map(|s| s.events.len()), Some(0));
    }

    #[test]
    fn anything_else_falls_back() {
        for bad in [
            UPDATE.replace(",\"sequence_num\":", ", \"sequence_num\":"), // whitespace
            UPDATE.replace("BTC-USD", "BTC\\u002dUSD"),                  // an escape
            UPDATE.replace("\"sequence_num\":15", "\"sequence_num\":1.5e1"),
            UPDATE.replace("\"sequence_num\":15", "\"sequence_num\":015"),
            UPDATE.replace(
                "\"sequence_num\":15",
                "\"sequence_num\":99999999999999999999",
            ),
            UPDATE.replace("0.15361938", "-0.15361938"), // refused by the model
            UPDATE.replace("\"offer\"", "\"ask\""),      // not a Coinbase side
            UPDATE.replace("\"update\"", "\"delta\""),
            UPDATE.replace("48.264069Z", "48.264069"), // not a time
            UPDATE.replace("\"price_level\":\"65106.54\"", "\"price_level\":65106.54"),
            UPDATE.replace("l2_data", "ticker"),
            format!("{UPDATE} "),
            UPDATE[..UPDATE.len() - 1].to_owned(),
        ] {
            assert_eq!(scan(&bad), None, "{bad}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        for end in 0..UPDATE.len() {
            assert_eq!(scan(&UPDATE[..end]), None);
        }
    }
}
