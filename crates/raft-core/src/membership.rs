//! Cluster membership: who votes, who learns, and the changes between configurations.

use crate::entry::NodeId;
use std::collections::BTreeSet;

/// The membership configuration in force at some log index.
///
/// Outside a joint configuration `voters_outgoing` is empty. During joint consensus
/// (C_old,new) a decision needs a majority of `voters` (C_new) *and* of `voters_outgoing`
/// (C_old).
///
/// Invariants: `learners` is disjoint from `voters` and from `voters_outgoing`;
/// `learners_next` holds only nodes that are in `voters_outgoing` (voters being demoted to
/// learners, who become learners when the joint configuration is left) and is empty outside
/// a joint configuration.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    /// Voters of the incoming (or only) configuration.
    pub voters: BTreeSet<NodeId>,
    /// Voters of the outgoing configuration while joint; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Non-voting members that receive the log.
    pub learners: BTreeSet<NodeId>,
    /// Outgoing voters that turn into learners when the joint configuration is left.
    pub learners_next: BTreeSet<NodeId>,
    /// Leave the joint configuration automatically once it is committed.
    pub auto_leave: bool,
}

impl Membership {
    /// A single (non-joint) configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            voters: voters.into_iter().collect(),
            ..Self::default()
        }
    }

    /// True while in a joint configuration (C_old,new).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// True when `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Every member: voters of both halves, learners and learners-to-be.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .chain(&self.learners_next)
            .copied()
            .collect()
    }
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeOp {
    /// Add `node` as a voter, or promote a learner to a voter.
    AddVoter(NodeId),
    /// Add `node` as a learner, or demote a voter to a learner.
    AddLearner(NodeId),
    /// Remove `node` from the configuration.
    RemoveNode(NodeId),
}

/// How a change moves between configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConfChangeTransition {
    /// A single voter change is applied directly; anything larger enters a joint
    /// configuration that is left automatically once committed.
    #[default]
    Auto,
    /// Always enter a joint configuration, left automatically once committed.
    JointImplicit,
    /// Always enter a joint configuration, left only by an explicit empty change.
    JointExplicit,
}

/// A membership change, carried in an entry of kind [`EntryKind::ConfChange`](crate::EntryKind).
///
/// An empty `ops` list means "leave the current joint configuration".
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfChange {
    /// How to move to the new configuration.
    pub transition: ConfChangeTransition,
    /// The steps, applied in order.
    pub ops: Vec<ConfChangeOp>,
}

/// What a snapshot covers: the last log position it includes and the membership at it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Index of the last entry included in the snapshot.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The membership configuration in force at `index`.
    pub membership: Membership,
}
