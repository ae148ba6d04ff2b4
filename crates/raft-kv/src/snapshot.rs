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
//! # Where the code is
//! This file has the records, the capture types and [`KvStore`]'s capture methods;
//! `records` reads a capture's records (data, pre-images, dirty lists) and `tidy` removes
//! what ended captures leave behind. Restore is in [`crate::restore`].

mod records;
#[cfg(test)]
mod tests;
mod tidy;

use tidy::tidy;

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
        if let Some(e) = st.unusable() {
            return Err(e);
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
