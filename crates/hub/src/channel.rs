//! What a subscriber can ask for: a [`Channel`] of one instrument, and the [`TopicKey`]
//! that names one sequenced stream of messages.
//!
//! The hub keeps its own enum instead of using the generated protobuf one so that an
//! invalid channel number from the wire can never reach the fan-out code: conversion is
//! the one place where a client's `Topic` is checked.

use raven_model::candle::CandleInterval;
use raven_model::{InstrumentId, Symbol, Venue};
use raven_proto::pb;

use crate::views::{is_book_depth, BOOK_VIEW_DEPTHS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Trades,
    Book,
    Bbo,
    Funding,
    Liquidations,
    Candles(CandleInterval),
}

impl Channel {
    pub fn to_proto(self) -> pb::Channel {
        match self {
            Channel::Trades => pb::Channel::Trades,
            Channel::Book => pb::Channel::Book,
            Channel::Bbo => pb::Channel::Bbo,
            Channel::Funding => pb::Channel::Funding,
            Channel::Liquidations => pb::Channel::Liquidations,
            Channel::Candles(CandleInterval::M1) => pb::Channel::Candles1m,
            Channel::Candles(CandleInterval::M5) => pb::Channel::Candles5m,
            Channel::Candles(CandleInterval::H1) => pb::Channel::Candles1h,
        }
    }

    /// The channel's family, as configuration names it: every candle interval is
    /// `candles`.
    pub fn family(self) -> &'static str {
        match self {
            Channel::Trades => "trades",
            Channel::Book => "book",
            Channel::Bbo => "bbo",
            Channel::Funding => "funding",
            Channel::Liquidations => "liquidations",
            Channel::Candles(_) => "candles",
        }
    }

    pub fn from_proto(value: i32) -> Option<Channel> {
        Some(match pb::Channel::try_from(value).ok()? {
            pb::Channel::Unspecified => return None,
            pb::Channel::Trades => Channel::Trades,
            pb::Channel::Book => Channel::Book,
            pb::Channel::Bbo => Channel::Bbo,
            pb::Channel::Funding => Channel::Funding,
            pb::Channel::Liquidations => Channel::Liquidations,
            pb::Channel::Candles1m => Channel::Candles(CandleInterval::M1),
            pb::Channel::Candles5m => Channel::Candles(CandleInterval::M5),
            pb::Channel::Candles1h => Channel::Candles(CandleInterval::H1),
        })
    }
}

/// One sequenced stream: an instrument's channel (and, for books, a depth).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicKey {
    pub instrument: InstrumentId,
    pub channel: Channel,
    /// Book only: 0 = full depth with deltas, N = top-N snapshots. Always 0 otherwise.
    pub depth: u32,
}

impl TopicKey {
    pub fn to_proto(&self) -> pb::Topic {
        pb::Topic {
            venue: self.instrument.venue.as_str().to_owned(),
            symbol: self.instrument.symbol.as_str().to_owned(),
            channel: self.channel.to_proto() as i32,
            depth: self.depth,
        }
    }
}

/// A client's topic after syntax checks, before it is matched against the instruments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub venue: Venue,
    /// `None` for the `*` wildcard.
    pub symbol: Option<String>,
    pub channel: Channel,
    pub depth: u32,
}

impl TopicRequest {
    /// Checks a wire topic; the error is the reason the client sees in its ack.
    pub fn parse(topic: &pb::Topic) -> Result<TopicRequest, String> {
        let venue: Venue = topic.venue.parse().map_err(|e| format!("{e}"))?;
        let channel = Channel::from_proto(topic.channel)
            .ok_or_else(|| format!("unknown channel {} (see raven.v1.Channel)", topic.channel))?;
        let symbol = match topic.symbol.trim() {
            "" => return Err("symbol is empty (use \"*\" for every symbol)".into()),
            "*" => None,
            s => {
                Symbol::check(s)?;
                Some(s.to_ascii_uppercase())
            }
        };
        if channel != Channel::Book && topic.depth != 0 {
            return Err(format!(
                "depth is only valid for CHANNEL_BOOK, got depth {}",
                topic.depth
            ));
        }
        if !is_book_depth(topic.depth) {
            return Err(format!(
                "depth {} is not offered: use 0 (the full book with deltas) or a top-N view \
                 of depth {BOOK_VIEW_DEPTHS:?}",
                topic.depth
            ));
        }
        Ok(TopicRequest {
            venue,
            symbol,
            channel,
            depth: topic.depth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(venue: &str, symbol: &str, channel: pb::Channel, depth: u32) -> pb::Topic {
        for name in ["binance_spot", "binance_usdm"] {
            Venue::new(name).unwrap();
        }
        pb::Topic {
            venue: venue.into(),
            symbol: symbol.into(),
            channel: channel as i32,
            depth,
        }
    }

    #[test]
    fn parses_good_topics() {
        let r =
            TopicRequest::parse(&topic("binance_spot", "btcusdt", pb::Channel::Book, 10)).unwrap();
        assert_eq!(r.symbol.as_deref(), Some("BTCUSDT"));
        assert_eq!(r.depth, 10);
        let r = TopicRequest::parse(&topic("binance_usdm", "*", pb::Channel::Trades, 0)).unwrap();
        assert_eq!(r.symbol, None);
    }

    #[test]
    fn names_what_is_wrong() {
        let e = TopicRequest::parse(&topic("nowhere", "X", pb::Channel::Book, 0)).unwrap_err();
        assert!(e.contains("unknown venue"), "{e}");
        let e = TopicRequest::parse(&topic("binance_spot", "X", pb::Channel::Unspecified, 0))
            .unwrap_err();
        assert!(e.contains("unknown channel"), "{e}");
        let e =
            TopicRequest::parse(&topic("binance_spot", "X", pb::Channel::Trades, 5)).unwrap_err();
        assert!(e.contains("only valid for CHANNEL_BOOK"), "{e}");
        for depth in [2, 7, 999, 1001, 5000] {
            let e = TopicRequest::parse(&topic("binance_spot", "X", pb::Channel::Book, depth))
                .unwrap_err();
            assert!(e.contains("not offered") && e.contains("500, 1000"), "{e}");
        }
        for depth in BOOK_VIEW_DEPTHS {
            assert!(
                TopicRequest::parse(&topic("binance_spot", "X", pb::Channel::Book, depth)).is_ok()
            );
        }
        let e = TopicRequest::parse(&topic("binance_spot", "", pb::Channel::Book, 0)).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
