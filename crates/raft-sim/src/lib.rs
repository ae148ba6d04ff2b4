//! Deterministic simulation of Raft clusters, with fault injection and checkers.
//!
//! Responsibility: run whole clusters of `raft-core` nodes in one thread under a seeded
//! schedule of network faults, crashes and client operations, check the Raft safety
//! invariants after every step and the linearizability of the client history after every
//! run, and replay any failing seed. Not published; downstream users may use it to test
//! their own state machines.
//!
//! May depend on: `raft-core` and plain utility crates only (no tokio, no real I/O).
//!
//! The building blocks, bottom up: [`rng`] (the seeded generator), [`swarm`] (what a seed
//! enables), [`queue`] (events by time), [`network`], [`storage`], [`trace`],
//! [`linearizability`] (the history checker), [`kv`] (the replicated state machine),
//! [`client`] (clients and their history), [`invariants`] (the safety checker), [`cluster`]
//! (the driver that carries out each node's `Ready`) and [`run`] (one seed, end to end).
//!
//! ```no_run
//! let opts = raft_sim::SimOptions::default(); // 10,000 ticks, linearizability on
//! match raft_sim::run_seed(42, &opts) {
//!     Ok(report) => assert!(report.history_ops > 0),
//!     Err(failure) => panic!("{failure}"), // says what broke and how to replay it
//! }
//! ```
//!
//! See `docs/testing.md` for the faults, the invariants and how to replay a seed.
#![deny(missing_docs)]

pub mod fxhash;
pub mod linearizability;
pub mod network;
pub mod queue;
pub mod rng;
pub mod storage;
pub mod swarm;
pub mod trace;

/// Errors of the simulator itself (not the failures it finds, which are reports).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line argument or option is invalid.
    #[error("invalid usage: {0}")]
    Usage(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
pub mod client;
pub mod cluster;
pub mod configs;
pub mod invariants;
pub mod kv;
pub mod options;
pub mod run;

pub use options::{Mutation, RunReport, SimOptions};
pub use run::{Failure, replay_command, run_seed};
