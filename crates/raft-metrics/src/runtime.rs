//! Names and descriptions of the runtime's metrics (recorded by `raft-runtime`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Counter: client proposals accepted by the event loop (local and forwarded by this node).
pub const PROPOSALS: &str = "raft_runtime_proposals_total";
/// Counter, label `reason`: proposals that failed (`leader_changed`, `dropped`, `shutdown`,
/// `rejected`).
pub const PROPOSALS_FAILED: &str = "raft_runtime_proposals_failed_total";
/// Histogram: proposals handed to the core in one batch (one `Ready`, one log write).
pub const PROPOSAL_BATCH: &str = "raft_runtime_proposal_batch_size";
/// Histogram: time from a proposal's arrival to its entry being committed (seen committed
/// by the proposing node).
pub const PROPOSE_TO_COMMIT_SECONDS: &str = "raft_runtime_propose_to_commit_seconds";
/// Histogram: time from a proposal's arrival to its result (applied by the state machine).
pub const PROPOSE_TO_APPLY_SECONDS: &str = "raft_runtime_propose_to_apply_seconds";
/// Counter: elections this node started (became candidate).
pub const ELECTIONS: &str = "raft_runtime_elections_total";
/// Counter: changes of the leader this node knows of.
pub const LEADER_CHANGES: &str = "raft_runtime_leader_changes_total";
/// Gauge: the node's current term.
pub const TERM: &str = "raft_runtime_term";
/// Gauge: the node's commit index.
pub const COMMIT_INDEX: &str = "raft_runtime_commit_index";
/// Gauge: the index the state machine has applied.
pub const APPLIED_INDEX: &str = "raft_runtime_applied_index";
/// Gauge: 1 while this node is the leader, else 0.
pub const IS_LEADER: &str = "raft_runtime_is_leader";
/// Counter: linearizable reads served (each waited for a ReadIndex round or a lease).
pub const READ_INDEX_READS: &str = "raft_runtime_read_index_reads_total";
/// Counter: ReadIndex rounds requested from the core (concurrent reads share one).
pub const READ_INDEX_ROUNDS: &str = "raft_runtime_read_index_rounds_total";
/// Counter: log writes submitted (one per `Ready` with something to persist).
pub const LOG_WRITES: &str = "raft_runtime_log_writes_total";
/// Histogram: entries applied per state-machine batch.
pub const APPLY_BATCH: &str = "raft_runtime_apply_batch_size";
/// Counter: snapshots built by the state machine to compact the log.
pub const SNAPSHOTS_BUILT: &str = "raft_runtime_snapshots_built_total";

/// Registers unit and help text for every runtime metric with the installed recorder.
pub fn describe() {
    describe_counter!(PROPOSALS, Unit::Count, "Client proposals accepted");
    describe_counter!(
        PROPOSALS_FAILED,
        Unit::Count,
        "Client proposals that failed"
    );
    describe_histogram!(
        PROPOSAL_BATCH,
        Unit::Count,
        "Proposals handed to the core in one batch (one log write)"
    );
    describe_histogram!(
        PROPOSE_TO_COMMIT_SECONDS,
        Unit::Seconds,
        "Time from a proposal's arrival until its entry is committed"
    );
    describe_histogram!(
        PROPOSE_TO_APPLY_SECONDS,
        Unit::Seconds,
        "Time from a proposal's arrival until the state machine applied it"
    );
    describe_counter!(ELECTIONS, Unit::Count, "Elections this node started");
    describe_counter!(LEADER_CHANGES, Unit::Count, "Changes of the known leader");
    describe_gauge!(TERM, Unit::Count, "Current Raft term");
    describe_gauge!(COMMIT_INDEX, Unit::Count, "Commit index");
    describe_gauge!(
        APPLIED_INDEX,
        Unit::Count,
        "Index applied by the state machine"
    );
    describe_gauge!(IS_LEADER, Unit::Count, "1 while this node is the leader");
    describe_counter!(
        READ_INDEX_READS,
        Unit::Count,
        "Linearizable reads served through ReadIndex or a lease"
    );
    describe_counter!(
        READ_INDEX_ROUNDS,
        Unit::Count,
        "ReadIndex rounds requested (concurrent reads share one)"
    );
    describe_counter!(
        LOG_WRITES,
        Unit::Count,
        "Log writes submitted by the runtime"
    );
    describe_histogram!(APPLY_BATCH, Unit::Count, "Entries applied per batch");
    describe_counter!(
        SNAPSHOTS_BUILT,
        Unit::Count,
        "Snapshots built to compact the log"
    );
}
