//! The Raft consensus protocol as a deterministic state machine, free of I/O.
//!
//! `raft-core` is the bottom layer of the toolkit and depends on nothing else in it (nor on
//! tokio, tonic, prost, sled or the file system; `cargo xtask ci` checks this). It reads no
//! clock (time arrives as ticks) and draws randomness only from an injected seeded generator,
//! so a run is fully decided by its inputs. All work leaves the node through `Ready`: the
//! caller persists, sends and applies, then calls `advance`.
//!
//! The protocol itself (elections, replication, membership, reads, snapshots) lands with its
//! own issue; see `docs/architecture.md` for the contract every other crate builds on.
#![deny(missing_docs)]

mod entry;
mod log_read;
mod membership;
mod message;

pub use entry::{Entry, EntryKind, HardState, NodeId};
pub use log_read::{InitialState, LogRead, StorageError};
pub use membership::{ConfChange, ConfChangeOp, ConfChangeTransition, Membership, SnapshotMeta};
pub use message::{
    Append, AppendResponse, Heartbeat, HeartbeatResponse, Message, MessageBody, ReadIndexRequest,
    ReadIndexResponse, VoteRequest, VoteResponse,
};
