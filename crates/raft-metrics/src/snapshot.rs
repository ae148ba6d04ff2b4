//! Names and descriptions of the snapshot store's metrics (recorded by `raft-snapshot`).
//!
//! Labels used below: `kind` is `full` or `delta`; `outcome` is `ok` or `error`.

use crate::{Kind, MetricInfo};
use metrics::Unit;

/// Counter, label `kind`: snapshots built and made durable.
pub const BUILT: &str = "raft_snapshot_built_total";

/// Histogram (seconds), label `kind`: time to build a snapshot (write, sync, verify, manifest).
pub const BUILD_SECONDS: &str = "raft_snapshot_build_seconds";

/// Counter, label `kind`: bytes of snapshot files built.
pub const BUILT_BYTES: &str = "raft_snapshot_built_bytes_total";

/// Histogram (seconds): time to restore a chain into a state machine.
pub const RESTORE_SECONDS: &str = "raft_snapshot_restore_seconds";

/// Counter, label `outcome`: chains installed from a leader's transfer.
pub const INSTALLS: &str = "raft_snapshot_installs_total";

/// Counter: chains merged into a new base by compaction.
pub const COMPACTIONS: &str = "raft_snapshot_compactions_total";

/// Counter: snapshot files removed by garbage collection.
pub const GC_REMOVED: &str = "raft_snapshot_gc_removed_total";

/// Counter: corrupted snapshot files, bundles or chunks detected and refused.
pub const CORRUPTIONS: &str = "raft_snapshot_corruptions_detected_total";

/// Gauge: length of the current chain (base plus deltas).
pub const CHAIN_LENGTH: &str = "raft_snapshot_chain_length";

/// Counter, label `outcome`: upload attempts to the object store.
pub const UPLOAD_ATTEMPTS: &str = "raft_snapshot_upload_attempts_total";

/// Counter: bytes uploaded to the object store.
pub const UPLOADED_BYTES: &str = "raft_snapshot_uploaded_bytes_total";

/// Gauge: snapshots waiting for upload (including one being retried).
pub const UPLOAD_QUEUE: &str = "raft_snapshot_upload_queue";

/// Gauge: bytes of the snapshots waiting for upload (the upload backlog).
pub const UPLOAD_BACKLOG_BYTES: &str = "raft_snapshot_upload_backlog_bytes";

/// Gauge: age in seconds of the oldest snapshot waiting for upload (0 when none waits).
pub const UPLOAD_OLDEST_SECONDS: &str = "raft_snapshot_upload_oldest_seconds";

/// Gauge: snapshots waiting for upload whose last attempt failed (backing off).
pub const UPLOAD_FAILING: &str = "raft_snapshot_upload_failing";

/// Counter: snapshots given up on (after the configured attempts, with their deltas).
pub const UPLOAD_GAVE_UP: &str = "raft_snapshot_upload_gave_up_total";

/// Counter: snapshots deleted from the object store by the retention policy.
pub const RETENTION_DELETED: &str = "raft_snapshot_retention_deleted_total";

/// Counter: WAL segments (closed ones and partial tails) uploaded to the object store.
pub const WAL_ARCHIVED_SEGMENTS: &str = "raft_snapshot_wal_archived_segments_total";

/// Counter: bytes of WAL segments uploaded to the object store.
pub const WAL_ARCHIVED_BYTES: &str = "raft_snapshot_wal_archived_bytes_total";

/// Gauge: closed WAL segments not yet in the object store (kept on disk until they are).
pub const WAL_ARCHIVE_BACKLOG: &str = "raft_snapshot_wal_archive_backlog_segments";

/// Gauge: 1 while the last WAL archive attempt failed.
pub const WAL_ARCHIVE_FAILING: &str = "raft_snapshot_wal_archive_failing";

/// Counter: closed WAL segments given up on because the backlog exceeded its bound (a gap
/// in the archive: restore points inside it need a later snapshot).
pub const WAL_ARCHIVE_SKIPPED: &str = "raft_snapshot_wal_archive_skipped_segments_total";

/// Gauge: age of the newest entry the WAL archive holds (the recovery point), in seconds.
pub const WAL_ARCHIVE_AGE: &str = "raft_snapshot_wal_archive_newest_entry_age_seconds";

/// Every metric of this module, with its kind, unit and help text.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: BUILT,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshots built and made durable, by kind",
    },
    MetricInfo {
        name: BUILD_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time to build a snapshot, by kind",
    },
    MetricInfo {
        name: BUILT_BYTES,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Bytes of snapshot files built, by kind",
    },
    MetricInfo {
        name: RESTORE_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time to restore a snapshot chain",
    },
    MetricInfo {
        name: INSTALLS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshot chains installed from a leader, by outcome",
    },
    MetricInfo {
        name: COMPACTIONS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshot chains merged into a new base",
    },
    MetricInfo {
        name: GC_REMOVED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshot files removed by garbage collection",
    },
    MetricInfo {
        name: CORRUPTIONS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Corrupted snapshot data detected and refused",
    },
    MetricInfo {
        name: CHAIN_LENGTH,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Length of the current snapshot chain",
    },
    MetricInfo {
        name: UPLOAD_ATTEMPTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshot upload attempts, by outcome",
    },
    MetricInfo {
        name: UPLOADED_BYTES,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Bytes of snapshots uploaded to the object store",
    },
    MetricInfo {
        name: UPLOAD_QUEUE,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Snapshots waiting for upload",
    },
    MetricInfo {
        name: UPLOAD_BACKLOG_BYTES,
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Bytes of the snapshots waiting for upload",
    },
    MetricInfo {
        name: UPLOAD_OLDEST_SECONDS,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Age of the oldest snapshot waiting for upload",
    },
    MetricInfo {
        name: UPLOAD_FAILING,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Snapshots waiting for upload whose last attempt failed",
    },
    MetricInfo {
        name: UPLOAD_GAVE_UP,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshots whose upload was given up",
    },
    MetricInfo {
        name: RETENTION_DELETED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshots deleted from the object store by the retention policy",
    },
    MetricInfo {
        name: WAL_ARCHIVED_SEGMENTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "WAL segments (closed ones and partial tails) uploaded to the object store",
    },
    MetricInfo {
        name: WAL_ARCHIVED_BYTES,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Bytes of WAL segments uploaded to the object store",
    },
    MetricInfo {
        name: WAL_ARCHIVE_BACKLOG,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Closed WAL segments not yet in the object store",
    },
    MetricInfo {
        name: WAL_ARCHIVE_FAILING,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "1 while the last WAL archive attempt failed",
    },
    MetricInfo {
        name: WAL_ARCHIVE_SKIPPED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Closed WAL segments given up on because the archive backlog exceeded its bound",
    },
    MetricInfo {
        name: WAL_ARCHIVE_AGE,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Age of the newest entry the WAL archive holds (the recovery point)",
    },
];
