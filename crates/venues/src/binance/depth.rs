//! Joining Binance's depth diff stream to a REST snapshot, as a pure state machine.
//!
//! A Binance `@depth` stream only sends changes. To build a book, a client buffers the
//! diffs, fetches a REST snapshot, throws away the diffs the snapshot already contains,
//! and applies the rest, checking on every diff that none was lost in between. If the
//! check fails, the copy is wrong and must be rebuilt from a new snapshot. Getting this
//! wrong silently produces a plausible but false book, so the procedure lives here with
//! no I/O and no clock: every transition is a function of its inputs and is unit-tested.
//!
//! The rules, from Binance's "How to manage a local order book correctly" pages as
//! currently published (developers.binance.com):
//!
//! **Spot** (`/api/v3/depth`, `<symbol>@depth`; diffs carry `U` first and `u` last id):
//! 1. Buffer diffs; note the `U` of the first one.
//! 2. Fetch a snapshot. If its `lastUpdateId` is older than that first `U`, fetch again.
//! 3. Discard buffered diffs with `u <= lastUpdateId`; the first remaining one then
//!    contains `lastUpdateId + 1` in `[U; u]`.
//! 4. Apply every diff with the update procedure: ignore a diff with `u <=` the book's
//!    update id; if `U >` the book's id + 1 something was lost: discard the book and
//!    restart; otherwise apply it and set the book's id to `u`.
//!
//! Step 2's "strictly less than `U`" is implemented as `U > lastUpdateId + 1`: a
//! snapshot at `U - 1` is followed exactly by the diff starting at `U`, so it joins, and
//! the update procedure of step 4 reaches the same verdict for every other case. In
//! steady state this is the classic continuity rule `U == previous u + 1`.
//!
//! **USD-M and COIN-M futures** (`/fapi/v1/depth`, `/dapi/v1/depth`; diffs also carry
//! `pu`, the previous diff's `u`):
//! 1. Buffer diffs, fetch a snapshot.
//! 2. Drop diffs with `u < lastUpdateId`.
//! 3. The first applied diff must straddle the snapshot: `U <= lastUpdateId <= u`.
//! 4. Every later diff must have `pu ==` the previous diff's `u`, otherwise restart from
//!    the snapshot step.
//!
//! Futures update ids are not contiguous per symbol, which is why the futures rules
//! chain on `pu` instead of `U == u + 1`. For the same reason step 3 has a case the
//! published steps leave out: a snapshot taken while the book was quiet reflects
//! exactly the last diff, `lastUpdateId ==` its `u`, and the next diff then starts
//! *after* it (`U > lastUpdateId`) with `pu == lastUpdateId`. That diff continues the
//! snapshot exactly, so it joins; refusing it would resync a quiet book for nothing.
//!
//! Beyond the published steps, two guards: a diff whose `u` is not newer than the book
//! is a duplicate and is ignored (it cannot carry anything the book lacks), and the
//! pre-snapshot buffer is bounded, because a snapshot that never arrives must not grow
//! memory without limit.
//!
//! A snapshot may arrive before any diff (a quiet symbol): the book goes live at once at
//! `lastUpdateId`, and the first diff is judged by the same rules when it comes.
//!
//! **Hand-over.** When a connection is replaced before its age limit, the live book is
//! fed by both connections for a while ([`DepthSync::begin_handover`]): the new one's
//! diffs are joined to the book the old one built, with no new snapshot. A standby diff
//! the book already contains is stale (the standby is behind); one that continues the
//! book exactly switches the book to the standby, after which the old connection's
//! diffs are ignored; one that runs ahead is held until the old connection has caught up
//! with it (module docs of [`crate::sequencer`] explain why "first arrival wins" would
//! lose data).

use std::collections::VecDeque;

use raven_model::{BookLevels, Level, UnixNanos};

use super::market::Market;

use crate::sequencer::Source;

/// Which of Binance's two join procedures applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthRules {
    /// `U <= lastUpdateId + 1 <= u` to join, `U == prev u + 1` to continue.
    Spot,
    /// `U <= lastUpdateId <= u` to join, `pu == prev u` to continue.
    Futures,
}

impl DepthRules {
    pub fn for_market(market: Market) -> Self {
        if market.is_futures() {
            DepthRules::Futures
        } else {
            DepthRules::Spot
        }
    }
}

/// One `depthUpdate` event, already parsed into exact levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthDiff {
    /// `U`: first update id in the event.
    pub first_update_id: u64,
    /// `u`: last update id in the event.
    pub last_update_id: u64,
    /// `pu` (futures only): the previous event's `u`.
    pub prev_last_update_id: Option<u64>,
    pub exchange_time: UnixNanos,
    pub receive_time: UnixNanos,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

impl DepthDiff {
    /// The levels as the model's delta, with the update-id range set.
    pub fn into_levels(self) -> BookLevels {
        BookLevels {
            bids: self.bids,
            asks: self.asks,
            first_update_id: self.first_update_id,
            last_update_id: self.last_update_id,
        }
    }
}

/// A REST depth snapshot, already parsed into exact levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthSnapshot {
    pub last_update_id: u64,
    /// Futures snapshots carry `E`; spot snapshots have no time, so 0.
    pub exchange_time: UnixNanos,
    pub receive_time: UnixNanos,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

impl DepthSnapshot {
    /// The levels as the model's snapshot (`first == last == lastUpdateId`).
    pub fn into_levels(self) -> BookLevels {
        BookLevels {
            bids: self.bids,
            asks: self.asks,
            first_update_id: self.last_update_id,
            last_update_id: self.last_update_id,
        }
    }
}

/// Why a diff could not follow the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The book's update id when the diff arrived.
    pub book_update_id: u64,
    pub first_update_id: u64,
    pub prev_last_update_id: Option<u64>,
}

/// What the caller must do with a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffOutcome {
    /// No snapshot yet: kept for the join.
    Buffered,
    /// Apply this delta to the book now.
    Apply(DepthDiff),
    /// Hand-over: the book switched to the standby; apply these deltas in order.
    ApplyAll(Vec<DepthDiff>),
    /// Hand-over: a standby diff ahead of the book, kept until it can follow.
    Held,
    /// Already contained in the book (or older than the snapshot): ignored.
    Stale,
    /// Sync lost: reset the book and fetch a new snapshot. The diff was kept as the
    /// first of the new buffer.
    Gap(Gap),
    /// The pre-snapshot buffer hit its bound and was restarted with this diff; the
    /// pending snapshot will probably be too old, so count a resync.
    Overflow,
}

/// What the caller must do with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Publish `snapshot`, then apply `replay` in order: the book is live.
    Synced {
        snapshot: DepthSnapshot,
        replay: Vec<DepthDiff>,
    },
    /// The snapshot is older than the buffered stream: fetch another. Nothing changed
    /// except that diffs older than this snapshot were dropped.
    TooOld,
    /// The snapshot joined, but the buffered stream itself has a hole after it: fetch
    /// another. Nothing was published.
    Gap(Gap),
    /// The book is already live; a late snapshot is ignored.
    AlreadySynced,
}

#[derive(Debug, Clone)]
enum State {
    /// Waiting for a snapshot; diffs accumulate.
    Buffering(VecDeque<DepthDiff>),
    /// The book is at `update_id`. `bridged` is false until the first diff after a
    /// futures snapshot straddled it.
    Live { update_id: u64, bridged: bool },
}

/// A hand-over in progress (module docs).
#[derive(Debug, Clone)]
struct Handover {
    switched: bool,
    held: VecDeque<DepthDiff>,
}

/// How a hand-over ended for one book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverEnd {
    /// Apply these held standby diffs (possibly none): the book goes on from the standby.
    Apply(Vec<DepthDiff>),
    /// The standby's diffs do not follow the book: resync (the diff kept as the first of
    /// the new buffer).
    Gap(Gap),
    /// The book was not live: it must resync on the new connection.
    Resync,
}

/// The sync state of one book.
#[derive(Debug, Clone)]
pub struct DepthSync {
    rules: DepthRules,
    max_buffer: usize,
    state: State,
    handover: Option<Handover>,
}

impl DepthSync {
    /// `max_buffer` bounds the diffs kept while waiting for a snapshot.
    pub fn new(rules: DepthRules, max_buffer: usize) -> Self {
        Self {
            rules,
            max_buffer: max_buffer.max(1),
            state: State::Buffering(VecDeque::new()),
            handover: None,
        }
    }

    /// True once a snapshot joined and no gap has been seen since.
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Live { .. })
    }

    /// The book's update id while live.
    pub fn update_id(&self) -> Option<u64> {
        match self.state {
            State::Live { update_id, .. } => Some(update_id),
            State::Buffering(_) => None,
        }
    }

    /// Diffs waiting for a snapshot.
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Buffering(b) => b.len(),
            State::Live { .. } => 0,
        }
    }

    /// Forget everything (disconnect, sink rejection): buffer afresh for a new snapshot.
    pub fn reset(&mut self) {
        self.state = State::Buffering(VecDeque::new());
        self.handover = None;
    }

    /// A standby connection is up: its diffs may join this book from now on.
    pub fn begin_handover(&mut self) {
        self.handover = Some(Handover {
            switched: false,
            held: VecDeque::new(),
        });
    }

    /// True when the hand-over needs nothing more of this book: it switched to the
    /// standby, or it is not live (it will resync on the standby anyway), or no standby
    /// diff waits for the old connection to catch up.
    pub fn handover_settled(&self) -> bool {
        !self.is_live()
            || self
                .handover
                .as_ref()
                .is_none_or(|h| h.switched || h.held.is_empty())
    }

    /// The standby failed: go on with the primary alone.
    pub fn abort_handover(&mut self) {
        self.handover = None;
    }

    /// The old connection is gone and the standby is the only one (see [`HandoverEnd`]).
    pub fn finish_handover(&mut self) -> HandoverEnd {
        let Some(h) = self.handover.take() else {
            return HandoverEnd::Apply(Vec::new());
        };
        let State::Live { update_id, bridged } = &mut self.state else {
            return HandoverEnd::Resync;
        };
        let mut apply = Vec::new();
        for diff in h.held {
            match judge(self.rules, *update_id, *bridged, &diff) {
                Verdict::Stale => {}
                Verdict::Apply => {
                    *update_id = diff.last_update_id;
                    *bridged = true;
                    apply.push(diff);
                }
                Verdict::Gap(gap) => {
                    self.state = State::Buffering(VecDeque::from([diff]));
                    return HandoverEnd::Gap(gap);
                }
            }
        }
        HandoverEnd::Apply(apply)
    }

    /// A diff from `source` (always [`Source::Primary`] outside a hand-over).
    pub fn on_diff_from(&mut self, diff: DepthDiff, source: Source) -> DiffOutcome {
        let switched = match &self.handover {
            None => return self.on_diff(diff),
            Some(h) => h.switched,
        };
        match (source, switched) {
            // After the switch the old connection only repeats what the standby brings.
            (Source::Primary, true) => DiffOutcome::Stale,
            (Source::Standby, true) => self.on_diff(diff),
            (Source::Primary, false) => {
                let outcome = self.on_diff(diff);
                match outcome {
                    DiffOutcome::Apply(applied) => self.release_held(applied),
                    DiffOutcome::Gap(_) | DiffOutcome::Overflow => {
                        // The book resyncs; the standby joins it at the hand-over's end.
                        if let Some(h) = &mut self.handover {
                            h.held.clear();
                        }
                        outcome
                    }
                    other => other,
                }
            }
            (Source::Standby, false) => self.standby_diff(diff),
        }
    }

    /// A standby diff before the switch: stale, the switch, or held.
    fn standby_diff(&mut self, diff: DepthDiff) -> DiffOutcome {
        let State::Live { update_id, bridged } = &mut self.state else {
            // Not live: the book resyncs from the primary's stream for now.
            return DiffOutcome::Stale;
        };
        match judge(self.rules, *update_id, *bridged, &diff) {
            Verdict::Stale => DiffOutcome::Stale,
            Verdict::Apply => {
                *update_id = diff.last_update_id;
                *bridged = true;
                if let Some(h) = &mut self.handover {
                    h.switched = true;
                    h.held.clear();
                }
                DiffOutcome::Apply(diff)
            }
            Verdict::Gap(_) => {
                if let Some(h) = &mut self.handover {
                    if h.held.len() >= self.max_buffer {
                        h.held.pop_front();
                    }
                    h.held.push_back(diff);
                }
                DiffOutcome::Held
            }
        }
    }

    /// After the primary's `applied` diff: held standby diffs it covered are dropped;
    /// if the next one follows the book, the book switches and they are applied too.
    fn release_held(&mut self, applied: DepthDiff) -> DiffOutcome {
        let (Some(h), State::Live { update_id, bridged }) = (&mut self.handover, &mut self.state)
        else {
            return DiffOutcome::Apply(applied);
        };
        while let Some(front) = h.held.front() {
            match judge(self.rules, *update_id, *bridged, front) {
                Verdict::Stale => {
                    h.held.pop_front();
                }
                Verdict::Apply => break,
                Verdict::Gap(_) => return DiffOutcome::Apply(applied),
            }
        }
        if h.held.is_empty() {
            return DiffOutcome::Apply(applied);
        }
        h.switched = true;
        let mut all = vec![applied];
        while let Some(diff) = h.held.pop_front() {
            match judge(self.rules, *update_id, *bridged, &diff) {
                Verdict::Stale => {}
                Verdict::Apply => {
                    *update_id = diff.last_update_id;
                    *bridged = true;
                    all.push(diff);
                }
                // The standby's own stream broke: its next diff will find the gap.
                Verdict::Gap(_) => break,
            }
        }
        h.held.clear();
        DiffOutcome::ApplyAll(all)
    }

    pub fn on_diff(&mut self, diff: DepthDiff) -> DiffOutcome {
        match &mut self.state {
            State::Buffering(buffer) => {
                if buffer.len() >= self.max_buffer {
                    buffer.clear();
                    buffer.push_back(diff);
                    DiffOutcome::Overflow
                } else {
                    buffer.push_back(diff);
                    DiffOutcome::Buffered
                }
            }
            State::Live { update_id, bridged } => {
                match judge(self.rules, *update_id, *bridged, &diff) {
                    Verdict::Stale => DiffOutcome::Stale,
                    Verdict::Apply => {
                        *update_id = diff.last_update_id;
                        *bridged = true;
                        DiffOutcome::Apply(diff)
                    }
                    Verdict::Gap(gap) => {
                        self.state = State::Buffering(VecDeque::from([diff]));
                        DiffOutcome::Gap(gap)
                    }
                }
            }
        }
    }

    pub fn on_snapshot(&mut self, snapshot: DepthSnapshot) -> SnapshotOutcome {
        let State::Buffering(buffer) = &mut self.state else {
            return SnapshotOutcome::AlreadySynced;
        };
        let mut update_id = snapshot.last_update_id;
        let mut bridged = false;
        let mut replay = Vec::new();
        while let Some(diff) = buffer.pop_front() {
            match judge(self.rules, update_id, bridged, &diff) {
                Verdict::Stale => {}
                Verdict::Apply => {
                    update_id = diff.last_update_id;
                    bridged = true;
                    replay.push(diff);
                }
                Verdict::Gap(gap) => {
                    // Keep the stream from the break on: the next snapshot joins it.
                    buffer.push_front(diff);
                    return if replay.is_empty() {
                        SnapshotOutcome::TooOld
                    } else {
                        // The diffs before the break are older than any future snapshot.
                        SnapshotOutcome::Gap(gap)
                    };
                }
            }
        }
        self.state = State::Live { update_id, bridged };
        SnapshotOutcome::Synced { snapshot, replay }
    }
}

enum Verdict {
    Stale,
    Apply,
    Gap(Gap),
}

/// Whether `diff` may follow a book at `update_id`.
fn judge(rules: DepthRules, update_id: u64, bridged: bool, diff: &DepthDiff) -> Verdict {
    let gap = || {
        Verdict::Gap(Gap {
            book_update_id: update_id,
            first_update_id: diff.first_update_id,
            prev_last_update_id: diff.prev_last_update_id,
        })
    };
    match rules {
        DepthRules::Spot => {
            if diff.last_update_id <= update_id {
                Verdict::Stale
            } else if diff.first_update_id > update_id.saturating_add(1) {
                gap()
            } else {
                Verdict::Apply
            }
        }
        DepthRules::Futures if !bridged => {
            // Right after the snapshot: drop `u < lastUpdateId`, then require
            // `U <= lastUpdateId <= u`, or a diff that follows the snapshot exactly
            // (`pu == lastUpdateId`: the snapshot reflects the previous diff).
            if diff.last_update_id < update_id {
                Verdict::Stale
            } else if diff.first_update_id <= update_id
                || diff.prev_last_update_id == Some(update_id)
            {
                Verdict::Apply
            } else {
                gap()
            }
        }
        DepthRules::Futures => {
            if diff.last_update_id <= update_id {
                Verdict::Stale
            } else if diff.prev_last_update_id == Some(update_id) {
                Verdict::Apply
            } else {
                gap()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::{Price, Qty};

    fn level(p: &str, q: &str) -> Level {
        Level {
            price: Price::parse(p).unwrap(),
            qty: Qty::parse(q).unwrap(),
        }
    }

    fn spot(first: u64, last: u64) -> DepthDiff {
        DepthDiff {
            first_update_id: first,
            last_update_id: last,
            prev_last_update_id: None,
            exchange_time: UnixNanos(0),
            receive_time: UnixNanos(0),
            bids: vec![level("1.0", "1")],
            asks: vec![],
        }
    }

    fn fut(first: u64, last: u64, prev: u64) -> DepthDiff {
        DepthDiff {
            prev_last_update_id: Some(prev),
            ..spot(first, last)
        }
    }

    fn snap(last_update_id: u64) -> DepthSnapshot {
        DepthSnapshot {
            last_update_id,
            exchange_time: UnixNanos(0),
            receive_time: UnixNanos(0),
            bids: vec![level("1.0", "2")],
            asks: vec![level("2.0", "2")],
        }
    }

    fn replayed(outcome: SnapshotOutcome) -> Vec<(u64, u64)> {
        match outcome {
            SnapshotOutcome::Synced { replay, .. } => replay
                .iter()
                .map(|d| (d.first_update_id, d.last_update_id))
                .collect(),
            other => panic!("expected Synced, got {other:?}"),
        }
    }

    #[test]
    fn spot_joins_dropping_what_the_snapshot_contains() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        assert_eq!(s.on_diff(spot(95, 100)), DiffOutcome::Buffered);
        assert_eq!(s.on_diff(spot(101, 104)), DiffOutcome::Buffered);
        assert_eq!(s.on_diff(spot(105, 110)), DiffOutcome::Buffered);
        // Snapshot at 102: 95..=100 is inside it, 101..=104 straddles 103.
        assert_eq!(replayed(s.on_snapshot(snap(102))), [(101, 104), (105, 110)]);
        assert_eq!(s.update_id(), Some(110));
        assert!(matches!(s.on_diff(spot(111, 111)), DiffOutcome::Apply(_)));
    }

    #[test]
    fn spot_snapshot_just_before_the_first_diff_joins() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        s.on_diff(spot(101, 105));
        assert_eq!(replayed(s.on_snapshot(snap(100))), [(101, 105)]);
    }

    #[test]
    fn spot_snapshot_older_than_the_stream_is_refetched() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        s.on_diff(spot(110, 120));
        s.on_diff(spot(121, 125));
        assert_eq!(s.on_snapshot(snap(105)), SnapshotOutcome::TooOld);
        assert!(!s.is_live());
        assert_eq!(s.buffered(), 2, "the buffer waits for the next snapshot");
        assert_eq!(replayed(s.on_snapshot(snap(122))), [(121, 125)]);
    }

    #[test]
    fn spot_gap_resyncs_and_keeps_the_breaking_diff() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        s.on_diff(spot(100, 105));
        replayed(s.on_snapshot(snap(101)));
        let gap = s.on_diff(spot(107, 109));
        assert_eq!(
            gap,
            DiffOutcome::Gap(Gap {
                book_update_id: 105,
                first_update_id: 107,
                prev_last_update_id: None,
            })
        );
        assert!(!s.is_live());
        assert_eq!(s.buffered(), 1);
        assert_eq!(s.on_diff(spot(110, 112)), DiffOutcome::Buffered);
        assert_eq!(replayed(s.on_snapshot(snap(108))), [(107, 109), (110, 112)]);
    }

    #[test]
    fn duplicates_and_old_diffs_are_ignored_when_live() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        s.on_diff(spot(10, 20));
        replayed(s.on_snapshot(snap(15)));
        assert_eq!(s.on_diff(spot(10, 20)), DiffOutcome::Stale);
        assert_eq!(s.on_diff(spot(5, 9)), DiffOutcome::Stale);
        assert_eq!(s.update_id(), Some(20));
        assert!(matches!(s.on_diff(spot(21, 22)), DiffOutcome::Apply(_)));

        let mut f = DepthSync::new(DepthRules::Futures, 100);
        f.on_diff(fut(10, 20, 5));
        replayed(f.on_snapshot(snap(15)));
        assert_eq!(f.on_diff(fut(10, 20, 5)), DiffOutcome::Stale);
        assert!(matches!(f.on_diff(fut(25, 30, 20)), DiffOutcome::Apply(_)));
    }

    #[test]
    fn spot_overlapping_diff_is_applied() {
        // The current procedure only requires U <= id + 1 < u: an overlap re-sets
        // absolute quantities and is harmless.
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        replayed(s.on_snapshot(snap(50)));
        assert!(matches!(s.on_diff(spot(48, 55)), DiffOutcome::Apply(_)));
        assert_eq!(s.update_id(), Some(55));
    }

    #[test]
    fn futures_join_requires_straddling_last_update_id() {
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        f.on_diff(fut(90, 99, 80));
        f.on_diff(fut(100, 110, 99)); // straddles 105
        f.on_diff(fut(115, 120, 110));
        assert_eq!(replayed(f.on_snapshot(snap(105))), [(100, 110), (115, 120)]);
        assert!(matches!(
            f.on_diff(fut(130, 131, 120)),
            DiffOutcome::Apply(_)
        ));
    }

    #[test]
    fn futures_diff_ending_at_last_update_id_joins() {
        // `u == lastUpdateId` satisfies U <= lastUpdateId <= u (futures keep u < id only
        // as droppable).
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        f.on_diff(fut(100, 105, 99));
        assert_eq!(replayed(f.on_snapshot(snap(105))), [(100, 105)]);
    }

    #[test]
    fn futures_first_diff_after_the_snapshot_must_straddle() {
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        // U == lastUpdateId + 1 is *not* enough on futures: ids are not contiguous.
        f.on_diff(fut(106, 110, 104));
        assert_eq!(f.on_snapshot(snap(105)), SnapshotOutcome::TooOld);
    }

    #[test]
    fn futures_diff_continuing_a_quiet_snapshot_joins() {
        // The snapshot reflects exactly the last diff (u = 100); the next one starts
        // after it and chains on pu: no false gap.
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        replayed(f.on_snapshot(snap(100)));
        assert!(matches!(
            f.on_diff(fut(101, 105, 100)),
            DiffOutcome::Apply(_)
        ));
        assert_eq!(f.update_id(), Some(105));
        // The same when the diff was buffered before the snapshot arrived.
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        f.on_diff(fut(101, 105, 100));
        assert_eq!(replayed(f.on_snapshot(snap(100))), [(101, 105)]);
    }

    fn live(rules: DepthRules, at: u64) -> DepthSync {
        let mut s = DepthSync::new(rules, 100);
        replayed(s.on_snapshot(snap(at)));
        s
    }

    #[test]
    fn a_standby_behind_the_book_joins_it_without_a_snapshot() {
        let mut s = live(DepthRules::Spot, 100);
        assert!(matches!(
            s.on_diff_from(spot(101, 105), Source::Primary),
            DiffOutcome::Apply(_)
        ));
        s.begin_handover();
        assert!(s.handover_settled(), "nothing of the standby waits");
        // The standby repeats what the book has, then continues it: the switch.
        assert_eq!(
            s.on_diff_from(spot(101, 105), Source::Standby),
            DiffOutcome::Stale
        );
        assert!(matches!(
            s.on_diff_from(spot(106, 108), Source::Standby),
            DiffOutcome::Apply(_)
        ));
        assert!(s.handover_settled());
        // The old connection is ignored from then on.
        assert_eq!(
            s.on_diff_from(spot(106, 108), Source::Primary),
            DiffOutcome::Stale
        );
        assert_eq!(
            s.on_diff_from(spot(109, 110), Source::Primary),
            DiffOutcome::Stale
        );
        assert!(matches!(
            s.on_diff_from(spot(109, 110), Source::Standby),
            DiffOutcome::Apply(_)
        ));
        assert_eq!(s.finish_handover(), HandoverEnd::Apply(Vec::new()));
        assert_eq!(s.update_id(), Some(110));
    }

    #[test]
    fn a_standby_ahead_of_the_book_waits_for_the_old_connection() {
        let mut s = live(DepthRules::Futures, 100);
        s.on_diff_from(fut(95, 102, 90), Source::Primary);
        s.begin_handover();
        // The standby's first diff is ahead of the book: held, nothing lost.
        assert_eq!(
            s.on_diff_from(fut(106, 110, 104), Source::Standby),
            DiffOutcome::Held
        );
        assert!(!s.handover_settled());
        assert!(
            matches!(s.on_diff_from(fut(103, 104, 102), Source::Primary), DiffOutcome::ApplyAll(ref v) if v.len() == 2)
        );
        assert_eq!(s.update_id(), Some(110));
        assert!(s.handover_settled());
        assert_eq!(
            s.on_diff_from(fut(106, 110, 104), Source::Primary),
            DiffOutcome::Stale
        );
    }

    #[test]
    fn a_hand_over_ending_with_the_old_connection_gone_releases_or_resyncs() {
        // Held diffs that follow after all are applied at the end.
        let mut s = live(DepthRules::Spot, 100);
        s.begin_handover();
        assert_eq!(
            s.on_diff_from(spot(103, 104), Source::Standby),
            DiffOutcome::Held
        );
        // The old connection brings 101..102 and dies.
        assert!(
            matches!(s.on_diff_from(spot(101, 102), Source::Primary), DiffOutcome::ApplyAll(ref v) if v.len() == 2)
        );
        assert_eq!(s.finish_handover(), HandoverEnd::Apply(Vec::new()));
        // A hole the old connection never filled is a gap.
        let mut s = live(DepthRules::Spot, 100);
        s.begin_handover();
        s.on_diff_from(spot(105, 106), Source::Standby);
        assert!(matches!(s.finish_handover(), HandoverEnd::Gap(_)));
        assert!(!s.is_live());
        // A book that was not live resyncs on the new connection.
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        s.begin_handover();
        assert_eq!(
            s.on_diff_from(spot(1, 2), Source::Standby),
            DiffOutcome::Stale
        );
        assert_eq!(s.finish_handover(), HandoverEnd::Resync);
    }

    #[test]
    fn futures_pu_break_is_a_gap() {
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        f.on_diff(fut(100, 110, 95));
        replayed(f.on_snapshot(snap(105)));
        assert!(matches!(
            f.on_diff(fut(111, 120, 110)),
            DiffOutcome::Apply(_)
        ));
        let out = f.on_diff(fut(125, 130, 122));
        assert_eq!(
            out,
            DiffOutcome::Gap(Gap {
                book_update_id: 120,
                first_update_id: 125,
                prev_last_update_id: Some(122),
            })
        );
        assert!(!f.is_live());
    }

    #[test]
    fn gap_inside_the_buffer_is_reported_without_publishing() {
        let mut f = DepthSync::new(DepthRules::Futures, 100);
        f.on_diff(fut(100, 110, 95));
        f.on_diff(fut(111, 120, 110));
        f.on_diff(fut(130, 140, 125)); // lost 120..125
        f.on_diff(fut(141, 150, 140));
        assert!(matches!(f.on_snapshot(snap(105)), SnapshotOutcome::Gap(_)));
        assert_eq!(f.buffered(), 2);
        assert_eq!(replayed(f.on_snapshot(snap(135))), [(130, 140), (141, 150)]);
    }

    #[test]
    fn snapshot_before_any_diff_goes_live_and_judges_the_first_diff() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        assert_eq!(replayed(s.on_snapshot(snap(100))), []);
        assert!(s.is_live());
        assert_eq!(s.on_diff(spot(90, 100)), DiffOutcome::Stale);
        assert!(matches!(s.on_diff(spot(99, 103)), DiffOutcome::Apply(_)));

        let mut f = DepthSync::new(DepthRules::Futures, 100);
        replayed(f.on_snapshot(snap(100)));
        assert_eq!(f.on_diff(fut(90, 99, 80)), DiffOutcome::Stale);
        assert!(matches!(f.on_diff(fut(101, 105, 99)), DiffOutcome::Gap(_)));
    }

    #[test]
    fn late_snapshot_while_live_is_ignored() {
        let mut s = DepthSync::new(DepthRules::Spot, 100);
        replayed(s.on_snapshot(snap(100)));
        assert_eq!(s.on_snapshot(snap(90)), SnapshotOutcome::AlreadySynced);
        assert_eq!(s.update_id(), Some(100));
    }

    #[test]
    fn buffer_is_bounded() {
        let mut s = DepthSync::new(DepthRules::Spot, 3);
        for i in 0..3 {
            assert_eq!(s.on_diff(spot(i * 10, i * 10 + 9)), DiffOutcome::Buffered);
        }
        assert_eq!(s.on_diff(spot(30, 39)), DiffOutcome::Overflow);
        assert_eq!(s.buffered(), 1);
        assert_eq!(s.on_snapshot(snap(5)), SnapshotOutcome::TooOld);
        assert_eq!(replayed(s.on_snapshot(snap(35))), [(30, 39)]);
    }

    #[test]
    fn reset_drops_the_book() {
        let mut s = DepthSync::new(DepthRules::Spot, 10);
        replayed(s.on_snapshot(snap(100)));
        s.reset();
        assert!(!s.is_live());
        assert_eq!(s.on_diff(spot(101, 102)), DiffOutcome::Buffered);
    }

    #[test]
    fn futures_missing_pu_is_a_gap_once_bridged() {
        let mut f = DepthSync::new(DepthRules::Futures, 10);
        f.on_diff(fut(100, 110, 95));
        replayed(f.on_snapshot(snap(105)));
        assert!(matches!(f.on_diff(spot(111, 120)), DiffOutcome::Gap(_)));
    }
}
