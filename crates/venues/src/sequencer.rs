//! Continuity of one instrument's event stream (trades, BBO, funding, liquidations), and
//! the hand-over from one connection to the next without losing or repeating an event.
//!
//! Every event carries a key that increases along its stream: a trade id, a BBO update
//! id, an event time (module docs of each venue say which). A [`StreamSequencer`] per
//! instrument and stream remembers the last key delivered and decides for each event:
//!
//! * while two connections overlap (below), a key not above the last one is a
//!   **duplicate** and is dropped; on one connection, which delivers in order, only a
//!   repeat of the last key is — a key *below* it is delivered and counted as a
//!   **regression** and the stream goes on from it, so one wrong key (a far-future
//!   event time, a corrupt id) can never make every later event look old;
//! * on a stream whose keys are **contiguous** (trade ids on venues that number trades
//!   one by one) a key more than one above the last is a **gap**: the ids in between
//!   were never received, and the caller announces them before delivering the event;
//! * the first event after a reconnect that broke the stream is taken whatever its key
//!   (the venue may have restarted its numbering); a jump is still reported.
//!
//! **Hand-over.** Before a connection reaches its venue's age limit the adapter opens the
//! next one and runs both for a moment ("make before break"). The new connection (the
//! *standby*) starts mid-stream, possibly behind or ahead of the old one (the
//! *primary*). Taking events by "first arrival wins" would lose one whenever the standby
//! is ahead: its event k+2 is taken, then the primary's k+1 looks like a duplicate. So:
//!
//! * until the standby has *overlapped* the primary — delivered a key the primary already
//!   delivered, or, on a contiguous stream, exactly the next key — its events are held;
//! * once it has, every event the standby delivers after its overlap is the stream's
//!   continuation: the sequencer *switches* to it and ignores the primary from then on;
//! * each time the primary advances, held events it has now covered are dropped (which
//!   proves the overlap) and the rest are released if the switch became possible;
//! * when the hand-over ends (the old connection closes), events still held are released
//!   in order, judged like any other — on a contiguous stream a hole shows as a gap;
//! * the primary's events after the switch are kept (bounded) until the hand-over ends:
//!   if the standby fails instead, they are replayed, so what only the primary delivered
//!   is not lost; if more arrived than were kept, [`StreamSequencer::abort_handover`]
//!   says so and the caller announces the hole.

use std::collections::VecDeque;

/// Which connection an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The connection the stream is read from.
    Primary,
    /// The connection being handed over to.
    Standby,
}

/// What to do with events, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery<T> {
    /// Events with keys `last + 1 ..= next - 1` were never received (contiguous streams).
    Gap {
        last: u64,
        next: u64,
    },
    Event(T),
}

#[derive(Debug)]
struct Handover<T> {
    /// The standby delivered a key the primary had delivered: it is not ahead.
    overlapped: bool,
    /// The stream is read from the standby now.
    switched: bool,
    held: VecDeque<(u64, T)>,
    /// The primary's events since the switch, for a standby that fails (newest kept).
    after_switch: VecDeque<(u64, T)>,
    /// `after_switch` dropped its oldest: a failed standby leaves an unknown hole.
    after_switch_overflowed: bool,
}

#[derive(Debug)]
pub struct StreamSequencer<T> {
    contiguous: bool,
    last: Option<u64>,
    /// The next event is the first after a broken stream: taken whatever its key.
    after_break: bool,
    /// A hand-over ended before the new connection passed the last key: until it
    /// does, its old keys are the old connection's copies.
    catching_up: bool,
    handover: Option<Handover<T>>,
    /// Standby events held at most (beyond, the oldest is released as if the hand-over
    /// had ended for it), and primary events kept after the switch.
    max_held: usize,
    duplicates: u64,
    regressions: u64,
}

impl<T> StreamSequencer<T> {
    /// `contiguous`: keys increase by exactly one, so a jump is a gap.
    pub fn new(contiguous: bool, max_held: usize) -> Self {
        Self {
            contiguous,
            last: None,
            after_break: false,
            catching_up: false,
            handover: None,
            max_held: max_held.max(1),
            duplicates: 0,
            regressions: 0,
        }
    }

    /// Events dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Events delivered although their key was below the last one (one connection).
    pub fn regressions(&self) -> u64 {
        self.regressions
    }

    /// The stream broke (a reconnect without hand-over): the next event is taken
    /// whatever its key.
    pub fn broken(&mut self) {
        self.after_break = true;
        self.catching_up = false;
        self.handover = None;
    }

    /// A standby connection is up: start a hand-over.
    pub fn begin_handover(&mut self) {
        self.handover = Some(Handover {
            overlapped: false,
            switched: false,
            held: VecDeque::new(),
            after_switch: VecDeque::new(),
            after_switch_overflowed: false,
        });
    }

    /// True unless the hand-over still waits for the standby to overlap the primary
    /// while holding its events.
    pub fn handover_settled(&self) -> bool {
        self.handover
            .as_ref()
            .is_none_or(|h| h.switched || h.held.is_empty())
    }

    /// The standby failed: go on with the primary. What the primary delivered since
    /// the switch and the standby had not is appended to `out`. Returns false when
    /// more arrived than were kept, so events may be missing (the caller announces it).
    pub fn abort_handover(&mut self, out: &mut Vec<Delivery<T>>) -> bool {
        let Some(h) = self.handover.take() else {
            return true;
        };
        for (key, event) in h.after_switch {
            self.deliver(key, event, Dedupe::Overlap, out);
        }
        !h.after_switch_overflowed
    }

    /// The primary is gone and the standby is the stream now: releases what was held.
    pub fn finish_handover(&mut self, out: &mut Vec<Delivery<T>>) {
        if let Some(h) = self.handover.take() {
            self.catching_up = !h.switched;
            // The standby delivered these too.
            self.duplicates += h.after_switch.len() as u64;
            for (key, event) in h.held {
                self.deliver(key, event, Dedupe::Overlap, out);
            }
        }
    }

    /// One event with `key` from `source`; what to deliver is appended to `out`.
    pub fn accept(&mut self, key: u64, source: Source, event: T, out: &mut Vec<Delivery<T>>) {
        let Some(h) = &mut self.handover else {
            let dedupe = if self.catching_up {
                self.catching_up = self.last.is_some_and(|l| key <= l);
                Dedupe::Overlap
            } else {
                Dedupe::OneConnection
            };
            return self.deliver(key, event, dedupe, out);
        };
        match (source, h.switched) {
            // After the switch the primary only repeats or runs ahead of the standby,
            // which will deliver the same events in order; kept in case it fails.
            (Source::Primary, true) => {
                h.after_switch.push_back((key, event));
                if h.after_switch.len() > self.max_held {
                    h.after_switch.pop_front();
                    h.after_switch_overflowed = true;
                    self.duplicates += 1;
                }
            }
            (Source::Standby, true) => self.deliver(key, event, Dedupe::Overlap, out),
            (Source::Primary, false) => {
                self.deliver(key, event, Dedupe::Overlap, out);
                self.release_covered(out);
            }
            (Source::Standby, false) => {
                // With nothing delivered yet the primary may still bring older events the
                // standby never had: hold.
                let next = self.contiguous && self.last.and_then(|l| l.checked_add(1)) == Some(key);
                if self.last.is_some_and(|l| key <= l) {
                    h.overlapped = true;
                    self.duplicates += 1;
                } else if h.overlapped || next {
                    h.switched = true;
                    self.deliver(key, event, Dedupe::Overlap, out);
                } else {
                    h.held.push_back((key, event));
                    if h.held.len() > self.max_held {
                        if let Some((k, e)) = h.held.pop_front() {
                            self.deliver(k, e, Dedupe::Overlap, out);
                        }
                    }
                }
            }
        }
    }

    /// After the primary advanced: drops held standby events it covered (proving the
    /// overlap) and, if the standby can take over now, switches and releases the rest.
    fn release_covered(&mut self, out: &mut Vec<Delivery<T>>) {
        let Some(h) = &mut self.handover else { return };
        let last = self.last;
        while h
            .held
            .front()
            .is_some_and(|(k, _)| last.is_some_and(|l| *k <= l))
        {
            h.held.pop_front();
            h.overlapped = true;
            self.duplicates += 1;
        }
        let next = match (h.held.front(), last) {
            (Some((k, _)), Some(l)) => self.contiguous && l.checked_add(1) == Some(*k),
            _ => false,
        };
        if (h.overlapped || next) && !h.held.is_empty() {
            h.switched = true;
            let held = std::mem::take(&mut h.held);
            for (key, event) in held {
                self.deliver(key, event, Dedupe::Overlap, out);
            }
        }
    }

    fn deliver(&mut self, key: u64, event: T, dedupe: Dedupe, out: &mut Vec<Delivery<T>>) {
        let after_break = std::mem::take(&mut self.after_break);
        if let Some(last) = self.last {
            let copy = key == last || (key < last && dedupe == Dedupe::Overlap);
            if copy && !after_break {
                self.duplicates += 1;
                return;
            }
            if key < last && !after_break {
                self.regressions += 1;
            } else if self.contiguous && key > last.saturating_add(1) {
                out.push(Delivery::Gap { last, next: key });
            }
        }
        self.last = Some(key);
        out.push(Delivery::Event(event));
    }
}

/// What an old key means where it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dedupe {
    /// Two connections overlap: an old key is the other one's copy.
    Overlap,
    /// One connection delivers in order: only the last key repeated is a copy.
    OneConnection,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut StreamSequencer<u64>, events: &[(u64, Source)]) -> Vec<Delivery<u64>> {
        let mut out = Vec::new();
        for &(k, src) in events {
            s.accept(k, src, k, &mut out);
        }
        out
    }

    fn keys(out: &[Delivery<u64>]) -> Vec<u64> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::Event(k) => Some(*k),
                Delivery::Gap { .. } => None,
            })
            .collect()
    }

    use Source::{Primary as P, Standby as S};

    #[test]
    fn duplicates_are_dropped_and_jumps_are_gaps() {
        let mut s = StreamSequencer::new(true, 100);
        let out = run(&mut s, &[(1, P), (2, P), (2, P), (5, P), (6, P)]);
        assert_eq!(
            out,
            [
                Delivery::Event(1),
                Delivery::Event(2),
                Delivery::Gap { last: 2, next: 5 },
                Delivery::Event(5),
                Delivery::Event(6),
            ]
        );
        assert_eq!(s.duplicates(), 1);
        // Not contiguous: a jump is normal.
        let mut bbo = StreamSequencer::new(false, 100);
        assert_eq!(keys(&run(&mut bbo, &[(10, P), (17, P), (17, P)])), [10, 17]);
    }

    #[test]
    fn one_wrong_key_cannot_make_every_later_event_look_old() {
        // A far-future event time on a time-keyed stream, then the real ones.
        let mut s = StreamSequencer::new(false, 100);
        let out = run(&mut s, &[(10, P), (u64::MAX, P), (11, P), (12, P), (12, P)]);
        assert_eq!(keys(&out), [10, u64::MAX, 11, 12]);
        assert_eq!((s.regressions(), s.duplicates()), (1, 1));
        // A corrupt trade id: announced as a gap, and the stream goes on after it.
        let mut t = StreamSequencer::new(true, 100);
        let out = run(&mut t, &[(7, P), (u64::MAX, P), (8, P), (9, P)]);
        assert_eq!(
            out,
            [
                Delivery::Event(7),
                Delivery::Gap {
                    last: 7,
                    next: u64::MAX
                },
                Delivery::Event(u64::MAX),
                Delivery::Event(8),
                Delivery::Event(9),
            ]
        );
        // The largest key does not overflow the next-key checks.
        t.begin_handover();
        run(&mut t, &[(u64::MAX, P)]);
        assert!(run(&mut t, &[(u64::MAX, S)]).is_empty(), "a copy");
    }

    #[test]
    fn a_standby_that_fails_after_the_switch_loses_nothing_the_primary_brought() {
        let mut s = StreamSequencer::new(false, 100);
        run(&mut s, &[(10, P)]);
        s.begin_handover();
        // The standby overlaps at 10 and takes over at 20; the primary runs ahead of it.
        assert_eq!(
            keys(&run(&mut s, &[(10, S), (20, S), (20, P), (30, P), (40, P)])),
            [20]
        );
        let mut out = Vec::new();
        assert!(s.abort_handover(&mut out), "nothing was lost");
        assert_eq!(keys(&out), [30, 40], "the primary's own, in order");
        assert_eq!(keys(&run(&mut s, &[(50, P)])), [50]);

        // Beyond what is kept, the caller is told events may be missing.
        let mut s = StreamSequencer::new(false, 2);
        run(&mut s, &[(10, P)]);
        s.begin_handover();
        run(&mut s, &[(10, S), (20, S), (30, P), (40, P), (50, P)]);
        let mut out = Vec::new();
        assert!(!s.abort_handover(&mut out));
        assert_eq!(keys(&out), [40, 50]);

        // A hand-over that completes discards the primary's copies.
        let mut s = StreamSequencer::new(false, 100);
        run(&mut s, &[(10, P)]);
        s.begin_handover();
        run(&mut s, &[(10, S), (20, S), (20, P), (30, P)]);
        let mut out = Vec::new();
        s.finish_handover(&mut out);
        assert!(out.is_empty());
        assert_eq!(keys(&run(&mut s, &[(30, P), (40, P)])), [30, 40]);
    }

    #[test]
    fn after_a_break_the_first_event_is_taken_whatever_its_key() {
        let mut s = StreamSequencer::new(true, 100);
        run(&mut s, &[(100, P)]);
        s.broken();
        // A restarted numbering is taken, not dropped as old.
        assert_eq!(keys(&run(&mut s, &[(3, P), (4, P)])), [3, 4]);
        s.broken();
        let out = run(&mut s, &[(9, P)]);
        assert_eq!(out[0], Delivery::Gap { last: 4, next: 9 });
    }

    #[test]
    fn a_standby_behind_the_primary_takes_over_after_its_overlap() {
        let mut s = StreamSequencer::new(false, 100);
        run(&mut s, &[(10, P), (20, P)]);
        s.begin_handover();
        let out = run(
            &mut s,
            &[
                (30, P),
                (20, S),
                (30, S),
                (40, S),
                (40, P),
                (50, P),
                (50, S),
                (60, S),
            ],
        );
        assert_eq!(keys(&out), [30, 40, 50, 60]);
        assert!(s.handover_settled());
    }

    #[test]
    fn a_standby_ahead_of_the_primary_loses_nothing_the_primary_still_brings() {
        let mut s = StreamSequencer::new(false, 100);
        run(&mut s, &[(10, P)]);
        s.begin_handover();
        // The standby is ahead: 40 arrives from it before the primary's 20 and 30.
        let out = run(&mut s, &[(40, S), (50, S)]);
        assert!(
            out.is_empty(),
            "held until the standby is known not to be ahead"
        );
        assert!(!s.handover_settled());
        let out = run(&mut s, &[(20, P), (30, P), (40, P), (60, S)]);
        assert_eq!(keys(&out), [20, 30, 40, 50, 60]);
        assert!(s.handover_settled());
        // The primary's late copies are ignored now.
        assert!(run(&mut s, &[(50, P), (60, P)]).is_empty());
    }

    #[test]
    fn on_contiguous_ids_the_next_id_is_overlap_enough() {
        let mut s = StreamSequencer::new(true, 100);
        run(&mut s, &[(7, P)]);
        s.begin_handover();
        assert_eq!(keys(&run(&mut s, &[(8, S), (8, P), (9, S)])), [8, 9]);
        // Ahead by two: held until the primary brings 9.
        let mut s = StreamSequencer::new(true, 100);
        run(&mut s, &[(7, P)]);
        s.begin_handover();
        assert!(run(&mut s, &[(10, S)]).is_empty());
        assert_eq!(keys(&run(&mut s, &[(8, P), (9, P)])), [8, 9, 10]);
    }

    #[test]
    fn finishing_releases_what_was_held_and_reports_a_hole() {
        let mut s = StreamSequencer::new(true, 100);
        run(&mut s, &[(7, P)]);
        s.begin_handover();
        run(&mut s, &[(10, S), (11, S)]);
        // The primary died before bringing 8 and 9.
        let mut out = Vec::new();
        s.finish_handover(&mut out);
        assert_eq!(
            out,
            [
                Delivery::Gap { last: 7, next: 10 },
                Delivery::Event(10),
                Delivery::Event(11)
            ]
        );
        assert_eq!(
            keys(&run(&mut s, &[(12, P)])),
            [12],
            "no hand-over any more"
        );
    }

    #[test]
    fn a_new_connection_still_behind_when_the_old_one_closes_repeats_nothing() {
        let mut s = StreamSequencer::new(false, 100);
        run(&mut s, &[(10, P), (20, P), (30, P)]);
        s.begin_handover();
        // The standby overlaps at 10 but is still behind when the hand-over ends.
        assert!(run(&mut s, &[(10, S)]).is_empty());
        let mut out = Vec::new();
        s.finish_handover(&mut out);
        assert!(out.is_empty());
        // It catches up: its copies are dropped, then it goes on; later a key that
        // goes back is delivered again (one connection).
        assert_eq!(
            keys(&run(&mut s, &[(20, P), (30, P), (40, P), (35, P)])),
            [40, 35]
        );
        assert_eq!(s.regressions(), 1);
    }

    #[test]
    fn a_stream_quiet_on_the_primary_holds_the_standby_until_the_end() {
        let mut s = StreamSequencer::new(false, 100);
        s.begin_handover();
        assert!(run(&mut s, &[(5, S)]).is_empty());
        assert!(!s.handover_settled());
        let mut out = Vec::new();
        s.finish_handover(&mut out);
        assert_eq!(keys(&out), [5]);
    }

    #[test]
    fn holding_is_bounded() {
        let mut s = StreamSequencer::new(false, 2);
        run(&mut s, &[(1, P)]);
        s.begin_handover();
        let out = run(&mut s, &[(5, S), (6, S), (7, S)]);
        assert_eq!(keys(&out), [5], "the oldest is released past the bound");
    }
}
