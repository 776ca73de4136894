//! OKX public WebSocket frames to Raven's venue-neutral outputs.
//!
//! Every frame of `/ws/v5/public` is one of (OKX "Overview / WebSocket", seen 2026-08,
//! pages dated 2026-07):
//! * the text `pong`, OKX's answer to Raven's `ping` → [`Parsed::Control`];
//! * an event: `{"event":"subscribe"|"unsubscribe","arg":{…},"connId":…}` (an ack),
//!   `{"event":"notice","code":"64008",…}` (the connection closes in 60 s for a service
//!   upgrade), `channel-conn-count` → [`Parsed::Control`]; `{"event":"error","code":
//!   "60012","msg":…}` (or `channel-conn-count-error`) → [`Parsed::Refused`];
//! * a push: `{"arg":{"channel":…,"instId":…},"action":…,"data":[…]}`.
//!
//! The channel name is found by a plain search for `"channel":"` before anything is
//! deserialized, so each frame is parsed once, straight into the typed struct of its
//! channel, with strings borrowed from the frame. Pushes Raven uses:
//! * `books`, `books5` → [`Parsed::Book`] ([`super::book`] has the rules); pushes of
//!   the canonical shape, nearly all, take the scanner of `book_scan`;
//! * `trades` ("WS / Trades channel", page dated 2026-07-22) → trades. A push is one
//!   taker order's fills at one price, aggregated (`count` fills, `sz` their total),
//!   and `tradeId` is the last fill's id: a decimal number, so [`TradeId::Number`];
//!   `side` is the taker's;
//! * `tickers` ("WS / Tickers channel", page dated 2026-07-09) → [`Bbo`] from
//!   `bidPx`/`bidSz`/`askPx`/`askSz` (update id 0: tickers are not numbered). A ticker
//!   with an empty side (no bids yet) gives nothing;
//! * `mark-price` and `funding-rate` → [`raven_model::MarkPrice`], merged per
//!   instrument ([`super::mark`]);
//! * `liquidation-orders` ("Liquidation orders channel", page dated 2026-07-19) →
//!   [`Liquidation`]s. The channel is per instrument type, so it carries every swap's
//!   or future's liquidations: those of instruments this connection does not carry are
//!   dropped without error. `side` is the liquidation order's, `bkPx` its price, `sz`
//!   contracts.
//!
//! Times are OKX's `ts` (ms). Pushes of other channels (candles, open interest) give
//! nothing; a push of an unsubscribed instrument is [`ParseError::UnknownSymbol`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use raven_model::{
    Bbo, EventKind, InstrumentId, Liquidation, MarketEvent, Price, Qty, Side, Trade, TradeId,
    UnixNanos, Venue,
};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;

use super::book::{millis, BookData};
use super::book_scan;
use super::mark::{MarkMerge, Times};
use super::symbol::InstClass;
use crate::engine::{FrameParser, Ordinals, ParseError, Parsed, SymbolMap};

/// At most this much of an error message is kept (OKX echoes the whole request).
const MAX_REFUSAL_TEXT: usize = 200;

/// The parser of one connection.
pub struct OkxParser {
    symbols: SymbolMap,
    /// For trades without a numeric id (none expected: OKX numbers every trade).
    ordinals: Ordinals,
    marks: MarkMerge,
}

impl OkxParser {
    /// A parser for a connection carrying `symbols` (instIds, any case).
    pub fn new(venue: Venue, symbols: &[String]) -> Self {
        let symbols = SymbolMap::new(venue, symbols.iter().map(String::as_str));
        let marks = MarkMerge::new(symbols.iter());
        Self {
            symbols,
            ordinals: Ordinals::default(),
            marks,
        }
    }
}

impl FrameParser for OkxParser {
    fn parse(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        if text == "pong" {
            out.push(Parsed::Control);
            return Ok(());
        }
        match channel_of(text) {
            Some(channel @ ("books" | "books5")) => self.books(text, channel, receive_time, out),
            Some("trades") => self.trades(text, receive_time, out),
            Some("tickers") => self.tickers(text, receive_time, out),
            Some("mark-price") => self.mark_price(text, receive_time, out),
            Some("funding-rate") => self.funding_rate(text, receive_time, out),
            Some("liquidation-orders") => self.liquidations(text, receive_time, out),
            // An event without a channel, or a channel Raven does not use.
            _ => {
                let f = frame::<IgnoredAny>(text)?;
                if let Some(event) = f.event {
                    on_event(event, f.code, f.msg, out);
                }
                Ok(())
            }
        }
    }
}

impl OkxParser {
    fn books(
        &mut self,
        text: &str,
        channel: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        // The canonical shape takes the scanner; anything else serde.
        let (inst_id, action, data) = match book_scan::scan(text) {
            Some(s) if s.channel == channel => (s.inst_id, s.action, vec![s.data]),
            _ => {
                let Some(push) = Push::<BookData>::of(text, channel, out)? else {
                    return Ok(());
                };
                (push.inst_id()?, push.action, push.data)
            }
        };
        let snapshot = match (channel, action) {
            // `books5` pushes are always whole.
            ("books5", _) | (_, Some("snapshot")) => true,
            (_, Some("update")) => false,
            (_, other) => {
                return Err(ParseError::Invalid(format!("book push action {other:?}")));
            }
        };
        let instrument = self.symbols.get(inst_id)?;
        for data in data {
            out.push(Parsed::Book(data.into_message(
                instrument,
                snapshot,
                receive_time,
            )?));
        }
        Ok(())
    }

    fn trades(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let Some(push) = Push::<TradeData>::of(text, "trades", out)? else {
            return Ok(());
        };
        let instrument = self.symbols.get(push.inst_id()?)?;
        for t in push.data {
            let time = UnixNanos::from_millis(millis(t.ts)?);
            let trade_id = trade_id(t.trade_id);
            let ordinal = match trade_id {
                TradeId::Number(_) => 0,
                _ => self.ordinals.next(instrument, time),
            };
            let trade = Trade {
                price: Price::parse(t.px)?,
                qty: Qty::parse(t.sz)?,
                aggressor: side(t.side)?,
                trade_id,
                ordinal,
            };
            out.push(event(
                instrument,
                time,
                receive_time,
                EventKind::Trade(trade),
            ));
        }
        Ok(())
    }

    fn tickers(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let Some(push) = Push::<TickerData>::of(text, "tickers", out)? else {
            return Ok(());
        };
        let instrument = self.symbols.get(push.inst_id()?)?;
        for t in push.data {
            if [t.bid_px, t.bid_sz, t.ask_px, t.ask_sz].contains(&"") {
                continue;
            }
            let bbo = Bbo {
                bid_price: Price::parse(t.bid_px)?,
                bid_qty: Qty::parse(t.bid_sz)?,
                ask_price: Price::parse(t.ask_px)?,
                ask_qty: Qty::parse(t.ask_sz)?,
                update_id: 0,
            };
            let time = UnixNanos::from_millis(millis(t.ts)?);
            out.push(event(instrument, time, receive_time, EventKind::Bbo(bbo)));
        }
        Ok(())
    }

    fn mark_price(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let Some(push) = Push::<MarkPriceData>::of(text, "mark-price", out)? else {
            return Ok(());
        };
        let instrument = self.symbols.get(push.inst_id()?)?;
        let funded = InstClass::of(instrument.symbol.as_str()) == InstClass::Swap;
        for m in push.data {
            let times = Times {
                exchange: UnixNanos::from_millis(millis(m.ts)?),
                receive: receive_time,
            };
            let mark = Price::parse(m.mark_px)?;
            if let Some(e) = self.marks.mark(instrument, funded, mark, times) {
                out.push(Parsed::Event(e));
            }
        }
        Ok(())
    }

    fn funding_rate(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let Some(push) = Push::<FundingData>::of(text, "funding-rate", out)? else {
            return Ok(());
        };
        let instrument = self.symbols.get(push.inst_id()?)?;
        for f in push.data {
            let times = Times {
                exchange: UnixNanos::from_millis(millis(f.ts)?),
                receive: receive_time,
            };
            // Signed, so not a Price.
            let rate = Decimal::from_str(f.funding_rate).map_err(|_| {
                ParseError::Invalid(format!("invalid funding rate {:?}", f.funding_rate))
            })?;
            let funding_time = UnixNanos::from_millis(millis(f.funding_time)?);
            if let Some(e) = self.marks.funding(instrument, rate, funding_time, times) {
                out.push(Parsed::Event(e));
            }
        }
        Ok(())
    }

    fn liquidations(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let Some(push) = Push::<LiquidationData>::of(text, "liquidation-orders", out)? else {
            return Ok(());
        };
        for l in push.data {
            // The channel carries the whole instrument type; keep this connection's.
            let Ok(instrument) = self.symbols.get(l.inst_id) else {
                continue;
            };
            for d in l.details {
                let liquidation = Liquidation {
                    side: side(d.side)?,
                    price: Price::parse(d.bk_px)?,
                    qty: Qty::parse(d.sz)?,
                };
                let time = UnixNanos::from_millis(millis(d.ts)?);
                out.push(event(
                    instrument,
                    time,
                    receive_time,
                    EventKind::Liquidation(liquidation),
                ));
            }
        }
        Ok(())
    }
}

/// The value of the first `"channel":"…"` in the frame: the push's (or ack's) channel.
fn channel_of(text: &str) -> Option<&str> {
    const KEY: &str = "\"channel\":\"";
    let start = text.find(KEY)? + KEY.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The parts of every OKX frame; which are present says what it is.
#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct Frame<'a, T> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(default, deserialize_with = "code_text")]
    code: Option<String>,
    msg: Option<String>,
    #[serde(borrow)]
    arg: Option<Arg<'a>>,
    #[serde(borrow)]
    action: Option<&'a str>,
    data: Option<Vec<T>>,
}

#[derive(Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow, rename = "instId")]
    inst_id: Option<&'a str>,
}

fn frame<'a, T: Deserialize<'a>>(text: &'a str) -> Result<Frame<'a, T>, ParseError> {
    Ok(serde_json::from_str(text)?)
}

/// A push of one channel, once events are set aside.
struct Push<'a, T> {
    arg: Arg<'a>,
    action: Option<&'a str>,
    data: Vec<T>,
}

impl<'a, T: Deserialize<'a>> Push<'a, T> {
    /// The push in `text`, or `None` when the frame was an event (handled into `out`).
    fn of(text: &'a str, channel: &str, out: &mut Vec<Parsed>) -> Result<Option<Self>, ParseError> {
        let f = frame::<T>(text)?;
        if let Some(event) = f.event {
            on_event(event, f.code, f.msg, out);
            return Ok(None);
        }
        let (Some(arg), Some(data)) = (f.arg, f.data) else {
            return Err(ParseError::Invalid("push without arg or data".into()));
        };
        if arg.channel != channel {
            return Err(ParseError::Invalid(format!(
                "push of {:?} read as {channel:?}",
                arg.channel
            )));
        }
        Ok(Some(Push {
            arg,
            action: f.action,
            data,
        }))
    }

    fn inst_id(&self) -> Result<&'a str, ParseError> {
        self.arg
            .inst_id
            .ok_or_else(|| ParseError::Invalid(format!("{} push without instId", self.arg.channel)))
    }
}

/// An ack, notice or error.
fn on_event(event: &str, code: Option<String>, msg: Option<String>, out: &mut Vec<Parsed>) {
    match event {
        "error" | "channel-conn-count-error" => {
            let msg: String = msg
                .unwrap_or_default()
                .chars()
                .take(MAX_REFUSAL_TEXT)
                .collect();
            let code = code.unwrap_or_default();
            out.push(Parsed::Refused(format!("{event} {code}: {msg}")));
        }
        _ => out.push(Parsed::Control),
    }
}

/// OKX's `code` is a string (`"60012"`); a number is taken as well.
fn code_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct CodeVisitor;
    impl Visitor<'_> for CodeVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an error code")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(CodeVisitor)
}

#[derive(Deserialize)]
struct TradeData<'a> {
    #[serde(borrow, rename = "tradeId")]
    trade_id: &'a str,
    #[serde(borrow)]
    px: &'a str,
    #[serde(borrow)]
    sz: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
struct TickerData<'a> {
    #[serde(borrow, rename = "bidPx")]
    bid_px: &'a str,
    #[serde(borrow, rename = "bidSz")]
    bid_sz: &'a str,
    #[serde(borrow, rename = "askPx")]
    ask_px: &'a str,
    #[serde(borrow, rename = "askSz")]
    ask_sz: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
struct MarkPriceData<'a> {
    #[serde(borrow, rename = "markPx")]
    mark_px: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
struct FundingData<'a> {
    #[serde(borrow, rename = "fundingRate")]
    funding_rate: &'a str,
    #[serde(borrow, rename = "fundingTime")]
    funding_time: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
struct LiquidationData<'a> {
    #[serde(borrow, rename = "instId")]
    inst_id: &'a str,
    #[serde(borrow)]
    details: Vec<LiquidationDetail<'a>>,
}

#[derive(Deserialize)]
struct LiquidationDetail<'a> {
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow, rename = "bkPx")]
    bk_px: &'a str,
    #[serde(borrow)]
    sz: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

/// A decimal `tradeId` is a number (kept only when it prints back the same, so no
/// leading zeros); other text is kept as text; none is none.
fn trade_id(id: &str) -> TradeId {
    if id.is_empty() {
        return TradeId::None;
    }
    let canonical =
        id.bytes().all(|b| b.is_ascii_digit()) && (id.len() == 1 || !id.starts_with('0'));
    match id.parse::<u64>() {
        Ok(n) if canonical => TradeId::Number(n),
        _ => TradeId::Text(Arc::from(id)),
    }
}

fn side(s: &str) -> Result<Side, ParseError> {
    Side::from_name(s).ok_or_else(|| ParseError::Invalid(format!("invalid side {s:?}")))
}

fn event(
    instrument: &InstrumentId,
    exchange_time: UnixNanos,
    receive_time: UnixNanos,
    kind: EventKind,
) -> Parsed {
    Parsed::Event(MarketEvent {
        instrument: instrument.clone(),
        exchange_time,
        receive_time,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Sequence;
    use raven_model::MarkPrice;

    const RX: UnixNanos = UnixNanos(42);

    fn parser() -> OkxParser {
        let symbols: Vec<String> = [
            "BTC-USDT",
            "BTC-USD-SWAP",
            "BTC-USD-220527",
            "IOST-USDT-SWAP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        OkxParser::new(Venue::new("test_okx_parse").unwrap(), &symbols)
    }

    fn parse(p: &mut OkxParser, text: &str) -> Result<Vec<Parsed>, ParseError> {
        let mut out = Vec::new();
        p.parse(text, RX, &mut out)?;
        Ok(out)
    }

    fn events(out: Vec<Parsed>) -> Vec<MarketEvent> {
        out.into_iter()
            .map(|o| match o {
                Parsed::Event(e) => e,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn pongs_acks_and_notices_are_control_errors_are_refusals() {
        let mut p = parser();
        for control in [
            "pong",
            r#"{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}"#,
            r#"{"event":"unsubscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"d0b44253"}"#,
            r#"{"event":"subscribe","arg":{"channel":"liquidation-orders","instType":"SWAP"},"connId":"a"}"#,
            r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#,
        ] {
            assert_eq!(
                parse(&mut p, control).unwrap(),
                vec![Parsed::Control],
                "{control}"
            );
        }
        let refused = parse(
            &mut p,
            r#"{"id":"1512","event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\", \"argss\":[{ \"channel\" : \"books\", \"instId\" : \"BTC-USD-191227\"}]}","connId":"a4d3ae55"}"#,
        )
        .unwrap();
        let [Parsed::Refused(text)] = refused.as_slice() else {
            panic!("{refused:?}")
        };
        assert!(text.starts_with("error 60012: Invalid request"), "{text}");
        // An error naming a channel, with a numeric code.
        let refused = parse(
            &mut p,
            r#"{"event":"error","code":64003,"msg":"VIP4 required","arg":{"channel":"books-l2-tbt","instId":"BTC-USDT"}}"#,
        )
        .unwrap();
        assert_eq!(
            refused,
            vec![Parsed::Refused("error 64003: VIP4 required".into())]
        );
        let long = format!(
            r#"{{"event":"error","code":"1","msg":"{}"}}"#,
            "x".repeat(5000)
        );
        let out = parse(&mut p, &long).unwrap();
        let [Parsed::Refused(text)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(text.len() < 300);
    }

    #[test]
    fn a_recorded_books_update() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"{"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[["30249.4","0","0","0"],["30261","4","0","1"],["30310.3","19","0","1"]],"bids":[["30182.6","452","0","1"]],"ts":"1652459225464","checksum":-914047754}]}"#,
        )
        .unwrap();
        let [Parsed::Book(m)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(m.instrument.symbol.as_str(), "BTC-USD-220527");
        assert!(!m.snapshot);
        assert_eq!(m.asks.len(), 3);
        assert_eq!(m.bids.len(), 1);
        assert_eq!(m.sequence, Sequence::None);
        assert_eq!(m.checksum, Some(-914_047_754i32 as u32));
        assert_eq!(m.receive_time, RX);
    }

    #[test]
    fn books_need_a_known_action_and_books5_is_always_a_snapshot() {
        let mut p = parser();
        let bad = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"partial","data":[{"asks":[],"bids":[],"ts":"1"}]}"#;
        assert!(parse(&mut p, bad).is_err());
        let none = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[],"ts":"1"}]}"#;
        assert!(parse(&mut p, none).is_err());
        let five = r#"{"arg":{"channel":"books5","instId":"BTC-USD-SWAP"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"instId":"BTC-USD-SWAP","ts":"1670324386802","seqId":363996337}]}"#;
        let out = parse(&mut p, five).unwrap();
        let [Parsed::Book(m)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(m.snapshot);
        assert_eq!(
            m.sequence,
            Sequence::Chained {
                prev: u64::MAX,
                last: 363_996_337
            }
        );
    }

    #[test]
    fn trades_are_numbered_by_their_trade_id() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234},{"instId":"BTC-USDT","tradeId":"130639475","px":"42219.8","sz":"1","side":"sell","ts":"1630048897897","count":"1","source":"0","seqId":1234}]}"#,
        )
        .unwrap();
        let e = events(out);
        assert_eq!(e.len(), 2);
        let EventKind::Trade(t) = &e[0].kind else {
            panic!()
        };
        assert_eq!(t.trade_id, TradeId::Number(130_639_474));
        assert_eq!(t.ordinal, 0);
        assert_eq!(t.aggressor, Side::Buy);
        assert_eq!(t.price.to_string(), "42219.9");
        assert_eq!(t.qty.to_string(), "0.12060306");
        assert_eq!(
            e[0].exchange_time,
            UnixNanos::from_millis(1_630_048_897_897)
        );
        assert_eq!(e[0].receive_time, RX);
        let EventKind::Trade(t) = &e[1].kind else {
            panic!()
        };
        assert_eq!(t.aggressor, Side::Sell);
        assert!(parse(
            &mut p,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"hold","ts":"1"}]}"#
        )
        .is_err());
    }

    #[test]
    fn trade_ids_that_are_not_numbers() {
        assert_eq!(trade_id("0"), TradeId::Number(0));
        assert_eq!(trade_id(""), TradeId::None);
        assert_eq!(trade_id("007"), TradeId::Text(Arc::from("007")));
        assert_eq!(trade_id("ab-1"), TradeId::Text(Arc::from("ab-1")));
        assert_eq!(
            trade_id("99999999999999999999"),
            TradeId::Text(Arc::from("99999999999999999999"))
        );
        // Text ids at one time get ordinals in order.
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"x","px":"1","sz":"1","side":"buy","ts":"5"},{"tradeId":"","px":"1","sz":"1","side":"buy","ts":"5"}]}"#,
        )
        .unwrap();
        let ordinals: Vec<u32> = events(out)
            .iter()
            .map(|e| match &e.kind {
                EventKind::Trade(t) => t.ordinal,
                _ => panic!(),
            })
            .collect();
        assert_eq!(ordinals, vec![0, 1]);
    }

    #[test]
    fn tickers_give_the_bbo() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT","last":"30236","lastSz":"0.0002","askPx":"30228.7","askSz":"1.55896972","bidPx":"30228.6","bidSz":"0.23393","open24h":"29700.4","high24h":"31073","low24h":"28020.3","sodUtc0":"29028.8","sodUtc8":"30337.7","volCcy24h":"525802090.62716611","vol24h":"17602.13085371","ts":"1652459224956"}]}"#,
        )
        .unwrap();
        let e = events(out);
        let EventKind::Bbo(b) = &e[0].kind else {
            panic!()
        };
        assert_eq!(b.bid_price.to_string(), "30228.6");
        assert_eq!(b.bid_qty.to_string(), "0.23393");
        assert_eq!(b.ask_price.to_string(), "30228.7");
        assert_eq!(b.ask_qty.to_string(), "1.55896972");
        assert_eq!(b.update_id, 0);
        assert_eq!(
            e[0].exchange_time,
            UnixNanos::from_millis(1_652_459_224_956)
        );
        // No bids yet: nothing.
        let empty = r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","askPx":"1","askSz":"1","bidPx":"","bidSz":"","ts":"1"}]}"#;
        assert!(parse(&mut p, empty).unwrap().is_empty());
    }

    #[test]
    fn mark_price_and_funding_merge() {
        let mut p = parser();
        let mark = r#"{"arg":{"channel":"mark-price","instId":"BTC-USD-SWAP"},"data":[{"instType":"SWAP","instId":"BTC-USD-SWAP","markPx":"42310.6","ts":"1630049139746"}]}"#;
        assert!(parse(&mut p, mark).unwrap().is_empty());
        let funding = r#"{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"formulaType":"noRate","fundingRate":"-0.0001875391284828","fundingTime":"1700726400000","impactValue":"","instId":"BTC-USD-SWAP","instType":"SWAP","interestRate":"","method":"current_period","maxFundingRate":"0.00375","minFundingRate":"-0.00375","nextFundingRate":"","nextFundingTime":"1700755200000","premium":"0.0001233824646391","settFundingRate":"0.0001699799259033","settState":"settled","ts":"1700724675402"}]}"#;
        let e = events(parse(&mut p, funding).unwrap());
        let EventKind::MarkPrice(m) = &e[0].kind else {
            panic!()
        };
        assert_eq!(
            *m,
            MarkPrice {
                mark_price: Price::parse("42310.6").unwrap(),
                index_price: None,
                funding_rate: Decimal::from_str("-0.0001875391284828").unwrap(),
                next_funding_time: UnixNanos::from_millis(1_700_726_400_000),
            }
        );
        assert_eq!(
            e[0].exchange_time,
            UnixNanos::from_millis(1_700_724_675_402)
        );
        assert_eq!(events(parse(&mut p, mark).unwrap()).len(), 1);
        // A dated future: at once, no funding.
        let future = r#"{"arg":{"channel":"mark-price","instId":"BTC-USD-220527"},"data":[{"instType":"FUTURES","instId":"BTC-USD-220527","markPx":"30000.1","ts":"1"}]}"#;
        assert_eq!(events(parse(&mut p, future).unwrap()).len(), 1);
        let bad = funding.replace("-0.0001875391284828", "high");
        assert!(parse(&mut p, &bad).is_err());
    }

    #[test]
    fn liquidations_of_this_connection_s_instruments_only() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0","bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],"instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP","instType":"SWAP","uly":"IOST-USDT"},{"details":[{"bkLoss":"0","bkPx":"1","ccy":"","posSide":"long","side":"sell","sz":"2","ts":"1692266434011"}],"instFamily":"ETH-USDT","instId":"ETH-USDT-SWAP","instType":"SWAP","uly":"ETH-USDT"}]}"#,
        )
        .unwrap();
        let e = events(out);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].instrument.symbol.as_str(), "IOST-USDT-SWAP");
        assert_eq!(
            e[0].exchange_time,
            UnixNanos::from_millis(1_692_266_434_010)
        );
        assert_eq!(
            e[0].kind,
            EventKind::Liquidation(Liquidation {
                side: Side::Buy,
                price: Price::parse("0.007831").unwrap(),
                qty: Qty::parse("13").unwrap(),
            })
        );
    }

    #[test]
    fn other_channels_give_nothing_and_unknown_symbols_or_garbage_are_errors() {
        let mut p = parser();
        let candle = r#"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5.3","1"]]}"#;
        assert!(parse(&mut p, candle).unwrap().is_empty());
        let oi = r#"{"arg":{"channel":"open-interest","instId":"BTC-USD-SWAP"},"data":[{"instId":"BTC-USD-SWAP","oi":"5000","ts":"1"}]}"#;
        assert!(parse(&mut p, oi).unwrap().is_empty());
        let unknown = r#"{"arg":{"channel":"trades","instId":"ETH-USDT"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"buy","ts":"1"}]}"#;
        assert!(matches!(
            parse(&mut p, unknown),
            Err(ParseError::UnknownSymbol(s)) if s == "ETH-USDT"
        ));
        for garbage in [
            "",
            "ping",
            "{",
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"}}"#,
            r#"{"arg":{"channel":"trades"},"data":[]}"#,
            r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["x","1"]],"bids":[],"ts":"1"}]}"#,
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"askPx":"1","askSz":"1","bidPx":"0","bidSz":"1","ts":"1"}]}"#,
            // The first channel named is not the push's.
            r#"{"x":{"channel":"books"},"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[]}"#,
        ] {
            assert!(parse(&mut p, garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn channel_is_found_without_parsing() {
        assert_eq!(
            channel_of(r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update"}"#),
            Some("books")
        );
        assert_eq!(
            channel_of(r#"{"event":"error","code":"60012","msg":"x"}"#),
            None
        );
        assert_eq!(channel_of(r#"{"arg":{"channel":"#), None);
    }
}
