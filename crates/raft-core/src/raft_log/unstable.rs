//! Entries and a snapshot that the node holds in memory until the caller reports them
//! durable.

use crate::entry::Entry;
use crate::membership::SnapshotMeta;
use std::collections::VecDeque;

/// The not-yet-durable tail of the log.
///
/// Invariants: `entries[k].index == offset + k`; when `snapshot` is set, `offset ==
/// snapshot.index + 1` or entries follow it directly; `offset <= in_progress <= offset +
/// entries.len()`; entries before `offset` are durable in storage.
#[derive(Debug)]
pub(crate) struct Unstable {
    pub snapshot: Option<SnapshotMeta>,
    /// The snapshot was handed out in a `Ready` (not yet reported durable).
    pub snapshot_in_progress: bool,
    pub entries: VecDeque<Entry>,
    pub offset: u64,
    /// Entries with an index below this were handed out in a `Ready`.
    pub in_progress: u64,
}

impl Unstable {
    pub(crate) fn new(offset: u64) -> Self {
        Self {
            snapshot: None,
            snapshot_in_progress: false,
            entries: VecDeque::new(),
            offset,
            in_progress: offset,
        }
    }

    pub(crate) fn end(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&Entry> {
        if index < self.offset {
            return None;
        }
        self.entries.get((index - self.offset) as usize)
    }

    /// Appends `ents`, replacing whatever they overwrite.
    pub(crate) fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let after = first.index;
        if after == self.end() {
            // Plain append.
        } else if after <= self.offset {
            // Replaces every unstable entry (and the durable suffix from `after`).
            self.entries.clear();
            self.offset = after;
        } else {
            self.entries.truncate((after - self.offset) as usize);
        }
        self.in_progress = self.in_progress.min(after).max(self.offset);
        self.entries.extend(ents.iter().cloned());
    }

    /// Entries handed out in no `Ready` yet; marks them handed out.
    pub(crate) fn take_new_entries(&mut self) -> Vec<Entry> {
        let from = (self.in_progress - self.offset) as usize;
        let out: Vec<Entry> = self.entries.range(from..).cloned().collect();
        self.in_progress = self.end();
        out
    }

    pub(crate) fn has_new_entries(&self) -> bool {
        self.in_progress < self.end()
    }

    /// Entries up to `index` (whose term is `term`) are durable.
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        match self.entry(index) {
            Some(e) if e.term == term => {
                let n = (index + 1 - self.offset) as usize;
                self.entries.drain(..n);
                self.offset = index + 1;
                self.in_progress = self.in_progress.max(self.offset);
            }
            // Overwritten since, or already stable: nothing to do.
            _ => {}
        }
    }

    pub(crate) fn stable_snap_to(&mut self, index: u64) {
        if self.snapshot.as_ref().is_some_and(|s| s.index == index) {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    pub(crate) fn restore(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.offset = meta.index + 1;
        self.in_progress = self.offset;
        self.snapshot = Some(meta);
        self.snapshot_in_progress = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term,
                ..Entry::default()
            })
            .collect()
    }

    #[test]
    fn overwrite_resets_in_progress_and_stale_acks_are_ignored() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&ents(1, 10, 1));
        assert_eq!(u.take_new_entries().len(), 10);
        u.truncate_and_append(&ents(6, 8, 2));
        assert_eq!(u.end(), 9);
        let again = u.take_new_entries();
        assert_eq!(again.first().map(|e| e.index), Some(6));
        u.stable_to(10, 1);
        assert_eq!(u.offset, 1, "the ack of an overwritten write is ignored");
        u.stable_to(8, 2);
        assert_eq!((u.offset, u.entries.len()), (9, 0));
    }
}
