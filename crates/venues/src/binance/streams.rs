//! Which Binance streams to open, and how to spread them over connections.
//!
//! Binance serves many streams on one socket through its combined-stream path,
//! `/stream?streams=a/b/c`, with lower-case symbols. A connection may carry at most 1024
//! streams (spot, USD-M and COIN-M "WebSocket Streams" pages), and every stream is named
//! in the URL, so a full connection's URL would be ~25 KB; Raven's default of
//! [`DEFAULT_STREAMS_PER_CONNECTION`] keeps URLs around 5 KB and limits how many books
//! one disconnect resets.
//!
//! All streams of one symbol go on the same connection: a disconnect then resets whole
//! instruments, and the depth stream and trades of a symbol share one ordering.
//! Subscribing through the URL (rather than `SUBSCRIBE` messages) also keeps Raven far
//! from the incoming-message limit (5/s spot, 10/s futures): it sends no messages at
//! all except pongs.

use super::market::Market;

/// Binance's documented maximum streams per connection (spot and futures).
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// Raven's default; see the module docs for why it is below the maximum.
pub const DEFAULT_STREAMS_PER_CONNECTION: usize = 200;

/// Which trade stream to subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStream {
    /// `@aggTrade`: fills of one taker order at one price, aggregated. Fewer messages.
    AggTrade,
    /// `@trade`: every individual fill.
    Trade,
}

/// The streams to subscribe for every symbol of a venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub trades: Option<TradeStream>,
    /// `@depth@100ms` diffs joined to REST snapshots into a full book.
    pub book: bool,
    /// `@bookTicker`: every change of the best bid or offer.
    pub bbo: bool,
    /// `@markPrice@1s` (futures only; ignored on spot).
    pub mark_price: bool,
    /// `@forceOrder` (futures only; ignored on spot).
    pub liquidations: bool,
}

impl Channels {
    /// Everything the venue offers.
    pub fn all(market: Market) -> Self {
        Self {
            trades: Some(TradeStream::AggTrade),
            book: true,
            bbo: true,
            mark_price: market.is_futures(),
            liquidations: market.is_futures(),
        }
    }

    /// The stream names for one symbol (any case), in a fixed order.
    pub fn streams_for(&self, market: Market, symbol: &str) -> Vec<String> {
        let s = symbol.to_ascii_lowercase();
        let mut out = Vec::with_capacity(5);
        if self.book {
            out.push(format!("{s}@depth@100ms"));
        }
        match self.trades {
            Some(TradeStream::AggTrade) => out.push(format!("{s}@aggTrade")),
            Some(TradeStream::Trade) => out.push(format!("{s}@trade")),
            None => {}
        }
        if self.bbo {
            out.push(format!("{s}@bookTicker"));
        }
        if market.is_futures() {
            if self.mark_price {
                out.push(format!("{s}@markPrice@1s"));
            }
            if self.liquidations {
                out.push(format!("{s}@forceOrder"));
            }
        }
        out
    }
}

/// The symbols and streams of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Upper-case exchange symbols.
    pub symbols: Vec<String>,
    pub streams: Vec<String>,
}

/// Splits `symbols` over as few connections as the per-connection limit allows, keeping
/// each symbol's streams together. Duplicate symbols (in any case) are subscribed once.
pub fn partition(
    market: Market,
    symbols: &[String],
    channels: &Channels,
    per_connection: usize,
) -> Vec<Partition> {
    let limit = per_connection.clamp(1, MAX_STREAMS_PER_CONNECTION);
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Partition> = Vec::new();
    for symbol in symbols {
        let upper = symbol.trim().to_ascii_uppercase();
        if upper.is_empty() || !seen.insert(upper.clone()) {
            continue;
        }
        let streams = channels.streams_for(market, &upper);
        if streams.is_empty() {
            continue;
        }
        let fits = out
            .last()
            .is_some_and(|p| p.streams.len() + streams.len() <= limit);
        if !fits {
            out.push(Partition {
                symbols: Vec::new(),
                streams: Vec::new(),
            });
        }
        if let Some(p) = out.last_mut() {
            p.symbols.push(upper);
            p.streams.extend(streams);
        }
    }
    out
}

/// `{ws_url}/stream?streams=a/b/c`.
pub fn combined_url(ws_url: &str, streams: &[String]) -> String {
    format!(
        "{}/stream?streams={}",
        ws_url.trim_end_matches('/'),
        streams.join("/")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_binance_conventions() {
        let spot = Channels::all(Market::Spot).streams_for(Market::Spot, "BTCUSDT");
        assert_eq!(
            spot,
            [
                "btcusdt@depth@100ms",
                "btcusdt@aggTrade",
                "btcusdt@bookTicker"
            ]
        );
        let mut ch = Channels::all(Market::Coinm);
        ch.trades = Some(TradeStream::Trade);
        assert_eq!(
            ch.streams_for(Market::Coinm, "BTCUSD_PERP"),
            [
                "btcusd_perp@depth@100ms",
                "btcusd_perp@trade",
                "btcusd_perp@bookTicker",
                "btcusd_perp@markPrice@1s",
                "btcusd_perp@forceOrder"
            ]
        );
        // Futures-only channels are never asked of spot.
        let mut spot_all = Channels::all(Market::Spot);
        spot_all.mark_price = true;
        spot_all.liquidations = true;
        assert_eq!(spot_all.streams_for(Market::Spot, "x").len(), 3);
    }

    #[test]
    fn partitions_keep_symbols_whole_and_under_the_limit() {
        let symbols: Vec<String> = ["a", "B", "c", "A", "d", " "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parts = partition(Market::Usdm, &symbols, &Channels::all(Market::Usdm), 11);
        // 5 streams per symbol, 11 per connection: two symbols each.
        let syms: Vec<Vec<String>> = parts.iter().map(|p| p.symbols.clone()).collect();
        assert_eq!(syms, [vec!["A", "B"], vec!["C", "D"]]);
        assert!(parts.iter().all(|p| p.streams.len() == 10));
    }

    #[test]
    fn a_symbol_larger_than_the_limit_still_gets_a_connection() {
        let parts = partition(
            Market::Usdm,
            &["x".into(), "y".into()],
            &Channels::all(Market::Usdm),
            2,
        );
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn combined_url_format() {
        assert_eq!(
            combined_url("ws://127.0.0.1:9/", &["a@x".into(), "b@y".into()]),
            "ws://127.0.0.1:9/stream?streams=a@x/b@y"
        );
    }
}
