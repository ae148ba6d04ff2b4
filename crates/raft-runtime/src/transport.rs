//! The [`Transport`] trait: how the runtime reaches its peers, and what comes back.

use crate::error::BoxError;
use raft_core::{Message, NodeId};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The outbound side of a node's network (e.g. `raft-net`'s `PeerTransport`, adapted).
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for `msg.to` and returns at once; never blocks. A message that cannot be
    /// queued is dropped (Raft tolerates loss) and the peer reported on
    /// [`Inbound::unreachable`].
    fn send(&self, msg: Message);

    /// Streams the snapshot named by `msg` (an `InstallSnapshot` message) with its data to
    /// `msg.to`; completes once the receiver stored and verified it (and its node got the
    /// message), or failed. Where the data comes from is the transport's business (the
    /// snapshot store the state machine wrote it to).
    fn send_snapshot(&self, msg: Message) -> BoxFuture<Result<(), BoxError>>;

    /// Start talking to `id` (the transport knows or resolves its address). Called for every
    /// member at start and when one joins, and for a node that sent a message while not a
    /// known member (a joining node hears from the leader before it knows the membership).
    fn add_peer(&self, id: NodeId);

    /// `id` left the membership: stop talking to it (and refuse its messages).
    fn remove_peer(&self, id: NodeId);
}

/// What the network hands the runtime (e.g. `raft-net`'s `InboundReceivers`).
#[derive(Debug)]
pub struct Inbound {
    /// Messages from peers.
    pub messages: mpsc::Receiver<Message>,
    /// Light messages (heartbeats, votes and their answers) that the transport keeps apart
    /// from `messages`, so they never wait behind queued appends: the loop steps them first.
    /// `None` when every message arrives on `messages`.
    pub priority: Option<mpsc::Receiver<Message>>,
    /// Peers found unreachable (failed connections, dropped messages).
    pub unreachable: mpsc::Receiver<NodeId>,
}
