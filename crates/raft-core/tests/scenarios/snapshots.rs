//! Snapshots: compaction, sending a snapshot to a far-behind follower, installing it.

use crate::harness::Cluster;
use bytes::Bytes;
use raft_core::{LogRead, MessageBody};

#[test]
fn a_far_behind_follower_is_restored_from_a_snapshot() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for i in 0..20 {
        c.raw(1).propose(Bytes::from(format!("v{i}"))).unwrap();
        c.stabilize();
    }
    c.compact(1);
    c.compact(2);
    assert!(c.node(1).raw.log().first_index().unwrap() > 2);
    c.heal();
    c.tick_all(25);
    let installs = c.count_sent(1, 3, |b| matches!(b, MessageBody::InstallSnapshot(_)));
    assert_eq!(installs, 1, "one snapshot, then ordinary appends");
    assert_eq!(c.state_of(3), c.state_of(1));
    assert_eq!(c.state_of(3).len(), 20);
    let log3 = c.node(3).raw.log();
    assert_eq!(
        log3.snapshot_meta().unwrap().index,
        c.node(1).raw.log().snapshot_meta().unwrap().index,
        "node 3's log starts at the snapshot"
    );
    // Replication continues normally after the install.
    c.propose(1, "after");
    assert_eq!(c.state_of(3).last().copied(), Some(b"after".as_slice()));
}

#[test]
fn a_failed_snapshot_transfer_is_retried() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    for i in 0..5 {
        c.raw(1).propose(Bytes::from(format!("v{i}"))).unwrap();
        c.stabilize();
    }
    c.compact(1);
    c.heal();
    // The transport loses the first snapshot and says so.
    let dropped = std::cell::Cell::new(false);
    c.filter = Some(Box::new(move |m| {
        let first = matches!(m.body, MessageBody::InstallSnapshot(_)) && !dropped.get();
        if first {
            dropped.set(true);
        }
        first
    }));
    for _ in 0..40 {
        c.tick_all(1);
        if c.count_sent(1, 3, |b| matches!(b, MessageBody::InstallSnapshot(_))) == 1
            && c.node(1).raw.status().progress[&3].state == raft_core::ProgressState::Snapshot
        {
            c.raw(1).report_snapshot(3, false);
        }
    }
    assert_eq!(c.state_of(3), c.state_of(1));
    assert!(c.count_sent(1, 3, |b| matches!(b, MessageBody::InstallSnapshot(_))) >= 2);
}

#[test]
fn compaction_beyond_the_applied_index_is_refused() {
    let mut c = Cluster::new(&[1]);
    c.elect(1);
    let applied = c.node(1).raw.status().applied;
    assert!(c.raw(1).on_compacted(applied + 1).is_err());
    assert!(c.raw(1).on_compacted(applied).is_ok());
}
