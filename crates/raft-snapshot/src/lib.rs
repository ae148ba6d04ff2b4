//! Copy-on-write, chained (incremental) snapshots of a replicated state machine.
//!
//! Responsibility: the on-disk chain of snapshots (a full base followed by deltas), its
//! atomically updated manifest, building and restoring a chain, verifying checksums, garbage
//! collection, and asynchronous upload to an object store (a local directory by default).
//!
//! May depend on: `raft-core` (snapshot metadata types) and plain utility and compression
//! crates. Never on the network crates, the runtime or a particular state machine: a state
//! machine offers its data through the traits this crate defines.
#![deny(missing_docs)]
