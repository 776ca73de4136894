//! Linear tickers: deltas of changed fields, merged into full BBO and mark-price values.
//!
//! Bybit's `tickers.{symbol}` topic sends a `snapshot` with every field, then `delta`s
//! holding only the fields that changed ("Ticker" page, bybit-exchange/docs @072c197,
//! 2026-07-24: "If a response param is not found in the message, then its value has not
//! changed"; spot tickers are snapshots only). One linear ticker carries both:
//! * the best bid and offer: `bid1Price`, `bid1Size`, `ask1Price`, `ask1Size`;
//! * the mark price and funding: `markPrice`, `indexPrice`, `fundingRate`,
//!   `nextFundingTime` (ms). Dated futures send `fundingRate` and `nextFundingTime` as
//!   `""`: they pay no funding, so that is a rate of 0 and no next time (0).
//!
//! A delta with `ask1Size` alone is not a BBO, so [`Tickers`] keeps each symbol's
//! last-known fields and an event is made only when the frame changed one of its fields
//! and every field it needs is known: a BBO needs all four of its fields, a mark price
//! its mark, rate and next time (the index is optional). A snapshot forgets what was
//! known before. An empty price (a side without orders) makes that value unknown until
//! a later frame gives it again.

use std::collections::HashMap;

use raven_model::{Bbo, DecimalError, InstrumentId, MarkPrice, Price, Qty, UnixNanos};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::engine::ParseError;

/// The fields of one ticker frame's `data` that Raven uses; `None`: not in the frame.
#[derive(Debug, Deserialize)]
pub(super) struct TickerFields<'a> {
    #[serde(borrow)]
    pub symbol: &'a str,
    #[serde(rename = "bid1Price", default, borrow)]
    pub bid_price: Option<&'a str>,
    #[serde(rename = "bid1Size", default, borrow)]
    pub bid_size: Option<&'a str>,
    #[serde(rename = "ask1Price", default, borrow)]
    pub ask_price: Option<&'a str>,
    #[serde(rename = "ask1Size", default, borrow)]
    pub ask_size: Option<&'a str>,
    #[serde(rename = "markPrice", default, borrow)]
    pub mark_price: Option<&'a str>,
    #[serde(rename = "indexPrice", default, borrow)]
    pub index_price: Option<&'a str>,
    #[serde(rename = "fundingRate", default, borrow)]
    pub funding_rate: Option<&'a str>,
    #[serde(rename = "nextFundingTime", default, borrow)]
    pub next_funding_time: Option<&'a str>,
}

/// What one frame made known.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TickerOutput {
    pub bbo: Option<Bbo>,
    pub mark: Option<MarkPrice>,
}

/// The last-known fields of one symbol; `None`: unknown.
#[derive(Debug, Default)]
struct TickerState {
    bid_price: Option<Price>,
    bid_qty: Option<Qty>,
    ask_price: Option<Price>,
    ask_qty: Option<Qty>,
    mark_price: Option<Price>,
    index_price: Option<Price>,
    funding_rate: Option<Decimal>,
    next_funding_time: Option<UnixNanos>,
}

/// The ticker state of every symbol of one connection.
#[derive(Debug, Default)]
pub(super) struct Tickers {
    by_instrument: HashMap<InstrumentId, TickerState>,
}

impl Tickers {
    /// Merges one frame's fields into the symbol's state and returns the values it
    /// made known. `update_id` is the frame's `cs` (cross sequence).
    pub fn apply(
        &mut self,
        instrument: &InstrumentId,
        snapshot: bool,
        fields: &TickerFields<'_>,
        update_id: u64,
    ) -> Result<TickerOutput, ParseError> {
        // Parse everything first, so a malformed frame changes nothing.
        let bid_price = fields.bid_price.map(price).transpose()?;
        let bid_qty = fields.bid_size.map(qty).transpose()?;
        let ask_price = fields.ask_price.map(price).transpose()?;
        let ask_qty = fields.ask_size.map(qty).transpose()?;
        let mark_price = fields.mark_price.map(price).transpose()?;
        let index_price = fields.index_price.map(price).transpose()?;
        let funding_rate = fields.funding_rate.map(rate).transpose()?;
        let next_funding_time = fields.next_funding_time.map(millis).transpose()?;

        let state = match self.by_instrument.get_mut(instrument) {
            Some(state) => state,
            None => self.by_instrument.entry(instrument.clone()).or_default(),
        };
        if snapshot {
            *state = TickerState::default();
        }
        let bbo_changed =
            bid_price.is_some() || bid_qty.is_some() || ask_price.is_some() || ask_qty.is_some();
        let mark_changed = mark_price.is_some()
            || index_price.is_some()
            || funding_rate.is_some()
            || next_funding_time.is_some();
        merge(&mut state.bid_price, bid_price);
        merge(&mut state.bid_qty, bid_qty);
        merge(&mut state.ask_price, ask_price);
        merge(&mut state.ask_qty, ask_qty);
        merge(&mut state.mark_price, mark_price);
        merge(&mut state.index_price, index_price);
        merge(&mut state.funding_rate, funding_rate);
        merge(&mut state.next_funding_time, next_funding_time);

        let bbo = match (
            state.bid_price,
            state.bid_qty,
            state.ask_price,
            state.ask_qty,
        ) {
            (Some(bid_price), Some(bid_qty), Some(ask_price), Some(ask_qty)) if bbo_changed => {
                Some(Bbo {
                    bid_price,
                    bid_qty,
                    ask_price,
                    ask_qty,
                    update_id,
                })
            }
            _ => None,
        };
        let mark = match (
            state.mark_price,
            state.funding_rate,
            state.next_funding_time,
        ) {
            (Some(mark_price), Some(funding_rate), Some(next_funding_time)) if mark_changed => {
                Some(MarkPrice {
                    mark_price,
                    index_price: state.index_price,
                    funding_rate,
                    next_funding_time,
                })
            }
            _ => None,
        };
        Ok(TickerOutput { bbo, mark })
    }
}

/// A field the frame carried replaces the known value (`Some(None)`: now unknown).
fn merge<T>(known: &mut Option<T>, sent: Option<Option<T>>) {
    if let Some(value) = sent {
        *known = value;
    }
}

/// A price; `""` or `"0"` (no order on that side, no index) is no value.
fn price(s: &str) -> Result<Option<Price>, ParseError> {
    if s.is_empty() {
        return Ok(None);
    }
    match Price::parse(s) {
        Ok(p) => Ok(Some(p)),
        Err(DecimalError::NonPositivePrice(d)) if d.is_zero() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn qty(s: &str) -> Result<Option<Qty>, ParseError> {
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(Qty::parse(s)?))
}

/// A signed funding rate; `""` (dated futures) is no funding: 0.
fn rate(s: &str) -> Result<Option<Decimal>, ParseError> {
    if s.is_empty() {
        return Ok(Some(Decimal::ZERO));
    }
    Decimal::from_str_exact(s)
        .map(Some)
        .map_err(|_| DecimalError::Syntax(s.to_owned()).into())
}

/// A time in ms as text; `""` (dated futures) is no time: 0.
fn millis(s: &str) -> Result<Option<UnixNanos>, ParseError> {
    if s.is_empty() {
        return Ok(Some(UnixNanos(0)));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Invalid(format!("not a time in ms: {s:?}")));
    }
    s.parse::<u64>()
        .map(|ms| Some(UnixNanos::from_millis(ms)))
        .map_err(|_| ParseError::Invalid(format!("not a time in ms: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Venue;
    use std::str::FromStr;

    fn id() -> InstrumentId {
        InstrumentId::new(Venue::new("bybit_linear").unwrap(), "BTCUSDT")
    }

    fn fields(json: &str) -> TickerFields<'_> {
        serde_json::from_str(json).unwrap()
    }

    const SNAPSHOT: &str = r#"{"symbol":"BTCUSDT","markPrice":"65117.44","indexPrice":"65137.76","nextFundingTime":"1786320000000","fundingRate":"0.0001","bid1Price":"65114.20","bid1Size":"5.954","ask1Price":"65114.30","ask1Size":"10.470","openInterest":"1"}"#;

    #[test]
    fn a_snapshot_gives_both_values() {
        let mut t = Tickers::default();
        let out = t.apply(&id(), true, &fields(SNAPSHOT), 7).unwrap();
        let bbo = out.bbo.unwrap();
        assert_eq!(bbo.bid_price.to_string(), "65114.20");
        assert_eq!(bbo.ask_qty.to_string(), "10.470");
        assert_eq!(bbo.update_id, 7);
        let mark = out.mark.unwrap();
        assert_eq!(mark.mark_price.to_string(), "65117.44");
        assert_eq!(
            mark.index_price.map(|p| p.to_string()).as_deref(),
            Some("65137.76")
        );
        assert_eq!(mark.funding_rate, Decimal::from_str("0.0001").unwrap());
        assert_eq!(
            mark.next_funding_time,
            UnixNanos::from_millis(1786320000000)
        );
    }

    #[test]
    fn deltas_merge_into_the_known_values() {
        let mut t = Tickers::default();
        t.apply(&id(), true, &fields(SNAPSHOT), 1).unwrap();
        // Only the ask size changed: the BBO is the old one with the new size.
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","ask1Size":"10.488"}"#),
                2,
            )
            .unwrap();
        let bbo = out.bbo.unwrap();
        assert_eq!(bbo.bid_qty.to_string(), "5.954");
        assert_eq!(bbo.ask_qty.to_string(), "10.488");
        assert_eq!(out.mark, None, "no mark field changed");
        // Only the mark price changed: the funding stays what the snapshot said.
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","markPrice":"65117.43","openInterestValue":"3"}"#),
                3,
            )
            .unwrap();
        assert_eq!(out.bbo, None);
        let mark = out.mark.unwrap();
        assert_eq!(mark.mark_price.to_string(), "65117.43");
        assert_eq!(mark.funding_rate, Decimal::from_str("0.0001").unwrap());
        // Neither changed (open interest only): nothing.
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","openInterest":"2"}"#),
                4,
            )
            .unwrap();
        assert_eq!(out, TickerOutput::default());
    }

    #[test]
    fn nothing_is_made_until_every_field_is_known() {
        let mut t = Tickers::default();
        // A delta before any snapshot: three of the four BBO fields.
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","bid1Price":"1","bid1Size":"2","ask1Price":"3","markPrice":"5"}"#),
                1,
            )
            .unwrap();
        assert_eq!(out, TickerOutput::default());
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","ask1Size":"4","fundingRate":"-0.0002"}"#),
                2,
            )
            .unwrap();
        assert_eq!(out.bbo.unwrap().ask_qty.to_string(), "4");
        assert_eq!(out.mark, None, "the next funding time is still unknown");
        // An empty side makes the BBO unknown again.
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","bid1Price":"","bid1Size":""}"#),
                3,
            )
            .unwrap();
        assert_eq!(out.bbo, None);
    }

    #[test]
    fn a_snapshot_forgets_what_it_does_not_carry() {
        let mut t = Tickers::default();
        t.apply(&id(), true, &fields(SNAPSHOT), 1).unwrap();
        let out = t
            .apply(
                &id(),
                true,
                &fields(r#"{"symbol":"BTCUSDT","ask1Price":"9","ask1Size":"1"}"#),
                2,
            )
            .unwrap();
        assert_eq!(out, TickerOutput::default());
    }

    #[test]
    fn dated_futures_pay_no_funding() {
        let mut t = Tickers::default();
        let out = t
            .apply(
                &id(),
                true,
                &fields(r#"{"symbol":"BTC-26DEC25","markPrice":"121144.63","indexPrice":"114132.51","nextFundingTime":"","fundingRate":""}"#),
                1,
            )
            .unwrap();
        let mark = out.mark.unwrap();
        assert_eq!(mark.funding_rate, Decimal::ZERO);
        assert_eq!(mark.next_funding_time, UnixNanos(0));
    }

    #[test]
    fn malformed_values_are_errors_and_change_nothing() {
        let mut t = Tickers::default();
        t.apply(&id(), true, &fields(SNAPSHOT), 1).unwrap();
        for bad in [
            r#"{"symbol":"BTCUSDT","bid1Price":"-1"}"#,
            r#"{"symbol":"BTCUSDT","bid1Size":"x"}"#,
            r#"{"symbol":"BTCUSDT","fundingRate":"1e"}"#,
            r#"{"symbol":"BTCUSDT","nextFundingTime":"+5"}"#,
            r#"{"symbol":"BTCUSDT","ask1Size":"1","markPrice":"0.0.1"}"#,
        ] {
            assert!(t.apply(&id(), false, &fields(bad), 2).is_err(), "{bad}");
        }
        let out = t
            .apply(
                &id(),
                false,
                &fields(r#"{"symbol":"BTCUSDT","bid1Size":"1"}"#),
                3,
            )
            .unwrap();
        assert_eq!(out.bbo.unwrap().ask_qty.to_string(), "10.470");
    }
}
