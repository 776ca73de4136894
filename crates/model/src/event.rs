//! Normalized market events.
//!
//! A venue adapter turns each exchange frame into one [`MarketEvent`]: which instrument,
//! the exchange's event time, Raven's receive time, and an [`EventKind`] payload whose
//! fields mean the same thing whichever exchange sent them. Book levels travel as
//! [`BookLevels`] and are applied to an [`crate::book::OrderBook`] by the hub; every other
//! kind is self-contained.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::{InstrumentId, Price, Qty, UnixNanos};

/// The aggressor side of a trade, or the side of a book level or liquidation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// The lowercase name stores and JSON spell it with: `buy`, `sell`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// The side [`Side::as_str`] names; `None` for any other text.
    pub fn from_name(name: &str) -> Option<Side> {
        [Side::Buy, Side::Sell]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One price level: set the quantity at `price` to `qty` (zero removes the level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub price: Price,
    pub qty: Qty,
}

/// A batch of level changes, or a full snapshot's levels, with the exchange's update-id
/// range they cover (`first_update_id..=last_update_id`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BookLevels {
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub first_update_id: u64,
    pub last_update_id: u64,
}

/// How the exchange identifies a trade.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TradeId {
    /// A number (Binance `a`/`t`, OKX `tradeId`, Coinbase `trade_id`).
    Number(u64),
    /// Text that is not a number (Bybit's UUIDs).
    Text(Arc<str>),
    /// No id at all (Kraken WebSocket v1).
    None,
}

impl TradeId {
    /// The number, when the exchange numbers its trades.
    pub fn number(&self) -> Option<u64> {
        match self {
            TradeId::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The id as text (`""` when there is none): how the API and stores show it.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            TradeId::Number(n) => n.to_string().into(),
            TradeId::Text(t) => (**t).into(),
            TradeId::None => "".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub price: Price,
    pub qty: Qty,
    /// The taker's side: `Sell` when the buyer was the maker.
    pub aggressor: Side,
    /// The exchange's trade id (Binance: the aggregate trade id for `@aggTrade`).
    pub trade_id: TradeId,
    /// The trade's place among this instrument's trades with the same exchange time,
    /// in the order the venue sent them (0 for the first). With the exchange time it
    /// keys a trade that has no number, deterministically: stores use it so a replay
    /// overwrites rather than duplicates (see the sinks' series time).
    pub ordinal: u32,
}

/// Best bid and offer as the exchange publishes it (Binance `@bookTicker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bbo {
    pub bid_price: Price,
    pub bid_qty: Qty,
    pub ask_price: Price,
    pub ask_qty: Qty,
    /// The exchange's book update id of this BBO; 0 when the venue numbers none.
    pub update_id: u64,
}

/// Mark price and funding of a perpetual (Binance `@markPrice@1s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkPrice {
    pub mark_price: Price,
    pub index_price: Option<Price>,
    /// Signed: negative funding means shorts pay longs.
    pub funding_rate: Decimal,
    pub next_funding_time: UnixNanos,
}

/// A forced liquidation order (Binance `@forceOrder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liquidation {
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Trade(Trade),
    Bbo(Bbo),
    MarkPrice(MarkPrice),
    Liquidation(Liquidation),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketEvent {
    pub instrument: InstrumentId,
    /// When the exchange says the event happened.
    pub exchange_time: UnixNanos,
    /// When Raven read the frame from the socket.
    pub receive_time: UnixNanos,
    pub kind: EventKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_names_round_trip_and_nothing_else_parses() {
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(Side::from_name(s.as_str()), Some(s));
        }
        assert_eq!(Side::from_name("BUY"), None);
        assert_eq!(Side::from_name(""), None);
    }
}
