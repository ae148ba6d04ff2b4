//! `cargo xtask deny`: install cargo-deny when missing and check the dependency tree.
//!
//! With `--advisory-db-bundle PATH` the RustSec advisory database comes from a git bundle
//! instead of GitHub: it is cloned into the directory cargo-deny would use for the default
//! database URL, fetched once so that `FETCH_HEAD` is fresh (cargo-deny refuses a database
//! it considers stale), and cargo-deny runs with `--offline`.

use crate::util::{self, cargo};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo-deny release this project is checked with (pinned so installs are reproducible
/// and the advisory database layout below stays the one we computed).
const CARGO_DENY_VERSION: &str = "0.20.2";

/// The advisory database URL cargo-deny uses when `deny.toml` names none.
const DEFAULT_DB_URL: &str = "https://github.com/rustsec/advisory-db";

/// `cargo xtask deny`.
#[derive(clap::Args)]
pub struct Args {
    /// The RustSec advisory database as a git bundle: cargo-deny then runs offline.
    #[arg(long, value_name = "PATH")]
    pub advisory_db_bundle: Option<String>,
}

/// Installs cargo-deny if needed, prepares the advisory database from a bundle if one is
/// given, and runs `cargo deny check`.
pub fn run(args: Args) -> Result<()> {
    let bundle = args.advisory_db_bundle;

    if !util::has_cargo_subcommand("deny") {
        util::run(cargo().args([
            "install",
            "--locked",
            "cargo-deny",
            "--version",
            CARGO_DENY_VERSION,
        ]))?;
    }
    let mut check = cargo();
    check.arg("deny");
    if let Some(bundle) = bundle {
        // cargo-deny's --offline also keeps `cargo metadata` offline, so every crate of the
        // lock file (all platforms) must already be downloaded; crates.io is reachable.
        util::run(cargo().args(["fetch", "--locked"]))?;
        let bundle = std::fs::canonicalize(&bundle)
            .with_context(|| format!("advisory database bundle {bundle}"))?;
        prepare_db_from_bundle(&bundle)?;
        check.arg("--offline");
    }
    check.args([
        "check",
        "--hide-inclusion-graph",
        "advisories",
        "bans",
        "licenses",
        "sources",
    ]);
    util::run(&mut check)
}

/// Clones (or refreshes) the advisory database from a git bundle into cargo-deny's default
/// database directory.
fn prepare_db_from_bundle(bundle: &Path) -> Result<()> {
    let dir = default_db_dir()?;
    let bundle_str = bundle.to_str().context("bundle path is not UTF-8")?;
    if !dir.join(".git").exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        util::run(
            Command::new("git")
                .args([
                    "-c",
                    "advice.detachedHead=false",
                    "clone",
                    "--quiet",
                    bundle_str,
                ])
                .arg(&dir),
        )?;
    }
    // Fetch once so FETCH_HEAD exists and is fresh, then move the checkout to the bundle's head.
    util::run(
        Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(["fetch", "--quiet", bundle_str, "HEAD"]),
    )?;
    util::run(Command::new("git").arg("-C").arg(&dir).args([
        "reset",
        "--quiet",
        "--hard",
        "FETCH_HEAD",
    ]))?;
    if !dir.join("crates").is_dir() {
        bail!(
            "{} does not look like the RustSec advisory database (no crates/ directory)",
            bundle.display()
        );
    }
    eprintln!("xtask: advisory database ready at {}", dir.display());
    Ok(())
}

/// `$CARGO_HOME/advisory-dbs/advisory-db-<xxhash64 of the URL>`, the directory cargo-deny
/// reads the default database from.
fn default_db_dir() -> Result<PathBuf> {
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(std::env::var_os("HOME").context("neither CARGO_HOME nor HOME set")?)
            .join(".cargo"),
    };
    Ok(cargo_home
        .join("advisory-dbs")
        .join(db_dir_name(DEFAULT_DB_URL)))
}

/// The directory name cargo-deny derives from a database URL: its last path segment and the
/// XXH64 (seed 0xca80de71) of the lowercased URL.
fn db_dir_name(url: &str) -> String {
    let url = url.to_lowercase();
    let name = url
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("empty_");
    let hash = twox_hash::XxHash64::oneshot(0xca80de71, url.as_bytes());
    format!("{name}-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::db_dir_name;

    #[test]
    fn db_dir_name_has_the_shape_cargo_deny_uses() {
        let name = db_dir_name("https://github.com/RustSec/advisory-db");
        assert!(name.starts_with("advisory-db-"), "{name}");
        assert_eq!(name.len(), "advisory-db-".len() + 16);
        assert_eq!(name, db_dir_name("https://github.com/rustsec/advisory-db"));
    }
}
