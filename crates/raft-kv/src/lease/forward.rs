//! How a member reaches the leader with the lease requests only the leader can answer
//! (`LeaseKeepAlive`, `LeaseTimeToLive`): a [`LeaderChannel`] carries an encoded
//! `kvlease.ForwardRequest` to a member and brings back its `kvlease.ForwardResponse`.
//!
//! raft-kv does not know the transport: raftd implements the channel with raft-net's
//! application request on the peer port (the same connections and (m)TLS as replication, as
//! etcd forwards keep-alives over its peer port), and hands what arrives to
//! [`EtcdService::answer_forwarded`](crate::service::EtcdService::answer_forwarded). The
//! receiver answers from its own lessor only and never forwards again: a member that is not
//! (or not yet) the primary answers `not_leader`, and the sender tries again.

use prost::bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// The future a [`LeaderChannel`] returns: the encoded answer, or why there is none.
pub type ForwardFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'static>>;

/// Carries a forwarded lease request to a member (see the module documentation).
pub trait LeaderChannel: Send + Sync + 'static {
    /// Sends `request` (an encoded `kvlease.ForwardRequest`) to member `to` and returns its
    /// encoded `kvlease.ForwardResponse`. Errors are the transport's (unreachable, timed out).
    fn call(&self, to: u64, request: Bytes) -> ForwardFuture;
}
