//! State shared by the transport's handle, its per-peer workers and its server: config,
//! the channels to the runtime, the member and removed-member sets and the TLS settings.

use crate::config::{CompressionConfig, TransportConfig};
use crate::error::{Error, Result};
use crate::snapshot::SnapshotSink;
use crate::tls::PeerTls;
use metrics::counter;
use raft_core::{Message, NodeId};
use raft_metrics::net as m;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// Where the transport hands what arrives and what fails to the runtime.
pub struct Inbound {
    /// Every message received from a peer (and the `InstallSnapshot` message once a
    /// snapshot's data is stored and verified), except those going to `priority`. Bounded:
    /// a slow runtime slows the senders down through HTTP/2 flow control instead of growing
    /// memory.
    pub messages: mpsc::Sender<Message>,
    /// When set, messages of the light lane (heartbeats, votes, responses, TimeoutNow,
    /// read-index traffic) arrive here instead, so they never wait in `messages` behind
    /// appends. [`InboundReceivers::recv`] reads both, this one first.
    pub priority: Option<mpsc::Sender<Message>>,
    /// Peers found unreachable: a connection failed or broke, or their send queue was full
    /// and messages were dropped. Reports are best effort: when this channel is full, further
    /// reports are dropped (the runtime already has one pending).
    pub unreachable: mpsc::Sender<NodeId>,
    /// Where incoming snapshot data is stored.
    pub snapshots: Arc<dyn SnapshotSink>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

/// The receiving ends of the channels an [`Inbound`] made with [`Inbound::channels`].
#[derive(Debug)]
pub struct InboundReceivers {
    /// Messages from peers (appends, proposals, snapshot installs).
    pub messages: mpsc::Receiver<Message>,
    /// Light-lane messages from peers (heartbeats, votes, responses...), when made with
    /// [`Inbound::channels_with_priority`]; `None` means they arrive on `messages`.
    pub priority: Option<mpsc::Receiver<Message>>,
    /// Unreachable peers.
    pub unreachable: mpsc::Receiver<NodeId>,
}

impl InboundReceivers {
    /// The next message from any peer, light-lane messages first; `None` once the
    /// transport is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        let Some(priority) = &mut self.priority else {
            return self.messages.recv().await;
        };
        tokio::select! {
            biased;
            Some(m) = priority.recv() => Some(m),
            Some(m) = self.messages.recv() => Some(m),
            else => None,
        }
    }
}

impl Inbound {
    /// Fresh channels of `capacity` messages (and as many unreachable reports), storing
    /// snapshots in `snapshots`. Every message arrives on one channel, `messages`.
    pub fn channels(capacity: usize, snapshots: Arc<dyn SnapshotSink>) -> (Self, InboundReceivers) {
        let (mtx, mrx) = mpsc::channel(capacity.max(1));
        let (utx, urx) = mpsc::channel(capacity.max(1));
        (
            Self {
                messages: mtx,
                priority: None,
                unreachable: utx,
                snapshots,
            },
            InboundReceivers {
                messages: mrx,
                priority: None,
                unreachable: urx,
            },
        )
    }

    /// Like [`channels`](Self::channels), plus a `priority` channel for light-lane
    /// messages, so heartbeats and votes never wait behind appends in the runtime's queue.
    /// Read both with [`InboundReceivers::recv`] (or select on them, `priority` first).
    pub fn channels_with_priority(
        capacity: usize,
        snapshots: Arc<dyn SnapshotSink>,
    ) -> (Self, InboundReceivers) {
        let (mut inbound, mut rx) = Self::channels(capacity, snapshots);
        let (ptx, prx) = mpsc::channel(capacity.max(1));
        inbound.priority = Some(ptx);
        rx.priority = Some(prx);
        (inbound, rx)
    }
}

/// The transport's shared state.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) inbound: Inbound,
    /// Members removed from the cluster: their frames are refused.
    pub(crate) removed: RwLock<HashSet<NodeId>>,
    /// The peers added and not removed: frames from anyone else are refused.
    members: RwLock<HashSet<NodeId>>,
    /// Peer TLS, when configured.
    pub(crate) tls: Option<Arc<PeerTls>>,
    /// The compression in force (starts as `config.compression`; changes at run time).
    compression: RwLock<CompressionConfig>,
    /// The fault switch: while set, nothing is sent or accepted (a simulated partition).
    isolated: AtomicBool,
    /// Application requests: the inbound handler and the outbound connections.
    pub(crate) app: crate::app::AppSlot,
}

impl Shared {
    /// Validates the configuration and builds the shared state.
    pub(crate) fn new(config: TransportConfig, inbound: Inbound) -> Result<Self> {
        if config.node_id == 0 {
            return Err(Error::Config("node id 0 is reserved".into()));
        }
        if config.max_message_size < 1024 {
            return Err(Error::Config(
                "max_message_size must be at least 1 KiB".into(),
            ));
        }
        let tls = match &config.tls {
            None => None,
            Some(tls) => Some(Arc::new(PeerTls::new(tls, config.node_id)?)),
        };
        Ok(Self {
            compression: RwLock::new(config.compression),
            isolated: AtomicBool::new(false),
            app: Default::default(),
            config,
            inbound,
            removed: RwLock::new(HashSet::new()),
            members: RwLock::new(HashSet::new()),
            tls,
        })
    }

    /// Where messages of `lane` are delivered.
    pub(crate) fn inbound_for(&self, light: bool) -> &mpsc::Sender<Message> {
        match (&self.inbound.priority, light) {
            (Some(p), true) => p,
            _ => &self.inbound.messages,
        }
    }

    /// Tells the runtime that `peer` is unreachable (best effort, never blocks).
    pub(crate) fn report_unreachable(&self, peer: NodeId) {
        counter!(m::PEER_UNREACHABLE).increment(1);
        let _ = self.inbound.unreachable.try_send(peer);
    }

    /// True when `id` was removed from the cluster.
    pub(crate) fn is_removed(&self, id: NodeId) -> bool {
        self.removed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// The compression in force.
    pub(crate) fn compression(&self) -> CompressionConfig {
        *self.compression.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the compression of frames and snapshot chunks built from now on.
    pub(crate) fn set_compression(&self, c: CompressionConfig) {
        *self.compression.write().unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// True while the fault switch cuts this node off.
    pub(crate) fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }

    /// Sets the fault switch.
    pub(crate) fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::Relaxed);
    }

    /// Marks `id` removed (or not): a removed member is no member, one added back is.
    pub(crate) fn set_removed(&self, id: NodeId, removed: bool) {
        let mut set = self.removed.write().unwrap_or_else(|e| e.into_inner());
        let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
        if removed {
            set.insert(id);
            members.remove(&id);
        } else {
            set.remove(&id);
            members.insert(id);
        }
    }

    /// True when `id` is a peer this transport was told about (added, not removed).
    pub(crate) fn is_member(&self, id: NodeId) -> bool {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }
}
