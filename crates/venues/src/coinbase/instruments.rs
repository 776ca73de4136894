//! Coinbase's product listing to Raven's instruments.
//!
//! `GET /api/v3/brokerage/market/products` ("List Public Products", public, no
//! authentication; docs.cdp.coinbase.com and the official `coinbase-advanced-py`
//! `get_public_products`, seen 2026-08) answers `{"products":[…],"num_products":…}`.
//! Without a `product_type` it lists spot only (the recording: 920 products, all SPOT),
//! so Raven asks twice, without a type (spot) and with `product_type=FUTURE`. Per product:
//!
//! * `product_id` (`BTC-USD`, `BIT-24APR26-CDE`) is the symbol the WebSocket uses;
//! * `price_increment` is the tick (`quote_increment` is the step of an order's quote
//!   *size*, not of its price); `base_increment` the lot, in the quantity unit;
//! * **SPOT**: `base_currency_id`/`quote_currency_id`, quantities in base units;
//! * **FUTURE** (`future_product_details`): quantities are contracts of
//!   `contract_size` `contract_root_unit` (`0.01` BTC for nano Bitcoin), with
//!   `base_currency_id` empty on US (FCM, `-CDE`) futures, so the base is the root
//!   unit. They are margined and settled in the quote currency (USD). The kind:
//!   - `contract_expiry_type` `PERPETUAL` (international perpetuals): a perpetual;
//!   - `EXPIRING` with funding (`funding_interval` or `funding_rate` set): Coinbase's
//!     US "perpetual-style" futures (`BIP-20DEC30-CDE`, "BTC PERP"), which carry a
//!     nominal expiry years out but pay funding every hour like a perpetual, and trade
//!     as one: a perpetual (the same rule as NautilusTrader's Coinbase adapter);
//!   - other `EXPIRING`: a dated future expiring at `contract_expiry` (RFC 3339).
//! * trading: `status` `online` (futures list an empty status) and none of
//!   `trading_disabled`, `is_disabled`, `cancel_only`; delisted products are kept,
//!   not trading.
//!
//! Other product types (none are listed today; options would be one) are skipped.
//! `-USDC` spot products that are aliases of `-USD` ones (`alias`, `alias_to`) are
//! listed as the venue lists them.

use raven_model::{InstrumentId, InstrumentInfo, InstrumentKind, Price, QtyUnit, Venue};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::engine::ParseError;

use super::time::parse_rfc3339;

/// The listing's path: spot, then futures.
pub const PRODUCTS_PATH: &str = "/api/v3/brokerage/market/products";

/// The REST paths (with query) listing every product Raven can serve: the bare path
/// (the documented default, spot) and the futures.
pub fn instrument_paths() -> Vec<String> {
    vec![
        PRODUCTS_PATH.to_owned(),
        format!("{PRODUCTS_PATH}?product_type=FUTURE"),
    ]
}

/// The instruments of one listing answer (any of [`instrument_paths`], or the path
/// without a query): the body says what each product is.
pub fn parse_instruments(
    venue: Venue,
    _path: &str,
    body: &str,
) -> Result<Vec<InstrumentInfo>, ParseError> {
    let listing: Listing = serde_json::from_str(body)?;
    let mut out = Vec::with_capacity(listing.products.len());
    for p in &listing.products {
        if let Some(info) = instrument(venue, p)? {
            out.push(info);
        }
    }
    Ok(out)
}

fn instrument(venue: Venue, p: &Product<'_>) -> Result<Option<InstrumentInfo>, ParseError> {
    let tick_size = positive(p.price_increment, p.product_id, "price_increment")?;
    let lot_size = positive(p.base_increment, p.product_id, "base_increment")?;
    let open = !p.trading_disabled && !p.is_disabled && !p.cancel_only;
    let info = match p.product_type {
        "SPOT" => InstrumentInfo {
            id: InstrumentId::new(venue, p.product_id),
            kind: InstrumentKind::Spot,
            base: required(p.base_currency_id, p.product_id, "base_currency_id")?,
            quote: required(p.quote_currency_id, p.product_id, "quote_currency_id")?,
            settle: None,
            tick_size,
            lot_size,
            qty_unit: QtyUnit::Base,
            contract_size: None,
            contract_unit: None,
            trading: open && p.status == Some("online"),
        },
        "FUTURE" => {
            let d = p.future_product_details.as_ref().ok_or_else(|| {
                ParseError::Invalid(format!("{}: future without details", p.product_id))
            })?;
            let unit = required(d.contract_root_unit, p.product_id, "contract_root_unit")?;
            let base = match p.base_currency_id {
                Some(b) if !b.is_empty() => b.to_ascii_uppercase(),
                _ => unit.clone(),
            };
            let quote = required(p.quote_currency_id, p.product_id, "quote_currency_id")?;
            let funded = [d.funding_interval, d.funding_rate]
                .iter()
                .any(|f| f.is_some_and(|s| !s.is_empty()));
            let kind = match d.contract_expiry_type {
                Some("PERPETUAL") => InstrumentKind::Perpetual,
                Some("EXPIRING") if funded => InstrumentKind::Perpetual,
                Some("EXPIRING") => {
                    let text = d.contract_expiry.unwrap_or_default();
                    let expiry = parse_rfc3339(text).map_err(|e| {
                        ParseError::Invalid(format!("{}: contract_expiry: {e}", p.product_id))
                    })?;
                    InstrumentKind::Future { expiry }
                }
                other => {
                    return Err(ParseError::Invalid(format!(
                        "{}: contract_expiry_type {other:?}",
                        p.product_id
                    )))
                }
            };
            InstrumentInfo {
                id: InstrumentId::new(venue, p.product_id),
                kind,
                base,
                quote: quote.clone(),
                settle: Some(quote),
                tick_size,
                lot_size,
                qty_unit: QtyUnit::Contracts,
                contract_size: Some(positive(d.contract_size, p.product_id, "contract_size")?),
                contract_unit: Some(unit),
                trading: open && matches!(p.status, None | Some("") | Some("online")),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(info))
}

fn required(value: Option<&str>, product: &str, field: &str) -> Result<String, ParseError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v.to_ascii_uppercase()),
        _ => Err(ParseError::Invalid(format!("{product}: no {field}"))),
    }
}

/// A strictly positive decimal, exactly as written.
fn positive(value: Option<&str>, product: &str, field: &str) -> Result<Decimal, ParseError> {
    let text = value.unwrap_or_default();
    Price::parse(text)
        .map(Price::value)
        .map_err(|e| ParseError::Invalid(format!("{product}: {field}: {e}")))
}

#[derive(Deserialize)]
struct Listing<'a> {
    #[serde(borrow)]
    products: Vec<Product<'a>>,
}

#[derive(Deserialize)]
struct Product<'a> {
    product_id: &'a str,
    product_type: &'a str,
    #[serde(borrow)]
    base_currency_id: Option<&'a str>,
    #[serde(borrow)]
    quote_currency_id: Option<&'a str>,
    #[serde(borrow)]
    price_increment: Option<&'a str>,
    #[serde(borrow)]
    base_increment: Option<&'a str>,
    #[serde(borrow)]
    status: Option<&'a str>,
    #[serde(default)]
    trading_disabled: bool,
    #[serde(default)]
    is_disabled: bool,
    #[serde(default)]
    cancel_only: bool,
    #[serde(borrow)]
    future_product_details: Option<FutureDetails<'a>>,
}

#[derive(Deserialize)]
struct FutureDetails<'a> {
    #[serde(borrow)]
    contract_expiry: Option<&'a str>,
    #[serde(borrow)]
    contract_size: Option<&'a str>,
    #[serde(borrow)]
    contract_root_unit: Option<&'a str>,
    #[serde(borrow)]
    contract_expiry_type: Option<&'a str>,
    #[serde(borrow)]
    funding_interval: Option<&'a str>,
    #[serde(borrow)]
    funding_rate: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn venue() -> Venue {
        Venue::new("test_coinbase_instruments").unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// The shape of `product_type=FUTURE` answers: a US perpetual-style future, a dated
    /// one, an international perpetual, and a product type Raven does not serve.
    const FUTURES: &str = r#"{"products":[
      {"product_id":"BIP-20DEC30-CDE","price":"68930","base_increment":"1","quote_increment":"0.01","price_increment":"5","status":"","trading_disabled":false,"is_disabled":false,"cancel_only":false,"product_type":"FUTURE","quote_currency_id":"USD","base_currency_id":"","display_name":"BTC PERP","product_venue":"FCM",
       "future_product_details":{"venue":"cde","contract_code":"BIP","contract_expiry":"2030-12-20T16:00:00Z","contract_size":"0.01","contract_root_unit":"BTC","contract_expiry_type":"EXPIRING","perpetual_details":{"funding_rate":"","funding_time":null},"funding_interval":"3600s","funding_rate":"0.000013","funding_time":"2026-04-07T00:00:00Z"}},
      {"product_id":"BIT-24APR26-CDE","base_increment":"1","price_increment":"5","status":"","trading_disabled":false,"product_type":"FUTURE","quote_currency_id":"USD","base_currency_id":"",
       "future_product_details":{"contract_expiry":"2026-04-24T15:00:00Z","contract_size":"0.01","contract_root_unit":"BTC","contract_expiry_type":"EXPIRING","funding_interval":null,"funding_rate":"","funding_time":null}},
      {"product_id":"ETH-PERP-INTX","base_increment":"0.0001","price_increment":"0.01","status":"online","trading_disabled":true,"product_type":"FUTURE","quote_currency_id":"USDC","base_currency_id":"ETH",
       "future_product_details":{"contract_size":"1","contract_root_unit":"ETH","contract_expiry_type":"PERPETUAL"}},
      {"product_id":"X-OPTION","product_type":"OPTION","price_increment":"1","base_increment":"1"}
    ],"num_products":4,"pagination":null}"#;

    #[test]
    fn futures_perpetual_style_dated_and_international() {
        let list = parse_instruments(venue(), "/x?product_type=FUTURE", FUTURES).unwrap();
        assert_eq!(list.len(), 3);
        let (perp, dated, intx) = (&list[0], &list[1], &list[2]);
        assert_eq!(perp.kind, InstrumentKind::Perpetual);
        assert_eq!(perp.normalized_name(), "BTC-USD-PERP");
        assert_eq!((perp.base.as_str(), perp.quote.as_str()), ("BTC", "USD"));
        assert_eq!(perp.settle.as_deref(), Some("USD"));
        assert_eq!(perp.tick_size, dec("5"));
        assert_eq!(perp.lot_size, dec("1"));
        assert_eq!(perp.qty_unit, QtyUnit::Contracts);
        assert_eq!(perp.contract_size, Some(dec("0.01")));
        assert_eq!(perp.contract_unit.as_deref(), Some("BTC"));
        assert!(perp.trading);

        let InstrumentKind::Future { expiry } = dated.kind else {
            panic!("{:?}", dated.kind)
        };
        assert_eq!(expiry.as_nanos(), 1_777_042_800_000_000_000); // 2026-04-24T15:00:00Z
        assert_eq!(dated.normalized_name(), "BTC-USD-20260424");
        assert_eq!(dated.id.symbol.as_str(), "BIT-24APR26-CDE");

        assert_eq!(intx.kind, InstrumentKind::Perpetual);
        assert_eq!(intx.normalized_name(), "ETH-USDC-PERP");
        assert_eq!(intx.contract_size, Some(dec("1")));
        assert!(!intx.trading);
    }

    #[test]
    fn a_malformed_product_is_an_error() {
        for bad in [
            FUTURES.replace("\"price_increment\":\"5\"", "\"price_increment\":\"0\""),
            FUTURES.replace("\"contract_size\":\"0.01\"", "\"contract_size\":\"\""),
            FUTURES.replace("2026-04-24T15:00:00Z", "2026-04-24"),
            FUTURES.replace("\"PERPETUAL\"", "\"SOMETIMES\""),
            FUTURES.replace("\"contract_root_unit\":\"ETH\",", ""),
            "{}".to_owned(),
        ] {
            assert!(parse_instruments(venue(), "/x", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_ask_for_spot_and_futures() {
        assert_eq!(
            instrument_paths(),
            [
                "/api/v3/brokerage/market/products",
                "/api/v3/brokerage/market/products?product_type=FUTURE",
            ]
        );
    }
}
