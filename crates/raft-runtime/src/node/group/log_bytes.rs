//! Bytes of entry data applied since the last snapshot, for the size trigger
//! ([`RuntimeConfig::snapshot_log_bytes`](crate::RuntimeConfig::snapshot_log_bytes)).
//!
//! Entries are counted when they are handed to the apply thread and become "applied bytes"
//! when the state machine reports their index applied; a snapshot at index N covers the
//! bytes applied up to N. Counting starts when the runtime starts: entries that were in
//! the log before are only covered by the entry-count trigger.

use std::collections::VecDeque;

/// The byte counts (all running totals since the runtime started).
#[derive(Debug, Default)]
pub(crate) struct LogBytes {
    /// Bytes handed to the apply thread.
    handed: u64,
    /// `(last index of a handed batch, handed total after it)`, oldest first, until applied.
    marks: VecDeque<(u64, u64)>,
    /// Bytes of the entries the state machine reported applied.
    applied: u64,
    /// Applied bytes covered by the last snapshot the log was compacted to.
    snapshotted: u64,
    /// `(index, applied bytes)` of the snapshot being built.
    building: Option<(u64, u64)>,
}

impl LogBytes {
    /// A batch ending at `last_index` with `bytes` of entry data was handed out.
    pub fn handed(&mut self, last_index: u64, bytes: u64) {
        self.handed += bytes;
        self.marks.push_back((last_index, self.handed));
    }

    /// The state machine applied everything up to `index`.
    pub fn applied(&mut self, index: u64) {
        while let Some(&(last, total)) = self.marks.front() {
            if last > index {
                break;
            }
            self.applied = total;
            self.marks.pop_front();
        }
    }

    /// Bytes applied since the last snapshot.
    pub fn since_snapshot(&self) -> u64 {
        self.applied - self.snapshotted
    }

    /// A snapshot of everything applied so far (at `index`) is being built.
    pub fn snapshot_started(&mut self, index: u64) {
        self.building = Some((index, self.applied));
    }

    /// The log was compacted to a snapshot at `index`.
    pub fn compacted(&mut self, index: u64) {
        if let Some((at, bytes)) = self.building.take()
            && at <= index
        {
            self.snapshotted = self.snapshotted.max(bytes);
        }
    }

    /// The snapshot being built failed: its bytes still count.
    pub fn snapshot_failed(&mut self) {
        self.building = None;
    }

    /// The state was replaced by a snapshot at `index`: what was applied before is gone.
    pub fn restored(&mut self, index: u64) {
        self.applied(index);
        self.snapshotted = self.applied;
        self.building = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_applied_bytes_since_the_last_compaction() {
        let mut b = LogBytes::default();
        b.handed(10, 1000);
        b.handed(20, 500);
        assert_eq!(b.since_snapshot(), 0, "nothing applied yet");
        b.applied(15);
        assert_eq!(
            b.since_snapshot(),
            1000,
            "a batch counts once wholly applied"
        );
        b.applied(20);
        assert_eq!(b.since_snapshot(), 1500);
        b.snapshot_started(20);
        b.handed(30, 700);
        b.applied(30);
        assert_eq!(b.since_snapshot(), 2200, "not compacted yet");
        b.compacted(20);
        assert_eq!(b.since_snapshot(), 700, "applied after the snapshot point");
        b.snapshot_started(30);
        b.snapshot_failed();
        b.compacted(30);
        assert_eq!(b.since_snapshot(), 700, "a failed snapshot covers nothing");
        b.handed(40, 100);
        b.restored(40);
        assert_eq!(b.since_snapshot(), 0, "a restore replaces the log");
    }
}
