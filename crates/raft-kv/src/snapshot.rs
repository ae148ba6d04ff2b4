//! Snapshot support: copy-on-write captures (full or delta) that never stop apply, and
//! restore of a base plus deltas — the state machine's side of `raft-snapshot`.
//!
//! # Records
//! A snapshot is a stream of [`SnapshotRecord`]s in strictly ascending key order, each key
//! at most once. The record keys are the store's own sled keys:
//! - `b'k' ++ user key` -> the [`Record`] encoding (revisions, version, lease, value);
//! - then three metadata records, always present (in full snapshots and deltas):
//!   `b"mcompact_revision"` (i64 BE), `b"mmembers"` (the member list), `b"mrevision"`
//!   (i64 BE).
//!
//! A delta holds a `Put` for each key written since the parent snapshot and still present,
//! a `Delete` for each such key now absent, and the metadata records.
//!
//! # Copy-on-write
//! [`KvStore::capture`] freezes the state at the applied index N and starts a new dirty
//! generation. While the capture's records are alive, the first write of a key after N
//! stores the key's value at N (or its absence) as a pre-image in the `b'c'` key space, in
//! the same sled batch as the write; the capture reads pre-images before the live data. The
//! records are read in chunks under a read lock, so apply only ever waits for one chunk.
//! Keys the records have already passed need no pre-image (the reader publishes how far it
//! got), so late in a capture writes cost what they cost without one. Dropping the records
//! ends the capture and removes the pre-images.
//!
//! # Dirty tracking
//! Every write marks its key with the current generation (`b'd'` key space). A capture at
//! generation `g` taken when the last durable snapshot's generation was `f` has as its delta
//! the keys marked in `(f, g]`, plus keys so marked that were written again after N (their
//! pre-image remembers it). [`KvStore::capture_durable`] moves `f` to `g` once the snapshot
//! is durable; a capture that is dropped without it leaves its changes for the next delta.

use crate::error::{Error, Result};
use crate::layout::{COW, DATA, DIRTY, META, be_u64, meta, meta_key, prefixed};
use crate::members::{Member, decode_members, encode_members};
use crate::record::Record;
use crate::store::{
    ActiveCapture, COW_PRESENT, COW_WAS_DIRTY, KvStore, Progress, Shared, State, remove_space,
};
use prost::bytes::Bytes;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

/// One record of a snapshot stream (maps one to one onto `raft_snapshot::Record`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotRecord {
    /// Set `key` to `value`.
    Put {
        /// The record key (see the module documentation).
        key: Bytes,
        /// The record value.
        value: Bytes,
    },
    /// Remove `key` (deltas only).
    Delete {
        /// The record key.
        key: Bytes,
    },
}

impl SnapshotRecord {
    /// The record's key.
    pub fn key(&self) -> &Bytes {
        match self {
            SnapshotRecord::Put { key, .. } | SnapshotRecord::Delete { key } => key,
        }
    }
}

/// Which records a capture yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// Every key (a base snapshot).
    Full,
    /// The keys changed or deleted since the last durable snapshot.
    Delta,
}

/// What a capture covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureInfo {
    /// Full or delta.
    pub kind: CaptureKind,
    /// The applied index N the capture shows the state at.
    pub index: u64,
    /// The term of entry N.
    pub term: u64,
    /// The store revision at N.
    pub revision: i64,
    /// The compact revision at N.
    pub compact_revision: i64,
    /// The member list at N.
    pub members: Vec<Member>,
    /// For a delta: the index of the durable snapshot it applies on (0 = the empty store).
    pub base_index: Option<u64>,
}

/// A frozen view of the state at one applied index, taken without stopping apply.
pub struct Capture {
    /// What it covers.
    pub info: CaptureInfo,
    /// The records; dropping them ends the capture.
    pub records: CaptureRecords,
}

/// The records of a [`Capture`]: an iterator over `Result<SnapshotRecord>`, `Send` and
/// `'static`, reading the store in chunks.
pub struct CaptureRecords {
    shared: Arc<Shared>,
    kind: CaptureKind,
    cap: ActiveCapture,
    /// Last user key examined (records after it come next); `None` before the first.
    cursor: Option<Vec<u8>>,
    buf: VecDeque<SnapshotRecord>,
    data_done: bool,
    /// The metadata records, emitted after the data.
    tail: Vec<SnapshotRecord>,
    failed: bool,
}

/// Keys examined per chunk (under one read lock).
const CHUNK: usize = 512;

impl KvStore {
    /// Freezes the state at the current applied index and returns its records (full or
    /// delta) while apply goes on. One capture at a time ([`Error::CaptureInProgress`]).
    pub fn capture(&self, kind: CaptureKind) -> Result<Capture> {
        let shared = &self.shared;
        let mut st = shared.state.write();
        if st.restoring {
            return Err(Error::RestoreIncomplete);
        }
        if st.capture.is_some() {
            return Err(Error::CaptureInProgress);
        }
        if st.cow_stale {
            // The previous capture ended a moment ago: its pre-images must go first.
            remove_space(&shared.tree, COW, |_| true)?;
            st.cow_stale = false;
        }
        // Dirty marks at or below the floor may still be there (their removal stops while a
        // capture runs); the capture ignores them.
        let cap = ActiveCapture {
            floor: st.dirty_floor,
            generation: st.dirty_gen,
            delta: kind == CaptureKind::Delta,
        };
        st.dirty_gen += 1;
        shared
            .tree
            .insert(meta_key(meta::DIRTY_GEN), &st.dirty_gen.to_be_bytes())?;
        st.capture = Some(cap);
        *shared.progress.lock() = Progress::Start;
        st.pending_durable = Some((st.applied_index, cap.generation));
        let members: Vec<Member> = st.members.values().cloned().collect();
        let info = CaptureInfo {
            kind,
            index: st.applied_index,
            term: st.applied_term,
            revision: st.revision,
            compact_revision: st.compact_revision,
            members: members.clone(),
            base_index: (kind == CaptureKind::Delta).then_some(st.snapshot_index),
        };
        let meta_rec = |name: &[u8], value: Vec<u8>| SnapshotRecord::Put {
            key: Bytes::from(meta_key(name)),
            value: Bytes::from(value),
        };
        let tail = vec![
            meta_rec(
                meta::COMPACT_REVISION,
                st.compact_revision.to_be_bytes().to_vec(),
            ),
            meta_rec(meta::MEMBERS, encode_members(&members)),
            meta_rec(meta::REVISION, st.revision.to_be_bytes().to_vec()),
        ];
        tracing::info!(
            index = info.index,
            ?kind,
            generation = cap.generation,
            "snapshot capture started"
        );
        Ok(Capture {
            info,
            records: CaptureRecords {
                shared: shared.clone(),
                kind,
                cap,
                cursor: None,
                buf: VecDeque::new(),
                data_done: false,
                tail,
                failed: false,
            },
        })
    }

    /// A full capture (see [`capture`](Self::capture)).
    pub fn snapshot_full(&self) -> Result<Capture> {
        self.capture(CaptureKind::Full)
    }

    /// A delta capture relative to the durable snapshot at index `since`; refused with
    /// [`Error::DeltaBaseMismatch`] when changes are tracked from another snapshot.
    pub fn snapshot_delta(&self, since: u64) -> Result<Capture> {
        let durable = self.shared.state.read().snapshot_index;
        if durable != since {
            return Err(Error::DeltaBaseMismatch {
                requested: since,
                durable,
            });
        }
        self.capture(CaptureKind::Delta)
    }

    /// The snapshot built from the latest capture (at `index`) is durable: later deltas are
    /// relative to it, and the changes it holds are forgotten.
    pub fn capture_durable(&self, index: u64) -> Result<()> {
        let shared = &self.shared;
        let mut st = shared.state.write();
        let generation = match st.pending_durable {
            Some((i, g)) if i == index => g,
            _ => return Err(Error::UnknownCapture(index)),
        };
        st.pending_durable = None;
        st.dirty_floor = generation;
        st.snapshot_index = index;
        let mut b = sled::Batch::default();
        b.insert(meta_key(meta::DIRTY_FLOOR), &generation.to_be_bytes());
        b.insert(meta_key(meta::DIRTY_GEN), &st.dirty_gen.to_be_bytes());
        b.insert(meta_key(meta::SNAPSHOT_INDEX), &index.to_be_bytes());
        shared.tree.apply_batch(b)?;
        st.cleanup_pending = true;
        drop(st);
        tracing::info!(index, "snapshot durable; delta tracking restarts");
        tidy(shared)
    }

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
        let mut st = shared.state.write();
        if st.capture.is_some() {
            return Err(Error::CaptureInProgress);
        }
        let tree = &shared.tree;
        // Mark first: a crash from here on leaves a store that refuses to serve.
        tree.insert(meta_key(meta::RESTORING), &[])?;
        tree.flush()?;
        st.restoring = true;
        st.pending_durable = None;
        st.cleanup_pending = false;
        st.cow_stale = false;
        if wipe {
            remove_space(tree, DATA, |_| true)?;
        }
        remove_space(tree, DIRTY, |_| true)?;
        remove_space(tree, COW, |_| true)?;
        tracing::info!(wipe, "snapshot restore started");
        Ok(Restore {
            store: self.clone(),
            batch: sled::Batch::default(),
            pending: 0,
        })
    }
}

/// Keys examined per chunk of [`tidy`] (under one read lock).
const TIDY_CHUNK: usize = 1024;

/// Removes what ended captures leave behind: the pre-images of the last capture and the
/// dirty marks at or below the floor (changes a durable snapshot holds). Both can be many
/// (one mark per key after a full snapshot), so the work goes in chunks, each under the
/// state read lock: apply, which writes under the write lock, waits for one chunk at most,
/// and no mark changes while its chunk is examined. Stops while a capture or a restore
/// runs (the capture ignores marks at or below its floor); the end of the capture resumes.
pub(crate) fn tidy(shared: &Shared) -> Result<()> {
    let idle = |st: &State| st.capture.is_none() && !st.restoring;
    if shared.state.read().cow_stale {
        if !tidy_space(shared, COW, idle, |_, _| true)? {
            return Ok(());
        }
        let mut st = shared.state.write();
        if idle(&st) {
            st.cow_stale = false;
        }
    }
    let (pending, floor) = {
        let st = shared.state.read();
        (st.cleanup_pending, st.dirty_floor)
    };
    if !pending {
        return Ok(());
    }
    let stale = |st: &State, v: &[u8]| be_u64(v).is_some_and(|m| m <= st.dirty_floor);
    if !tidy_space(shared, DIRTY, idle, stale)? {
        return Ok(());
    }
    let mut st = shared.state.write();
    if st.dirty_floor == floor && idle(&st) {
        st.cleanup_pending = false;
    }
    tracing::debug!(floor, "dirty marks cleaned up");
    Ok(())
}

/// Removes the entries of key space `space` for which `doomed` holds, in chunks under the
/// state read lock while `go_on` holds; false when it stopped early.
fn tidy_space(
    shared: &Shared,
    space: u8,
    go_on: impl Fn(&State) -> bool,
    doomed: impl Fn(&State, &[u8]) -> bool,
) -> Result<bool> {
    let mut after: Option<sled::IVec> = None;
    loop {
        let st = shared.state.read();
        if !go_on(&st) {
            return Ok(false);
        }
        let lo = match &after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Included(vec![space]),
        };
        let mut b = sled::Batch::default();
        let mut seen = 0;
        for item in shared
            .tree
            .range((lo, Bound::Excluded(vec![space + 1])))
            .take(TIDY_CHUNK)
        {
            let (k, v) = item?;
            if doomed(&st, &v) {
                b.remove(k.clone());
            }
            after = Some(k);
            seen += 1;
        }
        shared.tree.apply_batch(b)?;
        if seen < TIDY_CHUNK {
            return Ok(true);
        }
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
            Some((&DATA, _)) => {
                Record::decode(value).map_err(|_| bad("undecodable key record"))?;
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
        self.batch.remove(key);
        self.bump()
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
        b.remove(meta_key(meta::RESTORING));
        shared.tree.apply_batch(std::mem::take(b))?;
        shared.tree.flush()?;
        *st = State::load(&shared.tree)?;
        tracing::info!(
            index,
            term,
            revision = st.revision,
            "snapshot restore finished"
        );
        Ok(())
    }
}

impl Iterator for CaptureRecords {
    type Item = Result<SnapshotRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                return Some(Ok(r));
            }
            if self.failed {
                return None;
            }
            if self.data_done {
                if self.tail.is_empty() {
                    return None;
                }
                return Some(Ok(self.tail.remove(0)));
            }
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

impl CaptureRecords {
    /// Reads the next chunk under the read lock.
    fn fill(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let _state = shared.state.read();
        let tree = &shared.tree;
        let main_space = match self.kind {
            CaptureKind::Full => DATA,
            CaptureKind::Delta => DIRTY,
        };
        let mut main = Cursor::new(tree, main_space, self.cursor.as_deref())?;
        let mut cow = Cursor::new(tree, COW, self.cursor.as_deref())?;
        let mut examined = 0;
        while examined < CHUNK {
            let (from_main, from_cow) = match (main.key(), cow.key()) {
                (None, None) => {
                    self.data_done = true;
                    *shared.progress.lock() = Progress::Done;
                    return Ok(());
                }
                (Some(_), None) => (true, false),
                (None, Some(_)) => (false, true),
                (Some(m), Some(c)) => (m <= c, c <= m),
            };
            let user_key = if from_cow { cow.key() } else { main.key() }
                .expect("present")
                .to_vec();
            let data_key = || Bytes::from(prefixed(DATA, &user_key));
            if from_cow {
                // Written after the capture point: the pre-image is the value at N.
                let v = cow.value().expect("present");
                let (flags, raw) = v
                    .split_first()
                    .ok_or_else(|| Error::corrupt("empty cow entry"))?;
                let wanted = self.kind == CaptureKind::Full || flags & COW_WAS_DIRTY != 0;
                if wanted {
                    if flags & COW_PRESENT != 0 {
                        self.buf.push_back(SnapshotRecord::Put {
                            key: data_key(),
                            value: Bytes::copy_from_slice(raw),
                        });
                    } else if self.kind == CaptureKind::Delta {
                        self.buf
                            .push_back(SnapshotRecord::Delete { key: data_key() });
                    }
                }
            } else {
                match self.kind {
                    CaptureKind::Full => {
                        let v = main.value().expect("present");
                        self.buf.push_back(SnapshotRecord::Put {
                            key: data_key(),
                            value: Bytes::copy_from_slice(v),
                        });
                    }
                    CaptureKind::Delta => {
                        let mark = be_u64(main.value().expect("present"))
                            .ok_or_else(|| Error::corrupt("dirty mark"))?;
                        if mark > self.cap.floor && mark <= self.cap.generation {
                            match tree.get(prefixed(DATA, &user_key))? {
                                Some(raw) => self.buf.push_back(SnapshotRecord::Put {
                                    key: data_key(),
                                    value: Bytes::copy_from_slice(&raw),
                                }),
                                None => self
                                    .buf
                                    .push_back(SnapshotRecord::Delete { key: data_key() }),
                            }
                        }
                    }
                }
            }
            if from_main {
                main.advance()?;
            }
            if from_cow {
                cow.advance()?;
            }
            self.cursor = Some(user_key);
            examined += 1;
        }
        // Published while the read lock is still held: no write lands in between.
        if let Some(c) = &self.cursor {
            *shared.progress.lock() = Progress::After(c.clone());
        }
        Ok(())
    }
}

impl Drop for CaptureRecords {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.write();
            st.capture = None;
            st.cow_stale = true;
            *self.shared.progress.lock() = Progress::Start;
        }
        if let Err(err) = tidy(&self.shared) {
            tracing::warn!(%err, "ending a snapshot capture failed; reopening cleans up");
        }
    }
}

/// A sled range iterator over one key space with its current item.
struct Cursor {
    iter: sled::Iter,
    head: Option<(sled::IVec, sled::IVec)>,
}

impl Cursor {
    /// Items of key space `space` after user key `after` (from the start when `None`).
    fn new(tree: &sled::Tree, space: u8, after: Option<&[u8]>) -> Result<Self> {
        let lo = match after {
            Some(k) => Bound::Excluded(prefixed(space, k)),
            None => Bound::Included(vec![space]),
        };
        let mut iter = tree.range((lo, Bound::Excluded(vec![space + 1])));
        let head = iter.next().transpose()?;
        Ok(Cursor { iter, head })
    }

    fn key(&self) -> Option<&[u8]> {
        self.head.as_ref().map(|(k, _)| &k[1..])
    }

    fn value(&self) -> Option<&[u8]> {
        self.head.as_ref().map(|(_, v)| v.as_ref())
    }

    fn advance(&mut self) -> Result<()> {
        self.head = self.iter.next().transpose()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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

    /// The marks a durable snapshot covers and the pre-images of an ended capture are
    /// removed (over several chunks), and not while a capture runs.
    #[test]
    fn ended_captures_leave_nothing_behind() {
        let store = KvStore::open_temporary().unwrap();
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
        // Reported durable while its records are still read: the marks stay meanwhile.
        store.capture_durable(cap.info.index).unwrap();
        assert_eq!(
            count(&store, DIRTY),
            n as usize,
            "kept while a capture runs"
        );
        let records: Vec<_> = cap.records.collect::<Result<_>>().unwrap();
        assert_eq!(records.len(), n as usize + 3);
        assert_eq!(count(&store, COW), 0, "pre-images removed at the end");
        // Only the 10 keys written after the capture are still dirty.
        assert_eq!(count(&store, DIRTY), 10);
        assert!(!store.shared.state.read().cleanup_pending);
    }

    #[test]
    fn handles_cross_threads() {
        // raft-snapshot boxes the records as `dyn SnapshotSource + Send`; the runtime shares
        // the store between its apply task and the gRPC service.
        send_static::<CaptureRecords>();
        send_static::<Capture>();
        send_static::<Restore>();
        send_static::<KvStore>();
        sync::<KvStore>();
    }
}
