//! Leadership transfer.

use crate::harness::Cluster;
use bytes::Bytes;
use raft_core::{ConfChange, ConfChangeOp, ConfChangeTransition, Error, MemLog, Membership, Role};

#[test]
fn leadership_moves_to_an_up_to_date_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let term = c.term(1);
    c.raw(1).transfer_leader(2).unwrap();
    c.stabilize();
    assert_eq!(c.leader(), Some(2));
    assert_eq!(c.term(2), term + 1);
    assert_eq!(c.role(1), Role::Follower);
}

#[test]
fn a_lagging_target_is_caught_up_before_timeout_now() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for i in 0..5 {
        c.raw(1).propose(Bytes::from(format!("v{i}"))).unwrap();
        c.stabilize();
    }
    c.heal();
    c.raw(1).transfer_leader(3).unwrap();
    let during = c.raw(1).propose(Bytes::from_static(b"late"));
    assert!(
        matches!(during, Err(Error::ProposalDropped(_))),
        "{during:?}"
    );
    c.stabilize();
    c.tick_all(25);
    assert_eq!(
        c.leader(),
        Some(3),
        "the lagging node won after catching up"
    );
    assert_eq!(c.state_of(3).len(), 5);
    c.propose(3, "under-3");
    assert_eq!(c.state_of(1).last().copied(), Some(b"under-3".as_slice()));
}

#[test]
fn a_transfer_to_an_unreachable_target_is_abandoned_after_an_election_timeout() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    c.raw(1).transfer_leader(3).unwrap();
    assert!(c.raw(1).propose(Bytes::from_static(b"x")).is_err());
    c.tick_all(10);
    assert_eq!(c.leader(), Some(1));
    assert_eq!(c.node(1).raw.status().lead_transferee, None);
    c.raw(1).propose(Bytes::from_static(b"y")).unwrap();
}

#[test]
fn only_voters_can_receive_leadership_and_only_leaders_can_transfer() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.add_node(4, MemLog::new(Membership::default()));
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddLearner(4)],
        })
        .unwrap();
    c.stabilize();
    assert!(matches!(
        c.raw(1).transfer_leader(4),
        Err(Error::NotAVoter(4))
    ));
    assert!(matches!(
        c.raw(2).transfer_leader(3),
        Err(Error::NotLeader { leader: Some(1) })
    ));
}

/// A configuration change applied while a transfer is under way (here the change that was
/// committed just before it) does not end the transfer: the target may already campaign
/// with the leader's `TimeoutNow`, so the leader keeps refusing proposals (and, under
/// leases, lease reads) until the transfer ends.
#[test]
fn applying_a_change_during_a_transfer_keeps_the_transfer() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.add_node(4, MemLog::new(Membership::default()));
    c.elect(1);
    c.nodes.get_mut(&1).unwrap().manual_apply = true;
    c.raw(1)
        .propose_conf_change(ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddLearner(4)],
        })
        .unwrap();
    c.stabilize();
    let change = c.node(1).unapplied.last().expect("handed out").index;
    c.isolate(3);
    c.raw(1).transfer_leader(3).unwrap();
    c.raw(1).on_applied(change).unwrap();
    assert_eq!(c.node(1).raw.status().lead_transferee, Some(3));
    let during = c.raw(1).propose(Bytes::from_static(b"x"));
    assert!(
        matches!(during, Err(Error::ProposalDropped(_))),
        "{during:?}"
    );
}
