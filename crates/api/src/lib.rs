//! Raven's outward faces.
//!
//! * [`grpc`]: the `raven.v1.MarketData` service — live subscriptions over one
//!   bidirectional stream per client, and the unary book/instrument/status queries —
//!   plus the standard health and reflection services so any gRPC tool works;
//! * [`health`]: `/health`, `/health/live` and `/health/ready` for orchestrators;
//! * [`metrics`]: the Prometheus exposition on `/metrics`, with process gauges;
//! * [`limits`]: what one client may take of the shared pools (request rate, history
//!   answers).
//!
//! None of it owns market state: everything is read from the hub and the feed status.

pub mod grpc;
pub mod health;
pub mod limits;
pub mod metrics;
mod status;

pub use status::{Readiness, StatusSource};
