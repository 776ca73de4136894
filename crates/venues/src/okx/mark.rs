//! Mark price and funding from two OKX channels, merged per instrument into
//! [`MarkPrice`] events.
//!
//! Raven's [`MarkPrice`] holds the mark price and the funding rate with its time, as
//! Binance's `@markPrice` sends them together. OKX splits them (seen 2026-08):
//! * `mark-price` ("Mark price channel", page dated 2026-07-18): `markPx` and `ts`,
//!   every 200 ms while it changes, every 10 s otherwise, for every derivative;
//! * `funding-rate` ("Funding rate channel", page dated 2026-07-19): `fundingRate`, the
//!   rate of the current period, settled at `fundingTime`, with `nextFundingTime` the
//!   settlement after that; every 30 to 90 s, for perpetual swaps.
//!
//! So the parser keeps, per instrument, the last of each and sends a [`MarkPrice`]
//! whenever either arrives and both are known: the mark price as last received, the
//! funding rate with `fundingTime` as [`MarkPrice::next_funding_time`] (the time that
//! rate is paid, as Binance's `T`), and the exchange time of the push that completed it.
//! A swap's mark prices before its first funding push (up to 90 s) give nothing.
//! Dated futures have no funding: each mark price is sent at once with rate 0 and time
//! 0, as Binance's delivery contracts do. OKX's index price is a separate channel
//! (`index-tickers`, keyed by index, not instrument) that Raven does not take, so
//! [`MarkPrice::index_price`] is `None`.

use std::collections::HashMap;

use raven_model::{EventKind, InstrumentId, MarkPrice, MarketEvent, Price, UnixNanos};
use rust_decimal::Decimal;

/// The parts known so far of each subscribed instrument's mark price.
#[derive(Debug)]
pub(super) struct MarkMerge {
    parts: HashMap<InstrumentId, Parts>,
}

#[derive(Debug, Default)]
struct Parts {
    mark: Option<Price>,
    /// The current rate and when it is settled.
    funding: Option<(Decimal, UnixNanos)>,
}

/// One push's timing, carried into the event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Times {
    pub exchange: UnixNanos,
    pub receive: UnixNanos,
}

impl MarkMerge {
    pub(super) fn new<'a>(instruments: impl IntoIterator<Item = &'a InstrumentId>) -> Self {
        Self {
            parts: instruments
                .into_iter()
                .map(|i| (i.clone(), Parts::default()))
                .collect(),
        }
    }

    /// A `mark-price` push. `funded`: the instrument is a perpetual swap, whose event
    /// waits for its funding rate.
    pub(super) fn mark(
        &mut self,
        instrument: &InstrumentId,
        funded: bool,
        mark: Price,
        times: Times,
    ) -> Option<MarketEvent> {
        if !funded {
            return Some(event(
                instrument,
                mark,
                (Decimal::ZERO, UnixNanos(0)),
                times,
            ));
        }
        let parts = self.parts.get_mut(instrument)?;
        parts.mark = Some(mark);
        let funding = parts.funding?;
        Some(event(instrument, mark, funding, times))
    }

    /// A `funding-rate` push: the current `rate`, settled at `funding_time`.
    pub(super) fn funding(
        &mut self,
        instrument: &InstrumentId,
        rate: Decimal,
        funding_time: UnixNanos,
        times: Times,
    ) -> Option<MarketEvent> {
        let parts = self.parts.get_mut(instrument)?;
        parts.funding = Some((rate, funding_time));
        let mark = parts.mark?;
        Some(event(instrument, mark, (rate, funding_time), times))
    }
}

fn event(
    instrument: &InstrumentId,
    mark: Price,
    (funding_rate, next_funding_time): (Decimal, UnixNanos),
    times: Times,
) -> MarketEvent {
    MarketEvent {
        instrument: instrument.clone(),
        exchange_time: times.exchange,
        receive_time: times.receive,
        kind: EventKind::MarkPrice(MarkPrice {
            mark_price: mark,
            index_price: None,
            funding_rate,
            next_funding_time,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Venue;
    use std::str::FromStr;

    fn at(ms: u64) -> Times {
        Times {
            exchange: UnixNanos::from_millis(ms),
            receive: UnixNanos::from_millis(ms + 1),
        }
    }

    fn mark_of(e: &MarketEvent) -> &MarkPrice {
        match &e.kind {
            EventKind::MarkPrice(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_swap_s_event_waits_for_both_parts_then_follows_either() {
        let v = Venue::new("test_okx_mark").unwrap();
        let swap = InstrumentId::new(v, "BTC-USD-SWAP");
        let other = InstrumentId::new(v, "ETH-USD-SWAP");
        let mut m = MarkMerge::new([&swap, &other]);
        let px = |s| Price::parse(s).unwrap();
        assert!(m.mark(&swap, true, px("100.5"), at(1)).is_none());
        let rate = Decimal::from_str("-0.0001").unwrap();
        let e = m
            .funding(&swap, rate, UnixNanos::from_millis(8_000), at(2))
            .unwrap();
        assert_eq!(e.exchange_time, UnixNanos::from_millis(2));
        assert_eq!(mark_of(&e).mark_price, px("100.5"));
        assert_eq!(mark_of(&e).funding_rate, rate);
        assert_eq!(mark_of(&e).next_funding_time, UnixNanos::from_millis(8_000));
        let e = m.mark(&swap, true, px("101"), at(3)).unwrap();
        assert_eq!(mark_of(&e).mark_price, px("101"));
        assert_eq!(mark_of(&e).funding_rate, rate);
        assert_eq!(e.receive_time, UnixNanos::from_millis(4));
        // Another instrument's parts are its own; one not subscribed has none.
        assert!(m.mark(&other, true, px("5"), at(4)).is_none());
        let unknown = InstrumentId::new(v, "XRP-USD-SWAP");
        assert!(m.funding(&unknown, rate, UnixNanos(1), at(5)).is_none());
    }

    #[test]
    fn a_dated_future_has_no_funding_to_wait_for() {
        let v = Venue::new("test_okx_mark").unwrap();
        let future = InstrumentId::new(v, "BTC-USD-220527");
        let mut m = MarkMerge::new([&future]);
        let e = m
            .mark(&future, false, Price::parse("30000.1").unwrap(), at(9))
            .unwrap();
        assert_eq!(mark_of(&e).funding_rate, Decimal::ZERO);
        assert_eq!(mark_of(&e).next_funding_time, UnixNanos(0));
        assert_eq!(mark_of(&e).index_price, None);
    }
}
