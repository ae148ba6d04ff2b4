//! Snapshots: full and delta captures, restore of a chain, copy-on-write under concurrent
//! writes, interrupted restores and bad records.

use crate::common::*;
use raft_kv::pb::mvccpb::KeyValue;
use raft_kv::{CaptureKind, Command, Error, KvStore, Member, Op, Outcome, SnapshotRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every key-value of the store.
fn dump(store: &KvStore) -> Vec<KeyValue> {
    store.range(&range_req("\0", "\0")).unwrap().kvs
}

fn collect(records: impl Iterator<Item = raft_kv::Result<SnapshotRecord>>) -> Vec<SnapshotRecord> {
    let v: Vec<_> = records.map(|r| r.unwrap()).collect();
    for w in v.windows(2) {
        assert!(w[0].key() < w[1].key(), "records out of order");
    }
    v
}

fn restored(index: u64, full: &[SnapshotRecord], deltas: &[(u64, Vec<SnapshotRecord>)]) -> KvStore {
    let s = KvStore::open_temporary().unwrap();
    s.restore_full(index, 1, full.iter().cloned().map(Ok))
        .unwrap();
    for (i, d) in deltas {
        s.apply_delta(*i, 1, d.iter().cloned().map(Ok)).unwrap();
    }
    s
}

fn load(h: &mut Harness, n: usize) {
    let entries: Vec<Command> = (0..n)
        .map(|i| Command::new(0, put_op(&format!("key{i:05}"), &format!("v{i}"))))
        .collect();
    for c in &entries {
        let i = h.next_index;
        h.next_index += 1;
        h.store.apply(i, 1, c).unwrap();
    }
}

#[test]
fn full_then_delta_chain_restores_the_state() {
    let mut h = Harness::new();
    load(&mut h, 50);
    h.store
        .apply_membership(
            h.next_index,
            1,
            &[Member {
                id: 1,
                name: "a".into(),
                ..Default::default()
            }],
        )
        .unwrap();
    h.next_index += 1;
    let full = h.store.capture(CaptureKind::Full).unwrap();
    let n0 = full.info.index;
    assert_eq!(full.info.revision, 51); // 1 + 50 puts
    assert_eq!(full.info.base_index, None);
    let full_recs = collect(full.records);
    // A history event and a current entry per key, and the metadata.
    assert_eq!(full_recs.len(), 2 * 50 + 3);
    h.store.capture_durable(n0).unwrap();
    let copy = restored(n0, &full_recs, &[]);
    assert_eq!(dump(&copy), dump(&h.store));
    assert_eq!(copy.revision(), 51);
    assert_eq!(copy.applied_index(), n0);
    assert_eq!(copy.members(), h.store.members());

    // Changes: overwrite, delete, create, delete-then-recreate, create-then-delete.
    h.put("key00001", "new");
    h.del("key00002", "");
    h.put("fresh", "1");
    h.del("key00003", "");
    h.put("key00003", "back");
    h.put("temp", "x");
    h.del("temp", "");
    let delta = h.store.snapshot_delta(n0).unwrap();
    assert_eq!(delta.info.base_index, Some(n0));
    let n1 = delta.info.index;
    let recs = collect(delta.records);
    let data: Vec<_> = recs
        .iter()
        .filter(|r| r.key()[0] == b'k')
        .map(|r| match r {
            SnapshotRecord::Put { key, .. } => format!("put {}", s(&key[1..])),
            SnapshotRecord::Delete { key } => format!("del {}", s(&key[1..])),
        })
        .collect();
    // Deleted keys keep a tombstone (reads at older revisions find them through it).
    assert_eq!(
        data,
        [
            "put fresh",
            "put key00001",
            "put key00002",
            "put key00003",
            "put temp"
        ]
    );
    // One history event per write since the base, nothing older.
    let events = recs.iter().filter(|r| r.key()[0] == b'h').count();
    assert_eq!(events, 7);
    h.store.capture_durable(n1).unwrap();
    let copy = restored(n0, &full_recs, &[(n1, recs)]);
    assert_eq!(dump(&copy), dump(&h.store));
    assert_eq!(copy.revision(), h.store.revision());
    assert_eq!(copy.applied_index(), n1);
    // The restored store goes on applying like the original.
    let mut hc = Harness::with(copy);
    assert_eq!(hc.next_index, h.next_index);
    hc.put("after", "1");
    h.put("after", "1");
    assert_eq!(dump(&hc.store), dump(&h.store));
    // And its own deltas start from the restored index.
    assert!(matches!(
        hc.store.snapshot_delta(n0),
        Err(Error::DeltaBaseMismatch { .. })
    ));
    let d = collect(hc.store.snapshot_delta(n1).unwrap().records);
    assert_eq!(d.iter().filter(|r| r.key()[0] == b'k').count(), 1);
}

#[test]
fn a_capture_that_never_became_durable_leaves_its_changes_tracked() {
    let mut h = Harness::new();
    load(&mut h, 10);
    let base = h.store.capture(CaptureKind::Full).unwrap();
    let n0 = base.info.index;
    let base_recs = collect(base.records);
    h.store.capture_durable(n0).unwrap();
    h.put("key00000", "a");
    // A delta is captured but its snapshot fails: dropped, never durable.
    let failed = h.store.capture(CaptureKind::Delta).unwrap();
    drop(failed);
    assert!(matches!(
        h.store.capture_durable(999),
        Err(Error::UnknownCapture(999))
    ));
    h.put("key00001", "b");
    let d = h.store.capture(CaptureKind::Delta).unwrap();
    let n = d.info.index;
    let recs = collect(d.records);
    assert_eq!(recs.iter().filter(|r| r.key()[0] == b'k').count(), 2);
    let copy = restored(n0, &base_recs, &[(n, recs)]);
    assert_eq!(dump(&copy), dump(&h.store));
}

#[test]
fn one_capture_at_a_time() {
    let h = Harness::new();
    let c = h.store.capture(CaptureKind::Full).unwrap();
    assert!(matches!(
        h.store.capture(CaptureKind::Full),
        Err(Error::CaptureInProgress)
    ));
    assert!(matches!(
        h.store.restore_begin(),
        Err(Error::CaptureInProgress)
    ));
    drop(c);
    assert!(h.store.capture(CaptureKind::Full).is_ok());
}

/// The heart of copy-on-write: a writer thread applies entries (overwrites, deletes,
/// creates) while the capture is read; the captured records equal the state at exactly N.
/// `budget`: the bytes of pre-images kept in memory (past it they go to sled).
fn cow_under_concurrent_writes(kind: CaptureKind, budget: usize) {
    let mut h = Harness::new();
    h.store.set_pre_image_budget(budget);
    load(&mut h, 3000);
    let base = h.store.capture(CaptureKind::Full).unwrap();
    let n0 = base.info.index;
    let base_recs = collect(base.records);
    h.store.capture_durable(n0).unwrap();
    // Some changes before N so the delta is not empty.
    for i in (0..3000).step_by(2) {
        h.put(&format!("key{i:05}"), "pre");
    }
    h.del("key00100", "key00150");
    let expected = dump(&h.store);
    let (expected_hash, _) = h.store.hash_kv(0).unwrap();
    let capture = h.store.capture(kind).unwrap();
    let n = capture.info.index;
    assert_eq!(n, h.next_index - 1);

    let applied = Arc::new(AtomicU64::new(0));
    let writer = {
        let store = h.store.clone();
        let applied = applied.clone();
        let mut index = h.next_index;
        std::thread::spawn(move || {
            for round in 0..1500u64 {
                let k = (round * 7919) % 3300; // hits existing, deleted and new keys
                let key = format!("key{k:05}");
                let op = match round % 5 {
                    0 => Op::DeleteRange(del_req(&key, "", false)),
                    1 => Op::DeleteRange(del_req(&key, &format!("key{:05}", k + 3), false)),
                    _ => put_op(&key, &format!("w{round}")),
                };
                let r = store.apply(index, 2, &Command::new(0, op)).unwrap();
                assert!(matches!(r.outcome, Outcome::Response(_)));
                index += 1;
                applied.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut records = capture.records;
    let mut got = Vec::new();
    // Read a little, let the writer run ahead, then read the rest while it keeps going.
    for _ in 0..200 {
        match records.next() {
            Some(r) => got.push(r.unwrap()),
            None => break,
        }
    }
    while applied.load(Ordering::SeqCst) < 300 {
        std::thread::yield_now();
    }
    for r in records.by_ref() {
        got.push(r.unwrap());
    }
    // At least 300 writes landed between the first records and the rest (the wait above);
    // without the pre-images this test fails.
    writer.join().unwrap();
    drop(records);

    let copy = match kind {
        CaptureKind::Full => restored(n, &got, &[]),
        CaptureKind::Delta => restored(n0, &base_recs, &[(n, got)]),
    };
    assert_eq!(dump(&copy), expected, "capture differs from the state at N");
    assert_eq!(copy.hash_kv(0).unwrap().0, expected_hash);
    assert_eq!(copy.applied_index(), n);
    // The live store moved on, and a new capture now sees the new state.
    let live = dump(&h.store);
    assert_ne!(live, expected);
    assert_ne!(h.store.hash_kv(0).unwrap().0, expected_hash);
    let again = collect(h.store.capture(CaptureKind::Full).unwrap().records);
    assert_eq!(dump(&restored(1, &again, &[])), live);
}

#[test]
fn cow_full_capture_equals_state_at_n_under_concurrent_writes() {
    cow_under_concurrent_writes(CaptureKind::Full, raft_kv::DEFAULT_PRE_IMAGE_BUDGET);
}

#[test]
fn cow_delta_capture_equals_state_at_n_under_concurrent_writes() {
    cow_under_concurrent_writes(CaptureKind::Delta, raft_kv::DEFAULT_PRE_IMAGE_BUDGET);
}

/// The same with every pre-image in sled (no memory budget).
#[test]
fn cow_full_capture_equals_state_at_n_with_pre_images_in_sled() {
    cow_under_concurrent_writes(CaptureKind::Full, 0);
}

/// The same with the first few dozen pre-images in memory (4 KiB) and the rest in sled.
#[test]
fn cow_delta_capture_equals_state_at_n_with_pre_images_spilling_to_sled() {
    cow_under_concurrent_writes(CaptureKind::Delta, 4096);
}

#[test]
fn interrupted_restore_is_refused_until_redone() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Harness::new();
    load(&mut src, 20);
    let recs = collect(src.store.capture(CaptureKind::Full).unwrap().records);
    {
        let store = KvStore::open(dir.path()).unwrap();
        let mut r = store.restore_begin().unwrap();
        for rec in recs.iter().take(5).cloned() {
            r.apply(rec).unwrap();
        }
        // Crash: the restore is never finished.
        drop(r);
        store.flush().unwrap();
    }
    let store = KvStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.range(&range_req("a", "")),
        Err(Error::RestoreIncomplete)
    ));
    assert!(matches!(
        store.apply(1, 1, &Command::new(0, put_op("a", "b"))),
        Err(Error::RestoreIncomplete)
    ));
    store
        .restore_full(20, 1, recs.iter().cloned().map(Ok))
        .unwrap();
    assert_eq!(dump(&store), dump(&src.store));
    drop(store);
    let store = KvStore::open(dir.path()).unwrap();
    assert_eq!(dump(&store), dump(&src.store));
    assert_eq!(store.applied_index(), 20);
}

#[test]
fn bad_records_are_refused() {
    let store = KvStore::open_temporary().unwrap();
    let mut r = store.restore_begin().unwrap();
    let put = |k: &[u8], v: &[u8]| SnapshotRecord::Put {
        key: prost::bytes::Bytes::copy_from_slice(k),
        value: prost::bytes::Bytes::copy_from_slice(v),
    };
    assert!(matches!(
        r.apply(put(b"kx", b"\x09")),
        Err(Error::BadSnapshotRecord(_))
    ));
    assert!(matches!(
        r.apply(put(b"zz", b"")),
        Err(Error::BadSnapshotRecord(_))
    ));
    assert!(matches!(
        r.apply(put(b"mrevision", b"1")),
        Err(Error::BadSnapshotRecord(_))
    ));
    assert!(matches!(
        r.apply(SnapshotRecord::Delete {
            key: prost::bytes::Bytes::from_static(b"mrevision")
        }),
        Err(Error::BadSnapshotRecord(_))
    ));
}
