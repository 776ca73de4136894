//! Bybit v5 public frames to Raven's venue-neutral outputs, exactly and with as little
//! copying as the hot path allows.
//!
//! Bybit's data frames name their `topic` first (`orderbook.200.BTCUSDT`; spot klines
//! aside), so the topic is read with a prefix check and selects the payload type before
//! the frame is parsed once: book frames take the `book_scan` fast path (falling back to
//! serde_json for any other shape), everything else is deserialized into typed structs whose strings borrow from
//! the frame. Prices and sizes go straight from Bybit's text to [`Price`] / [`Qty`].
//!
//! The rules, from bybit-exchange/docs @072c197 (2026-07-24):
//! * **Books** ("Orderbook"): a `snapshot` follows every subscription and replaces the
//!   book; `delta`s set a level's size (`"0"` deletes it). `u` is the book's update id,
//!   contiguous per book ([`Sequence::Contiguous`] with `first == last == u`); `u == 1`
//!   means the service restarted and the message is a full book: it is passed on as a
//!   snapshot whatever its `type`. `seq` is the matching engine's cross sequence across
//!   depths and topics, not per book, and is not used. The event time is `cts`, the
//!   matching engine's time of that book state (correlates with trades' `T`), or `ts`
//!   (the market-data service's push time) where `cts` is absent. Bybit sends no book
//!   checksum. A top-N book sends removals for levels leaving its window (the docs do
//!   not say so; the recorded 200-level books stay at exactly 200 per side through every
//!   delta), and the engine cuts to the depth anyway.
//! * **BBO on spot** is `orderbook.1.{symbol}`: snapshot messages only (since
//!   2025-03-20), re-sent with the same `u` when nothing changed for 3 s; its `u` is the
//!   BBO's update id. A side without orders gives no BBO. On linear the BBO and the mark
//!   price / funding come from `tickers` (merged by the `tickers` module).
//! * **Trades** ("Trade"): `publicTrade.{symbol}` frames hold up to 1024 trades, each
//!   with `T` (fill time, ms), `s`, `S` (taker side `Buy`/`Sell`), `v`, `p`, `i` (trade
//!   id). Spot ids are decimal integers ([`TradeId::Number`]); linear ids are UUIDs
//!   ([`TradeId::Text`], numbered among trades of the same time by [`Ordinals`]).
//! * **Liquidations** ("All Liquidation", linear only): `allLiquidation.{symbol}`, `data`
//!   a list of `{T, s, S, v, p}` where `S` is the side of the **position** liquidated
//!   (`Buy`: a long) and `p` its bankruptcy price. Raven's [`Liquidation::side`] is the
//!   side of the liquidation order, the opposite (a long is liquidated by a sell), as
//!   Binance's `forceOrder` reports it.
//! * **Replies** ("Connect"): `{"success":true,"ret_msg":…,"op":"subscribe"|"ping"|…}`
//!   acknowledges a request (the pong is `op: "ping"`, `ret_msg: "pong"`);
//!   `success: false` is a refusal, whose `ret_msg` says why.
//!
//! Klines and any other topic give nothing (the frame must still be JSON).

use std::fmt;
use std::sync::Arc;

use raven_model::{
    Bbo, EventKind, Level, Liquidation, MarketEvent, Price, Qty, Side, Trade, TradeId, UnixNanos,
};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::book_scan::{self, ScannedBook};
use super::tickers::{TickerFields, Tickers};
use crate::engine::{BookMessage, FrameParser, Ordinals, ParseError, Parsed, Sequence, SymbolMap};
use crate::scan::Cursor;

/// Reads one Bybit connection's frames (spot or linear: the frames differ only in
/// which fields are present).
pub struct BybitParser {
    symbols: SymbolMap,
    /// The depth of the subscribed book topic, as its topic spells it (`"200"`).
    book_depth: String,
    tickers: Tickers,
    ordinals: Ordinals,
}

impl BybitParser {
    pub fn new(symbols: SymbolMap, book_depth: u32) -> Self {
        Self {
            symbols,
            book_depth: book_depth.to_string(),
            tickers: Tickers::default(),
            ordinals: Ordinals::default(),
        }
    }

    fn book(
        &self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let b = scan_book(text)?;
        let snapshot = match b.kind {
            "snapshot" => true,
            // A restart of Bybit's service: the book starts again from this message.
            "delta" => b.update_id == 1,
            other => return Err(ParseError::Invalid(format!("book type {other:?}"))),
        };
        out.push(Parsed::Book(BookMessage {
            instrument: self.symbols.get(b.symbol)?.clone(),
            snapshot,
            exchange_time: UnixNanos::from_millis(b.cts.unwrap_or(b.ts)),
            receive_time,
            sequence: Sequence::Contiguous {
                first: b.update_id,
                last: b.update_id,
            },
            checksum: None,
            bids: b.bids,
            asks: b.asks,
        }));
        Ok(())
    }

    /// Level 1 of the book as the best bid and offer.
    fn level_one(
        &self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let b = scan_book(text)?;
        if b.kind != "snapshot" {
            return Err(ParseError::Invalid(format!(
                "orderbook.1 sends snapshots only, got {:?}",
                b.kind
            )));
        }
        let instrument = self.symbols.get(b.symbol)?;
        let (Some(bid), Some(ask)) = (b.bids.first(), b.asks.first()) else {
            return Ok(());
        };
        out.push(Parsed::Event(MarketEvent {
            instrument: instrument.clone(),
            exchange_time: UnixNanos::from_millis(b.cts.unwrap_or(b.ts)),
            receive_time,
            kind: EventKind::Bbo(Bbo {
                bid_price: bid.price,
                bid_qty: bid.qty,
                ask_price: ask.price,
                ask_qty: ask.qty,
                update_id: b.update_id,
            }),
        }));
        Ok(())
    }

    fn trades(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let frame: DataFrame<Vec<TradeItem>> = serde_json::from_str(text)?;
        // Everything is read before any ordinal is taken, so a bad trade changes nothing.
        let mut trades = Vec::with_capacity(frame.data.len());
        for t in &frame.data {
            trades.push((
                self.symbols.get(t.symbol)?,
                UnixNanos::from_millis(t.time),
                Price::parse(t.price)?,
                Qty::parse(t.size)?,
                side(t.side)?,
                trade_id(t.id),
            ));
        }
        for (instrument, time, price, qty, aggressor, trade_id) in trades {
            let ordinal = match trade_id {
                TradeId::Number(_) => 0,
                _ => self.ordinals.next(instrument, time),
            };
            out.push(Parsed::Event(MarketEvent {
                instrument: instrument.clone(),
                exchange_time: time,
                receive_time,
                kind: EventKind::Trade(Trade {
                    price,
                    qty,
                    aggressor,
                    trade_id,
                    ordinal,
                }),
            }));
        }
        Ok(())
    }

    fn ticker(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let frame: TickerFrame = serde_json::from_str(text)?;
        let snapshot = match frame.kind {
            "snapshot" => true,
            "delta" => false,
            other => return Err(ParseError::Invalid(format!("ticker type {other:?}"))),
        };
        let instrument = self.symbols.get(frame.data.symbol)?;
        let made = self
            .tickers
            .apply(instrument, snapshot, &frame.data, frame.cs)?;
        let exchange_time = UnixNanos::from_millis(frame.ts);
        let event = |kind| {
            Parsed::Event(MarketEvent {
                instrument: instrument.clone(),
                exchange_time,
                receive_time,
                kind,
            })
        };
        out.extend(made.bbo.map(|b| event(EventKind::Bbo(b))));
        out.extend(made.mark.map(|m| event(EventKind::MarkPrice(m))));
        Ok(())
    }

    fn liquidations(
        &self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let frame: DataFrame<OneOrMany<LiquidationItem>> = serde_json::from_str(text)?;
        let items = match frame.data {
            OneOrMany::One(item) => vec![item],
            OneOrMany::Many(items) => items,
        };
        let mut events = Vec::with_capacity(items.len());
        for l in &items {
            // The position's side, liquidated by an order of the other side.
            let side = match side(l.side)? {
                Side::Buy => Side::Sell,
                Side::Sell => Side::Buy,
            };
            events.push(Parsed::Event(MarketEvent {
                instrument: self.symbols.get(l.symbol)?.clone(),
                exchange_time: UnixNanos::from_millis(l.time),
                receive_time,
                kind: EventKind::Liquidation(Liquidation {
                    side,
                    price: Price::parse(l.price)?,
                    qty: Qty::parse(l.size)?,
                }),
            }));
        }
        out.extend(events);
        Ok(())
    }
}

impl FrameParser for BybitParser {
    fn parse(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let topic = match fast_topic(text) {
            Some(topic) => topic,
            None => {
                let head: Head = serde_json::from_str(text)?;
                match head.topic {
                    Some(topic) => topic,
                    None => return reply(head, out),
                }
            }
        };
        let (channel, rest) = topic.split_once('.').unwrap_or((topic, ""));
        match channel {
            "orderbook" => {
                let depth = rest.split_once('.').map_or("", |(depth, _)| depth);
                if depth == self.book_depth {
                    self.book(text, receive_time, out)
                } else if depth == "1" {
                    self.level_one(text, receive_time, out)
                } else {
                    well_formed(text)
                }
            }
            "publicTrade" => self.trades(text, receive_time, out),
            "tickers" => self.ticker(text, receive_time, out),
            "allLiquidation" => self.liquidations(text, receive_time, out),
            _ => well_formed(text),
        }
    }
}

/// The `topic` of a frame that starts with it, as every Bybit data frame does.
fn fast_topic(text: &str) -> Option<&str> {
    let mut c = Cursor::new(text);
    c.lit(b"{\"topic\":")?;
    c.string()
}

/// A request's reply: an acknowledgement (or pong), or a refusal.
fn reply(head: Head, out: &mut Vec<Parsed>) -> Result<(), ParseError> {
    let Some(op) = head.op else {
        return Err(ParseError::Invalid(
            "frame has neither a topic nor an op".into(),
        ));
    };
    out.push(if head.success == Some(false) {
        Parsed::Refused(format!("{op}: {}", head.ret_msg.unwrap_or_default()))
    } else {
        Parsed::Control
    });
    Ok(())
}

/// A frame Raven does not use must still be JSON.
fn well_formed(text: &str) -> Result<(), ParseError> {
    serde_json::from_str::<IgnoredAny>(text)?;
    Ok(())
}

/// A book frame, by the scanner when it has the canonical shape.
fn scan_book(text: &str) -> Result<ScannedBook<'_>, ParseError> {
    match book_scan::scan(text) {
        Some(b) => Ok(b),
        None => general_book(text),
    }
}

/// A book frame of any shape, by serde_json: the reference the scanner must agree with.
fn general_book(text: &str) -> Result<ScannedBook<'_>, ParseError> {
    let f: BookFrame = serde_json::from_str(text)?;
    Ok(ScannedBook {
        kind: f.kind,
        ts: f.ts,
        cts: f.cts,
        symbol: f.data.symbol,
        bids: f.data.bids.0,
        asks: f.data.asks.0,
        update_id: f.data.update_id,
    })
}

fn side(s: &str) -> Result<Side, ParseError> {
    match s {
        "Buy" => Ok(Side::Buy),
        "Sell" => Ok(Side::Sell),
        other => Err(ParseError::Invalid(format!("side {other:?}"))),
    }
}

/// A number when the id is a plain decimal integer (spot), text otherwise (linear
/// UUIDs); a zero-padded number stays text so the id reads back as sent.
fn trade_id(id: &str) -> TradeId {
    if id.is_empty() {
        return TradeId::None;
    }
    let plain = id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0'));
    match id.parse::<u64>() {
        Ok(n) if plain => TradeId::Number(n),
        _ => TradeId::Text(Arc::from(id)),
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    topic: Option<&'a str>,
    #[serde(default, borrow)]
    op: Option<&'a str>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    ret_msg: Option<String>,
}

#[derive(Deserialize)]
struct BookFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    ts: u64,
    #[serde(default)]
    cts: Option<u64>,
    #[serde(borrow)]
    data: BookData<'a>,
}

#[derive(Deserialize)]
struct BookData<'a> {
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "b")]
    bids: Levels,
    #[serde(rename = "a")]
    asks: Levels,
    #[serde(rename = "u")]
    update_id: u64,
}

#[derive(Deserialize)]
struct DataFrame<T> {
    data: T,
}

#[derive(Deserialize)]
struct TradeItem<'a> {
    #[serde(rename = "T")]
    time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "S", borrow)]
    side: &'a str,
    #[serde(rename = "v", borrow)]
    size: &'a str,
    #[serde(rename = "p", borrow)]
    price: &'a str,
    #[serde(rename = "i", default, borrow)]
    id: &'a str,
}

#[derive(Deserialize)]
struct TickerFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    ts: u64,
    /// Cross sequence; Raven's BBO update id.
    #[serde(default)]
    cs: u64,
    #[serde(borrow)]
    data: TickerFields<'a>,
}

#[derive(Deserialize)]
struct LiquidationItem<'a> {
    #[serde(rename = "T")]
    time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "S", borrow)]
    side: &'a str,
    #[serde(rename = "v", borrow)]
    size: &'a str,
    #[serde(rename = "p", borrow)]
    price: &'a str,
}

/// The docs' table calls liquidation `data` an object and their example a list: both
/// are read.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// `[["price","size"], …]` parsed straight into exact levels.
struct Levels(Vec<Level>);

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelsVisitor;

        impl<'de> Visitor<'de> for LevelsVisitor {
            type Value = Levels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [price, size] string pairs")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Levels, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some([price, qty]) = seq.next_element::<[&'de str; 2]>()? {
                    out.push(Level {
                        price: Price::parse(price).map_err(de::Error::custom)?,
                        qty: Qty::parse(qty).map_err(de::Error::custom)?,
                    });
                }
                Ok(Levels(out))
            }
        }

        deserializer.deserialize_seq(LevelsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{MarkPrice, Venue};
    use rust_decimal::Decimal;
    use std::str::FromStr;

    const T0: UnixNanos = UnixNanos(42);

    fn linear() -> BybitParser {
        let v = Venue::new("bybit_linear").unwrap();
        BybitParser::new(SymbolMap::new(v, ["BTCUSDT", "ETHUSDT", "ROSEUSDT"]), 200)
    }

    fn spot() -> BybitParser {
        let v = Venue::new("bybit_spot").unwrap();
        BybitParser::new(SymbolMap::new(v, ["BTCUSDT", "ETHUSDT"]), 200)
    }

    fn parse(p: &mut BybitParser, text: &str) -> Vec<Parsed> {
        let mut out = Vec::new();
        p.parse(text, T0, &mut out).unwrap();
        out
    }

    fn book(out: &[Parsed]) -> &BookMessage {
        match out {
            [Parsed::Book(b)] => b,
            other => panic!("expected one book message, got {other:?}"),
        }
    }

    fn events(out: Vec<Parsed>) -> Vec<MarketEvent> {
        out.into_iter()
            .map(|p| match p {
                Parsed::Event(e) => e,
                other => panic!("expected an event, got {other:?}"),
            })
            .collect()
    }

    const SNAPSHOT: &str = r#"{"topic":"orderbook.200.BTCUSDT","type":"snapshot","ts":1786310818129,"data":{"s":"BTCUSDT","b":[["65114.20","6.054"],["65114.10","0.002"]],"a":[["65114.30","10.470"]],"u":15076952,"seq":753843911359},"cts":1786310818127}"#;

    #[test]
    fn book_snapshot_and_delta() {
        let mut p = linear();
        let out = parse(&mut p, SNAPSHOT);
        let b = book(&out);
        assert!(b.snapshot);
        assert_eq!(
            b.sequence,
            Sequence::Contiguous {
                first: 15076952,
                last: 15076952
            }
        );
        assert_eq!(
            b.exchange_time,
            UnixNanos::from_millis(1786310818127),
            "cts"
        );
        assert_eq!(b.receive_time, T0);
        assert_eq!(b.checksum, None);
        assert_eq!(b.bids[0].price.to_string(), "65114.20");
        assert_eq!(b.asks[0].qty.to_string(), "10.470");
        let delta = r#"{"topic":"orderbook.200.BTCUSDT","ts":1786310818230,"type":"delta","data":{"s":"BTCUSDT","b":[["65114.10","0"]],"a":[],"u":15076953,"seq":753843913870}}"#;
        let out = parse(&mut p, delta);
        let b = book(&out);
        assert!(!b.snapshot);
        assert_eq!(
            b.exchange_time,
            UnixNanos::from_millis(1786310818230),
            "ts without cts"
        );
        assert!(b.bids[0].qty.is_zero());
    }

    #[test]
    fn a_delta_with_u_1_is_a_service_restart_snapshot() {
        let delta = r#"{"topic":"orderbook.200.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["1","1"]],"a":[],"u":1,"seq":5},"cts":1}"#;
        assert!(book(&parse(&mut linear(), delta)).snapshot);
    }

    #[test]
    fn book_frames_of_any_shape_parse_the_same() {
        let canonical = parse(&mut linear(), SNAPSHOT);
        // Spaces and another key order: not the scanner's shape, same message.
        let reformatted = r#"{ "data": {"u": 15076952, "seq": 753843911359, "s": "BTCUSDT", "a": [["65114.30", "10.470"]], "b": [["65114.20", "6.054"], ["65114.10", "0.002"]]}, "cts": 1786310818127, "type": "snapshot", "topic": "orderbook.200.BTCUSDT", "ts": 1786310818129 }"#;
        assert_eq!(book_scan::scan(reformatted), None);
        assert_eq!(parse(&mut linear(), reformatted), canonical);
    }

    /// Every recorded book frame (spot and linear, snapshots and deltas).
    fn recorded_book_frames() -> Vec<String> {
        use std::io::Read;
        // `shared/` is beside the checkout (`../../../shared` from this crate), or beside
        // the folder holding a git worktree of it: the nearest ancestor that has it.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("shared/data/captures/BYBIT.jsonl.zst"))
            .find(|path| path.exists())
            .expect("shared/data/captures/BYBIT.jsonl.zst beside the checkout");
        let mut text = String::new();
        zstd::Decoder::new(std::fs::File::open(path).expect("capture file"))
            .expect("zstd")
            .read_to_string(&mut text)
            .expect("read");
        text.lines()
            .filter_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("line");
                let data = v["data"].as_str()?;
                (v["t"] == "recv" && data.starts_with("{\"topic\":\"orderbook."))
                    .then(|| data.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_book_scanner_agrees_with_the_general_parser_on_every_recorded_frame() {
        let frames = recorded_book_frames();
        assert_eq!(frames.len(), 1598 + 550);
        for f in &frames {
            let general = general_book(f).expect("general parse");
            assert_eq!(book_scan::scan(f), Some(general), "{f}");
        }
    }

    #[test]
    fn other_depths_and_klines_give_nothing() {
        let mut p = linear();
        let other_depth = SNAPSHOT.replace("orderbook.200.", "orderbook.50.");
        assert!(parse(&mut p, &other_depth).is_empty());
        let kline = r#"{"topic":"kline.1.BTCUSDT","data":[{"start":1786310760000,"end":1786310819999,"interval":"1","open":"65119.9","close":"65114.3","high":"65119.9","low":"65114.2","volume":"1.576","turnover":"102627.995","confirm":false,"timestamp":1786310818440}],"ts":1786310818440,"type":"snapshot"}"#;
        assert!(parse(&mut p, kline).is_empty());
    }

    #[test]
    fn level_one_is_the_spot_bbo() {
        let text = r#"{"topic":"orderbook.1.BTCUSDT","ts":1786310816618,"type":"snapshot","data":{"s":"BTCUSDT","b":[["65140.4","0.875077"]],"a":[["65140.5","0.472215"]],"u":62505425,"seq":112488545865},"cts":1786310816585}"#;
        let e = events(parse(&mut spot(), text));
        let EventKind::Bbo(b) = &e[0].kind else {
            panic!()
        };
        assert_eq!(b.bid_price.to_string(), "65140.4");
        assert_eq!(b.ask_qty.to_string(), "0.472215");
        assert_eq!(b.update_id, 62505425);
        assert_eq!(e[0].exchange_time, UnixNanos::from_millis(1786310816585));
        // One side empty: no BBO, no error.
        let one_sided = text.replace(r#"[["65140.5","0.472215"]]"#, "[]");
        assert!(parse(&mut spot(), &one_sided).is_empty());
        // Level 1 has no deltas.
        let delta = text.replace("\"snapshot\"", "\"delta\"");
        assert!(spot().parse(&delta, T0, &mut Vec::new()).is_err());
    }

    #[test]
    fn spot_trades_have_numbers_linear_trades_have_ordinals() {
        let spot_trade = r#"{"topic":"publicTrade.ETHUSDT","ts":1786310821917,"type":"snapshot","data":[{"i":"2280000001739247417","T":1786310821917,"p":"1923.28","v":"0.04537","S":"Sell","seq":178477362706,"s":"ETHUSDT","BT":false,"RPI":false}]}"#;
        let e = events(parse(&mut spot(), spot_trade));
        let EventKind::Trade(t) = &e[0].kind else {
            panic!()
        };
        assert_eq!(t.trade_id, TradeId::Number(2280000001739247417));
        assert_eq!((t.ordinal, t.aggressor), (0, Side::Sell));
        assert_eq!(t.qty.to_string(), "0.04537");
        assert_eq!(e[0].exchange_time, UnixNanos::from_millis(1786310821917));

        let linear_trades = r#"{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":1786310820347,"data":[{"T":1786310820346,"s":"ETHUSDT","S":"Buy","v":"0.01","p":"1922.50","L":"PlusTick","i":"19d7df56-4f10-5290-a969-d9d9f2c74cc3","BT":false,"RPI":false,"seq":430879434439},{"T":1786310820346,"s":"ETHUSDT","S":"Buy","v":"1.30","p":"1922.50","L":"ZeroPlusTick","i":"4d4ad26c-901f-5146-adc0-1db29b6b9ab6","BT":false,"RPI":false,"seq":430879434439}]}"#;
        let mut p = linear();
        let e = events(parse(&mut p, linear_trades));
        let trades: Vec<&Trade> = e
            .iter()
            .map(|e| match &e.kind {
                EventKind::Trade(t) => t,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            trades[0].trade_id,
            TradeId::Text("19d7df56-4f10-5290-a969-d9d9f2c74cc3".into())
        );
        assert_eq!((trades[0].ordinal, trades[1].ordinal), (0, 1));
        assert_eq!(trades[1].aggressor, Side::Buy);
        assert_eq!(trades[1].qty.to_string(), "1.30");
        // The same time in the next frame goes on counting.
        let e = events(parse(&mut p, linear_trades));
        let EventKind::Trade(t) = &e[0].kind else {
            panic!()
        };
        assert_eq!(t.ordinal, 2);
    }

    #[test]
    fn trade_ids() {
        assert_eq!(trade_id("123"), TradeId::Number(123));
        assert_eq!(trade_id("0"), TradeId::Number(0));
        assert_eq!(trade_id("0123"), TradeId::Text("0123".into()));
        assert_eq!(trade_id("+5"), TradeId::Text("+5".into()));
        assert_eq!(
            trade_id("99999999999999999999"),
            TradeId::Text("99999999999999999999".into())
        );
        assert_eq!(trade_id(""), TradeId::None);
    }

    #[test]
    fn linear_tickers_merge_deltas_into_bbo_and_mark_price() {
        let mut p = linear();
        let snapshot = r#"{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","tickDirection":"ZeroPlusTick","lastPrice":"65114.30","markPrice":"65117.44","indexPrice":"65137.76","openInterest":"59891.732","nextFundingTime":"1786320000000","fundingRate":"0.0001","bid1Price":"65114.20","bid1Size":"5.954","ask1Price":"65114.30","ask1Size":"10.470","preOpenPrice":"","preQty":"","curPreListingPhase":""},"cs":753843900397,"ts":1786310817583}"#;
        let e = events(parse(&mut p, snapshot));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].exchange_time, UnixNanos::from_millis(1786310817583));
        let EventKind::Bbo(b) = &e[0].kind else {
            panic!()
        };
        assert_eq!(b.update_id, 753843900397);
        let delta = r#"{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","markPrice":"65117.43","openInterestValue":"3899995666.09","ask1Price":"65114.30","ask1Size":"10.488"},"cs":753843915209,"ts":1786310818183}"#;
        let e = events(parse(&mut p, delta));
        let (EventKind::Bbo(b), EventKind::MarkPrice(m)) = (&e[0].kind, &e[1].kind) else {
            panic!("{e:?}")
        };
        assert_eq!(b.bid_qty.to_string(), "5.954");
        assert_eq!(b.ask_qty.to_string(), "10.488");
        assert_eq!(
            *m,
            MarkPrice {
                mark_price: Price::parse("65117.43").unwrap(),
                index_price: Some(Price::parse("65137.76").unwrap()),
                funding_rate: Decimal::from_str("0.0001").unwrap(),
                next_funding_time: UnixNanos::from_millis(1786320000000),
            }
        );
    }

    #[test]
    fn spot_tickers_give_nothing() {
        let text = r#"{"topic":"tickers.BTCUSDT","ts":1786310819126,"type":"snapshot","cs":112488546160,"data":{"symbol":"BTCUSDT","lastPrice":"65140.5","highPrice24h":"65305.6","lowPrice24h":"64727.9","prevPrice24h":"65045.3","volume24h":"2953.835931","turnover24h":"191907024.69597728","price24hPcnt":"0.0015","usdIndexPrice":"65091.459221"}}"#;
        assert!(parse(&mut spot(), text).is_empty());
    }

    #[test]
    fn liquidations_report_the_order_side() {
        // The docs' example: a short position (Sell) liquidated by a buy order.
        let text = r#"{"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,"data":[{"T":1739502302929,"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"}]}"#;
        let e = events(parse(&mut linear(), text));
        assert_eq!(e[0].exchange_time, UnixNanos::from_millis(1739502302929));
        assert_eq!(
            e[0].kind,
            EventKind::Liquidation(Liquidation {
                side: Side::Buy,
                price: Price::parse("0.04499").unwrap(),
                qty: Qty::parse("20000").unwrap(),
            })
        );
        let object = r#"{"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1,"data":{"T":2,"s":"ROSEUSDT","S":"Buy","v":"1","p":"0.05"}}"#;
        let e = events(parse(&mut linear(), object));
        assert!(matches!(
            e[0].kind,
            EventKind::Liquidation(Liquidation {
                side: Side::Sell,
                ..
            })
        ));
    }

    #[test]
    fn replies_pongs_and_refusals() {
        for ack in [
            r#"{"success":true,"ret_msg":"","conn_id":"d8bu1olkndm7crnfs1e0-j6akw","req_id":"","op":"subscribe"}"#,
            r#"{"success":true,"ret_msg":"subscribe","conn_id":"d9avt8shteepr00gfc1g-4zd1x","op":"subscribe"}"#,
            r#"{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}"#,
            r#"{"success":true,"ret_msg":"pong","conn_id":"465772b1","req_id":"","op":"ping"}"#,
            r#"{"args":["1672916271846"],"op":"pong"}"#,
        ] {
            assert_eq!(parse(&mut linear(), ack), [Parsed::Control], "{ack}");
        }
        let refused = r#"{"success":false,"ret_msg":"error:handler not found,topic:orderbook.500.BTCUSDT","conn_id":"x","req_id":"","op":"subscribe"}"#;
        assert_eq!(
            parse(&mut linear(), refused),
            [Parsed::Refused(
                "subscribe: error:handler not found,topic:orderbook.500.BTCUSDT".into()
            )]
        );
    }

    #[test]
    fn malformed_frames_are_errors_and_emit_nothing() {
        let bad = [
            String::new(),
            "not json".into(),
            r#"{"foo":1}"#.into(),
            r#"{"topic":"kline.1.BTCUSDT","data":["#.into(),
            SNAPSHOT.replace("15076952", "\"15076952\""),
            SNAPSHOT.replace("\"6.054\"", "\"-6.054\""),
            SNAPSHOT.replace("[\"65114.30\",\"10.470\"]", "[\"65114.30\"]"),
            SNAPSHOT.replace("\"snapshot\"", "\"partial\""),
            SNAPSHOT.replace("BTCUSDT\",\"b", "SOLUSDT\",\"b"),
            r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"1","i":"a"},{"T":1,"s":"BTCUSDT","S":"Up","v":"1","p":"1","i":"b"}]}"#.into(),
            r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"0","i":"a"}]}"#.into(),
            r#"{"topic":"tickers.BTCUSDT","type":"delta","ts":1,"cs":1,"data":{"symbol":"BTCUSDT","bid1Price":"x"}}"#.into(),
            r#"{"topic":"tickers.BTCUSDT","type":"other","ts":1,"data":{"symbol":"BTCUSDT"}}"#.into(),
            r#"{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Long","v":"1","p":"1"}]}"#.into(),
        ];
        for text in &bad {
            let mut out = Vec::new();
            assert!(
                linear().parse(text, T0, &mut out).is_err(),
                "accepted {text:?}"
            );
            assert!(out.is_empty(), "{text:?} gave {out:?}");
        }
    }

    #[test]
    fn a_bad_trade_takes_no_ordinal() {
        let mut p = linear();
        let bad = r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":5,"s":"BTCUSDT","S":"Buy","v":"1","p":"1","i":"a"},{"T":5,"s":"BTCUSDT","S":"Buy","v":"x","p":"1","i":"b"}]}"#;
        assert!(p.parse(bad, T0, &mut Vec::new()).is_err());
        let good = r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":5,"s":"BTCUSDT","S":"Buy","v":"1","p":"1","i":"a"}]}"#;
        let e = events(parse(&mut p, good));
        let EventKind::Trade(t) = &e[0].kind else {
            panic!()
        };
        assert_eq!(t.ordinal, 0);
    }

    #[test]
    fn an_unsubscribed_symbol_is_an_error() {
        let mut out = Vec::new();
        let err = linear()
            .parse(&SNAPSHOT.replace("BTCUSDT", "XRPUSDT"), T0, &mut out)
            .unwrap_err();
        assert!(matches!(err, ParseError::UnknownSymbol(s) if s == "XRPUSDT"));
    }
}
