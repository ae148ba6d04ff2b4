//! [`NetTransport`]: raft-net's `PeerTransport` as raft-runtime's `Transport`, dialling
//! members at their [`AddressBook`] entry and streaming snapshot chains from the node's store.

use crate::node::snapshots::StoreSource;
use bytes::Bytes;
use raft_core::{Message, MessageBody, NodeId};
use raft_kv::address_book::AddressBook;
use raft_runtime::{BoxError, BoxFuture, Transport};
use raft_snapshot::SnapshotStore;
use std::sync::Arc;

/// raft-net's transport as the runtime's, dialling members at their [`AddressBook`] entry.
pub struct NetTransport {
    net: raft_net::PeerTransport,
    book: AddressBook,
    snapshots: Option<SnapshotStore>,
}

impl NetTransport {
    /// Wraps `net`.
    pub fn new(net: raft_net::PeerTransport, book: AddressBook) -> Self {
        Self {
            net,
            book,
            snapshots: None,
        }
    }

    /// Streams snapshots from `store` to followers that need them.
    pub fn with_snapshot_store(mut self, store: SnapshotStore) -> Self {
        self.snapshots = Some(store);
        self
    }
}

impl Transport for NetTransport {
    fn send(&self, msg: Message) {
        let to = msg.to;
        if let Err(e) = self.net.send(msg) {
            tracing::trace!(to, %e, "message dropped");
        }
    }

    fn send_snapshot(&self, mut msg: Message) -> BoxFuture<Result<(), BoxError>> {
        let net = self.net.clone();
        let store = self.snapshots.clone();
        Box::pin(async move {
            let MessageBody::InstallSnapshot(meta) = &msg.body else {
                return Err("send_snapshot needs an InstallSnapshot message".into());
            };
            if meta.index == 0 {
                // The bootstrap snapshot of a joining node carries no data.
                return net
                    .send_snapshot(msg, Arc::new(Bytes::new()))
                    .await
                    .map_err(|e| Box::new(e) as BoxError);
            }
            let store = store.ok_or("this node keeps no snapshot store")?;
            let wanted = meta.index;
            let source = tokio::task::spawn_blocking(move || StoreSource::latest(&store))
                .await
                .map_err(|e| Box::new(e) as BoxError)??;
            // The current chain covers at least what the log was compacted to (snapshots
            // are taken at the applied index, which may be past the index asked for); the
            // follower installs and restores exactly what it receives, so the message
            // names the chain's tip.
            let tip = source.meta();
            if tip.index < wanted {
                return Err(format!(
                    "the newest snapshot is at index {}, older than the {wanted} asked for",
                    tip.index
                )
                .into());
            }
            msg.body = MessageBody::InstallSnapshot(tip);
            net.send_snapshot(msg, Arc::new(source))
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }

    fn add_peer(&self, id: NodeId) {
        match self.book.get(id) {
            Some(addr) => {
                if let Err(e) = self.net.add_peer(id, addr) {
                    tracing::warn!(peer = id, %e, "cannot add peer");
                }
            }
            None => tracing::warn!(peer = id, "no known address for peer"),
        }
    }

    fn remove_peer(&self, id: NodeId) {
        self.net.remove_peer(id);
    }
}
