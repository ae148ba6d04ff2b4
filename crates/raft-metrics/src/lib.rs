//! Metric names and descriptions, and the Prometheus exporter, for the Raft toolkit.
//!
//! Responsibility: the single place that names and describes (unit and help text) every
//! metric the other crates record through the `metrics` facade, and the set-up of the
//! `metrics-exporter-prometheus` recorder and its HTTP listener.
//!
//! May depend on: the `metrics` facade and `metrics-exporter-prometheus`. It sits beside
//! `raft-core` at the bottom of the stack so that every other crate can name its metrics here.
#![deny(missing_docs)]

mod exporter;
pub mod net;
pub mod runtime;
pub mod snapshot;
pub mod wal;

pub use exporter::{
    Error, LATENCY_BUCKETS, Result, SIZE_BUCKETS, install_http_listener, install_recorder,
};

/// Registers unit and help text for every metric of the toolkit with the installed recorder.
pub fn describe_all() {
    net::describe();
    runtime::describe();
    snapshot::describe();
    wal::describe();
}
