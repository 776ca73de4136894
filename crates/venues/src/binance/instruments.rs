//! Binance's instrument listings (`GET /api/v3/exchangeInfo`, `/fapi/v1/exchangeInfo`,
//! `/dapi/v1/exchangeInfo`) as venue-neutral [`InstrumentInfo`].
//!
//! Fields, from the three "Exchange Information" pages: `baseAsset`, `quoteAsset`,
//! `marginAsset` (futures: the settle asset), the `PRICE_FILTER`'s `tickSize` and the
//! `LOT_SIZE` filter's `stepSize`, `contractType` (`PERPETUAL`, `CURRENT_QUARTER`,
//! `NEXT_QUARTER`, …) with `deliveryDate` (ms) for dated contracts, and on COIN-M
//! `contractSize` (contracts of that many quote-asset units: BTCUSD_PERP is 100 USD).
//! USD-M quantities are in the base asset; COIN-M quantities are contracts. `status`
//! (spot, USD-M) or `contractStatus` (COIN-M) is `TRADING` while it trades.

use raven_model::{InstrumentId, InstrumentInfo, InstrumentKind, QtyUnit, UnixNanos, Venue};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::market::Market;
use super::parse::ParseError;

/// One listed symbol: its trading status as Binance spells it, and what Raven serves of
/// it (`None` for a contract type Raven does not describe, e.g. options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSymbol {
    pub symbol: String,
    /// `TRADING`, `BREAK`, `SETTLING`, …
    pub status: String,
    pub info: Option<InstrumentInfo>,
}

#[derive(Deserialize)]
struct ExchangeInfo<'a> {
    #[serde(borrow)]
    symbols: Vec<ExchangeSymbol<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeSymbol<'a> {
    symbol: &'a str,
    #[serde(default)]
    status: Option<&'a str>,
    #[serde(default)]
    contract_status: Option<&'a str>,
    #[serde(default)]
    base_asset: Option<&'a str>,
    #[serde(default)]
    quote_asset: Option<&'a str>,
    #[serde(default)]
    margin_asset: Option<&'a str>,
    #[serde(default)]
    contract_type: Option<&'a str>,
    #[serde(default)]
    delivery_date: Option<u64>,
    #[serde(default)]
    contract_size: Option<serde_json::Number>,
    #[serde(default, borrow)]
    filters: Vec<Filter<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter<'a> {
    filter_type: &'a str,
    #[serde(default)]
    tick_size: Option<&'a str>,
    #[serde(default)]
    step_size: Option<&'a str>,
}

/// Parses an `exchangeInfo` body of `market`.
pub fn parse_exchange_info(market: Market, body: &str) -> Result<Vec<ListedSymbol>, ParseError> {
    let info: ExchangeInfo = serde_json::from_str(body)?;
    let venue = market.venue();
    Ok(info
        .symbols
        .iter()
        .map(|s| {
            let status = s.status.or(s.contract_status).unwrap_or_default();
            ListedSymbol {
                symbol: s.symbol.to_owned(),
                status: status.to_owned(),
                info: describe(venue, market, s, status == "TRADING"),
            }
        })
        .collect())
}

fn describe(
    venue: Venue,
    market: Market,
    s: &ExchangeSymbol,
    trading: bool,
) -> Option<InstrumentInfo> {
    let filter = |kind: &str| s.filters.iter().find(|f| f.filter_type == kind);
    let decimal = |text: Option<&str>| {
        text.and_then(|t| t.parse::<Decimal>().ok())
            .map(|d| d.normalize())
    };
    let tick_size = decimal(filter("PRICE_FILTER").and_then(|f| f.tick_size))?;
    let lot_size = decimal(filter("LOT_SIZE").and_then(|f| f.step_size))?;
    let kind = match (market, s.contract_type) {
        (Market::Spot, _) => InstrumentKind::Spot,
        (_, Some("PERPETUAL")) => InstrumentKind::Perpetual,
        (_, Some(t)) if t.contains("QUARTER") || t.contains("MONTH") || t == "DELIVERING" => {
            InstrumentKind::Future {
                expiry: UnixNanos::from_millis(s.delivery_date?),
            }
        }
        _ => return None,
    };
    let (base, quote) = (s.base_asset?.to_owned(), s.quote_asset?.to_owned());
    let (qty_unit, contract_size, contract_unit) = match market {
        Market::Coinm => (
            QtyUnit::Contracts,
            s.contract_size
                .as_ref()
                .and_then(|n| n.to_string().parse::<Decimal>().ok()),
            Some(quote.clone()),
        ),
        Market::Spot | Market::Usdm => (QtyUnit::Base, None, None),
    };
    Some(InstrumentInfo {
        id: InstrumentId::new(venue, s.symbol),
        kind,
        settle: market
            .is_futures()
            .then(|| s.margin_asset.unwrap_or(&quote).to_owned()),
        base,
        quote,
        tick_size,
        lot_size,
        qty_unit,
        contract_size,
        contract_unit,
        trading,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_usdm_and_coinm_listings() {
        let spot = r#"{"symbols":[{"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC",
            "filters":[{"filterType":"PRICE_FILTER","tickSize":"0.00000100"},{"filterType":"LOT_SIZE","stepSize":"0.00010000"}]}]}"#;
        let l = parse_exchange_info(Market::Spot, spot).unwrap();
        let info = l[0].info.clone().unwrap();
        assert_eq!(info.normalized_name(), "ETH-BTC");
        assert_eq!(info.tick_size.to_string(), "0.000001");
        assert_eq!(info.lot_size.to_string(), "0.0001");
        assert_eq!(info.qty_unit, QtyUnit::Base);
        let usdm = r#"{"symbols":[{"symbol":"BTCUSDT_250627","status":"TRADING","contractType":"CURRENT_QUARTER",
            "deliveryDate":1751011200000,"baseAsset":"BTC","quoteAsset":"USDT","marginAsset":"USDT",
            "filters":[{"filterType":"PRICE_FILTER","tickSize":"0.10"},{"filterType":"LOT_SIZE","stepSize":"0.001"}]}]}"#;
        let info = parse_exchange_info(Market::Usdm, usdm).unwrap()[0]
            .info
            .clone()
            .unwrap();
        assert_eq!(info.normalized_name(), "BTC-USDT-20250627");
        assert_eq!(info.settle.as_deref(), Some("USDT"));
        let coinm = r#"{"symbols":[{"symbol":"BTCUSD_PERP","contractStatus":"TRADING","contractType":"PERPETUAL",
            "contractSize":100,"baseAsset":"BTC","quoteAsset":"USD","marginAsset":"BTC",
            "filters":[{"filterType":"PRICE_FILTER","tickSize":"0.1"},{"filterType":"LOT_SIZE","stepSize":"1"}]}]}"#;
        let l = parse_exchange_info(Market::Coinm, coinm).unwrap();
        let info = l[0].info.clone().unwrap();
        assert_eq!(l[0].status, "TRADING");
        assert_eq!(info.normalized_name(), "BTC-USD-PERP");
        assert_eq!(info.qty_unit, QtyUnit::Contracts);
        assert_eq!(
            info.contract_size.map(|d| d.to_string()).as_deref(),
            Some("100")
        );
        assert_eq!(info.contract_unit.as_deref(), Some("USD"));
        assert_eq!(info.settle.as_deref(), Some("BTC"));
    }
}
