//! Names and descriptions of the runtime's metrics (recorded by `raft-runtime`).

use crate::{Kind, MetricInfo};
use metrics::Unit;

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
/// Gauge: the heartbeat interval in force (`tick` x `heartbeat_ticks`), set at start and by
/// each accepted reconfiguration: what a reload changed, as the running loop sees it.
pub const HEARTBEAT_INTERVAL_SECONDS: &str = "raft_runtime_heartbeat_interval_seconds";
/// Gauge: the base election timeout in force (`tick` x `election_timeout_base_ticks`), set
/// like [`HEARTBEAT_INTERVAL_SECONDS`].
pub const ELECTION_TIMEOUT_SECONDS: &str = "raft_runtime_election_timeout_seconds";
/// Counter: linearizable reads served (each waited for a ReadIndex round or a lease).
pub const READ_INDEX_READS: &str = "raft_runtime_read_index_reads_total";
/// Counter: ReadIndex rounds requested from the core (concurrent reads share one).
pub const READ_INDEX_ROUNDS: &str = "raft_runtime_read_index_rounds_total";
/// Counter: log writes submitted (one per `Ready` with something to persist).
pub const LOG_WRITES: &str = "raft_runtime_log_writes_total";
/// Counter: hard states written without an fsync of their own (only the commit index moved).
pub const LOG_WRITES_DEFERRED: &str = "raft_runtime_log_writes_deferred_total";
/// Histogram: entries applied per state-machine batch.
pub const APPLY_BATCH: &str = "raft_runtime_apply_batch_size";
/// Counter: committed batches applied on the event loop itself rather than handed to the
/// apply thread (see `RuntimeConfig::apply_inline_max_entries`).
pub const APPLY_INLINE: &str = "raft_runtime_apply_inline_batches_total";
/// Counter: snapshots built by the state machine to compact the log.
pub const SNAPSHOTS_BUILT: &str = "raft_runtime_snapshots_built_total";

/// Counter, label `kind` (see [`MESSAGE_KINDS`]): raft messages this node's core sent.
pub const MESSAGES_SENT: &str = "raft_runtime_messages_sent_total";
/// Counter, label `kind` (see [`MESSAGE_KINDS`]): raft messages from peers stepped into the
/// core (heartbeats received are `kind="heartbeat"`).
pub const MESSAGES_RECEIVED: &str = "raft_runtime_messages_received_total";
/// Counter, label `reason` (`invalid`, `not_leader`, `proposal_dropped`, `other`): messages
/// from peers the core refused.
pub const MESSAGES_REFUSED: &str = "raft_runtime_messages_refused_total";
/// Histogram: entries carried by one append message sent (0 for a probe).
pub const APPEND_ENTRIES_PER_MESSAGE: &str = "raft_runtime_append_entries_per_message";
/// Counter: pre-vote campaigns this node started (became pre-candidate).
pub const PRE_VOTES: &str = "raft_runtime_pre_votes_total";
/// Counter: elections this node won (became leader).
pub const ELECTIONS_WON: &str = "raft_runtime_elections_won_total";
/// Counter: linearizable reads this leader answered from its lease, with no quorum round
/// (also counted in [`READ_INDEX_READS`]).
pub const LEASE_READS: &str = "raft_runtime_lease_reads_total";
/// Gauge, label `peer`: entries the peer is behind the leader's last index (leader only;
/// 0 elsewhere).
pub const PEER_REPLICATION_LAG: &str = "raft_runtime_peer_replication_lag";
/// Gauge, label `peer`: append messages in flight to the peer (leader only; 0 elsewhere).
pub const PEER_INFLIGHT_MESSAGES: &str = "raft_runtime_peer_inflight_messages";
/// Gauge, label `peer`: entry bytes in flight to the peer (leader only; 0 elsewhere).
pub const PEER_INFLIGHT_BYTES: &str = "raft_runtime_peer_inflight_bytes";

/// The values of the `kind` label of [`MESSAGES_SENT`] and [`MESSAGES_RECEIVED`].
pub const MESSAGE_KINDS: &[&str] = &[
    "append",
    "append_response",
    "heartbeat",
    "heartbeat_response",
    "vote",
    "vote_response",
    "pre_vote",
    "pre_vote_response",
    "timeout_now",
    "install_snapshot",
    "read_index",
    "read_index_response",
    "propose",
];

/// Every metric of this module, with its kind, unit and help text.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: PROPOSALS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Client proposals accepted",
    },
    MetricInfo {
        name: PROPOSALS_FAILED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Client proposals that failed",
    },
    MetricInfo {
        name: PROPOSAL_BATCH,
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "Proposals handed to the core in one batch (one log write)",
    },
    MetricInfo {
        name: PROPOSE_TO_COMMIT_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time from a proposal's arrival until its entry is committed",
    },
    MetricInfo {
        name: PROPOSE_TO_APPLY_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Time from a proposal's arrival until the state machine computed its result (the client is answered then)",
    },
    MetricInfo {
        name: ELECTIONS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Elections this node started",
    },
    MetricInfo {
        name: LEADER_CHANGES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Changes of the known leader",
    },
    MetricInfo {
        name: TERM,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Current Raft term",
    },
    MetricInfo {
        name: COMMIT_INDEX,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Commit index",
    },
    MetricInfo {
        name: APPLIED_INDEX,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Index applied by the state machine",
    },
    MetricInfo {
        name: IS_LEADER,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "1 while this node is the leader",
    },
    MetricInfo {
        name: HEARTBEAT_INTERVAL_SECONDS,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Heartbeat interval in force (changed by a reload)",
    },
    MetricInfo {
        name: ELECTION_TIMEOUT_SECONDS,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Base election timeout in force (changed by a reload)",
    },
    MetricInfo {
        name: READ_INDEX_READS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Linearizable reads served through ReadIndex or a lease",
    },
    MetricInfo {
        name: READ_INDEX_ROUNDS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "ReadIndex rounds requested (concurrent reads share one)",
    },
    MetricInfo {
        name: LOG_WRITES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Log writes submitted by the runtime",
    },
    MetricInfo {
        name: LOG_WRITES_DEFERRED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Commit-only hard states written without an fsync of their own",
    },
    MetricInfo {
        name: APPLY_BATCH,
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "Entries applied per batch",
    },
    MetricInfo {
        name: APPLY_INLINE,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Committed batches applied on the event loop, without a hand-off to the apply thread",
    },
    MetricInfo {
        name: SNAPSHOTS_BUILT,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Snapshots built to compact the log",
    },
    MetricInfo {
        name: MESSAGES_SENT,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Raft messages sent by this node, by kind",
    },
    MetricInfo {
        name: MESSAGES_RECEIVED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Raft messages received from peers and stepped, by kind",
    },
    MetricInfo {
        name: MESSAGES_REFUSED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Raft messages from peers refused by the core, by reason",
    },
    MetricInfo {
        name: APPEND_ENTRIES_PER_MESSAGE,
        kind: Kind::Histogram,
        unit: Unit::Count,
        help: "Entries per append message sent",
    },
    MetricInfo {
        name: PRE_VOTES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Pre-vote campaigns this node started",
    },
    MetricInfo {
        name: ELECTIONS_WON,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Elections this node won",
    },
    MetricInfo {
        name: LEASE_READS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Linearizable reads answered from the leader lease without a quorum round",
    },
    MetricInfo {
        name: PEER_REPLICATION_LAG,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Entries a peer is behind the leader's last index (leader only), by peer",
    },
    MetricInfo {
        name: PEER_INFLIGHT_MESSAGES,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Append messages in flight to a peer (leader only), by peer",
    },
    MetricInfo {
        name: PEER_INFLIGHT_BYTES,
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        help: "Entry bytes in flight to a peer (leader only), by peer",
    },
];
