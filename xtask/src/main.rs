//! `cargo xtask`: the project's automation (CI checks, cargo-deny, release packaging).
//!
//! Every task is plain Rust calling cargo and git, so that it behaves the same on a laptop
//! and in CI; `.ci/run` only calls into here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod chaos;
mod ci;
mod cluster;
mod cycles;
mod deny;
mod drill;
mod fuzz;
mod machete;
mod netns;
mod protoc;
mod release;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// `cargo xtask <task>`: the project's automation.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "The project's automation: CI checks, clusters, drills, benchmarks, release"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// fmt check, clippy -D warnings, layering and file-cycle checks, cargo-machete, tests (nextest when installed), the
    /// short failure drills, rustdoc with warnings denied, cargo-deny.
    Ci(ci::Args),
    /// Fail if raft-core's dependency tree holds tokio, tonic, prost or sled, or a package
    /// other than raft-bench needs protoc.
    Layering,
    /// Fail if the source files of a crate import each other in a cycle (listing each
    /// cycle with the lines that close it).
    Cycles,
    /// Install cargo-machete if missing and fail on a declared but unused dependency.
    Machete,
    /// Install cargo-deny if missing and run `cargo deny check`.
    Deny(deny::Args),
    /// Build raftd/raftctl (release), start a local 3-node cluster in a temp dir, wait for a
    /// leader, run a put/get demo and keep running until Ctrl-C.
    Cluster(cluster::Args),
    /// A failure drill on a local 3-node cluster under a steady write load (3 concurrent
    /// raftctl writers); prints a timeline and checks that every acknowledged write reads
    /// back from every node; exits non-zero when a check fails.
    Drill(drill::Args),
    /// Jepsen-style test of a local raftd cluster: register, bank and watch workloads
    /// (client histories) under kill -9, SIGSTOP and partition faults drawn from a seed;
    /// checks linearizability, the bank total and watch delivery, writes a run directory
    /// with the histories, the schedule, the logs, the verdicts and a plot; exits non-zero
    /// when a check fails.
    Chaos(chaos::Args),
    /// Benchmarks (release builds): `cluster` (raftd against etcd) or `snapshot`.
    Bench(bench::Args),
    /// The deterministic cluster simulation (release build); a failing seed prints its
    /// trace and the command that replays it. Arguments go to the `sim` binary (default
    /// `--seeds 1000`; `cargo xtask sim -- --help` lists them).
    Sim {
        /// Passed on, e.g. `--seed N`, `--seeds N --from S`, `--ticks T`, `--trace`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the `cargo fuzz` targets (nightly) and run each for `--time` seconds.
    Fuzz(fuzz::Args),
    /// Package every publishable crate, build the release raftd and write
    /// `target/dist/raftd-<version>-<target>.tar.gz` and `.sha256`.
    Release(release::Args),
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli.task) {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

/// Runs the simulator binary of `raft-sim` in release mode with the given arguments.
fn sim(args: Vec<String>) -> Result<()> {
    let args = if args.is_empty() {
        vec!["--seeds".to_string(), "1000".to_string()]
    } else {
        args
    };
    util::run(
        util::cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "--locked",
                "--package",
                "raft-sim",
            ])
            .args(["--bin", "sim", "--"])
            .args(args),
    )
}

fn run(task: Task) -> Result<()> {
    util::cd_workspace_root()?;
    match task {
        Task::Ci(args) => ci::run(args),
        Task::Layering => ci::layering(),
        Task::Cycles => cycles::run(),
        Task::Machete => machete::run(),
        Task::Deny(args) => deny::run(args),
        Task::Sim { args } => sim(args),
        Task::Release(args) => release::run(args),
        Task::Cluster(args) => cluster::run(args),
        Task::Drill(args) => drill::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Chaos(args) => chaos::run(args),
        Task::Fuzz(args) => fuzz::run(args),
    }
}
