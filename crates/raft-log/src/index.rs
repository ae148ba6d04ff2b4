//! The in-memory index of the log: where each entry lives on disk and its term (O(1)
//! lookups), the snapshot mark, and a bounded cache of recent entries.
//!
//! The same replay rules serve recovery (records read back in order) and the writer (records
//! just made durable), so the two can never disagree.

use bytes::Bytes;
use raft_core::{Entry, EntryKind, SnapshotMeta};
use std::collections::VecDeque;

/// Where one entry's data lives, and its term (the view [`LogIndex::get`] returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Term of the entry.
    pub term: u64,
    /// Sequence number of the segment holding it.
    pub seq: u32,
    /// Offset of the entry's data within the segment.
    pub offset: u32,
    /// Length of the entry's data.
    pub len: u32,
    /// Kind of the entry.
    pub kind: EntryKind,
}

/// What the index stores per entry: 12 bytes (terms are kept as runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    seq: u32,
    offset: u32,
    /// Data length; the top bit is set for [`EntryKind::ConfChange`].
    len_kind: u32,
}

const CONF_BIT: u32 = 1 << 31;

impl Slot {
    #[inline]
    fn new(loc: Loc) -> Self {
        let kind = match loc.kind {
            EntryKind::Normal => 0,
            EntryKind::ConfChange => CONF_BIT,
        };
        Self {
            seq: loc.seq,
            offset: loc.offset,
            len_kind: loc.len | kind,
        }
    }
}

/// The replayed state of the log's entries.
///
/// Invariants (once [`LogIndex::finish`] succeeded, and always for the live log):
/// `first == snapshot.index + 1`; `slots[k]` describes entry `first + k`; `terms` holds
/// `(first index, term)` runs with increasing first indexes, the first run starting at or
/// before `first` whenever an entry is held, and no run starting after the last entry.
/// During recovery `first` may exceed `snapshot.index + 1` while entries below it are unknown
/// (they were in segments deleted by a compaction that a later mark in the replay covers).
#[derive(Debug, Clone, Default)]
pub(crate) struct LogIndex {
    /// The latest snapshot mark.
    pub snapshot: SnapshotMeta,
    first: u64,
    slots: VecDeque<Slot>,
    terms: VecDeque<(u64, u64)>,
}

impl LogIndex {
    /// An empty log with no snapshot.
    pub fn new() -> Self {
        Self {
            snapshot: SnapshotMeta::default(),
            first: 1,
            slots: VecDeque::new(),
            terms: VecDeque::new(),
        }
    }

    /// Reserves room for `n` more entries (address space only until used).
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
    }

    /// The first index still held (one past the snapshot).
    pub fn first_index(&self) -> u64 {
        self.first
    }

    /// The last index (the snapshot's index when no entry is held).
    pub fn last_index(&self) -> u64 {
        self.first + self.slots.len() as u64 - 1
    }

    /// The location and term of entry `index`, if held.
    pub fn get(&self, index: u64) -> Option<Loc> {
        let slot = index
            .checked_sub(self.first)
            .and_then(|k| self.slots.get(k as usize))?;
        Some(Loc {
            term: self.held_term(index),
            seq: slot.seq,
            offset: slot.offset,
            len: slot.len_kind & !CONF_BIT,
            kind: if slot.len_kind & CONF_BIT != 0 {
                EntryKind::ConfChange
            } else {
                EntryKind::Normal
            },
        })
    }

    /// The term of a held entry: O(1) for the newest term run, a binary search otherwise.
    fn held_term(&self, index: u64) -> u64 {
        match self.terms.back() {
            Some(&(start, term)) if start <= index => term,
            _ => {
                let k = self.terms.partition_point(|&(start, _)| start <= index);
                self.terms[k
                    .checked_sub(1)
                    .expect("a term run covers every held entry")]
                .1
            }
        }
    }

    /// The term of entry `index`, including the snapshot's last entry.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.first || index > self.last_index() {
            return None;
        }
        Some(self.held_term(index))
    }

    /// Drops term runs starting at or after `from`.
    fn truncate_terms(&mut self, from: u64) {
        while self.terms.back().is_some_and(|&(start, _)| start >= from) {
            self.terms.pop_back();
        }
    }

    /// Replays an entry record: it replaces the entry at `index` and everything after it.
    #[inline]
    pub fn push(&mut self, index: u64, loc: Loc) {
        // The common case, kept short: the next index, in the newest term.
        if index == self.first + self.slots.len() as u64
            && self.terms.back().is_some_and(|&(_, t)| t == loc.term)
        {
            self.slots.push_back(Slot::new(loc));
        } else {
            self.push_slow(index, loc);
        }
    }

    /// [`LogIndex::push`] for an entry that starts a term run or rewrites the log.
    fn push_slow(&mut self, index: u64, loc: Loc) {
        if index < self.first || index > self.last_index() + 1 {
            // A gap (or a rewrite below what is known): everything held is older than the
            // rewrite or disconnected from it. Only recovery can see this; `finish` checks
            // that the unknown part ends up covered by the snapshot.
            self.slots.clear();
            self.terms.clear();
            self.first = index;
        } else if index <= self.last_index() {
            self.slots.truncate((index - self.first) as usize);
            self.truncate_terms(index);
        }
        if self.terms.back().is_none_or(|&(_, t)| t != loc.term) {
            self.terms.push_back((index, loc.term));
        }
        self.slots.push_back(Slot::new(loc));
    }

    /// Replays a truncate mark: entries at `from` and after are removed.
    pub fn truncate(&mut self, from: u64) {
        if from < self.first {
            self.slots.clear();
            self.terms.clear();
            self.first = from.max(self.snapshot.index + 1);
        } else {
            self.slots.truncate((from - self.first) as usize);
            self.truncate_terms(from);
        }
    }

    /// Replays a snapshot mark: entries up to `meta.index` are dropped, or all when `clears`.
    pub fn apply_snapshot(&mut self, meta: SnapshotMeta, clears: bool) {
        if clears {
            self.slots.clear();
            self.terms.clear();
            self.first = meta.index + 1;
        } else if meta.index >= self.first {
            let drop = (meta.index + 1 - self.first).min(self.slots.len() as u64);
            self.slots.drain(..drop as usize);
            self.first = meta.index + 1;
            if self.slots.is_empty() {
                self.terms.clear();
            } else {
                // Keep the run covering the new first entry.
                while self.terms.len() > 1 && self.terms[1].0 <= self.first {
                    self.terms.pop_front();
                }
            }
        }
        self.snapshot = meta;
    }

    /// Ends a recovery replay: fails when entries between the snapshot and the first known
    /// entry are missing.
    pub fn finish(&mut self) -> Result<(), String> {
        if self.first > self.snapshot.index + 1 {
            return Err(format!(
                "entries {}..{} are missing (the log after snapshot index {} has a hole)",
                self.snapshot.index + 1,
                self.first,
                self.snapshot.index
            ));
        }
        if self.first <= self.snapshot.index {
            let s = self.snapshot.clone();
            self.apply_snapshot(s, false);
        }
        Ok(())
    }

    /// The lowest segment sequence number still holding a live entry, if any entry is held.
    pub fn oldest_live_segment(&self) -> Option<u32> {
        self.slots.front().map(|l| l.seq)
    }
}

/// A bounded cache of the most recent entries.
///
/// Invariant: `entries` are consecutive, `bytes` is the sum of their data lengths.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl Cache {
    /// An empty cache holding at most about `max_bytes` of entry data.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Self::default()
        }
    }

    /// The cached entry at `index`.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.front()?.index;
        index
            .checked_sub(first)
            .and_then(|k| self.entries.get(k as usize))
    }

    /// Adds an entry; it replaces any cached entry at or after its index.
    pub fn push(&mut self, entry: Entry) {
        if self.max_bytes == 0 {
            return;
        }
        match self.entries.front().map(|e| e.index) {
            Some(first)
                if entry.index >= first && entry.index <= first + self.entries.len() as u64 =>
            {
                self.truncate(entry.index);
            }
            Some(_) => self.clear(),
            None => {}
        }
        self.bytes += entry.data.len();
        self.entries.push_back(entry);
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            let e = self.entries.pop_front().expect("non-empty");
            self.bytes -= e.data.len();
        }
    }

    /// Drops cached entries at `from` and after.
    pub fn truncate(&mut self, from: u64) {
        while self.entries.back().is_some_and(|e| e.index >= from) {
            let e = self.entries.pop_back().expect("non-empty");
            self.bytes -= e.data.len();
        }
    }

    /// Drops cached entries up to and including `index`.
    pub fn compact(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            let e = self.entries.pop_front().expect("non-empty");
            self.bytes -= e.data.len();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// Builds an entry from its location and data.
pub(crate) fn entry_at(index: u64, loc: &Loc, data: Bytes) -> Entry {
    Entry {
        index,
        term: loc.term,
        kind: loc.kind,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64) -> Loc {
        Loc {
            term,
            seq: 0,
            offset: 0,
            len: 0,
            kind: EntryKind::Normal,
        }
    }

    #[test]
    fn replay_rules() {
        let mut ix = LogIndex::new();
        for i in 1..=10 {
            ix.push(i, loc(1));
        }
        ix.push(6, loc(2));
        assert_eq!(ix.last_index(), 6);
        assert_eq!(ix.term(6), Some(2));
        ix.truncate(5);
        assert_eq!(ix.last_index(), 4);
        ix.apply_snapshot(
            SnapshotMeta {
                index: 3,
                term: 1,
                ..Default::default()
            },
            false,
        );
        assert_eq!((ix.first_index(), ix.last_index()), (4, 4));
        assert_eq!(ix.term(3), Some(1));
        ix.apply_snapshot(
            SnapshotMeta {
                index: 20,
                term: 5,
                ..Default::default()
            },
            true,
        );
        assert_eq!((ix.first_index(), ix.last_index()), (21, 20));
        assert!(ix.finish().is_ok());
    }

    #[test]
    fn holes_are_detected() {
        let mut ix = LogIndex::new();
        ix.push(1, loc(1));
        ix.push(5, loc(1));
        assert!(ix.finish().is_err());
        let mut ix = LogIndex::new();
        ix.push(5, loc(1));
        ix.push(6, loc(1));
        ix.apply_snapshot(
            SnapshotMeta {
                index: 5,
                term: 1,
                ..Default::default()
            },
            false,
        );
        assert!(ix.finish().is_ok());
        assert_eq!((ix.first_index(), ix.last_index()), (6, 6));
    }

    #[test]
    fn cache_is_bounded_and_follows_rewrites() {
        let mut c = Cache::new(100);
        for i in 1..=10 {
            c.push(Entry {
                index: i,
                term: 1,
                data: vec![0; 30].into(),
                ..Default::default()
            });
        }
        assert!(c.get(7).is_none());
        assert!(c.get(8).is_some());
        c.push(Entry {
            index: 9,
            term: 2,
            data: vec![0; 30].into(),
            ..Default::default()
        });
        assert_eq!(c.get(9).unwrap().term, 2);
        assert!(c.get(10).is_none());
    }
}
