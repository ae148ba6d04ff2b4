//! Proof that the checks bite: each injected bug class is caught within 1,000 seeds.
//!
//! Each test runs seeds from 0 until one fails and asserts that (a) one does before seed
//! 1,000, (b) the failure is of a kind that the bug explains, and (c) the same seeds pass
//! without the mutation (the failure is the bug's, not the simulator's).
#![allow(clippy::print_stdout)]

use raft_sim::invariants::Violation;
use raft_sim::trace::TraceKeep;
use raft_sim::{Mutation, SimOptions, run_seed};

fn first_failure(m: Mutation) -> (u64, Violation) {
    let opts = SimOptions {
        mutation: Some(m),
        trace: TraceKeep::None,
        ..SimOptions::default()
    };
    for seed in 0..1000 {
        if let Err(f) = run_seed(seed, &opts) {
            println!("{m:?} caught by seed {seed}: {}", f.violation);
            let clean = SimOptions {
                trace: TraceKeep::None,
                ..SimOptions::default()
            };
            assert!(
                run_seed(seed, &clean).is_ok(),
                "seed {seed} fails without the mutation too"
            );
            return (seed, f.violation);
        }
    }
    panic!("{m:?} was not caught within 1,000 seeds");
}

#[test]
fn commit_without_quorum_is_caught() {
    let (_, v) = first_failure(Mutation::CommitWithoutQuorum);
    assert!(
        matches!(
            v,
            Violation::AckedNotDurable { .. } | Violation::NotLinearizable { .. }
        ),
        "{v}"
    );
}

#[test]
fn double_vote_is_caught() {
    let (_, v) = first_failure(Mutation::DoubleVote);
    assert!(
        matches!(
            v,
            Violation::TwoLeaders { .. }
                | Violation::LeaderIncomplete { .. }
                | Violation::LogMismatch { .. }
                | Violation::CommitMismatch { .. }
                | Violation::ApplyMismatch { .. }
                | Violation::NotLinearizable { .. }
                | Violation::Panic(_)
        ),
        "{v}"
    );
}

#[test]
fn ack_before_persist_is_caught() {
    let (_, v) = first_failure(Mutation::AckBeforePersist);
    assert!(
        matches!(
            v,
            Violation::AckedNotDurable { .. }
                | Violation::LeaderIncomplete { .. }
                | Violation::CommitMismatch { .. }
                | Violation::ApplyMismatch { .. }
                | Violation::TwoLeaders { .. }
                | Violation::NotLinearizable { .. }
                | Violation::Panic(_)
        ),
        "{v}"
    );
}

#[test]
fn stale_local_read_is_caught() {
    let (_, v) = first_failure(Mutation::StaleLocalRead);
    assert!(matches!(v, Violation::NotLinearizable { .. }), "{v}");
}
