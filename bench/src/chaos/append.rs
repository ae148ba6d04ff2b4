//! The append workload (Elle's list-append): lists `chaos/append/<n>` hold comma-separated
//! unique elements; each transaction reads some lists and appends to others, atomically.
//!
//! etcd has no append, so a transaction is optimistic: it first reads the lists it will append
//! to (one read-only Txn, so one revision), then sends one Txn guarded by the mod revision of
//! each of those lists as read (0 for a missing key) whose success branch puts each appended
//! list (what was read plus the new element) and reads the other lists, in the order the
//! transaction lists them. A guard that does not hold makes the transaction `fail` (nothing
//! was written). The recorded transaction reads each list it appends to just before the
//! append: the guard is what makes that read current at the commit, so a lost update (two
//! transactions that read one version and both appended) shows in the history when the guard
//! is skipped (`--unsafe-unguarded-appends`).
//!
//! Workers use [`KEYS`] lists at a time and move on to fresh ones every [`ROTATE`], which
//! keeps the lists (and the checker's work) short.

use super::{Clock, Conn, Sink, Spec, error_line, outcome_of, record};
use anyhow::Result;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use raft_chaos::history::{AppendOp, ListMop, Outcome};
use raft_sim::rng::SimRng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lists in use at a time.
pub const KEYS: u64 = 5;
/// How often the workers move on to fresh lists.
pub const ROTATE: Duration = Duration::from_secs(3);
/// At most this many lists per transaction.
pub const MAX_MOPS: u64 = 3;

fn key_name(key: u64) -> String {
    format!("chaos/append/{key}")
}

/// Parses a list value: comma-separated integers (empty: no element). An element that is not
/// a number becomes `u64::MAX`, which no transaction appends: the checker reports it.
fn parse_list(v: &[u8]) -> Vec<u64> {
    let s = String::from_utf8_lossy(v);
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(u64::MAX))
        .collect()
}

fn render_list(list: &[u64]) -> String {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One append worker until `deadline`.
pub async fn worker(
    spec: Spec,
    clock: Clock,
    deadline: Instant,
    process: u64,
    out: Sink,
) -> Result<()> {
    let mut rng = SimRng::new(spec.seed ^ (0xA99E_0000 + process));
    let mut conn = Conn::new(&spec.endpoints, process as usize + 2, spec.timeout);
    let mut next_value = process * 1_000_000;
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        let endpoint = conn.endpoint().to_string();
        // Draw the transaction: distinct lists, each read or appended to.
        let window = clock.us() / ROTATE.as_micros() as u64;
        let n = 1 + rng.below(MAX_MOPS);
        let mut keys: Vec<u64> = Vec::new();
        while (keys.len() as u64) < n {
            let k = window * KEYS + rng.below(KEYS);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let plan: Vec<(u64, Option<u64>)> = keys
            .into_iter()
            .map(|k| {
                if rng.below(2) == 0 {
                    next_value += 1;
                    (k, Some(next_value))
                } else {
                    (k, None)
                }
            })
            .collect();
        let appended: Vec<u64> = plan
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();

        let invoke_us = clock.us();
        let mut op = AppendOp {
            process,
            mops: plan
                .iter()
                .flat_map(|&(key, v)| match v {
                    Some(value) => vec![
                        ListMop::Read { key, value: None },
                        ListMop::Append { key, value },
                    ],
                    None => vec![ListMop::Read { key, value: None }],
                })
                .collect(),
            invoke_us,
            complete_us: invoke_us,
            outcome: Outcome::Ok,
            revision: None,
            error: None,
            endpoint,
        };

        // 1. Read the lists to append to (value and mod revision).
        let mut before: HashMap<u64, (Vec<u64>, i64)> = HashMap::new();
        if !appended.is_empty() {
            let read = Txn::new().and_then(
                appended
                    .iter()
                    .map(|&k| TxnOp::get(key_name(k), None))
                    .collect::<Vec<_>>(),
            );
            match c.txn(read).await {
                Ok(r) => {
                    for (k, resp) in appended.iter().zip(r.op_responses()) {
                        let (list, rev) = match resp {
                            TxnOpResponse::Get(g) => {
                                g.kvs().first().map_or((Vec::new(), 0), |kv| {
                                    (parse_list(kv.value()), kv.mod_revision())
                                })
                            }
                            _ => (Vec::new(), 0),
                        };
                        before.insert(*k, (list, rev));
                    }
                }
                Err(e) => {
                    // Only reads were sent: no effect.
                    op.complete_us = clock.us();
                    op.outcome = Outcome::Fail;
                    op.error = Some(format!("reading the lists: {}", error_line(&e)));
                    conn.backoff().await;
                    record(&out, &op)?;
                    continue;
                }
            }
        }

        // 2. The guarded transaction.
        let mut txn = Txn::new();
        if !spec.unguarded_appends && !appended.is_empty() {
            txn = txn.when(
                appended
                    .iter()
                    .map(|k| Compare::mod_revision(key_name(*k), CompareOp::Equal, before[k].1))
                    .collect::<Vec<_>>(),
            );
        }
        let txn = txn.and_then(
            plan.iter()
                .map(|&(k, v)| match v {
                    Some(value) => {
                        let mut list = before[&k].0.clone();
                        list.push(value);
                        TxnOp::put(key_name(k), render_list(&list), None)
                    }
                    None => TxnOp::get(key_name(k), None),
                })
                .collect::<Vec<_>>(),
        );
        let res = c.txn(txn).await;
        op.complete_us = clock.us();
        match res {
            Ok(r) if r.succeeded() => {
                op.revision = r.header().map(|h| h.revision());
                let responses = r.op_responses();
                let mut read_now: HashMap<u64, Vec<u64>> = HashMap::new();
                for (&(k, v), resp) in plan.iter().zip(responses) {
                    if v.is_none()
                        && let TxnOpResponse::Get(g) = resp
                    {
                        read_now.insert(
                            k,
                            g.kvs()
                                .first()
                                .map_or(Vec::new(), |kv| parse_list(kv.value())),
                        );
                    }
                }
                // Fill in the reads: of appended lists, what step 1 read (the guard held it);
                // of the others, what the Txn read.
                let mut it = op.mops.iter_mut().peekable();
                while let Some(m) = it.next() {
                    if let ListMop::Read { key, value } = m {
                        let appends_next = matches!(
                            it.peek(),
                            Some(ListMop::Append { key: k, .. }) if k == key
                        );
                        *value = Some(if appends_next {
                            before[key].0.clone()
                        } else {
                            read_now.remove(key).unwrap_or_default()
                        });
                    }
                }
            }
            Ok(_) => {
                op.outcome = Outcome::Fail;
                op.error = Some("guard failed: a list changed since it was read".into());
            }
            Err(e) => {
                conn.backoff().await;
                op.outcome = outcome_of(&e);
                op.error = Some(error_line(&e));
            }
        }
        record(&out, &op)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        assert_eq!(parse_list(b""), Vec::<u64>::new());
        assert_eq!(parse_list(b"3,1000001,7"), vec![3, 1_000_001, 7]);
        assert_eq!(parse_list(b"3,x"), vec![3, u64::MAX]);
        assert_eq!(render_list(&[3, 1_000_001, 7]), "3,1000001,7");
        assert_eq!(render_list(&[]), "");
    }
}
