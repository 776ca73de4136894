//! Top-N book views: what a `CHANNEL_BOOK` topic with a depth carries.
//!
//! A view sends a whole snapshot of the book's best N levels whenever they change. It is
//! expensive in a way deltas are not: every change near the touch alters every view, and
//! each message copies and encodes N levels per side. Built on the feed's path, under the
//! instrument's lock, one client subscribing a book at a thousand depths slowed its
//! venue's feed to a crawl and held back every other client's messages. So:
//!
//! * views exist only at [`BOOK_VIEW_DEPTHS`], eight depths, each shared by every
//!   subscriber of the instrument at that depth: the work per book change is bounded by
//!   configuration, whatever the clients ask for;
//! * the feed only marks the instrument's views dirty; the hub's view task
//!   ([`crate::Hub::build_views`]) builds them, each instrument at most once per
//!   `book_view_interval` (changes in between coalesce: a view is a snapshot, the latest
//!   one is all a client needs);
//! * building takes the instrument's lock twice, briefly: once to copy the levels of the
//!   views that changed, once to number and deliver them. Encoding the levels, the
//!   expensive part, happens in between with no lock held (`Plan::encode`); under the
//!   lock only the envelope is put in front of the encoded payload. If the book was
//!   reset or re-snapshotted meanwhile (its epoch moved), the built views are stale and
//!   are dropped; the change that moved the epoch marked them dirty again.
//!
//! A new subscriber starts from the last view published, with the view's current
//! sequence number, so its stream continues exactly like everyone else's. A view with
//! nothing published (new, or reset with the book) is built and published on the
//! subscriber's request, to every subscriber waiting for it.

use bytes::Bytes;
use raven_model::{BookLevels, UnixNanos};
use std::sync::Arc;

use crate::channel::TopicKey;
use crate::encode;
use crate::instrument::InstrumentState;
use crate::subscriber::{Admit, Subscriber};
use crate::topic::{Entry, Pending, Topic};

/// The depths a top-N view can have (0, the full book with deltas, is not a view).
pub const BOOK_VIEW_DEPTHS: [u32; 8] = [1, 5, 10, 20, 50, 100, 500, 1000];

/// What a view last published: a new subscriber's first message.
struct Published {
    levels: BookLevels,
    payload: Bytes,
    exchange_time: UnixNanos,
    receive_time: UnixNanos,
}

pub(crate) struct View {
    /// Unique within the instrument: a view dropped and made again between the two steps
    /// of a build is another view.
    id: u64,
    pub topic: Topic,
    last: Option<Published>,
}

impl View {
    fn depth(&self) -> usize {
        self.topic.key.depth as usize
    }

    /// The book was reset: nothing published stands.
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Numbers and delivers a built view to its subscribers, and keeps it as the start
    /// of the next ones.
    fn publish(&mut self, built: Built, (exchange_time, receive_time): (UnixNanos, UnixNanos)) {
        let Built { planned, payload } = built;
        let topic = &mut self.topic;
        topic.sequence += 1;
        let body = encode::with_payload(&topic.envelope(exchange_time, receive_time), &payload);
        // Encoded once, however many subscribers conflate on this message.
        let conflated_payload = std::cell::OnceCell::new();
        let conflated = |env: &encode::Envelope<'_>| {
            let payload = conflated_payload.get_or_init(|| {
                encode::book_snapshot_payload(&planned.levels, true, planned.known)
            });
            encode::with_payload(env, payload)
        };
        // Every view message is a whole snapshot: it also starts subscribers that wait
        // for one after a reset.
        topic.deliver_book(&body, Some(&body), exchange_time, receive_time, &conflated);
        self.last = Some(Published {
            levels: planned.levels,
            payload,
            exchange_time,
            receive_time,
        });
    }

    /// The first message for a new subscriber: the last view published, under the
    /// view's current sequence number.
    fn start(&self) -> Option<Bytes> {
        let p = self.last.as_ref()?;
        Some(encode::with_payload(
            &self.topic.envelope(p.exchange_time, p.receive_time),
            &p.payload,
        ))
    }
}

/// The levels a view is to publish, copied under the lock.
pub(crate) struct Planned {
    view: u64,
    levels: BookLevels,
    known: (usize, usize),
}

/// What one build pass of an instrument copied: the views whose levels changed.
pub(crate) struct Plan {
    epoch: u64,
    times: (UnixNanos, UnixNanos),
    views: Vec<Planned>,
}

/// A planned view, encoded (no lock held).
pub(crate) struct Built {
    planned: Planned,
    payload: Bytes,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// Encodes the planned views' payloads; call with no lock held.
    pub fn encode(self) -> (u64, (UnixNanos, UnixNanos), Vec<Built>) {
        let built = self
            .views
            .into_iter()
            .map(|planned| Built {
                payload: encode::book_snapshot_payload(&planned.levels, false, planned.known),
                planned,
            })
            .collect();
        (self.epoch, self.times, built)
    }
}

impl InstrumentState {
    /// Step one of a build: under the lock, copies the levels of every watched view
    /// whose best levels changed since it last published.
    pub(crate) fn plan_views(&mut self) -> Plan {
        let mut plan = Plan {
            epoch: self.book_epoch,
            times: self.book_times,
            views: Vec::new(),
        };
        if !std::mem::take(&mut self.views_dirty) || !self.synced {
            return plan;
        }
        let known = self.book.known_depth();
        for view in &self.views {
            let depth = view.depth();
            let levels = self.book.snapshot(depth);
            let unchanged = view
                .last
                .as_ref()
                .is_some_and(|p| p.levels.bids == levels.bids && p.levels.asks == levels.asks);
            if !unchanged {
                plan.views.push(Planned {
                    view: view.id,
                    levels,
                    known: (known.0.min(depth), known.1.min(depth)),
                });
            }
        }
        plan
    }

    /// Step three: under the lock again, numbers and delivers the built views, unless
    /// the book moved to another epoch since they were planned.
    pub(crate) fn publish_views(
        &mut self,
        epoch: u64,
        (exchange_time, receive_time): (UnixNanos, UnixNanos),
        built: Vec<Built>,
    ) {
        if epoch != self.book_epoch {
            return;
        }
        for built in built {
            if let Some(view) = self.views.iter_mut().find(|v| v.id == built.planned.view) {
                view.publish(built, (exchange_time, receive_time));
            }
        }
    }

    pub(crate) fn subscribe_view(&mut self, key: &TopicKey, sub: &Arc<Subscriber>) {
        let index = match self
            .views
            .iter()
            .position(|v| v.topic.key.depth == key.depth)
        {
            Some(i) => i,
            None => {
                self.views_created += 1;
                self.views.push(View {
                    id: self.views_created,
                    topic: Topic::new(key.clone(), None),
                    last: None,
                });
                self.views.len() - 1
            }
        };
        if self.synced && self.views[index].last.is_none() {
            // A new view, or one not built since the book synced: build and publish it
            // now, on the subscriber's request, so it starts in step — and so do the
            // subscribers waiting for it since a reset (the view task would find it
            // unchanged and never send it to them).
            let depth = self.views[index].depth();
            let levels = self.book.snapshot(depth);
            let known = self.book.known_depth();
            let known = (known.0.min(depth), known.1.min(depth));
            let view = &mut self.views[index];
            let built = Built {
                payload: encode::book_snapshot_payload(&levels, false, known),
                planned: Planned {
                    view: view.id,
                    levels,
                    known,
                },
            };
            view.publish(built, self.book_times);
        }
        let view = &mut self.views[index];
        let pending = match view.start() {
            Some(start) => match sub.offer_data(&start) {
                Admit::Accepted => Pending::None,
                Admit::Full => Pending::Conflate,
            },
            None => Pending::AwaitingSnapshot,
        };
        view.topic.entries.push(Entry {
            sub: sub.clone(),
            pending,
        });
    }

    /// Removes a subscriber from the view at `depth`; a view nobody watches is dropped.
    pub(crate) fn unsubscribe_view(&mut self, depth: u32, sub_id: u64) -> bool {
        let Some(i) = self.views.iter().position(|v| v.topic.key.depth == depth) else {
            return false;
        };
        let removed = self.views[i].topic.remove(sub_id);
        if self.views[i].topic.entries.is_empty() {
            self.views.remove(i);
        }
        removed
    }
}

/// Whether `depth` is a view depth (or 0, the full book).
pub fn is_book_depth(depth: u32) -> bool {
    depth == 0 || BOOK_VIEW_DEPTHS.contains(&depth)
}
