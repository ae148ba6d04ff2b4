//! `cargo xtask release --dry-run`: package the crates and build the `raftd` tarball.

use crate::util::{self, cargo};
use anyhow::{Context, Result, bail};
use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::Path;

/// Crates published to a registry, lowest layer first (dependencies before dependents).
const PUBLISHABLE: &[&str] = &[
    "raft-core",
    "raft-fs",
    "raft-metrics",
    "raft-log",
    "raft-snapshot",
    "raft-net",
    "raft-runtime",
    "raft-kv",
    "raft-node",
];

/// `cargo xtask release`.
#[derive(clap::Args)]
pub struct Args {
    /// Package and build without publishing (the only mode: publishing is done by hand).
    #[arg(long)]
    dry_run: bool,
}

/// Packages every publishable crate, builds the release binaries and writes the tarball
/// plus its SHA-256. Only `--dry-run` exists: publishing is done by hand.
pub fn run(args: Args) -> Result<()> {
    if !args.dry_run {
        bail!("only `cargo xtask release --dry-run` exists; publishing is done by hand");
    }

    // Cargo treats registry crates as immutable: a crate of an unchanged version would be
    // verified against sources unpacked, and artifacts compiled, on an earlier run. So each
    // run unpacks afresh and verifies in a build directory of its own.
    let package_target = util::target_dir().join("package-verify");
    if package_target.exists() {
        fs::remove_dir_all(&package_target)
            .with_context(|| format!("removing {}", package_target.display()))?;
    }
    forget_unpacked_overlay_sources()?;

    // One `cargo package` call for all of them: cargo orders them by dependency and
    // verifies each against the others packaged in the same run.
    let mut package = cargo();
    package
        .args(["package", "--locked", "--allow-dirty"])
        .env("CARGO_TARGET_DIR", &package_target);
    for name in PUBLISHABLE {
        package.args(["--package", name]);
    }
    util::run(&mut package)?;

    util::run(cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "raft-node",
        "--bins",
    ]))?;

    let version = env!("CARGO_PKG_VERSION");
    let target = host_target()?;
    let target_dir = util::target_dir();
    let dist = target_dir.join("dist");
    fs::create_dir_all(&dist)?;
    let name = format!("raftd-{version}-{target}");
    let tarball = dist.join(format!("{name}.tar.gz"));
    write_tarball(&tarball, &target_dir.join("release"), &name)?;
    let digest = sha256_file(&tarball)?;
    let sum_path = dist.join(format!("{name}.tar.gz.sha256"));
    fs::write(&sum_path, format!("{digest}  {name}.tar.gz\n"))?;
    println!("{}", tarball.display());
    println!("{}", sum_path.display());
    Ok(())
}

/// Removes the copies of our own crates that cargo unpacked from the temporary local
/// registry of an earlier `cargo package` run (`$CARGO_HOME/registry/src/-<hash>/<crate>-<v>`):
/// cargo never unpacks a crate of the same name and version again, so without this a second
/// run would verify against the first run's sources.
fn forget_unpacked_overlay_sources() -> Result<()> {
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => std::path::PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cargo"),
    };
    let src = cargo_home.join("registry/src");
    let Ok(registries) = fs::read_dir(&src) else {
        return Ok(());
    };
    let version = env!("CARGO_PKG_VERSION");
    for registry in registries.flatten() {
        // crates.io and other named registries have names; the overlay's starts with '-'.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for name in PUBLISHABLE {
            let dir = registry.path().join(format!("{name}-{version}"));
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// The host target triple, from `rustc -vV`.
fn host_target() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let info = util::output(std::process::Command::new(rustc).arg("-vV"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV printed no host line")
}

/// Writes `<dir>/{raftd, raftctl (if built), README.md, LICENSE files}` into a gzipped tar,
/// taking the binaries from `bin_dir`.
fn write_tarball(path: &Path, bin_dir: &Path, dir: &str) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    let mut added = false;
    for bin in ["raftd", "raftctl"] {
        let src = bin_dir.join(bin);
        if src.exists() {
            tar.append_path_with_name(&src, format!("{dir}/{bin}"))?;
            added |= bin == "raftd";
        }
    }
    if !added {
        bail!("{} was not built", bin_dir.join("raftd").display());
    }
    for doc in ["README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
        if Path::new(doc).exists() {
            tar.append_path_with_name(doc, format!("{dir}/{doc}"))?;
        }
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

/// Hex SHA-256 of a file.
fn sha256_file(path: &Path) -> Result<String> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
