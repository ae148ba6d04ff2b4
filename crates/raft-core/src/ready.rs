//! [`Ready`]: the batch of work a node hands to its caller.

use crate::entry::{Entry, HardState, NodeId};
use crate::membership::{Membership, SnapshotMeta};
use crate::message::Message;
use crate::raft::Role;
use crate::read_only::ReadState;

/// Volatile state worth reporting when it changes (not persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SoftState {
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// This node's role.
    pub role: Role,
}

/// Work to do, in the order described in the crate documentation.
///
/// Every `Ready` must be acknowledged with `RawNode::on_persisted(ready.number())` once
/// its writes (and those of every earlier `Ready`) are durable, even when it holds
/// nothing to write.
#[derive(Debug, Default)]
#[must_use = "a Ready holds work that must be done and acknowledged"]
pub struct Ready {
    pub(crate) number: u64,
    /// The leader or role changed.
    pub soft_state: Option<SoftState>,
    /// The hard state to persist (changed since the previous `Ready`).
    pub hard_state: Option<HardState>,
    /// The configuration in force changed (a change entered the log, an uncommitted one
    /// was overwritten, or a snapshot replaced the log): the new one. Informational (e.g.
    /// to connect to new peers, see `RawNode::peers`); nothing to persist. Boxed: it is
    /// rarely set, and every `Ready` would otherwise carry its 104 bytes.
    pub membership: Option<Box<Membership>>,
    /// A snapshot to install: the state machine restores from it (its data arrived out of
    /// band) and the log is replaced by it. Written before `entries`.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append. When the first one's index is at or below the last index
    /// written, the log is truncated from there first (an uncommitted suffix is
    /// overwritten).
    pub entries: Vec<Entry>,
    /// Messages that may be sent at once, in parallel with the writes.
    pub messages: Vec<Message>,
    /// Messages that may be sent only once the writes of this `Ready` (and of every
    /// earlier one) are durable: vote grants and append acknowledgements.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order. They are all durable locally.
    pub committed_entries: Vec<Entry>,
    /// Linearizable reads that may be served once the state machine has applied their
    /// index.
    pub read_states: Vec<ReadState>,
    /// Proposals this node forwarded that were not appended (see
    /// [`MessageBody::ProposeDropped`](crate::MessageBody)): their callers get an answer
    /// instead of waiting for a timeout. Not appended for that message does not prove never
    /// appended when the transport may duplicate messages; a caller that cannot rule that
    /// out treats the outcome as unknown.
    pub dropped_proposals: Vec<Entry>,
}

impl Ready {
    /// The sequence number to pass to `RawNode::on_persisted`.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// True when something must be written before `persisted_messages` are sent.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}
