//! The register workload: workers read, write and compare-and-set small integer values on a
//! few keys at a time (`chaos/reg/<n>`), moving on to fresh keys every
//! [`ROTATE`](self::ROTATE) so that each key's history stays short enough to check.

use super::{Clock, Conn, Sink, Spec, error_line, outcome_of, record};
use anyhow::Result;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use raft_chaos::history::{Outcome, RegisterCall, RegisterOp, RegisterResult};
use raft_sim::rng::SimRng;
use std::time::{Duration, Instant};

/// Keys in use at a time.
pub const KEYS: u64 = 4;
/// How often the workers move on to fresh keys.
pub const ROTATE: Duration = Duration::from_secs(2);
/// Values are drawn below this (as in Jepsen's register test).
pub const VALUES: u64 = 5;

fn key_name(key: u64) -> String {
    format!("chaos/reg/{key}")
}

/// One register worker until `deadline`.
pub async fn worker(
    spec: Spec,
    clock: Clock,
    deadline: Instant,
    process: u64,
    out: Sink,
) -> Result<()> {
    let mut rng = SimRng::new(spec.seed ^ (0x5EED_0000 + process));
    let mut conn = Conn::new(&spec.endpoints, process as usize, spec.timeout);
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        let window = clock.us() / ROTATE.as_micros() as u64;
        let key = window * KEYS + rng.below(KEYS);
        let call = match rng.below(4) {
            0 | 1 => RegisterCall::Read,
            2 => RegisterCall::Write {
                value: rng.below(VALUES),
            },
            _ => RegisterCall::Cas {
                expected: rng.below(VALUES),
                new: rng.below(VALUES),
            },
        };
        let name = key_name(key);
        let invoke_us = clock.us();
        let result = match call {
            RegisterCall::Read => {
                let opts = spec
                    .serializable_reads
                    .then(|| GetOptions::new().with_serializable());
                c.get(name, opts).await.map(|r| {
                    let value = r.kvs().first().map(|kv| {
                        std::str::from_utf8(kv.value())
                            .ok()
                            .and_then(|s| s.parse().ok())
                            // Not a value this workload writes: a read of garbage, which the
                            // checker will then reject.
                            .unwrap_or(u64::MAX)
                    });
                    RegisterResult::Read { value }
                })
            }
            RegisterCall::Write { value } => c
                .put(name, value.to_string(), None)
                .await
                .map(|_| RegisterResult::Write),
            RegisterCall::Cas { expected, new } => {
                let txn = Txn::new()
                    .when([Compare::value(
                        name.clone(),
                        CompareOp::Equal,
                        expected.to_string(),
                    )])
                    .and_then([TxnOp::put(name, new.to_string(), None)]);
                c.txn(txn)
                    .await
                    .map(|r| RegisterResult::Cas { ok: r.succeeded() })
            }
        };
        let complete_us = clock.us();
        let endpoint = conn.endpoint().to_string();
        let op = match result {
            Ok(result) => RegisterOp {
                process,
                key,
                call,
                invoke_us,
                complete_us,
                outcome: Outcome::Ok,
                result: Some(result),
                error: None,
                endpoint,
            },
            Err(e) => {
                conn.backoff().await;
                RegisterOp {
                    process,
                    key,
                    call,
                    invoke_us,
                    complete_us,
                    outcome: if call == RegisterCall::Read {
                        Outcome::Fail
                    } else {
                        outcome_of(&e)
                    },
                    result: None,
                    error: Some(error_line(&e)),
                    endpoint,
                }
            }
        };
        record(&out, &op)?;
    }
    Ok(())
}
