//! Group commit: whoever holds the writer lock (the writer thread, or a caller blocked in
//! `Ticket::wait` while no batch is in flight) drains every queued request, writes them with
//! one `write` and one `fdatasync`, publishes them to readers and completes their tickets.
//!
//! Batching is adaptive: while one batch is being synced, new requests pile up in the queue
//! and form the next batch, so a lone request waits for exactly one `fsync` and heavy load
//! gets large batches. Any write or `fsync` error stops the writer for good (fail-stop):
//! after `EIO` Linux may already have dropped the dirty pages, so retrying could report data
//! durable that never reached the disk.

use crate::error::{Error, Result};
use crate::format::{self, SegmentHeader};
use crate::fs::Fs;
use crate::index::{Cache, Loc, LogIndex};
use crate::segment::{Prepared, Preparer, SegFile, segment_name};
use crate::settings::{Settings, SyncPolicy};
use crate::ticket::Completer;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use raft_core::{Entry, EntryKind, HardState, Membership, SnapshotMeta};
use raft_metrics::wal as m;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What a durable record changes in the in-memory state.
pub(crate) enum Effect {
    /// An entry; `offset` is where its data sits within the request's buffer.
    Entry {
        index: u64,
        term: u64,
        kind: EntryKind,
        offset: usize,
        data: Bytes,
    },
    /// Entries from this index on are removed.
    Truncate(u64),
    /// A snapshot mark.
    Snapshot { meta: SnapshotMeta, clears: bool },
    /// A new hard state.
    HardState(HardState),
    /// The membership in force at the applied index.
    Membership(Membership),
}

/// How a request wants its records synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// As the sync policy says.
    Policy,
    /// Synced even when the policy would not.
    Force,
    /// Never causes an fsync: written with its batch, durable with the next synced one.
    Deferred,
}

/// One submitted write: its encoded records and what they change.
pub(crate) struct Request {
    /// The encoded records (aligned, concatenable with other requests' buffers).
    pub buf: Vec<u8>,
    /// The records' effects, in order.
    pub effects: Vec<Effect>,
    /// Completes the caller's ticket.
    pub done: Completer,
    /// Whether the request needs an fsync of its own.
    pub durability: Durability,
    /// The request moves the snapshot mark, so segments may become obsolete.
    pub compacts: bool,
    /// When it was submitted (for the append-latency metric).
    pub submitted: Instant,
}

/// The log as accepted so far (queued or durable): what new requests are checked against.
///
/// Invariant: `first <= last + 1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepted {
    /// First index after the newest accepted snapshot mark.
    pub first: u64,
    /// Last accepted index.
    pub last: u64,
}

/// Requests waiting for the writer.
pub(crate) struct Queue {
    pub requests: VecDeque<Request>,
    pub accepted: Accepted,
    /// Set once the writer stopped after an error; every later request fails with it.
    pub failed: Option<Error>,
    pub closed: bool,
    /// When the oldest unsynced write was made (kept for `SyncPolicy::Interval` only).
    pub dirty_since: Option<Instant>,
}

/// What readers see: only durable state.
pub(crate) struct Durable {
    pub index: LogIndex,
    pub cache: Cache,
    pub hard_state: HardState,
    pub membership: Membership,
    pub segments: BTreeMap<u64, SegFile>,
    /// Where the written records of the newest segment end (what readers may see of it).
    pub active_end: u64,
}

/// State shared by the handle, the readers and the writer thread.
pub(crate) struct Shared {
    pub fs: Arc<dyn Fs>,
    pub dir: PathBuf,
    pub settings: Settings,
    pub durable: RwLock<Durable>,
    pub queue: Mutex<Queue>,
    pub queue_cv: Condvar,
    /// The writer's state; whoever holds the lock runs the next batch. `None` once closed.
    pub writer: Mutex<Option<Writer>>,
    /// The `fsync` latency histogram, looked up once when the log is opened.
    pub fsync_seconds: metrics::Histogram,
    /// Writes carry time records: the segment being written is of format version 3 or
    /// later. Only ever goes from false to true (every segment this build starts is).
    pub timed: std::sync::atomic::AtomicBool,
    /// With `Settings::archive`: segments below this number may be deleted once obsolete
    /// (the archive holds them); the others are kept.
    pub archive_floor: std::sync::atomic::AtomicU64,
}

/// A segment a batch started: its sequence number and file.
type NewSegment = (u64, SegFile);

/// The segment being written.
pub(crate) struct Active {
    pub seq: u64,
    pub seg: SegFile,
    /// Offset of the next record.
    pub pos: u64,
    /// Offset just past the segment's opening records.
    pub start: u64,
    pub capacity: u64,
    /// Written but not synced.
    pub dirty: bool,
    /// Batches go in batch frames (a segment of format version 2 or later; older segments
    /// get bare records, so builds that read only their version still read them whole).
    pub framed: bool,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub preparer: Preparer,
    pub active: Active,
    /// Hard state as of the last written record.
    pub hard_state: HardState,
    /// Snapshot mark as of the last written record.
    pub snapshot: SnapshotMeta,
    /// Membership as of the last written record.
    pub membership: Membership,
    /// Last index as of the last written record.
    pub last_index: u64,
    pub buf: Vec<u8>,
    pub first_dirty: Option<Instant>,
}

/// The background writer thread: waits for requests and runs batches until the log is
/// closed or the writer failed. A caller blocked in [`crate::Ticket::wait`] may run a batch
/// itself when the writer is idle ([`help`]), which saves two thread hand-offs for a lone
/// request; the writer lock keeps batches in order either way.
pub(crate) fn background(shared: &Arc<Shared>) {
    let settings = &shared.settings;
    loop {
        let mut q = shared.queue.lock();
        loop {
            if q.failed.is_some() {
                return;
            }
            if !q.requests.is_empty() {
                break;
            }
            if q.closed {
                drop(q);
                if settings.sync_policy != SyncPolicy::Never
                    && let Some(w) = shared.writer.lock().as_mut()
                    && w.active.dirty
                    && let Err(e) = w.sync_active()
                {
                    w.fail(e, Vec::new());
                }
                return;
            }
            match (settings.sync_policy, q.dirty_since) {
                (SyncPolicy::Interval(d), Some(t)) => {
                    let deadline = t + d;
                    if Instant::now() >= deadline {
                        drop(q);
                        if let Some(w) = shared.writer.lock().as_mut()
                            && w.active.dirty
                            && let Err(e) = w.sync_active()
                        {
                            w.fail(e, Vec::new());
                            return;
                        }
                        q = shared.queue.lock();
                    } else {
                        shared.queue_cv.wait_until(&mut q, deadline);
                    }
                }
                _ => shared.queue_cv.wait(&mut q),
            }
        }
        drop(q);
        if let Some(w) = shared.writer.lock().as_mut() {
            w.run_once();
        }
    }
}

/// Runs one batch on the calling thread if no one else is writing (see [`background`]).
pub(crate) fn help(shared: &Shared) {
    if let Some(mut w) = shared.writer.try_lock()
        && let Some(w) = w.as_mut()
    {
        w.run_once();
    }
}

impl Writer {
    /// Takes one batch from the queue, writes, syncs and publishes it, and completes its
    /// tickets. On an error the writer stops for good.
    pub fn run_once(&mut self) {
        let Some(batch) = self.take_batch() else {
            return;
        };
        match self.commit(&batch) {
            Ok((starts, new_segment)) => {
                if let Err((e, batch)) = self.publish(batch, &starts, new_segment) {
                    self.fail(e, batch);
                }
            }
            Err(e) => self.fail(e, batch),
        }
    }

    /// Takes as many queued requests as one batch may hold; `None` when there are none or
    /// the writer failed.
    fn take_batch(&mut self) -> Option<Vec<Request>> {
        let shared = self.shared.clone();
        let settings = &shared.settings;
        let mut q = shared.queue.lock();
        if q.failed.is_some() || q.requests.is_empty() {
            return None;
        }
        if !settings.commit_delay.is_zero() {
            let deadline = Instant::now() + settings.commit_delay;
            while q.requests.iter().map(|r| r.buf.len()).sum::<usize>() < settings.max_batch_bytes
                && !q.closed
                && !shared.queue_cv.wait_until(&mut q, deadline).timed_out()
            {}
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(r) = q.requests.front() {
            if !batch.is_empty() && bytes + r.buf.len() > settings.max_batch_bytes {
                break;
            }
            bytes += r.buf.len();
            batch.push(q.requests.pop_front().expect("non-empty"));
        }
        Some(batch)
    }

    /// Writes and (as the policy says) syncs one batch. Returns the offset of each request's
    /// records in the active segment and the segment itself when it is a new one.
    fn commit(&mut self, batch: &[Request]) -> Result<(Vec<u64>, Option<NewSegment>)> {
        let total: usize = batch.iter().map(|r| r.buf.len()).sum();
        let force_sync = batch.iter().any(|r| r.durability == Durability::Force);
        let wants_sync = batch.iter().any(|r| r.durability != Durability::Deferred);
        self.buf.clear();
        let offsets = format::put_frames(
            &mut self.buf,
            batch.iter().map(|r| &r.buf[..]),
            self.active.framed,
        );
        let roll = self.active.pos + self.buf.len() as u64 > self.active.capacity
            && self.active.pos > self.active.start;
        let mut new_segment = None;
        let starts;
        if roll {
            if self.active.dirty {
                self.sync_active()?;
            }
            let prepared = self.preparer.take()?;
            let (active, offsets) = start_segment(
                &self.shared,
                prepared,
                self.active.seq + 1,
                self.last_index + 1,
                (&self.hard_state, &self.snapshot, &self.membership),
                batch,
                &mut self.buf,
            )?;
            starts = offsets;
            new_segment = Some((active.seq, active.seg.clone()));
            self.active = active;
            // Every segment this build starts is of the current version.
            self.shared
                .timed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            let pos = self.active.pos;
            starts = offsets.iter().map(|&o| pos + o as u64).collect();
            if !self.buf.is_empty() {
                let seg = &self.active.seg;
                seg.file
                    .write_at(&self.buf, pos)
                    .map_err(|e| Error::io("write", &seg.path, e))?;
                self.active.pos += self.buf.len() as u64;
                if self.active.pos > self.active.capacity / 2 {
                    self.preparer.request();
                }
                self.mark_dirty();
            }
            let sync = self.active.dirty
                && match self.shared.settings.sync_policy {
                    SyncPolicy::Always => wants_sync,
                    SyncPolicy::Interval(d) => {
                        force_sync || self.first_dirty.is_some_and(|t| t.elapsed() >= d)
                    }
                    SyncPolicy::Never => force_sync,
                };
            if sync {
                self.sync_active()?;
            }
        }
        metrics::histogram!(m::BATCH_BYTES).record(total as f64);
        Ok((starts, new_segment))
    }

    fn mark_dirty(&mut self) {
        self.active.dirty = true;
        if self.first_dirty.is_none() {
            let now = Instant::now();
            self.first_dirty = Some(now);
            if matches!(self.shared.settings.sync_policy, SyncPolicy::Interval(_)) {
                self.shared.queue.lock().dirty_since = Some(now);
            }
        }
    }

    /// `fdatasync`s the active segment.
    pub(crate) fn sync_active(&mut self) -> Result<()> {
        let t = Instant::now();
        let seg = &self.active.seg;
        seg.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &seg.path, e))?;
        self.shared.fsync_seconds.record(t.elapsed().as_secs_f64());
        self.active.dirty = false;
        if self.first_dirty.take().is_some()
            && matches!(self.shared.settings.sync_policy, SyncPolicy::Interval(_))
        {
            self.shared.queue.lock().dirty_since = None;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        let dir = &self.shared.dir;
        self.shared
            .fs
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))
    }

    /// Applies a written batch to the readers' state, deletes segments a compaction made
    /// obsolete, and completes the batch's tickets.
    fn publish(
        &mut self,
        batch: Vec<Request>,
        starts: &[u64],
        new_segment: Option<NewSegment>,
    ) -> std::result::Result<(), (Error, Vec<Request>)> {
        let seq = self.active.seq as u32;
        let mut entries = 0u64;
        let mut compacts = false;
        {
            let mut d = self.shared.durable.write();
            let d = &mut *d;
            if let Some((s, seg)) = new_segment {
                d.segments.insert(s, seg);
                metrics::gauge!(m::SEGMENTS).set(d.segments.len() as f64);
            }
            d.active_end = self.active.pos;
            for (r, &at) in batch.iter().zip(starts) {
                compacts |= r.compacts;
                for e in &r.effects {
                    match e {
                        Effect::Entry {
                            index,
                            term,
                            kind,
                            offset,
                            data,
                        } => {
                            entries += 1;
                            let loc = Loc {
                                term: *term,
                                seq,
                                offset: (at + *offset as u64) as u32,
                                len: data.len() as u32,
                                kind: *kind,
                            };
                            d.index.push(*index, loc);
                            d.cache.push(Entry {
                                index: *index,
                                term: *term,
                                kind: *kind,
                                data: data.clone(),
                            });
                            self.last_index = *index;
                        }
                        Effect::Truncate(from) => {
                            d.index.truncate(*from);
                            d.cache.truncate(*from);
                            self.last_index = self.last_index.min(from - 1);
                        }
                        Effect::Snapshot { meta, clears } => {
                            d.index.apply_snapshot(meta.clone(), *clears);
                            if *clears {
                                d.cache.clear();
                                self.last_index = meta.index;
                                d.membership = meta.membership.clone();
                                self.membership = meta.membership.clone();
                            } else {
                                d.cache.compact(meta.index);
                                self.last_index = self.last_index.max(meta.index);
                            }
                            self.snapshot = meta.clone();
                        }
                        Effect::HardState(hs) => {
                            d.hard_state = *hs;
                            self.hard_state = *hs;
                        }
                        Effect::Membership(m) => {
                            d.membership = m.clone();
                            self.membership = m.clone();
                        }
                    }
                }
            }
        }
        metrics::histogram!(m::BATCH_ENTRIES).record(entries as f64);
        if compacts && let Err(e) = self.delete_obsolete() {
            return Err((e, batch));
        }
        let now = Instant::now();
        let append_seconds = metrics::histogram!(m::APPEND_SECONDS);
        for r in batch {
            append_seconds.record(now.duration_since(r.submitted).as_secs_f64());
            r.done.complete(Ok(()));
        }
        Ok(())
    }

    /// Deletes segments that hold no live entry and are older than the active one.
    fn delete_obsolete(&mut self) -> Result<()> {
        let doomed = {
            let mut d = self.shared.durable.write();
            let mut keep = d
                .index
                .oldest_live_segment()
                .map_or(self.active.seq, u64::from)
                .min(self.active.seq);
            if self.shared.settings.archive {
                keep = keep.min(
                    self.shared
                        .archive_floor
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
            }
            let doomed: Vec<(u64, SegFile)> = d
                .segments
                .range(..keep)
                .map(|(s, f)| (*s, f.clone()))
                .collect();
            for (s, _) in &doomed {
                d.segments.remove(s);
            }
            metrics::gauge!(m::SEGMENTS).set(d.segments.len() as f64);
            doomed
        };
        if doomed.is_empty() {
            return Ok(());
        }
        // The snapshot mark that makes these segments obsolete must be durable before their
        // deletion can be: under `SyncPolicy::Interval` or `Never` the batch was not synced,
        // and a power loss after the directory sync below would leave a log whose first
        // entries are gone without the mark that says so (the log would refuse to open).
        if self.active.dirty {
            self.sync_active()?;
        }
        for (_, seg) in &doomed {
            self.shared
                .fs
                .remove_file(&seg.path)
                .map_err(|e| Error::io("remove", &seg.path, e))?;
        }
        self.sync_dir()?;
        tracing::debug!(count = doomed.len(), "deleted compacted WAL segments");
        Ok(())
    }

    /// Stops for good: the in-flight batch, every queued and every later request fail with
    /// `err`.
    pub(crate) fn fail(&mut self, err: Error, in_flight: Vec<Request>) {
        tracing::error!(error = %err, "write-ahead log writer failed; stopping (fail-stop)");
        metrics::counter!(m::WRITER_FAILURES).increment(1);
        let err = Error::WriterFailed(Arc::new(err));
        let drained: Vec<Request> = {
            let mut q = self.shared.queue.lock();
            q.failed = Some(err.clone());
            q.requests.drain(..).collect()
        };
        for r in in_flight.into_iter().chain(drained) {
            r.done.complete(Err(err.clone()));
        }
    }
}

/// Starts segment `seq` in a prepared file: writes its header, the opening records (the
/// current hard state, snapshot mark and membership) and the batch (in batch frames), syncs,
/// renames the file to its final name and syncs the directory. Returns the segment and the
/// offset of each request's records.
pub(crate) fn start_segment(
    shared: &Shared,
    prepared: Prepared,
    seq: u64,
    first_index: u64,
    (hard_state, snapshot, membership): (&HardState, &SnapshotMeta, &Membership),
    batch: &[Request],
    buf: &mut Vec<u8>,
) -> Result<(Active, Vec<u64>)> {
    let mut opening = Vec::new();
    format::put_hard_state(&mut opening, hard_state);
    format::put_snapshot(&mut opening, snapshot, false);
    format::put_membership(&mut opening, membership);
    buf.clear();
    buf.extend_from_slice(
        &SegmentHeader {
            version: format::VERSION,
            seq,
            first_index,
        }
        .encode(),
    );
    let pieces = std::iter::once(&opening[..]).chain(batch.iter().map(|r| &r.buf[..]));
    let offsets = format::put_frames(buf, pieces, true);
    let start = (offsets[0] + opening.len()) as u64;
    let tmp = &prepared.path;
    prepared
        .file
        .write_at(buf, 0)
        .map_err(|e| Error::io("write", tmp, e))?;
    let t = Instant::now();
    prepared
        .file
        .sync_data()
        .map_err(|e| Error::io("fsync", tmp, e))?;
    shared.fsync_seconds.record(t.elapsed().as_secs_f64());
    let path = shared.dir.join(segment_name(seq, first_index));
    shared
        .fs
        .rename(tmp, &path)
        .map_err(|e| Error::io("rename", tmp, e))?;
    shared
        .fs
        .sync_dir(&shared.dir)
        .map_err(|e| Error::io("fsync directory", &shared.dir, e))?;
    tracing::debug!(seq, first_index, path = %path.display(), "started a new WAL segment");
    let pos = buf.len() as u64;
    Ok((
        Active {
            seq,
            seg: SegFile {
                path,
                file: prepared.file,
            },
            pos,
            start,
            capacity: prepared.capacity.max(pos),
            dirty: false,
            framed: true,
        },
        offsets[1..].iter().map(|&o| o as u64).collect(),
    ))
}
