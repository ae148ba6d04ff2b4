//! Backups to a real S3-compatible server started by the test (s3s-fs in process): the
//! uploader's durable queue across restarts (parents first), an outage of the store in the
//! middle of uploads, a snapshot that keeps failing, retention with a dry run, and restore
//! from the store.

#[path = "support/s3_server.rs"]
mod s3_server;

use bytes::Bytes;
use parking_lot::Mutex;
use raft_core::{Membership, SnapshotMeta};
use raft_snapshot::*;
use s3_server::S3Server;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DAY: u64 = 86_400_000;

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term: 2,
        membership: Membership::with_voters([1, 2, 3]),
    }
}

fn open(dir: &Path) -> SnapshotStore {
    SnapshotStore::open_dir(
        dir,
        StoreOptions {
            id_salt: Some(11),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// Applies `n` changes derived from `seed`.
fn churn(st: &mut MemState, seed: u64, n: usize) {
    let mut x = seed;
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = format!("key{:04}", (x >> 33) % 500);
        if (x >> 20).is_multiple_of(6) {
            st.delete(k.as_bytes());
        } else {
            st.put(
                Bytes::from(k),
                Bytes::from(format!("value-{}", x % 100_000)),
            );
        }
    }
}

/// Writes a full snapshot (no parent) or a delta, created at `created_ms`.
fn snap(
    store: &SnapshotStore,
    parent: Option<SnapshotId>,
    index: u64,
    created_ms: u64,
    st: &mut MemState,
) -> SnapshotInfo {
    let kind = if parent.is_some() {
        SnapshotKind::Delta
    } else {
        SnapshotKind::Full
    };
    let mut w = store.begin(kind, parent, &meta(index), created_ms).unwrap();
    match kind {
        SnapshotKind::Full => w.write_source(&mut st.full_source()).unwrap(),
        SnapshotKind::Delta => w.write_source(&mut st.delta_source()).unwrap(),
    }
    let info = w.finish().unwrap();
    st.mark_snapshotted();
    info
}

/// A chain: a base and a delta per further creation time; returns the infos and the state
/// after each.
fn chain(
    store: &SnapshotStore,
    first_index: u64,
    created: &[u64],
    st: &mut MemState,
) -> (Vec<SnapshotInfo>, Vec<MemState>) {
    let (mut infos, mut states) = (Vec::new(), Vec::new());
    for (k, &created_ms) in created.iter().enumerate() {
        let k = k as u64;
        churn(st, first_index + k, 200);
        let parent = infos.last().map(|i: &SnapshotInfo| i.id);
        infos.push(snap(store, parent, first_index + 10 * k, created_ms, st));
        states.push(st.clone());
    }
    (infos, states)
}

/// Which puts to fail, by blob name.
type FailRule = Box<dyn Fn(&str) -> bool + Send>;

/// The object store, recording the order of puts and failing those a rule picks.
struct Recording {
    inner: Arc<dyn ObjectStore>,
    puts: Mutex<Vec<String>>,
    fail: Mutex<FailRule>,
}

impl Recording {
    fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Recording {
            inner,
            puts: Mutex::new(Vec::new()),
            fail: Mutex::new(Box::new(|_| false)),
        })
    }
    fn fail_when(&self, rule: impl Fn(&str) -> bool + Send + 'static) {
        *self.fail.lock() = Box::new(rule);
    }
    /// Snapshot ids in the order their uploads completed (metadata written).
    fn completed(&self) -> Vec<SnapshotId> {
        self.puts
            .lock()
            .iter()
            .filter_map(|n| n.strip_prefix("snapshots/")?.strip_suffix(".json"))
            .filter_map(SnapshotId::parse)
            .collect()
    }
}

impl ObjectStore for Recording {
    fn put(&self, name: &str, data: &mut dyn std::io::Read) -> Result<u64> {
        if (self.fail.lock())(name) {
            return Err(Error::ObjectStore {
                name: name.into(),
                reason: "refused by the test".into(),
            });
        }
        let n = self.inner.put(name, data)?;
        self.puts.lock().push(name.to_string());
        Ok(n)
    }
    fn get(&self, name: &str, out: &mut dyn std::io::Write) -> Result<u64> {
        self.inner.get(name, out)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
}

fn fast() -> UploaderOptions {
    UploaderOptions {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..UploaderOptions::default()
    }
}

fn wait_for(what: &str, up: &Uploader, done: impl Fn(&UploadStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = up.status();
        if done(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ids with complete uploads in the store.
fn in_store(obj: &dyn ObjectStore) -> Vec<SnapshotId> {
    let mut v: Vec<SnapshotId> = obj
        .list("snapshots/")
        .unwrap()
        .iter()
        .filter_map(|n| n.strip_prefix("snapshots/")?.strip_suffix(".json"))
        .filter_map(SnapshotId::parse)
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<SnapshotId>) -> Vec<SnapshotId> {
    v.sort();
    v
}

#[test]
fn the_queue_survives_a_restart_parents_first_and_the_store_restores() {
    let server = S3Server::start();
    let s3 = open_object_store(&server.config("node-1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = MemState::new();
    let (infos, states) = chain(&store, 10, &[1000, 2000, 3000, 4000], &mut st);

    // First run: the second delta's file never goes up, so the run stops with the base and
    // the first delta in the store.
    let rec = Recording::new(s3.clone());
    let stuck = format!("snapshots/{}.snap", infos[2].id);
    rec.fail_when(move |n| n == stuck);
    let up = Uploader::start(store.clone(), rec.clone(), fast()).unwrap();
    wait_for("first run", &up, |s| {
        s.uploaded == 2 && s.failed_attempts >= 2
    });
    assert_eq!(
        up.status().queued,
        2,
        "the stuck delta and the one on top of it"
    );
    drop(up);
    assert_eq!(in_store(&*s3), sorted(vec![infos[0].id, infos[1].id]));

    // Meanwhile another delta is taken; the uploader restarts (as the node does) with a
    // healthy store and finds the three the store lacks.
    churn(&mut st, 77, 50);
    let last = snap(&store, Some(infos[3].id), 50, 5000, &mut st);
    let rec = Recording::new(s3.clone());
    let up = Uploader::start(store.clone(), rec.clone(), fast()).unwrap();
    assert!(up.wait_idle(Duration::from_secs(30)), "{:?}", up.status());
    let s = up.status();
    assert_eq!((s.resumed, s.uploaded, s.queued), (3, 3, 0), "{s:?}");
    assert_eq!(rec.completed(), vec![infos[2].id, infos[3].id, last.id]);
    let mut all: Vec<SnapshotId> = infos.iter().map(|i| i.id).collect();
    all.push(last.id);
    assert_eq!(in_store(&*s3), sorted(all));
    drop(up);
    // A third start finds nothing to do.
    let rec = Recording::new(s3.clone());
    let up = Uploader::start(store.clone(), rec.clone(), fast()).unwrap();
    assert!(up.wait_idle(Duration::from_secs(10)));
    assert_eq!((up.status().resumed, up.status().uploaded), (0, 0));
    assert!(rec.completed().is_empty());

    // Restore from the store into a fresh data directory: the latest point, and a point in
    // time between the first and second delta.
    let fresh = tempfile::tempdir().unwrap();
    let mut sink = MemState::new();
    let got = restore_from_object_store(
        &*s3,
        RestorePoint::Latest,
        &open(fresh.path()),
        Some(&mut sink),
    )
    .unwrap();
    assert_eq!((got.tip().id, &sink.data), (last.id, &st.data));
    let fresh = tempfile::tempdir().unwrap();
    let mut sink = MemState::new();
    let got = restore_from_object_store(
        &*s3,
        RestorePoint::Before(2500),
        &open(fresh.path()),
        Some(&mut sink),
    )
    .unwrap();
    assert_eq!(got.tip().id, infos[1].id);
    assert_eq!(sink.data, states[1].data);
}

#[test]
fn an_outage_in_the_middle_of_uploads_delays_them_and_loses_nothing() {
    let server = Arc::new(S3Server::start());
    let s3 = open_object_store(&server.config("outage")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = MemState::new();
    let (infos, _) = chain(&store, 100, &[1, 2, 3, 4, 5], &mut st);
    // The store goes down as the third snapshot's file starts uploading.
    let rec = Recording::new(s3.clone());
    let third = format!("snapshots/{}.snap", infos[2].id);
    let srv = server.clone();
    rec.fail_when(move |n| {
        if n == third {
            srv.set_down(true);
        }
        false
    });
    let up = Uploader::start(store.clone(), rec.clone(), fast()).unwrap();
    wait_for("outage", &up, |s| s.failed_attempts >= 3);
    let s = up.status();
    assert_eq!(s.uploaded, 2, "{s:?}");
    assert_eq!(s.queued, 3);
    assert_eq!(
        s.backlog_bytes,
        infos[2..].iter().map(|i| i.size).sum::<u64>()
    );
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("outage")
            || s.last_error.as_deref().unwrap_or("").contains("503"),
        "{s:?}"
    );
    // Local gc keeps everything still waiting, even though a new base supersedes it.
    let base = snap(&store, None, 200, 6, &mut st);
    store.gc().unwrap();
    for i in &infos {
        assert!(store.info(i.id).is_some());
    }
    server.set_down(false);
    rec.fail_when(|_| false);
    up.enqueue(base.id).unwrap();
    assert!(up.wait_idle(Duration::from_secs(30)), "{:?}", up.status());
    assert_eq!(up.status().uploaded, 6);
    assert_eq!(in_store(&*s3).len(), 6);
    // Every chain in the store restores, checked in full.
    for i in infos.iter().chain([&base]) {
        let fresh = tempfile::tempdir().unwrap();
        let chain =
            restore_from_object_store(&*s3, RestorePoint::Id(i.id), &open(fresh.path()), None)
                .unwrap();
        assert_eq!(chain.tip().id, i.id);
    }
    drop(up);
    assert_eq!(
        store.gc().unwrap().len(),
        5,
        "uploaded: the old chain may go now"
    );
}

#[test]
fn a_snapshot_that_keeps_failing_does_not_block_the_others() {
    let server = S3Server::start();
    let s3 = open_object_store(&server.config("stuck")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = MemState::new();
    let (a, _) = chain(&store, 10, &[1, 2], &mut st);
    let (b, _) = chain(&store, 30, &[3, 4], &mut st);
    let rec = Recording::new(s3.clone());
    let bad = format!("snapshots/{}.snap", a[0].id);
    rec.fail_when(move |n| n == bad);
    let up = Uploader::start(store.clone(), rec.clone(), fast()).unwrap();
    wait_for("the other chain", &up, |s| {
        s.uploaded == 2 && s.failed_attempts >= 3
    });
    let s = up.status();
    assert_eq!(s.queued, 2, "the failing base and its delta wait: {s:?}");
    assert_eq!(rec.completed(), vec![b[0].id, b[1].id]);
    drop(up);

    // With a limit, the failing base is given up together with the delta on it.
    let up = Uploader::start(
        store.clone(),
        rec.clone(),
        UploaderOptions {
            max_attempts: Some(3),
            ..fast()
        },
    )
    .unwrap();
    assert!(up.wait_idle(Duration::from_secs(30)));
    let s = up.status();
    assert_eq!(
        (s.resumed, s.gave_up, s.failed_attempts, s.queued),
        (2, 2, 3, 0),
        "{s:?}"
    );
    assert_eq!(in_store(&*s3), sorted(vec![b[0].id, b[1].id]));
}

#[test]
fn retention_keeps_what_restore_points_need_and_a_dry_run_deletes_nothing() {
    let server = S3Server::start();
    let s3 = open_object_store(&server.config("retention")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = MemState::new();
    // Chain 1: base on day 0, deltas on days 1 and 5. Chain 2: base on day 8, delta on day 9.
    let (one, _) = chain(&store, 10, &[0, DAY, 5 * DAY], &mut st);
    let (two, two_states) = chain(&store, 100, &[8 * DAY, 9 * DAY], &mut st);
    let up = Uploader::start(store.clone(), s3.clone(), fast()).unwrap();
    assert!(up.wait_idle(Duration::from_secs(30)));
    drop(up);
    let blobs = s3.list("").unwrap();
    assert_eq!(blobs.len(), 10);

    // Dry run: two days back from day 10 (day 8, chain 2's base) keeps chain 2 only;
    // nothing is deleted yet.
    let policy = RetentionPolicy {
        keep_for: Some(Duration::from_millis(2 * DAY)),
        keep_bases: None,
    };
    let plan = plan_retention(&*s3, &policy, 10 * DAY).unwrap();
    let ids = |v: &[SnapshotInfo]| v.iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(&plan.keep), vec![two[0].id, two[1].id]);
    assert_eq!(ids(&plan.delete), vec![one[0].id, one[1].id, one[2].id]);
    assert_eq!(s3.list("").unwrap(), blobs);
    // Four days back reaches day 6: a restore to it starts from the day-5 delta, so that
    // delta stays, and its parent and base with it.
    let wider = RetentionPolicy {
        keep_for: Some(Duration::from_millis(4 * DAY)),
        keep_bases: None,
    };
    assert!(
        plan_retention(&*s3, &wider, 10 * DAY)
            .unwrap()
            .delete
            .is_empty()
    );

    assert_eq!(apply_retention(&*s3, &plan).unwrap().snapshots, 3);
    assert_eq!(in_store(&*s3), sorted(vec![two[0].id, two[1].id]));
    assert_eq!(s3.list("").unwrap().len(), 4);
    let fresh = tempfile::tempdir().unwrap();
    let mut sink = MemState::new();
    restore_from_object_store(
        &*s3,
        RestorePoint::Latest,
        &open(fresh.path()),
        Some(&mut sink),
    )
    .unwrap();
    assert_eq!(sink.data, two_states[1].data);
    assert!(find_in_object_store(&*s3, RestorePoint::Before(6 * DAY)).is_err());

    // The uploader applies a policy by itself once idle: a newer base (chain 3) with the
    // newest base kept drops chain 2.
    // (The local store keeps only its current chain after gc, as a node's does: were the
    // old chains still there, the uploader would queue them again, the store lacking them.)
    let (three, _) = chain(&store, 300, &[10 * DAY], &mut st);
    assert_eq!(store.gc().unwrap().len(), 5);
    // Member 1's archived WAL: 0 holds 1..=150, 1 straddles 300, the tail 2 is a partial.
    let archived = |seq: u64, first: u64, hi: u64, partial: bool| {
        let seg = ArchivedSegment {
            node: 1,
            seq,
            meta: SegmentMeta {
                first_index: first,
                entries: Some((first, hi)),
                commit: hi,
                times: None,
            },
            bytes: 3,
            crc32c: crc32c::crc32c(b"seg"),
            partial,
            uploaded_ms: 0,
        };
        s3.put(&seg.data_name(), &mut &b"seg"[..]).unwrap();
        let json = serde_json::to_vec(&seg).unwrap();
        s3.put(&seg.meta_name(), &mut json.as_slice()).unwrap();
        seg
    };
    let old_seg = archived(0, 1, 150, false);
    let straddling = archived(1, 151, 301, false);
    let tail = archived(2, 302, 310, true);
    let up = Uploader::start(
        store.clone(),
        s3.clone(),
        UploaderOptions {
            retention: Some(RetentionPolicy {
                keep_for: None,
                keep_bases: Some(1),
            }),
            retention_interval: Duration::from_millis(10),
            ..fast()
        },
    )
    .unwrap();
    wait_for("retention", &up, |s| {
        s.retention_deleted == 2 && s.retention_deleted_segments == 1
    });
    assert_eq!(in_store(&*s3), vec![three[0].id]);
    // The segment wholly below the kept base (index 300) went; the one a restore from 300
    // reads and the tail stayed.
    assert_eq!(list_wal_archive(&*s3).unwrap(), vec![straddling, tail]);
    assert!(!s3.list("wal/").unwrap().contains(&old_seg.data_name()));
}
