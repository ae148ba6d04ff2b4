//! The CI budget of the simulator: at least 1,000 seeds of 10,000 ticks each with the
//! linearizability check on, and determinism (one seed, one trace hash).
//!
//! `SIM_SEEDS` (default 1000) and `SIM_FIRST_SEED` (default 0) choose the seeds; seeds run
//! on as many threads as the machine has cores.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use raft_sim::trace::TraceKeep;
use raft_sim::{SimOptions, run_seed};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_thousand_seeds_pass_with_linearizability() {
    let seeds = env_u64("SIM_SEEDS", 1000);
    let first = env_u64("SIM_FIRST_SEED", 0);
    let opts = SimOptions {
        trace: TraceKeep::Tail(300),
        ..SimOptions::default()
    };
    assert!(opts.ticks >= 10_000 && opts.check_linearizability);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    let ops = AtomicU64::new(0);
    let unknown = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + seeds {
                        break;
                    }
                    match run_seed(seed, &opts) {
                        Ok(r) => {
                            ops.fetch_add(r.history_ops as u64, Ordering::Relaxed);
                            unknown.fetch_add(r.lin_unknown as u64, Ordering::Relaxed);
                        }
                        Err(f) => failures.lock().expect("not poisoned").push(f),
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds x {} ticks on {threads} threads in {secs:.1}s: {:.1} seeds/s, {} client \
         operations checked for linearizability ({} keys over budget)",
        opts.ticks,
        seeds as f64 / secs,
        ops.load(Ordering::Relaxed),
        unknown.load(Ordering::Relaxed)
    );
    let failures = failures.into_inner().expect("not poisoned");
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} seeds failed: {:?}",
        failures.len(),
        failures.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
}

#[test]
fn same_seed_same_trace() {
    let opts = SimOptions {
        ticks: 3_000,
        liveness_ticks: 1_000,
        trace: TraceKeep::None,
        ..SimOptions::default()
    };
    for seed in [1, 7, 42, 1234, 99_999] {
        let a = run_seed(seed, &opts).map(|r| (r.trace_hash, r.events, r.history_ops));
        let b = run_seed(seed, &opts).map(|r| (r.trace_hash, r.events, r.history_ops));
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "seed {seed} is not deterministic"),
            (Err(a), Err(b)) => assert_eq!(a.violation, b.violation),
            (a, b) => panic!("seed {seed}: one run passed, the other failed: {a:?} / {b:?}"),
        }
    }
    // Different seeds give different runs.
    let h = |seed| run_seed(seed, &opts).map(|r| r.trace_hash).unwrap_or(seed);
    assert_ne!(h(1), h(2));
}

#[test]
fn full_trace_replays_identically() {
    let opts = SimOptions {
        ticks: 2_000,
        liveness_ticks: 1_000,
        trace: TraceKeep::All,
        ..SimOptions::default()
    };
    let a = run_seed(5, &opts).expect("seed 5 passes");
    let b = run_seed(5, &opts).expect("seed 5 passes");
    assert_eq!(a.trace, b.trace);
    assert!(a.trace.lines().count() as u64 == a.trace_lines);
}
