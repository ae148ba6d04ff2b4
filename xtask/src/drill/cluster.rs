//! The drill's cluster: three raftd processes on loopback (or in network namespaces),
//! started, signalled, cut off and healed, and asked through `raftctl`.

use crate::netns::NetNs;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub(super) struct Node {
    pub(super) id: u64,
    pub(super) client: String,
    pub(super) peer: String,
    pub(super) child: Option<Child>,
}

pub(super) struct Cluster {
    pub(super) raftd: PathBuf,
    pub(super) raftctl: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) initial: String,
    pub(super) nodes: Vec<Node>,
    /// Extra raftd flags for every node.
    pub(super) extra: Vec<String>,
    /// Nodes run with `RAFTD_FAULT_INJECTION=1`.
    pub(super) fault_switch: bool,
    /// How a node is cut off: `Some` runs every node in its own network namespace, `None`
    /// uses raftd's fault switch.
    pub(super) net: Option<NetNs>,
}

impl Drop for Cluster {
    /// Kills the nodes before the network (if any) is removed.
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Cluster {
    pub(super) fn new(
        raftd: PathBuf,
        raftctl: PathBuf,
        dir: PathBuf,
        extra: Vec<String>,
        net: Option<NetNs>,
        fault_switch: bool,
    ) -> Result<Cluster> {
        // In namespaces every node has an address of its own; on loopback, ports of its own.
        let addrs: Vec<(String, String)> = match &net {
            Some(net) => (1..=3u64)
                .map(|id| {
                    (
                        format!("{}:2379", net.ip(id)),
                        format!("{}:2380", net.ip(id)),
                    )
                })
                .collect(),
            None => {
                let ports = crate::cluster::free_ports(6)?;
                ports
                    .chunks(2)
                    .map(|p| (format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])))
                    .collect()
            }
        };
        let nodes: Vec<Node> = addrs
            .into_iter()
            .zip(1..=3u64)
            .map(|((client, peer), id)| Node {
                id,
                client,
                peer,
                child: None,
            })
            .collect();
        let initial: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect();
        let mut c = Cluster {
            raftd,
            raftctl,
            dir,
            initial: initial.join(","),
            nodes,
            extra,
            net,
            fault_switch,
        };
        for id in 1..=3 {
            c.start(id)?;
        }
        Ok(c)
    }

    pub(super) fn start(&mut self, id: u64) -> Result<()> {
        self.spawn(id, false)
    }

    /// Starts node `id`; a joining node (`join`) also lists itself in the initial cluster.
    pub(super) fn spawn(&mut self, id: u64, join: bool) -> Result<()> {
        let n = &self.nodes[id as usize - 1];
        let mut initial = self.initial.clone();
        if join {
            initial.push_str(&format!(",{id}={}", n.peer));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{id}.log")))?;
        let mut cmd = match &self.net {
            Some(net) => net.exec(id, &self.raftd),
            None => Command::new(&self.raftd),
        };
        if self.fault_switch {
            cmd.env("RAFTD_FAULT_INJECTION", "1");
        }
        let child = cmd
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node{id}")))
            .args(["--listen-client", &n.client, "--listen-peer", &n.peer])
            .args(["--initial-cluster", &initial, "--cluster-token", "drill"])
            .args(if join { &["--join"][..] } else { &[] })
            .args(&self.extra)
            .args([
                "--heartbeat-interval",
                "50ms",
                "--election-timeout-base",
                "300ms",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.raftd.display()))?;
        self.nodes[id as usize - 1].child = Some(child);
        Ok(())
    }

    /// Sends `signal` (e.g. `-USR1`) to node `id`.
    pub(super) fn signal(&self, id: u64, signal: &str) -> Result<()> {
        let Some(ch) = &self.nodes[id as usize - 1].child else {
            bail!("node {id} is not running");
        };
        let ok = Command::new("kill")
            .args([signal, &ch.id().to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {signal} node {id} failed");
        }
        Ok(())
    }

    /// Cuts node `id` off from the other nodes (both directions); returns how.
    pub(super) fn cut_off(&mut self, id: u64) -> Result<String> {
        let others: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|&n| n != id)
            .collect();
        match &mut self.net {
            Some(net) => net.cut(id, &others),
            None => {
                self.signal(id, "-USR1")?;
                Ok("fault switch, SIGUSR1".into())
            }
        }
    }

    /// Undoes [`cut_off`](Self::cut_off).
    pub(super) fn heal(&mut self, id: u64) -> Result<String> {
        match &mut self.net {
            Some(net) => {
                net.heal(id)?;
                Ok("iptables rules removed".into())
            }
            None => {
                self.signal(id, "-USR2")?;
                Ok("fault switch, SIGUSR2".into())
            }
        }
    }

    /// The role node `id` reports for itself (`leader`, `follower`, ...).
    pub(super) fn role_of(&self, id: u64) -> Option<String> {
        let n = &self.nodes[id as usize - 1];
        let (_, out) = crate::cluster::ctl(&self.raftctl, &n.client, &["status"]).ok()?;
        out.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id.to_string().as_str()) && cols.len() > 3)
                .then(|| cols[3].to_string())
        })
    }

    /// Stops node `id` with SIGTERM (a clean shutdown), waiting up to 10 s.
    pub(super) fn terminate(&mut self, id: u64) -> Result<()> {
        self.signal(id, "-TERM")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(mut ch) = self.nodes[id as usize - 1].child.take() {
            while ch.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = ch.kill();
                    let _ = ch.wait();
                    bail!("node {id} did not stop within 10 s of SIGTERM");
                }
                sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub(super) fn kill9(&mut self, id: u64) {
        if let Some(mut ch) = self.nodes[id as usize - 1].child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    pub(super) fn stop_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill9(id);
        }
    }

    /// `raftctl` against every running node, retried for up to 30 s until it succeeds.
    pub(super) fn ctl_retry(&self, args: &[&str]) -> Result<String> {
        let endpoints: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.client.as_str())
            .collect();
        let endpoints = endpoints.join(",");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out) = crate::cluster::ctl(&self.raftctl, &endpoints, args)?;
            if ok {
                return Ok(out);
            }
            if Instant::now() > deadline {
                bail!("raftctl {} failed for 30 s: {}", args.join(" "), out.trim());
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Node `id`'s own row of `raftctl status` (asked of that node): its columns.
    pub(super) fn own_status(&self, id: u64) -> Option<Vec<String>> {
        let n = &self.nodes[id as usize - 1];
        let (_, out) = crate::cluster::ctl(&self.raftctl, &n.client, &["status"]).ok()?;
        out.lines().find_map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            (cols.first().map(String::as_str) == Some(id.to_string().as_str()) && cols.len() > 8)
                .then_some(cols)
        })
    }

    pub(super) fn endpoints(&self) -> String {
        let all: Vec<&str> = self.nodes.iter().map(|n| n.client.as_str()).collect();
        all.join(",")
    }

    /// The leader `endpoint` reports, if any.
    pub(super) fn leader_seen_by(&self, endpoint: &str) -> Option<u64> {
        // `raftctl status` exits 1 while a member is down but still prints the leader.
        let (_, out) = crate::cluster::ctl(&self.raftctl, endpoint, &["status"]).ok()?;
        let line = out.lines().find(|l| l.starts_with("leader: "))?;
        line["leader: ".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Waits until a live node other than `not` reports a leader other than `not`.
    pub(super) fn wait_leader(&self, not: Option<u64>, within: Duration) -> Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            for n in &self.nodes {
                if Some(n.id) == not || n.child.is_none() {
                    continue;
                }
                if let Some(l) = self.leader_seen_by(&n.client)
                    && Some(l) != not
                {
                    return Ok(l);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within {within:?}");
            }
            sleep(Duration::from_millis(50));
        }
    }
}
