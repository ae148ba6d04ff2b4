//! The gRPC peer transport between Raft nodes.
//!
//! Responsibility: carry `raft-core` messages between nodes over tonic: a long-lived,
//! pipelined bidirectional stream per peer for appends, a separate light path for heartbeats
//! and votes, chunked snapshot transfer, per-message compression (zstd, snappy or none above
//! a size threshold), connection management and message limits. Every node is both server
//! and client.
//!
//! May depend on: `raft-core`, `raft-metrics`, tonic/prost and compression crates. The proto
//! types generated from `proto/peer.proto` stay inside this crate; the rest of the toolkit
//! sees only `raft-core` types.
#![deny(missing_docs)]

/// Protobuf and gRPC types generated from `proto/peer.proto`.
///
/// Internal to the transport: conversions to and from `raft-core` types live in one module
/// of this crate, and nothing outside it names these types.
// dead_code: the transport that uses these types arrives with the raft-net issue.
#[allow(missing_docs, dead_code, clippy::all)]
pub(crate) mod pb {
    tonic::include_proto!("raftpeer.v1");
}
