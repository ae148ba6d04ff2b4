//! An in-memory [`LogRead`] implementation for tests, benchmarks, simulation and examples.

use crate::entry::{Entry, HardState};
use crate::log_read::{InitialState, LogRead, StorageError};
use crate::membership::{Membership, SnapshotMeta};

/// A log kept in memory: what a durable store would hold, without the durability.
///
/// Invariant: `entries[k].index == snapshot.index + 1 + k`.
#[derive(Clone, Debug, Default)]
pub struct MemLog {
    hard_state: HardState,
    membership: Membership,
    snapshot: SnapshotMeta,
    entries: Vec<Entry>,
}

impl MemLog {
    /// An empty log of a node in a cluster of `membership`.
    pub fn new(membership: Membership) -> Self {
        Self {
            snapshot: SnapshotMeta {
                membership: membership.clone(),
                ..SnapshotMeta::default()
            },
            membership,
            ..Self::default()
        }
    }

    /// An empty log of a node in a cluster of the given voters.
    pub fn with_voters(voters: impl IntoIterator<Item = u64>) -> Self {
        Self::new(Membership::with_voters(voters))
    }

    /// Appends entries; an entry at an existing index replaces it and everything after.
    ///
    /// # Panics
    /// When the entries would leave a gap or start inside the snapshot.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(
            first.index > self.snapshot.index,
            "append at {} is inside the snapshot (index {})",
            first.index,
            self.snapshot.index
        );
        let keep = (first.index - self.snapshot.index - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "append at {} leaves a gap after {}",
            first.index,
            self.last()
        );
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// Removes every entry after `index`.
    pub fn truncate(&mut self, index: u64) {
        let keep = index.saturating_sub(self.snapshot.index) as usize;
        self.entries.truncate(keep);
    }

    /// Discards entries up to `index` (which must be applied), recording a snapshot
    /// boundary with `membership` (the membership in force at `index`).
    ///
    /// # Errors
    /// `Compacted` when `index` is already compacted, `Unavailable` when it is beyond the
    /// last entry.
    pub fn compact(&mut self, index: u64, membership: Membership) -> Result<(), StorageError> {
        if index <= self.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        if index > self.last() {
            return Err(StorageError::Unavailable(index));
        }
        let n = (index - self.snapshot.index) as usize;
        let term = self.entries[n - 1].term;
        self.entries.drain(..n);
        self.snapshot = SnapshotMeta {
            index,
            term,
            membership,
        };
        Ok(())
    }

    /// Replaces the log by a snapshot (what a follower does with `Ready::snapshot`).
    pub fn apply_snapshot(&mut self, meta: SnapshotMeta) {
        if meta.index < self.snapshot.index {
            return;
        }
        let keep_after = self
            .entries
            .iter()
            .position(|e| e.index == meta.index && e.term == meta.term);
        match keep_after {
            Some(p) => {
                self.entries.drain(..=p);
            }
            None => self.entries.clear(),
        }
        self.membership = meta.membership.clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.snapshot = meta;
    }

    /// Records the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Records the membership in force at the applied index (returned by
    /// `RawNode::on_applied` after a configuration change).
    pub fn set_membership(&mut self, membership: Membership) {
        self.membership = membership;
    }

    /// The hard state recorded.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// All entries held (after the snapshot).
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn last(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }
}

impl LogRead for MemLog {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        if lo <= self.snapshot.index {
            return Err(StorageError::Compacted(lo));
        }
        if hi > self.last() + 1 {
            return Err(StorageError::Unavailable(hi - 1));
        }
        let from = (lo - self.snapshot.index - 1) as usize;
        let to = (hi.max(lo) - self.snapshot.index - 1) as usize;
        let slice = &self.entries[from..to];
        let Some(limit) = max_bytes else {
            return Ok(slice.to_vec());
        };
        let mut total = 0;
        let n = slice
            .iter()
            .enumerate()
            .take_while(|(i, e)| {
                total += e.size();
                *i == 0 || total <= limit
            })
            .count();
        Ok(slice[..n].to_vec())
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index < self.snapshot.index {
            return Err(StorageError::Compacted(index));
        }
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        self.entries
            .get((index - self.snapshot.index - 1) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable(index))
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.snapshot.index + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last())
    }

    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn append_overwrites_and_compact_keeps_terms() {
        let mut l = MemLog::with_voters([1]);
        l.append(&[e(1, 1), e(2, 1), e(3, 1)]);
        l.append(&[e(3, 2), e(4, 2)]);
        assert_eq!(l.term(3).unwrap(), 2);
        l.compact(2, Membership::with_voters([1])).unwrap();
        assert_eq!(l.first_index().unwrap(), 3);
        assert_eq!(l.term(2).unwrap(), 1);
        assert!(matches!(l.term(1), Err(StorageError::Compacted(1))));
        assert!(matches!(
            l.entries(2, 4, None),
            Err(StorageError::Compacted(2))
        ));
        assert_eq!(l.entries(3, 5, Some(1)).unwrap().len(), 1);
        l.truncate(3);
        assert_eq!(l.last_index().unwrap(), 3);
    }
}
