//! The subscribed symbols of one connection, looked up by the exchange's spelling.
//!
//! Resolving once per frame to a shared [`InstrumentId`] means events clone an `Arc`
//! instead of allocating a symbol string.

use std::collections::HashMap;

use raven_model::{InstrumentId, Venue};

use super::protocol::ParseError;

#[derive(Debug, Clone)]
pub struct SymbolMap {
    venue: Venue,
    by_name: HashMap<String, InstrumentId>,
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
