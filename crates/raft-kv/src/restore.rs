//! Restore of snapshots into a [`KvStore`]: a base replaces the whole state, a delta applies
//! on top of its parent's state; either way the store refuses to serve until the restore
//! finished, also across a crash. The records are described in [`crate::snapshot`].

use crate::error::{Error, Result};
use crate::history::decode_event;
use crate::layout::{
    ATTACH, COW, DATA, DIRTY, HISTORY, INTERNAL, META, REVS, history_rev, meta, meta_key,
};
use crate::lease::record as lease_record;
use crate::members::decode_members;
use crate::record::{Current, Rev};
use crate::revindex;
use crate::snapshot::SnapshotRecord;
use crate::state::{State, encode_cursor, remove_space};
use crate::store::KvStore;

/// How long a restore waits for an export capture to end.
const EXPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl KvStore {
    /// Starts replacing the whole state with a base snapshot's records.
    pub fn restore_begin(&self) -> Result<Restore> {
        self.begin_restore(true)
    }

    /// Starts applying a delta snapshot on top of the current state (which must be the
    /// delta's parent).
    pub fn delta_begin(&self) -> Result<Restore> {
        self.begin_restore(false)
    }

    /// Replaces the state with a base snapshot at `index`/`term`.
    pub fn restore_full(
        &self,
        index: u64,
        term: u64,
        records: impl IntoIterator<Item = Result<SnapshotRecord>>,
    ) -> Result<()> {
        let mut r = self.restore_begin()?;
        for rec in records {
            r.apply(rec?)?;
        }
        r.finish(index, term)
    }

    /// Applies a delta snapshot at `index`/`term` on top of the current state.
    pub fn apply_delta(
        &self,
        index: u64,
        term: u64,
        records: impl IntoIterator<Item = Result<SnapshotRecord>>,
    ) -> Result<()> {
        let mut r = self.delta_begin()?;
        for rec in records {
            r.apply(rec?)?;
        }
        r.finish(index, term)
    }

    fn begin_restore(&self, wipe: bool) -> Result<Restore> {
        let shared = &self.shared;
        // An export (`Maintenance.Snapshot` writing its file) ends on its own, at disk
        // speed: a restore (a follower installing the leader's snapshot) waits for it rather
        // than fail. A Raft snapshot capture is refused at once (its builder waits for us).
        let deadline = std::time::Instant::now() + EXPORT_WAIT;
        let mut st = loop {
            let st = shared.state.write();
            match st.capture {
                None => break st,
                Some(c) if c.export && std::time::Instant::now() < deadline => {
                    drop(st);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Some(_) => return Err(Error::CaptureInProgress),
            }
        };
        let tree = &shared.tree;
        // Mark first: a crash from here on leaves a store that refuses to serve.
        tree.insert(meta_key(meta::RESTORING), &[])?;
        tree.flush()?;
        st.restoring = true;
        st.pending_durable = None;
        shared
            .compaction
            .epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if wipe {
            remove_space(tree, HISTORY, |_| true)?;
            remove_space(tree, DATA, |_| true)?;
            remove_space(tree, ATTACH, |_| true)?;
            remove_space(tree, REVS, |_| true)?;
        }
        // A delta holds every internal record too (not only those changed since its parent):
        // records removed since the parent (revoked leases) are gone once it is restored.
        remove_space(tree, INTERNAL, |_| true)?;
        remove_space(tree, DIRTY, |_| true)?;
        remove_space(tree, COW, |_| true)?;
        tracing::info!(wipe, "snapshot restore started");
        Ok(Restore {
            store: self.clone(),
            batch: sled::Batch::default(),
            pending: 0,
            legacy: false,
            delta: !wipe,
            delta_keys: Vec::new(),
        })
    }
}

/// A restore in progress: feed it a snapshot's records, then [`finish`](Self::finish).
///
/// Until `finish` returns, the store refuses apply and reads ([`Error::RestoreIncomplete`]),
/// also after a crash and reopen: restore again then.
pub struct Restore {
    store: KvStore,
    batch: sled::Batch,
    pending: usize,
    /// A key entry in layout 2's format was restored (a snapshot of an older version):
    /// the data is converted when the restore finishes.
    legacy: bool,
    /// A delta on top of the current state (else a base on an emptied store): a data
    /// record's previous lease attachment is removed before its new one is written.
    delta: bool,
    /// In a delta, the user keys of its data records: their history is pruned when the
    /// restore finishes (`revindex::prune_restored`).
    delta_keys: Vec<Vec<u8>>,
}

impl Restore {
    /// Feeds one record.
    pub fn apply(&mut self, rec: SnapshotRecord) -> Result<()> {
        match rec {
            SnapshotRecord::Put { key, value } => self.put(&key, &value),
            SnapshotRecord::Delete { key } => self.delete(&key),
        }
    }

    /// Sets a record (validated before it is written).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let bad = |what: &str| Error::BadSnapshotRecord(format!("{what} ({key:?})"));
        match key.split_first() {
            Some((&HISTORY, _)) => {
                let (main, sub) = history_rev(key).ok_or_else(|| bad("bad history key"))?;
                let (user_key, _) =
                    decode_event(value).map_err(|_| bad("undecodable history event"))?;
                // The index is derived from the history, not carried (`crate::revindex`).
                self.batch
                    .insert(revindex::entry_key(&user_key, Rev::new(main, sub)), &[][..]);
            }
            Some((&INTERNAL, _)) => {
                if !crate::internal::validate(key, value) {
                    return Err(bad("unknown or undecodable internal record"));
                }
            }
            Some((&DATA, user_key)) => {
                let entry = Current::decode(value).map_err(|_| bad("undecodable key entry"))?;
                self.legacy |= Current::is_layout_2(value);
                self.detach(key, user_key)?;
                if let Some(lease) = entry.live().map(|r| r.lease).filter(|l| *l != 0) {
                    self.batch
                        .insert(lease_record::attach_key(lease, user_key), &[][..]);
                }
            }
            Some((&META, name)) if name == meta::REVISION || name == meta::COMPACT_REVISION => {
                if value.len() != 8 {
                    return Err(bad("revision not 8 bytes"));
                }
            }
            Some((&META, name)) if name == meta::MEMBERS => {
                decode_members(value).map_err(|_| bad("undecodable member list"))?;
            }
            _ => return Err(bad("unknown record key")),
        }
        self.batch.insert(key, value);
        self.bump()
    }

    /// Removes a data record.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        if key.first() != Some(&DATA) {
            return Err(Error::BadSnapshotRecord(format!(
                "delete of a non-data record ({key:?})"
            )));
        }
        self.detach(key, &key[1..])?;
        self.batch.remove(key);
        self.bump()
    }

    /// In a delta, removes the lease attachment of the data record `key` (user key
    /// `user_key`) as the parent state has it. A snapshot names each key once, so the tree
    /// still holds the parent's entry.
    fn detach(&mut self, key: &[u8], user_key: &[u8]) -> Result<()> {
        if !self.delta {
            return Ok(());
        }
        self.delta_keys.push(user_key.to_vec());
        if let Some(old) = self.store.shared.tree.get(key)? {
            let old = Current::decode(&old)?;
            if let Some(lease) = old.live().map(|r| r.lease).filter(|l| *l != 0) {
                self.batch.remove(lease_record::attach_key(lease, user_key));
            }
        }
        Ok(())
    }

    fn bump(&mut self) -> Result<()> {
        self.pending += 1;
        if self.pending >= 10_000 {
            self.store
                .shared
                .tree
                .apply_batch(std::mem::take(&mut self.batch))?;
            self.pending = 0;
        }
        Ok(())
    }

    /// Completes the restore: the state is the snapshot's at `index` (of `term`); deltas are
    /// tracked from here.
    pub fn finish(mut self, index: u64, term: u64) -> Result<()> {
        let shared = self.store.shared.clone();
        let mut st = shared.state.write();
        let b = &mut self.batch;
        b.insert(meta_key(meta::APPLIED_INDEX), &index.to_be_bytes());
        b.insert(meta_key(meta::APPLIED_TERM), &term.to_be_bytes());
        b.insert(meta_key(meta::DIRTY_FLOOR), &0u64.to_be_bytes());
        b.insert(meta_key(meta::DIRTY_GEN), &1u64.to_be_bytes());
        b.insert(meta_key(meta::SNAPSHOT_INDEX), &index.to_be_bytes());
        // Physical compaction starts over (see the module documentation).
        b.insert(
            meta_key(meta::COMPACT_CURSOR),
            encode_cursor(Rev::default()),
        );
        shared.tree.apply_batch(std::mem::take(b))?;
        if self.delta {
            let pruned = revindex::prune_restored(&shared.tree, &self.delta_keys)?;
            tracing::debug!(pruned, "history the delta's source no longer has");
        }
        if self.legacy {
            crate::upgrade::convert_data(&shared.tree)?;
            crate::upgrade::legacy_restored(&shared.tree)?;
        }
        let restored = State::load(&shared.tree)?;
        let mut b = sled::Batch::default();
        b.insert(
            meta_key(meta::SNAPSHOT_REVISION),
            &restored.revision.to_be_bytes(),
        );
        b.remove(meta_key(meta::RESTORING));
        shared.tree.apply_batch(b)?;
        shared.tree.flush()?;
        let next_capture = st.next_capture;
        *st = State::load(&shared.tree)?;
        st.next_capture = next_capture;
        *shared.compaction.cursor.lock() = st.compact_cursor;
        shared.leases.lock().load(
            lease_record::load_all(&shared.tree)?,
            std::time::Instant::now(),
        );
        *shared.auth.write() = std::sync::Arc::new(crate::auth::record::load(&shared.tree)?);
        shared.compaction.durable.send_replace(0);
        let compacted = st.compact_revision > 0;
        drop(st);
        if compacted {
            crate::compact::start(&shared);
        }
        let st = shared.state.read();
        tracing::info!(
            index,
            term,
            revision = st.revision,
            "snapshot restore finished"
        );
        Ok(())
    }
}
