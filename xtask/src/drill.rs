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
//! The cluster the drills run against is `drill/cluster.rs`; the scenarios are
//! `drill/scenarios.rs`.

mod cluster;
mod scenarios;

use cluster::{Cluster, Node};
use scenarios::{follower_disk_loss, leader_kill, partition_leader, rolling_restart};

use crate::netns::{self, NetNs};
use crate::util;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

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
