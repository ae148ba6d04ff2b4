//! The log storage the runtime writes through ([`LogStore`]) and its implementation over
//! `raft-log`'s write-ahead log ([`WalStore`]), or in memory ([`MemStore`]).

use crate::error::{BoxError, Error, Result};
use raft_core::{
    Entry, EntryKind, HardState, InitialState, LogRead, MemLog, Membership, SnapshotMeta,
    StorageError, confchange,
};
use raft_log::Wal;
use std::sync::{Arc, Mutex};

/// Called once a submitted write is durable (and visible through [`LogRead`]) or failed.
/// It may run on any thread (e.g. the log's writer thread): keep it short.
pub type Done = Box<dyn FnOnce(std::result::Result<(), BoxError>) + Send + 'static>;

/// What one `Ready` asks to persist, in this order.
#[derive(Debug, Default)]
pub struct LogWrite {
    /// Replace the log by this snapshot first (a follower installing a leader's snapshot).
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append; when the first one's index is at or below the last one written,
    /// the log is cut there first.
    pub entries: Vec<Entry>,
    /// The hard state to save.
    pub hard_state: Option<HardState>,
}

/// A durable Raft log the runtime writes asynchronously and the core reads.
///
/// Writes complete in submission order. [`LogRead`] must reflect a write only once it is
/// durable (the core keeps what is in flight in memory).
pub trait LogStore: LogRead + Send + 'static {
    /// Prepares the store before the node starts: `applied` is the state machine's applied
    /// index (the membership returned by `initial_state` must be the one in force there);
    /// `bootstrap` is the membership of a new cluster, to record when the log is empty.
    /// May block.
    fn prepare(&mut self, applied: u64, bootstrap: Option<&Membership>) -> Result<()>;

    /// Submits a write without waiting; `done` runs when it is durable.
    fn write(&mut self, write: LogWrite, done: Done) -> Result<()>;

    /// Records a hard state that differs from the last one written only by its commit
    /// index. It need not become durable before anything else happens (a crash may lose it:
    /// a node learns the commit index again), so it returns at once and nothing waits for
    /// it; it must still be ordered after every earlier write.
    fn save_commit(&mut self, hard_state: HardState) -> Result<()>;

    /// Drops entries up to `snapshot.index` (a state-machine snapshot covers them).
    fn compact(&mut self, snapshot: SnapshotMeta, done: Done) -> Result<()>;

    /// Records the membership in force at the applied index (after a change took effect).
    fn set_membership(&mut self, membership: Membership);

    /// Makes everything submitted durable; `done` runs when it is.
    fn flush(&mut self, done: Done) -> Result<()>;
}

/// A [`LogStore`] over a shared [`raft_log::Wal`].
///
/// The WAL records the snapshot's membership; the membership at the applied index is
/// recomputed at start by replaying the configuration changes logged after the snapshot.
#[derive(Debug, Clone)]
pub struct WalStore {
    wal: Arc<Wal>,
    membership: Membership,
}

impl WalStore {
    /// A store over `wal`.
    pub fn new(wal: Arc<Wal>) -> Self {
        let membership = wal.snapshot().membership;
        Self { wal, membership }
    }

    /// The underlying log.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }
}

/// The membership in force at `applied`: the snapshot's, changed by every configuration
/// change logged after it up to `applied` (refused changes are skipped, as the core does).
fn membership_at(log: &impl LogRead, snap: SnapshotMeta, applied: u64) -> Result<Membership> {
    let storage = |e: StorageError| Error::Storage(Box::new(e));
    let mut membership = snap.membership;
    let last = log.last_index().map_err(storage)?;
    if applied > last {
        return Err(Error::Storage(
            format!("the state machine applied {applied}, beyond the log's last index {last}")
                .into(),
        ));
    }
    let mut next = snap.index + 1;
    while next <= applied {
        let batch = log
            .entries(next, applied + 1, Some(16 << 20))
            .map_err(storage)?;
        for e in &batch {
            if e.kind == EntryKind::ConfChange
                && let Ok(cc) = confchange::decode(&e.data)
                && let Ok(m) = confchange::apply(&membership, &cc)
            {
                membership = m;
            }
        }
        next += batch.len().max(1) as u64;
    }
    Ok(membership)
}

fn on_ticket(t: raft_log::Result<raft_log::Ticket>, done: Done) -> Result<()> {
    let t = t?;
    t.on_complete(move |r| done(r.map_err(|e| Box::new(e) as BoxError)));
    Ok(())
}

fn fail(e: Error) -> StorageError {
    StorageError::Failed(Box::new(e))
}

impl LogStore for WalStore {
    fn prepare(&mut self, applied: u64, bootstrap: Option<&Membership>) -> Result<()> {
        let empty = self.wal.last_index() == 0
            && self.wal.hard_state() == HardState::default()
            && self.wal.snapshot().membership == Membership::default();
        if empty && let Some(m) = bootstrap {
            let meta = SnapshotMeta {
                index: 0,
                term: 0,
                membership: m.clone(),
            };
            self.wal.install_snapshot(meta)?.wait()?;
        }
        let snap = self.wal.snapshot();
        self.membership = membership_at(&*self.wal, snap, applied)?;
        Ok(())
    }

    fn write(&mut self, write: LogWrite, done: Done) -> Result<()> {
        if let Some(s) = write.snapshot {
            self.membership = s.membership.clone();
            // Ordered before the entries by the WAL's queue; the last ticket covers both.
            drop(self.wal.install_snapshot(s)?);
        }
        on_ticket(self.wal.write(write.entries, write.hard_state), done)
    }

    fn save_commit(&mut self, hard_state: HardState) -> Result<()> {
        // Written with the next batch, synced by the next write that needs an fsync.
        drop(self.wal.save_hard_state_deferred(hard_state)?);
        Ok(())
    }

    fn compact(&mut self, snapshot: SnapshotMeta, done: Done) -> Result<()> {
        on_ticket(self.wal.compact_prefix(snapshot), done)
    }

    fn set_membership(&mut self, membership: Membership) {
        self.membership = membership;
    }

    fn flush(&mut self, done: Done) -> Result<()> {
        on_ticket(self.wal.sync(), done)
    }
}

impl LogRead for WalStore {
    fn initial_state(&self) -> std::result::Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.wal.hard_state(),
            membership: self.membership.clone(),
        })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        LogRead::entries(&*self.wal, lo, hi, max_bytes)
    }

    fn term(&self, index: u64) -> std::result::Result<u64, StorageError> {
        LogRead::term(&*self.wal, index)
    }

    fn first_index(&self) -> std::result::Result<u64, StorageError> {
        Ok(self.wal.first_index())
    }

    fn last_index(&self) -> std::result::Result<u64, StorageError> {
        Ok(self.wal.last_index())
    }

    fn snapshot_meta(&self) -> std::result::Result<SnapshotMeta, StorageError> {
        if let Some(e) = self.wal.failure() {
            return Err(fail(e.into()));
        }
        Ok(self.wal.snapshot())
    }
}

/// A [`LogStore`] kept in memory (a [`MemLog`]): every write is "durable" at once. For
/// tests and examples; clones share the log, so a test can restart a node over it.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    log: Arc<Mutex<MemLog>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LogStore for MemStore {
    fn prepare(&mut self, applied: u64, bootstrap: Option<&Membership>) -> Result<()> {
        let empty = {
            let l = self.lock();
            l.all_entries().is_empty()
                && l.hard_state() == HardState::default()
                && l.snapshot_meta()
                    .is_ok_and(|s| s == SnapshotMeta::default())
        };
        if empty && let Some(m) = bootstrap {
            *self.lock() = MemLog::new(m.clone());
        }
        let snap = self
            .snapshot_meta()
            .map_err(|e| Error::Storage(Box::new(e)))?;
        let m = membership_at(self, snap, applied)?;
        self.lock().set_membership(m);
        Ok(())
    }

    fn write(&mut self, write: LogWrite, done: Done) -> Result<()> {
        {
            let mut l = self.lock();
            if let Some(s) = write.snapshot {
                l.apply_snapshot(s);
            }
            l.append(&write.entries);
            if let Some(hs) = write.hard_state {
                l.set_hard_state(hs);
            }
        }
        done(Ok(()));
        Ok(())
    }

    fn save_commit(&mut self, hard_state: HardState) -> Result<()> {
        self.lock().set_hard_state(hard_state);
        Ok(())
    }

    fn compact(&mut self, snapshot: SnapshotMeta, done: Done) -> Result<()> {
        let r = self.lock().compact(snapshot.index, snapshot.membership);
        done(r.map_err(|e| Box::new(e) as BoxError));
        Ok(())
    }

    fn set_membership(&mut self, membership: Membership) {
        self.lock().set_membership(membership);
    }

    fn flush(&mut self, done: Done) -> Result<()> {
        done(Ok(()));
        Ok(())
    }
}

impl LogRead for MemStore {
    fn initial_state(&self) -> std::result::Result<InitialState, StorageError> {
        self.lock().initial_state()
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        self.lock().entries(lo, hi, max_bytes)
    }

    fn term(&self, index: u64) -> std::result::Result<u64, StorageError> {
        self.lock().term(index)
    }

    fn first_index(&self) -> std::result::Result<u64, StorageError> {
        self.lock().first_index()
    }

    fn last_index(&self) -> std::result::Result<u64, StorageError> {
        self.lock().last_index()
    }

    fn snapshot_meta(&self) -> std::result::Result<SnapshotMeta, StorageError> {
        self.lock().snapshot_meta()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{ConfChange, ConfChangeOp, ConfChangeTransition};

    fn entries() -> Vec<Entry> {
        let cc = ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddLearner(4)],
        };
        vec![
            Entry {
                index: 1,
                term: 1,
                ..Entry::default()
            },
            Entry {
                index: 2,
                term: 1,
                kind: EntryKind::ConfChange,
                data: confchange::encode(&cc),
            },
            Entry {
                index: 3,
                term: 1,
                ..Entry::default()
            },
        ]
    }

    /// Writes the entries, then checks the membership recomputed for each applied index.
    fn check(store: &mut impl LogStore) {
        let boot = Membership::with_voters([1, 2, 3]);
        store.prepare(0, Some(&boot)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let write = LogWrite {
            entries: entries(),
            ..LogWrite::default()
        };
        store
            .write(write, Box::new(move |r| tx.send(r.is_ok()).unwrap()))
            .unwrap();
        assert!(rx.recv().unwrap());
        store.prepare(1, Some(&boot)).unwrap();
        let m = store.initial_state().unwrap().membership;
        assert_eq!(m, boot, "the change at 2 is not applied at 1");
        store.prepare(3, None).unwrap();
        let m = store.initial_state().unwrap().membership;
        assert!(m.learners.contains(&4) && m.voters.len() == 3);
        assert!(store.prepare(4, None).is_err(), "applied beyond the log");
    }

    #[test]
    fn restart_membership_replays_logged_changes() {
        check(&mut MemStore::new());
        let dir = tempfile::tempdir().unwrap();
        let settings = raft_log::Settings {
            segment_size: 1 << 16,
            ..raft_log::Settings::default()
        };
        let wal = Arc::new(Wal::open(dir.path(), settings).unwrap());
        check(&mut WalStore::new(wal));
    }
}
