//! Taps: how stores (Redis, time series) get the hub's data without slowing it down.
//!
//! A [`Tap`] is a bounded channel from the hub to one store's task. The hub offers every
//! normalized event, every closed candle, and at a fixed interval each book's top levels
//! and open candles; it never waits. A store that falls so far behind that its channel
//! is full loses records, and that is counted per tap (`raven_tap_dropped_total`) and
//! logged, never hidden: the store's own buffering (batches, spill) is where "nothing
//! lost" is made good, so the channel only has to absorb scheduling hiccups.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use raven_model::candle::Candle;
use raven_model::{BookLevels, InstrumentId, MarketEvent, UnixNanos};
use tokio::sync::mpsc;

/// One thing a store may want to keep.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A trade, BBO, mark price or liquidation, as the venue produced it.
    Event(MarketEvent),
    /// A candle: `closed` once its interval ended, otherwise the open candle so far.
    Candle {
        instrument: InstrumentId,
        candle: Candle,
        closed: bool,
    },
    /// The best levels of an in-sync book, sampled at the tap interval.
    Book {
        instrument: InstrumentId,
        levels: BookLevels,
        exchange_time: UnixNanos,
        receive_time: UnixNanos,
    },
}

/// The hub's end of a store's channel.
pub struct Tap {
    name: &'static str,
    tx: mpsc::Sender<Record>,
    dropped: AtomicU64,
    drops: Mutex<Drops>,
}

/// When this tap last dropped a record, and last warned about it.
#[derive(Default)]
struct Drops {
    last_drop: Option<Instant>,
    last_warning: Option<Instant>,
}

impl Tap {
    /// A tap named `name` (a metric label) holding up to `capacity` records.
    pub fn new(name: &'static str, capacity: usize) -> (Tap, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        metrics::counter!("raven_tap_dropped_total", "tap" => name).absolute(0);
        (
            Tap {
                name,
                tx,
                dropped: AtomicU64::new(0),
                drops: Mutex::new(Drops::default()),
            },
            rx,
        )
    }

    /// Offers a record without waiting; a full channel counts it as dropped. A closed
    /// one means the store has stopped (shutting down, or disabled with its reason in
    /// its health): nothing is offered to it any more, and it is not "falling behind".
    pub fn offer(&self, record: Record) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(record) {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("raven_tap_dropped_total", "tap" => self.name).increment(1);
            let now = Instant::now();
            let mut drops = self.drops.lock();
            drops.last_drop = Some(now);
            if drops
                .last_warning
                .is_none_or(|t| t.elapsed().as_secs() >= 10)
            {
                drops.last_warning = Some(now);
                tracing::warn!(
                    tap = self.name,
                    total,
                    "store is not keeping up; records dropped"
                );
            }
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// When the last record was dropped.
    pub fn last_drop(&self) -> Option<Instant> {
        self.drops.lock().last_drop
    }
}

/// Offers `record` to every tap, cloning for all but the last.
pub(crate) fn offer_all(taps: &[Tap], record: Record) {
    if let Some((last, rest)) = taps.split_last() {
        for tap in rest {
            tap.offer(record.clone());
        }
        last.offer(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{EventKind, Price, Qty, Side, Trade, Venue};

    fn trade() -> Record {
        Record::Event(MarketEvent {
            instrument: InstrumentId::new(Venue::new("binance_spot").unwrap(), "BTCUSDT"),
            exchange_time: UnixNanos(1),
            receive_time: UnixNanos(2),
            kind: EventKind::Trade(Trade {
                price: Price::parse("1.5").unwrap(),
                qty: Qty::parse("2").unwrap(),
                aggressor: Side::Buy,
                trade_id: raven_model::TradeId::Number(7),
                ordinal: 0,
            }),
        })
    }

    #[test]
    fn a_full_tap_drops_and_counts_without_blocking() {
        let (tap, mut rx) = Tap::new("test", 2);
        for _ in 0..5 {
            tap.offer(trade());
        }
        assert_eq!(tap.dropped(), 3);
        assert_eq!(rx.try_recv().unwrap(), trade());
        assert_eq!(rx.try_recv().unwrap(), trade());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_stopped_store_is_not_counted_as_falling_behind() {
        let (tap, rx) = Tap::new("test", 2);
        drop(rx);
        tap.offer(trade());
        assert_eq!((tap.dropped(), tap.last_drop()), (0, None));
    }
}
