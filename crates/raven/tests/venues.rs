//! Golden replays of the in-stream venues' real sessions through the real connectors.
//!
//! `raven sim --replay` serves each recorded capture on loopback on the venue's own
//! protocol (its endpoints, subscribe/ack, pings, recorded REST listings); `raven serve`
//! connects to it exactly as it would to the exchange. A subscriber is attached before
//! the replay starts; every message goes through the invariant checker, and the books
//! and trades Raven serves must equal a reference built straight from the recorded JSON
//! by the venue's documented rules (`common::venues`). Every book must sync, every
//! checksum the venue sent must be verified and none fail, and no gap may be reported
//! where the recording has none.

mod common;

use std::time::Duration;

use common::venues::{self, VenueReference};
use common::*;
use raven_proto::pb;

/// One venue of a capture: its name, endpoint path on the sim, family keys, and what a
/// correct connector ends with.
struct Case {
    venue: &'static str,
    ws_path: &'static str,
    extra: &'static str,
    reference: VenueReference,
}

/// Replays `capture` and checks every case (venue) of it.
async fn golden(capture: &str, cases: Vec<Case>) {
    let sim_port = free_port();
    let mut config = String::new();
    for c in &cases {
        let symbols: Vec<String> = c.reference.books.keys().map(|s| format!("{s:?}")).collect();
        config.push_str(&format!(
            "[[venues]]\nvenue = \"{}\"\nsymbols = [{}]\nchannels = [\"trades\", \"book\"]\n\
             ws_url = \"ws://127.0.0.1:{sim_port}{}\"\nrest_url = \"http://127.0.0.1:{sim_port}\"\n{}\n",
            c.venue,
            symbols.join(", "),
            c.ws_path,
            c.extra
        ));
    }
    // The sim first: Raven loads the venues' listings from it at start. The replay
    // waits for subscribers, so nothing is played before Raven's connections subscribe.
    let path = captures_dir().join(capture);
    let (_sim, _) = spawn_sim(sim_port, &["--replay", path.to_str().expect("utf-8 path")]);
    let server = spawn_serve(&config, "");
    let mut client = server.client().await;
    let mut topics = Vec::new();
    for c in &cases {
        topics.push(topic(c.venue, "*", pb::Channel::Book, 0));
        topics.push(topic(c.venue, "*", pb::Channel::Trades, 0));
    }
    let mut sub = Subscription::open(&mut client, topics).await;
    // One checker per venue: two venues may list the same symbol (Bybit spot and
    // linear both have BTCUSDT).
    let mut checkers: std::collections::HashMap<String, Checker> = cases
        .iter()
        .map(|c| {
            let checker = Checker {
                no_history: true,
                ..Checker::default()
            };
            (c.venue.to_owned(), checker)
        })
        .collect();
    let done = |checkers: &std::collections::HashMap<String, Checker>| {
        cases.iter().all(|case| {
            let c = &checkers[case.venue];
            case.reference
                .books
                .iter()
                .all(|(s, b)| c.books.get(s) == Some(b))
                && case
                    .reference
                    .trades
                    .iter()
                    .all(|(s, n)| c.trades.get(s).copied().unwrap_or(0) == *n)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !done(&checkers) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{capture}: replay did not converge; trades {:?} of {:?}; log:\n{}",
            checkers.values().map(|c| &c.trades).collect::<Vec<_>>(),
            cases
                .iter()
                .map(|c| &c.reference.trades)
                .collect::<Vec<_>>(),
            server.log()
        );
        if let Some(m) = sub.next(Duration::from_millis(500)).await {
            let m = m.expect("stream ok");
            let venue = m
                .topic
                .as_ref()
                .map(|t| t.venue.clone())
                .unwrap_or_default();
            if let Some(c) = checkers.get_mut(&venue) {
                c.check(&m);
            }
        }
    }
    let status = server.status().await;
    for case in &cases {
        let books: Vec<&pb::BookStatus> = status
            .books
            .iter()
            .filter(|b| b.venue == case.venue)
            .collect();
        assert_eq!(
            books.len(),
            case.reference.books.len(),
            "{:?}",
            status.books
        );
        for b in &books {
            assert_eq!(b.state, "synced", "{b:?}");
            assert_eq!(
                (b.gaps, b.crossed, b.checksum_mismatches),
                (0, 0, 0),
                "{b:?}"
            );
            assert_eq!(b.resyncs, 0, "a false gap resynced {b:?}");
        }
        let verified: u64 = books.iter().map(|b| b.checksums_verified).sum();
        assert_eq!(
            verified, case.reference.checksums,
            "{}: every checksum the venue sent is verified",
            case.venue
        );
        for s in case.reference.books.keys() {
            let book = client
                .get_order_book(pb::GetOrderBookRequest {
                    venue: case.venue.into(),
                    symbol: s.clone(),
                    depth: 0,
                })
                .await
                .expect("GetOrderBook")
                .into_inner();
            assert_eq!(
                &RefBook::from_snapshot(&book),
                &case.reference.books[s],
                "{s}: GetOrderBook differs from the reference"
            );
        }
    }
    // The venues' listings loaded from their recorded REST answers: every instrument
    // is described, and its normalized name serves the same book.
    let listed = client
        .list_instruments(pb::ListInstrumentsRequest::default())
        .await
        .expect("ListInstruments")
        .into_inner()
        .instruments;
    for case in &cases {
        for s in case.reference.books.keys() {
            let i = listed
                .iter()
                .find(|i| i.venue == case.venue && &i.symbol == s)
                .unwrap_or_else(|| panic!("{s} not listed: {listed:?}"));
            assert!(
                !i.normalized_name.is_empty()
                    && !i.tick_size.is_empty()
                    && !i.lot_size.is_empty()
                    && !i.kind.is_empty()
                    && !i.quantity_unit.is_empty(),
                "{i:?}"
            );
            assert_eq!(
                i.quantity_unit == "contracts",
                !i.contract_size.is_empty(),
                "a contract size exactly when quantities are contracts: {i:?}"
            );
            let by_name = client
                .get_order_book(pb::GetOrderBookRequest {
                    venue: case.venue.into(),
                    symbol: i.normalized_name.clone(),
                    depth: 5,
                })
                .await
                .unwrap_or_else(|e| panic!("GetOrderBook {}: {e}", i.normalized_name));
            let by_symbol = client
                .get_order_book(pb::GetOrderBookRequest {
                    venue: case.venue.into(),
                    symbol: s.clone(),
                    depth: 5,
                })
                .await
                .expect("GetOrderBook")
                .into_inner();
            assert_eq!(
                by_name.into_inner().bids,
                by_symbol.bids,
                "{}",
                i.normalized_name
            );
        }
    }
    assert!(
        status.connections.iter().all(|c| c.malformed_frames == 0),
        "{:?}",
        status.connections
    );
    assert!(
        status.instruments.iter().all(|i| i.trade_id_gaps == 0),
        "{:?}",
        status.instruments
    );
    for c in checkers.values() {
        assert_eq!(c.resets.values().sum::<u64>(), 0, "no book was reset");
    }
}

#[tokio::test]
async fn coinbase_capture_replays_exactly() {
    let lines = read_capture("COINBASE.jsonl.zst");
    golden(
        "COINBASE.jsonl.zst",
        vec![Case {
            venue: "coinbase",
            ws_path: "/",
            extra: "",
            reference: venues::coinbase(&lines),
        }],
    )
    .await;
}

#[tokio::test]
async fn bybit_capture_replays_exactly() {
    let lines = read_capture("BYBIT.jsonl.zst");
    golden(
        "BYBIT.jsonl.zst",
        vec![
            Case {
                venue: "bybit_linear",
                ws_path: "/v5/public/linear",
                extra: "book_depth = 200",
                reference: venues::bybit(&lines, &["BYBIT.ws.2"], 200),
            },
            Case {
                venue: "bybit_spot",
                ws_path: "/v5/public/spot",
                extra: "book_depth = 200",
                reference: venues::bybit(&lines, &["BYBIT.ws.3"], 200),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn okx_capture_replays_exactly() {
    let lines = read_capture("OKX.jsonl.zst");
    golden(
        "OKX.jsonl.zst",
        vec![Case {
            venue: "okx",
            ws_path: "/ws/v5/public",
            extra: "",
            reference: venues::okx(&lines),
        }],
    )
    .await;
}

#[tokio::test]
async fn kraken_capture_replays_exactly() {
    let lines = read_capture("KRAKEN.jsonl.zst");
    golden(
        "KRAKEN.jsonl.zst",
        vec![Case {
            venue: "kraken",
            ws_path: "/",
            extra: "book_depth = 1000",
            reference: venues::kraken(&lines, 1000),
        }],
    )
    .await;
}
