//! The key-value store on `raft-snapshot`'s chain store: captures written as full or delta
//! snapshots, chains restored into a [`KvStore`], and chain upkeep (merge, garbage
//! collection).
//!
//! A delta is only written on top of the store's current chain when that chain's tip is
//! the snapshot the key-value store tracks its changes from (its
//! [`snapshot_index`](crate::StoreStatus::snapshot_index)); otherwise (no chain yet, a chain
//! installed from a leader that was never restored here, a crash between the two) the
//! capture is full. So a delta always applies on exactly the state it was taken against.

use crate::error::{Error, Result};
use crate::pace::RateLimiter;
use crate::restore::Restore;
use crate::snapshot::{CaptureKind, CaptureRecords, SnapshotRecord};
use crate::store::KvStore;
use raft_core::{Membership, SnapshotMeta};
use raft_snapshot::{
    ChainPolicy, Record, RestoreSink, SnapshotId, SnapshotInfo, SnapshotKind, SnapshotSource,
    SnapshotStore,
};

/// A capture's records as a `raft-snapshot` source.
pub struct RecordSource(pub CaptureRecords);

impl SnapshotSource for RecordSource {
    fn next_record(&mut self) -> raft_snapshot::Result<Option<Record>> {
        match self.0.next() {
            None => Ok(None),
            Some(Ok(SnapshotRecord::Put { key, value })) => Ok(Some(Record::Put { key, value })),
            Some(Ok(SnapshotRecord::Delete { key })) => Ok(Some(Record::Delete { key })),
            Some(Err(e)) => Err(raft_snapshot::Error::StateMachine(Box::new(e))),
        }
    }
}

/// A [`RecordSource`] read through a [`RateLimiter`] (none: unlimited).
struct PacedSource {
    inner: RecordSource,
    limiter: Option<RateLimiter>,
}

impl SnapshotSource for PacedSource {
    fn next_record(&mut self) -> raft_snapshot::Result<Option<Record>> {
        let rec = self.inner.next_record()?;
        if let (Some(l), Some(r)) = (&mut self.limiter, &rec) {
            let bytes = match r {
                Record::Put { key, value } => key.len() + value.len(),
                Record::Delete { key } => key.len(),
            };
            l.acquire(bytes as u64);
        }
        Ok(rec)
    }
}

/// A copy-on-write capture waiting to be written into a [`SnapshotStore`]
/// (from [`capture_snapshot`]). Apply goes on meanwhile; dropping it unwritten ends the
/// capture and keeps the changes tracked for the next delta.
pub struct PendingSnapshot {
    kv: KvStore,
    store: SnapshotStore,
    kind: SnapshotKind,
    parent: Option<SnapshotId>,
    meta: SnapshotMeta,
    records: CaptureRecords,
    max_rate: u64,
}

impl std::fmt::Debug for PendingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSnapshot")
            .field("kind", &self.kind)
            .field("parent", &self.parent)
            .field("meta", &self.meta)
            .field("max_rate", &self.max_rate)
            .finish_non_exhaustive()
    }
}

impl PendingSnapshot {
    /// What the snapshot covers: the applied index and term at the capture, and the
    /// membership given to [`capture_snapshot`].
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Full or delta.
    pub fn kind(&self) -> SnapshotKind {
        self.kind
    }

    /// Paces [`write`](Self::write): it reads the records (key plus value bytes) at most at
    /// `bytes_per_sec`, sleeping the writing thread between records when it is ahead
    /// (module [`pace`](crate::pace)). 0, the default, is unlimited.
    pub fn with_max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = bytes_per_sec;
        self
    }

    /// Writes the records into the store (temp file, fsync, verify, rename, manifest), then
    /// tells the key-value store the snapshot is durable so later deltas start from it.
    /// `created_ms` is the creation time in unix milliseconds. Runs at most at the rate
    /// given to [`with_max_rate`](Self::with_max_rate).
    pub fn write(self, created_ms: u64) -> Result<SnapshotInfo> {
        let PendingSnapshot {
            kv,
            store,
            kind,
            parent,
            meta,
            records,
            max_rate,
        } = self;
        let mut w = store.begin(kind, parent, &meta, created_ms)?;
        let mut source = PacedSource {
            inner: RecordSource(records),
            limiter: RateLimiter::new(max_rate),
        };
        w.write_source(&mut source)?;
        let slept = source.limiter.as_ref().map(RateLimiter::slept);
        drop(source);
        let info = w.finish()?;
        kv.capture_durable(info.index)?;
        tracing::info!(
            id = %info.id,
            index = info.index,
            kind = ?info.kind,
            size = info.size,
            paced_ms = slept.map(|d| d.as_millis() as u64),
            "snapshot written"
        );
        Ok(info)
    }
}

/// Captures `kv` copy-on-write for `store`: a delta on top of the current chain when its
/// tip is the snapshot `kv` tracks changes from, else a full snapshot. Quick (no data is
/// read yet); call [`PendingSnapshot::write`] on another thread. `membership` is the
/// cluster membership as of `kv`'s applied index.
pub fn capture_snapshot(
    kv: &KvStore,
    store: &SnapshotStore,
    membership: Membership,
) -> Result<PendingSnapshot> {
    let tracked_from = kv.status().snapshot_index;
    let parent = store
        .latest()
        .map(|c| c.tip().clone())
        .filter(|tip| tracked_from > 0 && tip.index == tracked_from)
        .map(|tip| tip.id);
    let (kind, capture_kind) = match parent {
        Some(_) => (SnapshotKind::Delta, CaptureKind::Delta),
        None => (SnapshotKind::Full, CaptureKind::Full),
    };
    let cap = kv.capture(capture_kind)?;
    let meta = SnapshotMeta {
        index: cap.info.index,
        term: cap.info.term,
        membership,
    };
    Ok(PendingSnapshot {
        kv: kv.clone(),
        store: store.clone(),
        kind,
        parent,
        meta,
        records: cap.records,
        max_rate: 0,
    })
}

/// A [`RestoreSink`] that replaces a [`KvStore`]'s state by a chain: one restore from the
/// base's `reset` to the tip's `finish`, so an interruption anywhere leaves the store
/// marked as mid-restore (it refuses to serve) rather than half restored.
pub struct KvRestoreSink {
    kv: KvStore,
    restore: Option<Restore>,
}

impl KvRestoreSink {
    /// A sink restoring into `kv`.
    pub fn new(kv: KvStore) -> Self {
        Self { kv, restore: None }
    }

    fn restore(&mut self) -> raft_snapshot::Result<&mut Restore> {
        self.restore
            .as_mut()
            .ok_or_else(|| raft_snapshot::Error::Invalid("restore records before reset".into()))
    }
}

fn sm_err(e: Error) -> raft_snapshot::Error {
    raft_snapshot::Error::StateMachine(Box::new(e))
}

impl RestoreSink for KvRestoreSink {
    fn reset(&mut self, _base: &SnapshotInfo) -> raft_snapshot::Result<()> {
        self.restore = Some(self.kv.restore_begin().map_err(sm_err)?);
        Ok(())
    }

    fn put(&mut self, key: bytes::Bytes, value: bytes::Bytes) -> raft_snapshot::Result<()> {
        self.restore()?.put(&key, &value).map_err(sm_err)
    }

    fn delete(&mut self, key: bytes::Bytes) -> raft_snapshot::Result<()> {
        self.restore()?.delete(&key).map_err(sm_err)
    }

    fn finish(&mut self, tip: &SnapshotInfo) -> raft_snapshot::Result<()> {
        let r = self
            .restore
            .take()
            .ok_or_else(|| raft_snapshot::Error::Invalid("restore finished before reset".into()))?;
        r.finish(tip.index, tip.term).map_err(sm_err)
    }
}

/// Restores the chain ending at `tip` (the store's current chain when `None`) into `kv`,
/// after verifying every file; returns the tip. Afterwards `kv`'s applied index is the
/// tip's and deltas are tracked from it.
pub fn restore_from_store(
    kv: &KvStore,
    store: &SnapshotStore,
    tip: Option<SnapshotId>,
) -> Result<SnapshotInfo> {
    let mut sink = KvRestoreSink::new(kv.clone());
    Ok(raft_snapshot::restore_chain(store, tip, &mut sink)?)
}

/// Chain upkeep after a snapshot: merges the current chain into a new base when `policy`
/// says so, then removes every snapshot that is neither in the current chain nor leased (a
/// transfer, restore or upload in progress). Returns the new base when one was written.
pub fn maintain_chains(
    store: &SnapshotStore,
    policy: &ChainPolicy,
    created_ms: u64,
) -> Result<Option<SnapshotInfo>> {
    let merged = match store.latest() {
        Some(chain) if policy.needs_compaction(&chain) => Some(raft_snapshot::compact_chain(
            store,
            Some(chain.tip().id),
            created_ms,
        )?),
        _ => None,
    };
    store.gc()?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Op};
    use raft_snapshot::StoreOptions;

    fn put(kv: &KvStore, index: u64, key: &str, value: &str) {
        let cmd = Command::new(
            0,
            Op::Put(crate::pb::etcdserverpb::PutRequest {
                key: key.as_bytes().to_vec().into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            }),
        );
        kv.apply(index, 1, &cmd).unwrap();
    }

    fn del(kv: &KvStore, index: u64, key: &str) {
        let cmd = Command::new(
            0,
            Op::DeleteRange(crate::pb::etcdserverpb::DeleteRangeRequest {
                key: key.as_bytes().to_vec().into(),
                ..Default::default()
            }),
        );
        kv.apply(index, 1, &cmd).unwrap();
    }

    fn membership() -> Membership {
        Membership {
            voters: [1].into_iter().collect(),
            ..Membership::default()
        }
    }

    #[test]
    fn full_then_deltas_restore_to_the_same_state_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open_dir(dir.path(), StoreOptions::default()).unwrap();
        let kv = KvStore::open_temporary().unwrap();
        let mut index = 0;
        for i in 0..200 {
            index += 1;
            put(&kv, index, &format!("k{i:03}"), "v0");
        }
        let s0 = capture_snapshot(&kv, &store, membership()).unwrap();
        assert_eq!(s0.kind(), SnapshotKind::Full);
        // Writes between the capture and the write do not show in the snapshot.
        index += 1;
        put(&kv, index, "k000", "after-capture");
        let base = s0.write(1).unwrap();
        assert_eq!(base.index, 200);

        let policy = ChainPolicy {
            max_chain_len: 4,
            max_delta_ratio: 10.0,
        };
        let mut tips = vec![base.clone()];
        for round in 0..3 {
            index += 1;
            put(&kv, index, &format!("k{:03}", round * 7 + 1), "changed");
            index += 1;
            del(&kv, index, &format!("k{:03}", round * 7 + 2));
            let p = capture_snapshot(&kv, &store, membership()).unwrap();
            assert_eq!(p.kind(), SnapshotKind::Delta);
            let info = p.write(2 + round).unwrap();
            // The changed keys (round 0 also k000, written after the base's capture), the
            // history event of each change, and the three metadata records.
            let expected = 2 * if round == 0 { 3 } else { 2 } + 3;
            assert_eq!(
                info.puts + info.deletes,
                expected,
                "only the changes: {info:?}"
            );
            tips.push(info);
            assert!(maintain_chains(&store, &policy, 10).unwrap().is_none());
        }
        let restored = KvStore::open_temporary().unwrap();
        let tip = restore_from_store(&restored, &store, None).unwrap();
        assert_eq!(tip.index, index);
        assert_eq!(restored.applied_index(), index);
        assert_eq!(restored.hash_kv(0).unwrap(), kv.hash_kv(0).unwrap());
        assert_eq!(restored.members(), kv.members());

        // A fourth delta makes the chain longer than 4: merged into one base.
        index += 1;
        put(&kv, index, "new", "x");
        capture_snapshot(&kv, &store, membership())
            .unwrap()
            .write(20)
            .unwrap();
        let merged = maintain_chains(&store, &policy, 30).unwrap().unwrap();
        assert_eq!(merged.kind, SnapshotKind::Full);
        assert_eq!(store.latest().unwrap().len(), 1);
        assert_eq!(store.list().len(), 1, "old chain collected");
        let again = KvStore::open_temporary().unwrap();
        restore_from_store(&again, &store, None).unwrap();
        assert_eq!(again.hash_kv(0).unwrap(), kv.hash_kv(0).unwrap());
        // Deltas continue on the merged base.
        index += 1;
        put(&kv, index, "newer", "y");
        let p = capture_snapshot(&kv, &store, membership()).unwrap();
        assert_eq!(p.kind(), SnapshotKind::Delta);
        p.write(40).unwrap();
        let third = KvStore::open_temporary().unwrap();
        restore_from_store(&third, &store, None).unwrap();
        assert_eq!(third.hash_kv(0).unwrap(), kv.hash_kv(0).unwrap());
    }

    #[test]
    fn a_chain_the_store_does_not_track_from_gets_a_full_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open_dir(dir.path(), StoreOptions::default()).unwrap();
        let leader = KvStore::open_temporary().unwrap();
        for i in 1..=50 {
            put(&leader, i, &format!("k{i}"), "v");
        }
        capture_snapshot(&leader, &store, membership())
            .unwrap()
            .write(1)
            .unwrap();
        // Another store (never restored from this chain) must not write a delta on it.
        let other = KvStore::open_temporary().unwrap();
        for i in 1..=60 {
            put(&other, i, &format!("o{i}"), "v");
        }
        let p = capture_snapshot(&other, &store, membership()).unwrap();
        assert_eq!(p.kind(), SnapshotKind::Full);
        p.write(2).unwrap();
        let back = KvStore::open_temporary().unwrap();
        restore_from_store(&back, &store, None).unwrap();
        assert_eq!(back.hash_kv(0).unwrap(), other.hash_kv(0).unwrap());
    }

    #[test]
    fn a_damaged_chain_is_refused_before_the_store_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open_dir(dir.path(), StoreOptions::default()).unwrap();
        let kv = KvStore::open_temporary().unwrap();
        for i in 1..=20 {
            put(&kv, i, &format!("k{i}"), "v");
        }
        let info = capture_snapshot(&kv, &store, membership())
            .unwrap()
            .write(1)
            .unwrap();
        let path = store.path_of(info.id);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let target = KvStore::open_temporary().unwrap();
        put(&target, 1, "keep", "me");
        let before = target.hash_kv(0).unwrap();
        assert!(restore_from_store(&target, &store, None).is_err());
        assert!(!target.restore_pending());
        assert_eq!(target.hash_kv(0).unwrap(), before);
    }

    /// Copies a directory tree (a crash image of a flushed sled database).
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dst);
            } else {
                std::fs::copy(e.path(), dst).unwrap();
            }
        }
    }

    /// A crash at every durable step of writing a delta (and right after the last one,
    /// before the key-value store heard the snapshot is durable) leaves the old chain or
    /// the new one restorable, and the next snapshot after the restart restores to the live
    /// state (the changes the lost snapshot held are not forgotten).
    #[test]
    fn a_crash_at_each_step_of_a_snapshot_leaves_the_old_or_the_new_one() {
        let mut saw = (false, false);
        for k in 1.. {
            let dir = tempfile::tempdir().unwrap();
            let (kv_dir, snap_dir) = (dir.path().join("kv"), dir.path().join("snap"));
            let image = dir.path().join("kv-at-crash");
            let (old_hash, new_hash, result);
            {
                let kv = KvStore::open(&kv_dir).unwrap();
                let store = SnapshotStore::open_dir(&snap_dir, StoreOptions::default()).unwrap();
                for i in 1..=100 {
                    put(&kv, i, &format!("k{i:03}"), "v0");
                }
                capture_snapshot(&kv, &store, membership())
                    .unwrap()
                    .write(1)
                    .unwrap();
                old_hash = kv.hash_kv(0).unwrap();
                for i in 101..=110 {
                    put(&kv, i, &format!("k{:03}", i - 95), "v1");
                }
                del(&kv, 111, "k050");
                new_hash = kv.hash_kv(0).unwrap();
                drop(store);
                let crashing = SnapshotStore::open_dir(
                    &snap_dir,
                    StoreOptions {
                        crash_at_step: Some(k),
                        ..StoreOptions::default()
                    },
                )
                .unwrap();
                let pending = capture_snapshot(&kv, &crashing, membership()).unwrap();
                assert_eq!(pending.kind(), SnapshotKind::Delta);
                // Writes during the capture leave pre-images on disk.
                put(&kv, 112, "k001", "during");
                del(&kv, 113, "k002");
                put(&kv, 114, "k999", "new");
                kv.flush().unwrap();
                // The store's durable state at any crash inside `write`: the key-value
                // store is only written again once the snapshot is durable.
                copy_dir(&kv_dir, &image);
                result = pending.write(2);
            }
            // Restart from the crash image.
            let kv = KvStore::open(&image).unwrap();
            assert!(!kv.restore_pending());
            assert_eq!(kv.applied_index(), 114);
            let store = SnapshotStore::open_dir(&snap_dir, StoreOptions::default()).unwrap();
            let back = KvStore::open_temporary().unwrap();
            let tip = restore_from_store(&back, &store, None).unwrap();
            match tip.index {
                100 => {
                    assert_eq!(back.hash_kv(0).unwrap(), old_hash, "crash at step {k}");
                    saw.0 = true;
                }
                111 => {
                    assert_eq!(back.hash_kv(0).unwrap(), new_hash, "crash at step {k}");
                    saw.1 = true;
                }
                other => panic!("crash at step {k}: chain ends at {other}"),
            }
            put(&kv, 115, "after", "restart");
            let next = capture_snapshot(&kv, &store, membership()).unwrap();
            // A delta only on the chain the store tracks its changes from (the old one).
            let expected_kind = if tip.index == 100 {
                SnapshotKind::Delta
            } else {
                SnapshotKind::Full
            };
            assert_eq!(next.kind(), expected_kind, "crash at step {k}");
            next.write(3).unwrap();
            let again = KvStore::open_temporary().unwrap();
            restore_from_store(&again, &store, None).unwrap();
            assert_eq!(
                again.hash_kv(0).unwrap(),
                kv.hash_kv(0).unwrap(),
                "crash at step {k}"
            );
            match result {
                Err(Error::SnapshotStore(raft_snapshot::Error::InjectedCrash(_))) => {}
                Ok(info) => {
                    assert_eq!(info.index, 111);
                    assert!(k > 3, "too few crash points");
                    break;
                }
                Err(e) => panic!("crash at step {k}: unexpected error {e}"),
            }
        }
        assert_eq!(saw, (true, true), "both outcomes occur in the sweep");
    }
}
