//! Venues and instruments.
//!
//! A [`Venue`] is one market of one exchange with its own symbol namespace and its own
//! protocol rules (Binance spot and Binance USD-M futures both list `BTCUSDT`, and they
//! are different instruments with different depth-sync rules). An [`InstrumentId`] is the
//! pair, and it is the key of every book, topic and status entry in Raven.
//!
//! The set of venues is open: the model knows none of them. A venue adapter names its
//! venues ([`Venue::new`]) when Raven starts, and from then on a client's text can only
//! *find* one of those names ([`Venue::from_str`]), never make a new one, so no request
//! can grow the set.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};

/// A venue's stable name (`binance_spot`, `okx`), used in config, the API, metrics
/// labels and store keys. Copied like an integer: the name is interned once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Venue(&'static str);

/// Every venue named so far (the adapters' venues and those of the config).
fn names() -> &'static RwLock<BTreeSet<&'static str>> {
    static NAMES: OnceLock<RwLock<BTreeSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl Venue {
    /// The longest venue name.
    pub const MAX_LEN: usize = 32;

    /// Names a venue, registering it so [`Venue::from_str`] finds it. The name is
    /// lower-case letters, digits and `_`, starting with a letter. Called by adapters
    /// and config loading, never with a client's text: each distinct name is kept for
    /// the life of the process.
    pub fn new(name: &str) -> Result<Venue, VenueParseError> {
        let valid = name.len() <= Self::MAX_LEN
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(VenueParseError::Invalid(shown(name)));
        }
        if let Some(found) = Self::find(name) {
            return Ok(found);
        }
        let mut set = names().write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = set.get(name) {
            return Ok(Venue(found));
        }
        let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
        set.insert(interned);
        Ok(Venue(interned))
    }

    /// The venue already named `name` (exactly), if any.
    pub fn find(name: &str) -> Option<Venue> {
        let set = names().read().unwrap_or_else(|e| e.into_inner());
        set.get(name).map(|n| Venue(n))
    }

    /// Every venue named so far, sorted.
    pub fn known() -> Vec<Venue> {
        let set = names().read().unwrap_or_else(|e| e.into_inner());
        set.iter().map(|n| Venue(n)).collect()
    }

    /// The stable name used in config, the API, metrics labels and store keys.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VenueParseError {
    #[error("unknown venue {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("{0:?} is not a venue name (lower-case letters, digits and _, starting with a letter, at most 32)")]
    Invalid(String),
}

impl FromStr for Venue {
    type Err = VenueParseError;
    /// Finds a named venue, in any case; never names a new one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let found = if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Self::find(&s.to_ascii_lowercase())
        } else {
            Self::find(s)
        };
        found.ok_or_else(|| {
            let known: Vec<&str> = Venue::known().into_iter().map(Venue::as_str).collect();
            VenueParseError::Unknown(shown(s), known.join(", "))
        })
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
    fn venues_are_named_once_and_only_found_by_clients() {
        let a = Venue::new("test_venue_a").unwrap();
        assert_eq!(Venue::new("test_venue_a").unwrap(), a);
        assert_eq!("TEST_VENUE_A".parse::<Venue>(), Ok(a));
        assert_eq!(a.as_str(), "test_venue_a");
        assert!(Venue::known().contains(&a));
        // A client's text finds; it never names.
        assert!("test_venue_never_named".parse::<Venue>().is_err());
        assert_eq!(Venue::find("test_venue_never_named"), None);
        for bad in ["", "Okx", "1x", "a-b", &"a".repeat(33)] {
            assert!(Venue::new(bad).is_err(), "{bad}");
        }
    }

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
        assert!(e.len() < 400, "{} bytes", e.len());
        // Cut on a character boundary.
        let e = "é".repeat(100).parse::<Venue>().unwrap_err().to_string();
        assert!(e.contains('…'), "{e}");
    }
}
