//! Cluster scenarios: election, proposals from every node, reads, isolation, restart,
//! membership, transfer, shutdown and group commit.
//!
//! Over 700 lines on purpose: the scenarios share the in-process harness (`harness.rs`) and
//! each is short; the file is their index.

use crate::harness::{ChanTransport, Cluster, KvSm, KvState, Router, config, put};
use raft_core::ReadMode;
use raft_core::{Membership, Role};
use raft_runtime::Error;
use raft_runtime::{Inbound, MemStore, RaftNode};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_from_every_node_are_applied_and_read_back() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    for id in 1..=3u64 {
        let prev = c
            .handle(id)
            .propose(put(&format!("k{id}"), &format!("v{id}")))
            .await
            .expect("propose");
        assert_eq!(prev, None);
    }
    // The response is the state machine's result: overwriting returns the previous value.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let prev = c
        .handle(follower)
        .propose(put("k1", "again"))
        .await
        .unwrap();
    assert_eq!(prev.as_deref(), Some("v1"));
    // Linearizable reads on every node see every acknowledged write.
    for id in 1..=3u64 {
        assert_eq!(c.get(id, "k1").await.as_deref(), Some("again"));
        assert_eq!(c.get(id, "k2").await.as_deref(), Some("v2"));
        assert_eq!(c.get(id, "k3").await.as_deref(), Some("v3"));
    }
    // A serializable read needs no round but sees only what this node applied.
    let n = c
        .handle(leader)
        .serializable_read(|sm: &crate::harness::KvSm| sm.state.lock().unwrap().map.len())
        .await
        .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_answer_appends_from_the_log_writer_once_durable() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    for i in 0..20 {
        c.handle(leader)
            .propose(put(&format!("k{i}"), "v"))
            .await
            .expect("propose");
    }
    // The answers that waited for a log write left from the WAL's writer thread as soon as
    // the write was durable, not after a trip through the follower's event loop.
    let threads = c.router.append_answer_threads.lock().unwrap().clone();
    assert!(
        threads.contains("raft-wal-writer"),
        "append answers were sent from {threads:?}"
    );
    // Everything acknowledged is there on every node.
    for id in 1..=3u64 {
        assert_eq!(c.get(id, "k19").await.as_deref(), Some("v"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_another_node_sees_the_write_just_acknowledged() {
    let c = Arc::new(Cluster::start(3).await);
    c.wait_leader().await;
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let id = w % 3 + 1;
            for i in 0..10 {
                let key = format!("w{w}");
                c.handle(id)
                    .propose(put(&key, &i.to_string()))
                    .await
                    .unwrap();
                // A read on another node after the write returned must see it (or later).
                let other = (id % 3) + 1;
                let got = c.get(other, &key).await.unwrap();
                assert_eq!(got, i.to_string());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_fails_pending_proposals_and_no_acknowledged_write_is_lost() {
    let c = Cluster::start(3).await;
    let old = c.wait_leader().await;
    for i in 0..20 {
        c.handle(old)
            .propose(put(&format!("a{i}"), "x"))
            .await
            .unwrap();
    }
    c.router.isolate(old);
    // Proposals on the isolated leader cannot commit: they fail once it steps down.
    let h = c.handle(old).clone();
    let pending = tokio::spawn(async move { h.propose(put("lost", "maybe")).await });
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = c.wait_leader_among(&others).await;
    assert_ne!(new, old);
    let r = pending.await.unwrap();
    assert!(
        matches!(r, Err(Error::LeaderChanged)),
        "the isolated leader's proposal must fail cleanly, got {r:?}"
    );
    // The majority keeps serving, from the new leader and through the other follower.
    for i in 0..10 {
        let via = others[i % 2];
        c.handle(via)
            .propose(put(&format!("b{i}"), "y"))
            .await
            .unwrap();
    }
    c.router.heal();
    // The old leader rejoins as a follower and catches up; nothing acknowledged is lost.
    for id in 1..=3u64 {
        for i in 0..20 {
            assert_eq!(c.get(id, &format!("a{i}")).await.as_deref(), Some("x"));
        }
        for i in 0..10 {
            assert_eq!(c.get(id, &format!("b{i}")).await.as_deref(), Some("y"));
        }
    }
    let s = c.handle(old).status().await.unwrap();
    assert_ne!(s.role, Role::Leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_recovers_from_its_wal_without_reapplying() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    for i in 0..30 {
        c.handle(leader)
            .propose(put(&format!("k{i}"), "1"))
            .await
            .unwrap();
    }
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let commit = c.handle(leader).status().await.unwrap().commit;
    c.wait_applied(follower, commit).await;
    let state = c.stop(follower).await;
    let applied = state.lock().unwrap().applied;
    assert!(applied >= 31);
    // Written while it is down.
    for i in 30..40 {
        c.handle(leader)
            .propose(put(&format!("k{i}"), "2"))
            .await
            .unwrap();
    }
    c.launch(follower, state.clone(), None).await;
    for i in 0..40 {
        let want = if i < 30 { "1" } else { "2" };
        assert_eq!(
            c.get(follower, &format!("k{i}")).await.as_deref(),
            Some(want)
        );
    }
    let seen = state.lock().unwrap().seen.clone();
    assert!(
        seen.iter().all(|i| *i > applied),
        "entries at or below the applied index {applied} were applied again: {seen:?}"
    );
    // The restarted node's log still holds the old entries: it can serve them to others.
    let s = c.handle(follower).status().await.unwrap();
    assert!(s.last_index >= commit + 10);

    // A full restart of every node from its WAL keeps everything too.
    let mut states = Vec::new();
    for id in 1..=3u64 {
        states.push((id, c.stop(id).await));
    }
    for (id, st) in states {
        // A fresh state machine: everything is applied again from the log.
        let fresh = if id == 1 {
            Arc::new(Mutex::new(crate::harness::KvState::default()))
        } else {
            st
        };
        c.launch(id, fresh, Some(Membership::with_voters(1..=3)))
            .await;
    }
    c.wait_leader().await;
    for id in 1..=3u64 {
        assert_eq!(c.get(id, "k39").await.as_deref(), Some("2"));
        assert_eq!(c.get(id, "k0").await.as_deref(), Some("1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_as_learner_and_is_promoted() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    for i in 0..10 {
        c.handle(leader)
            .propose(put(&format!("k{i}"), "v"))
            .await
            .unwrap();
    }
    // The new node starts with an empty log and no membership: it waits for the leader.
    c.launch(4, Arc::default(), None).await;
    // A follower forwards the change to the leader; an unsafe change is refused at once.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let everyone = raft_core::ConfChange {
        transition: raft_core::ConfChangeTransition::Auto,
        ops: (1..=3).map(raft_core::ConfChangeOp::RemoveNode).collect(),
    };
    match c.handle(follower).change_membership(everyone).await {
        Err(Error::ConfChangeRejected(_)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let m = c
        .handle(follower)
        .add_learner(4)
        .await
        .expect("add learner");
    assert!(m.learners.contains(&4));
    let commit = c.handle(leader).status().await.unwrap().commit;
    c.wait_applied(4, commit).await;
    assert_eq!(
        c.handle(4)
            .serializable_read(|sm: &crate::harness::KvSm| sm
                .state
                .lock()
                .unwrap()
                .map
                .get("k9")
                .cloned())
            .await
            .unwrap()
            .as_deref(),
        Some("v")
    );
    let m = c.handle(leader).add_voter(4).await.expect("promote");
    assert!(m.voters.contains(&4) && !m.learners.contains(&4));
    // The state machines learn each membership as they apply its change.
    let commit = c.handle(leader).status().await.unwrap().commit;
    c.wait_applied(4, commit).await;
    let seen = c.nodes[&4].state.lock().unwrap().memberships.clone();
    assert_eq!(seen.last(), Some(&m));
    assert!(seen.iter().any(|m| m.learners.contains(&4)));
    // The promoted node serves proposals (forwarded) and linearizable reads.
    c.handle(4).propose(put("from4", "yes")).await.unwrap();
    for id in 1..=4u64 {
        assert_eq!(c.get(id, "from4").await.as_deref(), Some("yes"));
    }
    // And can be removed again (through a follower).
    let m = c.handle(follower).remove_node(4).await.expect("remove");
    assert!(!m.members().contains(&4));
}

/// A member that applied a change answers its client before the leader has applied it;
/// the client's next change may reach the leader then. The leader holds it until the
/// previous one is applied instead of refusing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaching_the_leader_before_it_applied_the_previous_one_waits_for_it() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    c.handle(leader).propose(put("a", "1")).await.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // Hold the leader's state machine: its apply thread blocks on this lock.
    let state = c.nodes[&leader].state.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _held = state.lock().unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    locked_rx.recv().unwrap();
    // The first change commits and the follower applies it and answers, while the leader
    // cannot apply it.
    let m = c
        .handle(follower)
        .add_learner(4)
        .await
        .expect("add learner 4");
    assert!(m.learners.contains(&4));
    // The second change reaches the leader now.
    let second = {
        let h = c.handle(leader).clone();
        tokio::spawn(async move { h.add_learner(5).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the leader answered before it applied the first change"
    );
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let m = second.await.unwrap().expect("add learner 5");
    assert!(m.learners.contains(&4) && m.learners.contains(&5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_moves_the_leader() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    c.handle(leader).propose(put("a", "1")).await.unwrap();
    let target = (1..=3).find(|id| *id != leader).unwrap();
    c.handle(leader)
        .transfer_leader(target)
        .await
        .expect("transfer");
    assert_eq!(c.wait_leader().await, target);
    assert_eq!(c.handle(target).status().await.unwrap().role, Role::Leader);
    c.handle(leader).propose(put("a", "2")).await.unwrap();
    assert_eq!(c.get(target, "a").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_uncommitted_proposals_and_fails_them() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    c.handle(leader).propose(put("a", "1")).await.unwrap();
    // Cut the followers off so the leader's proposals cannot commit.
    for id in (1..=3).filter(|id| *id != leader) {
        c.router.isolate(id);
    }
    let proposed = c.handle(leader).stats().proposals;
    let mut pending = Vec::new();
    for i in 0..20 {
        let h = c.handle(leader).clone();
        pending.push(tokio::spawn(async move {
            h.propose(put(&format!("p{i}"), "x")).await
        }));
    }
    // Shut down once the loop has proposed all 20 (they are pending in the core, not
    // queued in the channel).
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.handle(leader).stats().proposals < proposed + 20 {
        assert!(
            Instant::now() < deadline,
            "the 20 proposals never reached the loop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The proposals can never commit (the followers are cut off): a shutdown that waited
    // for them would never return. The timeout only turns such a hang into a failure; how
    // fast shutdown is is not checked here.
    tokio::time::timeout(Duration::from_secs(30), c.handle(leader).shutdown())
        .await
        .expect("shutdown does not wait for proposals that cannot commit")
        .expect("shutdown");
    for p in pending {
        let r = p.await.unwrap();
        assert!(
            matches!(r, Err(Error::Shutdown) | Err(Error::LeaderChanged)),
            "pending proposal must fail, got {r:?}"
        );
    }
    assert!(matches!(
        c.handle(leader).propose(put("b", "1")).await,
        Err(Error::Shutdown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_log_writes() {
    let c = Arc::new(Cluster::start(3).await);
    let leader = c.wait_leader().await;
    c.handle(leader).propose(put("warm", "up")).await.unwrap();
    let before = c.handle(leader).stats();
    let n = 1000u64;
    // Every proposal is handed to its node within one poll of one task (not 1000 spawned
    // tasks, whose start the scheduler may spread over many log writes on a loaded
    // machine): what is measured is the runtime's batching, not the test's scheduling.
    let proposals = (0..n).map(|i| {
        let h = c.handle((i % 3) + 1).clone();
        async move { h.propose(put(&format!("c{i}"), "v")).await }
    });
    for r in futures_util::future::join_all(proposals).await {
        r.expect("proposal");
    }
    let after = c.handle(leader).stats();
    let writes = after.log_writes - before.log_writes;
    assert!(
        writes * 4 < n,
        "{n} proposals took {writes} log writes on the leader: batching is not working"
    );
    assert_eq!(c.get(1, "c999").await.as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_after_the_leader_snapshotted_past_it() {
    let mut c = Cluster::start_with(3, 50).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let state = c.stop(follower).await;
    for i in 0..200 {
        c.handle(leader)
            .propose(put(&format!("s{i}"), "v"))
            .await
            .unwrap();
    }
    // The leader compacted its log past what the stopped follower has.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let first = c.snapshots.lock().unwrap().keys().next_back().copied();
        if first.is_some_and(|i| i >= 150) {
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot was built");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.launch(follower, state, None).await;
    assert_eq!(c.get(follower, "s199").await.as_deref(), Some("v"));
    assert_eq!(c.get(follower, "s0").await.as_deref(), Some("v"));
}

/// Small batches a local client waits for are applied on the event loop when the apply
/// thread is idle, the rest on the apply thread: with snapshots every few entries and
/// writes from every node at once, both paths interleave, and every snapshot is still
/// captured at exactly the index it names (the harness's state machine checks it) and
/// every node ends with the same state. Run with the loop's applying on and off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_applied_on_the_loop_or_the_apply_thread_stay_in_log_order() {
    for inline in [0, 64] {
        let mut c = Cluster::start_with(0, 3).await;
        c.apply_inline_max_entries = inline;
        for id in 1..=3u64 {
            let state = Arc::new(Mutex::new(KvState::default()));
            c.launch(id, state, Some(Membership::with_voters(1..=3)))
                .await;
        }
        c.wait_leader().await;
        let mut tasks = Vec::new();
        for id in 1..=3u64 {
            let h = c.handle(id).clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    h.propose(put(&format!("n{id}-{i}"), &format!("{i}")))
                        .await
                        .expect("propose");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            c.snapshots.lock().unwrap().len() > 10,
            "inline {inline}: snapshots were taken"
        );
        for id in 1..=3u64 {
            for n in 1..=3u64 {
                assert_eq!(
                    c.get(id, &format!("n{n}-39")).await.as_deref(),
                    Some("39"),
                    "inline {inline}: node {id} reads node {n}'s last write"
                );
            }
        }
        let maps: Vec<_> = (1..=3u64)
            .map(|id| c.nodes[&id].state.lock().unwrap().map.clone())
            .collect();
        assert!(
            maps.windows(2).all(|w| w[0] == w[1]),
            "inline {inline}: every node holds the same state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_made_before_an_election_wait_for_the_leader() {
    let c = Cluster::start(3).await;
    // No leader yet: the proposal is held (not refused) until one is elected.
    let prev = c.handle(2).propose(put("early", "bird")).await.unwrap();
    assert_eq!(prev, None);
    assert_eq!(c.get(3, "early").await.as_deref(), Some("bird"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_reads_are_served_and_see_preceding_writes() {
    let c = Cluster::start_opts(
        3,
        0,
        ReadMode::Lease {
            drift_margin_ticks: 3,
        },
    )
    .await;
    let leader = c.wait_leader().await;
    for i in 0..5 {
        let via = (i % 3) + 1;
        c.handle(via)
            .propose(put("x", &i.to_string()))
            .await
            .unwrap();
        for id in 1..=3u64 {
            assert_eq!(c.get(id, "x").await, Some(i.to_string()));
        }
    }
    let index = c.handle(leader).read_index().await.unwrap();
    assert!(index >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_over_mem_store_restarts_without_reapplying() {
    let store = MemStore::new();
    let state = Arc::new(Mutex::new(KvState::default()));
    let start = |store, state| start_single(store, state, 1 << 16);
    let h = start(store.clone(), state.clone()).await;
    for i in 0..10 {
        h.propose(put(&format!("k{i}"), "v")).await.unwrap();
    }
    h.campaign().await.unwrap();
    let applied = h.read_index().await.unwrap();
    h.shutdown().await.unwrap();
    let h = start(store, state.clone()).await;
    h.propose(put("after", "restart")).await.unwrap();
    let seen = state.lock().unwrap().seen.clone();
    assert!(seen.iter().all(|i| *i > applied), "re-applied: {seen:?}");
    assert_eq!(state.lock().unwrap().map.len(), 11);
    assert_eq!(h.stats().proposals, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_under_load_lose_no_acknowledged_write() {
    let c = Arc::new(Cluster::start(3).await);
    c.wait_leader().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writes acknowledged so far, over all clients: the phases below wait on it.
    let acks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for w in 0..6u64 {
        let c = c.clone();
        let stop = stop.clone();
        let acks = acks.clone();
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                match c.handle(w % 3 + 1).propose(put(&key, "v")).await {
                    Ok(prev) => {
                        assert_eq!(prev, None, "{key} applied twice");
                        acked.push(key);
                        acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => assert!(
                        matches!(e, Error::LeaderChanged | Error::Timeout(_)) || e.is_retryable(),
                        "unexpected error {e:?}"
                    ),
                }
                i += 1;
            }
            acked
        }));
    }
    // Waits until `n` more writes are acknowledged than when called: the cluster (its
    // majority side, during a partition) makes progress under the load. The 30 s only
    // turn a cluster that stopped into a failure naming the phase.
    let progress = |n: u64, phase: String| {
        let acks = acks.clone();
        async move {
            let from = acks.load(std::sync::atomic::Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(30);
            while acks.load(std::sync::atomic::Ordering::Relaxed) < from + n {
                assert!(
                    Instant::now() < deadline,
                    "no {n} acknowledged writes {phase}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // Cut off each node in turn (the leader among them), then heal: each cut comes after
    // writes were acknowledged, and lasts until the other two acknowledged more.
    for round in 0..4u64 {
        progress(20, format!("before cut {round}")).await;
        let victim = if round % 2 == 0 {
            c.handle(1).stats().leader.unwrap_or(1)
        } else {
            round % 3 + 1
        };
        c.router.isolate(victim);
        progress(20, format!("with node {victim} cut off (round {round})")).await;
        c.router.heal();
    }
    progress(20, "after the last heal".into()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in clients {
        acked.extend(t.await.unwrap());
    }
    let leader = c.wait_leader().await;
    c.handle(leader).read_index().await.unwrap();
    for id in 1..=3u64 {
        let keys = acked.clone();
        let missing = c
            .handle(id)
            .linearizable_read(move |sm: &crate::harness::KvSm| {
                let s = sm.state.lock().unwrap();
                keys.iter().filter(|k| !s.map.contains_key(*k)).count()
            })
            .await
            .unwrap();
        assert_eq!(missing, 0, "node {id} lost acknowledged writes");
    }
}

/// Waits until the node refuses proposals with its fatal error (it stops on its own after
/// the failure it just answered with), then checks that it keeps refusing them.
async fn stopped_for_good(h: &raft_runtime::RaftHandle<KvSm>) {
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match h.propose(put("b", "2")).await {
                Err(Error::Fatal(_)) => break,
                Ok(prev) => panic!("a proposal after the fatal error was applied ({prev:?})"),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(stopped.is_ok(), "the node kept going after a fatal error");
    let r = h.propose(put("c", "3")).await;
    assert!(matches!(r, Err(Error::Fatal(_))), "got {r:?}");
}

/// Starts a one-node cluster over `store` with `state` as its state machine's state.
async fn start_single(
    store: MemStore,
    state: Arc<Mutex<KvState>>,
    max_apply_lag: u64,
) -> raft_runtime::RaftHandle<KvSm> {
    let (_tx, rx) = mpsc::channel(16);
    let (_utx, urx) = mpsc::channel(16);
    state.lock().unwrap().seen.clear();
    let sm = KvSm {
        state,
        snapshots: Arc::default(),
    };
    let transport = Arc::new(ChanTransport::new(Arc::new(Router::default())));
    let mut cfg = config(1, Some(Membership::with_voters([1])), 0, ReadMode::Safe);
    cfg.max_apply_lag = max_apply_lag;
    let inbound = Inbound {
        messages: rx,
        priority: None,
        unreachable: urx,
    };
    RaftNode::start(cfg, store, sm, transport, inbound)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_wait_while_the_state_machine_lags_and_still_complete() {
    let state = Arc::new(Mutex::new(KvState::default()));
    let h = start_single(MemStore::new(), state.clone(), 1).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.propose(put(&format!("k{i}"), "v")).await
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("proposal completes despite backpressure");
    }
    // Status and reads are served even while proposals are held back.
    h.status().await.unwrap();
    assert_eq!(state.lock().unwrap().map.len(), 300);
    h.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_state_machine_stops_the_node_with_a_fatal_error() {
    let state = Arc::new(Mutex::new(KvState::default()));
    let h = start_single(MemStore::new(), state, 1 << 16).await;
    h.propose(put("a", "1")).await.unwrap();
    // Not UTF-8: the test state machine fails (as a disk error would).
    let r = h.propose(bytes::Bytes::from_static(&[0xff, 0xfe])).await;
    assert!(matches!(r, Err(Error::Fatal(_))), "got {r:?}");
    stopped_for_good(&h).await;
    // What a server embedding the node waits on to stop with it.
    let why = tokio::time::timeout(Duration::from_secs(10), h.stopped())
        .await
        .expect("the node reports that it stopped");
    assert!(
        why.as_deref().is_some_and(|w| w.contains("apply failed")),
        "{why:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_failing_after_its_answer_stops_the_node_and_keeps_the_answer() {
    let state = Arc::new(Mutex::new(KvState::default()));
    let h = start_single(MemStore::new(), state, 1 << 16).await;
    h.propose(put("a", "1")).await.unwrap();
    // Answered (the test machine calls it a bad command), then its write fails.
    let r = h
        .propose(bytes::Bytes::from_static(b"fail-after-answer"))
        .await;
    assert_eq!(r.unwrap(), Some("bad command".to_string()));
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match h.propose(put("b", "2")).await {
                Err(Error::Fatal(_)) => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(stopped.is_ok(), "the node kept going after a failed write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_that_never_answers_stops_the_node() {
    let state = Arc::new(Mutex::new(KvState::default()));
    let h = start_single(MemStore::new(), state, 1 << 16).await;
    h.propose(put("a", "1")).await.unwrap();
    let r = h.propose(bytes::Bytes::from_static(b"no-answer")).await;
    assert!(matches!(r, Err(Error::Fatal(_))), "got {r:?}");
    stopped_for_good(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_applies_new_settings_and_refuses_fixed_ones() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    let base = || config(leader, None, 0, ReadMode::Safe);
    let h = c.handle(leader);
    assert_eq!(h.timeout(), Duration::from_secs(4));

    let mut tick = base();
    tick.tick = Duration::from_millis(20);
    match h.reconfigure(tick).await {
        Err(Error::InvalidConfig { field: "tick", .. }) => {}
        other => panic!("changing the tick: {other:?}"),
    }
    let mut quorum = base();
    quorum.raft.check_quorum = false;
    quorum.request_timeout = Duration::from_secs(9);
    let err = h.reconfigure(quorum).await.unwrap_err();
    assert!(err.to_string().contains("check_quorum"), "{err}");
    assert_eq!(
        h.timeout(),
        Duration::from_secs(4),
        "a refusal changes nothing"
    );

    let mut new = base();
    new.raft.heartbeat_ticks = 5;
    new.raft.election_timeout_base_ticks = 40;
    new.request_timeout = Duration::from_secs(6);
    new.max_batch_proposals = 16;
    h.reconfigure(new).await.unwrap();
    assert_eq!(h.timeout(), Duration::from_secs(6));
    assert_eq!(
        h.with_timeout(Duration::from_secs(1)).timeout(),
        Duration::from_secs(1),
        "an explicit timeout wins"
    );
    // The cluster goes on under the new settings.
    for i in 0..20 {
        h.propose(put(&format!("r{i}"), "v")).await.unwrap();
    }
    assert_eq!(c.wait_leader().await, leader);
    assert_eq!(c.get(leader, "r19").await.as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_snapshot_covers_what_is_applied_and_repeats_while_nothing_changes() {
    // Threshold 0: only requests take snapshots.
    let c = Cluster::start_with(3, 0).await;
    let leader = c.wait_leader().await;
    for i in 0..20 {
        c.handle(leader)
            .propose(put(&format!("m{i}"), "v"))
            .await
            .unwrap();
    }
    // Clients are answered before the loop hears that their entry is applied: wait until
    // it has, so that nothing is applied between the two snapshots below.
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = c.handle(leader).stats();
            if s.applied >= s.commit {
                break s.applied;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let applied = settled.expect("the leader applies what it committed");
    let meta = c.handle(leader).snapshot().await.unwrap();
    assert!(meta.index >= applied, "{} < {applied}", meta.index);
    assert!(c.snapshots.lock().unwrap().contains_key(&meta.index));
    // Nothing applied since: the same snapshot answers again.
    let again = c.handle(leader).snapshot().await.unwrap();
    assert_eq!(again.index, meta.index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_byte_size_triggers_snapshots_and_can_be_changed_at_run_time() {
    // The entry-count trigger is off: only the byte size can start a snapshot.
    let c = Cluster::start(1).await;
    let leader = c.wait_leader().await;
    let h = c.handle(leader);
    let value = "x".repeat(400);
    for i in 0..30 {
        h.propose(put(&format!("a{i}"), &value)).await.unwrap();
    }
    assert!(
        c.snapshots.lock().unwrap().is_empty(),
        "no trigger is on: no snapshot"
    );
    let mut cfg = config(leader, None, 0, ReadMode::Safe);
    cfg.snapshot_log_bytes = 4000;
    h.reconfigure(cfg).await.unwrap();
    // About 410 bytes per entry: a snapshot every ~10 entries, the first one at once
    // (the 30 entries above count).
    for i in 0..40 {
        h.propose(put(&format!("b{i}"), &value)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let taken: Vec<u64> = c.snapshots.lock().unwrap().keys().copied().collect();
        if taken.len() >= 3 && taken.last().is_some_and(|i| *i >= 50) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "snapshots taken at {taken:?}, expected one every ~10 entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.get(leader, "b39").await.as_deref(), Some(value.as_str()));
}

/// A node holds back committed entries that no client on it waits for (here up to a
/// minute), so one state-machine write covers several; a linearizable read, or a client
/// waiting for its own proposal, gets them applied at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_nobody_waits_for_linger_but_reads_and_proposals_do_not() {
    let mut c = Cluster {
        router: Arc::new(Router::default()),
        nodes: Default::default(),
        snapshots: Arc::default(),
        dir: tempfile::tempdir().unwrap(),
        snapshot_threshold: 0,
        read_mode: ReadMode::Safe,
        apply_linger: Duration::from_secs(60),
        apply_inline_max_entries: raft_runtime::RuntimeConfig::new(1).apply_inline_max_entries,
    };
    for id in 1..=3 {
        let boot = Some(Membership::with_voters(1..=3));
        c.launch(id, Arc::new(Mutex::new(KvState::default())), boot)
            .await;
    }
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // The new leader's empty entry is applied at once everywhere (it is not a command), and
    // so is an entry that a follower learns committed in the same batch: let the empty entry
    // reach the follower's state machine first.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.handle(leader).status().await.unwrap();
        if s.commit == s.last_index && c.nodes[&follower].state.lock().unwrap().applied >= s.commit
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never applied the leader's first entry"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The leader's client waits for this entry: applied at once there.
    c.handle(leader).propose(put("a", "1")).await.unwrap();
    let index = c.nodes[&leader].state.lock().unwrap().applied;
    // The follower learns the commit within a tick or two, and holds the entry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.handle(follower).status().await.unwrap().commit < index {
        assert!(
            Instant::now() < deadline,
            "the follower never learned the commit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        c.nodes[&follower].state.lock().unwrap().applied < index,
        "the follower applied at once an entry nobody there waits for"
    );
    // A linearizable read there does not wait out the linger (4 s request timeout).
    assert_eq!(c.get(follower, "a").await.as_deref(), Some("1"));
    assert!(c.nodes[&follower].state.lock().unwrap().applied >= index);
    // Nor does a proposal made there.
    let prev = c.handle(follower).propose(put("a", "2")).await.unwrap();
    assert_eq!(prev.as_deref(), Some("1"));
    // Reads right after writes, again and again: none waits out the linger.
    for i in 0..5 {
        let key = format!("b{i}");
        c.handle(leader).propose(put(&key, "x")).await.unwrap();
        assert_eq!(c.get(follower, &key).await.as_deref(), Some("x"));
    }
}
