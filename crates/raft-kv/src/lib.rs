//! A replicated key-value state machine on sled, served through the etcd v3 gRPC API.
//!
//! Responsibility: apply committed entries to a sled database (with the applied index stored
//! atomically beside the data, and etcd's revisions per key), adapt the store to
//! raft-runtime, and serve the etcd v3 services so that etcd clients and tools work
//! unchanged. Usable without raftd: a program can run the store under raft-runtime and serve
//! [`service::EtcdService::routes`] from its own tonic server (`examples/embedded.rs`).
//!
//! May depend on: `raft-core`, `raft-runtime`, `raft-snapshot`, sled, tokio and tonic/prost.
//! The types generated from `proto/etcd/` stay inside this crate.
//!
//! Where things live:
//! - [`Command`]: what a client write puts into a log entry (versioned, typed decode errors);
//! - [`KvStore`]: the state machine with etcd's MVCC history (`docs/mvcc.md`) —
//!   [`apply_batch`](KvStore::apply_batch) of committed entries, [`range`](KvStore::range)
//!   and read-only txns at any kept revision, compaction (logical at once, physical in a
//!   paced background thread), [`hash_kv`](KvStore::hash_kv), the member list and the
//!   internal records (peer addresses, out of clients' reach), and copy-on-write snapshot
//!   [`capture`](KvStore::capture) / restore (modules [`snapshot`], [`restore`]);
//! - [`events`]: each revision's watch events, handed to a registered [`EventSink`] by apply
//!   and read back from the history by [`KvStore::events`];
//! - [`autocompact`]: etcd's periodic and revision auto-compaction, proposed by the leader;
//! - the store on `raft-snapshot`'s chain store: [`capture_snapshot`] (full or delta per
//!   the chain), [`restore_from_store`], [`maintain_chains`] (merge and garbage collection);
//! - [`machine`]: [`machine::KvMachine`], the store as raft-runtime's `StateMachine`
//!   (member list from configuration changes, snapshots on the chain store), and
//!   [`address_book`]: the peer addresses it learns from the log for a transport;
//! - [`service`]: the etcd v3 gRPC services (`KV`, `Cluster`, `Maintenance`, `Watch`,
//!   `Lease`, `Lock`, `Election`, `Auth`, one file each)
//!   over a running node;
//! - [`auth`]: etcd's users, roles and permissions (replicated auth state, the checks of
//!   every request, tokens);
//! - [`pace`]: the token bucket that limits a snapshot build's read rate
//!   ([`PendingSnapshot::with_max_rate`]);
//! - [`validate`]: the checks the service makes before proposing;
//! - [`watch`]: the watch hub fed by apply ([`events`]) and its client streams;
//! - [`lease`]: leases (records in the store, the leader's clocks in [`lease::Lessor`], the
//!   task that runs them, [`lease::keeper::LeaseKeeper`], and forwarding to the leader);
//!   the `Lock` and `Election` services build on them.
#![deny(missing_docs)]

pub mod address_book;
mod apply;
pub mod auth;
pub mod autocompact;
mod catchup;
mod command;
mod compact;
mod cow;
mod error;
pub mod events;
pub mod export;
mod hash;
mod history;
mod internal;
mod layout;
pub mod lease;
pub mod machine;
mod members;
pub mod pace;
mod priority;
pub mod rebuild;
mod record;
pub mod restore;
mod revindex;
pub mod service;
pub mod snapshot;
mod snapshot_store;
mod state;
mod store;
mod upgrade;
pub mod validate;
pub mod watch;

pub use apply::{ApplyEntry, ApplyResult, EntryPayload, Outcome};
pub use command::{COMMAND_FORMAT_V1, Command, Op};
pub use cow::DEFAULT_PRE_IMAGE_BUDGET;
pub use error::{Error, Result};
pub use events::{EventSink, RevisionEvents};
pub use hash::KvHash;
pub use members::Member;
pub use priority::{BACKGROUND_NICE, lower_thread_priority};
pub use record::{Current, Record, Rev};
pub use restore::Restore;
pub use snapshot::{Capture, CaptureInfo, CaptureKind, CaptureRecords, SnapshotRecord};
pub use snapshot_store::{
    KvRestoreSink, PendingSnapshot, RecordSource, capture_snapshot, maintain_chains,
    restore_from_store,
};
pub use state::INITIAL_REVISION;
pub use store::exec::AuthAnswer;
pub use store::{Defragmented, KvStore, LOCK_WAIT, Response, StoreStatus, TREE_NAME};

/// Protobuf and gRPC types generated from the etcd v3 API protos under `proto/etcd/` and the
/// log-entry command of `proto/kvcmd.proto`.
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
    /// The envelope of a log entry's command (`proto/kvcmd.proto`).
    pub mod kvcmd {
        tonic::include_proto!("kvcmd");
    }
    /// etcd's server-side lock service (etcd's `v3lockpb` package).
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
    /// etcd's server-side election service (etcd's `v3electionpb` package).
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
    /// etcd's stored user and role records (etcd's `authpb` package).
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// raft-kv's authentication commands (`proto/kvauth.proto`).
    pub mod kvauth {
        tonic::include_proto!("kvauth");
    }
    /// raft-kv's stored lease record and the requests forwarded to the leader
    /// (`proto/kvlease.proto`).
    pub mod kvlease {
        tonic::include_proto!("kvlease");
    }
}
