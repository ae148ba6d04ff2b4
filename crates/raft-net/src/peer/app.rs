//! The sending side of application requests (see [`crate::app`]): each call goes over a
//! connection of the peer's own, opened on first use like the stream lane's (with the
//! transport's TLS), so calls never wait behind appends; the connection is dropped and
//! opened again after a failure, and a re-added peer starts without one.

use super::{Peer, rpc_error};
use crate::error::{Error, Result};
use crate::lane::Lane;
use crate::pb;
use crate::shared::Shared;
use bytes::Bytes;
use std::sync::Arc;

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
    let mut client = match peer.app_client() {
        Some(c) => c,
        None => {
            let channel = peer.connect(Lane::Stream).await?;
            let c = peer.client(shared, channel);
            peer.keep_app_client(Some(c.clone()));
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
                peer.keep_app_client(None);
            }
            Err(rpc_error(peer.id, status))
        }
        Err(_) => {
            peer.keep_app_client(None);
            Err(rpc_error(
                peer.id,
                tonic::Status::deadline_exceeded("no answer within request_timeout"),
            ))
        }
    }
}
