//! The `etcd-client` crate's Lease, Lock and Election APIs against real `raftd` processes:
//! grant, put with a lease, keep-alive and time-to-live from a follower (forwarded to the
//! leader), list, revoke; expiry; a lock taken in turn by two leases; an election with a
//! second candidate waiting, proclaim, observe and resign; a lease kept alive while its
//! leader is killed.

#![allow(clippy::print_stderr)]

use etcd_client::{
    GetOptions, LeaseTimeToLiveOptions, LockOptions, ProclaimOptions, PutOptions, ResignOptions,
};
use raft_bench::binaries::test_raftd as raftd;
use raft_bench::cluster::{Cluster, Server};
use raft_node::testing::{CALM, eventually};
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn start(dir: &tempfile::TempDir) -> Cluster {
    Cluster::start(Server::Raftd(raftd()), dir.path(), 3, &CALM).expect("cluster starts")
}

/// A member that is not the leader.
async fn follower(cluster: &Cluster) -> (u64, u64) {
    let leader = cluster.serving(Duration::from_secs(30)).await.unwrap();
    let f = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    (leader, f)
}

/// A client of member `id` once it answers (a member may still be starting when the
/// leader already is).
async fn client_of(cluster: &Cluster, id: u64, timeout: Duration) -> etcd_client::Client {
    let c = cluster.etcd_client(&[id], timeout).await.unwrap();
    eventually(20, "the member to answer", || {
        let mut c = c.clone();
        async move { c.get("ready", None).await.ok().map(|_| ()) }
    })
    .await;
    c
}

async fn count(c: &mut etcd_client::Client, prefix: &str) -> usize {
    c.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_serializable()),
    )
    .await
    .expect("get")
    .kvs()
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_api_from_a_follower() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let cluster = start(&dir);
        let (_, f) = follower(&cluster).await;
        let mut c = client_of(&cluster, f, Duration::from_secs(5)).await;
        let lease = c.lease_grant(60, None).await.unwrap();
        assert_eq!(lease.ttl(), 60);
        let id = lease.id();
        for k in ["l/a", "l/b"] {
            c.put(k, "v", Some(PutOptions::new().with_lease(id)))
                .await
                .unwrap();
        }
        let kv = c.get("l/a", None).await.unwrap();
        assert_eq!(kv.kvs()[0].lease(), id);
        let ttl = c
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        assert_eq!(ttl.granted_ttl(), 60);
        assert!((55..=60).contains(&ttl.ttl()), "{}", ttl.ttl());
        assert_eq!(ttl.keys(), [b"l/a".to_vec(), b"l/b".to_vec()]);
        let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
        for _ in 0..3 {
            keeper.keep_alive().await.unwrap();
            let r = stream.message().await.unwrap().unwrap();
            assert_eq!((r.id(), r.ttl()), (id, 60));
        }
        let ids: Vec<i64> = c
            .leases()
            .await
            .unwrap()
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        assert_eq!(ids, [id]);
        c.lease_revoke(id).await.unwrap();
        assert_eq!(count(&mut c, "l/").await, 0);
        assert_eq!(c.lease_time_to_live(id, None).await.unwrap().ttl(), -1);
        // Keep-alives of a lease that is gone answer TTL 0, as etcd's do.
        keeper.keep_alive().await.unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 0);
        let err = c
            .put("l/c", "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("requested lease not found"),
            "{err}"
        );

        // A short lease expires by itself.
        let short = c.lease_grant(2, None).await.unwrap().id();
        c.put("s/k", "v", Some(PutOptions::new().with_lease(short)))
            .await
            .unwrap();
        let t0 = Instant::now();
        eventually(20, "the short lease to expire", || {
            let mut c = c.clone();
            async move { (count(&mut c, "s/").await == 0).then_some(()) }
        })
        .await;
        assert!(t0.elapsed() >= Duration::from_millis(1500));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_apis() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let cluster = start(&dir);
        let (leader, f) = follower(&cluster).await;
        let mut a = client_of(&cluster, f, Duration::from_secs(30)).await;
        let mut b = client_of(&cluster, leader, Duration::from_secs(30)).await;
        let la = a.lease_grant(30, None).await.unwrap().id();
        let lb = b.lease_grant(30, None).await.unwrap().id();

        let held = a
            .lock("job", Some(LockOptions::new().with_lease(la)))
            .await
            .unwrap();
        assert_eq!(held.key(), format!("job/{la:x}").as_bytes());
        let waiter = {
            let mut b = b.clone();
            tokio::spawn(async move {
                let r = b
                    .lock("job", Some(LockOptions::new().with_lease(lb)))
                    .await
                    .unwrap();
                (Instant::now(), r.key().to_vec())
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "the lock is held");
        let unlocked = Instant::now();
        a.unlock(held.key()).await.unwrap();
        let (at, key) = waiter.await.unwrap();
        assert!(at >= unlocked);
        assert_eq!(key, format!("job/{lb:x}").as_bytes());
        b.unlock(key).await.unwrap();

        let mut observe = b.observe("leader").await.unwrap();
        let won = a.campaign("leader", "a1", la).await.unwrap();
        let lk = won.leader().unwrap().clone();
        assert_eq!(lk.lease(), la);
        let first = observe.message().await.unwrap().unwrap();
        assert_eq!(first.kv().unwrap().value(), b"a1");
        let second = {
            let mut b = b.clone();
            tokio::spawn(async move { b.campaign("leader", "b1", lb).await.unwrap() })
        };
        a.proclaim("a2", Some(ProclaimOptions::new().with_leader(lk.clone())))
            .await
            .unwrap();
        assert_eq!(
            observe
                .message()
                .await
                .unwrap()
                .unwrap()
                .kv()
                .unwrap()
                .value(),
            b"a2"
        );
        let now = a.leader("leader").await.unwrap();
        assert_eq!(now.kv().unwrap().value(), b"a2");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the second candidate waits");
        a.resign(Some(ResignOptions::new().with_leader(lk)))
            .await
            .unwrap();
        let next = second.await.unwrap();
        assert_eq!(next.leader().unwrap().lease(), lb);
        assert_eq!(
            observe
                .message()
                .await
                .unwrap()
                .unwrap()
                .kv()
                .unwrap()
                .value(),
            b"b1"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_lease_survives_its_leader_being_killed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = start(&dir);
        let (leader, f) = follower(&cluster).await;
        let mut c = client_of(&cluster, f, Duration::from_secs(5)).await;
        let id = c.lease_grant(3, None).await.unwrap().id();
        c.put("k/alive", "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
        cluster.kill9(leader).unwrap();
        // Keep-alives every second for 8 s (well past the TTL), through the election: a
        // failed one is sent again on a new stream, as clients do.
        let until = Instant::now() + Duration::from_secs(8);
        let mut ttls = Vec::new();
        while Instant::now() < until {
            let answered = async {
                let (mut k, mut s) = c.lease_keep_alive(id).await.ok()?;
                k.keep_alive().await.ok()?;
                s.message().await.ok()?.map(|r| r.ttl())
            }
            .await;
            match answered {
                Some(ttl) => {
                    ttls.push(ttl);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            assert_eq!(count(&mut c, "k/").await, 1, "the key is alive");
        }
        assert!(ttls.len() >= 4 && ttls.iter().all(|t| *t == 3), "{ttls:?}");
    })
    .await
    .expect("test timed out");
}

/// The lease workloads of the load generator run and complete operations (a small scale
/// check, not a benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_load_workloads_run() {
    use raft_bench::lease_load::{LeaseSpec, LeaseWorkload, run};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let cluster = start(&dir);
        cluster.serving(Duration::from_secs(30)).await.unwrap();
        for id in cluster.running() {
            client_of(&cluster, id, Duration::from_secs(5)).await;
        }
        for workload in [LeaseWorkload::Churn, LeaseWorkload::KeepAlive] {
            let spec = LeaseSpec {
                workload,
                clients: 4,
                duration: Duration::from_secs(1),
            };
            let s = run(&cluster.endpoints(), &spec).await.unwrap();
            // Some operations and no error, however slow the machine (the rate is the
            // benchmark's).
            assert!(s.ops > 0 && s.errors == 0, "{workload:?}: {s:?}");
            eprintln!(
                "{workload:?}: {:.0}/s p50 {:.2} ms",
                s.per_sec(),
                s.quantile_ms(0.5)
            );
        }
        // Churn leaves no lease behind.
        let mut c = cluster
            .etcd_client(&[], Duration::from_secs(5))
            .await
            .unwrap();
        let left = c.leases().await.unwrap().leases().len();
        assert_eq!(left, 4, "the keep-alive callers' leases only");
    })
    .await
    .expect("test timed out");
}
