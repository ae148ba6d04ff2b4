//! Local clusters of real server processes on loopback: `raftd` or `etcd`, one process per
//! member, each with its own data directory and log file. The processes are run by
//! raft-node's test harness ([`raft_node::testing::Cluster`]); this module adds etcd's command
//! line, etcd-client clients and the CPU and memory figures of the benchmark.

use anyhow::{Context, Result};
use etcd_client::{Client, ConnectOptions, TlsOptions};
use raft_node::testing::{self, Launch, Member, Raftd, TlsFiles};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use raft_node::testing::{free_addr, free_port};

/// The server a cluster runs.
#[derive(Clone, Debug)]
pub enum Server {
    /// `raftd` at this path.
    Raftd(PathBuf),
    /// `etcd` (3.4 or newer) at this path.
    Etcd(PathBuf),
}

impl Server {
    /// A short name for reports: `raftd` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            Server::Raftd(_) => "raftd",
            Server::Etcd(_) => "etcd",
        }
    }
}

/// etcd's command line for one member, then `args`.
struct Etcd {
    bin: PathBuf,
    args: Vec<String>,
}

impl Launch for Etcd {
    fn name(&self) -> &str {
        "etcd"
    }

    fn command(&self, m: &Member<'_>) -> std::process::Command {
        let mut initial: Vec<String> = m
            .founders
            .iter()
            .map(|(id, peer)| format!("n{id}=http://{peer}"))
            .collect();
        if m.join {
            initial.push(format!("n{}=http://{}", m.id, m.peer));
        }
        let (client, peer) = (format!("http://{}", m.client), format!("http://{}", m.peer));
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(["--name", &format!("n{}", m.id)])
            .arg("--data-dir")
            .arg(m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", "raft-bench"])
            .args([
                "--initial-cluster-state",
                if m.join { "existing" } else { "new" },
            ])
            .args(&self.args);
        cmd
    }
}

/// A cluster of local processes. It dereferences to the process harness (addresses,
/// restarts, logs, leader); [`kill9`](Self::kill9), [`terminate`](Self::terminate) and
/// [`forget`](Self::forget) sample the peak RSS first. Dropping it kills every process
/// still running.
pub struct Cluster {
    procs: testing::Cluster,
    server: Server,
    /// The certificates of a TLS cluster (raftd only).
    tls: Option<TlsFiles>,
    /// The largest VmHWM seen over each member's processes so far, in KiB.
    peak_rss_kib: BTreeMap<u64, u64>,
}

impl Deref for Cluster {
    type Target = testing::Cluster;

    fn deref(&self) -> &testing::Cluster {
        &self.procs
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut testing::Cluster {
        &mut self.procs
    }
}

impl Cluster {
    /// Starts `n` members (ids 1..=n) of a new cluster with data and logs under `dir`;
    /// `extra_args` go to every server process (e.g. raftd election settings).
    pub fn start(server: Server, dir: &Path, n: u64, extra_args: &[&str]) -> Result<Cluster> {
        Self::start_with(server, dir, n, extra_args, None)
    }

    /// [`start`](Self::start); with `tls` (raftd only), every member runs with TLS on its
    /// client port and mutual TLS between peers, and the cluster's clients use TLS.
    pub fn start_with(
        server: Server,
        dir: &Path,
        n: u64,
        extra_args: &[&str],
        tls: Option<TlsFiles>,
    ) -> Result<Cluster> {
        let procs = match &server {
            Server::Raftd(bin) => {
                let mut raftd = Raftd::new(bin).token("raft-bench").args(extra_args);
                if let Some(tls) = &tls {
                    raftd = raftd.tls(tls.clone());
                }
                testing::Cluster::start_in(raftd, dir, n)?
            }
            Server::Etcd(_) if tls.is_some() => anyhow::bail!("TLS runs are raftd only"),
            Server::Etcd(bin) => {
                let args = extra_args.iter().map(|s| s.to_string()).collect();
                let etcd = Etcd {
                    bin: bin.clone(),
                    args,
                };
                testing::Cluster::start_in(etcd, dir, n)?
            }
        };
        Ok(Cluster {
            procs,
            server,
            tls,
            peak_rss_kib: (1..=n).map(|id| (id, 0)).collect(),
        })
    }

    /// TLS settings for clients of a TLS cluster.
    pub fn client_tls(&self) -> Option<TlsOptions> {
        self.tls.as_ref().map(TlsFiles::client)
    }

    /// Which server the cluster runs.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Reads every running member's VmHWM (peak resident set) into its running maximum.
    pub fn sample_rss(&mut self) {
        for id in self.procs.running() {
            if let Some(kib) = self.procs.pid(id).and_then(vm_hwm_kib) {
                let peak = self.peak_rss_kib.entry(id).or_default();
                *peak = (*peak).max(kib);
            }
        }
    }

    /// CPU time used so far by the running members' processes (every thread, user and
    /// system), from `/proc/<pid>/task/*/schedstat`. Threads that exited are not counted.
    pub fn cpu_time(&self) -> Duration {
        self.procs
            .running()
            .into_iter()
            .filter_map(|id| self.procs.pid(id))
            .map(process_cpu)
            .sum()
    }

    /// Times the running members' threads were switched onto a CPU so far (context
    /// switches in, voluntary or not), from `/proc/<pid>/task/*/schedstat`. Threads that
    /// exited are not counted.
    pub fn switches(&self) -> u64 {
        self.procs
            .running()
            .into_iter()
            .filter_map(|id| self.procs.pid(id))
            .map(process_switches)
            .sum()
    }

    /// Peak RSS in KiB of each member over all its processes (sampled by
    /// [`sample_rss`](Self::sample_rss), which stop and kill also call).
    pub fn peak_rss_kib(&self) -> BTreeMap<u64, u64> {
        self.peak_rss_kib.clone()
    }

    /// Kills member `id` with SIGKILL and reaps it.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        self.sample_rss();
        self.procs.kill9(id)
    }

    /// Sends SIGTERM to member `id` and waits (at most `limit`) for it to exit; returns how
    /// long the exit took and the exit status. After `limit` the process is killed and this
    /// is an error.
    pub fn terminate(&mut self, id: u64, limit: Duration) -> Result<(Duration, ExitStatus)> {
        self.sample_rss();
        self.procs.terminate(id, limit)
    }

    /// Stops member `id` (SIGKILL) and forgets it (after a `MemberRemove`).
    pub fn forget(&mut self, id: u64) -> Result<()> {
        self.sample_rss();
        self.peak_rss_kib.remove(&id);
        self.procs.forget(id)
    }

    /// An etcd-client client of the given members (all running members when `ids` is
    /// empty), with a per-request timeout.
    pub async fn etcd_client(&self, ids: &[u64], timeout: Duration) -> Result<Client> {
        let eps: Vec<String> = if ids.is_empty() {
            self.endpoints()
        } else {
            ids.iter().map(|&i| self.endpoint(i)).collect()
        };
        connect_tls(&eps, timeout, self.client_tls()).await
    }
}

/// Connects an etcd client to `endpoints` (`host:port`), with a per-request timeout.
pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Client> {
    connect_tls(endpoints, timeout, None).await
}

/// [`connect`], with TLS when `tls` is given.
pub async fn connect_tls(
    endpoints: &[String],
    timeout: Duration,
    tls: Option<TlsOptions>,
) -> Result<Client> {
    let mut opts = ConnectOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        opts = opts.with_tls(tls);
    }
    Client::connect(endpoints, Some(opts))
        .await
        .with_context(|| format!("connecting to {endpoints:?}"))
}

/// VmHWM (peak resident set size, KiB) of a process, from `/proc/<pid>/status`.
/// CPU time of every live thread of process `pid` (0 when it cannot be read).
pub fn process_cpu(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// How many times the live threads of process `pid` were switched onto a CPU (the third
/// field of each thread's `schedstat`; 0 when it cannot be read).
pub fn process_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

/// Peak resident set (VmHWM) of process `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
