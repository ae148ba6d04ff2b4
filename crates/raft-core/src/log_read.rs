//! The only storage interface the core sees: read access to what was persisted.

use crate::entry::{Entry, HardState};
use crate::membership::{Membership, SnapshotMeta};

/// Errors a [`LogRead`] implementation reports.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested index is at or before the compacted prefix (covered by a snapshot).
    #[error("log index {0} is compacted")]
    Compacted(u64),
    /// The requested index is past the last persisted entry.
    #[error("log index {0} is not available")]
    Unavailable(u64),
    /// The storage failed (I/O error, corruption). The node cannot continue.
    #[error("storage failure: {0}")]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// What a node restarts from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InitialState {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The membership as of `Config::applied`: the snapshot's membership changed by every
    /// configuration change entry up to the applied index (the one `RawNode::on_applied`
    /// last returned). Read only when `Config::applied` is past the snapshot's index (the
    /// snapshot's own membership is used otherwise). The node replays the configuration
    /// changes logged after the applied index itself, since the configuration in force is
    /// the latest one in the log.
    pub membership: Membership,
}

/// Read access to the persisted log.
///
/// The core reads persisted entries through this trait and keeps entries it has handed out
/// in `Ready` but not yet seen persisted in memory. Implementations must reflect a write only
/// once it is durable.
///
/// Invariant: `first_index() <= last_index() + 1`; the entry at `first_index() - 1` is the
/// snapshot's last entry (its term is available through `term`).
pub trait LogRead {
    /// The persisted hard state and the membership as of `Config::applied` (see
    /// [`InitialState::membership`]).
    fn initial_state(&self) -> Result<InitialState, StorageError>;
    /// Entries in `[lo, hi)`, stopping early once `max_bytes` would be exceeded (at least one
    /// entry is always returned when the range is not empty).
    fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>)
    -> Result<Vec<Entry>, StorageError>;
    /// The term of the entry at `index`; valid for `first_index() - 1 ..= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// The first index still in the log (one past the snapshot's index).
    fn first_index(&self) -> Result<u64, StorageError>;
    /// The last persisted index (the snapshot's index when the log is empty).
    fn last_index(&self) -> Result<u64, StorageError>;
    /// Metadata of the most recent snapshot. With no snapshot: index 0, term 0 and the
    /// bootstrap membership (a joining node learns the configuration from it).
    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError>;
}
