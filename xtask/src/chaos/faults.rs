//! The fault timeline: carrying out a run's schedule against the cluster (kill, pause,
//! partition, membership and clock faults), undoing each fault when its time is up and
//! recording what was done.

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
    // (time, 0 = undo / 1 = apply, fault): at equal times, undo first.
    let mut timeline: Vec<(u64, u8, usize)> = Vec::new();
    for (i, f) in schedule.faults.iter().enumerate() {
        timeline.push((f.start_ms, 1, i));
        timeline.push((f.end_ms, 0, i));
    }
    timeline.sort_unstable();
    let mut problems = Vec::new();
    // Per fault, once applied: the members hit, how, when, and the error applying it.
    let mut active: Vec<Option<Applied>> = vec![None; schedule.faults.len()];
    let at = || format!("[{:>7.2}s]", t0.elapsed().as_secs_f64());
    for (ms, action, index) in timeline {
        sleep_until(t0 + Duration::from_millis(ms));
        let f = &schedule.faults[index];
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
                        let applied = apply(c, f, &members);
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
        let Some((mut members, how, start_unix_us, mut error)) = active[index].take() else {
            continue;
        };
        match undo(c, f, schedule, &mut members) {
            Ok(()) => println!("{} {} {members:?} undone", at(), f.kind.name()),
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

/// Applies a fault to `members`; returns how.
fn apply(c: &mut ChaosCluster, f: &Fault, members: &[u64]) -> Result<String> {
    let mut how = Vec::new();
    for &id in members {
        match f.kind {
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
        }
    }
    Ok(how.join("; "))
}

/// The members `target` names now: slots mapped to the members in them, the leader asked
/// of the cluster (when nobody knows one, the member in the slot the seed picks).
fn resolve(c: &ChaosCluster, target: &Target, schedule: &Schedule) -> Result<Vec<u64>> {
    match target {
        Target::Members(slots) => slots.iter().map(|&s| c.in_slot(s)).collect(),
        Target::Leader => match c.leader(Duration::from_secs(2)) {
            Some(l) => Ok(vec![l]),
            None => Ok(vec![c.in_slot(1 + schedule.seed % schedule.members)?]),
        },
    }
}

/// Undoes [`apply`]; ends a membership change (`members` is its learner): promotes the
/// learner, removes the target and records it in `members`.
fn undo(
    c: &mut ChaosCluster,
    f: &Fault,
    schedule: &Schedule,
    members: &mut Vec<u64>,
) -> Result<()> {
    if f.kind == FaultKind::Member {
        let Some(&learner) = members.first() else {
            return Ok(());
        };
        c.promote(learner)?;
        println!("           member {learner} promoted to a voter");
        let gone = resolve(c, &f.target, schedule)?[0];
        c.remove(gone, learner)?;
        println!("           member {gone} removed and stopped; member {learner} takes its slot");
        members.push(gone);
        return Ok(());
    }
    for &id in members.iter() {
        match f.kind {
            FaultKind::Kill if !c.is_running(id) => c.spawn(id)?,
            FaultKind::Kill => {}
            FaultKind::Pause => c.resume(id)?,
            FaultKind::Partition => c.heal(id)?,
            // Clocks do not go back; a membership change ended above.
            FaultKind::Clock | FaultKind::Member => {}
        }
    }
    Ok(())
}
