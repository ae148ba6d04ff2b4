//! The tokio event loop that drives a `raft-core` node.
//!
//! Responsibility: own a `RawNode`, feed it ticks from a timer and messages from the
//! transport, and carry out each `Ready` exactly by its contract (persist through the log,
//! send through the transport, apply through the state machine off the protocol loop,
//! then advance), batching client proposals so that many share one fsync. It offers the
//! [`StateMachine`], [`Transport`] and [`LogStore`] traits and a [`RaftHandle`] to callers.
//!
//! May depend on: `raft-core`, `raft-log`, `raft-metrics` and tokio. Never on a concrete
//! transport or state machine: those are plugged in by the node binary.
//!
//! # Shape
//!
//! [`RaftNode::start`] spawns two workers and returns a [`RaftHandle`]:
//!
//! - the **event loop** (a tokio task) owns the `RawNode`. It selects over a tick interval,
//!   inbound messages, unreachable reports, client requests and completion events. Client
//!   proposals waiting in the request channel are drained into one `propose_batch`, so they
//!   land in one `Ready` and one log write. It never waits on the disk or the network:
//!   log writes complete through a callback that posts an event back into the loop, and
//!   snapshot transfers run in their own tasks. It is two parts: a *group* (one Raft
//!   group's state and the logic that carries out its `Ready`s) and a *driver* (the task,
//!   its ticker and channels) that hands each input to the group; the split is the seam
//!   where hosting many Raft groups in one process would go (`docs/architecture.md`).
//! - the **apply worker** (a dedicated thread, since state machines such as sled block)
//!   receives committed entries in order, applies them in batches and answers the clients
//!   whose proposals they carry, then reports the applied index to the loop. A small
//!   batch that a client of this node waits for is applied by the loop itself when the
//!   worker has nothing of the loop's queued (`RuntimeConfig::apply_inline_max_entries`):
//!   one thread hand-off less per write. The state machine sits behind a mutex the two
//!   share; the count of queued jobs keeps entries, restores and snapshot captures in log
//!   order whichever of them runs it. A snapshot is described by the state it captures
//!   (the index actually applied when the capture runs, its term and membership).
//!
//! # How a `Ready` is handled
//!
//! 1. `messages` go to the transport at once, so the leader replicates while it writes its
//!    own log; `InstallSnapshot` messages are streamed by [`Transport::send_snapshot`] in a
//!    task and the outcome is reported with `report_snapshot`.
//! 2. `snapshot`, `entries` and `hard_state` are submitted to the [`LogStore`] without
//!    waiting; a snapshot is also restored into the state machine by the apply worker.
//!    When every write of that `Ready` and of each earlier one is done, the loop calls
//!    `on_persisted(number)`. `persisted_messages` go out only then too; when the log write
//!    is the only thing they wait for (no snapshot restore in flight), the write's
//!    completion sends them itself, on the log's thread, without waiting for the loop.
//! 3. `committed_entries` go to the apply worker; its report leads to `on_applied`, which
//!    returns the membership as of the applied index after a change (a removed peer is
//!    dropped from the transport then). A configuration takes effect once in the log:
//!    `Ready::membership` makes the transport connect to new peers (`RawNode::peers`)
//!    before the `Ready`'s messages go out.
//! 4. `read_states` wait until the applied index reaches their index;
//!    `dropped_proposals` (forwarded proposals the leader did not append) fail their
//!    callers with `ProposalDropped` at once.
//!
//! # Proposals and forwarding
//!
//! Every command is wrapped in a small [`envelope`] naming the proposing node and a
//! request id, so the node that received the client's request recognises the entry when it
//! is applied, whichever node led when it was appended. A follower hands proposals to
//! `raft-core`, which forwards them to the leader; clients never look for the leader.
//! When the leader a proposal was sent to (or appended by) loses its leadership before the
//! entry was seen committed, the proposal fails with [`Error::LeaderChanged`] (its outcome is
//! unknown: retry only idempotent commands, or read first).
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use raft_runtime::{
//!     BoxError, BoxFuture, Committed, Inbound, Membership, Message, NodeId, Payload, RaftNode,
//!     RuntimeConfig, StateMachine, Transport, WalStore,
//! };
//! use std::sync::Arc;
//!
//! /// Counts the commands it applies; answers each with the count so far.
//! #[derive(Default)]
//! struct Counter { applied: u64, count: u64 }
//!
//! impl StateMachine for Counter {
//!     type Response = u64;
//!     fn apply(&mut self, batch: &[Committed]) -> Result<Vec<u64>, BoxError> {
//!         Ok(batch.iter().map(|e| {
//!             self.applied = e.index;
//!             if let Payload::Command(_) = e.payload { self.count += 1; }
//!             self.count
//!         }).collect())
//!     }
//!     fn applied_index(&self) -> u64 { self.applied }
//! }
//!
//! /// A single node talks to nobody.
//! struct Alone;
//! impl Transport for Alone {
//!     fn send(&self, _msg: Message) {}
//!     fn send_snapshot(&self, _msg: Message) -> BoxFuture<Result<(), BoxError>> {
//!         Box::pin(async { Err("no peers".into()) })
//!     }
//!     fn add_peer(&self, _id: NodeId) {}
//!     fn remove_peer(&self, _id: NodeId) {}
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let wal = Arc::new(raft_log::Wal::open("/tmp/raft-demo", raft_log::Settings::default())?);
//! let mut config = RuntimeConfig::new(1);
//! config.bootstrap = Some(Membership::with_voters([1]));
//! let (_tx, messages) = tokio::sync::mpsc::channel(1024);
//! let (_utx, unreachable) = tokio::sync::mpsc::channel(16);
//! let node = RaftNode::start(
//!     config,
//!     WalStore::new(wal),
//!     Counter::default(),
//!     Arc::new(Alone),
//!     Inbound { messages, priority: None, unreachable },
//! )
//! .await?;
//! let count = node.propose(Bytes::from_static(b"+1")).await?; // applied when it returns
//! node.read_index().await?; // linearizable barrier
//! let now = node.serializable_read(|c: &Counter| c.count).await?;
//! assert_eq!(count, now);
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod apply;
mod config;
pub mod envelope;
mod error;
mod handle;
mod node;
mod request;
mod state_machine;
mod storage;
mod transport;

pub use config::RuntimeConfig;
pub use error::{BoxError, Error, Result};
pub use handle::{RaftHandle, RuntimeStats};
pub use node::RaftNode;
pub use state_machine::{Committed, Payload, SnapshotBuilder, StateMachine};
pub use storage::{Done, LogStore, LogWrite, MemStore, WalStore};
pub use transport::{BoxFuture, Inbound, Transport};

pub use raft_core::{
    ConfChange, ConfChangeOp, ConfChangeTransition, Membership, Message, NodeId, ReadMode, Role,
    SnapshotMeta, Status,
};
