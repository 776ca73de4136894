//! A scanner for the one frame shape that dominates OKX input: the book push.
//!
//! Book pushes are nearly all of a busy connection's bytes, and a general JSON parser
//! spends most of its time on them finding keys it already knows. OKX writes them in
//! one compact shape (the recorded frames of 2022 and the documented ones of today):
//!
//! ```text
//! {"arg":{"channel":"books","instId":"…"},"action":"update","data":[{"asks":[["p","s","0","n"],…],
//!  "bids":[…],"ts":"…","checksum":…,"prevSeqId":…,"seqId":…}]}
//! ```
//!
//! with `action` absent on `books5`, which adds `"instId"` before `ts`, and `checksum`,
//! `prevSeqId`, `seqId` each optional (the 2022 recording has only `checksum`).
//! [`scan`] accepts exactly that, byte by byte: any other key order, whitespace,
//! escape, number form, a second `data` element or a trailing byte returns `None`, and
//! the caller falls back to serde, which is the reference. The tests hold the two to
//! the same answer on every recorded frame, on today's shape and on mutated frames.

use super::book::{BookData, Levels};
use crate::scan::Cursor;

/// A book push as the general parser reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ScannedBook<'a> {
    pub channel: &'a str,
    pub inst_id: &'a str,
    pub action: Option<&'a str>,
    pub data: BookData<'a>,
}

/// Scans a canonical book push; `None` for anything else.
pub(super) fn scan(text: &str) -> Option<ScannedBook<'_>> {
    let mut c = Cursor::new(text);
    c.lit(b"{\"arg\":{\"channel\":")?;
    let channel = c.string()?;
    c.lit(b",\"instId\":")?;
    let inst_id = c.string()?;
    c.lit(b"}")?;
    let action = if c.eat(b",\"action\":") {
        Some(c.string()?)
    } else {
        None
    };
    c.lit(b",\"data\":[{\"asks\":")?;
    let asks = c.levels(32, true)?;
    c.lit(b",\"bids\":")?;
    let bids = c.levels(32, true)?;
    if c.eat(b",\"instId\":") {
        c.string()?;
    }
    c.lit(b",\"ts\":")?;
    let ts = c.string()?;
    let checksum = field(&mut c, b",\"checksum\":")?;
    let prev_seq_id = field(&mut c, b",\"prevSeqId\":")?;
    let seq_id = field(&mut c, b",\"seqId\":")?;
    c.lit(b"}]}")?;
    c.at_end().then_some(ScannedBook {
        channel,
        inst_id,
        action,
        data: BookData {
            asks: Levels(asks),
            bids: Levels(bids),
            ts,
            checksum,
            prev_seq_id,
            seq_id,
        },
    })
}

/// An optional integer field: `Some(None)` when absent, `None` when malformed.
fn field<const N: usize>(c: &mut Cursor<'_>, key: &[u8; N]) -> Option<Option<i64>> {
    if c.eat(key) {
        Some(Some(c.integer()?))
    } else {
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const RECORDED: &str = r#"{"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[["30249.4","0","0","0"],["30261","4","0","1"],["30310.3","19","0","1"]],"bids":[["30182.6","452","0","1"]],"ts":"1652459225464","checksum":-914047754}]}"#;
    const TODAY: &str = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["8476.98","415","0","13"],["8477","7","0","2"]],"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","checksum":0,"prevSeqId":-1,"seqId":123456}]}"#;
    const BOOKS5: &str = r#"{"arg":{"channel":"books5","instId":"BCH-USDT-SWAP"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"instId":"BCH-USDT-SWAP","ts":"1670324386802","seqId":363996337}]}"#;
    const HEARTBEAT: &str = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","checksum":0,"prevSeqId":5,"seqId":5}]}"#;

    /// What serde reads from the same frame: the reference.
    fn general(text: &str) -> Option<ScannedBook<'_>> {
        #[derive(Deserialize)]
        struct Push<'a> {
            #[serde(borrow)]
            arg: Arg<'a>,
            #[serde(borrow)]
            action: Option<&'a str>,
            #[serde(borrow)]
            data: Vec<BookData<'a>>,
        }
        #[derive(Deserialize)]
        struct Arg<'a> {
            #[serde(borrow)]
            channel: &'a str,
            #[serde(borrow, rename = "instId")]
            inst_id: &'a str,
        }
        let push: Push = serde_json::from_str(text).ok()?;
        let [data]: [BookData; 1] = push.data.try_into().ok()?;
        Some(ScannedBook {
            channel: push.arg.channel,
            inst_id: push.arg.inst_id,
            action: push.action,
            data,
        })
    }

    #[test]
    fn scans_every_documented_shape_as_serde_reads_it() {
        for text in [RECORDED, TODAY, BOOKS5, HEARTBEAT] {
            let scanned = scan(text);
            assert!(scanned.is_some(), "{text}");
            assert_eq!(scanned, general(text), "{text}");
        }
        let s = scan(RECORDED).unwrap();
        assert_eq!(
            (s.channel, s.inst_id, s.action),
            ("books", "BTC-USD-220527", Some("update"))
        );
        assert_eq!(s.data.checksum, Some(-914_047_754));
        assert_eq!((s.data.prev_seq_id, s.data.seq_id), (None, None));
        assert_eq!(s.data.asks.0[1].price.to_string(), "30261");
        let t = scan(TODAY).unwrap();
        assert_eq!(
            (t.data.prev_seq_id, t.data.seq_id),
            (Some(-1), Some(123_456))
        );
        assert_eq!(scan(BOOKS5).unwrap().action, None);
    }

    #[test]
    fn scans_every_recorded_book_frame_as_serde_reads_it() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/captures/OKX.jsonl.zst");
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
        let mut scanned = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(frame) = v["data"].as_str().filter(|_| v["t"] == "recv") else {
                continue;
            };
            if frame.contains("\"action\"") {
                assert_eq!(scan(frame), general(frame), "{frame:.200}");
                assert!(scan(frame).is_some(), "{frame:.200}");
                scanned += 1;
            }
        }
        assert_eq!(scanned, 290);
    }

    #[test]
    fn anything_else_falls_back() {
        for bad in [
            RECORDED.replace(",\"action\":", ", \"action\":"), // whitespace
            RECORDED.replace("BTC-USD-220527", "BTC-USD\\u002d220527"), // an escape
            RECORDED.replace("-914047754", "-914047754.0"),    // not an integer
            RECORDED.replace("-914047754", "-9.1e8"),
            RECORDED.replace("-914047754", "-0914047754"), // leading zero
            RECORDED.replace("-914047754", "99999999999999999999"), // i64 overflow
            RECORDED.replace("-914047754", "\"-914047754\""), // a string
            RECORDED.replace("\"452\"", "\"-452\""),       // refused by the model
            RECORDED.replace("\"452\"", "452"),            // a number level
            RECORDED.replace("}]}", "},{\"asks\":[],\"bids\":[],\"ts\":\"1\"}]}"), // two data
            TODAY.replace(
                "\"prevSeqId\":-1,\"seqId\":123456",
                "\"seqId\":123456,\"prevSeqId\":-1",
            ), // order
            RECORDED.replace("[\"30261\",\"4\",\"0\",\"1\"]", "[\"30261\"]"), // no size
            format!("{RECORDED} "),                        // trailing byte
        ] {
            assert_eq!(scan(&bad), None, "{bad}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        for text in [RECORDED, TODAY, BOOKS5, HEARTBEAT] {
            for end in 0..text.len() {
                assert_eq!(scan(&text[..end]), None);
            }
        }
    }
}
