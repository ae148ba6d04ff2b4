//! Nodes that disagree about the configuration: a voter that has not applied the change
//! that made it one, a removed node that does not know it was removed. Regression
//! scenarios for liveness failures found by the simulator (`raft-sim`).

use crate::harness::{Cluster, default_config, log_with_terms};
use raft_core::{Config, MessageBody, NodeId, Role};

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
