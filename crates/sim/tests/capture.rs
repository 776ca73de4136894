//! The capture reader against the real Binance recordings: every line is read and
//! classified, so other crates' tests can build reference books from them.

mod common;

use std::collections::BTreeMap;

use raven_sim::capture::{Capture, CaptureEvent};

fn counts(c: &Capture) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for e in &c.events {
        let t = match e {
            CaptureEvent::Http { .. } => "http",
            CaptureEvent::Connect { .. } => "connect",
            CaptureEvent::Send { .. } => "send",
            CaptureEvent::Recv { .. } => "recv",
        };
        *m.entry(t).or_default() += 1;
    }
    m
}

#[test]
fn reads_the_binance_spot_capture() {
    let c = Capture::open(common::capture("BINANCE.jsonl.zst")).unwrap();
    assert_eq!(c.exchange(), Some("BINANCE"));
    assert_eq!(
        counts(&c),
        BTreeMap::from([("connect", 1), ("http", 5), ("recv", 265)])
    );
    let CaptureEvent::Http { url, data, .. } = &c.events[1] else {
        panic!("second event is not http")
    };
    assert_eq!(
        url,
        "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"
    );
    assert!(data.starts_with("{\"lastUpdateId\":499869752,"));
}

#[test]
fn reads_the_binance_futures_capture() {
    let c = Capture::open(common::capture("BINANCE_FUTURES.jsonl.zst")).unwrap();
    assert_eq!(c.exchange(), Some("BINANCE_FUTURES"));
    assert_eq!(
        counts(&c),
        BTreeMap::from([("connect", 1), ("http", 5), ("recv", 1535)])
    );
}

#[test]
fn reports_a_missing_file() {
    assert!(Capture::open("/nonexistent/capture.jsonl.zst").is_err());
}
