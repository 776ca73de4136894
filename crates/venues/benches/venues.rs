//! How fast each in-stream venue's frames become books and events, on its recorded
//! capture: parse + normalize, and for book updates also the sequence judgment
//! ([`BookSync`]) and the one apply to the book under the venue's checks
//! ([`OrderBook::apply_checked`]: its depth, the message's checksum) — production's
//! per-message book work, done once, without the hub's publishing. Throughput is in
//! messages (frames) per second, per channel.
//!
//! Book updates are measured from books already started by the recorded snapshots
//! (the snapshots, one per book, are applied outside the timing), so the number is the
//! steady-state rate the target (1 M updates/s per core) is about.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use raven_model::book::OrderBook;
use raven_model::{EventKind, InstrumentId, UnixNanos, Venue};
use raven_venues::engine::{
    book_checks, BookSync, BuildSymbolHasher, FrameParser, Parsed, Step, VenueProtocol,
};

/// The `recv` frames of one capture, by connection.
fn frames(file: &str) -> HashMap<String, Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/captures")
        .join(file);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(zstd::decode_all(raw.as_slice()).unwrap()).unwrap();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["t"] == "recv" {
            let conn = v["conn"].as_str().unwrap_or_default().to_owned();
            out.entry(conn)
                .or_default()
                .push(v["data"].as_str().unwrap_or_default().to_owned());
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    BookSnapshot,
    BookUpdate,
    Trades,
    Bbo,
    Other,
}

fn kind(out: &[Parsed]) -> Kind {
    for p in out {
        match p {
            Parsed::Book(b) if b.snapshot => return Kind::BookSnapshot,
            Parsed::Book(_) => return Kind::BookUpdate,
            Parsed::Event(e) => match e.kind {
                EventKind::Trade(_) => return Kind::Trades,
                EventKind::Bbo(_) => return Kind::Bbo,
                _ => {}
            },
            _ => {}
        }
    }
    Kind::Other
}

/// One venue's books as they stand after the recorded snapshots, by instrument as the
/// connection keeps them.
#[derive(Clone)]
struct Books(HashMap<InstrumentId, (BookSync, OrderBook), BuildSymbolHasher>);

impl Books {
    fn apply(&mut self, out: &mut Vec<Parsed>, protocol: &impl VenueProtocol) {
        for p in out.drain(..) {
            let Parsed::Book(msg) = p else { continue };
            let (sync, book) = self.0.entry(msg.instrument.clone()).or_default();
            let checks = book_checks(protocol, msg.checksum);
            if let Step::Apply(mut update) = sync.on_message(msg) {
                let applied = book.apply_checked(&mut update, &checks);
                assert!(applied.is_ok(), "the recording's books are whole");
                black_box(update);
            }
        }
    }
}

fn bench_venue<P: VenueProtocol>(
    c: &mut Criterion,
    label: &str,
    protocol: P,
    symbols: &[&str],
    frames: &[String],
) {
    let symbols: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
    // Classify each frame by what it gives, and start the books from the snapshots.
    let mut parser = protocol.parser(&symbols);
    let mut books = Books(HashMap::default());
    let mut by_kind: HashMap<Kind, Vec<&str>> = HashMap::new();
    let mut out = Vec::new();
    let mut started = false;
    for f in frames {
        if parser.parse(f, UnixNanos(1), &mut out).is_err() {
            out.clear();
            continue;
        }
        let k = kind(&out);
        match k {
            Kind::BookSnapshot => {
                books.apply(&mut out, &protocol);
                started = true;
            }
            // Updates before the first snapshot are not book work yet.
            Kind::BookUpdate if !started => {}
            _ => by_kind.entry(k).or_default().push(f),
        }
        out.clear();
    }
    let mut group = c.benchmark_group(format!("venue/{label}"));
    for (k, name) in [
        (Kind::BookUpdate, "book_update parse+sync+apply"),
        (Kind::Trades, "trades parse"),
        (Kind::Bbo, "bbo parse"),
    ] {
        let Some(set) = by_kind.get(&k).filter(|s| !s.is_empty()) else {
            continue;
        };
        group.throughput(Throughput::Elements(set.len() as u64));
        if k == Kind::BookUpdate {
            group.bench_function(name, |b| {
                b.iter_batched(
                    || (books.clone(), protocol.parser(&symbols), Vec::new()),
                    |(mut books, mut parser, mut out)| {
                        for f in set {
                            if parser.parse(f, UnixNanos(1), &mut out).is_ok() {
                                books.apply(&mut out, &protocol);
                            }
                            out.clear();
                        }
                        books
                    },
                    BatchSize::LargeInput,
                )
            });
        } else {
            group.bench_function(name, |b| {
                b.iter_batched(
                    || (protocol.parser(&symbols), Vec::new()),
                    |(mut parser, mut out)| {
                        for f in set {
                            black_box(parser.parse(f, UnixNanos(1), &mut out).is_ok());
                            out.clear();
                        }
                        parser
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

/// `frame` with its OKX `"checksum":N` fields set to 0, as OKX sends them now.
fn without_checksum(frame: &str) -> String {
    const KEY: &str = "\"checksum\":";
    let mut out = String::with_capacity(frame.len());
    let mut rest = frame;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        out.push('0');
        rest = tail.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

fn venue(name: &str) -> Venue {
    raven_venues::registry::register_venues();
    Venue::new(name).unwrap()
}

fn venues(c: &mut Criterion) {
    use raven_venues::{bybit, coinbase, kraken, okx};

    let cb = frames("COINBASE.jsonl.zst");
    let protocol = coinbase::CoinbaseProtocol::new(
        venue("coinbase"),
        coinbase::DEFAULT_WS_URL,
        &Default::default(),
    );
    bench_venue(
        c,
        "coinbase",
        protocol,
        &["BTC-USD", "ETH-USD"],
        &cb["COINBASE.ws.2"],
    );

    let by = frames("BYBIT.jsonl.zst");
    let linear = bybit::BybitProtocol::new(
        venue("bybit_linear"),
        bybit::DEFAULT_WS_URL_LINEAR,
        &Default::default(),
    );
    let linear_symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"];
    bench_venue(
        c,
        "bybit_linear",
        linear,
        &linear_symbols,
        &by["BYBIT.ws.2"],
    );
    let spot = bybit::BybitProtocol::new(
        venue("bybit_spot"),
        bybit::DEFAULT_WS_URL_SPOT,
        &Default::default(),
    );
    bench_venue(
        c,
        "bybit_spot",
        spot,
        &["BTCUSDT", "ETHUSDT"],
        &by["BYBIT.ws.3"],
    );

    let ok = frames("OKX.jsonl.zst");
    let protocol = okx::OkxProtocol::new(venue("okx"), okx::DEFAULT_WS_URL, &Default::default());
    let okx_symbols = ["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"];
    bench_venue(c, "okx", protocol, &okx_symbols, &ok["OKX.ws.1"]);
    // OKX has sent `"checksum":0` (none) since 2026-06-23: today's feed costs no checksum.
    let today: Vec<String> = ok["OKX.ws.1"].iter().map(|f| without_checksum(f)).collect();
    let protocol = okx::OkxProtocol::new(venue("okx"), okx::DEFAULT_WS_URL, &Default::default());
    bench_venue(c, "okx (checksum 0)", protocol, &okx_symbols, &today);

    let kr = frames("KRAKEN.jsonl.zst");
    let protocol =
        kraken::KrakenProtocol::new(venue("kraken"), kraken::DEFAULT_WS_URL, &Default::default());
    let pairs = [
        "WAVES/EUR",
        "XMR/USD",
        "KSM/XBT",
        "GRT/ETH",
        "SC/EUR",
        "ETH/CHF",
        "OCEAN/XBT",
        "OMG/USD",
        "XBT/CHF",
        "ADA/XBT",
    ];
    let all: Vec<String> = ["KRAKEN.ws.48", "KRAKEN.ws.49", "KRAKEN.ws.50"]
        .iter()
        .flat_map(|c| kr[*c].iter().cloned())
        .collect();
    bench_venue(c, "kraken", protocol, &pairs, &all);
}

criterion_group!(benches, venues);
criterion_main!(benches);
