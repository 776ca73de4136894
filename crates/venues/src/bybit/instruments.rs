//! Bybit's instrument listings: `GET /v5/market/instruments-info?category=…`.
//!
//! Rules from the "Get Instruments Info" page (bybit-exchange/docs @072c197, 2026-07-24):
//! * linear and spot return only `Trading` symbols by default; spot does not paginate,
//!   linear returns 500 entries unless `limit` (at most 1000) says more and pages with
//!   `nextPageCursor` beyond that. Raven asks `limit=1000` (the recorded answer of
//!   2026-08-09 holds 800 linear symbols and an empty cursor);
//! * the answer is `{"retCode":0,"retMsg":"OK","result":{"category":…,"list":[…]}}`;
//!   a non-zero `retCode` is an error;
//! * linear `contractType` is `LinearPerpetual` (USDT and USDC perpetuals) or
//!   `LinearFutures` (USDT/USDC dated futures, expiring at `deliveryTime`, ms; on a
//!   perpetual `deliveryTime` is a delisting time, or `0`). Inverse types belong to the
//!   `inverse` category, options to `option`: Raven serves neither and skips them;
//! * the tick is `priceFilter.tickSize`; the lot is `lotSizeFilter.qtyStep` on linear
//!   and `lotSizeFilter.basePrecision` on spot (which has no `qtyStep`);
//! * `baseCoin`, `quoteCoin`, `settleCoin` (linear only).
//!
//! Quantities are in the base coin on both categories: linear order sizes, book sizes
//! and trade sizes are coins, not contracts ("Get Kline", USDT or USDC contract
//! volume: "unit is base coin"; "Get Open Interest": "BTCUSDT(linear) is BTC"), so every
//! instrument here is [`QtyUnit::Base`] with no contract size.
//!
//! An entry of the right shape whose values are unusable (a zero tick, a future without
//! a delivery time) is skipped with a warning rather than losing the whole listing; a
//! body of the wrong shape is an error.

use raven_model::{InstrumentId, InstrumentInfo, InstrumentKind, QtyUnit, UnixNanos, Venue};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::Category;
use crate::engine::ParseError;

/// The REST path (with query) of a category's listing.
pub fn path(category: Category) -> String {
    match category {
        Category::Spot => {
            "/v5/market/instruments-info?category=spot&status=Trading&limit=1000".to_owned()
        }
        Category::Linear => {
            "/v5/market/instruments-info?category=linear&status=Trading&limit=1000".to_owned()
        }
    }
}

/// The instruments of one answer of `category`.
pub fn parse_instruments(
    venue: Venue,
    category: Category,
    body: &str,
) -> Result<Vec<InstrumentInfo>, ParseError> {
    let answer: Answer = serde_json::from_str(body)?;
    if answer.ret_code != 0 {
        return Err(ParseError::Invalid(format!(
            "instruments-info refused: retCode {} {}",
            answer.ret_code, answer.ret_msg
        )));
    }
    let result = answer
        .result
        .ok_or_else(|| ParseError::Invalid("instruments-info answer has no result".into()))?;
    if result.category != category.as_str() {
        return Err(ParseError::Invalid(format!(
            "instruments-info answer is for category {:?}, not {:?}",
            result.category,
            category.as_str()
        )));
    }
    if result.next_page_cursor.is_some_and(|c| !c.is_empty()) {
        tracing::warn!(%venue, "the instrument listing has more pages than one request of 1000 reads; later ones are not listed");
    }
    let mut out = Vec::with_capacity(result.list.len());
    for item in &result.list {
        match instrument(venue, category, item) {
            Ok(Some(info)) => out.push(info),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%venue, symbol = item.symbol, %error, "instrument skipped");
            }
        }
    }
    Ok(out)
}

/// One entry; `None` for a kind Raven does not serve.
fn instrument(
    venue: Venue,
    category: Category,
    item: &Item<'_>,
) -> Result<Option<InstrumentInfo>, ParseError> {
    let (kind, settle, lot) = match category {
        Category::Spot => (InstrumentKind::Spot, None, item.lot_size.base_precision),
        Category::Linear => {
            let kind = match item.contract_type {
                Some("LinearPerpetual") => InstrumentKind::Perpetual,
                Some("LinearFutures") => InstrumentKind::Future {
                    expiry: delivery_time(item.delivery_time)?,
                },
                _ => return Ok(None),
            };
            let settle = item
                .settle_coin
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ParseError::Invalid("no settleCoin".into()))?;
            (
                kind,
                Some(settle.to_ascii_uppercase()),
                item.lot_size.qty_step,
            )
        }
    };
    let lot = lot.ok_or_else(|| ParseError::Invalid("no lot size".into()))?;
    Ok(Some(InstrumentInfo {
        id: InstrumentId::new(venue, item.symbol),
        kind,
        base: item.base_coin.to_ascii_uppercase(),
        quote: item.quote_coin.to_ascii_uppercase(),
        settle,
        tick_size: positive(item.price_filter.tick_size)?,
        lot_size: positive(lot)?,
        qty_unit: QtyUnit::Base,
        contract_size: None,
        contract_unit: None,
        trading: item.status == "Trading",
    }))
}

fn positive(s: &str) -> Result<Decimal, ParseError> {
    match Decimal::from_str_exact(s) {
        Ok(d) if d > Decimal::ZERO => Ok(d),
        _ => Err(ParseError::Invalid(format!("not a positive step: {s:?}"))),
    }
}

fn delivery_time(s: Option<&str>) -> Result<UnixNanos, ParseError> {
    match s.map(str::parse::<u64>) {
        Some(Ok(ms)) if ms > 0 => Ok(UnixNanos::from_millis(ms)),
        _ => Err(ParseError::Invalid(format!(
            "a dated future needs a deliveryTime, got {s:?}"
        ))),
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(rename = "retCode")]
    ret_code: i64,
    #[serde(rename = "retMsg", default)]
    ret_msg: String,
    #[serde(default, borrow)]
    result: Option<Listing<'a>>,
}

#[derive(Deserialize)]
struct Listing<'a> {
    #[serde(borrow)]
    category: &'a str,
    #[serde(default, borrow)]
    list: Vec<Item<'a>>,
    #[serde(rename = "nextPageCursor", default, borrow)]
    next_page_cursor: Option<&'a str>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(rename = "contractType", default, borrow)]
    contract_type: Option<&'a str>,
    #[serde(borrow)]
    status: &'a str,
    #[serde(rename = "baseCoin", borrow)]
    base_coin: &'a str,
    #[serde(rename = "quoteCoin", borrow)]
    quote_coin: &'a str,
    #[serde(rename = "settleCoin", default, borrow)]
    settle_coin: Option<&'a str>,
    #[serde(rename = "deliveryTime", default, borrow)]
    delivery_time: Option<&'a str>,
    #[serde(rename = "priceFilter", borrow)]
    price_filter: PriceFilter<'a>,
    #[serde(rename = "lotSizeFilter", borrow)]
    lot_size: LotSizeFilter<'a>,
}

#[derive(Deserialize)]
struct PriceFilter<'a> {
    #[serde(rename = "tickSize", borrow)]
    tick_size: &'a str,
}

#[derive(Deserialize)]
struct LotSizeFilter<'a> {
    #[serde(rename = "qtyStep", default, borrow)]
    qty_step: Option<&'a str>,
    #[serde(rename = "basePrecision", default, borrow)]
    base_precision: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn venue(name: &str) -> Venue {
        Venue::new(name).unwrap()
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const LINEAR: &str = r#"{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[
        {"symbol":"BTCUSDT","contractType":"LinearPerpetual","status":"Trading","baseCoin":"BTC","quoteCoin":"USDT","deliveryTime":"0","priceFilter":{"minPrice":"0.10","tickSize":"0.10"},"lotSizeFilter":{"qtyStep":"0.001"},"settleCoin":"USDT"},
        {"symbol":"BTCUSDT-25SEP26","contractType":"LinearFutures","status":"Trading","baseCoin":"BTC","quoteCoin":"USDT","deliveryTime":"1790323200000","priceFilter":{"tickSize":"0.10"},"lotSizeFilter":{"qtyStep":"0.001"},"settleCoin":"USDT"},
        {"symbol":"ETHUSDT-1JAN27","contractType":"LinearFutures","status":"Trading","baseCoin":"ETH","quoteCoin":"USDT","deliveryTime":"0","priceFilter":{"tickSize":"0.01"},"lotSizeFilter":{"qtyStep":"0.01"},"settleCoin":"USDT"},
        {"symbol":"BTCUSD","contractType":"InversePerpetual","status":"Trading","baseCoin":"BTC","quoteCoin":"USD","priceFilter":{"tickSize":"0.5"},"lotSizeFilter":{"qtyStep":"1"},"settleCoin":"BTC"},
        {"symbol":"NEWUSDT","contractType":"LinearPerpetual","status":"PreLaunch","baseCoin":"NEW","quoteCoin":"USDT","priceFilter":{"tickSize":"0.0001"},"lotSizeFilter":{"qtyStep":"1"},"settleCoin":"USDT"}
    ],"nextPageCursor":""}}"#;

    #[test]
    fn linear_perpetuals_and_futures() {
        let v = venue("bybit_linear");
        let list = parse_instruments(v, Category::Linear, LINEAR).unwrap();
        // The inverse entry is not served; the future without a delivery time is skipped.
        let names: Vec<String> = list.iter().map(|i| i.normalized_name()).collect();
        assert_eq!(
            names,
            ["BTC-USDT-PERP", "BTC-USDT-20260925", "NEW-USDT-PERP"]
        );
        let perp = &list[0];
        assert_eq!(perp.id, InstrumentId::new(v, "BTCUSDT"));
        assert_eq!(perp.settle.as_deref(), Some("USDT"));
        assert_eq!((perp.tick_size, perp.lot_size), (d("0.10"), d("0.001")));
        assert_eq!(perp.tick_size.to_string(), "0.10");
        assert_eq!(perp.qty_unit, QtyUnit::Base);
        assert_eq!(
            (perp.contract_size, perp.contract_unit.clone()),
            (None, None)
        );
        assert!(perp.trading);
        assert_eq!(
            list[1].kind,
            InstrumentKind::Future {
                expiry: UnixNanos::from_millis(1790323200000)
            }
        );
        assert!(!list[2].trading, "PreLaunch is not trading");
    }

    #[test]
    fn spot_lot_is_the_base_precision() {
        let body = r#"{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbolId":9,"symbol":"BTCUSDT","baseCoin":"BTC","quoteCoin":"USDT","status":"Trading","lotSizeFilter":{"basePrecision":"0.000001","quotePrecision":"0.0000001"},"priceFilter":{"tickSize":"0.1"}}]}}"#;
        let list = parse_instruments(venue("bybit_spot"), Category::Spot, body).unwrap();
        let btc = &list[0];
        assert_eq!(btc.kind, InstrumentKind::Spot);
        assert_eq!(btc.settle, None);
        assert_eq!((btc.tick_size, btc.lot_size), (d("0.1"), d("0.000001")));
        assert_eq!(btc.normalized_name(), "BTC-USDT");
    }

    #[test]
    fn refusals_and_wrong_categories_are_errors() {
        let v = venue("bybit_linear");
        for body in [
            r#"{"retCode":10001,"retMsg":"params error","result":{}}"#,
            r#"{"retCode":0,"retMsg":"OK"}"#,
            r#"{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[]}}"#,
            r#"{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"X"}]}}"#,
            "not json",
        ] {
            assert!(
                parse_instruments(v, Category::Linear, body).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn unreadable_steps_skip_the_entry() {
        let body = LINEAR.replace("\"tickSize\":\"0.10\"}", "\"tickSize\":\"0\"}");
        let list = parse_instruments(venue("bybit_linear"), Category::Linear, &body).unwrap();
        assert_eq!(list.len(), 1, "only NEWUSDT has a readable tick");
    }
}
