//! Start-up repair after a crash in the middle of installing a snapshot from the leader.
//!
//! Installing runs in three steps: the received chain becomes the snapshot store's current
//! chain (one manifest update), then the key-value store is restored from it while the
//! write-ahead log is replaced by the snapshot's metadata (both at once, in the runtime).
//! A crash between or during the last two leaves one of:
//! - the key-value store marked mid-restore (it refuses to serve): the chain is restored
//!   again, and the log replaced when it does not reach the chain's index;
//! - the key-value store restored but the log not replaced yet (the store's applied index
//!   is past the log's last entry, which the runtime refuses to start with): the log is
//!   replaced by the current chain's metadata, which is exactly the state the store holds.

use super::NodeError;
use raft_kv::KvStore;
use raft_log::Wal;
use raft_snapshot::SnapshotStore;

/// Finishes a snapshot install that a crash interrupted (see the module documentation);
/// does nothing after a clean stop.
pub(super) fn finish_interrupted_restore(
    kv: &KvStore,
    snapshots: &SnapshotStore,
    wal: &Wal,
) -> Result<(), NodeError> {
    if kv.restore_pending() {
        tracing::warn!("an interrupted snapshot restore is finished first");
        let tip = raft_kv::restore_from_store(kv, snapshots, None)?;
        if wal.last_index() < tip.index {
            wal.install_snapshot(tip.meta())?.wait()?;
        }
        return Ok(());
    }
    let applied = kv.applied_index();
    if applied <= wal.last_index() {
        return Ok(());
    }
    match snapshots.latest().map(|c| c.tip().clone()) {
        Some(tip) if tip.index == applied => {
            tracing::warn!(
                index = applied,
                "the log is replaced by the snapshot the key-value store was restored from"
            );
            wal.install_snapshot(tip.meta())?.wait()?;
        }
        // Not the trace of an install: the runtime reports the mismatch.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, EntryKind, HardState, Membership};
    use raft_kv::pb::etcdserverpb::PutRequest;
    use raft_kv::{ApplyEntry, Command, EntryPayload, KvRestoreSink, Op};
    use raft_snapshot::{ChainTransfer, RestoreSink, SnapshotInfo, StoreOptions};
    use std::path::Path;

    fn put_all(kv: &KvStore, from: u64, n: u64, tag: &str) {
        let cmds: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                Command::new(
                    0,
                    Op::Put(PutRequest {
                        key: format!("key{i:04}").into_bytes().into(),
                        value: format!("{tag}-{i}").into_bytes().into(),
                        ..Default::default()
                    }),
                )
                .encode()
                .to_vec()
            })
            .collect();
        let entries: Vec<ApplyEntry<'_>> = cmds
            .iter()
            .enumerate()
            .map(|(k, data)| ApplyEntry {
                index: from + k as u64,
                term: 1,
                payload: EntryPayload::Data(data),
            })
            .collect();
        kv.apply_batch(&entries).unwrap();
    }

    fn wal_settings() -> raft_log::Settings {
        raft_log::Settings {
            segment_size: 1 << 20,
            ..raft_log::Settings::default()
        }
    }

    /// The leader's chain: a base at index 300 and a delta at 400, in `dir`; returns the
    /// state it restores to (as the leader's hash) and the chain's tip.
    fn leader_chain(dir: &Path) -> ((u32, i64), SnapshotInfo) {
        let kv = KvStore::open_temporary().unwrap();
        let store = SnapshotStore::open_dir(dir, StoreOptions::default()).unwrap();
        let m = Membership::with_voters([1, 2, 3]);
        put_all(&kv, 1, 300, "base");
        raft_kv::capture_snapshot(&kv, &store, m.clone())
            .unwrap()
            .write(1)
            .unwrap();
        put_all(&kv, 301, 100, "delta");
        let tip = raft_kv::capture_snapshot(&kv, &store, m)
            .unwrap()
            .write(2)
            .unwrap();
        (kv.hash_kv(0).unwrap(), tip)
    }

    /// A follower's data dir before the install: 20 entries applied and logged.
    fn follower(data: &Path) {
        let kv = KvStore::open(data.join("kv")).unwrap();
        put_all(&kv, 1, 20, "old");
        kv.flush().unwrap();
        let wal = Wal::open(data.join("wal"), wal_settings()).unwrap();
        let entries: Vec<Entry> = (1..=20)
            .map(|index| Entry {
                index,
                term: 1,
                kind: EntryKind::Normal,
                data: Default::default(),
            })
            .collect();
        let hs = HardState {
            term: 1,
            vote: Some(1),
            commit: 20,
        };
        wal.write(entries, Some(hs)).unwrap().wait().unwrap();
        wal.close().unwrap();
    }

    /// The received chain made current in the follower's snapshot store (the first step of
    /// an install; its own crash points are swept in raft-snapshot's tests).
    fn receive(leader: &Path, data: &Path) -> SnapshotStore {
        let leader = SnapshotStore::open_dir(leader, StoreOptions::default()).unwrap();
        let store = SnapshotStore::open_dir(data.join("snap"), StoreOptions::default()).unwrap();
        let mut t = ChainTransfer::new(&leader, None).unwrap();
        let mut bundle = Vec::new();
        while (bundle.len() as u64) < t.total_len() {
            let c = t.read_at(bundle.len() as u64, 1 << 20).unwrap();
            bundle.extend_from_slice(&c.data);
        }
        store
            .install(&mut bundle.as_slice(), t.total_len())
            .unwrap();
        store
    }

    /// A restore sink that dies after `left` records, as the process would.
    struct Dying {
        inner: KvRestoreSink,
        left: usize,
    }

    impl Dying {
        fn step(&mut self) -> raft_snapshot::Result<()> {
            if self.left == 0 {
                return Err(raft_snapshot::Error::InjectedCrash(0));
            }
            self.left -= 1;
            Ok(())
        }
    }

    impl RestoreSink for Dying {
        fn reset(&mut self, base: &SnapshotInfo) -> raft_snapshot::Result<()> {
            self.inner.reset(base)
        }
        fn put(&mut self, key: bytes::Bytes, value: bytes::Bytes) -> raft_snapshot::Result<()> {
            self.step()?;
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: bytes::Bytes) -> raft_snapshot::Result<()> {
            self.step()?;
            self.inner.delete(key)
        }
        fn finish(&mut self, tip: &SnapshotInfo) -> raft_snapshot::Result<()> {
            self.step()?;
            self.inner.finish(tip)
        }
    }

    /// Restarts on `data` as raftd does: repair, then the checks the runtime makes.
    fn restart_and_check(data: &Path, leader_hash: (u32, i64), tip: &SnapshotInfo, what: &str) {
        let kv = KvStore::open(data.join("kv")).unwrap();
        let store = SnapshotStore::open_dir(data.join("snap"), StoreOptions::default()).unwrap();
        let wal = Wal::open(data.join("wal"), wal_settings()).unwrap();
        finish_interrupted_restore(&kv, &store, &wal).unwrap();
        assert!(!kv.restore_pending(), "{what}");
        assert_eq!(kv.applied_index(), tip.index, "{what}");
        assert_eq!(kv.hash_kv(0).unwrap(), leader_hash, "{what}");
        // The runtime starts only when the store's applied index is within the log and
        // restores on its own when the log's snapshot is past the store.
        assert!(wal.last_index() >= kv.applied_index(), "{what}");
        assert!(wal.snapshot().index <= kv.applied_index(), "{what}");
        assert_eq!(wal.snapshot().index, tip.index, "{what}");
        wal.close().unwrap();
        // Repair is done once: a second start changes nothing.
        let wal = Wal::open(data.join("wal"), wal_settings()).unwrap();
        finish_interrupted_restore(&kv, &store, &wal).unwrap();
        assert_eq!(kv.hash_kv(0).unwrap(), leader_hash, "{what}");
        assert_eq!(wal.snapshot().index, tip.index, "{what}");
    }

    /// A crash after any number of restored records (the base's, the delta's, or before
    /// the final metadata write), with the log replaced already or not yet: the restart
    /// finishes the install.
    #[test]
    fn a_crash_in_the_middle_of_an_install_is_finished_at_restart() {
        let leader = tempfile::tempdir().unwrap();
        let (leader_hash, tip) = leader_chain(leader.path());
        // 303 records in the base (300 keys, 3 metadata), 103 in the delta, then finish.
        for crash_after in [0, 1, 150, 303, 350, 406] {
            for log_replaced in [false, true] {
                let what =
                    format!("crash after {crash_after} records, log replaced {log_replaced}");
                let data = tempfile::tempdir().unwrap();
                follower(data.path());
                {
                    let store = receive(leader.path(), data.path());
                    let kv = KvStore::open(data.path().join("kv")).unwrap();
                    let mut sink = Dying {
                        inner: KvRestoreSink::new(kv.clone()),
                        left: crash_after,
                    };
                    let r = raft_snapshot::restore_chain(&store, None, &mut sink);
                    assert!(r.is_err(), "{what}: the crash happened");
                    drop(sink);
                    assert!(kv.restore_pending(), "{what}");
                    if log_replaced {
                        let wal = Wal::open(data.path().join("wal"), wal_settings()).unwrap();
                        wal.install_snapshot(tip.meta()).unwrap().wait().unwrap();
                        wal.close().unwrap();
                    }
                    kv.flush().unwrap();
                }
                restart_and_check(data.path(), leader_hash, &tip, &what);
            }
        }
    }

    /// The store restored completely but the crash came before the log was replaced: the
    /// log is replaced at restart (without it the runtime would refuse to start).
    #[test]
    fn a_crash_between_the_restore_and_the_log_replacement_is_finished_at_restart() {
        let leader = tempfile::tempdir().unwrap();
        let (leader_hash, tip) = leader_chain(leader.path());
        let data = tempfile::tempdir().unwrap();
        follower(data.path());
        {
            let store = receive(leader.path(), data.path());
            let kv = KvStore::open(data.path().join("kv")).unwrap();
            raft_kv::restore_from_store(&kv, &store, None).unwrap();
            kv.flush().unwrap();
        }
        restart_and_check(data.path(), leader_hash, &tip, "restored, log not replaced");
    }

    /// A crash after the chain was received but before the restore began leaves the old
    /// state in force and untouched (the leader sends its snapshot again).
    #[test]
    fn a_crash_before_the_restore_keeps_the_old_state() {
        let leader = tempfile::tempdir().unwrap();
        let (_, tip) = leader_chain(leader.path());
        let data = tempfile::tempdir().unwrap();
        follower(data.path());
        let before = {
            let kv = KvStore::open(data.path().join("kv")).unwrap();
            kv.hash_kv(0).unwrap()
        };
        drop(receive(leader.path(), data.path()));
        let kv = KvStore::open(data.path().join("kv")).unwrap();
        let store =
            SnapshotStore::open_dir(data.path().join("snap"), StoreOptions::default()).unwrap();
        let wal = Wal::open(data.path().join("wal"), wal_settings()).unwrap();
        finish_interrupted_restore(&kv, &store, &wal).unwrap();
        assert_eq!(kv.applied_index(), 20);
        assert_eq!(kv.hash_kv(0).unwrap(), before);
        assert_eq!(wal.last_index(), 20);
        assert_eq!(wal.snapshot().index, 0);
        assert_eq!(store.latest().unwrap().tip().index, tip.index);
    }
}
