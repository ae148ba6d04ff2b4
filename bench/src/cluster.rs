//! Local clusters of real server processes on loopback: `raftd` or `etcd`, one process per
//! member, each with its own data directory and log file.

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// One member: its addresses and, while it runs, its process.
struct Member {
    client: String,
    peer: String,
    child: Option<Child>,
    /// Started with `--join` (a raftd member added at run time).
    join: bool,
    /// The largest VmHWM seen over the member's processes so far, in KiB.
    peak_rss_kib: u64,
}

/// A cluster of local processes. Dropping it kills every process still running.
pub struct Cluster {
    server: Server,
    dir: PathBuf,
    members: BTreeMap<u64, Member>,
    extra_args: Vec<String>,
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh `127.0.0.1:port` address.
pub fn free_addr() -> Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}

impl Cluster {
    /// Starts `n` members (ids 1..=n) of a new cluster with data and logs under `dir`;
    /// `extra_args` go to every server process (e.g. raftd election settings).
    pub fn start(server: Server, dir: &Path, n: u64, extra_args: &[&str]) -> Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut c = Cluster {
            server,
            dir: dir.to_path_buf(),
            members: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            let (client, peer) = (free_addr()?, free_addr()?);
            c.members.insert(
                id,
                Member {
                    client,
                    peer,
                    child: None,
                    join: false,
                    peak_rss_kib: 0,
                },
            );
        }
        for id in 1..=n {
            c.spawn(id)?;
        }
        Ok(c)
    }

    /// Which server the cluster runs.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Starts a raftd member that joins the running cluster (after `MemberAdd` of `peer`).
    pub fn spawn_joining(&mut self, id: u64, peer: String) -> Result<()> {
        if !matches!(self.server, Server::Raftd(_)) {
            bail!("joining members are only supported for raftd clusters");
        }
        self.members.insert(
            id,
            Member {
                client: free_addr()?,
                peer,
                child: None,
                join: true,
                peak_rss_kib: 0,
            },
        );
        self.spawn(id)
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    /// Peer addresses of the founding members (not the joiners), for the initial cluster.
    fn initial_cluster(&self, url_prefix: &str, name_prefix: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| !m.join)
            .map(|(id, m)| format!("{name_prefix}{id}={url_prefix}{}", m.peer))
            .collect()
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let m = &self.members[&id];
        let data = self.dir.join(format!("node{id}"));
        let mut cmd = match &self.server {
            Server::Raftd(bin) => {
                let mut initial = self.initial_cluster("", "");
                if m.join {
                    initial.push(format!("{id}={}", m.peer));
                }
                let mut cmd = Command::new(bin);
                cmd.args(["--id", &id.to_string(), "--name", &format!("node{id}")])
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--listen-client", &m.client, "--listen-peer", &m.peer])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--cluster-token", "raft-bench"]);
                if m.join {
                    cmd.arg("--join");
                }
                cmd
            }
            Server::Etcd(bin) => {
                let initial = self.initial_cluster("http://", "n");
                let (client, peer) = (format!("http://{}", m.client), format!("http://{}", m.peer));
                let mut cmd = Command::new(bin);
                cmd.args(["--name", &format!("n{id}")])
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--listen-client-urls", &client])
                    .args(["--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer])
                    .args(["--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--initial-cluster-token", "raft-bench"])
                    .args(["--initial-cluster-state", "new"]);
                cmd
            }
        };
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        self.members.get_mut(&id).expect("member exists").child = Some(child);
        Ok(())
    }

    /// Ids of the members whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.child.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The client address (`127.0.0.1:port`) of member `id`.
    pub fn endpoint(&self, id: u64) -> String {
        self.members[&id].client.clone()
    }

    /// The client addresses of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.running()
            .into_iter()
            .map(|i| self.endpoint(i))
            .collect()
    }

    /// The process id of member `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.members[&id].child.as_ref().map(Child::id)
    }

    /// Reads every running member's VmHWM (peak resident set) into its running maximum.
    pub fn sample_rss(&mut self) {
        for m in self.members.values_mut() {
            if let Some(kib) = m.child.as_ref().and_then(|c| vm_hwm_kib(c.id())) {
                m.peak_rss_kib = m.peak_rss_kib.max(kib);
            }
        }
    }

    /// CPU time used so far by the running members' processes (every thread, user and
    /// system), from `/proc/<pid>/task/*/schedstat`. Threads that exited are not counted.
    pub fn cpu_time(&self) -> Duration {
        self.members
            .values()
            .filter_map(|m| m.child.as_ref())
            .map(|c| process_cpu(c.id()))
            .sum()
    }

    /// Peak RSS in KiB of each member over all its processes (sampled by
    /// [`sample_rss`](Self::sample_rss), which stop and kill also call).
    pub fn peak_rss_kib(&self) -> BTreeMap<u64, u64> {
        self.members
            .iter()
            .map(|(&id, m)| (id, m.peak_rss_kib))
            .collect()
    }

    /// Kills member `id` with SIGKILL and reaps it.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        self.sample_rss();
        let m = self.members.get_mut(&id).context("no such member")?;
        if let Some(mut child) = m.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends SIGTERM to member `id` and waits (at most `limit`) for it to exit; returns how
    /// long the exit took and the exit status. After `limit` the process is killed and this
    /// is an error.
    pub fn terminate(&mut self, id: u64, limit: Duration) -> Result<(Duration, ExitStatus)> {
        self.sample_rss();
        let m = self.members.get_mut(&id).context("no such member")?;
        let mut child = m.child.take().context("member is not running")?;
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((started.elapsed(), status));
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("member {id} did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts member `id` again from its data directory.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        if self.members[&id].child.is_some() {
            bail!("member {id} is still running");
        }
        self.spawn(id)
    }

    /// Stops member `id` (SIGKILL) and forgets it (after a `MemberRemove`).
    pub fn forget(&mut self, id: u64) -> Result<()> {
        self.kill9(id)?;
        self.members.remove(&id);
        Ok(())
    }

    /// The last `lines` lines of every member's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for id in self.members.keys() {
            let text = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} node {id} ---\n", self.server.name()));
            out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// A client of the given members (all running members when `ids` is empty), with a
    /// per-request timeout.
    pub async fn client(&self, ids: &[u64], timeout: Duration) -> Result<Client> {
        let eps: Vec<String> = if ids.is_empty() {
            self.endpoints()
        } else {
            ids.iter().map(|&i| self.endpoint(i)).collect()
        };
        connect(&eps, timeout).await
    }

    /// Waits (at most `limit`) until a running member reports itself leader; returns its id.
    pub async fn leader(&self, limit: Duration) -> Result<u64> {
        let deadline = Instant::now() + limit;
        loop {
            for id in self.running() {
                let Ok(mut c) = self.client(&[id], Duration::from_secs(1)).await else {
                    continue;
                };
                if let Ok(st) = c.status().await {
                    let me = st.header().map_or(0, |h| h.member_id());
                    if me != 0 && st.leader() == me {
                        return Ok(id);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within {limit:?}\n{}", self.logs(15));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in self.members.values_mut() {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Connects an etcd client to `endpoints` (`host:port`), with a per-request timeout.
pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Client> {
    let opts = ConnectOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(Duration::from_secs(2));
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

/// Peak resident set (VmHWM) of process `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
