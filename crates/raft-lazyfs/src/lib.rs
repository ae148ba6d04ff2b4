//! `raft-lazyfs`: a FUSE file system for power-loss tests of real processes. It keeps every
//! file in memory twice, as the processes see it and as it would be found after a power
//! loss, and drops what was not made durable when told to (a `crash` on its control
//! socket), as a machine losing power loses its page cache. Real raftd processes (the WAL,
//! the snapshots and the sled store, which writes with `std::fs`) run on it unchanged;
//! `cargo xtask chaos --faults power` kills members, crashes their file systems and
//! restarts them, and the chaos checkers then see whether acknowledged writes survived.
//!
//! - [`model`]: the file system and its durability rule (what an fsync covers), tested on
//!   its own;
//! - [`fuse`]: the kernel's requests answered from the model, with nothing cached in the
//!   kernel;
//! - [`control`]: the control socket (`crash`, `stats`).
//!
//! The binary: `raft-lazyfs mount <dir> --control <socket> [--strict-dirs]` mounts (as root:
//! with mount(2), no libfuse or fusermount needed) and serves until SIGTERM or SIGINT,
//! then unmounts; `raft-lazyfs ctl <socket> crash|stats` sends a command.

pub mod control;
pub mod fuse;
pub mod model;
