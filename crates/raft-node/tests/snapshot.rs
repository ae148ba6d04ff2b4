//! Snapshots end to end with real `raftd` processes on loopback: a follower whose data
//! directory was wiped rejoins a running cluster through a snapshot of the leader's
//! compacted log and converges to the same state, its history included.

#![allow(clippy::print_stdout)]

use raft_kv::pb::etcdserverpb::HashKvRequest;
use raft_node::client::Client;
use raft_node::testing::{Cluster, Raftd, eventually, get};
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// A cluster that snapshots every 50 applied entries and merges chains longer than 3.
fn start() -> Cluster {
    let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
        .token("snap")
        .calm()
        .args(["--snapshot-threshold", "50"])
        .args(["--set", "snapshot.max_chain_len=3"]);
    Cluster::start(raftd, 3).expect("raftd starts")
}

/// Member `id`'s `HashKV` answer: (hash, revision).
async fn hash(cluster: &Cluster, id: u64) -> Option<(u32, i64)> {
    cluster
        .node_client(id)
        .maintenance(|mut c| async move {
            c.hash_kv(HashKvRequest { revision: 0 })
                .await
                .map(|r| r.into_inner())
        })
        .await
        .ok()
        .map(|r| (r.hash, r.hash_revision))
}

/// A put, retried while the cluster answers UNAVAILABLE (idempotent in these tests);
/// returns its revision.
async fn put(c: &Client, key: &str, value: &str) -> i64 {
    raft_node::testing::put(c, key, value)
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

/// A serializable read of `key` at `revision` on one member.
async fn local_get_at(c: &Client, key: &str, revision: i64) -> Option<String> {
    let req = raft_kv::pb::etcdserverpb::RangeRequest {
        key: key.to_string().into(),
        revision,
        serializable: true,
        ..Default::default()
    };
    let r = c
        .kv(|mut k| {
            let req = req.clone();
            async move { k.range(req).await.map(|r| r.into_inner()) }
        })
        .await
        .ok()?;
    r.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// A serializable (local) read on one member.
async fn local_get(c: &Client, key: &str) -> Option<String> {
    get(c, key, true).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_rejoins_through_a_snapshot_and_converges() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = start();
        let leader = cluster
            .leader(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let client = cluster.client();
        let mut first = 0;
        for i in 0..200 {
            let rev = put(&client, &format!("a{i:03}"), &format!("v{i}")).await;
            if i == 0 {
                first = rev;
            }
        }
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        cluster.kill9(follower).unwrap();
        std::fs::remove_dir_all(cluster.data_dir(follower)).unwrap();
        // More writes (and snapshots) while it is gone; overwrite some keys too.
        for i in 0..150 {
            put(&client, &format!("b{i:03}"), "w").await;
        }
        for i in 0..20 {
            put(&client, &format!("a{i:03}"), "overwritten").await;
        }
        let leader_log = cluster.log(leader);
        assert!(
            leader_log.contains("log compacted"),
            "the leader never compacted its log\n{}",
            cluster.logs(20)
        );
        cluster.spawn(follower).unwrap();

        let fc = cluster.node_client(follower);
        cluster
            .eventually(40, "the wiped follower to catch up", || async {
                (local_get(&fc, "a019").await.as_deref() == Some("overwritten")
                    && local_get(&fc, "b149").await.as_deref() == Some("w"))
                .then_some(())
            })
            .await;
        assert_eq!(local_get(&fc, "a199").await.as_deref(), Some("v199"));
        assert_eq!(local_get(&fc, "a000").await.as_deref(), Some("overwritten"));
        // The snapshot carried the history: the first version is still readable there.
        assert_eq!(
            local_get_at(&fc, "a000", first).await.as_deref(),
            Some("v0")
        );
        let log = cluster.log(follower);
        assert!(
            log.contains("snapshot chain received and installed")
                && log.contains("state restored from a snapshot"),
            "the follower caught up without a snapshot\n{}",
            cluster.logs(20)
        );
        // Every member ends with the same state (same hash at the same revision).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut hashes = Vec::new();
            for id in 1..=3 {
                hashes.push(hash(&cluster, id).await);
            }
            if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members disagree: {hashes:?}\n{}",
                cluster.logs(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The rejoined member keeps working: a later write reaches it too.
        put(&client, "after", "x").await;
        eventually(10, "a write after the rejoin", || async {
            (local_get(&fc, "after").await.as_deref() == Some("x")).then_some(())
        })
        .await;
    })
    .await
    .expect("test timed out");
}
