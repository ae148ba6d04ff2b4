//! `cargo xtask bench cluster`: builds raftd and the raft-bench load generator (release) and
//! runs raftd (and etcd, when it is on PATH) as 3-member clusters on loopback.
//!
//! With `--plot [DIR]` it also saves the figures (`DIR/results.json`) and draws throughput
//! and latency against clients as SVGs; `cargo xtask bench plot --from DIR/results.json`
//! redraws them from the saved figures.
//!
//! `cargo xtask bench restore`: the time of a point-in-time restore through the WAL archive
//! (`raft-bench restore`).
//!
//! `cargo xtask bench compare`: the cost of raftd settings (backups, TLS, ...) as the median
//! ratio of interleaved runs of two clusters (`raft-bench compare`).
//!
//! `cargo xtask bench history`: the cost of MVCC history, raftd against etcd
//! (`raft-bench history`).
//!
//! `cargo xtask bench snapshot`: runs raft-kv's `snapshot_bench` example (release): full and
//! delta snapshots of a loaded sled store, the restore of a base plus 8 deltas, and put
//! throughput while a snapshot is built.
//!
//! The load generator uses the `etcd-client` crate, which needs protoc to build; it lives in
//! its own crate (`bench/`, raft-bench) so that xtask itself never needs protoc.

use crate::util;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

/// The benchmarks.
#[derive(clap::Subcommand)]
enum Which {
    /// raftd (and etcd, when on PATH) as 3-member clusters on loopback (fsync on): put
    /// throughput and p50/p99 at 1/16/256 clients, gets at 1/256, a 90/10 mix, each through
    /// all endpoints and through the leader only (p50 per member role, server CPU per
    /// request); watch fan-out and lease loads; failover after kill -9 of the leader,
    /// SIGTERM exit time, peak RSS.
    Cluster(ClusterArgs),
    /// raft-kv's snapshot benchmark: full snapshot of N keys, a delta after changing 1%,
    /// restore of a base + 8 deltas, put throughput during a full snapshot vs without.
    Snapshot(SnapshotArgs),
    /// Point-in-time restore: a one-member raftd archives its WAL to a `file://` store
    /// while N puts are written, then `raftd restore --index` replays them all; the restore
    /// time beside the time the writes took.
    Restore(RestoreArgs),
    /// The cost of raftd settings: two 3-member clusters, b with extra settings (`--b-set
    /// KEY=VALUE`, repeatable, or `--b-tls`), the same load over all endpoints alternating
    /// between them; the median ratio b/a. Flags after `--` go to `raft-bench compare`
    /// (`--workload`, `--clients`, `--duration`, `--rounds`).
    Compare(CompareArgs),
    /// Redraw a cluster run's plots from its saved figures (`raft-bench plot`), without
    /// running the benchmark.
    Plot(PlotArgs),
    /// The cost of MVCC history, raftd against etcd (when on PATH): range at an old
    /// revision, physical compaction of 1M revisions and the put p99 during it, a 1M-key
    /// space soak. Flags after `--` go to `raft-bench history` (`--revisions`, `--keys`,
    /// `--duration`, ...).
    History(HistoryArgs),
}

/// `cargo xtask bench plot`.
#[derive(clap::Args)]
struct PlotArgs {
    /// The `results.json` a `cluster --plot` run saved.
    #[arg(long, default_value = "docs/plots/results.json")]
    from: PathBuf,
    /// Where the SVGs go (default: the directory of `--from`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `cargo xtask bench history`.
#[derive(clap::Args)]
struct HistoryArgs {
    /// Flags of `raft-bench history` (see `raft-bench history --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `cargo xtask bench compare`.
#[derive(clap::Args)]
struct CompareArgs {
    /// Flags of `raft-bench compare` (see `raft-bench compare --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `cargo xtask bench restore`.
#[derive(clap::Args)]
struct RestoreArgs {
    /// Entries between the bootstrap and the restore point.
    #[arg(long, default_value = "1000000")]
    entries: String,
}

/// `cargo xtask bench cluster`.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Length of each load run (default 10s).
    #[arg(long, conflicts_with = "quick")]
    duration: Option<String>,
    /// 2 s load runs and 3 trials.
    #[arg(long)]
    quick: bool,
    /// Failover trials (default 5; 3 with --quick).
    #[arg(long)]
    trials: Option<String>,
    /// raftd only, even when etcd is on PATH.
    #[arg(long)]
    no_etcd: bool,
    /// raftd with TLS on its client ports (client certificates required) and mutual TLS
    /// between peers, the load over TLS; raftd only (for the cost of TLS, compare with a
    /// run without it).
    #[arg(long)]
    tls: bool,
    /// Also save the figures (`DIR/results.json`) and draw throughput and p50/p99 latency
    /// against clients, raftd and etcd on the same axes, one SVG per workload into `DIR`
    /// (default `docs/plots`); `cargo xtask bench plot --from DIR/results.json` redraws.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "docs/plots")]
    plot: Option<PathBuf>,
}

/// `cargo xtask bench snapshot`.
#[derive(clap::Args)]
struct SnapshotArgs {
    /// Keys of 128-byte values.
    #[arg(long, default_value = "1000000")]
    keys: String,
    /// Alternating rounds of put throughput with and without a snapshot.
    #[arg(long, default_value = "8")]
    rounds: String,
    /// Where the data goes (default: under the target dir); removed after.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs the task (`cluster` or `snapshot`).
pub fn run(args: Args) -> Result<()> {
    match args.which {
        Which::Cluster(a) => cluster(a),
        Which::Snapshot(a) => snapshot(a),
        Which::Restore(a) => restore(a),
        Which::Compare(a) => compare(a),
        Which::Plot(a) => plot(a),
        Which::History(a) => history(a),
    }
}

/// raft-kv's snapshot benchmark; the data goes under the target dir unless `--dir` says.
fn snapshot(args: SnapshotArgs) -> Result<()> {
    let SnapshotArgs { keys, rounds, dir } = args;
    let dir = dir.unwrap_or_else(|| util::target_dir().join("snapshot-bench-data"));
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

/// Builds raftd and raft-bench (release) and runs `raft-bench restore`.
fn restore(args: RestoreArgs) -> Result<()> {
    build_raftd_and_bench()?;
    let release = util::target_dir().join("release");
    util::run(
        std::process::Command::new(release.join("raft-bench"))
            .arg("restore")
            .arg("--raftd")
            .arg(release.join("raftd"))
            .args(["--entries", &args.entries])
            .arg("--data-dir")
            .arg(util::target_dir().join("restore-bench-data")),
    )
}

/// Builds raftd and raft-bench (release) and runs `raft-bench compare`.
fn compare(args: CompareArgs) -> Result<()> {
    build_raftd_and_bench()?;
    let release = util::target_dir().join("release");
    util::run(
        std::process::Command::new(release.join("raft-bench"))
            .arg("compare")
            .arg("--raftd")
            .arg(release.join("raftd"))
            .arg("--data-dir")
            .arg(util::target_dir().join("compare-bench-data"))
            .args(&args.args),
    )
}

/// Builds raft-bench (release) and runs `raft-bench plot`.
fn plot(args: PlotArgs) -> Result<()> {
    util::run(util::cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "raft-bench",
        "--bin",
        "raft-bench",
    ]))?;
    let mut cmd = std::process::Command::new(util::target_dir().join("release/raft-bench"));
    cmd.arg("plot").arg("--from").arg(&args.from);
    if let Some(out) = &args.out {
        cmd.arg("--out").arg(out);
    }
    util::run(&mut cmd)
}

/// Builds raftd and raft-bench (release) and runs `raft-bench history`, with etcd when it
/// is on PATH.
fn history(args: HistoryArgs) -> Result<()> {
    build_raftd_and_bench()?;
    let release = util::target_dir().join("release");
    let mut cmd = std::process::Command::new(release.join("raft-bench"));
    cmd.arg("history")
        .arg("--raftd")
        .arg(release.join("raftd"))
        .arg("--data-dir")
        .arg(util::target_dir().join("history-bench-data"));
    if let Some(etcd) = find_on_path("etcd") {
        cmd.arg("--etcd").arg(etcd);
    }
    util::run(cmd.args(&args.args))
}

/// `raftd` and `raft-bench`, release builds.
fn build_raftd_and_bench() -> Result<()> {
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
    ]))
}

fn cluster(args: ClusterArgs) -> Result<()> {
    let ClusterArgs {
        duration,
        quick,
        trials,
        no_etcd,
        tls,
        plot,
    } = args;
    let (duration, trials) = match (quick, duration) {
        (true, Some(_)) => bail!("--quick and --duration exclude each other"),
        (true, None) => ("2s".to_string(), trials.unwrap_or_else(|| "3".into())),
        (false, d) => (
            d.unwrap_or_else(|| "10s".into()),
            trials.unwrap_or_else(|| "5".into()),
        ),
    };

    build_raftd_and_bench()?;
    let release = util::target_dir().join("release");
    let mut cmd = std::process::Command::new(release.join("raft-bench"));
    cmd.arg("cluster")
        .arg("--raftd")
        .arg(release.join("raftd"))
        .args(["--duration", &duration, "--trials", &trials])
        .arg("--data-dir")
        .arg(util::target_dir().join("raft-bench-data"));
    if tls {
        cmd.arg("--tls");
    }
    if let Some(dir) = plot {
        cmd.arg("--plot").arg(dir);
    }
    match (no_etcd || tls, find_on_path("etcd")) {
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
