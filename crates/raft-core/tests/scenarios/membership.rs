//! Membership changes: simple one-voter changes, learners, joint consensus.

use crate::harness::{Cluster, lazy_commit_config};
use bytes::Bytes;
use raft_core::{
    ConfChange, ConfChangeOp, ConfChangeTransition, Error, MemLog, Membership, NodeId, Role,
};
use std::collections::BTreeSet;

fn change(ops: Vec<ConfChangeOp>) -> ConfChange {
    ConfChange {
        transition: ConfChangeTransition::Auto,
        ops,
    }
}

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

/// Adds an empty node that learns everything from the leader.
fn add_blank(c: &mut Cluster, id: NodeId) {
    c.add_node(id, MemLog::new(Membership::default()));
}

#[test]
fn a_single_voter_is_added_directly() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "before");
    add_blank(&mut c, 4);
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::AddVoter(4)]))
        .unwrap();
    c.stabilize();
    c.tick_all(3);
    for id in [1, 2, 3, 4] {
        let m = c.node(id).raw.membership().clone();
        assert_eq!(m.voters, set(&[1, 2, 3, 4]), "node {id}");
        assert!(!m.is_joint());
    }
    assert_eq!(c.state_of(4), vec![b"before".as_slice()]);
    // Four voters need three acknowledgements.
    c.isolate(3);
    c.isolate(4);
    let commit = c.commit(1);
    c.raw(1).propose(Bytes::from_static(b"x")).unwrap();
    c.stabilize();
    assert_eq!(c.commit(1), commit, "two of four is not a quorum");
}

#[test]
fn removing_a_follower_shrinks_the_quorum() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::RemoveNode(3)]))
        .unwrap();
    c.stabilize();
    assert_eq!(c.node(1).raw.membership().voters, set(&[1, 2]));
    assert!(!c.node(1).raw.status().progress.contains_key(&3));
    c.isolate(3);
    c.propose(1, "two-node");
    assert_eq!(c.state_of(2), vec![b"two-node".as_slice()]);
}

#[test]
fn a_learner_is_replicated_never_counts_never_campaigns_and_can_be_promoted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    add_blank(&mut c, 4);
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::AddLearner(4)]))
        .unwrap();
    c.stabilize();
    c.propose(1, "a");
    assert_eq!(
        c.state_of(4),
        vec![b"a".as_slice()],
        "learners receive the log"
    );
    assert!(c.node(1).raw.status().progress[&4].is_learner);

    // Leader + learner are not a quorum of {1, 2, 3}.
    c.isolate(2);
    c.isolate(3);
    let commit = c.commit(1);
    c.raw(1).propose(Bytes::from_static(b"b")).unwrap();
    c.stabilize();
    assert_eq!(c.commit(1), commit, "the learner's ack does not count");
    c.heal();
    c.tick_all(2);

    // An isolated learner never campaigns.
    let term = c.term(4);
    c.isolate(4);
    c.tick_all(60);
    assert_eq!(c.term(4), term);
    assert_eq!(c.role(4), Role::Follower);
    c.heal();
    c.tick_all(3);

    // Promotion.
    let leader = c.leader().unwrap();
    c.raw(leader)
        .propose_conf_change(change(vec![ConfChangeOp::AddVoter(4)]))
        .unwrap();
    c.stabilize();
    c.tick_all(2);
    for id in [1, 2, 3, 4] {
        let m = c.node(id).raw.membership();
        assert_eq!(m.voters, set(&[1, 2, 3, 4]), "node {id}");
        assert!(m.learners.is_empty());
    }
}

#[test]
fn joint_consensus_replaces_the_leader_when_it_is_not_in_c_new() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "old");
    add_blank(&mut c, 4);
    add_blank(&mut c, 5);
    c.raw(1)
        .propose_conf_change(change(vec![
            ConfChangeOp::AddVoter(4),
            ConfChangeOp::AddVoter(5),
            ConfChangeOp::RemoveNode(1),
        ]))
        .unwrap();
    c.stabilize();
    c.tick_all(5);
    for id in [2, 3, 4, 5] {
        let m = c.node(id).raw.membership();
        assert_eq!(
            m.voters,
            set(&[2, 3, 4, 5]),
            "node {id} left the joint config"
        );
        assert!(!m.is_joint());
    }
    let leader = c.leader().expect("C_new has a leader");
    assert!([2, 3, 4, 5].contains(&leader));
    assert_ne!(c.role(1), Role::Leader, "the old leader stepped down");
    // C_new works without node 1.
    c.isolate(1);
    c.propose(leader, "new");
    for id in [2, 3, 4, 5] {
        assert_eq!(c.state_of(id), vec![b"old".as_slice(), b"new".as_slice()]);
    }
}

#[test]
fn an_explicit_joint_configuration_needs_both_majorities_until_left() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    add_blank(&mut c, 4);
    add_blank(&mut c, 5);
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::JointExplicit,
            ops: vec![
                ConfChangeOp::AddVoter(4),
                ConfChangeOp::AddVoter(5),
                ConfChangeOp::RemoveNode(2),
                ConfChangeOp::RemoveNode(3),
            ],
        })
        .unwrap();
    c.stabilize();
    c.tick_all(3);
    let m = c.node(1).raw.membership().clone();
    assert!(
        m.is_joint(),
        "explicit joint configurations are not left automatically"
    );
    assert_eq!(m.voters_outgoing, set(&[1, 2, 3]));
    assert_eq!(m.voters, set(&[1, 4, 5]));

    // C_old has a majority (1, 2, 3) but C_new only has node 1: nothing commits.
    c.isolate(4);
    c.isolate(5);
    let commit = c.commit(1);
    c.raw(1).propose(Bytes::from_static(b"x")).unwrap();
    c.stabilize();
    assert_eq!(c.commit(1), commit);
    c.heal();
    c.tick_all(2);
    assert!(c.commit(1) > commit);

    // Leave explicitly.
    c.raw(1).propose_conf_change(ConfChange::default()).unwrap();
    c.stabilize();
    c.tick_all(2);
    let m = c.node(1).raw.membership().clone();
    assert!(!m.is_joint());
    assert_eq!(m.voters, set(&[1, 4, 5]));
}

#[test]
fn one_change_at_a_time_and_unsafe_changes_are_rejected() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::AddLearner(4)]))
        .unwrap();
    let second = c
        .raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::AddLearner(5)]));
    assert!(
        matches!(second, Err(Error::ConfChangeRejected(_))),
        "{second:?}"
    );
    c.stabilize();
    let all_gone = c.raw(1).propose_conf_change(change(vec![
        ConfChangeOp::RemoveNode(1),
        ConfChangeOp::RemoveNode(2),
        ConfChangeOp::RemoveNode(3),
    ]));
    assert!(matches!(all_gone, Err(Error::ConfChangeRejected(_))));
    let leave = c.raw(1).propose_conf_change(ConfChange::default());
    assert!(
        matches!(leave, Err(Error::ConfChangeRejected(_))),
        "not joint"
    );
    let two_direct = c.raw(1).propose_conf_change(ConfChange {
        transition: ConfChangeTransition::Auto,
        ops: vec![ConfChangeOp::AddVoter(6), ConfChangeOp::AddVoter(7)],
    });
    assert!(
        two_direct.is_ok(),
        "Auto turns a two-voter change into a joint one"
    );
}

#[test]
fn a_leader_that_demotes_itself_hands_over_to_the_most_up_to_date_voter() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::AddLearner(1)]))
        .unwrap();
    c.stabilize();
    let leader = c.leader().expect("handed over without an election timeout");
    assert!([2, 3].contains(&leader));
    assert_eq!(c.role(1), Role::Follower);
    assert!(c.node(1).raw.membership().learners.contains(&1));
    c.propose(leader, "b");
    assert_eq!(c.state_of(1), vec![b"a".as_slice(), b"b".as_slice()]);
}

#[test]
fn with_lazy_commit_a_removed_follower_still_learns_its_removal_committed() {
    let mut c = Cluster::with_config(&[1, 2, 3], lazy_commit_config);
    c.elect(1);
    c.propose(1, "before");
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::RemoveNode(3)]))
        .unwrap();
    c.stabilize();
    // The leader stopped tracking node 3 once the change applied, but told it the change
    // committed first (no tick, no later write needed): node 3 applied its own removal.
    assert!(!c.node(1).raw.status().progress.contains_key(&3));
    assert_eq!(c.commit(3), c.commit(1));
    assert_eq!(c.node(3).raw.membership().voters, set(&[1, 2]));
}

/// A forwarded batch in which a change that ends the leader's vote (its own removal) is
/// followed by another entry is refused whole and sent back: nothing may follow such a change
/// in the leader's log, since the leader stops counting itself once the change is in it.
#[test]
fn a_batch_with_entries_after_the_leaders_own_removal_is_refused_whole() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "before");
    c.stabilize();
    let removal = raft_core::Entry {
        kind: raft_core::EntryKind::ConfChange,
        data: raft_core::confchange::encode(&change(vec![ConfChangeOp::RemoveNode(1)])),
        ..raft_core::Entry::default()
    };
    let after = raft_core::Entry {
        data: Bytes::from_static(b"after"),
        ..raft_core::Entry::default()
    };
    let term = c.term(1);
    c.raw(1)
        .step(raft_core::Message {
            from: 2,
            to: 1,
            term,
            body: raft_core::MessageBody::Propose(vec![removal, after]),
        })
        .unwrap();
    c.stabilize();
    assert_eq!(
        c.node(2).dropped.len(),
        2,
        "both entries come back to node 2"
    );
    assert_eq!(c.role(1), Role::Leader);
    for id in [1, 2, 3] {
        assert!(!c.state_of(id).contains(&b"after".as_slice()), "node {id}");
    }
    // The leader goes on committing with its configuration unchanged.
    c.propose(1, "next");
    c.stabilize();
    assert!(c.state_of(3).contains(&b"next".as_slice()));
}

/// A change is in force once it is in the leader's log, so the leader counts its commit
/// index again at once: an entry held on a majority of the new configuration (but not of the
/// old) commits without waiting for another acknowledgement.
#[test]
fn a_leader_recounts_its_commit_index_when_a_change_enters_its_log() {
    let mut c = Cluster::new(&[1, 2, 3, 4]);
    c.elect(1);
    c.propose(1, "a");
    c.stabilize();
    // Nodes 3 and 4 hear nothing more: "x" reaches 1 and 2, two of four voters.
    c.isolate(3);
    c.isolate(4);
    c.propose(1, "x");
    c.stabilize();
    let before = c.commit(1);
    assert!(!c.state_of(1).contains(&b"x".as_slice()));
    c.raw(1)
        .propose_conf_change(change(vec![ConfChangeOp::RemoveNode(4)]))
        .unwrap();
    // Without delivering anything: "x" is on two of the three voters now.
    assert_eq!(c.commit(1), before + 1);
}
