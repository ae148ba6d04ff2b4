//! Jepsen-style chaos testing of real raftd clusters: what the client workloads record, the
//! checkers that judge the records, the seeded fault schedule and the plot of a run.
//!
//! Responsibility: everything of a chaos run that is pure data, so that it can be unit tested
//! on hand-made histories and shared by the two processes of a run: the workload client
//! (`raft-bench chaos-client`, which needs the `etcd-client` crate and so protoc) writes
//! histories with the types of [`history`]; the orchestrator (`cargo xtask chaos`, which runs
//! the raftd processes and injects the faults) draws the [`schedule`], runs the checkers
//! ([`register`], [`bank`], [`watch`], [`lock`], [`append`], [`sread`]) and draws the [`plot`].
//!
//! May depend on: `raft-sim` (its linearizability checker and seeded generator) and plain
//! utility crates; no tokio, no network.
//!
//! ```
//! use raft_chaos::history::{Outcome, RegisterCall, RegisterOp, RegisterResult};
//! // Client 1 wrote 3 to key 0, then client 2 read 3: linearizable.
//! let ops = vec![
//!     RegisterOp::done(1, 0, RegisterCall::Write { value: 3 }, 0, 10, RegisterResult::Write),
//!     RegisterOp::done(2, 0, RegisterCall::Read, 20, 30, RegisterResult::Read { value: Some(3) }),
//! ];
//! assert!(raft_chaos::register::check(&ops).ok);
//! ```
#![deny(missing_docs)]

pub mod append;
pub mod bank;
pub mod history;
pub mod lock;
pub mod plot;
pub mod register;
pub mod schedule;
pub mod sread;
pub mod verdict;
pub mod watch;

pub use verdict::Verdict;

/// Errors of reading and writing a run's files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A history file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A line of a history file is not a record of the expected type.
    #[error("{path}:{line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What went wrong.
        source: serde_json::Error,
    },
    /// Drawing the plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The SVG file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A fault schedule or workload specification is invalid.
    #[error("invalid specification: {0}")]
    Spec(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
