//! Messages exchanged between nodes. Every one carries the sender's term.

use crate::entry::{Entry, NodeId};
use crate::membership::SnapshotMeta;
use bytes::Bytes;

/// A message from one node to another.
///
/// Local events (ticks, proposals by the application, unreachable peers, snapshot transfer
/// results) are methods of `RawNode`, not messages: everything here crosses the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term the sender would campaign in).
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message and their contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Leader -> follower: entries following (`prev_log_index`, `prev_log_term`).
    Append(Append),
    /// Follower -> leader: the outcome of an [`Append`] or a snapshot install.
    AppendResponse(AppendResponse),
    /// Leader -> follower: "I am alive", with the commit index; never carries entries.
    Heartbeat(Heartbeat),
    /// Follower -> leader: the answer to a [`Heartbeat`].
    HeartbeatResponse(HeartbeatResponse),
    /// Candidate -> voter: a request for a vote or a pre-vote.
    Vote(VoteRequest),
    /// Voter -> candidate: the answer to a [`VoteRequest`].
    VoteResponse(VoteResponse),
    /// Leader -> transfer target: start an election now (leadership transfer).
    TimeoutNow,
    /// Leader -> follower: install the snapshot described here. The snapshot's data moves out
    /// of band (the transport streams it from the snapshot store); this message is delivered
    /// to the receiving node only once the data is on its disk and verified.
    InstallSnapshot(SnapshotMeta),
    /// Follower -> leader: a forwarded linearizable read request.
    ReadIndex(ReadIndexRequest),
    /// Leader -> follower: the read index for a forwarded read request.
    ReadIndexResponse(ReadIndexResponse),
    /// Follower -> leader: forwarded client proposals (index and term are assigned by the
    /// leader; only `kind` and `data` of the entries are meaningful).
    Propose(Vec<Entry>),
    /// Any node -> the node a [`MessageBody::Propose`] came from: these proposals were not
    /// appended for that message (its term was stale, no leader was known to forward them
    /// to, or the leader refused them). They reach the proposer's caller through
    /// `Ready::dropped_proposals`.
    ProposeDropped(Vec<Entry>),
}

/// Leader -> follower log replication.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Append {
    /// Index of the entry just before `entries`.
    pub prev_log_index: u64,
    /// Term of the entry at `prev_log_index` (0 when `prev_log_index` is 0).
    pub prev_log_term: u64,
    /// The entries, consecutive from `prev_log_index + 1`; may be empty (a probe).
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub commit: u64,
}

/// Follower -> leader answer to an append or a snapshot install.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AppendResponse {
    /// On success: the highest index now known to match the leader's log. On rejection: the
    /// `prev_log_index` that did not match.
    pub index: u64,
    /// True when the continuity check failed.
    pub reject: bool,
    /// On rejection, where the logs may match: the follower's last index when its log is
    /// shorter, else the first index of the conflicting term in the follower's log (or the
    /// last index whose term is at most `hint_term`).
    pub hint_index: u64,
    /// On rejection: the term of the follower's entry at `hint_index` (0 if none).
    pub hint_term: u64,
}

/// Leader -> follower keep-alive.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the follower is known to have.
    pub commit: u64,
    /// Non-zero when this heartbeat round also confirms leadership for pending
    /// linearizable reads; echoed in the response.
    pub read_round: u64,
}

/// Follower -> leader answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HeartbeatResponse {
    /// The `read_round` of the heartbeat being answered.
    pub read_round: u64,
}

/// A request for a vote or a pre-vote.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VoteRequest {
    /// A pre-vote: asks "would you vote for me?" without anyone changing term.
    pub pre_vote: bool,
    /// Index of the candidate's last log entry.
    pub last_log_index: u64,
    /// Term of the candidate's last log entry.
    pub last_log_term: u64,
    /// The election follows a leadership transfer, so voters disregard leader stickiness.
    pub transfer: bool,
}

/// The answer to a vote or pre-vote request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VoteResponse {
    /// Answers a pre-vote.
    pub pre_vote: bool,
    /// The vote was granted.
    pub granted: bool,
}

/// A read request forwarded by a follower.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReadIndexRequest {
    /// Opaque to the protocol; returned with the read index.
    pub context: Bytes,
}

/// The read index for a forwarded read request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReadIndexResponse {
    /// The request's context.
    pub context: Bytes,
    /// The commit index the read must wait for before it is served.
    pub index: u64,
}
