//! Lease apply, attachments, revokes at one revision, expiry order, snapshots (full and
//! delta) and restarts.

use super::*;
use crate::Error;
use crate::events::{EventSink, RevisionEvents};
use crate::pb::etcdserverpb::{
    DeleteRangeRequest, LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RequestOp, TxnRequest, request_op,
};
use crate::pb::mvccpb::event::EventType;
use crate::{Command, Op, Outcome, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Applies commands one entry each, numbering the entries.
struct Log {
    store: KvStore,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            store: KvStore::open_temporary().unwrap(),
            index: 0,
        }
    }

    fn apply(&mut self, op: Op) -> Outcome {
        self.index += 1;
        self.store
            .apply(self.index, 1, &Command::new(0, op))
            .unwrap()
            .outcome
    }

    fn ok(&mut self, op: Op) -> Response {
        match self.apply(op) {
            Outcome::Response(r) => r,
            other => panic!("refused: {other:?}"),
        }
    }

    fn err(&mut self, op: Op) -> Error {
        match self.apply(op) {
            Outcome::Rejected(e) => e,
            other => panic!("accepted: {other:?}"),
        }
    }
}

fn grant(id: i64, ttl: i64) -> Op {
    Op::LeaseGrant(LeaseGrantRequest { ttl, id })
}

fn revoke(id: i64) -> Op {
    Op::LeaseRevoke(LeaseRevokeRequest { id })
}

fn put(key: &str, lease: i64) -> Op {
    Op::Put(put_req(key, lease))
}

fn put_req(key: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: b"v".to_vec().into(),
        lease,
        ..Default::default()
    }
}

fn keys(store: &KvStore, id: i64) -> Vec<String> {
    store
        .lease_keys(id)
        .unwrap()
        .into_iter()
        .map(|k| String::from_utf8(k.to_vec()).unwrap())
        .collect()
}

/// Records every revision apply publishes.
#[derive(Default)]
struct Sink(parking_lot::Mutex<Vec<RevisionEvents>>);

impl EventSink for Sink {
    fn publish(&self, revisions: Vec<RevisionEvents>) {
        self.0.lock().extend(revisions);
    }
}

#[test]
fn grant_attach_and_revoke_at_one_revision() {
    let mut log = Log::new();
    let sink = Arc::new(Sink::default());
    log.store.set_event_sink(Some(sink.clone()));
    match log.ok(grant(7, 30)) {
        Response::LeaseGrant(r) => assert_eq!((r.id, r.ttl), (7, 30)),
        other => panic!("{other:?}"),
    }
    // A grant writes no key: the revision stays.
    assert_eq!(log.store.revision(), 1);
    assert_eq!(log.store.leases(), [(7, 30)]);
    log.ok(put("a", 7));
    log.ok(put("b", 7));
    log.ok(put("c", 7));
    log.ok(put("other", 0));
    assert_eq!(log.store.get(b"a").unwrap().unwrap().lease, 7);
    assert_eq!(keys(&log.store, 7), ["a", "b", "c"]);
    // A put without the lease detaches; ignore_lease keeps it; a delete detaches.
    log.ok(put("c", 0));
    log.ok(Op::Put(PutRequest {
        ignore_lease: true,
        ..put_req("b", 0)
    }));
    assert_eq!(keys(&log.store, 7), ["a", "b"]);
    log.ok(put("d", 7));
    log.ok(Op::DeleteRange(DeleteRangeRequest {
        key: b"d".to_vec().into(),
        ..Default::default()
    }));
    assert_eq!(keys(&log.store, 7), ["a", "b"]);
    let before = log.store.revision();
    sink.0.lock().clear();
    match log.ok(revoke(7)) {
        Response::LeaseRevoke(r) => assert_eq!(r.header.unwrap().revision, before + 1),
        other => panic!("{other:?}"),
    }
    // Both keys deleted in one revision, in key order; the others stay.
    assert_eq!(log.store.revision(), before + 1);
    let published = sink.0.lock().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].revision, before + 1);
    let deleted: Vec<&[u8]> = published[0]
        .events
        .iter()
        .map(|e| {
            assert_eq!(e.r#type, EventType::Delete as i32);
            e.kv.as_ref().unwrap().key.as_ref()
        })
        .collect();
    assert_eq!(deleted, [b"a".as_slice(), b"b"]);
    assert!(log.store.get(b"a").unwrap().is_none());
    assert!(log.store.get(b"c").unwrap().is_some());
    assert!(log.store.get(b"other").unwrap().is_some());
    assert!(log.store.leases().is_empty());
    assert!(keys(&log.store, 7).is_empty());
    // A lease without keys revokes without a new revision.
    log.ok(grant(8, 5));
    let rev = log.store.revision();
    log.ok(revoke(8));
    assert_eq!(log.store.revision(), rev);
}

#[test]
fn etcd_errors() {
    let mut log = Log::new();
    assert!(matches!(log.err(put("k", 5)), Error::LeaseNotFound));
    assert!(matches!(log.err(revoke(5)), Error::LeaseNotFound));
    assert!(matches!(log.err(grant(0, 5)), Error::LeaseNotFound));
    assert!(matches!(
        log.err(grant(5, MAX_LEASE_TTL + 1)),
        Error::LeaseTtlTooLarge
    ));
    log.ok(grant(5, 5));
    assert!(matches!(log.err(grant(5, 9)), Error::LeaseExists));
    // A txn whose put names a missing lease is refused as a whole.
    let txn = Op::Txn(TxnRequest {
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(put_req("x", 5))),
            },
            RequestOp {
                request: Some(request_op::Request::RequestPut(put_req("y", 6))),
            },
        ],
        ..Default::default()
    });
    assert!(matches!(log.err(txn), Error::LeaseNotFound));
    assert!(log.store.get(b"x").unwrap().is_none());
    // A checkpoint of a lease that is gone is ignored (etcd).
    log.ok(Op::LeaseCheckpoint(LeaseCheckpointRequest {
        checkpoints: vec![
            LeaseCheckpoint {
                id: 5,
                remaining_ttl: 3,
            },
            LeaseCheckpoint {
                id: 99,
                remaining_ttl: 3,
            },
        ],
    }));
    assert_eq!(log.store.lease(5), Some((5, 3)));
}

#[test]
fn one_batch_sees_its_own_lease_changes() {
    let store = KvStore::open_temporary().unwrap();
    let cmds = [
        Command::new(0, grant(1, 10)),
        Command::new(0, put("k1", 1)),
        Command::new(
            0,
            Op::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(put_req("k2", 1))),
                }],
                ..Default::default()
            }),
        ),
        Command::new(0, revoke(1)),
        Command::new(0, put("k3", 1)),
        Command::new(0, grant(1, 20)),
        Command::new(0, put("k4", 1)),
    ];
    let entries: Vec<crate::ApplyEntry<'_>> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| crate::ApplyEntry {
            index: i as u64 + 1,
            term: 1,
            payload: crate::EntryPayload::Command(c),
        })
        .collect();
    let results = store.apply_batch(&entries).unwrap();
    assert!(matches!(
        results[4].outcome,
        Outcome::Rejected(Error::LeaseNotFound)
    ));
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, r)| i == 4 || matches!(r.outcome, Outcome::Response(_)))
    );
    assert!(store.get(b"k1").unwrap().is_none());
    assert!(store.get(b"k2").unwrap().is_none());
    assert_eq!(keys(&store, 1), ["k4"]);
    assert_eq!(store.leases(), [(1, 20)]);
}

#[test]
fn members_applying_the_same_log_agree() {
    // Expiry is a revoke entry: every member deletes the same keys at the same revision.
    let ops = || {
        vec![
            grant(1, 5),
            grant(2, 50),
            put("a", 1),
            put("b", 2),
            put("c", 1),
            revoke(1),
            put("d", 2),
            revoke(2),
        ]
    };
    let (mut x, mut y) = (Log::new(), Log::new());
    for op in ops() {
        x.apply(op);
    }
    for op in ops() {
        y.apply(op);
    }
    assert_eq!(x.store.revision(), y.store.revision());
    assert_eq!(x.store.hash().unwrap(), y.store.hash().unwrap());
    assert_eq!(
        x.store.hash_kv(0).unwrap(),
        y.store.hash_kv(0).unwrap(),
        "same history"
    );
}

#[test]
fn expiries_come_out_in_expiry_order() {
    let mut log = Log::new();
    for (id, ttl) in [(1, 30), (2, 10), (3, 20), (4, 10)] {
        log.ok(grant(id, ttl));
    }
    let t0 = Instant::now();
    log.store.with_lessor(|l| l.promote(3, t0));
    let extend = LessorConfig::default().extend_on_promote;
    let at = |s| t0 + extend + Duration::from_secs(s);
    assert!(
        log.store
            .with_lessor(|l| l.take_expired(at(9), 10))
            .is_empty()
    );
    let mut first = log.store.with_lessor(|l| l.take_expired(at(10), 10));
    first.sort_unstable();
    assert_eq!(first, [2, 4]);
    // Lease 2 is revoked; lease 4's revoke was lost: it is handed out again after `retry`
    // (3 s), in the order of the times things fall due.
    log.ok(revoke(2));
    assert!(
        log.store
            .with_lessor(|l| l.take_expired(at(12), 10))
            .is_empty()
    );
    assert_eq!(
        log.store.with_lessor(|l| l.take_expired(at(20), 10)),
        [4, 3]
    );
    assert_eq!(
        log.store.with_lessor(|l| l.take_expired(at(30), 10)),
        [3, 4, 1]
    );
}

#[test]
fn snapshots_full_and_delta_carry_leases_and_attachments() {
    let mut a = Log::new();
    a.ok(grant(1, 10));
    a.ok(grant(2, 20));
    a.ok(put("k1", 1));
    a.ok(put("k2", 2));
    a.ok(put("k3", 2));
    let full = a.store.snapshot_full().unwrap();
    let info = full.info.clone();
    let records: Vec<_> = full.records.collect::<crate::Result<_>>().unwrap();
    a.store.capture_durable(info.index).unwrap();
    let b = KvStore::open_temporary().unwrap();
    b.restore_full(info.index, info.term, records.into_iter().map(Ok))
        .unwrap();
    assert_eq!(b.leases(), [(1, 10), (2, 20)]);
    assert_eq!(keys(&b, 2), ["k2", "k3"]);
    // After the base: a revoke, a moved key, a new lease, a checkpoint.
    a.ok(revoke(1));
    a.ok(put("k3", 0));
    a.ok(grant(3, 30));
    a.ok(put("k2", 3));
    a.ok(Op::LeaseCheckpoint(LeaseCheckpointRequest {
        checkpoints: vec![LeaseCheckpoint {
            id: 3,
            remaining_ttl: 12,
        }],
    }));
    let delta = a.store.snapshot_delta(info.index).unwrap();
    let dinfo = delta.info.clone();
    let records: Vec<_> = delta.records.collect::<crate::Result<_>>().unwrap();
    b.apply_delta(dinfo.index, dinfo.term, records.into_iter().map(Ok))
        .unwrap();
    assert_eq!(b.leases(), a.store.leases());
    assert_eq!(b.leases(), [(2, 20), (3, 30)]);
    assert_eq!(b.lease(3), Some((30, 12)));
    for id in 1..=3 {
        assert_eq!(keys(&b, id), keys(&a.store, id), "lease {id}");
    }
    assert_eq!(keys(&b, 3), ["k2"]);
    assert!(keys(&b, 2).is_empty());
    assert_eq!(b.hash().unwrap(), a.store.hash().unwrap());
    // The restored store applies on: revoking lease 3 deletes k2 there too.
    let mut b = Log {
        store: b,
        index: dinfo.index,
    };
    b.ok(revoke(3));
    assert!(b.store.get(b"k2").unwrap().is_none());
}

#[test]
fn leases_survive_a_restart_and_old_layouts_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = KvStore::open(dir.path()).unwrap();
        store.apply(1, 1, &Command::new(0, grant(9, 40))).unwrap();
        store.apply(2, 1, &Command::new(0, put("k", 9))).unwrap();
        store.flush().unwrap();
    }
    let store = KvStore::open(dir.path()).unwrap();
    assert_eq!(store.leases(), [(9, 40)]);
    assert_eq!(keys(&store, 9), ["k"]);
    // A layout 3 store (before leases) opens as the current layout (4 added leases, 5 the
    // revision index).
    let tree = &store.shared.tree;
    tree.insert(
        crate::layout::meta_key(crate::layout::meta::LAYOUT),
        &[3u8][..],
    )
    .unwrap();
    tree.flush().unwrap();
    drop(store);
    let store = KvStore::open(dir.path()).unwrap();
    let layout = store
        .shared
        .tree
        .get(crate::layout::meta_key(crate::layout::meta::LAYOUT))
        .unwrap()
        .unwrap();
    assert_eq!(layout.as_ref(), [crate::layout::LAYOUT_VERSION]);
    assert_eq!(crate::layout::LAYOUT_VERSION, 5);
    assert_eq!(
        store.check_revision_index().unwrap(),
        store
            .shared
            .tree
            .scan_prefix([crate::layout::HISTORY])
            .count()
    );
}
