//! `cargo xtask machete`: no dependency declared and left unused.
//!
//! Runs [cargo-machete](https://github.com/bnjbvr/cargo-machete) (installed with
//! `cargo install --locked` when missing, like cargo-deny) over the workspace's packages:
//! `crates/`, `xtask` and `bench` (`vendor/` and `fuzz/` are outside the workspace).
//! cargo-machete reads each manifest and searches the package's sources for the names of its
//! dependencies; it needs no network. Dependencies it cannot see used (code generated into
//! `OUT_DIR`, names in attribute strings, crates declared only to select a feature of
//! another) are listed with the reason in `[package.metadata.cargo-machete]` of the package,
//! or in `[workspace.metadata.cargo-machete]` of the root `Cargo.toml` for what holds in
//! every package.

use crate::util::{self, cargo};
use anyhow::Result;

/// The cargo-machete release this project is checked with.
const CARGO_MACHETE_VERSION: &str = "0.9.2";

/// The workspace's package directories (what `cargo machete` searches).
const PACKAGE_DIRS: &[&str] = &["crates", "xtask", "bench"];

/// Installs cargo-machete if needed and fails when a package declares an unused dependency.
pub fn run() -> Result<()> {
    if !util::has_cargo_subcommand("machete") {
        util::run(cargo().args([
            "install",
            "--locked",
            "cargo-machete",
            "--version",
            CARGO_MACHETE_VERSION,
        ]))?;
    }
    // cargo-machete takes itself for a cargo subcommand (and skips its `machete` argument)
    // only when `CARGO_PKG_NAME` is unset, which `cargo run` of xtask sets.
    util::run(
        cargo()
            .arg("machete")
            .args(PACKAGE_DIRS)
            .env_remove("CARGO_PKG_NAME"),
    )?;
    eprintln!("xtask: machete ok: no unused dependency");
    Ok(())
}
