//! A segmented write-ahead log for the Raft log and hard state.
//!
//! Responsibility: durably store the entries and hard state that `raft-core` hands out in
//! `Ready`, with one `fdatasync` shared by every append waiting in the queue (group commit),
//! and recover them after a crash, refusing to start on mid-log corruption rather than
//! silently dropping acknowledged entries. It serves reads back through `raft-core`'s
//! `LogRead` trait.
//!
//! May depend on: `raft-core` (entry and hard-state types), `raft-metrics` (metric names)
//! and plain utility crates. Never on the network crates, the runtime or a state machine.
//!
//! ```no_run
//! use raft_core::{Entry, HardState};
//! use raft_log::{Settings, Wal};
//!
//! let wal = Wal::open("/var/lib/raft/wal", Settings::default())?;
//! let entry = Entry { index: wal.last_index() + 1, term: 1, ..Entry::default() };
//! let hs = HardState { term: 1, vote: Some(1), commit: 0 };
//! wal.write(vec![entry], Some(hs))?.wait()?; // durable once `wait` returns Ok
//! # Ok::<(), raft_log::Error>(())
//! ```
//!
//! # Driving it from a Raft `Ready`
//!
//! - a snapshot in the `Ready` (one the log does not already match):
//!   [`Wal::install_snapshot`];
//! - entries and hard state: one [`Wal::write`] (entries whose first index is at or below
//!   the last one replace the conflicting tail); messages that must wait for the disk are
//!   sent when its [`Ticket`] completes;
//! - after applying a configuration change: [`Wal::set_membership`]; after taking a local
//!   snapshot of the state machine: [`Wal::compact_prefix`] (deletes whole segments).
//!
//! Writes are checked and ordered at submission, so the caller may submit the next `Ready`'s
//! writes before the previous ticket completes. A ticket completes in one of three ways:
//! [`Ticket::wait`] (blocking), `.await` (it is a `std::future::Future`; no runtime
//! dependency) or [`Ticket::on_complete`] (a callback on the writer thread).
//!
//! Layers, bottom up: [`fs`] (the `raft-fs` crate's file-system trait, shared with `raft-snapshot`),
//! [`format`](mod@format) (records and segment headers), `index` (in-memory index and cache),
//! `segment` (file names, background preparation), `recovery`, `writer` (group commit: the
//! writer thread and callers that write while waiting), and [`Wal`], the handle.
#![deny(missing_docs)]

pub mod archive;
mod error;
pub mod format;
mod index;
mod recovery;
mod segment;
mod settings;
mod ticket;
mod wal;
mod writer;

/// The file-system seam the log writes through (the `raft-fs` crate; its `MemFs`, for
/// crash tests, needs that crate's `mem` feature).
pub use raft_fs as fs;

pub use error::{Error, Result};
pub use settings::{Settings, SyncPolicy};
pub use ticket::Ticket;
pub use wal::Wal;
