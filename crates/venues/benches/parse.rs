//! How fast Binance frames become Raven events, on real recorded frames.
//!
//! Parsing is the per-frame cost every message pays before anything else, so it bounds
//! the adapter's throughput; the depth apply bench adds the sequence check and the book
//! update to show the full cost of a depth frame. Throughput is reported in frames/s.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raven_model::book::OrderBook;
use raven_model::{InstrumentId, UnixNanos, Venue};
use raven_venues::binance::depth::{DepthRules, DepthSync, DiffOutcome, SnapshotOutcome};
use raven_venues::binance::parse::{parse_frame, parse_snapshot, Frame, SymbolMap};

struct Capture {
    frames: Vec<String>,
    snapshots: Vec<(String, String)>,
}

fn capture(name: &str) -> Capture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures")
        .join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
    let mut frames = Vec::new();
    let mut snapshots = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let data = v["data"].as_str().unwrap_or_default().to_owned();
        match v["t"].as_str() {
            Some("recv") => frames.push(data),
            Some("http") => {
                let url = v["url"].as_str().unwrap_or_default();
                if let Some(symbol) = url.split("symbol=").nth(1) {
                    let symbol = symbol.split('&').next().unwrap_or_default();
                    snapshots.push((symbol.to_owned(), data));
                }
            }
            _ => {}
        }
    }
    Capture { frames, snapshots }
}

fn by_stream<'a>(frames: &'a [String], suffix: &str) -> Vec<&'a str> {
    frames
        .iter()
        .filter(|f| {
            f.split('"')
                .nth(3)
                .is_some_and(|stream| stream.ends_with(suffix))
        })
        .map(String::as_str)
        .collect()
}

fn parse_benches(c: &mut Criterion) {
    let sets = [
        (
            "spot",
            "BINANCE.jsonl.zst",
            Venue::new("binance_spot").unwrap(),
            ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"],
        ),
        (
            "usdm",
            "BINANCE_FUTURES.jsonl.zst",
            Venue::new("binance_usdm").unwrap(),
            ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"],
        ),
    ];
    for (label, file, venue, symbols) in sets {
        let cap = capture(file);
        let map = SymbolMap::new(venue, symbols);
        let mut group = c.benchmark_group(format!("parse/{label}"));
        for suffix in ["@depth@100ms", "@aggTrade", "@bookTicker"] {
            let frames = by_stream(&cap.frames, suffix);
            if frames.is_empty() {
                continue;
            }
            group.throughput(Throughput::Elements(frames.len() as u64));
            group.bench_function(suffix.trim_start_matches('@'), |b| {
                b.iter(|| {
                    for f in &frames {
                        black_box(parse_frame(black_box(f), &map, UnixNanos(1)).ok());
                    }
                })
            });
        }
        group.finish();

        // Parse, sequence-check and apply every depth frame to books that start synced
        // from the recorded snapshots.
        let depth = by_stream(&cap.frames, "@depth@100ms");
        let mut synced: HashMap<InstrumentId, (DepthSync, OrderBook)> = HashMap::new();
        for (symbol, body) in &cap.snapshots {
            let Ok(instrument) = map.get(symbol).cloned() else {
                continue;
            };
            let mut sync = DepthSync::new(
                DepthRules::for_market(
                    raven_venues::binance::Market::of(venue).expect("a Binance venue"),
                ),
                10_000,
            );
            let mut book = OrderBook::new();
            if let SnapshotOutcome::Synced { snapshot, .. } =
                sync.on_snapshot(parse_snapshot(body, UnixNanos(0)).unwrap())
            {
                book.apply_snapshot(&snapshot.into_levels(), None).unwrap();
            }
            synced.insert(instrument, (sync, book));
        }
        let mut group = c.benchmark_group(format!("depth_apply/{label}"));
        group.throughput(Throughput::Elements(depth.len() as u64));
        group.bench_function("parse+sync+apply", |b| {
            b.iter_batched(
                || synced.clone(),
                |mut books| {
                    for f in &depth {
                        if let Ok(Frame::Depth { instrument, diff }) =
                            parse_frame(f, &map, UnixNanos(1))
                        {
                            if let Some((sync, book)) = books.get_mut(&instrument) {
                                if let DiffOutcome::Apply(d) = sync.on_diff(diff) {
                                    black_box(book.apply_delta(&d.into_levels()).unwrap());
                                }
                            }
                        }
                    }
                    books
                },
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, parse_benches);
criterion_main!(benches);
