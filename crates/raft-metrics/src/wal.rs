//! Names and descriptions of the write-ahead log's metrics (recorded by `raft-log`).

use crate::{Kind, MetricInfo};
use metrics::Unit;

/// Histogram: time one `fdatasync` of a group-commit batch took.
pub const FSYNC_SECONDS: &str = "raft_wal_fsync_duration_seconds";
/// Histogram: entries made durable by one `fdatasync` (the group-commit batch size).
pub const BATCH_ENTRIES: &str = "raft_wal_batch_entries";
/// Histogram: bytes written by one group-commit batch.
pub const BATCH_BYTES: &str = "raft_wal_batch_bytes";
/// Histogram: time from submitting a write to its ticket completing.
pub const APPEND_SECONDS: &str = "raft_wal_append_duration_seconds";
/// Gauge: segment files the log currently holds.
pub const SEGMENTS: &str = "raft_wal_segments";
/// Histogram: time to open the log (scan, verify and index every segment).
pub const RECOVERY_SECONDS: &str = "raft_wal_recovery_duration_seconds";
/// Counter: writers stopped by a failed write or `fsync`.
pub const WRITER_FAILURES: &str = "raft_wal_writer_failures_total";

/// Every metric of this module, with its kind, unit and help text.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: FSYNC_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Duration of one fdatasync of a WAL group-commit batch",
    },
    MetricInfo {
        name: BATCH_ENTRIES,
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "Log entries made durable by one WAL fdatasync",
    },
    MetricInfo {
        name: BATCH_BYTES,
        kind: Kind::Histogram,
        unit: Unit::Bytes,
        help: "Bytes written by one WAL group-commit batch",
    },
    MetricInfo {
        name: APPEND_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time from submitting a WAL write until it is durable",
    },
    MetricInfo {
        name: SEGMENTS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "WAL segment files on disk",
    },
    MetricInfo {
        name: RECOVERY_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time to open the WAL: scan, verify and index every segment",
    },
    MetricInfo {
        name: WRITER_FAILURES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "WAL writers stopped by a failed write or fsync (fail-stop)",
    },
];
