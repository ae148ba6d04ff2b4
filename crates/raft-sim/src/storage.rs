//! Simulated storage under each node: a durable log, and writes in flight to it.
//!
//! A node hands the simulator writes (from a `Ready`); each becomes durable after a seeded
//! disk delay, in submission order, like one WAL behind one writer. What the node's
//! `LogRead` sees ([`SharedLog`]) is only what is durable. A crash drops every write still
//! in flight, except that a *torn* crash may keep a prefix of them (the WAL records that
//! reached the platter before power went), down to part of one batch of entries: records
//! are kept in order (snapshot, entries, hard state within a write), so a kept prefix is a
//! state the node could really recover from. Restart rebuilds the node from the durable log.
//!
//! The durable log follows the [`LogRead`] invariants: entries are consecutive from
//! `first_index()`, the snapshot covers everything before.

use raft_core::{Entry, HardState, InitialState, LogRead, Membership, SnapshotMeta, StorageError};
use std::cell::{Ref, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::Rc;

/// One record of the simulated write-ahead log.
#[derive(Clone, Debug)]
pub enum WalRecord<S> {
    /// Install a snapshot (with the state machine's data): replaces the log up to its index.
    Snapshot(SnapshotMeta, S),
    /// Append entries, truncating any conflicting suffix first.
    Entries(Vec<Entry>),
    /// Replace the hard state.
    HardState(HardState),
}

/// What is on the simulated disk and survives crashes.
///
/// Invariant: `entries[k].index == snapshot.index + 1 + k`.
#[derive(Clone, Debug)]
pub struct DurableLog<S> {
    /// The last durable hard state.
    pub hard_state: HardState,
    /// The latest durable snapshot (index 0: none).
    pub snapshot: SnapshotMeta,
    /// The state machine data of `snapshot`.
    pub snapshot_data: S,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
    /// The membership as of the applied index a node restarts with, when its state machine
    /// resumes from a durable state past the snapshot (`None`: from the snapshot).
    pub applied_membership: Option<Membership>,
}

impl<S: Clone> DurableLog<S> {
    /// A fresh disk: nothing but the initial membership (as a snapshot at index 0).
    pub fn new(membership: Membership, empty: S) -> Self {
        Self {
            hard_state: HardState::default(),
            snapshot: SnapshotMeta {
                index: 0,
                term: 0,
                membership,
            },
            snapshot_data: empty,
            entries: Vec::new(),
            applied_membership: None,
        }
    }

    /// The last durable index.
    pub fn last(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    /// The durable entry at `index`, if present (not compacted, not past the end).
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index - self.snapshot.index - 1) as usize)
    }

    /// The durable term at `index` (the snapshot's term at its index).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            Some(self.snapshot.term)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    /// Applies one record.
    pub fn apply(&mut self, rec: WalRecord<S>) {
        match rec {
            WalRecord::Snapshot(meta, data) => {
                if meta.index <= self.snapshot.index {
                    // Older than what the disk already holds (a compaction overtook it).
                    return;
                }
                // Keep the entries after the snapshot when they agree with it.
                let keep = self.term_at(meta.index) == Some(meta.term) && meta.index <= self.last();
                if keep {
                    let drop = (meta.index - self.snapshot.index) as usize;
                    self.entries.drain(..drop);
                } else {
                    self.entries.clear();
                }
                self.snapshot = meta;
                self.snapshot_data = data;
            }
            WalRecord::Entries(ents) => self.append(&ents),
            WalRecord::HardState(hs) => self.hard_state = hs,
        }
    }

    fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        // Skip entries already covered by the snapshot.
        let skip = self.snapshot.index.saturating_sub(first.index - 1) as usize;
        let ents = &ents[skip.min(ents.len())..];
        let Some(first) = ents.first() else {
            return;
        };
        assert!(
            first.index <= self.last() + 1,
            "simulated disk: append at {} leaves a gap after {}",
            first.index,
            self.last()
        );
        let keep = (first.index - self.snapshot.index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// Drops entries up to `index` (which must be covered by a snapshot at `index` already
    /// written; the driver writes the snapshot first).
    pub fn compact_to(&mut self, meta: SnapshotMeta, data: S) {
        if meta.index <= self.snapshot.index || meta.index > self.last() {
            return;
        }
        self.apply(WalRecord::Snapshot(meta, data));
    }

    /// The membership as of the applied index a restarted node starts with
    /// (`InitialState::membership`): the state machine's when it resumes past the
    /// snapshot, else the snapshot's. raft-core replays the changes logged after it.
    pub fn membership(&self) -> Membership {
        self.applied_membership
            .clone()
            .unwrap_or_else(|| self.snapshot.membership.clone())
    }
}

/// The durable log shared between the simulator (which writes it) and a node's `RawNode`
/// (which reads it through [`LogRead`]).
#[derive(Debug)]
pub struct SharedLog<S>(Rc<RefCell<DurableLog<S>>>);

impl<S> Clone for SharedLog<S> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<S: Clone> SharedLog<S> {
    /// Wraps a durable log.
    pub fn new(log: DurableLog<S>) -> Self {
        Self(Rc::new(RefCell::new(log)))
    }

    /// Reads the durable log.
    pub fn borrow(&self) -> Ref<'_, DurableLog<S>> {
        self.0.borrow()
    }

    /// Writes the durable log.
    pub fn borrow_mut(&self) -> RefMut<'_, DurableLog<S>> {
        self.0.borrow_mut()
    }
}

impl<S: Clone> LogRead for SharedLog<S> {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        let log = self.0.borrow();
        Ok(InitialState {
            hard_state: log.hard_state,
            membership: log.membership(),
        })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = self.0.borrow();
        if lo <= log.snapshot.index {
            return Err(StorageError::Compacted(lo));
        }
        if hi > log.last() + 1 {
            return Err(StorageError::Unavailable(hi - 1));
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for i in lo..hi {
            let e = log.entry(i).ok_or(StorageError::Unavailable(i))?;
            bytes += e.size();
            if max_bytes.is_some_and(|max| !out.is_empty() && bytes > max) {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let log = self.0.borrow();
        if index < log.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        log.term_at(index).ok_or(StorageError::Unavailable(index))
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.0.borrow().snapshot.index + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.0.borrow().last())
    }

    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.0.borrow().snapshot.clone())
    }
}

/// A write submitted to the disk and not yet durable.
#[derive(Clone, Debug)]
pub struct PendingWrite<S> {
    /// The driver's tag for it (to tell the node what became durable).
    pub id: u64,
    /// When it becomes durable. Invariant: non-decreasing along the queue.
    pub done_at: u64,
    /// Its records, in order.
    pub records: Vec<WalRecord<S>>,
}

/// A node's disk: the durable log plus the queue of writes in flight.
#[derive(Debug)]
pub struct SimDisk<S> {
    /// What survives a crash.
    pub log: SharedLog<S>,
    /// Writes in flight, oldest first.
    pub pending: VecDeque<PendingWrite<S>>,
}

impl<S: Clone> SimDisk<S> {
    /// A disk over `log`, with nothing in flight.
    pub fn new(log: DurableLog<S>) -> Self {
        Self {
            log: SharedLog::new(log),
            pending: VecDeque::new(),
        }
    }

    /// Submits a write that becomes durable at `done_at` (or when the previous write
    /// does, if later: one writer, in order). Returns the time it will be durable.
    pub fn submit(&mut self, id: u64, done_at: u64, records: Vec<WalRecord<S>>) -> u64 {
        let done_at = self
            .pending
            .back()
            .map_or(done_at, |p| p.done_at.max(done_at));
        self.pending.push_back(PendingWrite {
            id,
            done_at,
            records,
        });
        done_at
    }

    /// Makes every write due by `now` durable; returns their ids in order.
    pub fn complete_until(&mut self, now: u64) -> Vec<u64> {
        let mut done = Vec::new();
        while self.pending.front().is_some_and(|p| p.done_at <= now) {
            let Some(w) = self.pending.pop_front() else {
                break;
            };
            let mut log = self.log.borrow_mut();
            for r in w.records {
                log.apply(r);
            }
            done.push(w.id);
        }
        done
    }

    /// Crashes the disk: writes in flight are lost, except the first `keep_records`
    /// records (across writes, in order), and of the record at that boundary, when it is a
    /// batch of entries, its first `keep_entries` entries. Returns how many records were
    /// kept (whole or in part).
    pub fn crash(&mut self, keep_records: usize, keep_entries: usize) -> usize {
        let mut kept = 0;
        let pending = std::mem::take(&mut self.pending);
        let mut log = self.log.borrow_mut();
        'outer: for w in pending {
            for r in w.records {
                if kept == keep_records {
                    if let WalRecord::Entries(ents) = r
                        && keep_entries > 0
                    {
                        let n = keep_entries.min(ents.len());
                        log.apply(WalRecord::Entries(ents[..n].to_vec()));
                        kept += 1;
                    }
                    break 'outer;
                }
                log.apply(r);
                kept += 1;
            }
        }
        kept
    }

    /// Records in flight (for choosing how much a torn crash keeps).
    pub fn pending_records(&self) -> usize {
        self.pending.iter().map(|w| w.records.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft_core::EntryKind;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![index as u8]),
        }
    }

    fn disk() -> SimDisk<u32> {
        SimDisk::new(DurableLog::new(Membership::with_voters([1, 2, 3]), 0))
    }

    #[test]
    fn writes_become_durable_in_order() {
        let mut d = disk();
        assert_eq!(
            d.submit(1, 10, vec![WalRecord::Entries(vec![ent(1, 1), ent(2, 1)])]),
            10
        );
        // A later write with a shorter delay still completes after the earlier one.
        assert_eq!(
            d.submit(
                2,
                5,
                vec![WalRecord::HardState(HardState {
                    term: 1,
                    vote: Some(1),
                    commit: 2
                })]
            ),
            10
        );
        assert_eq!(d.log.last_index().unwrap(), 0);
        assert!(d.complete_until(9).is_empty());
        assert_eq!(d.complete_until(10), vec![1, 2]);
        assert_eq!(d.log.last_index().unwrap(), 2);
        assert_eq!(d.log.initial_state().unwrap().hard_state.commit, 2);
        assert_eq!(d.log.entries(1, 3, None).unwrap().len(), 2);
        assert_eq!(d.log.entries(1, 3, Some(1)).unwrap().len(), 1);
        assert!(matches!(
            d.log.entries(1, 4, None),
            Err(StorageError::Unavailable(_))
        ));
    }

    #[test]
    fn append_truncates_conflicts() {
        let mut d = disk();
        d.submit(
            1,
            0,
            vec![WalRecord::Entries(vec![ent(1, 1), ent(2, 1), ent(3, 1)])],
        );
        d.submit(2, 0, vec![WalRecord::Entries(vec![ent(2, 2)])]);
        d.complete_until(0);
        assert_eq!(d.log.last_index().unwrap(), 2);
        assert_eq!(d.log.term(2).unwrap(), 2);
    }

    #[test]
    fn crash_loses_in_flight_writes_or_keeps_a_prefix() {
        let mut d = disk();
        d.submit(1, 0, vec![WalRecord::Entries(vec![ent(1, 1)])]);
        d.complete_until(0);
        d.submit(
            2,
            5,
            vec![
                WalRecord::Entries(vec![ent(2, 1), ent(3, 1)]),
                WalRecord::HardState(HardState {
                    term: 1,
                    vote: None,
                    commit: 3,
                }),
            ],
        );
        let mut torn = disk();
        torn.submit(1, 0, vec![WalRecord::Entries(vec![ent(1, 1)])]);
        torn.complete_until(0);
        torn.submit(2, 5, d.pending[0].records.clone());
        assert_eq!(d.crash(0, 0), 0);
        assert_eq!(d.log.last_index().unwrap(), 1);
        assert!(d.pending.is_empty());
        // Torn: the first entry of the batch made it, the hard state did not.
        assert_eq!(torn.crash(0, 1), 1);
        assert_eq!(torn.log.last_index().unwrap(), 2);
        assert_eq!(torn.log.initial_state().unwrap().hard_state.commit, 0);
    }

    #[test]
    fn snapshots_and_compaction() {
        let mut d = disk();
        d.submit(
            1,
            0,
            vec![WalRecord::Entries((1..=5).map(|i| ent(i, 1)).collect())],
        );
        d.complete_until(0);
        let meta = SnapshotMeta {
            index: 3,
            term: 1,
            membership: Membership::with_voters([1]),
        };
        d.log.borrow_mut().compact_to(meta.clone(), 7);
        assert_eq!(d.log.first_index().unwrap(), 4);
        assert_eq!(d.log.last_index().unwrap(), 5);
        assert_eq!(d.log.term(3).unwrap(), 1);
        assert!(matches!(d.log.term(2), Err(StorageError::Compacted(2))));
        assert!(matches!(
            d.log.entries(3, 5, None),
            Err(StorageError::Compacted(3))
        ));
        assert_eq!(d.log.borrow().snapshot_data, 7);
        // A snapshot past the end of the log replaces it entirely.
        let meta = SnapshotMeta {
            index: 9,
            term: 2,
            membership: Membership::with_voters([1]),
        };
        d.submit(2, 0, vec![WalRecord::Snapshot(meta, 9)]);
        d.complete_until(0);
        assert_eq!(d.log.first_index().unwrap(), 10);
        assert_eq!(d.log.last_index().unwrap(), 9);
        assert_eq!(d.log.term(9).unwrap(), 2);
        // Appending after it works; entries the snapshot covers are skipped.
        d.submit(
            3,
            0,
            vec![WalRecord::Entries((8..=11).map(|i| ent(i, 2)).collect())],
        );
        d.complete_until(0);
        assert_eq!(d.log.last_index().unwrap(), 11);
    }
}
