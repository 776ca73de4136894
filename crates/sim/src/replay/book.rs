//! The simulator's own copy of one recorded book, kept as text.
//!
//! A client that subscribes to a book after the recorded snapshot went by must get a
//! snapshot of the book *as it is now* (recorded snapshot + every delta played since),
//! and the recorded deltas that follow must join it exactly: same levels, and for
//! venues with a checksum (OKX, Kraken) the same text, because their checksums are
//! computed over the decimal strings the exchange printed ("0.15000000", not "0.15").
//! So each level keeps the exchange's own text for price and size, plus whatever else
//! the venue prints per level (OKX's order count, Kraken's timestamp, Coinbase's event
//! time) in `extra`, and the venue's module writes snapshots from that.
//!
//! Ordering uses [`Price`] (exact decimals), so "1.0" and "1.00" are one level; the
//! text kept is the one the exchange printed last for it. The book keeps the venue's
//! depth when it has one (Kraken `book-1000`, OKX `books` 400, Bybit `orderbook.200`):
//! those venues send no removal for a level pushed beyond the depth, so the copy must
//! drop it itself, as the venues' documentation tells clients to.

use std::collections::BTreeMap;

use anyhow::Result;
use raven_model::book::OrderBook;
use raven_model::{BookLevels, Level, Price, Qty};

/// One recorded level change: the exchange's text, parsed once at load time.
#[derive(Debug, Clone)]
pub(crate) struct RecordedLevel {
    pub price: Price,
    pub price_text: Box<str>,
    pub qty_text: Box<str>,
    /// Zero size: the level is removed.
    pub remove: bool,
    /// What else the venue prints for the level (see the module docs).
    pub extra: Box<str>,
}

impl RecordedLevel {
    pub fn new(price: &str, qty: &str, extra: impl Into<Box<str>>) -> Result<RecordedLevel> {
        Ok(RecordedLevel {
            price: Price::parse(price)?,
            price_text: price.into(),
            remove: Qty::parse(qty)?.is_zero(),
            qty_text: qty.into(),
            extra: extra.into(),
        })
    }
}

/// One level of the simulator's book.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub price: Box<str>,
    pub qty: Box<str>,
    pub extra: Box<str>,
}

/// The book content of one recorded frame.
#[derive(Debug, Clone)]
pub(crate) struct BookFrame {
    /// Replaces the book (a snapshot) instead of changing it (a delta).
    pub snapshot: bool,
    pub bids: Vec<RecordedLevel>,
    pub asks: Vec<RecordedLevel>,
    /// The frame's update id when the venue's ids only grow (Binance `u`, Bybit `u`): a
    /// delta at or below the book's id is stale and not applied.
    pub update_id: Option<u64>,
    /// Frame fields a venue's snapshot writer needs later, as printed (Bybit `ts`,
    /// `cts`, `seq`; OKX `ts`, `seqId`; Kraken `channelID`; Coinbase `timestamp`).
    pub meta: Vec<(&'static str, String)>,
    /// The frame carries a checksum (a target of the corrupt-checksum fault).
    pub checksum: bool,
}

/// The simulator's book of one (endpoint, book channel, symbol).
#[derive(Debug, Clone, Default)]
pub(crate) struct SimBook {
    bids: BTreeMap<Price, Entry>,
    asks: BTreeMap<Price, Entry>,
    depth: Option<usize>,
    update_id: Option<u64>,
    meta: Vec<(&'static str, String)>,
    started: bool,
}

impl SimBook {
    /// An empty book that keeps at most `depth` levels per side.
    pub fn new(depth: Option<usize>) -> SimBook {
        SimBook {
            depth,
            ..SimBook::default()
        }
    }

    /// True once a snapshot was applied: only then does the book say anything.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The update id of the last snapshot or delta applied (venues with growing ids).
    pub fn update_id(&self) -> Option<u64> {
        self.update_id
    }

    /// The last value of a frame field the venue remembers (see [`BookFrame::meta`]).
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Applies a recorded frame. Deltas before the first snapshot and stale deltas
    /// (update id not above the book's) change nothing; returns whether it applied.
    pub fn apply(&mut self, frame: &BookFrame) -> bool {
        if frame.snapshot {
            self.bids.clear();
            self.asks.clear();
            self.started = true;
        } else if !self.started
            || matches!((frame.update_id, self.update_id), (Some(u), Some(last)) if u <= last)
        {
            return false;
        }
        set_levels(&mut self.bids, &frame.bids);
        set_levels(&mut self.asks, &frame.asks);
        if let Some(depth) = self.depth {
            while self.bids.len() > depth {
                self.bids.pop_first();
            }
            while self.asks.len() > depth {
                self.asks.pop_last();
            }
        }
        if frame.update_id.is_some() {
            self.update_id = frame.update_id;
        }
        for (name, value) in &frame.meta {
            match self.meta.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1.clone_from(value),
                None => self.meta.push((name, value.clone())),
            }
        }
        true
    }

    /// Starts the book from a REST snapshot (Binance) with its `lastUpdateId`.
    pub fn start_from(&mut self, bids: &[RecordedLevel], asks: &[RecordedLevel], id: u64) {
        self.apply(&BookFrame {
            snapshot: true,
            bids: bids.to_vec(),
            asks: asks.to_vec(),
            update_id: Some(id),
            meta: Vec::new(),
            checksum: false,
        });
    }

    /// Number of bid and ask levels.
    pub fn len(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }

    /// Bids from best to worst.
    pub fn bids(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.bids.values().rev()
    }

    /// Asks from best to worst.
    pub fn asks(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.asks.values()
    }

    /// The book as Raven's model sees it (for tests and `Sim::book`); `None` when its
    /// prices cannot make one (see [`raven_model::feed::BookRejected::PriceRange`]).
    pub fn to_order_book(&self) -> Option<OrderBook> {
        let level = |e: &Entry| {
            Some(Level {
                price: Price::parse(&e.price).ok()?,
                qty: Qty::parse(&e.qty).ok()?,
            })
        };
        let mut book = OrderBook::new();
        book.apply_snapshot(
            &BookLevels {
                bids: self.bids().filter_map(level).collect(),
                asks: self.asks().filter_map(level).collect(),
                first_update_id: self.update_id.unwrap_or(0),
                last_update_id: self.update_id.unwrap_or(0),
            },
            None,
        )
        .ok()?;
        Some(book)
    }
}

fn set_levels(side: &mut BTreeMap<Price, Entry>, levels: &[RecordedLevel]) {
    for l in levels {
        if l.remove {
            side.remove(&l.price);
        } else {
            side.insert(
                l.price,
                Entry {
                    price: l.price_text.clone(),
                    qty: l.qty_text.clone(),
                    extra: l.extra.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(p: &str, q: &str) -> RecordedLevel {
        RecordedLevel::new(p, q, "").unwrap()
    }

    fn frame(snapshot: bool, bids: &[(&str, &str)], id: Option<u64>) -> BookFrame {
        BookFrame {
            snapshot,
            bids: bids.iter().map(|(p, q)| level(p, q)).collect(),
            asks: Vec::new(),
            update_id: id,
            meta: vec![("ts", format!("{id:?}"))],
            checksum: false,
        }
    }

    fn bid_text(b: &SimBook) -> Vec<(String, String)> {
        b.bids()
            .map(|e| (e.price.to_string(), e.qty.to_string()))
            .collect()
    }

    #[test]
    fn snapshot_deltas_depth_and_stale_ids() {
        let mut b = SimBook::new(Some(2));
        assert!(
            !b.apply(&frame(false, &[("1.0", "1")], Some(1))),
            "before snapshot"
        );
        assert!(b.apply(&frame(true, &[("1.0", "1"), ("2.0", "1")], Some(5))));
        // A third level pushes the worst out; removal and the exchange's text.
        assert!(b.apply(&frame(false, &[("3.00", "0.50"), ("2.0", "0")], Some(6))));
        assert!(b.apply(&frame(false, &[("0.5", "9")], Some(7))));
        assert_eq!(
            bid_text(&b),
            [("3.00".into(), "0.50".into()), ("1.0".into(), "1".into())]
        );
        assert!(!b.apply(&frame(false, &[("9", "1")], Some(7))), "stale");
        assert_eq!(b.update_id(), Some(7));
        assert_eq!(b.meta("ts"), Some("Some(7)"));
        let ob = b.to_order_book().unwrap();
        assert_eq!(ob.len(), (2, 0));
        assert_eq!(ob.best_bid().unwrap().price.to_string(), "3.00");
    }
}
