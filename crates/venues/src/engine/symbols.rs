//! The subscribed symbols of one connection, looked up by the exchange's spelling.
//!
//! Resolving once per frame to a shared [`InstrumentId`] means events clone an `Arc`
//! instead of allocating a symbol string.
//!
//! The maps looked up once per frame (this one, a connection's books) hash with
//! [`SymbolHasher`] rather than std's SipHash: their keys are a connection's own few
//! subscribed symbols, and the strings looked up are the venue's, so the flooding
//! SipHash guards against is not a threat here, while its cost (several times the rest
//! of the lookup) is paid on every book message.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use raven_model::{InstrumentId, Venue};

use super::protocol::ParseError;

#[derive(Debug, Clone)]
pub struct SymbolMap {
    venue: Venue,
    by_name: HashMap<String, InstrumentId, BuildSymbolHasher>,
}

impl SymbolMap {
    /// `symbols` in any case; they are looked up upper case.
    pub fn new<'a>(venue: Venue, symbols: impl IntoIterator<Item = &'a str>) -> Self {
        let by_name = symbols
            .into_iter()
            .map(|s| {
                let id = InstrumentId::new(venue, s);
                (id.symbol.as_str().to_owned(), id)
            })
            .collect();
        Self { venue, by_name }
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }

    /// The instrument of an upper-case exchange symbol.
    pub fn get(&self, exchange_symbol: &str) -> Result<&InstrumentId, ParseError> {
        self.by_name
            .get(exchange_symbol)
            .ok_or_else(|| ParseError::UnknownSymbol(exchange_symbol.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &InstrumentId> {
        self.by_name.values()
    }
}

/// A multiply-rotate hash of eight bytes at a time (the "Fx" hash of rustc's own maps):
/// a few instructions for a symbol. Not resistant to chosen collisions; for maps of a
/// connection's subscribed symbols only (module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct SymbolHasher(u64);

/// Builds [`SymbolHasher`]s, for `HashMap<K, V, BuildSymbolHasher>`.
pub type BuildSymbolHasher = BuildHasherDefault<SymbolHasher>;

impl SymbolHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for SymbolHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if !bytes.is_empty() {
            let tail = bytes.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
            // The length keeps "ab" and "ab\0" apart.
            self.add(tail ^ (bytes.len() as u64) << 56);
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    #[test]
    fn symbols_hash_apart_and_look_up() {
        let hash = |s: &str| BuildSymbolHasher::default().hash_one(s);
        let names = [
            "",
            "a",
            "ab",
            "ab\0",
            "BTCUSDT",
            "BTCUSDC",
            "BTC-USD",
            "BTC-USDT",
            "XBT/USD",
            "ETH/USD",
            "BTC-USD-220527",
            "BTC-USD-220528",
            "UNI-USD-SWAP",
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(hash(a), hash(b), "{a:?} {b:?}");
            }
        }
        let venue = Venue::new("test_symbols").unwrap();
        let map = SymbolMap::new(venue, names.iter().copied().skip(4));
        for name in &names[4..] {
            assert_eq!(map.get(name).unwrap().symbol.as_str(), *name);
        }
        assert!(map.get("DOGEUSDT").is_err());
        // Instruments (venue and symbol) too.
        let id = |s| {
            let mut h = SymbolHasher::default();
            InstrumentId::new(venue, s).hash(&mut h);
            h.finish()
        };
        assert_ne!(id("BTCUSDT"), id("ETHUSDT"));
    }
}
