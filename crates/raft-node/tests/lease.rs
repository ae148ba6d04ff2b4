//! Leases, locks and elections on real `raftd` processes: etcdctl 3.4's `lease`, `put --lease`,
//! `lock` and `elect` commands (skipped when etcdctl is missing, failing under CI=true),
//! expiry at one revision on every member, leases across a leader killed with SIGKILL (none
//! expires early, kept-alive ones live on, checkpointed ones keep counting down), and the
//! Lock and Election gRPC services through raft-kv's generated clients.

#![allow(clippy::print_stdout)]

use raft_kv::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    WatchCreateRequest, WatchRequest, kv_client::KvClient, lease_client::LeaseClient,
    watch_client::WatchClient, watch_request::RequestUnion,
};
use raft_kv::pb::mvccpb::event::EventType;
use raft_kv::pb::v3electionpb::{
    CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest, election_client::ElectionClient,
};
use raft_kv::pb::v3lockpb::{LockRequest, UnlockRequest, lock_client::LockClient};
use raft_node::testing::{Cluster, Raftd, etcdctl, etcdctl_ok, etcdctl_once};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn raftd() -> Raftd {
    Raftd::new(env!("CARGO_BIN_EXE_raftd"))
        .token("lease")
        .calm()
}

fn start(launch: Raftd) -> Cluster {
    Cluster::start(launch, 3).expect("raftd starts")
}

async fn wait_leader(cluster: &Cluster) -> u64 {
    cluster
        .leader(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A member other than `leader`.
fn follower(cluster: &Cluster, leader: u64) -> u64 {
    cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower")
}

/// A channel to member `id`, once it listens (it may still be starting when the leader
/// already leads).
async fn channel(cluster: &Cluster, id: u64) -> Channel {
    let client = cluster.node_client(id);
    cluster
        .eventually(20, "the member to accept connections", || {
            let client = client.clone();
            async move { client.connect(&cluster.endpoint(id)).await.ok() }
        })
        .await
}

/// Retries `f` for up to 20 s while it fails with UNAVAILABLE (a leader change).
async fn retry<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s}"),
        }
    }
}

async fn grant(ch: &Channel, ttl: i64) -> i64 {
    let ch = ch.clone();
    retry(|| {
        let mut c = LeaseClient::new(ch.clone());
        async move {
            c.lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await
                .map(|r| r.into_inner().id)
        }
    })
    .await
}

async fn put(ch: &Channel, key: &str, lease: i64) -> i64 {
    let ch = ch.clone();
    retry(|| {
        let mut c = KvClient::new(ch.clone());
        let req = PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: b"v".to_vec().into(),
            lease,
            ..Default::default()
        };
        async move {
            c.put(req)
                .await
                .map(|r| r.into_inner().header.map_or(0, |h| h.revision))
        }
    })
    .await
}

/// The keys under `prefix` on one member (its own state).
async fn keys(ch: &Channel, prefix: &str) -> Vec<String> {
    let mut c = KvClient::new(ch.clone());
    let r = c
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: raft_node::client::prefix_end(prefix.as_bytes()).into(),
            serializable: true,
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    r.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// One keep-alive of lease `id` on a stream of its own, sent again until it is answered;
/// the TTL answered.
async fn keep_alive_once(ch: &Channel, id: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = LeaseClient::new(ch.clone());
        let req = tokio_stream::iter([LeaseKeepAliveRequest { id }]);
        if let Ok(resp) = c.lease_keep_alive(req).await
            && let Ok(Some(r)) = resp.into_inner().message().await
        {
            return r.ttl;
        }
        assert!(Instant::now() < deadline, "no keep-alive answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn time_to_live(ch: &Channel, id: i64) -> (i64, i64, Vec<String>) {
    let ch = ch.clone();
    let r = retry(|| {
        let mut c = LeaseClient::new(ch.clone());
        async move {
            c.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    let keys = r
        .keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    (r.ttl, r.granted_ttl, keys)
}

/// The delete events of the keys under `prefix` from revision `from` on, on one member:
/// (key, revision), until `n` of them arrived.
async fn deletes(ch: &Channel, prefix: &str, from: i64, n: usize) -> Vec<(String, i64)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec().into(),
            range_end: raft_node::client::prefix_end(prefix.as_bytes()).into(),
            start_revision: from,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = WatchClient::new(ch.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        let resp = stream.message().await.expect("watch stream").expect("open");
        for e in resp.events {
            if e.r#type == EventType::Delete as i32 {
                let kv = e.kv.expect("kv");
                out.push((
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                ));
            }
        }
    }
    drop(tx);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expires_at_one_revision_on_every_member() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(raftd());
        let leader = wait_leader(&cluster).await;
        let f = follower(&cluster, leader);
        let ch = channel(&cluster, f).await;
        let granted = Instant::now();
        let id = grant(&ch, 3).await;
        let mut rev = 0;
        for k in ["exp/a", "exp/b", "exp/c"] {
            rev = put(&ch, k, id).await;
        }
        put(&ch, "exp/stays", 0).await;
        // Forwarded to the leader: the keys and the TTL left.
        let (ttl, granted_ttl, attached) = time_to_live(&ch, id).await;
        assert_eq!(granted_ttl, 3);
        assert!((0..=3).contains(&ttl), "{ttl}");
        assert_eq!(attached, ["exp/a", "exp/b", "exp/c"]);
        // Expired by the leader, deleted through the log.
        cluster
            .eventually(20, "the lease's keys to expire", || {
                let ch = ch.clone();
                async move { (keys(&ch, "exp/").await == ["exp/stays"]).then_some(()) }
            })
            .await;
        assert!(
            granted.elapsed() >= Duration::from_secs(3),
            "expired after {:?}",
            granted.elapsed()
        );
        let mut seen = Vec::new();
        for id in cluster.running() {
            let ch = channel(&cluster, id).await;
            let d = deletes(&ch, "exp/", rev + 1, 3).await;
            let revs: Vec<i64> = d.iter().map(|(_, r)| *r).collect();
            assert!(revs.iter().all(|r| *r == revs[0]), "member {id}: {d:?}");
            let keys: Vec<&str> = d.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["exp/a", "exp/b", "exp/c"], "member {id}");
            seen.push(revs[0]);
        }
        assert!(seen.iter().all(|r| *r == seen[0]), "revisions {seen:?}");
        // The lease is gone everywhere.
        assert_eq!(time_to_live(&ch, id).await.0, -1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_outlive_a_killed_leader() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = start(raftd());
        let leader = wait_leader(&cluster).await;
        let f = follower(&cluster, leader);
        let ch = channel(&cluster, f).await;
        let granted = Instant::now();
        let kept = grant(&ch, 4).await;
        let plain = grant(&ch, 6).await;
        put(&ch, "fo/kept", kept).await;
        put(&ch, "fo/plain", plain).await;
        // Keep-alives from a member that survives, every second, forwarded to the leader
        // (a keep-alive that fails in the election is sent again, as clients do).
        let keeper = {
            let ch = ch.clone();
            tokio::spawn(async move {
                let mut ttls = Vec::new();
                let until = Instant::now() + Duration::from_secs(9);
                while Instant::now() < until {
                    ttls.push(keep_alive_once(&ch, kept).await);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                ttls
            })
        };
        cluster.kill9(leader).unwrap();
        let new_leader = wait_leader(&cluster).await;
        assert_ne!(new_leader, leader);
        // Neither lease expires early: the new leader gives every lease its TTL again.
        while granted.elapsed() < Duration::from_millis(5500) {
            assert_eq!(
                keys(&ch, "fo/").await,
                ["fo/kept", "fo/plain"],
                "at {:?}",
                granted.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let ttls = keeper.await.unwrap();
        assert!(ttls.iter().all(|t| *t == 4), "keep-alive TTLs {ttls:?}");
        // The lease nobody kept alive expires later, through the new leader.
        cluster
            .eventually(30, "the unrenewed lease to expire", || {
                let ch = ch.clone();
                async move { (keys(&ch, "fo/").await == ["fo/kept"]).then_some(()) }
            })
            .await;
        assert!(granted.elapsed() >= Duration::from_secs(6));
        assert_eq!(time_to_live(&ch, plain).await.0, -1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_keep_a_long_lease_counting_down_over_a_leader_change() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = start(raftd().args(["--set", "lease.checkpoint_interval=1s"]));
        let leader = wait_leader(&cluster).await;
        let f = follower(&cluster, leader);
        let ch = channel(&cluster, f).await;
        let id = grant(&ch, 40).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (before, granted, _) = time_to_live(&ch, id).await;
        assert_eq!(granted, 40);
        assert!((30..=35).contains(&before), "{before}");
        cluster.kill9(leader).unwrap();
        wait_leader(&cluster).await;
        // The new leader counts from the last checkpoint (taken at most a second or so
        // before the kill), plus an election timeout: not the full 40 seconds again.
        let (after, _, _) = time_to_live(&ch, id).await;
        assert!(
            after <= before + 2 && after >= before - 5,
            "{before} before the kill, {after} after\n{}",
            cluster.logs(60)
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_services() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(raftd());
        let leader = wait_leader(&cluster).await;
        let f = follower(&cluster, leader);
        let (ch, ch2) = (channel(&cluster, f).await, channel(&cluster, leader).await);
        let (l1, l2) = (grant(&ch, 30).await, grant(&ch, 30).await);
        // Lock: the second waiter waits until the first unlocks.
        let mut lock = LockClient::new(ch.clone());
        let held = lock
            .lock(LockRequest {
                name: b"lk".to_vec().into(),
                lease: l1,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(held.key, format!("lk/{l1:x}").as_bytes());
        let waiter = {
            let mut lock = LockClient::new(ch2.clone());
            tokio::spawn(async move {
                lock.lock(LockRequest {
                    name: b"lk".to_vec().into(),
                    lease: l2,
                })
                .await
                .map(|r| (Instant::now(), r.into_inner().key))
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "the lock is held");
        let released = Instant::now();
        lock.unlock(UnlockRequest { key: held.key }).await.unwrap();
        let (got_at, key) = waiter.await.unwrap().unwrap();
        assert!(got_at >= released);
        assert_eq!(key, format!("lk/{l2:x}").as_bytes());
        // A lock on a lease that does not exist is refused as etcd refuses the put.
        let err = lock
            .lock(LockRequest {
                name: b"lk2".to_vec().into(),
                lease: 12345,
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "etcdserver: requested lease not found");

        // Election: campaign, observe, a second candidate waits, proclaim, resign.
        let mut el = ElectionClient::new(ch.clone());
        let err = el
            .leader(LeaderRequest {
                name: b"el".to_vec().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "election: no leader");
        let mut observed = ElectionClient::new(ch2.clone())
            .observe(LeaderRequest {
                name: b"el".to_vec().into(),
            })
            .await
            .unwrap()
            .into_inner();
        let won = el
            .campaign(CampaignRequest {
                name: b"el".to_vec().into(),
                lease: l1,
                value: b"one".to_vec().into(),
            })
            .await
            .unwrap()
            .into_inner()
            .leader
            .unwrap();
        let first = observed.message().await.unwrap().unwrap();
        assert_eq!(first.kv.unwrap().value, b"one".as_slice());
        let second = {
            let mut el = ElectionClient::new(ch2.clone());
            tokio::spawn(async move {
                el.campaign(CampaignRequest {
                    name: b"el".to_vec().into(),
                    lease: l2,
                    value: b"two".to_vec().into(),
                })
                .await
                .map(|r| r.into_inner().leader.unwrap())
            })
        };
        el.proclaim(ProclaimRequest {
            leader: Some(won.clone()),
            value: b"uno".to_vec().into(),
        })
        .await
        .unwrap();
        let proclaimed = observed.message().await.unwrap().unwrap();
        assert_eq!(proclaimed.kv.unwrap().value, b"uno".as_slice());
        let now = el
            .leader(LeaderRequest {
                name: b"el".to_vec().into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(now.kv.unwrap().key, won.key);
        assert!(!second.is_finished(), "the second candidate waits");
        el.resign(ResignRequest {
            leader: Some(won.clone()),
        })
        .await
        .unwrap();
        let next = second.await.unwrap().unwrap();
        assert_eq!(next.lease, l2);
        let took_over = observed.message().await.unwrap().unwrap();
        assert_eq!(took_over.kv.unwrap().value, b"two".as_slice());
        // The old leader key no longer leads.
        let err = el
            .proclaim(ProclaimRequest {
                leader: Some(won),
                value: b"x".to_vec().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "election: not leader");
        // Revoking the leader's lease ends its leadership: no leader is left.
        LeaseClient::new(ch.clone())
            .lease_revoke(raft_kv::pb::etcdserverpb::LeaseRevokeRequest { id: l2 })
            .await
            .unwrap();
        let err = el
            .leader(LeaderRequest {
                name: b"el".to_vec().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "election: no leader");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_commands() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping etcdctl_lease_commands: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(raftd());
        let leader = wait_leader(&cluster).await;
        // A follower only: keep-alives and TTL queries are forwarded to the leader.
        let ep = cluster.endpoint(follower(&cluster, leader));
        let out = etcdctl_ok(&etcdctl, &ep, &["lease", "grant", "100"]);
        let id = out
            .strip_prefix("lease ")
            .and_then(|s| s.strip_suffix(" granted with TTL(100s)\n"))
            .unwrap_or_else(|| panic!("{out:?}"))
            .to_string();
        assert_eq!(id.len(), 16, "{id}");
        assert_eq!(
            etcdctl_ok(&etcdctl, &ep, &["put", "--lease", &id, "lk1", "v1"]),
            "OK\n"
        );
        assert_eq!(
            etcdctl_ok(&etcdctl, &ep, &["put", "--lease", &id, "lk2", "v2"]),
            "OK\n"
        );
        let ttl = etcdctl_ok(&etcdctl, &ep, &["lease", "timetolive", &id, "--keys"]);
        assert!(
            ttl.starts_with(&format!("lease {id} granted with TTL(100s), remaining(")),
            "{ttl}"
        );
        assert!(ttl.ends_with("s), attached keys([lk1 lk2])\n"), "{ttl}");
        let list = etcdctl_ok(&etcdctl, &ep, &["lease", "list"]);
        assert_eq!(list, format!("found 1 leases\n{id}\n"));
        let ka = etcdctl_ok(&etcdctl, &ep, &["lease", "keep-alive", "--once", &id]);
        assert_eq!(ka, format!("lease {id} keepalived with TTL(100)\n"));
        // A TTL above etcd's maximum is refused with etcd's message.
        let out = etcdctl_once(&etcdctl, &ep, &["lease", "grant", "9000000001"], None);
        assert!(!out.ok);
        assert!(
            out.stderr.contains("etcdserver: too large lease TTL"),
            "{}",
            out.stderr
        );
        assert_eq!(
            etcdctl_ok(&etcdctl, &ep, &["lease", "revoke", &id]),
            format!("lease {id} revoked\n")
        );
        assert_eq!(etcdctl_ok(&etcdctl, &ep, &["get", "lk", "--prefix"]), "");
        assert_eq!(
            etcdctl_ok(&etcdctl, &ep, &["lease", "timetolive", &id]),
            format!("lease {id} already expired\n")
        );
        assert_eq!(
            etcdctl_ok(&etcdctl, &ep, &["lease", "list"]),
            "found 0 leases\n"
        );
        // A put naming a lease that is gone is refused.
        let out = etcdctl_once(&etcdctl, &ep, &["put", "--lease", &id, "k", "v"], None);
        assert!(
            out.stderr.contains("requested lease not found"),
            "{}",
            out.stderr
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_elect() {
    let Some(etcdctl) = etcdctl() else {
        println!("skipping etcdctl_lock_and_elect: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start(raftd());
        wait_leader(&cluster).await;
        let eps = cluster.endpoints();
        // Two `etcdctl lock` runs of a command on different members never overlap.
        let spawn_lock = |ep: &str| {
            Command::new(&etcdctl)
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", ep, "lock", "mutex1", "--", "sh", "-c"])
                .arg("echo start $(date +%s%N); sleep 1; echo end $(date +%s%N)")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn_lock(&eps[0]), spawn_lock(&eps[1]));
        let spans: Vec<(u128, u128)> = [a, b]
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(
                    out.status.success(),
                    "{text} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let t = |what: &str| -> u128 {
                    text.lines()
                        .find_map(|l| l.strip_prefix(what))
                        .unwrap_or_else(|| panic!("{text}"))
                        .trim()
                        .parse()
                        .unwrap()
                };
                (t("start "), t("end "))
            })
            .collect();
        let (x, y) = (spans[0], spans[1]);
        assert!(
            x.1 <= y.0 || y.1 <= x.0,
            "the lock was held twice: {spans:?}"
        );

        // `etcdctl elect`: the first candidate leads, the second waits; an observer sees
        // each leader's value; the first resigns on SIGINT and the second takes over.
        let spawn = |args: &[&str], ep: &str| {
            Command::new(&etcdctl)
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", ep])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut observer = spawn(&["elect", "-l", "el1"], &eps[2]);
        let (otx, orx) = std::sync::mpsc::channel();
        let observed = observer.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(observed).lines().map_while(Result::ok) {
                let _ = otx.send(l);
            }
        });
        let mut first = spawn(&["elect", "el1", "alpha"], &eps[0]);
        let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
        let key = lines.next().unwrap().unwrap();
        assert!(key.starts_with("el1/"), "{key}");
        assert_eq!(lines.next().unwrap().unwrap(), "alpha");
        let mut second = spawn(&["elect", "el1", "beta"], &eps[1]);
        let (tx, rx) = std::sync::mpsc::channel();
        let out2 = second.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out2).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), l));
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        assert!(rx.try_recv().is_err(), "the second candidate waits");
        let resigned = Instant::now();
        let _ = Command::new("kill")
            .args(["-INT", &first.id().to_string()])
            .status();
        let (at, key2) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(at >= resigned);
        assert!(key2.starts_with("el1/") && key2 != key, "{key2}");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().1, "beta");
        let _ = first.wait();
        let _ = second.kill();
        let _ = second.wait();
        // The observer sees each leader's value (its watch may trail the candidates a little).
        let mut values = Vec::new();
        while values.len() < 2 {
            match orx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) if l.starts_with("el1/") => {}
                Ok(l) => values.push(l),
                Err(e) => panic!("the observer printed {values:?}, then {e}"),
            }
        }
        assert_eq!(values, ["alpha", "beta"]);
        let _ = observer.kill();
        let _ = observer.wait();
    })
    .await
    .expect("test timed out");
}
