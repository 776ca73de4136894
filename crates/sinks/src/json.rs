//! The JSON shape of records in stores, shared so every store spells a trade the same
//! way. Decimals stay strings (the exchange's exact text); times are Unix nanoseconds.

use raven_model::candle::Candle;
use raven_model::{BookLevels, EventKind, Level, MarketEvent, UnixNanos};
use serde_json::{json, Value};

/// `[["price", "qty"], …]` with the exchange's exact text.
pub(crate) fn levels(levels: &[Level]) -> Value {
    Value::Array(
        levels
            .iter()
            .map(|l| json!([l.price.to_string(), l.qty.to_string()]))
            .collect(),
    )
}

/// The channel name of an event (`trade`, `bbo`, `funding`, `liquidation`) and its JSON.
pub fn event(e: &MarketEvent) -> (&'static str, Value) {
    let times = |mut v: Value| {
        v["exchange_time_ns"] = json!(e.exchange_time.as_nanos());
        v["receive_time_ns"] = json!(e.receive_time.as_nanos());
        v
    };
    match &e.kind {
        EventKind::Trade(t) => (
            "trade",
            times(json!({
                "price": t.price.to_string(), "quantity": t.qty.to_string(),
                "aggressor": t.aggressor.as_str(), "trade_id": t.trade_id.number(),
                "trade_id_text": t.trade_id.text(),
            })),
        ),
        EventKind::Bbo(b) => (
            "bbo",
            times(json!({
                "bid_price": b.bid_price.to_string(), "bid_quantity": b.bid_qty.to_string(),
                "ask_price": b.ask_price.to_string(), "ask_quantity": b.ask_qty.to_string(),
                "update_id": b.update_id,
            })),
        ),
        EventKind::MarkPrice(m) => (
            "funding",
            times(json!({
                "mark_price": m.mark_price.to_string(),
                "index_price": m.index_price.map(|p| p.to_string()),
                "funding_rate": m.funding_rate.to_string(),
                "next_funding_time_ns": m.next_funding_time.as_nanos(),
            })),
        ),
        EventKind::Liquidation(l) => (
            "liquidation",
            times(
                json!({ "side": l.side.as_str(), "price": l.price.to_string(), "quantity": l.qty.to_string() }),
            ),
        ),
    }
}

pub fn candle(c: &Candle) -> Value {
    json!({
        "interval": c.interval.as_str(),
        "open_time_ns": c.open_time.as_nanos(), "close_time_ns": c.close_time.as_nanos(),
        "open": c.open.to_string(), "high": c.high.to_string(), "low": c.low.to_string(),
        "close": c.close.to_string(), "volume": c.volume.to_string(), "trade_count": c.trade_count,
        "incomplete": c.incomplete,
    })
}

pub fn book(b: &BookLevels, exchange_time: UnixNanos, receive_time: UnixNanos) -> Value {
    json!({
        "bids": levels(&b.bids), "asks": levels(&b.asks), "last_update_id": b.last_update_id,
        "exchange_time_ns": exchange_time.as_nanos(), "receive_time_ns": receive_time.as_nanos(),
    })
}
