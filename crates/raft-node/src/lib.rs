//! The node binary's library half: configuration, hot reload, logging and wiring.
//!
//! Responsibility: compose the toolkit crates into `raftd` (the node) and `raftctl` (its
//! command-line client). Wiring and configuration only: no protocol logic lives here.
//!
//! May depend on: every other crate of the toolkit except `raft-sim`.
#![deny(missing_docs)]

pub mod admin;
pub mod backup_report;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod grpc_metrics;
pub mod http;
pub mod logging;
pub mod node;
pub mod profile;
pub mod restore;
pub mod scrape;
pub mod security;
#[cfg(feature = "testing")]
pub mod testing;

/// Generated types of raftd's administration service (`proto/admin.proto`).
pub mod pb {
    /// Package `raftd.admin.v1`.
    #[allow(missing_docs)]
    pub mod admin {
        tonic::include_proto!("raftd.admin.v1");
    }
}
