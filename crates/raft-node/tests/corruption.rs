//! The corruption check on real `raftd` processes, driven by etcdctl 3.4: a 3-member cluster
//! with `corrupt_check_interval = 1s`; one follower's store is damaged on purpose while it
//! is stopped (a value rewritten in place, no revision, nothing replicated); the leader's
//! check raises the CORRUPT alarm naming it, `alarm list` shows it on every member, writes
//! are refused with etcd's "corrupt cluster" while reads go on; once the member is repaired
//! `alarm disarm` clears it and it stays cleared. Needs Debian's `etcd-client`: without it
//! the test fails under `CI=true` and is skipped (saying so) otherwise.

#![allow(clippy::print_stdout)]

use raft_kv::KvStore;
use raft_node::testing::{Cluster, Raftd, get};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const CORRUPT: &str = "etcdserver: corrupt cluster";

fn etcdctl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("etcdctl"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcdctl is not on PATH (apt-get install etcd-client)"
        );
    }
    found
}

/// etcdctl against `endpoint` (given as `http://host:port`): success, stdout + stderr.
fn ctl(etcdctl: &Path, endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`ctl`] retried for up to 20 s while it fails for a leader change; stdout must follow.
fn ok(etcdctl: &Path, endpoint: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (success, text) = ctl(etcdctl, endpoint, args);
        if success {
            return text;
        }
        let transient = ["leader changed", "no leader", "timed out", "Unavailable"]
            .iter()
            .any(|t| text.contains(t));
        assert!(
            transient && Instant::now() < deadline,
            "etcdctl {args:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops member `id`, rewrites `key`'s value in its store in place, and starts it again.
async fn rewrite_stopped(cluster: &mut Cluster, id: u64, key: &str, value: &str) {
    cluster.terminate(id, Duration::from_secs(20)).unwrap();
    {
        let store = KvStore::open(cluster.data_dir(id).join("kv")).unwrap();
        assert!(
            store
                .overwrite_value_unreplicated(key.as_bytes(), value.as_bytes())
                .unwrap(),
            "{key} is live on member {id}"
        );
    }
    cluster.spawn(id).unwrap();
    cluster
        .eventually(30, "the member serves again", || async {
            get(&cluster.node_client(id), key, true)
                .await
                .ok()
                .flatten()
                .filter(|v| v == value)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_member_raises_the_alarm_and_writes_are_refused_until_disarmed() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .token("corrupt")
            .calm()
            .args(["--set", "corrupt_check_interval=1s"]);
        let mut cluster = Cluster::start(launch, 3).expect("raftd starts");
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let ep = cluster.endpoint(leader);
        for i in 0..5 {
            assert_eq!(
                ok(&etcdctl, &ep, &["put", &format!("k{i}"), &format!("v{i}")]),
                "OK\n"
            );
        }
        let victim = cluster
            .running()
            .into_iter()
            .find(|i| *i != leader)
            .unwrap();
        cluster
            .eventually(20, "the follower applied every put", || async {
                get(&cluster.node_client(victim), "k4", true)
                    .await
                    .ok()
                    .flatten()
                    .filter(|v| v == "v4")
            })
            .await;
        // A healthy cluster: the check runs and raises nothing.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(ok(&etcdctl, &ep, &["alarm", "list"]), "");

        rewrite_stopped(&mut cluster, victim, "k2", "damaged").await;
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let expected = format!("memberID:{victim} alarm:CORRUPT");
        for id in cluster.running() {
            let ep = cluster.endpoint(id);
            cluster
                .eventually(30, "the CORRUPT alarm listed", || async {
                    ok(&etcdctl, &ep, &["alarm", "list"])
                        .contains(&expected)
                        .then_some(())
                })
                .await;
        }
        assert!(
            cluster
                .log(leader)
                .contains("corruption check found damaged members"),
            "{}",
            cluster.log(leader)
        );
        // Writes are refused on every member with etcd's error; reads go on.
        for id in cluster.running() {
            let ep = cluster.endpoint(id);
            let (success, text) = ctl(&etcdctl, &ep, &["put", "blocked", "x"]);
            assert!(!success && text.contains(CORRUPT), "member {id}: {text}");
            let (success, text) = ctl(&etcdctl, &ep, &["del", "k0"]);
            assert!(!success && text.contains(CORRUPT), "member {id}: {text}");
            let got = ok(&etcdctl, &ep, &["get", "k0"]);
            assert_eq!(got, "k0\nv0\n", "member {id}");
        }
        let (success, text) = ctl(&etcdctl, &ep, &["compact", "2"]);
        assert!(!success && text.contains(CORRUPT), "{text}");
        let (success, text) = ctl(&etcdctl, &ep, &["lease", "grant", "30"]);
        assert!(!success && text.contains(CORRUPT), "{text}");
        let status = ok(&etcdctl, &ep, &["endpoint", "status", "-w", "json"]);
        assert!(status.contains("alarm:CORRUPT"), "{status}");

        // Repaired, then disarmed: writes go through again and the check raises nothing.
        rewrite_stopped(&mut cluster, victim, "k2", "v2").await;
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let ep = cluster.endpoint(leader);
        let disarmed = ok(&etcdctl, &ep, &["alarm", "disarm"]);
        assert!(disarmed.contains(&expected), "{disarmed}");
        assert_eq!(ok(&etcdctl, &ep, &["put", "free", "again"]), "OK\n");
        tokio::time::sleep(Duration::from_secs(3)).await;
        for id in cluster.running() {
            assert_eq!(ok(&etcdctl, &cluster.endpoint(id), &["alarm", "list"]), "");
        }
    })
    .await
    .expect("test timed out");
}
