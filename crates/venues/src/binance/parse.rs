//! Binance frames to Raven's normalized types, exactly and with as little copying as the
//! hot path allows.
//!
//! Every market-data frame Raven receives passes through [`parse_frame`], so it is
//! written for speed without giving up exactness:
//! * diff-depth frames, most of the input, take [`super::depth_scan`], a scanner for
//!   their one canonical shape; everything else (and any depth frame the scanner does
//!   not recognize) is deserialized by serde_json into typed structs whose string fields
//!   borrow from the frame (`&str`), so no intermediate `String` or JSON tree is built;
//! * prices and quantities go straight from the exchange's text to [`Price`] / [`Qty`]
//!   (book levels are parsed inside the deserializer, so a depth frame allocates one
//!   `Vec` per side and nothing else);
//! * the combined-stream envelope's `stream` name (`btcusdt@depth@100ms`) selects the
//!   payload type before the payload is parsed, so each frame is parsed once.
//!
//! Anything that does not fit is an error the caller counts as malformed and skips; a
//! stream Raven does not consume (`@kline_1m`) and the `{"result":null,"id":1}` reply to
//! a `SUBSCRIBE` are recognized and reported as such, not as errors.
//!
//! Field meanings are Binance's (spot and USD-M/COIN-M "Websocket Market Streams"
//! pages): `E` event time, `T` trade / transaction time, `U`/`u` first/last update id,
//! `pu` previous final update id (futures), `m` "buyer is the maker".

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use raven_model::{
    Bbo, EventKind, InstrumentId, Level, Liquidation, MarkPrice, MarketEvent, Price, Qty, Side,
    Trade, TradeId, UnixNanos, Venue,
};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::depth::{DepthDiff, DepthSnapshot};
use super::depth_scan::{self, ScannedDepth};

/// Why a frame or REST body was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON or field: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid decimal: {0}")]
    Decimal(#[from] raven_model::DecimalError),
    #[error("symbol {0:?} is not subscribed")]
    UnknownSymbol(String),
    #[error("frame has no stream name and is not a subscription reply")]
    NoStream,
    #[error("invalid side {0:?}")]
    Side(String),
}

/// One parsed WebSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A depth diff for the book of `instrument`.
    Depth {
        instrument: InstrumentId,
        diff: DepthDiff,
    },
    /// A trade, BBO, mark price or liquidation.
    Event(MarketEvent),
    /// A reply to a `SUBSCRIBE`/`UNSUBSCRIBE` request.
    Control,
    /// A well-formed frame of a stream Raven does not consume (e.g. klines).
    Ignored,
}

/// The subscribed symbols of one venue, looked up by the exchange's upper-case spelling.
///
/// Resolving once per frame to a shared [`InstrumentId`] means events clone an `Arc`
/// instead of allocating a symbol string.
#[derive(Debug, Clone)]
pub struct SymbolMap {
    venue: Venue,
    by_name: HashMap<String, InstrumentId>,
}

impl SymbolMap {
    pub fn new<'a>(venue: Venue, symbols: impl IntoIterator<Item = &'a str>) -> Self {
        let by_name = symbols
            .into_iter()
            .map(|s| {
                let id = InstrumentId::new(venue, s);
                (id.symbol.as_str().to_owned(), id)
            })
            .collect();
        Self { venue, by_name }
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }

    pub fn get(&self, exchange_symbol: &str) -> Result<&InstrumentId, ParseError> {
        self.by_name
            .get(exchange_symbol)
            .ok_or_else(|| ParseError::UnknownSymbol(exchange_symbol.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Parses one combined-stream frame (`{"stream":…,"data":…}`) received at `receive_time`.
pub fn parse_frame(
    text: &str,
    symbols: &SymbolMap,
    receive_time: UnixNanos,
) -> Result<Frame, ParseError> {
    let Some(stream) = stream_name(text) else {
        return parse_control(text);
    };
    // `btcusdt@depth@100ms` -> `depth@100ms`.
    let kind = stream.split_once('@').map_or("", |(_, k)| k);
    let event = |instrument: &InstrumentId, exchange_time: u64, kind: EventKind| {
        Frame::Event(MarketEvent {
            instrument: instrument.clone(),
            exchange_time: UnixNanos::from_millis(exchange_time),
            receive_time,
            kind,
        })
    };
    let trade = |instrument: &InstrumentId,
                 id: u64,
                 price: &str,
                 qty: &str,
                 time: u64,
                 buyer_is_maker: bool| {
        let trade = Trade {
            price: Price::parse(price)?,
            qty: Qty::parse(qty)?,
            aggressor: aggressor(buyer_is_maker),
            trade_id: TradeId::Number(id),
            ordinal: 0,
        };
        Ok::<_, ParseError>(event(instrument, time, EventKind::Trade(trade)))
    };
    Ok(match kind {
        "depth" | "depth@100ms" | "depth@250ms" | "depth@500ms" => {
            // The canonical shape takes the fast scanner; anything else the general parser.
            let d = match depth_scan::scan(text) {
                Some(d) => d,
                None => data::<DepthUpdate>(text)?.into(),
            };
            Frame::Depth {
                instrument: symbols.get(d.symbol)?.clone(),
                diff: DepthDiff {
                    first_update_id: d.first,
                    last_update_id: d.last,
                    prev_last_update_id: d.prev,
                    exchange_time: UnixNanos::from_millis(d.event_time),
                    receive_time,
                    bids: d.bids,
                    asks: d.asks,
                },
            }
        }
        // The two trade streams differ only in which id they carry.
        "aggTrade" => {
            let t = data::<AggTrade>(text)?;
            trade(
                symbols.get(t.symbol)?,
                t.id,
                t.price,
                t.qty,
                t.trade_time,
                t.buyer_is_maker,
            )?
        }
        "trade" => {
            let t = data::<RawTrade>(text)?;
            trade(
                symbols.get(t.symbol)?,
                t.id,
                t.price,
                t.qty,
                t.trade_time,
                t.buyer_is_maker,
            )?
        }
        "bookTicker" => {
            let b = data::<BookTicker>(text)?;
            let bbo = Bbo {
                bid_price: Price::parse(b.bid_price)?,
                bid_qty: Qty::parse(b.bid_qty)?,
                ask_price: Price::parse(b.ask_price)?,
                ask_qty: Qty::parse(b.ask_qty)?,
                update_id: b.update_id,
            };
            // Spot's bookTicker has no event time: 0 says "unknown" rather than invent one.
            let time = b.event_time.unwrap_or(0);
            event(symbols.get(b.symbol)?, time, EventKind::Bbo(bbo))
        }
        "markPrice" | "markPrice@1s" => {
            let m = data::<MarkPriceUpdate>(text)?;
            let mark = MarkPrice {
                mark_price: Price::parse(m.mark_price)?,
                index_price: m
                    .index_price
                    .filter(|s| !s.is_empty())
                    .map(Price::parse)
                    .transpose()?,
                funding_rate: funding_rate(m.funding_rate)?,
                next_funding_time: UnixNanos::from_millis(m.next_funding_time),
            };
            event(
                symbols.get(m.symbol)?,
                m.event_time,
                EventKind::MarkPrice(mark),
            )
        }
        "forceOrder" => {
            let f = data::<ForceOrder>(text)?;
            let o = f.order;
            // The average fill price is what the liquidation traded at; the order price
            // is the bankruptcy limit. Prefer the former when it is set.
            let price = match o.avg_price.map(Price::parse) {
                Some(Ok(p)) => p,
                _ => Price::parse(o.price)?,
            };
            let liq = Liquidation {
                side: side(o.side)?,
                price,
                qty: Qty::parse(o.qty)?,
            };
            event(
                symbols.get(o.symbol)?,
                f.event_time,
                EventKind::Liquidation(liq),
            )
        }
        _ => {
            // Still require a well-formed envelope, so garbage is not silently "ignored".
            serde_json::from_str::<de::IgnoredAny>(text)?;
            Frame::Ignored
        }
    })
}

/// Parses a REST depth snapshot body (`/api/v3/depth`, `/fapi/v1/depth`, `/dapi/v1/depth`).
pub fn parse_snapshot(body: &str, receive_time: UnixNanos) -> Result<DepthSnapshot, ParseError> {
    let s: RestDepth = serde_json::from_str(body)?;
    Ok(DepthSnapshot {
        last_update_id: s.last_update_id,
        exchange_time: UnixNanos::from_millis(s.event_time.unwrap_or(0)),
        receive_time,
        bids: s.bids.0,
        asks: s.asks.0,
    })
}

/// The `stream` value of a combined-stream frame. Binance writes `stream` first, so the
/// fast path is a prefix check; any other key order falls back to a full parse.
fn stream_name(text: &str) -> Option<&str> {
    if let Some(rest) = text.strip_prefix(r#"{"stream":""#) {
        return rest.split_once('"').map(|(name, _)| name);
    }
    #[derive(Deserialize)]
    struct StreamOnly<'a> {
        #[serde(borrow)]
        stream: Option<&'a str>,
    }
    serde_json::from_str::<StreamOnly>(text).ok()?.stream
}

fn parse_control(text: &str) -> Result<Frame, ParseError> {
    let reply: ControlReply = serde_json::from_str(text)?;
    match (reply.id, reply.error) {
        (Some(_), None) => Ok(Frame::Control),
        (_, Some(error)) => {
            tracing::warn!(
                code = error.code,
                msg = error.msg,
                "binance rejected a request"
            );
            Ok(Frame::Control)
        }
        (None, None) => Err(ParseError::NoStream),
    }
}

fn data<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ParseError> {
    Ok(serde_json::from_str::<Envelope<T>>(text)?.data)
}

fn aggressor(buyer_is_maker: bool) -> Side {
    // The maker is the resting order; the taker (aggressor) is the other side.
    if buyer_is_maker {
        Side::Sell
    } else {
        Side::Buy
    }
}

fn side(s: &str) -> Result<Side, ParseError> {
    match s {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        other => Err(ParseError::Side(other.to_owned())),
    }
}

/// Funding rates are signed, so not a [`Price`]; delivery contracts send `""`.
fn funding_rate(s: &str) -> Result<Decimal, ParseError> {
    if s.is_empty() {
        return Ok(Decimal::ZERO);
    }
    Decimal::from_str(s)
        .map_err(|_| ParseError::Decimal(raven_model::DecimalError::Syntax(s.to_owned())))
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct DepthUpdate<'a> {
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "U")]
    first: u64,
    #[serde(rename = "u")]
    last: u64,
    #[serde(rename = "pu", default)]
    prev: Option<u64>,
    #[serde(rename = "b")]
    bids: Levels,
    #[serde(rename = "a")]
    asks: Levels,
}

impl<'a> From<DepthUpdate<'a>> for ScannedDepth<'a> {
    fn from(d: DepthUpdate<'a>) -> Self {
        ScannedDepth {
            symbol: d.symbol,
            event_time: d.event_time,
            first: d.first,
            last: d.last,
            prev: d.prev,
            bids: d.bids.0,
            asks: d.asks.0,
        }
    }
}

#[derive(Deserialize)]
struct AggTrade<'a> {
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "a")]
    id: u64,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "q")]
    qty: &'a str,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "t")]
    id: u64,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "q")]
    qty: &'a str,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

#[derive(Deserialize)]
struct BookTicker<'a> {
    #[serde(rename = "u")]
    update_id: u64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "b")]
    bid_price: &'a str,
    #[serde(rename = "B")]
    bid_qty: &'a str,
    #[serde(rename = "a")]
    ask_price: &'a str,
    #[serde(rename = "A")]
    ask_qty: &'a str,
    #[serde(rename = "E", default)]
    event_time: Option<u64>,
}

#[derive(Deserialize)]
struct MarkPriceUpdate<'a> {
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "p")]
    mark_price: &'a str,
    #[serde(rename = "i", default, borrow)]
    index_price: Option<&'a str>,
    #[serde(rename = "r", default)]
    funding_rate: &'a str,
    #[serde(rename = "T", default)]
    next_funding_time: u64,
}

#[derive(Deserialize)]
struct ForceOrder<'a> {
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "o", borrow)]
    order: ForceOrderBody<'a>,
}

#[derive(Deserialize)]
struct ForceOrderBody<'a> {
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "ap", default, borrow)]
    avg_price: Option<&'a str>,
    #[serde(rename = "q")]
    qty: &'a str,
}

#[derive(Deserialize)]
struct ControlReply<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, borrow)]
    error: Option<ControlError<'a>>,
}

#[derive(Deserialize)]
struct ControlError<'a> {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: &'a str,
}

#[derive(Deserialize)]
struct RestDepth {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(rename = "E", default)]
    event_time: Option<u64>,
    bids: Levels,
    asks: Levels,
}

/// `[["price","qty"], …]` parsed straight into exact levels.
struct Levels(Vec<Level>);

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelsVisitor;

        impl<'de> Visitor<'de> for LevelsVisitor {
            type Value = Levels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [price, qty] string pairs")
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
    use crate::binance::Market;

    /// Every recorded depth frame of both Binance captures.
    fn recorded_depth_frames() -> Vec<String> {
        use std::io::Read;
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/captures");
        let mut frames = Vec::new();
        for name in ["BINANCE.jsonl.zst", "BINANCE_FUTURES.jsonl.zst"] {
            let file = std::fs::File::open(dir.join(name)).expect("capture file");
            let mut text = String::new();
            zstd::Decoder::new(file)
                .expect("zstd")
                .read_to_string(&mut text)
                .expect("read");
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("line");
                if let Some(data) = v["data"]
                    .as_str()
                    .filter(|d| v["t"] == "recv" && d.contains("depthUpdate"))
                {
                    frames.push(data.to_owned());
                }
            }
        }
        frames
    }

    #[test]
    fn the_depth_scanner_agrees_with_the_general_parser_on_every_recorded_frame() {
        let frames = recorded_depth_frames();
        assert_eq!(frames.len(), 177 + 764);
        for f in &frames {
            let general: ScannedDepth = data::<DepthUpdate>(f).expect("general parse").into();
            assert_eq!(depth_scan::scan(f), Some(general), "{f}");
        }
    }

    #[test]
    fn reformatted_depth_frames_still_parse_through_the_general_path() {
        let spot = spot();
        for f in recorded_depth_frames().iter().take(40) {
            if !f.contains("NKNUSDT") {
                continue;
            }
            let expected = parse_frame(f, &spot, UnixNanos(1)).expect("canonical");
            // Whitespace after every comma: a valid frame the scanner does not take.
            let spaced = f.replace(',', ", ");
            assert_eq!(depth_scan::scan(&spaced), None);
            assert_eq!(
                parse_frame(&spaced, &spot, UnixNanos(1)).expect("general"),
                expected
            );
        }
    }

    fn spot() -> SymbolMap {
        SymbolMap::new(Market::Spot.venue(), ["btcusdt", "NKNUSDT"])
    }

    fn usdm() -> SymbolMap {
        SymbolMap::new(Market::Usdm.venue(), ["BTCUSDT"])
    }

    const T0: UnixNanos = UnixNanos(42);

    fn market(frame: Frame) -> MarketEvent {
        match frame {
            Frame::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn spot_depth_update() {
        let text = r#"{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"],["0.34750000","0.00000000"]],"a":[]}}"#;
        let Frame::Depth { instrument, diff } = parse_frame(text, &spot(), T0).unwrap() else {
            panic!("not depth");
        };
        assert_eq!(
            instrument,
            InstrumentId::new(Market::Spot.venue(), "NKNUSDT")
        );
        assert_eq!(
            (diff.first_update_id, diff.last_update_id),
            (499869750, 499869752)
        );
        assert_eq!(diff.prev_last_update_id, None);
        assert_eq!(diff.exchange_time, UnixNanos::from_millis(1633998512068));
        assert_eq!(diff.receive_time, T0);
        assert_eq!(diff.bids.len(), 2);
        assert_eq!(diff.bids[0].price.to_string(), "0.35130000");
        assert!(diff.bids[1].qty.is_zero());
        assert!(diff.asks.is_empty());
    }

    #[test]
    fn futures_depth_update_has_pu() {
        let text = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1626992741037,"T":1626992741024,"s":"BTCUSDT","U":600859599090,"u":600859600917,"pu":600859598061,"b":[["7.5040","813"]],"a":[["7.6150","1563"]]}}"#;
        let Frame::Depth { diff, .. } = parse_frame(text, &usdm(), T0).unwrap() else {
            panic!("not depth");
        };
        assert_eq!(diff.prev_last_update_id, Some(600859598061));
        assert_eq!(diff.asks[0].qty.to_string(), "1563");
    }

    #[test]
    fn agg_trade_maker_buyer_means_sell_aggressor() {
        let text = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,"p":"100.5","q":"0.010","f":1,"l":2,"T":3,"m":true,"M":true}}"#;
        let e = market(parse_frame(text, &spot(), T0).unwrap());
        assert_eq!(e.exchange_time, UnixNanos::from_millis(3), "trade time T");
        let EventKind::Trade(t) = e.kind else {
            panic!()
        };
        assert_eq!(t.aggressor, Side::Sell);
        assert_eq!(t.trade_id, TradeId::Number(7));
        assert_eq!(t.qty.to_string(), "0.010");
    }

    #[test]
    fn raw_trade_stream() {
        let text = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":2,"m":false,"M":true}}"#;
        let EventKind::Trade(t) = market(parse_frame(text, &spot(), T0).unwrap()).kind else {
            panic!()
        };
        assert_eq!(
            (t.trade_id, t.aggressor),
            (TradeId::Number(12345), Side::Buy)
        );
    }

    #[test]
    fn spot_book_ticker_without_event_time() {
        let text = r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}"#;
        let e = market(parse_frame(text, &spot(), T0).unwrap());
        assert_eq!(e.exchange_time, UnixNanos(0));
        let EventKind::Bbo(b) = e.kind else { panic!() };
        assert_eq!(b.update_id, 400900217);
        assert_eq!(b.ask_qty.to_string(), "40.66000000");
    }

    #[test]
    fn mark_price_update() {
        let text = r#"{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"-0.00038167","T":1562306400000}}"#;
        let e = market(parse_frame(text, &usdm(), T0).unwrap());
        let EventKind::MarkPrice(m) = e.kind else {
            panic!()
        };
        assert_eq!(m.mark_price.to_string(), "11794.15000000");
        assert_eq!(
            m.index_price.map(|p| p.to_string()).as_deref(),
            Some("11784.62659091")
        );
        assert_eq!(m.funding_rate, Decimal::from_str("-0.00038167").unwrap());
        assert_eq!(m.next_funding_time, UnixNanos::from_millis(1562306400000));
    }

    #[test]
    fn force_order_uses_average_price() {
        let text = r#"{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910.50","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}}"#;
        let e = market(parse_frame(text, &usdm(), T0).unwrap());
        let EventKind::Liquidation(l) = e.kind else {
            panic!()
        };
        assert_eq!(l.side, Side::Sell);
        assert_eq!(l.price.to_string(), "9910.50");
        assert_eq!(l.qty.to_string(), "0.014");
    }

    #[test]
    fn subscribe_reply_and_klines_are_not_errors() {
        assert_eq!(
            parse_frame(r#"{"result":null,"id":1}"#, &spot(), T0).unwrap(),
            Frame::Control
        );
        let kline =
            r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{}}}"#;
        assert_eq!(parse_frame(kline, &spot(), T0).unwrap(), Frame::Ignored);
    }

    #[test]
    fn malformed_frames_are_errors() {
        let bad = [
            "",
            "not json",
            r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"}}"#,
            r#"{"stream":"btcusdt@aggTrade","data":{"E":1,"s":"BTCUSDT","a":7,"p":"-1","q":"1","T":3,"m":true}}"#,
            r#"{"stream":"btcusdt@depth@100ms","data":{"E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1.0"]],"a":[]}}"#,
            r#"{"stream":"btcusdt@depth@100ms","data":{"E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["x","1"]],"a":[]}}"#,
            r#"{"stream":"ethusdt@aggTrade","data":{"E":1,"s":"ETHUSDT","a":7,"p":"1","q":"1","T":3,"m":true}}"#,
            r#"{"stream":"btcusdt@kline_1m","data":{"#,
            r#"{"foo":1}"#,
        ];
        for text in bad {
            assert!(parse_frame(text, &spot(), T0).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn stream_key_need_not_come_first() {
        let text = r#"{"data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,"p":"1","q":"1","T":3,"m":false},"stream":"btcusdt@aggTrade"}"#;
        assert!(matches!(
            parse_frame(text, &spot(), T0).unwrap(),
            Frame::Event(_)
        ));
    }

    #[test]
    fn rest_snapshot_spot_and_futures() {
        let spot = parse_snapshot(
            r#"{"lastUpdateId":499869752,"bids":[["0.35210000","672.00000000"]],"asks":[["0.35260000","3199.00000000"]]}"#,
            T0,
        )
        .unwrap();
        assert_eq!(spot.last_update_id, 499869752);
        assert_eq!(spot.exchange_time, UnixNanos(0));
        let fut = parse_snapshot(
            r#"{"lastUpdateId":600859605926,"E":1626992741264,"T":1626992741261,"bids":[["7.6110","6"]],"asks":[]}"#,
            T0,
        )
        .unwrap();
        assert_eq!(fut.exchange_time, UnixNanos::from_millis(1626992741264));
        assert_eq!(fut.bids[0].price.to_string(), "7.6110");
    }
}
