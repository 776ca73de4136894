//! OKX order book pushes (`books`, `books5`) to [`BookMessage`]s, and the rules that
//! decide their [`Sequence`] and checksum.
//!
//! A push (OKX "WS / Order book channel", seen 2026-08, page dated 2026-07-07) is
//! `{"arg":{"channel":"books","instId":…},"action":"snapshot"|"update","data":[{…}]}`,
//! each `data` element holding `asks`, `bids` (levels `[price, size, "0", orders]`: the
//! third is a deprecated feature, always `"0"`; sizes are contracts for derivatives and
//! base currency for spot), `ts` (ms), and on today's feed `checksum`, `prevSeqId`,
//! `seqId`:
//! * `books` sends a 400-level snapshot after the subscription, then every 100 ms the
//!   levels that changed (size `0` removes). `books5` sends only snapshots: each push
//!   is the whole best 5 of each side, with `seqId` but no `prevSeqId` and no `action`.
//! * **Sequence** ("Sequence ID"): each instrument has its own `seqId`; an update's
//!   `prevSeqId` is the `seqId` of the message before it, the snapshot's `prevSeqId` is
//!   always `-1`. A book quiet for about 60 s gets an update with empty sides and
//!   `prevSeqId == seqId` (a heartbeat that keeps the chain). After maintenance the
//!   sequence may restart: the update then has `seqId < prevSeqId` and still names the
//!   previous `seqId`, so the chain holds. All of it is [`Sequence::Chained`]: a delta
//!   follows the book at `b` exactly when `prevSeqId == b`; the snapshot's `-1` becomes
//!   `u64::MAX`, never looked at.
//! * **Checksum**: CRC32 of the best 25 levels ([`super::checksum`]). Since 2026-06-23
//!   the field is still sent but always `0` (OKX changelog "Order book channels
//!   checksum field deprecation"), so `0` means "none" here. A real checksum of 0 (one
//!   chance in 2³²) only skips that one check.
//!
//! The recording of 2022-05-13 predates sequence ids: its pushes carry `checksum` and
//! no `seqId`/`prevSeqId` (OKX added them to the books channels later). Such a push is
//! [`Sequence::None`], and its continuity rests on the checksum alone.
//!
//! Levels are parsed inside the deserializer straight into [`Level`]s (one `Vec` per
//! side, no string per level).

use std::fmt;

use raven_model::{InstrumentId, Level, Price, Qty, UnixNanos};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use crate::engine::{BookMessage, ParseError, Sequence};

/// One element of a book push's `data`, as read by serde or by [`super::book_scan`].
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub(super) struct BookData<'a> {
    pub(super) asks: Levels,
    pub(super) bids: Levels,
    #[serde(borrow)]
    pub(super) ts: &'a str,
    pub(super) checksum: Option<i64>,
    #[serde(rename = "prevSeqId")]
    pub(super) prev_seq_id: Option<i64>,
    #[serde(rename = "seqId")]
    pub(super) seq_id: Option<i64>,
}

impl BookData<'_> {
    /// The message for `instrument`; `snapshot` from the push's `action` (always for
    /// `books5`).
    pub(super) fn into_message(
        self,
        instrument: &InstrumentId,
        snapshot: bool,
        receive_time: UnixNanos,
    ) -> Result<BookMessage, ParseError> {
        Ok(BookMessage {
            instrument: instrument.clone(),
            snapshot,
            sequence: sequence(snapshot, self.prev_seq_id, self.seq_id)?,
            checksum: checksum(self.checksum)?,
            exchange_time: UnixNanos::from_millis(millis(self.ts)?),
            receive_time,
            bids: self.bids.0,
            asks: self.asks.0,
        })
    }
}

/// The sequence of a push: none without `seqId` (feeds before sequence ids); chained
/// from `prevSeqId` otherwise, a snapshot's `-1` being no predecessor.
fn sequence(snapshot: bool, prev: Option<i64>, seq: Option<i64>) -> Result<Sequence, ParseError> {
    let Some(seq) = seq else {
        return match prev {
            None => Ok(Sequence::None),
            Some(_) => Err(ParseError::Invalid("prevSeqId without seqId".into())),
        };
    };
    let last =
        u64::try_from(seq).map_err(|_| ParseError::Invalid(format!("negative seqId {seq}")))?;
    if snapshot {
        return Ok(Sequence::Chained {
            prev: u64::MAX,
            last,
        });
    }
    match prev {
        Some(p) => Ok(Sequence::Chained {
            prev: u64::try_from(p)
                .map_err(|_| ParseError::Invalid(format!("update with prevSeqId {p}")))?,
            last,
        }),
        None => Err(ParseError::Invalid(
            "update with seqId but no prevSeqId".into(),
        )),
    }
}

/// The signed CRC32 as its unsigned bits; `0` (the deprecated field) is no checksum.
fn checksum(value: Option<i64>) -> Result<Option<u32>, ParseError> {
    match value {
        None | Some(0) => Ok(None),
        Some(v) => i32::try_from(v)
            .map(|v| Some(v as u32))
            .map_err(|_| ParseError::Invalid(format!("checksum {v} is not a 32-bit integer"))),
    }
}

/// OKX times are milliseconds in a string.
pub(super) fn millis(ts: &str) -> Result<u64, ParseError> {
    ts.parse()
        .map_err(|_| ParseError::Invalid(format!("invalid time {ts:?}")))
}

/// A side's levels, parsed as they are read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Levels(pub(super) Vec<Level>);

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SideVisitor;
        impl<'de> Visitor<'de> for SideVisitor {
            type Value = Levels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of levels")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Levels, A::Error> {
                let mut levels = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some(LevelEntry(level)) = seq.next_element()? {
                    levels.push(level);
                }
                Ok(Levels(levels))
            }
        }
        d.deserialize_seq(SideVisitor)
    }
}

/// `["price", "size", "0", "orders"]`: the first two make the level, the rest is
/// skipped.
struct LevelEntry(Level);

impl<'de> Deserialize<'de> for LevelEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LevelVisitor;
        impl<'de> Visitor<'de> for LevelVisitor {
            type Value = LevelEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a level [price, size, …]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LevelEntry, A::Error> {
                let price: &str = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let size: &str = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LevelEntry(Level {
                    price: Price::parse(price).map_err(de::Error::custom)?,
                    qty: Qty::parse(size).map_err(de::Error::custom)?,
                }))
            }
        }
        d.deserialize_seq(LevelVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Venue;

    fn message(json: &str, snapshot: bool) -> Result<BookMessage, ParseError> {
        let id = InstrumentId::new(Venue::new("test_okx_book").unwrap(), "BTC-USDT");
        serde_json::from_str::<BookData>(json)?.into_message(&id, snapshot, UnixNanos(7))
    }

    #[test]
    fn a_recorded_2022_update_has_a_checksum_and_no_sequence() {
        let m = message(
            r#"{"asks":[["30249.4","0","0","0"],["30261","4","0","1"]],"bids":[["30182.6","452","0","1"]],"ts":"1652459225464","checksum":-914047754}"#,
            false,
        )
        .unwrap();
        assert_eq!(m.sequence, Sequence::None);
        assert_eq!(m.checksum, Some((-914_047_754i32) as u32));
        assert_eq!(m.exchange_time, UnixNanos::from_millis(1_652_459_225_464));
        assert_eq!(m.receive_time, UnixNanos(7));
        assert_eq!(m.asks.len(), 2);
        assert!(m.asks[0].qty.is_zero());
        assert_eq!(m.asks[1].price.to_string(), "30261");
        assert_eq!(m.bids[0].qty.to_string(), "452");
    }

    #[test]
    fn today_s_pushes_chain_and_their_zero_checksum_is_none() {
        let snap = message(
            r#"{"asks":[["8476.98","415","0","13"]],"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","checksum":0,"prevSeqId":-1,"seqId":123456}"#,
            true,
        )
        .unwrap();
        assert_eq!(
            snap.sequence,
            Sequence::Chained {
                prev: u64::MAX,
                last: 123_456
            }
        );
        assert_eq!(snap.checksum, None);
        let update = message(
            r#"{"asks":[],"bids":[],"ts":"1597026383085","checksum":0,"prevSeqId":123456,"seqId":123457}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            update.sequence,
            Sequence::Chained {
                prev: 123_456,
                last: 123_457
            }
        );
        // A maintenance reset: the new sequence is lower and still names the old one.
        let reset = message(
            r#"{"asks":[],"bids":[],"ts":"1","prevSeqId":15,"seqId":3}"#,
            false,
        )
        .unwrap();
        assert_eq!(reset.sequence, Sequence::Chained { prev: 15, last: 3 });
    }

    #[test]
    fn books5_snapshots_have_a_seq_id_only() {
        let m = message(
            r#"{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"instId":"BCH-USDT-SWAP","ts":"1670324386802","seqId":363996337}"#,
            true,
        )
        .unwrap();
        assert_eq!(
            m.sequence,
            Sequence::Chained {
                prev: u64::MAX,
                last: 363_996_337
            }
        );
    }

    #[test]
    fn malformed_pushes_are_errors() {
        for (json, snapshot) in [
            // An update that cannot chain.
            (r#"{"asks":[],"bids":[],"ts":"1","seqId":5}"#, false),
            (
                r#"{"asks":[],"bids":[],"ts":"1","prevSeqId":-1,"seqId":5}"#,
                false,
            ),
            (r#"{"asks":[],"bids":[],"ts":"1","prevSeqId":4}"#, false),
            (
                r#"{"asks":[],"bids":[],"ts":"1","prevSeqId":4,"seqId":-5}"#,
                false,
            ),
            (
                r#"{"asks":[],"bids":[],"ts":"1","checksum":4294967295}"#,
                false,
            ),
            (r#"{"asks":[],"bids":[],"ts":"soon"}"#, true),
            (r#"{"asks":[["1"]],"bids":[],"ts":"1"}"#, true),
            (r#"{"asks":[["0","1","0","1"]],"bids":[],"ts":"1"}"#, true),
            (r#"{"asks":[["1","-1","0","1"]],"bids":[],"ts":"1"}"#, true),
            (r#"{"asks":[[1.5,"1","0","1"]],"bids":[],"ts":"1"}"#, true),
            (r#"{"bids":[],"ts":"1"}"#, true),
        ] {
            assert!(message(json, snapshot).is_err(), "{json}");
        }
    }
}
