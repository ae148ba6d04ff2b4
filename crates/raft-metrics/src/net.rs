//! Names and descriptions of the peer transport's metrics (recorded by `raft-net`).
//!
//! Labels used below: `codec` is `none`, `snappy` or `zstd`; `lane` is `stream` (the
//! pipelined append stream), `light` (heartbeats, votes and other small messages) or
//! `snapshot`; `reason` says why something was dropped or refused.

use crate::{Kind, MetricInfo};
use metrics::Unit;

/// Counter, label `codec`: bytes of encoded frames and snapshot chunks before compression
/// (only those the transport considered compressing, i.e. above the size threshold, plus
/// every uncompressed frame under `codec="none"`).
pub const BYTES_BEFORE_COMPRESSION: &str = "raft_net_bytes_before_compression_total";

/// Counter, label `codec`: the same bytes after compression, as put on the wire.
pub const BYTES_AFTER_COMPRESSION: &str = "raft_net_bytes_after_compression_total";

/// Counter, label `lane`: frames sent.
pub const FRAMES_SENT: &str = "raft_net_frames_sent_total";

/// Counter, label `lane`: raft messages sent (a frame may carry several).
pub const MESSAGES_SENT: &str = "raft_net_messages_sent_total";

/// Counter, label `lane`: raft messages received and delivered to the node.
pub const MESSAGES_RECEIVED: &str = "raft_net_messages_received_total";

/// Counter, label `lane`: payload bytes received on the wire (after compression).
pub const BYTES_RECEIVED: &str = "raft_net_bytes_received_total";

/// Counter, label `reason` (`queue_full`, `unknown_peer`, `disconnected`, `isolated`): outgoing
/// messages dropped by the transport; each drop is reported to the runtime as unreachable.
pub const MESSAGES_DROPPED: &str = "raft_net_messages_dropped_total";

/// Counter, label `reason` (`cluster_id`, `removed_member`, `unknown_member`,
/// `member_identity`, `wrong_receiver`, `isolated`, `too_large`, `malformed`,
/// `shutting_down`, `too_many_pending`): inbound frames, calls, chunks or connections
/// refused.
pub const FRAMES_REJECTED: &str = "raft_net_frames_rejected_total";

/// Counter: "peer unreachable" reports sent to the runtime.
pub const PEER_UNREACHABLE: &str = "raft_net_peer_unreachable_total";

/// Counter, label `lane`: connection (re-)establishments to peers.
pub const CONNECTS: &str = "raft_net_connects_total";

/// Counter, label `lane`: failed connection attempts and broken streams.
pub const CONNECT_FAILURES: &str = "raft_net_connect_failures_total";

/// Gauge: messages waiting in per-peer send queues, summed over peers and lanes.
pub const QUEUED_MESSAGES: &str = "raft_net_queued_messages";

/// Histogram (seconds): duration of outgoing snapshot transfers that succeeded.
pub const SNAPSHOT_SEND_SECONDS: &str = "raft_net_snapshot_send_seconds";

/// Counter: snapshot data bytes sent (before compression).
pub const SNAPSHOT_BYTES_SENT: &str = "raft_net_snapshot_bytes_sent_total";

/// Counter: snapshot data bytes received and stored (after decompression).
pub const SNAPSHOT_BYTES_RECEIVED: &str = "raft_net_snapshot_bytes_received_total";

/// Gauge, label `listener` (`peer`, `client`, `metrics`): when the certificate a TLS
/// listener presents stops being valid (its `notAfter`), as a unix timestamp in seconds;
/// set at start and at every reload of the certificate. Alert on
/// `raft_net_tls_cert_expiry_timestamp_seconds - time() < 14 * 86400`.
pub const TLS_CERT_EXPIRY: &str = "raft_net_tls_cert_expiry_timestamp_seconds";

/// Counter, labels `listener` and `outcome` (`ok`, `failed`): reloads of a TLS listener's
/// certificate, key and trusted CAs from their files.
pub const TLS_RELOADS: &str = "raft_net_tls_reloads_total";

/// Counter, label `listener`: inbound TLS handshakes that failed (no certificate when one
/// is required, a certificate from another CA, an expired one, a protocol older than TLS
/// 1.2, a plaintext client) or timed out.
pub const TLS_HANDSHAKE_FAILURES: &str = "raft_net_tls_handshake_failures_total";

/// Every metric of this module, with its kind, unit and help text.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: TLS_CERT_EXPIRY,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        help: "Expiry (notAfter) of the certificate a TLS listener presents, unix seconds, by listener",
    },
    MetricInfo {
        name: TLS_RELOADS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Reloads of a TLS listener's certificate, key and CAs, by listener and outcome",
    },
    MetricInfo {
        name: TLS_HANDSHAKE_FAILURES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Inbound TLS handshakes that failed or timed out, by listener",
    },
    MetricInfo {
        name: BYTES_BEFORE_COMPRESSION,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Bytes of peer frames and snapshot chunks before compression, by codec",
    },
    MetricInfo {
        name: BYTES_AFTER_COMPRESSION,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Bytes of peer frames and snapshot chunks after compression, by codec",
    },
    MetricInfo {
        name: FRAMES_SENT,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Peer frames sent, by lane",
    },
    MetricInfo {
        name: MESSAGES_SENT,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Raft messages sent to peers, by lane",
    },
    MetricInfo {
        name: MESSAGES_RECEIVED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Raft messages received from peers and delivered, by lane",
    },
    MetricInfo {
        name: BYTES_RECEIVED,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Frame payload bytes received from peers, by lane",
    },
    MetricInfo {
        name: MESSAGES_DROPPED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Outgoing raft messages dropped by the transport, by reason",
    },
    MetricInfo {
        name: FRAMES_REJECTED,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Inbound peer frames, calls or snapshot chunks refused, by reason",
    },
    MetricInfo {
        name: PEER_UNREACHABLE,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Peer-unreachable reports sent to the runtime",
    },
    MetricInfo {
        name: CONNECTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Connections established to peers, by lane",
    },
    MetricInfo {
        name: CONNECT_FAILURES,
        kind: Kind::Counter,
        unit: Unit::Count,
        help: "Failed peer connection attempts and broken streams, by lane",
    },
    MetricInfo {
        name: QUEUED_MESSAGES,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help: "Messages waiting in the per-peer send queues",
    },
    MetricInfo {
        name: SNAPSHOT_SEND_SECONDS,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help: "Duration of successful outgoing snapshot transfers",
    },
    MetricInfo {
        name: SNAPSHOT_BYTES_SENT,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Snapshot data bytes sent, before compression",
    },
    MetricInfo {
        name: SNAPSHOT_BYTES_RECEIVED,
        kind: Kind::Counter,
        unit: Unit::Bytes,
        help: "Snapshot data bytes received and stored",
    },
];
