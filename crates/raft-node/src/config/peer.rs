//! `[peer]`: limits of the peer transport, and the transport's configuration.

use super::{ByteSize, ConfigError, NodeConfig, err};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[peer]`: limits of the peer transport.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    /// Largest peer frame accepted (default 64MiB).
    pub max_message_size: ByteSize,
    /// Unacknowledged bytes on a peer's append stream before the sender pauses (default
    /// 16MiB).
    pub stream_window: ByteSize,
    /// Messages queued per peer and lane before messages are dropped (default 4096).
    pub queue_max_messages: usize,
    /// Timeout of a connection attempt (default 1s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How much the transport's bulk threads (append streams, snapshot transfers) raise
    /// their nice value, 0..=19, so heartbeats, votes and the Raft loop get a CPU first
    /// when replication keeps every core busy (default 10; 0 keeps their priority, which
    /// favours the throughput of many small appends; Linux only).
    pub bulk_nice: i32,
    /// How much the transport's network thread (heartbeats, votes, acks) changes its nice
    /// value, -20..=19: negative raises its priority so it gets a CPU as soon as it wakes,
    /// ahead of the bulk threads (default -5; needs CAP_SYS_NICE or RLIMIT_NICE, e.g.
    /// systemd `LimitNICE=` or `AmbientCapabilities=CAP_SYS_NICE`, otherwise the thread
    /// keeps its priority and the node logs why once; 0 keeps it; Linux only).
    pub network_nice: i32,
    /// The network thread's real-time priority, 1..=99 under the round-robin real-time
    /// policy (SCHED_RR), or 0 for none: a heartbeat, vote or ack then gets a CPU the moment
    /// it arrives, ahead of every normal thread (default 0, as raft-net's own default:
    /// throughput first, see `docs/configuration.md`; needs CAP_SYS_NICE
    /// or RLIMIT_RTPRIO, e.g. systemd `LimitRTPRIO=` or `AmbientCapabilities=CAP_SYS_NICE`,
    /// otherwise the thread keeps the normal policy and the node logs why once; Linux
    /// only).
    pub network_realtime_priority: u8,
}

impl Default for PeerSection {
    fn default() -> Self {
        Self {
            max_message_size: ByteSize::mib(64),
            stream_window: ByteSize::mib(16),
            queue_max_messages: 4096,
            connect_timeout: Duration::from_secs(1),
            bulk_nice: 10,
            network_nice: -5,
            network_realtime_priority: 0,
        }
    }
}

impl PeerSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size.get() < 64 << 10 {
            return err(format!(
                "peer.max_message_size ({}) must be at least 64KiB",
                self.max_message_size
            ));
        }
        if self.stream_window.get() == 0 || self.queue_max_messages == 0 {
            return err("peer.stream_window and peer.queue_max_messages must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return err("peer.connect_timeout must be positive");
        }
        if !(0..=19).contains(&self.bulk_nice) {
            return err(format!(
                "peer.bulk_nice ({}) must be between 0 and 19",
                self.bulk_nice
            ));
        }
        if !(-20..=19).contains(&self.network_nice) {
            return err(format!(
                "peer.network_nice ({}) must be between -20 and 19",
                self.network_nice
            ));
        }
        if self.network_realtime_priority > 99 {
            return err(format!(
                "peer.network_realtime_priority ({}) must be between 0 and 99",
                self.network_realtime_priority
            ));
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The peer transport's configuration for cluster `cluster_id` (without TLS: the
    /// node reads the certificate files, see [`TlsSection::peer_config`](super::TlsSection::peer_config)).
    pub fn transport_config(&self, cluster_id: u64) -> raft_net::TransportConfig {
        let mut t = raft_net::TransportConfig::new(self.id, cluster_id);
        t.max_pending_connections = self.limits.peer_max_pending_connections;
        t.max_concurrent_streams = self.limits.peer_max_concurrent_streams;
        t.compression = self.compression.to_net();
        t.max_message_size = self.peer.max_message_size.as_usize();
        t.stream_window_bytes = self.peer.stream_window.as_usize();
        t.queue_max_messages = self.peer.queue_max_messages;
        t.connect_timeout = self.peer.connect_timeout;
        t.bulk_nice = self.peer.bulk_nice;
        t.network_nice = self.peer.network_nice;
        t.network_realtime_priority = self.peer.network_realtime_priority;
        t
    }
}
