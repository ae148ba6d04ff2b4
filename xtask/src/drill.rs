//! `cargo xtask drill <scenario>`: failure drills against a local 3-node cluster under a
//! steady write load (concurrent `raftctl put`s), printing a timeline and checking at the
//! end that every acknowledged write is readable with its value from every node.
//!
//! Scenarios: `leader-kill` (SIGKILL the leader, restart it later) and `partition-leader`
//! (cut the leader off with raftd's fault switch: the nodes run with
//! `RAFTD_FAULT_INJECTION=1` and get SIGUSR1 / SIGUSR2; the old leader must step down by
//! check-quorum), `rolling-restart` (SIGTERM and restart every node in turn, followers
//! first) and `follower-disk-loss` (SIGKILL a follower and delete its data dir, replace it
//! the way an operator does: remove the member, add a fresh learner, start it with `--join`
//! so it rebuilds from the leader's snapshot and log, promote it once caught up).

use crate::util::{self, Flags};
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
}

/// Acknowledged writes: when each was sent, when it was acknowledged, key and value.
type Acks = Arc<Mutex<Vec<(Instant, Instant, String, String)>>>;

/// Runs the task.
pub fn run(flags: &mut Flags, scenario: &str) -> Result<()> {
    let short = flags.switch("short")?;
    let release = flags.switch("release")?;
    std::mem::replace(flags, Flags::new(Vec::new())?).finish()?;
    let mut build = util::cargo();
    build.args(["build", "--package", "raft-node", "--bins"]);
    if release {
        build.arg("--release");
    }
    util::run(&mut build)?;
    let bin = util::target_dir().join(if release { "release" } else { "debug" });
    let dir = std::env::temp_dir().join(format!("raft-xtask-drill-{scenario}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    // Snapshots every 50 entries, so a replaced member needs one (the log is compacted).
    let extra = match scenario {
        "follower-disk-loss" => vec!["--snapshot-threshold".to_string(), "50".to_string()],
        _ => Vec::new(),
    };
    let mut c = Cluster::new(bin.join("raftd"), bin.join("raftctl"), dir.clone(), extra)?;
    let outcome = match scenario {
        "leader-kill" => leader_kill(&mut c, short),
        "partition-leader" => partition_leader(&mut c, short),
        "rolling-restart" => rolling_restart(&mut c, short),
        "follower-disk-loss" => follower_disk_loss(&mut c, short),
        other => Err(anyhow::anyhow!(
            "unknown drill `{other}` (scenarios: leader-kill, partition-leader, \
             rolling-restart, follower-disk-loss)"
        )),
    };
    c.stop_all();
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

impl Cluster {
    fn new(raftd: PathBuf, raftctl: PathBuf, dir: PathBuf, extra: Vec<String>) -> Result<Cluster> {
        let ports = crate::cluster::free_ports(6)?;
        let nodes: Vec<Node> = (1..=3u64)
            .map(|id| Node {
                id,
                client: format!("127.0.0.1:{}", ports[(id as usize - 1) * 2]),
                peer: format!("127.0.0.1:{}", ports[(id as usize - 1) * 2 + 1]),
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
        let child = Command::new(&self.raftd)
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
            .env("RAFTD_FAULT_INJECTION", "1")
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
    let cut_at = Instant::now();
    c.signal(leader, "-USR1")?;
    println!(
        "[{:>8}] node {leader} cut off from its peers (fault switch)",
        ms(t0.elapsed())
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
    c.signal(leader, "-USR2")?;
    println!("[{:>8}] node {leader} healed", ms(t0.elapsed()));
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
