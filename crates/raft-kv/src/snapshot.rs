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
//! stores the key's value at N (or its absence) as a pre-image under the capture's number in
//! the `b'c'` key space, in the same sled batch as the write. The value is the one apply
//! read anyway to build the new record, and apply remembers in memory which keys have a
//! pre-image, so copy-on-write adds a write per key and no read. Keys the records have
//! already passed need no pre-image (the reader publishes how far it got), so late in a
//! capture writes cost what they cost without one. Dropping the records ends the capture;
//! its pre-images are removed afterwards.
//!
//! The reader takes no lock that apply waits for. For each chunk of keys it reads the live
//! data first and the pre-images of the same keys second, and a pre-image wins. That is
//! enough: a write after N that lands before the data read also wrote the key's pre-image
//! (same atomic batch), which the later pre-image read sees; a write that lands after the
//! data read left the data at its value at N. The reader publishes its progress only after
//! both reads, so a write never skips a pre-image the reader still needs.
//!
//! # Dirty tracking
//! Every applied batch stores the list of keys it wrote under the current generation
//! (`b'd'` key space: one entry per batch, not per key). A capture at generation `g` taken
//! when the last durable snapshot's generation was `f` has as its delta the keys listed in
//! generations `(f, g]`: it reads those lists and sorts and deduplicates their keys in memory
//! (a few dozen bytes per changed key), then reads each key's value at N (pre-image, else live
//! data; a key absent at N is a `Delete`). [`KvStore::capture_durable`] moves `f` to `g` once
//! the snapshot is durable; a capture that is dropped without it leaves its changes for the
//! next delta.
//!
//! # Cleanup without locks
//! Retired dirty lists (generations at or below the floor) and the pre-images of ended
//! captures (capture numbers below the running or next one) sit in key ranges that no write
//! touches again, so the cleanup (after a capture ends and after a snapshot is durable)
//! removes them blindly, without the state lock and with single sled removes (a sled batch
//! would take sled's global lock exclusively): one remove per applied batch for the dirty
//! lists, one per pre-imaged key.

use crate::error::{Error, Result};
use crate::layout::{
    COW, DATA, DIRTY, META, be_u64, cow_key, decode_key_list, dirty_key, encode_key_list, meta,
    meta_key, numbered, prefixed,
};
use crate::members::{Member, decode_members, encode_members};
use crate::record::Record;
use crate::store::{ActiveCapture, COW_PRESENT, KvStore, Progress, Shared, State, remove_space};
use prost::bytes::Bytes;
use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
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
    /// A delta's keys (sorted, unique) from its dirty lists, read at the first chunk, and
    /// how many of them were read.
    dirty: Option<(Vec<Vec<u8>>, usize)>,
    buf: VecDeque<SnapshotRecord>,
    data_done: bool,
    /// The metadata records, emitted after the data.
    tail: Vec<SnapshotRecord>,
    failed: bool,
}

/// Keys examined per chunk.
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
        // Dirty lists at or below the floor and earlier captures' pre-images may still be
        // there (cleanup runs after a capture); this capture reads neither.
        let cap = ActiveCapture {
            floor: st.dirty_floor,
            generation: st.dirty_gen,
            number: st.next_capture,
        };
        st.next_capture += 1;
        st.pre_imaged.clear();
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
                dirty: None,
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

/// Keys listed per range scan in [`tidy`].
const TIDY_CHUNK: usize = 256;

/// Removes what ended captures leave behind: the pre-images of captures that are over and
/// the dirty lists at or below the floor (changes a durable snapshot holds).
///
/// Both sit in key ranges no write touches again (new pre-images go under the running
/// capture's number, new lists under a generation above the floor), so the removal needs
/// no lock of ours and no look at the values (see [`remove_range`]). The bounds are taken under the state lock once: lists of the
/// running capture's delta are kept even when the floor has passed them (a capture may be
/// reported durable while its records are still read).
pub(crate) fn tidy(shared: &Shared) -> Result<()> {
    let (cow_limit, dirty_limit) = {
        let st = shared.state.read();
        if st.restoring {
            return Ok(());
        }
        match st.capture {
            Some(cap) => (cap.number, st.dirty_floor.min(cap.floor)),
            None => (st.next_capture, st.dirty_floor),
        }
    };
    let cow = remove_range(&shared.tree, vec![COW], numbered(COW, cow_limit))?;
    let dirty = remove_range(
        &shared.tree,
        vec![DIRTY],
        numbered(DIRTY, dirty_limit.saturating_add(1)),
    )?;
    tracing::debug!(cow, dirty, dirty_limit, "snapshot leftovers removed");
    Ok(())
}

/// Removes every key in `[lo, hi)`, one sled remove at a time; returns how many.
///
/// Single removes, not batches: a sled batch takes sled's global lock exclusively (every
/// read and write of the database waits for it), a single remove shares it. So a cleanup
/// on a low-priority thread that is preempted in the middle never stops apply.
fn remove_range(tree: &sled::Tree, lo: Vec<u8>, hi: Vec<u8>) -> Result<usize> {
    let mut removed = 0;
    let mut from = Bound::Included(lo);
    loop {
        let mut keys = Vec::with_capacity(TIDY_CHUNK);
        for item in tree
            .range((from.clone(), Bound::Excluded(hi.clone())))
            .take(TIDY_CHUNK)
        {
            keys.push(item?.0);
        }
        let Some(last) = keys.last() else {
            return Ok(removed);
        };
        from = Bound::Excluded(last.to_vec());
        for k in &keys {
            tree.remove(k)?;
        }
        removed += keys.len();
    }
}

/// Converts a layout-1 store (one dirty mark `b'd' ++ user key` -> generation per key) to
/// the current layout in one atomic batch: the marks above the floor become one dirty list
/// per generation, the rest is dropped. Pre-images are already gone (removed at open).
pub(crate) fn upgrade_layout(tree: &sled::Tree) -> Result<()> {
    if tree.get(meta_key(meta::LAYOUT))?.as_deref() != Some(&[1][..]) {
        return Ok(());
    }
    let floor = match tree.get(meta_key(meta::DIRTY_FLOOR))? {
        Some(v) => be_u64(&v).ok_or_else(|| Error::corrupt("meta dirty_floor"))?,
        None => 0,
    };
    let mut b = sled::Batch::default();
    let mut lists: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
    for item in tree.scan_prefix([DIRTY]) {
        let (k, v) = item?;
        let generation = be_u64(&v).ok_or_else(|| Error::corrupt("layout 1 dirty mark"))?;
        if generation > floor {
            lists.entry(generation).or_default().push(k[1..].to_vec());
        }
        b.remove(k);
    }
    let converted: usize = lists.values().map(Vec::len).sum();
    for (generation, keys) in &lists {
        b.insert(
            dirty_key(*generation, 0),
            encode_key_list(keys.iter().map(Vec::as_slice)),
        );
    }
    b.insert(meta_key(meta::LAYOUT), &[crate::layout::LAYOUT_VERSION]);
    tree.apply_batch(b)?;
    tree.flush()?;
    tracing::info!(converted, "raft-kv store converted to layout 2");
    Ok(())
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
        let next_capture = st.next_capture;
        *st = State::load(&shared.tree)?;
        st.next_capture = next_capture;
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
    /// Reads the next chunk (no lock: see the module documentation).
    fn fill(&mut self) -> Result<()> {
        match self.kind {
            CaptureKind::Full => self.fill_full()?,
            CaptureKind::Delta => self.fill_delta()?,
        }
        // Published only after the chunk's data and pre-images were both read.
        let mut progress = self.shared.progress.lock();
        if self.data_done {
            *progress = Progress::Done;
        } else if let Some(c) = &self.cursor {
            *progress = Progress::After(c.clone());
        }
        Ok(())
    }

    /// A record of `user_key` from its pre-image, if it has one: `Some(None)` when the key
    /// was absent at the capture point.
    fn from_pre_image(user_key: &[u8], v: &[u8]) -> Result<Option<SnapshotRecord>> {
        let (flags, raw) = v
            .split_first()
            .ok_or_else(|| Error::corrupt("empty cow entry"))?;
        Ok((flags & COW_PRESENT != 0).then(|| SnapshotRecord::Put {
            key: Bytes::from(prefixed(DATA, user_key)),
            value: Bytes::copy_from_slice(raw),
        }))
    }

    /// The next up to [`CHUNK`] data keys, then the pre-images of the same key interval.
    fn fill_full(&mut self) -> Result<()> {
        let tree = &self.shared.tree;
        let lo = |space: Vec<u8>| match &self.cursor {
            Some(k) => {
                let mut v = space;
                v.extend_from_slice(k);
                Bound::Excluded(v)
            }
            None => Bound::Included(space),
        };
        let mut data = Vec::with_capacity(CHUNK);
        for item in tree
            .range((lo(vec![DATA]), Bound::Excluded(vec![DATA + 1])))
            .take(CHUNK)
        {
            data.push(item?);
        }
        let last = (data.len() == CHUNK).then(|| data[CHUNK - 1].0[1..].to_vec());
        let number = self.cap.number;
        let cow_hi = match &last {
            Some(k) => Bound::Included(cow_key(number, k)),
            None => Bound::Excluded(numbered(COW, number + 1)),
        };
        let mut cow = Vec::new();
        for item in tree.range((lo(numbered(COW, number)), cow_hi)) {
            let (k, v) = item?;
            cow.push((k[9..].to_vec(), v));
        }
        // Merge by user key; a pre-image wins over the live data.
        let mut data = data.into_iter().peekable();
        let mut cow = cow.into_iter().peekable();
        loop {
            let order = match (
                data.peek().map(|(k, _)| &k[1..]),
                cow.peek().map(|(k, _)| k.as_slice()),
            ) {
                (None, None) => break,
                (Some(d), Some(c)) => c.cmp(d),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
            };
            if order == Ordering::Greater {
                let (k, v) = data.next().expect("peeked");
                self.buf.push_back(SnapshotRecord::Put {
                    key: Bytes::copy_from_slice(&k),
                    value: Bytes::copy_from_slice(&v),
                });
            } else {
                if order == Ordering::Equal {
                    data.next();
                }
                let (ck, cv) = cow.next().expect("peeked");
                self.buf.extend(Self::from_pre_image(&ck, &cv)?);
            }
        }
        match last {
            Some(k) => self.cursor = Some(k),
            None => self.data_done = true,
        }
        Ok(())
    }

    /// The next up to [`CHUNK`] keys of the delta: for each, the live data, then its
    /// pre-image (which wins); a key absent at the capture point is a `Delete`.
    fn fill_delta(&mut self) -> Result<()> {
        let tree = &self.shared.tree;
        if self.dirty.is_none() {
            let mut keys = Vec::new();
            let lo = numbered(DIRTY, self.cap.floor + 1);
            let hi = numbered(DIRTY, self.cap.generation + 1);
            for item in tree.range(lo..hi) {
                let (_, v) = item?;
                decode_key_list(&v, &mut keys).ok_or_else(|| Error::corrupt("dirty list"))?;
            }
            keys.sort_unstable();
            keys.dedup();
            self.dirty = Some((keys, 0));
        }
        let (keys, at) = self.dirty.as_mut().expect("loaded above");
        let end = (*at + CHUNK).min(keys.len());
        for key in &keys[*at..end] {
            let live = tree.get(prefixed(DATA, key))?;
            let rec = match tree.get(cow_key(self.cap.number, key))? {
                Some(pre) => Self::from_pre_image(key, &pre)?,
                None => live.map(|raw| SnapshotRecord::Put {
                    key: Bytes::from(prefixed(DATA, key)),
                    value: Bytes::copy_from_slice(&raw),
                }),
            };
            self.buf
                .push_back(rec.unwrap_or_else(|| SnapshotRecord::Delete {
                    key: Bytes::from(prefixed(DATA, key)),
                }));
        }
        *at = end;
        if end == keys.len() {
            self.data_done = true;
        } else {
            self.cursor = Some(keys[end - 1].clone());
        }
        Ok(())
    }
}

impl Drop for CaptureRecords {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.write();
            st.capture = None;
            st.pre_imaged = HashSet::new();
            *self.shared.progress.lock() = Progress::Start;
        }
        if let Err(err) = tidy(&self.shared) {
            tracing::warn!(%err, "cleaning up after a snapshot capture failed; the next one retries");
        }
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

    /// The dirty lists a durable snapshot covers and the pre-images of an ended capture are
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
        // Reported durable while its records are still read: the capture's dirty lists stay
        // meanwhile (one per batch: the n before the capture and the 10 after).
        store.capture_durable(cap.info.index).unwrap();
        assert_eq!(
            count(&store, DIRTY),
            n as usize + 10,
            "kept while a capture runs"
        );
        let records: Vec<_> = cap.records.collect::<Result<_>>().unwrap();
        assert_eq!(records.len(), n as usize + 3);
        assert_eq!(count(&store, COW), 0, "pre-images removed at the end");
        // Only the lists of the 10 writes after the capture are left.
        assert_eq!(count(&store, DIRTY), 10);
        assert!(store.shared.state.read().pre_imaged.is_empty());
    }

    /// A layout-1 store (one dirty mark per key) opens converted: the marks above the floor
    /// become the next delta, those below are dropped.
    #[test]
    fn layout_1_is_converted_on_open() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree(crate::TREE_NAME).unwrap();
        let rec = Record {
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
            value: Bytes::from_static(b"v"),
        };
        let mut b = sled::Batch::default();
        b.insert(meta_key(meta::LAYOUT), &[1]);
        b.insert(meta_key(meta::REVISION), &3i64.to_be_bytes());
        b.insert(meta_key(meta::APPLIED_INDEX), &2u64.to_be_bytes());
        b.insert(meta_key(meta::DIRTY_FLOOR), &1u64.to_be_bytes());
        b.insert(meta_key(meta::DIRTY_GEN), &2u64.to_be_bytes());
        b.insert(meta_key(meta::SNAPSHOT_INDEX), &1u64.to_be_bytes());
        for k in [&b"old"[..], b"new"] {
            b.insert(prefixed(DATA, k), rec.encode());
        }
        b.insert(prefixed(DIRTY, b"old"), &1u64.to_be_bytes());
        b.insert(prefixed(DIRTY, b"new"), &2u64.to_be_bytes());
        b.insert(prefixed(DIRTY, b"gone"), &2u64.to_be_bytes());
        b.insert(prefixed(COW, b"new"), &[0]);
        tree.apply_batch(b).unwrap();
        let store = KvStore::with_db(db).unwrap();
        assert_eq!(count(&store, COW), 0);
        assert_eq!(count(&store, DIRTY), 1);
        let delta = store.snapshot_delta(1).unwrap();
        let data: Vec<_> = delta
            .records
            .map(|r| r.unwrap())
            .filter(|r| r.key()[0] == DATA)
            .collect();
        assert_eq!(
            data,
            [
                SnapshotRecord::Delete {
                    key: Bytes::from_static(b"kgone")
                },
                SnapshotRecord::Put {
                    key: Bytes::from_static(b"knew"),
                    value: Bytes::from(rec.encode())
                },
            ]
        );
        drop(store);
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
