//! [`PeerTransport`]: the handle the runtime drives: peers in and out, non-blocking sends,
//! snapshot transfers, and serving the inbound side on a listener.

use crate::config::{CompressionConfig, TlsConfig, TransportConfig};
use crate::convert::message_size;
use crate::error::{Error, Result};
use crate::lane::Lane;
use crate::netrt::NetRuntime;
use crate::peer::{Peer, run_lane, transfer_snapshot};
use crate::server::{ServerHandle, serve};
use crate::shared::{Inbound, Shared};
use crate::snapshot::SnapshotSource;
use metrics::counter;
use raft_core::{Message, MessageBody, NodeId};
use raft_metrics::net as m;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

struct PeerEntry {
    peer: Arc<Peer>,
    tasks: [JoinHandle<()>; 2],
}

impl PeerEntry {
    fn stop(&self) {
        self.peer.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    peers: RwLock<HashMap<NodeId, PeerEntry>>,
    /// The bulk runtime: append streams and snapshot transfers run here.
    bulk: Arc<NetRuntime>,
    /// The network thread: light lanes run here.
    net: Arc<NetRuntime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let peers = self.peers.get_mut().unwrap_or_else(|e| e.into_inner());
        for entry in peers.values() {
            entry.stop();
        }
    }
}

/// The peer transport of one node. Cheap to clone (all clones share the same peers);
/// dropping the last clone stops every outbound worker.
///
/// ```no_run
/// # async fn demo() -> raft_net::Result<()> {
/// use raft_net::{Inbound, MemorySnapshotSink, PeerTransport, TransportConfig};
/// use std::sync::Arc;
/// let (inbound, mut rx) = Inbound::channels(1024, Arc::new(MemorySnapshotSink::new()));
/// let transport = PeerTransport::new(TransportConfig::new(1, 0xC1), inbound)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = transport.serve(listener)?;
/// transport.add_peer(2, "127.0.0.1:7002")?;
/// // transport.send(msg)?;  // never blocks
/// while let Some(msg) = rx.messages.recv().await { /* step the node */ }
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PeerTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field("node_id", &self.inner.shared.config.node_id)
            .finish_non_exhaustive()
    }
}

impl PeerTransport {
    /// A transport for `config.node_id`, delivering to `inbound`.
    ///
    /// The transport runs on threads of its own, not on the caller's runtime: the light
    /// lanes (both directions) on a network thread whose nice value changes by
    /// `config.network_nice` (raised by default, when the process may) and which runs at
    /// the real-time priority `config.network_realtime_priority` (when the process may;
    /// 0: none), the append streams
    /// and snapshot transfers on a bulk runtime of `config.bulk_threads` threads whose
    /// priority is lowered by `config.bulk_nice`. So heartbeats, votes and the caller's tasks (the Raft
    /// loop reading [`Inbound`]'s channels) are not scheduled behind the CPU work of big
    /// appends.
    pub fn new(config: TransportConfig, inbound: Inbound) -> Result<Self> {
        let net = Arc::new(NetRuntime::start(
            config.node_id,
            config.network_nice,
            config.network_realtime_priority,
        )?);
        let bulk = Arc::new(NetRuntime::start_bulk(
            config.node_id,
            config.bulk_threads,
            config.bulk_nice,
        )?);
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(config, inbound)?),
                peers: RwLock::new(HashMap::new()),
                bulk,
                net,
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.shared.config.node_id
    }

    /// The configuration the transport was created with (see
    /// [`compression`](Self::compression) for the compression in force).
    pub fn config(&self) -> &TransportConfig {
        &self.inner.shared.config
    }

    /// The compression applied to frames and snapshot chunks built from now on.
    pub fn compression(&self) -> CompressionConfig {
        self.inner.shared.compression()
    }

    /// Changes the codec and threshold at run time: frames built from now on use them
    /// (receivers read the codec from each frame, so peers need no coordination).
    pub fn set_compression(&self, compression: CompressionConfig) {
        self.inner.shared.set_compression(compression);
    }

    /// The fault switch, for failure drills and tests: while on, this node neither sends
    /// (messages are dropped and their peers reported unreachable, snapshot transfers
    /// fail) nor accepts frames, probes or snapshot chunks (refused as UNAVAILABLE), as if
    /// the network cut it off. Connections themselves stay up.
    pub fn set_isolated(&self, isolated: bool) {
        self.inner.shared.set_isolated(isolated);
    }

    /// Replaces the peer certificate, key and CA (PEM) for connections made or accepted
    /// from now on; established connections keep theirs. The server name, the cluster
    /// name of member URIs and whether client certificates are required stay as they were
    /// at start. Refused when the transport was started without TLS (TLS cannot be turned
    /// on or off at run time); on any error the old settings stay.
    pub fn set_tls(&self, tls: &TlsConfig) -> Result<()> {
        match &self.inner.shared.tls {
            Some(current) => current.reload(tls),
            None => Err(Error::Config(
                "the transport was started without TLS; TLS cannot be turned on at run time".into(),
            )),
        }
    }

    /// True while the fault switch is on.
    pub fn is_isolated(&self) -> bool {
        self.inner.shared.is_isolated()
    }

    /// Adds (or re-addresses) peer `id` at `addr` (`host:port`). Nothing connects until the
    /// first message is queued. A peer added again after [`remove_peer`](Self::remove_peer)
    /// is accepted again.
    pub fn add_peer(&self, id: NodeId, addr: impl Into<String>) -> Result<()> {
        let shared = &self.inner.shared;
        if id == 0 || id == shared.config.node_id {
            return Err(Error::Config(format!("cannot add peer {id}")));
        }
        let peer = Arc::new(Peer::new(shared, id, &addr.into())?);
        let node_id = shared.config.node_id;
        let stream = self.inner.bulk.handle().spawn(
            run_lane(shared.clone(), peer.clone(), Lane::Stream).instrument(info_span!(
                "peer_stream",
                node_id,
                peer = id
            )),
        );
        let light = self.inner.net.handle().spawn(
            run_lane(shared.clone(), peer.clone(), Lane::Light).instrument(info_span!(
                "peer_light",
                node_id,
                peer = id
            )),
        );
        shared.set_removed(id, false);
        let old = self.peers_mut().insert(
            id,
            PeerEntry {
                peer,
                tasks: [stream, light],
            },
        );
        if let Some(old) = old {
            old.stop();
        }
        Ok(())
    }

    /// Removes peer `id` from the cluster: stops sending to it, drops what is queued for it,
    /// and refuses its frames from now on.
    pub fn remove_peer(&self, id: NodeId) {
        self.inner.shared.set_removed(id, true);
        if let Some(entry) = self.peers_mut().remove(&id) {
            entry.stop();
        }
    }

    /// Forgets every peer and stops every outbound worker (the inbound server is stopped
    /// through its [`ServerHandle`]).
    pub fn close(&self) {
        for (_, entry) in self.peers_mut().drain() {
            entry.stop();
        }
    }

    fn peers_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, PeerEntry>> {
        self.inner.peers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        let peers = self.inner.peers.read().unwrap_or_else(|e| e.into_inner());
        peers.get(&id).map(|e| e.peer.clone())
    }

    /// Queues `msg` for `msg.to` and returns at once; never blocks or awaits.
    ///
    /// When the peer is unknown or its queue is full (in messages or bytes), the message is
    /// dropped, the peer is reported on [`Inbound::unreachable`], and the error says why.
    /// Raft tolerates lost messages; the report lets the runtime pause replication to it.
    pub fn send(&self, msg: Message) -> Result<()> {
        let to = msg.to;
        let Some(lane) = Lane::of(&msg) else {
            return Err(Error::Snapshot(
                "InstallSnapshot goes through send_snapshot, with its data".into(),
            ));
        };
        if self.inner.shared.is_isolated() {
            counter!(m::MESSAGES_DROPPED, "reason" => "isolated").increment(1);
            self.inner.shared.report_unreachable(to);
            return Err(Error::Isolated);
        }
        let Some(peer) = self.peer(to) else {
            counter!(m::MESSAGES_DROPPED, "reason" => "unknown_peer").increment(1);
            self.inner.shared.report_unreachable(to);
            return Err(Error::UnknownPeer(to));
        };
        let queue = match lane {
            Lane::Stream => &peer.stream_q,
            Lane::Light => &peer.light_q,
        };
        let size = message_size(&msg);
        if !queue.push(msg, size) {
            counter!(m::MESSAGES_DROPPED, "reason" => "queue_full").increment(1);
            self.inner.shared.report_unreachable(to);
            return Err(Error::QueueFull(to));
        }
        Ok(())
    }

    /// Streams a snapshot to `msg.to`: `msg` is the `InstallSnapshot` message from the node
    /// (its term and metadata travel with the data) and `source` gives the data. Returns once
    /// the receiver has stored and verified it (and handed the `InstallSnapshot` message to
    /// its node), resuming a broken transfer where it stopped, up to
    /// `config.snapshot_attempts` attempts. Runs on its own connection, beside the streams,
    /// on the transport's bulk runtime; dropping the returned future stops the transfer.
    pub async fn send_snapshot(&self, msg: Message, source: Arc<dyn SnapshotSource>) -> Result<()> {
        let MessageBody::InstallSnapshot(meta) = msg.body else {
            return Err(Error::Snapshot(
                "send_snapshot needs an InstallSnapshot message".into(),
            ));
        };
        let peer = self.peer(msg.to).ok_or(Error::UnknownPeer(msg.to))?;
        let span = info_span!(
            "snapshot_out",
            node_id = self.node_id(),
            term = msg.term,
            peer = msg.to,
            index = meta.index
        );
        let shared = self.inner.shared.clone();
        let transfer = async move {
            transfer_snapshot(&shared, &peer, msg.term, &meta, source.as_ref()).await
        };
        let mut task = AbortOnDrop(self.inner.bulk.handle().spawn(transfer.instrument(span)));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) => Err(Error::Snapshot(format!(
                "snapshot transfer task failed: {e}"
            ))),
        }
    }

    /// Sends an application request (opaque `payload`, `kind` naming the handler) to peer
    /// `to` and returns its answer; see [`AppHandler`](crate::AppHandler). Runs on the
    /// transport's bulk runtime, on a connection of its own to the peer; waits at most
    /// `request_timeout` for the answer.
    pub async fn call(
        &self,
        to: NodeId,
        kind: &str,
        payload: bytes::Bytes,
    ) -> Result<bytes::Bytes> {
        let peer = self.peer(to).ok_or(Error::UnknownPeer(to))?;
        let shared = self.inner.shared.clone();
        let kind = kind.to_string();
        let task = async move { crate::peer::app::call(&shared, &peer, &kind, payload).await };
        let mut task = AbortOnDrop(self.inner.bulk.handle().spawn(task));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) => Err(Error::Shutdown).inspect_err(|_| {
                tracing::debug!(%e, peer = to, "application request task failed");
            }),
        }
    }

    /// Registers the handler of the application requests other members send to this one
    /// (`None`: they are refused as `UNIMPLEMENTED`).
    pub fn set_app_handler(&self, handler: Option<std::sync::Arc<dyn crate::AppHandler>>) {
        self.inner.shared.app.set_handler(handler);
    }

    /// Serves this node's inbound side on `listener` (bind port 0 in tests) in a new task.
    /// Frames from another cluster, for another node, from a removed member or from any id
    /// that is not a peer ([`add_peer`](Self::add_peer)) are refused; so is anything over
    /// `max_message_size`. With TLS configured, only peers presenting a certificate signed
    /// by the cluster CA can connect (unless client certificates are optional), and with a
    /// cluster name a connection speaks only for the member its certificate names.
    pub fn serve(&self, listener: TcpListener) -> Result<ServerHandle> {
        serve(
            self.inner.shared.clone(),
            listener,
            self.inner.net.clone(),
            self.inner.bulk.clone(),
        )
    }
}

/// Aborts the task when dropped (a caller that stops waiting stops the work).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
