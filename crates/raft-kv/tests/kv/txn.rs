//! Txn semantics: compares (incl. missing keys), one revision per txn, nested txns, reads
//! inside txns, pre-checks, and the read-only path.

use crate::common::*;
use raft_kv::pb::etcdserverpb::compare::{CompareResult as R, TargetUnion as T};
use raft_kv::pb::etcdserverpb::{RangeRequest, RequestOp, request_op, response_op};
use raft_kv::{Error, Op, Outcome, Response};

fn txn_resp(r: Response) -> raft_kv::pb::etcdserverpb::TxnResponse {
    match r {
        Response::Txn(t) => t,
        r => panic!("{r:?}"),
    }
}

#[test]
fn compares_on_every_target() {
    let mut h = Harness::new();
    h.put("k", "b"); // rev 2 (a new store is at 1)
    h.put("k", "c"); // rev 3: create 2, mod 3, version 2
    let cases = [
        (cmp("k", R::Equal, T::Value(b("c"))), true),
        (cmp("k", R::Greater, T::Value(b("b"))), true),
        (cmp("k", R::Less, T::Value(b("b"))), false),
        (cmp("k", R::NotEqual, T::Value(b("c"))), false),
        (cmp("k", R::Equal, T::Version(2)), true),
        (cmp("k", R::Greater, T::Version(1)), true),
        (cmp("k", R::Equal, T::CreateRevision(2)), true),
        (cmp("k", R::Less, T::CreateRevision(2)), false),
        (cmp("k", R::Equal, T::ModRevision(3)), true),
        (cmp("k", R::NotEqual, T::ModRevision(3)), false),
        (cmp("k", R::Equal, T::Lease(0)), true),
        // A missing key compares as version/create/mod 0 ...
        (cmp("nope", R::Equal, T::Version(0)), true),
        (cmp("nope", R::Equal, T::CreateRevision(0)), true),
        (cmp("nope", R::Less, T::ModRevision(1)), true),
        // ... and a value compare on it always fails, even NOT_EQUAL (etcd's rule).
        (cmp("nope", R::NotEqual, T::Value(b("x"))), false),
        (cmp("nope", R::Equal, T::Value(b(""))), false),
    ];
    for (c, want) in cases {
        let before = h.store.revision();
        let t = txn_resp(h.ok(Op::Txn(txn(vec![c.clone()], vec![rget("k", "")], vec![]))));
        assert_eq!(t.succeeded, want, "{c:?}");
        // Read-only txns do not bump the revision.
        assert_eq!(h.store.revision(), before);
        assert_eq!(t.header.unwrap().revision, before);
    }
    // A compare over a range: every key must satisfy it.
    h.put("k2", "c");
    let mut c = cmp("k", R::Equal, T::Value(b("c")));
    c.range_end = b("l");
    assert!(txn_resp(h.ok(Op::Txn(txn(vec![c.clone()], vec![], vec![])))).succeeded);
    h.put("k3", "d");
    assert!(!txn_resp(h.ok(Op::Txn(txn(vec![c], vec![], vec![])))).succeeded);
}

#[test]
fn a_txn_is_one_revision() {
    let mut h = Harness::new();
    h.put("x", "0"); // rev 2
    let t = txn_resp(h.ok(Op::Txn(txn(
        vec![cmp("x", R::Equal, T::Version(1))],
        vec![
            rput("a", "1"),
            rput("b", "2"),
            rdel("x", ""),
            rget("a", "\0"),
        ],
        vec![],
    ))));
    assert!(t.succeeded);
    assert_eq!(h.store.revision(), 3);
    assert_eq!(t.header.unwrap().revision, 3);
    for k in ["a", "b"] {
        let kv = h.get(k).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (3, 3, 1));
    }
    assert!(h.get("x").is_none());
    // The range inside the txn saw the txn's own writes.
    match &t.responses[3].response {
        Some(response_op::Response::ResponseRange(r)) => {
            let keys: Vec<_> = r.kvs.iter().map(|kv| s(&kv.key)).collect();
            assert_eq!(keys, ["a", "b"]);
        }
        r => panic!("{r:?}"),
    }
    match &t.responses[2].response {
        Some(response_op::Response::ResponseDeleteRange(d)) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value.as_ref(), b"0");
        }
        r => panic!("{r:?}"),
    }
    // A txn whose only write deletes nothing keeps the revision.
    h.ok(Op::Txn(txn(vec![], vec![rdel("none", "")], vec![])));
    assert_eq!(h.store.revision(), 3);
    // Two puts of one key in a txn (not validated here): one revision, version +2.
    h.ok(Op::Txn(txn(
        vec![],
        vec![rput("a", "x"), rput("a", "y")],
        vec![],
    )));
    let a = h.get("a").unwrap();
    assert_eq!((a.mod_revision, a.version, s(&a.value)), (4, 3, "y".into()));
}

#[test]
fn failure_branch_and_nested_txns() {
    let mut h = Harness::new();
    h.put("flag", "on");
    // Outer fails; failure branch holds a nested txn whose compare sees the state before
    // the outer txn (etcd evaluates every compare of the path first).
    let inner = txn(
        vec![cmp("made", R::Equal, T::Version(0))],
        vec![rput("inner", "yes")],
        vec![rput("inner", "no")],
    );
    let t = txn_resp(h.ok(Op::Txn(txn(
        vec![cmp("flag", R::Equal, T::Value(b("off")))],
        vec![rput("never", "x")],
        vec![rput("made", "1"), rtxn(inner)],
    ))));
    assert!(!t.succeeded);
    assert!(h.get("never").is_none());
    assert_eq!(s(&h.get("inner").unwrap().value), "yes");
    match &t.responses[1].response {
        Some(response_op::Response::ResponseTxn(n)) => {
            assert!(n.succeeded);
            assert_eq!(n.responses.len(), 1);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.store.revision(), 3);
}

#[test]
fn txn_pre_checks_reject_the_whole_txn() {
    let mut h = Harness::new();
    h.put("a", "1");
    h.put("a", "2");
    let rev = h.store.revision();
    // ignore_value on a missing key anywhere on the path: nothing is written.
    let mut iv = put_req("missing", "");
    iv.ignore_value = true;
    let bad = RequestOp {
        request: Some(request_op::Request::RequestPut(iv)),
    };
    let o = h.apply(Op::Txn(txn(vec![], vec![rput("b", "1"), bad], vec![])));
    assert!(matches!(o, Outcome::Rejected(Error::KeyNotFound)), "{o:?}");
    assert!(h.get("b").is_none());
    assert_eq!(h.store.revision(), rev);
    // A range below the compact revision inside a txn: compacted; at a future one:
    // future.
    h.ok(Op::Compact(raft_kv::pb::etcdserverpb::CompactionRequest {
        revision: 2,
        physical: false,
    }));
    let old = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: b("a"),
            revision: 1,
            ..Default::default()
        })),
    };
    let o = h.apply(Op::Txn(txn(vec![], vec![rput("b", "1"), old], vec![])));
    assert!(matches!(o, Outcome::Rejected(Error::Compacted)), "{o:?}");
    assert!(h.get("b").is_none());
    // The current revision is readable, before the txn's first write.
    let cur = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: b("a"),
            revision: rev,
            ..Default::default()
        })),
    };
    h.ok(Op::Txn(txn(
        vec![],
        vec![cur.clone(), rput("b", "1")],
        vec![],
    )));
    // ... and after it, at the revision before the txn (the txn's own write is not seen
    // there, as in etcd), or at 0 (the txn's own write is seen).
    let before = h.store.revision();
    let at = |revision| RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: b("c"),
            revision,
            ..Default::default()
        })),
    };
    let o = h.ok(Op::Txn(txn(
        vec![],
        vec![rput("c", "1"), at(before), at(0)],
        vec![],
    )));
    let Response::Txn(t) = o else { panic!("{o:?}") };
    let found = |i: usize| match &t.responses[i].response {
        Some(raft_kv::pb::etcdserverpb::response_op::Response::ResponseRange(r)) => r.kvs.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!((found(1), found(2)), (0, 1));
}

#[test]
fn read_only_txn_path() {
    let mut h = Harness::new();
    h.put("a", "1");
    let t = h
        .store
        .txn_read_only(&txn(
            vec![cmp("a", R::Equal, T::Version(1))],
            vec![rget("a", "")],
            vec![],
        ))
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.header.unwrap().revision, 2);
    assert!(matches!(
        h.store
            .txn_read_only(&txn(vec![], vec![], vec![rput("a", "2")])),
        Err(Error::NotReadOnly)
    ));
    assert_eq!(h.store.revision(), 2);
    assert_eq!(h.store.applied_index(), 1);
}
