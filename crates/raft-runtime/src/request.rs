//! [`Request`]: what a [`RaftHandle`](crate::RaftHandle) sends to its node's event loop.
//!
//! It sits below both the handle (which sends) and the loop in `node` (which receives).

use crate::config::RuntimeConfig;
use crate::error::Result;
use crate::state_machine::StateMachine;
use bytes::Bytes;
use raft_core::{Membership, NodeId, SnapshotMeta, Status};
use std::time::Instant;
use tokio::sync::oneshot;

/// A client request to the event loop.
pub(crate) enum Request<SM: StateMachine> {
    Propose {
        cmd: Bytes,
        tx: oneshot::Sender<Result<SM::Response>>,
        since: Instant,
    },
    ReadIndex {
        tx: oneshot::Sender<Result<u64>>,
    },
    ConfChange {
        change: raft_core::ConfChange,
        tx: oneshot::Sender<Result<Membership>>,
    },
    Transfer {
        target: NodeId,
        tx: oneshot::Sender<Result<()>>,
    },
    Campaign {
        tx: oneshot::Sender<Result<()>>,
    },
    Status {
        tx: oneshot::Sender<Result<Status>>,
    },
    Reconfigure {
        config: Box<RuntimeConfig>,
        tx: oneshot::Sender<Result<()>>,
    },
    Snapshot {
        tx: oneshot::Sender<Result<SnapshotMeta>>,
    },
    Shutdown {
        tx: oneshot::Sender<Result<()>>,
    },
}
