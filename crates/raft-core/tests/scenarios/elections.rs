//! Elections: randomized timeouts, pre-vote, check-quorum, stickiness, minimum leadership,
//! priority, term checks and durable votes.

use crate::harness::{Cluster, default_config, log_with_terms};
use raft_core::{Config, MemLog, Message, MessageBody, NodeId, RawNode, Role, VoteRequest};

#[test]
fn a_leader_is_elected_by_timeout_and_everyone_agrees() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.tick_until_leader(100);
    assert_eq!(c.leaders(), vec![leader], "exactly one leader");
    let term = c.term(leader);
    for id in [1, 2, 3] {
        let s = c.node(id).raw.status();
        assert_eq!(s.leader, Some(leader));
        assert_eq!(s.term, term);
    }
}

#[test]
fn election_timeouts_are_drawn_from_base_plus_jitter() {
    // A lone voter campaigns when its timeout fires: measure the timeout per seed.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut cfg = default_config(1);
        cfg.pre_vote = false;
        let mut n = RawNode::new(cfg, MemLog::with_voters([1, 2, 3]), seed).unwrap();
        let mut ticks = 0;
        while n.status().role != Role::Candidate {
            n.tick().unwrap();
            ticks += 1;
            assert!(ticks < 20, "timeout must be < base + jitter = 20");
        }
        assert!(ticks >= 10, "timeout must be >= base = 10");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts are randomized: {seen:?}");
}

#[test]
fn a_candidate_counts_its_own_vote_only_after_it_is_persisted() {
    let mut c = Cluster::new(&[1]);
    c.nodes.get_mut(&1).unwrap().manual_persist = true;
    c.raw(1).campaign().unwrap();
    c.stabilize();
    assert_eq!(c.role(1), Role::Candidate, "vote not durable yet");
    c.persist_held(1);
    c.stabilize();
    assert_eq!(c.role(1), Role::Leader);
}

#[test]
fn vote_grants_wait_for_the_hard_state_to_be_durable() {
    let mut n = RawNode::new(default_config(2), MemLog::with_voters([1, 2, 3]), 1).unwrap();
    n.step(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Vote(VoteRequest::default()),
    })
    .unwrap();
    let rd = n.ready().unwrap();
    let hs = rd.hard_state.expect("term and vote must be persisted");
    assert_eq!((hs.term, hs.vote), (1, Some(1)));
    assert!(
        rd.messages.is_empty(),
        "no grant may leave before the write"
    );
    assert!(matches!(
        rd.persisted_messages.as_slice(),
        [Message { body: MessageBody::VoteResponse(r), term: 1, .. }] if r.granted
    ));
}

#[test]
fn pre_vote_prevents_term_inflation_from_a_partitioned_node() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let term = c.term(1);
    c.isolate(3);
    c.tick_all(100);
    assert_eq!(c.term(3), term, "pre-votes never raise the term");
    c.heal();
    c.tick_all(5);
    assert_eq!(c.leader(), Some(1), "the leader is not disturbed on rejoin");
    assert_eq!(c.term(1), term);

    // Without pre-vote the same partition inflates the term.
    fn no_pre_vote(id: u64) -> Config {
        Config {
            pre_vote: false,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], no_pre_vote);
    c.elect(1);
    let term = c.term(1);
    c.isolate(3);
    c.tick_all(100);
    assert!(
        c.term(3) > term + 2,
        "real elections bump the term each time"
    );
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(1);
    c.tick_all(25);
    assert_eq!(c.role(1), Role::Follower, "lost contact with the quorum");
    let new_leader = c.leader().expect("the majority elected a new leader");
    assert_ne!(new_leader, 1);
}

#[test]
fn stickiness_ignores_a_flapping_node_that_cannot_hear_the_leader() {
    fn no_pre_vote(id: u64) -> Config {
        Config {
            pre_vote: false,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], no_pre_vote);
    c.elect(1);
    let term = c.term(1);
    // Node 3 cannot hear the leader but reaches node 2, which hears the leader.
    c.cut_link(1, 3);
    c.tick_all(60);
    assert!(c.term(3) > term, "node 3 keeps campaigning");
    assert_eq!(c.term(2), term, "node 2 ignores its vote requests");
    assert_eq!(c.leader(), Some(1));
    assert_eq!(c.term(1), term);
}

#[test]
fn a_node_flapping_in_and_out_of_a_partition_does_not_displace_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let term = c.term(1);
    for _ in 0..5 {
        c.isolate(3);
        c.tick_all(30);
        c.heal();
        c.tick_all(5);
        assert_eq!(c.leader(), Some(1));
    }
    assert_eq!(c.term(1), term);
    assert_eq!(c.term(3), term);
}

#[test]
fn min_leadership_period_protects_a_new_leader_from_vote_requests() {
    fn cfg(id: u64) -> Config {
        Config {
            pre_vote: false,
            check_quorum: false,
            min_leadership_ticks: 20,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    let term = c.term(1);
    let last = c.node(1).raw.status().last_index;
    let disrupt = |term| Message {
        from: 3,
        to: 1,
        term,
        body: MessageBody::Vote(VoteRequest {
            last_log_index: last,
            last_log_term: term - 1,
            ..VoteRequest::default()
        }),
    };
    c.raw(1).step(disrupt(term + 1)).unwrap();
    assert_eq!(c.role(1), Role::Leader);
    assert_eq!(c.term(1), term);
    c.tick_all(21);
    c.raw(1).step(disrupt(term + 1)).unwrap();
    assert_eq!(
        c.role(1),
        Role::Follower,
        "after the period the usual rules apply"
    );
    assert_eq!(c.term(1), term + 1);
}

#[test]
fn priority_zero_nodes_never_start_elections() {
    fn cfg(id: u64) -> Config {
        Config {
            priority: if id == 3 { 1 } else { 0 },
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    assert_eq!(c.tick_until_leader(100), 3);
    c.isolate(3);
    c.tick_all(100);
    assert_eq!(c.leaders(), Vec::<u64>::new(), "1 and 2 wait for node 3");
}

#[test]
fn a_stale_leader_steps_down_on_hearing_a_higher_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let old_term = c.term(1);
    c.isolate(1);
    // Keep node 1 from noticing through check-quorum: tick only the others.
    for _ in 0..40 {
        c.raw(2).tick().unwrap();
        c.raw(3).tick().unwrap();
        c.stabilize();
    }
    let new_leader = c.leader().unwrap();
    assert_ne!(new_leader, 1);
    assert_eq!(c.role(1), Role::Leader, "node 1 still believes it leads");
    // A proposal on the stale leader can never commit.
    c.raw(1).propose("stale".into()).unwrap();
    c.heal();
    c.raw(1).tick().unwrap(); // heartbeat with the old term
    c.stabilize();
    assert_eq!(c.role(1), Role::Follower);
    assert!(c.term(1) > old_term);
    c.tick_all(3);
    for id in [1, 2, 3] {
        assert!(c.state_of(id).is_empty(), "the stale write never applies");
    }
}

/// A pre-vote request of a higher term changes nothing on the receiver (pre-vote's whole
/// point): without check-quorum (no stickiness) a node rejoining with a stale log asks
/// its peers, is refused, and the leader keeps its term.
#[test]
fn a_pre_vote_request_does_not_raise_the_receivers_term() {
    fn cfg(id: NodeId) -> Config {
        Config {
            check_quorum: false,
            pre_vote: true,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    c.isolate(3);
    c.propose(1, "behind");
    c.tick_all(60);
    c.heal();
    let term = c.term(1);
    c.raw(3).campaign().unwrap();
    c.stabilize();
    assert_eq!(c.term(2), term, "node 2 kept its term");
    assert_eq!(c.term(1), term);
    assert_eq!(c.role(1), Role::Leader);
}

/// A pre-candidate refused by a peer of a higher term learns that term (and stops
/// campaigning below it).
#[test]
fn a_pre_candidate_learns_the_term_of_a_refusal() {
    let mut c = Cluster::empty(default_config);
    c.add_node(1, log_with_terms(&[1, 2, 3], &[1, 5], 5));
    c.add_node(2, log_with_terms(&[1, 2, 3], &[1, 5], 5));
    c.add_node(3, log_with_terms(&[1, 2, 3], &[1], 1));
    c.raw(3).campaign().unwrap();
    c.stabilize();
    assert_eq!(c.term(3), 5);
    assert_eq!(c.role(3), Role::Follower);
}
