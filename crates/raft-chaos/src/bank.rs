//! The bank check: money moves between accounts only by transfers (Txns guarded by the mod
//! revisions of both accounts as read), so every read of all accounts, which etcd serves at
//! one revision, must find every account, no negative balance, and the same total.
//!
//! A lost update (two transfers from one read both applied, a guard not honoured, a write
//! acknowledged and then lost by a failover) changes the total or drives a balance below
//! zero; a read of a torn state (part of a Txn) changes the total.

use crate::Verdict;
use crate::history::{BankCall, BankOp, Outcome};

/// Checks the bank history: `accounts` accounts holding `total` together.
pub fn check(ops: &[BankOp], accounts: u64, total: i64) -> Verdict {
    let mut problems = Vec::new();
    let (mut reads, mut transfers_ok, mut transfers_failed, mut unknown) = (0, 0, 0, 0);
    for op in ops {
        match (op.call, op.outcome) {
            (BankCall::Transfer { .. }, Outcome::Ok) => transfers_ok += 1,
            (BankCall::Transfer { .. }, Outcome::Fail) => transfers_failed += 1,
            (_, Outcome::Unknown) => unknown += 1,
            (BankCall::Read, Outcome::Ok) => {
                reads += 1;
                let at = format!(
                    "read by process {} at {:.3}s (revision {}, via {})",
                    op.process,
                    op.complete_us as f64 / 1e6,
                    op.revision.unwrap_or(0),
                    op.endpoint
                );
                let Some(balances) = &op.balances else {
                    problems.push(format!("{at}: no balances recorded (a client bug)"));
                    continue;
                };
                if balances.len() as u64 != accounts {
                    problems.push(format!(
                        "{at}: {} accounts recorded, expected {accounts}",
                        balances.len()
                    ));
                    continue;
                }
                let missing: Vec<usize> = (0..balances.len())
                    .filter(|&i| balances[i].is_none())
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("{at}: accounts {missing:?} missing"));
                    continue;
                }
                let values: Vec<i64> = balances.iter().map(|b| b.unwrap_or(0)).collect();
                let sum: i64 = values.iter().sum();
                if sum != total {
                    problems.push(format!(
                        "{at}: balances {values:?} sum to {sum}, not {total} (money {} \
                         — a lost or torn update)",
                        if sum > total { "created" } else { "destroyed" }
                    ));
                } else if values.iter().any(|&b| b < 0) {
                    problems.push(format!(
                        "{at}: negative balance in {values:?} (a transfer applied on a stale read)"
                    ));
                }
            }
            (BankCall::Read, Outcome::Fail) => {}
        }
    }
    let summary = format!(
        "{} operations: {reads} reads checked, {transfers_ok} transfers done, \
         {transfers_failed} refused or failed, {unknown} unknown; {accounts} accounts, total {total}",
        ops.len()
    );
    let mut verdict =
        Verdict::from_problems("bank: every read sums to the total", summary, problems);
    if reads == 0 {
        verdict.ok = false;
        verdict
            .problems
            .push("no read of the accounts succeeded: nothing was checked".into());
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(t: u64, balances: &[i64]) -> BankOp {
        BankOp {
            process: 1,
            call: BankCall::Read,
            invoke_us: t,
            complete_us: t + 5,
            outcome: Outcome::Ok,
            balances: Some(balances.iter().map(|&b| Some(b)).collect()),
            revision: Some(t as i64),
            error: None,
            endpoint: "e".into(),
        }
    }

    fn transfer(t: u64, from: u64, to: u64, amount: i64, outcome: Outcome) -> BankOp {
        BankOp {
            process: 2,
            call: BankCall::Transfer { from, to, amount },
            invoke_us: t,
            complete_us: t + 5,
            outcome,
            balances: None,
            revision: None,
            error: None,
            endpoint: "e".into(),
        }
    }

    #[test]
    fn conserved_money_passes() {
        let ops = vec![
            read(0, &[10, 10, 10]),
            transfer(10, 0, 1, 3, Outcome::Ok),
            transfer(10, 1, 2, 3, Outcome::Unknown),
            transfer(10, 1, 2, 3, Outcome::Fail),
            read(20, &[7, 13, 10]),
            read(30, &[7, 10, 13]),
        ];
        let v = check(&ops, 3, 30);
        assert!(v.ok, "{}", v.render());
        assert!(v.summary.contains("3 reads"), "{}", v.summary);
    }

    #[test]
    fn a_lost_update_fails() {
        // Two transfers from account 0, both computed from the read [10, 10, 10] and both
        // applied: 0 -> 1 of 3 wrote (7, 13), 0 -> 2 of 2 wrote (8, 12), and the second
        // overwrote the first's debit of account 0: 3 units were created.
        let ops = vec![
            read(0, &[10, 10, 10]),
            transfer(10, 0, 1, 3, Outcome::Ok),
            transfer(10, 0, 2, 2, Outcome::Ok),
            read(20, &[8, 13, 12]),
        ];
        let v = check(&ops, 3, 30);
        assert!(!v.ok);
        assert!(v.problems[0].contains("sum to 33"), "{}", v.render());
        assert!(v.problems[0].contains("created"), "{}", v.render());
    }

    #[test]
    fn a_missing_account_fails() {
        let mut op = read(0, &[10, 10, 10]);
        op.balances = Some(vec![Some(10), None, Some(20)]);
        let v = check(&[op], 3, 30);
        assert!(!v.ok);
        assert!(v.problems[0].contains("missing"), "{}", v.render());
    }

    #[test]
    fn a_negative_balance_fails() {
        let v = check(&[read(0, &[-1, 16, 15])], 3, 30);
        assert!(!v.ok);
        assert!(v.problems[0].contains("negative"), "{}", v.render());
    }

    #[test]
    fn no_successful_read_is_not_a_pass() {
        let v = check(&[transfer(10, 0, 1, 3, Outcome::Ok)], 3, 30);
        assert!(!v.ok);
    }
}
