//! `cargo xtask ci` and `cargo xtask layering`: every check a change must pass.

use crate::util::{self, cargo};
use anyhow::{Result, bail};
use clap::Parser;

/// Crates that must never appear in `raft-core`'s dependency tree: the core does no I/O.
const FORBIDDEN_IN_CORE: &[&str] = &["tokio", "tonic", "prost", "sled"];

/// `cargo xtask ci`.
#[derive(clap::Args)]
pub struct Args {
    /// The RustSec advisory database as a git bundle (cargo-deny then runs offline).
    #[arg(long, value_name = "PATH")]
    advisory_db_bundle: Option<String>,
    /// Skip cargo-deny.
    #[arg(long)]
    no_deny: bool,
}

/// Runs fmt, clippy, the layering and file-cycle checks, cargo-machete, the tests, rustdoc and cargo-deny, in that order,
/// stopping at the first failure.
pub fn run(args: Args) -> Result<()> {
    let Args {
        advisory_db_bundle: bundle,
        no_deny,
    } = args;

    util::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    util::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    layering()?;
    crate::cycles::run()?;
    crate::machete::run()?;
    // `--workspace` takes in raft-bench (not a default member: it needs protoc), so its
    // tests in bench/tests run here too: the etcd-client (Rust) and Go client tests and the
    // chaos client's. They run the raftd that this same test build makes (for raft-node's
    // own integration tests) instead of building it again.
    let raftd = util::target_dir().join("debug").join("raftd");
    eprintln!(
        "xtask: tests of every workspace package, raft-bench's bench/tests (etcd clients, \
         Go client, chaos client) included"
    );
    if util::has_cargo_subcommand("nextest") {
        util::run(
            cargo()
                .args([
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ])
                .env("RAFT_BENCH_RAFTD", &raftd),
        )?;
        // nextest does not run doctests.
        util::run(cargo().args(["test", "--workspace", "--locked", "--doc"]))?;
    } else {
        util::run(
            cargo()
                .args(["test", "--workspace", "--locked"])
                .env("RAFT_BENCH_RAFTD", &raftd),
        )?;
    }
    // The short failure drills (real raftd processes, about 15 s each).
    for scenario in crate::drill::Scenario::ALL {
        crate::drill::run(crate::drill::Args {
            scenario,
            short: true,
            release: false,
            net: None,
        })?;
    }
    // The short chaos set: real clusters under overlapping faults, every workload checked
    // (about 25 s each), with the binaries the test run above just built.
    let no_netns = crate::netns::unavailable();
    for argv in CHAOS_SET {
        let argv = without_netns_faults(argv, no_netns.as_deref());
        eprintln!("xtask: cargo xtask chaos {}", argv.join(" "));
        let cli = ChaosCli::try_parse_from(
            std::iter::once("chaos").chain(argv.iter().map(String::as_str)),
        )?;
        crate::chaos::run(cli.args)?;
    }
    util::run(
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    if no_deny {
        eprintln!("xtask: cargo-deny skipped (--no-deny)");
    } else {
        crate::deny::run(crate::deny::Args {
            advisory_db_bundle: bundle,
        })?;
    }
    eprintln!("xtask: ci passed");
    Ok(())
}

/// The chaos runs of `cargo xtask ci` (`cargo xtask chaos` arguments): fixed seeds, 20 s
/// each, five fault mixes: processes (kill, pause) and partitions; membership changes
/// (seed 8 removes the leader); clocks (rates and a jump of the leader's clocks) with lease
/// reads; the other partitions (seed 12: the leader bridges, a flapping partition with a
/// one-way one nested in it, the leader killed); power losses (seed 5: one member, every
/// member, a majority; under POSIX's directory rule, the stricter one; needs FUSE,
/// /dev/fuse and root).
pub const CHAOS_SET: &[&[&str]] = &[
    &[
        "--seed",
        "1",
        "--time",
        "20s",
        "--faults",
        "kill,pause,partition",
        "--no-build",
    ],
    &[
        "--seed",
        "8",
        "--time",
        "20s",
        "--faults",
        "member,kill,pause,partition",
        "--no-build",
    ],
    &[
        "--seed",
        "6",
        "--time",
        "20s",
        "--faults",
        "clock,pause,kill",
        "--raftd-set",
        "raft.read_mode=lease",
        "--no-build",
    ],
    &[
        "--seed",
        "12",
        "--time",
        "20s",
        "--faults",
        "oneway,bridge,flap,kill",
        "--no-build",
    ],
    &[
        "--seed",
        "5",
        "--time",
        "20s",
        "--faults",
        "power",
        "--power-strict-dirs",
        "--no-build",
    ],
];

/// A [`CHAOS_SET`] entry as it can run here: when network namespaces are unavailable
/// (`why`), the fault kinds that need them (`oneway`, `bridge`) are dropped from its
/// `--faults`, saying so, as the partition drill falls back to the fault switch.
fn without_netns_faults(argv: &[&str], why: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let Some(why) = why else {
        return out;
    };
    if let Some(i) = argv.iter().position(|a| *a == "--faults")
        && let Some(list) = argv.get(i + 1)
    {
        let kept: Vec<&str> = list
            .split(',')
            .filter(|k| !matches!(*k, "oneway" | "bridge"))
            .collect();
        if kept.len() != list.split(',').count() {
            eprintln!(
                "xtask: chaos {}: without oneway and bridge partitions, because {why}",
                argv.join(" ")
            );
            out[i + 1] = kept.join(",");
        }
    }
    out
}

/// Parses a [`CHAOS_SET`] entry.
#[derive(clap::Parser)]
struct ChaosCli {
    #[command(flatten)]
    args: crate::chaos::Args,
}

/// The one package allowed to need protoc (its etcd-client dependency runs protoc in its
/// build script). Every other package, xtask included, builds anywhere without it.
const PROTOC_PACKAGE: &str = "raft-bench";

/// Crates whose build needs protoc; none may reach a package but [`PROTOC_PACKAGE`].
const NEEDS_PROTOC: &[&str] = &["etcd-client", "raft-bench"];

/// Fails if `raft-core` or `raft-fs` depends, directly or not, on a crate that does I/O
/// (tokio, tonic, prost, sled), or if a crate
/// that needs protoc to build reaches a package that must build without it.
pub fn layering() -> Result<()> {
    let mut tree = cargo();
    tree.args(["tree", "--edges", "normal,build,dev", "--prefix", "none"])
        .args(["--format", "{p}", "--locked", "--workspace"])
        .args(["--exclude", PROTOC_PACKAGE]);
    let found = crates_named(&util::output(&mut tree)?, NEEDS_PROTOC);
    if !found.is_empty() {
        bail!(
            "layering: {} need protoc to build, but a package that must build without it \
             depends on them (keep them in raft-bench, bench/)",
            found.join(", ")
        );
    }
    // raft-fs sits under raft-log and raft-snapshot (with every feature: its MemFs too).
    for (package, what) in [
        ("raft-core", "free of I/O"),
        ("raft-fs", "a plain std seam"),
    ] {
        let tree = util::output(cargo().args([
            "tree",
            "--package",
            package,
            "--all-features",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--locked",
        ]))?;
        let found = crates_named(&tree, FORBIDDEN_IN_CORE);
        if !found.is_empty() {
            bail!(
                "layering: {package} must stay {what}, but its dependency tree contains {}",
                found.join(", ")
            );
        }
    }
    eprintln!(
        "xtask: layering ok: raft-core and raft-fs depend on none of {FORBIDDEN_IN_CORE:?}; \
         only raft-bench needs protoc"
    );
    Ok(())
}

/// The crate names of `names` that occur in `cargo tree --prefix none --format {p}` output.
fn crates_named(tree: &str, names: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| names.contains(name))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::{
        CHAOS_SET, ChaosCli, FORBIDDEN_IN_CORE, NEEDS_PROTOC, crates_named, without_netns_faults,
    };
    use clap::Parser;

    #[test]
    fn the_chaos_set_parses_and_builds_nothing() {
        for argv in CHAOS_SET {
            let cli =
                ChaosCli::try_parse_from(std::iter::once("chaos").chain(argv.iter().copied()))
                    .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert!(cli.args.no_build, "{argv:?}");
            assert!(cli.args.seed.is_some(), "{argv:?}: a fixed seed");
            assert!(cli.args.time.as_secs() <= 30, "{argv:?}: short");
        }
    }

    #[test]
    fn without_namespaces_the_chaos_set_drops_oneway_and_bridge() {
        let argv = [
            "--seed",
            "12",
            "--faults",
            "oneway,bridge,flap,kill",
            "--no-build",
        ];
        assert_eq!(without_netns_faults(&argv, None), argv.to_vec());
        let out = without_netns_faults(&argv, Some("not root"));
        assert_eq!(out[3], "flap,kill");
        assert_eq!(out.len(), argv.len());
        let plain = ["--seed", "1", "--faults", "kill,pause,partition"];
        assert_eq!(
            without_netns_faults(&plain, Some("not root")),
            plain.to_vec()
        );
    }

    #[test]
    fn finds_forbidden_crates_by_exact_name() {
        let tree = "raft-core v0.1.0 (/x)\nbytes v1.10.0\ntokio v1.47.0\ntokio-util v0.7.0\n\
                    tokio v1.47.0\nprost-types v0.14.0\n";
        assert_eq!(
            crates_named(tree, FORBIDDEN_IN_CORE),
            vec!["tokio".to_string()]
        );
    }

    #[test]
    fn clean_tree_passes() {
        assert!(
            crates_named("raft-core v0.1.0 (/x)\nbytes v1.10.0\n", FORBIDDEN_IN_CORE).is_empty()
        );
    }

    #[test]
    fn finds_crates_that_need_protoc() {
        let tree = "xtask v0.1.0 (/x)\netcd-client v0.21.1\netcd-clientx v1.0.0\n";
        assert_eq!(
            crates_named(tree, NEEDS_PROTOC),
            vec!["etcd-client".to_string()]
        );
    }
}
