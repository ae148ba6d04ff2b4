//! Findings of a code review of raft-core, one scenario each (each fails without its fix).

use crate::harness::{Cluster, default_config, log_with_terms};
use bytes::Bytes;
use raft_core::{
    ConfChange, ConfChangeOp, ConfChangeTransition, Config, Error, MemLog, Membership, Message,
    MessageBody, NodeId, ReadMode, Role, SnapshotMeta,
};

fn change(transition: ConfChangeTransition, ops: Vec<ConfChangeOp>) -> ConfChange {
    ConfChange { transition, ops }
}

/// A follower that already holds a snapshot's last entry must not answer with its last
/// index: what follows that entry may be a stale tail of an old term, and the leader would
/// count it as a copy of its own entries toward commit. It answers with its commit index.
#[test]
fn a_snapshot_the_follower_already_holds_is_answered_with_its_commit_not_a_stale_tail() {
    let mut c = Cluster::empty(default_config);
    c.add_node(1, log_with_terms(&[1, 2, 3], &[1, 1, 2, 2], 4));
    // Node 2 has the same first four entries, then a tail from an old leader of term 3.
    c.add_node(2, log_with_terms(&[1, 2, 3], &[1, 1, 2, 2, 3, 3, 3], 4));
    c.add_node(3, log_with_terms(&[1, 2, 3], &[1, 1, 2, 2], 4));
    // Node 2 hears nothing from node 1 for now (its vote is not needed).
    c.filter = Some(Box::new(|m| m.to == 2 || m.from == 2));
    c.elect(1);
    c.propose(1, "x");
    assert_eq!(c.commit(1), 6);
    // Node 3 goes away: from here node 1 needs node 2 to commit.
    c.isolate(3);
    c.raw(1).propose(Bytes::from_static(b"y")).unwrap();
    c.stabilize();
    assert_eq!(c.node(1).raw.status().last_index, 7);
    // A snapshot at index 4 reaches node 2 (which holds entry 4 of term 2).
    let term = c.term(1);
    c.raw(2)
        .step(Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::InstallSnapshot(SnapshotMeta {
                index: 4,
                term: 2,
                membership: Membership::with_voters([1, 2, 3]),
            }),
        })
        .unwrap();
    let rd = c.raw(2).ready().unwrap();
    let answer = rd
        .persisted_messages
        .iter()
        .find(|m| m.to == 1 && matches!(m.body, MessageBody::AppendResponse(_)))
        .cloned()
        .expect("node 2 answers the snapshot");
    let MessageBody::AppendResponse(r) = &answer.body else {
        unreachable!()
    };
    assert!(
        r.index <= 4,
        "answered {}: past the snapshot is a stale tail",
        r.index
    );
    c.raw(1).step(answer).unwrap();
    while c.process_ready(1) {}
    assert_eq!(c.commit(1), 6, "entry 7 is on node 1 alone");
}

/// With asynchronous apply, a committed configuration change handed out before a snapshot
/// replaced the log may be reported applied after the snapshot was installed. It must not
/// apply on top of the snapshot's configuration (here, demoting a node the snapshot
/// records as promoted).
#[test]
fn a_change_applied_after_a_snapshot_replaced_the_log_does_not_apply_again() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4, MemLog::new(Membership::default()));
    c.elect(1);
    c.nodes.get_mut(&2).unwrap().manual_apply = true;
    let learner = c.node(1).raw.status().last_index + 1;
    c.raw(1)
        .propose_conf_change(change(
            ConfChangeTransition::Auto,
            vec![ConfChangeOp::AddLearner(4)],
        ))
        .unwrap();
    c.stabilize();
    assert!(c.node(2).unapplied.iter().any(|e| e.index == learner));
    // Node 2 is cut off while node 4 is promoted and the leader compacts past it all.
    c.isolate(2);
    c.raw(1)
        .propose_conf_change(change(
            ConfChangeTransition::Auto,
            vec![ConfChangeOp::AddVoter(4)],
        ))
        .unwrap();
    c.stabilize();
    c.propose(1, "after");
    c.compact(1);
    c.heal();
    c.tick_all(5);
    let st = c.node(2).raw.status();
    assert!(st.commit > learner + 1, "node 2 installed the snapshot");
    assert!(st.membership.voters.contains(&4));
    // Now node 2's application reports the old batch applied.
    c.raw(2).on_applied(learner).unwrap();
    assert!(
        c.node(2).raw.membership().voters.contains(&4),
        "{:?}",
        c.node(2).raw.membership()
    );
    assert!(c.node(2).raw.applied_membership().voters.contains(&4));
}

/// A leader that adds voters must not be deposed by the next check-quorum round just
/// because the new members have not answered yet: they start as recently active.
#[test]
fn new_members_do_not_fail_the_check_quorum_round_right_after_the_change() {
    let mut c = Cluster::new(&[1, 2]);
    for id in [3, 4] {
        c.add_node(id, MemLog::new(Membership::default()));
        c.isolate(id);
    }
    c.elect(1);
    // The check-quorum round comes after an election timeout (10 ticks) of leadership.
    c.tick_all(9);
    c.raw(1)
        .propose_conf_change(change(
            ConfChangeTransition::Auto,
            vec![ConfChangeOp::AddVoter(3), ConfChangeOp::AddVoter(4)],
        ))
        .unwrap();
    c.stabilize();
    c.tick_all(1);
    assert_eq!(
        c.role(1),
        Role::Leader,
        "deposed by members that had no chance"
    );
    c.heal();
    c.tick_all(5);
    assert_eq!(c.role(1), Role::Leader);
    assert_eq!(c.node(3).raw.membership().voters, [1, 2, 3, 4].into());
}

fn no_check_quorum(id: NodeId) -> Config {
    Config {
        check_quorum: false,
        pre_vote: false,
        ..default_config(id)
    }
}

/// Without check-quorum a leader that lost its quorum never steps down. Followers that
/// still hear it must not ignore other candidates (stickiness is only safe to apply when a
/// leader without a quorum steps down), or the rest of the cluster can never elect anyone.
#[test]
fn without_check_quorum_followers_of_a_leader_that_hears_nobody_still_vote() {
    let mut c = Cluster::with_config(&[1, 2, 3, 4, 5], no_check_quorum);
    c.elect(1);
    c.propose(1, "a");
    // Node 1 still reaches 2 and 3, but hears nobody and reaches neither 4 nor 5.
    for id in [2, 3, 4, 5] {
        c.cut.insert((id, 1));
    }
    c.cut.insert((1, 4));
    c.cut.insert((1, 5));
    let mut elected = None;
    for _ in 0..300 {
        c.tick_all(1);
        if let Some(l) = c.leaders().into_iter().find(|l| *l != 1) {
            elected = Some(l);
            break;
        }
    }
    let l = elected.expect("nodes 2-5 elect a leader");
    assert!(c.term(l) > c.term(1));
    c.propose(l, "b");
    assert_eq!(c.state_of(2), vec![b"a".as_slice(), b"b".as_slice()]);
}

/// A node restarted with a log whose changes past the applied index are not applied yet
/// (the membership it is given is the one as of `Config::applied`) uses the latest one.
#[test]
fn a_restart_replays_the_changes_logged_after_the_applied_index() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    let applied = c.node(1).raw.status().applied;
    c.raw(1)
        .propose_conf_change(change(
            ConfChangeTransition::Auto,
            vec![ConfChangeOp::AddLearner(3)],
        ))
        .unwrap();
    c.stabilize();
    let mut log = c.node(2).raw.log().clone();
    log.set_membership(Membership::with_voters([1, 2, 3]));
    c.add_node_with(
        2,
        log,
        Config {
            applied,
            ..default_config(2)
        },
    );
    let st = c.node(2).raw.status();
    assert_eq!(st.membership.voters, [1, 2].into());
    assert_eq!(st.membership.learners, [3].into());
    assert_eq!(
        c.node(2).raw.applied_membership(),
        &Membership::with_voters([1, 2, 3])
    );
}

fn small_uncommitted(id: NodeId) -> Config {
    Config {
        max_uncommitted_bytes: 4096,
        ..default_config(id)
    }
}

/// A leader cut off from its quorum stops accepting proposals once the entries it holds
/// uncommitted pass `max_uncommitted_bytes`, and accepts them again once they commit.
#[test]
fn a_leader_without_its_quorum_caps_its_uncommitted_log() {
    let mut c = Cluster::with_config(&[1, 2, 3], small_uncommitted);
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    let payload = Bytes::from(vec![7u8; 1000]);
    let mut accepted = 0;
    let refused = loop {
        match c.raw(1).propose(payload.clone()) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "no cap");
    };
    assert!(matches!(refused, Error::ProposalDropped(_)), "{refused}");
    assert_eq!(accepted, 4, "4,096 bytes hold four 1,000-byte entries");
    c.stabilize();
    c.heal();
    c.tick_all(3);
    assert!(c.raw(1).propose(payload).is_ok(), "committed: room again");
}

/// A proposal forwarded to a leader that refuses it (here: a leadership transfer is under
/// way) comes back to the follower that forwarded it, which hands it to its caller.
#[test]
fn a_forwarded_proposal_the_leader_refuses_comes_back_to_the_proposer() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    // The transfer to node 3 stays pending: node 3 hears nothing.
    c.isolate(3);
    c.raw(1).transfer_leader(3).unwrap();
    c.stabilize();
    c.raw(2).propose(Bytes::from_static(b"fwd")).unwrap();
    c.stabilize();
    let dropped: Vec<&[u8]> = c.node(2).dropped.iter().map(|e| e.data.as_ref()).collect();
    assert_eq!(dropped, vec![b"fwd".as_slice()]);
    // A proposal forwarded with a stale term gets the same answer.
    c.heal();
    let stale = c.term(1) - 1;
    c.raw(1)
        .step(Message {
            from: 2,
            to: 1,
            term: stale,
            body: MessageBody::Propose(vec![raft_core::Entry {
                data: Bytes::from_static(b"old"),
                ..raft_core::Entry::default()
            }]),
        })
        .unwrap();
    c.stabilize();
    assert!(c.node(2).dropped.iter().any(|e| e.data.as_ref() == b"old"));
}

fn lease(id: NodeId) -> Config {
    Config {
        read_mode: ReadMode::Lease {
            drift_margin_ticks: 2,
        },
        ..default_config(id)
    }
}

/// Lease reads rest on a majority promising not to vote for an election timeout after a
/// heartbeat. A voter that restarts has forgotten whether it promised, so it grants no
/// vote (a transfer's excepted) for an election timeout after it starts: otherwise a node
/// cut off from the leader could win with the restarted node's vote while the leader still
/// serves reads from its lease.
#[test]
fn a_restarted_voter_does_not_break_the_leaders_lease() {
    let mut c = Cluster::with_config(&[1, 2, 3], lease);
    let l = c.tick_until_leader(100);
    let (a, b) = match l {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    c.propose(l, "a");
    // Node b is cut off and its election timer runs out.
    c.isolate(b);
    c.tick_all(25);
    assert_eq!(c.role(l), Role::Leader);
    // The leader confirms its lease with node a.
    c.raw(l).read_index(Bytes::from_static(b"r1")).unwrap();
    c.stabilize();
    assert_eq!(c.node(l).read_states.len(), 1);
    // Node a restarts at once; the leader is cut off from both, node b reaches node a.
    let log = c.node(a).raw.log().clone();
    c.add_node(a, log);
    c.heal();
    c.isolate(l);
    for t in 0..7 {
        c.tick_all(1);
        assert!(
            c.leaders().iter().all(|x| *x == l),
            "tick {t}: a second leader while node {l} holds its lease: {:?}",
            c.leaders()
        );
    }
    c.raw(l).read_index(Bytes::from_static(b"r2")).unwrap();
    c.stabilize();
    assert_eq!(c.node(l).read_states.len(), 2, "served from the lease");
    // Later nodes a and b elect a leader.
    c.tick_all(60);
    assert!(c.leaders().iter().any(|x| *x != l));
}
