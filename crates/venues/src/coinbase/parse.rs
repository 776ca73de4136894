//! Coinbase Advanced Trade frames to Raven's venue-neutral outputs.
//!
//! Every frame is an envelope `{"channel":…,"timestamp":…,"sequence_num":…,
//! "events":[…]}` ("Advanced Trade WebSocket Channels" and the AsyncAPI spec
//! `advanced-trade-asyncapi.json`, docs.cdp.coinbase.com, seen 2026-08). What Raven
//! takes from each channel, and why:
//!
//! * **`sequence_num`** numbers the messages of one connection, across all its
//!   channels, from 0 (the recording's first frame is 0 and they run on without a hole
//!   through 1029). A jump means a message of *some* channel was lost, which no other
//!   field can tell: level2 has no per-book sequence and no checksum. So every frame
//!   carrying one gives [`Parsed::ConnectionSequence`] first, before what it holds, and
//!   the engine checks the numbers follow; a book's own messages are
//!   [`Sequence::None`] and the connection sequence is their only continuity.
//! * **`l2_data`** (subscribed as `level2`): events `snapshot` (the whole book, every
//!   level: 46 000 for BTC-USD on the recording) then `update`; each level
//!   `{"side":"bid"|"offer","event_time","price_level","new_quantity"}` where
//!   "new_quantity is the updated size at a price level (not a delta); a value of "0"
//!   means the level can be removed" (AsyncAPI, channel level2). The book message's
//!   exchange time is the latest `event_time` of its levels (the envelope's `timestamp`
//!   for an event without levels). Most frames take the scanner
//!   (`l2_scan`); anything else this module's general parser.
//! * **`market_trades`**: `update` events carry the trades "collected over the last
//!   250 ms" (AsyncAPI), **newest first**, each `{trade_id, product_id, price, size,
//!   time, side}`. `side` is the **maker's** side ("side: The maker side of the trade",
//!   REST Get Market Trades, the same trade objects; on the recording 71 of 71 trades at
//!   the touch are at the ask when `side` is SELL and at the bid when BUY), so the
//!   aggressor is the other side. `trade_id` is a decimal number per product, contiguous
//!   on the recording ([`TradeId::Number`], ordinal 0; another form is kept as
//!   [`TradeId::Text`] with an [`Ordinals`] ordinal). Trades are emitted oldest first
//!   (by id when every id is a number, else in reverse of the venue's order) so each
//!   stream's ids rise one by one, as the engine's sequencer expects.
//!   The `snapshot` event a subscription starts with holds the product's last trades
//!   (100 on the recording, up to minutes old). They are **not** emitted: they are
//!   not live, and after a reconnect most of them were already delivered by the
//!   previous connection, while the engine's sequencer takes the first event after a
//!   break whatever its key (the venue may have renumbered), so they would be
//!   delivered again. Trades missed during a reconnect are instead announced by the
//!   sequencer as a gap in the contiguous ids.
//! * **`ticker`**: each ticker's `best_bid`, `best_bid_quantity`, `best_ask`,
//!   `best_ask_quantity` give a [`Bbo`] with the envelope's `timestamp` (tickers have no
//!   time of their own) and update id 0 (Coinbase numbers none). The snapshot event is
//!   the current BBO, not history, and is emitted too. A ticker without both best
//!   prices (an empty side) gives no BBO.
//! * **`heartbeats`** (one a second) and **`subscriptions`** (the answer to every
//!   subscribe and unsubscribe) are proof of life: [`Parsed::Control`].
//! * **errors** are `{"type":"error","message":…}` without a channel (e.g. "too many
//!   L2 streams requested in a single session"): [`Parsed::Refused`].
//! * `candles`, `status`, `ticker_batch` (no best bid/ask), `user` and any other
//!   channel or message type give nothing ("Clients are expected to ignore messages
//!   they do not support", WebSocket Overview).
//!
//! Times are RFC 3339 text, read exactly by [`super::time`]. A frame that fails gives
//! no output at all (nothing of it is left in `out`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use raven_model::{
    Bbo, EventKind, InstrumentId, Level, MarketEvent, Price, Qty, Side, Trade, TradeId, UnixNanos,
};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::engine::{BookMessage, FrameParser, Ordinals, ParseError, Parsed, Sequence, SymbolMap};

use super::l2_scan;
use super::time::{parse_rfc3339, TimeError};

/// The latest of a run of RFC 3339 times, parsing each distinct text once (a frame's
/// levels almost always share one `event_time`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct LatestTime<'a> {
    text: &'a str,
    time: Option<UnixNanos>,
}

impl<'a> LatestTime<'a> {
    pub fn see(&mut self, text: &'a str) -> Result<(), TimeError> {
        if self.time.is_some() && text == self.text {
            return Ok(());
        }
        let t = parse_rfc3339(text)?;
        self.time = Some(self.time.map_or(t, |latest| latest.max(t)));
        self.text = text;
        Ok(())
    }

    pub fn time(&self) -> Option<UnixNanos> {
        self.time
    }

    /// The text of the time seen last.
    pub fn text(&self) -> &'a str {
        self.text
    }
}

/// One `l2_data` event, from the scanner or the general parser.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BookEvent<'a> {
    pub snapshot: bool,
    pub product_id: &'a str,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub latest: LatestTime<'a>,
}

/// The parser of one connection.
#[derive(Debug)]
pub struct CoinbaseParser {
    symbols: SymbolMap,
    ordinals: Ordinals,
}

impl CoinbaseParser {
    pub fn new(symbols: SymbolMap) -> Self {
        Self {
            symbols,
            ordinals: Ordinals::default(),
        }
    }

    fn parse_into(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        if let Some(l2) = l2_scan::scan(text) {
            out.push(Parsed::ConnectionSequence(l2.sequence_num));
            return self.books(l2.timestamp, l2.events, receive_time, out);
        }
        let frame: Envelope = serde_json::from_str(text)?;
        let Some(channel) = frame.channel else {
            if frame.kind.as_deref() == Some("error") {
                out.push(Parsed::Refused(refusal(&frame)));
            }
            return Ok(());
        };
        if let Some(n) = frame.sequence_num {
            out.push(Parsed::ConnectionSequence(n));
        }
        let timestamp = frame.timestamp.unwrap_or_default();
        match channel {
            "l2_data" => {
                let events = frame
                    .events
                    .into_iter()
                    .map(|e| {
                        let snapshot = match e.kind {
                            Some("snapshot") => true,
                            Some("update") => false,
                            other => return Err(invalid("l2_data event type", other)),
                        };
                        let product_id = e
                            .product_id
                            .ok_or_else(|| invalid("l2_data product_id", None))?;
                        Ok(BookEvent {
                            snapshot,
                            product_id,
                            bids: e.updates.bids,
                            asks: e.updates.asks,
                            latest: e.updates.latest,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.books(timestamp, events, receive_time, out)?;
            }
            "market_trades" => {
                for event in frame.events {
                    match event.kind {
                        Some("update") => self.trades(&event.trades, receive_time, out)?,
                        // History, not live: see the module docs.
                        Some("snapshot") => {}
                        other => return Err(invalid("market_trades event type", other)),
                    }
                }
            }
            "ticker" => {
                let mut time = None;
                for event in &frame.events {
                    for ticker in &event.tickers {
                        let exchange_time = match time {
                            Some(t) => t,
                            None => *time.insert(parse_rfc3339(timestamp).map_err(time_error)?),
                        };
                        self.bbo(ticker, exchange_time, receive_time, out)?;
                    }
                }
            }
            "heartbeats" | "subscriptions" => out.push(Parsed::Control),
            _ => {}
        }
        Ok(())
    }

    fn books(
        &mut self,
        timestamp: &str,
        events: Vec<BookEvent<'_>>,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        for e in events {
            let instrument = self.symbols.get(e.product_id)?.clone();
            let exchange_time = match e.latest.time() {
                Some(t) => t,
                None => parse_rfc3339(timestamp).map_err(time_error)?,
            };
            out.push(Parsed::Book(BookMessage {
                instrument,
                snapshot: e.snapshot,
                bids: e.bids,
                asks: e.asks,
                sequence: Sequence::None,
                checksum: None,
                exchange_time,
                receive_time,
            }));
        }
        Ok(())
    }

    fn trades(
        &mut self,
        trades: &[RawTrade<'_>],
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        // Oldest first: by id when all are numbers, else the reverse of the venue's
        // newest-first order.
        let ids: Option<Vec<u64>> = trades.iter().map(|t| trade_number(t.trade_id)).collect();
        let mut order: Vec<usize> = (0..trades.len()).rev().collect();
        if let Some(ids) = &ids {
            order.sort_by_key(|&i| ids[i]);
        }
        for i in order {
            let t = &trades[i];
            let instrument = self.symbols.get(t.product_id)?;
            let exchange_time = parse_rfc3339(t.time).map_err(time_error)?;
            let aggressor = match t.side {
                // The maker sold: the taker bought.
                "SELL" => Side::Buy,
                "BUY" => Side::Sell,
                other => return Err(invalid("trade side", Some(other))),
            };
            let (trade_id, ordinal) = match trade_number(t.trade_id) {
                Some(n) => (TradeId::Number(n), 0),
                None => (
                    TradeId::Text(Arc::from(t.trade_id)),
                    self.ordinals.next(instrument, exchange_time),
                ),
            };
            let trade = Trade {
                price: Price::parse(t.price)?,
                qty: Qty::parse(t.size)?,
                aggressor,
                trade_id,
                ordinal,
            };
            out.push(event(
                instrument,
                exchange_time,
                receive_time,
                EventKind::Trade(trade),
            ));
        }
        Ok(())
    }

    fn bbo(
        &self,
        t: &RawTicker<'_>,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let instrument = self.symbols.get(t.product_id)?;
        let quote = |price: Option<&str>, qty: Option<&str>| match (price, qty) {
            (Some(p), Some(q)) if !p.is_empty() && !is_zero(p) => {
                Ok::<_, ParseError>(Some((Price::parse(p)?, Qty::parse(q)?)))
            }
            _ => Ok(None),
        };
        let bid = quote(t.best_bid, t.best_bid_quantity)?;
        let ask = quote(t.best_ask, t.best_ask_quantity)?;
        if let (Some((bid_price, bid_qty)), Some((ask_price, ask_qty))) = (bid, ask) {
            let bbo = Bbo {
                bid_price,
                bid_qty,
                ask_price,
                ask_qty,
                update_id: 0,
            };
            out.push(event(
                instrument,
                exchange_time,
                receive_time,
                EventKind::Bbo(bbo),
            ));
        }
        Ok(())
    }
}

impl FrameParser for CoinbaseParser {
    fn parse(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        let start = out.len();
        let result = self.parse_into(text, receive_time, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
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

/// A trade id written as a plain decimal number that fits a `u64` (no sign, no
/// leading zero, so the number prints back as the venue's text).
fn trade_number(id: &str) -> Option<u64> {
    let plain = !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id.len() == 1 || !id.starts_with('0'));
    plain.then(|| id.parse().ok()).flatten()
}

/// `"0"`, `"0.00"`: Coinbase's spelling of "no price" on an empty book side.
fn is_zero(text: &str) -> bool {
    text.bytes().all(|b| b == b'0' || b == b'.')
}

fn refusal(frame: &Envelope<'_>) -> String {
    let message = frame
        .message
        .as_deref()
        .unwrap_or("error without a message");
    match frame.reason.as_deref() {
        Some(reason) if !reason.is_empty() => format!("{message}: {reason}"),
        _ => message.to_owned(),
    }
}

fn invalid(what: &str, value: Option<&str>) -> ParseError {
    ParseError::Invalid(format!("invalid {what}: {value:?}"))
}

fn time_error(e: TimeError) -> ParseError {
    ParseError::Invalid(e.to_string())
}

/// Any frame: a channel's envelope, or a channel-less reply (`error`).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    timestamp: Option<&'a str>,
    sequence_num: Option<u64>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    events: Vec<Event<'a>>,
}

/// An event of any channel: the fields Raven reads of each (only one channel has
/// each of `updates`, `trades`, `tickers`); the rest is skipped unread.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    product_id: Option<&'a str>,
    #[serde(default, borrow)]
    updates: BookUpdates<'a>,
    #[serde(default, borrow)]
    trades: Vec<RawTrade<'a>>,
    #[serde(default, borrow)]
    tickers: Vec<RawTicker<'a>>,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    trade_id: &'a str,
    product_id: &'a str,
    price: &'a str,
    size: &'a str,
    time: &'a str,
    side: &'a str,
}

#[derive(Deserialize)]
struct RawTicker<'a> {
    product_id: &'a str,
    #[serde(borrow)]
    best_bid: Option<&'a str>,
    #[serde(borrow)]
    best_bid_quantity: Option<&'a str>,
    #[serde(borrow)]
    best_ask: Option<&'a str>,
    #[serde(borrow)]
    best_ask_quantity: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawUpdate<'a> {
    side: &'a str,
    event_time: &'a str,
    price_level: &'a str,
    new_quantity: &'a str,
}

/// An `updates` array read straight into exact levels, without a `Vec` of raw ones.
#[derive(Default)]
struct BookUpdates<'a> {
    bids: Vec<Level>,
    asks: Vec<Level>,
    latest: LatestTime<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for BookUpdates<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Levels<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Levels<'a> {
            type Value = BookUpdates<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of level updates")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = BookUpdates::default();
                while let Some(u) = seq.next_element::<RawUpdate<'a>>()? {
                    let level = Level {
                        price: Price::parse(u.price_level).map_err(de::Error::custom)?,
                        qty: Qty::parse(u.new_quantity).map_err(de::Error::custom)?,
                    };
                    out.latest.see(u.event_time).map_err(de::Error::custom)?;
                    match u.side {
                        "bid" => out.bids.push(level),
                        "offer" => out.asks.push(level),
                        other => return Err(de::Error::custom(format!("invalid side {other:?}"))),
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(Levels(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Venue;

    fn parser() -> CoinbaseParser {
        let venue = Venue::new("test_coinbase_parse").unwrap();
        CoinbaseParser::new(SymbolMap::new(venue, ["BTC-USD", "ETH-USD"]))
    }

    fn parse(text: &str) -> Result<Vec<Parsed>, ParseError> {
        let mut out = Vec::new();
        parser().parse(text, UnixNanos(7), &mut out)?;
        Ok(out)
    }

    fn trades(out: &[Parsed]) -> Vec<(u64, Side, u64)> {
        out.iter()
            .filter_map(|p| match p {
                Parsed::Event(MarketEvent {
                    exchange_time,
                    kind: EventKind::Trade(t),
                    ..
                }) => Some((t.trade_id.number()?, t.aggressor, exchange_time.as_nanos())),
                _ => None,
            })
            .collect()
    }

    const L2_SNAPSHOT: &str = r#"{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.483587501Z","sequence_num":13,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-08-09T21:05:48.170326Z","price_level":"65083.66","new_quantity":"0.20371215"},{"side":"offer","event_time":"2026-08-09T21:05:48.170326Z","price_level":"65083.67","new_quantity":"0.24290402"}]}]}"#;

    const TRADES: &str = r#"{"channel":"market_trades","timestamp":"2026-08-09T21:05:51.5Z","sequence_num":120,"events":[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1068572096","price":"65083.67","size":"0.001","time":"2026-08-09T21:05:51.426861Z","side":"SELL"},{"product_id":"BTC-USD","trade_id":"1068572095","price":"65083.66","size":"0.002","time":"2026-08-09T21:05:51.376358Z","side":"BUY"}]}]}"#;

    const TICKER: &str = r#"{"channel":"ticker","timestamp":"2026-08-09T21:05:48.229198328Z","sequence_num":6,"events":[{"type":"snapshot","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"65086.18","volume_24_h":"2867.5","best_bid":"65083.66","best_ask":"65083.67","best_bid_quantity":"0.20371215","best_ask_quantity":"0.24290402"}]}]}"#;

    #[test]
    fn a_book_frame_gives_the_connection_sequence_then_the_book() {
        let out = parse(L2_SNAPSHOT).unwrap();
        assert_eq!(out[0], Parsed::ConnectionSequence(13));
        let Parsed::Book(b) = &out[1] else { panic!() };
        assert!(b.snapshot);
        assert_eq!(b.sequence, Sequence::None);
        assert_eq!(b.checksum, None);
        assert_eq!(b.bids[0].price.to_string(), "65083.66");
        assert_eq!(b.asks[0].qty.to_string(), "0.24290402");
        // The levels' event time, not the envelope's.
        assert_eq!(b.exchange_time, UnixNanos(1_786_309_548_170_326_000));
        assert_eq!(b.receive_time, UnixNanos(7));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn the_scanner_and_the_general_parser_agree() {
        // Whitespace makes the scanner refuse, so the general parser reads it.
        let spaced = L2_SNAPSHOT.replace(",\"events\"", ", \"events\"");
        assert!(l2_scan::scan(&spaced).is_none());
        assert_eq!(parse(&spaced).unwrap(), parse(L2_SNAPSHOT).unwrap());
        // Keys in another order only the general parser reads.
        let reordered = r#"{"events":[{"updates":[{"new_quantity":"1","price_level":"2","event_time":"2026-08-09T21:05:48Z","side":"offer"}],"product_id":"ETH-USD","type":"update"}],"sequence_num":3,"timestamp":"2026-08-09T21:05:49Z","channel":"l2_data"}"#;
        let out = parse(reordered).unwrap();
        let Parsed::Book(b) = &out[1] else { panic!() };
        assert!(!b.snapshot);
        assert_eq!(b.asks.len(), 1);
        assert_eq!(b.exchange_time, UnixNanos(1_786_309_548_000_000_000));
    }

    #[test]
    fn an_update_takes_its_latest_event_time_or_the_envelope_s() {
        let two_times = r#"{"channel":"l2_data","timestamp":"2026-08-09T21:05:50Z","sequence_num":1,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-08-09T21:05:48.2Z","price_level":"1","new_quantity":"1"},{"side":"bid","event_time":"2026-08-09T21:05:48.1Z","price_level":"2","new_quantity":"0"}]}]}"#;
        let Parsed::Book(b) = &parse(two_times).unwrap()[1] else {
            panic!()
        };
        assert_eq!(b.exchange_time, UnixNanos(1_786_309_548_200_000_000));
        let empty = r#"{"channel":"l2_data","timestamp":"2026-08-09T21:05:50Z","sequence_num":1,"events":[{"type":"update","product_id":"BTC-USD","updates":[]}]}"#;
        let Parsed::Book(b) = &parse(empty).unwrap()[1] else {
            panic!()
        };
        assert_eq!(b.exchange_time, UnixNanos(1_786_309_550_000_000_000));
        assert!(b.bids.is_empty() && b.asks.is_empty());
    }

    #[test]
    fn trades_come_oldest_first_with_the_taker_s_side() {
        let out = parse(TRADES).unwrap();
        assert_eq!(out[0], Parsed::ConnectionSequence(120));
        assert_eq!(
            trades(&out),
            [
                // BUY is the maker's side: a seller hit the bid.
                (1_068_572_095, Side::Sell, 1_786_309_551_376_358_000),
                (1_068_572_096, Side::Buy, 1_786_309_551_426_861_000),
            ]
        );
        let Parsed::Event(e) = &out[1] else { panic!() };
        let EventKind::Trade(t) = &e.kind else {
            panic!()
        };
        assert_eq!(
            (t.price.to_string(), t.qty.to_string()),
            ("65083.66".into(), "0.002".into())
        );
        assert_eq!(t.ordinal, 0);
    }

    #[test]
    fn the_trade_snapshot_is_history_and_gives_no_trade() {
        let snapshot = TRADES.replace("\"update\"", "\"snapshot\"");
        assert_eq!(parse(&snapshot).unwrap(), [Parsed::ConnectionSequence(120)]);
    }

    #[test]
    fn trade_ids_that_are_not_plain_numbers_are_text_with_ordinals() {
        let text = TRADES
            .replace("1068572096", "a-uuid")
            .replace("1068572095", "0123")
            .replace("51.376358Z", "51.426861Z");
        let out = parse(&text).unwrap();
        let ids: Vec<(String, u32)> = out
            .iter()
            .filter_map(|p| match p {
                Parsed::Event(MarketEvent {
                    kind: EventKind::Trade(t),
                    ..
                }) => Some((t.trade_id.text().into_owned(), t.ordinal)),
                _ => None,
            })
            .collect();
        // Not all numbers: the reverse of the venue's newest-first order.
        assert_eq!(ids, [("0123".into(), 0), ("a-uuid".into(), 1)]);
        assert_eq!(trade_number("18446744073709551616"), None);
        assert_eq!(trade_number("0"), Some(0));
    }

    #[test]
    fn a_ticker_gives_the_bbo_at_the_envelope_time() {
        let out = parse(TICKER).unwrap();
        assert_eq!(out[0], Parsed::ConnectionSequence(6));
        let Parsed::Event(e) = &out[1] else { panic!() };
        assert_eq!(e.exchange_time, UnixNanos(1_786_309_548_229_198_328));
        let EventKind::Bbo(b) = &e.kind else { panic!() };
        assert_eq!(b.bid_price.to_string(), "65083.66");
        assert_eq!(b.bid_qty.to_string(), "0.20371215");
        assert_eq!(b.ask_price.to_string(), "65083.67");
        assert_eq!(b.ask_qty.to_string(), "0.24290402");
        assert_eq!(b.update_id, 0);
        for empty_side in [
            TICKER.replace("\"best_bid\":\"65083.66\"", "\"best_bid\":\"\""),
            TICKER.replace("\"best_ask\":\"65083.67\"", "\"best_ask\":\"0\""),
            TICKER.replace("\"best_bid\":\"65083.66\",", ""),
        ] {
            assert_eq!(parse(&empty_side).unwrap(), [Parsed::ConnectionSequence(6)]);
        }
    }

    #[test]
    fn control_refusals_and_ignored_channels() {
        let heartbeat = r#"{"channel":"heartbeats","client_id":"","timestamp":"2026-08-09T21:05:48.856364007Z","sequence_num":35,"events":[{"current_time":"2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341","heartbeat_counter":41691}]}"#;
        assert_eq!(
            parse(heartbeat).unwrap(),
            [Parsed::ConnectionSequence(35), Parsed::Control]
        );
        let ack = r#"{"channel":"subscriptions","timestamp":"2026-08-09T21:05:48.2Z","sequence_num":2,"events":[{"subscriptions":{"market_trades":["BTC-USD"],"heartbeats":["heartbeats"]}}]}"#;
        assert_eq!(
            parse(ack).unwrap(),
            [Parsed::ConnectionSequence(2), Parsed::Control]
        );
        let error =
            r#"{"type":"error","message":"too many L2 streams requested in a single session"}"#;
        assert_eq!(
            parse(error).unwrap(),
            [Parsed::Refused(
                "too many L2 streams requested in a single session".into()
            )]
        );
        let with_reason =
            r#"{"type":"error","message":"Failed to subscribe","reason":"bad \"product\""}"#;
        assert_eq!(
            parse(with_reason).unwrap(),
            [Parsed::Refused(
                "Failed to subscribe: bad \"product\"".into()
            )]
        );
        let candles = r#"{"channel":"candles","timestamp":"2026-08-09T21:05:51.4Z","sequence_num":138,"events":[{"type":"update","candles":[{"start":"1786309500","high":"1919.6","low":"1919.27","open":"1919.58","close":"1919.41","volume":"36.3","product_id":"ETH-USD"}]}]}"#;
        assert_eq!(parse(candles).unwrap(), [Parsed::ConnectionSequence(138)]);
        assert_eq!(parse(r#"{"type":"something_new"}"#).unwrap(), []);
    }

    #[test]
    fn malformed_frames_are_errors_and_leave_nothing_behind() {
        let two_products = L2_SNAPSHOT.replace(
            "]}]}",
            r#"]},{"type":"update","product_id":"SOL-USD","updates":[]}]}"#,
        );
        let mut out = vec![Parsed::Control];
        let e = parser().parse(&two_products, UnixNanos(1), &mut out);
        assert!(matches!(e, Err(ParseError::UnknownSymbol(s)) if s == "SOL-USD"));
        assert_eq!(out, [Parsed::Control]);
        for bad in [
            "",
            "[]",
            "{\"channel\":",
            &L2_SNAPSHOT.replace("\"offer\"", "\"ask\""),
            &L2_SNAPSHOT.replace("65083.66", "-1"),
            &L2_SNAPSHOT.replace("\"snapshot\"", "\"delta\""),
            &L2_SNAPSHOT.replace("48.170326Z", "48.170326"),
            &L2_SNAPSHOT.replace("\"product_id\":\"BTC-USD\",", ""),
            &TRADES.replace("\"SELL\"", "\"UNKNOWN\""),
            &TRADES.replace("\"0.001\"", "\"abc\""),
            &TRADES.replace("\"update\"", "\"other\""),
            &TICKER.replace("\"65083.66\"", "\"1e3\""),
            &TICKER.replace("48.229198328Z", "yesterday"),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        for text in [L2_SNAPSHOT, TRADES, TICKER] {
            for end in 0..text.len() {
                let _ = parse(&text[..end]);
            }
        }
    }
}
