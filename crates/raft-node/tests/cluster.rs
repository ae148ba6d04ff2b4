//! Real `raftd` processes on loopback driven through the etcd v3 API with our own client
//! (`raft_node::client`, the tonic clients of `raft_kv::pb`): basic operations from every
//! node, a leader killed with SIGKILL under load, membership changes with a learner,
//! raftctl, and etcdctl when it is installed. The same scenarios driven by the `etcd-client`
//! crate are in `bench/tests/etcd_client.rs` (that crate needs protoc, which xtask supplies).
//!
//! Over 700 lines on purpose: each scenario starts its own cluster through the helpers at
//! the top; the files beside it (watch, lease, auth, backup, ...) hold the other families.

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_kv::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, PutRequest, RequestOp, StatusRequest, TxnRequest, compare, request_op,
};
use raft_node::client::ClientError;
use raft_node::testing::{
    Cluster, Raftd, etcdctl, etcdctl_once, etcdctl_retried, eventually, free_addr, get, http, put,
    put_once, scrape,
};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// raftd with its metrics endpoint and a calmer election timer (loaded CI machines).
fn raftd() -> Raftd {
    Raftd::new(env!("CARGO_BIN_EXE_raftd"))
        .token("it")
        .with_metrics()
        .calm()
}

/// Starts `n` members of a new cluster.
fn start(n: u64) -> Cluster {
    Cluster::start(raftd(), n).expect("raftd starts")
}

/// Waits until some member reports being the leader; returns its id.
async fn wait_leader(cluster: &Cluster) -> u64 {
    cluster
        .leader(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs raftctl against `endpoints` (comma-separated): (exit code, stdout).
fn raftctl(endpoints: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raftctl"))
        .args(["--endpoints", endpoints, "--timeout", "5s"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_txn_from_every_node() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(3);
        wait_leader(&cluster).await;
        for id in 1..=3u64 {
            let c = cluster.node_client(id);
            let key = format!("key-{id}");
            let rev = put(&c, &key, "v1").await.unwrap();
            assert!(rev > 0);
            // Every node sees the write (linearizable reads).
            for other in 1..=3u64 {
                let got = get(&cluster.node_client(other), &key, false).await.unwrap();
                assert_eq!(got.as_deref(), Some("v1"), "node {other} reading {key}");
            }
            // Txn: compare value, then put.
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Value as i32,
                    key: Bytes::from(key.clone()),
                    target_union: Some(compare::TargetUnion::Value(Bytes::from("v1"))),
                    range_end: Bytes::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: Bytes::from(key.clone()),
                        value: Bytes::from("v2"),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            };
            let run_txn = || {
                c.kv(|mut k| {
                    let t = txn.clone();
                    async move { k.txn(t).await.map(|r| r.into_inner()) }
                })
            };
            let r = run_txn().await.unwrap();
            assert!(r.succeeded);
            let h = r.header.unwrap();
            assert_eq!(h.member_id, id);
            assert_ne!(h.cluster_id, 0);
            assert!(h.raft_term > 0);
            // The same txn fails now (value is v2).
            assert!(!run_txn().await.unwrap().succeeded);
            assert_eq!(get(&c, &key, false).await.unwrap().as_deref(), Some("v2"));
            let del = DeleteRangeRequest {
                key: Bytes::from(key.clone()),
                ..Default::default()
            };
            let d = c
                .kv(|mut k| {
                    let d = del.clone();
                    async move { k.delete_range(d).await.map(|r| r.into_inner()) }
                })
                .await
                .unwrap();
            assert_eq!(d.deleted, 1);
            assert_eq!(get(&c, &key, false).await.unwrap(), None);
        }
        // Oversized requests are refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
        let big = "x".repeat(2 << 20);
        match put(&cluster.client(), "big", &big).await {
            Err(ClientError::Status(s)) => assert!(
                matches!(
                    s.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::OutOfRange
                ),
                "{s:?}"
            ),
            other => panic!("a 2 MiB put was not refused: {other:?}"),
        }
    })
    .await
    .expect("test took longer than 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_no_acknowledged_write() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = start(3);
        let leader = wait_leader(&cluster).await;
        let client = cluster.client();
        // Writes acknowledged so far; the writer runs until told to stop.
        let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let client = client.clone();
            let (acks, stop) = (acks.clone(), stop.clone());
            tokio::spawn(async move {
                // (key, value) of every acknowledged put.
                let mut acked = Vec::new();
                // What the writer saw, for the failure message: (ms since start, what).
                let mut trace = Vec::new();
                let started = Instant::now();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("load-{i:05}");
                    let sent = started.elapsed().as_millis();
                    match put(&client, &key, &i.to_string()).await {
                        Ok(_) => {
                            acked.push((key, i.to_string()));
                            acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) if trace.len() < 10 => {
                            trace.push(format!("{sent}-{} ms: {e}", started.elapsed().as_millis()))
                        }
                        Err(_) => {}
                    }
                    i += 1;
                }
                (acked, trace)
            })
        };
        // Kill the leader once writes are flowing, and stop once the survivors have
        // acknowledged more: the load spans the kill by what happened, not by sleeps.
        let acked_at_least = |n: usize, what: &'static str| {
            let acks = acks.clone();
            eventually(30, what, move || {
                let acks = acks.clone();
                async move { (acks.load(std::sync::atomic::Ordering::Relaxed) >= n).then_some(()) }
            })
        };
        acked_at_least(10, "10 writes acknowledged before the kill").await;
        cluster.kill9(leader).unwrap();
        let at_kill = acks.load(std::sync::atomic::Ordering::Relaxed);
        acked_at_least(at_kill + 10, "10 writes acknowledged after the kill").await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (acked, trace) = writer.await.unwrap();
        println!(
            "{} writes acknowledged; failed puts: {trace:?}",
            acked.len()
        );
        let survivors: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
        let survivor_client = cluster.client_of(&survivors);
        // A new leader serves writes.
        eventually(15, "a write after the leader died", || {
            let c = survivor_client.clone();
            async move { put(&c, "after", "kill").await.ok() }
        })
        .await;
        // Every acknowledged write is there with the value it wrote.
        for (key, value) in &acked {
            let got = get(&survivor_client, key, false).await.unwrap();
            assert_eq!(
                got.as_ref(),
                Some(value),
                "acknowledged write {key} lost or changed"
            );
        }
        // The old leader comes back and catches up.
        cluster.spawn(leader).unwrap();
        let back = cluster.node_client(leader);
        eventually(20, "the restarted node to catch up", || {
            let c = back.clone();
            async move {
                (get(&c, "after", true).await.ok().flatten().as_deref() == Some("kill"))
                    .then_some(())
            }
        })
        .await;
        let (key, value) = acked.last().unwrap();
        assert_eq!(get(&back, key, true).await.unwrap().as_ref(), Some(value));
    })
    .await
    .expect("test took longer than 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_is_promoted_and_another_member_is_removed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = start(3);
        wait_leader(&cluster).await;
        let client = cluster.client();
        put(&client, "before-join", "1").await.unwrap();
        let peer = free_addr().unwrap();
        let add = MemberAddRequest {
            peer_ur_ls: vec![format!("http://{peer}")],
            is_learner: true,
        };
        let added = client
            .cluster(|mut c| {
                let a = add.clone();
                async move { c.member_add(a).await.map(|r| r.into_inner()) }
            })
            .await
            .unwrap();
        let new_id = added.member.unwrap().id;
        assert_eq!(new_id, 4);
        cluster.spawn_joining(new_id, peer).unwrap();
        let learner = cluster.node_client(new_id);
        eventually(20, "the learner to catch up", || {
            let c = learner.clone();
            async move { get(&c, "before-join", true).await.ok().flatten() }
        })
        .await;
        client
            .cluster(|mut c| async move {
                c.member_promote(MemberPromoteRequest { id: new_id })
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .unwrap();
        let removed = client
            .cluster(|mut c| async move {
                c.member_remove(MemberRemoveRequest { id: 3 })
                    .await
                    .map(|r| r.into_inner().members)
            })
            .await;
        // The client tries the next endpoint when one answers UNAVAILABLE (node 3 may have
        // led and stepped down as it removed itself): a retry of a removal that took
        // effect answers "member not found", and the member list tells the outcome.
        let members = match removed {
            Ok(members) => members,
            Err(ClientError::Status(s)) if s.code() == tonic::Code::NotFound => {
                eventually(15, "the member list after the removal", || {
                    let c = cluster.client();
                    async move {
                        c.cluster(|mut c| async move {
                            c.member_list(MemberListRequest { linearizable: true })
                                .await
                                .map(|r| r.into_inner().members)
                        })
                        .await
                        .ok()
                    }
                })
                .await
            }
            Err(e) => panic!("member remove: {e}"),
        };
        let ids: Vec<(u64, bool)> = members.iter().map(|m| (m.id, m.is_learner)).collect();
        assert_eq!(ids, [(1, false), (2, false), (4, false)]);
        cluster.forget(3).unwrap();
        // The new configuration serves writes, readable on the promoted member. Node 3 may
        // have led: then a new leader is elected first (and "leader changed" is retried).
        let client = cluster.client();
        eventually(15, "a write in the new configuration", || {
            let c = client.clone();
            async move { put(&c, "after-change", "ok").await.ok() }
        })
        .await;
        let list = cluster
            .client()
            .cluster(|mut c| async move {
                c.member_list(MemberListRequest { linearizable: true })
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .unwrap();
        assert_eq!(list.members.len(), 3);
        assert_eq!(
            get(&cluster.node_client(4), "after-change", false)
                .await
                .unwrap()
                .as_deref(),
            Some("ok")
        );
    })
    .await
    .expect("test took longer than 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_basic_operations() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping etcdctl_basic_operations: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(3);
        wait_leader(&cluster).await;
        let eps = cluster.endpoints().join(",");
        // Retries (for up to 20 s) what a leader change on a loaded machine makes fail, and
        // says whether it had to.
        let run_retried = |args: &[&str]| -> (String, bool) {
            let (out, retried) = etcdctl_retried(&etcdctl, &eps, args, None);
            assert!(out.ok, "etcdctl {args:?} failed: {}", out.stderr);
            (out.stdout, retried)
        };
        let run = |args: &[&str]| run_retried(args).0;
        assert_eq!(run(&["put", "foo", "bar"]), "OK\n");
        assert_eq!(run(&["get", "foo"]), "foo\nbar\n");
        assert_eq!(run(&["put", "foo2", "baz"]), "OK\n");
        assert_eq!(run(&["get", "foo", "--prefix"]), "foo\nbar\nfoo2\nbaz\n");
        // A retried delete may find its first attempt applied (the answer was lost).
        match run_retried(&["del", "foo", "--prefix"]) {
            (out, false) => assert_eq!(out, "2\n"),
            (out, true) => assert!(out == "2\n" || out == "0\n", "{out}"),
        }
        assert_eq!(run(&["get", "foo"]), "");
        assert!(run(&["member", "list"]).lines().count() == 3);
        // Per-endpoint commands with the URL form of etcd's docs: etcdctl 3.4 sends the
        // whole URL as the HTTP/2 `:authority`, which raftd must take as etcd does.
        for ep in cluster.endpoints() {
            let out = etcdctl_once(
                &etcdctl,
                &format!("http://{ep}"),
                &["endpoint", "status"],
                None,
            );
            assert!(
                out.ok && out.stdout.starts_with(&format!("http://{ep}, ")),
                "etcdctl endpoint status with an http:// URL: {}{}",
                out.stdout,
                out.stderr
            );
        }
    })
    .await
    .expect("test took longer than 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_without_quorum_answers_unavailable_at_once() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // Node 1 of a 3-member cluster whose other members never start: no leader, ever.
        let mut cluster = Cluster::new(raftd(), 3).unwrap();
        cluster.spawn(1).unwrap();
        let c = cluster.node_client(1);
        let status = eventually(10, "the lone node to answer", || {
            let c = c.clone();
            async move {
                c.maintenance(|mut m| async move {
                    m.status(StatusRequest {}).await.map(|r| r.into_inner())
                })
                .await
                .ok()
            }
        })
        .await;
        assert_eq!(status.leader, 0);
        // At once, not after waiting out the request timeout: the answer is the refusal
        // of a node that knows no leader ("no leader"), not a timed-out request ("request
        // timed out", also UNAVAILABLE). No wall-clock bound.
        match put_once(&c, "k", "v").await {
            Err(ClientError::Unavailable(why)) => assert!(why.contains("no leader"), "{why}"),
            other => panic!("expected UNAVAILABLE, got {other:?}"),
        }
        match get(&c, "k", false).await {
            Err(ClientError::Unavailable(why)) => assert!(why.contains("no leader"), "{why}"),
            other => panic!("expected UNAVAILABLE, got {other:?}"),
        }
    })
    .await
    .expect("test took longer than 60 s");
}

/// With no endpoint reachable, `raftctl status` says so and fails, without asking again for
/// a node's own view (which only waits for the connection a second time).
#[test]
fn raftctl_status_with_no_reachable_endpoint_fails_without_asking_again() {
    let addr = free_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raftctl"))
        .args(["--endpoints", &addr, "--timeout", "5s", "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no endpoint reachable"), "{stderr}");
    assert!(!stderr.contains("own view"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftctl_commands() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(3);
        let leader = wait_leader(&cluster).await;
        let eps = cluster.endpoints().join(",");
        let ctl = |args: &[&str]| raftctl(&eps, args);
        assert_eq!(ctl(&["put", "a/1", "x"]), (Some(0), "OK\n".into()));
        assert_eq!(ctl(&["put", "a/2", "y"]), (Some(0), "OK\n".into()));
        assert_eq!(ctl(&["get", "a/1"]), (Some(0), "a/1\nx\n".into()));
        assert_eq!(
            ctl(&["get", "a/", "--prefix"]),
            (Some(0), "a/1\nx\na/2\ny\n".into())
        );
        assert_eq!(
            ctl(&["get", "a/", "--prefix", "--keys-only", "--serializable"]).1,
            "a/1\na/2\n"
        );
        assert_eq!(
            ctl(&["cas", "a/1", "z", "--expect-value", "x"]),
            (Some(0), "OK\n".into())
        );
        assert_eq!(
            ctl(&["cas", "a/1", "w", "--expect-value", "x"]),
            (Some(1), "FAILED\ncurrent value: z (version 2)\n".into())
        );
        assert_eq!(
            ctl(&["cas", "new", "1", "--expect-absent"]),
            (Some(0), "OK\n".into())
        );
        assert_eq!(ctl(&["del", "a/", "--prefix"]), (Some(0), "2\n".into()));
        // Members publish their names and client URLs shortly after they start (liveness).
        eventually(20, "every member to publish its attributes", || {
            let (code, members) = ctl(&["member", "list"]);
            let published = members
                .lines()
                .filter(|l| l.contains(", started, "))
                .count();
            async move { (code == Some(0) && published == 3).then_some(()) }
        })
        .await;
        let (code, members) = ctl(&["member", "list"]);
        assert_eq!(code, Some(0));
        assert_eq!(members.lines().count(), 3, "{members}");
        assert!(
            members.starts_with("1, started, node-1, http://"),
            "{members}"
        );
        let (code, status) = ctl(&["status"]);
        assert_eq!(code, Some(0), "{status}");
        let lines: Vec<&str> = status.lines().collect();
        assert!(lines[0].starts_with("ID  NAME"), "{status}");
        assert_eq!(
            lines.len(),
            5,
            "a header, 3 members, the leader line: {status}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains(" leader ")).count(),
            1,
            "{status}"
        );
        let target = if leader == 1 { 2 } else { 1 };
        let (code, out) = ctl(&["move-leader", &target.to_string()]);
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(
            out,
            format!("Leadership transferred from {leader} to {target}\n")
        );
        assert_eq!(wait_leader(&cluster).await, target);
    })
    .await
    .expect("test took longer than 60 s");
}

/// Node `id`'s `/status` JSON.
async fn status_json(cluster: &Cluster, id: u64) -> serde_json::Value {
    let (code, body) = http(cluster, id, "/status").await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The rows of `raftctl status` when its view is consistent: one leader that every member
/// follows, and the closing line naming it with its term.
fn consistent_status(out: &str) -> Option<Vec<Vec<String>>> {
    let lines: Vec<&str> = out.lines().collect();
    let rows: Vec<Vec<String>> = lines
        .get(1..4)?
        .iter()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let leaders: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r.get(3).map(String::as_str) == Some("leader"))
        .collect();
    let [l] = leaders.as_slice() else { return None };
    let ok = rows.iter().all(|r| r.len() == 9 && r[4] == l[0])
        && lines.get(4) == Some(&format!("leader: {} (term {})", l[0], l[5]).as_str());
    ok.then_some(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_status_and_profile_endpoints() {
    use raft_metrics::{net, runtime, wal};
    tokio::time::timeout(Duration::from_secs(150), async {
        let cluster = start(3);
        let first = wait_leader(&cluster).await;
        // Proposals and their latencies are counted where the client request arrives.
        let c = cluster.node_client(first);
        for i in 0..20 {
            put(&c, &format!("m/{i}"), "v").await.unwrap();
        }

        // /metrics of the node that took the writes (and led): counters only grow.
        let (m, text) = scrape(&cluster, first).await;
        let at_least = |name: &str, min: f64| {
            let v = m.sum(name).unwrap_or_else(|| panic!("no {name}:\n{text}"));
            assert!(v >= min, "{name} = {v} < {min}:\n{text}");
        };
        assert!(
            text.contains(&format!("# HELP {} ", runtime::PROPOSALS)),
            "{text}"
        );
        at_least(runtime::PROPOSALS, 20.0);
        at_least(
            &format!("{}_count", runtime::PROPOSE_TO_COMMIT_SECONDS),
            20.0,
        );
        at_least(
            &format!("{}_count", runtime::PROPOSE_TO_APPLY_SECONDS),
            20.0,
        );
        at_least(&format!("{}_count", wal::FSYNC_SECONDS), 1.0);
        at_least(
            &format!("{}_count", runtime::APPEND_ENTRIES_PER_MESSAGE),
            1.0,
        );
        at_least(runtime::TERM, 1.0);
        at_least(runtime::COMMIT_INDEX, 20.0);
        at_least(runtime::ELECTIONS_WON, 1.0);
        at_least(runtime::LEADER_CHANGES, 1.0);
        at_least(net::BYTES_AFTER_COMPRESSION, 1.0);
        for kind in ["heartbeat", "append"] {
            assert!(
                m.sum_where(runtime::MESSAGES_SENT, "kind", kind).unwrap() > 0.0,
                "{kind}"
            );
        }

        // The current leader's gauges and status; a follower's.
        eventually(30, "the leader's gauges and status", || async {
            let leader = wait_leader(&cluster).await;
            let (m, _) = scrape(&cluster, leader).await;
            let lags = m
                .samples
                .iter()
                .filter(|s| s.name == runtime::PEER_REPLICATION_LAG)
                .count();
            let st = status_json(&cluster, leader).await;
            (m.sum(runtime::IS_LEADER) == Some(1.0)
                && lags == 2
                && st["id"] == leader
                && st["role"] == "leader"
                && st["leader"] == leader
                && st["membership"]["voters"].as_array().map(Vec::len) == Some(3)
                && st["peers"].as_array().map(Vec::len) == Some(3))
            .then_some(())
        })
        .await;
        eventually(30, "a follower's gauges and status", || async {
            let leader = wait_leader(&cluster).await;
            let follower = if leader == 1 { 2 } else { 1 };
            let (m, _) = scrape(&cluster, follower).await;
            let st = status_json(&cluster, follower).await;
            (m.sum(runtime::IS_LEADER) == Some(0.0)
                && m.sum_where(runtime::MESSAGES_RECEIVED, "kind", "heartbeat")
                    .unwrap_or(0.0)
                    > 0.0
                && st["role"] == "follower"
                && st["peers"].as_array().map(Vec::len) == Some(0))
            .then_some(())
        })
        .await;

        // Liveness and readiness.
        for id in 1..=3 {
            assert_eq!(http(&cluster, id, "/health").await.0, 200);
            eventually(30, "every node ready", || async {
                let (code, body) = http(&cluster, id, "/health?ready").await;
                let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
                (code == 200 && v["ready"] == true).then_some(())
            })
            .await;
        }

        // Bad requests get clear answers.
        assert_eq!(http(&cluster, first, "/nope").await.0, 404);
        assert_eq!(http(&cluster, first, "/ready?max_lag=x").await.0, 400);
        assert_eq!(http(&cluster, first, "/debug/pprof/heap").await.0, 501);
        for bad in [
            "seconds=0",
            "seconds=61",
            "seconds=abc",
            "seconds=1&format=png",
        ] {
            let (code, body) = http(&cluster, first, &format!("/debug/pprof/profile?{bad}")).await;
            assert_eq!(code, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        }

        // CPU profiles under load: one at a time; a one-second one decodes as pprof with
        // samples; the SVG form is a flame graph.
        let load = {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..1_000_000u64 {
                    if put_once(&c, &format!("p/{}", i % 50), "x").await.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        };
        let (a, b) = tokio::join!(
            http(&cluster, first, "/debug/pprof/profile?seconds=2"),
            http(&cluster, first, "/debug/pprof/profile?seconds=2&format=svg"),
        );
        let mut codes = [a.0, b.0];
        codes.sort();
        assert_eq!(codes, [200, 409]);
        let (code, body) = http(&cluster, first, "/debug/pprof/profile?seconds=1").await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip-compressed");
        let p = raft_node::profile::decode(&body).unwrap();
        assert_eq!(p.sample_type.len(), 2);
        assert_eq!(p.period, 10_000_000);
        assert!(!p.sample.is_empty(), "no CPU samples under load");
        assert!(p.sample.iter().all(|s| !s.location_id.is_empty()));
        let (code, svg) = http(&cluster, first, "/debug/pprof/profile?seconds=1&format=svg").await;
        assert_eq!(code, 200);
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains("<rect"));
        load.abort();

        // raftctl status: one row per member from Admin/ClusterStatus; raftctl metrics.
        let eps = cluster.endpoints().join(",");
        let ctl = |args: &[&str]| raftctl(&eps, args);
        let (code, status) = ctl(&["status"]);
        assert_eq!(code, Some(0), "{status}");
        let header: Vec<&str> = status.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "ID", "NAME", "ENDPOINT", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "LAG"
            ]
        );
        let rows = eventually(30, "a consistent raftctl status", || async {
            let (code, out) = ctl(&["status"]);
            if code != Some(0) {
                return None;
            }
            consistent_status(&out)
        })
        .await;
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row[0], (i + 1).to_string());
            assert_eq!(row[1], format!("node-{}", i + 1));
            assert!(row[6].parse::<u64>().unwrap() >= 20, "{row:?}");
            row[8].parse::<u64>().expect("a lag");
        }
        let (code, summary) = ctl(&["metrics", "--address", cluster.metrics(first)]);
        assert_eq!(code, Some(0), "{summary}");
        assert!(summary.starts_with("role "), "{summary}");
        let proposals = summary
            .lines()
            .find_map(|l| l.strip_prefix("proposals"))
            .unwrap_or_else(|| panic!("{summary}"));
        let n: u64 = proposals
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n >= 20, "{summary}");
        let commit = summary
            .lines()
            .find(|l| l.starts_with("propose -> commit"))
            .unwrap();
        assert!(
            commit.contains(" ms") && !commit.contains("p50 -"),
            "{summary}"
        );
        let (code, _) = ctl(&["metrics", "--address", "127.0.0.1:1"]);
        assert_eq!(code, Some(1));
    })
    .await
    .expect("test took longer than 150 s");
}

/// Fail-stop: when a write to the WAL fails (its fsync returns EIO, through raftd's
/// testing-only fault switch), the member's Raft node stops and raftd exits with an error
/// naming why, instead of staying up and serving reads from its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_fsync_makes_raftd_exit_with_the_reason() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let trigger = dir.path().join("fsync-eio");
        let launch = raftd().env(raft_node::node::faults::FSYNC_EIO_ENV, &trigger);
        let mut cluster = Cluster::start(launch, 1).expect("raftd starts");
        wait_leader(&cluster).await;
        let c = cluster.client();
        put(&c, "before", "1")
            .await
            .expect("a put before the fault");
        std::fs::write(&trigger, b"").unwrap();
        let r = put_once(&c, "after", "2").await;
        assert!(
            r.is_err(),
            "a write whose fsync failed was acknowledged: {r:?}"
        );
        let status = eventually(20, "raftd to exit after the failed fsync", || {
            let exited = cluster.exited(1).unwrap();
            async move { exited }
        })
        .await;
        assert!(!status.success(), "raftd exited with {status}");
        let log = cluster.log(1);
        assert!(
            log.contains("the raft node stopped"),
            "the exit names its reason:\n{}",
            cluster.logs(20)
        );
    })
    .await
    .expect("test timed out");
}
