//! `cargo xtask`: the project's automation (CI checks, cargo-deny, release packaging).
//!
//! Every task is plain Rust calling cargo and git, so that it behaves the same on a laptop
//! and in CI; `.ci/run` only calls into here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod cluster;
mod deny;
mod drill;
mod netns;
mod protoc;
mod release;
mod util;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  ci [--advisory-db-bundle PATH] [--no-deny]
        fmt check, clippy -D warnings, layering check, tests (nextest when installed),
        the short failure drills, rustdoc with warnings denied, cargo-deny
  layering
        fail if raft-core's dependency tree holds tokio, tonic, prost or sled
  deny [--advisory-db-bundle PATH]
        install cargo-deny if missing and run `cargo deny check`; with a bundle, the RustSec
        advisory database comes from that git bundle and cargo-deny runs offline
  cluster [--demo] [--no-build]
        build raftd/raftctl (release), start a local 3-node cluster in a temp dir, wait for a
        leader, run a put/get demo and keep running until Ctrl-C; --demo stops after the
        demo and exits 0 when it passed
  drill leader-kill|partition-leader|rolling-restart|follower-disk-loss [--short] [--release]
        [--net auto|netns|fault-switch]
        failure drill on a local 3-node cluster under a steady write load (3 concurrent
        raftctl writers): SIGKILL the leader (and restart it), cut it off from its peers
        (and heal it), restart every node in turn, or replace a follower that lost its
        disk; prints a timeline and checks that every acknowledged write reads back from
        every node; exits non-zero when a check fails. partition-leader's --net: netns
        runs every node in its own network namespace and cuts the leader off with
        iptables (root, ip and iptables needed), fault-switch uses raftd's fault switch
        (SIGUSR1/SIGUSR2), auto (the default) uses netns when it can be set up
  bench cluster [--duration D | --quick] [--trials N] [--no-etcd]
        build raftd and the raft-bench load generator (release; crate bench/, built with
        PROTOC from protoc-bin-vendored), run a 3-member raftd cluster on loopback (fsync
        on) and, when `etcd` is on PATH, a 3-member etcd cluster in the same run: put
        throughput and p50/p99 at 1/16/256 clients, gets at 1/256, failover after kill -9 of
        the leader, SIGTERM exit time, peak RSS; D per load run (default 10s, --quick: 2s)
  bench snapshot [--keys N] [--rounds R] [--dir D]
        run raft-kv's snapshot benchmark (release): N keys (default 1000000) of 128-byte
        values applied to an on-disk sled store, full snapshot, a delta after changing 1%,
        restore of a base + 8 deltas, put throughput during a full snapshot vs without (R
        alternating rounds, default 8); data under D (default: the target dir), removed after
  sim [--seed N | --seeds N [--from S]] [--ticks T] [--no-lin] [--trace] [--mutation NAME]
        run the deterministic cluster simulation (release build); a failing seed prints
        its trace and the command that replays it
  release --dry-run
        package every publishable crate (cargo package, in dependency order), build the
        release raftd and write target/dist/raftd-<version>-<target>.tar.gz and .sha256
";

fn main() {
    if let Err(err) = run() {
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

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        print!("{USAGE}");
        return Ok(());
    }
    let task = args.remove(0);
    util::cd_workspace_root()?;
    match task.as_str() {
        "ci" => ci::run(&mut util::Flags::new(args)?),
        "layering" => ci::layering(),
        "deny" => deny::run(&mut util::Flags::new(args)?),
        "sim" => sim(args),
        "release" => release::run(&mut util::Flags::new(args)?),
        "cluster" => cluster::run(&mut util::Flags::new(args)?),
        "drill" => {
            if args.is_empty() {
                bail!(
                    "drill needs a scenario (leader-kill, partition-leader, rolling-restart, follower-disk-loss)\n\n{USAGE}"
                );
            }
            let scenario = args.remove(0);
            drill::run(&mut util::Flags::new(args)?, &scenario)
        }
        "bench" => bench::run(args),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}
