//! The three Binance markets Raven speaks, and what differs between them.

use raven_model::Venue;

/// One Binance market: its own endpoints, symbols and depth-sync rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Market {
    Spot,
    /// USD-M futures (`fapi`/`fstream`): linear perpetuals and quarterlies.
    Usdm,
    /// COIN-M futures (`dapi`/`dstream`): inverse contracts.
    Coinm,
}

impl Market {
    pub const ALL: [Market; 3] = [Market::Spot, Market::Usdm, Market::Coinm];

    /// The venue name Raven gives the market.
    pub fn name(self) -> &'static str {
        match self {
            Market::Spot => "binance_spot",
            Market::Usdm => "binance_usdm",
            Market::Coinm => "binance_coinm",
        }
    }

    /// The market's venue identity.
    pub fn venue(self) -> Venue {
        Venue::new(self.name()).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// The market named `venue`, if it is a Binance one.
    pub fn of(venue: Venue) -> Option<Market> {
        Market::ALL.into_iter().find(|m| m.name() == venue.as_str())
    }

    /// Futures markets publish mark prices, funding and liquidations and chain their
    /// depth diffs with `pu`.
    pub fn is_futures(self) -> bool {
        !matches!(self, Market::Spot)
    }
}
