//! The register check: every key's history must be linearizable (raft-sim's checker, a
//! Wing & Gong / Lowe search as in porcupine, key by key).
//!
//! Mapping: an `ok` operation has a response at its completion time; an `unknown` one may
//! have taken effect at any time after its invocation, or never; a `fail` one is left out
//! (it took no effect and observed nothing). A compare-and-set on a missing key never
//! matches (etcd's value compare against a missing key is false), which is what the model
//! does with `expected: Some(v)` on an absent key.

use crate::Verdict;
use crate::history::{Outcome, RegisterCall, RegisterOp, RegisterResult};
use raft_sim::linearizability::{KvInput, KvOp, KvOutput, Operation, check_kv_history};

/// Search steps per key before the checker gives up on that key (the verdict then says how
/// many keys are unknown; it does not fail).
pub const STEPS_PER_KEY: u64 = 2_000_000;

/// Checks the register history.
pub fn check(ops: &[RegisterOp]) -> Verdict {
    let mut kv: Vec<KvOp> = Vec::with_capacity(ops.len());
    let mut origin: Vec<usize> = Vec::with_capacity(ops.len());
    let mut problems = Vec::new();
    let (mut ok, mut failed, mut unknown) = (0usize, 0usize, 0usize);
    for (i, op) in ops.iter().enumerate() {
        let input = match op.call {
            RegisterCall::Read => KvInput::Get,
            RegisterCall::Write { value } => KvInput::Put(value),
            RegisterCall::Cas { expected, new } => KvInput::Cas {
                expected: Some(expected),
                new,
            },
        };
        let ret = match op.outcome {
            Outcome::Fail => {
                failed += 1;
                continue;
            }
            Outcome::Unknown => {
                unknown += 1;
                None
            }
            Outcome::Ok => {
                ok += 1;
                let out = match (op.call, op.result) {
                    (RegisterCall::Read, Some(RegisterResult::Read { value })) => {
                        KvOutput::Get(value)
                    }
                    (RegisterCall::Write { .. }, Some(RegisterResult::Write)) => KvOutput::PutOk,
                    (RegisterCall::Cas { .. }, Some(RegisterResult::Cas { ok })) => {
                        KvOutput::Cas(ok)
                    }
                    (call, result) => {
                        problems.push(format!(
                            "op {i}: result {result:?} does not answer {call:?} (a client bug)"
                        ));
                        continue;
                    }
                };
                Some((op.complete_us.max(op.invoke_us), out))
            }
        };
        kv.push(KvOp {
            key: op.key,
            op: Operation {
                client: op.process,
                input,
                call: op.invoke_us,
                ret,
            },
        });
        origin.push(i);
    }
    let result = check_kv_history(&kv, STEPS_PER_KEY);
    for &(key, stuck) in &result.violations {
        let op = &ops[origin[stuck]];
        problems.push(format!(
            "key {key}: not linearizable; no order of its {} operations explains {}",
            kv.iter().filter(|o| o.key == key).count(),
            describe(op)
        ));
    }
    let keys = {
        let mut k: Vec<u64> = ops.iter().map(|o| o.key).collect();
        k.sort_unstable();
        k.dedup();
        k.len()
    };
    let mut summary = format!(
        "{} operations on {keys} keys ({ok} ok, {failed} failed, {unknown} unknown), {} checked",
        ops.len(),
        result.ops_checked
    );
    if !result.unknown.is_empty() {
        summary.push_str(&format!(
            "; search budget exhausted on {} keys (not judged): {:?}",
            result.unknown.len(),
            result.unknown
        ));
    }
    if ok == 0 {
        problems.push("no operation succeeded: nothing was checked".into());
    }
    Verdict::from_problems("register: linearizable", summary, problems)
}

/// One operation for a report: who, what, answer, when.
pub fn describe(op: &RegisterOp) -> String {
    let call = match op.call {
        RegisterCall::Read => "read".to_string(),
        RegisterCall::Write { value } => format!("write {value}"),
        RegisterCall::Cas { expected, new } => format!("cas {expected}->{new}"),
    };
    let result = match (op.outcome, op.result) {
        (Outcome::Ok, Some(RegisterResult::Read { value })) => format!("read {value:?}"),
        (Outcome::Ok, Some(RegisterResult::Write)) => "ok".into(),
        (Outcome::Ok, Some(RegisterResult::Cas { ok })) => {
            if ok { "matched" } else { "did not match" }.into()
        }
        (o, _) => format!("{o:?}").to_lowercase(),
    };
    format!(
        "process {} {call} -> {result} [{:.3}s..{:.3}s via {}]",
        op.process,
        op.invoke_us as f64 / 1e6,
        op.complete_us as f64 / 1e6,
        if op.endpoint.is_empty() {
            "?"
        } else {
            &op.endpoint
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RegisterCall::{Cas, Read, Write};

    fn read(p: u64, t0: u64, t1: u64, v: Option<u64>) -> RegisterOp {
        RegisterOp::done(p, 0, Read, t0, t1, RegisterResult::Read { value: v })
    }

    fn write(p: u64, t0: u64, t1: u64, v: u64) -> RegisterOp {
        RegisterOp::done(p, 0, Write { value: v }, t0, t1, RegisterResult::Write)
    }

    #[test]
    fn sequential_history_passes() {
        let ops = vec![
            write(1, 0, 10, 1),
            read(2, 20, 30, Some(1)),
            RegisterOp::done(
                3,
                0,
                Cas {
                    expected: 1,
                    new: 2,
                },
                40,
                50,
                RegisterResult::Cas { ok: true },
            ),
            read(1, 60, 70, Some(2)),
        ];
        let v = check(&ops);
        assert!(v.ok, "{}", v.render());
    }

    #[test]
    fn a_stale_read_fails() {
        // 1 is written, then 2 is written and acknowledged; a read that starts after that
        // returns 1: what a follower serving from its own (lagging) state would answer.
        let ops = vec![
            write(1, 0, 10, 1),
            write(1, 20, 30, 2),
            read(2, 40, 50, Some(1)),
        ];
        let v = check(&ops);
        assert!(!v.ok, "a stale read must fail the check");
        assert!(v.problems[0].contains("key 0"), "{}", v.render());
        assert!(v.problems[0].contains("read Some(1)"), "{}", v.render());
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let ops = vec![
            write(1, 0, 10, 1),
            write(1, 20, 60, 2),
            read(2, 30, 40, Some(2)),
            read(3, 45, 50, Some(2)),
        ];
        assert!(check(&ops).ok);
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let ops = vec![
            write(1, 0, 10, 1),
            RegisterOp::unknown(2, 0, Write { value: 5 }, 20, 1_000),
            read(3, 2_000, 2_010, Some(5)),
            read(3, 2_020, 2_030, Some(5)),
        ];
        assert!(check(&ops).ok, "{}", check(&ops).render());
        // ...but once the effect was seen it cannot disappear again.
        let mut bad = ops.clone();
        bad.push(read(3, 2_040, 2_050, Some(1)));
        assert!(!check(&bad).ok);
    }

    #[test]
    fn a_failed_cas_that_should_have_matched_fails() {
        let ops = vec![
            write(1, 0, 10, 3),
            RegisterOp::done(
                2,
                0,
                Cas {
                    expected: 3,
                    new: 4,
                },
                20,
                30,
                RegisterResult::Cas { ok: false },
            ),
        ];
        assert!(!check(&ops).ok);
    }

    #[test]
    fn failed_operations_are_left_out() {
        let mut op = RegisterOp::unknown(2, 0, Write { value: 9 }, 20, 30);
        op.outcome = Outcome::Fail;
        let ops = vec![write(1, 0, 10, 1), op, read(3, 40, 50, Some(1))];
        let v = check(&ops);
        assert!(v.ok, "{}", v.render());
        assert!(v.summary.contains("1 failed"), "{}", v.summary);
    }

    #[test]
    fn a_history_without_a_success_is_not_a_pass() {
        assert!(!check(&[]).ok);
        let v = check(&[RegisterOp::unknown(1, 0, Write { value: 1 }, 0, 10)]);
        assert!(!v.ok, "{}", v.render());
    }

    #[test]
    fn keys_are_independent() {
        let mut other = write(1, 0, 10, 7);
        other.key = 1;
        let ops = vec![write(1, 0, 10, 1), other, read(2, 20, 30, Some(1))];
        assert!(check(&ops).ok);
    }
}
