//! The leader's (and candidate's) view of the cluster: progress per member and votes.

use crate::entry::NodeId;
use crate::membership::Membership;
use crate::progress::Progress;
use crate::quorum::{self, VoteResult};
use std::collections::{BTreeMap, BTreeSet};

/// Progress of every peer and the votes of an election, counted in `membership`.
///
/// Invariant: `progress` has one entry per member of `membership`, plus one per node of an
/// older configuration still in the log past the applied index (a node a pending change
/// removes, replicated to until the removal is applied; never counted in a quorum).
#[derive(Clone, Debug)]
pub(crate) struct Tracker {
    pub membership: Membership,
    pub progress: BTreeMap<NodeId, Progress>,
    pub votes: BTreeMap<NodeId, bool>,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
}

impl Tracker {
    pub(crate) fn new(max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            membership: Membership::default(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight_msgs,
            max_inflight_bytes,
        }
    }

    /// Counts quorums in `membership` and tracks `peers` (a superset of its members); new
    /// peers start probing at `next` and count as recently active, so that a check-quorum
    /// round right after a change does not depose a leader before they could answer.
    pub(crate) fn set_membership(
        &mut self,
        membership: Membership,
        peers: &BTreeSet<NodeId>,
        next: u64,
    ) {
        self.progress.retain(|id, _| peers.contains(id));
        for id in peers {
            let pr = self.progress.entry(*id).or_insert_with(|| {
                let mut pr = Progress::new(next, self.max_inflight_msgs, self.max_inflight_bytes);
                pr.recent_active = true;
                pr
            });
            pr.is_learner = !membership.is_voter(*id);
        }
        self.membership = membership;
    }

    /// Changes the in-flight window limits of every peer (current and future). A window
    /// already fuller than the new limit just sends nothing until it drains.
    pub(crate) fn set_inflight_limits(&mut self, max_msgs: usize, max_bytes: u64) {
        self.max_inflight_msgs = max_msgs;
        self.max_inflight_bytes = max_bytes;
        for pr in self.progress.values_mut() {
            pr.inflights.set_limits(max_msgs, max_bytes);
        }
    }

    /// Resets every peer's progress for a new term (leader or candidate).
    pub(crate) fn reset(&mut self, next: u64) {
        for pr in self.progress.values_mut() {
            let learner = pr.is_learner;
            *pr = Progress::new(next, self.max_inflight_msgs, self.max_inflight_bytes);
            pr.is_learner = learner;
        }
        self.votes.clear();
    }

    /// The index a quorum has durably appended.
    pub(crate) fn committed(&self) -> u64 {
        quorum::committed_index(&self.membership, |id| {
            self.progress.get(&id).map_or(0, |p| p.matched)
        })
    }

    pub(crate) fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    pub(crate) fn tally(&self) -> VoteResult {
        quorum::vote_result(&self.membership, |id| self.votes.get(&id).copied())
    }

    /// True when the voters marked recently active (and `me`) form a quorum.
    pub(crate) fn quorum_active(&self, me: NodeId) -> bool {
        quorum::has_quorum(&self.membership, |id| {
            id == me || self.progress.get(&id).is_some_and(|p| p.recent_active)
        })
    }

    /// The highest heartbeat round acknowledged by a quorum (`me` acknowledges `mine`).
    pub(crate) fn quorum_round(&self, me: NodeId, mine: u64) -> u64 {
        quorum::committed_index(&self.membership, |id| {
            if id == me {
                mine
            } else {
                self.progress.get(&id).map_or(0, |p| p.acked_round)
            }
        })
    }
}
