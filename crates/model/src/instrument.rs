//! Venues and instruments.
//!
//! A [`Venue`] is one market of one exchange with its own symbol namespace and its own
//! protocol rules (Binance spot and Binance USD-M futures both list `BTCUSDT`, and they
//! are different instruments with different depth-sync rules). An [`InstrumentId`] is the
//! pair, and it is the key of every book, topic and status entry in Raven.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Venue {
    BinanceSpot,
    BinanceUsdm,
    BinanceCoinm,
}

impl Venue {
    pub const ALL: [Venue; 3] = [Venue::BinanceSpot, Venue::BinanceUsdm, Venue::BinanceCoinm];

    /// The stable name used in config, the API, metrics labels and store keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Venue::BinanceSpot => "binance_spot",
            Venue::BinanceUsdm => "binance_usdm",
            Venue::BinanceCoinm => "binance_coinm",
        }
    }

    /// Futures venues publish mark price, funding and liquidations; spot does not.
    pub fn is_derivatives(self) -> bool {
        !matches!(self, Venue::BinanceSpot)
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown venue {0:?} (known: binance_spot, binance_usdm, binance_coinm)")]
pub struct VenueParseError(pub String);

impl FromStr for Venue {
    type Err = VenueParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Venue::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| VenueParseError(shown(s)))
    }
}

/// `s` as an error message may quote it: cut to [`Symbol::clip`], marked when cut.
fn shown(s: &str) -> String {
    let clipped = Symbol::clip(s);
    if clipped.len() < s.len() {
        format!("{clipped}…")
    } else {
        s.to_owned()
    }
}

/// An exchange symbol in the venue's canonical upper-case form (`BTCUSDT`,
/// `BTCUSD_PERP`). Cheap to clone: it is shared by every event of the instrument.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(Arc<str>);

impl Symbol {
    /// The longest symbol a client may name.
    pub const MAX_LEN: usize = 64;

    /// At most the first [`Symbol::MAX_LEN`] characters of a client's name: what Raven
    /// quotes or echoes back of it, so a megabyte-long name is not sent back.
    pub fn clip(s: &str) -> &str {
        match s.char_indices().nth(Self::MAX_LEN) {
            Some((cut, _)) => &s[..cut],
            None => s,
        }
    }

    /// Whether a client's `s` can be an exchange symbol at all: short and plain
    /// (BTCUSDT, BTCUSD_PERP, BTC-USD, XBT/USD). The error says why, quoting at most
    /// [`Symbol::MAX_LEN`] characters of it.
    pub fn check(s: &str) -> Result<(), String> {
        if s.is_empty() {
            return Err("symbol is empty".into());
        }
        if s.len() > Self::MAX_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        {
            return Err(format!(
                "{:?} is not an exchange symbol (letters, digits and ._-/: only, at most {})",
                shown(s),
                Self::MAX_LEN
            ));
        }
        Ok(())
    }

    pub fn new(s: &str) -> Self {
        if s.bytes().any(|b| b.is_ascii_lowercase()) {
            Self(Arc::from(s.to_ascii_uppercase()))
        } else {
            Self(Arc::from(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstrumentId {
    pub venue: Venue,
    pub symbol: Symbol,
}

impl InstrumentId {
    pub fn new(venue: Venue, symbol: &str) -> Self {
        Self {
            venue,
            symbol: Symbol::new(symbol),
        }
    }
}

impl fmt::Display for InstrumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.venue, self.symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_s_names_are_checked_and_quoted_short() {
        for ok in ["BTCUSDT", "BTCUSD_PERP", "BTC-USD", "XBT/USD", "btcusdt"] {
            assert_eq!(Symbol::check(ok), Ok(()), "{ok}");
        }
        assert!(Symbol::check("").is_err());
        assert!(Symbol::check("BTC USDT").is_err());
        let long = "A".repeat(1 << 20);
        let e = Symbol::check(&long).unwrap_err();
        assert!(e.len() < 200, "{} bytes", e.len());
        let e = long.parse::<Venue>().unwrap_err().to_string();
        assert!(e.len() < 200, "{} bytes", e.len());
        // Cut on a character boundary.
        let e = "é".repeat(100).parse::<Venue>().unwrap_err().to_string();
        assert!(e.contains('…'), "{e}");
    }
}
