//! Raven's outward faces.
//!
//! A call reaches a handler through, in order:
//! * [`conn`]: the connection — accepted within `max_connections`, TLS ([`tls`]) if
//!   configured, closed when idle;
//! * [`gate`]: every call — refused beyond the per-connection limit, authenticated to
//!   a principal ([`auth`]) with its entitlements;
//! * [`grpc`]: the `raven.v1.MarketData` service — live subscriptions over one
//!   bidirectional stream per client, and the unary book/instrument/status queries —
//!   plus the standard health and reflection services so any gRPC tool works;
//!   `replay` streams a subscribed topic's stored records before its live ones;
//!
//! and beside it:
//! * [`health`]: `/health`, `/health/live` and `/health/ready` for orchestrators;
//! * [`metrics`]: the Prometheus exposition on `/metrics`, with process gauges;
//! * [`limits`]: what one client may take of the shared pools (request rate, history
//!   answers).
//!
//! None of it owns market state: everything is read from the hub and the feed status.

pub mod access;
pub mod auth;
pub mod conn;
pub mod gate;
pub mod grpc;
pub mod health;
pub mod limits;
pub mod metrics;
mod replay;
mod status;
pub mod tls;

pub use status::{Readiness, StatusSource};
