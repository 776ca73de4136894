//! One book kept in sequence from an in-stream snapshot, as a pure state machine.
//!
//! Most venues (Bybit, OKX, Kraken, Coinbase) send the book's snapshot on the same
//! stream as its deltas, right after the subscription, so there is nothing to buffer
//! or join: the snapshot starts the book, and each delta must follow it by the venue's
//! [`Sequence`] rule. That judgment is all this does. What a venue adds — a checksum
//! of the book after each message, a top-N depth — is checked on the book itself, in
//! the sink ([`raven_model::book::OrderBook::apply_checked`], under the
//! [`raven_model::feed::BookChecks`] the connection builds): the adapter keeps no
//! shadow copy, so each update is applied once.
//!
//! A gap or a message before any snapshot leave the book waiting for the next snapshot
//! ([`BookSync::reset`] is the caller's resubscribe, also after the sink refused an
//! update). Nothing here does I/O or reads a clock; every transition is unit-tested.

use raven_model::feed::BookUpdate;
use raven_model::BookLevels;

use super::protocol::{BookMessage, Sequence};

/// Why the book lost sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The delta does not follow the book: something was lost between them.
    Gap { book: u64, sequence: Sequence },
}

impl Loss {
    /// The reason given to the sink and the resync counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Loss::Gap { .. } => "sequence gap",
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
    /// The book is incomplete: reset it and get a new snapshot.
    Lost(Loss),
}

/// The sync state of one book.
#[derive(Debug, Clone, Default)]
pub struct BookSync {
    /// The book's sequence number once a snapshot started it.
    at: Option<u64>,
    live: bool,
}

impl BookSync {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_live(&self) -> bool {
        self.live
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
        let levels = BookLevels {
            bids: msg.bids,
            asks: msg.asks,
            first_update_id: if msg.snapshot { last } else { first },
            last_update_id: last,
        };
        self.live = true;
        if !matches!(msg.sequence, Sequence::None) {
            self.at = Some(last);
        }
        Step::Apply(if msg.snapshot {
            // The venue's depth, if any, bounds it where it is applied.
            BookUpdate::Snapshot {
                levels,
                limit: None,
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
        let mut s = BookSync::new();
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
        let mut s = BookSync::new();
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
}
