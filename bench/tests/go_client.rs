//! etcd's official Go client against real `raftd` processes: the `etcdcheck` program
//! (`bench/go/src/etcdcheck`) runs the client's `concurrency` recipes (STM, Mutex, Election)
//! from several clients spread over every member, with the leader killed in the middle, and
//! checks what each recipe promises (see its source). The same program passes against etcd
//! itself (the `reference_` test), so a failure against raftd is raftd's.
//!
//! The program is built offline in GOPATH mode against Debian's `golang-etcd-server-dev`
//! (etcd 3.4's client sources under `/usr/share/gocode`) with `golang-go`. Without them the
//! tests say they were skipped, and fail under `CI=true` (`.ci/run` installs both).

#![allow(clippy::print_stderr)]

use raft_bench::binaries::{on_path, test_raftd as raftd};
use raft_bench::cluster::{Cluster, Server};
use raft_node::testing::CALM;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Where Debian's golang-etcd-server-dev puts etcd's Go sources.
const GO_SOURCES: &str = "/usr/share/gocode";

/// `None` (the test is skipped) when a tool is missing; under `CI=true` that fails instead.
fn require(what: &str, found: bool) -> Option<()> {
    if found {
        return Some(());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is missing and CI=true: install Debian's golang-go, golang-etcd-server-dev \
         and etcd-server"
    );
    eprintln!("skipped: {what} is missing");
    None
}

/// The `etcdcheck` binary, built once per test process; `None` when Go or the client
/// sources are missing.
fn etcdcheck() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let go = on_path("go");
        let sources = Path::new(GO_SOURCES).join("src/go.etcd.io/etcd/clientv3/concurrency");
        require("go", go.is_some())?;
        require(
            "etcd's Go client sources (golang-etcd-server-dev)",
            sources.is_dir(),
        )?;
        let gopath = Path::new(env!("CARGO_MANIFEST_DIR")).join("go");
        // Each test process builds its own (Go's build cache makes the second one quick),
        // then renames it into place.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("etcdcheck-{}", std::process::id()));
        let out = dir.join("etcdcheck");
        let status = Command::new(go.unwrap())
            .args(["build", "-o"])
            .arg(&tmp)
            .arg("etcdcheck")
            .current_dir(gopath.join("src/etcdcheck"))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPATH", format!("{}:{GO_SOURCES}", gopath.display()))
            .status()
            .expect("go runs");
        assert!(status.success(), "building etcdcheck failed");
        std::fs::rename(&tmp, &out).expect("etcdcheck renamed into place");
        Some(out)
    })
    .clone()
}

/// Runs `etcdcheck` with `args` against `cluster`; when `kill_leader`, kills the leader with
/// SIGKILL 1.5 s in and starts it again 3 s later. Returns the program's report line.
async fn check(cluster: &mut Cluster, bin: &Path, args: &[&str], kill_leader: bool) -> String {
    let leader = cluster.serving(Duration::from_secs(30)).await.unwrap();
    let child = Command::new(bin)
        .arg("-endpoints")
        .arg(cluster.endpoints().join(","))
        .args(args)
        .args(["-timeout", "100s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdcheck starts");
    if kill_leader {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.kill9(leader).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.spawn(leader).unwrap();
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Keep the client's own log short: the last lines say why a run could not complete.
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    assert!(
        out.status.success(),
        "etcdcheck {args:?} failed ({}): {report}\nlast lines of its log:\n{}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    report
}

/// A 3-member cluster of `server` under `dir`.
fn start(server: Server, dir: &tempfile::TempDir) -> Cluster {
    let extra: &[&str] = match server {
        Server::Raftd(_) => &CALM,
        Server::Etcd(_) => &[],
    };
    Cluster::start(server, dir.path(), 3, extra).expect("cluster starts")
}

/// The STM recipe's bank transfers at repeatable-read isolation, the leader killed midway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stm_repeatable_reads_keep_the_bank_balanced_through_a_leader_kill() {
    let Some(bin) = etcdcheck() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(Server::Raftd(raftd()), &dir);
    let report = check(
        &mut cluster,
        &bin,
        &[
            "-workload",
            "stm",
            "-isolation",
            "repeatable-reads",
            "-clients",
            "4",
            "-ops",
            "40",
        ],
        true,
    )
    .await;
    eprintln!("raftd: {report}");
}

/// The Mutex recipe (lease-backed sessions, a watch on the predecessor's key, writes fenced
/// by the lock key's create revision) from 4 clients on every member, the leader killed
/// midway: one holder at a time, no fenced write refused while its session lives, and the
/// counter equal to the increments that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_holders_never_overlap_through_a_leader_kill() {
    let Some(bin) = etcdcheck() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(Server::Raftd(raftd()), &dir);
    let report = check(
        &mut cluster,
        &bin,
        &["-workload", "mutex", "-clients", "4", "-ops", "10"],
        true,
    )
    .await;
    eprintln!("raftd: {report}");
}

/// The Election recipe (Campaign, Proclaim, Leader, Observe, Resign on lease-backed
/// sessions) from 4 candidates and an observer, the leader killed midway: one leader at a
/// time, Leader() and the observer agree with the winner's proclamations, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_has_one_leader_at_a_time_through_a_leader_kill() {
    let Some(bin) = etcdcheck() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(Server::Raftd(raftd()), &dir);
    let report = check(
        &mut cluster,
        &bin,
        &["-workload", "election", "-clients", "4", "-ops", "10"],
        true,
    )
    .await;
    eprintln!("raftd: {report}");
}

/// The checks pass against etcd itself, so they ask only what etcd gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_every_workload_passes_against_etcd() {
    let Some(bin) = etcdcheck() else { return };
    let etcd = on_path("etcd");
    if require("etcd (Debian's etcd-server)", etcd.is_some()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(Server::Etcd(etcd.unwrap()), &dir);
    for args in [
        &["-workload", "stm", "-isolation", "serializable-snapshot"][..],
        &["-workload", "stm", "-isolation", "repeatable-reads"],
        &["-workload", "mutex", "-ops", "10"],
        &["-workload", "election", "-ops", "10"],
    ] {
        let report = check(&mut cluster, &bin, args, false).await;
        eprintln!("etcd: {report}");
    }
}
