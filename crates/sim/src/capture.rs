//! Reader for recorded exchange sessions (the cryptofeed "format 2" capture files).
//!
//! A capture is the honest reference for what an exchange sends: every REST body and
//! every WebSocket frame of a real session, in the order it happened. The simulator
//! replays one, and tests of other crates read one to build reference books, so this
//! reader is deliberately plain: it decodes the file (zstd-compressed or not), keeps the
//! first line as an untyped JSON header and turns every other line into a
//! [`CaptureEvent`] whose `data` is the exchange's raw text, byte for byte.
//!
//! File layout: one JSON object per line. The first line is
//! `{"t":"header","format":2,"exchange":"BINANCE",...}`; every later line has a `t` of
//! `http`, `connect`, `send` or `recv` (see the variants).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One recorded session: its header and its events in recorded order.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The first line, as written (`exchange`, `config`, `recorded`, ...).
    pub header: serde_json::Value,
    pub events: Vec<CaptureEvent>,
}

/// One line of a capture. `ts` is the local receive time in Unix seconds; `conn` names
/// the connection (REST pseudo-connections and WebSocket connections interleave).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum CaptureEvent {
    /// A REST response body `data` (raw text) for `url` (with its query string).
    Http {
        conn: String,
        ts: f64,
        url: String,
        data: String,
    },
    /// A WebSocket connection opened to `addr` (the full URL, streams included).
    Connect { conn: String, ts: f64, addr: String },
    /// A frame the client sent (subscribe messages).
    Send { conn: String, ts: f64, data: String },
    /// A frame received from the exchange, raw text.
    Recv { conn: String, ts: f64, data: String },
}

/// zstd frames start with these four bytes; anything else is read as plain JSONL.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

impl Capture {
    /// Reads a whole capture file (`.jsonl.zst` or plain `.jsonl`).
    pub fn open(path: impl AsRef<Path>) -> Result<Capture> {
        let path = path.as_ref();
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("opening capture {}", path.display()))?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic)?;
        let file = std::io::Cursor::new(magic[..n].to_vec()).chain(file);
        let reader: Box<dyn BufRead> = if n == 4 && magic == ZSTD_MAGIC {
            Box::new(BufReader::new(zstd::Decoder::new(file)?))
        } else {
            Box::new(BufReader::new(file))
        };
        Self::read(reader).with_context(|| format!("reading capture {}", path.display()))
    }

    /// Parses capture lines from any reader (decompressed JSONL).
    pub fn read(reader: impl BufRead) -> Result<Capture> {
        let mut lines = reader.lines().enumerate();
        let header = match lines.next() {
            Some((_, line)) => serde_json::from_str::<serde_json::Value>(&line?)
                .context("line 1: header is not JSON")?,
            None => bail!("empty capture"),
        };
        if header.get("t").and_then(|t| t.as_str()) != Some("header") {
            bail!("line 1 is not a capture header");
        }
        let mut events = Vec::new();
        for (i, line) in lines {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(&line).with_context(|| format!("line {}", i + 1))?;
            events.push(event);
        }
        Ok(Capture { header, events })
    }

    /// The `exchange` named in the header (`BINANCE`, `BINANCE_FUTURES`, ...).
    pub fn exchange(&self) -> Option<&str> {
        self.header.get("exchange").and_then(|e| e.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_lines() {
        let text = concat!(
            "{\"t\":\"header\",\"format\":2,\"exchange\":\"X\"}\n",
            "{\"t\":\"http\",\"conn\":\"h\",\"ts\":1.5,\"url\":\"https://x/a?b=1\",\"data\":\"{}\"}\n",
            "{\"t\":\"connect\",\"conn\":\"w\",\"ts\":2.0,\"addr\":\"wss://x/s\"}\n",
            "{\"t\":\"send\",\"conn\":\"w\",\"ts\":2.1,\"addr\":\"wss://x/s\",\"data\":\"hi\"}\n",
            "{\"t\":\"recv\",\"conn\":\"w\",\"ts\":2.2,\"data\":\"{\\\"a\\\":1}\"}\n",
        );
        let c = Capture::read(text.as_bytes()).unwrap();
        assert_eq!(c.exchange(), Some("X"));
        assert_eq!(c.events.len(), 4);
        assert_eq!(
            c.events[3],
            CaptureEvent::Recv {
                conn: "w".into(),
                ts: 2.2,
                data: "{\"a\":1}".into()
            }
        );
    }

    #[test]
    fn refuses_a_file_without_header() {
        assert!(Capture::read("{\"t\":\"recv\"}\n".as_bytes()).is_err());
        assert!(Capture::read("".as_bytes()).is_err());
    }
}
