//! OHLCV candles built from trades.
//!
//! Exchanges publish their own klines, but they arrive late, on a separate stream, and
//! only for the intervals the exchange chooses. Raven already sees every trade, so it
//! builds candles itself: one [`CandleAggregator`] per instrument and interval, fed the
//! trade stream and a clock.
//!
//! The aggregator is pure: it never reads a clock and does no I/O. Time comes in two ways,
//! both in exchange time:
//! * [`CandleAggregator::on_trade`] with the trade's exchange timestamp, and
//! * [`CandleAggregator::on_clock`] with the caller's estimate of the exchange's "now",
//!   so a candle is closed on time even when no trade arrives after its end. Without it a
//!   quiet market would leave the last minute open until the next trade.
//!
//! Rules, each for a reason:
//! * A trade at `at` belongs to bucket `floor(at / interval)`; the bucket is the half-open
//!   range `[open_time, close_time)`, so a trade exactly on a boundary opens the next
//!   candle. Buckets are aligned to the Unix epoch, like every exchange's klines.
//! * Volume is the exact decimal sum of trade quantities: `0.1 + 0.2` is `0.3`, never
//!   `0.30000000000000004`.
//! * A bucket without trades still produces a candle, flat at the previous close with
//!   zero volume, so consumers see a gap-free series. After a long silence (a halted
//!   market, a clock jump) at most [`MAX_FLAT_SPAN_NANOS`] worth of flat candles are
//!   emitted, the most recent ones; older empty buckets are skipped rather than flooding
//!   the consumers.
//! * Once a candle is closed it has been published and is never amended: a trade older
//!   than the open bucket is late, ignored and counted ([`CandleAggregator::late_trades`]).
//! * A candle is **incomplete** when trades of its bucket may be missing, and says so
//!   ([`Candle::incomplete`]) rather than passing for the whole truth: the first candle
//!   (its bucket began before the first trade Raven saw), every candle whose bucket
//!   overlaps an interruption of the feed ([`CandleAggregator::interrupt`] until
//!   [`CandleAggregator::resume`]), and the candles between two trades whose ids show
//!   that trades were skipped ([`CandleAggregator::gap`]).
//! * Within the open bucket trades are applied in arrival order (the exchange's trade
//!   stream is ordered), so the last trade received sets the close.
//! * No candle exists before the first trade: there is no price to make it from.

use crate::{Price, Qty, UnixNanos};

/// The longest run of empty buckets, in nanoseconds, filled with flat candles in one step.
pub const MAX_FLAT_SPAN_NANOS: u64 = 24 * 60 * 60 * 1_000_000_000;

const NANOS_PER_MINUTE: u64 = 60 * 1_000_000_000;

/// A candle length Raven aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandleInterval {
    M1,
    M5,
    H1,
}

impl CandleInterval {
    pub const ALL: [CandleInterval; 3] =
        [CandleInterval::M1, CandleInterval::M5, CandleInterval::H1];

    /// The interval's length in nanoseconds.
    pub fn as_nanos(self) -> u64 {
        match self {
            CandleInterval::M1 => NANOS_PER_MINUTE,
            CandleInterval::M5 => 5 * NANOS_PER_MINUTE,
            CandleInterval::H1 => 60 * NANOS_PER_MINUTE,
        }
    }

    /// The stable name used in the API and in topic names ("1m", "5m", "1h").
    pub fn as_str(self) -> &'static str {
        match self {
            CandleInterval::M1 => "1m",
            CandleInterval::M5 => "5m",
            CandleInterval::H1 => "1h",
        }
    }
}

/// One interval of trading: open, high, low, close and volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    pub interval: CandleInterval,
    /// Start of the bucket, inclusive; a multiple of the interval.
    pub open_time: UnixNanos,
    /// End of the bucket, exclusive: `open_time + interval`.
    pub close_time: UnixNanos,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    /// Exact sum of the quantities traded in the bucket.
    pub volume: Qty,
    /// Zero for a flat candle over an empty bucket.
    pub trade_count: u64,
    /// Trades of the bucket may be missing: the candle is what Raven received, not
    /// necessarily what the exchange traded (see the module docs).
    pub incomplete: bool,
}

impl Candle {
    /// A candle with no trades yet, flat at `price`.
    fn flat(interval: CandleInterval, open_time: u64, price: Price, incomplete: bool) -> Self {
        Self {
            interval,
            open_time: UnixNanos(open_time),
            close_time: UnixNanos(open_time.saturating_add(interval.as_nanos())),
            open: price,
            high: price,
            low: price,
            close: price,
            volume: Qty::ZERO,
            trade_count: 0,
            incomplete,
        }
    }

    /// Adds a trade at `price`; `volume` is the new, already summed, volume.
    fn add_trade(&mut self, price: Price, volume: Qty) {
        if self.trade_count == 0 {
            self.open = price;
            self.high = price;
            self.low = price;
        } else {
            self.high = self.high.max(price);
            self.low = self.low.min(price);
        }
        self.close = price;
        self.volume = volume;
        self.trade_count += 1;
    }
}

/// Builds the candles of one instrument at one interval. See the module docs.
///
/// `on_trade` and `on_clock` return the candles they closed, oldest first. The returned
/// `Vec` is empty (and so does not allocate) on the common path, a trade or clock tick
/// inside the open bucket; it allocates only when a bucket closes.
#[derive(Debug, Clone)]
pub struct CandleAggregator {
    interval: CandleInterval,
    /// The open bucket's candle; `None` until the first trade.
    current: Option<Candle>,
    /// The feed is interrupted: every bucket touched now may be missing trades.
    interrupted: bool,
    /// Trades were skipped between the last trade and the next one.
    gap_pending: bool,
    late_trades: u64,
    rejected_trades: u64,
}

impl CandleAggregator {
    pub fn new(interval: CandleInterval) -> Self {
        Self {
            interval,
            current: None,
            interrupted: false,
            gap_pending: false,
            late_trades: 0,
            rejected_trades: 0,
        }
    }

    pub fn interval(&self) -> CandleInterval {
        self.interval
    }

    /// A trade at exchange time `at`. Returns the candles it closed: when `at` is in a
    /// later bucket than the open one, the open candle plus a flat candle (at the previous
    /// close, zero volume) for each wholly empty bucket in between. A trade older than the
    /// open bucket is late: ignored and counted.
    pub fn on_trade(&mut self, price: Price, qty: Qty, at: UnixNanos) -> Vec<Candle> {
        let bucket = self.bucket_open(at);
        let (closed, mut current) = match self.current.take() {
            // The bucket began before the first trade Raven saw: incomplete.
            None => (Vec::new(), Candle::flat(self.interval, bucket, price, true)),
            Some(open) if bucket < open.open_time.0 => {
                self.current = Some(open);
                self.late_trades += 1;
                return Vec::new();
            }
            Some(open) if bucket > open.open_time.0 => self.close_through(open, bucket),
            Some(open) => (Vec::new(), open),
        };
        // The skipped trades lie somewhere between the last trade and this one, so every
        // bucket from the last trade's to this one's is incomplete.
        current.incomplete |= std::mem::take(&mut self.gap_pending);
        match current
            .volume
            .value()
            .checked_add(qty.value())
            .map(Qty::new)
        {
            Some(Ok(volume)) => {
                current.add_trade(price, volume);
            }
            // Only reachable when the bucket's volume would exceed Decimal's range
            // (~7.9e28): a corrupt feed, not a market. Refuse the trade rather than panic.
            _ => self.rejected_trades += 1,
        }
        self.current = Some(current);
        closed
    }

    /// The exchange clock moved to `now`. When `now` is at or past the open candle's
    /// `close_time`, closes it and returns it followed by flat candles for every bucket
    /// that ended by `now` (at most [`MAX_FLAT_SPAN_NANOS`] worth); the bucket holding
    /// `now` becomes the open, flat candle. Does nothing before the first trade or when
    /// the clock goes backwards.
    pub fn on_clock(&mut self, now: UnixNanos) -> Vec<Candle> {
        match self.current.take() {
            Some(open) if now >= open.close_time => {
                let (closed, current) = self.close_through(open, self.bucket_open(now));
                self.current = Some(current);
                closed
            }
            other => {
                self.current = other;
                Vec::new()
            }
        }
    }

    /// The feed of this instrument is interrupted (trades may be missing from now on):
    /// the open candle, and every candle opened until [`CandleAggregator::resume`], is
    /// incomplete.
    pub fn interrupt(&mut self) {
        self.interrupted = true;
        self.mark_open_incomplete();
    }

    /// Trades arrive again. The open candle stays incomplete (its bucket saw the hole);
    /// buckets opened from now on are complete again.
    pub fn resume(&mut self) {
        self.interrupted = false;
    }

    /// Trades were skipped between the last trade and the next one: the open candle and
    /// every candle up to and including the next trade's are incomplete.
    pub fn gap(&mut self) {
        self.gap_pending = true;
        self.mark_open_incomplete();
    }

    fn mark_open_incomplete(&mut self) {
        if let Some(c) = &mut self.current {
            c.incomplete = true;
        }
    }

    /// The open candle: `None` before the first trade, flat (`trade_count == 0`) when
    /// the clock opened its bucket and no trade has arrived yet.
    pub fn current(&self) -> Option<&Candle> {
        self.current.as_ref()
    }

    /// Trades ignored because their bucket had already closed.
    pub fn late_trades(&self) -> u64 {
        self.late_trades
    }

    /// Trades ignored because the bucket's volume would overflow an exact decimal.
    pub fn rejected_trades(&self) -> u64 {
        self.rejected_trades
    }

    fn bucket_open(&self, at: UnixNanos) -> u64 {
        let step = self.interval.as_nanos();
        at.0 - at.0 % step
    }

    /// Closes `last` and every empty bucket after it that ends by `bucket` (a later
    /// bucket's open time); returns them, oldest first, and the flat candle opening
    /// `bucket`. The empty buckets are only known to be empty when the feed was
    /// whole all along: during an interruption or across skipped trades they are
    /// incomplete, like the bucket being opened.
    fn close_through(&self, last: Candle, bucket: u64) -> (Vec<Candle>, Candle) {
        let step = self.interval.as_nanos();
        let price = last.close;
        let max_flat = MAX_FLAT_SPAN_NANOS / step;
        let empty = bucket.saturating_sub(last.close_time.0) / step;
        let flats = empty.min(max_flat);
        // Keep the most recent `flats` empty buckets: the series stays contiguous with
        // the bucket being opened.
        let first_empty = bucket - flats * step;
        let unknown = self.interrupted || self.gap_pending;
        let mut closed = Vec::with_capacity(usize::try_from(flats).map_or(1, |n| n + 1));
        closed.push(last);
        closed.extend(
            (0..flats).map(|i| Candle::flat(self.interval, first_empty + i * step, price, unknown)),
        );
        (closed, Candle::flat(self.interval, bucket, price, unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = NANOS_PER_MINUTE;

    fn p(s: &str) -> Price {
        Price::parse(s).unwrap()
    }

    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }

    fn t(nanos: u64) -> UnixNanos {
        UnixNanos(nanos)
    }

    /// 2024-01-01T00:00:00Z, a multiple of every interval.
    const T0: u64 = 1_704_067_200_000_000_000;

    #[test]
    fn intervals() {
        assert_eq!(CandleInterval::M1.as_nanos(), 60_000_000_000);
        assert_eq!(CandleInterval::M5.as_nanos(), 300_000_000_000);
        assert_eq!(CandleInterval::H1.as_nanos(), 3_600_000_000_000);
        let names: Vec<_> = CandleInterval::ALL.iter().map(|i| i.as_str()).collect();
        assert_eq!(names, ["1m", "5m", "1h"]);
        assert_eq!(T0 % CandleInterval::H1.as_nanos(), 0);
    }

    #[test]
    fn no_candle_before_the_first_trade() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        assert!(agg.current().is_none());
        assert!(agg.on_clock(t(T0)).is_empty());
        assert!(agg.on_clock(t(T0 + 10 * MIN)).is_empty());
        assert!(agg.current().is_none());
    }

    #[test]
    fn first_trade_opens_its_bucket() {
        let mut agg = CandleAggregator::new(CandleInterval::M5);
        assert!(agg
            .on_trade(p("100"), q("1"), t(T0 + 7 * MIN + 3))
            .is_empty());
        let c = agg.current().unwrap();
        assert_eq!(c.open_time, t(T0 + 5 * MIN));
        assert_eq!(c.close_time, t(T0 + 10 * MIN));
        assert_eq!(c.interval, CandleInterval::M5);
        assert_eq!(c.trade_count, 1);
    }

    #[test]
    fn boundary_belongs_to_the_next_bucket() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        assert!(agg.on_trade(p("1"), q("1"), t(T0)).is_empty());
        assert_eq!(agg.current().unwrap().open_time, t(T0));
        assert!(agg.on_trade(p("2"), q("1"), t(T0 + MIN - 1)).is_empty());
        let closed = agg.on_trade(p("3"), q("1"), t(T0 + MIN));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].open_time, t(T0));
        assert_eq!(closed[0].close_time, t(T0 + MIN));
        assert_eq!(closed[0].close, p("2"));
        assert_eq!(closed[0].trade_count, 2);
        let open = agg.current().unwrap();
        assert_eq!(open.open_time, t(T0 + MIN));
        assert_eq!((open.open, open.trade_count), (p("3"), 1));
    }

    #[test]
    fn open_high_low_close() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        for (price, dt) in [("10", 1), ("12.5", 2), ("9.75", 3), ("11", 4)] {
            assert!(agg.on_trade(p(price), q("1"), t(T0 + dt)).is_empty());
        }
        let c = agg.current().unwrap();
        assert_eq!(c.open, p("10"));
        assert_eq!(c.high, p("12.5"));
        assert_eq!(c.low, p("9.75"));
        assert_eq!(c.close, p("11"));
        assert_eq!(c.trade_count, 4);
        assert_eq!(c.volume, q("4"));
    }

    #[test]
    fn volume_is_exact() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("1"), q("0.1"), t(T0));
        agg.on_trade(p("1"), q("0.2"), t(T0 + 1));
        assert_eq!(agg.current().unwrap().volume, q("0.3"));
        assert_eq!(agg.current().unwrap().volume.to_string(), "0.3");
        agg.on_trade(p("1"), q("0.00000001"), t(T0 + 2));
        assert_eq!(agg.current().unwrap().volume.to_string(), "0.30000001");
    }

    #[test]
    fn the_clock_closes_a_candle_without_a_trade() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("5"), q("2"), t(T0 + 30));
        assert!(agg.on_clock(t(T0 + MIN - 1)).is_empty());
        let closed = agg.on_clock(t(T0 + MIN));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].open_time, t(T0));
        assert_eq!((closed[0].close, closed[0].volume), (p("5"), q("2")));
        // The new bucket is open and flat at the previous close.
        let open = agg.current().unwrap();
        assert_eq!(open.open_time, t(T0 + MIN));
        assert_eq!(
            (open.open, open.close, open.trade_count),
            (p("5"), p("5"), 0)
        );
        assert!(open.volume.is_zero());
        // A tick inside the same bucket, or a clock going backwards, closes nothing.
        assert!(agg.on_clock(t(T0 + MIN + 5)).is_empty());
        assert!(agg.on_clock(t(T0)).is_empty());
    }

    #[test]
    fn first_trade_in_a_clock_opened_bucket_sets_the_open() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("5"), q("1"), t(T0));
        agg.on_clock(t(T0 + MIN));
        agg.on_trade(p("7"), q("1"), t(T0 + MIN + 1));
        agg.on_trade(p("6"), q("1"), t(T0 + MIN + 2));
        let c = agg.current().unwrap();
        assert_eq!(
            (c.open, c.high, c.low, c.close),
            (p("7"), p("7"), p("6"), p("6"))
        );
        assert_eq!((c.trade_count, c.volume), (2, q("2")));
    }

    #[test]
    fn empty_buckets_are_flat_at_the_previous_close() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0));
        agg.on_trade(p("11"), q("1"), t(T0 + 1));
        let closed = agg.on_trade(p("20"), q("3"), t(T0 + 3 * MIN + 7));
        assert_eq!(closed.len(), 3);
        assert_eq!(closed[0].close, p("11"));
        for (i, flat) in closed[1..].iter().enumerate() {
            let open = T0 + (i as u64 + 1) * MIN;
            assert_eq!(flat.open_time, t(open));
            assert_eq!(flat.close_time, t(open + MIN));
            assert_eq!(
                (flat.open, flat.high, flat.low, flat.close),
                (p("11"), p("11"), p("11"), p("11"))
            );
            assert!(flat.volume.is_zero());
            assert_eq!(flat.trade_count, 0);
        }
        assert_eq!(agg.current().unwrap().open_time, t(T0 + 3 * MIN));
        assert_eq!(agg.current().unwrap().open, p("20"));

        // The clock fills empty buckets the same way.
        let closed = agg.on_clock(t(T0 + 6 * MIN));
        let opens: Vec<_> = closed.iter().map(|c| c.open_time).collect();
        assert_eq!(opens, [t(T0 + 3 * MIN), t(T0 + 4 * MIN), t(T0 + 5 * MIN)]);
        assert!(closed[1..]
            .iter()
            .all(|c| c.close == p("20") && c.trade_count == 0));
    }

    #[test]
    fn a_long_silence_emits_at_most_a_day_of_flat_candles() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0));
        let now = T0 + 3 * MAX_FLAT_SPAN_NANOS + 30 * MIN + 5;
        let closed = agg.on_clock(t(now));
        let per_day = (MAX_FLAT_SPAN_NANOS / MIN) as usize;
        assert_eq!(closed.len(), 1 + per_day);
        assert_eq!(closed[0].open_time, t(T0));
        // The flats are the most recent day, contiguous with the open bucket.
        let open = agg.current().unwrap().open_time.0;
        assert_eq!(open, now - now % MIN);
        assert_eq!(closed[per_day].close_time, t(open));
        assert!(closed[1..]
            .windows(2)
            .all(|w| w[0].close_time == w[1].open_time));
    }

    #[test]
    fn late_trades_are_ignored_and_counted() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0 + MIN));
        assert!(agg.on_trade(p("99"), q("5"), t(T0 + MIN - 1)).is_empty());
        assert_eq!(agg.late_trades(), 1);
        let c = agg.current().unwrap();
        assert_eq!((c.high, c.volume, c.trade_count), (p("10"), q("1"), 1));
        // Once the clock closed a bucket, its trades are late too.
        agg.on_clock(t(T0 + 2 * MIN));
        assert!(agg
            .on_trade(p("11"), q("1"), t(T0 + 2 * MIN - 1))
            .is_empty());
        assert_eq!(agg.late_trades(), 2);
        assert_eq!(agg.current().unwrap().trade_count, 0);
    }

    #[test]
    fn an_out_of_order_trade_inside_the_open_bucket_counts() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0 + 20));
        agg.on_trade(p("9"), q("1"), t(T0 + 10));
        assert_eq!(agg.late_trades(), 0);
        let c = agg.current().unwrap();
        assert_eq!((c.low, c.close, c.trade_count), (p("9"), p("9"), 2));
    }

    #[test]
    fn volume_overflow_is_refused_not_a_panic() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        let huge = Qty::new(rust_decimal::Decimal::MAX).unwrap();
        agg.on_trade(p("1"), huge, t(T0));
        assert!(agg.on_trade(p("2"), huge, t(T0 + 1)).is_empty());
        assert_eq!(agg.rejected_trades(), 1);
        let c = agg.current().unwrap();
        assert_eq!((c.volume, c.close, c.trade_count), (huge, p("1"), 1));
    }

    #[test]
    fn the_first_candle_is_incomplete_and_the_next_ones_are_not() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0 + 30));
        assert!(agg.current().unwrap().incomplete, "its bucket began unseen");
        let closed = agg.on_trade(p("11"), q("1"), t(T0 + 2 * MIN + 1));
        assert_eq!(closed.len(), 2);
        assert!(closed[0].incomplete);
        assert!(
            !closed[1].incomplete,
            "an empty bucket seen whole is complete"
        );
        assert!(!agg.current().unwrap().incomplete);
    }

    #[test]
    fn an_interruption_marks_every_bucket_it_touches() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0 + 1));
        agg.on_trade(p("10"), q("1"), t(T0 + MIN + 1));
        assert!(!agg.current().unwrap().incomplete);
        agg.interrupt();
        assert!(agg.current().unwrap().incomplete);
        // The clock runs on through the outage: the buckets it closes are unknown.
        let closed = agg.on_clock(t(T0 + 3 * MIN + 5));
        assert_eq!(closed.len(), 2);
        assert!(closed.iter().all(|c| c.incomplete), "{closed:?}");
        assert!(agg.current().unwrap().incomplete);
        agg.resume();
        // The bucket open at the resume saw part of the hole; the next ones are whole.
        agg.on_trade(p("12"), q("1"), t(T0 + 3 * MIN + 10));
        assert!(agg.current().unwrap().incomplete);
        let closed = agg.on_trade(p("13"), q("1"), t(T0 + 5 * MIN));
        assert_eq!(closed.len(), 2);
        assert!(closed[0].incomplete && !closed[1].incomplete);
        assert!(!agg.current().unwrap().incomplete);
    }

    #[test]
    fn skipped_trades_mark_the_buckets_between_the_trades_around_them() {
        let mut agg = CandleAggregator::new(CandleInterval::M1);
        agg.on_trade(p("10"), q("1"), t(T0 + 1));
        agg.on_trade(p("10"), q("1"), t(T0 + MIN + 1));
        // Same bucket: only it.
        agg.gap();
        assert!(agg.on_trade(p("11"), q("1"), t(T0 + MIN + 2)).is_empty());
        assert!(agg.current().unwrap().incomplete);
        let closed = agg.on_trade(p("11"), q("1"), t(T0 + 2 * MIN + 1));
        assert!(closed[0].incomplete && !agg.current().unwrap().incomplete);
        // Across buckets: the open one, the empty ones, and the new one.
        agg.gap();
        let closed = agg.on_trade(p("12"), q("1"), t(T0 + 5 * MIN + 1));
        assert_eq!(closed.len(), 3);
        assert!(closed.iter().all(|c| c.incomplete), "{closed:?}");
        assert!(agg.current().unwrap().incomplete);
        // The gap is used up by that trade.
        agg.on_trade(p("12"), q("1"), t(T0 + 6 * MIN + 1));
        assert!(!agg.current().unwrap().incomplete);
    }

    #[test]
    fn hour_candles_align_to_the_epoch() {
        let mut agg = CandleAggregator::new(CandleInterval::H1);
        agg.on_trade(p("1"), q("1"), t(T0 + 59 * MIN));
        let closed = agg.on_trade(p("2"), q("1"), t(T0 + 60 * MIN));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].close_time, t(T0 + 60 * MIN));
        assert_eq!(agg.interval(), CandleInterval::H1);
    }
}
