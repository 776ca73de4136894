//! A scanner for the frame shape that is most of a Kraken book connection: `book-N`.
//!
//! Book updates are nearly every frame of a busy book connection (4,279 of the 4,430
//! recorded frames), each one level or two, and a general JSON parser spends more on
//! such a frame than the book spends applying it. Kraken v1 writes them compactly:
//!
//! ```text
//! [channelID,{"a"|"b"|"as"|"bs":[["price","volume","timestamp"(,"r")],…](,…)(,"c":"checksum")}(,{…}),"book-N","PAIR"]
//! ```
//!
//! [`scan`] accepts exactly that, byte by byte: any other key, whitespace, escape, an
//! empty object or a trailing byte returns `None`, and the caller falls back to serde,
//! which is the reference and reports errors. The tests hold the two to the same
//! answer on every recorded book frame and on mutated ones. Read forwards, the frame
//! also gives its channel name and pair, so a book frame needs no other pass.

use raven_model::Level;

use super::parse::{epoch_nanos, BookParts};
use crate::scan::Cursor;

/// A canonical book frame: what its objects say, merged, and the channel name and pair
/// at its end.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ScannedBook<'a> {
    pub parts: BookParts,
    pub channel: &'a str,
    pub pair: &'a str,
}

/// Scans a canonical book frame; `None` for anything else.
pub(super) fn scan(text: &str) -> Option<ScannedBook<'_>> {
    let mut c = Cursor::new(text);
    c.lit(b"[")?;
    c.number()?;
    let mut parts = BookParts::default();
    c.lit(b",{")?;
    loop {
        object(&mut c, &mut parts)?;
        if !c.eat(b",{") {
            break;
        }
    }
    c.lit(b",")?;
    let channel = c.string()?;
    c.lit(b",")?;
    let pair = c.string()?;
    c.lit(b"]")?;
    c.at_end().then_some(ScannedBook {
        parts,
        channel,
        pair,
    })
}

/// The members of one object, after its `{`, through its `}`.
fn object(c: &mut Cursor<'_>, parts: &mut BookParts) -> Option<()> {
    loop {
        if c.eat(b"\"c\":") {
            parts.checksum = Some(c.string()?.parse().ok()?);
        } else {
            let (side, snapshot) = if c.eat(b"\"a\":") {
                (&mut parts.asks, false)
            } else if c.eat(b"\"b\":") {
                (&mut parts.bids, false)
            } else if c.eat(b"\"as\":") {
                (&mut parts.asks, true)
            } else {
                c.lit(b"\"bs\":")?;
                (&mut parts.bids, true)
            };
            if snapshot {
                parts.snapshot = true;
            } else {
                parts.update = true;
            }
            levels(c, side, &mut parts.latest)?;
        }
        if c.eat(b"}") {
            return Some(());
        }
        c.lit(b",")?;
    }
}

/// `[["price","volume","timestamp"(,"r")],…]` appended to `side`, in order, the latest
/// timestamp kept.
fn levels(
    c: &mut Cursor<'_>,
    side: &mut Vec<Level>,
    latest: &mut raven_model::UnixNanos,
) -> Option<()> {
    c.lit(b"[")?;
    if c.eat(b"]") {
        return Some(());
    }
    loop {
        c.lit(b"[")?;
        let price = c.price()?;
        c.lit(b",")?;
        let qty = c.qty()?;
        c.lit(b",")?;
        let time = epoch_nanos(c.string()?).ok()?;
        // A republished level's "r".
        while c.eat(b",") {
            c.string()?;
        }
        c.lit(b"]")?;
        side.push(Level { price, qty });
        *latest = (*latest).max(time);
        if c.eat(b"]") {
            return Some(());
        }
        c.lit(b",")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kraken::parse::general_book;

    const UPDATE: &str = r#"[1920,{"b":[["0.042940","20000.00000000","1618678134.132512"]],"c":"4080231606"},"book-1000","SC/EUR"]"#;
    const TWO: &str = r#"[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708"],["0.04","1.0","1618678145.920709","r"]],"c":"4105471083"},"book-1000","SC/EUR"]"#;
    const SNAPSHOT: &str = r#"[464,{"as":[["56218.30000","0.15000000","1618678117.243818"],["56218.40000","0.02970000","1618678093.187766"]],"bs":[["56119.00000","0.14375128","1618678128.948712"]]},"book-1000","XBT/USD"]"#;

    #[test]
    fn scans_every_documented_shape_as_serde_reads_it() {
        for text in [UPDATE, TWO, SNAPSHOT] {
            let scanned = scan(text).map(|s| s.parts);
            assert!(scanned.is_some(), "{text}");
            assert_eq!(scanned, general_book(text).ok(), "{text}");
        }
        let s = scan(UPDATE).unwrap();
        assert_eq!((s.channel, s.pair), ("book-1000", "SC/EUR"));
        let two = scan(TWO).unwrap().parts;
        assert_eq!((two.asks.len(), two.bids.len()), (1, 2));
        assert_eq!(two.checksum, Some(4_105_471_083));
        assert!(scan(SNAPSHOT).unwrap().parts.snapshot);
    }

    #[test]
    fn scans_every_recorded_book_frame_as_serde_reads_it() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/captures/KRAKEN.jsonl.zst");
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
        let mut scanned = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(frame) = v["data"].as_str().filter(|_| v["t"] == "recv") else {
                continue;
            };
            if frame.starts_with('[') && frame.contains("\"book-") {
                let parts = scan(frame).map(|s| s.parts);
                assert!(parts.is_some(), "{frame:.200}");
                assert_eq!(parts, general_book(frame).ok(), "{frame:.200}");
                scanned += 1;
            }
        }
        assert_eq!(scanned, 4279);
    }

    #[test]
    fn anything_else_falls_back() {
        for bad in [
            UPDATE.replace(",\"c\":", ", \"c\":"),           // whitespace
            UPDATE.replace("SC/EUR", "SC\\/EUR"),            // an escape
            UPDATE.replace("\"4080231606\"", "4080231606"),  // a number checksum
            UPDATE.replace("4080231606", "4294967296"),      // not a u32
            UPDATE.replace("\"b\":", "\"x\":"),              // another key
            UPDATE.replace("\"20000.00000000\"", "20000.0"), // a number level
            UPDATE.replace("\"0.042940\"", "\"0\""),         // refused by the model
            UPDATE.replace("1618678134.132512", "soon"),     // not a time
            UPDATE.replace(",\"1618678134.132512\"", ""),    // no time
            UPDATE.replace("{\"b\"", "{}"),                  // an empty object
            UPDATE.replace("[1920,", "[\"1920\","),          // a string id
            UPDATE.replace(",\"book-1000\"", ""),            // no channel name
            format!("{UPDATE} "),                            // trailing byte
        ] {
            assert_eq!(scan(&bad), None, "{bad}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        for text in [UPDATE, TWO, SNAPSHOT] {
            for end in 0..text.len() {
                assert_eq!(scan(&text[..end]), None);
            }
        }
    }
}
