//! The scripted scenarios, one function each: `leader-kill`, `partition-leader`,
//! `rolling-restart` and `follower-disk-loss`.

use super::cluster::{Cluster, Node};
use super::{Acks, finish, ms, start_load};
use anyhow::{Context, Result, bail};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub(super) fn leader_kill(c: &mut Cluster, short: bool) -> Result<()> {
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

pub(super) fn partition_leader(c: &mut Cluster, short: bool) -> Result<()> {
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

pub(super) fn rolling_restart(c: &mut Cluster, short: bool) -> Result<()> {
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

pub(super) fn follower_disk_loss(c: &mut Cluster, short: bool) -> Result<()> {
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
