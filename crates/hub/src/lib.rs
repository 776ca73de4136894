//! Raven's hub: live books, per-topic sequencing and fan-out to subscribers.
//!
//! Data flows top to bottom through these modules:
//! * [`channel`]: what can be subscribed to, checked once at the edge;
//! * [`grant`]: what a client's principal may subscribe to, checked per topic;
//! * [`hub`]: the registry of instruments, the [`raven_model::feed::FeedSink`] the
//!   venues push into, and [`Session`], one per client stream;
//! * `instrument`: one instrument's book, topics, candles and feed continuity;
//! * `topic`: one sequenced topic and the slow-consumer policy per subscriber;
//! * `retention`: what a topic keeps of its recent messages, for clients that resume;
//! * [`replay`]: a topic asked from a past time, held until its stored records are
//!   sent, then joined to the live stream at the [`seam`];
//! * [`views`]: top-N book views, built off the feed's path;
//! * [`encode`]: model to wire, encoded once per message for all subscribers;
//! * [`subscriber`]: each stream's bounded queue, and the kill switch for clients that
//!   stay behind, and its batch delay;
//! * `pacer`: the sub-millisecond clock batch delays wait on;
//! * [`tap`]: bounded feeds from the hub to stores, offered without waiting.

pub mod channel;
pub mod encode;
pub mod grant;
mod hub;
mod instrument;
mod pacer;
pub mod replay;
mod retention;
pub mod seam;
pub mod subscriber;
pub mod tap;
mod topic;
pub mod views;

pub use channel::{Channel, TopicKey, TopicRequest};
pub use grant::Grant;
pub use hub::{
    Hub, HubConfig, InstrumentSpec, ListedInstrument, Session, UnknownInstrument, PUBLISH_LATENCY,
    RESUME_RESULTS,
};
pub use instrument::InstrumentInfo;
pub use replay::{ReplayEnd, ReplayStart, REPLAY_RESULTS};
pub use subscriber::{EndReason, Next, Subscriber, SubscriberInfo};
pub use tap::{Record, Tap};
pub use views::BOOK_VIEW_DEPTHS;
