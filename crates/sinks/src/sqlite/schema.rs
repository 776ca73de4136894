//! The SQLite schema, and the statements that write, prune and open it.
//!
//! Every table is `WITHOUT ROWID` with the primary key `(venue, symbol, time_ns)` (candles
//! add `interval` and use `open_time_ns`): the key *is* the storage order, so a range
//! read by instrument and time walks one B-tree and needs no second index. Decimals are
//! TEXT (exact), integers are SQLite's signed 64 bits (a value beyond `i64::MAX` is
//! refused rather than wrapped), times are Unix nanoseconds.

use std::path::Path;

use raven_hub::Record;
use raven_model::candle::Candle;
use raven_model::{BookLevels, EventKind, InstrumentId, MarketEvent};
use rusqlite::{params, Connection, OpenFlags};

use crate::json;
use crate::series::{self, SeriesClock};

/// Bumped when the schema changes; a newer file is refused, not mangled, and an older
/// one is migrated (version 2 added `candles.incomplete`, version 3
/// `trades.trade_id_text`).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (
    venue TEXT NOT NULL, symbol TEXT NOT NULL,
    PRIMARY KEY (venue, symbol)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trades (
    venue TEXT NOT NULL, symbol TEXT NOT NULL, time_ns INTEGER NOT NULL,
    exchange_time_ns INTEGER NOT NULL, receive_time_ns INTEGER NOT NULL,
    price TEXT NOT NULL, quantity TEXT NOT NULL, side TEXT NOT NULL, trade_id INTEGER NOT NULL,
    trade_id_text TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (venue, symbol, time_ns)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bbo (
    venue TEXT NOT NULL, symbol TEXT NOT NULL, time_ns INTEGER NOT NULL,
    exchange_time_ns INTEGER NOT NULL, receive_time_ns INTEGER NOT NULL,
    bid_price TEXT NOT NULL, bid_quantity TEXT NOT NULL,
    ask_price TEXT NOT NULL, ask_quantity TEXT NOT NULL, update_id INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol, time_ns)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding (
    venue TEXT NOT NULL, symbol TEXT NOT NULL, time_ns INTEGER NOT NULL,
    exchange_time_ns INTEGER NOT NULL, receive_time_ns INTEGER NOT NULL,
    mark_price TEXT NOT NULL, index_price TEXT, funding_rate TEXT NOT NULL,
    next_funding_time_ns INTEGER NOT NULL,
    PRIMARY KEY (venue, symbol, time_ns)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS liquidations (
    venue TEXT NOT NULL, symbol TEXT NOT NULL, time_ns INTEGER NOT NULL,
    exchange_time_ns INTEGER NOT NULL, receive_time_ns INTEGER NOT NULL,
    side TEXT NOT NULL, price TEXT NOT NULL, quantity TEXT NOT NULL,
    PRIMARY KEY (venue, symbol, time_ns)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS candles (
    venue TEXT NOT NULL, symbol TEXT NOT NULL, interval TEXT NOT NULL,
    open_time_ns INTEGER NOT NULL, close_time_ns INTEGER NOT NULL,
    open TEXT NOT NULL, high TEXT NOT NULL, low TEXT NOT NULL, close TEXT NOT NULL,
    volume TEXT NOT NULL, trade_count INTEGER NOT NULL,
    incomplete INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (venue, symbol, interval, open_time_ns)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS book_top (
    venue TEXT NOT NULL, symbol TEXT NOT NULL, time_ns INTEGER NOT NULL,
    exchange_time_ns INTEGER NOT NULL, receive_time_ns INTEGER NOT NULL,
    last_update_id INTEGER NOT NULL, bids TEXT NOT NULL, asks TEXT NOT NULL,
    PRIMARY KEY (venue, symbol, time_ns)) WITHOUT ROWID;
";

/// Each table and the time column retention compares.
const TABLES: [(&str, &str); 6] = [
    ("trades", "time_ns"),
    ("bbo", "time_ns"),
    ("funding", "time_ns"),
    ("liquidations", "time_ns"),
    ("candles", "open_time_ns"),
    ("book_top", "time_ns"),
];

/// How long a statement waits for a lock held by another connection (the writer
/// checkpointing, a user's `sqlite3` shell) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn context(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Opens (creating when missing) the database for writing, in WAL mode.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| context(dir, e))?;
    }
    let conn = Connection::open(path).map_err(|e| context(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| context(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(context(
            path,
            format!("schema version {version} was written by a newer Raven (this one knows {SCHEMA_VERSION})"),
        ));
    }
    // Older files have their tables already. Version 1 lacks the candle flag (their
    // candles were taken for complete, which is all anyone knew); versions 1 and 2 lack
    // the trade id's text (all their trades were numbered).
    let mut migrate = String::new();
    if version == 1 {
        migrate.push_str("ALTER TABLE candles ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0;");
    }
    if (1..=2).contains(&version) && lacks_column(&conn, "trades", "trade_id_text") {
        migrate.push_str(
            "ALTER TABLE trades ADD COLUMN trade_id_text TEXT NOT NULL DEFAULT '';
             UPDATE trades SET trade_id_text = CAST(trade_id AS TEXT);",
        );
    }
    // auto_vacuum only takes effect before the first table exists.
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         BEGIN;
         {SCHEMA}
         {migrate}
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
    .map_err(|e| context(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| context(path, e))?;
    Ok(conn)
}

/// Whether `table` exists without `column` (an older file to migrate).
fn lacks_column(conn: &Connection, table: &str, column: &str) -> bool {
    let Ok(mut columns) = conn.prepare(&format!("PRAGMA table_info({table})")) else {
        return false;
    };
    let names: Vec<String> = columns
        .query_map([], |r| r.get::<_, String>(1))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default();
    !names.is_empty() && !names.iter().any(|n| n == column)
}

/// Opens the database read-only, for history queries.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| context(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| context(path, e))?;
    Ok(conn)
}

/// A batch ready to insert: each storable record with its series time.
pub(crate) struct Rows<'a> {
    items: Vec<(i64, &'a Record)>,
    /// Records that cannot be stored faithfully (an integer beyond `i64`).
    pub(crate) refused: u64,
}

impl<'a> Rows<'a> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn instruments(&self) -> impl Iterator<Item = &'a InstrumentId> + '_ {
        self.items.iter().map(|(_, r)| instrument(r))
    }
}

fn instrument(r: &Record) -> &InstrumentId {
    match r {
        Record::Event(e) => &e.instrument,
        Record::Candle { instrument, .. } | Record::Book { instrument, .. } => instrument,
    }
}

/// Assigns series times and drops what is not stored (open candles, empty books).
pub(crate) fn rows<'a>(records: &'a [Record], clock: &mut SeriesClock) -> Rows<'a> {
    let mut rows = Rows {
        items: Vec::with_capacity(records.len()),
        refused: 0,
    };
    for r in records {
        let time = match r {
            Record::Event(e) => clock.event(e),
            Record::Candle { closed: false, .. } => continue,
            Record::Candle { candle, .. } => candle.open_time.0,
            Record::Book { levels, .. } if levels.bids.is_empty() && levels.asks.is_empty() => {
                continue
            }
            Record::Book {
                levels,
                exchange_time,
                receive_time,
                ..
            } => series::book(*exchange_time, *receive_time, levels.last_update_id),
        };
        match (i64::try_from(time), fits(r)) {
            (Ok(t), true) => rows.items.push((t, r)),
            _ => rows.refused += 1,
        }
    }
    rows
}

/// Whether every integer of the record fits SQLite's signed 64 bits.
fn fits(r: &Record) -> bool {
    let ok = |v: u64| i64::try_from(v).is_ok();
    match r {
        Record::Event(e) => {
            ok(e.exchange_time.0)
                && ok(e.receive_time.0)
                && match &e.kind {
                    EventKind::Trade(t) => t.trade_id.number().is_none_or(ok),
                    EventKind::Bbo(b) => ok(b.update_id),
                    EventKind::MarkPrice(m) => ok(m.next_funding_time.0),
                    EventKind::Liquidation(_) => true,
                }
        }
        Record::Candle { candle: c, .. } => {
            ok(c.open_time.0) && ok(c.close_time.0) && ok(c.trade_count)
        }
        Record::Book {
            levels,
            exchange_time,
            receive_time,
            ..
        } => ok(levels.last_update_id) && ok(exchange_time.0) && ok(receive_time.0),
    }
}

/// Callers checked with [`fits`]; saturates rather than panics regardless.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Inserts a batch in one transaction; `new` instruments join the `series` table.
pub(crate) fn insert(
    conn: &mut Connection,
    rows: &Rows<'_>,
    new: &[InstrumentId],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut series =
            tx.prepare_cached("INSERT OR IGNORE INTO series (venue, symbol) VALUES (?1, ?2)")?;
        for id in new {
            series.execute(params![id.venue.as_str(), id.symbol.as_str()])?;
        }
        let mut trade = tx.prepare_cached(
            "INSERT OR REPLACE INTO trades (venue, symbol, time_ns, exchange_time_ns, \
             receive_time_ns, price, quantity, side, trade_id, trade_id_text) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut bbo = tx.prepare_cached(
            "INSERT OR REPLACE INTO bbo (venue, symbol, time_ns, exchange_time_ns, \
             receive_time_ns, bid_price, bid_quantity, ask_price, ask_quantity, update_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut funding = tx.prepare_cached(
            "INSERT OR REPLACE INTO funding (venue, symbol, time_ns, exchange_time_ns, \
             receive_time_ns, mark_price, index_price, funding_rate, next_funding_time_ns) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut liquidation = tx.prepare_cached(
            "INSERT OR REPLACE INTO liquidations (venue, symbol, time_ns, exchange_time_ns, \
             receive_time_ns, side, price, quantity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut candle = tx.prepare_cached(
            "INSERT OR REPLACE INTO candles (venue, symbol, interval, open_time_ns, \
             close_time_ns, open, high, low, close, volume, trade_count, incomplete) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let mut book = tx.prepare_cached(
            "INSERT OR REPLACE INTO book_top (venue, symbol, time_ns, exchange_time_ns, \
             receive_time_ns, last_update_id, bids, asks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for &(time, record) in &rows.items {
            match record {
                Record::Event(MarketEvent {
                    instrument: id,
                    exchange_time,
                    receive_time,
                    kind,
                }) => {
                    let (v, s, et, rt) = (
                        id.venue.as_str(),
                        id.symbol.as_str(),
                        int(exchange_time.0),
                        int(receive_time.0),
                    );
                    match kind {
                        EventKind::Trade(t) => trade.execute(params![
                            v,
                            s,
                            time,
                            et,
                            rt,
                            t.price.to_string(),
                            t.qty.to_string(),
                            t.aggressor.as_str(),
                            int(t.trade_id.number().unwrap_or_default()),
                            t.trade_id.text()
                        ])?,
                        EventKind::Bbo(b) => bbo.execute(params![
                            v,
                            s,
                            time,
                            et,
                            rt,
                            b.bid_price.to_string(),
                            b.bid_qty.to_string(),
                            b.ask_price.to_string(),
                            b.ask_qty.to_string(),
                            int(b.update_id)
                        ])?,
                        EventKind::MarkPrice(m) => funding.execute(params![
                            v,
                            s,
                            time,
                            et,
                            rt,
                            m.mark_price.to_string(),
                            m.index_price.map(|p| p.to_string()),
                            m.funding_rate.to_string(),
                            int(m.next_funding_time.0)
                        ])?,
                        EventKind::Liquidation(l) => liquidation.execute(params![
                            v,
                            s,
                            time,
                            et,
                            rt,
                            l.side.as_str(),
                            l.price.to_string(),
                            l.qty.to_string()
                        ])?,
                    };
                }
                Record::Candle {
                    instrument: id,
                    candle: c,
                    ..
                } => {
                    let Candle {
                        interval,
                        close_time,
                        open,
                        high,
                        low,
                        close,
                        volume,
                        trade_count,
                        incomplete,
                        ..
                    } = c;
                    candle.execute(params![
                        id.venue.as_str(),
                        id.symbol.as_str(),
                        interval.as_str(),
                        time,
                        int(close_time.0),
                        open.to_string(),
                        high.to_string(),
                        low.to_string(),
                        close.to_string(),
                        volume.to_string(),
                        int(*trade_count),
                        *incomplete
                    ])?;
                }
                Record::Book {
                    instrument: id,
                    levels:
                        BookLevels {
                            bids,
                            asks,
                            last_update_id,
                            ..
                        },
                    exchange_time,
                    receive_time,
                } => {
                    book.execute(params![
                        id.venue.as_str(),
                        id.symbol.as_str(),
                        time,
                        int(exchange_time.0),
                        int(receive_time.0),
                        int(*last_update_id),
                        json::levels(bids).to_string(),
                        json::levels(asks).to_string()
                    ])?;
                }
            }
        }
    }
    tx.commit()
}

/// Deletes rows older than `cutoff` (Unix ns) one instrument and table at a time, then
/// returns the freed pages to the file system. Returns the rows deleted.
pub(crate) fn prune(conn: &mut Connection, cutoff: u64) -> rusqlite::Result<u64> {
    let cutoff = int(cutoff);
    let series: Vec<(String, String)> = conn
        .prepare("SELECT venue, symbol FROM series")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0u64;
    for (venue, symbol) in &series {
        for (table, column) in TABLES {
            let n = conn.execute(
                &format!("DELETE FROM {table} WHERE venue = ?1 AND symbol = ?2 AND {column} < ?3"),
                params![venue, symbol, cutoff],
            )?;
            deleted += n as u64;
        }
    }
    if deleted > 0 {
        // `incremental_vacuum` frees one page per step: run it to the end.
        let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        drop(steps);
        drop(vacuum);
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Level;

    #[test]
    fn book_levels_are_exact_json() {
        let l = |p: &str, q: &str| Level {
            price: raven_model::Price::parse(p).unwrap(),
            qty: raven_model::Qty::parse(q).unwrap(),
        };
        // The `book_top` columns: compact JSON, readable with SQLite's `json_each`.
        assert_eq!(json::levels(&[]).to_string(), "[]");
        assert_eq!(
            json::levels(&[l("1.50", "2"), l("1.4", "0.001")]).to_string(),
            r#"[["1.50","2"],["1.4","0.001"]]"#
        );
    }
}
