//! Linearizable reads: ReadIndex (local and forwarded, batched) and lease reads.

use crate::harness::{Cluster, default_config};
use bytes::Bytes;
use raft_core::{Config, MessageBody, NodeId, ReadMode, Role};

fn ctx(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn a_leader_read_is_confirmed_by_a_quorum_heartbeat_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    let commit = c.commit(1);
    c.isolate(2);
    c.isolate(3);
    c.raw(1).read_index(ctx("r1")).unwrap();
    c.stabilize();
    assert!(c.node(1).read_states.is_empty(), "no quorum, no answer");
    c.heal();
    c.raw(1).tick().unwrap(); // next heartbeat round
    c.stabilize();
    let rs = &c.node(1).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(
        (rs[0].context.as_ref(), rs[0].index),
        (b"r1".as_slice(), commit)
    );
}

#[test]
fn a_follower_read_is_forwarded_to_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.raw(2).read_index(ctx("f")).unwrap();
    c.stabilize();
    let rs = &c.node(2).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].index, c.commit(1));
    assert!(c.node(2).applied_index >= rs[0].index);
}

#[test]
fn concurrent_reads_share_one_heartbeat_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.sent_log.clear();
    for i in 0..10 {
        c.raw(1).read_index(Bytes::from(format!("r{i}"))).unwrap();
    }
    c.stabilize();
    assert_eq!(c.node(1).read_states.len(), 10);
    let heartbeats = c
        .sent_log
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat(_)))
        .count();
    assert_eq!(
        heartbeats, 2,
        "one round (one heartbeat per peer) for ten reads"
    );
}

#[test]
fn reads_wait_until_the_new_leader_commits_in_its_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.filter = Some(Box::new(|m| {
        m.to == 1 && matches!(m.body, MessageBody::AppendResponse(_))
    }));
    c.elect(1);
    assert_eq!(c.commit(1), 0, "the no-op is not committed");
    c.raw(1).read_index(ctx("early")).unwrap();
    c.tick_all(1);
    assert!(c.node(1).read_states.is_empty());
    c.filter = None;
    c.tick_all(12);
    let rs = &c.node(1).read_states;
    assert_eq!(rs.len(), 1);
    assert!(
        rs[0].index >= 1,
        "served at or after the leader's own entry"
    );
}

#[test]
fn read_index_under_leader_change_never_serves_a_stale_value() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a");
    c.isolate(1);
    // The old leader cannot confirm leadership: its read stays unanswered.
    c.raw(1).read_index(ctx("old")).unwrap();
    for _ in 0..40 {
        for id in [2, 3] {
            c.raw(id).tick().unwrap();
        }
        c.stabilize();
    }
    let new_leader = c.leader().filter(|l| *l != 1).expect("a new leader");
    c.propose(new_leader, "b");
    let b_index = c.commit(new_leader);
    let other: NodeId = if new_leader == 2 { 3 } else { 2 };
    c.raw(other).read_index(ctx("new")).unwrap();
    c.stabilize();
    let rs = &c.node(other).read_states;
    assert_eq!(rs.len(), 1);
    assert!(rs[0].index >= b_index, "the read sees the new write");
    assert!(c.node(1).read_states.is_empty());
    c.heal();
    c.tick_all(3);
    assert_eq!(c.role(1), Role::Follower);
    assert!(
        c.node(1).read_states.is_empty(),
        "the deposed leader's read was dropped"
    );
}

#[test]
fn lease_reads_are_answered_at_once_while_the_lease_holds() {
    fn cfg(id: NodeId) -> Config {
        Config {
            read_mode: ReadMode::Lease {
                drift_margin_ticks: 2,
            },
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    // Under leases no node votes within an election timeout of its start.
    let l = c.tick_until_leader(100);
    let other = if l == 3 { 2 } else { 3 };
    c.tick_all(1); // a heartbeat round acknowledged by a quorum starts the lease
    c.raw(l).read_index(ctx("lease")).unwrap();
    let rd = c.raw(l).ready().unwrap();
    assert_eq!(rd.read_states.len(), 1, "served without a round trip");
    assert!(
        rd.messages
            .iter()
            .all(|m| !matches!(m.body, MessageBody::Heartbeat(_)))
    );
    c.raw(l).advance(&rd).unwrap();
    // During a leadership transfer the target may win at once: no lease reads.
    c.isolate(other);
    c.raw(l).transfer_leader(other).unwrap();
    c.raw(l).read_index(ctx("transfer")).unwrap();
    let rd = c.raw(l).ready().unwrap();
    assert!(
        rd.read_states.is_empty(),
        "no lease read while transferring"
    );
    c.raw(l).advance(&rd).unwrap();
    c.heal();
    c.tick_all(12); // the transfer times out or completes
    // Cut off, the lease runs out after base - margin = 8 ticks.
    let leader = c.leader().unwrap();
    c.isolate(leader);
    c.raw(leader).tick().unwrap();
    c.stabilize();
    let before = c.node(leader).read_states.len();
    for _ in 0..8 {
        c.raw(leader).tick().unwrap();
        c.stabilize();
    }
    c.raw(leader).read_index(ctx("expired")).unwrap();
    c.stabilize();
    assert_eq!(
        c.node(leader).read_states.len(),
        before,
        "the lease expired"
    );
}
