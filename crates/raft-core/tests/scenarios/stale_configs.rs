//! Nodes that disagree about the configuration: a voter that has not applied the change
//! that made it one, a removed node that does not know it was removed. Regression
//! scenarios for liveness failures found by the simulator (`raft-sim`).

use crate::harness::{Cluster, default_config, log_with_terms};
use bytes::Bytes;
use raft_core::{
    AppendResponse, ConfChange, ConfChangeOp, ConfChangeTransition, Config, EntryKind, Error,
    HardState, MemLog, Membership, Message, MessageBody, NodeId, Role,
};
use std::collections::BTreeSet;

fn no_pre_vote(id: NodeId) -> Config {
    let mut c = default_config(id);
    c.pre_vote = false;
    c
}

/// Simulator seed 688. Node 1's configuration makes node 2 a voter and needs node 2's
/// vote; node 2 lacks the change (in its own configuration, voters `{1, 3}`, it is a
/// learner, so it never campaigns) and its term is far higher, kept rising by node 3, a
/// removed node that still campaigns with a short log. A node that ignores vote requests
/// of a lower term without answering left node 1 campaigning below node 2's term forever:
/// it must learn the term from the rejection.
#[test]
fn a_candidate_behind_a_non_promotable_voters_term_learns_it_from_the_rejection() {
    let mut c = Cluster::empty(no_pre_vote);
    c.add_node(1, log_with_terms(&[1, 2], &[1, 1, 1, 1], 1));
    let mut learner = Membership::with_voters([1, 3]);
    learner.learners = [2].into();
    let mut log2 = MemLog::new(learner);
    log2.append(&[crate::harness::entry(1, 1), crate::harness::entry(2, 1)]);
    log2.set_hard_state(HardState {
        term: 50,
        vote: None,
        commit: 0,
    });
    c.add_node(2, log2);
    c.add_node(3, log_with_terms(&[2, 3], &[1], 50));
    let leader = c.tick_until_leader(200);
    assert_eq!(leader, 1, "only node 1 has a log node 2 accepts");
    assert!(c.term(1) > 50, "node 1 campaigned above node 2's term");
    assert!(
        c.count_sent(
            2,
            1,
            |b| matches!(b, MessageBody::VoteResponse(r) if !r.granted)
        ) > 0,
        "node 2 told node 1 its term"
    );
    // Node 3 keeps campaigning, but node 2 now follows a live leader and ignores it.
    c.tick_all(100);
    assert_eq!(c.role(1), Role::Leader);
    assert_eq!(c.node(2).raw.status().leader, Some(1));
}

/// With a live leader, a vote request of a lower term (a stale or removed node) gets no
/// answer: telling it the term would only help it disrupt the cluster.
#[test]
fn a_live_leader_and_its_followers_ignore_lower_term_vote_requests() {
    let mut c = Cluster::empty(no_pre_vote);
    for id in [1, 2, 3] {
        c.add_node(id, log_with_terms(&[1, 2, 3], &[], 5));
    }
    c.elect(1);
    // A removed node that still counts the others, at a lower term.
    c.add_node(4, log_with_terms(&[1, 2, 3, 4], &[], 2));
    c.raw(4).campaign().unwrap();
    c.stabilize();
    let votes_to_4 = c.count_sent(1, 4, |b| matches!(b, MessageBody::VoteResponse(_)))
        + c.count_sent(2, 4, |b| matches!(b, MessageBody::VoteResponse(_)))
        + c.count_sent(3, 4, |b| matches!(b, MessageBody::VoteResponse(_)));
    assert_eq!(votes_to_4, 0, "no answer to the stale candidate");
    assert_eq!(c.term(4), 3);
    assert_eq!(c.leader(), Some(1));
}

/// Simulator seed 1817. Leader 1 demotes itself through a joint configuration
/// (`{2} / {1, 2}`); once the joint configuration applies it proposes the leave, and a
/// client write arrives before the leave is applied. Node 2 acknowledges the leave, then
/// is cut off before it learns that the leave committed: it stays in the joint
/// configuration, where it needs node 1's vote. Node 1 applies the leave, cannot hand
/// over, and steps down as a learner that can no longer campaign. Had it appended the
/// write, its log would be longer than node 2's and it would refuse its vote forever; a
/// leader that has proposed the end of its own vote appends nothing more, so its log is
/// committed by the time it stops leading and node 2 can win.
#[test]
fn a_leader_appends_nothing_after_the_change_that_ends_its_vote() {
    let mut c = Cluster::new(&[1, 2]);
    c.elect(1);
    let leave = c.node(1).raw.status().last_index + 2;
    // Node 2's acknowledgements of the leave are lost for now, and nothing after the
    // leave reaches it.
    c.filter = Some(Box::new(move |m| match &m.body {
        MessageBody::AppendResponse(r) => m.from == 2 && r.index >= leave,
        MessageBody::Append(a) => a.entries.last().is_some_and(|e| e.index > leave),
        _ => false,
    }));
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::JointImplicit,
            ops: vec![ConfChangeOp::AddLearner(1)],
        })
        .unwrap();
    c.stabilize();
    assert!(c.node(1).raw.applied_membership().is_joint());
    assert_eq!(
        c.node(2).raw.status().last_index,
        leave,
        "node 2 has the leave"
    );
    let write = c.raw(1).propose(Bytes::from_static(b"late"));
    c.stabilize();

    // Node 2's acknowledgement arrives, and then the link breaks.
    c.filter = None;
    c.isolate(1);
    let term = c.term(1);
    c.raw(1)
        .step(Message {
            from: 2,
            to: 1,
            term,
            body: MessageBody::AppendResponse(AppendResponse {
                index: leave,
                ..AppendResponse::default()
            }),
        })
        .unwrap();
    c.stabilize();
    assert!(
        !c.node(1).raw.applied_membership().is_joint(),
        "node 1 applied the leave"
    );
    assert!(
        c.node(2).raw.applied_membership().is_joint(),
        "node 2 did not"
    );
    // The configuration in force is the latest in the log: node 2 holds the leave, so it
    // counts votes in `{2}` and needs nobody else's.
    assert!(!c.node(2).raw.membership().is_joint());
    c.tick_all(40);
    assert_eq!(c.role(1), Role::Follower, "node 1 could not hand over");
    c.heal();
    assert_eq!(c.tick_until_leader(200), 2);
    assert!(
        matches!(write, Err(Error::ProposalDropped(_))),
        "the write after the leave was refused: {write:?}"
    );
}

/// The same rule for a leader elected while its log holds a change that ends its vote,
/// not known committed: it may campaign (a voter of the configuration before the change),
/// counts votes in the configuration in force (without itself), and appends its no-op and
/// nothing else.
#[test]
fn a_new_leader_whose_log_demotes_it_accepts_no_proposals() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5]);
    c.elect(1);
    let change = c.node(1).raw.status().last_index + 1;
    // Node 2 never learns that the change committed.
    c.filter = Some(Box::new(move |m| {
        m.to == 2
            && match &m.body {
                MessageBody::Append(a) => a.commit >= change,
                MessageBody::Heartbeat(h) => h.commit >= change,
                _ => false,
            }
    }));
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddLearner(2)],
        })
        .unwrap();
    c.stabilize();
    assert!(c.node(1).raw.applied_membership().learners.contains(&2));
    assert!(!c.node(2).raw.applied_membership().learners.contains(&2));
    // Node 2 holds the change (it is in force there) but does not know it committed.
    assert!(c.node(2).raw.membership().learners.contains(&2));
    // Node 1 goes away; node 2 wins with three of `{1, 3, 4, 5}`, but its no-op is not
    // acknowledged, so the change stays unapplied there.
    c.isolate(1);
    c.filter = Some(Box::new(|m| {
        m.to == 2 && matches!(m.body, MessageBody::AppendResponse(_))
    }));
    for _ in 0..200 {
        if c.role(2) == Role::Leader {
            break;
        }
        c.tick_all(1);
    }
    assert_eq!(c.role(2), Role::Leader);
    let refused = c.raw(2).propose(Bytes::from_static(b"x"));
    assert!(
        matches!(refused, Err(Error::ProposalDropped(_))),
        "{refused:?}"
    );
    // Once the change is applied, node 2 hands leadership to a voter.
    c.filter = None;
    c.tick_all(30);
    let leader = c.leader().expect("a leader");
    assert!([3, 4, 5].contains(&leader), "leader {leader}");
    assert_ne!(c.role(2), Role::Leader);
}

/// The two-step regression hazard. `{1, 2, 3}` moves to `{3, 4, 5}` through a joint
/// configuration (the old and new majorities `{1, 2}` and `{4, 5}` are disjoint). Nodes 1
/// and 2 then crash torn: their logs keep both the joint entry and the leave, but the hard
/// state and the state machine lose everything from the joint on (commit and applied
/// before it). Had they taken their configuration from what they applied, they would
/// count votes in `{1, 2, 3}`, elect one of themselves with each other's vote and commit
/// beside the new cluster. The configuration in force is the latest in the log, so they
/// count votes in `{3, 4, 5}` and can win nothing without that cluster.
#[test]
fn a_torn_crash_that_loses_the_commit_of_a_two_step_change_cannot_split_the_cluster() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    let before = c.commit(1);
    for id in [4, 5] {
        c.add_node(id, MemLog::new(Membership::default()));
    }
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![
                ConfChangeOp::AddVoter(4),
                ConfChangeOp::AddVoter(5),
                ConfChangeOp::RemoveNode(1),
                ConfChangeOp::RemoveNode(2),
            ],
        })
        .unwrap();
    c.stabilize();
    c.tick_all(5);
    let new: BTreeSet<NodeId> = [3, 4, 5].into();
    let leader = c.leader().expect("the new cluster leads");
    assert!(new.contains(&leader));
    for id in [1, 2] {
        let mut log = c.node(id).raw.log().clone();
        let has = |kind| log.all_entries().iter().filter(|e| e.kind == kind).count();
        assert_eq!(has(EntryKind::ConfChange), 2, "node {id} kept both changes");
        let hs = log.hard_state();
        log.set_hard_state(HardState {
            commit: before,
            ..hs
        });
        log.set_membership(Membership::with_voters([1, 2, 3]));
        let config = Config {
            applied: before,
            ..default_config(id)
        };
        c.add_node_with(id, log, config);
        assert_eq!(c.node(id).raw.membership().voters, new, "node {id}");
        assert_eq!(
            c.node(id).raw.applied_membership().voters,
            [1, 2, 3].into(),
            "node {id} applied only the old configuration"
        );
    }
    // The old majority on one side, the new cluster on the other.
    for a in [1, 2] {
        for b in [3, 4, 5] {
            c.cut_link(a, b);
        }
    }
    let mut old_side_led = false;
    for _ in 0..300 {
        c.tick_all(1);
        old_side_led |= c.role(1) == Role::Leader || c.role(2) == Role::Leader;
    }
    assert!(!old_side_led, "a removed node led");
    c.propose(c.leader().expect("the new cluster leads"), "b");
    let leader = c.leader().unwrap();
    assert!(new.contains(&leader));
    assert_eq!(c.state_of(leader), vec![b"a".as_slice(), b"b".as_slice()]);
    assert!(c.commit(1) <= before + 2 && c.commit(2) <= before + 2);
}

/// Simulator seed 12007214 (30,000 ticks). Node 1 leads `{1}` with node 2 a learner, moves
/// to `{2}` through `{2} / {1}` and hands over once the leave applied. Node 2 leads, sends
/// its no-op to node 1 and crashes before its own write of it is durable, having lost the
/// commit-only hard state that said the leave committed: it restarts having applied the
/// joint configuration only. Had it counted votes in what it applied, it would need node
/// 1's vote, which node 1 (a learner now, with the longer log) refuses forever. The leave
/// is in its log, so it counts votes in `{2}` and wins alone.
#[test]
fn a_node_that_lost_the_commit_of_its_promotion_leads_by_the_configuration_in_its_log() {
    let mut c = Cluster::new(&[1]);
    c.add_node(2, MemLog::new(Membership::default()));
    c.elect(1);
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddLearner(2)],
        })
        .unwrap();
    c.stabilize();
    let joint = c.node(1).raw.status().last_index + 1;
    let leave = joint + 1;
    // Node 2's writes wait until the test lets them through.
    c.nodes.get_mut(&2).unwrap().manual_persist = true;
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::JointImplicit,
            ops: vec![ConfChangeOp::AddVoter(2), ConfChangeOp::AddLearner(1)],
        })
        .unwrap();
    for _ in 0..100 {
        c.stabilize();
        if c.role(2) == Role::Leader {
            break;
        }
        c.persist_held(2);
        c.tick_all(1);
    }
    assert_eq!(c.role(2), Role::Leader, "node 1 handed over");
    c.stabilize();
    let noop = leave + 1;
    assert_eq!(
        c.node(1).raw.status().last_index,
        noop,
        "node 1 has the no-op"
    );
    // The crash: node 2's write of its no-op and the commit of the leave are lost.
    let mut log = c.node(2).raw.log().clone();
    assert_eq!(log.all_entries().last().map(|e| e.index), Some(leave));
    let hs = log.hard_state();
    log.set_hard_state(HardState {
        commit: joint,
        ..hs
    });
    let mut m = Membership::with_voters([2]);
    m.voters_outgoing = [1].into();
    m.learners_next = [1].into();
    m.auto_leave = true;
    log.set_membership(m.clone());
    c.add_node_with(
        2,
        log,
        Config {
            applied: joint,
            ..default_config(2)
        },
    );
    assert_eq!(c.node(2).raw.applied_membership(), &m);
    assert_eq!(c.node(2).raw.membership().voters, [2].into());
    assert_eq!(c.tick_until_leader(100), 2);
    c.propose(2, "after");
    assert_eq!(c.commit(1), c.commit(2), "node 1 follows");
}

/// Simulator seed 855 (with its fault mix of 2026-12-07). Without pre-vote or check-quorum
/// (so without leader stickiness), a node removed from the configuration that never heard
/// of it campaigns at ever higher terms. While they hear their leader, the members ignore
/// vote requests from nodes in none of the configurations in their log from their applied
/// index on, so it cannot depose their leader.
#[test]
fn a_removed_node_that_does_not_know_it_cannot_depose_the_leader() {
    let mut c = Cluster::with_config(&[1, 2, 3], no_pre_vote_no_check_quorum);
    c.elect(1);
    c.isolate(3);
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::RemoveNode(3)],
        })
        .unwrap();
    c.stabilize();
    c.propose(1, "after");
    assert_eq!(c.node(1).raw.applied_membership().voters, [1, 2].into());
    assert_eq!(c.node(3).raw.membership().voters, [1, 2, 3].into());
    c.heal();
    let term = c.term(1);
    c.tick_all(300);
    assert!(c.term(3) > term + 3, "node 3 kept campaigning");
    assert_eq!(c.role(1), Role::Leader);
    assert_eq!(c.term(1), term, "node 3 did not disturb the members");
}

fn no_pre_vote_no_check_quorum(id: NodeId) -> Config {
    Config {
        pre_vote: false,
        check_quorum: false,
        ..default_config(id)
    }
}

/// Simulator seed 1025291. Node 7, the only voter, adds node 2 as a voter (`{2, 7}` is in
/// force at once) and loses its leadership before node 2 has any of the log. Node 2 knows
/// only the bootstrap configuration, in which node 7 is not a member; node 7 needs its
/// vote. A node with no live leader must answer such a candidate.
#[test]
fn a_new_voter_that_does_not_know_the_candidate_yet_still_votes_for_it() {
    let mut c = Cluster::empty(default_config);
    // Both start from the bootstrap `{1}`; node 7's log moved it to `{7}`.
    let mut log7 = MemLog::with_voters([1]);
    let conf = |index, cc: &ConfChange| raft_core::Entry {
        index,
        term: 1,
        kind: EntryKind::ConfChange,
        data: raft_core::confchange::encode(cc),
    };
    log7.append(&[
        conf(
            1,
            &ConfChange {
                transition: ConfChangeTransition::JointImplicit,
                ops: vec![ConfChangeOp::AddVoter(7), ConfChangeOp::RemoveNode(1)],
            },
        ),
        conf(2, &ConfChange::default()),
    ]);
    log7.set_hard_state(HardState {
        term: 1,
        vote: None,
        commit: 2,
    });
    c.add_node(7, log7);
    c.add_node(2, MemLog::with_voters([1]));
    assert_eq!(c.node(7).raw.membership().voters, [7].into());
    c.elect(7);
    c.isolate(2);
    c.raw(7)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddVoter(2)],
        })
        .unwrap();
    c.stabilize();
    assert_eq!(c.node(7).raw.membership().voters, [2, 7].into());
    // Node 7 cannot reach node 2 for an election timeout: check-quorum deposes it.
    c.tick_all(25);
    assert_ne!(c.role(7), Role::Leader);
    c.heal();
    assert_eq!(c.tick_until_leader(200), 7);
    c.propose(7, "x");
    assert_eq!(c.node(2).raw.membership().voters, [2, 7].into());
    assert_eq!(c.state_of(2), vec![b"x".as_slice()]);
}
