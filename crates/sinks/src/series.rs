//! Where each record sits on its series' time axis — the key every store writes under.
//!
//! A time-series store keeps one row per series and timestamp: InfluxDB silently
//! replaces a second point with the same tags and time, and the embedded store's primary
//! key refuses it. Exchanges stamp in milliseconds and a busy market prints hundreds of
//! trades in one, so the raw time would lose most of them. The exchange's own sequence
//! number (trade id, update id) fills the free sub-millisecond nanoseconds instead:
//! unique within the millisecond, and *deterministic*, so a batch that is retried or
//! replayed after a crash lands on exactly the same keys and overwrites itself. That
//! idempotence is what makes at-least-once delivery exactly-once in the store. A trade
//! the venue does not number (Kraken v1 has no id, Bybit's are UUIDs) sits at its exchange
//! time plus its [`raven_model::Trade::ordinal`], its place among the instrument's trades
//! with the same exchange time: as deterministic, since the venue sends those trades in
//! one order, and unique while fewer than a thousand share a microsecond (Kraken stamps
//! microseconds) or a million a millisecond (Bybit). Series
//! with no sequence number (funding, liquidations) add a per-series counter for repeats
//! within one timestamp; candles are keyed by their open time, unique per interval.
//!
//! Both stores use this one clock, so `GetHistory` pages the same way whichever store
//! answers (`start_time_ns = last time_ns + 1`).

use std::collections::HashMap;

use raven_model::{EventKind, InstrumentId, MarketEvent, UnixNanos};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// Assigns series times; remembers just enough to keep unsequenced series unique.
#[derive(Debug, Default)]
pub(crate) struct SeriesClock {
    /// For series with no exchange sequence number: the last base time used and how
    /// many points already took it.
    last: HashMap<(InstrumentId, &'static str), (u64, u64)>,
}

impl SeriesClock {
    /// The series time of a trade, BBO, funding or liquidation event.
    pub(crate) fn event(&mut self, e: &MarketEvent) -> u64 {
        match &e.kind {
            EventKind::Trade(t) => match t.trade_id.number() {
                Some(id) => sequenced(e.exchange_time, e.receive_time, id),
                None => event_time(e).saturating_add(u64::from(t.ordinal)),
            },
            // A venue that numbers no BBO update gets the counter of unsequenced series.
            EventKind::Bbo(b) if b.update_id == 0 => {
                self.unique(&e.instrument, "bbo", event_time(e))
            }
            EventKind::Bbo(b) => sequenced(e.exchange_time, e.receive_time, b.update_id),
            EventKind::MarkPrice(_) => self.unique(&e.instrument, "funding", event_time(e)),
            // One counter for both sides, so a time is unique within the instrument's
            // liquidations whichever side they were.
            EventKind::Liquidation(_) => self.unique(&e.instrument, "liquidations", event_time(e)),
        }
    }

    /// `base`, or `base + n` for the n-th later point of the same series at the same
    /// base: two liquidations in one millisecond must not merge into one point.
    fn unique(&mut self, id: &InstrumentId, series: &'static str, base: u64) -> u64 {
        let slot = self.last.entry((id.clone(), series)).or_insert((base, 0));
        if slot.0 == base {
            let ts = base.saturating_add(slot.1);
            slot.1 += 1;
            ts
        } else {
            *slot = (base, 1);
            base
        }
    }
}

/// The series time of a book sample: two samples with the same last update id are the
/// same book, so merging them is right.
pub(crate) fn book(exchange: UnixNanos, receive: UnixNanos, last_update_id: u64) -> u64 {
    sequenced(exchange, receive, last_update_id)
}

/// The exchange time, or the receive time when the exchange gave none.
pub(crate) fn event_time(e: &MarketEvent) -> u64 {
    or_receive(e.exchange_time, e.receive_time)
}

fn or_receive(exchange: UnixNanos, receive: UnixNanos) -> u64 {
    if exchange.0 == 0 {
        receive.0
    } else {
        exchange.0
    }
}

/// The millisecond of the event plus `seq % 1_000_000` nanoseconds: unique for up to a
/// million sequence numbers per millisecond (exchanges give milliseconds, so the
/// nanoseconds are free), and the same every time the same event is encoded.
fn sequenced(exchange: UnixNanos, receive: UnixNanos, seq: u64) -> u64 {
    let at = or_receive(exchange, receive);
    at - at % NANOS_PER_MILLI + seq % NANOS_PER_MILLI
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{Price, Qty, Side, Trade, TradeId, Venue};

    fn trade(id: TradeId, ordinal: u32, exchange_ns: u64) -> MarketEvent {
        MarketEvent {
            instrument: InstrumentId::new(Venue::new("test_series").unwrap(), "XBT/USD"),
            exchange_time: UnixNanos(exchange_ns),
            receive_time: UnixNanos(exchange_ns + 5_000_000),
            kind: EventKind::Trade(Trade {
                price: Price::parse("1.5").unwrap(),
                qty: Qty::parse("2").unwrap(),
                aggressor: Side::Buy,
                trade_id: id,
                ordinal,
            }),
        }
    }

    #[test]
    fn trades_without_numbers_are_keyed_by_time_and_ordinal() {
        let mut clock = SeriesClock::default();
        // Kraken: three trades in one microsecond, no ids.
        let us = 1_618_678_142_557_535_000;
        let keys: Vec<u64> = (0..3)
            .map(|n| clock.event(&trade(TradeId::None, n, us)))
            .collect();
        assert_eq!(keys, [us, us + 1, us + 2]);
        // The same trades again (a replay) land on the same keys.
        let again: Vec<u64> = (0..3)
            .map(|n| SeriesClock::default().event(&trade(TradeId::None, n, us)))
            .collect();
        assert_eq!(again, keys);
        // Bybit: text ids in one millisecond, kept apart by their ordinals.
        let ms = 1_786_310_820_346_000_000;
        let a = clock.event(&trade(TradeId::Text("19d7df56".into()), 0, ms));
        let b = clock.event(&trade(TradeId::Text("4d4ad26c".into()), 1, ms));
        assert_ne!(a, b);
        // Numbered trades keep their id in the sub-millisecond digits.
        assert_eq!(
            clock.event(&trade(TradeId::Number(3_000_007), 0, ms)),
            ms + 7
        );
    }

    #[test]
    fn unnumbered_bbo_updates_in_one_millisecond_do_not_merge() {
        let mut clock = SeriesClock::default();
        let bbo = |ns| MarketEvent {
            instrument: InstrumentId::new(Venue::new("test_series").unwrap(), "BTC-USD"),
            exchange_time: UnixNanos(ns),
            receive_time: UnixNanos(ns),
            kind: EventKind::Bbo(raven_model::Bbo {
                bid_price: Price::parse("1").unwrap(),
                bid_qty: Qty::parse("1").unwrap(),
                ask_price: Price::parse("2").unwrap(),
                ask_qty: Qty::parse("1").unwrap(),
                update_id: 0,
            }),
        };
        let t = 1_700_000_000_123_000_000;
        assert_ne!(clock.event(&bbo(t)), clock.event(&bbo(t)));
    }
}
