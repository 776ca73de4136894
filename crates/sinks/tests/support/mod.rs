//! What the store tests and benchmarks share.

pub mod influxd;
