//! Copy-on-write, chained (incremental) snapshots of a replicated state machine.
//!
//! Responsibility: the on-disk chain of snapshots (a full base followed by deltas), its
//! atomically updated manifest, building and restoring a chain, verifying checksums, garbage
//! collection, and asynchronous upload to an object store (a local directory by default).
//!
//! May depend on: `raft-core` (snapshot metadata types) and plain utility and compression
//! crates. Never on the network crates, the runtime or a particular state machine: a state
//! machine offers its data through the traits this crate defines.
//!
//! # Pieces
//! - [`SnapshotSource`], [`RestoreSink`], [`SnapshotCapture`]: what a state machine
//!   implements (raft-kv's sled state machine; [`MemState`] is the in-memory reference).
//! - [`SnapshotStore`]: `begin` → [`SnapshotWriter`] → `finish`, `open`, `latest`,
//!   `install`, `gc`, leases; the file format is documented on [`FileReader`], the manifest
//!   on [`Manifest`].
//! - [`restore_chain`], [`compact_chain`], [`ChainPolicy`], [`take_snapshot`].
//! - [`ChainTransfer`] / [`IncomingTransfer`]: byte-level source and sink for raft-net.
//! - [`fs`]: the file-system interface the store is written against (the `raft-fs` crate,
//!   shared with `raft-log`: `StdFs`, and `MemFs` for crash tests behind its `mem` feature).
//! - [`ObjectStore`], [`LocalDirStore`], [`CloudStore`] (S3 and S3-compatible, GCS, Azure
//!   through the `object_store` crate; [`open_object_store`] picks one by URL),
//!   [`Uploader`] (a durable queue: what the store lacks is found again at start),
//!   retention of snapshots and archived WAL segments ([`RetentionPolicy`],
//!   [`plan_retention`] for a dry run), and point-in-time
//!   restore
//!   ([`find_in_object_store`], [`restore_from_object_store`]).
//! - [`WalArchiver`]: the node's WAL segments archived next to the snapshots (closed ones,
//!   and the one being written as a partial object on a timer), [`list_wal_archive`] and
//!   [`download_segment`] to read them back for a point-in-time restore.
//!
//! # Example
//!
//! ```
//! use raft_core::{Membership, SnapshotMeta};
//! use raft_snapshot::{MemState, SnapshotKind, SnapshotStore, StoreOptions, restore_chain};
//!
//! # fn main() -> raft_snapshot::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("raft-snapshot-doc-{}", std::process::id()));
//! let store = SnapshotStore::open_dir(&dir, StoreOptions::default())?;
//! let mut state = MemState::new();
//! state.put("a", "1");
//! state.put("b", "2");
//! let meta = |index| SnapshotMeta { index, term: 1, membership: Membership::with_voters([1]) };
//!
//! // A base at index 10 ...
//! let mut w = store.begin(SnapshotKind::Full, None, &meta(10), 1_700_000_000_000)?;
//! w.write_source(&mut state.full_source())?;
//! let base = w.finish()?;
//! state.mark_snapshotted();
//!
//! // ... and a delta at index 12 with what changed since.
//! state.delete(b"a");
//! state.put("c", "3");
//! let mut w = store.begin(SnapshotKind::Delta, Some(base.id), &meta(12), 1_700_000_001_000)?;
//! w.write_source(&mut state.delta_source())?;
//! w.finish()?;
//!
//! // Restoring the current chain gives the state at index 12.
//! let mut restored = MemState::new();
//! let tip = restore_chain(&store, None, &mut restored)?;
//! assert_eq!((tip.index, restored.data), (12, state.data));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod chain;
mod error;
mod format;
mod info;
mod object_store;
mod pitr;
mod retention;
mod source;
mod store;
mod transfer;
mod uploader;
mod wal_archive;

pub use chain::{
    ChainPolicy, compact_chain, file_checksum, restore_chain, take_snapshot, verify_file,
};
/// The file-system seam the store writes through (the `raft-fs` crate; its `MemFs`, for
/// crash tests, needs that crate's `mem` feature).
pub use raft_fs as fs;

pub use error::{Error, Result};
pub use format::{
    FORMAT_VERSION, FileHeader, FileReader, FileSummary, FileWriter, Record, WriterOptions,
};
pub use info::{MembershipRecord, SnapshotId, SnapshotInfo, SnapshotKind};
pub use object_store::{
    CloudStore, LocalDirStore, MIN_PART_SIZE, ObjectStore, ObjectStoreConfig, open_object_store,
};
pub use pitr::{
    RestorePoint, find_in_object_store, list_snapshots, restore_from_object_store, restore_point,
    verify_uploaded,
};
pub use retention::{
    RetentionDeleted, RetentionPlan, RetentionPolicy, SegmentDeletion, apply_retention,
    plan_retention,
};
pub use source::{Capture, IterSource, MemState, RestoreSink, SnapshotCapture, SnapshotSource};
pub use store::{
    Chain, Lease, LeasedChain, MANIFEST_FILE, Manifest, SnapshotReader, SnapshotStore,
    SnapshotWriter, StoreOptions,
};
pub use transfer::{ChainTransfer, Chunk, IncomingTransfer, MAX_CHUNK};
pub use uploader::{UploadStatus, Uploader, UploaderOptions};
pub use wal_archive::{
    ArchivedSegment, SegmentMeta, SourceSegment, WalArchiveStatus, WalArchiver, WalArchiverOptions,
    WalSource, download_segment, list_wal_archive,
};
