//! Nodes that disagree about the configuration: a voter that has not applied the change
//! that made it one, a removed node that does not know it was removed. Regression
//! scenarios for liveness failures found by the simulator (`raft-sim`).

use crate::harness::{Cluster, default_config, log_with_terms};
use bytes::Bytes;
use raft_core::{
    AppendResponse, ConfChange, ConfChangeOp, ConfChangeTransition, Config, Error, Message,
    MessageBody, NodeId, Role,
};

fn no_pre_vote(id: NodeId) -> Config {
    let mut c = default_config(id);
    c.pre_vote = false;
    c
}

/// Simulator seed 688. Node 1 applied a configuration in which node 2 is a voter and
/// needs node 2's vote; node 2 has not applied it yet (its own configuration, `{3}`, does
/// not make it a voter, so it never campaigns) and its term is far higher, kept rising by
/// node 3, a removed node that still campaigns with a short log. A node that ignores
/// vote requests of a lower term without answering left node 1 campaigning below node
/// 2's term forever: it must learn the term from the rejection.
#[test]
fn a_candidate_behind_a_non_promotable_voters_term_learns_it_from_the_rejection() {
    let mut c = Cluster::empty(no_pre_vote);
    c.add_node(1, log_with_terms(&[1, 2], &[1, 1, 1, 1], 1));
    c.add_node(2, log_with_terms(&[3], &[1, 1], 50));
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
    assert!(c.node(1).raw.membership().is_joint());
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
        !c.node(1).raw.membership().is_joint(),
        "node 1 applied the leave"
    );
    assert!(c.node(2).raw.membership().is_joint(), "node 2 did not");
    c.tick_all(40);
    assert_eq!(c.role(1), Role::Follower, "node 1 could not hand over");
    c.heal();
    assert_eq!(c.tick_until_leader(200), 2);
    assert!(
        matches!(write, Err(Error::ProposalDropped(_))),
        "the write after the leave was refused: {write:?}"
    );
}

/// The same rule for a leader elected while its unapplied log holds a change that ends
/// its vote: it appends its no-op and nothing else until that change is applied.
#[test]
fn a_new_leader_whose_unapplied_log_demotes_it_accepts_no_proposals() {
    let mut c = Cluster::new(&[1, 2, 3]);
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
    assert!(c.node(1).raw.membership().learners.contains(&2));
    assert!(!c.node(2).raw.membership().learners.contains(&2));
    // Node 1 goes away; node 2 (still a voter in its own configuration) wins, but its
    // no-op is not acknowledged, so the change stays unapplied.
    c.isolate(1);
    c.filter = Some(Box::new(|m| {
        m.from == 3 && matches!(m.body, MessageBody::AppendResponse(_))
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
}
