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
//!
//! # Shape
//! - [`PeerTransport`] is what the runtime holds: [`PeerTransport::send`] queues a message
//!   and returns at once; [`PeerTransport::send_snapshot`] streams a snapshot;
//!   [`PeerTransport::add_peer`] / [`PeerTransport::remove_peer`] follow membership;
//!   [`PeerTransport::serve`] runs the inbound side on a listener.
//! - What arrives goes to the runtime through [`Inbound`]: a channel of messages, a channel
//!   of unreachable peers, and a [`SnapshotSink`] that stores incoming snapshot data.
//! - Each peer has two lanes, each with its own bounded queue and its own HTTP/2
//!   connection: the *stream* lane (appends, proposals) pipelines frames on one long-lived
//!   `Replicate` stream, with up to `stream_window_bytes` unacknowledged; the *light* lane
//!   (everything else) pipelines its frames the same way on a `Replicate` stream of its own
//!   (marked `raft-lane: light` in the request metadata), so a heartbeat never waits behind
//!   megabytes of appends, nor for the ack of the heartbeat before it. Messages queued
//!   together are merged into one frame.
//! - The transport runs on threads of its own, not on the caller's runtime. The light lanes
//!   run on a network thread, on both sides (it raises its own priority by `network_nice`
//!   and moves to the real-time round-robin policy at `network_realtime_priority` when the
//!   process is allowed to: Linux, `CAP_SYS_NICE`): a light-lane connection opens
//!   with an 8-byte preface (`RAFTLITE`, before HTTP/2 and TLS) by which the accept loop,
//!   also on that thread, hands it to a server there; every other connection goes to
//!   a server on the transport's *bulk runtime* (`bulk_threads` threads), where the
//!   outbound append streams and snapshot transfers run too. The bulk threads lower their
//!   own priority by `bulk_nice` (Linux), so when the append streams keep every core busy,
//!   heartbeats, votes and the caller's Raft loop still get a CPU first; the raised
//!   network thread also wins the CPU as soon as it wakes. With
//!   [`Inbound::channels_with_priority`], inbound light-lane messages go to their own
//!   channel so they do not wait behind appends in the runtime's queue either
//!   ([`InboundReceivers::recv`] reads that channel first).
//! - The acks on the `Replicate` stream are transport flow control (frame sequence numbers
//!   delivered), not raft's: a follower's `AppendResponse` is an ordinary message that it
//!   sends back on its own light lane. They are cumulative, and the receiver holds one back
//!   for up to 10 ms (or until it covers a quarter of `stream_window_bytes`) so frames that
//!   arrive close together share it: at one frame per put, an ack per frame cost both
//!   sides a wake-up and a system call per put.
//! - Snapshots move on their own connection: `SnapshotOffset` asks where to resume, then a
//!   client stream of chunks (at most 1 MiB, CRC32C each, whole-data CRC32C at the end)
//!   feeds the receiver's [`SnapshotSink`]. Only once the sink has stored and verified the
//!   data does the receiving node get its `InstallSnapshot` message.
//! - Limits: frames over `max_message_size` (on the wire or once decompressed) are refused
//!   with `OUT_OF_RANGE`; frames from another cluster, for another node, from a removed
//!   member or from an id that is no peer with `PERMISSION_DENIED`/`INVALID_ARGUMENT`;
//!   every refusal is counted under `raft_metrics::net::FRAMES_REJECTED` by reason.
//!   Undecodable input is an error status, never a panic. At most
//!   `max_pending_connections` inbound connections may be routing or in their handshake,
//!   and a connection may open `max_concurrent_streams` streams.
//! - TLS ([`tls`], rustls): mutual TLS between peers, with member ids bound to
//!   certificates when a cluster name is configured; certificates reload at run time
//!   ([`PeerTransport::set_tls`]) without touching established connections.
#![deny(missing_docs)]

mod app;
mod backoff;
pub mod compression;
mod config;
mod convert;
mod error;
mod frame;
mod lane;
mod netrt;
mod peer;
mod queue;
mod server;
mod shared;
mod snapshot;
pub mod tls;
mod transport;

pub use app::{AppFuture, AppHandler};
pub use config::{
    BackoffConfig, Codec, CompressionConfig, SNAPSHOT_CHUNK_SIZE, TlsConfig, TransportConfig,
};
pub use error::{Error, Result};
pub use lane::Lane;
pub use peer::ask_cluster_id;
pub use server::ServerHandle;
pub use shared::{Inbound, InboundReceivers};
pub use snapshot::{MemorySnapshotSink, SnapshotSink, SnapshotSource};
pub use transport::PeerTransport;

/// Protobuf and gRPC types generated from `proto/peer.proto`.
///
/// Internal to the transport: conversions to and from `raft-core` types live in
/// `convert.rs`, and nothing outside this crate names these types (except through
/// [`wire`], for tests and benchmarks of the wire protocol itself).
#[allow(missing_docs, clippy::all)]
pub(crate) mod pb {
    tonic::include_proto!("raftpeer.v1");
}

/// Raw access to the wire protocol, for conformance tests and benchmarks (a hostile or
/// baseline client). Not part of the stable API.
#[doc(hidden)]
pub mod wire {
    pub use crate::pb::*;

    /// Builds the frame carrying `msgs` (merging and compressing like the transport does).
    pub fn build_frame(
        cluster_id: u64,
        from: raft_core::NodeId,
        to: raft_core::NodeId,
        seq: u64,
        msgs: &[raft_core::Message],
        compression: &crate::CompressionConfig,
    ) -> crate::Result<Frame> {
        crate::frame::build_frame(cluster_id, from, to, seq, msgs, compression)
    }

    /// What the server does with a received frame's payload: decompresses it (at most
    /// `limit` bytes) and decodes its messages, checking each against the frame's header.
    /// The fuzz targets drive it with arbitrary frames.
    pub fn open_frame(frame: Frame, limit: usize) -> crate::Result<Vec<raft_core::Message>> {
        crate::frame::open_frame(frame, limit)
    }

    /// What the server does with a received snapshot chunk: checks its offset, checksum
    /// and size and decompresses its data.
    pub fn open_chunk(chunk: &SnapshotChunk, expected_offset: u64) -> crate::Result<bytes::Bytes> {
        crate::snapshot::open_chunk(chunk, expected_offset)
    }

    /// What the server does with a snapshot probe's metadata.
    pub fn meta_from_pb(meta: SnapshotMeta) -> crate::Result<raft_core::SnapshotMeta> {
        crate::convert::meta_from_pb(meta)
    }
}
