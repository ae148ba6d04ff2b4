//! `cargo xtask drill <scenario>`: failure drills against a local 3-node cluster under a
//! steady write load (concurrent `raftctl put`s), printing a timeline and checking at the
//! end that every acknowledged write is readable with its value from every node.
//!
//! Scenarios: `leader-kill` (SIGKILL the leader, restart it later) and `partition-leader`
//! (cut the leader off from its peers and heal it later; the old leader must step down by
//! check-quorum), `rolling-restart` (SIGTERM and restart every node in turn, followers
//! first) and `follower-disk-loss` (SIGKILL a follower and delete its data dir, replace it
//! the way an operator does: remove the member, add a fresh learner, start it with `--join`
//! so it rebuilds from the leader's snapshot and log, promote it once caught up).
//!
//! `partition-leader` cuts the leader off in one of two ways (`--net auto|netns|fault-switch`):
//! with every node in its own network namespace and iptables DROP rules in the leader's
//! namespace (see [`crate::netns`]; needs root, `ip` and `iptables`), or with raftd's fault
//! switch (nodes run with `RAFTD_FAULT_INJECTION=1` and get SIGUSR1 / SIGUSR2). `auto`, the
//! default, uses namespaces when it can set them up and says why it falls back when not.
//!
//! Size: past the house's ~700 lines: one scripted scenario per failure, each short; they
//! read best side by side. A module per scenario is left for issue 24.

use crate::netns::{self, NetNs};
use crate::util;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

struct Node {
    id: u64,
    client: String,
    peer: String,
    child: Option<Child>,
}

struct Cluster {
    raftd: PathBuf,
    raftctl: PathBuf,
    dir: PathBuf,
    initial: String,
    nodes: Vec<Node>,
    /// Extra raftd flags for every node.
    extra: Vec<String>,
    /// Nodes run with `RAFTD_FAULT_INJECTION=1`.
    fault_switch: bool,
    /// How a node is cut off: `Some` runs every node in its own network namespace, `None`
    /// uses raftd's fault switch.
    net: Option<NetNs>,
}

impl Drop for Cluster {
    /// Kills the nodes before the network (if any) is removed.
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// How `partition-leader` cuts the leader off (`--net`).
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum NetMode {
    /// Network namespaces when they can be set up, else the fault switch.
    Auto,
    /// Network namespaces and iptables, or fail.
    Netns,
    /// raftd's fault switch.
    FaultSwitch,
}

/// A drill.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Scenario {
    /// SIGKILL the leader, restart it later.
    LeaderKill,
    /// Cut the leader off from its peers, heal it later.
    PartitionLeader,
    /// SIGTERM and restart every node in turn, followers first.
    RollingRestart,
    /// Replace a follower that lost its disk (remove, add a learner, rebuild, promote).
    FollowerDiskLoss,
}

impl Scenario {
    /// Every drill, in the order `cargo xtask ci` runs them.
    pub const ALL: [Scenario; 4] = [
        Scenario::LeaderKill,
        Scenario::PartitionLeader,
        Scenario::RollingRestart,
        Scenario::FollowerDiskLoss,
    ];

    /// The name on the command line.
    fn name(self) -> &'static str {
        match self {
            Scenario::LeaderKill => "leader-kill",
            Scenario::PartitionLeader => "partition-leader",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::FollowerDiskLoss => "follower-disk-loss",
        }
    }
}

/// `cargo xtask drill`.
#[derive(clap::Args)]
pub struct Args {
    /// The drill to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The short version (about 15 s), as CI runs it.
    #[arg(long)]
    pub short: bool,
    /// Build and run release binaries.
    #[arg(long)]
    pub release: bool,
    /// partition-leader only: how the leader is cut off (auto: namespaces when they can be
    /// set up, else the fault switch).
    #[arg(long, value_enum)]
    pub net: Option<NetMode>,
}

/// Acknowledged writes: when each was sent, when it was acknowledged, key and value.
type Acks = Arc<Mutex<Vec<(Instant, Instant, String, String)>>>;

/// Runs the task.
pub fn run(args: Args) -> Result<()> {
    let Args {
        scenario,
        short,
        release,
        net,
    } = args;
    let kind = scenario;
    let scenario = kind.name();
    if net.is_some() && scenario != "partition-leader" {
        bail!("--net applies to the partition-leader drill only");
    }
    let mode = net.unwrap_or(NetMode::Auto);
    let mut build = util::cargo();
    build.args(["build", "--package", "raft-node", "--bins"]);
    if release {
        build.arg("--release");
    }
    util::run(&mut build)?;
    let bin = util::target_dir().join(if release { "release" } else { "debug" });
    // The pid keeps concurrent drills (two `cargo xtask ci` at once) apart.
    let dir = std::env::temp_dir().join(format!(
        "raft-xtask-drill-{scenario}-{}",
        std::process::id()
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    // Snapshots every 50 entries, so a replaced member needs one (the log is compacted).
    let extra = match scenario {
        "follower-disk-loss" => vec!["--snapshot-threshold".to_string(), "50".to_string()],
        _ => Vec::new(),
    };
    let net = match scenario {
        "partition-leader" => choose_net(mode)?,
        _ => None,
    };
    let fault_switch = scenario == "partition-leader" && net.is_none();
    let mut c = Cluster::new(
        bin.join("raftd"),
        bin.join("raftctl"),
        dir.clone(),
        extra,
        net,
        fault_switch,
    )?;
    let outcome = match kind {
        Scenario::LeaderKill => leader_kill(&mut c, short),
        Scenario::PartitionLeader => partition_leader(&mut c, short),
        Scenario::RollingRestart => rolling_restart(&mut c, short),
        Scenario::FollowerDiskLoss => follower_disk_loss(&mut c, short),
    };
    // Stops the nodes, then removes the network namespaces, if any.
    drop(c);
    match &outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            println!("drill {scenario}: PASSED");
        }
        Err(e) => eprintln!(
            "drill {scenario}: FAILED: {e:#} (logs in {})",
            dir.display()
        ),
    }
    outcome
}

/// The network `partition-leader` runs on for `mode`: `Some` (namespaces) or `None` (the
/// fault switch); prints which and why.
fn choose_net(mode: NetMode) -> Result<Option<NetNs>> {
    let why_not = match mode {
        NetMode::FaultSwitch => {
            println!("partition mechanism: raftd's fault switch (--net fault-switch)");
            return Ok(None);
        }
        NetMode::Netns => {
            if let Some(why) = netns::unavailable() {
                bail!("--net netns: {why}");
            }
            let net = NetNs::create(&[1, 2, 3]).context("--net netns")?;
            println!("partition mechanism: network namespaces and iptables (--net netns)");
            println!("network: {}", net.describe());
            return Ok(Some(net));
        }
        NetMode::Auto => match netns::unavailable() {
            Some(why) => why,
            None => match NetNs::create(&[1, 2, 3]) {
                Ok(net) => {
                    println!(
                        "partition mechanism: network namespaces and iptables \
                         (--net auto: root, with ip and iptables)"
                    );
                    println!("network: {}", net.describe());
                    return Ok(Some(net));
                }
                Err(e) => format!("setting up network namespaces failed: {e:#}"),
            },
        },
    };
    println!("partition mechanism: raftd's fault switch (--net auto: {why_not})");
    Ok(None)
}

impl Cluster {
    fn new(
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

    fn start(&mut self, id: u64) -> Result<()> {
        self.spawn(id, false)
    }

    /// Starts node `id`; a joining node (`join`) also lists itself in the initial cluster.
    fn spawn(&mut self, id: u64, join: bool) -> Result<()> {
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
    fn signal(&self, id: u64, signal: &str) -> Result<()> {
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
    fn cut_off(&mut self, id: u64) -> Result<String> {
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
    fn heal(&mut self, id: u64) -> Result<String> {
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
    fn role_of(&self, id: u64) -> Option<String> {
        let n = &self.nodes[id as usize - 1];
        let (_, out) = crate::cluster::ctl(&self.raftctl, &n.client, &["status"]).ok()?;
        out.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id.to_string().as_str()) && cols.len() > 3)
                .then(|| cols[3].to_string())
        })
    }

    /// Stops node `id` with SIGTERM (a clean shutdown), waiting up to 10 s.
    fn terminate(&mut self, id: u64) -> Result<()> {
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

    fn kill9(&mut self, id: u64) {
        if let Some(mut ch) = self.nodes[id as usize - 1].child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    fn stop_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill9(id);
        }
    }

    /// `raftctl` against every running node, retried for up to 30 s until it succeeds.
    fn ctl_retry(&self, args: &[&str]) -> Result<String> {
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
    fn own_status(&self, id: u64) -> Option<Vec<String>> {
        let n = &self.nodes[id as usize - 1];
        let (_, out) = crate::cluster::ctl(&self.raftctl, &n.client, &["status"]).ok()?;
        out.lines().find_map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            (cols.first().map(String::as_str) == Some(id.to_string().as_str()) && cols.len() > 8)
                .then_some(cols)
        })
    }

    fn endpoints(&self) -> String {
        let all: Vec<&str> = self.nodes.iter().map(|n| n.client.as_str()).collect();
        all.join(",")
    }

    /// The leader `endpoint` reports, if any.
    fn leader_seen_by(&self, endpoint: &str) -> Option<u64> {
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
    fn wait_leader(&self, not: Option<u64>, within: Duration) -> Result<u64> {
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

/// Concurrent writers, each putting `drill/w<i>/<n>` through every endpoint until stopped.
fn start_load(
    c: &Cluster,
    writers: usize,
) -> (Arc<AtomicBool>, Acks, Vec<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Acks = Arc::default();
    let handles = (0..writers)
        .map(|w| {
            let (stop, acks) = (stop.clone(), acks.clone());
            let (raftctl, endpoints) = (c.raftctl.clone(), c.endpoints());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (key, value) = (format!("drill/w{w}/{n:06}"), format!("v{n}"));
                    let sent = Instant::now();
                    if let Ok((true, out)) =
                        crate::cluster::ctl(&raftctl, &endpoints, &["put", &key, &value])
                        && out.trim() == "OK"
                    {
                        acks.lock().unwrap_or_else(|e| e.into_inner()).push((
                            sent,
                            Instant::now(),
                            key,
                            value,
                        ));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    (stop, acks, handles)
}

/// Checks that every acknowledged write reads back with its value from every node.
fn verify(c: &Cluster, acks: &Acks) -> Result<()> {
    let acks = acks.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let running: Vec<&Node> = c.nodes.iter().filter(|n| n.child.is_some()).collect();
    for n in &running {
        let (ok, out) = crate::cluster::ctl(&c.raftctl, &n.client, &["get", "drill/", "--prefix"])?;
        if !ok {
            bail!("reading back through node {}: {out}", n.id);
        }
        let lines: Vec<&str> = out.lines().collect();
        let got: BTreeMap<&str, &str> = lines
            .chunks(2)
            .filter(|p| p.len() == 2)
            .map(|p| (p[0], p[1]))
            .collect();
        for (_, _, k, v) in &acks {
            if got.get(k.as_str()) != Some(&v.as_str()) {
                bail!(
                    "node {}: acknowledged write {k}={v} reads back as {:?}",
                    n.id,
                    got.get(k.as_str())
                );
            }
        }
    }
    println!(
        "verify: {} acknowledged writes read back from all {} running nodes",
        acks.len(),
        running.len()
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn leader_kill(c: &mut Cluster, short: bool) -> Result<()> {
    let t0 = Instant::now();
    let leader = c.wait_leader(None, Duration::from_secs(30))?;
    println!("[{:>8}] leader is node {leader}", ms(t0.elapsed()));
    let (stop, acks, writers) = start_load(c, 3);
    sleep(Duration::from_secs(if short { 2 } else { 10 }));
    let before = acks.lock().unwrap_or_else(|e| e.into_inner()).len();
    let killed_at = Instant::now();
    c.kill9(leader);
    println!(
        "[{:>8}] kill -9 node {leader} ({before} writes acknowledged so far)",
        ms(t0.elapsed())
    );
    let new = c.wait_leader(Some(leader), Duration::from_secs(30))?;
    println!(
        "[{:>8}] node {new} leads: {} after the kill",
        ms(t0.elapsed()),
        ms(killed_at.elapsed())
    );
    let first = first_ack_after(&acks, killed_at)?;
    println!(
        "[{:>8}] first write acknowledged {} after the kill",
        ms(first - t0),
        ms(first - killed_at)
    );
    sleep(Duration::from_secs(if short { 1 } else { 5 }));
    c.start(leader)?;
    println!("[{:>8}] node {leader} restarted", ms(t0.elapsed()));
    sleep(Duration::from_secs(if short { 2 } else { 5 }));
    finish(c, t0, stop, &acks, writers)
}

/// When the first write sent after `since` was acknowledged, waiting up to 30 s.
fn first_ack_after(acks: &Acks, since: Instant) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = acks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = a
            .iter()
            .filter(|(sent, ..)| *sent > since)
            .map(|(_, acked, ..)| *acked)
            .min()
        {
            return Ok(at);
        }
        drop(a);
        if Instant::now() > deadline {
            bail!("no write acknowledged within 30 s");
        }
        sleep(Duration::from_millis(20));
    }
}

fn partition_leader(c: &mut Cluster, short: bool) -> Result<()> {
    let t0 = Instant::now();
    let leader = c.wait_leader(None, Duration::from_secs(30))?;
    println!("[{:>8}] leader is node {leader}", ms(t0.elapsed()));
    let (stop, acks, writers) = start_load(c, 3);
    sleep(Duration::from_secs(if short { 2 } else { 10 }));
    let cutting = Instant::now();
    let how = c.cut_off(leader)?;
    // Times count from when the cut is in force (iptables-restore returned, or the signal
    // was sent); how long applying it took is printed too.
    let cut_at = Instant::now();
    println!(
        "[{:>8}] node {leader} cut off from its peers ({how}; applied in {})",
        ms(t0.elapsed()),
        ms(cut_at - cutting)
    );
    let new = c.wait_leader(Some(leader), Duration::from_secs(30))?;
    println!(
        "[{:>8}] node {new} leads: {} after the cut",
        ms(t0.elapsed()),
        ms(cut_at.elapsed())
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.role_of(leader) {
            Some(r) if r != "leader" => break,
            _ if Instant::now() > deadline => {
                bail!("node {leader} still claims to lead 30 s after the cut (check-quorum)")
            }
            _ => sleep(Duration::from_millis(50)),
        }
    }
    println!(
        "[{:>8}] old leader {leader} stepped down (check-quorum): {} after the cut",
        ms(t0.elapsed()),
        ms(cut_at.elapsed())
    );
    let first = first_ack_after(&acks, cut_at)?;
    println!(
        "[{:>8}] first write acknowledged {} after the cut",
        ms(first - t0),
        ms(first - cut_at)
    );
    sleep(Duration::from_secs(if short { 1 } else { 5 }));
    let how = c.heal(leader)?;
    let healed_at = Instant::now();
    println!("[{:>8}] node {leader} healed ({how})", ms(t0.elapsed()));
    // Back once it reports itself a follower of another node.
    let deadline = Instant::now() + Duration::from_secs(30);
    let follows = loop {
        if let Some(l) = c.leader_seen_by(&c.nodes[leader as usize - 1].client)
            && l != leader
            && c.role_of(leader).as_deref() == Some("follower")
        {
            break l;
        }
        if Instant::now() > deadline {
            bail!("node {leader} did not rejoin as a follower within 30 s of the heal");
        }
        sleep(Duration::from_millis(50));
    };
    println!(
        "[{:>8}] node {leader} rejoined, follows node {follows}: {} after the heal",
        ms(t0.elapsed()),
        ms(healed_at.elapsed())
    );
    sleep(Duration::from_secs(if short { 2 } else { 5 }));
    finish(c, t0, stop, &acks, writers)
}

fn rolling_restart(c: &mut Cluster, short: bool) -> Result<()> {
    let t0 = Instant::now();
    let first = c.wait_leader(None, Duration::from_secs(30))?;
    println!("[{:>8}] leader is node {first}", ms(t0.elapsed()));
    let (stop, acks, writers) = start_load(c, 3);
    sleep(Duration::from_secs(if short { 1 } else { 5 }));
    // Followers first, the leader last (the usual order: one election instead of three).
    let mut order: Vec<u64> = (1..=3).filter(|&i| i != first).collect();
    order.push(first);
    for id in order {
        let at = Instant::now();
        c.terminate(id)?;
        println!("[{:>8}] node {id} stopped (SIGTERM)", ms(t0.elapsed()));
        c.start(id)?;
        // Back when the restarted node itself knows a leader again.
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = &c.nodes[id as usize - 1];
        let leader = loop {
            if let Some(l) = c.leader_seen_by(&n.client)
                && c.role_of(id).is_some()
            {
                break l;
            }
            if Instant::now() > deadline {
                bail!("node {id} did not rejoin within 30 s of its restart");
            }
            sleep(Duration::from_millis(50));
        };
        println!(
            "[{:>8}] node {id} back, sees leader {leader}: {} after its stop",
            ms(t0.elapsed()),
            ms(at.elapsed())
        );
        sleep(Duration::from_secs(if short { 1 } else { 5 }));
    }
    finish(c, t0, stop, &acks, writers)
}

fn follower_disk_loss(c: &mut Cluster, short: bool) -> Result<()> {
    let t0 = Instant::now();
    let leader = c.wait_leader(None, Duration::from_secs(30))?;
    println!("[{:>8}] leader is node {leader}", ms(t0.elapsed()));
    let (stop, acks, writers) = start_load(c, 3);
    sleep(Duration::from_secs(if short { 3 } else { 10 }));
    let lost = (1..=3).find(|&i| i != leader).expect("3 nodes");
    c.kill9(lost);
    std::fs::remove_dir_all(c.dir.join(format!("node{lost}")))?;
    let lost_at = Instant::now();
    println!(
        "[{:>8}] node {lost} killed and its data dir deleted ({} writes acknowledged so far)",
        ms(t0.elapsed()),
        acks.lock().unwrap_or_else(|e| e.into_inner()).len()
    );
    c.ctl_retry(&["member", "remove", &lost.to_string()])?;
    println!("[{:>8}] member {lost} removed", ms(t0.elapsed()));
    sleep(Duration::from_secs(if short { 1 } else { 5 }));
    let ports = crate::cluster::free_ports(2)?;
    let (client, peer) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let out = c.ctl_retry(&["member", "add", &peer, "--learner"])?;
    let new: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("unexpected `member add` output: {out}"))?;
    if new as usize != c.nodes.len() + 1 {
        bail!(
            "the new member got id {new}; this drill expects {}",
            c.nodes.len() + 1
        );
    }
    c.nodes.push(Node {
        id: new,
        client,
        peer,
        child: None,
    });
    // What the cluster had committed when the replacement started: caught up once its
    // own applied index reaches it.
    let target: u64 = c
        .own_status(leader)
        .and_then(|cols| cols[6].parse().ok())
        .context("reading the leader's commit index")?;
    c.spawn(new, true)?;
    let started = Instant::now();
    println!(
        "[{:>8}] member {new} added as a learner and started with an empty data dir (leader's commit: {target})",
        ms(t0.elapsed())
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let applied = loop {
        if let Some(applied) = c
            .own_status(new)
            .and_then(|cols| cols[7].parse::<u64>().ok())
            .filter(|&a| a >= target)
        {
            break applied;
        }
        if Instant::now() > deadline {
            bail!("member {new} did not reach index {target} within 60 s");
        }
        sleep(Duration::from_millis(50));
    };
    println!(
        "[{:>8}] member {new} caught up (applied {applied}): {} after its start, {} after the loss",
        ms(t0.elapsed()),
        ms(started.elapsed()),
        ms(lost_at.elapsed())
    );
    let log = std::fs::read_to_string(c.dir.join(format!("node{new}.log"))).unwrap_or_default();
    if !log.contains("state restored from a snapshot") {
        bail!("member {new} caught up without restoring a snapshot (the log was not compacted?)");
    }
    println!(
        "[{:>8}] member {new} rebuilt from a snapshot (its log says so)",
        ms(t0.elapsed())
    );
    c.ctl_retry(&["member", "promote", &new.to_string()])?;
    println!("[{:>8}] member {new} promoted to voter", ms(t0.elapsed()));
    sleep(Duration::from_secs(if short { 2 } else { 5 }));
    finish(c, t0, stop, &acks, writers)
}

/// Stops the writers, then checks every acknowledged write on every running node, retried
/// for 20 s while a restarted or new node catches up.
fn finish(
    c: &Cluster,
    t0: Instant,
    stop: Arc<AtomicBool>,
    acks: &Acks,
    writers: Vec<std::thread::JoinHandle<()>>,
) -> Result<()> {
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    println!("[{:>8}] load stopped", ms(t0.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match verify(c, acks) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => sleep(Duration::from_millis(500)),
            Err(e) => return Err(e),
        }
    }
}
