//! `raft-bench history` end to end at tiny sizes against raftd only: every part runs (range
//! at an old revision and at the head, a physical compaction with puts around it, the space
//! soak with compaction, online defragmentation and `raftd defrag`) and the report has a row of figures for each.
//!
//! The raftd binary comes from `RAFT_BENCH_RAFTD` (`cargo xtask ci` points it at the debug
//! build the same test run makes); without it the test builds raftd with cargo first.

use raft_bench::binaries::test_raftd as raftd;
use std::process::Command;

/// The numbers of the first table row of `server` after `header` (a table's header line).
fn row(out: &str, header: &str, server: &str) -> Vec<f64> {
    let table = out.split(header).nth(1).unwrap_or_else(|| panic!("{out}"));
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {server} |")))
        .unwrap_or_else(|| panic!("no {server} row after {header:?}: {out}"));
    line.split('|')
        .skip(2)
        .filter_map(|c| c.trim().parse::<f64>().ok())
        .collect()
}

#[test]
fn history_subcommand_runs_end_to_end_at_tiny_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raft-bench"))
        .arg("history")
        .arg("--raftd")
        .arg(raftd())
        .args(["--revisions", "1000", "--key-set", "100", "--keys", "500"])
        .args(["--clients", "4", "--duration", "500ms"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "raft-bench history: {text}");
    let range = row(&text, "range @old ops/s", "raftd");
    assert_eq!(range.len(), 6, "{text}");
    assert!(range[0] > 0.0 && range[3] > 0.0, "gets answered: {text}");
    let compact = row(&text, "compact to rev", "raftd");
    assert!(
        compact[0] > 1000.0,
        "compacted past the written revisions: {text}"
    );
    assert!(
        compact[3] > 0.0,
        "puts went on before the compaction: {text}"
    );
    let space = row(&text, "live MiB", "raftd");
    assert!(
        space[1] > 1.0 && space[2] > 0.0,
        "disk per live byte: {text}"
    );
    assert!(space[3] > 1.0, "RSS measured: {text}");
    assert!(
        !dir.path().join("data").exists(),
        "data removed after the run"
    );
}
