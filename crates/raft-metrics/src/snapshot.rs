//! Names and descriptions of the snapshot store's metrics (recorded by `raft-snapshot`).
//!
//! Labels used below: `kind` is `full` or `delta`; `outcome` is `ok` or `error`.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

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

/// Registers the unit and help text of every snapshot metric with the installed recorder.
pub fn describe() {
    describe_counter!(
        BUILT,
        Unit::Count,
        "Snapshots built and made durable, by kind"
    );
    describe_histogram!(
        BUILD_SECONDS,
        Unit::Seconds,
        "Time to build a snapshot, by kind"
    );
    describe_counter!(
        BUILT_BYTES,
        Unit::Bytes,
        "Bytes of snapshot files built, by kind"
    );
    describe_histogram!(
        RESTORE_SECONDS,
        Unit::Seconds,
        "Time to restore a snapshot chain"
    );
    describe_counter!(
        INSTALLS,
        Unit::Count,
        "Snapshot chains installed from a leader, by outcome"
    );
    describe_counter!(
        COMPACTIONS,
        Unit::Count,
        "Snapshot chains merged into a new base"
    );
    describe_counter!(
        GC_REMOVED,
        Unit::Count,
        "Snapshot files removed by garbage collection"
    );
    describe_counter!(
        CORRUPTIONS,
        Unit::Count,
        "Corrupted snapshot data detected and refused"
    );
    describe_gauge!(
        CHAIN_LENGTH,
        Unit::Count,
        "Length of the current snapshot chain"
    );
    describe_counter!(
        UPLOAD_ATTEMPTS,
        Unit::Count,
        "Snapshot upload attempts, by outcome"
    );
    describe_counter!(
        UPLOADED_BYTES,
        Unit::Bytes,
        "Bytes of snapshots uploaded to the object store"
    );
    describe_gauge!(UPLOAD_QUEUE, Unit::Count, "Snapshots waiting for upload");
}
