//! The etcd Maintenance service on real `raftd` processes, driven by etcdctl 3.4 with
//! `http://` endpoints: `snapshot save` then `raftd restore --from FILE` (a damaged or
//! truncated file refused, the restored one-member cluster serving the data and its
//! history); the space quota (NOSPACE raised through the log and refusing puts, txns with
//! puts and lease grants on every member, `alarm list`, `endpoint status` errors, deletes and
//! compaction still allowed, `alarm disarm`); `defrag`; `member update`; response headers
//! carrying the term. Needs Debian's `etcd-client`: without it each test fails under
//! `CI=true` and is skipped (saying so) otherwise.

#![allow(clippy::print_stdout)]

use raft_kv::pb::etcdserverpb::{PutRequest, RangeRequest, StatusRequest, kv_client::KvClient};
use raft_node::testing::{Cluster, Raftd, etcdctl, etcdctl_once, etcdctl_retried, put};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// etcdctl against `endpoint` (given as `host:port`, sent as `http://host:port`) with a
/// 10 s command timeout, then `args`.
fn ctl_args<'a>(endpoint: &str, args: &[&'a str]) -> (String, Vec<&'a str>) {
    (
        format!("http://{endpoint}"),
        [&["--command-timeout=10s"][..], args].concat(),
    )
}

/// etcdctl against `endpoint`, once: success, stdout + stderr.
fn ctl(etcdctl: &Path, endpoint: &str, args: &[&str]) -> (bool, String) {
    let (url, args) = ctl_args(endpoint, args);
    let out = etcdctl_once(etcdctl, &url, &args, None);
    (out.ok, format!("{}{}", out.stdout, out.stderr))
}

/// [`ctl`] retried for up to 20 s while it fails for a leader change; it must succeed
/// (stdout + stderr).
fn ok(etcdctl: &Path, endpoint: &str, args: &[&str]) -> String {
    let (url, args) = ctl_args(endpoint, args);
    let (out, _) = etcdctl_retried(etcdctl, &url, &args, None);
    assert!(out.ok, "etcdctl {args:?}: {}{}", out.stdout, out.stderr);
    format!("{}{}", out.stdout, out.stderr)
}

/// `etcdctl txn` with `script` on its standard input (compares, a blank line, success ops,
/// a blank line, failure ops, a blank line).
fn txn(etcdctl: &Path, endpoint: &str, script: &str) -> (bool, String) {
    let out = etcdctl_once(
        etcdctl,
        &format!("http://{endpoint}"),
        &["txn"],
        Some(script),
    );
    (out.ok, format!("{}{}", out.stdout, out.stderr))
}

fn raftd(token: &str) -> Raftd {
    Raftd::new(env!("CARGO_BIN_EXE_raftd")).token(token).calm()
}

/// `raftd restore --from <from>` into member 1 of `one`: success and output.
fn restore(one: &Cluster, from: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raftd"))
        .args(["--id", "1"])
        .arg("--data-dir")
        .arg(one.data_dir(1))
        .args(["--listen-peer", one.peer(1)])
        .arg("restore")
        .arg("--from")
        .arg(from)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_is_restored_by_raftd_and_a_damaged_file_is_refused() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = Cluster::start(raftd("snap-save"), 3).expect("raftd starts");
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.client();
        let first = put(&client, "hist", "old").await.unwrap();
        put(&client, "hist", "new").await.unwrap();
        for i in 0..40 {
            put(&client, &format!("k{i:02}"), &format!("v{i}"))
                .await
                .unwrap();
        }
        let last = put(&client, "last", "x").await.unwrap();
        let follower = cluster
            .running()
            .into_iter()
            .find(|i| *i != leader)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap.db");
        let out = ok(
            &etcdctl,
            &cluster.endpoint(follower),
            &["snapshot", "save", file.to_str().unwrap()],
        );
        assert!(out.contains("Snapshot saved at"), "{out}");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len() % 512, 32, "etcd's size rule for a digest");
        drop(client);
        drop(cluster);

        // Damaged or truncated: refused, nothing created.
        let bad = dir.path().join("bad.db");
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 3] ^= 0x10;
        let cut = bytes[..bytes.len() - 512].to_vec();
        for (what, content) in [("damaged", flipped), ("truncated", cut)] {
            std::fs::write(&bad, content).unwrap();
            let scratch = Cluster::new_in(raftd("unused"), &dir.path().join(what), 1).unwrap();
            let (success, text) = restore(&scratch, &bad);
            assert!(!success, "{what}: {text}");
            assert!(
                text.contains("SHA-256") || text.contains("truncated"),
                "{what}: {text}"
            );
            assert!(!scratch.data_dir(1).exists(), "{what}: nothing restored");
        }

        // The saved file: a one-member cluster with the data and its history.
        // A new cluster id (in the data dir): no token.
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut one = Cluster::new_in(launch, &dir.path().join("one"), 1).unwrap();
        let (success, text) = restore(&one, &file);
        assert!(success, "{text}");
        assert!(text.contains("snapshot file"), "{text}");
        one.spawn(1).unwrap();
        one.leader(Duration::from_secs(20)).await.unwrap();
        let ep = one.endpoint(1);
        assert_eq!(
            ok(&etcdctl, &ep, &["get", "--print-value-only", "k07"]),
            "v7\n"
        );
        assert_eq!(
            ok(&etcdctl, &ep, &["get", "--print-value-only", "last"]),
            "x\n"
        );
        let rev = first.to_string();
        assert_eq!(
            ok(
                &etcdctl,
                &ep,
                &["get", "--print-value-only", "--rev", &rev, "hist"]
            ),
            "old\n"
        );
        let members = ok(&etcdctl, &ep, &["member", "list"]);
        assert_eq!(members.lines().count(), 1, "{members}");
        // It takes writes, above the restored revision.
        let next = put(&one.client(), "after", "y").await.unwrap();
        assert!(next > last, "{next} > {last}");
    })
    .await
    .expect("test timed out");
}

/// `(db_size, errors)` of member `id`'s Status.
async fn status(cluster: &Cluster, id: u64) -> (i64, Vec<String>) {
    let r = cluster
        .node_client(id)
        .maintenance(
            |mut m| async move { m.status(StatusRequest {}).await.map(|r| r.into_inner()) },
        )
        .await
        .expect("status");
    (r.db_size, r.errors)
}

/// Rewrites the config file with `quota` and has every member reload it (SIGHUP); waits
/// until each logged its `reloads`-th reload.
async fn set_quota(cluster: &Cluster, file: &Path, quota: u64, reloads: usize) {
    std::fs::write(file, format!("quota_backend_bytes = {quota}\n")).unwrap();
    for id in cluster.running() {
        let pid = cluster.pid(id).unwrap().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    cluster
        .eventually(20, "every member reloaded", || async {
            cluster
                .running()
                .iter()
                .all(|id| cluster.log(*id).matches("configuration reloaded").count() >= reloads)
                .then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_quota_raises_nospace_everywhere_until_disarmed() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("quota.toml");
        std::fs::write(&file, "quota_backend_bytes = \"1GiB\"\n").unwrap();
        let launch = raftd("quota").args(["--config", file.to_str().unwrap()]);
        let mut cluster =
            Cluster::start_in(launch, &dir.path().join("c"), 3).expect("raftd starts");
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        put(&cluster.client(), "small", "s").await.unwrap();
        let mut largest = 0;
        for id in cluster.running() {
            largest = largest.max(status(&cluster, id).await.0 as u64);
        }
        // A little room above today's largest store: big values fill it.
        set_quota(&cluster, &file, largest + (2 << 20), 1).await;
        let ch = cluster
            .node_client(leader)
            .connect(&cluster.endpoint(leader))
            .await
            .unwrap();
        let mut kv = KvClient::new(ch);
        let value = vec![b'v'; 256 << 10];
        let mut refused = None;
        for i in 0..400 {
            let r = kv
                .put(PutRequest {
                    key: format!("big{i:03}").into_bytes().into(),
                    value: value.clone().into(),
                    ..Default::default()
                })
                .await;
            if let Err(s) = r {
                refused = Some(s);
                break;
            }
        }
        let refused = refused.expect("the quota was reached");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert_eq!(refused.message(), NO_SPACE);

        // Raised through the log: every member refuses puts, txns with a put and lease
        // grants, while reads and deletes go on.
        for id in cluster.running() {
            let ep = cluster.endpoint(id);
            cluster
                .eventually(20, "the alarm applied", || async {
                    let (success, text) = ctl(&etcdctl, &ep, &["put", "blocked", "x"]);
                    (!success && text.contains(NO_SPACE)).then_some(())
                })
                .await;
            let (success, text) = ctl(&etcdctl, &ep, &["lease", "grant", "30"]);
            assert!(!success && text.contains(NO_SPACE), "{text}");
            assert_eq!(
                ok(&etcdctl, &ep, &["get", "--print-value-only", "small"]),
                "s\n"
            );
            let (_, errors) = status(&cluster, id).await;
            assert!(
                errors.iter().any(|e| e.contains("alarm:NOSPACE")),
                "{errors:?}"
            );
        }
        let ep = cluster.endpoint(leader);
        let alarms = ok(&etcdctl, &ep, &["alarm", "list"]);
        assert!(
            alarms.contains(&format!("memberID:{leader} alarm:NOSPACE")),
            "{alarms}"
        );
        let status_json = ok(&etcdctl, &ep, &["endpoint", "status", "-w", "json"]);
        assert!(status_json.contains("alarm:NOSPACE"), "{status_json}");
        // A txn with a put is refused; one that only deletes goes through.
        let (success, text) = txn(&etcdctl, &ep, "\nput t x\n\n\n");
        assert!(!success && text.contains(NO_SPACE), "{text}");
        let (success, text) = txn(&etcdctl, &ep, "\ndel small\n\n\n");
        assert!(success && text.starts_with("SUCCESS"), "{text}");
        let deleted = ok(&etcdctl, &ep, &["del", "--prefix", "big"]);
        assert!(deleted.trim().parse::<u64>().unwrap() > 0, "{deleted}");
        let rev = ok(&etcdctl, &ep, &["get", "small", "-w", "json"]);
        let rev = rev
            .split("\"revision\":")
            .nth(1)
            .and_then(|s| s.split([',', '}']).next())
            .unwrap()
            .to_string();
        let compacted = ok(&etcdctl, &ep, &["compact", "--physical", &rev]);
        assert!(compacted.contains("compacted revision"), "{compacted}");
        // `--physical` answers once the serving member removed the history; the others
        // apply the compaction at their own pace. An offline defrag sees only what its
        // member applied, so each one is stopped after it applied the compaction.
        let below = (rev.parse::<i64>().unwrap() - 1).to_string();
        for id in cluster.running() {
            let ep = cluster.endpoint(id);
            cluster
                .eventually(20, "the compaction applied", || async {
                    let args = ["get", "small", "--consistency=s", "--rev", &below];
                    let (success, text) = ctl(&etcdctl, &ep, &args);
                    (!success && text.contains("compacted")).then_some(())
                })
                .await;
        }

        // sled's files keep their size after deletes and compaction; `raftd defrag` on each
        // stopped member, one at a time, rebuilds its store without the free space.
        for id in cluster.running() {
            let (before, _) = status(&cluster, id).await;
            cluster.terminate(id, Duration::from_secs(20)).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_raftd"))
                .args(["--id", &id.to_string()])
                .arg("--data-dir")
                .arg(cluster.data_dir(id))
                .arg("defrag")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "raftd defrag: {text}");
            assert!(text.contains("defragmented"), "{text}");
            cluster.spawn(id).unwrap();
            let after = cluster
                .eventually(30, "the member serves again", || async {
                    let r = cluster
                        .node_client(id)
                        .maintenance(|mut m| async move {
                            m.status(StatusRequest {}).await.map(|r| r.into_inner())
                        })
                        .await
                        .ok()?;
                    (r.leader != 0).then_some(r.db_size)
                })
                .await;
            println!("member {id}: {before} bytes before raftd defrag, {after} after");
            assert!(
                (after as u64) < largest + (2 << 20),
                "member {id} under its quota again: {before} -> {after}"
            );
        }
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        // The alarm is still raised (it is in the log) until disarmed.
        let (success, text) = ctl(&etcdctl, &ep, &["put", "blocked", "x"]);
        assert!(!success && text.contains(NO_SPACE), "{text}");
        let disarmed = ok(&etcdctl, &ep, &["alarm", "disarm"]);
        assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
        assert_eq!(ok(&etcdctl, &ep, &["alarm", "list"]), "");
        for id in cluster.running() {
            let ep = cluster.endpoint(id);
            assert_eq!(ok(&etcdctl, &ep, &["put", "free", "again"]), "OK\n");
            let (_, errors) = status(&cluster, id).await;
            assert!(errors.is_empty(), "{errors:?}");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defrag_member_update_and_header_terms() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = Cluster::start(raftd("defrag"), 3).expect("raftd starts");
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();

        // Every member's headers carry the current term (not 0), right after the election.
        for id in cluster.running() {
            let ch = cluster
                .node_client(id)
                .connect(&cluster.endpoint(id))
                .await
                .unwrap();
            let r = KvClient::new(ch)
                .range(RangeRequest {
                    key: b"k".to_vec().into(),
                    serializable: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let term = r.header.unwrap().raft_term;
            assert!(term > 0, "member {id}: raft_term {term}");
        }
        put(&cluster.client(), "k", "v").await.unwrap();

        for id in cluster.running() {
            let out = ok(&etcdctl, &cluster.endpoint(id), &["defrag"]);
            assert!(out.contains("Finished defragmenting etcd member"), "{out}");
        }

        // A follower's peer URL, spelled differently (localhost): recorded on every
        // member, dialed from then on, and the cluster keeps committing.
        let target = cluster
            .running()
            .into_iter()
            .find(|i| *i != leader)
            .unwrap();
        let port = cluster.peer(target).rsplit(':').next().unwrap().to_string();
        let url = format!("http://localhost:{port}");
        let hex = format!("{target:x}");
        let ep = cluster.endpoint(leader);
        let out = ok(
            &etcdctl,
            &ep,
            &["member", "update", &hex, &format!("--peer-urls={url}")],
        );
        assert!(out.contains("updated in cluster"), "{out}");
        for id in cluster.running() {
            let ep = cluster.endpoint(id);
            cluster
                .eventually(20, "the new peer URL listed", || async {
                    let list = ok(&etcdctl, &ep, &["member", "list"]);
                    list.lines()
                        .any(|l| l.starts_with(&hex) && l.contains(&url))
                        .then_some(())
                })
                .await;
        }
        assert!(cluster.log(leader).contains("peer address changed"));
        for i in 0..5 {
            assert_eq!(
                ok(
                    &etcdctl,
                    &cluster.endpoint(target),
                    &["put", &format!("after{i}"), "x"]
                ),
                "OK\n"
            );
        }
        let (success, text) = ctl(
            &etcdctl,
            &ep,
            &["member", "update", "ffff", "--peer-urls=http://h:1"],
        );
        assert!(!success && text.contains("member not found"), "{text}");
    })
    .await
    .expect("test timed out");
}
