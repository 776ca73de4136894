//! Model → wire conversion, in one place.
//!
//! Decimals go out as the exchange's own text (`Price`/`Qty` print with the scale they
//! were parsed with), so a client sees exactly what the exchange sent. Each function
//! builds a `ServerMessage` body; the hub encodes it once and shares the bytes.
//!
//! A message may also be encoded in two parts, [`payload`] then [`with_payload`]: a
//! protobuf message is the concatenation of its fields, so the expensive payload (a
//! deep book view) can be encoded without any lock held, and the envelope with its
//! sequence number added under the lock that assigns it.

use bytes::Bytes;
use raven_model::candle::Candle;
use raven_model::{
    Bbo, BookLevels, EventKind, Level, Liquidation, MarkPrice, Side, Trade, UnixNanos,
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
        payload,
    }
}

/// The encoded `payload` field of a `ServerMessage`, for [`with_payload`].
pub fn payload(payload: &Payload) -> Bytes {
    let mut buf = Vec::with_capacity(payload.encoded_len());
    payload.encode(&mut buf);
    Bytes::from(buf)
}

/// The message `envelope` carrying an already encoded [`payload`]: the same bytes as
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

fn levels(levels: &[Level]) -> Vec<pb::PriceLevel> {
    levels
        .iter()
        .map(|l| pb::PriceLevel {
            price: l.price.to_string(),
            quantity: l.qty.to_string(),
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

pub fn book_delta(delta: &BookLevels) -> Payload {
    Payload::BookDelta(pb::BookDelta {
        bids: levels(&delta.bids),
        asks: levels(&delta.asks),
        first_update_id: delta.first_update_id,
        last_update_id: delta.last_update_id,
    })
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
        trade_id: t.trade_id,
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

pub fn candle(c: &Candle) -> Payload {
    Payload::Candle(pb::Candle {
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
}
