//! Kraken spot pairs from REST `GET /0/public/AssetPairs`.
//!
//! The answer is `{"error":[],"result":{"XXBTZUSD":{…},…}}`, keyed by Kraken's REST pair
//! name ("Get Tradable Asset Pairs", docs.kraken.com/api-reference/market-data/
//! get-tradable-asset-pairs, seen 2026-08). What Raven takes of each pair:
//! * `wsname` (`"XBT/USD"`): the pair's name on the WebSocket API, and so Raven's
//!   symbol. Its halves are the base and quote: the `base`/`quote` fields are Kraken's
//!   internal asset codes (`XXBT`, `ZUSD`, `AAVE`), prefixed for some assets and not
//!   others, while the wsname halves are the plain codes the venue shows (`XBT`, `USD`).
//!   Kraken's own `XBT` (bitcoin) and `XDG` (dogecoin) are kept, as the model asks for
//!   the venue's spelling. Pairs without a wsname (the retired `.d` dark-pool pairs) are
//!   not on the WebSocket API and are skipped;
//! * the tick: `tick_size` when the answer has it (added after the recording), else one
//!   unit of the last of `pair_decimals` price decimals;
//! * the lot: one unit of the last of `lot_decimals` volume decimals; volumes are in the
//!   base asset (`lot` is `"unit"`, `lot_multiplier` 1);
//! * `status` when present: `online`, `limit_only` and `reduce_only` pairs trade;
//!   `cancel_only` and `post_only` ones do not match orders. The recording predates the
//!   field: a pair listed without it is trading.
//!
//! Everything on this endpoint is spot (margin pairs are spot pairs with leverage).

use std::borrow::Cow;
use std::collections::BTreeMap;

use raven_model::{InstrumentId, InstrumentInfo, InstrumentKind, QtyUnit, Venue};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::engine::ParseError;

/// The REST path of the pair listing.
pub const ASSET_PAIRS_PATH: &str = "/0/public/AssetPairs";

#[derive(Deserialize)]
struct AssetPairsReply<'a> {
    #[serde(borrow)]
    error: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: BTreeMap<Cow<'a, str>, AssetPair<'a>>,
}

#[derive(Deserialize)]
struct AssetPair<'a> {
    #[serde(borrow, default)]
    wsname: Option<Cow<'a, str>>,
    pair_decimals: u32,
    lot_decimals: u32,
    #[serde(borrow, default)]
    tick_size: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

/// The instruments of one answer of `path` (only [`ASSET_PAIRS_PATH`] lists them).
pub fn parse_instruments(
    venue: Venue,
    path: &str,
    body: &str,
) -> Result<Vec<InstrumentInfo>, ParseError> {
    if path != ASSET_PAIRS_PATH {
        return Err(ParseError::Invalid(format!(
            "{path} is not Kraken's instrument listing"
        )));
    }
    let reply: AssetPairsReply = serde_json::from_str(body)?;
    if !reply.error.is_empty() {
        return Err(ParseError::Invalid(format!(
            "AssetPairs error: {}",
            reply.error.join("; ")
        )));
    }
    let mut out = Vec::with_capacity(reply.result.len());
    for (name, pair) in &reply.result {
        let Some(wsname) = pair.wsname.as_deref() else {
            continue;
        };
        let (base, quote) = wsname
            .split_once('/')
            .filter(|(b, q)| !b.is_empty() && !q.is_empty() && !q.contains('/'))
            .ok_or_else(|| ParseError::Invalid(format!("{name}: wsname {wsname:?}")))?;
        let tick_size = match pair.tick_size.as_deref() {
            Some(tick) => Decimal::from_str_exact(tick)
                .ok()
                .filter(|t| *t > Decimal::ZERO)
                .ok_or_else(|| ParseError::Invalid(format!("{name}: tick_size {tick:?}")))?,
            None => unit_of_decimals(name, "pair_decimals", pair.pair_decimals)?,
        };
        out.push(InstrumentInfo {
            id: InstrumentId::new(venue, wsname),
            kind: InstrumentKind::Spot,
            base: base.to_ascii_uppercase(),
            quote: quote.to_ascii_uppercase(),
            settle: None,
            tick_size,
            lot_size: unit_of_decimals(name, "lot_decimals", pair.lot_decimals)?,
            qty_unit: QtyUnit::Base,
            contract_size: None,
            contract_unit: None,
            trading: pair
                .status
                .as_deref()
                .is_none_or(|s| matches!(s, "online" | "limit_only" | "reduce_only")),
        });
    }
    Ok(out)
}

/// `10^-decimals`: one unit of the last decimal.
fn unit_of_decimals(pair: &str, field: &str, decimals: u32) -> Result<Decimal, ParseError> {
    Decimal::try_from_i128_with_scale(1, decimals)
        .map_err(|_| ParseError::Invalid(format!("{pair}: {field} {decimals}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venue() -> Venue {
        Venue::new("test_kraken_instruments").unwrap()
    }

    const BODY: &str = r#"{"error":[],"result":{
        "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT\/USD","aclass_base":"currency","base":"XXBT","aclass_quote":"currency","quote":"ZUSD","lot":"unit","cost_decimals":5,"pair_decimals":1,"lot_decimals":8,"lot_multiplier":1,"ordermin":"0.00005","costmin":"0.5","tick_size":"0.1","status":"online"},
        "ADAXBT":{"altname":"ADAXBT","wsname":"ADA\/XBT","base":"ADA","quote":"XXBT","lot":"unit","pair_decimals":9,"lot_decimals":8,"lot_multiplier":1},
        "XETHZEUR.d":{"altname":"XETHZEUR.d","base":"XETH","quote":"ZEUR","lot":"unit","pair_decimals":2,"lot_decimals":8},
        "FOOEUR":{"wsname":"FOO\/EUR","pair_decimals":4,"lot_decimals":2,"status":"cancel_only"}
    }}"#;

    #[test]
    fn pairs_are_named_by_wsname_with_its_halves_as_assets() {
        let list = parse_instruments(venue(), ASSET_PAIRS_PATH, BODY).unwrap();
        assert_eq!(list.len(), 3, "the dark-pool pair has no wsname");
        let xbt = list
            .iter()
            .find(|i| i.id.symbol.as_str() == "XBT/USD")
            .unwrap();
        assert_eq!(xbt.kind, InstrumentKind::Spot);
        assert_eq!((xbt.base.as_str(), xbt.quote.as_str()), ("XBT", "USD"));
        assert_eq!(xbt.normalized_name(), "XBT-USD");
        assert_eq!(xbt.tick_size.to_string(), "0.1");
        assert_eq!(xbt.lot_size.to_string(), "0.00000001");
        assert_eq!(xbt.qty_unit, QtyUnit::Base);
        assert_eq!((xbt.settle.as_deref(), xbt.contract_size), (None, None));
        assert!(xbt.trading);
        let ada = list
            .iter()
            .find(|i| i.id.symbol.as_str() == "ADA/XBT")
            .unwrap();
        assert_eq!(
            ada.tick_size.to_string(),
            "0.000000001",
            "from pair_decimals"
        );
        assert!(ada.trading, "no status: listed means trading");
        let foo = list
            .iter()
            .find(|i| i.id.symbol.as_str() == "FOO/EUR")
            .unwrap();
        assert_eq!(foo.lot_size.to_string(), "0.01");
        assert!(!foo.trading);
    }

    #[test]
    fn errors_and_bad_fields_are_refused() {
        let v = venue();
        assert!(parse_instruments(v, "/0/public/Assets", BODY).is_err());
        assert!(parse_instruments(
            v,
            ASSET_PAIRS_PATH,
            r#"{"error":["EGeneral:Too many requests"]}"#
        )
        .is_err());
        for bad in [
            r#"{"error":[],"result":{"X":{"wsname":"XBTUSD","pair_decimals":1,"lot_decimals":8}}}"#,
            r#"{"error":[],"result":{"X":{"wsname":"XBT/","pair_decimals":1,"lot_decimals":8}}}"#,
            r#"{"error":[],"result":{"X":{"wsname":"XBT/USD","pair_decimals":29,"lot_decimals":8}}}"#,
            r#"{"error":[],"result":{"X":{"wsname":"XBT/USD","pair_decimals":1,"lot_decimals":8,"tick_size":"0"}}}"#,
            r#"{"error":[],"result":{"X":{"wsname":"XBT/USD","pair_decimals":-1,"lot_decimals":8}}}"#,
            r#"{"error":[],"result":[]}"#,
        ] {
            assert!(
                parse_instruments(v, ASSET_PAIRS_PATH, bad).is_err(),
                "{bad}"
            );
        }
    }
}
