//! Transport configuration: identity, compression, queue bounds, limits, timeouts and TLS.

use raft_core::NodeId;
use std::time::Duration;

/// The compression codec applied to frames and snapshot chunks above the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// No compression.
    None,
    /// Snappy (the `snap` crate, raw format): fast, moderate ratio.
    Snappy,
    /// Zstandard at the given level (1..=22; 1-3 are the fast levels).
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl Default for Codec {
    /// Zstandard at level 1: a good ratio at close to snappy's speed.
    fn default() -> Self {
        Codec::Zstd { level: 1 }
    }
}

impl Codec {
    /// The codec's label in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Snappy => "snappy",
            Codec::Zstd { .. } => "zstd",
        }
    }
}

/// How outgoing payloads are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionConfig {
    /// The codec.
    pub codec: Codec,
    /// Payloads smaller than this many bytes (encoded) are sent uncompressed. Default 4 KiB.
    pub threshold: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            codec: Codec::default(),
            threshold: 4096,
        }
    }
}

/// Reconnection back-off: exponential from `initial` to `max`, with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay after a failure.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

/// Mutual TLS between peers, as PEM text.
///
/// Every node presents `cert_pem` (signed by the cluster CA) both as a server and as a
/// client, and accepts only peers whose certificate chains to `ca_pem`. With
/// `cluster_name`, each certificate must also carry the URI subject alternative name
/// `raftd://<cluster_name>/member/<id>` ([`crate::tls::member_uri`]): a connection then
/// speaks only for the member its certificate names (frames claiming another sender are
/// refused), and a node talks only to a server whose certificate names the member it
/// dialled. Without it, any certificate from the CA may speak for any member.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The cluster CA certificate(s) (PEM).
    pub ca_pem: String,
    /// This node's certificate chain (PEM), used both as server and as client.
    pub cert_pem: String,
    /// This node's private key (PEM).
    pub key_pem: String,
    /// The name checked against peers' server certificates; `None` uses the host of the
    /// peer's address.
    pub server_name: Option<String>,
    /// The cluster name of the member URIs in certificates (see above); `None` binds no
    /// member ids to certificates.
    pub cluster_name: Option<String>,
    /// Refuse inbound connections without a client certificate (default true). When false
    /// a peer may connect with server-side TLS only and is then trusted like a plaintext
    /// peer (membership checks only).
    pub require_client_cert: bool,
}

impl TlsConfig {
    /// Mutual TLS from PEM text: client certificates required, no member binding, the
    /// server name taken from each peer's address.
    pub fn new(ca_pem: String, cert_pem: String, key_pem: String) -> Self {
        Self {
            ca_pem,
            cert_pem,
            key_pem,
            server_name: None,
            cluster_name: None,
            require_client_cert: true,
        }
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .field("cluster_name", &self.cluster_name)
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

/// Everything the transport needs to know.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node's id (never 0).
    pub node_id: NodeId,
    /// The cluster id; frames carrying another are refused.
    pub cluster_id: u64,
    /// Compression of frames and snapshot chunks.
    pub compression: CompressionConfig,
    /// Largest frame accepted (on the wire and once decompressed), in bytes. Default 64 MiB.
    pub max_message_size: usize,
    /// Largest batch the sender packs into one frame, in bytes (soft: a single larger
    /// message still goes alone). Default 1 MiB: smaller frames keep each encode and decode
    /// step short, so the light lane is not starved of CPU.
    pub max_frame_bytes: usize,
    /// Most messages per frame. Default 1024.
    pub max_frame_messages: usize,
    /// Per-peer bound of queued messages on each lane. Default 4096.
    pub queue_max_messages: usize,
    /// Per-peer bound of queued bytes on each lane. Default 64 MiB.
    pub queue_max_bytes: usize,
    /// Bytes of frames sent on the append stream but not yet acked before the sender pauses
    /// (the pipeline window). Default 16 MiB.
    pub stream_window_bytes: usize,
    /// Connection attempt timeout. Default 1 s.
    pub connect_timeout: Duration,
    /// How long either lane's stream may take to open (a peer that accepts connections but
    /// never answers), and how long a light-lane frame may stay unacknowledged, before the
    /// lane counts as broken: it reconnects after back-off and the peer is reported
    /// unreachable. Default 2 s.
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval, both as client and server. Default 5 s.
    pub keepalive_interval: Duration,
    /// How long to wait for a keep-alive answer before dropping the connection. Default 10 s.
    pub keepalive_timeout: Duration,
    /// Reconnection back-off.
    pub backoff: BackoffConfig,
    /// Attempts of a snapshot transfer (each resuming where the last stopped). Default 5.
    pub snapshot_attempts: u32,
    /// Optional mutual TLS.
    pub tls: Option<TlsConfig>,
    /// Inbound connections that may be waiting to show their lane or finish their TLS
    /// handshake at once; more are closed at once (counted as `too_many_pending`).
    /// Default 256.
    pub max_pending_connections: usize,
    /// How long an inbound connection may take to show its lane and finish its TLS
    /// handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// HTTP/2 streams a peer may open at once on one inbound connection (the transport
    /// itself uses one or two). Default 16.
    pub max_concurrent_streams: u32,
    /// Worker threads of the transport's bulk runtime, which runs the append streams (both
    /// directions) and snapshot transfers. Default 2.
    pub bulk_threads: usize,
    /// How much the bulk runtime's threads lower their own scheduling priority (their nice
    /// value goes up by this much, capped at 19; Linux only, allowed without privileges).
    /// With it, heartbeats, votes and the caller's runtime get a CPU first while the append
    /// streams keep every core busy; when the CPUs are otherwise idle, the append streams
    /// still get all of it. 0 keeps the caller's priority. Default 10: it lowers the
    /// heartbeat latency tail while appends saturate the stream, at the cost of throughput
    /// of small single-entry messages (`docs/benchmarks.md`, "The default `bulk_nice`").
    pub bulk_nice: i32,
    /// How much the network thread (the light lanes: heartbeats, votes, acks, both
    /// directions) changes its own nice value, kept within -20..=19 (Linux only). A negative
    /// value raises its priority, so that when it wakes it gets a CPU ahead of the bulk
    /// threads, which under the kernel's fair scheduler may still be owed CPU time. Raising
    /// a priority needs `CAP_SYS_NICE` or a high enough `RLIMIT_NICE` (root has it; for a
    /// systemd service `LimitNICE=`, `AmbientCapabilities=CAP_SYS_NICE` or `Nice=` on the
    /// whole service); without it the thread keeps its priority and the transport logs
    /// once at info level why. 0 keeps the caller's priority. Default -5
    /// (`docs/benchmarks.md`, "The network thread's `network_nice`").
    pub network_nice: i32,
    /// The network thread's real-time priority, 1 to 99, or 0 for none (Linux only). With a
    /// priority the thread runs under the round-robin real-time policy (`SCHED_RR`): when a
    /// heartbeat, vote or ack arrives it takes a CPU at once, ahead of every thread of the
    /// normal policy (the bulk threads, the caller's runtime, other processes), instead of
    /// waiting up to a time slice (1.5 ms or more) for the running thread to yield. The thread
    /// does little work per message, so it takes little CPU from the others. Needs
    /// `CAP_SYS_NICE` or a high enough `RLIMIT_RTPRIO` (root has it; for a systemd service
    /// `LimitRTPRIO=` or `AmbientCapabilities=CAP_SYS_NICE`); without it the thread keeps
    /// the normal policy and the transport logs once at info level why. Default 0 (none),
    /// as raftd's: a real-time thread preempts every other thread on its CPU, which cost
    /// about 8% of put throughput with three raftd members on two cores while the heartbeat
    /// tail it cuts (2 ms to under 1 ms) is far inside any election timeout; a default that
    /// changes behaviour with the process's privileges would surprise too. Set 1, the lowest
    /// real-time priority, where the light lane is latency-bound and each node has cores of
    /// its own (`docs/benchmarks.md`, "The network thread at a real-time priority").
    pub network_realtime_priority: u8,
}

impl TransportConfig {
    /// A configuration with the defaults for node `node_id` of cluster `cluster_id`.
    pub fn new(node_id: NodeId, cluster_id: u64) -> Self {
        Self {
            node_id,
            cluster_id,
            compression: CompressionConfig::default(),
            max_message_size: 64 << 20,
            max_frame_bytes: 1 << 20,
            max_frame_messages: 1024,
            queue_max_messages: 4096,
            queue_max_bytes: 64 << 20,
            stream_window_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            snapshot_attempts: 5,
            tls: None,
            max_pending_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 16,
            bulk_threads: 2,
            bulk_nice: 10,
            network_nice: -5,
            network_realtime_priority: 0,
        }
    }
}

/// Largest snapshot chunk, before compression.
pub const SNAPSHOT_CHUNK_SIZE: usize = 1 << 20;
