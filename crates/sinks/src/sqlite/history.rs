//! `GetHistory` answered from the SQLite file.
//!
//! Each page is one indexed range read on the table's primary key, on a read-only
//! connection of its own, in a blocking task. A page is a separate statement rather than
//! one long cursor: a slow client then never holds a read transaction open, which would
//! keep the writer's WAL from being checkpointed.

use std::path::PathBuf;

use raven_hub::Channel;
use raven_model::candle::Candle;
use raven_model::{Bbo, EventKind, Liquidation, MarkPrice, Trade, UnixNanos};
use rusqlite::{params, Connection, Row};
use tokio::sync::mpsc;

use super::schema;
use crate::history::{
    self, HistoryError, HistoryItem, HistoryPages, HistoryQuery, HistoryRow, HistoryStore, Pager,
};

/// Reads history from the file the SQLite store writes.
pub struct SqliteHistory {
    path: PathBuf,
}

impl SqliteHistory {
    pub fn new(path: PathBuf) -> Self {
        SqliteHistory { path }
    }
}

impl HistoryStore for SqliteHistory {
    fn query(&self, query: HistoryQuery) -> HistoryPages {
        let (tx, rx) = mpsc::channel(2);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match schema::open_reader(&path) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.blocking_send(Err(HistoryError::Unavailable(e)));
                    return;
                }
            };
            let mut pager = Pager::new(&query, i64::MAX as u64);
            while let Some((start, end, rows)) = pager.next() {
                let page = read_page(&conn, &query, start, end, rows);
                if let Some(page) = pager.take(rows, page) {
                    if tx.blocking_send(page).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

fn sql(channel: &Channel) -> &'static str {
    match channel {
        Channel::Trades => {
            "SELECT time_ns, exchange_time_ns, receive_time_ns, price, quantity, side, trade_id, \
             trade_id_text \
             FROM trades WHERE venue = ?1 AND symbol = ?2 AND time_ns >= ?3 AND time_ns < ?4 \
             ORDER BY time_ns LIMIT ?5"
        }
        Channel::Bbo => {
            "SELECT time_ns, exchange_time_ns, receive_time_ns, bid_price, bid_quantity, \
             ask_price, ask_quantity, update_id \
             FROM bbo WHERE venue = ?1 AND symbol = ?2 AND time_ns >= ?3 AND time_ns < ?4 \
             ORDER BY time_ns LIMIT ?5"
        }
        Channel::Funding => {
            "SELECT time_ns, exchange_time_ns, receive_time_ns, mark_price, index_price, \
             funding_rate, next_funding_time_ns \
             FROM funding WHERE venue = ?1 AND symbol = ?2 AND time_ns >= ?3 AND time_ns < ?4 \
             ORDER BY time_ns LIMIT ?5"
        }
        Channel::Liquidations => {
            "SELECT time_ns, exchange_time_ns, receive_time_ns, side, price, quantity \
             FROM liquidations WHERE venue = ?1 AND symbol = ?2 AND time_ns >= ?3 \
             AND time_ns < ?4 ORDER BY time_ns LIMIT ?5"
        }
        Channel::Candles(_) | Channel::Book => {
            "SELECT open_time_ns, close_time_ns, open, high, low, close, volume, trade_count, \
             incomplete FROM candles WHERE venue = ?1 AND symbol = ?2 AND open_time_ns >= ?3 \
             AND open_time_ns < ?4 AND interval = ?6 ORDER BY open_time_ns LIMIT ?5"
        }
    }
}

fn read_page(
    conn: &Connection,
    query: &HistoryQuery,
    start: u64,
    end: u64,
    limit: usize,
) -> Result<Vec<HistoryRow>, HistoryError> {
    let unavailable = |e: rusqlite::Error| HistoryError::Unavailable(e.to_string());
    let mut stmt = conn
        .prepare_cached(sql(&query.channel))
        .map_err(unavailable)?;
    let venue = query.instrument.venue.as_str();
    let symbol = query.instrument.symbol.as_str();
    let (start, end, limit) = (start as i64, end as i64, limit as i64);
    let mut rows = match query.channel {
        Channel::Candles(interval) => {
            stmt.query(params![venue, symbol, start, end, limit, interval.as_str()])
        }
        _ => stmt.query(params![venue, symbol, start, end, limit]),
    }
    .map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        out.push(decode(&query.channel, r)?);
    }
    Ok(out)
}

fn decode(channel: &Channel, r: &Row<'_>) -> Result<HistoryRow, HistoryError> {
    let text = |i: usize| -> Result<String, HistoryError> {
        r.get::<_, String>(i)
            .map_err(|e| HistoryError::Corrupt(e.to_string()))
    };
    let int = |i: usize| -> Result<u64, HistoryError> {
        let v: i64 = r.get(i).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
        u64::try_from(v).map_err(|_| HistoryError::Corrupt(format!("negative integer {v}")))
    };
    let event = |kind: EventKind| -> Result<HistoryRow, HistoryError> {
        Ok(HistoryRow {
            time: UnixNanos(int(0)?),
            exchange_time: UnixNanos(int(1)?),
            receive_time: UnixNanos(int(2)?),
            item: HistoryItem::Event(kind),
        })
    };
    match channel {
        Channel::Trades => {
            let id_text = text(7)?;
            let (trade_id, ordinal) = history::trade_id(
                int(6)?,
                Some(&id_text),
                UnixNanos(int(0)?),
                UnixNanos(int(1)?),
            );
            event(EventKind::Trade(Trade {
                price: history::price(&text(3)?)?,
                qty: history::qty(&text(4)?)?,
                aggressor: history::side(&text(5)?)?,
                trade_id,
                ordinal,
            }))
        }
        Channel::Bbo => event(EventKind::Bbo(Bbo {
            bid_price: history::price(&text(3)?)?,
            bid_qty: history::qty(&text(4)?)?,
            ask_price: history::price(&text(5)?)?,
            ask_qty: history::qty(&text(6)?)?,
            update_id: int(7)?,
        })),
        Channel::Funding => {
            let index: Option<String> =
                r.get(4).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
            event(EventKind::MarkPrice(MarkPrice {
                mark_price: history::price(&text(3)?)?,
                index_price: index.as_deref().map(history::price).transpose()?,
                funding_rate: history::rate(&text(5)?)?,
                next_funding_time: UnixNanos(int(6)?),
            }))
        }
        Channel::Liquidations => event(EventKind::Liquidation(Liquidation {
            side: history::side(&text(3)?)?,
            price: history::price(&text(4)?)?,
            qty: history::qty(&text(5)?)?,
        })),
        Channel::Candles(interval) => {
            let open_time = int(0)?;
            Ok(HistoryRow {
                time: UnixNanos(open_time),
                exchange_time: UnixNanos(0),
                receive_time: UnixNanos(0),
                item: HistoryItem::Candle(Candle {
                    interval: *interval,
                    open_time: UnixNanos(open_time),
                    close_time: UnixNanos(int(1)?),
                    open: history::price(&text(2)?)?,
                    high: history::price(&text(3)?)?,
                    low: history::price(&text(4)?)?,
                    close: history::price(&text(5)?)?,
                    volume: history::qty(&text(6)?)?,
                    trade_count: int(7)?,
                    incomplete: int(8)? != 0,
                }),
            })
        }
        Channel::Book => Err(HistoryError::Corrupt("book history is not kept".into())),
    }
}
