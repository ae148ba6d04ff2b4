//! A replicated key-value state machine on sled, served through the etcd v3 gRPC API.
//!
//! Responsibility: apply committed entries to a sled database (with the applied index stored
//! atomically beside the data, and etcd's revisions per key), and serve the etcd v3 `KV`,
//! `Cluster` and `Maintenance` services so that etcd clients and tools work unchanged.
//!
//! May depend on: `raft-core`, `raft-runtime`, `raft-snapshot`, sled and tonic/prost. The
//! types generated from `proto/etcd/` stay inside this crate.
#![deny(missing_docs)]

/// Protobuf and gRPC types generated from the etcd v3 API protos under `proto/etcd/`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    /// Messages shared by the API: `KeyValue` and `Event` (etcd's `mvccpb` package).
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// The client API services and their messages (etcd's `etcdserverpb` package).
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
