//! The `etcd-client` crate's Watch API against real `raftd` processes: a replay from an old
//! revision with `prev_kv`, live events, several watches on one stream with client-chosen
//! ids, cancel, progress, a compacted start, a hundred watchers of one key over ten streams,
//! a watcher that resumes on another member after its member (the leader) is killed, and
//! the fan-out workload of `raft-bench load` at a small scale.
//!
//! The raftd binary comes from `RAFT_BENCH_RAFTD`, as for `etcd_client.rs`.

#![allow(clippy::print_stderr)]

use etcd_client::{Client, CompactionOptions, EventType, WatchOptions, WatchResponse, WatchStream};
use raft_bench::binaries::test_raftd as raftd;
use raft_bench::cluster::{Cluster, Server};
use raft_bench::watch_load::{self, Layout, WatchSpec};
use raft_node::testing::CALM;
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn start(dir: &tempfile::TempDir) -> Cluster {
    Cluster::start(Server::Raftd(raftd()), dir.path(), 3, &CALM).expect("cluster starts")
}

/// Reads `stream` until `done` holds for what arrived (20 s at most).
async fn read_until(
    stream: &mut WatchStream,
    mut done: impl FnMut(&[WatchResponse]) -> bool,
) -> Vec<WatchResponse> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while !done(&out) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "got {out:?}");
        if let Ok(r) =
            tokio::time::timeout(left.min(Duration::from_millis(500)), stream.message()).await
        {
            out.push(r.expect("watch stream").expect("watch stream open"));
        }
    }
    out
}

/// (watch id, type, key, value, prev value, revision) of an event.
type Seen = (i64, &'static str, String, String, Option<String>, i64);

/// Every event in `resps`.
fn events(resps: &[WatchResponse]) -> Vec<Seen> {
    resps
        .iter()
        .flat_map(|r| r.events().iter().map(move |e| (r.watch_id(), e)))
        .map(|(id, e)| {
            let kv = e.kv().unwrap();
            let kind = match e.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            (
                id,
                kind,
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
                kv.mod_revision(),
            )
        })
        .collect()
}

async fn rev_of_put(c: &mut Client, key: &str, value: &str) -> i64 {
    c.put(key, value, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_api_replay_live_ids_cancel_progress_compaction_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(&dir);
    tokio::time::timeout(TEST_TIMEOUT, async {
        let leader = cluster.serving(Duration::from_secs(30)).await.unwrap();
        let follower = (1..=3).find(|i| *i != leader).unwrap();
        let mut c = cluster
            .etcd_client(&[leader], Duration::from_secs(5))
            .await
            .unwrap();
        // Watches on a follower: served from its applied state.
        let mut w = cluster
            .etcd_client(&[follower], Duration::from_secs(5))
            .await
            .unwrap();
        let r1 = rev_of_put(&mut c, "a/1", "x").await;
        let r2 = rev_of_put(&mut c, "a/1", "y").await;
        let mut stream = w
            .watch(
                "a/",
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_prev_key()
                        .with_start_revision(r1),
                ),
            )
            .await
            .unwrap();
        let got = read_until(&mut stream, |r| events(r).len() >= 2).await;
        assert!(got[0].created());
        let h = got[0].header().unwrap();
        assert_eq!(h.member_id(), follower);
        // The follower's own applied revision, which may still be behind the leader's.
        assert!(h.revision() >= 1 && h.revision() <= r2 && h.raft_term() >= 1);
        let id = got[0].watch_id();
        assert_eq!(
            events(&got),
            vec![
                (id, "PUT", "a/1".into(), "x".into(), None, r1),
                (id, "PUT", "a/1".into(), "y".into(), Some("x".into()), r2),
            ]
        );
        // Several watches on the stream, with client-chosen ids; a duplicate is refused.
        stream
            .watch("b", Some(WatchOptions::new().with_watch_id(5)))
            .await
            .unwrap();
        stream
            .watch("c", Some(WatchOptions::new().with_watch_id(5)))
            .await
            .unwrap();
        let got = read_until(&mut stream, |r| r.len() >= 2).await;
        assert_eq!(
            (got[0].watch_id(), got[0].created(), got[0].canceled()),
            (5, true, false)
        );
        assert_eq!(
            (got[1].watch_id(), got[1].created(), got[1].canceled()),
            (-1, true, true)
        );
        let r3 = rev_of_put(&mut c, "b", "1").await;
        c.delete("a/1", None).await.unwrap();
        let got = read_until(&mut stream, |r| events(r).len() >= 2).await;
        let evs = events(&got);
        assert!(evs.contains(&(5, "PUT", "b".into(), "1".into(), None, r3)));
        assert!(
            evs.iter().any(|e| e.0 == id
                && e.1 == "DELETE"
                && e.2 == "a/1"
                && e.4.as_deref() == Some("y"))
        );
        // Progress: watch id -1, the revision everything has been sent up to.
        stream.request_progress().await.unwrap();
        let got = read_until(&mut stream, |r| r.iter().any(|r| r.watch_id() == -1)).await;
        let p = got.iter().find(|r| r.watch_id() == -1).unwrap();
        assert!(p.header().unwrap().revision() > r3 && p.events().is_empty());
        // Cancel.
        stream.cancel(5).await.unwrap();
        let got = read_until(&mut stream, |r| r.iter().any(|r| r.canceled())).await;
        assert!(got.iter().any(|r| r.watch_id() == 5 && r.canceled()));

        // Fan-out: 100 watchers of one key over 10 streams on all members each get every put.
        let mut streams = Vec::new();
        for s in 0..10u64 {
            let mut cl = cluster
                .etcd_client(&[1 + s % 3], Duration::from_secs(5))
                .await
                .unwrap();
            let mut st = cl.watch("hot", Some(WatchOptions::new())).await.unwrap();
            for _ in 1..10 {
                st.watch("hot", None).await.unwrap();
            }
            read_until(&mut st, |r| r.iter().filter(|r| r.created()).count() == 10).await;
            streams.push(st);
        }
        let mut revs = Vec::new();
        for i in 0..50 {
            revs.push(rev_of_put(&mut c, "hot", &i.to_string()).await);
        }
        for st in &mut streams {
            let got = read_until(st, |r| events(r).len() >= 500).await;
            let evs = events(&got);
            for wid in 0..10 {
                let mine: Vec<i64> = evs.iter().filter(|e| e.0 == wid).map(|e| e.5).collect();
                assert_eq!(mine, revs, "watch {wid}");
            }
        }

        // A start below the compact revision: canceled with it.
        c.compact(r3, Some(CompactionOptions::new().with_physical()))
            .await
            .unwrap();
        let mut old = w
            .watch(
                "a/",
                Some(WatchOptions::new().with_prefix().with_start_revision(r1)),
            )
            .await
            .unwrap();
        let got = read_until(&mut old, |r| r.iter().any(|r| r.canceled())).await;
        let canceled = got.iter().find(|r| r.canceled()).unwrap();
        assert_eq!(canceled.compact_revision(), r3);
        assert!(
            canceled.cancel_reason().contains("compacted"),
            "{}",
            canceled.cancel_reason()
        );
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_on_another_member_after_its_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(&dir);
    tokio::time::timeout(TEST_TIMEOUT, async {
        let leader = cluster.serving(Duration::from_secs(30)).await.unwrap();
        let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
        let mut on_leader = cluster
            .etcd_client(&[leader], Duration::from_secs(5))
            .await
            .unwrap();
        let mut writer = cluster
            .etcd_client(&others, Duration::from_secs(5))
            .await
            .unwrap();
        let start = rev_of_put(&mut writer, "r", "0").await;
        let mut stream = on_leader
            .watch("r", Some(WatchOptions::new().with_start_revision(start)))
            .await
            .unwrap();
        let mut seen: Vec<(i64, String)> = Vec::new();
        let mut acked = Vec::new();
        for i in 1..=20 {
            acked.push((
                rev_of_put(&mut writer, "r", &i.to_string()).await,
                i.to_string(),
            ));
        }
        let got = read_until(&mut stream, |r| events(r).len() >= 21).await;
        seen.extend(events(&got).into_iter().map(|e| (e.5, e.3)));
        cluster.kill9(leader).unwrap();
        // Writes go on through the others (a new leader is elected meanwhile).
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut i = 21;
        while acked.len() < 60 {
            assert!(Instant::now() < deadline, "writes stalled");
            match writer.put("r", i.to_string(), None).await {
                Ok(r) => acked.push((r.header().unwrap().revision(), i.to_string())),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            i += 1;
        }
        // The old stream ends; resume on a survivor from the last revision + 1.
        let next = seen.last().unwrap().0 + 1;
        let mut survivor = cluster
            .etcd_client(&others[..1], Duration::from_secs(5))
            .await
            .unwrap();
        let mut resumed = survivor
            .watch("r", Some(WatchOptions::new().with_start_revision(next)))
            .await
            .unwrap();
        let last = acked.last().unwrap().0;
        let got = read_until(&mut resumed, |r| {
            events(r).last().is_some_and(|e| e.5 >= last)
        })
        .await;
        seen.extend(events(&got).into_iter().map(|e| (e.5, e.3)));
        assert_eq!(seen[0], (start, "0".to_string()));
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "in order, no duplicate: {seen:?}"
        );
        for a in &acked {
            assert!(seen.contains(a), "acknowledged {a:?} missing");
        }
    })
    .await
    .expect("test took too long");
}

/// The fan-out workload of `raft-bench load --workload watch-key|watch-prefix`, small: every
/// acknowledged put reaches every watcher of its key, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fan_out_workload_counts_about_fan_out_events_per_put() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(&dir);
    tokio::time::timeout(TEST_TIMEOUT, async {
        cluster.serving(Duration::from_secs(30)).await.unwrap();
        for layout in [Layout::OneKey, Layout::Prefixes(5)] {
            let spec = WatchSpec {
                layout,
                watchers: 60,
                per_stream: 20,
                put_clients: 4,
                duration: Duration::from_secs(2),
                value_size: 64,
            };
            let s = watch_load::run(&cluster.endpoints(), &spec).await.unwrap();
            let fan_out = if layout == Layout::OneKey { 60 } else { 12 };
            assert_eq!(s.fan_out, fan_out);
            // Some puts, however slow the machine (how many is the benchmark's business).
            assert!(s.puts > 0, "{s:?}");
            // Events are counted by arrival in the window, puts by acknowledgement: the
            // edges of the window differ by a few puts' worth of events at most.
            let want = s.puts * s.fan_out;
            let slack = 8 * s.fan_out * spec.put_clients as u64;
            assert!(
                s.events + slack >= want && s.events <= want + slack,
                "{} events for {} puts x {}",
                s.events,
                s.puts,
                s.fan_out
            );
            assert!(s.quantile_ms(0.5) > 0.0 && s.quantile_ms(0.99) >= s.quantile_ms(0.5));
        }
    })
    .await
    .expect("test took too long");
}
