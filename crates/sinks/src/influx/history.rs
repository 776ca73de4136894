//! `GetHistory` answered from InfluxDB, with InfluxQL over the v1 `/query` endpoint.
//!
//! Each page is one `SELECT … WHERE venue = … AND symbol = … AND time >= … AND time < …
//! ORDER BY time LIMIT n` on the `_exact` string fields, so the decimals come back as the
//! exchange's text, never through a float. The next page starts 1 ns after the last row:
//! series times are unique (module `series`), so nothing is skipped or repeated.

use std::sync::Arc;

use raven_hub::Channel;
use raven_model::candle::Candle;
use raven_model::{Bbo, EventKind, Liquidation, MarkPrice, Trade, UnixNanos};
use serde_json::Value;
use tokio::sync::mpsc;

use super::writer::Client;
use super::InfluxConfig;
use crate::history::{
    self, HistoryError, HistoryItem, HistoryPages, HistoryQuery, HistoryRow, HistoryStore, Pager,
};

/// The largest time InfluxDB stores (`2262-04-11`).
const INFLUX_MAX_TIME: u64 = i64::MAX as u64 - 1;

/// Reads history from the InfluxDB the store writes to.
pub struct InfluxHistory {
    client: Arc<Client>,
}

impl InfluxHistory {
    pub fn new(config: &InfluxConfig) -> Result<InfluxHistory, String> {
        Ok(InfluxHistory {
            client: Arc::new(Client::new(config)?),
        })
    }
}

impl HistoryStore for InfluxHistory {
    fn query(&self, query: HistoryQuery) -> HistoryPages {
        let (tx, rx) = mpsc::channel(2);
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut pager = Pager::new(&query, INFLUX_MAX_TIME);
            while let Some((start, end, rows)) = pager.next() {
                let page = match client.select(&select(&query, start, end, rows)).await {
                    Ok(answer) => self::rows(&query.channel, &answer),
                    Err(e) => Err(HistoryError::Unavailable(e)),
                };
                if let Some(page) = pager.take(rows, page) {
                    if tx.send(page).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

/// The columns each channel reads, in the order [`row`] expects them after `time`.
fn columns(channel: &Channel) -> (&'static str, &'static str) {
    match channel {
        Channel::Trades => (
            "trades",
            "price_exact, quantity_exact, side, trade_id, exchange_time_ns, receive_time_ns, \
             trade_id_text",
        ),
        Channel::Bbo => (
            "bbo",
            "bid_price_exact, bid_quantity_exact, ask_price_exact, ask_quantity_exact, \
             update_id, exchange_time_ns, receive_time_ns",
        ),
        Channel::Funding => (
            "funding",
            "mark_price_exact, index_price_exact, funding_rate_exact, next_funding_time_ns, \
             exchange_time_ns, receive_time_ns",
        ),
        Channel::Liquidations => (
            "liquidations",
            "price_exact, quantity_exact, side, exchange_time_ns, receive_time_ns",
        ),
        Channel::Candles(_) | Channel::Book => (
            "candles",
            "open_exact, high_exact, low_exact, close_exact, volume_exact, trade_count, \
             close_time_ns, incomplete",
        ),
    }
}

fn select(query: &HistoryQuery, start: u64, end: u64, limit: usize) -> String {
    let (measurement, fields) = columns(&query.channel);
    let interval = match query.channel {
        Channel::Candles(i) => format!(" AND \"interval\" = '{}'", i.as_str()),
        _ => String::new(),
    };
    format!(
        "SELECT {fields} FROM \"{measurement}\" WHERE \"venue\" = '{}' AND \"symbol\" = '{}'{interval} \
         AND time >= {start} AND time < {end} ORDER BY time ASC LIMIT {limit}",
        quote(query.instrument.venue.as_str()),
        quote(query.instrument.symbol.as_str()),
    )
}

/// An InfluxQL string literal's body: `\` and `'` take a backslash.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The rows of one `SELECT` answer (`{"series": [{"columns": [...], "values": [...]}]}`).
fn rows(channel: &Channel, answer: &Value) -> Result<Vec<HistoryRow>, HistoryError> {
    let Some(series) = answer.get("series").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for s in series {
        let values = s.get("values").and_then(Value::as_array);
        for v in values.into_iter().flatten() {
            let cells = v
                .as_array()
                .ok_or_else(|| HistoryError::Corrupt(format!("row is not an array: {v}")))?;
            out.push(row(channel, cells)?);
        }
    }
    Ok(out)
}

fn row(channel: &Channel, cells: &[Value]) -> Result<HistoryRow, HistoryError> {
    let cell = Cells(cells);
    let time = cell.int(0, "time")?;
    let event = |kind: EventKind, at: usize| -> Result<HistoryRow, HistoryError> {
        Ok(HistoryRow {
            time: UnixNanos(time),
            // Points written before `exchange_time_ns` existed: the series time's
            // millisecond is the exchange's.
            exchange_time: UnixNanos(cell.opt_int(at)?.unwrap_or(time - time % 1_000_000)),
            receive_time: UnixNanos(cell.opt_int(at + 1)?.unwrap_or(0)),
            item: HistoryItem::Event(kind),
        })
    };
    match channel {
        Channel::Trades => {
            let exchange_time = cell.opt_int(5)?.unwrap_or(time - time % 1_000_000);
            let (trade_id, ordinal) = history::trade_id(
                cell.int(4, "trade_id")?,
                cell.opt_text(7),
                UnixNanos(time),
                UnixNanos(exchange_time),
            );
            event(
                EventKind::Trade(Trade {
                    price: history::price(cell.text(1, "price_exact")?)?,
                    qty: history::qty(cell.text(2, "quantity_exact")?)?,
                    aggressor: history::side(cell.text(3, "side")?)?,
                    trade_id,
                    ordinal,
                }),
                5,
            )
        }
        Channel::Bbo => event(
            EventKind::Bbo(Bbo {
                bid_price: history::price(cell.text(1, "bid_price_exact")?)?,
                bid_qty: history::qty(cell.text(2, "bid_quantity_exact")?)?,
                ask_price: history::price(cell.text(3, "ask_price_exact")?)?,
                ask_qty: history::qty(cell.text(4, "ask_quantity_exact")?)?,
                update_id: cell.int(5, "update_id")?,
            }),
            6,
        ),
        Channel::Funding => event(
            EventKind::MarkPrice(MarkPrice {
                mark_price: history::price(cell.text(1, "mark_price_exact")?)?,
                index_price: cell.opt_text(2).map(history::price).transpose()?,
                funding_rate: history::rate(cell.text(3, "funding_rate_exact")?)?,
                next_funding_time: UnixNanos(cell.int(4, "next_funding_time_ns")?),
            }),
            5,
        ),
        Channel::Liquidations => event(
            EventKind::Liquidation(Liquidation {
                price: history::price(cell.text(1, "price_exact")?)?,
                qty: history::qty(cell.text(2, "quantity_exact")?)?,
                side: history::side(cell.text(3, "side")?)?,
            }),
            4,
        ),
        Channel::Candles(interval) => Ok(HistoryRow {
            time: UnixNanos(time),
            exchange_time: UnixNanos(0),
            receive_time: UnixNanos(0),
            item: HistoryItem::Candle(Candle {
                interval: *interval,
                open_time: UnixNanos(time),
                close_time: UnixNanos(cell.int(7, "close_time_ns")?),
                open: history::price(cell.text(1, "open_exact")?)?,
                high: history::price(cell.text(2, "high_exact")?)?,
                low: history::price(cell.text(3, "low_exact")?)?,
                close: history::price(cell.text(4, "close_exact")?)?,
                volume: history::qty(cell.text(5, "volume_exact")?)?,
                trade_count: cell.int(6, "trade_count")?,
                // Candles written before the flag existed have none: complete as far as
                // anyone knew.
                incomplete: cell.0.get(8).and_then(Value::as_bool).unwrap_or(false),
            }),
        }),
        Channel::Book => Err(HistoryError::Corrupt("book history is not kept".into())),
    }
}

/// One answer row's cells, read by position.
struct Cells<'a>(&'a [Value]);

impl Cells<'_> {
    fn opt_text(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(Value::as_str)
    }

    fn text(&self, i: usize, name: &str) -> Result<&str, HistoryError> {
        self.opt_text(i)
            .ok_or_else(|| HistoryError::Corrupt(format!("{name}: missing or not a string")))
    }

    fn opt_int(&self, i: usize) -> Result<Option<u64>, HistoryError> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| HistoryError::Corrupt(format!("not an unsigned integer: {v}"))),
        }
    }

    fn int(&self, i: usize, name: &str) -> Result<u64, HistoryError> {
        self.opt_int(i)?
            .ok_or_else(|| HistoryError::Corrupt(format!("{name}: missing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{InstrumentId, Venue};

    #[test]
    fn select_quotes_the_symbol_and_bounds_the_range() {
        let q = HistoryQuery {
            instrument: InstrumentId::new(Venue::new("binance_spot").unwrap(), "A'B\\C"),
            channel: Channel::Candles(raven_model::candle::CandleInterval::M5),
            start: UnixNanos(10),
            end: UnixNanos(20),
            limit: 3,
        };
        assert_eq!(
            select(&q, 10, 20, 3),
            "SELECT open_exact, high_exact, low_exact, close_exact, volume_exact, trade_count, \
             close_time_ns, incomplete FROM \"candles\" WHERE \"venue\" = 'binance_spot' AND \"symbol\" = \
             'A\\'B\\\\C' AND \"interval\" = '5m' AND time >= 10 AND time < 20 ORDER BY time ASC \
             LIMIT 3"
        );
    }

    #[test]
    fn rows_rebuild_exact_trades_and_refuse_bad_text() {
        let answer = serde_json::json!({"series": [{"name": "trades", "columns": [],
            "values": [[1_000_000_007u64, "0.35210000", "12.5", "sell", 7, 1_000_000_000u64, 1_000_000_042u64]]}]});
        let rows = rows(&Channel::Trades, &answer).unwrap();
        assert_eq!(rows[0].time, UnixNanos(1_000_000_007));
        assert_eq!(rows[0].receive_time, UnixNanos(1_000_000_042));
        let HistoryItem::Event(EventKind::Trade(t)) = &rows[0].item else {
            panic!("{rows:?}")
        };
        assert_eq!(t.price.to_string(), "0.35210000");
        assert_eq!(t.qty.to_string(), "12.5");
        let bad = serde_json::json!({"series": [{"values": [[1, "x", "1", "buy", 1, 1, 1]]}]});
        assert!(matches!(
            super::rows(&Channel::Trades, &bad),
            Err(HistoryError::Corrupt(_))
        ));
    }
}
