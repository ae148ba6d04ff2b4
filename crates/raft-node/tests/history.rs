//! MVCC history on real `raftd` processes: `etcdctl get --rev`, `etcdctl compact --physical`
//! and `etcdctl endpoint hashkv` equal on every member; auto-compaction proposed by the
//! leader and applied by every member at the same revision; the internal key space out of
//! clients' reach. The etcdctl test needs Debian's `etcd-client` (etcdctl 3.4): without it,
//! it fails under `CI=true` and is skipped (saying so) otherwise.

#![allow(clippy::print_stdout)]

use raft_kv::pb::etcdserverpb::{HashKvRequest, RangeRequest};
use raft_node::client::Client;
use raft_node::testing::{Cluster, Raftd, etcdctl, etcdctl_retried, put};
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn raftd() -> Raftd {
    Raftd::new(env!("CARGO_BIN_EXE_raftd")).token("hist").calm()
}

/// `(hash, compact_revision, hash_revision)` of member `id` at `revision`.
async fn hash_kv(cluster: &Cluster, id: u64, revision: i64) -> Option<(u32, i64, i64)> {
    let r = cluster
        .node_client(id)
        .maintenance(|mut m| async move {
            m.hash_kv(HashKvRequest { revision })
                .await
                .map(|r| r.into_inner())
        })
        .await
        .ok()?;
    Some((r.hash, r.compact_revision, r.hash_revision))
}

/// Waits until every member answers HashKV at `revision` alike; returns the answer.
async fn same_hash_everywhere(cluster: &Cluster, revision: i64) -> (u32, i64, i64) {
    cluster
        .eventually(30, "equal HashKV on every member", || async {
            let mut all = Vec::new();
            for id in cluster.running() {
                all.push(hash_kv(cluster, id, revision).await?);
            }
            all.windows(2).all(|w| w[0] == w[1]).then(|| all[0])
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_reads_old_revisions_compacts_and_hashes_alike() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = Cluster::start(raftd(), 3).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.client();
        let mut revs = Vec::new();
        for v in ["v1", "v2", "v3"] {
            revs.push(put(&client, "foo", v).await.unwrap());
        }
        put(&client, "bar", "b").await.unwrap();
        let eps = cluster.endpoints().join(",");
        // Runs etcdctl against every member; retries what a leader change makes fail.
        let run = |args: &[&str]| -> Result<String, String> {
            let (out, _) = etcdctl_retried(&etcdctl, &eps, args, None);
            if out.ok {
                Ok(out.stdout)
            } else {
                Err(out.stderr)
            }
        };
        for (rev, want) in revs.iter().zip(["v1", "v2", "v3"]) {
            let out = run(&["get", "foo", &format!("--rev={rev}")]).unwrap();
            assert_eq!(out, format!("foo\n{want}\n"), "at revision {rev}");
        }
        // Before "bar" existed it is not there.
        assert_eq!(
            run(&["get", "bar", &format!("--rev={}", revs[2])]).unwrap(),
            ""
        );
        let future = revs[2] + 100;
        let err = run(&["get", "foo", &format!("--rev={future}")]).unwrap_err();
        assert!(
            err.contains("required revision is a future revision"),
            "{err}"
        );

        // Every member hashes the same history, at the current and at an old revision.
        let (_, compact0, at) = same_hash_everywhere(&cluster, 0).await;
        assert_eq!(compact0, 0);
        assert!(at > revs[2]);
        same_hash_everywhere(&cluster, revs[1]).await;

        let out = run(&["compact", &revs[1].to_string(), "--physical"]).unwrap();
        assert_eq!(out, format!("compacted revision {}\n", revs[1]));
        let err = run(&["get", "foo", &format!("--rev={}", revs[0])]).unwrap_err();
        assert!(
            err.contains("required revision has been compacted"),
            "{err}"
        );
        assert_eq!(
            run(&["get", "foo", &format!("--rev={}", revs[1])]).unwrap(),
            "foo\nv2\n"
        );
        let err = run(&["compact", &revs[0].to_string()]).unwrap_err();
        assert!(
            err.contains("required revision has been compacted"),
            "{err}"
        );
        // Every member compacted at the same revision and hashes alike.
        let (_, compact, _) = same_hash_everywhere(&cluster, 0).await;
        assert_eq!(compact, revs[1]);
        // etcdctl's own view: one line per member, the same hash on each.
        let out = run(&["endpoint", "hashkv"]).unwrap();
        let hashes: Vec<&str> = out
            .lines()
            .map(|l| l.rsplit(", ").next().unwrap_or(""))
            .collect();
        assert_eq!(hashes.len(), 3, "{out}");
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{out}");
        // A restarted member keeps its history and compact revision.
        let victim = cluster.running()[0];
        cluster
            .terminate(victim, Duration::from_secs(10))
            .expect("member stops");
        cluster.spawn(victim).expect("member restarts");
        let kept = revs[1];
        let old = cluster
            .eventually(
                30,
                "the restarted member serving an old revision",
                || async {
                    let r = cluster
                        .node_client(victim)
                        .kv(|mut k| async move {
                            k.range(RangeRequest {
                                key: "foo".into(),
                                revision: kept,
                                serializable: true,
                                ..Default::default()
                            })
                            .await
                            .map(|r| r.into_inner())
                        })
                        .await
                        .ok()?;
                    Some(r.kvs[0].value.clone())
                },
            )
            .await;
        assert_eq!(old.as_ref(), b"v2");
        let (_, compact, _) = same_hash_everywhere(&cluster, 0).await;
        assert_eq!(compact, kept);
    })
    .await
    .expect("test took longer than 90 s");
}

/// With a one-second periodic retention, the leader compacts through the log: every
/// member reports the same compact revision, and reads below it are refused everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_compaction_compacts_every_member_at_the_same_revision() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = Cluster::start(
            raftd().args([
                "--auto-compaction-mode",
                "periodic",
                "--auto-compaction-retention",
                "1s",
            ]),
            3,
        )
        .expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.client();
        let first = put(&client, "k", "0").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut i = 0;
        let compact = loop {
            i += 1;
            put(&client, "k", &i.to_string()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut all = Vec::new();
            for id in cluster.running() {
                all.push(hash_kv(&cluster, id, 0).await.map(|h| h.1));
            }
            if let Some(Some(c)) = all.first()
                && *c > first
                && all.windows(2).all(|w| w[0] == w[1])
            {
                break *c;
            }
            assert!(Instant::now() < deadline, "no auto-compaction: {all:?}");
        };
        for id in cluster.running() {
            let r = cluster
                .node_client(id)
                .kv(|mut k| async move {
                    k.range(RangeRequest {
                        key: "k".into(),
                        revision: first,
                        serializable: true,
                        ..Default::default()
                    })
                    .await
                })
                .await;
            assert!(
                r.is_err(),
                "member {id} read below the compact revision {compact}"
            );
        }
    })
    .await
    .expect("test took longer than 90 s");
}

/// A client's whole key space never shows the peer addresses, and writing where older
/// versions kept them changes nothing for the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_reach_the_internal_key_space() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = Cluster::start(raftd(), 1).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client: Client = cluster.client();
        put(&client, "\0raftd/peer/1", "http://attacker:1")
            .await
            .unwrap();
        let all = client
            .kv(|mut k| async move {
                k.range(RangeRequest {
                    key: "\0".into(),
                    range_end: "\0".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
            })
            .await
            .unwrap();
        let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, [bytes::Bytes::from_static(b"\0raftd/peer/1")]);
        // The member list still names the member's real peer address.
        let members = client
            .cluster(|mut c| async move {
                c.member_list(raft_kv::pb::etcdserverpb::MemberListRequest::default())
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .unwrap();
        assert!(
            members.members[0]
                .peer_ur_ls
                .iter()
                .all(|u| !u.contains("attacker")),
            "{members:?}"
        );
    })
    .await
    .expect("test took longer than 90 s");
}
