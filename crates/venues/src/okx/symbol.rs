//! What an OKX instrument id says about its instrument.
//!
//! OKX instIds are unique across instrument types and their shape names the type
//! ("Get instruments": `BTC-USDT` spot, `BTC-USD-SWAP` perpetual swap, `BTC-USD-200925`
//! expiry future, `BTC-USD-200925-9000-C` option). Raven needs the type before any
//! listing is read, to choose channels: funding exists only for swaps, mark prices and
//! liquidations only for derivatives. The shape is enough for that, so the plan and the
//! parser need no instrument table.

/// The instrument type an instId's shape names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstClass {
    /// `BASE-QUOTE`.
    Spot,
    /// `BASE-QUOTE-SWAP`: perpetual, with funding.
    Swap,
    /// `BASE-QUOTE-YYMMDD`: dated, no funding.
    Future,
    /// Anything else (options, event contracts): only instrument-level channels.
    Other,
}

impl InstClass {
    /// The type of an upper-case instId.
    pub fn of(inst_id: &str) -> InstClass {
        let mut parts = inst_id.split('-');
        let (Some(base), Some(quote)) = (parts.next(), parts.next()) else {
            return InstClass::Other;
        };
        if base.is_empty() || quote.is_empty() {
            return InstClass::Other;
        }
        match (parts.next(), parts.next()) {
            (None, _) => InstClass::Spot,
            (Some("SWAP"), None) => InstClass::Swap,
            (Some(date), None) if date.len() == 6 && date.bytes().all(|b| b.is_ascii_digit()) => {
                InstClass::Future
            }
            _ => InstClass::Other,
        }
    }

    /// The `instType` OKX's instrument-type channels (`liquidation-orders`) take.
    pub fn inst_type(self) -> Option<&'static str> {
        match self {
            InstClass::Swap => Some("SWAP"),
            InstClass::Future => Some("FUTURES"),
            InstClass::Spot | InstClass::Other => None,
        }
    }

    pub fn is_derivative(self) -> bool {
        matches!(self, InstClass::Swap | InstClass::Future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(InstClass::of("BTC-USDT"), InstClass::Spot);
        assert_eq!(InstClass::of("UNI-USD-SWAP"), InstClass::Swap);
        assert_eq!(InstClass::of("BTC-USD-220527"), InstClass::Future);
        for other in [
            "BTC-USD-220514-22000-C",
            "BTC",
            "BTC-",
            "-USDT",
            "BTC-USD-2205",
            "BTC-USD-22052X",
            "BTC-USD-SWAP-X",
        ] {
            assert_eq!(InstClass::of(other), InstClass::Other, "{other}");
        }
        assert_eq!(InstClass::Swap.inst_type(), Some("SWAP"));
        assert_eq!(InstClass::Future.inst_type(), Some("FUTURES"));
        assert_eq!(InstClass::Spot.inst_type(), None);
        assert!(InstClass::Future.is_derivative() && !InstClass::Spot.is_derivative());
    }
}
