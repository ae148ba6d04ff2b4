//! Store-level tests: chains, corruption, crash points, gc leases, transfer, upload, restore.
//!
//! Over 700 lines on purpose: one test binary for the store's behaviour end to end, sharing
//! the fixtures at the top; split by theme, each part would repeat them.

use bytes::Bytes;
use raft_core::{Membership, SnapshotMeta};
use raft_snapshot::fs::{CrashMode, MemFs};
use raft_snapshot::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term: 3,
        membership: Membership::with_voters([1, 2, 3]),
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        id_salt: Some(7),
        writer: WriterOptions {
            block_size: 512,
            zstd_level: 1,
        },
        ..StoreOptions::default()
    }
}

fn open(dir: &Path) -> SnapshotStore {
    SnapshotStore::open_dir(dir, opts()).unwrap()
}

fn write(
    store: &SnapshotStore,
    kind: SnapshotKind,
    parent: Option<SnapshotId>,
    index: u64,
    st: &MemState,
) -> Result<SnapshotInfo> {
    let mut w = store.begin(kind, parent, &meta(index), 1000 + index)?;
    match kind {
        SnapshotKind::Full => w.write_source(&mut st.full_source())?,
        SnapshotKind::Delta => w.write_source(&mut st.delta_source())?,
    }
    w.finish()
}

/// Applies `n` puts/deletes derived from `seed` to `st`.
fn churn(st: &mut MemState, seed: u64, n: usize) {
    let mut x = seed;
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = format!("key{:04}", (x >> 33) % 300);
        if (x >> 20).is_multiple_of(5) {
            st.delete(k.as_bytes());
        } else {
            st.put(
                Bytes::from(k),
                Bytes::from(format!("v{}-{}", x % 1000, "x".repeat((x % 40) as usize))),
            );
        }
    }
}

fn restored(store: &SnapshotStore, tip: Option<SnapshotId>) -> Result<MemState> {
    let mut sink = MemState::new();
    restore_chain(store, tip, &mut sink)?;
    Ok(sink)
}

/// Base plus three deltas; returns the model states after each snapshot.
fn build_chain(store: &SnapshotStore) -> (Vec<SnapshotInfo>, Vec<MemState>) {
    let mut st = MemState::new();
    let mut infos = Vec::new();
    let mut states = Vec::new();
    churn(&mut st, 1, 400);
    infos.push(write(store, SnapshotKind::Full, None, 10, &st).unwrap());
    st.mark_snapshotted();
    states.push(st.clone());
    for i in 0..3u64 {
        churn(&mut st, 100 + i, 60);
        let parent = infos.last().unwrap().id;
        infos.push(write(store, SnapshotKind::Delta, Some(parent), 20 + i * 10, &st).unwrap());
        st.mark_snapshotted();
        states.push(st.clone());
    }
    (infos, states)
}

#[test]
fn chain_restores_each_point_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (infos, states) = build_chain(&store);
    for (info, st) in infos.iter().zip(&states) {
        assert_eq!(restored(&store, Some(info.id)).unwrap().data, st.data);
    }
    let latest = store.latest().unwrap();
    assert_eq!(latest.len(), 4);
    assert_eq!(latest.tip().id, infos[3].id);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.latest().unwrap().tip().id, infos[3].id);
    let r = restored(&store, None).unwrap();
    assert_eq!(r.data, states[3].data);
    assert_eq!(r.restored_index, Some(40));
    // Compaction yields a base with the same content, and gc drops the old chain.
    let base = compact_chain(&store, None, 5000).unwrap();
    assert_eq!(base.kind, SnapshotKind::Full);
    assert_eq!(base.index, 40);
    assert_eq!(store.latest().unwrap().len(), 1);
    assert_eq!(restored(&store, None).unwrap().data, states[3].data);
    let removed = store.gc().unwrap();
    assert_eq!(removed.len(), 4);
    assert_eq!(store.list().len(), 1);
    assert!(!store.path_of(infos[0].id).exists());
}

#[test]
fn policy_asks_for_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_, _) = build_chain(&store);
    let chain = store.latest().unwrap();
    let p = ChainPolicy::default();
    assert_eq!(
        p.needs_compaction(&chain),
        chain.delta_bytes() * 2 > chain.base().size
    );
    assert!(
        ChainPolicy {
            max_chain_len: 3,
            max_delta_ratio: 10.0
        }
        .needs_compaction(&chain)
    );
    assert!(
        !ChainPolicy {
            max_chain_len: 4,
            max_delta_ratio: 10.0
        }
        .needs_compaction(&chain)
    );
}

#[test]
fn invalid_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(
        store.begin(SnapshotKind::Delta, None, &meta(1), 0),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        store.begin(SnapshotKind::Delta, Some(SnapshotId(5)), &meta(1), 0),
        Err(Error::UnknownSnapshot(_))
    ));
    let mut w = store.begin(SnapshotKind::Full, None, &meta(1), 0).unwrap();
    w.put(b"b", b"1").unwrap();
    assert!(matches!(w.put(b"a", b"1"), Err(Error::Invalid(_))));
    assert!(matches!(w.delete(b"c"), Err(Error::Invalid(_))));
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(store.latest().is_none());
}

fn flip_bit(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 1 << (at % 8);
    std::fs::write(path, b).unwrap();
}

#[test]
fn corrupted_or_truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (infos, states) = build_chain(&store);
    let victim = store.path_of(infos[2].id);
    let original = std::fs::read(&victim).unwrap();
    let len = original.len();
    let mut positions: Vec<usize> = (0..len).step_by(len / 40 + 1).collect();
    positions.extend([0, 5, 20, len - 1, len - 5, len - 9]);
    for at in positions {
        flip_bit(&victim, at);
        // Restore checks the file against the manifest and refuses before touching the sink.
        let mut sink = MemState::new();
        sink.put("untouched", "yes");
        let err = restore_chain(&store, None, &mut sink).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "flip at {at}: {err}");
        assert_eq!(sink.data.len(), 1, "sink touched after flip at {at}");
        // The streaming reader alone detects it too.
        let f = std::fs::File::open(&victim).unwrap();
        let mut r = match FileReader::new(f, "victim", true) {
            Ok(r) => r,
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. }));
                std::fs::write(&victim, &original).unwrap();
                continue;
            }
        };
        assert!(
            r.verify_to_end().is_err(),
            "flip at {at} undetected by reader"
        );
        std::fs::write(&victim, &original).unwrap();
    }
    for cut in [0, 1, 11, 40, len / 2, len - 8, len - 1] {
        std::fs::write(&victim, &original[..cut]).unwrap();
        let err = restore_chain(&store, None, &mut MemState::new()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "cut at {cut}: {err}");
        let f = std::fs::File::open(&victim).unwrap();
        let r = FileReader::new(f, "victim", true).and_then(|mut r| r.verify_to_end());
        assert!(matches!(r, Err(Error::Corrupt { .. })), "cut at {cut}");
    }
    std::fs::write(&victim, &original).unwrap();
    assert_eq!(restored(&store, None).unwrap().data, states[3].data);
    // A damaged manifest is a typed error too.
    drop(store);
    std::fs::write(dir.path().join(MANIFEST_FILE), b"{ not json").unwrap();
    assert!(matches!(
        SnapshotStore::open_dir(dir.path(), opts()),
        Err(Error::Manifest { .. })
    ));
}

/// Where the crash sweeps keep their store, on a [`MemFs`].
const MEM_DIR: &str = "/data/snap";

fn open_on(fs: &MemFs) -> Result<SnapshotStore> {
    SnapshotStore::open_with(Arc::new(fs.clone()), MEM_DIR, opts())
}

/// Runs `op` on a store on a [`MemFs`], with the machine losing power at every mutating
/// file-system operation in turn (after `prepare`, which runs to completion). For each crash
/// point and each way unsynced data can be left behind ([`CrashMode`]), the image a
/// restarted machine would find must open, hold either the old or the new state (the new
/// one once `op` returned), hold no leftovers in `tmp/` but incoming transfers, and let
/// `op` run again to the new state.
fn crash_sweep(
    name: &str,
    prepare: impl Fn(&SnapshotStore),
    op: impl Fn(&SnapshotStore) -> Result<()>,
    old: &MemState,
    new: &MemState,
) {
    let mut saw_new = false;
    let mut n = 1;
    loop {
        let fs = MemFs::new();
        prepare(&open_on(&fs).unwrap());
        fs.crash_at(fs.ops() + n);
        let result = open_on(&fs).and_then(|s| op(&s));
        assert!(
            result.is_ok() || fs.crashed(),
            "{name}: op {n}: failed without a crash: {result:?}"
        );
        for (k, mode) in CrashMode::ALL.into_iter().enumerate() {
            let what = format!("{name}: power lost at op {n}, {mode:?}");
            let img = fs.crash_image(mode, n * 4 + k as u64);
            let store = open_on(&img).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            let got = restored(&store, None).unwrap_or_else(|e| panic!("{what}: restore: {e}"));
            if got.data == new.data {
                saw_new = true;
            } else {
                assert!(
                    result.is_err(),
                    "{what}: op had finished, yet the old state is back"
                );
                assert_eq!(
                    got.data, old.data,
                    "{what}: neither the old nor the new state"
                );
            }
            for e in img.files() {
                let rel = e.strip_prefix(MEM_DIR).unwrap();
                if rel.starts_with("tmp") {
                    assert!(
                        rel.to_string_lossy().starts_with("tmp/incoming-"),
                        "{what}: leftover {}",
                        rel.display()
                    );
                }
            }
            // The node comes back and does the work again (a transfer resumes).
            drop(store);
            let again = open_on(&img).unwrap();
            op(&again).unwrap_or_else(|e| panic!("{what}: retry: {e}"));
            let got = restored(&again, None).unwrap();
            assert_eq!(got.data, new.data, "{what}: retry");
        }
        if result.is_ok() {
            assert!(saw_new);
            assert!(n > 5, "{name}: too few operations ({n})");
            break;
        }
        n += 1;
    }
}

#[test]
fn crash_during_build_leaves_old_or_new() {
    let mut old = MemState::new();
    churn(&mut old, 1, 300);
    let mut new = old.clone();
    new.mark_snapshotted();
    churn(&mut new, 2, 80);
    let o = old.clone();
    crash_sweep(
        "build",
        |s| {
            write(s, SnapshotKind::Full, None, 5, &o).unwrap();
        },
        |s| {
            let parent = s.latest().unwrap().tip().id;
            write(s, SnapshotKind::Delta, Some(parent), 9, &new).map(|_| ())
        },
        &old,
        &new,
    );
}

#[test]
fn crash_during_compaction_and_gc_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let (_, states) = build_chain(&open(dir.path()));
    let last = states.last().unwrap().clone();
    crash_sweep(
        "compact+gc",
        |s| {
            build_chain(s);
        },
        |s| {
            compact_chain(s, None, 9999)?;
            s.gc().map(|_| ())
        },
        &last,
        &last,
    );
}

#[test]
fn crash_during_install_leaves_old_or_new() {
    // The leader's chain.
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = open(leader_dir.path());
    let (_, states) = build_chain(&leader);
    let new = states.last().unwrap().clone();
    let mut old = MemState::new();
    churn(&mut old, 77, 100);
    let o = old.clone();
    crash_sweep(
        "install",
        |s| {
            write(s, SnapshotKind::Full, None, 3, &o).unwrap();
        },
        |s| {
            let mut t = ChainTransfer::new(&leader, None)?;
            let mut inc = IncomingTransfer::begin(s, "leader-1", t.total_len())?;
            let chunks: Vec<_> = t.chunks_from(inc.received(), 700).collect::<Result<_>>()?;
            for c in chunks {
                inc.write_chunk(c.offset, &c.data, Some(c.crc))?;
            }
            inc.finish(Some(t.checksum())).map(|_| ())
        },
        &old,
        &new,
    );
}

#[test]
fn gc_never_deletes_a_chain_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (infos, states) = build_chain(&store);
    let leased = store.lease_chain(None).unwrap();
    let mut transfer = ChainTransfer::new(&store, None).unwrap();
    let mut reader = store.open(infos[1].id).unwrap();
    // A new base makes the old chain obsolete.
    let mut st = states[3].clone();
    churn(&mut st, 9, 50);
    let base = write(&store, SnapshotKind::Full, None, 100, &st).unwrap();
    assert_eq!(store.latest().unwrap().tip().id, base.id);
    assert!(store.gc().unwrap().is_empty());
    for i in &infos {
        assert!(store.path_of(i.id).exists());
    }
    assert_eq!(
        restored(&store, Some(infos[3].id)).unwrap().data,
        states[3].data
    );
    drop(leased);
    assert!(
        store.gc().unwrap().is_empty(),
        "transfer and reader still hold it"
    );
    let c = transfer.read_at(0, MAX_CHUNK).unwrap();
    assert!(!c.data.is_empty());
    drop(transfer);
    // The reader holds only infos[1], which keeps infos[0] (its parent) too.
    let removed = store.gc().unwrap();
    assert_eq!(removed, vec![infos[2].id, infos[3].id]);
    while reader.next_record().unwrap().is_some() {}
    drop(reader);
    assert_eq!(store.gc().unwrap(), vec![infos[0].id, infos[1].id]);
    assert_eq!(restored(&store, None).unwrap().data, st.data);
    // An in-progress delta build leases its parent.
    let w = store
        .begin(SnapshotKind::Delta, Some(base.id), &meta(101), 0)
        .unwrap();
    let base2 = write(&store, SnapshotKind::Full, None, 102, &st).unwrap();
    assert!(store.gc().unwrap().is_empty());
    drop(w);
    assert_eq!(store.gc().unwrap(), vec![base.id]);
    assert_eq!(store.latest().unwrap().tip().id, base2.id);
}

#[test]
fn chunked_transfer_resumes_and_refuses_damage() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = open(leader_dir.path());
    let (_, states) = build_chain(&leader);
    let f_dir = tempfile::tempdir().unwrap();
    let follower = open(f_dir.path());
    let mut t = ChainTransfer::new(&leader, None).unwrap();
    let total = t.total_len();
    let chunks: Vec<Chunk> = t.chunks_from(0, 1000).collect::<Result<_>>().unwrap();
    assert!(chunks.len() > 3);
    assert!(chunks.last().unwrap().last);
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
    assert_eq!(crc32c::crc32c(&whole), t.checksum());
    assert_eq!(whole.len() as u64, total);

    let mut inc = IncomingTransfer::begin(&follower, "n1-40", total).unwrap();
    for c in &chunks[..2] {
        inc.write_chunk(c.offset, &c.data, Some(c.crc)).unwrap();
    }
    // A damaged chunk is refused and changes nothing.
    let c = &chunks[2];
    let mut bad = c.data.to_vec();
    bad[3] ^= 0x10;
    assert!(matches!(
        inc.write_chunk(c.offset, &bad, Some(c.crc)),
        Err(Error::Corrupt { .. })
    ));
    // A gap is refused.
    let c3 = &chunks[3];
    assert!(matches!(
        inc.write_chunk(c3.offset, &c3.data, Some(c3.crc)),
        Err(Error::ChunkGap { .. })
    ));
    let got = inc.received();
    assert_eq!(got, chunks[2].offset);
    // The connection breaks and the node restarts: the transfer resumes where it was.
    drop(inc);
    drop(follower);
    let follower = open(f_dir.path());
    let mut inc = IncomingTransfer::begin(&follower, "n1-40", total).unwrap();
    assert_eq!(inc.received(), got);
    // Overlapping resend (offset before `received`) is fine.
    let c1 = &chunks[1];
    inc.write_chunk(c1.offset, &c1.data, Some(c1.crc)).unwrap();
    for c in t.chunks_from(inc.received(), 1000) {
        let c = c.unwrap();
        inc.write_chunk(c.offset, &c.data, Some(c.crc)).unwrap();
    }
    assert!(inc.is_complete());
    // An abandoned transfer from another leader is listed and can be dropped.
    IncomingTransfer::begin(&follower, "n2/7", 10)
        .unwrap()
        .write_chunk(0, b"abc", None)
        .unwrap();
    assert_eq!(
        follower.incoming_transfers().unwrap(),
        vec!["n1-40".to_string(), "n2_7".to_string()]
    );
    assert_eq!(follower.remove_incoming(Some("n1-40")).unwrap(), 1);
    let chain = inc.finish(Some(t.checksum())).unwrap();
    assert_eq!(chain.len(), 4);
    assert_eq!(restored(&follower, None).unwrap().data, states[3].data);
    assert_eq!(
        std::fs::read_dir(f_dir.path().join("tmp")).unwrap().count(),
        0
    );

    // A bundle damaged before sending (so chunk CRCs match) is refused at finish and
    // nothing is installed.
    let d_dir = tempfile::tempdir().unwrap();
    let other = open(d_dir.path());
    for at in [5usize, 60, 200, whole.len() / 2, whole.len() - 3] {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x01;
        let mut inc = IncomingTransfer::begin(&other, "bad", total).unwrap();
        for (i, piece) in damaged.chunks(4096).enumerate() {
            let off = (i * 4096) as u64;
            inc.write_chunk(off, piece, Some(crc32c::crc32c(piece)))
                .unwrap();
        }
        assert!(
            matches!(inc.finish(None), Err(Error::Corrupt { .. })),
            "flip at {at}"
        );
        assert!(other.latest().is_none());
    }
    // The whole-bundle checksum alone catches it as well.
    let mut inc = IncomingTransfer::begin(&other, "bad2", total).unwrap();
    let mut damaged = whole.clone();
    damaged[total as usize / 3] ^= 4;
    inc.write_chunk(0, &damaged[..MAX_CHUNK.min(damaged.len())], None)
        .unwrap();
    let mut off = MAX_CHUNK.min(damaged.len());
    while off < damaged.len() {
        let end = (off + MAX_CHUNK).min(damaged.len());
        inc.write_chunk(off as u64, &damaged[off..end], None)
            .unwrap();
        off = end;
    }
    assert!(matches!(
        inc.finish(Some(t.checksum())),
        Err(Error::Corrupt { .. })
    ));
    // install() from a reader works in one call.
    let chain = other.install(&mut whole.as_slice(), total).unwrap();
    assert_eq!(chain.tip().index, 40);
    assert_eq!(restored(&other, None).unwrap().data, states[3].data);
}

/// An object store that fails the first `fail` puts.
/// An object store whose next `fail` puts fail; every put first passes `gate` (a test
/// holding it holds the uploads back).
struct Flaky {
    inner: LocalDirStore,
    fail: AtomicU32,
    gate: Arc<std::sync::Mutex<()>>,
}

impl ObjectStore for Flaky {
    fn put(&self, name: &str, data: &mut dyn std::io::Read) -> Result<u64> {
        let _passed = self.gate.lock().unwrap();
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::ObjectStore {
                name: name.into(),
                reason: "503 slow down".into(),
            });
        }
        self.inner.put(name, data)
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

#[test]
fn uploader_retries_then_uploads_and_pitr_restores() {
    let dir = tempfile::tempdir().unwrap();
    let obj_dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let flaky = Arc::new(Flaky {
        inner: LocalDirStore::new(obj_dir.path()).unwrap(),
        fail: AtomicU32::new(3),
        gate: Arc::default(),
    });
    let up = Uploader::start(
        store.clone(),
        flaky.clone(),
        UploaderOptions {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_attempts: None,
            ..UploaderOptions::default()
        },
    )
    .unwrap();
    let (infos, states) = build_chain(&store);
    for i in &infos {
        up.enqueue(i.id).unwrap();
    }
    // Enqueueing leases: a new base plus gc does not remove what waits for upload.
    let mut st = states[3].clone();
    churn(&mut st, 5, 10);
    write(&store, SnapshotKind::Full, None, 200, &st).unwrap();
    store.gc().unwrap();
    assert!(up.wait_idle(Duration::from_secs(20)), "{:?}", up.status());
    let s = up.status();
    assert_eq!(s.uploaded, 4);
    assert_eq!(s.failed_attempts, 3);
    assert_eq!(s.queued, 0);
    assert!(s.last_error.unwrap().contains("503"));
    assert_eq!(s.last_uploaded, Some(infos[3].id));
    assert_eq!(flaky.list("snapshots/").unwrap().len(), 8);
    drop(up);
    assert_eq!(store.gc().unwrap().len(), 4);

    // Point-in-time restore from the object store into a fresh data dir.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open(fresh_dir.path());
    let mut sink = MemState::new();
    let chain = restore_from_object_store(
        flaky.as_ref(),
        RestorePoint::Before(infos[2].created_ms),
        &fresh,
        Some(&mut sink),
    )
    .unwrap();
    assert_eq!(chain.tip().id, infos[2].id);
    assert_eq!(sink.data, states[2].data);
    assert_eq!(fresh.latest().unwrap().tip().id, infos[2].id);
    let chain = find_in_object_store(flaky.as_ref(), RestorePoint::Latest).unwrap();
    assert_eq!(chain.tip().id, infos[3].id);
    let chain = find_in_object_store(flaky.as_ref(), RestorePoint::Id(infos[1].id)).unwrap();
    assert_eq!(chain.len(), 2);
    assert!(find_in_object_store(flaky.as_ref(), RestorePoint::Before(5)).is_err());
    // Local point-in-time restore.
    let mut sink = MemState::new();
    restore_point(&fresh, RestorePoint::Id(infos[1].id), &mut sink).unwrap();
    assert_eq!(sink.data, states[1].data);
    // A corrupted upload is refused.
    let blob = obj_dir
        .path()
        .join(format!("snapshots/{}.snap", infos[0].id));
    flip_bit(&blob, 30);
    let again = tempfile::tempdir().unwrap();
    let r = restore_from_object_store(
        flaky.as_ref(),
        RestorePoint::Latest,
        &open(again.path()),
        None,
    );
    assert!(matches!(r, Err(Error::Corrupt { .. })));
}

#[test]
fn uploader_gives_up_after_max_attempts_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let obj_dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let gate = Arc::new(std::sync::Mutex::new(()));
    let failing = Arc::new(Flaky {
        inner: LocalDirStore::new(obj_dir.path()).unwrap(),
        fail: AtomicU32::new(u32::MAX),
        gate: gate.clone(),
    });
    let up = Uploader::start(
        store.clone(),
        failing,
        UploaderOptions {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_attempts: Some(4),
            ..UploaderOptions::default()
        },
    )
    .unwrap();
    let (infos, _) = build_chain(&store);
    // The store's puts wait at the gate, which the test holds: `enqueue` returns without
    // having tried a single upload (one that waited for an attempt would hang here).
    let held = gate.lock().unwrap();
    up.enqueue(infos[0].id).unwrap();
    assert_eq!(up.status().failed_attempts, 0);
    drop(held);
    assert!(up.wait_idle(Duration::from_secs(10)));
    let s = up.status();
    assert_eq!((s.uploaded, s.gave_up, s.failed_attempts), (0, 1, 4));
}

#[test]
fn take_snapshot_uses_capture() {
    struct Sm(parking_lot::Mutex<MemState>, u64);
    impl SnapshotCapture for Sm {
        fn capture(&self, kind: SnapshotKind) -> Result<Capture> {
            let st = self.0.lock();
            let source: Box<dyn SnapshotSource + Send> = match kind {
                SnapshotKind::Full => Box::new(st.full_source()),
                SnapshotKind::Delta => Box::new(st.delta_source()),
            };
            Ok(Capture {
                meta: meta(self.1),
                source,
            })
        }
        fn capture_durable(&self, _info: &SnapshotInfo) -> Result<()> {
            self.0.lock().mark_snapshotted();
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = MemState::new();
    churn(&mut st, 3, 100);
    let sm = Sm(parking_lot::Mutex::new(st), 7);
    let a = take_snapshot(&store, &sm, SnapshotKind::Delta, 1).unwrap();
    assert_eq!(a.kind, SnapshotKind::Full);
    churn(&mut sm.0.lock(), 4, 20);
    let b = take_snapshot(&store, &sm, SnapshotKind::Delta, 2).unwrap();
    assert_eq!((b.kind, b.parent), (SnapshotKind::Delta, Some(a.id)));
    assert!(b.size < a.size);
    assert_eq!(restored(&store, None).unwrap().data, sm.0.lock().data);
}

#[test]
fn handles_can_move_to_background_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<SnapshotStore>();
    sync::<SnapshotStore>();
    send::<SnapshotWriter>();
    send::<SnapshotReader>();
    send::<ChainTransfer>();
    send::<IncomingTransfer>();
    send::<LeasedChain>();
    send::<Uploader>();
    sync::<Uploader>();
    send::<Error>();
    sync::<Error>();
}

#[test]
fn crafted_bundles_are_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A well-formed header (valid CRC) whose file sizes overflow, or that lists no file, or
    // whose single "file" is garbage.
    for (sizes, tail) in [
        (vec![u64::MAX, 2], vec![]),
        (vec![], vec![]),
        (vec![16], vec![0xAB; 16]),
    ] {
        let mut h = b"RSNB".to_vec();
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&(sizes.len() as u16).to_le_bytes());
        for (i, s) in sizes.iter().enumerate() {
            h.extend_from_slice(&(i as u128 + 1).to_le_bytes());
            h.extend_from_slice(&s.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
        }
        let crc = crc32c::crc32c(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&tail);
        let r = store.install(&mut h.as_slice(), h.len() as u64);
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{sizes:?}: {r:?}");
    }
    let r = store.install(&mut &b"short"[..], 5);
    assert!(matches!(r, Err(Error::Corrupt { .. })));
    assert!(store.latest().is_none());
    assert!(store.incoming_transfers().unwrap().is_empty());
}
