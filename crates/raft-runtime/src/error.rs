//! The crate's error type: what can go wrong for a caller of the runtime.

use raft_core::NodeId;

/// A boxed error from a plugged-in component (state machine, transport, storage).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of `raft-runtime`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request must be made on the leader, or no leader is known; retry (on the hinted
    /// leader when there is one, or after an election).
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// The leader that took the proposal lost its leadership before the entry was seen
    /// committed. The outcome is unknown: the entry may still be committed by the next
    /// leader, or may have been discarded.
    #[error("leader changed before the request completed; its outcome is unknown")]
    LeaderChanged,
    /// The entry that carried the request was overwritten by a new leader: it was not
    /// applied and will not be.
    #[error("the proposal was overwritten by a new leader and not applied")]
    Overwritten,
    /// The proposal was refused before it entered the log (e.g. a leadership transfer is in
    /// progress); retrying is safe.
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// A membership change was refused (unsafe, or another change is not applied yet).
    #[error("membership change rejected: {0}")]
    ConfChangeRejected(String),
    /// The request did not complete in time. Its outcome is unknown.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The node is shutting down or stopped.
    #[error("the raft node is shut down")]
    Shutdown,
    /// The node stopped after a failure it cannot recover from (log or state machine).
    #[error("the raft node stopped: {0}")]
    Fatal(String),
    /// A configuration value is invalid.
    #[error("invalid config `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The protocol core refused a request or failed.
    #[error(transparent)]
    Raft(#[from] raft_core::Error),
    /// The write-ahead log failed.
    #[error(transparent)]
    Log(#[from] raft_log::Error),
    /// The log storage failed.
    #[error("log storage: {0}")]
    Storage(BoxError),
    /// The state machine failed.
    #[error("state machine: {0}")]
    StateMachine(BoxError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(BoxError),
}

impl Error {
    /// True when retrying the same request may succeed and cannot apply it twice
    /// (the first attempt certainly did not enter the log).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. } | Error::ProposalDropped(_) | Error::Overwritten
        )
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
