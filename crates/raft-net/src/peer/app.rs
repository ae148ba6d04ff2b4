//! Application requests between members: opaque bytes from the application on one member to
//! the one on another, and its answer back (raftd forwards lease keep-alives and TTL queries
//! to the leader this way, as etcd does over its peer port).
//!
//! The sender calls [`PeerTransport::call`](crate::PeerTransport::call); the receiver's
//! transport checks the call like any peer traffic (cluster id, receiver, sender not removed)
//! and hands it to the [`AppHandler`] registered with
//! [`PeerTransport::set_app_handler`](crate::PeerTransport::set_app_handler) (none: the call is
//! refused as `UNIMPLEMENTED`). Calls use a connection of their own per peer (opened on first
//! use like the stream lane's, with the transport's TLS), so they never wait behind appends;
//! it is dropped and opened again after a failure or when the peer is re-added.

use super::{Peer, rpc_error};
use crate::error::{Error, Result};
use crate::pb;
use crate::pb::peer_client::PeerClient;
use crate::shared::Shared;
use crate::transport::Lane;
use bytes::Bytes;
use raft_core::NodeId;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use tonic::transport::Channel;

/// What an [`AppHandler`] returns: the answer's bytes, or why there is none (sent back as an
/// `UNAVAILABLE` status).
pub type AppFuture = Pin<Box<dyn Future<Output = std::result::Result<Bytes, String>> + Send>>;

/// Answers the application requests other members send to this one.
pub trait AppHandler: Send + Sync + 'static {
    /// Answers `payload` from member `from`; `kind` is the sender's name for the request.
    fn handle(&self, from: NodeId, kind: &str, payload: Bytes) -> AppFuture;
}

/// An outbound client and the peer entry it was opened for.
type Client = (Arc<Peer>, PeerClient<Channel>);

/// The transport's application-request state: the handler of inbound calls and the
/// connections of outbound ones.
#[derive(Default)]
pub(crate) struct AppSlot {
    handler: RwLock<Option<Arc<dyn AppHandler>>>,
    /// Per peer: the peer entry the client was opened for, and the client.
    clients: Mutex<HashMap<NodeId, Client>>,
}

impl AppSlot {
    /// Registers the handler of inbound calls (replacing any).
    pub(crate) fn set_handler(&self, handler: Option<Arc<dyn AppHandler>>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = handler;
    }

    fn handler(&self) -> Option<Arc<dyn AppHandler>> {
        self.handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn client(&self, peer: &Arc<Peer>) -> Option<PeerClient<Channel>> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .get(&peer.id)
            .filter(|(p, _)| Arc::ptr_eq(p, peer))
            .map(|(_, c)| c.clone())
    }

    fn keep(&self, peer: &Arc<Peer>, client: PeerClient<Channel>) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.insert(peer.id, (peer.clone(), client));
    }

    fn forget(&self, id: NodeId) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.remove(&id);
    }
}

/// Sends one application request to `peer` and returns the answer's payload.
pub(crate) async fn call(
    shared: &Shared,
    peer: &Arc<Peer>,
    kind: &str,
    payload: Bytes,
) -> Result<Bytes> {
    if shared.is_isolated() {
        return Err(Error::Isolated);
    }
    let mut client = match shared.app.client(peer) {
        Some(c) => c,
        None => {
            let channel = peer.connect(Lane::Stream).await?;
            let c = peer.client(shared, channel);
            shared.app.keep(peer, c.clone());
            c
        }
    };
    let cfg = &shared.config;
    let request = pb::AppRequest {
        cluster_id: cfg.cluster_id,
        from: cfg.node_id,
        to: peer.id,
        kind: kind.to_string(),
        payload,
    };
    match tokio::time::timeout(cfg.request_timeout, client.call(request)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().payload),
        Ok(Err(status)) => {
            if status.code() == tonic::Code::Unavailable || status.code() == tonic::Code::Unknown {
                shared.app.forget(peer.id);
            }
            Err(rpc_error(peer.id, status))
        }
        Err(_) => {
            shared.app.forget(peer.id);
            Err(rpc_error(
                peer.id,
                tonic::Status::deadline_exceeded("no answer within request_timeout"),
            ))
        }
    }
}

/// Answers an inbound call whose header the server has checked.
pub(crate) async fn serve(
    shared: &Shared,
    req: pb::AppRequest,
) -> std::result::Result<pb::AppReply, tonic::Status> {
    let Some(handler) = shared.app.handler() else {
        return Err(tonic::Status::unimplemented(
            "this member handles no application requests",
        ));
    };
    match handler.handle(req.from, &req.kind, req.payload).await {
        Ok(payload) => Ok(pb::AppReply { payload }),
        Err(reason) => Err(tonic::Status::unavailable(reason)),
    }
}
