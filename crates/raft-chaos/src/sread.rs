//! The serializable-read check: what etcd promises for a serializable get (one answered from
//! the member's own applied state, without asking the leader). Such a read may be stale, so
//! linearizability is not checked; what must hold:
//! - it never returns a value that was never written: every value read was put by a write
//!   that did not fail, invoked before the read completed, and, when that write was
//!   acknowledged, the key's mod revision in the read is the write's revision;
//! - it never goes backwards within one client session on one member: the header revisions
//!   of successive reads of a reader session (one connection to one member) never decrease,
//!   nor the mod revision of a key read twice;
//! - it never runs ahead of the cluster: no read's revision exceeds the revision the cluster
//!   had after the workloads stopped (read linearizably then), and a key's mod revision
//!   never exceeds the header revision it was read at.

use crate::Verdict;
use crate::history::{Outcome, SreadCall, SreadOp};
use std::collections::{BTreeMap, HashMap};

/// One reader session on one member: the last revision served, and per key the last mod
/// revision read.
type Session = (i64, HashMap<u64, i64>);

/// Checks the serializable-read history; `final_revision` is the cluster's revision read
/// after the workloads stopped (0: unknown, that bound is not checked).
pub fn check(ops: &[SreadOp], final_revision: i64) -> Verdict {
    let mut problems = Vec::new();
    let mut writes: HashMap<(u64, &str), &SreadOp> = HashMap::new();
    let (mut reads, mut writes_ok, mut failed, mut unknown) = (0usize, 0usize, 0usize, 0usize);
    for op in ops {
        match (op.f, op.outcome) {
            (_, Outcome::Unknown) => unknown += 1,
            (_, Outcome::Fail) => failed += 1,
            (SreadCall::Write, Outcome::Ok) => writes_ok += 1,
            (SreadCall::Read, Outcome::Ok) => reads += 1,
        }
        if op.f == SreadCall::Write
            && let Some(v) = &op.value
            && writes.insert((op.key, v.as_str()), op).is_some()
        {
            problems.push(format!(
                "value {v:?} of key {} written twice (a client bug)",
                op.key
            ));
        }
    }
    let at = |op: &SreadOp| {
        format!(
            "read by process {} (session {}) of key {} via member {:x} ({}) at {:.3}-{:.3}s",
            op.process,
            op.session,
            op.key,
            op.member_id,
            op.endpoint,
            op.invoke_us as f64 / 1e6,
            op.complete_us as f64 / 1e6
        )
    };
    // Per session and member: the last header revision, and per key the last mod revision.
    let mut sessions: BTreeMap<(u64, u64, u64), Session> = BTreeMap::new();
    let mut ordered: Vec<&SreadOp> = ops
        .iter()
        .filter(|o| o.f == SreadCall::Read && o.outcome == Outcome::Ok)
        .collect();
    ordered.sort_by_key(|o| (o.process, o.invoke_us));
    let mut backwards = 0usize;
    for op in ordered {
        if final_revision > 0 && op.revision > final_revision {
            problems.push(format!(
                "{}: served at revision {}, beyond the cluster's {final_revision} after the run",
                at(op),
                op.revision
            ));
        }
        if let Some(v) = &op.value {
            if op.mod_revision > op.revision {
                problems.push(format!(
                    "{}: mod revision {} beyond the revision {} it was served at",
                    at(op),
                    op.mod_revision,
                    op.revision
                ));
            }
            match writes.get(&(op.key, v.as_str())) {
                None => problems.push(format!("{}: read {v:?}, which was never written", at(op))),
                Some(w) if w.outcome == Outcome::Fail => problems.push(format!(
                    "{}: read {v:?}, whose write failed ({})",
                    at(op),
                    w.error.as_deref().unwrap_or("")
                )),
                Some(w) if w.invoke_us > op.complete_us => problems.push(format!(
                    "{}: read {v:?}, written only at {:.3}s, after the read completed",
                    at(op),
                    w.invoke_us as f64 / 1e6
                )),
                Some(w) if w.outcome == Outcome::Ok && w.revision != op.mod_revision => problems
                    .push(format!(
                        "{}: read {v:?} at mod revision {}, but its write was acknowledged at \
                         revision {}",
                        at(op),
                        op.mod_revision,
                        w.revision
                    )),
                Some(_) => {}
            }
        }
        let (last, keys) = sessions
            .entry((op.process, op.session, op.member_id))
            .or_insert((0, HashMap::new()));
        let key_last = keys.entry(op.key).or_insert(0);
        if op.revision < *last || op.mod_revision < *key_last {
            backwards += 1;
            if backwards <= 10 {
                problems.push(format!(
                    "{}: went backwards on its member: revision {} after {}, mod revision of \
                     the key {} after {}",
                    at(op),
                    op.revision,
                    *last,
                    op.mod_revision,
                    *key_last
                ));
            }
        }
        *last = (*last).max(op.revision);
        *key_last = (*key_last).max(op.mod_revision);
    }
    if backwards > 10 {
        problems.push(format!("... {} more reads went backwards", backwards - 10));
    }
    let summary = format!(
        "{} operations: {reads} serializable reads, {writes_ok} writes acknowledged, {failed} \
         failed, {unknown} unknown; {} reader sessions; cluster revision after the run {}",
        ops.len(),
        sessions.len(),
        final_revision
    );
    let mut verdict = Verdict::from_problems(
        "sread: serializable reads never invent a value, go backwards or run ahead",
        summary,
        problems,
    );
    if !ops
        .iter()
        .any(|o| o.f == SreadCall::Read && o.outcome == Outcome::Ok && o.value.is_some())
    {
        verdict.ok = false;
        verdict
            .problems
            .push("no serializable read found a value: nothing was checked".into());
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: u64, value: &str, t: u64, revision: i64) -> SreadOp {
        SreadOp {
            process: 100,
            f: SreadCall::Write,
            session: 0,
            key,
            value: Some(value.into()),
            invoke_us: t,
            complete_us: t + 5,
            outcome: Outcome::Ok,
            revision,
            mod_revision: 0,
            member_id: 0,
            error: None,
            endpoint: "e".into(),
        }
    }

    fn read(
        session: u64,
        key: u64,
        value: Option<&str>,
        t: u64,
        revision: i64,
        mod_revision: i64,
    ) -> SreadOp {
        SreadOp {
            process: 1,
            f: SreadCall::Read,
            session,
            key,
            value: value.map(str::to_string),
            invoke_us: t,
            complete_us: t + 5,
            outcome: Outcome::Ok,
            revision,
            mod_revision,
            member_id: 7,
            error: None,
            endpoint: "e".into(),
        }
    }

    #[test]
    fn stale_but_monotonic_reads_pass() {
        let ops = vec![
            write(0, "a", 0, 2),
            write(0, "b", 10, 3),
            write(1, "c", 20, 4),
            // Stale (b and c were acknowledged before), but never backwards.
            read(0, 0, Some("a"), 30, 2, 2),
            read(0, 1, None, 40, 2, 0),
            read(0, 0, Some("b"), 50, 4, 3),
            // A new session after a reconnect may start lower (a restarted member).
            read(1, 0, Some("a"), 60, 2, 2),
        ];
        let v = check(&ops, 4);
        assert!(v.ok, "{}", v.render());
        assert!(v.summary.contains("2 reader sessions"), "{}", v.summary);
    }

    #[test]
    fn a_value_never_written_fails() {
        let ops = vec![write(0, "a", 0, 2), read(0, 0, Some("z"), 30, 2, 2)];
        let v = check(&ops, 2);
        assert!(!v.ok);
        assert!(v.problems[0].contains("never written"), "{}", v.render());
    }

    #[test]
    fn a_failed_or_future_write_read_fails() {
        let mut failed = write(0, "a", 0, 0);
        failed.outcome = Outcome::Fail;
        failed.error = Some("no leader".into());
        let ops = vec![
            failed,
            write(0, "b", 100, 3),
            read(0, 0, Some("a"), 30, 2, 2),
        ];
        let text = check(&ops, 3).render();
        assert!(text.contains("whose write failed"), "{text}");
        let ops = vec![write(0, "b", 100, 3), read(0, 0, Some("b"), 30, 3, 3)];
        let text = check(&ops, 3).render();
        assert!(text.contains("after the read completed"), "{text}");
    }

    #[test]
    fn a_value_at_the_wrong_revision_fails() {
        let ops = vec![write(0, "a", 0, 2), read(0, 0, Some("a"), 30, 5, 4)];
        let text = check(&ops, 5).render();
        assert!(text.contains("acknowledged at revision 2"), "{text}");
    }

    #[test]
    fn going_backwards_in_a_session_fails() {
        let ops = vec![
            write(0, "a", 0, 2),
            write(0, "b", 10, 3),
            read(0, 0, Some("b"), 30, 3, 3),
            read(0, 0, Some("a"), 40, 2, 2),
        ];
        let v = check(&ops, 3);
        assert!(!v.ok);
        assert!(v.problems[0].contains("went backwards"), "{}", v.render());
    }

    #[test]
    fn running_ahead_of_the_cluster_fails() {
        let ops = vec![write(0, "a", 0, 2), read(0, 0, Some("a"), 30, 9, 2)];
        let text = check(&ops, 5).render();
        assert!(text.contains("beyond the cluster's 5"), "{text}");
        let ops = vec![write(0, "a", 0, 2), read(0, 0, Some("a"), 30, 1, 2)];
        let text = check(&ops, 5).render();
        assert!(text.contains("beyond the revision 1"), "{text}");
    }

    #[test]
    fn nothing_read_is_not_a_pass() {
        assert!(!check(&[write(0, "a", 0, 2)], 2).ok);
    }
}
