//! Tests of the linearizability checker: hand-written histories with known verdicts.

use super::*;
use crate::rng::SimRng;

fn op(client: u64, key: u64, input: KvInput, call: u64, ret: u64, out: KvOutput) -> KvOp {
    KvOp {
        key,
        op: Operation {
            client,
            input,
            call,
            ret: Some((ret, out)),
        },
    }
}

fn lost(client: u64, key: u64, input: KvInput, call: u64) -> KvOp {
    KvOp {
        key,
        op: Operation {
            client,
            input,
            call,
            ret: None,
        },
    }
}

use KvInput::{Get, Put};
use KvOutput::{Cas as CasOut, Get as GetOut, PutOk};

fn cas(expected: Option<u64>, new: u64) -> KvInput {
    KvInput::Cas { expected, new }
}

fn check(h: &[KvOp]) -> KvCheck {
    check_kv_history(h, 10_000_000)
}

#[test]
fn empty_and_sequential_histories() {
    assert!(check(&[]).ok());
    let h = vec![
        op(1, 0, Get, 0, 1, GetOut(None)),
        op(1, 0, Put(1), 2, 3, PutOk),
        op(1, 0, Get, 4, 5, GetOut(Some(1))),
        op(1, 0, cas(Some(1), 2), 6, 7, CasOut(true)),
        op(1, 0, cas(Some(1), 3), 8, 9, CasOut(false)),
        op(1, 0, Get, 10, 11, GetOut(Some(2))),
    ];
    let r = check(&h);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.ops_checked, 6);
}

#[test]
fn concurrent_read_may_see_either_value() {
    // put(1) || get -> None and get -> 1 both fine while overlapping.
    for seen in [None, Some(1)] {
        let h = vec![
            op(1, 0, Put(1), 0, 10, PutOk),
            op(2, 0, Get, 5, 6, GetOut(seen)),
        ];
        assert!(check(&h).ok());
    }
}

#[test]
fn stale_read_is_caught() {
    // The write completed before the read started, yet the read saw the old value.
    let h = vec![
        op(1, 0, Put(1), 0, 10, PutOk),
        op(1, 0, Put(2), 11, 20, PutOk),
        op(2, 0, Get, 21, 25, GetOut(Some(1))),
    ];
    let r = check(&h);
    assert_eq!(r.violations.len(), 1, "{r:?}");
    assert_eq!(r.violations[0].0, 0);
}

#[test]
fn reads_going_back_in_time_are_caught() {
    // Two sequential reads during a long write: once the new value is seen, the old one
    // may not come back.
    let h = vec![
        op(1, 0, Put(1), 0, 1, PutOk),
        op(2, 0, Put(2), 2, 100, PutOk),
        op(3, 0, Get, 10, 11, GetOut(Some(2))),
        op(3, 0, Get, 12, 13, GetOut(Some(1))),
    ];
    assert!(!check(&h).ok());
}

#[test]
fn lost_write_is_caught() {
    // An acknowledged write is never observed by a read that starts after it returned.
    let h = vec![
        op(1, 0, Put(1), 0, 5, PutOk),
        op(2, 0, Put(2), 6, 9, PutOk),
        op(3, 0, Get, 10, 12, GetOut(Some(1))),
    ];
    assert!(!check(&h).ok());
    let h = vec![
        op(1, 0, Put(7), 0, 5, PutOk),
        op(3, 0, Get, 10, 12, GetOut(None)),
    ];
    assert!(!check(&h).ok());
}

#[test]
fn read_of_never_written_value_is_caught() {
    let h = vec![op(1, 0, Get, 0, 1, GetOut(Some(99)))];
    assert!(!check(&h).ok());
}

#[test]
fn cas_anomalies() {
    // Two concurrent CAS from the same expected value may not both succeed.
    let h = vec![
        op(1, 0, Put(1), 0, 1, PutOk),
        op(2, 0, cas(Some(1), 2), 2, 10, CasOut(true)),
        op(3, 0, cas(Some(1), 3), 2, 10, CasOut(true)),
    ];
    assert!(!check(&h).ok());
    // One succeeding and one failing is fine either way round.
    let h = vec![
        op(1, 0, Put(1), 0, 1, PutOk),
        op(2, 0, cas(Some(1), 2), 2, 10, CasOut(true)),
        op(3, 0, cas(Some(1), 3), 2, 10, CasOut(false)),
        op(4, 0, Get, 11, 12, GetOut(Some(2))),
    ];
    assert!(check(&h).ok());
    // A CAS failing although the value surely matched.
    let h = vec![
        op(1, 0, Put(1), 0, 1, PutOk),
        op(2, 0, cas(Some(1), 2), 2, 3, CasOut(false)),
    ];
    assert!(!check(&h).ok());
    // A CAS on an absent key.
    let h = vec![
        op(2, 0, cas(None, 2), 2, 3, CasOut(true)),
        op(2, 0, Get, 4, 5, GetOut(Some(2))),
    ];
    assert!(check(&h).ok());
    // A successful CAS whose write is then lost.
    let h = vec![
        op(1, 0, Put(1), 0, 1, PutOk),
        op(2, 0, cas(Some(1), 2), 2, 3, CasOut(true)),
        op(2, 0, Get, 4, 5, GetOut(Some(1))),
    ];
    assert!(!check(&h).ok());
}

#[test]
fn indeterminate_ops_may_or_may_not_take_effect() {
    // A timed-out write that was observed later: it took effect.
    let h = vec![
        lost(1, 0, Put(5), 0),
        op(2, 0, Get, 100, 101, GetOut(Some(5))),
    ];
    assert!(check(&h).ok());
    // A timed-out write that was never observed: it did not (or was overwritten).
    let h = vec![lost(1, 0, Put(5), 0), op(2, 0, Get, 100, 101, GetOut(None))];
    assert!(check(&h).ok());
    // ... and it may take effect arbitrarily late, even after other reads.
    let h = vec![
        op(0, 0, Put(1), 0, 1, PutOk),
        lost(1, 0, Put(5), 2),
        op(2, 0, Get, 100, 101, GetOut(Some(1))),
        op(2, 0, Get, 200, 201, GetOut(Some(5))),
        op(2, 0, Get, 300, 301, GetOut(Some(5))),
    ];
    assert!(check(&h).ok());
    // But it takes effect at most once: the value cannot come back after being replaced.
    let h = vec![
        lost(1, 0, Put(5), 0),
        op(2, 0, Get, 100, 101, GetOut(Some(5))),
        op(2, 0, Put(6), 102, 103, PutOk),
        op(2, 0, Get, 104, 105, GetOut(Some(5))),
    ];
    assert!(!check(&h).ok());
    // It cannot take effect before it was invoked.
    let h = vec![op(2, 0, Get, 0, 1, GetOut(Some(5))), lost(1, 0, Put(5), 10)];
    assert!(!check(&h).ok());
    // Indeterminate CAS: with a failed CAS around nothing is dropped, and still fine.
    let h = vec![
        op(0, 0, Put(1), 0, 1, PutOk),
        lost(1, 0, cas(Some(1), 9), 2),
        op(2, 0, cas(Some(1), 3), 50, 51, CasOut(false)),
        op(2, 0, Get, 52, 53, GetOut(Some(9))),
    ];
    assert!(check(&h).ok());
    // A failed CAS explained only by an unobserved indeterminate write.
    let h = vec![
        op(0, 0, Put(1), 0, 1, PutOk),
        lost(1, 0, Put(8), 2),
        op(2, 0, cas(Some(1), 3), 50, 51, CasOut(false)),
    ];
    assert!(check(&h).ok());
    // Indeterminate reads are ignored.
    let h = vec![lost(1, 0, Get, 0), op(2, 0, Get, 1, 2, GetOut(None))];
    let r = check(&h);
    assert!(r.ok());
    assert_eq!(r.ops_checked, 1);
}

#[test]
fn keys_are_independent() {
    // Each key alone is linearizable, and a violation on one key is attributed to it.
    let h = vec![
        op(1, 1, Put(1), 0, 1, PutOk),
        op(1, 2, Put(2), 0, 1, PutOk),
        op(2, 1, Get, 2, 3, GetOut(Some(1))),
        op(2, 2, Get, 2, 3, GetOut(Some(1))),
    ];
    let r = check(&h);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0], (2, 3));
}

#[test]
fn step_budget_gives_unknown() {
    let h: Vec<KvOp> = (0..50)
        .map(|i| op(i, 0, Put(i), 0, 100, PutOk))
        .chain([op(99, 0, Get, 101, 102, GetOut(Some(1000)))])
        .collect();
    let r = check_kv_history(&h, 10);
    assert_eq!(r.unknown, vec![0]);
    assert!(r.ok());
}

/// Simulates a linearizable register with concurrent clients: each operation takes effect
/// at a random instant inside its interval; some clients time out (indeterminate).
fn random_history(seed: u64, n_ops: usize, clients: u64, stale: bool) -> Vec<KvOp> {
    let mut rng = SimRng::new(seed);
    let mut value: Option<u64> = None;
    let mut next_value = 1;
    // (client ready time) per client.
    let mut ready = vec![0u64; clients as usize];
    let mut pending: Vec<(u64, u64, usize)> = Vec::new(); // (effect time, client, op idx)
    let mut hist: Vec<KvOp> = Vec::new();
    for _ in 0..n_ops {
        let c = rng.below(clients);
        let call = ready[c as usize] + rng.range(0, 3);
        let effect = call + rng.range(0, 5);
        let ret = effect + rng.range(0, 5);
        ready[c as usize] = ret + 1;
        let input = match rng.below(3) {
            0 => {
                next_value += 1;
                Put(next_value)
            }
            1 => Get,
            _ => {
                next_value += 1;
                cas(
                    if rng.chance(0.5) {
                        value
                    } else {
                        Some(rng.below(next_value))
                    },
                    next_value,
                )
            }
        };
        hist.push(lost(c, 0, input, call));
        pending.push((effect, ret, hist.len() - 1));
    }
    pending.sort_unstable();
    // Completed writes: (call time, return time, value before, when the write of the value
    // before returned (0 for the initial None)).
    let mut writes: Vec<(u64, u64, Option<u64>, u64)> = Vec::new();
    let mut written_at: Vec<(u64, u64)> = Vec::new(); // (value, return time of its write)
    let ret_of = |written_at: &Vec<(u64, u64)>, v: Option<u64>| {
        v.and_then(|v| written_at.iter().find(|w| w.0 == v).map(|w| w.1))
            .unwrap_or(0)
    };
    let mut stale_injected = false;
    for (_, ret, i) in pending {
        let input = hist[i].op.input;
        let call = hist[i].op.call;
        let out = match input {
            Put(v) => {
                writes.push((call, ret, value, ret_of(&written_at, value)));
                written_at.push((v, ret));
                value = Some(v);
                PutOk
            }
            Get => {
                // A stale read: the value `a` overwritten by a write W that returned before
                // this read was invoked, where W was invoked after the write of `a`
                // returned. Values are unique, so no linearization can explain it.
                let stale_value = writes
                    .iter()
                    .rev()
                    .find(|(c, r, before, before_ret)| {
                        *r < call && *before != value && *before_ret < *c
                    })
                    .map(|w| w.2);
                match stale_value {
                    Some(old) if stale && !stale_injected => {
                        stale_injected = true;
                        GetOut(old)
                    }
                    _ => GetOut(value),
                }
            }
            KvInput::Cas { expected, new } => {
                let ok = value == expected;
                if ok {
                    writes.push((call, ret, value, ret_of(&written_at, value)));
                    written_at.push((new, ret));
                    value = Some(new);
                }
                CasOut(ok)
            }
        };
        // Indeterminate: the client never learns the outcome. Not with an injected stale read:
        // an indeterminate write of the stale value could legitimately take effect late.
        let keep = stale || !rng.chance(0.05);
        if keep {
            hist[i].op.ret = Some((ret, out));
        }
    }
    assert!(!stale || stale_injected, "no stale read could be injected");
    hist
}

#[test]
fn random_linearizable_histories_pass() {
    // 20 histories of 400 ops on one key, 8 concurrent clients, each decided (no unknown
    // within the step budget). How long the checker takes is not a property checked here.
    for seed in 0..20 {
        let h = random_history(seed, 400, 8, false);
        let r = check(&h);
        assert!(r.ok() && r.unknown.is_empty(), "seed {seed}: {r:?}");
    }
}

#[test]
fn random_histories_with_one_stale_read_fail() {
    // One stale read hidden among hundreds of concurrent operations is always found.
    for seed in 0..20 {
        let r = check(&random_history(seed, 300, 6, true));
        assert_eq!(r.violations.len(), 1, "seed {seed}: {r:?}");
    }
}
