//! Stores fed from the hub.
//!
//! Each store runs as its own task reading one [`raven_hub::Tap`]: the hub offers records
//! without waiting, and the store batches, conflates or buffers them as its backend
//! needs. A slow or dead store therefore never delays a subscriber.
//!
//! * [`redis`]: the latest state of every instrument under a documented key schema.
//! * [`influx`]: every event as an InfluxDB time series, with a durable spill for outages.
//! * [`sqlite`]: the embedded history store, used when no InfluxDB is configured.
//!
//! [`history`] is the read side both time-series stores share: `GetHistory`'s query.

pub mod health;
pub mod history;
pub mod influx;
mod json;
pub mod redis;
mod series;
pub mod sqlite;
