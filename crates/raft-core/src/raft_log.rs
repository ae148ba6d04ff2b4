//! The node's view of its log: durable entries through [`LogRead`] plus the in-memory
//! tail not yet reported durable, and the commit/apply cursors.

mod configs;
mod unstable;

use crate::entry::Entry;
use crate::log_read::{LogRead, StorageError};
use crate::membership::{Membership, SnapshotMeta};
pub(crate) use configs::ConfigHistory;
use unstable::Unstable;

/// The log as the protocol sees it.
///
/// Invariants: `applied <= applying <= committed <= last_index()`; entries at or below
/// `committed` are never overwritten; `confs` holds the configuration change of every entry
/// of the log (durable or not) after its base, which is at most `committed`.
pub(crate) struct RaftLog<L> {
    pub store: L,
    unstable: Unstable,
    /// The configurations the log holds (the latest one is in force).
    pub confs: ConfigHistory,
    /// The highest index known committed.
    pub committed: u64,
    /// The highest index handed out to the application for applying.
    pub applying: u64,
    /// The highest index the application reported applied.
    pub applied: u64,
}

type SResult<T> = Result<T, StorageError>;

impl<L: LogRead> RaftLog<L> {
    /// The log over `store`, whose snapshot is `snap`; `applied_membership` is the
    /// configuration in force at `applied` (used only when `applied` is past the snapshot).
    /// The configuration changes logged after that are read back from `store`.
    pub(crate) fn new(
        store: L,
        committed: u64,
        applied: u64,
        snap: SnapshotMeta,
        applied_membership: Membership,
    ) -> SResult<Self> {
        let first = store.first_index()?;
        let last = store.last_index()?;
        let applied = applied.max(first - 1).min(committed);
        let mut confs = if applied > snap.index {
            ConfigHistory::new(applied, applied_membership)
        } else {
            ConfigHistory::new(snap.index, snap.membership)
        };
        let mut lo = applied.max(snap.index) + 1;
        while lo <= last {
            let batch = store.entries(lo, last + 1, Some(16 << 20))?;
            let Some(e) = batch.last() else {
                return Err(StorageError::Unavailable(lo));
            };
            lo = e.index + 1;
            confs.append(&batch);
        }
        Ok(Self {
            store,
            unstable: Unstable::new(last + 1),
            confs,
            committed,
            applying: applied,
            applied,
        })
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.unstable.end() - 1
    }

    pub(crate) fn first_index(&self) -> SResult<u64> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.index + 1),
            None => self.store.first_index(),
        }
    }

    /// The term at `index`; 0 for index 0.
    pub(crate) fn term(&self, index: u64) -> SResult<u64> {
        if let Some(s) = &self.unstable.snapshot {
            if index == s.index {
                return Ok(s.term);
            }
            if index < s.index {
                return Err(StorageError::Compacted(index));
            }
        }
        if index >= self.unstable.offset {
            return self
                .unstable
                .entry(index)
                .map(|e| e.term)
                .ok_or(StorageError::Unavailable(index));
        }
        if index == 0 {
            return Ok(0);
        }
        self.store.term(index)
    }

    pub(crate) fn last_term(&self) -> SResult<u64> {
        self.term(self.last_index())
    }

    /// True when the entry at `index` exists with `term` (compacted entries below the
    /// committed index count as matching only at the snapshot boundary).
    pub(crate) fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Raft's "at least as up-to-date" comparison of a candidate's last entry with ours.
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> SResult<bool> {
        let my_term = self.last_term()?;
        Ok(last_term > my_term || (last_term == my_term && last_index >= self.last_index()))
    }

    /// The index of the first entry of `ents` that is new or conflicts with the log; 0 when
    /// every entry is already there.
    fn find_conflict(&self, ents: &[Entry]) -> u64 {
        for e in ents {
            if !self.match_term(e.index, e.term) {
                return e.index;
            }
        }
        0
    }

    /// The largest index `<= index` whose term is `<= term`, with its term; used for the
    /// conflict hint. Stops at the first available index (compacted history matches).
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> SResult<(u64, u64)> {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t <= term => return Ok((i, t)),
                Ok(_) => {
                    if i == 0 {
                        return Ok((0, 0));
                    }
                    i -= 1;
                }
                Err(StorageError::Compacted(_)) => return Ok((i, 0)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends `ents` after (`prev_index`, `prev_term`) if the log matches there; returns
    /// the index of the last new entry, or `None` on a continuity mismatch.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        committed: u64,
        ents: &[Entry],
    ) -> SResult<Option<u64>> {
        if !self.match_term(prev_index, prev_term) {
            return Ok(None);
        }
        let last_new = prev_index + ents.len() as u64;
        let conflict = self.find_conflict(ents);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with committed entry (committed {})",
                self.committed
            );
            let start = (conflict - ents[0].index) as usize;
            self.append(&ents[start..]);
        }
        self.commit_to(committed.min(last_new));
        Ok(Some(last_new))
    }

    /// Appends entries (possibly overwriting an uncommitted suffix).
    pub(crate) fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(
            first.index > self.committed,
            "appending at {} would overwrite committed entries (committed {})",
            first.index,
            self.committed
        );
        assert!(
            first.index <= self.last_index() + 1,
            "appending at {} leaves a gap after {}",
            first.index,
            self.last_index()
        );
        self.confs.append(ents);
        self.unstable.truncate_and_append(ents);
    }

    /// Appends one new entry at the end of the log (the leader's proposal path).
    pub(crate) fn append_one(&mut self, e: Entry) {
        assert_eq!(
            e.index,
            self.last_index() + 1,
            "a proposal must extend the log"
        );
        self.confs.append_one(&e);
        self.unstable.entries.push_back(e);
    }

    /// Entries in `[lo, hi)` limited to `max_bytes` (at least one when the range is not
    /// empty).
    pub(crate) fn slice(&self, lo: u64, hi: u64, max_bytes: u64) -> SResult<Vec<Entry>> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index()? {
            return Err(StorageError::Compacted(lo));
        }
        assert!(
            hi <= self.last_index() + 1,
            "slice [{lo}, {hi}) beyond the last index {}",
            self.last_index()
        );
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let off = self.unstable.offset;
        if lo < off {
            let stored = self.store.entries(lo, hi.min(off), Some(max_bytes))?;
            let want = hi.min(off) - lo;
            let got = stored.len() as u64;
            if got == 0 {
                return Err(StorageError::Unavailable(lo));
            }
            bytes = stored.iter().map(Entry::size).sum();
            out = stored;
            if got < want {
                return Ok(out);
            }
        }
        for i in lo.max(off)..hi {
            let e = self
                .unstable
                .entry(i)
                .expect("index within the unstable tail");
            if !out.is_empty() && bytes + e.size() > max_bytes {
                break;
            }
            bytes += e.size();
            out.push(e.clone());
        }
        Ok(out)
    }

    pub(crate) fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit index {index} is beyond the last index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Commits `index` if it is newer and of `term` (only current-term entries are
    /// committed by counting replicas).
    pub(crate) fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.term(index).is_ok_and(|t| t == term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    /// Replaces the log by a snapshot (follower install).
    pub(crate) fn restore(&mut self, meta: SnapshotMeta) {
        self.committed = meta.index;
        self.applying = self.applying.max(meta.index);
        self.confs.restore(meta.index, meta.membership.clone());
        self.unstable.restore(meta);
    }

    /// The highest index whose entry is durable and will not be overwritten by what is in
    /// flight.
    pub(crate) fn persisted_last(&self) -> u64 {
        self.unstable.offset - 1
    }

    pub(crate) fn has_unpersisted(&self) -> bool {
        self.unstable.has_new_entries()
            || (self.unstable.snapshot.is_some() && !self.unstable.snapshot_in_progress)
    }

    /// The snapshot and entries to hand out for persistence; marks them handed out.
    pub(crate) fn take_unpersisted(&mut self) -> (Option<SnapshotMeta>, Vec<Entry>) {
        let snap = if self.unstable.snapshot_in_progress {
            None
        } else {
            self.unstable.snapshot_in_progress = self.unstable.snapshot.is_some();
            self.unstable.snapshot.clone()
        };
        (snap, self.unstable.take_new_entries())
    }

    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    /// The snapshot at `index` is durable (and installed in the state machine).
    pub(crate) fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
        self.applied = self.applied.max(index);
        self.applying = self.applying.max(index);
    }

    pub(crate) fn has_next_committed(&self) -> bool {
        self.applying < self.committed.min(self.persisted_last())
    }

    /// Committed, durable entries not yet handed out, up to `max_bytes`; marks them
    /// handed out.
    pub(crate) fn take_next_committed(&mut self, max_bytes: u64) -> SResult<Vec<Entry>> {
        if !self.has_next_committed() {
            return Ok(Vec::new());
        }
        let hi = self.committed.min(self.persisted_last()) + 1;
        let ents = self.slice(self.applying + 1, hi, max_bytes)?;
        if let Some(e) = ents.last() {
            self.applying = e.index;
        }
        Ok(ents)
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        assert!(
            index <= self.applying,
            "applied {index} reported beyond what was handed out ({})",
            self.applying
        );
        self.applied = self.applied.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemLog;

    fn log(terms: &[u64]) -> RaftLog<MemLog> {
        let mut store = MemLog::with_voters([1]);
        let ents: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                index: i as u64 + 1,
                term: *t,
                ..Entry::default()
            })
            .collect();
        store.append(&ents);
        let snap = store.snapshot_meta().expect("memory");
        RaftLog::new(store, 0, 0, snap, crate::Membership::with_voters([1])).expect("memory")
    }

    #[test]
    fn the_conflict_search_finds_the_last_index_of_a_term_at_most_the_hint() {
        let l = log(&[1, 1, 2, 2, 3, 3]);
        assert_eq!(l.find_conflict_by_term(6, 3).unwrap(), (6, 3));
        assert_eq!(l.find_conflict_by_term(6, 2).unwrap(), (4, 2));
        assert_eq!(l.find_conflict_by_term(6, 1).unwrap(), (2, 1));
        assert_eq!(l.find_conflict_by_term(3, 2).unwrap(), (3, 2));
        assert_eq!(l.find_conflict_by_term(6, 0).unwrap(), (0, 0));
        // Past the end: from the last index.
        assert_eq!(l.find_conflict_by_term(9, 2).unwrap(), (4, 2));
    }

    #[test]
    fn the_conflict_search_stops_at_the_compacted_prefix() {
        let mut store = MemLog::with_voters([1]);
        let ents: Vec<Entry> = (1..=6)
            .map(|i| Entry {
                index: i,
                term: if i <= 3 { 1 } else { 4 },
                ..Entry::default()
            })
            .collect();
        store.append(&ents);
        store
            .compact(4, crate::Membership::with_voters([1]))
            .expect("compact");
        let snap = store.snapshot_meta().expect("memory");
        let l = RaftLog::new(store, 4, 4, snap, crate::Membership::with_voters([1])).unwrap();
        // Entries 5 and 6 (term 4) are past the hint's term; 4 is the snapshot (term 4),
        // below it everything is compacted: the search stops there, term unknown.
        assert_eq!(l.find_conflict_by_term(6, 2).unwrap(), (3, 0));
    }

    #[test]
    fn an_append_overwrites_from_its_first_conflicting_entry() {
        let ent = |index, term| Entry {
            index,
            term,
            ..Entry::default()
        };
        let mut l = log(&[1, 1, 1, 1]);
        // The very first entry sent conflicts.
        assert_eq!(
            l.maybe_append(1, 1, 0, &[ent(2, 2), ent(3, 2)]).unwrap(),
            Some(3)
        );
        assert_eq!(l.last_index(), 3);
        assert_eq!((l.term(2).unwrap(), l.term(3).unwrap()), (2, 2));
        // A conflict in the middle keeps the matching prefix of the batch.
        let mut l = log(&[1, 1, 2, 2, 2]);
        assert_eq!(
            l.maybe_append(2, 1, 0, &[ent(3, 2), ent(4, 3), ent(5, 3)])
                .unwrap(),
            Some(5)
        );
        let terms: Vec<u64> = (1..=5).map(|i| l.term(i).unwrap()).collect();
        assert_eq!(terms, vec![1, 1, 2, 3, 3]);
        // A mismatch at the previous entry appends nothing.
        assert_eq!(l.maybe_append(5, 9, 0, &[ent(6, 9)]).unwrap(), None);
    }

    #[test]
    fn only_an_entry_of_the_current_term_is_committed_by_counting() {
        let mut l = log(&[1, 2, 3]);
        assert!(!l.maybe_commit(2, 3), "entry 2 is of term 2");
        assert_eq!(l.committed, 0);
        assert!(l.maybe_commit(3, 3));
        assert_eq!(l.committed, 3);
        assert!(!l.maybe_commit(3, 3), "nothing new");
    }

    #[test]
    fn the_up_to_date_check_compares_last_term_then_length() {
        let l = log(&[1, 2, 2]);
        assert!(l.is_up_to_date(3, 2).unwrap());
        assert!(l.is_up_to_date(4, 2).unwrap());
        assert!(!l.is_up_to_date(2, 2).unwrap());
        assert!(l.is_up_to_date(1, 3).unwrap());
        assert!(!l.is_up_to_date(9, 1).unwrap());
    }
}
