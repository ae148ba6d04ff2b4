//! Metric names and descriptions, and the Prometheus exporter, for the Raft toolkit.
//!
//! Responsibility: the single place that names and describes (unit and help text) every
//! metric the other crates record through the `metrics` facade, and the set-up of the
//! `metrics-exporter-prometheus` recorder (rendering only: the process serving `/metrics` brings
//! its own HTTP server).
//!
//! May depend on: the `metrics` facade, `metrics-exporter-prometheus` and `metrics-process`. It sits beside
//! `raft-core` at the bottom of the stack so that every other crate can name its metrics here.
#![deny(missing_docs)]

mod exporter;
pub mod net;
pub mod node;
pub mod process;
pub mod runtime;
pub mod snapshot;
pub mod wal;

pub use exporter::{Error, LATENCY_BUCKETS, Result, SIZE_BUCKETS, install_recorder};
pub use metrics::Unit;
pub use metrics_exporter_prometheus::PrometheusHandle;

/// The Prometheus type of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic counter (its name ends in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution, exported as `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    /// The type's name in the Prometheus exposition format.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric: its name, type, unit and help text.
#[derive(Clone, Copy, Debug)]
pub struct MetricInfo {
    /// The exported name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its unit.
    pub unit: Unit,
    /// The help text.
    pub help: &'static str,
}

/// Every metric of the toolkit, module by module (`net`, `node`, `process`, `runtime`,
/// `snapshot`, `wal`).
pub fn catalogue() -> impl Iterator<Item = &'static MetricInfo> {
    [
        net::METRICS,
        node::METRICS,
        process::METRICS,
        runtime::METRICS,
        snapshot::METRICS,
        wal::METRICS,
    ]
    .into_iter()
    .flatten()
}

/// Registers unit and help text for every metric of the toolkit with the installed recorder.
pub fn describe_all() {
    for m in catalogue() {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}
