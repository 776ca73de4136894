//! OKX's instrument listings (`GET /api/v5/public/instruments?instType=…`) as
//! [`InstrumentInfo`]s.
//!
//! One request per instrument type (OKX "Get instruments", seen 2026-08, page dated
//! 2026-07-03; rate limit 20 requests per 2 s per IP and type): Raven asks for `SPOT`,
//! `SWAP` and `FUTURES`. The answer is `{"code":"0","msg":"","data":[…]}`; a non-zero
//! `code` is an error. Per instrument:
//! * `instType` gives the kind: `SPOT` → spot, `SWAP` → perpetual, `FUTURES` → dated
//!   future expiring at `expTime` (ms). Other types (`OPTION`, `MARGIN`, `EVENTS`) are
//!   not served and are skipped. (`expTime` on a spot or swap is a delisting time, not
//!   an expiry.)
//! * Spot: `baseCcy`/`quoteCcy`; sizes are in the base currency.
//! * Swaps and futures: sizes are contracts. `baseCcy`/`quoteCcy` are empty ("only
//!   applicable to SPOT/MARGIN"), so base and quote come from the instrument family
//!   `instFamily` (today) or the underlying `uly` (all the 2022 recording has), e.g.
//!   `BTC-USD`. A contract is worth `ctVal` × `ctMult` of `ctValCcy`: for a linear
//!   contract (`ctType` `linear`, BTC-USDT-SWAP) `ctVal` is in the base currency
//!   (0.01 BTC), for an inverse one (BTC-USD-SWAP) in USD (100 USD); `ctMult` is 1 on
//!   every swap and future (it matters for options). `settleCcy` is the settlement and
//!   margin currency (BTC for inverse, USDT for linear).
//! * `tickSz`, `lotSz` (in contracts for derivatives, base currency for spot);
//!   `state` `live` is trading (`suspend`, `preopen`, `rebase`, `post_only`, `test`
//!   are not, or not fully).
//! * An instrument announced but not yet listed has its other fields empty "at least 5
//!   minutes in advance of the listTime" (same page): it is skipped until they are set.

use std::str::FromStr;

use raven_model::{InstrumentId, InstrumentInfo, InstrumentKind, QtyUnit, UnixNanos, Venue};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::book::millis;
use crate::engine::ParseError;

/// The listing requests, under the REST base URL.
pub const INSTRUMENT_PATHS: [&str; 3] = [
    "/api/v5/public/instruments?instType=SPOT",
    "/api/v5/public/instruments?instType=SWAP",
    "/api/v5/public/instruments?instType=FUTURES",
];

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    code: &'a str,
    #[serde(default)]
    msg: String,
    #[serde(borrow, default)]
    data: Vec<Listed<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    #[serde(borrow)]
    inst_type: &'a str,
    #[serde(borrow)]
    inst_id: &'a str,
    #[serde(borrow, default)]
    base_ccy: &'a str,
    #[serde(borrow, default)]
    quote_ccy: &'a str,
    #[serde(borrow, default)]
    settle_ccy: &'a str,
    #[serde(borrow, default)]
    inst_family: &'a str,
    #[serde(borrow, default)]
    uly: &'a str,
    #[serde(borrow, default)]
    ct_val: &'a str,
    #[serde(borrow, default)]
    ct_mult: &'a str,
    #[serde(borrow, default)]
    ct_val_ccy: &'a str,
    #[serde(borrow, default)]
    exp_time: &'a str,
    #[serde(borrow, default)]
    tick_sz: &'a str,
    #[serde(borrow, default)]
    lot_sz: &'a str,
    #[serde(borrow, default)]
    state: &'a str,
}

/// The spot, swap and future instruments of one listing answer (`path` names it in
/// errors).
pub fn parse_instruments(
    venue: Venue,
    path: &str,
    body: &str,
) -> Result<Vec<InstrumentInfo>, ParseError> {
    let answer: Answer = serde_json::from_str(body)?;
    if answer.code != "0" {
        return Err(ParseError::Invalid(format!(
            "{path}: OKX answered code {}: {}",
            answer.code, answer.msg
        )));
    }
    let mut out = Vec::with_capacity(answer.data.len());
    for listed in &answer.data {
        if let Some(info) = instrument(venue, listed)
            .map_err(|e| ParseError::Invalid(format!("{path}: {}: {e}", listed.inst_id)))?
        {
            out.push(info);
        }
    }
    Ok(out)
}

/// One listed instrument; `None` for a type Raven does not serve or a listing still
/// being filled in.
fn instrument(venue: Venue, l: &Listed) -> Result<Option<InstrumentInfo>, ParseError> {
    let derivative = match l.inst_type {
        "SPOT" => false,
        "SWAP" | "FUTURES" => true,
        _ => return Ok(None),
    };
    if l.tick_sz.is_empty()
        || l.lot_sz.is_empty()
        || (l.inst_type == "FUTURES" && l.exp_time.is_empty())
    {
        return Ok(None);
    }
    let kind = match l.inst_type {
        "SPOT" => InstrumentKind::Spot,
        "SWAP" => InstrumentKind::Perpetual,
        _ => InstrumentKind::Future {
            expiry: UnixNanos::from_millis(millis(l.exp_time)?),
        },
    };
    let id = InstrumentId::new(venue, l.inst_id);
    let trading = l.state == "live";
    let tick_size = positive("tickSz", l.tick_sz)?;
    let lot_size = positive("lotSz", l.lot_sz)?;
    if !derivative {
        return Ok(Some(InstrumentInfo {
            id,
            kind,
            base: required("baseCcy", l.base_ccy)?.to_ascii_uppercase(),
            quote: required("quoteCcy", l.quote_ccy)?.to_ascii_uppercase(),
            settle: None,
            tick_size,
            lot_size,
            qty_unit: QtyUnit::Base,
            contract_size: None,
            contract_unit: None,
            trading,
        }));
    }
    let family = if l.inst_family.is_empty() {
        l.uly
    } else {
        l.inst_family
    };
    let (base, quote) = family
        .split_once('-')
        .filter(|(b, q)| !b.is_empty() && !q.is_empty() && !q.contains('-'))
        .ok_or_else(|| {
            ParseError::Invalid(format!("instrument family {family:?} is not BASE-QUOTE"))
        })?;
    let ct_val = positive("ctVal", l.ct_val)?;
    let contract_size = if l.ct_mult.is_empty() {
        ct_val
    } else {
        ct_val
            .checked_mul(positive("ctMult", l.ct_mult)?)
            .ok_or_else(|| ParseError::Invalid("ctVal × ctMult overflows".into()))?
    };
    Ok(Some(InstrumentInfo {
        id,
        kind,
        base: base.to_ascii_uppercase(),
        quote: quote.to_ascii_uppercase(),
        settle: Some(required("settleCcy", l.settle_ccy)?.to_ascii_uppercase()),
        tick_size,
        lot_size,
        qty_unit: QtyUnit::Contracts,
        contract_size: Some(contract_size),
        contract_unit: Some(required("ctValCcy", l.ct_val_ccy)?.to_ascii_uppercase()),
        trading,
    }))
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, ParseError> {
    if value.is_empty() {
        Err(ParseError::Invalid(format!("{field} is empty")))
    } else {
        Ok(value)
    }
}

fn positive(field: &str, value: &str) -> Result<Decimal, ParseError> {
    Decimal::from_str(value)
        .ok()
        .filter(|d| d.is_sign_positive() && !d.is_zero())
        .ok_or_else(|| ParseError::Invalid(format!("{field} {value:?} is not a positive decimal")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venue() -> Venue {
        Venue::new("test_okx_instruments").unwrap()
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn today_s_documented_answer() {
        let body = r#"{"code":"0","msg":"","data":[
            {"alias":"","auctionEndTime":"","baseCcy":"BTC","category":"1","ctMult":"","ctType":"","ctVal":"","ctValCcy":"","contTdSwTime":"1704876947000","expTime":"","futureSettlement":false,"groupId":"1","instFamily":"","instId":"BTC-USDT","instType":"SPOT","lever":"10","listTime":"1606468572000","lotSz":"0.00000001","maxIcebergSz":"9999999999.0000000000000000","minSz":"0.00001","optType":"","openType":"call_auction","quoteCcy":"USDT","tradeQuoteCcyList":["USDT"],"settleCcy":"","state":"live","ruleType":"normal","stk":"","tickSz":"0.1","uly":"","instIdCode":1000000000,"instCategory":"1","upcChg":[{"param":"tickSz","newValue":"0.0001","effTime":"1704876947000"}]},
            {"baseCcy":"","ctMult":"1","ctType":"linear","ctVal":"0.01","ctValCcy":"BTC","expTime":"","instFamily":"BTC-USDT","instId":"BTC-USDT-SWAP","instType":"SWAP","lotSz":"0.01","quoteCcy":"","settleCcy":"USDT","state":"live","tickSz":"0.1","uly":"BTC-USDT"},
            {"instId":"NEW-USDT-SWAP","instType":"SWAP","instFamily":"NEW-USDT","listTime":"1800000000000","state":"preopen","tickSz":"","lotSz":"","ctVal":"","settleCcy":""}
        ]}"#;
        let list = parse_instruments(venue(), INSTRUMENT_PATHS[0], body).unwrap();
        assert_eq!(
            list.len(),
            2,
            "the listing still being filled in is skipped"
        );
        assert_eq!(list[0].id.symbol.as_str(), "BTC-USDT");
        assert_eq!(list[0].kind, InstrumentKind::Spot);
        assert_eq!(
            (list[0].base.as_str(), list[0].quote.as_str()),
            ("BTC", "USDT")
        );
        assert_eq!(list[0].lot_size, d("0.00000001"));
        assert_eq!(list[0].qty_unit, QtyUnit::Base);
        let swap = &list[1];
        assert_eq!(swap.kind, InstrumentKind::Perpetual);
        assert_eq!(swap.normalized_name(), "BTC-USDT-PERP");
        assert_eq!(swap.settle.as_deref(), Some("USDT"));
        assert_eq!(swap.contract_size, Some(d("0.01")));
        assert_eq!(swap.contract_unit.as_deref(), Some("BTC"));
        assert_eq!(swap.qty_unit, QtyUnit::Contracts);
        assert!(swap.trading);
    }

    #[test]
    fn futures_expire_and_other_types_are_skipped() {
        let body = r#"{"code":"0","msg":"","data":[
            {"alias":"next_week","baseCcy":"","ctMult":"1","ctType":"inverse","ctVal":"100","ctValCcy":"USD","expTime":"1653638400000","instId":"BTC-USD-220527","instType":"FUTURES","lotSz":"1","quoteCcy":"","settleCcy":"BTC","state":"suspend","tickSz":"0.1","uly":"BTC-USD"},
            {"ctMult":"0.1","ctVal":"1","ctValCcy":"BTC","expTime":"1652515200000","instId":"BTC-USD-220514-22000-C","instType":"OPTION","lotSz":"1","settleCcy":"BTC","state":"live","tickSz":"0.0005","uly":"BTC-USD"}
        ]}"#;
        let list = parse_instruments(venue(), INSTRUMENT_PATHS[2], body).unwrap();
        assert_eq!(list.len(), 1);
        let f = &list[0];
        assert_eq!(
            f.kind,
            InstrumentKind::Future {
                expiry: UnixNanos::from_millis(1_653_638_400_000)
            }
        );
        assert_eq!(f.normalized_name(), "BTC-USD-20220527");
        assert_eq!(f.contract_size, Some(d("100")));
        assert_eq!(f.contract_unit.as_deref(), Some("USD"));
        assert_eq!(f.settle.as_deref(), Some("BTC"));
        assert!(!f.trading);
    }

    #[test]
    fn errors_and_malformed_listings() {
        let refused = r#"{"code":"51000","msg":"Parameter instType error","data":[]}"#;
        let e = parse_instruments(venue(), "/x", refused)
            .unwrap_err()
            .to_string();
        assert!(e.contains("51000"), "{e}");
        for bad in [
            "not json",
            r#"{"code":"0","data":[{"instId":"A-B","instType":"SPOT","tickSz":"0","lotSz":"1","baseCcy":"A","quoteCcy":"B"}]}"#,
            r#"{"code":"0","data":[{"instId":"A-B","instType":"SPOT","tickSz":"x","lotSz":"1","baseCcy":"A","quoteCcy":"B"}]}"#,
            r#"{"code":"0","data":[{"instId":"A-B","instType":"SPOT","tickSz":"1","lotSz":"1","baseCcy":"","quoteCcy":"B"}]}"#,
            r#"{"code":"0","data":[{"instId":"A-B-SWAP","instType":"SWAP","tickSz":"1","lotSz":"1","uly":"AB","ctVal":"1","ctValCcy":"A","settleCcy":"A"}]}"#,
            r#"{"code":"0","data":[{"instId":"A-B-SWAP","instType":"SWAP","tickSz":"1","lotSz":"1","uly":"A-B","ctVal":"-1","ctValCcy":"A","settleCcy":"A"}]}"#,
            r#"{"code":"0","data":[{"instId":"A-B-SWAP","instType":"SWAP","tickSz":"1","lotSz":"1","uly":"A-B","ctVal":"1","ctValCcy":"","settleCcy":"A"}]}"#,
            r#"{"code":"0","data":[{"instId":"A-B-1","instType":"FUTURES","tickSz":"1","lotSz":"1","uly":"A-B","ctVal":"1","ctValCcy":"A","settleCcy":"A","expTime":"soon"}]}"#,
        ] {
            assert!(parse_instruments(venue(), "/x", bad).is_err(), "{bad}");
        }
    }
}
