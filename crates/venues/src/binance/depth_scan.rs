//! A scanner for the one frame shape that dominates Raven's input.
//!
//! Diff-depth frames are most of what a busy venue sends, and on a 2-core box a general
//! JSON parser spends ~1.2 µs on a typical 330-byte USD-M frame — more than applying
//! it to the book. Binance writes these frames in one fixed, compact shape:
//!
//! ```text
//! {"stream":"…","data":{"e":"depthUpdate","E":…[,"T":…],"s":"…","U":…,"u":…[,"pu":…],"b":[["p","q"],…],"a":[…]}}
//! ```
//!
//! [`scan`] accepts exactly that shape, byte by byte, and nothing else: any other key
//! order, whitespace, escape, number form or trailing byte makes it return `None`, and
//! the caller falls back to the general parser, which is the reference. The tests hold
//! the two to the same answer on every recorded frame and on mutated ones.

use raven_model::Level;

use crate::scan::Cursor;

/// The fields of a depth frame, as the general parser would produce them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ScannedDepth<'a> {
    pub symbol: &'a str,
    pub event_time: u64,
    pub first: u64,
    pub last: u64,
    pub prev: Option<u64>,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// Scans a canonical depth frame; `None` for anything else.
pub(super) fn scan(text: &str) -> Option<ScannedDepth<'_>> {
    let mut c = Cursor::new(text);
    c.lit(b"{\"stream\":")?;
    c.string()?;
    c.lit(b",\"data\":{\"e\":\"depthUpdate\",\"E\":")?;
    let event_time = c.number()?;
    if c.eat(b",\"T\":") {
        c.number()?;
    }
    c.lit(b",\"s\":")?;
    let symbol = c.string()?;
    c.lit(b",\"U\":")?;
    let first = c.number()?;
    c.lit(b",\"u\":")?;
    let last = c.number()?;
    let prev = if c.eat(b",\"pu\":") {
        Some(c.number()?)
    } else {
        None
    };
    c.lit(b",\"b\":")?;
    let bids = c.levels(16, false)?;
    c.lit(b",\"a\":")?;
    let asks = c.levels(16, false)?;
    c.lit(b"}}")?;
    c.at_end().then_some(ScannedDepth {
        symbol,
        event_time,
        first,
        last,
        prev,
        bids,
        asks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPOT: &str = r#"{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"],["0.34750000","5548.00000000"]],"a":[]}}"#;
    const USDM: &str = r#"{"stream":"sushiusdt@depth@100ms","data":{"e":"depthUpdate","E":1626992741037,"T":1626992741024,"s":"SUSHIUSDT","U":600859599090,"u":600859600917,"pu":600859598061,"b":[["7.5040","813"],["7.6090","0"]],"a":[["7.6150","1563"]]}}"#;

    #[test]
    fn scans_both_shapes() {
        let s = scan(SPOT).unwrap();
        assert_eq!(
            (s.symbol, s.event_time, s.first, s.last, s.prev),
            ("NKNUSDT", 1633998512068, 499869750, 499869752, None)
        );
        assert_eq!(s.bids.len(), 2);
        assert_eq!(s.bids[0].price.to_string(), "0.35130000");
        assert!(s.asks.is_empty());
        let f = scan(USDM).unwrap();
        assert_eq!(f.prev, Some(600859598061));
        assert!(f.bids[1].qty.is_zero());
        assert_eq!(f.asks[0].qty.to_string(), "1563");
    }

    #[test]
    fn anything_else_falls_back() {
        for bad in [
            SPOT.replace(",\"s\":", ", \"s\":"),                 // whitespace
            SPOT.replace("NKNUSDT", "NKN\\u0055SDT"),            // an escape
            SPOT.replace("\"E\":1633998512068", "\"E\":1.6e12"), // another number form
            SPOT.replace("\"U\":499869750", "\"U\":0499869750"), // leading zero
            SPOT.replace("\"U\":499869750", "\"U\":99999999999999999999"), // u64 overflow
            SPOT.replace("6195.00000000", "-6195"),              // refused by the model
            format!("{SPOT} "),                                  // trailing byte
            SPOT[..SPOT.len() - 1].to_owned(),                   // truncated
            SPOT.replace("depthUpdate", "depthUpdatX"),
        ] {
            assert_eq!(scan(&bad), None, "{bad}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        for text in [SPOT, USDM] {
            for end in 0..text.len() {
                assert_eq!(scan(&text[..end]), None);
            }
        }
    }
}
