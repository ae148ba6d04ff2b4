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

use crate::pb;
use bytes::Bytes;
use raft_core::NodeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

/// What an [`AppHandler`] returns: the answer's bytes, or why there is none (sent back as an
/// `UNAVAILABLE` status).
pub type AppFuture = Pin<Box<dyn Future<Output = std::result::Result<Bytes, String>> + Send>>;

/// Answers the application requests other members send to this one.
pub trait AppHandler: Send + Sync + 'static {
    /// Answers `payload` from member `from`; `kind` is the sender's name for the request.
    fn handle(&self, from: NodeId, kind: &str, payload: Bytes) -> AppFuture;
}

/// The handler of inbound application calls (held by the transport's shared state; the
/// connections of outbound calls live with each peer, see `peer::app`).
#[derive(Default)]
pub(crate) struct AppSlot {
    handler: RwLock<Option<Arc<dyn AppHandler>>>,
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
}

/// Answers an inbound call whose header the server has checked.
pub(crate) async fn serve(
    slot: &AppSlot,
    req: pb::AppRequest,
) -> std::result::Result<pb::AppReply, tonic::Status> {
    let Some(handler) = slot.handler() else {
        return Err(tonic::Status::unimplemented(
            "this member handles no application requests",
        ));
    };
    match handler.handle(req.from, &req.kind, req.payload).await {
        Ok(payload) => Ok(pb::AppReply { payload }),
        Err(reason) => Err(tonic::Status::unavailable(reason)),
    }
}
