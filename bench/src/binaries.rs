//! The server binaries the integration tests under `tests/` run: raftd (from
//! `RAFT_BENCH_RAFTD`, or built by cargo) and tools found on `PATH`.

// Test support: says on stderr that it builds raftd (it can take a minute).
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The raftd binary to test: `RAFT_BENCH_RAFTD` when set (`cargo xtask ci` points it at the
/// debug build the same test run makes), else built once by cargo into the profile directory
/// of the calling test binary.
pub fn test_raftd() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RAFT_BENCH_RAFTD") {
            return PathBuf::from(p);
        }
        // <target>/<profile>/deps/<this test>: build raftd into <target>/<profile>.
        let exe = std::env::current_exe().expect("test path");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let profile = profile_dir.file_name().expect("profile").to_string_lossy();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--package", "raft-node", "--bin", "raftd"])
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().expect("target dir"),
            );
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        eprintln!("RAFT_BENCH_RAFTD is not set: building raftd ({cmd:?})");
        assert!(
            cmd.status().expect("cargo runs").success(),
            "building raftd failed"
        );
        profile_dir.join("raftd")
    })
    .clone()
}

/// `name` found on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
