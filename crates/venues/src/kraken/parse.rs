//! Kraken WebSocket v1 frames to Raven's venue-neutral outputs.
//!
//! v1 has two frame shapes (v1 reference pages, docs.kraken.com/api/docs/websocket-v1,
//! seen 2026-08):
//! * objects with an `event`: `heartbeat` (about once a second without other traffic),
//!   `pong` (the answer to Raven's `ping`), `systemStatus` (on connect and on change),
//!   `subscriptionStatus` (one per pair of every subscribe and unsubscribe; `"status":
//!   "error"` with an `errorMessage` when refused) and `error` (a request Kraken could
//!   not read, or `"Exceeded msg rate"`). Errors are [`Parsed::Refused`], the rest
//!   [`Parsed::Control`];
//! * channel data as an array `[channelID, payload…, channelName, pair]`, where the
//!   channel ID is deprecated and the last two strings say what the payload is.
//!
//! The channel name and pair are read first, by scanning back from the end of the frame,
//! so each frame is deserialized once, straight into the typed shape its channel has,
//! with strings borrowed from the frame and prices going from the exchange's text to
//! [`Price`]/[`Qty`] exactly; book frames, nearly all of a book connection's input, are
//! read by a scanner of their one compact shape ([`super::book_scan`]) and fall back
//! to serde for anything else. The channels:
//! * `book-N`: a snapshot `{"as":[…],"bs":[…]}`, then updates `{"a":[…]}` and/or
//!   `{"b":[…]}`, asks and bids possibly in two objects of one frame, the checksum `"c"`
//!   in the last. A level is `[price, volume, timestamp]`, with a fourth element `"r"`
//!   when it is republished (a level coming back into the subscribed depth): it is
//!   applied like any other. Volume 0 removes the level. Levels are kept in the order
//!   sent, which is the order to apply them ("the last entries in the array are the most
//!   recent"). Kraken numbers nothing per book ([`Sequence::None`]): continuity rests on
//!   the checksum. A message's exchange time is its latest level timestamp;
//! * `trade`: `[[price, volume, time, side, orderType, misc], …]`, `side` `b`/`s` the
//!   taker's. v1 trades have no id ([`TradeId::None`]): each gets an ordinal among the
//!   pair's trades of the same time (the time is microseconds, so trades of one match
//!   share it);
//! * `spread`: `[bid, ask, timestamp, bidVolume, askVolume]`, the BBO;
//! * `ticker`: its `a` (`[price, wholeLotVolume, lotVolume]`) and `b` are the best ask and
//!   bid, read as a BBO with the lot volumes; a ticker carries no time, so its exchange
//!   time is the receive time;
//! * anything else (`ohlc-N`, private channels) gives nothing.
//!
//! Times are seconds since the epoch with a fraction (`"1618678142.557535"`, µs on the
//! wire), read exactly into nanoseconds.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use raven_model::{
    Bbo, EventKind, InstrumentId, Level, MarketEvent, Price, Qty, Side, Trade, TradeId, UnixNanos,
    Venue,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::book_scan;
use crate::engine::{BookMessage, FrameParser, Ordinals, ParseError, Parsed, Sequence, SymbolMap};

/// Reads one Kraken v1 connection's frames.
#[derive(Debug)]
pub struct KrakenParser {
    symbols: SymbolMap,
    ordinals: Ordinals,
}

impl KrakenParser {
    /// A parser for a connection carrying `symbols` (wsnames, `XBT/USD`).
    pub fn new(venue: Venue, symbols: &[String]) -> Self {
        Self {
            symbols: SymbolMap::new(venue, symbols.iter().map(String::as_str)),
            ordinals: Ordinals::default(),
        }
    }
}

impl FrameParser for KrakenParser {
    fn parse(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        match text.trim_start().as_bytes().first() {
            Some(b'[') => self.parse_channel(text, receive_time, out),
            Some(b'{') => parse_event(text, out),
            _ => Err(ParseError::Invalid("not a JSON array or object".into())),
        }
    }
}

impl KrakenParser {
    fn parse_channel(
        &mut self,
        text: &str,
        receive_time: UnixNanos,
        out: &mut Vec<Parsed>,
    ) -> Result<(), ParseError> {
        // Book frames, nearly all of a book connection's input, in one forward pass.
        if let Some(book) = book_scan::scan(text).filter(|b| b.channel.starts_with("book-")) {
            let instrument = self.symbols.get(book.pair)?.clone();
            out.push(Parsed::Book(
                book.parts.into_message(instrument, receive_time)?,
            ));
            return Ok(());
        }
        let (channel, pair) = channel_and_pair(text)?;
        let kind = if channel.starts_with("book-") {
            Channel::Book
        } else {
            match &*channel {
                "trade" => Channel::Trade,
                "spread" => Channel::Spread,
                "ticker" => Channel::Ticker,
                _ => return Ok(()),
            }
        };
        let instrument = self.symbols.get(&pair)?.clone();
        match kind {
            Channel::Book => {
                let book = general_book(text)?;
                out.push(Parsed::Book(book.into_message(instrument, receive_time)?));
            }
            Channel::Trade => {
                let ChannelFrame(raw) = serde_json::from_str::<ChannelFrame<Vec<Fields<5>>>>(text)?;
                // Every trade is read before any is given out: a frame is all or nothing.
                let trades = raw
                    .into_iter()
                    .map(|Fields([price, volume, time, side, _order_type])| {
                        Ok((
                            epoch_nanos(time)?,
                            Price::parse(price)?,
                            Qty::parse(volume)?,
                            side_of(side)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, ParseError>>()?;
                for (time, price, qty, aggressor) in trades {
                    out.push(Parsed::Event(MarketEvent {
                        instrument: instrument.clone(),
                        exchange_time: time,
                        receive_time,
                        kind: EventKind::Trade(Trade {
                            price,
                            qty,
                            aggressor,
                            trade_id: TradeId::None,
                            ordinal: self.ordinals.next(&instrument, time),
                        }),
                    }));
                }
            }
            Channel::Spread => {
                let ChannelFrame(Fields([bid, ask, time, bid_qty, ask_qty])) =
                    serde_json::from_str::<ChannelFrame<Fields<5>>>(text)?;
                out.push(bbo(
                    instrument,
                    epoch_nanos(time)?,
                    receive_time,
                    [bid, bid_qty, ask, ask_qty],
                )?);
            }
            Channel::Ticker => {
                let ChannelFrame(ticker) = serde_json::from_str::<ChannelFrame<Ticker>>(text)?;
                out.push(bbo(
                    instrument,
                    receive_time,
                    receive_time,
                    [ticker.b.0, ticker.b.2, ticker.a.0, ticker.a.2],
                )?);
            }
        }
        Ok(())
    }
}

enum Channel {
    Book,
    Trade,
    Spread,
    Ticker,
}

fn bbo(
    instrument: InstrumentId,
    exchange_time: UnixNanos,
    receive_time: UnixNanos,
    [bid, bid_qty, ask, ask_qty]: [&str; 4],
) -> Result<Parsed, ParseError> {
    Ok(Parsed::Event(MarketEvent {
        instrument,
        exchange_time,
        receive_time,
        kind: EventKind::Bbo(Bbo {
            bid_price: Price::parse(bid)?,
            bid_qty: Qty::parse(bid_qty)?,
            ask_price: Price::parse(ask)?,
            ask_qty: Qty::parse(ask_qty)?,
            update_id: 0,
        }),
    }))
}

fn side_of(side: &str) -> Result<Side, ParseError> {
    match side {
        "b" => Ok(Side::Buy),
        "s" => Ok(Side::Sell),
        _ => Err(ParseError::Invalid(format!("trade side {side:?}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Events.

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "errorMessage")]
    error_message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pair: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subscription: Option<SubscriptionName<'a>>,
}

#[derive(Deserialize)]
struct SubscriptionName<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

fn parse_event(text: &str, out: &mut Vec<Parsed>) -> Result<(), ParseError> {
    let e: Event = serde_json::from_str(text)?;
    match &*e.event {
        "heartbeat" | "pong" | "systemStatus" => out.push(Parsed::Control),
        "subscriptionStatus" => match e.status.as_deref() {
            Some("subscribed" | "unsubscribed") => out.push(Parsed::Control),
            Some("error") => out.push(Parsed::Refused(format!(
                "subscription {} {}: {}",
                e.subscription.as_ref().map_or("?", |s| &*s.name),
                e.pair.as_deref().unwrap_or("?"),
                e.error_message.as_deref().unwrap_or("no errorMessage"),
            ))),
            other => {
                return Err(ParseError::Invalid(format!(
                    "subscriptionStatus with status {other:?}"
                )))
            }
        },
        "error" => out.push(Parsed::Refused(
            e.error_message
                .as_deref()
                .unwrap_or("error without errorMessage")
                .to_owned(),
        )),
        // Events of features Raven does not use (private channels, orders).
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The channel name and pair at the end of a data frame.

/// The last two elements of a data frame, `…,"book-1000","XBT/USD"]`: its channel name
/// and pair. Read from the end so the payload before them can be deserialized into the
/// channel's own type in one pass.
fn channel_and_pair(text: &str) -> Result<(Cow<'_, str>, Cow<'_, str>), ParseError> {
    let bytes = text.as_bytes();
    let invalid =
        || ParseError::Invalid("data frame does not end with channel name and pair".into());
    let mut end = skip_space_back(bytes, bytes.len());
    if end == 0 || bytes[end - 1] != b']' {
        return Err(invalid());
    }
    end = skip_space_back(bytes, end - 1);
    let (pair_start, pair) = string_before(text, end).ok_or_else(invalid)?;
    end = skip_space_back(bytes, pair_start);
    if end == 0 || bytes[end - 1] != b',' {
        return Err(invalid());
    }
    end = skip_space_back(bytes, end - 1);
    let (_, channel) = string_before(text, end).ok_or_else(invalid)?;
    Ok((unescape(channel)?, unescape(pair)?))
}

fn skip_space_back(bytes: &[u8], mut end: usize) -> usize {
    while end > 0 && bytes[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

/// The JSON string ending just before `end` (its closing quote at `end - 1`): where its
/// opening quote is, and the string with its quotes.
fn string_before(text: &str, end: usize) -> Option<(usize, &str)> {
    let bytes = text.as_bytes();
    if end < 2 || bytes[end - 1] != b'"' {
        return None;
    }
    let mut i = end - 1;
    loop {
        i = bytes[..i].iter().rposition(|&b| b == b'"')?;
        let backslashes = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some((i, &text[i..end]));
        }
    }
}

/// A JSON string's value: borrowed unless it has escapes (Kraken sends none).
fn unescape(quoted: &str) -> Result<Cow<'_, str>, ParseError> {
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains('\\') {
        Ok(Cow::Owned(serde_json::from_str::<String>(quoted)?))
    } else {
        Ok(Cow::Borrowed(inner))
    }
}

// ---------------------------------------------------------------------------------------
// Payload shapes.

/// `[channelID, T, …]`: the one payload of a trade, spread or ticker frame (the channel
/// name and pair after it were read already).
struct ChannelFrame<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ChannelFrame<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ChannelFrame<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("[channelID, payload, channelName, pair]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                seq.next_element::<IgnoredAny>()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let payload = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ChannelFrame(payload))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The first `N` elements of an array, all strings (borrowed: Kraken's numbers and flags
/// have no escapes); later elements are ignored (a trade's `misc`, a level's `"r"`).
struct Fields<'a, const N: usize>([&'a str; N]);

impl<'de: 'a, 'a, const N: usize> Deserialize<'de> for Fields<'a, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, const N: usize>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a, const N: usize> Visitor<'de> for V<'a, N> {
            type Value = Fields<'a, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of at least {N} strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut fields = [""; N];
                for (i, field) in fields.iter_mut().enumerate() {
                    *field = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Fields(fields))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// What Raven reads of a `ticker` payload: the best ask and bid.
#[derive(Deserialize)]
struct Ticker<'a> {
    #[serde(borrow)]
    a: TickerSide<'a>,
    #[serde(borrow)]
    b: TickerSide<'a>,
}

/// `[price, wholeLotVolume, lotVolume]` (the whole-lot volume is an integer).
#[derive(Deserialize)]
struct TickerSide<'a>(&'a str, IgnoredAny, &'a str);

// ---------------------------------------------------------------------------------------
// Book frames.

/// What the objects of one book frame said, merged (by [`super::book_scan`] or serde).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct BookParts {
    pub snapshot: bool,
    pub update: bool,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub checksum: Option<u32>,
    pub latest: UnixNanos,
}

/// A book frame read by serde: the reference, for any frame the scanner does not take.
pub(super) fn general_book(text: &str) -> Result<BookParts, ParseError> {
    let mut book = BookParts::default();
    let mut de = serde_json::Deserializer::from_str(text);
    BookFrame(&mut book).deserialize(&mut de)?;
    de.end()?;
    Ok(book)
}

impl BookParts {
    fn into_message(
        self,
        instrument: InstrumentId,
        receive_time: UnixNanos,
    ) -> Result<BookMessage, ParseError> {
        if self.snapshot == self.update {
            return Err(ParseError::Invalid(if self.snapshot {
                "book frame has both snapshot and update levels".into()
            } else {
                "book frame has no levels".into()
            }));
        }
        Ok(BookMessage {
            instrument,
            snapshot: self.snapshot,
            bids: self.bids,
            asks: self.asks,
            sequence: Sequence::None,
            checksum: self.checksum,
            exchange_time: self.latest,
            receive_time,
        })
    }
}

/// `[channelID, {…}, ({…},) channelName, pair]`, each object merged into the parts.
struct BookFrame<'p>(&'p mut BookParts);

impl<'de> DeserializeSeed<'de> for BookFrame<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BookFrame<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[channelID, book objects…, channelName, pair]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        seq.next_element::<IgnoredAny>()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        while seq.next_element_seed(BookElement(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One element after the channel ID: a book object, or the channel name / pair string.
struct BookElement<'p>(&'p mut BookParts);

impl<'de> DeserializeSeed<'de> for BookElement<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BookElement<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a book object or a string")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let parts = self.0;
        while let Some(key) = map.next_key::<&'de str>()? {
            let (side, snapshot) = match key {
                "as" => (&mut parts.asks, true),
                "bs" => (&mut parts.bids, true),
                "a" => (&mut parts.asks, false),
                "b" => (&mut parts.bids, false),
                "c" => {
                    let c: &'de str = map.next_value()?;
                    parts.checksum = Some(c.parse().map_err(|_| {
                        de::Error::custom(format!(
                            "checksum {c:?} is not an unsigned 32-bit integer"
                        ))
                    })?);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if snapshot {
                parts.snapshot = true;
            } else {
                parts.update = true;
            }
            map.next_value_seed(Levels {
                side,
                latest: &mut parts.latest,
            })?;
        }
        Ok(())
    }
}

/// `[[price, volume, timestamp(, "r")], …]` appended to one side, in order.
struct Levels<'p> {
    side: &'p mut Vec<Level>,
    latest: &'p mut UnixNanos,
}

impl<'de> DeserializeSeed<'de> for Levels<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Levels<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of [price, volume, timestamp] levels")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.side.reserve(n);
        }
        while let Some(Fields([price, volume, time])) = seq.next_element::<Fields<3>>()? {
            self.side.push(Level {
                price: Price::parse(price).map_err(de::Error::custom)?,
                qty: Qty::parse(volume).map_err(de::Error::custom)?,
            });
            let time = epoch_nanos(time).map_err(de::Error::custom)?;
            *self.latest = (*self.latest).max(time);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Times.

/// Seconds since the epoch with an optional fraction (`"1618678142.557535"`) as exact
/// nanoseconds; digits past the ninth decimal are dropped. One pass over the bytes:
/// every book level carries one.
pub(super) fn epoch_nanos(text: &str) -> Result<UnixNanos, ParseError> {
    let invalid = || ParseError::Invalid(format!("timestamp {text:?}"));
    let b = text.as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let frac = match b.get(int_len) {
        None => &[][..],
        Some(b'.') => &b[int_len + 1..],
        Some(_) => return Err(invalid()),
    };
    let point_without_digits = int_len < b.len() && frac.is_empty();
    if int_len == 0 || point_without_digits || !frac.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let mut secs: u64 = 0;
    for &c in &b[..int_len] {
        secs = secs
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(c - b'0')))
            .ok_or_else(invalid)?;
    }
    let mut nanos: u64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |c| u64::from(c - b'0'));
    }
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .map(UnixNanos)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> KrakenParser {
        KrakenParser::new(
            Venue::new("test_kraken").unwrap(),
            &["XBT/USD".to_owned(), "SC/EUR".to_owned()],
        )
    }

    fn parse(p: &mut KrakenParser, text: &str) -> Result<Vec<Parsed>, ParseError> {
        let mut out = Vec::new();
        p.parse(text, UnixNanos(42), &mut out)?;
        Ok(out)
    }

    fn lv(price: &str, qty: &str) -> Level {
        Level {
            price: Price::parse(price).unwrap(),
            qty: Qty::parse(qty).unwrap(),
        }
    }

    fn book(out: &[Parsed]) -> &BookMessage {
        match out {
            [Parsed::Book(m)] => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_snapshot_has_both_sides_and_its_latest_level_time() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"[464,{"as":[["56218.30000","0.15000000","1618678117.243818"],["56218.40000","0.02970000","1618678093.187766"]],"bs":[["56119.00000","0.14375128","1618678128.948712"]]},"book-1000","XBT/USD"]"#,
        )
        .unwrap();
        let m = book(&out);
        assert!(m.snapshot);
        assert_eq!(m.instrument.symbol.as_str(), "XBT/USD");
        assert_eq!(
            m.asks,
            [
                lv("56218.30000", "0.15000000"),
                lv("56218.40000", "0.02970000")
            ]
        );
        assert_eq!(m.bids, [lv("56119.00000", "0.14375128")]);
        assert_eq!(m.asks[0].price.to_string(), "56218.30000");
        assert_eq!(m.sequence, Sequence::None);
        assert_eq!(m.checksum, None);
        assert_eq!(m.exchange_time, UnixNanos(1_618_678_128_948_712_000));
        assert_eq!(m.receive_time, UnixNanos(42));
    }

    #[test]
    fn an_update_in_two_objects_is_one_message_with_the_last_checksum() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},"book-1000","SC/EUR"]"#,
        )
        .unwrap();
        let m = book(&out);
        assert!(!m.snapshot);
        assert_eq!(m.asks, [lv("0.042990", "364630.28272081")]);
        assert_eq!(m.bids, [lv("0.042990", "0")]);
        assert_eq!(m.checksum, Some(4_105_471_083));
        assert_eq!(m.exchange_time, UnixNanos(1_618_678_145_920_708_000));
    }

    #[test]
    fn republished_levels_and_repeats_keep_their_order() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"[0,{"b":[["100.0","1.0","1.000001"],["100.0","2.0","1.000002"],["99.0","3.0","1.000003","r"]],"c":"1"},"book-10","XBT/USD"]"#,
        )
        .unwrap();
        let m = book(&out);
        assert_eq!(
            m.bids,
            [lv("100.0", "1.0"), lv("100.0", "2.0"), lv("99.0", "3.0")]
        );
        assert_eq!(m.checksum, Some(1));
    }

    #[test]
    fn malformed_book_frames_are_errors() {
        let mut p = parser();
        for bad in [
            // No levels at all, snapshot and update mixed, bad checksums, bad levels.
            r#"[1,{},"book-10","XBT/USD"]"#,
            r#"[1,{"as":[],"bs":[]},{"a":[["1.0","1.0","1.0"]]},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["1.0","1.0","1.0"]],"c":"4294967296"},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["1.0","1.0","1.0"]],"c":"-1"},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["1.0","1.0"]]},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["0","1.0","1.0"]]},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["1.0","-1.0","1.0"]]},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["1.0","1.0","yesterday"]]},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[[1.0,"1.0","1.0"]]},"book-10","XBT/USD"]"#,
            r#"[1,{"a":[["1.0","1.0","1.0"]]},"book-10","XBT/USD""#,
            r#"[1,{"a":[["1.0","1.0","1.0"]]},"book-10","XBT/USD"] x"#,
            r#"[1,"book-10","XBT/USD"]"#,
            r#"["book-10","XBT/USD"]"#,
            r#"[]"#,
            r#"x"#,
            r#""#,
        ] {
            assert!(parse(&mut p, bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse(&mut p, r#"[1,{"a":[["1.0","1.0","1.0"]]},"book-10","ETH/USD"]"#),
            Err(ParseError::UnknownSymbol(s)) if s == "ETH/USD"
        ));
    }

    #[test]
    fn trades_have_no_id_and_count_within_one_time() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""],["354.12000000","1.00000000","1618678142.557535","b","m",""],["354.13000000","2.00000000","1618678142.600000","b","m",""]],"trade","XBT/USD"]"#,
        )
        .unwrap();
        let trades: Vec<(&Trade, UnixNanos)> = out
            .iter()
            .map(|o| match o {
                Parsed::Event(MarketEvent {
                    kind: EventKind::Trade(t),
                    exchange_time,
                    ..
                }) => (t, *exchange_time),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(trades.len(), 3);
        assert_eq!(trades[0].0.price.to_string(), "354.11000000");
        assert_eq!(trades[0].0.aggressor, Side::Sell);
        assert_eq!(trades[1].0.aggressor, Side::Buy);
        assert!(trades.iter().all(|(t, _)| t.trade_id == TradeId::None));
        assert_eq!(
            trades.iter().map(|(t, _)| t.ordinal).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        assert_eq!(trades[0].1, UnixNanos(1_618_678_142_557_535_000));
        // The ordinal continues across frames of the same time.
        let out = parse(
            &mut p,
            r#"[993,[["354.13000000","1.00000000","1618678142.600000","b","l",""]],"trade","XBT/USD"]"#,
        )
        .unwrap();
        assert!(matches!(
            &out[..],
            [Parsed::Event(MarketEvent {
                kind: EventKind::Trade(Trade { ordinal: 1, .. }),
                ..
            })]
        ));
        // A frame with one bad trade gives none, and takes no ordinal.
        let mut out = Vec::new();
        let bad = r#"[993,[["354.1","1.0","1618678142.6","b","l",""],["354.1","1.0","1618678142.6","x","l",""]],"trade","XBT/USD"]"#;
        assert!(p.parse(bad, UnixNanos(42), &mut out).is_err());
        assert!(out.is_empty());
        let out = parse(
            &mut p,
            r#"[993,[["354.13000000","1.00000000","1618678142.600000","b","l",""]],"trade","XBT/USD"]"#,
        )
        .unwrap();
        assert!(matches!(
            &out[..],
            [Parsed::Event(MarketEvent {
                kind: EventKind::Trade(Trade { ordinal: 2, .. }),
                ..
            })]
        ));
    }

    #[test]
    fn spread_and_ticker_give_the_bbo() {
        let mut p = parser();
        let out = parse(
            &mut p,
            r#"[0,["5698.40000","5700.00000","1542057299.545897","1.01234567","0.98765432"],"spread","XBT/USD"]"#,
        )
        .unwrap();
        let [Parsed::Event(e)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(e.exchange_time, UnixNanos(1_542_057_299_545_897_000));
        assert_eq!(
            e.kind,
            EventKind::Bbo(Bbo {
                bid_price: Price::parse("5698.40000").unwrap(),
                bid_qty: Qty::parse("1.01234567").unwrap(),
                ask_price: Price::parse("5700.00000").unwrap(),
                ask_qty: Qty::parse("0.98765432").unwrap(),
                update_id: 0,
            })
        );
        let out = parse(
            &mut p,
            r#"[1668,{"a":["13.253900",35,"35.72892241"],"b":["13.232900",185,"185.18432037"],"c":["13.253900","3.71672000"],"v":["26560.85364463","72035.05488104"],"p":["13.529003","13.734728"],"t":[640,1353],"l":["13.021800","13.021800"],"h":["13.942000","14.211200"],"o":["13.804000","13.428300"]},"ticker","SC/EUR"]"#,
        )
        .unwrap();
        let [Parsed::Event(e)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(e.exchange_time, UnixNanos(42), "a ticker has no time");
        assert_eq!(
            e.kind,
            EventKind::Bbo(Bbo {
                bid_price: Price::parse("13.232900").unwrap(),
                bid_qty: Qty::parse("185.18432037").unwrap(),
                ask_price: Price::parse("13.253900").unwrap(),
                ask_qty: Qty::parse("35.72892241").unwrap(),
                update_id: 0,
            })
        );
        assert!(parse(
            &mut p,
            r#"[0,["1.0","2.0","3.0","4.0"],"spread","XBT/USD"]"#
        )
        .is_err());
    }

    #[test]
    fn channels_raven_does_not_use_give_nothing() {
        let mut p = parser();
        let ohlc = r#"[42,["1542057314.748456","1542057360.435743","3586.70000","3586.70000","3586.60000","3586.60000","3586.68894","0.03373000",2],"ohlc-5","XBT/USD"]"#;
        assert!(parse(&mut p, ohlc).unwrap().is_empty());
        // Even for a pair the connection does not carry.
        assert!(parse(&mut p, &ohlc.replace("XBT/USD", "ETH/USD"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn events_are_control_or_refusals() {
        let mut p = parser();
        for control in [
            r#"{"event":"heartbeat"}"#,
            r#"{"event":"pong","reqid":42}"#,
            r#"{"connectionID":18239578009413566319,"event":"systemStatus","status":"online","version":"1.8.3"}"#,
            r#"{"channelID":1665,"channelName":"trade","event":"subscriptionStatus","pair":"XBT/USD","status":"subscribed","subscription":{"name":"trade"}}"#,
            r#"{"channelID":1665,"channelName":"trade","event":"subscriptionStatus","pair":"XBT/USD","status":"unsubscribed","subscription":{"name":"trade"}}"#,
        ] {
            assert_eq!(
                parse(&mut p, control).unwrap(),
                [Parsed::Control],
                "{control}"
            );
        }
        assert_eq!(
            parse(
                &mut p,
                r#"{"errorMessage":"Currency pair not supported XBT\/USDX","event":"subscriptionStatus","pair":"XBT/USDX","status":"error","subscription":{"name":"book","depth":1000}}"#
            )
            .unwrap(),
            [Parsed::Refused(
                "subscription book XBT/USDX: Currency pair not supported XBT/USDX".into()
            )]
        );
        assert_eq!(
            parse(
                &mut p,
                r#"{"errorMessage":"Exceeded msg rate","event":"error"}"#
            )
            .unwrap(),
            [Parsed::Refused("Exceeded msg rate".into())]
        );
        assert!(parse(&mut p, r#"{"event":"openOrders"}"#)
            .unwrap()
            .is_empty());
        assert!(parse(&mut p, r#"{"event":"subscriptionStatus","status":"maybe"}"#).is_err());
        assert!(parse(&mut p, r#"{"status":"online"}"#).is_err());
    }

    #[test]
    fn the_tail_is_found_whatever_the_spacing_and_escapes() {
        let (c, s) = channel_and_pair("[1, {}, \"book-10\" ,\n \"XBT\\/USD\" ]\n").unwrap();
        assert_eq!((&*c, &*s), ("book-10", "XBT/USD"));
        let (c, s) = channel_and_pair(r#"[1,{"k":"\"x\""},"trade","A\"B"]"#).unwrap();
        assert_eq!((&*c, &*s), ("trade", "A\"B"));
        for bad in [
            r#"[1,"XBT/USD"]"#,
            r#""a","b""#,
            r#"[1,"a" "b"]"#,
            r#"[1,2]"#,
            "]",
            r#"""]"#,
        ] {
            assert!(channel_and_pair(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_exact_nanoseconds() {
        assert_eq!(
            epoch_nanos("1618678142.557535").unwrap(),
            UnixNanos(1_618_678_142_557_535_000)
        );
        assert_eq!(
            epoch_nanos("1618678142").unwrap(),
            UnixNanos(1_618_678_142_000_000_000)
        );
        assert_eq!(
            epoch_nanos("1.0000000019").unwrap(),
            UnixNanos(1_000_000_001),
            "past nanoseconds is dropped"
        );
        for bad in [
            "",
            ".5",
            "1.",
            "1.x",
            "-1.0",
            "1e9",
            "99999999999999999999",
            "18446744074.0",
            "1.5.5",
            "1.5x",
            " 1",
            "+1",
        ] {
            assert!(epoch_nanos(bad).is_err(), "{bad}");
        }
    }
}
