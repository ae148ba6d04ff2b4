//! What a state machine offers to build and restore snapshots: [`SnapshotSource`],
//! [`RestoreSink`] and [`SnapshotCapture`], plus an in-memory implementation of all three.

use crate::error::Result;
use crate::format::Record;
use crate::info::{SnapshotInfo, SnapshotKind};
use bytes::Bytes;
use raft_core::SnapshotMeta;
use std::collections::{BTreeMap, BTreeSet};

/// The records of one snapshot, produced by the state machine at a consistent point.
///
/// For a full snapshot: every (key, value-record) pair, as [`Record::Put`]. For a delta: the
/// records created or changed since the parent snapshot ([`Record::Put`]) and the keys
/// deleted since it ([`Record::Delete`]). Keys must come in strictly ascending byte order
/// (sled iterates in that order; a delta's key set can be kept in a `BTreeSet`), with each
/// key at most once.
pub trait SnapshotSource {
    /// The next record, or `None` when the snapshot is complete.
    fn next_record(&mut self) -> Result<Option<Record>>;
}

impl<S: SnapshotSource + ?Sized> SnapshotSource for Box<S> {
    fn next_record(&mut self) -> Result<Option<Record>> {
        (**self).next_record()
    }
}

/// Adapts any iterator of records into a [`SnapshotSource`].
pub struct IterSource<I>(pub I);

impl<I: Iterator<Item = Result<Record>>> SnapshotSource for IterSource<I> {
    fn next_record(&mut self) -> Result<Option<Record>> {
        self.0.next().transpose()
    }
}

/// Receives a chain being restored: the base's records after a `reset`, then each delta's.
///
/// Call order: `reset(base)`, puts of the base, then for each delta `begin_delta(delta)`,
/// its puts and deletes, and finally `finish(tip)`. Records within one snapshot come in
/// ascending key order. Nothing is called before the whole chain has been verified, so a
/// damaged chain never touches the sink; an error from the sink aborts the restore.
pub trait RestoreSink {
    /// Discards all current state; the base snapshot `base` follows.
    fn reset(&mut self, base: &SnapshotInfo) -> Result<()>;
    /// A delta on top of what was restored so far follows.
    fn begin_delta(&mut self, _delta: &SnapshotInfo) -> Result<()> {
        Ok(())
    }
    /// Sets `key` to `value`.
    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()>;
    /// Removes `key` (absent keys are not an error).
    fn delete(&mut self, key: Bytes) -> Result<()>;
    /// The chain is fully restored; the state is that at `tip.index`.
    fn finish(&mut self, tip: &SnapshotInfo) -> Result<()>;
}

/// A consistent, frozen view of the state machine at one applied index, taken without
/// stopping apply (copy-on-write): writes after the capture do not show in `source`.
pub struct Capture {
    /// What the snapshot covers (applied index, its term, membership).
    pub meta: SnapshotMeta,
    /// The records: everything for a full snapshot, changes since the last durable
    /// snapshot for a delta.
    pub source: Box<dyn SnapshotSource + Send>,
}

/// A state machine that can be snapshotted copy-on-write, fully or incrementally.
///
/// The state machine tracks the keys changed and deleted since the last snapshot that
/// became durable. [`capture`](Self::capture) freezes the state at the current applied
/// index; while the snapshot is being written, the first overwrite of a not-yet-captured
/// key must preserve its value at that index for the capture. When the snapshot built from
/// a capture is durable, [`capture_durable`](Self::capture_durable) lets the state machine
/// forget the changes up to that index; if building fails, the capture is dropped and the
/// changes stay tracked (a later delta still contains them).
pub trait SnapshotCapture {
    /// Freezes the state now. For `SnapshotKind::Delta` the source yields the changes
    /// since the last durable snapshot.
    fn capture(&self, kind: SnapshotKind) -> Result<Capture>;
    /// The snapshot `info` built from the latest capture is durable.
    fn capture_durable(&self, info: &SnapshotInfo) -> Result<()>;
}

/// A `BTreeMap` key-value state: a [`RestoreSink`], and a source of full snapshots and of
/// deltas (by tracking changed keys). Used by tests and benchmarks; also the reference
/// model of what a state machine has to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    /// The data.
    pub data: BTreeMap<Bytes, Bytes>,
    /// Keys changed or deleted since the last `mark_snapshotted`.
    pub dirty: BTreeSet<Bytes>,
    /// Index of the last restored snapshot (set by `finish`).
    pub restored_index: Option<u64>,
}

impl MemState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a key (tracked for the next delta).
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        let key = key.into();
        self.dirty.insert(key.clone());
        self.data.insert(key, value.into());
    }

    /// Deletes a key (tracked for the next delta).
    pub fn delete(&mut self, key: &[u8]) {
        let key = Bytes::copy_from_slice(key);
        self.data.remove(&key);
        self.dirty.insert(key);
    }

    /// Every record, as a full snapshot source (a cheap copy of the map: `Bytes` clones).
    pub fn full_source(&self) -> IterSource<std::vec::IntoIter<Result<Record>>> {
        let v: Vec<_> = self
            .data
            .iter()
            .map(|(k, v)| {
                Ok(Record::Put {
                    key: k.clone(),
                    value: v.clone(),
                })
            })
            .collect();
        IterSource(v.into_iter())
    }

    /// The changes since the last `mark_snapshotted`, as a delta source.
    pub fn delta_source(&self) -> IterSource<std::vec::IntoIter<Result<Record>>> {
        let v: Vec<_> = self
            .dirty
            .iter()
            .map(|k| {
                Ok(match self.data.get(k) {
                    Some(v) => Record::Put {
                        key: k.clone(),
                        value: v.clone(),
                    },
                    None => Record::Delete { key: k.clone() },
                })
            })
            .collect();
        IterSource(v.into_iter())
    }

    /// Forgets the tracked changes (a snapshot including them is durable).
    pub fn mark_snapshotted(&mut self) {
        self.dirty.clear();
    }
}

impl RestoreSink for MemState {
    fn reset(&mut self, _base: &SnapshotInfo) -> Result<()> {
        self.data.clear();
        self.dirty.clear();
        self.restored_index = None;
        Ok(())
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        self.data.insert(key, value);
        Ok(())
    }

    fn delete(&mut self, key: Bytes) -> Result<()> {
        self.data.remove(&key);
        Ok(())
    }

    fn finish(&mut self, tip: &SnapshotInfo) -> Result<()> {
        self.restored_index = Some(tip.index);
        Ok(())
    }
}

/// Feeds one record into a sink.
pub(crate) fn apply_record(sink: &mut dyn RestoreSink, r: Record) -> Result<()> {
    match r {
        Record::Put { key, value } => sink.put(key, value),
        Record::Delete { key } => sink.delete(key),
    }
}
