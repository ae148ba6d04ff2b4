//! Majority and joint-majority arithmetic over a [`Membership`].

use crate::entry::NodeId;
use crate::membership::Membership;
use std::collections::BTreeSet;

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: more answers are needed.
    Pending,
    /// A quorum (of both halves when joint) granted.
    Won,
    /// A quorum can no longer be reached.
    Lost,
}

/// The highest index acknowledged by a majority of `voters`; `u64::MAX` for an empty set
/// (so that it never limits a joint computation).
fn majority_index(voters: &BTreeSet<NodeId>, acked: &impl Fn(NodeId) -> u64) -> u64 {
    let n = voters.len();
    if n == 0 {
        return u64::MAX;
    }
    // Clusters are small: keep the common case off the heap.
    let mut stack = [0u64; 9];
    let mut heap;
    let slice: &mut [u64] = if n <= stack.len() {
        &mut stack[..n]
    } else {
        heap = vec![0u64; n];
        &mut heap
    };
    for (slot, id) in slice.iter_mut().zip(voters) {
        *slot = acked(*id);
    }
    slice.sort_unstable_by(|a, b| b.cmp(a));
    slice[n / 2]
}

/// The highest index committed by the acknowledgements `acked` (a majority of each half
/// of a joint configuration).
pub fn committed_index(m: &Membership, acked: impl Fn(NodeId) -> u64) -> u64 {
    let incoming = majority_index(&m.voters, &acked);
    let outgoing = majority_index(&m.voters_outgoing, &acked);
    let c = incoming.min(outgoing);
    if c == u64::MAX { 0 } else { c }
}

fn majority_vote(voters: &BTreeSet<NodeId>, vote: &impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut yes, mut missing) = (0, 0);
    for id in voters {
        match vote(*id) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let q = voters.len() / 2 + 1;
    if yes >= q {
        VoteResult::Won
    } else if yes + missing >= q {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Tallies votes (`Some(granted)`, `None` for no answer yet).
pub fn vote_result(m: &Membership, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let a = majority_vote(&m.voters, &vote);
    let b = majority_vote(&m.voters_outgoing, &vote);
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// True when the nodes for which `ok` holds form a quorum.
pub fn has_quorum(m: &Membership, ok: impl Fn(NodeId) -> bool) -> bool {
    vote_result(m, |id| Some(ok(id))) == VoteResult::Won
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_and_joint_commit() {
        let m = Membership::with_voters([1, 2, 3]);
        let acked = |id| [0, 5, 3, 9][id as usize];
        assert_eq!(committed_index(&m, acked), 5);
        let mut joint = Membership::with_voters([3, 4, 5]);
        joint.voters_outgoing = [1, 2, 3].into();
        let acked = |id| [0, 10, 10, 1, 7, 7][id as usize];
        // C_old would commit 10, C_new only 7: the joint rule takes the smaller.
        assert_eq!(committed_index(&joint, acked), 7);
    }

    #[test]
    fn large_configurations_count_a_majority_too() {
        // More voters than the stack buffer holds (it falls back to the heap).
        let m = Membership::with_voters(1..=11);
        let acked = |id: NodeId| if id <= 6 { 20 } else { 3 };
        assert_eq!(committed_index(&m, acked), 20, "6 of 11 is a majority");
        let acked = |id: NodeId| if id <= 5 { 20 } else { 3 };
        assert_eq!(committed_index(&m, acked), 3, "5 of 11 is not");
    }

    #[test]
    fn votes_need_both_halves() {
        let mut joint = Membership::with_voters([3, 4, 5]);
        joint.voters_outgoing = [1, 2, 3].into();
        let v = |granted: &'static [u64]| move |id| Some(granted.contains(&id));
        assert_eq!(vote_result(&joint, v(&[1, 2, 3])), VoteResult::Lost);
        assert_eq!(vote_result(&joint, v(&[1, 3, 4])), VoteResult::Won);
        assert_eq!(
            vote_result(&joint, |id| (id == 3).then_some(true)),
            VoteResult::Pending
        );
    }
}
