//! `cargo xtask bench cluster`: builds raftd and the raft-bench load generator (release) and
//! runs raftd (and etcd, when it is on PATH) as 3-member clusters on loopback.
//!
//! `cargo xtask bench snapshot`: runs raft-kv's `snapshot_bench` example (release): full and
//! delta snapshots of a loaded sled store, the restore of a base plus 8 deltas, and put
//! throughput while a snapshot is built.
//!
//! The load generator uses the `etcd-client` crate, which needs protoc to build; it lives in
//! its own crate (`bench/`, raft-bench) so that xtask itself never needs protoc.

use crate::util::{self, Flags};
use anyhow::{Result, bail};
use std::path::PathBuf;

const USAGE: &str = "usage: cargo xtask bench cluster [--duration D | --quick] [--no-etcd]
       cargo xtask bench snapshot [--keys N] [--rounds R] [--dir D]";

/// Runs the task (`cluster` or `snapshot`).
pub fn run(args: Vec<String>) -> Result<()> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("cluster") => cluster(&mut Flags::new(args.collect())?),
        Some("snapshot") => snapshot(Flags::new(args.collect())?),
        Some(other) => bail!("unknown benchmark `{other}` (`cluster` or `snapshot`)\n{USAGE}"),
        None => bail!("{USAGE}"),
    }
}

/// raft-kv's snapshot benchmark; the data goes under the target dir unless `--dir` says.
fn snapshot(mut flags: Flags) -> Result<()> {
    let keys = flags.value("keys")?.unwrap_or_else(|| "1000000".into());
    let rounds = flags.value("rounds")?.unwrap_or_else(|| "8".into());
    let dir = flags
        .value("dir")?
        .map(PathBuf::from)
        .unwrap_or_else(|| util::target_dir().join("snapshot-bench-data"));
    flags.finish()?;
    util::run(
        util::cargo()
            .args([
                "run",
                "--release",
                "--locked",
                "--package",
                "raft-kv",
                "--example",
                "snapshot_bench",
                "--",
                &keys,
            ])
            .arg(dir)
            .arg(&rounds),
    )
}

fn cluster(flags: &mut Flags) -> Result<()> {
    let quick = flags.switch("quick")?;
    let duration = flags.value("duration")?;
    let trials = flags.value("trials")?;
    let no_etcd = flags.switch("no-etcd")?;
    std::mem::replace(flags, Flags::new(Vec::new())?).finish()?;
    let (duration, trials) = match (quick, duration) {
        (true, Some(_)) => bail!("--quick and --duration exclude each other"),
        (true, None) => ("2s".to_string(), trials.unwrap_or_else(|| "3".into())),
        (false, d) => (
            d.unwrap_or_else(|| "10s".into()),
            trials.unwrap_or_else(|| "5".into()),
        ),
    };

    util::run(util::cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "raft-node",
        "--bin",
        "raftd",
        "--package",
        "raft-bench",
        "--bin",
        "raft-bench",
    ]))?;
    let release = util::target_dir().join("release");
    let mut cmd = std::process::Command::new(release.join("raft-bench"));
    cmd.arg("cluster")
        .arg("--raftd")
        .arg(release.join("raftd"))
        .args(["--duration", &duration, "--trials", &trials])
        .arg("--data-dir")
        .arg(util::target_dir().join("raft-bench-data"));
    match (no_etcd, find_on_path("etcd")) {
        (false, Some(etcd)) => {
            cmd.arg("--etcd").arg(etcd);
        }
        (false, None) => eprintln!(
            "xtask: etcd is not on PATH: raftd only, no ratios (Debian: apt-get install etcd-server)"
        ),
        (true, _) => {}
    }
    util::run(&mut cmd)
}

/// The first `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
