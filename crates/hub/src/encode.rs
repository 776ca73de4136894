//! Model → wire conversion, in one place.
//!
//! Decimals go out as the exchange's own text (`Price`/`Qty` print with the scale they
//! were parsed with), so a client sees exactly what the exchange sent. Each function
//! builds a `ServerMessage` body; the hub encodes it once and shares the bytes.
//!
//! A message may also be encoded in two parts, its payload (e.g.
//! [`book_snapshot_payload`]) then [`with_payload`]: a protobuf message is the
//! concatenation of its fields, so the expensive payload (a deep book view) can be
//! encoded without any lock held, and the envelope with its sequence number added
//! under the lock that assigns it.
//!
//! Book snapshots and deltas, the bulk of what Raven sends, are written straight into
//! their protobuf bytes ([`book_snapshot_payload`], [`book_delta_payload`]): each
//! level's decimal text goes from the model into the buffer with no `String` in
//! between. The bytes are exactly what prost would produce from the generated messages
//! (a test compares them).

use bytes::Bytes;
use raven_model::candle::Candle;
use raven_model::{
    Bbo, BookLevels, DecimalText, EventKind, Level, Liquidation, MarkPrice, QtyUnit, Side, Trade,
    UnixNanos,
};
use raven_proto::pb::server_message::Payload;
use raven_proto::{pb, OutboundMessage};

/// The per-topic envelope of a message.
pub struct Envelope<'a> {
    pub topic: &'a pb::Topic,
    pub sequence: u64,
    pub exchange_time: UnixNanos,
    pub receive_time: UnixNanos,
}

pub fn encode(env: &Envelope<'_>, payload: Payload) -> Bytes {
    OutboundMessage::encode_body(&envelope_message(env, Some(payload)))
}

fn envelope_message(env: &Envelope<'_>, payload: Option<Payload>) -> pb::ServerMessage {
    pb::ServerMessage {
        topic: Some(env.topic.clone()),
        sequence: env.sequence,
        exchange_time_ns: env.exchange_time.as_nanos(),
        receive_time_ns: env.receive_time.as_nanos(),
        send_time_ns: 0,
        replayed: false,
        payload,
    }
}

/// The message `envelope` carrying an already encoded payload field: the same bytes as
/// [`encode`] would produce, but the payload's cost was paid elsewhere.
pub fn with_payload(env: &Envelope<'_>, payload: &Bytes) -> Bytes {
    let head = envelope_message(env, None);
    let mut buf = Vec::with_capacity(prost::Message::encoded_len(&head) + payload.len());
    prost::Message::encode_raw(&head, &mut buf);
    buf.extend_from_slice(payload);
    Bytes::from(buf)
}

/// A message that belongs to no topic (heartbeat, pong).
pub fn encode_untopiced(payload: Payload) -> Bytes {
    OutboundMessage::encode_body(&pb::ServerMessage {
        payload: Some(payload),
        ..Default::default()
    })
}

/// A protobuf varint.
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A field's key: its number and wire type (0 varint, 2 length-delimited), itself a
/// varint (two bytes from field 16 on).
fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(buf, u64::from(field << 3 | wire_type));
}

/// Field `field` of wire type "length-delimited" holding `bytes`.
fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// A varint field, left out at zero (proto3).
fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(buf, field, 0);
        put_varint(buf, v);
    }
}

/// A `PriceLevel` as field `field` of its book message.
fn put_level(buf: &mut Vec<u8>, field: u32, l: &Level) {
    let (price, qty) = (l.price.text(), l.qty.text());
    let (price, qty) = (price.as_bytes(), qty.as_bytes());
    // Each text is at most 31 bytes: one-byte lengths, so the level is 4 + both.
    put_key(buf, field, 2);
    put_varint(buf, (4 + price.len() + qty.len()) as u64);
    put_bytes(buf, 1, price);
    put_bytes(buf, 2, qty);
}

/// A whole book message's body (`bids` field 1, `asks` field 2) and then `tail`.
fn book_body(book: &BookLevels, tail: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + 24 * (book.bids.len() + book.asks.len()));
    for l in &book.bids {
        put_level(&mut body, 1, l);
    }
    for l in &book.asks {
        put_level(&mut body, 2, l);
    }
    tail(&mut body);
    body
}

/// The `ServerMessage.payload` field holding `body` as field `field`.
fn payload_field(field: u32, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 6);
    put_bytes(&mut out, field, body);
    Bytes::from(out)
}

/// A string field of decimal text, left out when empty (proto3).
fn put_text(buf: &mut Vec<u8>, field: u32, text: &DecimalText) {
    if !text.as_bytes().is_empty() {
        put_bytes(buf, field, text.as_bytes());
    }
}

/// The encoded payload of a non-book event (fields 14–17), like [`event`], for
/// [`with_payload`].
pub fn event_payload(kind: &EventKind) -> Bytes {
    let mut body = Vec::with_capacity(64);
    let field = match kind {
        EventKind::Trade(t) => {
            put_text(&mut body, 1, &t.price.text());
            put_text(&mut body, 2, &t.qty.text());
            put_uint(&mut body, 3, side(t.aggressor) as u64);
            if let Some(n) = t.trade_id.number() {
                put_uint(&mut body, 4, n);
            }
            let text = t.trade_id.text();
            if !text.is_empty() {
                put_bytes(&mut body, 5, text.as_bytes());
            }
            14
        }
        EventKind::Bbo(b) => {
            put_text(&mut body, 1, &b.bid_price.text());
            put_text(&mut body, 2, &b.bid_qty.text());
            put_text(&mut body, 3, &b.ask_price.text());
            put_text(&mut body, 4, &b.ask_qty.text());
            put_uint(&mut body, 5, b.update_id);
            15
        }
        EventKind::MarkPrice(m) => {
            put_text(&mut body, 1, &m.mark_price.text());
            if let Some(index) = m.index_price {
                put_text(&mut body, 2, &index.text());
            }
            put_text(&mut body, 3, &DecimalText::of(m.funding_rate));
            put_uint(&mut body, 4, m.next_funding_time.as_nanos());
            16
        }
        EventKind::Liquidation(l) => {
            put_uint(&mut body, 1, side(l.side) as u64);
            put_text(&mut body, 2, &l.price.text());
            put_text(&mut body, 3, &l.qty.text());
            17
        }
    };
    payload_field(field, &body)
}

/// The encoded `book_snapshot` payload (field 11) of `book`'s levels, like
/// [`book_snapshot`], for [`with_payload`].
pub fn book_snapshot_payload(book: &BookLevels, conflated: bool, known: (usize, usize)) -> Bytes {
    let complete = |n: usize, side: &[Level]| n.min(side.len()) as u64;
    let body = book_body(book, |b| {
        put_uint(b, 3, book.last_update_id);
        put_uint(b, 4, u64::from(conflated));
        put_uint(b, 5, complete(known.0, &book.bids));
        put_uint(b, 6, complete(known.1, &book.asks));
    });
    payload_field(11, &body)
}

/// The encoded `book_delta` payload (field 12), for [`with_payload`].
pub fn book_delta_payload(delta: &BookLevels) -> Bytes {
    let body = book_body(delta, |b| {
        put_uint(b, 3, delta.first_update_id);
        put_uint(b, 4, delta.last_update_id);
    });
    payload_field(12, &body)
}

fn levels(levels: &[Level]) -> Vec<pb::PriceLevel> {
    levels
        .iter()
        .map(|l| pb::PriceLevel {
            price: l.price.text().as_str().to_owned(),
            quantity: l.qty.text().as_str().to_owned(),
        })
        .collect()
}

/// A snapshot of `book`'s levels, of which the best `known` bids and asks are complete
/// (clamped to what the snapshot holds).
pub fn book_snapshot(
    book: &BookLevels,
    conflated: bool,
    known: (usize, usize),
) -> pb::BookSnapshot {
    let count = |n: usize, side: &[Level]| u32::try_from(n.min(side.len())).unwrap_or(u32::MAX);
    pb::BookSnapshot {
        bids: levels(&book.bids),
        asks: levels(&book.asks),
        last_update_id: book.last_update_id,
        conflated,
        known_bid_levels: count(known.0, &book.bids),
        known_ask_levels: count(known.1, &book.asks),
    }
}

fn side(side: Side) -> i32 {
    match side {
        Side::Buy => pb::Side::Buy as i32,
        Side::Sell => pb::Side::Sell as i32,
    }
}

pub fn trade(t: &Trade) -> Payload {
    Payload::Trade(pb::Trade {
        price: t.price.to_string(),
        quantity: t.qty.to_string(),
        aggressor: side(t.aggressor),
        trade_id: t.trade_id.number().unwrap_or_default(),
        trade_id_text: t.trade_id.text().into_owned(),
    })
}

fn bbo(b: &Bbo) -> Payload {
    Payload::Bbo(pb::Bbo {
        bid_price: b.bid_price.to_string(),
        bid_quantity: b.bid_qty.to_string(),
        ask_price: b.ask_price.to_string(),
        ask_quantity: b.ask_qty.to_string(),
        update_id: b.update_id,
    })
}

fn funding(m: &MarkPrice) -> Payload {
    Payload::Funding(pb::Funding {
        mark_price: m.mark_price.to_string(),
        index_price: m.index_price.map(|p| p.to_string()).unwrap_or_default(),
        funding_rate: m.funding_rate.to_string(),
        next_funding_time_ns: m.next_funding_time.as_nanos(),
    })
}

fn liquidation(l: &Liquidation) -> Payload {
    Payload::Liquidation(pb::Liquidation {
        side: side(l.side),
        price: l.price.to_string(),
        quantity: l.qty.to_string(),
    })
}

/// The payload of a non-book market event.
pub fn event(kind: &EventKind) -> Payload {
    match kind {
        EventKind::Trade(t) => trade(t),
        EventKind::Bbo(b) => bbo(b),
        EventKind::MarkPrice(m) => funding(m),
        EventKind::Liquidation(l) => liquidation(l),
    }
}

/// A candle; `unit` is its instrument's quantity unit, which `volume` sums.
pub fn candle(c: &Candle, unit: Option<QtyUnit>) -> Payload {
    Payload::Candle(pb::Candle {
        volume_unit: unit.map_or("", QtyUnit::as_str).to_owned(),
        open_time_ns: c.open_time.as_nanos(),
        close_time_ns: c.close_time.as_nanos(),
        open: c.open.to_string(),
        high: c.high.to_string(),
        low: c.low.to_string(),
        close: c.close.to_string(),
        volume: c.volume.to_string(),
        trade_count: c.trade_count,
        incomplete: c.incomplete,
    })
}

/// A `FeedGap` notice: the exchange's events may be missing from `start` to `end`
/// (receive clock; 0 while ongoing).
pub fn feed_gap(
    reason: &str,
    start: UnixNanos,
    end: UnixNanos,
    last_id: u64,
    next_id: u64,
) -> Payload {
    Payload::FeedGap(pb::FeedGap {
        reason: reason.to_owned(),
        start_time_ns: start.as_nanos(),
        end_time_ns: end.as_nanos(),
        last_id,
        next_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload field as prost encodes it: what the direct encoders must match.
    fn payload(payload: &Payload) -> Bytes {
        let mut buf = Vec::with_capacity(payload.encoded_len());
        payload.encode(&mut buf);
        Bytes::from(buf)
    }

    #[test]
    fn a_message_encoded_in_two_parts_is_the_message_encoded_whole() {
        let topic = pb::Topic {
            venue: "binance_spot".into(),
            symbol: "BTCUSDT".into(),
            channel: pb::Channel::Book as i32,
            depth: 5,
        };
        let env = Envelope {
            topic: &topic,
            sequence: 77,
            exchange_time: UnixNanos(5),
            receive_time: UnixNanos(6),
        };
        let snapshot = Payload::BookSnapshot(pb::BookSnapshot {
            bids: vec![pb::PriceLevel {
                price: "1.5".into(),
                quantity: "2".into(),
            }],
            known_bid_levels: 1,
            ..Default::default()
        });
        let whole = encode(&env, snapshot.clone());
        let parts = with_payload(&env, &payload(&snapshot));
        assert_eq!(
            <pb::ServerMessage as prost::Message>::decode(&parts[..]).unwrap(),
            <pb::ServerMessage as prost::Message>::decode(&whole[..]).unwrap()
        );
    }

    fn level(p: &str, q: &str) -> Level {
        Level {
            price: raven_model::Price::parse(p).unwrap(),
            qty: raven_model::Qty::parse(q).unwrap(),
        }
    }

    #[test]
    fn event_payloads_are_the_bytes_prost_makes() {
        use raven_model::{Price, Qty};
        let p = |s: &str| Price::parse(s).unwrap();
        let q = |s: &str| Qty::parse(s).unwrap();
        let kinds = [
            EventKind::Trade(Trade {
                price: p("43251.12000000"),
                qty: q("0.00100000"),
                aggressor: Side::Sell,
                trade_id: raven_model::TradeId::Number(1 << 50),
                ordinal: 0,
            }),
            EventKind::Bbo(Bbo {
                bid_price: p("1.5"),
                bid_qty: q("0"),
                ask_price: p("1.6"),
                ask_qty: q("12.000"),
                update_id: 0,
            }),
            EventKind::MarkPrice(MarkPrice {
                mark_price: p("0.35210000"),
                index_price: None,
                funding_rate: "-0.00012345".parse().unwrap(),
                next_funding_time: UnixNanos(1_700_000_000_000_000_000),
            }),
            EventKind::MarkPrice(MarkPrice {
                mark_price: p("1"),
                index_price: Some(p("1.01")),
                funding_rate: rust_decimal::Decimal::ZERO,
                next_funding_time: UnixNanos(0),
            }),
            EventKind::Liquidation(Liquidation {
                side: Side::Buy,
                price: p("99"),
                qty: q("7"),
            }),
        ];
        for kind in &kinds {
            assert_eq!(event_payload(kind), payload(&event(kind)), "{kind:?}");
        }
    }

    #[test]
    fn book_payloads_are_the_bytes_prost_makes() {
        let mut book = BookLevels {
            bids: vec![
                level("99.500", "1.25"),
                level("0.00000001", "123456789.123456789"),
            ],
            asks: (0..200)
                .map(|i| level(&format!("{}.{i}", 100 + i), "0"))
                .collect(),
            first_update_id: 0,
            last_update_id: 1 << 40,
        };
        for (conflated, known) in [(false, (0, 0)), (true, (1, 150)), (false, (9, 999))] {
            let expect = payload(&Payload::BookSnapshot(book_snapshot(
                &book, conflated, known,
            )));
            assert_eq!(book_snapshot_payload(&book, conflated, known), expect);
        }
        let delta = |b: &BookLevels| {
            payload(&Payload::BookDelta(pb::BookDelta {
                bids: levels(&b.bids),
                asks: levels(&b.asks),
                first_update_id: b.first_update_id,
                last_update_id: b.last_update_id,
            }))
        };
        assert_eq!(book_delta_payload(&book), delta(&book));
        book.first_update_id = 7;
        book.bids.clear();
        assert_eq!(book_delta_payload(&book), delta(&book));
        assert_eq!(
            book_delta_payload(&BookLevels::default()),
            delta(&BookLevels::default())
        );
    }
}
