//! Log entries and the hard state: what a node must persist before it acknowledges anything.

use bytes::Bytes;

/// Identifies a node. Invariant: never 0 (0 is reserved to mean "no node" on the wire).
pub type NodeId = u64;

/// What an entry's payload means to the layers above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EntryKind {
    /// An application command (or, with empty data, the no-op a new leader appends).
    #[default]
    Normal,
    /// An encoded [`ConfChange`](crate::ConfChange): a membership change.
    ConfChange,
}

/// One entry of the replicated log.
///
/// Invariant: `index >= 1` and `term >= 1`; within a log, indexes are consecutive and terms
/// never decrease.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// How to read `data`.
    pub kind: EntryKind,
    /// The payload, shared without copying from the client request to the log and the wire.
    pub data: Bytes,
}

impl Entry {
    /// An approximation of the entry's size in memory and on the wire, used for the byte
    /// limits of batches and in-flight windows.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The state a node must have on stable storage before it answers any message.
///
/// Invariant: `term` never decreases; `vote` changes only together with a higher `term`
/// (or from `None` within a term); `commit` never decreases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest log index known to be committed.
    pub commit: u64,
}
