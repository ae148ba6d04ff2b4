//! raftd's snapshot plumbing between `raft-snapshot`'s store and `raft-net`: the chain a
//! leader streams to a follower ([`StoreSource`]) and where a follower stores what it
//! receives ([`StoreSink`]: resumable, verified, installed atomically).

use bytes::Bytes;
use parking_lot::Mutex;
use raft_core::{NodeId, SnapshotMeta};
use raft_snapshot::{ChainTransfer, IncomingTransfer, SnapshotStore};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

/// raft-net's boxed future (`futures_util::future::BoxFuture`).
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A chain of the snapshot store as the bytes raft-net streams (the bundle of
/// [`ChainTransfer`]); the chain stays leased against garbage collection while this lives.
pub struct StoreSource {
    transfer: Arc<Mutex<ChainTransfer>>,
    len: u64,
}

impl StoreSource {
    /// The current chain of `store` (the newest snapshot and its ancestors).
    pub fn latest(store: &SnapshotStore) -> raft_snapshot::Result<Self> {
        let transfer = ChainTransfer::new(store, None)?;
        Ok(Self {
            len: transfer.total_len(),
            transfer: Arc::new(Mutex::new(transfer)),
        })
    }

    /// What restoring the chain gives: the tip's index, term and membership.
    pub fn meta(&self) -> SnapshotMeta {
        self.transfer.lock().chain().tip().meta()
    }
}

impl raft_net::SnapshotSource for StoreSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, max_len: usize) -> BoxFuture<'_, io::Result<Bytes>> {
        let transfer = self.transfer.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(max_len);
                let mut t = transfer.lock();
                // ChainTransfer hands out at most 1 MiB per call.
                while out.len() < max_len {
                    let pos = offset + out.len() as u64;
                    if pos >= t.total_len() {
                        break;
                    }
                    let chunk = t.read_at(pos, max_len - out.len()).map_err(io_err)?;
                    if chunk.data.is_empty() {
                        break;
                    }
                    out.extend_from_slice(&chunk.data);
                }
                Ok(Bytes::from(out))
            })
            .await
            .map_err(io_err)?
        })
    }
}

/// Incoming snapshots written into the node's [`SnapshotStore`] through
/// [`IncomingTransfer`]: every chunk is stored and fsynced with its progress (a broken
/// transfer resumes there, also after a restart), and `finish` verifies the whole bundle
/// and every file before the chain becomes current in one manifest update. Only then does
/// raft-net hand the node its `InstallSnapshot` message, and the state machine restores the
/// chain. The empty bootstrap snapshot (index 0) carries no data and is only acknowledged.
pub struct StoreSink {
    store: SnapshotStore,
    open: Arc<Mutex<HashMap<String, IncomingTransfer>>>,
}

impl StoreSink {
    /// A sink writing into `store`.
    pub fn new(store: SnapshotStore) -> Self {
        Self {
            store,
            open: Arc::default(),
        }
    }

    fn key(from: NodeId, meta: &SnapshotMeta, total_len: u64) -> String {
        format!("{from}-{}-{}-{total_len}", meta.index, meta.term)
    }

    fn is_bootstrap(meta: &SnapshotMeta, total_len: u64) -> bool {
        meta.index == 0 && total_len == 0
    }

    /// Runs `f` on the open transfer `key` (opening or resuming it with `total_len`) on a
    /// blocking thread.
    async fn with_transfer<T: Send + 'static>(
        &self,
        key: String,
        total_len: u64,
        f: impl FnOnce(&mut IncomingTransfer) -> raft_snapshot::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (store, open) = (self.store.clone(), self.open.clone());
        tokio::task::spawn_blocking(move || {
            let mut open = open.lock();
            if !open.contains_key(&key) {
                // Transfers from earlier leaders or of older snapshots are abandoned.
                open.clear();
                store.remove_incoming(Some(&key)).map_err(io_err)?;
                let t = IncomingTransfer::begin(&store, &key, total_len).map_err(io_err)?;
                open.insert(key.clone(), t);
            }
            let t = open.get_mut(&key).expect("inserted above");
            f(t).map_err(io_err)
        })
        .await
        .map_err(io_err)?
    }
}

impl raft_net::SnapshotSink for StoreSink {
    fn stored_len<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        total_len: u64,
    ) -> BoxFuture<'a, io::Result<u64>> {
        Box::pin(async move {
            if Self::is_bootstrap(meta, total_len) {
                return Ok(0);
            }
            self.with_transfer(Self::key(from, meta, total_len), total_len, |t| {
                Ok(t.received())
            })
            .await
        })
    }

    fn write_chunk<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        offset: u64,
        data: Bytes,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if data.is_empty() {
                // The bootstrap snapshot's only chunk (nothing to store).
                return Ok(());
            }
            // The total length is part of the key; find the open transfer of this sender
            // and snapshot.
            let prefix = format!("{from}-{}-{}-", meta.index, meta.term);
            let (key, total_len) = {
                let open = self.open.lock();
                let found = open
                    .iter()
                    .find(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, t)| (k.clone(), t.total_len()));
                found.ok_or_else(|| io_err("chunk for a transfer that was not started"))?
            };
            self.with_transfer(key, total_len, move |t| {
                t.write_chunk(offset, &data, None).map(|_| ())
            })
            .await
        })
    }

    fn finish<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        total_len: u64,
        checksum: u32,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if Self::is_bootstrap(meta, total_len) {
                return Ok(());
            }
            let key = Self::key(from, meta, total_len);
            let transfer = self.open.lock().remove(&key);
            let transfer =
                transfer.ok_or_else(|| io_err("finish of a transfer that was not started"))?;
            let index = meta.index;
            tokio::task::spawn_blocking(move || {
                let chain = transfer.finish(Some(checksum)).map_err(io_err)?;
                if chain.tip().index != index {
                    return Err(io_err(format!(
                        "received chain ends at index {}, the message says {index}",
                        chain.tip().index
                    )));
                }
                tracing::info!(
                    from,
                    index,
                    snapshots = chain.len(),
                    "snapshot chain received and installed"
                );
                Ok(())
            })
            .await
            .map_err(io_err)?
        })
    }
}
