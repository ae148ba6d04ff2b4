//! Local clusters of real server processes on loopback, for integration tests and the
//! cluster benchmark (feature `testing`).
//!
//! A [`Cluster`] gives every member free loopback ports (client, peer and metrics), a data
//! directory and a log file under one directory, and starts, kills (SIGKILL), stops
//! (SIGTERM) and restarts its processes. What the process is comes from a [`Launch`]:
//! [`Raftd`] builds `raftd`'s command line; other servers (etcd, raftd from a configuration
//! file) bring their own. Dropping the cluster kills every process still running.
//!
//! ```no_run
//! use raft_node::testing::{Cluster, Raftd};
//! use std::time::Duration;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let raftd = Raftd::new("target/debug/raftd").calm().token("demo");
//! let cluster = Cluster::start(raftd, 3)?;
//! let leader = cluster.leader(Duration::from_secs(20)).await?;
//! let client = cluster.node_client(leader);
//! # drop(client);
//! # Ok(())
//! # }
//! ```
//!
//! The parts: what a member's process is (`testing/launch.rs`), the cluster of processes
//! (`testing/cluster.rs`), waiting and key-value helpers (`testing/helpers.rs`), and the
//! tools and endpoints tests read a member through: etcdctl, `/metrics`, `/status`
//! (`testing/tools.rs`); free loopback ports are here.

mod cluster;
mod helpers;
mod launch;
mod tools;

pub use cluster::Cluster;
pub use helpers::{eventually, get, put, put_once};
pub use launch::{CALM, Launch, Member, Raftd, TlsFiles};
pub use tools::{
    EtcdctlOutput, etcdctl, etcdctl_ok, etcdctl_once, etcdctl_retried, http, metric_sum, scrape,
    tool_on_path,
};

use anyhow::Result;
use std::net::TcpListener;
use std::time::Duration;

/// The timeout of every call made by the clients this module hands out.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A port on 127.0.0.1 that was free a moment ago.
///
/// Chosen below the kernel's ephemeral range (`ip_local_port_range`), where the system's
/// own `:0` binds and outgoing connections take their source ports: a port from inside it,
/// free when picked, is soon a peer's source port while the member it was meant for is down
/// (its restart then fails with "address in use", or a dial reaches the wrong process).
/// Picks are random (test processes run in parallel) and never repeat within a process.
pub fn free_port() -> Result<u16> {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FLOOR: u16 = 10_000;
    if low > FLOOR + 1000 {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32)
            | 1;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..200 {
            // xorshift64: enough to spread parallel test processes over the range.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = FLOOR + (seed % u64::from(low - FLOOR)) as u16;
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh `127.0.0.1:port` address.
pub fn free_addr() -> Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}
