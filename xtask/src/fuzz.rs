//! `cargo xtask fuzz`: builds the `cargo fuzz` targets of `fuzz/` with the nightly toolchain
//! and runs each for a fixed time (docs/testing.md, "Fuzzing").
//!
//! The fuzz build's target directory is `<target>/fuzz` (inside the workspace's target
//! directory, so `cargo clean` and the disk budget of one target dir cover it), and each
//! target's corpus grows in `<target>/fuzz/corpus/<target>`, so a run leaves the work tree
//! as it was; a crash leaves its input in `fuzz/artifacts/<target>/` and fails the task.

use crate::util;
use anyhow::{Context, Result, bail};
use std::process::Command;
use std::time::Instant;

/// `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds each target runs after the build.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    time: u64,
    /// Only this target (repeatable; default: every target of `cargo fuzz list`).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Without the nightly toolchain, warn and succeed instead of failing (CI: a machine
    /// without nightly cannot fuzz, and says so).
    #[arg(long)]
    skip_without_nightly: bool,
}

/// A `cargo +nightly ...` command run in `fuzz/`, without the variables the stable cargo
/// that runs xtask set (they would pin the toolchain or the target dir).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .current_dir(util::workspace_root().join("fuzz"));
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Whether `cargo +nightly <args>` runs and succeeds.
fn nightly_ok(args: &[&str]) -> bool {
    nightly_cargo()
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn run(args: Args) -> Result<()> {
    if !nightly_ok(&["--version"]) {
        let why = "the nightly toolchain is not available (`cargo +nightly --version` fails; \
                   `rustup toolchain install nightly`): cargo fuzz needs it for libFuzzer's instrumentation and the sanitizer";
        if args.skip_without_nightly {
            eprintln!("xtask: ################################################################");
            eprintln!("xtask: WARNING: fuzzing SKIPPED: {why}");
            eprintln!("xtask: ################################################################");
            return Ok(());
        }
        bail!("cannot fuzz: {why}");
    }
    if !nightly_ok(&["fuzz", "--version"]) {
        eprintln!(
            "xtask: cargo-fuzz is missing; installing it (cargo install --locked cargo-fuzz)"
        );
        util::run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let target_dir = util::target_dir().join("fuzz");
    let started = Instant::now();
    util::run(
        nightly_cargo()
            .args(["fuzz", "build", "--target-dir"])
            .arg(&target_dir),
    )?;
    let build = started.elapsed();
    let targets = if args.targets.is_empty() {
        util::output(nightly_cargo().args(["fuzz", "list"]))?
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()
    } else {
        args.targets
    };
    if targets.is_empty() {
        bail!("cargo fuzz list named no targets");
    }
    let running = Instant::now();
    for t in &targets {
        let corpus = target_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        util::run(
            nightly_cargo()
                .args(["fuzz", "run", t, "--target-dir"])
                .arg(&target_dir)
                .arg(&corpus)
                .arg("--")
                .arg(format!("-max_total_time={}", args.time)),
        )
        .with_context(|| format!("fuzz target {t} failed: its input is in fuzz/artifacts/{t}/"))?;
    }
    eprintln!(
        "xtask: fuzzing done: {} targets x {} s; build {:.0} s, runs {:.0} s, {:.0} s in all",
        targets.len(),
        args.time,
        build.as_secs_f64(),
        running.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
