//! Lease forwarding over the peer port: raft-kv's [`LeaderChannel`] on raft-net's
//! application requests (kind [`LEASE_KIND`]), and the handler that answers them from this
//! member's etcd services.

use bytes::Bytes;
use raft_core::NodeId;
use raft_kv::lease::forward::{ForwardFuture, LeaderChannel};
use raft_kv::service::EtcdService;
use raft_net::{AppFuture, AppHandler, PeerTransport};

/// The application-request kind of forwarded lease requests.
pub const LEASE_KIND: &str = "etcd.lease";

/// Sends forwarded lease requests to the leader over the peer transport.
pub struct PeerChannel(pub PeerTransport);

impl LeaderChannel for PeerChannel {
    fn call(&self, to: u64, request: Bytes) -> ForwardFuture {
        let net = self.0.clone();
        Box::pin(async move {
            net.call(to, LEASE_KIND, request)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Answers forwarded lease requests, and the leader's `HashKV` requests of the corruption
/// check (kind [`HASHKV_KIND`](super::corruption::HASHKV_KIND)), with this member's services.
pub struct LeaseHandler(pub EtcdService);

impl AppHandler for LeaseHandler {
    fn handle(&self, from: NodeId, kind: &str, payload: Bytes) -> AppFuture {
        let svc = self.0.clone();
        if kind == super::corruption::HASHKV_KIND {
            return Box::pin(async move {
                svc.answer_hash_kv(payload)
                    .await
                    .map_err(|status| status.message().to_string())
            });
        }
        if kind != LEASE_KIND {
            let kind = kind.to_string();
            return Box::pin(async move { Err(format!("unknown request kind {kind:?}")) });
        }
        Box::pin(async move {
            svc.answer_forwarded(payload).await.map_err(|status| {
                tracing::debug!(from, %status, "forwarded lease request");
                status.message().to_string()
            })
        })
    }
}
