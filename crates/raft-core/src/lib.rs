//! The Raft consensus protocol as a deterministic state machine, free of I/O.
//!
//! `raft-core` is the bottom layer of the toolkit and depends on nothing else in it (nor on
//! tokio, tonic, prost, sled or the file system; `cargo xtask ci` checks this). It reads no
//! clock (time arrives as [`RawNode::tick`]) and draws randomness only from a seeded
//! generator, so a run is fully decided by its inputs. All work leaves the node through
//! [`Ready`].
//!
//! # Driving a node
//!
//! A caller owns a [`RawNode`] over a [`LogRead`] (its durable log, e.g. [`MemLog`] or the
//! `raft-log` WAL) and runs a loop:
//!
//! - call [`RawNode::tick`] at a fixed interval (the tick), [`RawNode::step`] for every
//!   message from a peer, and [`RawNode::propose`], [`RawNode::read_index`],
//!   [`RawNode::propose_conf_change`], [`RawNode::transfer_leader`] for client requests;
//! - whenever [`RawNode::has_ready`] is true, take a [`Ready`] with [`RawNode::ready`]
//!   and carry it out as below.
//!
//! # The Ready contract
//!
//! A `Ready` is a list of work the node has decided on but cannot do itself. Its parts
//! are handled in this order:
//!
//! 1. **Persist.** Install `snapshot` (the state machine restores from the snapshot data,
//!    which reached this node out of band, and the log is replaced by it), then append
//!    `entries` (when the first entry's index is not past the last one written, truncate
//!    the log from that index first: a new leader overwrote an uncommitted suffix), then
//!    save `hard_state`. These writes may be done asynchronously and batched with later
//!    Readys, but in order. Once they are durable and visible through [`LogRead`], call
//!    [`RawNode::on_persisted`] with [`Ready::number`] (also for a `Ready` with nothing to
//!    write: acknowledgements are cumulative).
//! 2. **Send.** `messages` may be sent at once, even before the writes start: the leader
//!    replicates its new entries to followers while it writes them itself.
//!    `persisted_messages` must wait until the writes of this `Ready` and every earlier one
//!    are durable: they promise something about local state (a vote granted, entries
//!    appended) that must survive a crash. An `InstallSnapshot` message tells the
//!    transport to stream the snapshot data; report the outcome with
//!    [`RawNode::report_snapshot`].
//! 3. **Apply.** Apply `committed_entries` in order (they are already durable locally,
//!    so apply may run concurrently with the next writes). Entries of kind
//!    [`EntryKind::ConfChange`] carry an encoded [`ConfChange`] ([`confchange::decode`]);
//!    they took effect when they entered the log (`Ready::membership` says so). Report
//!    progress with [`RawNode::on_applied`]; it returns the membership as of the applied
//!    index when a change was among the entries applied, which the caller persists with
//!    its applied index (see [`InitialState::membership`] for what a restart needs).
//! 4. **Read.** Each [`ReadState`] may be answered once the state machine has applied its
//!    `index`.
//! 5. **Answer.** `dropped_proposals` are proposals this node forwarded that were not
//!    appended: answer their callers (retry, or report the outcome as unknown when the
//!    transport may duplicate messages).
//!
//! [`RawNode::advance`] does steps 1 and 3's acknowledgements at once for a caller that
//! handled the whole `Ready` synchronously.
//!
//! The leader's own append is a `Ready` item like a follower's: it counts toward the
//! commit quorum only after [`RawNode::on_persisted`]. Likewise a candidate's vote for
//! itself counts only once its hard state is durable.
//!
//! Log compaction is up to the caller: it may discard entries up to the applied index
//! (recording a snapshot boundary, see [`MemLog::compact`]) and then call
//! [`RawNode::on_compacted`]; when a follower needs discarded entries the leader sends an
//! `InstallSnapshot` instead.
//!
//! # Protocol choices worth knowing
//!
//! - Elections: randomized timeouts in `[base, base + jitter)` ([`Config`]), pre-vote,
//!   check-quorum, leader stickiness (with check-quorum, a node that heard from a leader
//!   within the base timeout ignores vote requests, except those of a leadership transfer),
//!   a minimum leadership period and an election priority.
//! - Proposals: a leader refuses new ones while its uncommitted entries pass
//!   [`Config::max_uncommitted_bytes`]; a follower forwards them to its leader, and gets
//!   back (in [`Ready::dropped_proposals`]) those that were not appended.
//! - Replication: per-peer probe / replicate / snapshot states, an in-flight window in
//!   messages and bytes, batches bounded in entries and bytes; proposals and commit-index
//!   updates are broadcast once per [`RawNode::ready`], so everything proposed between two
//!   Readys travels in one append per peer. Appends left unacknowledged for an election
//!   timeout are resent from the last known match.
//! - Membership: the configuration in force on a node is the latest one in its log,
//!   committed or not (the Raft thesis's rule; `docs/architecture.md` argues its safety
//!   and liveness). Changes go one at a time (the previous one applied, and the leader's
//!   no-op committed); more than one voter changing goes through a joint configuration
//!   (left automatically unless [`ConfChangeTransition::JointExplicit`]). A leader whose
//!   log holds a change ending its vote appends nothing more, and once that change is
//!   applied hands over to the most up-to-date voter (then steps down). A node started
//!   with an empty membership waits for the leader's snapshot to learn it.
//! - Reads: [`RawNode::read_index`] is confirmed by a heartbeat round started after the
//!   read arrived (concurrent reads share a round), or answered at once under a lease
//!   ([`ReadMode::Lease`], which documents its clock-drift margin).
//!
//! # Errors and panics
//!
//! Anything that comes from outside (a storage failure, a bad configuration, a refused
//! request, a malformed message) is an [`Error`]. A broken protocol invariant (e.g. a
//! committed entry about to be overwritten) is a bug and panics with a message saying
//! which invariant broke.
#![deny(missing_docs)]

pub mod confchange;
mod config;
mod entry;
mod error;
mod log_read;
mod mem_log;
mod membership;
mod message;
mod progress;
mod quorum;
mod raft;
mod raft_log;
mod raw_node;
mod read_only;
mod ready;
mod rng;
mod status;
mod tracker;

pub use config::{Config, ReadMode};
pub use entry::{Entry, EntryKind, HardState, NodeId};
pub use error::{DecodeError, Error, Result};
pub use log_read::{InitialState, LogRead, StorageError};
pub use mem_log::MemLog;
pub use membership::{ConfChange, ConfChangeOp, ConfChangeTransition, Membership, SnapshotMeta};
pub use message::{
    Append, AppendResponse, Heartbeat, HeartbeatResponse, Message, MessageBody, ReadIndexRequest,
    ReadIndexResponse, VoteRequest, VoteResponse,
};
pub use progress::ProgressState;
pub use raft::Role;
pub use raw_node::RawNode;
pub use read_only::ReadState;
pub use ready::{Ready, SoftState};
pub use rng::SplitMix64;
pub use status::{PeerProgress, Status};
