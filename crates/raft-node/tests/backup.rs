//! Backups end to end: a 3-member raftd cluster backs up to a real S3-compatible server
//! (s3s-fs, in process; raft-snapshot's test server, shared) with snapshots and the WAL
//! archive, through an outage of the store; the cluster is lost whole (every data dir
//! removed); `raftd restore --from s3://...` rebuilds it at a chosen time and at a chosen
//! index, and the restored one-member cluster holds exactly the keys written by then.

#![allow(clippy::print_stdout)]

#[path = "../../raft-snapshot/tests/support/s3_server.rs"]
mod s3_server;

use raft_node::client::Client;
use raft_node::testing::{Cluster, Raftd, eventually, get};
use s3_server::S3Server;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TEST_TIMEOUT: Duration = Duration::from_secs(240);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `--set` flags that point raftd at the test server's bucket.
fn backup_flags(s3: &S3Server) -> Vec<String> {
    let c = s3.config("cluster");
    let mut v = vec![
        format!("backup.url={}", c.url),
        format!("backup.endpoint={}", c.endpoint.unwrap()),
        "backup.region=us-east-1".into(),
        "backup.path_style=true".into(),
    ];
    for (k, val) in &c.options {
        v.push(format!("backup.options.{k}={val}"));
    }
    v.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

async fn put(c: &Client, key: &str, value: &str) {
    raft_node::testing::put(c, key, value)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Writes `prefix/0..n`.
async fn write(c: &Client, prefix: &str, n: usize) {
    for i in 0..n {
        put(c, &format!("{prefix}/{i}"), "v").await;
    }
}

/// The highest commit index the archive holds, over every member.
fn archived_commit(s3: &S3Server) -> u64 {
    let obj = raft_snapshot::open_object_store(&s3.config("cluster")).unwrap();
    raft_snapshot::list_wal_archive(&*obj)
        .map(|v| v.iter().map(|s| s.meta.commit).max().unwrap_or(0))
        .unwrap_or(0)
}

/// The leader's commit index from its `/status`.
async fn commit_index(cluster: &Cluster, id: u64) -> u64 {
    let body = raft_node::scrape::http_get(cluster.metrics(id), "/status", Duration::from_secs(5))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["backup"]["url"].as_str().unwrap().starts_with("s3://"),
        "{v}"
    );
    v["commit"].as_u64().unwrap()
}

/// Runs `raftd restore` into member 1's data dir of `cluster` and starts it; returns what
/// raftd printed.
fn restore_and_start(cluster: &mut Cluster, s3: &S3Server, target: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_raftd"))
        .args(["--id", "1"])
        .arg("--data-dir")
        .arg(cluster.data_dir(1))
        .args(["--listen-peer", cluster.peer(1)])
        .args(backup_flags(s3))
        .args(["restore", "--from", &s3.config("cluster").url])
        .args(target)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "raftd restore {target:?}: {text}");
    cluster.spawn(1).unwrap();
    text
}

/// `raftctl backup <cmd>` against the test bucket: exit code and output.
fn raftctl_backup(s3: &S3Server, cmd: &str) -> (i32, String) {
    raftctl_backup_with(s3, cmd, &[])
}

/// [`raftctl_backup`] with more flags.
fn raftctl_backup_with(s3: &S3Server, cmd: &str, extra: &[&str]) -> (i32, String) {
    let c = s3.config("cluster");
    let mut command = Command::new(env!("CARGO_BIN_EXE_raftctl"));
    command
        .args(["backup", cmd, "--url", &c.url])
        .args(extra)
        .args(["--endpoint", c.endpoint.as_deref().unwrap()])
        .args(["--region", "us-east-1", "--path-style"]);
    for (k, v) in &c.options {
        command.args(["--option", &format!("{k}={v}")]);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every key `prefix/0..n` reads back (present) or none does (absent).
async fn check(c: &Client, prefix: &str, n: usize, present: bool) {
    for i in 0..n {
        let key = format!("{prefix}/{i}");
        let v = get(c, &key, false)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(v.is_some(), present, "{key}");
    }
}

#[test]
fn a_cluster_lost_whole_is_restored_to_a_chosen_time_and_index_from_s3() {
    // The server runs its own runtime: start it before the test's.
    let s3 = S3Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(&s3));
}

async fn scenario(s3: &S3Server) {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .token("backup")
            .calm()
            .with_metrics()
            .args(["--snapshot-threshold", "40"])
            .args(["--set", "backup.archive_interval=200ms"])
            // Small segments: many close (and are archived whole) while compaction runs.
            .args(["--set", "wal.segment_size=8KiB"])
            .args(backup_flags(s3));
        let mut cluster = Cluster::start(raftd, 3).expect("raftd starts");
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.client();

        // Phase a (with snapshots along the way), then the time T between a and b.
        write(&client, "a", 60).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = now_ms();
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&client, "b", 30).await;
        let index_b = commit_index(&cluster, leader).await;
        // The store goes down in the middle of phase c and comes back.
        write(&client, "c", 10).await;
        s3.set_down(true);
        let before_outage = s3.requests();
        write(&client, "c2", 30).await;
        // The outage lasts until the archiver has met it (a request refused), not a set time.
        eventually(
            30,
            "the archiver to try the store during the outage",
            || async { (s3.requests() > before_outage).then_some(()) },
        )
        .await;
        s3.set_down(false);
        // The time T2 between phases c2 and d (a restore point kept by the prune below).
        let index_c2 = commit_index(&cluster, leader).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t2 = now_ms();
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&client, "d", 10).await;
        let last = commit_index(&cluster, leader).await;
        eventually(60, "the archive holds every acknowledged write", || async {
            (archived_commit(s3) >= last).then_some(())
        })
        .await;

        // Total loss: every member killed and its data dir removed.
        for id in 1..=3 {
            cluster.kill9(id).unwrap();
            std::fs::remove_dir_all(cluster.data_dir(id)).unwrap();
        }
        drop(client);
        let dir = tempfile::tempdir().unwrap();

        // To the time between phases a and b.
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut one = Cluster::new_in(launch, &dir.path().join("at-time"), 1).unwrap();
        let printed = restore_and_start(&mut one, s3, &["--time", &t.to_string()]);
        println!("{printed}");
        one.leader(Duration::from_secs(20)).await.unwrap();
        let c = one.client();
        check(&c, "a", 60, true).await;
        check(&c, "b", 30, false).await;
        drop(c);
        one.kill9(1).unwrap();

        // To the index right after phase b (before the outage).
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut two = Cluster::new_in(launch, &dir.path().join("at-index"), 1).unwrap();
        let printed = restore_and_start(&mut two, s3, &["--index", &index_b.to_string()]);
        println!("{printed}");
        assert!(
            printed.contains(&format!("up to index {index_b}")),
            "{printed}"
        );
        two.leader(Duration::from_secs(20)).await.unwrap();
        let c = two.client();
        check(&c, "a", 60, true).await;
        check(&c, "b", 30, true).await;
        check(&c, "c", 10, false).await;
        // The restored cluster takes writes.
        put(&c, "after-restore", "x").await;
        drop(c);
        two.kill9(1).unwrap();

        // Everything, including what was written during and after the outage.
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut three = Cluster::new_in(launch, &dir.path().join("latest"), 1).unwrap();
        restore_and_start(&mut three, s3, &["--latest"]);
        three.leader(Duration::from_secs(20)).await.unwrap();
        let c = three.client();
        for (p, n) in [("a", 60), ("b", 30), ("c", 10), ("c2", 30), ("d", 10)] {
            check(&c, p, n, true).await;
        }

        // raftctl backup list shows the snapshots and every member's archive; verify reads
        // everything back, and finds a damaged segment.
        let (code, listed) = raftctl_backup(s3, "list");
        println!("{listed}");
        assert_eq!(code, 0, "{listed}");
        assert!(
            listed.contains("SNAPSHOTS") && listed.contains("restore range"),
            "{listed}"
        );
        for member in 1..=3 {
            assert!(
                listed.lines().any(|l| l.starts_with(&format!("{member} "))),
                "member {member} archived nothing: {listed}"
            );
        }
        let (code, report) = raftctl_backup(s3, "verify");
        assert_eq!(code, 0, "{report}");
        assert!(report.contains("backup verified"), "{report}");
        let seg = walk(&s3.bucket_dir())
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .expect("an archived segment in the bucket");
        let good = std::fs::read(&seg).unwrap();
        let mut bytes = good.clone();
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        std::fs::write(&seg, bytes).unwrap();
        let (code, report) = raftctl_backup(s3, "verify");
        assert_eq!(code, 1, "{report}");
        assert!(
            report.contains("FAILED") && report.contains("backup has damage"),
            "{report}"
        );
        std::fs::write(&seg, good).unwrap();
        drop(c);
        three.kill9(1).unwrap();

        // Retention on demand: a dry run lists and deletes nothing; keeping one base chain
        // deletes only what that chain does not need (older snapshots, and the archived WAL
        // segments wholly below it); the backup still lists, verifies and restores.
        let before = raftctl_backup(s3, "list").1;
        let (code, dry) = raftctl_backup_with(s3, "prune", &["--keep-bases", "1", "--dry-run"]);
        println!("{dry}");
        assert_eq!(code, 0, "{dry}");
        assert!(
            dry.contains("KEEP (") && dry.contains("dry run: nothing deleted"),
            "{dry}"
        );
        assert_eq!(
            raftctl_backup(s3, "list").1,
            before,
            "a dry run deletes nothing"
        );
        // A window reaching back before every snapshot (the cluster is younger than an
        // hour): a restore there replays the archive from index 1, so no segment goes for
        // its range.
        let (code, young) = raftctl_backup_with(s3, "prune", &["--keep-for", "1h", "--dry-run"]);
        assert_eq!(code, 0, "{young}");
        assert!(
            young.contains("WAL floor: none") && !young.contains("below the WAL floor"),
            "{young}"
        );
        let (code, none) = raftctl_backup_with(s3, "prune", &[]);
        assert_ne!(code, 0, "a prune without a policy is refused: {none}");
        // What the prune is to delete, as the library plans it: archived segments wholly at
        // or below the oldest kept snapshot (and partial objects superseded since).
        let obj = raft_snapshot::open_object_store(&s3.config("cluster")).unwrap();
        let policy = raft_snapshot::RetentionPolicy {
            keep_for: None,
            keep_bases: Some(1),
        };
        let plan = raft_snapshot::plan_retention(&*obj, &policy, now_ms()).unwrap();
        let floor = plan
            .wal_floor
            .expect("a WAL floor: the store holds snapshots");
        let below: Vec<&raft_snapshot::ArchivedSegment> = plan
            .delete_segments
            .iter()
            .filter(|(_, why)| *why == raft_snapshot::SegmentDeletion::BelowFloor)
            .map(|(seg, _)| seg)
            .collect();
        assert!(
            !below.is_empty(),
            "no archived segment lies below the oldest kept snapshot (index {floor}):\n{dry}"
        );
        assert!(dry.contains("below the WAL floor"), "{dry}");
        for seg in &below {
            assert!(seg.meta.entries.is_none_or(|(_, hi)| hi < floor), "{seg:?}");
            assert!(
                dry.contains(&format!("seq {:<6}", seg.seq)),
                "the dry run lists segment {} of member {}:\n{dry}",
                seg.seq,
                seg.node
            );
        }
        let (code, pruned) = raftctl_backup_with(s3, "prune", &["--keep-bases", "1"]);
        println!("{pruned}");
        assert_eq!(code, 0, "{pruned}");
        assert!(pruned.contains("snapshot(s) deleted"), "{pruned}");
        assert!(
            pruned.contains(&format!(
                "{} WAL segment(s) deleted",
                plan.delete_segments.len()
            )),
            "{pruned}"
        );
        let left = obj.list("wal/").unwrap();
        for (seg, _) in &plan.delete_segments {
            assert!(
                !left.contains(&seg.data_name()) && !left.contains(&seg.meta_name()),
                "{} is still in the store",
                seg.data_name()
            );
        }
        // Every member still has the segments a restore after the floor reads.
        for member in 1..=3 {
            assert!(
                left.iter()
                    .any(|n| n.starts_with(&format!("wal/{member:016x}/"))),
                "member {member}'s archive was emptied: {left:?}"
            );
        }
        let (code, listed) = raftctl_backup(s3, "list");
        println!("{listed}");
        assert_eq!(code, 0, "{listed}");
        assert!(
            listed.contains(&format!("restore range: index {floor} ")),
            "after the prune: {listed}"
        );
        let (code, report) = raftctl_backup(s3, "verify");
        assert_eq!(code, 0, "after the prune: {report}");
        assert!(report.contains("backup verified"), "{report}");

        // The oldest kept restore point still restores, one entry past the floor (it needs
        // the segment straddling the floor; the floor itself when nothing was written after
        // it), and so does the newest.
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut four = Cluster::new_in(launch, &dir.path().join("oldest-kept"), 1).unwrap();
        let oldest = (floor + 1).min(last).to_string();
        let printed = restore_and_start(&mut four, s3, &["--index", &oldest]);
        println!("{printed}");
        assert!(
            printed.contains(&format!("up to index {oldest}")),
            "{printed}"
        );
        four.leader(Duration::from_secs(20)).await.unwrap();
        let c = four.client();
        check(&c, "a", 1, true).await;
        drop(c);
        four.kill9(1).unwrap();
        // A time after the floor: the restore starts from the kept snapshot and replays the
        // segments left.
        if index_c2 > floor {
            let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
                .random_cluster_id()
                .calm();
            let mut at_t2 = Cluster::new_in(launch, &dir.path().join("t2-after-prune"), 1).unwrap();
            let printed = restore_and_start(&mut at_t2, s3, &["--time", &t2.to_string()]);
            println!("{printed}");
            at_t2.leader(Duration::from_secs(20)).await.unwrap();
            let c = at_t2.client();
            check(&c, "c2", 30, true).await;
            check(&c, "d", 10, false).await;
            drop(c);
            at_t2.kill9(1).unwrap();
        } else {
            println!(
                "phase c2 ended at index {index_c2}, below the floor {floor}: no time restore"
            );
        }
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut five = Cluster::new_in(launch, &dir.path().join("latest-after-prune"), 1).unwrap();
        restore_and_start(&mut five, s3, &["--latest"]);
        five.leader(Duration::from_secs(20)).await.unwrap();
        let c = five.client();
        for (p, n) in [("a", 60), ("b", 30), ("c", 10), ("c2", 30), ("d", 10)] {
            check(&c, p, n, true).await;
        }
    })
    .await
    .expect("test timed out");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn rpo_with_the_default_settings() {
    let s3 = S3Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rpo(&s3));
}

/// A writer acknowledges puts continuously (one at a time) on a cluster with the default
/// `[backup]` settings (`archive_interval = 5s`); every member is killed and its data
/// removed at once; `restore --latest` brings back a prefix of the writes. The RPO is the
/// time between the last restored write's acknowledgement and the loss.
async fn rpo(s3: &S3Server) {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let flags = backup_flags(s3);
        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .token("rpo")
            .calm()
            .args(flags);
        let mut cluster = Cluster::start(raftd, 3).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.client();
        let mut acked = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(13);
        let mut i = 0;
        while std::time::Instant::now() < until {
            put(&client, &format!("w/{i:06}"), "v").await;
            acked.push(now_ms());
            i += 1;
        }
        let lost_at = now_ms();
        for id in 1..=3 {
            cluster.kill9(id).unwrap();
        }
        for id in 1..=3 {
            std::fs::remove_dir_all(cluster.data_dir(id)).unwrap();
        }
        drop(client);
        let dir = tempfile::tempdir().unwrap();
        let launch = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .random_cluster_id()
            .calm();
        let mut one = Cluster::new_in(launch, &dir.path().join("latest"), 1).unwrap();
        restore_and_start(&mut one, s3, &["--latest"]);
        one.leader(Duration::from_secs(20)).await.unwrap();
        let c = one.client();
        // The restored writes are a prefix: find its end by bisection.
        let present = |k: usize| {
            let c = c.clone();
            async move {
                get(&c, &format!("w/{k:06}"), false)
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        assert!(present(0).await, "the first write is in the backup");
        let (mut lo, mut hi) = (0usize, acked.len());
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if present(mid).await {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let lost = acked.len() - 1 - lo;
        let rpo_ms = lost_at - acked[lo];
        println!(
            "RPO with the default settings: {} of {} acknowledged writes lost; the last restored \
             one was acknowledged {rpo_ms} ms before the loss",
            lost,
            acked.len()
        );
        // archive_interval (5 s) + one archiver round (1 s) + upload time, with slack for a
        // loaded machine.
        assert!(rpo_ms <= 9_000, "RPO {rpo_ms} ms");
    })
    .await
    .expect("test timed out");
}
