//! The public handle: opening a log, submitting writes, and reading durable state.
//!
//! [`Wal`]'s methods are spread over this file (opening, writes, the durable state) and two
//! submodules: `read` (entries and terms, and the [`LogRead`] implementation) and
//! `archive` (the segment files as the WAL archive sees them).

mod archive;
mod read;

use crate::error::{Error, Result};
use crate::format;
use crate::fs::{self, Fs, StdFs};
use crate::index::{Cache, Loc, entry_at};
use crate::recovery::{self, Recovered};
use crate::segment::{Preparer, SegFile};
use crate::settings::{Settings, SyncPolicy};
use crate::ticket::{Helper, Ticket, ticket};
use crate::writer::{
    Accepted, Active, Durability, Durable, Effect, Queue, Request, Shared, Writer,
};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use raft_core::{Entry, HardState, InitialState, LogRead, Membership, SnapshotMeta, StorageError};
use raft_metrics::wal as m;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A segmented write-ahead log holding a Raft log and hard state.
///
/// Writes ([`append`](Wal::append), [`write`](Wal::write),
/// [`save_hard_state`](Wal::save_hard_state), [`truncate_suffix`](Wal::truncate_suffix),
/// [`compact_prefix`](Wal::compact_prefix), [`install_snapshot`](Wal::install_snapshot),
/// [`sync`](Wal::sync)) are checked against everything accepted before them, queued, and
/// made durable in submission order by one writer thread with group commit; each returns a
/// [`Ticket`] that completes when its write is durable. Reads (the [`LogRead`] trait and the
/// inherent methods) see only durable writes.
///
/// All methods take `&self`; share the handle with an `Arc`. Dropping it (or
/// [`close`](Wal::close)) lets the writer finish what is queued and stops it.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    helper: Helper,
    /// Wakes the writer thread (for a deferred write someone waits for).
    kick: Helper,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish()
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, settings: Settings) -> Result<Self> {
        Self::open_with(Arc::new(StdFs), dir, settings)
    }

    /// Opens (or creates) the log in `dir` on the given file system: recovers every segment
    /// (cutting off a torn tail, refusing mid-log corruption with [`Error::Corrupt`]) and
    /// starts the writer.
    pub fn open_with(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, settings: Settings) -> Result<Self> {
        settings.validate()?;
        let dir: PathBuf = dir.as_ref().to_path_buf();
        if settings.sync_policy == SyncPolicy::Never {
            tracing::warn!(
                dir = %dir.display(),
                "write-ahead log opened with sync policy `never`: acknowledged writes can be \
                 lost on power failure, which breaks Raft's safety guarantees"
            );
        }
        let started = Instant::now();
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let Recovered {
            index,
            hard_state,
            membership,
            mut segments,
            tail,
            stale,
        } = recovery::recover(&*fs, &dir, recovery::WINDOW)?;
        let cache = Cache::new(settings.cache_bytes);

        let mut dir_dirty = false;
        for path in &stale {
            fs.remove_file(path)
                .map_err(|e| Error::io("remove", path, e))?;
            dir_dirty = true;
        }
        // Segments whose entries are all compacted (a deletion interrupted by a crash); an
        // archived log keeps them until the archive confirms them.
        if let Some(tail) = tail.as_ref().filter(|_| !settings.archive) {
            let keep = index
                .oldest_live_segment()
                .map_or(tail.seq, u64::from)
                .min(tail.seq);
            let doomed: Vec<u64> = segments.range(..keep).map(|(s, _)| *s).collect();
            for s in doomed {
                let seg = segments.remove(&s).expect("listed");
                fs.remove_file(&seg.path)
                    .map_err(|e| Error::io("remove", &seg.path, e))?;
                dir_dirty = true;
            }
        }
        if dir_dirty {
            fs.sync_dir(&dir)
                .map_err(|e| Error::io("fsync directory", &dir, e))?;
        }

        let last_index = index.last_index();
        let snapshot = index.snapshot.clone();
        let accepted = Accepted {
            first: index.first_index(),
            last: last_index,
        };
        let shared = Arc::new(Shared {
            fs: fs.clone(),
            dir: dir.clone(),
            settings: settings.clone(),
            durable: RwLock::new(Durable {
                index,
                cache,
                hard_state,
                membership: membership.clone(),
                segments,
                active_end: tail.as_ref().map_or(0, |t| t.pos),
            }),
            queue: Mutex::new(Queue {
                requests: VecDeque::new(),
                accepted,
                failed: None,
                closed: false,
                dirty_since: None,
            }),
            queue_cv: Condvar::new(),
            writer: Mutex::new(None),
            fsync_seconds: metrics::histogram!(m::FSYNC_SECONDS),
            timed: std::sync::atomic::AtomicBool::new(
                tail.as_ref()
                    .is_none_or(|t| t.version >= format::TIME_VERSION),
            ),
            archive_floor: std::sync::atomic::AtomicU64::new(0),
        });
        let preparer = Preparer::start(fs.clone(), dir.clone(), settings.segment_size)?;
        let mut buf = Vec::new();
        let active = match tail {
            Some(t) => {
                if t.dirty_end > t.pos {
                    // Zero the torn tail so no stale bytes sit after the next record.
                    let zeros = vec![0u8; (t.dirty_end - t.pos) as usize];
                    t.seg
                        .file
                        .write_at(&zeros, t.pos)
                        .map_err(|e| Error::io("write", &t.seg.path, e))?;
                    t.seg
                        .file
                        .sync_data()
                        .map_err(|e| Error::io("fsync", &t.seg.path, e))?;
                }
                Active {
                    seq: t.seq,
                    seg: t.seg,
                    pos: t.pos,
                    start: t.pos,
                    capacity: t.capacity,
                    dirty: false,
                    framed: t.version >= 2,
                }
            }
            None => {
                let prepared = preparer.take()?;
                let (active, _) = crate::writer::start_segment(
                    &shared,
                    prepared,
                    0,
                    last_index + 1,
                    (&hard_state, &snapshot, &membership),
                    &[],
                    &mut buf,
                )?;
                {
                    let mut d = shared.durable.write();
                    d.segments.insert(0, active.seg.clone());
                    d.active_end = active.pos;
                }
                active
            }
        };
        metrics::gauge!(m::SEGMENTS).set(shared.durable.read().segments.len() as f64);
        let writer = Writer {
            shared: shared.clone(),
            preparer,
            active,
            hard_state,
            snapshot,
            membership,
            last_index,
            buf,
            first_dirty: None,
        };
        *shared.writer.lock() = Some(writer);
        let span = tracing::info_span!("raft_wal_writer", dir = %dir.display());
        let guard = shared.clone();
        let handle = std::thread::Builder::new()
            .name("raft-wal-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    span.in_scope(|| crate::writer::background(&guard))
                });
                if std::panic::catch_unwind(run).is_err() {
                    // Fail everything queued and every later request instead of hanging.
                    tracing::error!("write-ahead log writer thread panicked");
                    let drained: Vec<Request> = {
                        let mut q = guard.queue.lock();
                        q.failed = Some(Error::WriterPanicked);
                        q.requests.drain(..).collect()
                    };
                    for r in drained {
                        r.done.complete(Err(Error::WriterPanicked));
                    }
                }
            })
            .map_err(|e| Error::io("spawn writer thread", &dir, e))?;
        let elapsed = started.elapsed();
        metrics::histogram!(m::RECOVERY_SECONDS).record(elapsed.as_secs_f64());
        tracing::info!(
            dir = %shared.dir.display(),
            first_index = accepted.first,
            last_index,
            elapsed_ms = elapsed.as_millis() as u64,
            "opened write-ahead log"
        );
        let weak = Arc::downgrade(&shared);
        let helper: Helper = Arc::new(move || {
            if let Some(shared) = weak.upgrade() {
                crate::writer::help(&shared);
            }
        });
        let weak = Arc::downgrade(&shared);
        let kick: Helper = Arc::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.queue_cv.notify_one();
            }
        });
        Ok(Self {
            shared,
            writer: Mutex::new(Some(handle)),
            helper,
            kick,
        })
    }

    /// Appends entries. They must be consecutive; the first may be at most one past the
    /// last accepted entry, and when it is lower every accepted entry from its index on is
    /// replaced (the conflicting tail a new leader overwrites).
    pub fn append(&self, entries: Vec<Entry>) -> Result<Ticket> {
        self.write(entries, None)
    }

    /// Persists a hard state.
    pub fn save_hard_state(&self, hard_state: HardState) -> Result<Ticket> {
        self.write(Vec::new(), Some(hard_state))
    }

    /// Appends entries and persists a hard state in one record batch (what one Raft `Ready`
    /// asks for). The ticket completes when both are durable. A request whose records add
    /// up to more than [`format::MAX_REQUEST_BYTES`] is refused with
    /// [`Error::RequestTooLarge`] before anything is encoded or queued.
    pub fn write(&self, entries: Vec<Entry>, hard_state: Option<HardState>) -> Result<Ticket> {
        let bytes = entries
            .iter()
            .map(|e| format::entry_record_len(e.data.len()) as u64)
            .sum::<u64>()
            + 48;
        if bytes > format::MAX_REQUEST_BYTES as u64 {
            return Err(Error::RequestTooLarge {
                bytes,
                max: format::MAX_REQUEST_BYTES,
            });
        }
        let mut buf = Vec::with_capacity(bytes as usize + format::TIME_RECORD_LEN);
        let mut effects = Vec::with_capacity(entries.len() + 1);
        let first = entries.first().map(|e| e.index);
        if let Some(first) = first
            && self.shared.timed.load(std::sync::atomic::Ordering::Relaxed)
        {
            // When these entries were written, for WAL archives (point-in-time restore):
            // one record per write, so every segment tells the times of its own entries.
            format::put_time(&mut buf, first, unix_ms());
        }
        let mut expect = first.unwrap_or(0);
        for e in entries {
            if e.index != expect {
                return Err(Error::NotContiguous {
                    expected: expect,
                    got: e.index,
                });
            }
            if e.data.len() > format::MAX_PAYLOAD - 17 {
                return Err(Error::RecordTooLarge(e.data.len()));
            }
            expect += 1;
            let offset = format::put_entry(&mut buf, e.index, e.term, e.kind, &e.data);
            effects.push(Effect::Entry {
                index: e.index,
                term: e.term,
                kind: e.kind,
                offset,
                data: e.data,
            });
        }
        if let Some(hs) = hard_state {
            format::put_hard_state(&mut buf, &hs);
            effects.push(Effect::HardState(hs));
        }
        self.submit(buf, effects, Durability::Policy, false, |acc| {
            if let Some(first) = first {
                if first < acc.first {
                    return Err(Error::Compacted(first));
                }
                if first > acc.last + 1 {
                    return Err(Error::NotContiguous {
                        expected: acc.last + 1,
                        got: first,
                    });
                }
                acc.last = expect - 1;
            }
            Ok(true)
        })
    }

    /// Records a hard state that may be lost in a crash without harm, typically one that only
    /// advances the commit index (Raft learns the commit index again from the leader).
    ///
    /// It never causes an fsync of its own, nor a batch: it is written with the next batch
    /// another write starts (or, when the ticket is waited for, with one of its own) and
    /// becomes durable with the next synced write. The ticket completes once it is written, and
    /// [`hard_state`](Self::hard_state) reports it from then on. A hard state that changes
    /// the term or the vote must go through [`save_hard_state`](Self::save_hard_state).
    pub fn save_hard_state_deferred(&self, hard_state: HardState) -> Result<Ticket> {
        let mut buf = Vec::with_capacity(48);
        format::put_hard_state(&mut buf, &hard_state);
        self.submit(
            buf,
            vec![Effect::HardState(hard_state)],
            Durability::Deferred,
            false,
            |_| Ok(true),
        )
    }

    /// Removes every entry at `from` and after (durably, with a truncation mark).
    pub fn truncate_suffix(&self, from: u64) -> Result<Ticket> {
        let mut buf = Vec::new();
        format::put_truncate(&mut buf, from);
        self.submit(
            buf,
            vec![Effect::Truncate(from)],
            Durability::Policy,
            false,
            |acc| {
                if from < acc.first {
                    return Err(Error::Compacted(from));
                }
                if from > acc.last + 1 {
                    return Err(Error::Unavailable(from));
                }
                acc.last = from - 1;
                Ok(true)
            },
        )
    }

    /// Drops every entry up to `snapshot.index`, which must be in the log (after a snapshot
    /// of the state machine was taken there), and records the snapshot's metadata. Segments
    /// left holding only compacted entries are deleted. Compacting to an index already
    /// compacted does nothing.
    pub fn compact_prefix(&self, snapshot: SnapshotMeta) -> Result<Ticket> {
        let index = snapshot.index;
        let mut buf = Vec::new();
        format::put_snapshot(&mut buf, &snapshot, false);
        let effects = vec![Effect::Snapshot {
            meta: snapshot,
            clears: false,
        }];
        self.submit(buf, effects, Durability::Policy, true, |acc| {
            if index < acc.first {
                // Already compacted: queue nothing but an ordering point.
                return Ok(false);
            }
            if index > acc.last {
                return Err(Error::Unavailable(index));
            }
            acc.first = index + 1;
            Ok(true)
        })
    }

    /// Replaces the whole log with a snapshot received from a leader: every entry is dropped,
    /// the log continues at `snapshot.index + 1`, and the snapshot's membership becomes the
    /// membership in force. (raft-core hands out a snapshot only when the log does not
    /// already hold its last entry, so nothing after it is worth keeping.) The hard state is
    /// not touched: save the one `Ready` carries.
    pub fn install_snapshot(&self, snapshot: SnapshotMeta) -> Result<Ticket> {
        let index = snapshot.index;
        let mut buf = Vec::new();
        format::put_snapshot(&mut buf, &snapshot, true);
        let effects = vec![Effect::Snapshot {
            meta: snapshot,
            clears: true,
        }];
        self.submit(buf, effects, Durability::Policy, true, |acc| {
            if index + 1 < acc.first {
                return Err(Error::Compacted(index));
            }
            acc.first = index + 1;
            acc.last = index;
            Ok(true)
        })
    }

    /// Records the membership of a new cluster in an empty log, as the configuration of
    /// "snapshot" index 0 (what [`LogRead::snapshot_meta`] reports before any snapshot) and as
    /// the membership in force. Fails with [`Error::NotEmpty`] once the log holds entries or
    /// a snapshot.
    pub fn bootstrap(&self, membership: Membership) -> Result<Ticket> {
        let meta = SnapshotMeta {
            index: 0,
            term: 0,
            membership: membership.clone(),
        };
        let mut buf = Vec::new();
        format::put_snapshot(&mut buf, &meta, false);
        format::put_membership(&mut buf, &membership);
        let effects = vec![
            Effect::Snapshot {
                meta,
                clears: false,
            },
            Effect::Membership(membership),
        ];
        self.submit(buf, effects, Durability::Policy, false, |acc| {
            if acc.first != 1 || acc.last != 0 {
                return Err(Error::NotEmpty);
            }
            Ok(true)
        })
    }

    /// Persists the membership in force at the applied index (after a configuration change
    /// was applied); [`LogRead::initial_state`] reports the last one. Installing a snapshot
    /// sets it to the snapshot's membership.
    pub fn set_membership(&self, membership: Membership) -> Result<Ticket> {
        let mut buf = Vec::new();
        format::put_membership(&mut buf, &membership);
        self.submit(
            buf,
            vec![Effect::Membership(membership)],
            Durability::Policy,
            false,
            |_| Ok(true),
        )
    }

    /// A ticket that completes once everything submitted before it is synced to disk, whatever
    /// the sync policy.
    pub fn sync(&self) -> Result<Ticket> {
        self.submit(Vec::new(), Vec::new(), Durability::Force, false, |_| {
            Ok(true)
        })
    }

    /// A ticket that completes once everything submitted before it is written (readable
    /// through [`read_segment`](Self::read_segment) and the other readers), without an
    /// fsync of its own: it writes out the deferred records (commit-only hard states)
    /// that wait for the next batch. For a reader of the files, such as the WAL archiver,
    /// that must see the newest commit index.
    pub fn write_deferred(&self) -> Result<Ticket> {
        self.submit(Vec::new(), Vec::new(), Durability::Deferred, false, |_| {
            Ok(true)
        })
    }

    /// Checks a request against everything accepted before it and queues it. `check` updates
    /// the accepted state, or returns `Ok(false)` to queue the request without its records
    /// (a no-op that still completes in order).
    fn submit(
        &self,
        mut buf: Vec<u8>,
        mut effects: Vec<Effect>,
        durability: Durability,
        mut compacts: bool,
        check: impl FnOnce(&mut Accepted) -> Result<bool>,
    ) -> Result<Ticket> {
        let (t, done) = ticket();
        let mut q = self.shared.queue.lock();
        if let Some(e) = &q.failed {
            return Err(e.clone());
        }
        if q.closed {
            return Err(Error::Closed);
        }
        let mut acc = q.accepted;
        if !check(&mut acc)? {
            buf.clear();
            effects.clear();
            compacts = false;
        }
        q.accepted = acc;
        q.requests.push_back(Request {
            buf,
            effects,
            done,
            durability,
            compacts,
            submitted: Instant::now(),
        });
        drop(q);
        let t = t.with_helper(self.helper.clone());
        if durability == Durability::Deferred {
            // Nothing waits for it (a commit-only hard state, once per put on a leader):
            // it rides with the next batch instead of waking the writer for a batch of its
            // own. Whoever does wait for it wakes the writer through the ticket.
            return Ok(t.with_kick(self.kick.clone()));
        }
        self.shared.queue_cv.notify_one();
        Ok(t)
    }

    /// Lets the writer finish every queued write, then stops it. Returns the error that
    /// stopped the writer, if one did.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        self.shared.queue.lock().closed = true;
        self.shared.queue_cv.notify_all();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        // The writer state refers back to `shared`; dropping it here breaks that cycle (and
        // stops the segment preparer).
        let writer = self.shared.writer.lock().take();
        drop(writer);
        match &self.shared.queue.lock().failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The error that stopped the writer, if any.
    pub fn failure(&self) -> Option<Error> {
        self.shared.queue.lock().failed.clone()
    }

    /// The first durable index (one past the snapshot).
    pub fn first_index(&self) -> u64 {
        self.shared.durable.read().index.first_index()
    }

    /// The last durable index (the snapshot's index when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.shared.durable.read().index.last_index()
    }

    /// The last durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.shared.durable.read().hard_state
    }

    /// The durable membership in force (see [`Wal::set_membership`]).
    pub fn membership(&self) -> Membership {
        self.shared.durable.read().membership.clone()
    }

    /// The durable snapshot mark (index 0 when there is none).
    pub fn snapshot(&self) -> SnapshotMeta {
        self.shared.durable.read().index.snapshot.clone()
    }

    /// How many segment files the log holds.
    pub fn segment_count(&self) -> usize {
        self.shared.durable.read().segments.len()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Milliseconds since the Unix epoch by the system clock (0 if it is set before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
