//! The crate's error type: everything that comes from outside the protocol.

use crate::entry::NodeId;
use crate::log_read::StorageError;

/// Why bytes could not be decoded as a [`ConfChange`](crate::ConfChange).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("truncated input: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Where decoding stopped.
        offset: usize,
        /// How many more bytes were needed.
        needed: usize,
    },
    /// The format version byte is not one this crate knows.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// The transition byte is not a known [`ConfChangeTransition`](crate::ConfChangeTransition).
    #[error("unknown transition tag {0}")]
    UnknownTransition(u8),
    /// An operation tag is not a known [`ConfChangeOp`](crate::ConfChangeOp).
    #[error("unknown operation tag {tag} at offset {offset}")]
    UnknownOp {
        /// The tag found.
        tag: u8,
        /// Where it was found.
        offset: usize,
    },
    /// Bytes were left after the value.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A node id of 0 (reserved for "no node").
    #[error("node id 0 in operation at offset {0}")]
    ZeroNodeId(usize),
}

/// Errors of `raft-core`. Protocol invariants that break panic instead: an error here is
/// always about something from outside (storage, configuration, callers, peers).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log storage failed or returned something inconsistent.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A configuration value is invalid.
    #[error("invalid config `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The request needs a leader and none is known (retry after an election).
    #[error("no leader is known")]
    NoLeader,
    /// The request must be made on the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// A proposal was dropped (e.g. during a leadership transfer, or this node is not a
    /// member); the caller may retry.
    #[error("proposal dropped: {0}")]
    ProposalDropped(&'static str),
    /// A membership change was refused because it is unsafe or another one is in flight.
    #[error("membership change rejected: {0}")]
    ConfChangeRejected(String),
    /// Bytes could not be decoded.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// A message that this node cannot accept (wrong recipient, node id 0, ...).
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// The target of a leadership transfer is not a voter of the cluster.
    #[error("node {0} cannot become leader (not a voter)")]
    NotAVoter(NodeId),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
