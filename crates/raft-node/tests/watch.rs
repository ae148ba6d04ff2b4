//! etcd's Watch on real `raftd` processes: the protocol through our tonic client on every
//! member (ids, filters, prev_kv, progress, cancel, replay, compaction, fragments), Debian's
//! `etcdctl` 3.4 (`watch`, `--rev`, `--prefix`, `--prev-kv`, interactive `progress`), and a
//! watcher that resumes on another member after the one it used is killed with SIGKILL,
//! follower then leader, while writes go on: every event once, in order, no gap.
//!
//! Over 700 lines on purpose: the Watch protocol's cases share one cluster setup and the
//! stream helpers at the top.

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_kv::pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse, watch_client::WatchClient,
    watch_create_request::FilterType, watch_request::RequestUnion,
};
use raft_kv::pb::mvccpb::event::EventType;
use raft_node::client::{ClientError, endpoint_url, prefix_end};
use raft_node::config::cluster_id_from_token;
use raft_node::testing::{Cluster, Raftd, etcdctl, put};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::Streaming;

const TEST_TIMEOUT: Duration = Duration::from_secs(150);

fn raftd() -> Raftd {
    Raftd::new(env!("CARGO_BIN_EXE_raftd")).token("it").calm()
}

/// One watch stream to one member.
struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Stream {
    /// Opens a stream to `addr`, retrying for up to 10 s (a member still starting).
    async fn open_retried(addr: &str) -> Stream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Stream::open(addr).await {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline => {
                    println!("watch stream to {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("watch stream to {addr}: {e}"),
            }
        }
    }

    async fn open(addr: &str) -> Result<Stream, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint_url(addr))
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let (requests, rx) = mpsc::channel(16);
        let responses = WatchClient::new(channel)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Stream {
            requests,
            responses,
        })
    }

    async fn send(&self, req: RequestUnion) {
        self.requests
            .send(WatchRequest {
                request_union: Some(req),
            })
            .await
            .expect("the stream takes requests");
    }

    async fn create(&self, req: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(req)).await;
    }

    /// The next response, or `None` after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<WatchResponse> {
        match tokio::time::timeout(limit, self.responses.message()).await {
            Ok(Ok(Some(r))) => Some(r),
            Ok(Ok(None)) => None,
            Ok(Err(status)) => panic!("watch stream failed: {status}"),
            Err(_) => None,
        }
    }

    /// Reads responses until `done` says so (panics after 20 s); returns them all.
    async fn until(
        &mut self,
        mut done: impl FnMut(&[WatchResponse]) -> bool,
    ) -> Vec<WatchResponse> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = Vec::new();
        while !done(&out) {
            assert!(Instant::now() < deadline, "responses so far: {out:#?}");
            if let Some(r) = self.next(Duration::from_millis(500)).await {
                out.push(r);
            }
        }
        out
    }
}

fn key_req(key: &str, end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        ..Default::default()
    }
}

fn prefix_req(prefix: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: Bytes::copy_from_slice(prefix.as_bytes()),
        range_end: Bytes::from(prefix_end(prefix.as_bytes())),
        ..Default::default()
    }
}

/// The events of watch `id` in `resps`, as "PUT key=value@rev" ("prev=..." appended).
fn events_of(resps: &[WatchResponse], id: i64) -> Vec<String> {
    resps
        .iter()
        .filter(|r| r.watch_id == id)
        .flat_map(|r| &r.events)
        .map(|e| {
            let kv = e.kv.as_ref().expect("an event has its key");
            let key = String::from_utf8_lossy(&kv.key);
            let mut s = if e.r#type == EventType::Put as i32 {
                format!(
                    "PUT {key}={}@{}",
                    String::from_utf8_lossy(&kv.value),
                    kv.mod_revision
                )
            } else {
                format!("DELETE {key}@{}", kv.mod_revision)
            };
            if let Some(p) = &e.prev_kv {
                s += &format!(" prev={}", String::from_utf8_lossy(&p.value));
            }
            s
        })
        .collect()
}

async fn delete_prefix(c: &raft_node::client::Client, prefix: &str) -> i64 {
    let req = DeleteRangeRequest {
        key: Bytes::copy_from_slice(prefix.as_bytes()),
        range_end: Bytes::from(prefix_end(prefix.as_bytes())),
        ..Default::default()
    };
    c.kv(|mut k| {
        let req = req.clone();
        async move { k.delete_range(req).await.map(|r| r.into_inner()) }
    })
    .await
    .unwrap()
    .header
    .unwrap()
    .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_protocol_on_every_member() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // A 64 KiB request limit, so one revision's events can pass it (fragments).
        let cluster =
            Cluster::start(raftd().args(["--set", "request_size_limit=64KiB"]), 3).unwrap();
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.client();
        let mut streams = Vec::new();
        for id in 1..=3u64 {
            let s = Stream::open_retried(&cluster.endpoint(id)).await;
            s.create(WatchCreateRequest {
                prev_kv: true,
                ..prefix_req("p/")
            })
            .await;
            s.create(WatchCreateRequest {
                watch_id: 7,
                filters: vec![FilterType::Noput as i32],
                ..key_req("k", "")
            })
            .await;
            s.create(WatchCreateRequest {
                watch_id: 7,
                ..key_req("x", "")
            })
            .await;
            s.create(key_req("b", "a")).await;
            streams.push((id, s));
        }
        for (id, s) in &mut streams {
            let created = s.until(|r| r.len() == 4).await;
            let ids: Vec<(i64, bool, bool)> = created
                .iter()
                .map(|r| (r.watch_id, r.created, r.canceled))
                .collect();
            assert_eq!(
                ids,
                vec![
                    (0, true, false),
                    (7, true, false),
                    (-1, true, true),
                    (-1, true, true)
                ],
                "member {id}"
            );
            assert_eq!(
                created[2].cancel_reason,
                "mvcc: duplicate watch ID provided on the WatchStream"
            );
            assert_eq!(created[3].cancel_reason, "mvcc: watcher range is empty");
            let h = created[0].header.unwrap();
            assert_eq!(h.cluster_id, cluster_id_from_token("it"));
            assert_eq!(h.member_id, *id);
            // (A follower may not have heard of the first term yet: raft_term is checked below.)
            assert!(h.revision >= 1, "{h:?}");
        }
        let r1 = put(&client, "p/a", "1").await.unwrap();
        let r2 = put(&client, "k", "x").await.unwrap();
        let r3 = delete_prefix(&client, "k").await;
        let r4 = put(&client, "p/a", "2").await.unwrap();
        assert!(r1 < r2 && r2 < r3 && r3 < r4);
        let want_p = vec![format!("PUT p/a=1@{r1}"), format!("PUT p/a=2@{r4} prev=1")];
        let want_k = format!("DELETE k@{r3}");
        for (id, s) in &mut streams {
            // Every member serves the events from its own applied state.
            let got = s
                .until(|r| events_of(r, 0).len() >= 2 && !events_of(r, 7).is_empty())
                .await;
            assert_eq!(events_of(&got, 0), want_p, "member {id}");
            let h = got
                .iter()
                .rev()
                .find(|r| r.watch_id == 0)
                .unwrap()
                .header
                .unwrap();
            assert_eq!(
                (h.member_id, h.revision),
                (*id, r4),
                "the header of the last event"
            );
            assert!(h.raft_term >= 1, "{h:?}");
            // NOPUT: only the delete; prev_kv was not asked for, so none is sent.
            assert_eq!(events_of(&got, 7), vec![want_k.clone()], "member {id}");
            // Progress: everything up to the revision has been sent (watch id -1).
            s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
                .await;
            let p = s.until(|r| r.iter().any(|r| r.watch_id == -1)).await;
            let p = p.iter().find(|r| r.watch_id == -1).unwrap();
            assert!(p.events.is_empty() && !p.created && !p.canceled);
            assert!(p.header.as_ref().unwrap().revision >= r4);
            // Cancel: answered once; nothing for it afterwards.
            s.send(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 7,
            }))
            .await;
            let c = s.until(|r| r.iter().any(|r| r.canceled)).await;
            assert!(
                c.iter()
                    .any(|r| r.watch_id == 7 && r.canceled && r.cancel_reason.is_empty())
            );
        }
        // Replay from history on a new stream, then live.
        let mut replay = Stream::open_retried(&cluster.endpoint(2)).await;
        replay
            .create(WatchCreateRequest {
                start_revision: r1,
                prev_kv: true,
                ..prefix_req("p/")
            })
            .await;
        let got = replay.until(|r| events_of(r, 0).len() >= 2).await;
        assert_eq!(events_of(&got, 0), want_p);
        let r5 = put(&client, "p/b", "3").await.unwrap();
        let got = replay.until(|r| !events_of(r, 0).is_empty()).await;
        assert_eq!(events_of(&got, 0), vec![format!("PUT p/b=3@{r5}")]);

        // Fragments: a delete of four 30 KiB values is one revision over the limit.
        let big = "v".repeat(30 << 10);
        let mut last_put = 0;
        for i in 0..4 {
            last_put = put(&client, &format!("f/{i}"), &big).await.unwrap();
        }
        let mut frag = Stream::open_retried(&cluster.endpoint(3)).await;
        // From the next revision: this member may not have applied the last put yet.
        frag.create(WatchCreateRequest {
            prev_kv: true,
            fragment: true,
            start_revision: last_put + 1,
            ..prefix_req("f/")
        })
        .await;
        frag.create(WatchCreateRequest {
            prev_kv: true,
            start_revision: last_put + 1,
            ..prefix_req("f/")
        })
        .await;
        frag.until(|r| r.len() == 2).await;
        let rd = delete_prefix(&client, "f/").await;
        let got = frag
            .until(|r| events_of(r, 0).len() == 4 && events_of(r, 1).len() == 4)
            .await;
        let parts: Vec<&WatchResponse> = got.iter().filter(|r| r.watch_id == 0).collect();
        assert!(parts.len() >= 2, "{} parts", parts.len());
        assert!(parts[..parts.len() - 1].iter().all(|r| r.fragment));
        assert!(!parts.last().unwrap().fragment);
        assert!(
            parts
                .iter()
                .all(|r| prost::Message::encoded_len(*r) < (64 << 10))
        );
        let whole: Vec<&WatchResponse> = got.iter().filter(|r| r.watch_id == 1).collect();
        assert_eq!(
            whole.len(),
            1,
            "without fragment the revision is one response"
        );
        assert!(
            events_of(&got, 0)
                .iter()
                .all(|e| e.starts_with("DELETE") && e.contains(&format!("@{rd}")))
        );

        // Compaction: a watch from below the compact revision is canceled with it.
        client
            .kv(|mut k| async move {
                k.compact(CompactionRequest {
                    revision: r4,
                    physical: true,
                })
                .await
                .map(|r| r.into_inner())
            })
            .await
            .unwrap();
        for id in 1..=3u64 {
            let mut s = Stream::open_retried(&cluster.endpoint(id)).await;
            s.create(WatchCreateRequest {
                start_revision: r1,
                ..prefix_req("p/")
            })
            .await;
            let got = s.until(|r| r.iter().any(|r| r.canceled)).await;
            assert!(got[0].created && !got[0].canceled);
            let c = got.iter().find(|r| r.canceled).unwrap();
            assert_eq!((c.watch_id, c.compact_revision), (0, r4), "member {id}");
            assert_eq!(
                c.cancel_reason,
                "etcdserver: mvcc: required revision has been compacted"
            );
        }
        drop(streams);
    })
    .await
    .expect("test timed out");
}

/// A running `etcdctl watch ...` whose output lines arrive on a channel.
struct Etcdctl {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Etcdctl {
    fn spawn(bin: &PathBuf, endpoint: &str, args: &[&str]) -> Etcdctl {
        let mut child = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        Etcdctl {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to 20 s) until the output so far ends with `want` (consecutive lines).
    fn expect(&mut self, want: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pos) = self
                .seen
                .windows(want.len())
                .position(|w| w.iter().zip(want).all(|(a, b)| a == b))
            {
                self.seen.drain(..pos + want.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "etcdctl printed {:?}, wanted {want:?}",
                self.seen
            );
            if let Ok(l) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                self.seen.push(l);
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Etcdctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch() {
    let Some(bin) = etcdctl() else {
        println!("skipping etcdctl_watch: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = Cluster::start(raftd(), 3).unwrap();
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let follower = (1..=3).find(|i| *i != leader).unwrap();
        let client = cluster.client();
        let r1 = put(&client, "p/a", "1").await.unwrap();
        put(&client, "p/b", "2").await.unwrap();
        let on = |id| endpoint_url(&cluster.endpoint(id));
        // Served by a follower: a replay from --rev with --prefix and --prev-kv, then live.
        let rev = r1.to_string();
        let mut w = Etcdctl::spawn(
            &bin,
            &on(follower),
            &["watch", "--rev", &rev, "--prefix", "p/", "--prev-kv"],
        );
        w.expect(&["PUT", "p/a", "1", "PUT", "p/b", "2"]);
        put(&client, "p/a", "3").await.unwrap();
        w.expect(&["PUT", "p/a", "1", "p/a", "3"]);
        // A plain key watch from now, then a delete.
        let mut k = Etcdctl::spawn(&bin, &on(leader), &["watch", "k"]);
        // The watch is created once etcdctl is connected; put until it shows.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            put(&client, "k", "v").await.unwrap();
            if k.lines
                .recv_timeout(Duration::from_millis(500))
                .is_ok_and(|l| l == "PUT")
            {
                break;
            }
            assert!(Instant::now() < deadline, "etcdctl watch k saw nothing");
        }
        k.expect(&["k", "v"]);
        delete_prefix(&client, "k").await;
        k.expect(&["DELETE", "k"]);
        // Interactive: a watch, then `progress` prints the revision everything was sent up to.
        let mut i = Etcdctl::spawn(&bin, &on(follower), &["watch", "-i"]);
        i.say("watch --prefix p/");
        let deadline = Instant::now() + Duration::from_secs(20);
        let last = loop {
            let r = put(&client, "p/c", "4").await.unwrap();
            if i.lines
                .recv_timeout(Duration::from_millis(500))
                .is_ok_and(|l| l == "PUT")
            {
                break r;
            }
            assert!(Instant::now() < deadline, "etcdctl watch -i saw nothing");
        };
        i.expect(&["p/c", "4"]);
        i.say("progress");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = i
                .lines
                .recv_timeout(Duration::from_millis(500))
                .unwrap_or_default();
            if let Some(rev) = line.strip_prefix("progress notify: ") {
                assert!(rev.parse::<i64>().unwrap() >= last, "{line}");
                break;
            }
            assert!(Instant::now() < deadline, "no progress notification");
        }
    })
    .await
    .expect("test timed out");
}

/// A watcher of key `w` that reconnects to the first reachable member of `prefer` (read
/// at each reconnect) from its last revision + 1; every event it saw, as (revision,
/// value).
async fn resuming_watcher(
    endpoints: Arc<parking_lot::Mutex<Vec<String>>>,
    start: i64,
    stop: Arc<AtomicBool>,
    seen: Arc<parking_lot::Mutex<Vec<(i64, String)>>>,
) -> usize {
    let mut reconnects = 0;
    let mut next = start;
    'outer: while !stop.load(Ordering::Relaxed) {
        let eps = endpoints.lock().clone();
        for ep in eps {
            let Ok(mut s) = Stream::open(&ep).await else {
                continue;
            };
            s.create(WatchCreateRequest {
                start_revision: next,
                ..key_req("w", "")
            })
            .await;
            loop {
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
                let r =
                    match tokio::time::timeout(Duration::from_millis(300), s.responses.message())
                        .await
                    {
                        Ok(Ok(Some(r))) => r,
                        // The member went away: resume elsewhere.
                        Ok(Ok(None)) | Ok(Err(_)) => break,
                        Err(_) => continue,
                    };
                assert!(!r.canceled, "the watch was canceled: {r:?}");
                for e in &r.events {
                    let kv = e.kv.as_ref().unwrap();
                    seen.lock().push((
                        kv.mod_revision,
                        String::from_utf8_lossy(&kv.value).into_owned(),
                    ));
                    next = kv.mod_revision + 1;
                }
            }
            reconnects += 1;
            continue 'outer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reconnects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_on_another_member_after_a_kill_without_gap_or_duplicate() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = Cluster::start(raftd(), 3).unwrap();
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let follower = (1..=3).find(|i| *i != leader).unwrap();
        let third = (1..=3).find(|i| *i != leader && *i != follower).unwrap();
        let client = cluster.client();
        let start = put(&client, "w", "start").await.unwrap();
        // The watcher starts on a follower; after it dies, the leader is preferred.
        let endpoints = Arc::new(parking_lot::Mutex::new(vec![
            cluster.endpoint(follower),
            cluster.endpoint(leader),
            cluster.endpoint(third),
        ]));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let watcher = tokio::spawn(resuming_watcher(
            endpoints.clone(),
            start,
            stop.clone(),
            seen.clone(),
        ));
        // The writer: unique values; the revision of every acknowledged put.
        let acked = Arc::new(parking_lot::Mutex::new(BTreeMap::new()));
        let writing = Arc::new(AtomicBool::new(true));
        let writer = {
            let (client, acked, writing) = (client.clone(), acked.clone(), writing.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while writing.load(Ordering::Relaxed) {
                    let v = format!("v{i}");
                    match raft_node::testing::put_once(&client, "w", &v).await {
                        Ok(rev) => {
                            acked.lock().insert(rev, v);
                        }
                        Err(
                            ClientError::Unavailable(_)
                            | ClientError::Unreachable(_)
                            | ClientError::Status(_),
                        ) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    i += 1;
                }
            })
        };
        let wait_acked = |n: usize| {
            let acked = acked.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(40);
                while acked.lock().len() < n {
                    assert!(
                        Instant::now() < deadline,
                        "writes stalled at {}",
                        acked.lock().len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_acked(60).await;
        // Kill the follower the watcher is on.
        cluster.kill9(follower).unwrap();
        wait_acked(150).await;
        // Bring it back; it catches up from the log and serves watches again.
        cluster.spawn(follower).unwrap();
        *endpoints.lock() = vec![cluster.endpoint(follower), cluster.endpoint(third)];
        wait_acked(200).await;
        // Kill the leader, which the watcher moved to (a leader change follows).
        let on_leader_before = seen.lock().len();
        cluster.kill9(leader).unwrap();
        let new_leader = cluster.leader(Duration::from_secs(30)).await.unwrap();
        assert_ne!(new_leader, leader);
        wait_acked(320).await;
        writing.store(false, Ordering::Relaxed);
        writer.await.unwrap();
        let last = *acked.lock().keys().last().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().last().is_none_or(|(r, _)| *r < last) {
            assert!(
                Instant::now() < deadline,
                "the watcher stopped at {:?}",
                seen.lock().last()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let reconnects = watcher.await.unwrap();
        assert!(reconnects >= 2, "the watcher moved {reconnects} times");
        let seen = seen.lock().clone();
        assert!(seen.len() > on_leader_before);
        // In order, no duplicate.
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "revisions not strictly increasing"
        );
        // Every acknowledged put, with its value at its revision.
        let by_rev: BTreeMap<i64, String> = seen.iter().cloned().collect();
        for (rev, v) in acked.lock().iter() {
            assert_eq!(
                by_rev.get(rev),
                Some(v),
                "acknowledged put at {rev} missing or wrong"
            );
        }
        // No gap: a fresh watch replaying the whole history on a surviving member sees
        // exactly the same events.
        let mut replay = Stream::open_retried(&cluster.endpoint(follower)).await;
        replay
            .create(WatchCreateRequest {
                start_revision: start,
                ..key_req("w", "")
            })
            .await;
        let got = replay
            .until(|r| r.iter().flat_map(|r| &r.events).count() >= seen.len())
            .await;
        let replayed: Vec<(i64, String)> = got
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    kv.mod_revision,
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect();
        assert_eq!(replayed, seen);
        println!(
            "{} events, {} acknowledged puts, watcher moved {reconnects} times",
            seen.len(),
            acked.lock().len()
        );
    })
    .await
    .expect("test timed out");
}

/// A client that stops reading: with a 4-event stream buffer its watch falls out of the
/// live group, writes go on at full speed meanwhile, and once it reads again it gets every
/// event, once, in order (caught up from history), then live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_holds_nothing_back_and_loses_nothing() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = Cluster::start(
            raftd()
                .with_metrics()
                .args(["--set", "watch.stream_buffer_events=4"]),
            3,
        )
        .unwrap();
        let leader = cluster.leader(Duration::from_secs(20)).await.unwrap();
        let client = cluster.node_client(leader);
        let start = put(&client, "s/start", "0").await.unwrap();
        let mut stalled = Stream::open_retried(&cluster.endpoint(leader)).await;
        stalled
            .create(WatchCreateRequest {
                start_revision: start,
                ..prefix_req("s/")
            })
            .await;
        // Not read while 300 puts of 4 KiB (more than the transport's windows) go in.
        let value = "v".repeat(4 << 10);
        let t = Instant::now();
        let mut revs = vec![start];
        for i in 0..300 {
            revs.push(
                put(&client, &format!("s/{}", i % 10), &value)
                    .await
                    .unwrap(),
            );
        }
        let writing = t.elapsed();
        let got = stalled
            .until(|r| r.iter().flat_map(|r| &r.events).count() >= revs.len())
            .await;
        let seen: Vec<i64> = got
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        assert_eq!(seen, revs, "every event once, in order");
        // And live again afterwards.
        let last = put(&client, "s/live", "1").await.unwrap();
        let got = stalled
            .until(|r| r.iter().any(|r| !r.events.is_empty()))
            .await;
        let live: Vec<i64> = got
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        assert_eq!(live, vec![last]);
        // The hub's gauges: one stream with one watch, live again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = raft_node::scrape::http_get(
                cluster.metrics(leader),
                "/metrics",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            let m = raft_node::scrape::parse(&text);
            let gauges = (
                m.sum("raftd_watch_streams"),
                m.sum("raftd_watch_watchers"),
                m.sum("raftd_watch_unsynced"),
            );
            if gauges == (Some(1.0), Some(1.0), Some(0.0)) {
                break;
            }
            assert!(Instant::now() < deadline, "watch gauges {gauges:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("300 puts in {writing:?} with a stalled watcher");
    })
    .await
    .expect("test timed out");
}
