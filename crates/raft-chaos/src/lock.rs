//! The lock check: mutual exclusion as observed by fenced writes.
//!
//! Clients take one lock (etcd's Lock service, each hold on a fresh lease the client keeps
//! alive) and, while holding it, write a shared record with Txns fenced by the lock key's
//! create revision: the put happens only if the lock key still exists with the revision the
//! holder got. Each such Txn also reads the head of the lock's queue (the key with the lowest
//! create revision under the lock prefix), which is the holder as the server sees it at the
//! Txn's revision. A lock alone cannot give mutual exclusion in time (a paused holder whose
//! lease expired still believes it holds the lock, which is what Jepsen showed of etcd's
//! locks); what the server must guarantee is what fencing relies on, and that is checked:
//!
//! - every acknowledged fenced write was made by the then-current holder: the queue head read
//!   in its Txn is the writer's own lock key;
//! - holders do not interleave: ordered by revision, the acknowledged writes form one block
//!   per hold, and a hold that wrote never writes again after another hold wrote;
//! - holds follow the lock's queue order: each block's lock revision is above the previous
//!   block's (the lock goes to the oldest waiter, and a newer key has a higher revision);
//! - no two acknowledged writes share a revision, and none is lost: the record's previous
//!   mod revision, returned by each put, is the latest acknowledged write before it (an
//!   acknowledged write in between was overwritten unseen), with that write's value.

use crate::Verdict;
use crate::history::{LockCall, LockOp, Outcome};
use std::collections::{BTreeMap, HashSet};

/// Checks the lock history.
pub fn check(ops: &[LockOp]) -> Verdict {
    let mut problems = Vec::new();
    let (mut acquired, mut released, mut unknown, mut fenced_off) = (0, 0, 0, 0);
    let stalls = ops.iter().filter(|o| o.stalled_ms > 0).count();
    let mut writes: Vec<&LockOp> = Vec::new();
    for op in ops {
        match (op.call, op.outcome) {
            (_, Outcome::Unknown) => unknown += 1,
            (LockCall::Acquire, Outcome::Ok) => acquired += 1,
            (LockCall::Release, Outcome::Ok) => released += 1,
            (LockCall::Write { .. }, Outcome::Ok) => writes.push(op),
            (LockCall::Write { .. }, Outcome::Fail) => fenced_off += 1,
            (_, Outcome::Fail) => {}
        }
    }
    let who = |op: &LockOp| {
        format!(
            "process {} (lock key {} at revision {})",
            op.process, op.key, op.lock_revision
        )
    };
    // By revision; a write without one is a client bug.
    let mut by_revision: BTreeMap<i64, &LockOp> = BTreeMap::new();
    for w in &writes {
        let Some(rev) = w.revision else {
            problems.push(format!(
                "fenced write of {} has no revision (a client bug)",
                who(w)
            ));
            continue;
        };
        if w.owner.as_deref() != Some(w.key.as_str()) {
            problems.push(format!(
                "fenced write at revision {rev} by {} while the lock queue's head was {} \
                 (acknowledged, but not by the then-current holder)",
                who(w),
                w.owner.as_deref().unwrap_or("nobody")
            ));
        }
        if let Some(other) = by_revision.insert(rev, w) {
            problems.push(format!(
                "two acknowledged fenced writes at revision {rev}: by {} and by {}",
                who(other),
                who(w)
            ));
        }
    }
    // Holds in revision order: contiguous blocks, in lock-queue order.
    let mut done: HashSet<(&str, i64)> = HashSet::new();
    let mut current: Option<(&str, i64, i64)> = None; // key, lock revision, last write rev
    for (&rev, w) in &by_revision {
        let hold = (w.key.as_str(), w.lock_revision);
        match current {
            Some((key, lr, _)) if (key, lr) == hold => {}
            Some((key, lr, last)) => {
                if done.contains(&hold) {
                    problems.push(format!(
                        "fenced writes interleave: {} wrote at revision {rev} after the hold \
                         of {key} (lock revision {lr}) wrote at revision {last}, and it had \
                         written before that",
                        who(w)
                    ));
                } else if hold.1 <= lr {
                    problems.push(format!(
                        "holds out of lock order: {} wrote at revision {rev} after the hold of \
                         {key} with the newer lock revision {lr} (last write at {last})",
                        who(w)
                    ));
                }
                done.insert((key, lr));
            }
            None => {}
        }
        current = Some((hold.0, hold.1, rev));
    }
    // No acknowledged write lost: each put's previous revision is the acknowledged write
    // just before it (unknown writes may come in between: they are not in the map).
    let mut prev_ok: Option<(i64, &LockOp)> = None;
    for (&rev, w) in &by_revision {
        if let Some(p) = w.prev_revision {
            if p >= rev {
                problems.push(format!(
                    "fenced write at revision {rev} by {} overwrote a record of revision {p}, \
                     not older than itself",
                    who(w)
                ));
            } else if let Some((before, b)) = prev_ok {
                if p < before {
                    problems.push(format!(
                        "acknowledged fenced write at revision {before} by {} lost: the write \
                         at revision {rev} by {} overwrote the record of revision {p}",
                        who(b),
                        who(w)
                    ));
                } else if p == before && w.prev_value != b.value {
                    problems.push(format!(
                        "fenced write at revision {rev} by {} overwrote {:?} at revision {p}, \
                         but the write acknowledged at that revision put {:?}",
                        who(w),
                        w.prev_value,
                        b.value
                    ));
                }
            }
        }
        prev_ok = Some((rev, w));
    }
    let holds = by_revision
        .values()
        .map(|w| (w.key.as_str(), w.lock_revision))
        .collect::<HashSet<_>>()
        .len();
    let summary = format!(
        "{} operations: {acquired} acquisitions ({stalls} stalled past their lease), {} fenced \
         writes acknowledged by {holds} holds, {fenced_off} fenced off (lock lost), {released} \
         releases, {unknown} unknown",
        ops.len(),
        writes.len()
    );
    let mut verdict = Verdict::from_problems(
        "lock: fenced writes by the holder only, holds never interleave",
        summary,
        problems,
    );
    if writes.is_empty() {
        verdict.ok = false;
        verdict
            .problems
            .push("no fenced write succeeded: nothing was checked".into());
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acknowledged fenced write by `process` holding `key` (lock revision `lr`) at
    /// revision `rev`, which found the record at `prev` with the value of that write.
    fn write(process: u64, key: &str, lr: i64, rev: i64, prev: i64) -> LockOp {
        LockOp {
            process,
            call: LockCall::Write { seq: 0 },
            invoke_us: rev as u64 * 10,
            complete_us: rev as u64 * 10 + 5,
            outcome: Outcome::Ok,
            lease: process as i64,
            key: key.into(),
            lock_revision: lr,
            value: Some(format!("v{rev}")),
            revision: Some(rev),
            owner: Some(key.into()),
            prev_revision: Some(prev),
            prev_value: (prev > 0).then(|| format!("v{prev}")),
            stalled_ms: 0,
            error: None,
            endpoint: "e".into(),
        }
    }

    fn acquire(process: u64, key: &str, lr: i64) -> LockOp {
        LockOp {
            call: LockCall::Acquire,
            value: None,
            revision: None,
            owner: None,
            prev_revision: None,
            prev_value: None,
            ..write(process, key, lr, lr, 0)
        }
    }

    fn good() -> Vec<LockOp> {
        vec![
            acquire(1, "l/a", 10),
            write(1, "l/a", 10, 11, 0),
            write(1, "l/a", 10, 12, 11),
            acquire(2, "l/b", 13),
            write(2, "l/b", 13, 15, 12),
            write(2, "l/b", 13, 16, 15),
            write(3, "l/c", 17, 19, 16),
        ]
    }

    #[test]
    fn orderly_holds_pass() {
        let v = check(&good());
        assert!(v.ok, "{}", v.render());
        assert!(v.summary.contains("5 fenced writes"), "{}", v.summary);
        assert!(v.summary.contains("3 holds"), "{}", v.summary);
    }

    #[test]
    fn unknown_and_fenced_off_writes_are_allowed() {
        let mut ops = good();
        // A write that timed out may have landed at 17 or 18 (the next put saw 16 though:
        // it did not), and a write whose guard failed is just fenced off.
        let mut lost = write(1, "l/a", 10, 0, 0);
        lost.outcome = Outcome::Unknown;
        lost.revision = None;
        let mut off = write(2, "l/b", 13, 0, 0);
        off.outcome = Outcome::Fail;
        ops.extend([lost, off]);
        let v = check(&ops);
        assert!(v.ok, "{}", v.render());
        assert!(v.summary.contains("1 fenced off"), "{}", v.summary);
    }

    #[test]
    fn a_write_by_a_former_holder_fails() {
        // Process 1's lease expired while it was paused; process 2 holds the lock; the write
        // of process 1 was acknowledged anyway (no fencing guard, or a guard not honoured).
        let mut ops = good();
        let mut stale = write(1, "l/a", 10, 17, 16);
        stale.owner = Some("l/b".into());
        ops.push(stale);
        let v = check(&ops);
        assert!(!v.ok);
        let all = v.render();
        assert!(all.contains("not by the then-current holder"), "{all}");
        assert!(all.contains("interleave"), "{all}");
    }

    #[test]
    fn interleaving_holds_fail() {
        // a, b, a: each write saw itself at the queue head (a broken lock: two holders).
        let ops = vec![
            write(1, "l/a", 10, 11, 0),
            write(2, "l/b", 12, 13, 11),
            write(1, "l/a", 10, 14, 13),
        ];
        let v = check(&ops);
        assert!(!v.ok);
        assert!(v.problems[0].contains("interleave"), "{}", v.render());
    }

    #[test]
    fn holds_out_of_queue_order_fail() {
        // The newer lock key (revision 12) wrote before the older one (revision 10) did.
        let ops = vec![write(2, "l/b", 12, 13, 0), write(1, "l/a", 10, 14, 13)];
        let v = check(&ops);
        assert!(!v.ok);
        assert!(
            v.problems[0].contains("out of lock order"),
            "{}",
            v.render()
        );
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        // The write at 15 was acknowledged, yet the put at 16 found the record of 12.
        let mut ops = good();
        ops[5] = write(2, "l/b", 13, 16, 12);
        let v = check(&ops);
        assert!(!v.ok);
        assert!(v.problems[0].contains("lost"), "{}", v.render());
    }

    #[test]
    fn a_wrong_previous_value_fails() {
        let mut ops = good();
        ops[4].prev_value = Some("v99".into());
        let v = check(&ops);
        assert!(!v.ok);
        assert!(v.problems[0].contains("v99"), "{}", v.render());
    }

    #[test]
    fn two_writes_at_one_revision_fail() {
        let ops = vec![write(1, "l/a", 10, 11, 0), write(1, "l/a", 10, 11, 0)];
        let v = check(&ops);
        assert!(!v.ok);
        assert!(v.problems[0].contains("two acknowledged"), "{}", v.render());
    }

    #[test]
    fn no_successful_write_fails() {
        let v = check(&[acquire(1, "l/a", 10)]);
        assert!(!v.ok);
        assert!(
            v.problems[0].contains("nothing was checked"),
            "{}",
            v.render()
        );
    }
}
