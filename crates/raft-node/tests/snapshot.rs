//! Snapshots end to end with real `raftd` processes on loopback: a follower whose data
//! directory was wiped rejoins a running cluster through a snapshot of the leader's
//! compacted log and converges to the same state.

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_kv::pb::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest, StatusRequest};
use raft_node::client::{Client, ClientError};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    child: Child,
    client: String,
    peer: String,
}

/// A cluster that snapshots every 50 applied entries and merges chains longer than 3.
struct Cluster {
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Node>,
    initial: String,
}

impl Cluster {
    fn start(n: u64) -> Cluster {
        let addrs: Vec<(String, String)> = (0..n)
            .map(|_| {
                (
                    format!("127.0.0.1:{}", free_port()),
                    format!("127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let initial: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("{}={p}", i + 1))
            .collect();
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            initial: initial.join(","),
        };
        for (i, (client, peer)) in addrs.into_iter().enumerate() {
            c.spawn(i as u64 + 1, client, peer);
        }
        c
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    fn spawn(&mut self, id: u64, client: String, peer: String) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_raftd"))
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen-client", &client, "--listen-peer", &peer])
            .args(["--initial-cluster", &self.initial])
            .args(["--cluster-token", "snap"])
            .args([
                "--heartbeat-interval",
                "50ms",
                "--election-timeout-base",
                "300ms",
            ])
            .args(["--snapshot-threshold", "50"])
            .args(["--set", "snapshot.max_chain_len=3"])
            .args(["--log-filter", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("raftd starts");
        self.nodes.insert(
            id,
            Node {
                child,
                client,
                peer,
            },
        );
    }

    fn client(&self) -> Client {
        Client::new(self.nodes.values().map(|p| p.client.clone()).collect())
            .with_timeout(Duration::from_secs(5))
    }

    fn node_client(&self, id: u64) -> Client {
        Client::new(vec![self.nodes[&id].client.clone()]).with_timeout(Duration::from_secs(5))
    }

    fn kill9(&mut self, id: u64) {
        let p = self.nodes.get_mut(&id).unwrap();
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.nodes.keys() {
            let text = self.log(*id);
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {id} ---\n"));
            out.push_str(&lines[lines.len().saturating_sub(20)..].join("\n"));
            out.push('\n');
        }
        out
    }

    async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for &id in self.nodes.keys() {
                let st = self
                    .node_client(id)
                    .maintenance(|mut c| async move {
                        c.status(StatusRequest {}).await.map(|r| r.into_inner())
                    })
                    .await;
                if let Ok(s) = st
                    && s.leader == id
                {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no leader\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Member `id`'s `HashKV` answer: (hash, revision).
    async fn hash(&self, id: u64) -> Option<(u32, i64)> {
        self.node_client(id)
            .maintenance(|mut c| async move {
                c.hash_kv(HashKvRequest { revision: 0 })
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .ok()
            .map(|r| (r.hash, r.hash_revision))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.nodes.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A put, retried while the cluster answers UNAVAILABLE (idempotent in these tests).
async fn put(c: &Client, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let req = PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    };
    loop {
        let r = c
            .kv(|mut k| {
                let req = req.clone();
                async move { k.put(req).await.map(|r| r.into_inner()) }
            })
            .await;
        match r {
            Ok(_) => return,
            Err(ClientError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("put {key}: {e}"),
        }
    }
}

/// A serializable (local) read on one member.
async fn local_get(c: &Client, key: &str) -> Option<String> {
    let req = RangeRequest {
        key: Bytes::from(key.to_string()),
        serializable: true,
        ..Default::default()
    };
    c.kv(|mut k| {
        let req = req.clone();
        async move { k.range(req).await.map(|r| r.into_inner()) }
    })
    .await
    .ok()?
    .kvs
    .first()
    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_rejoins_through_a_snapshot_and_converges() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = Cluster::start(3);
        let leader = cluster.leader().await;
        let client = cluster.client();
        for i in 0..200 {
            put(&client, &format!("a{i:03}"), &format!("v{i}")).await;
        }
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        cluster.kill9(follower);
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
            cluster.logs()
        );
        let p = cluster.nodes.remove(&follower).unwrap();
        cluster.spawn(follower, p.client, p.peer);

        let fc = cluster.node_client(follower);
        let deadline = Instant::now() + Duration::from_secs(40);
        while local_get(&fc, "a019").await.as_deref() != Some("overwritten")
            || local_get(&fc, "b149").await.as_deref() != Some("w")
        {
            assert!(
                Instant::now() < deadline,
                "the wiped follower did not catch up\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(local_get(&fc, "a199").await.as_deref(), Some("v199"));
        assert_eq!(local_get(&fc, "a000").await.as_deref(), Some("overwritten"));
        let log = cluster.log(follower);
        assert!(
            log.contains("snapshot chain received and installed")
                && log.contains("state restored from a snapshot"),
            "the follower caught up without a snapshot\n{}",
            cluster.logs()
        );
        // Every member ends with the same state (same hash at the same revision).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut hashes = Vec::new();
            for id in 1..=3 {
                hashes.push(cluster.hash(id).await);
            }
            if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members disagree: {hashes:?}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The rejoined member keeps working: a later write reaches it too.
        put(&client, "after", "x").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while local_get(&fc, "after").await.as_deref() != Some("x") {
            assert!(Instant::now() < deadline, "no write after the rejoin");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("test timed out");
}
