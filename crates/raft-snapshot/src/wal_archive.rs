//! WAL archiving to the object store: every node copies its closed log segments (and, on a
//! timer, the segment being written as a partial object) next to the snapshots, so a
//! restore can reach any committed index or time between snapshots.
//!
//! This crate does not read WAL segments (raft-log, beside it in the layering, owns the
//! format): the node hands the archiver a [`WalSource`] that lists segments, returns their
//! written bytes with a [`SegmentMeta`] summary, and releases the ones the archive confirmed.

use crate::error::{Error, Result};
use crate::object_store::ObjectStore;
use parking_lot::{Condvar, Mutex};
use raft_metrics::snapshot as m;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What one WAL segment holds, as the node's log reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// The index the next entry had when the segment was started.
    pub first_index: u64,
    /// Lowest and highest entry index in it (`None`: no entries).
    pub entries: Option<(u64, u64)>,
    /// Highest commit index it recorded.
    pub commit: u64,
    /// Earliest and latest time record in it (unix milliseconds; `None`: no times, a segment
    /// of WAL format 1 or 2).
    pub times: Option<(u64, u64)>,
}

/// An archived segment: the metadata object `wal/<node>/<seq>.json` (or `.partial.json`)
/// written after the data object `wal/<node>/<seq>.seg` (or `.partial`), so its presence
/// means the data is complete. Both names use 16 hex digits.
///
/// The data object is the segment file's written part, byte for byte (raft-log's format,
/// `docs/wal-format.md`; `raft_log::archive::ArchiveReplay` reads it back). A partial object
/// is the segment being written, as far as it was written when uploaded; it is replaced by
/// the next partial upload and deleted once the closed segment is in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSegment {
    /// The member whose log this is.
    pub node: u64,
    /// The segment's sequence number in that log.
    pub seq: u64,
    /// What it holds.
    #[serde(flatten)]
    pub meta: SegmentMeta,
    /// Bytes of the data object.
    pub bytes: u64,
    /// CRC32C of the data object.
    pub crc32c: u32,
    /// True for a partial object (the segment was still being written).
    pub partial: bool,
    /// When it was uploaded (unix milliseconds).
    pub uploaded_ms: u64,
}

impl ArchivedSegment {
    /// Name of the data object.
    pub fn data_name(&self) -> String {
        data_name(self.node, self.seq, self.partial)
    }

    /// Name of the metadata object.
    pub fn meta_name(&self) -> String {
        format!("{}.json", self.data_name())
    }
}

fn data_name(node: u64, seq: u64, partial: bool) -> String {
    let ext = if partial { "partial" } else { "seg" };
    format!("wal/{node:016x}/{seq:016x}.{ext}")
}

/// Reads the metadata of every archived segment under `wal/` (all nodes), sorted by node,
/// then sequence number, closed before partial.
pub fn list_wal_archive(obj: &dyn ObjectStore) -> Result<Vec<ArchivedSegment>> {
    let names = obj.list("wal/")?;
    let mut out = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".json")) {
        let mut buf = Vec::new();
        obj.get(name, &mut buf)?;
        let seg: ArchivedSegment =
            serde_json::from_slice(&buf).map_err(|e| Error::ObjectStore {
                name: name.clone(),
                reason: format!("bad WAL segment metadata: {e}"),
            })?;
        if seg.meta_name() != *name {
            return Err(Error::ObjectStore {
                name: name.clone(),
                reason: "metadata of another segment under this name".into(),
            });
        }
        out.push(seg);
    }
    out.sort_by_key(|s| (s.node, s.seq, s.partial));
    Ok(out)
}

/// Downloads an archived segment's data and checks its size and CRC32C.
pub fn download_segment(obj: &dyn ObjectStore, seg: &ArchivedSegment) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(seg.bytes as usize);
    obj.get(&seg.data_name(), &mut buf)?;
    let crc = crc32c::crc32c(&buf);
    if buf.len() as u64 != seg.bytes || crc != seg.crc32c {
        return Err(Error::Corrupt {
            what: seg.data_name(),
            offset: 0,
            reason: format!(
                "{} bytes with CRC32C {crc:08x}, the metadata says {} bytes with {:08x}",
                buf.len(),
                seg.bytes,
                seg.crc32c
            ),
        });
    }
    Ok(buf)
}

/// A segment of the node's log, as [`WalSource::segments`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSegment {
    /// Its sequence number.
    pub seq: u64,
    /// It is being written (only the newest is).
    pub active: bool,
}

/// The node's log, as the archiver sees it.
pub trait WalSource: Send + Sync + 'static {
    /// The segments on disk, oldest first.
    fn segments(&self) -> Vec<SourceSegment>;
    /// The written part of segment `seq` and what it holds.
    fn read(&self, seq: u64) -> Result<(Vec<u8>, SegmentMeta)>;
    /// Segments below `seq` are in the archive (or given up): the log may delete them once
    /// compacted.
    fn release_below(&self, seq: u64);
}

/// Settings of the [`WalArchiver`].
#[derive(Clone, Debug)]
pub struct WalArchiverOptions {
    /// This member's id (the archive's folder).
    pub node: u64,
    /// How often the segment being written is uploaded as a partial object (when it grew):
    /// with closed segments this bounds how much a total loss of the cluster can cost.
    pub tail_interval: Duration,
    /// Closed segments the log keeps for the archive while the store fails; beyond it the
    /// oldest are given up (a gap in the archive, counted and logged) so the disk does not
    /// fill up.
    pub max_backlog_segments: usize,
    /// First wait after a failure (doubling up to `max_backoff`).
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for WalArchiverOptions {
    fn default() -> Self {
        WalArchiverOptions {
            node: 0,
            tail_interval: Duration::from_secs(5),
            max_backlog_segments: 64,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What the archiver has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalArchiveStatus {
    /// Closed segments waiting for upload.
    pub backlog: usize,
    /// True while the last attempt failed.
    pub failing: bool,
    /// True until the store's listing was read at start.
    pub listing_pending: bool,
    /// Segments (closed and partial) uploaded.
    pub uploaded: u64,
    /// Closed segments given up on (the backlog bound).
    pub skipped: u64,
    /// The highest commit index the archive holds (closed or partial).
    pub archived_commit: u64,
    /// The time of the newest entry the archive holds (unix milliseconds).
    pub newest_entry_ms: Option<u64>,
    /// The last failure.
    pub last_error: Option<String>,
}

struct State {
    status: WalArchiveStatus,
    stop: bool,
    /// Kick: archive now (tests, shutdown).
    kick: bool,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
}

/// Archives the node's WAL segments in the background.
///
/// - **Durable queue**: the queue is the difference between the log's closed segments and
///   the store. At start the thread lists `wal/<node>/` and uploads every closed segment the
///   store lacks, oldest first; the log keeps segments until the archive confirmed them
///   ([`WalSource::release_below`]), so nothing is lost across restarts.
/// - **Tail**: every `tail_interval`, when the active segment grew, its written part goes up
///   as `wal/<node>/<seq>.partial` (replacing the previous one).
/// - **Bound**: beyond `max_backlog_segments` closed segments waiting, the oldest are given
///   up, so a store that stays down cannot hold the log forever.
///
/// Metrics (names in `raft_metrics::snapshot`): `WAL_ARCHIVE_BACKLOG`, `WAL_ARCHIVE_FAILING`,
/// `WAL_ARCHIVE_SKIPPED`, `WAL_ARCHIVED_SEGMENTS`, `WAL_ARCHIVED_BYTES`,
/// `WAL_ARCHIVE_AGE` (the recovery point's age).
pub struct WalArchiver {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl WalArchiver {
    /// Starts the background thread.
    pub fn start(
        source: Arc<dyn WalSource>,
        target: Arc<dyn ObjectStore>,
        opts: WalArchiverOptions,
    ) -> Result<Self> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                status: WalArchiveStatus {
                    listing_pending: true,
                    ..WalArchiveStatus::default()
                },
                stop: false,
                kick: false,
            }),
            cond: Condvar::new(),
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("wal-archiver".into())
            .spawn(move || run(&thread_inner, &*source, &*target, &opts))
            .map_err(|e| Error::io("<wal archiver thread>", e))?;
        Ok(WalArchiver {
            inner,
            thread: Some(thread),
        })
    }

    /// The current status.
    pub fn status(&self) -> WalArchiveStatus {
        self.inner.state.lock().status.clone()
    }

    /// Archives now (the tail too, if it grew) instead of at the next interval.
    pub fn kick(&self) {
        self.inner.state.lock().kick = true;
        self.inner.cond.notify_all();
    }

    /// Waits up to `timeout` until the archive holds the commit index `index`; true if so.
    pub fn wait_archived(&self, index: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        loop {
            if st.status.archived_commit >= index {
                return true;
            }
            st.kick = true;
            self.inner.cond.notify_all();
            if self.inner.cond.wait_until(&mut st, deadline).timed_out() {
                return st.status.archived_commit >= index;
            }
        }
    }
}

impl Drop for WalArchiver {
    fn drop(&mut self) {
        self.inner.state.lock().stop = true;
        self.inner.cond.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Uploads one segment (data, then metadata); returns what was stored.
fn upload(
    source: &dyn WalSource,
    target: &dyn ObjectStore,
    node: u64,
    seq: u64,
    partial: bool,
) -> Result<ArchivedSegment> {
    let (data, meta) = source.read(seq)?;
    let seg = ArchivedSegment {
        node,
        seq,
        meta,
        bytes: data.len() as u64,
        crc32c: crc32c::crc32c(&data),
        partial,
        uploaded_ms: now_ms(),
    };
    target.put(&seg.data_name(), &mut data.as_slice())?;
    let json = serde_json::to_vec_pretty(&seg).map_err(|e| Error::Invalid(e.to_string()))?;
    target.put(&seg.meta_name(), &mut json.as_slice())?;
    metrics::counter!(m::WAL_ARCHIVED_SEGMENTS).increment(1);
    metrics::counter!(m::WAL_ARCHIVED_BYTES).increment(seg.bytes);
    Ok(seg)
}

/// The thread's memory of the store.
#[derive(Default)]
struct Progress {
    /// Closed segments the store holds (or that were given up).
    done: BTreeSet<u64>,
    /// Partial objects in the store: sequence number and the bytes uploaded.
    partials: Vec<(u64, u64)>,
}

fn record(st: &mut State, seg: &ArchivedSegment) {
    let s = &mut st.status;
    s.uploaded += 1;
    s.archived_commit = s.archived_commit.max(seg.meta.commit);
    if let Some((_, hi)) = seg.meta.times {
        s.newest_entry_ms = Some(s.newest_entry_ms.map_or(hi, |t| t.max(hi)));
    }
}

fn publish(st: &State) {
    let s = &st.status;
    metrics::gauge!(m::WAL_ARCHIVE_BACKLOG).set(s.backlog as f64);
    metrics::gauge!(m::WAL_ARCHIVE_FAILING).set(if s.failing { 1.0 } else { 0.0 });
    if let Some(t) = s.newest_entry_ms {
        let age = now_ms().saturating_sub(t) as f64 / 1000.0;
        metrics::gauge!(m::WAL_ARCHIVE_AGE).set(age);
    }
}

/// One round: the listing (the first time), closed segments, the bound, the tail.
fn round(
    inner: &Inner,
    source: &dyn WalSource,
    target: &dyn ObjectStore,
    opts: &WalArchiverOptions,
    progress: &mut Option<Progress>,
    tail_due: bool,
) -> Result<()> {
    if progress.is_none() {
        let mut p = Progress::default();
        let prefix = format!("wal/{:016x}/", opts.node);
        let listed: Vec<ArchivedSegment> = list_wal_archive(target)?
            .into_iter()
            .filter(|s| s.node == opts.node)
            .collect();
        let mut st = inner.state.lock();
        for seg in &listed {
            if seg.partial {
                p.partials.push((seg.seq, seg.bytes));
            } else {
                p.done.insert(seg.seq);
            }
            record(&mut st, seg);
        }
        st.status.uploaded = 0;
        st.status.listing_pending = false;
        tracing::info!(%prefix, archived = p.done.len(), "WAL archiver resumed");
        *progress = Some(p);
    }
    let p = progress.as_mut().expect("set above");
    let segments = source.segments();
    let mut waiting: Vec<u64> = segments
        .iter()
        .filter(|s| !s.active && !p.done.contains(&s.seq))
        .map(|s| s.seq)
        .collect();
    // The bound: give up the oldest beyond it.
    while waiting.len() > opts.max_backlog_segments {
        let seq = waiting.remove(0);
        p.done.insert(seq);
        metrics::counter!(m::WAL_ARCHIVE_SKIPPED).increment(1);
        inner.state.lock().status.skipped += 1;
        tracing::error!(
            seq,
            bound = opts.max_backlog_segments,
            "WAL segment given up: the archive backlog exceeds its bound (a gap in the archive)"
        );
    }
    let floor = |p: &Progress| {
        segments
            .iter()
            .find(|s| s.active || !p.done.contains(&s.seq))
            .map_or(0, |s| s.seq)
    };
    inner.state.lock().status.backlog = waiting.len();
    source.release_below(floor(p));
    for seq in waiting {
        let seg = upload(source, target, opts.node, seq, false)?;
        p.done.insert(seq);
        {
            let mut st = inner.state.lock();
            record(&mut st, &seg);
            st.status.backlog = st.status.backlog.saturating_sub(1);
            publish(&st);
        }
        source.release_below(floor(p));
        tracing::debug!(seq, bytes = seg.bytes, "WAL segment archived");
    }
    // Partial objects of segments now archived whole are no longer needed.
    let done = &p.done;
    let stale: Vec<u64> = p
        .partials
        .iter()
        .map(|&(s, _)| s)
        .filter(|s| done.contains(s))
        .collect();
    for seq in stale {
        let name = data_name(opts.node, seq, true);
        target.delete(&format!("{name}.json"))?;
        target.delete(&name)?;
        p.partials.retain(|&(s, _)| s != seq);
    }
    if tail_due && let Some(active) = segments.iter().find(|s| s.active) {
        let before = p
            .partials
            .iter()
            .find(|&&(s, _)| s == active.seq)
            .map(|&(_, b)| b);
        let (data, _) = source.read(active.seq)?;
        if before != Some(data.len() as u64) {
            let seg = upload(source, target, opts.node, active.seq, true)?;
            p.partials.retain(|&(s, _)| s != active.seq);
            p.partials.push((active.seq, seg.bytes));
            record(&mut inner.state.lock(), &seg);
        }
    }
    Ok(())
}

fn run(inner: &Inner, source: &dyn WalSource, target: &dyn ObjectStore, opts: &WalArchiverOptions) {
    let mut progress: Option<Progress> = None;
    let mut failures = 0u32;
    let mut last_tail = Instant::now() - opts.tail_interval;
    loop {
        let kicked = {
            let mut st = inner.state.lock();
            if st.stop {
                return;
            }
            std::mem::take(&mut st.kick)
        };
        let tail_due = kicked || last_tail.elapsed() >= opts.tail_interval;
        if tail_due {
            last_tail = Instant::now();
        }
        let result = round(inner, source, target, opts, &mut progress, tail_due);
        let wait = {
            let mut st = inner.state.lock();
            match result {
                Ok(()) => {
                    failures = 0;
                    st.status.failing = false;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "WAL archiving failed");
                    st.status.failing = true;
                    st.status.last_error = Some(e.to_string());
                }
            }
            publish(&st);
            inner.cond.notify_all();
            if failures > 0 {
                let factor = 2u32.saturating_pow((failures - 1).min(30));
                opts.initial_backoff
                    .saturating_mul(factor)
                    .min(opts.max_backoff)
            } else {
                opts.tail_interval.min(Duration::from_secs(1))
            }
        };
        let deadline = Instant::now() + wait;
        let mut st = inner.state.lock();
        while !st.stop && !st.kick && !inner.cond.wait_until(&mut st, deadline).timed_out() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::LocalDirStore;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A log of segments whose bytes are `seq` repeated; the last one is active and grows.
    #[derive(Default)]
    struct FakeLog {
        segs: Mutex<Vec<(u64, Vec<u8>)>>,
        released: AtomicU64,
    }

    impl WalSource for FakeLog {
        fn segments(&self) -> Vec<SourceSegment> {
            let segs = self.segs.lock();
            let n = segs.len();
            segs.iter()
                .enumerate()
                .filter(|(_, (seq, _))| *seq >= self.released.load(Ordering::Relaxed))
                .map(|(k, (seq, _))| SourceSegment {
                    seq: *seq,
                    active: k + 1 == n,
                })
                .collect()
        }
        fn read(&self, seq: u64) -> Result<(Vec<u8>, SegmentMeta)> {
            let segs = self.segs.lock();
            let (_, data) = segs
                .iter()
                .find(|(s, _)| *s == seq)
                .ok_or(Error::Invalid("gone".into()))?;
            let meta = SegmentMeta {
                first_index: seq * 10 + 1,
                entries: Some((seq * 10 + 1, seq * 10 + data.len() as u64)),
                commit: seq * 10 + data.len() as u64,
                times: Some((1_000 + seq, 1_000 + seq)),
            };
            Ok((data.clone(), meta))
        }
        fn release_below(&self, seq: u64) {
            self.released.fetch_max(seq, Ordering::Relaxed);
        }
    }

    /// A store that fails every call while `down` is set.
    struct Flaky {
        inner: LocalDirStore,
        down: AtomicBool,
    }

    impl Flaky {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::Relaxed) {
                return Err(Error::ObjectStore {
                    name: "*".into(),
                    reason: "store down".into(),
                });
            }
            Ok(())
        }
    }

    impl ObjectStore for Flaky {
        fn put(&self, name: &str, data: &mut dyn std::io::Read) -> Result<u64> {
            self.check()?;
            self.inner.put(name, data)
        }
        fn get(&self, name: &str, out: &mut dyn std::io::Write) -> Result<u64> {
            self.check()?;
            self.inner.get(name, out)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.check()?;
            self.inner.list(prefix)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.check()?;
            self.inner.delete(name)
        }
    }

    #[test]
    fn closed_segments_and_the_tail_go_up_outages_hold_the_log_and_the_bound_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Flaky {
            inner: LocalDirStore::new(dir.path()).unwrap(),
            down: AtomicBool::new(true),
        });
        let log = Arc::new(FakeLog::default());
        log.segs
            .lock()
            .extend([(0, vec![0; 3]), (1, vec![1; 4]), (2, vec![2; 2])]);
        let opts = WalArchiverOptions {
            node: 7,
            tail_interval: Duration::from_millis(20),
            max_backlog_segments: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        };
        let archiver = WalArchiver::start(log.clone(), store.clone(), opts).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // The store is down: nothing released, the failure shows.
        assert_eq!(log.released.load(Ordering::Relaxed), 0);
        assert!(archiver.status().failing);
        store.down.store(false, Ordering::Relaxed);
        assert!(
            archiver.wait_archived(22, Duration::from_secs(5)),
            "{:?}",
            archiver.status()
        );
        let listed = list_wal_archive(&*store).unwrap();
        let names: Vec<(u64, bool)> = listed.iter().map(|s| (s.seq, s.partial)).collect();
        assert_eq!(names, vec![(0, false), (1, false), (2, true)]);
        assert_eq!(download_segment(&*store, &listed[1]).unwrap(), vec![1; 4]);
        assert_eq!(
            log.released.load(Ordering::Relaxed),
            2,
            "the active segment stays"
        );
        assert_eq!(archiver.status().newest_entry_ms, Some(1_002));

        // Segment 2 closes: it goes up whole and its partial object goes away.
        log.segs.lock().push((3, vec![3; 1]));
        assert!(archiver.wait_archived(31, Duration::from_secs(5)));
        let names: Vec<(u64, bool)> = list_wal_archive(&*store)
            .unwrap()
            .iter()
            .map(|s| (s.seq, s.partial))
            .collect();
        assert_eq!(names, vec![(0, false), (1, false), (2, false), (3, true)]);

        // A long outage: beyond the bound the oldest waiting segments are given up.
        store.down.store(true, Ordering::Relaxed);
        log.segs
            .lock()
            .extend((4..10).map(|s| (s, vec![s as u8; 1])));
        let deadline = Instant::now() + Duration::from_secs(5);
        while archiver.status().skipped < 3 {
            assert!(Instant::now() < deadline, "{:?}", archiver.status());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Six closed segments wait (3..=8) with room for three: 3, 4 and 5 are given up.
        assert_eq!(archiver.status().skipped, 3);
        store.down.store(false, Ordering::Relaxed);
        assert!(archiver.wait_archived(91, Duration::from_secs(5)));
        let closed: Vec<u64> = list_wal_archive(&*store)
            .unwrap()
            .iter()
            .filter(|s| !s.partial)
            .map(|s| s.seq)
            .collect();
        assert_eq!(closed, vec![0, 1, 2, 6, 7, 8]);
        // A damaged object is refused on download.
        let mut seg = list_wal_archive(&*store).unwrap()[0].clone();
        seg.crc32c ^= 1;
        assert!(matches!(
            download_segment(&*store, &seg),
            Err(Error::Corrupt { .. })
        ));
    }
}
