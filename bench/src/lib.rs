//! raftd against etcd on one machine: local clusters of real processes ([`cluster`]), a
//! closed-loop load generator on the `etcd-client` crate ([`load`]), watch fan-out under a
//! put load ([`watch_load`]), lease churn and keep-alives ([`lease_load`]), the cost of MVCC
//! history ([`history`]) and the failover measurement ([`failover`]), the plots of a cluster
//! run ([`plot`]), and the workload client of chaos runs ([`chaos`]). The `raft-bench` binary
//! (`cargo xtask bench cluster`) runs
//! them; the integration tests under `tests/` drive raftd with the same client.
//!
//! Not a default workspace member: etcd-client's build script needs `protoc`, which
//! `cargo xtask` provides.

pub mod binaries;
pub mod chaos;
pub mod cluster;
pub mod compare;
pub mod failover;
pub mod history;
pub mod lease_load;
pub mod load;
pub mod plot;
pub mod restore;
pub mod watch_load;
