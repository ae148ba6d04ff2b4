//! `sim`: runs seeds of the deterministic cluster simulation from the command line.
//!
//! ```text
//! sim --seed N              run one seed, print its full trace on failure (or with --trace)
//! sim --seeds N [--from S]  run seeds S..S+N, print progress and seeds/second
//! options: --ticks T  --no-lin  --trace  --mutation NAME  --stop-on-failure
//! ```
//! `cargo xtask sim` calls this binary. Exit status 1 when any seed failed.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use raft_sim::trace::TraceKeep;
use raft_sim::{Mutation, SimOptions, replay_command, run_seed};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    seed: Option<u64>,
    seeds: u64,
    from: u64,
    trace: bool,
    stop_on_failure: bool,
    opts: SimOptions,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        seed: None,
        seeds: 0,
        from: 0,
        trace: false,
        stop_on_failure: false,
        opts: SimOptions::default(),
    };
    let num = |v: Option<String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed" => a.seed = Some(num(it.next(), "--seed")?),
            "--seeds" => a.seeds = num(it.next(), "--seeds")?,
            "--from" => a.from = num(it.next(), "--from")?,
            "--ticks" => a.opts.ticks = num(it.next(), "--ticks")?,
            "--no-lin" => a.opts.check_linearizability = false,
            "--trace" => a.trace = true,
            "--stop-on-failure" => a.stop_on_failure = true,
            "--mutation" => {
                let name = it.next().ok_or("--mutation needs a name")?;
                a.opts.mutation =
                    Some(Mutation::from_cli_name(&name).ok_or(format!("unknown mutation {name}"))?);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: sim (--seed N | --seeds N [--from S]) [--ticks T] [--no-lin] \
                            [--trace] [--stop-on-failure] [--mutation commit-without-quorum|\
                            double-vote|ack-before-persist|stale-local-read]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.seed.is_none() && a.seeds == 0 {
        a.seeds = 100;
    }
    Ok(a)
}

fn main() -> ExitCode {
    let mut args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.seed {
        args.opts.trace = TraceKeep::All;
        return match run_seed(seed, &args.opts) {
            Ok(r) => {
                if args.trace {
                    print!("{}", r.trace);
                }
                println!(
                    "seed {seed} ok: trace hash {:016x}, {} events, {} ops ({} indeterminate), \
                     committed {}, {} leaders, {} crashes, {} conf changes, {} snapshots",
                    r.trace_hash,
                    r.events,
                    r.history_ops,
                    r.ops_indeterminate,
                    r.committed,
                    r.elections,
                    r.crashes,
                    r.conf_changes,
                    r.snapshots_installed
                );
                ExitCode::SUCCESS
            }
            Err(f) => {
                println!("{f}");
                ExitCode::FAILURE
            }
        };
    }
    let start = Instant::now();
    let mut failed = Vec::new();
    let mut ops = 0usize;
    let mut follower_first = 0u64;
    let mut last_print = Instant::now();
    // Seeds run without a trace; a failing one runs again with it (the trace changes
    // nothing in the run) for the report.
    let quiet = SimOptions {
        trace: TraceKeep::Off,
        ..args.opts.clone()
    };
    for i in 0..args.seeds {
        let seed = args.from + i;
        match run_seed(seed, &quiet) {
            Ok(r) => {
                ops += r.history_ops;
                follower_first += r.commits_first_seen_on_followers;
            }
            Err(quiet_failure) => {
                match run_seed(seed, &args.opts) {
                    Err(f) => println!("{f}"),
                    Ok(_) => println!("{quiet_failure}\n(the run with a trace passed!)"),
                }
                failed.push(seed);
                if args.stop_on_failure {
                    break;
                }
            }
        }
        if last_print.elapsed().as_secs() >= 5 || i + 1 == args.seeds {
            last_print = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}/{} seeds, {} failed, {:.1} seeds/s, {} ops checked, {} commits reported first \
                 by a follower",
                i + 1,
                args.seeds,
                failed.len(),
                (i + 1) as f64 / secs,
                ops,
                follower_first
            );
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed seeds: {failed:?}");
        for s in &failed {
            println!("  replay: {}", replay_command(*s, &args.opts));
        }
        ExitCode::FAILURE
    }
}
