use super::tidy::TIDY_CHUNK;
use super::*;

fn send_static<T: Send + 'static>() {}
fn sync<T: Sync>() {}

fn count(store: &KvStore, space: u8) -> usize {
    store.shared.tree.scan_prefix([space]).count()
}

fn put(store: &KvStore, index: u64, key: &str) {
    let cmd = crate::Command::new(
        0,
        crate::Op::Put(crate::pb::etcdserverpb::PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        }),
    );
    store.apply(index, 1, &cmd).unwrap();
}

/// The dirty lists a durable snapshot covers and the pre-images of an ended capture are
/// removed (over several chunks), and not while a capture runs.
#[test]
fn ended_captures_leave_nothing_behind() {
    let store = KvStore::open_temporary().unwrap();
    // No memory budget: every pre-image goes to sled.
    store.set_pre_image_budget(0);
    let n = 3 * TIDY_CHUNK as u64 + 17;
    for i in 1..=n {
        put(&store, i, &format!("k{i:05}"));
    }
    assert_eq!(count(&store, DIRTY), n as usize);
    let cap = store.capture(CaptureKind::Full).unwrap();
    // Writes during the capture keep pre-images of the keys not read yet.
    for i in 1..=10 {
        put(&store, n + i, &format!("k{i:05}"));
    }
    assert_eq!(count(&store, COW), 10);
    // Reported durable while its records are still read: the capture's dirty lists stay
    // meanwhile (one per batch: the n before the capture and the 10 after).
    store.capture_durable(cap.info.index).unwrap();
    assert_eq!(
        count(&store, DIRTY),
        n as usize + 10,
        "kept while a capture runs"
    );
    let records: Vec<_> = cap.records.collect::<Result<_>>().unwrap();
    // A history event and a current entry per key, and the metadata.
    assert_eq!(records.len(), 2 * n as usize + 3);
    assert_eq!(count(&store, COW), 0, "pre-images removed at the end");
    // Only the lists of the 10 writes after the capture are left.
    assert_eq!(count(&store, DIRTY), 10);
    assert_eq!(store.shared.cow.lock().in_memory(), 0);
}

/// With a small budget some pre-images stay in memory and the rest go to sled; a capture
/// read in between writes (overwrites, deletes, creates) still yields the state at N,
/// and ending it leaves neither kind behind.
#[test]
fn pre_images_split_between_memory_and_sled_make_one_capture() {
    let store = KvStore::open_temporary().unwrap();
    store.set_pre_image_budget(40 * 100);
    let n = 3 * CHUNK as u64;
    for i in 1..=n {
        put(&store, i, &format!("k{i:05}"));
    }
    let (hash_at_n, _) = store.hash_kv(0).unwrap();
    let cap = store.capture(CaptureKind::Full).unwrap();
    let mut index = n;
    let mut write = |keys: &mut dyn Iterator<Item = u64>| {
        for i in keys {
            index += 1;
            let key = format!("k{i:05}");
            let op = if i % 3 == 0 {
                crate::Op::DeleteRange(crate::pb::etcdserverpb::DeleteRangeRequest {
                    key: key.into_bytes().into(),
                    ..Default::default()
                })
            } else {
                crate::Op::Put(crate::pb::etcdserverpb::PutRequest {
                    key: key.into_bytes().into(),
                    value: b"after".to_vec().into(),
                    ..Default::default()
                })
            };
            store.apply(index, 1, &crate::Command::new(0, op)).unwrap();
        }
    };
    // Keys ahead of the reader (and new ones past the last) get pre-images.
    write(&mut (1..=n + 50).step_by(2));
    let in_memory = store.shared.cow.lock().in_memory();
    assert!(in_memory > 0, "some pre-images in memory");
    let spilled = count(&store, COW);
    assert!(spilled > 0, "some pre-images in sled");
    // Every write made one, but for the deletes of absent keys (they write nothing).
    let writes = (1..=n + 50).step_by(2).filter(|i| *i <= n || i % 3 != 0);
    assert_eq!(spilled + in_memory, writes.count());
    let mut records = cap.records;
    // The history (one event per key) comes first, then the data.
    let mut got: Vec<_> = records
        .by_ref()
        .take(n as usize + CHUNK + 10)
        .collect::<Result<_>>()
        .unwrap();
    // The reader passed the first chunk: its in-memory pre-images are gone.
    assert!(store.shared.cow.lock().in_memory() < in_memory);
    write(&mut (2..=n + 50).step_by(2));
    write(&mut (1..=n + 50).step_by(5));
    got.extend(records.by_ref().map(|r| r.unwrap()));
    drop(records);
    assert_eq!(count(&store, COW), 0);
    assert_eq!(store.shared.cow.lock().in_memory(), 0);
    let copy = KvStore::open_temporary().unwrap();
    copy.restore_full(n, 1, got.into_iter().map(Ok)).unwrap();
    assert_eq!(copy.hash_kv(0).unwrap().0, hash_at_n);
    assert_ne!(store.hash_kv(0).unwrap().0, hash_at_n);
}

#[test]
fn handles_cross_threads() {
    // raft-snapshot boxes the records as `dyn SnapshotSource + Send`; the runtime shares
    // the store between its apply task and the gRPC service.
    send_static::<CaptureRecords>();
    send_static::<Capture>();
    send_static::<crate::Restore>();
    send_static::<KvStore>();
    sync::<KvStore>();
}
