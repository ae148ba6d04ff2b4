//! The fault timeline: carrying out a run's schedule against the cluster (kill, pause,
//! partition, one-way, bridge and flapping partitions, full disks, fsync errors, power
//! losses, membership and clock faults), undoing
//! each fault when its time is up and recording what was done. A flapping partition is
//! healed and made again at each of its period's ticks in between.

use super::cluster::ChaosCluster;
use super::unix_us;
use anyhow::{Result, bail};
use raft_chaos::history::JsonlWriter;
use raft_chaos::schedule::{Fault, FaultEvent, FaultKind, Schedule, Target};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A fault in force: the members hit, how, when (µs since the epoch), the error applying it.
type Applied = (Vec<u64>, String, u64, Option<String>);

/// Carries out the schedule from `t0` (nested faults overlap their outer one), writing what
/// was done to `events`; returns the problems (faults that could not be applied or undone,
/// the client exiting early).
pub(super) fn inject(
    c: &mut ChaosCluster,
    schedule: &Schedule,
    t0: Instant,
    client: &mut std::process::Child,
    events: &mut JsonlWriter,
) -> Result<Vec<String>> {
    // (time, 0 = undo / 1 = apply / 2 = flap, fault): at equal times, undo first.
    let mut timeline: Vec<(u64, u8, usize)> = Vec::new();
    for (i, f) in schedule.faults.iter().enumerate() {
        timeline.push((f.start_ms, 1, i));
        timeline.push((f.end_ms, 0, i));
        if f.kind == FaultKind::Flap && f.param > 0 {
            let mut t = f.start_ms + f.param;
            while t < f.end_ms {
                timeline.push((t, 2, i));
                t += f.param;
            }
        }
    }
    timeline.sort_unstable();
    let mut problems = Vec::new();
    // Per fault, once applied: the members hit, how, when, and the error applying it.
    let mut active: Vec<Option<Applied>> = vec![None; schedule.faults.len()];
    // Per flapping partition in force: whether it is cut now, and how many times it flapped.
    let mut flaps: Vec<(bool, u64)> = vec![(false, 0); schedule.faults.len()];
    let at = || format!("[{:>7.2}s]", t0.elapsed().as_secs_f64());
    for (ms, action, index) in timeline {
        sleep_until(t0 + Duration::from_millis(ms));
        let f = &schedule.faults[index];
        if action == 2 {
            let Some((members, _, _, None)) = &active[index] else {
                continue;
            };
            let (cut, n) = &mut flaps[index];
            let done = if *cut {
                lift(c, index, members)
            } else {
                flap_cut(c, index, members).map(|_| ())
            };
            match done {
                Ok(()) => {
                    *cut = !*cut;
                    *n += 1;
                }
                Err(e) => {
                    let msg = format!("fault {index} (flap) could not flap: {e:#}");
                    println!("{} {msg}", at());
                    problems.push(msg);
                }
            }
            continue;
        }
        if action == 1 {
            if let Ok(Some(status)) = client.try_wait() {
                problems.push(format!("the client exited early ({status})"));
                break;
            }
            let start = unix_us();
            // A membership change adds its learner now and removes its target at the end.
            let (members, applied) = if f.kind == FaultKind::Member {
                match c.add_learner() {
                    Ok(id) => (
                        vec![id],
                        Ok(format!(
                            "member {id} added as a learner and started with --join"
                        )),
                    ),
                    Err(e) => (Vec::new(), Err(e)),
                }
            } else {
                match resolve(c, &f.target, schedule) {
                    Ok(members) => {
                        let applied = apply(c, f, index, &members);
                        if applied.is_ok() && f.kind == FaultKind::Flap {
                            flaps[index] = (true, 0);
                        }
                        (members, applied)
                    }
                    Err(e) => (Vec::new(), Err(e)),
                }
            };
            let how = match &applied {
                Ok(how) => how.clone(),
                Err(e) => format!("not applied: {e:#}"),
            };
            println!("{} {} {members:?}: {how}", at(), f.kind.name());
            let error = applied.err().map(|e| format!("apply: {e:#}"));
            if let Some(e) = &error {
                problems.push(format!("fault {index} ({}) {e}", f.kind.name()));
            }
            active[index] = Some((members, how, start, error));
            continue;
        }
        let Some((mut members, mut how, start_unix_us, mut error)) = active[index].take() else {
            continue;
        };
        if f.kind == FaultKind::Flap {
            how.push_str(&format!(" (then flapped {} times)", flaps[index].1));
        }
        let still_cut = f.kind != FaultKind::Flap || flaps[index].0;
        let undone = if still_cut {
            undo(c, f, index, schedule, &mut members)
        } else {
            Ok(String::new())
        };
        match undone {
            Ok(note) => {
                println!("{} {} {members:?} undone{note}", at(), f.kind.name());
                how.push_str(&note);
            }
            Err(e) => {
                let msg = format!(
                    "fault {index} ({}) could not be undone: {e:#}",
                    f.kind.name()
                );
                println!("{} {msg}", at());
                problems.push(msg.clone());
                error = Some(msg);
            }
        }
        events.write(&FaultEvent {
            index,
            kind: f.kind,
            members,
            how,
            start_unix_us,
            end_unix_us: unix_us(),
            error,
        })?;
        events.flush()?;
    }
    Ok(problems)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        sleep(t - now);
    }
}

/// The iptables tag of the rules of fault `index`.
fn tag(index: usize) -> String {
    format!("fault {index}")
}

/// The members other than `id`, by id.
fn others(c: &ChaosCluster, id: u64) -> Vec<u64> {
    c.ids().into_iter().filter(|&o| o != id).collect()
}

/// Cuts the target of flapping partition `index` off (both ways): with the namespaces'
/// rules under the fault's tag, else with the fault switch.
fn flap_cut(c: &mut ChaosCluster, index: usize, members: &[u64]) -> Result<String> {
    let mut how = Vec::new();
    for &id in members {
        if c.has_netns() {
            let others = others(c, id);
            how.push(format!(
                "member {id}: {}",
                c.block(&tag(index), id, &others, &others)?
            ));
        } else {
            how.push(format!("member {id}: {}", c.isolate(id)?));
        }
    }
    Ok(how.join("; "))
}

/// Heals what [`flap_cut`] did.
fn lift(c: &mut ChaosCluster, index: usize, members: &[u64]) -> Result<()> {
    if c.has_netns() {
        return c.unblock(&tag(index));
    }
    for &id in members {
        c.heal(id)?;
    }
    Ok(())
}

/// Applies fault `index` to `members`; returns how.
fn apply(c: &mut ChaosCluster, f: &Fault, index: usize, members: &[u64]) -> Result<String> {
    if f.kind.needs_netns() && !c.has_netns() {
        bail!(
            "a {} partition needs network namespaces (root, ip, iptables)",
            f.kind.name()
        );
    }
    if f.kind == FaultKind::Power {
        // All at once: every target is killed before any file system drops its state.
        return c.power_loss(members);
    }
    let mut how = Vec::new();
    for &id in members {
        match f.kind {
            FaultKind::OneWay => {
                let others = others(c, id);
                let (from, to): (&[u64], &[u64]) = if f.param == 0 {
                    (&others, &[])
                } else {
                    (&[], &others)
                };
                how.push(format!(
                    "member {id}: {}",
                    c.block(&tag(index), id, from, to)?
                ));
            }
            FaultKind::Bridge => {
                // The others, split in two halves by id; the first half drops everything to
                // and from the second (rules in the first half's namespaces suffice).
                let others = others(c, id);
                let (a, b) = others.split_at(others.len() / 2);
                if a.is_empty() || b.is_empty() {
                    bail!("a bridge partition needs two other members, there are {others:?}");
                }
                for &x in a {
                    c.block(&tag(index), x, b, b)?;
                }
                how.push(format!(
                    "members {a:?} and {b:?} cut apart (iptables DROP in the namespaces of \
                     {a:?}); member {id} reaches both"
                ));
            }
            FaultKind::Flap => how.push(flap_cut(c, index, &[id])?),
            FaultKind::Disk => how.push(c.fill_disk(id)?),
            FaultKind::Fsync => how.push(c.fail_fsyncs(id)?),
            FaultKind::Kill => {
                c.kill9(id)?;
                how.push(format!("kill -9 member {id}"));
            }
            FaultKind::Pause => {
                c.pause(id)?;
                how.push(format!("SIGSTOP member {id}"));
            }
            FaultKind::Partition => how.push(format!("member {id}: {}", c.isolate(id)?)),
            FaultKind::Member => bail!("a membership change is not applied to members"),
            FaultKind::Clock => how.push(c.clock_jump(id, f.clock_jump_s())?),
            FaultKind::Power => bail!("a power loss is applied to its members at once"),
        }
    }
    Ok(how.join("; "))
}

/// The members `target` names now: slots mapped to the members in them, the leader asked
/// of the cluster (when nobody knows one, the member in the slot the seed picks).
fn resolve(c: &ChaosCluster, target: &Target, schedule: &Schedule) -> Result<Vec<u64>> {
    match target {
        Target::Members(slots) => slots.iter().map(|&s| c.in_slot(s)).collect(),
        Target::All => Ok(c.ids()),
        Target::Leader => match c.leader(Duration::from_secs(2)) {
            Some(l) => Ok(vec![l]),
            None => Ok(vec![c.in_slot(1 + schedule.seed % schedule.members)?]),
        },
    }
}

/// Undoes [`apply`]; ends a membership change (`members` is its learner): promotes the
/// learner, removes the target and records it in `members`. Returns a note on what it
/// found (a member that stopped on a full disk), or nothing.
fn undo(
    c: &mut ChaosCluster,
    f: &Fault,
    index: usize,
    schedule: &Schedule,
    members: &mut Vec<u64>,
) -> Result<String> {
    match f.kind {
        FaultKind::OneWay | FaultKind::Bridge => {
            return c.unblock(&tag(index)).map(|_| String::new());
        }
        FaultKind::Flap => return lift(c, index, members).map(|_| String::new()),
        FaultKind::Disk => {
            let mut note = String::new();
            for &id in members.iter() {
                c.free_disk(id)?;
                // Stopping on a full disk is allowed (fail-stop); it is started again, as an
                // operator would after freeing the disk.
                if let Some((status, last)) = c.reap(id)? {
                    note.push_str(&format!(
                        "; member {id} exited on the full disk ({status}; its log ends: \
                         {last}), started again"
                    ));
                    c.spawn(id)?;
                } else if let Some(line) = c.stopped_since_fill(id) {
                    note.push_str(&format!(
                        "; member {id}'s raft node stopped on the full disk while its process \
                         ran on ({line}), restarted"
                    ));
                    c.kill9(id)?;
                    c.spawn(id)?;
                }
            }
            return Ok(note);
        }
        FaultKind::Fsync => {
            let mut note = String::new();
            let mut kept_running = Vec::new();
            for &id in members.iter() {
                c.heal_fsyncs(id)?;
                let failed = c.logged_since_fill(id, |l| l.contains("fsync fails with EIO"));
                if let Some((status, last)) = c.reap(id)? {
                    note.push_str(&format!(
                        "; member {id} exited after the fsync error ({status}; its log ends: \
                         {last}), started again"
                    ));
                    c.spawn(id)?;
                } else if let Some(line) = c.stopped_since_fill(id) {
                    note.push_str(&format!(
                        "; member {id}'s raft node stopped after the fsync error while its \
                         process ran on ({line}), restarted"
                    ));
                    c.kill9(id)?;
                    c.spawn(id)?;
                } else if failed.is_some() {
                    kept_running.push(id);
                } else {
                    note.push_str(&format!("; member {id} attempted no fsync meanwhile"));
                }
            }
            if !kept_running.is_empty() {
                bail!(
                    "members {kept_running:?} had a WAL fsync fail with EIO and kept running \
                     (no fail-stop)"
                );
            }
            return Ok(note);
        }
        _ => {}
    }
    if f.kind == FaultKind::Member {
        let Some(&learner) = members.first() else {
            return Ok(String::new());
        };
        c.promote(learner)?;
        println!("           member {learner} promoted to a voter");
        let gone = resolve(c, &f.target, schedule)?[0];
        c.remove(gone, learner)?;
        println!("           member {gone} removed and stopped; member {learner} takes its slot");
        members.push(gone);
        return Ok(String::new());
    }
    for &id in members.iter() {
        match f.kind {
            FaultKind::Kill | FaultKind::Power if !c.is_running(id) => c.spawn(id)?,
            FaultKind::Kill | FaultKind::Power => {}
            FaultKind::Pause => c.resume(id)?,
            FaultKind::Partition => c.heal(id)?,
            // Clocks do not go back; a membership change and the partitions with rules under
            // a tag ended above.
            FaultKind::Clock
            | FaultKind::Member
            | FaultKind::OneWay
            | FaultKind::Bridge
            | FaultKind::Flap
            | FaultKind::Disk
            | FaultKind::Fsync => {}
        }
    }
    Ok(String::new())
}
