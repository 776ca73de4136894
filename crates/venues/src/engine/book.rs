//! One book kept in sequence from an in-stream snapshot, as a pure state machine.
//!
//! Most venues (Bybit, OKX, Kraken, Coinbase) send the book's snapshot on the same
//! stream as its deltas, right after the subscription, so there is nothing to buffer
//! or join: the snapshot starts the book, and each delta must follow it by the venue's
//! [`Sequence`] rule. What a venue adds is checked here too:
//! * a **checksum** ([`ChecksumFn`]) of the book after each message: the book is kept
//!   here as well (a shadow of the sink's), the venue's function computes the value,
//!   and any difference means Raven's copy is wrong;
//! * a **depth** (top-N books): levels pushed beyond N are dropped, and the delta passed
//!   on carries their removal, so the sink's book and every subscriber's stay equal to
//!   this one (the venue sends no removal for them).
//!
//! A gap, a failed checksum or a message before any snapshot leave the book waiting for
//! the next snapshot ([`BookSync::reset`] is the caller's resubscribe). Nothing here does
//! I/O or reads a clock; every transition is unit-tested.

use raven_model::book::OrderBook;
use raven_model::feed::BookUpdate;
use raven_model::BookLevels;

use super::protocol::{BookMessage, ChecksumFn, Sequence};

/// Why the book lost sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The delta does not follow the book: something was lost between them.
    Gap { book: u64, sequence: Sequence },
    /// The book after the message does not have the venue's checksum.
    Checksum { expected: u32, computed: u32 },
}

impl Loss {
    /// The reason given to the sink and the resync counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Loss::Gap { .. } => "sequence gap",
            Loss::Checksum { .. } => "checksum mismatch",
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Pass this update to the sink.
    Apply(BookUpdate),
    /// No snapshot yet (the book is waiting for one): dropped.
    Waiting,
    /// A repeat of what the book already holds: dropped.
    Stale,
    /// The book is wrong or incomplete: reset it and get a new snapshot.
    Lost(Loss),
}

/// The sync state of one book.
#[derive(Debug, Clone)]
pub struct BookSync {
    /// The book's sequence number once a snapshot started it.
    at: Option<u64>,
    live: bool,
    /// The shadow book, kept when there is a checksum or a depth to keep.
    book: Option<OrderBook>,
    checksum: Option<ChecksumFn>,
    depth: Option<usize>,
    checksums_verified: u64,
}

impl BookSync {
    pub fn new(checksum: Option<ChecksumFn>, depth: Option<usize>) -> Self {
        Self {
            at: None,
            live: false,
            book: (checksum.is_some() || depth.is_some()).then(OrderBook::new),
            checksum,
            depth,
            checksums_verified: 0,
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Checksums that matched so far.
    pub fn checksums_verified(&self) -> u64 {
        self.checksums_verified
    }

    /// Forget the book; the next snapshot starts it again.
    pub fn reset(&mut self) {
        self.live = false;
        self.at = None;
    }

    /// Judges one message and says what the sink must do.
    pub fn on_message(&mut self, msg: BookMessage) -> Step {
        let (first, last) = match msg.sequence {
            Sequence::None => (0, 0),
            Sequence::Contiguous { first, last } => (first, last),
            Sequence::Chained { prev, last } => (prev, last),
        };
        if !msg.snapshot {
            if !self.live {
                return Step::Waiting;
            }
            if let Some(b) = self.at {
                match msg.sequence {
                    Sequence::None => {}
                    Sequence::Contiguous { first, last } => {
                        if last <= b {
                            return Step::Stale;
                        }
                        if first != b + 1 {
                            self.reset();
                            return Step::Lost(Loss::Gap {
                                book: b,
                                sequence: msg.sequence,
                            });
                        }
                    }
                    Sequence::Chained { prev, .. } => {
                        // Each message names its predecessor, and a venue that chains
                        // (OKX) never repeats one: any other predecessor is a hole,
                        // even a lower one (its numbering restarted after the lost
                        // message that announced it).
                        if prev != b {
                            self.reset();
                            return Step::Lost(Loss::Gap {
                                book: b,
                                sequence: msg.sequence,
                            });
                        }
                    }
                }
            }
        }
        let mut levels = BookLevels {
            bids: msg.bids,
            asks: msg.asks,
            first_update_id: if msg.snapshot { last } else { first },
            last_update_id: last,
        };
        if let Some(book) = &mut self.book {
            if msg.snapshot {
                book.apply_snapshot(&levels, self.depth);
                if let Some(depth) = self.depth {
                    // A snapshot deeper than the book keeps: only N per side count.
                    book.truncate(depth, &mut BookLevels::default());
                    levels.bids = book.bids().collect();
                    levels.asks = book.asks().collect();
                }
            } else {
                book.apply_delta(&levels);
                if let Some(depth) = self.depth {
                    book.truncate(depth, &mut levels);
                }
            }
            if let (Some(expected), Some(checksum)) = (msg.checksum, self.checksum) {
                let computed = checksum(book);
                if computed != expected {
                    self.reset();
                    return Step::Lost(Loss::Checksum { expected, computed });
                }
                self.checksums_verified += 1;
            }
        }
        self.live = true;
        if !matches!(msg.sequence, Sequence::None) {
            self.at = Some(last);
        }
        Step::Apply(if msg.snapshot {
            BookUpdate::Snapshot {
                levels,
                limit: self.depth,
            }
        } else {
            BookUpdate::Delta(levels)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{InstrumentId, Level, Price, Qty, UnixNanos, Venue};

    fn lv(p: &str, q: &str) -> Level {
        Level {
            price: Price::parse(p).unwrap(),
            qty: Qty::parse(q).unwrap(),
        }
    }

    fn msg(snapshot: bool, sequence: Sequence, bids: Vec<Level>, asks: Vec<Level>) -> BookMessage {
        BookMessage {
            instrument: InstrumentId::new(Venue::new("test_book").unwrap(), "X"),
            snapshot,
            bids,
            asks,
            sequence,
            checksum: None,
            exchange_time: UnixNanos(1),
            receive_time: UnixNanos(2),
        }
    }

    fn contiguous(first: u64, last: u64) -> Sequence {
        Sequence::Contiguous { first, last }
    }

    #[test]
    fn deltas_wait_for_a_snapshot_then_follow_it() {
        let mut s = BookSync::new(None, None);
        assert_eq!(
            s.on_message(msg(false, contiguous(5, 5), vec![], vec![])),
            Step::Waiting
        );
        assert!(matches!(
            s.on_message(msg(true, contiguous(10, 10), vec![lv("1", "1")], vec![])),
            Step::Apply(BookUpdate::Snapshot { .. })
        ));
        assert_eq!(
            s.on_message(msg(false, contiguous(10, 10), vec![], vec![])),
            Step::Stale
        );
        assert!(matches!(
            s.on_message(msg(false, contiguous(11, 11), vec![], vec![])),
            Step::Apply(BookUpdate::Delta(_))
        ));
        assert_eq!(
            s.on_message(msg(false, contiguous(13, 13), vec![], vec![])),
            Step::Lost(Loss::Gap {
                book: 11,
                sequence: contiguous(13, 13)
            })
        );
        assert!(!s.is_live());
        assert_eq!(
            s.on_message(msg(false, contiguous(14, 14), vec![], vec![])),
            Step::Waiting
        );
    }

    #[test]
    fn chained_sequences_accept_empty_updates_and_catch_breaks() {
        let mut s = BookSync::new(None, None);
        let chained = |prev, last| Sequence::Chained { prev, last };
        s.on_message(msg(true, chained(u64::MAX, 100), vec![], vec![]));
        // An update without change repeats its sequence number.
        assert!(matches!(
            s.on_message(msg(false, chained(100, 100), vec![], vec![])),
            Step::Apply(_)
        ));
        assert!(matches!(
            s.on_message(msg(false, chained(100, 107), vec![], vec![])),
            Step::Apply(_)
        ));
        assert!(matches!(
            s.on_message(msg(false, chained(108, 110), vec![], vec![])),
            Step::Lost(_)
        ));
        // A lower predecessor is a hole too (a lost message restarted the numbering).
        s.on_message(msg(true, chained(u64::MAX, 100), vec![], vec![]));
        assert!(matches!(
            s.on_message(msg(false, chained(3, 5), vec![], vec![])),
            Step::Lost(_)
        ));
    }

    #[test]
    fn a_top_n_book_drops_what_falls_beyond_n_and_says_so() {
        let mut s = BookSync::new(None, Some(2));
        let snap = msg(
            true,
            Sequence::None,
            vec![lv("10", "1"), lv("9", "1"), lv("8", "1")],
            vec![lv("11", "1")],
        );
        let Step::Apply(BookUpdate::Snapshot { levels, limit }) = s.on_message(snap) else {
            panic!()
        };
        assert_eq!(levels.bids, vec![lv("10", "1"), lv("9", "1")]);
        assert_eq!(limit, Some(2));
        let Step::Apply(BookUpdate::Delta(levels)) =
            s.on_message(msg(false, Sequence::None, vec![lv("10.5", "2")], vec![]))
        else {
            panic!()
        };
        // The new best bid pushed 9 out: its removal travels with the delta.
        assert_eq!(levels.bids, vec![lv("10.5", "2"), lv("9", "0")]);
    }

    #[test]
    fn a_checksum_that_differs_loses_the_book() {
        fn best_bid_qty(book: &OrderBook) -> u32 {
            book.best_bid()
                .map_or(0, |l| l.qty.value().mantissa() as u32)
        }
        let mut s = BookSync::new(Some(best_bid_qty), None);
        let mut m = msg(true, Sequence::None, vec![lv("10", "3")], vec![]);
        m.checksum = Some(3);
        assert!(matches!(s.on_message(m), Step::Apply(_)));
        let mut m = msg(false, Sequence::None, vec![lv("10", "4")], vec![]);
        m.checksum = Some(5);
        assert_eq!(
            s.on_message(m),
            Step::Lost(Loss::Checksum {
                expected: 5,
                computed: 4
            })
        );
        assert_eq!(s.checksums_verified(), 1);
    }
}
