//! What an instrument is: the facts a venue lists about it.
//!
//! A price or a quantity means little without its instrument: `100` of a Binance
//! COIN-M contract is 100 contracts of 100 USD each, `100` on a spot market is 100 coins.
//! Each venue adapter loads its listings from the exchange's REST reference endpoint at
//! start and describes every instrument the same way here: what it is
//! ([`InstrumentKind`]), what it trades (base, quote, settle), its tick and lot, and the
//! unit its quantities are in ([`QtyUnit`]) with the contract size when that unit is
//! contracts. The API returns these with every instrument and candle volumes say which
//! unit they sum.
//!
//! Every instrument also gets a normalized name ([`InstrumentInfo::normalized_name`]),
//! the same shape on every venue, so a client can say `BTC-USDT-PERP` without knowing
//! that Bybit spells it `BTCUSDT` on its linear market and OKX `BTC-USDT-SWAP`.

use std::fmt;

use rust_decimal::Decimal;

use crate::{InstrumentId, UnixNanos};

/// What kind of instrument it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstrumentKind {
    Spot,
    /// A perpetual swap (no expiry; funding instead).
    Perpetual,
    /// A dated future that expires (and settles) at `expiry`.
    Future {
        expiry: UnixNanos,
    },
}

impl InstrumentKind {
    /// `spot`, `perpetual` or `future`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::Spot => "spot",
            InstrumentKind::Perpetual => "perpetual",
            InstrumentKind::Future { .. } => "future",
        }
    }

    /// Perpetuals and futures publish mark prices, funding (perpetuals) and liquidations.
    pub fn is_derivative(self) -> bool {
        !matches!(self, InstrumentKind::Spot)
    }
}

/// The unit an instrument's quantities (book sizes, trade sizes, candle volume) are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QtyUnit {
    /// Units of the base asset (BTC of BTC-USDT).
    Base,
    /// Contracts of [`InstrumentInfo::contract_size`] each.
    Contracts,
}

impl QtyUnit {
    /// `base` or `contracts`.
    pub fn as_str(self) -> &'static str {
        match self {
            QtyUnit::Base => "base",
            QtyUnit::Contracts => "contracts",
        }
    }
}

/// One instrument as its venue lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentInfo {
    /// The venue and the exchange's own symbol (`BTCUSDT`, `BTC-USD-SWAP`, `XBT/USD`).
    pub id: InstrumentId,
    pub kind: InstrumentKind,
    /// Asset codes as the venue spells them, upper case (`BTC`, `USDT`; Kraken's `XBT`).
    pub base: String,
    pub quote: String,
    /// The asset profits and losses settle in (derivatives); `None` on spot.
    pub settle: Option<String>,
    /// Smallest price increment.
    pub tick_size: Decimal,
    /// Smallest quantity increment, in [`InstrumentInfo::qty_unit`].
    pub lot_size: Decimal,
    pub qty_unit: QtyUnit,
    /// What one contract is worth, in [`InstrumentInfo::contract_unit`] (contracts only).
    pub contract_size: Option<Decimal>,
    /// The asset a contract's size is counted in (`USD` for an inverse contract of
    /// 100 USD, `BTC` for a linear one of 0.01 BTC).
    pub contract_unit: Option<String>,
    /// The venue lists it as trading now.
    pub trading: bool,
}

impl InstrumentInfo {
    /// The venue-independent name: `BASE-QUOTE` for spot, `BASE-QUOTE-PERP` for a
    /// perpetual, `BASE-QUOTE-YYYYMMDD` for a future expiring that UTC day. Quote is the
    /// asset the price is in (`BTC-USD-PERP` for an inverse perpetual settled in BTC).
    pub fn normalized_name(&self) -> String {
        normalized_name(&self.base, &self.quote, self.kind)
    }
}

/// See [`InstrumentInfo::normalized_name`].
pub fn normalized_name(base: &str, quote: &str, kind: InstrumentKind) -> String {
    let (base, quote) = (base.to_ascii_uppercase(), quote.to_ascii_uppercase());
    match kind {
        InstrumentKind::Spot => format!("{base}-{quote}"),
        InstrumentKind::Perpetual => format!("{base}-{quote}-PERP"),
        InstrumentKind::Future { expiry } => format!("{base}-{quote}-{}", Ymd(expiry)),
    }
}

/// A UTC calendar day as `YYYYMMDD`.
struct Ymd(UnixNanos);

impl fmt::Display for Ymd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let days = (self.0.as_nanos() / 86_400_000_000_000) as i64;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(f, "{year:04}{month:02}{day:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_names() {
        assert_eq!(
            normalized_name("btc", "USDT", InstrumentKind::Spot),
            "BTC-USDT"
        );
        assert_eq!(
            normalized_name("BTC", "USD", InstrumentKind::Perpetual),
            "BTC-USD-PERP"
        );
        // 1653638400000 ms = 2022-05-27T08:00:00Z.
        let expiry = UnixNanos::from_millis(1_653_638_400_000);
        assert_eq!(
            normalized_name("BTC", "USD", InstrumentKind::Future { expiry }),
            "BTC-USD-20220527"
        );
        let leap = UnixNanos::from_millis(951_782_400_000); // 2000-02-29
        assert_eq!(
            normalized_name("A", "B", InstrumentKind::Future { expiry: leap }),
            "A-B-20000229"
        );
    }
}
