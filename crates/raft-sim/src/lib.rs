//! Deterministic simulation of Raft clusters, with fault injection and checkers.
//!
//! Responsibility: run whole clusters of `raft-core` nodes in one thread under a seeded
//! schedule of network faults, crashes and client operations, check the Raft safety
//! invariants after every step and the linearizability of the client history after every
//! run, and replay any failing seed. Not published; downstream users may use it to test
//! their own state machines.
//!
//! May depend on: `raft-core` and plain utility crates only (no tokio, no real I/O).
#![deny(missing_docs)]
