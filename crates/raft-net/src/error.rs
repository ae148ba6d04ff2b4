//! The transport's error type.

use raft_core::NodeId;

/// Everything that can go wrong in the peer transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message was addressed to a node the transport has no address for.
    #[error("unknown peer {0}: add it with add_peer first")]
    UnknownPeer(NodeId),
    /// The per-peer send queue is full (in messages or bytes); the message was dropped and
    /// the peer reported unreachable.
    #[error("send queue to peer {0} is full; message dropped")]
    QueueFull(NodeId),
    /// A frame, chunk or message is larger than the configured limit.
    #[error("message too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The offending size.
        size: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// A frame or message could not be decoded or violates the protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Compression or decompression failed.
    #[error("{codec} codec failed: {reason}")]
    Codec {
        /// The codec (`zstd` or `snappy`).
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The configuration is invalid (bad address, bad certificate, ...).
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// A peer refused a call or the connection broke.
    #[error("rpc to peer {peer} failed: {status}")]
    Rpc {
        /// The peer.
        peer: NodeId,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// Connecting to a peer failed.
    #[error("cannot connect to peer {peer}: {reason}")]
    Connect {
        /// The peer.
        peer: NodeId,
        /// What went wrong.
        reason: String,
    },
    /// A snapshot transfer failed (source, sink or verification).
    #[error("snapshot transfer failed: {0}")]
    Snapshot(String),
    /// Reading snapshot data or serving on a listener failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The transport has been shut down.
    #[error("transport is shut down")]
    Shutdown,
    /// The fault switch isolates this node (`PeerTransport::set_isolated`); message dropped.
    #[error("the fault switch isolates this node; message dropped")]
    Isolated,
}

/// The transport's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
