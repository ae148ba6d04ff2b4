//! Names and descriptions of the write-ahead log's metrics (recorded by `raft-log`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

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

/// Registers unit and help text for every WAL metric with the installed recorder.
pub fn describe() {
    describe_histogram!(
        FSYNC_SECONDS,
        Unit::Seconds,
        "Duration of one fdatasync of a WAL group-commit batch"
    );
    describe_histogram!(
        BATCH_ENTRIES,
        Unit::Count,
        "Log entries made durable by one WAL fdatasync"
    );
    describe_histogram!(
        BATCH_BYTES,
        Unit::Bytes,
        "Bytes written by one WAL group-commit batch"
    );
    describe_histogram!(
        APPEND_SECONDS,
        Unit::Seconds,
        "Time from submitting a WAL write until it is durable"
    );
    describe_gauge!(SEGMENTS, Unit::Count, "WAL segment files on disk");
    describe_histogram!(
        RECOVERY_SECONDS,
        Unit::Seconds,
        "Time to open the WAL: scan, verify and index every segment"
    );
    describe_counter!(
        WRITER_FAILURES,
        Unit::Count,
        "WAL writers stopped by a failed write or fsync (fail-stop)"
    );
}
