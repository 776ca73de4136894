//! `raven history`: stored trades, BBO, funding, liquidations or candles over a time
//! range, printed as a table, CSV or JSON lines.
//!
//! Times are accepted the way people and scripts write them — RFC 3339
//! (`2026-11-27T09:30:00Z`), a Unix time in s/ms/ns (told apart by magnitude), or an
//! offset back from now (`15m`, `2h 30m`, `7d`) — and printed both ways: RFC 3339 for
//! eyes, nanoseconds for programs. Decimals are printed exactly as the server sends them.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use raven_proto::pb;
use raven_proto::pb::history_record::Payload;
use serde_json::{json, Map, Value};
use tokio_stream::StreamExt;

use crate::client::{parse_channel, side_name};
use crate::dial::ServerArg;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Venue: binance_spot, binance_usdm, binance_coinm.
    pub venue: String,
    /// Exchange symbol, e.g. BTCUSDT.
    pub symbol: String,
    /// trades, bbo, funding, liquidations, candles_1m, candles_5m or candles_1h.
    pub channel: String,
    /// Start (inclusive): RFC 3339, Unix s/ms/ns, or a duration back from now ("1h").
    #[arg(long, default_value = "1h", value_name = "TIME")]
    pub from: String,
    /// End (exclusive), same forms as --from. Default: now.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// The most records to print (the server's maximum is 1000000).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let request = pb::GetHistoryRequest {
        venue: args.venue.clone(),
        symbol: args.symbol.clone(),
        channel: parse_channel(&args.channel)? as i32,
        start_time_ns: parse_time(&args.from, now).context("--from")?,
        end_time_ns: match &args.to {
            Some(t) => parse_time(t, now).context("--to")?,
            None => 0,
        },
        limit: args.limit,
    };
    let mut client = args.server.connect().await?;
    let mut stream = client
        .get_history(request)
        .await
        .map_err(|s| anyhow::anyhow!("GetHistory: {}: {}", s.code(), s.message()))?
        .into_inner();
    let stdout = std::io::stdout();
    let mut out = Printer::new(args.format, std::io::BufWriter::new(stdout.lock()));
    let mut count = 0u64;
    let mut failed = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(record) => {
                out.row(&fields(&record)).map_err(crate::stdout_error)?;
                count += 1;
            }
            Err(s) => {
                failed = Some(anyhow::anyhow!("GetHistory: {}: {}", s.code(), s.message()));
                break;
            }
        }
    }
    // What arrived before a failure is printed, then the failure is reported.
    out.finish().map_err(crate::stdout_error)?;
    if let Some(e) = failed {
        return Err(e);
    }
    if args.format == Format::Table {
        eprintln!("{count} records");
    }
    Ok(ExitCode::SUCCESS)
}

/// Nanoseconds since the Unix epoch for `--from`/`--to` (and `raven sub --since`).
pub fn parse_time(text: &str, now: SystemTime) -> anyhow::Result<u64> {
    let text = text.trim();
    let at = if let Ok(n) = text.parse::<u64>() {
        // Seconds until the year 2286, milliseconds until then, else nanoseconds.
        return Ok(match n {
            0..10_000_000_000 => n * 1_000_000_000,
            10_000_000_000..10_000_000_000_000 => n * 1_000_000,
            _ => n,
        });
    } else if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else if let Ok(d) = humantime::parse_duration(text) {
        now.checked_sub(d)
            .with_context(|| format!("{text:?} reaches before 1970"))?
    } else {
        bail!("{text:?} is not an RFC 3339 time, a Unix time or a duration like 15m");
    };
    let since = at
        .duration_since(UNIX_EPOCH)
        .with_context(|| format!("{text:?} is before 1970"))?;
    u64::try_from(since.as_nanos()).with_context(|| format!("{text:?} is too far ahead"))
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// A record's columns, in print order: kind, times, then the payload's fields.
fn fields(r: &pb::HistoryRecord) -> Vec<(&'static str, Value)> {
    let mut f = vec![
        ("time", json!(rfc3339(r.time_ns))),
        ("time_ns", json!(r.time_ns)),
    ];
    let times = |f: &mut Vec<(&'static str, Value)>| {
        f.push(("exchange_time_ns", json!(r.exchange_time_ns)));
        f.push(("receive_time_ns", json!(r.receive_time_ns)));
    };
    match &r.payload {
        Some(Payload::Trade(t)) => {
            times(&mut f);
            f.extend([
                ("price", json!(t.price)),
                ("quantity", json!(t.quantity)),
                ("aggressor", json!(side_name(t.aggressor))),
                ("trade_id", json!(t.trade_id_text)),
            ]);
        }
        Some(Payload::Bbo(b)) => {
            times(&mut f);
            f.extend([
                ("bid_price", json!(b.bid_price)),
                ("bid_quantity", json!(b.bid_quantity)),
                ("ask_price", json!(b.ask_price)),
                ("ask_quantity", json!(b.ask_quantity)),
                ("update_id", json!(b.update_id)),
            ]);
        }
        Some(Payload::Funding(x)) => {
            times(&mut f);
            f.extend([
                ("mark_price", json!(x.mark_price)),
                ("index_price", json!(x.index_price)),
                ("funding_rate", json!(x.funding_rate)),
                ("next_funding_time_ns", json!(x.next_funding_time_ns)),
            ]);
        }
        Some(Payload::Liquidation(l)) => {
            times(&mut f);
            f.extend([
                ("side", json!(side_name(l.side))),
                ("price", json!(l.price)),
                ("quantity", json!(l.quantity)),
            ]);
        }
        Some(Payload::Candle(c)) => f.extend([
            ("close_time_ns", json!(c.close_time_ns)),
            ("open", json!(c.open)),
            ("high", json!(c.high)),
            ("low", json!(c.low)),
            ("close", json!(c.close)),
            ("volume", json!(c.volume)),
            ("trade_count", json!(c.trade_count)),
            ("incomplete", json!(c.incomplete)),
        ]),
        None => {}
    }
    f
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes rows in one format; the table sizes its columns from the first rows.
struct Printer<W: Write> {
    format: Format,
    out: W,
    header_done: bool,
    /// Table only: rows held until enough are seen to size the columns.
    pending: Vec<Vec<(&'static str, Value)>>,
    widths: Vec<usize>,
}

/// Rows a table looks at before fixing its column widths.
const TABLE_SAMPLE: usize = 200;

impl<W: Write> Printer<W> {
    fn new(format: Format, out: W) -> Self {
        Printer {
            format,
            out,
            header_done: false,
            pending: Vec::new(),
            widths: Vec::new(),
        }
    }

    fn row(&mut self, row: &[(&'static str, Value)]) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                let object: Map<String, Value> = row
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                writeln!(self.out, "{}", Value::Object(object))
            }
            Format::Csv => {
                if !self.header_done {
                    self.header_done = true;
                    let names: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
                    writeln!(self.out, "{}", names.join(","))?;
                }
                let cells: Vec<String> = row.iter().map(|(_, v)| csv_cell(&text(v))).collect();
                writeln!(self.out, "{}", cells.join(","))
            }
            Format::Table => {
                if self.header_done {
                    return self.table_row(row);
                }
                self.pending.push(row.to_vec());
                if self.pending.len() >= TABLE_SAMPLE {
                    self.flush_pending()?;
                }
                Ok(())
            }
        }
    }

    /// The table's columns: everything but the raw nanosecond times, which the table
    /// shows as `time` (the CSV and JSON keep them).
    fn shown(name: &str) -> bool {
        !name.ends_with("_ns")
    }

    fn flush_pending(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let Some(first) = pending.first() else {
            return Ok(());
        };
        let names: Vec<&str> = first
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| Self::shown(k))
            .collect();
        self.widths = names.iter().map(|n| n.len()).collect();
        for row in &pending {
            let cells = row.iter().filter(|(k, _)| Self::shown(k));
            for (w, (_, v)) in self.widths.iter_mut().zip(cells) {
                *w = (*w).max(text(v).len());
            }
        }
        self.header_done = true;
        let header: Vec<String> = names
            .iter()
            .zip(&self.widths)
            .map(|(n, w)| format!("{n:<w$}"))
            .collect();
        writeln!(self.out, "{}", header.join("  ").trim_end())?;
        for row in &pending {
            self.table_row(row)?;
        }
        Ok(())
    }

    fn table_row(&mut self, row: &[(&'static str, Value)]) -> std::io::Result<()> {
        let cells: Vec<String> = row
            .iter()
            .filter(|(k, _)| Self::shown(k))
            .zip(&self.widths)
            .map(|((_, v), w)| format!("{:<w$}", text(v)))
            .collect();
        writeln!(self.out, "{}", cells.join("  ").trim_end())
    }

    fn finish(mut self) -> std::io::Result<()> {
        if self.format == Format::Table {
            self.flush_pending()?;
        }
        self.out.flush()
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            parse_time("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("1700000000123", now).unwrap(),
            1_700_000_000_123_000_000
        );
        assert_eq!(
            parse_time("1700000000123456789", now).unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z", now).unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(parse_time("1h", now).unwrap(), 1_799_996_400_000_000_000);
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_cell("0.35210000"), "0.35210000");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn a_table_aligns_columns_and_hides_raw_nanoseconds() {
        let record = |price: &str| pb::HistoryRecord {
            time_ns: 1_700_000_000_000_000_001,
            exchange_time_ns: 1_700_000_000_000_000_000,
            receive_time_ns: 1_700_000_000_000_500_000,
            payload: Some(Payload::Trade(pb::Trade {
                price: price.into(),
                quantity: "1".into(),
                aggressor: pb::Side::Buy as i32,
                trade_id: 1,
                trade_id_text: "1".into(),
            })),
        };
        let mut buf = Vec::new();
        let mut p = Printer::new(Format::Table, &mut buf);
        p.row(&fields(&record("1.5"))).unwrap();
        p.row(&fields(&record("100.25"))).unwrap();
        p.finish().unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "time                            price   quantity  aggressor  trade_id"
        );
        assert_eq!(
            lines[1],
            "2023-11-14T22:13:20.000000001Z  1.5     1         buy        1"
        );
        assert_eq!(lines.len(), 3);
    }
}
