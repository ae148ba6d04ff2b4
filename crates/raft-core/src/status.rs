//! A read-only snapshot of a node's state for metrics, tools and tests.

use crate::entry::NodeId;
use crate::membership::Membership;
use crate::progress::ProgressState;
use crate::raft::Role;
use std::collections::BTreeMap;

/// Replication progress of one peer, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The highest index known to be in the peer's log (for the leader itself: durable).
    pub matched: u64,
    /// The next index the leader will send.
    pub next: u64,
    /// Probe, replicate or snapshot.
    pub state: ProgressState,
    /// Append messages in flight.
    pub inflight_msgs: usize,
    /// Entry bytes in flight.
    pub inflight_bytes: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// A learner (not counted in quorums).
    pub is_learner: bool,
}

/// The state of a node at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// Whom it voted for in `term`.
    pub vote: Option<NodeId>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The commit index.
    pub commit: u64,
    /// The index the application reported applied.
    pub applied: u64,
    /// The last index of the log (durable or not).
    pub last_index: u64,
    /// The last index reported durable.
    pub persisted_index: u64,
    /// The membership in force.
    pub membership: Membership,
    /// The target of a leadership transfer in progress.
    pub lead_transferee: Option<NodeId>,
    /// Per-member progress; empty unless this node is the leader.
    pub progress: BTreeMap<NodeId, PeerProgress>,
}
