//! What every part of the store shares: the sled tree, the in-memory copy of the metadata
//! ([`State`]), the copy-on-write state of a running capture, the pins that hold physical
//! compaction back, the compactor's signal and the event sink.
//!
//! The types live here, below `store`, `snapshot` and `compact`, so that those modules can
//! all use them without importing one another.

use crate::cow::CowState;
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::layout::{be_u64, history_rev, meta, meta_key};
use crate::members::{Member, decode_members};
use crate::record::Rev;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The revision of a new, empty store. etcd reports revision 1 before any write and gives
/// the first write revision 2; so do we, so clients see the same numbers.
pub const INITIAL_REVISION: i64 = 1;

pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    pub(crate) state: RwLock<State>,
    /// The running capture's progress and pre-images (see [`crate::cow`]).
    pub(crate) cow: Mutex<CowState>,
    /// Compact revisions some reader needs physically intact (a capture, a hash), counted:
    /// physical compaction goes no further than the smallest. Registered under the state
    /// lock (read or write), so a pin is never below a compaction already under way.
    pub(crate) pins: Mutex<BTreeMap<i64, usize>>,
    /// Wakes the compactor thread and tells waiters how far it got (shared with the
    /// thread, which holds the store itself only while it works).
    pub(crate) compaction: Arc<CompactionSignal>,
    /// Where apply sends the events of each batch, when a hub listens.
    pub(crate) sink: RwLock<Option<Arc<dyn EventSink>>>,
    /// The leases in memory and, on the leader, their clocks (`crate::lease`). Updated by
    /// apply and restore while they hold the state lock (lock order: state, then leases).
    pub(crate) leases: Mutex<crate::lease::Lessor>,
    /// The applied auth state (`crate::auth`), replaced by apply and restore while they
    /// hold the state lock (lock order: state, then auth, then tokens).
    pub(crate) auth: RwLock<Arc<crate::auth::AuthState>>,
    /// This member's tokens (`crate::auth::token`).
    pub(crate) tokens: Mutex<crate::auth::token::TokenTable>,
    /// JWT keys when this member serves JWT tokens instead of simple ones
    /// (`crate::auth::jwt`).
    pub(crate) jwt: RwLock<Option<Arc<crate::auth::jwt::JwtTokens>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.compaction.flags.lock().stop = true;
        self.compaction.wake.notify_all();
    }
}

/// The compactor's wake-up flags and its published progress.
pub(crate) struct CompactionSignal {
    pub(crate) flags: Mutex<CompactorFlags>,
    pub(crate) wake: Condvar,
    /// The compact revision up to which physical compaction is done and durable (0 before
    /// any); `physical` compactions wait on it.
    pub(crate) durable: tokio::sync::watch::Sender<i64>,
    /// The compactor's pace in bytes of history read per second (0: unlimited).
    pub(crate) max_rate: std::sync::atomic::AtomicU64,
    /// Physical compaction has processed every history event below this revision. Read
    /// and written by the compactor; reset by a restore (under the state write lock).
    pub(crate) cursor: Mutex<Rev>,
    /// Bumped by every restore: a compaction step planned before it is dropped.
    pub(crate) epoch: std::sync::atomic::AtomicU64,
}

/// See [`CompactionSignal`].
#[derive(Debug, Default)]
pub(crate) struct CompactorFlags {
    /// Work may be waiting (a new compact revision, a restore, a pin released).
    pub(crate) kicked: bool,
    /// The store is gone: the thread ends.
    pub(crate) stop: bool,
    /// The thread was started.
    pub(crate) started: bool,
}

impl CompactionSignal {
    /// The signal of a store whose compactor stands at `cursor` with `compact_revision`:
    /// what is on disk when a store opens is durable.
    pub(crate) fn new(cursor: Rev, compact_revision: i64) -> Self {
        let done = compact_revision.min(cursor.main - 1).max(0);
        CompactionSignal {
            flags: Mutex::new(CompactorFlags::default()),
            wake: Condvar::new(),
            durable: tokio::sync::watch::Sender::new(done),
            max_rate: std::sync::atomic::AtomicU64::new(0),
            cursor: Mutex::new(cursor),
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Wakes the compactor (if it runs).
    pub(crate) fn kick(&self) {
        self.flags.lock().kicked = true;
        self.wake.notify_all();
    }
}

impl Shared {
    /// Pins `compact_revision` (see [`Shared::pins`]); call with the state lock held.
    pub(crate) fn pin(&self, compact_revision: i64) {
        *self.pins.lock().entry(compact_revision).or_default() += 1;
    }

    /// Releases a pin taken with [`pin`](Self::pin).
    pub(crate) fn unpin(&self, compact_revision: i64) {
        let mut pins = self.pins.lock();
        if let Some(n) = pins.get_mut(&compact_revision) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&compact_revision);
            }
        }
        drop(pins);
        self.compaction.kick();
    }
}

/// The in-memory copy of the metadata (the truth is in sled), plus capture bookkeeping.
pub(crate) struct State {
    pub(crate) applied_index: u64,
    pub(crate) applied_term: u64,
    pub(crate) revision: i64,
    /// Reads below it are refused. Invariant: `compact_revision <= revision`.
    pub(crate) compact_revision: i64,
    /// Where physical compaction stood when the store was opened (the live value is in
    /// [`CompactionSignal::cursor`]).
    pub(crate) compact_cursor: Rev,
    pub(crate) members: BTreeMap<u64, Member>,
    /// Writes are marked with this generation. Invariant: `dirty_floor < dirty_gen`.
    pub(crate) dirty_gen: u64,
    /// Dirty lists at or below this generation are in the last durable snapshot.
    pub(crate) dirty_floor: u64,
    pub(crate) snapshot_index: u64,
    /// The store revision at `snapshot_index`: a delta holds the history after it.
    pub(crate) snapshot_revision: i64,
    /// The capture being read, if any (at most one).
    pub(crate) capture: Option<ActiveCapture>,
    /// The number the next capture gets (its pre-images live under it).
    pub(crate) next_capture: u64,
    /// The latest capture, until it is reported durable.
    pub(crate) pending_durable: Option<PendingDurable>,
    pub(crate) restoring: bool,
    /// A batch failed to be written (e.g. a full disk): the tree may hold part of it, so
    /// nothing is read or applied any more in this process (the node stops; a restart
    /// applies the log again from the durable applied index). In memory only.
    pub(crate) failed: bool,
    /// The active alarms (the internal record, see `crate::internal`).
    pub(crate) alarms: crate::internal::Alarms,
}

impl State {
    /// Why the state cannot be read or applied to now, if it cannot.
    pub(crate) fn unusable(&self) -> Option<crate::Error> {
        if self.failed {
            Some(crate::Error::StoreFailed)
        } else if self.restoring {
            Some(crate::Error::RestoreIncomplete)
        } else {
            None
        }
    }
}

/// The latest capture, until [`KvStore::capture_durable`](crate::KvStore::capture_durable).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingDurable {
    pub(crate) index: u64,
    pub(crate) generation: u64,
    pub(crate) revision: i64,
}

/// A running copy-on-write capture.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActiveCapture {
    /// Dirty lists of generations in `(floor, generation]` are the capture's delta.
    pub(crate) floor: u64,
    pub(crate) generation: u64,
    /// Its number: its sled pre-images are under `b'c' ++ number`.
    pub(crate) number: u64,
    /// The revision it pinned (released when it ends): where physical compaction stood
    /// when it started, so nothing is removed while it reads.
    pub(crate) pinned: i64,
    /// An export ([`KvStore::capture_export`](crate::KvStore::capture_export)): a restore
    /// waits for it to end instead of failing.
    pub(crate) export: bool,
}

impl State {
    /// Reads the metadata from the tree.
    pub(crate) fn load(tree: &sled::Tree) -> Result<Self> {
        let u = |name: &[u8]| -> Result<u64> {
            match tree.get(meta_key(name))? {
                Some(v) => be_u64(&v).ok_or_else(|| {
                    Error::corrupt(format!("meta {}", String::from_utf8_lossy(name)))
                }),
                None => Ok(0),
            }
        };
        let members = match tree.get(meta_key(meta::MEMBERS))? {
            Some(v) => decode_members(&v)?.into_iter().map(|m| (m.id, m)).collect(),
            None => BTreeMap::new(),
        };
        let compact_cursor = match tree.get(meta_key(meta::COMPACT_CURSOR))? {
            Some(v) => {
                let mut k = vec![crate::layout::HISTORY];
                k.extend_from_slice(&v);
                let (main, sub) =
                    history_rev(&k).ok_or_else(|| Error::corrupt("meta compact_cursor"))?;
                Rev::new(main, sub)
            }
            None => Rev::default(),
        };
        let dirty_floor = u(meta::DIRTY_FLOOR)?;
        let dirty_gen = u(meta::DIRTY_GEN)?.max(dirty_floor + 1);
        Ok(State {
            applied_index: u(meta::APPLIED_INDEX)?,
            applied_term: u(meta::APPLIED_TERM)?,
            revision: match tree.get(meta_key(meta::REVISION))? {
                Some(v) => be_u64(&v).ok_or_else(|| Error::corrupt("meta revision"))? as i64,
                None => INITIAL_REVISION,
            },
            compact_revision: u(meta::COMPACT_REVISION)? as i64,
            compact_cursor,
            members,
            dirty_gen,
            dirty_floor,
            snapshot_index: u(meta::SNAPSHOT_INDEX)?,
            snapshot_revision: u(meta::SNAPSHOT_REVISION)? as i64,
            capture: None,
            next_capture: 0,
            pending_durable: None,
            restoring: tree.contains_key(meta_key(meta::RESTORING))?,
            failed: false,
            alarms: crate::internal::Alarms::load(tree)?,
        })
    }
}

/// The stored form of a compaction cursor (the 12 bytes after the space tag of
/// [`history_key`](crate::layout::history_key)).
pub(crate) fn encode_cursor(at: Rev) -> Vec<u8> {
    crate::layout::history_key(at.main, at.sub)[1..].to_vec()
}

/// Removes the entries of key space `space` whose value satisfies `doomed`, in chunks.
pub(crate) fn remove_space(
    tree: &sled::Tree,
    space: u8,
    mut doomed: impl FnMut(&[u8]) -> bool,
) -> Result<usize> {
    let mut removed = 0;
    let mut b = sled::Batch::default();
    let mut n = 0;
    for item in tree.scan_prefix([space]) {
        let (k, v) = item?;
        if doomed(&v) {
            b.remove(k);
            n += 1;
            if n == 10_000 {
                tree.apply_batch(std::mem::take(&mut b))?;
                removed += n;
                n = 0;
            }
        }
    }
    tree.apply_batch(b)?;
    Ok(removed + n)
}
