//! Process metrics (CPU seconds, memory, file descriptors, threads), read from `/proc` by
//! the `metrics-process` crate and named as Prometheus' Go client names them, with the
//! toolkit's `raftd_` prefix.
//!
//! [`ProcessCollector::collect`] records the current values; raftd calls it before every
//! render of `/metrics` and on its upkeep timer.

use crate::{Kind, MetricInfo};
use metrics::Unit;

/// The prefix put before the Go client's `process_*` names (private: the catalogue test
/// takes every `pub const` string of this crate for a metric name).
const PREFIX: &str = "raftd_";

/// Counter: user and system CPU time the process has used, in whole seconds (the `metrics`
/// facade's counters are integers; `rate()` over a few minutes smooths the steps).
pub const CPU_SECONDS: &str = "raftd_process_cpu_seconds_total";

/// Gauge: open file descriptors.
pub const OPEN_FDS: &str = "raftd_process_open_fds";

/// Gauge: the limit on open file descriptors (`RLIMIT_NOFILE`; 0 when unlimited).
pub const MAX_FDS: &str = "raftd_process_max_fds";

/// Gauge: virtual memory size.
pub const VIRTUAL_MEMORY_BYTES: &str = "raftd_process_virtual_memory_bytes";

/// Gauge: the limit on virtual memory (`RLIMIT_AS`; 0 when unlimited).
pub const VIRTUAL_MEMORY_MAX_BYTES: &str = "raftd_process_virtual_memory_max_bytes";

/// Gauge: resident memory (RSS).
pub const RESIDENT_MEMORY_BYTES: &str = "raftd_process_resident_memory_bytes";

/// Gauge: when the process started, in seconds since the Unix epoch.
pub const START_TIME_SECONDS: &str = "raftd_process_start_time_seconds";

/// Gauge: OS threads of the process.
pub const THREADS: &str = "raftd_process_threads";

/// Every metric of this module, with its kind, unit and help text.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: CPU_SECONDS,
        kind: Kind::Counter,
        unit: Unit::Seconds,
        help: "Total user and system CPU time spent in seconds",
    },
    MetricInfo {
        name: OPEN_FDS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Number of open file descriptors",
    },
    MetricInfo {
        name: MAX_FDS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Maximum number of open file descriptors",
    },
    MetricInfo {
        name: VIRTUAL_MEMORY_BYTES,
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Virtual memory size in bytes",
    },
    MetricInfo {
        name: VIRTUAL_MEMORY_MAX_BYTES,
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Maximum amount of virtual memory available in bytes",
    },
    MetricInfo {
        name: RESIDENT_MEMORY_BYTES,
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Resident memory size in bytes",
    },
    MetricInfo {
        name: START_TIME_SECONDS,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Start time of the process since the Unix epoch in seconds",
    },
    MetricInfo {
        name: THREADS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Number of OS threads in the process",
    },
];

/// Records the process metrics of this module (descriptions come from
/// [`crate::describe_all`]).
#[derive(Debug)]
pub struct ProcessCollector(metrics_process::Collector);

impl Default for ProcessCollector {
    fn default() -> Self {
        Self(metrics_process::Collector::new(PREFIX))
    }
}

impl ProcessCollector {
    /// Reads the process's current figures and records them.
    pub fn collect(&self) {
        self.0.collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_records_the_catalogued_names() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || ProcessCollector::default().collect());
        let text = handle.render();
        for m in METRICS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{} ", m.name))),
                "{} not recorded:\n{text}",
                m.name
            );
        }
        assert!(
            text.contains(&format!("# TYPE {CPU_SECONDS} counter")),
            "{text}"
        );
    }
}
