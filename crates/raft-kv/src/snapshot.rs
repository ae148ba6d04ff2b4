//! Snapshot support: copy-on-write captures (full or delta) that never stop apply, and
//! restore of a base plus deltas — the state machine's side of `raft-snapshot`.
//!
//! # Records
//! A snapshot is a stream of [`SnapshotRecord`]s in strictly ascending key order, each key
//! at most once. The record keys are the store's own sled keys (see [`KvStore`]):
//! - `b'h' ++ revision` -> a history event, for every event up to the capture's revision
//!   that physical compaction had not removed;
//! - `b'i' ++ name` -> every internal record;
//! - `b'k' ++ user key` -> the key's current entry (live version or tombstone);
//! - then three metadata records, always present (in full snapshots and deltas):
//!   `b"mcompact_revision"` (i64 BE), `b"mmembers"` (the member list), `b"mrevision"`
//!   (i64 BE).
//!
//! A delta holds the history events after the parent snapshot's revision, every internal
//! record, a `Put` for each key whose current entry was written since the parent snapshot,
//! and the metadata records. History that physical compaction removed since the parent is
//! not in a delta: whoever restores a snapshot runs physical compaction from the start of
//! its history (it may hold events the snapshot's source had removed; they are below the
//! compact revision and go at once). Physical compaction does not remove anything while a
//! capture runs (the capture pins where it stands), so the history read is the history at
//! the capture point, and everything a read at or above the compact revision needs is in
//! the snapshot.
//!
//! # Copy-on-write
//! [`KvStore::capture`] freezes the state at the applied index N and starts a new dirty
//! generation. While the capture's records are alive, the first write of a key after N
//! keeps the key's value at N (or its absence) as a pre-image. The value is the one apply
//! read anyway to build the new record, so copy-on-write adds no read. Pre-images are kept
//! in memory (a map from user key to record, behind a mutex shared with the reader) up to
//! a byte budget ([`crate::DEFAULT_PRE_IMAGE_BUDGET`] by default); past it, in sled under
//! the capture's number in the `b'c'` key space, in the same sled batch as the write. Keys
//! the records have already passed need no pre-image (the reader publishes how far it
//! got), so late in a capture writes cost what they cost without one. Dropping the records
//! ends the capture; its pre-images are dropped (the sled ones removed afterwards).
//!
//! The reader takes no lock that apply waits for beyond that mutex, which each side holds
//! for a short map operation. For each chunk of keys it reads the live data from sled
//! first, then the pre-images of the same key interval (the in-memory ones, then the sled
//! ones if any pre-image of the capture went to sled), and a pre-image wins. That is
//! enough:
//! - apply stores a write's pre-image (in the map, or in the sled batch of the write)
//!   before that batch is in sled, and the first write of a key after N makes it; so a
//!   write after N that lands before the data read left a pre-image that the later
//!   pre-image reads see (the map under the mutex, which apply released before writing its
//!   batch; sled because the batch is atomic; the flag saying that sled holds pre-images
//!   too is set under the mutex before such a batch is written);
//! - a write that lands after the data read left the data at its value at N.
//!
//! The reader publishes its progress only after both reads, and removes the in-memory
//! pre-images it has passed in the same step, so a write never skips a pre-image the reader
//! still needs. Losing the in-memory pre-images in a crash loses nothing: only the running
//! capture reads them, and a capture does not survive a restart (the sled ones are removed
//! when the store is opened).
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
//!
//! Size: past the house's ~700 lines because capture and restore share the record format
//! and its checks; splitting capture from restore is issue 24's house work.

use crate::cow::{COW_PRESENT, PreImage, Progress, Taken};
use crate::error::{Error, Result};
use crate::layout::{
    COW, DATA, DIRTY, INTERNAL, cow_key, decode_key_list, history_key, meta, meta_key, numbered,
    prefixed,
};
use crate::members::{Member, encode_members};
use crate::state::{ActiveCapture, PendingDurable, Shared};
use crate::store::KvStore;
use prost::bytes::Bytes;
use std::cmp::Ordering;
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
    /// A delta's keys (sorted, unique) from its dirty lists, read at the first chunk, and
    /// how many of them were read.
    dirty: Option<(Vec<Vec<u8>>, usize)>,
    buf: VecDeque<SnapshotRecord>,
    /// The next history key to read (`None` once the history is read), and the end.
    history: Option<Vec<u8>>,
    history_end: Vec<u8>,
    /// The internal records, read when the capture started.
    internal: Vec<SnapshotRecord>,
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
        self.capture_with(kind, true)
    }

    /// A full capture that leaves the delta tracking of Raft snapshots alone: no new dirty
    /// generation and nothing to report durable (for `Maintenance.Snapshot`, see
    /// [`crate::export`]). Still one capture at a time ([`Error::CaptureInProgress`]).
    pub fn capture_export(&self) -> Result<Capture> {
        self.capture_with(CaptureKind::Full, false)
    }

    /// `track`: a Raft snapshot capture (starts a dirty generation and waits to be reported
    /// durable); else an export.
    fn capture_with(&self, kind: CaptureKind, track: bool) -> Result<Capture> {
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
            // Physical compaction stops where it stands (the events below its cursor are
            // processed), so the history read is exactly the history at N.
            pinned: st
                .compact_revision
                .min(shared.compaction.cursor.lock().main - 1),
            export: !track,
        };
        // Internal records are few and written only by apply, which waits for this lock.
        let mut internal = Vec::new();
        for item in shared.tree.scan_prefix([INTERNAL]) {
            let (k, v) = item?;
            internal.push(SnapshotRecord::Put {
                key: Bytes::copy_from_slice(&k),
                value: Bytes::copy_from_slice(&v),
            });
        }
        let history_from = match kind {
            CaptureKind::Full => 0,
            CaptureKind::Delta => st.snapshot_revision + 1,
        };
        st.next_capture += 1;
        let old = shared.cow.lock().reset();
        drop(old);
        if track {
            st.dirty_gen += 1;
            shared
                .tree
                .insert(meta_key(meta::DIRTY_GEN), &st.dirty_gen.to_be_bytes())?;
        }
        // Released when the records are dropped.
        shared.pin(cap.pinned);
        st.capture = Some(cap);
        if track {
            st.pending_durable = Some(PendingDurable {
                index: st.applied_index,
                generation: cap.generation,
                revision: st.revision,
            });
        }
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
                history: Some(history_key(history_from, 0).to_vec()),
                history_end: history_key(st.revision + 1, 0).to_vec(),
                internal,
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
        let pending = match st.pending_durable {
            Some(p) if p.index == index => p,
            _ => return Err(Error::UnknownCapture(index)),
        };
        st.pending_durable = None;
        st.dirty_floor = pending.generation;
        st.snapshot_index = index;
        st.snapshot_revision = pending.revision;
        let mut b = sled::Batch::default();
        b.insert(
            meta_key(meta::DIRTY_FLOOR),
            &pending.generation.to_be_bytes(),
        );
        b.insert(meta_key(meta::DIRTY_GEN), &st.dirty_gen.to_be_bytes());
        b.insert(meta_key(meta::SNAPSHOT_INDEX), &index.to_be_bytes());
        b.insert(
            meta_key(meta::SNAPSHOT_REVISION),
            &pending.revision.to_be_bytes(),
        );
        shared.tree.apply_batch(b)?;
        drop(st);
        tracing::info!(index, "snapshot durable; delta tracking restarts");
        tidy(shared)
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
            if self.history.is_some() {
                if let Err(e) = self.fill_history() {
                    self.failed = true;
                    return Some(Err(e));
                }
                continue;
            }
            if !self.internal.is_empty() {
                self.buf.extend(self.internal.drain(..));
                continue;
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
    /// Reads the next up to [`CHUNK`] history events. No lock: apply only adds events above
    /// the capture's revision, and physical compaction waits at the capture's pin.
    fn fill_history(&mut self) -> Result<()> {
        let Some(from) = self.history.take() else {
            return Ok(());
        };
        let mut last = None;
        for item in self
            .shared
            .tree
            .range(from..self.history_end.clone())
            .take(CHUNK)
        {
            let (k, v) = item?;
            self.buf.push_back(SnapshotRecord::Put {
                key: Bytes::copy_from_slice(&k),
                value: Bytes::copy_from_slice(&v),
            });
            last = Some(k);
        }
        if self.buf.len() == CHUNK
            && let Some(k) = last
        {
            // The smallest key after `k`.
            let mut next = k.to_vec();
            next.push(0);
            self.history = Some(next);
        }
        Ok(())
    }

    /// Reads the next chunk (no lock apply waits for: see the module documentation).
    fn fill(&mut self) -> Result<()> {
        match self.kind {
            CaptureKind::Full => self.fill_full()?,
            CaptureKind::Delta => self.fill_delta()?,
        }
        // Published only after the chunk's data and pre-images were both read.
        let progress = match &self.cursor {
            _ if self.data_done => Progress::Done,
            Some(c) => Progress::After(c.clone()),
            None => return Ok(()),
        };
        let passed = self.shared.cow.lock().advance(progress);
        drop(passed);
        Ok(())
    }

    /// The pre-images of the user keys in `(cursor, upto]` (`None`: to the end), in key
    /// order: the in-memory ones, and the sled ones when the capture has any (a key has its
    /// pre-image in one place only).
    fn pre_images(&self, upto: Option<&[u8]>) -> Result<Taken> {
        let (mut taken, any_spilled) = self
            .shared
            .cow
            .lock()
            .pre_images(self.cursor.as_deref(), upto);
        if any_spilled {
            let number = self.cap.number;
            let lo = match &self.cursor {
                Some(k) => Bound::Excluded(cow_key(number, k)),
                None => Bound::Included(numbered(COW, number)),
            };
            let hi = match upto {
                Some(k) => Bound::Included(cow_key(number, k)),
                None => Bound::Excluded(numbered(COW, number + 1)),
            };
            let before = taken.len();
            for item in self.shared.tree.range((lo, hi)) {
                let (k, v) = item?;
                taken.push((k[9..].to_vec(), decode_pre_image(&v)?));
            }
            if taken.len() > before && before > 0 {
                taken.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            }
        }
        Ok(taken)
    }

    /// The record of `user_key` from its pre-image: `None` when the key was absent at the
    /// capture point.
    fn from_pre_image(user_key: &[u8], pre: PreImage) -> Option<SnapshotRecord> {
        pre.map(|raw| SnapshotRecord::Put {
            key: Bytes::from(prefixed(DATA, user_key)),
            value: Bytes::copy_from_slice(&raw),
        })
    }

    /// The next up to [`CHUNK`] data keys, then the pre-images of the same key interval.
    fn fill_full(&mut self) -> Result<()> {
        let tree = &self.shared.tree;
        let lo = match &self.cursor {
            Some(k) => Bound::Excluded(prefixed(DATA, k)),
            None => Bound::Included(vec![DATA]),
        };
        let mut data = Vec::with_capacity(CHUNK);
        for item in tree
            .range((lo, Bound::Excluded(vec![DATA + 1])))
            .take(CHUNK)
        {
            data.push(item?);
        }
        let last = (data.len() == CHUNK).then(|| data[CHUNK - 1].0[1..].to_vec());
        let pre = self.pre_images(last.as_deref())?;
        // Merge by user key; a pre-image wins over the live data.
        let mut data = data.into_iter().peekable();
        let mut pre = pre.into_iter().peekable();
        loop {
            let order = match (
                data.peek().map(|(k, _)| &k[1..]),
                pre.peek().map(|(k, _)| k.as_slice()),
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
                let (k, v) = pre.next().expect("peeked");
                self.buf.extend(Self::from_pre_image(&k, v));
            }
        }
        match last {
            Some(k) => self.cursor = Some(k),
            None => self.data_done = true,
        }
        Ok(())
    }

    /// The next up to [`CHUNK`] keys of the delta: the live data of each, then the
    /// pre-images of the same key interval (a pre-image wins); a key absent at the capture
    /// point is a `Delete`.
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
        let (keys, at) = self.dirty.take().expect("loaded above");
        let end = (at + CHUNK).min(keys.len());
        let chunk = &keys[at..end];
        let mut live = Vec::with_capacity(chunk.len());
        for key in chunk {
            live.push(tree.get(prefixed(DATA, key))?);
        }
        let done = end == keys.len();
        let pre = self.pre_images((!done).then(|| keys[end - 1].as_slice()))?;
        let mut pre = pre.into_iter().peekable();
        for (key, live) in chunk.iter().zip(live) {
            // The interval's pre-images may include keys outside the delta: skip them.
            while pre.next_if(|(k, _)| k < key).is_some() {}
            let rec = match pre.next_if(|(k, _)| k == key) {
                Some((_, old)) => Self::from_pre_image(key, old),
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
        if done {
            self.data_done = true;
        } else {
            self.cursor = Some(keys[end - 1].clone());
        }
        self.dirty = Some((keys, end));
        Ok(())
    }
}

/// A sled pre-image (see `KvStore`'s layout) as the record at the capture point.
fn decode_pre_image(v: &[u8]) -> Result<PreImage> {
    let (flags, raw) = v
        .split_first()
        .ok_or_else(|| Error::corrupt("empty cow entry"))?;
    Ok((flags & COW_PRESENT != 0).then(|| sled::IVec::from(raw)))
}

impl Drop for CaptureRecords {
    fn drop(&mut self) {
        let old = {
            let mut st = self.shared.state.write();
            st.capture = None;
            self.shared.cow.lock().reset()
        };
        drop(old);
        self.shared.unpin(self.cap.pinned);
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
}
