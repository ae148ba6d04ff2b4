//! A segmented write-ahead log for the Raft log and hard state.
//!
//! Responsibility: durably store the entries and hard state that `raft-core` hands out in
//! `Ready`, with one `fdatasync` shared by every append waiting in the queue (group commit),
//! and recover them after a crash, refusing to start on mid-log corruption rather than
//! silently dropping acknowledged entries. It serves reads back through `raft-core`'s
//! `LogRead` trait.
//!
//! May depend on: `raft-core` (entry and hard-state types) and plain utility crates. Never on
//! the network crates, the runtime or a state machine.
#![deny(missing_docs)]
