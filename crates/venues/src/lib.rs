//! Exchange adapters: the code that speaks each exchange's protocol so nothing else in
//! Raven has to.
//!
//! A venue adapter opens the exchange's WebSocket streams and REST endpoints, parses its
//! frames into [`raven_model`]'s exact, normalized types, enforces the exchange's
//! sequencing rules for order books, and pushes the results into a
//! [`raven_model::feed::FeedSink`]. It also reports its own health into a shared
//! [`status::FeedStatus`] and the `metrics` facade, so operators can see which feed is
//! lagging or resyncing without reading logs.
//!
//! * [`registry`]: every venue family behind one venue-neutral entry point;
//! * [`engine`]: what every in-stream venue shares (connection loop, book sync,
//!   checksums, the form a family fills in);
//! * [`binance`]: Binance Spot, USD-M futures and COIN-M futures (REST snapshots joined
//!   to diff streams);
//! * [`status`]: the health registry read by the API's status and readiness endpoints.
//! * [`sequencer`]: the continuity of event streams (duplicates, trade-id gaps) and the
//!   hand-over from one connection to the next without loss;
//! * [`backoff`]: exponential backoff with jitter, shared by reconnects and REST retries;
//! * [`supervise`]: restarting a venue's failed connection tasks;
//! * [`handle`]: a running venue;
//! * [`task`]: what supervising a task needs (the text of its panic);
//! * `scan`: the byte cursor of every venue's fast frame scanner.

pub mod backoff;
pub mod binance;
pub mod bybit;
pub mod coinbase;
pub mod engine;
pub mod handle;
pub mod http;
pub mod kraken;
pub mod okx;
pub mod registry;
mod scan;
pub mod sequencer;
pub mod status;
pub mod supervise;
pub mod task;

pub use backoff::BackoffConfig;
pub use handle::VenueHandle;
pub use registry::{ConfiguredVenue, SettingError, VenueSettings};
pub use status::FeedStatus;
