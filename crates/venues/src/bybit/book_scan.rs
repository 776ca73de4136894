//! A scanner for the frame shape that dominates Bybit's input: order book messages.
//!
//! Book messages are most of what Bybit sends (2,148 of the 3,227 recorded frames, all
//! but 6 of them deltas), and a general JSON parser spends more on a typical 330-byte
//! delta than applying it to the book. Bybit writes them in one compact shape, with the key order of its category
//! ("Orderbook" page, reminder of 2026-03-05: spot writes `ts` before `type`, linear
//! after it, except for level 1):
//!
//! ```text
//! {"topic":"…","type":"…","ts":…,"data":{"s":"…","b":[["p","q"],…],"a":[…],"u":…,"seq":…},"cts":…}
//! {"topic":"…","ts":…,"type":"…","data":{…},"cts":…}
//! ```
//!
//! [`scan`] accepts exactly these, byte by byte, and nothing else: any other key order,
//! whitespace, escape, number form or trailing byte makes it return `None`, and the
//! caller falls back to the general parser, which is the reference. The tests hold the
//! two to the same answer on every recorded book frame and on reformatted ones.

use raven_model::Level;

use crate::scan::Cursor;

/// The fields of a book frame Raven uses, as the general parser produces them too.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ScannedBook<'a> {
    /// `snapshot` or `delta`.
    pub kind: &'a str,
    /// When Bybit's market-data service made the message (ms).
    pub ts: u64,
    /// When the matching engine produced this book state (ms), if sent.
    pub cts: Option<u64>,
    pub symbol: &'a str,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// `u`: the book's update id.
    pub update_id: u64,
}

/// Scans a canonical book frame; `None` for anything else.
pub(super) fn scan(text: &str) -> Option<ScannedBook<'_>> {
    let mut c = Cursor::new(text);
    c.lit(b"{\"topic\":")?;
    c.string()?;
    let (kind, ts) = if c.eat(b",\"type\":") {
        let kind = c.string()?;
        c.lit(b",\"ts\":")?;
        (kind, c.number()?)
    } else {
        c.lit(b",\"ts\":")?;
        let ts = c.number()?;
        c.lit(b",\"type\":")?;
        (c.string()?, ts)
    };
    c.lit(b",\"data\":{\"s\":")?;
    let symbol = c.string()?;
    c.lit(b",\"b\":")?;
    // Deltas average 4 to 5 levels a side: one allocation for most.
    let bids = c.levels(8, false)?;
    c.lit(b",\"a\":")?;
    let asks = c.levels(8, false)?;
    c.lit(b",\"u\":")?;
    let update_id = c.number()?;
    c.lit(b",\"seq\":")?;
    c.number()?;
    c.lit(b"}")?;
    let cts = if c.eat(b",\"cts\":") {
        Some(c.number()?)
    } else {
        None
    };
    c.lit(b"}")?;
    c.at_end().then_some(ScannedBook {
        kind,
        ts,
        cts,
        symbol,
        bids,
        asks,
        update_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINEAR: &str = r#"{"topic":"orderbook.200.BTCUSDT","type":"delta","ts":1786310818130,"data":{"s":"BTCUSDT","b":[["65095.30","0.005"],["65093.10","0"]],"a":[["65116.60","0"]],"u":15076953,"seq":753843913870},"cts":1786310818129}"#;
    const SPOT: &str = r#"{"topic":"orderbook.200.BTCUSDT","ts":1786310816816,"type":"delta","data":{"s":"BTCUSDT","b":[],"a":[["65140.5","0.472215"]],"u":62505426,"seq":112488545879},"cts":1786310816779}"#;

    #[test]
    fn both_key_orders_scan() {
        let l = scan(LINEAR).unwrap();
        assert_eq!(
            (l.kind, l.ts, l.cts, l.symbol, l.update_id),
            (
                "delta",
                1786310818130,
                Some(1786310818129),
                "BTCUSDT",
                15076953
            )
        );
        assert_eq!(l.bids.len(), 2);
        assert!(l.bids[1].qty.is_zero());
        assert_eq!(l.asks[0].price.to_string(), "65116.60");
        let s = scan(SPOT).unwrap();
        assert_eq!(
            (s.kind, s.ts, s.update_id),
            ("delta", 1786310816816, 62505426)
        );
        assert!(s.bids.is_empty());
        assert_eq!(s.asks[0].qty.to_string(), "0.472215");
    }

    #[test]
    fn cts_is_optional() {
        let text = LINEAR.replace(",\"cts\":1786310818129", "");
        assert_eq!(scan(&text).unwrap().cts, None);
    }

    #[test]
    fn anything_else_is_left_to_the_general_parser() {
        for text in [
            LINEAR.replace(',', ", "),
            LINEAR.replace("\"u\":15076953,", ""),
            LINEAR.replace("15076953", "015076953"),
            LINEAR.replace("15076953", "-15076953"),
            LINEAR.replace("15076953", "99999999999999999999"),
            LINEAR.replace("BTCUSDT\",\"b", "BTC\\u0055SDT\",\"b"),
            LINEAR.replace("\"0.005\"", "0.005"),
            LINEAR.replace("\"0.005\"", "\"-1\""),
            format!("{LINEAR} "),
            LINEAR[..LINEAR.len() - 1].to_owned(),
            SPOT.replace("{\"topic\"", "{\"id\":\"x\",\"topic\""),
        ] {
            assert_eq!(scan(&text), None, "{text}");
        }
    }
}
