//! Line protocol: one [`Record`] becomes at most one point, one text line.
//!
//! The text is built here once and never parsed back: the same bytes go to memory, to
//! the spill files and to `/write`, so a replayed batch is byte-for-byte the batch that
//! failed, and (with the deterministic timestamps below) overwrites itself in InfluxDB
//! instead of adding a duplicate.
//!
//! Decimals are written with `to_string()`, the exchange's exact text, twice: as a bare
//! float field (`price=0.35210000`, which InfluxDB parses as a float for charts and
//! aggregates) and as a string field (`price_exact="0.35210000"`) that is never rounded.
//!
//! Escaping follows the line protocol rules: in tag values `,`, `=` and space take a
//! backslash; in string fields `"` and `\` do. A line break cannot be escaped in a tag,
//! so a record whose tag would hold one is refused (it would otherwise split the batch).

use std::fmt::{Display, Write};

use raven_hub::Record;
use raven_model::candle::Candle;
use raven_model::{BookLevels, EventKind, InstrumentId, MarketEvent, UnixNanos};

use crate::series::{self, SeriesClock};

/// What [`Encoder::encode`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoded {
    /// One line was appended.
    Point,
    /// Nothing to store: an open candle, or a book with no levels.
    Skipped,
    /// The record cannot be written faithfully; nothing was appended.
    Refused(&'static str),
}

/// Turns records into lines, keeping each series' timestamps unique.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    clock: SeriesClock,
}

impl Encoder {
    /// Appends the record's line (with its `\n`) to `out`.
    pub(crate) fn encode(&mut self, record: &Record, out: &mut String) -> Encoded {
        let start = out.len();
        let result = self.write(record, out);
        if result != Encoded::Point {
            out.truncate(start);
        }
        result
    }

    fn write(&mut self, record: &Record, out: &mut String) -> Encoded {
        match record {
            Record::Event(e) => {
                let ts = self.clock.event(e);
                event_line(e, ts, out)
            }
            Record::Candle {
                instrument,
                candle,
                closed,
            } => {
                if *closed {
                    candle_line(instrument, candle, out)
                } else {
                    Encoded::Skipped
                }
            }
            Record::Book {
                instrument,
                levels,
                exchange_time,
                receive_time,
            } => book_line(instrument, levels, *exchange_time, *receive_time, out),
        }
    }
}

fn event_line(e: &MarketEvent, ts: u64, out: &mut String) -> Encoded {
    let id = &e.instrument;
    let (measurement, side) = match &e.kind {
        EventKind::Trade(t) => ("trades", Some(t.aggressor.as_str())),
        EventKind::Bbo(_) => ("bbo", None),
        EventKind::MarkPrice(_) => ("funding", None),
        EventKind::Liquidation(l) => ("liquidations", Some(l.side.as_str())),
    };
    let side_tag = side.map(|s| ("side", s));
    let Some(mut line) = Line::start(out, measurement, id, side_tag.as_slice()) else {
        return Encoded::Refused("line break in a tag");
    };
    let ids_fit = match &e.kind {
        EventKind::Trade(t) => {
            line.decimal("price", &t.price);
            line.decimal("quantity", &t.qty);
            line.int("trade_id", t.trade_id.number().unwrap_or_default())
                && line.string("trade_id_text", &t.trade_id.text())
        }
        EventKind::Bbo(b) => {
            line.decimal("bid_price", &b.bid_price);
            line.decimal("bid_quantity", &b.bid_qty);
            line.decimal("ask_price", &b.ask_price);
            line.decimal("ask_quantity", &b.ask_qty);
            line.int("update_id", b.update_id)
        }
        EventKind::MarkPrice(m) => {
            line.decimal("mark_price", &m.mark_price);
            if let Some(index) = &m.index_price {
                line.decimal("index_price", index);
            }
            line.decimal("funding_rate", &m.funding_rate);
            line.int("next_funding_time_ns", m.next_funding_time.0)
        }
        EventKind::Liquidation(l) => {
            line.decimal("price", &l.price);
            line.decimal("quantity", &l.qty);
            true
        }
    };
    if !ids_fit
        || !line.int("exchange_time_ns", e.exchange_time.0)
        || !line.int("receive_time_ns", e.receive_time.0)
    {
        return Encoded::Refused("integer beyond i64");
    }
    line.end(ts)
}

fn candle_line(id: &InstrumentId, c: &Candle, out: &mut String) -> Encoded {
    let Some(mut line) = Line::start(out, "candles", id, &[("interval", c.interval.as_str())])
    else {
        return Encoded::Refused("line break in a tag");
    };
    line.decimal("open", &c.open);
    line.decimal("high", &c.high);
    line.decimal("low", &c.low);
    line.decimal("close", &c.close);
    line.decimal("volume", &c.volume);
    if !line.int("trade_count", c.trade_count) || !line.int("close_time_ns", c.close_time.0) {
        return Encoded::Refused("integer beyond i64");
    }
    line.boolean("incomplete", c.incomplete);
    // One candle per bucket and interval: the open time is already unique.
    line.end(c.open_time.0)
}

fn book_line(
    id: &InstrumentId,
    b: &BookLevels,
    exchange_time: UnixNanos,
    receive_time: UnixNanos,
    out: &mut String,
) -> Encoded {
    let (bid, ask) = (b.bids.first(), b.asks.first());
    if bid.is_none() && ask.is_none() {
        return Encoded::Skipped;
    }
    let Some(mut line) = Line::start(out, "book_top", id, &[]) else {
        return Encoded::Refused("line break in a tag");
    };
    if let Some(l) = bid {
        line.decimal("bid_price", &l.price);
        line.decimal("bid_quantity", &l.qty);
    }
    if let Some(l) = ask {
        line.decimal("ask_price", &l.price);
        line.decimal("ask_quantity", &l.qty);
    }
    if !line.int("last_update_id", b.last_update_id) || !line.int("receive_time_ns", receive_time.0)
    {
        return Encoded::Refused("integer beyond i64");
    }
    line.end(series::book(exchange_time, receive_time, b.last_update_id))
}

/// A line being written: measurement and tags, then fields, then the timestamp.
struct Line<'a> {
    out: &'a mut String,
    fields: usize,
}

impl<'a> Line<'a> {
    /// Writes `measurement,venue=…,symbol=…[,extra tags]`; `None` when a tag value holds
    /// a line break.
    fn start(
        out: &'a mut String,
        measurement: &str,
        id: &InstrumentId,
        extra: &[(&str, &str)],
    ) -> Option<Line<'a>> {
        out.push_str(measurement);
        let tags = [("venue", id.venue.as_str()), ("symbol", id.symbol.as_str())];
        for (key, value) in tags.iter().chain(extra) {
            if value.is_empty() || value.contains(['\n', '\r']) {
                return None;
            }
            out.push(',');
            out.push_str(key);
            out.push('=');
            for c in value.chars() {
                if matches!(c, ',' | '=' | ' ') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        Some(Line { out, fields: 0 })
    }

    /// Writes the separator and `key{suffix}=`.
    fn key(&mut self, key: &str, suffix: &str) {
        self.out.push(if self.fields == 0 { ' ' } else { ',' });
        self.fields += 1;
        self.out.push_str(key);
        self.out.push_str(suffix);
        self.out.push('=');
    }

    /// `key=<text>` (a float to InfluxDB) and `key_exact="<text>"`.
    fn decimal(&mut self, key: &str, value: &impl Display) {
        let text = value.to_string();
        self.key(key, "");
        self.out.push_str(&text);
        self.key(key, "_exact");
        self.quoted(&text);
    }

    /// `key="<text>"`, escaped; always true (for the id checks' `&&`).
    fn string(&mut self, key: &str, text: &str) -> bool {
        self.key(key, "");
        self.quoted(text);
        true
    }

    fn quoted(&mut self, text: &str) {
        self.out.push('"');
        for c in text.chars() {
            if matches!(c, '"' | '\\') {
                self.out.push('\\');
            }
            self.out.push(c);
        }
        self.out.push('"');
    }

    /// `key=<n>i`; false when `n` does not fit InfluxDB's signed 64-bit integer.
    fn boolean(&mut self, key: &str, value: bool) {
        self.key(key, "");
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn int(&mut self, key: &str, value: u64) -> bool {
        let Ok(n) = i64::try_from(value) else {
            return false;
        };
        self.key(key, "");
        let _ = write!(self.out, "{n}i");
        true
    }

    fn end(self, timestamp: u64) -> Encoded {
        let _ = writeln!(self.out, " {timestamp}");
        Encoded::Point
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{Bbo, Level, Liquidation, Price, Qty, Side, Trade, Venue};

    fn encode(r: &Record) -> String {
        let mut out = String::new();
        assert_eq!(Encoder::default().encode(r, &mut out), Encoded::Point);
        out
    }

    fn trade(symbol: &str, id: u64) -> Record {
        Record::Event(MarketEvent {
            instrument: InstrumentId::new(Venue::new("binance_spot").unwrap(), symbol),
            exchange_time: UnixNanos(1_700_000_000_123_000_000),
            receive_time: UnixNanos(1_700_000_000_125_000_042),
            kind: EventKind::Trade(Trade {
                price: Price::parse("0.35210000").unwrap(),
                qty: Qty::parse("12.5").unwrap(),
                aggressor: Side::Sell,
                trade_id: raven_model::TradeId::Number(id),
                ordinal: 0,
            }),
        })
    }

    #[test]
    fn a_trade_line_keeps_exact_text_and_a_unique_timestamp() {
        assert_eq!(
            encode(&trade("BTCUSDT", 3_000_007)),
            "trades,venue=binance_spot,symbol=BTCUSDT,side=sell \
             price=0.35210000,price_exact=\"0.35210000\",quantity=12.5,quantity_exact=\"12.5\",\
             trade_id=3000007i,trade_id_text=\"3000007\",exchange_time_ns=1700000000123000000i,\
             receive_time_ns=1700000000125000042i \
             1700000000123000007\n"
        );
    }

    #[test]
    fn tag_values_are_escaped_and_line_breaks_refused() {
        let line = encode(&trade("A B,C=D", 1));
        assert!(line.starts_with("trades,venue=binance_spot,symbol=A\\ B\\,C\\=D,side=sell "));
        let mut out = String::from("kept\n");
        let r = Encoder::default().encode(&trade("A\nB", 1), &mut out);
        assert_eq!(r, Encoded::Refused("line break in a tag"));
        assert_eq!(out, "kept\n");
    }

    #[test]
    fn ids_beyond_i64_are_refused_not_wrapped() {
        let mut out = String::new();
        let r = Encoder::default().encode(&trade("X", u64::MAX), &mut out);
        assert_eq!(r, Encoded::Refused("integer beyond i64"));
        assert!(out.is_empty());
    }

    #[test]
    fn bbo_without_exchange_time_falls_back_to_receive_time() {
        let r = Record::Event(MarketEvent {
            instrument: InstrumentId::new(Venue::new("binance_usdm").unwrap(), "ETHUSDT"),
            exchange_time: UnixNanos(0),
            receive_time: UnixNanos(5_000_123_456),
            kind: EventKind::Bbo(Bbo {
                bid_price: Price::parse("1.1").unwrap(),
                bid_qty: Qty::parse("2").unwrap(),
                ask_price: Price::parse("1.2").unwrap(),
                ask_qty: Qty::parse("0").unwrap(),
                update_id: 77,
            }),
        });
        assert!(encode(&r).ends_with(" 5000000077\n"), "{}", encode(&r));
    }

    #[test]
    fn liquidations_in_one_millisecond_get_distinct_timestamps() {
        let liq = |q: &str| {
            Record::Event(MarketEvent {
                instrument: InstrumentId::new(Venue::new("binance_usdm").unwrap(), "BTCUSDT"),
                exchange_time: UnixNanos(9_000_000),
                receive_time: UnixNanos(9_500_000),
                kind: EventKind::Liquidation(Liquidation {
                    side: Side::Buy,
                    price: Price::parse("100").unwrap(),
                    qty: Qty::parse(q).unwrap(),
                }),
            })
        };
        let mut enc = Encoder::default();
        let mut out = String::new();
        for q in ["1", "2", "3"] {
            assert_eq!(enc.encode(&liq(q), &mut out), Encoded::Point);
        }
        let stamps: Vec<_> = out.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(stamps, ["9000000", "9000001", "9000002"]);
    }

    #[test]
    fn open_candles_and_empty_books_are_skipped() {
        let id = InstrumentId::new(Venue::new("binance_spot").unwrap(), "BTCUSDT");
        let mut out = String::new();
        let book = Record::Book {
            instrument: id.clone(),
            levels: BookLevels::default(),
            exchange_time: UnixNanos(1),
            receive_time: UnixNanos(2),
        };
        assert_eq!(Encoder::default().encode(&book, &mut out), Encoded::Skipped);
        let one_sided = Record::Book {
            instrument: id,
            levels: BookLevels {
                bids: vec![Level {
                    price: Price::parse("5.00").unwrap(),
                    qty: Qty::parse("1").unwrap(),
                }],
                asks: vec![],
                first_update_id: 1,
                last_update_id: 9,
            },
            exchange_time: UnixNanos(3_000_000),
            receive_time: UnixNanos(4_000_000),
        };
        assert_eq!(
            encode(&one_sided),
            "book_top,venue=binance_spot,symbol=BTCUSDT bid_price=5.00,bid_price_exact=\"5.00\",\
             bid_quantity=1,bid_quantity_exact=\"1\",last_update_id=9i,receive_time_ns=4000000i \
             3000009\n"
        );
    }
}
