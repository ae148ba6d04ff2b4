//! Tunables of the write-ahead log.

use crate::error::{Error, Result};
use std::time::Duration;

/// When the writer calls `fdatasync`, and so when a ticket completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Every batch is synced before its tickets complete. The only setting under which an
    /// acknowledged write survives power loss.
    #[default]
    Always,
    /// Tickets complete once the batch is written to the operating system; the writer syncs
    /// at most this long after the first unsynced write (and whenever [`crate::Wal::sync`] is
    /// asked). Power loss can drop up to that much acknowledged data; a process crash cannot.
    Interval(Duration),
    /// **Unsafe.** Tickets complete once written to the operating system and the writer never
    /// syncs (except when asked through [`crate::Wal::sync`] and on segment roll-over). Power
    /// loss or a kernel crash can lose any amount of acknowledged data, which breaks Raft's
    /// safety (a node may forget its vote or entries it acknowledged). For benchmarks and
    /// throw-away clusters only; the log warns when opened with it.
    Never,
}

/// Settings of a [`crate::Wal`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Size each segment file is preallocated to (default 64 MiB). A batch larger than this
    /// gets a segment of its own, grown to fit.
    pub segment_size: u64,
    /// The most bytes one group-commit batch gathers before it is written (default 4 MiB, at
    /// most 1 GiB). A single larger write is still written, alone.
    pub max_batch_bytes: usize,
    /// How long the writer waits after the first request of a batch for more to arrive
    /// (default zero: batching is adaptive, the next batch forms while the previous `fsync`
    /// runs, so a lone request waits for one `fsync` and no timer).
    pub commit_delay: Duration,
    /// When to `fdatasync` (default [`SyncPolicy::Always`]).
    pub sync_policy: SyncPolicy,
    /// Bytes of recent entry data kept in memory for reads (default 16 MiB).
    pub cache_bytes: usize,
    /// Keep segments for a WAL archive (default false): a segment whose entries are all
    /// compacted is deleted only once it is below the floor set with
    /// [`crate::Wal::set_archive_floor`] (the archive confirmed it), not at once; opening
    /// the log deletes none either.
    pub archive: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            max_batch_bytes: 4 << 20,
            commit_delay: Duration::ZERO,
            sync_policy: SyncPolicy::Always,
            cache_bytes: 16 << 20,
            archive: false,
        }
    }
}

impl Settings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 || self.segment_size > u32::MAX as u64 {
            return Err(Error::InvalidSettings(format!(
                "segment_size {} must be between 4 KiB and 4 GiB",
                self.segment_size
            )));
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > crate::format::MAX_BATCH_BYTES {
            return Err(Error::InvalidSettings(format!(
                "max_batch_bytes {} must be between 1 byte and 1 GiB",
                self.max_batch_bytes
            )));
        }
        Ok(())
    }
}
