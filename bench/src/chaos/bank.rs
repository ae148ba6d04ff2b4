//! The bank workload: accounts `chaos/bank/<i>` hold money that workers move between them
//! with Txns guarded by both accounts' mod revisions (as read just before); every read of all
//! accounts (one Range, so one revision) is recorded for the total check.

use super::{Clock, Conn, Sink, Spec, error_line, outcome_of, record};
use anyhow::{Result, bail};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use raft_chaos::history::{BankCall, BankOp, Outcome};
use raft_sim::rng::SimRng;
use std::time::{Duration, Instant};

/// The accounts and the money in them.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Accounts `0..accounts`.
    pub accounts: u64,
    /// The money in all of them.
    pub total: i64,
}

const PREFIX: &str = "chaos/bank/";

fn account(i: u64) -> String {
    format!("{PREFIX}{i}")
}

/// Creates the accounts (one Txn, only if none exists), retrying over the endpoints for up
/// to 30 s.
pub async fn setup(spec: &Spec) -> Result<Setup> {
    let s = Setup {
        accounts: 5,
        total: 100,
    };
    let each = s.total / s.accounts as i64;
    let mut conn = Conn::new(&spec.endpoints, 0, spec.timeout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mut c) = conn.client().await {
            let txn = Txn::new()
                .when(
                    (0..s.accounts)
                        .map(|i| Compare::create_revision(account(i), CompareOp::Equal, 0))
                        .collect::<Vec<_>>(),
                )
                .and_then(
                    (0..s.accounts)
                        .map(|i| TxnOp::put(account(i), each.to_string(), None))
                        .collect::<Vec<_>>(),
                );
            match c.txn(txn).await {
                // Either this Txn created them or an earlier attempt did.
                Ok(_) => return Ok(s),
                Err(_) => conn.rotate(),
            }
        }
        if Instant::now() > deadline {
            bail!("could not create the bank accounts within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One bank worker until `deadline`: read all accounts (recorded), then transfer between two
/// of them based on that read.
pub async fn worker(
    spec: Spec,
    setup: Setup,
    clock: Clock,
    deadline: Instant,
    process: u64,
    out: Sink,
) -> Result<()> {
    let mut rng = SimRng::new(spec.seed ^ (0xBA4C_0000 + process));
    let mut conn = Conn::new(&spec.endpoints, process as usize + 1, spec.timeout);
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        let endpoint = conn.endpoint().to_string();
        let invoke_us = clock.us();
        let read = c.get(PREFIX, Some(GetOptions::new().with_prefix())).await;
        let complete_us = clock.us();
        let mut op = BankOp {
            process,
            call: BankCall::Read,
            invoke_us,
            complete_us,
            outcome: Outcome::Ok,
            balances: None,
            revision: None,
            error: None,
            endpoint: endpoint.clone(),
        };
        let resp = match read {
            Ok(r) => r,
            Err(e) => {
                conn.backoff().await;
                op.outcome = Outcome::Fail;
                op.error = Some(error_line(&e));
                record(&out, &op)?;
                continue;
            }
        };
        // Balance and mod revision of each account.
        let mut state: Vec<Option<(i64, i64)>> = vec![None; setup.accounts as usize];
        for kv in resp.kvs() {
            let idx = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(PREFIX))
                .and_then(|i| i.parse::<usize>().ok());
            let bal = std::str::from_utf8(kv.value())
                .ok()
                .and_then(|v| v.parse::<i64>().ok());
            if let (Some(i), Some(b)) = (idx, bal)
                && i < state.len()
            {
                state[i] = Some((b, kv.mod_revision()));
            }
        }
        op.balances = Some(state.iter().map(|s| s.map(|(b, _)| b)).collect());
        op.revision = resp.header().map(|h| h.revision());
        record(&out, &op)?;

        let from = rng.below(setup.accounts);
        let to = (from + 1 + rng.below(setup.accounts - 1)) % setup.accounts;
        let amount = rng.range(1, 5) as i64;
        let (Some((fb, fr)), Some((tb, tr))) = (state[from as usize], state[to as usize]) else {
            continue;
        };
        if fb < amount {
            continue;
        }
        let mut txn = Txn::new();
        if !spec.unguarded_transfers {
            txn = txn.when([
                Compare::mod_revision(account(from), CompareOp::Equal, fr),
                Compare::mod_revision(account(to), CompareOp::Equal, tr),
            ]);
        }
        let txn = txn.and_then([
            TxnOp::put(account(from), (fb - amount).to_string(), None),
            TxnOp::put(account(to), (tb + amount).to_string(), None),
        ]);
        let invoke_us = clock.us();
        let res = c.txn(txn).await;
        let complete_us = clock.us();
        let mut op = BankOp {
            process,
            call: BankCall::Transfer { from, to, amount },
            invoke_us,
            complete_us,
            outcome: Outcome::Ok,
            balances: None,
            revision: None,
            error: None,
            endpoint,
        };
        match res {
            Ok(r) if r.succeeded() => op.revision = r.header().map(|h| h.revision()),
            Ok(_) => {
                op.outcome = Outcome::Fail;
                op.error = Some("guard failed: an account changed since the read".into());
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
