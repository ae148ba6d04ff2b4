//! Behaviour of the log through its public API: writes, reads, reopen, truncation,
//! compaction, segment roll-over, on both the real and the in-memory file system.

use bytes::Bytes;
use raft_core::{Entry, EntryKind, HardState, LogRead, Membership, SnapshotMeta};
use raft_log::fs::{Fs, MemFs, StdFs};
use raft_log::{Error, Settings, SyncPolicy, Wal};
use std::path::Path;
use std::sync::Arc;

fn entry(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        kind: if index.is_multiple_of(7) {
            EntryKind::ConfChange
        } else {
            EntryKind::Normal
        },
        data: Bytes::from(vec![(index % 251) as u8; len]),
    }
}

fn small() -> Settings {
    Settings {
        segment_size: 4096,
        cache_bytes: 1024,
        ..Settings::default()
    }
}

fn check_entries(wal: &Wal, lo: u64, hi: u64, term_of: impl Fn(u64) -> u64, len: usize) {
    let got = wal.entries(lo, hi, None).unwrap();
    assert_eq!(got.len() as u64, hi - lo);
    for (k, e) in got.iter().enumerate() {
        let i = lo + k as u64;
        assert_eq!(*e, entry(i, term_of(i), len), "entry {i}");
        assert_eq!(wal.term(i).unwrap(), term_of(i));
    }
}

fn roundtrip(fs: Arc<dyn Fs>, dir: &Path) {
    let wal = Wal::open_with(fs.clone(), dir, small()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    let boot = Membership::with_voters([1, 2]);
    wal.bootstrap(boot.clone()).unwrap().wait().unwrap();
    assert_eq!(wal.snapshot_meta().unwrap().membership, boot);
    assert_eq!(wal.initial_state().unwrap().membership, boot);
    let hs = HardState {
        term: 2,
        vote: Some(3),
        commit: 5,
    };
    for i in 1..=100 {
        let t = wal
            .write(vec![entry(i, 1 + i / 50, 100)], (i == 60).then_some(hs))
            .unwrap();
        t.wait().unwrap();
    }
    assert!(wal.segment_count() > 2, "roll-over happened");
    check_entries(&wal, 1, 101, |i| 1 + i / 50, 100);
    drop(wal);

    let wal = Wal::open_with(fs.clone(), dir, small()).unwrap();
    assert_eq!(wal.last_index(), 100);
    assert_eq!(wal.initial_state().unwrap().membership, boot);
    assert!(matches!(wal.bootstrap(boot.clone()), Err(Error::NotEmpty)));
    assert_eq!(wal.hard_state(), hs);
    check_entries(&wal, 1, 101, |i| 1 + i / 50, 100);
    // A new leader overwrites the tail; then an explicit truncation.
    wal.append(vec![entry(90, 5, 100), entry(91, 5, 100)])
        .unwrap()
        .wait()
        .unwrap();
    wal.truncate_suffix(91).unwrap().wait().unwrap();
    assert_eq!(wal.last_index(), 90);
    assert_eq!(wal.term(90).unwrap(), 5);
    let before = wal.segment_count();
    let membership = Membership::with_voters([1, 2, 3]);
    let snap = SnapshotMeta {
        index: 80,
        term: 2,
        membership: membership.clone(),
    };
    wal.set_membership(membership.clone())
        .unwrap()
        .wait()
        .unwrap();
    wal.compact_prefix(snap.clone()).unwrap().wait().unwrap();
    assert!(wal.segment_count() < before, "compacted segments deleted");
    assert_eq!(wal.first_index(), 81);
    assert_eq!(wal.term(80).unwrap(), 2);
    assert!(matches!(
        wal.entries(80, 81, None),
        Err(Error::Compacted(80))
    ));
    // Compacting to an index already compacted changes nothing.
    let older = SnapshotMeta {
        index: 70,
        term: 2,
        membership: Membership::default(),
    };
    wal.compact_prefix(older).unwrap().wait().unwrap();
    assert_eq!(wal.snapshot(), snap);
    assert!(matches!(
        wal.entries(81, 92, None),
        Err(Error::Unavailable(91))
    ));
    drop(wal);

    let wal = Wal::open_with(fs.clone(), dir, small()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (81, 90));
    assert_eq!(wal.snapshot(), snap);
    assert_eq!(wal.initial_state().unwrap().membership, membership);
    check_entries(&wal, 81, 90, |i| 1 + i / 50, 100);
    assert_eq!(wal.term(90).unwrap(), 5);
    // max_bytes: at least one, then stop before exceeding.
    assert_eq!(wal.entries(81, 90, Some(1)).unwrap().len(), 1);
    assert_eq!(wal.entries(81, 90, Some(2 * 124)).unwrap().len(), 2);
    // A leader's snapshot replaces everything.
    let snap2 = SnapshotMeta {
        index: 500,
        term: 9,
        membership,
    };
    wal.install_snapshot(snap2.clone()).unwrap().wait().unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (501, 500));
    wal.append(vec![entry(501, 9, 10)]).unwrap().wait().unwrap();
    drop(wal);
    let wal = Wal::open_with(fs, dir, small()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (501, 501));
    assert_eq!(wal.term(500).unwrap(), 9);
    assert_eq!(
        wal.entries(501, 502, None).unwrap(),
        vec![entry(501, 9, 10)]
    );
}

#[test]
fn roundtrip_std_fs() {
    let dir = tempfile::tempdir().unwrap();
    roundtrip(Arc::new(StdFs), dir.path());
}

#[test]
fn roundtrip_mem_fs() {
    roundtrip(Arc::new(MemFs::new()), Path::new("/wal"));
}

#[test]
fn rejects_gaps_and_compacted_writes() {
    let wal = Wal::open_with(Arc::new(MemFs::new()), "/wal", small()).unwrap();
    assert!(matches!(
        wal.append(vec![entry(2, 1, 1)]),
        Err(Error::NotContiguous {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        wal.append(vec![entry(1, 1, 1), entry(3, 1, 1)]),
        Err(Error::NotContiguous {
            expected: 2,
            got: 3
        })
    ));
    // Checked against queued (not yet durable) writes too.
    let t1 = wal.append(vec![entry(1, 1, 1)]).unwrap();
    let t2 = wal.append(vec![entry(2, 1, 1)]).unwrap();
    t1.wait().unwrap();
    t2.wait().unwrap();
    assert!(matches!(wal.truncate_suffix(4), Err(Error::Unavailable(4))));
}

#[test]
fn interval_and_never_policies_and_sync() {
    for policy in [
        SyncPolicy::Interval(std::time::Duration::from_millis(5)),
        SyncPolicy::Never,
    ] {
        let fs = MemFs::new();
        let settings = Settings {
            sync_policy: policy,
            ..small()
        };
        let wal = Wal::open_with(Arc::new(fs.clone()), "/wal", settings.clone()).unwrap();
        for i in 1..=10 {
            wal.append(vec![entry(i, 1, 10)]).unwrap().wait().unwrap();
        }
        wal.sync().unwrap().wait().unwrap();
        let img = fs.crash_image(raft_log::fs::CrashMode::LoseUnsynced, 0);
        drop(wal);
        let wal = Wal::open_with(Arc::new(img), "/wal", settings).unwrap();
        assert_eq!(wal.last_index(), 10);
    }
}

#[test]
fn deferred_hard_states_cost_no_fsync_and_ride_on_the_next_one() {
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), "/wal", small()).unwrap();
    let hs = |commit| HardState {
        term: 3,
        vote: Some(2),
        commit,
    };
    wal.write(vec![entry(1, 3, 10)], Some(hs(0)))
        .unwrap()
        .wait()
        .unwrap();
    let syncs = fs.syncs();
    wal.save_hard_state_deferred(hs(1)).unwrap().wait().unwrap();
    assert_eq!(fs.syncs(), syncs, "a deferred hard state caused an fsync");
    assert_eq!(wal.hard_state(), hs(1), "reported once written");

    // A crash now may lose it: the synced hard state comes back, never a torn one.
    let img = fs.crash_image(raft_log::fs::CrashMode::LoseUnsynced, 0);
    let reopened = Wal::open_with(Arc::new(img), "/wal", small()).unwrap();
    assert_eq!(reopened.hard_state(), hs(0));
    assert_eq!(reopened.last_index(), 1);
    drop(reopened);

    // The next synced write makes it durable (and the written-later one wins).
    wal.save_hard_state_deferred(hs(2)).unwrap().wait().unwrap();
    wal.append(vec![entry(2, 3, 10)]).unwrap().wait().unwrap();
    assert!(fs.syncs() > syncs, "the append synced");
    let img = fs.crash_image(raft_log::fs::CrashMode::LoseUnsynced, 0);
    drop(wal);
    let wal = Wal::open_with(Arc::new(img), "/wal", small()).unwrap();
    assert_eq!(wal.hard_state(), hs(2));
    assert_eq!(wal.last_index(), 2);
}

#[test]
fn tickets_are_futures() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let wal = Wal::open_with(Arc::new(MemFs::new()), "/wal", small()).unwrap();
    let mut fut = pin!(wal.append(vec![entry(1, 1, 1)]).unwrap());
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => std::thread::park(),
        }
    }
    assert_eq!(wal.last_index(), 1);
}

/// A deferred write does not wake the writer when submitted; whoever waits for it does, by
/// any of the ways a ticket can be waited for (otherwise it would wait for the next write).
#[test]
fn a_deferred_write_completes_when_waited_for_in_any_way() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let hs = |commit| HardState {
        term: 1,
        vote: Some(1),
        commit,
    };
    let wal = Wal::open_with(Arc::new(MemFs::new()), "/wal", small()).unwrap();
    wal.write(vec![entry(1, 1, 1)], Some(hs(0)))
        .unwrap()
        .wait()
        .unwrap();

    // Polled as a future.
    let mut fut = pin!(wal.save_hard_state_deferred(hs(1)).unwrap());
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => std::thread::park(),
        }
    }
    assert_eq!(wal.hard_state(), hs(1));

    // With a callback.
    let (tx, rx) = std::sync::mpsc::channel();
    wal.save_hard_state_deferred(hs(2))
        .unwrap()
        .on_complete(move |r| tx.send(r).unwrap());
    rx.recv().unwrap().unwrap();
    assert_eq!(wal.hard_state(), hs(2));

    // With a bounded wait (a generous bound: the writer is woken at once).
    let t = wal.save_hard_state_deferred(hs(3)).unwrap();
    let r = t.wait_timeout(std::time::Duration::from_secs(30));
    assert!(matches!(r, Some(Ok(()))), "{r:?}");
    assert_eq!(wal.hard_state(), hs(3));

    // Nobody waits for it: a reader of the files asks for it to be written out.
    drop(wal.save_hard_state_deferred(hs(4)).unwrap());
    wal.write_deferred().unwrap().wait().unwrap();
    assert_eq!(wal.hard_state(), hs(4));
}

#[test]
fn group_commit_shares_fsyncs() {
    let fs = MemFs::new();
    let settings = Settings {
        segment_size: 1 << 20,
        ..Settings::default()
    };
    let wal = Arc::new(Wal::open_with(Arc::new(fs.clone()), "/wal", settings).unwrap());
    fs.set_sync_delay(std::time::Duration::from_millis(5));
    let before = fs.syncs();
    let next = Arc::new(parking_lot::Mutex::new(1u64));
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (wal, next) = (wal.clone(), next.clone());
            std::thread::spawn(move || {
                for _ in 0..4 {
                    let mut n = next.lock();
                    let t = wal.append(vec![entry(*n, 1, 64)]).unwrap();
                    *n += 1;
                    drop(n);
                    t.wait().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = fs.syncs() - before;
    assert_eq!(wal.last_index(), 128);
    assert!(syncs < 64, "128 appends took {syncs} fsyncs");
}

#[test]
fn callbacks_and_oversized_writes() {
    let wal = Wal::open_with(Arc::new(MemFs::new()), "/wal", small()).unwrap();
    // One entry larger than a whole segment gets a segment of its own.
    let (tx, rx) = std::sync::mpsc::channel();
    wal.append(vec![entry(1, 1, 10_000)])
        .unwrap()
        .on_complete(move |r| tx.send(r.is_ok()).unwrap());
    assert!(rx.recv().unwrap());
    wal.append(vec![entry(2, 1, 10)]).unwrap().wait().unwrap();
    assert_eq!(
        wal.entries(1, 3, None).unwrap(),
        vec![entry(1, 1, 10_000), entry(2, 1, 10)]
    );
    let settings = Settings {
        max_batch_bytes: 100,
        commit_delay: std::time::Duration::from_millis(1),
        ..small()
    };
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), "/wal", settings.clone()).unwrap();
    let tickets: Vec<_> = (1..=20)
        .map(|i| wal.append(vec![entry(i, 1, 50)]).unwrap())
        .collect();
    for t in tickets {
        t.wait().unwrap();
    }
    drop(wal);
    let wal = Wal::open_with(Arc::new(fs), "/wal", settings).unwrap();
    assert_eq!(wal.last_index(), 20);
}

#[test]
fn state_survives_deleting_the_segments_that_recorded_it() {
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), "/wal", small()).unwrap();
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 1,
    };
    let membership = Membership::with_voters([4, 5, 6]);
    wal.save_hard_state(hs).unwrap().wait().unwrap();
    wal.set_membership(membership.clone())
        .unwrap()
        .wait()
        .unwrap();
    // Enough entries to fill several segments after the ones holding those records.
    for i in 1..=200 {
        wal.append(vec![entry(i, 3, 100)]).unwrap().wait().unwrap();
    }
    let before = wal.segment_count();
    let snap = SnapshotMeta {
        index: 190,
        term: 3,
        membership: Membership::default(),
    };
    wal.compact_prefix(snap).unwrap().wait().unwrap();
    assert!(wal.segment_count() < before / 2);
    drop(wal);
    let wal = Wal::open_with(Arc::new(fs), "/wal", small()).unwrap();
    assert_eq!(wal.hard_state(), hs);
    assert_eq!(wal.membership(), membership);
    assert_eq!((wal.first_index(), wal.last_index()), (191, 200));
}
