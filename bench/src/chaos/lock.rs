//! The lock workload: workers take one lock (`chaos/lock`, etcd's Lock service) on a fresh
//! lease each time, keep the lease alive while they hold it, and write the shared record
//! `chaos/lock-record` with Txns fenced by the lock key's create revision; each Txn also
//! reads the head of the lock's queue, so the checker sees who held the lock at the write's
//! revision ([`raft_chaos::lock`]). Then they unlock and revoke the lease.
//!
//! One hold in [`STALL_ONE_IN`] stalls before writing, as a client in a long garbage
//! collection pause would: it stops keeping its lease alive and sleeps past the lease's TTL,
//! so the lock passes to another worker while this one still believes it holds it. Its
//! fenced writes must then be refused (with `--unsafe-unfenced-lock-writes`, they are not,
//! and the check fails).

use super::{Clock, Conn, Sink, Spec, error_line, outcome_of, record};
use anyhow::Result;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use raft_chaos::history::{LockCall, LockOp, Outcome};
use raft_sim::rng::SimRng;
use std::time::{Duration, Instant};

/// The lock's name; its keys are `chaos/lock/<lease hex>`.
const NAME: &str = "chaos/lock";
/// The fenced record.
const RECORD: &str = "chaos/lock-record";
/// The TTL of each hold's lease (s): short, so that a paused or cut-off holder loses the
/// lock within a fault and fencing is exercised.
pub const LEASE_TTL: i64 = 2;
/// One hold in this many stalls past its lease's TTL before writing.
pub const STALL_ONE_IN: u64 = 6;

/// One lock worker until `deadline`.
pub async fn worker(
    spec: Spec,
    clock: Clock,
    deadline: Instant,
    process: u64,
    out: Sink,
) -> Result<()> {
    let mut rng = SimRng::new(spec.seed ^ (0x10C4_0000 + process));
    let mut conn = Conn::new(&spec.endpoints, process as usize + 2, spec.timeout);
    let mut value_seq = 0u64;
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        let endpoint = conn.endpoint().to_string();
        let lease = match c.lease_grant(LEASE_TTL, None).await {
            Ok(l) => l.id(),
            Err(_) => {
                conn.backoff().await;
                continue;
            }
        };
        let keeper = tokio::spawn(keep_alive(c.clone(), lease));
        let mut op = LockOp {
            process,
            call: LockCall::Acquire,
            invoke_us: clock.us(),
            complete_us: 0,
            outcome: Outcome::Ok,
            lease,
            key: String::new(),
            lock_revision: 0,
            value: None,
            revision: None,
            owner: None,
            prev_revision: None,
            prev_value: None,
            stalled_ms: 0,
            error: None,
            endpoint: endpoint.clone(),
        };
        let locked = c
            .lock(NAME, Some(LockOptions::new().with_lease(lease)))
            .await;
        op.complete_us = clock.us();
        let key = match locked {
            Ok(r) => String::from_utf8_lossy(r.key()).into_owned(),
            Err(e) => {
                op.outcome = outcome_of(&e);
                op.error = Some(error_line(&e));
                record(&out, &op)?;
                end_hold(&mut c, lease, keeper).await;
                conn.backoff().await;
                continue;
            }
        };
        op.key = key.clone();
        // The fencing token: the lock key's create revision.
        let lock_revision = match c.get(key.as_str(), None).await {
            Ok(r) => r.kvs().first().map(|kv| kv.create_revision()),
            Err(_) => None,
        };
        let Some(lock_revision) = lock_revision else {
            op.error = Some("the lock key could not be read after Lock".into());
            record(&out, &op)?;
            end_hold(&mut c, lease, keeper).await;
            conn.backoff().await;
            continue;
        };
        op.lock_revision = lock_revision;
        if rng.below(STALL_ONE_IN) == 0 {
            keeper.abort();
            op.stalled_ms = LEASE_TTL as u64 * 1000 + 1000;
        }
        record(&out, &op)?;
        if op.stalled_ms > 0 {
            tokio::time::sleep(Duration::from_millis(op.stalled_ms)).await;
        }

        let mut failed = false;
        for seq in 0..rng.range(1, 3) {
            let value = format!("p{process}-{value_seq}");
            value_seq += 1;
            let mut txn = Txn::new();
            if !spec.unfenced_lock_writes {
                txn = txn.when([Compare::create_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    lock_revision,
                )]);
            }
            let txn = txn.and_then([
                TxnOp::put(
                    RECORD,
                    value.as_str(),
                    Some(PutOptions::new().with_prev_key()),
                ),
                TxnOp::get(
                    format!("{NAME}/"),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Create, SortOrder::Ascend)
                            .with_limit(1)
                            .with_keys_only(),
                    ),
                ),
            ]);
            let mut w = LockOp {
                call: LockCall::Write { seq },
                invoke_us: clock.us(),
                value: Some(value),
                stalled_ms: 0,
                ..op.clone()
            };
            let res = c.txn(txn).await;
            w.complete_us = clock.us();
            match res {
                Ok(r) if r.succeeded() => {
                    w.revision = r.header().map(|h| h.revision());
                    for o in r.op_responses() {
                        match o {
                            TxnOpResponse::Put(p) => {
                                let prev = p.prev_key();
                                w.prev_revision = Some(prev.map_or(0, |kv| kv.mod_revision()));
                                w.prev_value =
                                    prev.map(|kv| String::from_utf8_lossy(kv.value()).into());
                            }
                            TxnOpResponse::Get(g) => {
                                w.owner = g
                                    .kvs()
                                    .first()
                                    .map(|kv| String::from_utf8_lossy(kv.key()).into());
                            }
                            _ => {}
                        }
                    }
                }
                Ok(_) => {
                    w.outcome = Outcome::Fail;
                    w.value = None;
                    w.error = Some("fenced off: the lock key is gone or newer".into());
                    failed = true;
                }
                Err(e) => {
                    w.outcome = outcome_of(&e);
                    w.error = Some(error_line(&e));
                    failed = true;
                }
            }
            record(&out, &w)?;
            if failed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.range(0, 50))).await;
        }
        let mut r = LockOp {
            call: LockCall::Release,
            invoke_us: clock.us(),
            stalled_ms: 0,
            ..op.clone()
        };
        let res = c.unlock(key.as_str()).await;
        r.complete_us = clock.us();
        if let Err(e) = res {
            r.outcome = outcome_of(&e);
            r.error = Some(error_line(&e));
            failed = true;
        }
        record(&out, &r)?;
        end_hold(&mut c, lease, keeper).await;
        if failed {
            conn.backoff().await;
        }
    }
    Ok(())
}

/// Keeps `lease` alive (a third of its TTL apart) until aborted or the lease is gone.
async fn keep_alive(mut c: Client, lease: i64) {
    let Ok((mut keeper, mut stream)) = c.lease_keep_alive(lease).await else {
        return;
    };
    loop {
        if keeper.keep_alive().await.is_err() {
            return;
        }
        match stream.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(LEASE_TTL as u64 * 1000 / 3)).await;
    }
}

/// Stops keeping the lease alive and revokes it (best effort: it expires anyway).
async fn end_hold(c: &mut Client, lease: i64, keeper: tokio::task::JoinHandle<()>) {
    keeper.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(lease)).await;
}
