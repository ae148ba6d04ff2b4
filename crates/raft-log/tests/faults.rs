//! Fault injection: a crash-point sweep over every file-system operation of a concurrent
//! group-commit workload, mid-log corruption, and `EIO` from `fsync`.
//!
//! Over 700 lines on purpose: the crash-point sweep and its workload checker are one piece;
//! the corruption and `EIO` cases reuse its helpers.

use bytes::Bytes;
use parking_lot::Mutex;
use raft_core::{Entry, HardState, SnapshotMeta};
use raft_log::format::{RECORD_HEADER_LEN, Record, SegmentReader, Step};
use raft_log::fs::{CrashMode, MemFs};
use raft_log::{Error, Settings, SyncPolicy, Wal};
use std::sync::Arc;
use std::time::Duration;

const DIR: &str = "/wal";
const APPENDS: u64 = 200;
const THREADS: u64 = 4;
const COMPACT_AT: u64 = 120;
const SNAP_INDEX: u64 = 60;
/// The workload asks for an explicit `sync` after this append (durable under every policy).
const SYNC_AT: u64 = 150;

fn settings() -> Settings {
    settings_with(SyncPolicy::Always)
}

fn settings_with(sync_policy: SyncPolicy) -> Settings {
    Settings {
        segment_size: 4096,
        cache_bytes: 2048,
        sync_policy,
        ..Settings::default()
    }
}

/// Every sync policy the crash sweeps run under.
const POLICIES: [SyncPolicy; 3] = [
    SyncPolicy::Always,
    SyncPolicy::Interval(Duration::from_millis(2)),
    SyncPolicy::Never,
];

/// The entry the workload writes at `index` (distinct content and size per index).
fn entry(index: u64) -> Entry {
    let len = 20 + (index * 37 % 150) as usize;
    let data: Vec<u8> = (0..len).map(|k| (index as usize * 31 + k) as u8).collect();
    Entry {
        index,
        term: 1 + index / 90,
        data: Bytes::from(data),
        ..Entry::default()
    }
}

fn hard_state(index: u64) -> HardState {
    HardState {
        term: 1 + index / 90,
        vote: Some(1),
        commit: index.saturating_sub(3),
    }
}

#[derive(Default)]
struct Outcome {
    /// Indexes whose append was acknowledged.
    acked: Vec<u64>,
    /// Highest commit of an acknowledged hard state.
    acked_commit: u64,
    /// The compaction was acknowledged.
    compacted: bool,
    /// Every index submitted.
    submitted: u64,
    /// Highest index acknowledged before an explicit `sync` that completed: durable under
    /// every sync policy.
    synced: u64,
}

/// Runs the workload: `THREADS` threads append single entries (every 5th with a hard state)
/// until `APPENDS` were submitted or the log fails; one compaction midway, one explicit
/// `sync` later.
fn workload(fs: &MemFs, policy: SyncPolicy) -> Outcome {
    let Ok(wal) = Wal::open_with(Arc::new(fs.clone()), DIR, settings_with(policy)) else {
        return Outcome::default();
    };
    let wal = Arc::new(wal);
    let next = Arc::new(Mutex::new(1u64));
    let out = Arc::new(Mutex::new(Outcome::default()));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (wal, next, out) = (wal.clone(), next.clone(), out.clone());
            std::thread::spawn(move || {
                loop {
                    let mut n = next.lock();
                    let i = *n;
                    if i > APPENDS {
                        return;
                    }
                    let hs = (i % 5 == 0).then(|| hard_state(i));
                    let Ok(t) = wal.write(vec![entry(i)], hs) else {
                        return;
                    };
                    let compaction = (i == COMPACT_AT).then(|| {
                        wal.compact_prefix(SnapshotMeta {
                            index: SNAP_INDEX,
                            term: entry(SNAP_INDEX).term,
                            ..SnapshotMeta::default()
                        })
                    });
                    *n += 1;
                    out.lock().submitted = i;
                    drop(n);
                    if t.wait().is_err() {
                        return;
                    }
                    let mut o = out.lock();
                    o.acked.push(i);
                    if let Some(hs) = hs {
                        o.acked_commit = o.acked_commit.max(hs.commit);
                    }
                    drop(o);
                    if let Some(Ok(c)) = compaction {
                        if c.wait().is_err() {
                            return;
                        }
                        out.lock().compacted = true;
                    }
                    if i == SYNC_AT {
                        let floor = out.lock().acked.iter().copied().max().unwrap_or(0);
                        if wal.sync().and_then(|t| t.wait()).is_err() {
                            return;
                        }
                        let mut o = out.lock();
                        o.synced = o.synced.max(floor);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(wal);
    Arc::try_unwrap(out).ok().unwrap().into_inner()
}

/// Recovers `img` and checks it against what the workload acknowledged. Under
/// [`SyncPolicy::Always`] every acknowledged write must survive; under the others only
/// what an explicit `sync` covered, but recovery must still succeed and find a consistent
/// log (a prefix of what was written).
fn verify(img: MemFs, out: &Outcome, policy: SyncPolicy, what: &str) {
    let wal = match Wal::open_with(Arc::new(img.clone()), DIR, settings()) {
        Ok(w) => w,
        Err(e) => panic!("{what}: recovery failed: {e}"),
    };
    let always = policy == SyncPolicy::Always;
    let (first, last) = (wal.first_index(), wal.last_index());
    let max_acked = out.acked.iter().copied().max().unwrap_or(0);
    assert!(
        last >= out.synced,
        "{what}: lost entries an explicit sync covered: last {last} < {}",
        out.synced
    );
    assert!(
        !always || last >= max_acked,
        "{what}: lost acknowledged entries: last {last} < {max_acked}"
    );
    assert!(
        last <= out.submitted,
        "{what}: entries that were never written: {last}"
    );
    // The compaction was submitted before the explicit sync, which covers it.
    if (always && out.compacted) || out.synced > 0 {
        assert_eq!(
            first,
            SNAP_INDEX + 1,
            "{what}: acknowledged compaction lost"
        );
    } else {
        assert!(
            first == 1 || first == SNAP_INDEX + 1,
            "{what}: first index {first}"
        );
    }
    if first > 1 {
        assert_eq!(
            wal.term(first - 1).unwrap(),
            entry(SNAP_INDEX).term,
            "{what}"
        );
    }
    let got = wal.entries(first, last + 1, None).unwrap();
    for (k, e) in got.iter().enumerate() {
        assert_eq!(
            *e,
            entry(first + k as u64),
            "{what}: entry {} differs",
            first + k as u64
        );
    }
    let hs = wal.hard_state();
    assert!(
        !always || hs.commit >= out.acked_commit,
        "{what}: acknowledged hard state lost"
    );
    assert!(
        hs == HardState::default() || hs == hard_state(hs.commit + 3),
        "{what}: hard state {hs:?} was never written"
    );
    // The recovered log takes new writes, and they survive a clean reopen.
    let more: Vec<Entry> = (last + 1..last + 4).map(entry).collect();
    wal.append(more).unwrap().wait().unwrap();
    drop(wal);
    let wal = Wal::open_with(Arc::new(img), DIR, settings()).unwrap();
    assert_eq!(wal.last_index(), last + 3, "{what}");
    let got = wal.entries(first, last + 4, None).unwrap();
    assert!(
        got.iter().all(|e| *e == entry(e.index)),
        "{what}: after reopen"
    );
}

#[test]
fn crash_point_sweep() {
    for policy in POLICIES {
        crash_point_sweep_under(policy);
    }
}

fn crash_point_sweep_under(policy: SyncPolicy) {
    let clean = MemFs::new();
    let out = workload(&clean, policy);
    assert_eq!(out.acked.len() as u64, APPENDS);
    assert!(out.compacted);
    assert!(out.synced >= SYNC_AT);
    verify(
        clean.crash_image(CrashMode::LoseUnsynced, 0),
        &out,
        policy,
        &format!("{policy:?}, no crash"),
    );
    let total = clean.ops();
    let modes = [
        CrashMode::LoseUnsynced,
        CrashMode::TornPrefix,
        CrashMode::ZeroedTail,
        CrashMode::GarbageTail,
    ];
    let mut crashed_runs = 0;
    // Batching varies between runs, so go a little past the clean run's count.
    for n in 1..=total + 20 {
        let fs = MemFs::new();
        fs.crash_at(n);
        let out = workload(&fs, policy);
        crashed_runs += u64::from(fs.crashed());
        for (k, mode) in modes.into_iter().enumerate() {
            let img = fs.crash_image(mode, n * 4 + k as u64);
            let what = format!("{policy:?}, crash at op {n} of {total}, {mode:?}");
            verify(img, &out, policy, &what);
        }
    }
    assert!(
        crashed_runs * 2 >= total,
        "{policy:?}: the sweep crashed {crashed_runs} of {total} runs"
    );
}

/// Offsets of the records in a segment file.
fn record_offsets(data: &[u8]) -> Vec<(usize, Record)> {
    let (_, mut r) = SegmentReader::new(data).unwrap();
    let mut out = Vec::new();
    loop {
        let at = r.position();
        match r.step() {
            Step::Record(rec, _) => out.push((at, rec)),
            _ => return out,
        }
    }
}

fn filled_log() -> MemFs {
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    for i in 1..=100 {
        wal.append(vec![entry(i)]).unwrap().wait().unwrap();
    }
    drop(wal);
    fs
}

fn segments(fs: &MemFs) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn mid_log_corruption_is_a_typed_error() {
    // A bit flip in an early record of the first segment, and of the last segment.
    for which in [0, usize::MAX] {
        let fs = filled_log();
        let segs = segments(&fs);
        assert!(segs.len() >= 3);
        let path = segs[which.min(segs.len() - 1)].clone();
        let data = fs.read(&path).unwrap();
        let recs = record_offsets(&data);
        let k = recs
            .iter()
            .position(|(_, r)| matches!(r, Record::Entry { .. }))
            .unwrap();
        let offset = recs[k].0;
        // When the entry is the first record of its batch frame, the frame fails its
        // checksum with nothing valid in it to go on with: the frame is the bad record.
        // Otherwise the records before the entry are read one by one and the entry is.
        let expected = match &recs[k - 1] {
            (at, Record::Frame { .. }) if at + RECORD_HEADER_LEN == offset => *at,
            _ => offset,
        };
        fs.poke(&path, offset as u64 + 20, &[data[offset + 20] ^ 0x04]);
        let err = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap_err();
        match err {
            Error::Corrupt {
                path: p, offset: o, ..
            } => {
                assert_eq!(p, path);
                assert_eq!(o, expected as u64);
                let msg = Error::Corrupt {
                    path: p,
                    offset: o,
                    reason: String::new(),
                }
                .to_string();
                assert!(
                    msg.contains(&path.display().to_string())
                        && msg.contains(&expected.to_string())
                );
            }
            other => panic!("expected a corruption error, got {other}"),
        }
    }
}

#[test]
fn corruption_inside_a_batch_frame_names_the_record() {
    // Appends of several entries each: one batch frame holds several entry records.
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    for i in (1..=60).step_by(4) {
        wal.append((i..i + 4).map(entry).collect())
            .unwrap()
            .wait()
            .unwrap();
    }
    drop(wal);
    let path = segments(&fs)[0].clone();
    let data = fs.read(&path).unwrap();
    let recs = record_offsets(&data);
    // The third entry record of the segment: not the first record of its frame.
    let (offset, _) = recs
        .iter()
        .filter(|(_, r)| matches!(r, Record::Entry { .. }))
        .nth(2)
        .unwrap()
        .clone();
    assert!(!matches!(
        recs.iter().find(|(at, _)| at + RECORD_HEADER_LEN == offset),
        Some((_, Record::Frame { .. }))
    ));
    fs.poke(&path, offset as u64 + 40, &[data[offset + 40] ^ 0x10]);
    match Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap_err() {
        Error::Corrupt {
            path: p, offset: o, ..
        } => assert_eq!((p, o), (path, offset as u64)),
        other => panic!("expected a corruption error, got {other}"),
    }
}

#[test]
fn a_damaged_last_frame_keeps_its_valid_records() {
    // The last batch frame holds entries 57..=60; a bit flip in the data of entry 60 fails
    // the frame's CRC (after recovery replayed its entries speculatively), so its records
    // are read one by one: 57..=59 are kept and 60, the last record, is cut as a torn tail.
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    for i in (1..=60).step_by(4) {
        wal.append((i..i + 4).map(entry).collect())
            .unwrap()
            .wait()
            .unwrap();
    }
    drop(wal);
    let path = segments(&fs).pop().unwrap();
    let data = fs.read(&path).unwrap();
    let (offset, last) = record_offsets(&data).pop().unwrap();
    assert!(matches!(last, Record::Entry { index: 60, .. }));
    fs.poke(&path, offset as u64 + 40, &[data[offset + 40] ^ 0x01]);
    let wal = Wal::open_with(Arc::new(fs), DIR, settings()).unwrap();
    assert_eq!(wal.last_index(), 59);
    let first = wal.first_index();
    assert_eq!(
        wal.entries(first, 60, None).unwrap(),
        (first..=59).map(entry).collect::<Vec<_>>()
    );
}

/// Writes a version-1 segment by hand: the opening records and entries 1..=`n`, bare.
fn v1_log(n: u64) -> MemFs {
    use raft_log::format::{self, SegmentHeader};
    use raft_log::fs::Fs;
    let fs = MemFs::new();
    fs.create_dir_all(DIR.as_ref()).unwrap();
    let mut buf = SegmentHeader {
        version: 1,
        seq: 0,
        first_index: 1,
    }
    .encode()
    .to_vec();
    format::put_hard_state(&mut buf, &hard_state(0));
    format::put_snapshot(&mut buf, &SnapshotMeta::default(), false);
    format::put_membership(&mut buf, &Default::default());
    for i in 1..=n {
        let e = entry(i);
        format::put_entry(&mut buf, i, e.term, e.kind, &e.data);
    }
    buf.resize(buf.len().max(4096), 0);
    let path = std::path::Path::new(DIR).join("0000000000000000-0000000000000001.wal");
    fs.create(&path).unwrap().write_at(&buf, 0).unwrap();
    fs
}

#[test]
fn version_1_segments_are_read_and_kept_version_1() {
    let fs = v1_log(5);
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    assert_eq!(wal.last_index(), 5);
    // Enough to fill the 4 KiB segment and start new ones.
    for i in 6..=40 {
        wal.append(vec![entry(i)]).unwrap().wait().unwrap();
    }
    drop(wal);
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    assert_eq!(
        wal.entries(1, 41, None).unwrap(),
        (1..=40).map(entry).collect::<Vec<_>>()
    );
    drop(wal);
    let segs = segments(&fs);
    assert!(segs.len() >= 2);
    for (k, path) in segs.iter().enumerate() {
        let data = fs.read(path).unwrap();
        let (header, _) = SegmentReader::new(&data).unwrap();
        let count =
            |f: fn(&Record) -> bool| record_offsets(&data).iter().filter(|(_, r)| f(r)).count();
        let frames = count(|r| matches!(r, Record::Frame { .. }));
        let times = count(|r| matches!(r, Record::Time { .. }));
        if k == 0 {
            // Appended to with bare records and no time records, so a version-1 reader
            // still reads it whole.
            assert_eq!((header.version, frames, times), (1, 0, 0));
            assert!(record_offsets(&data).len() > 3 + 5);
        } else {
            // Every write of entries in a version-3 segment carries its time, except the
            // one encoded while the version-1 segment was still being written (k == 1).
            assert_eq!(header.version, raft_log::format::VERSION);
            assert!(frames > 0);
            let entries = count(|r| matches!(r, Record::Entry { .. }));
            let untimed = usize::from(k == 1);
            assert_eq!(times + untimed, entries, "one append per entry here");
        }
    }
}

#[test]
fn a_newer_version_is_refused() {
    let fs = v1_log(3);
    let path = segments(&fs)[0].clone();
    let mut header = fs.read(&path).unwrap()[..32].to_vec();
    let newer = raft_log::format::VERSION + 1;
    header[8..12].copy_from_slice(&newer.to_le_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    fs.poke(&path, 0, &header);
    match Wal::open_with(Arc::new(fs), DIR, settings()).unwrap_err() {
        Error::Corrupt {
            offset: 0, reason, ..
        } => {
            let want = format!("unsupported segment version {newer}");
            assert!(reason.contains(&want), "{reason}");
        }
        other => panic!("expected a version error, got {other}"),
    }
}

#[test]
fn corrupt_last_record_is_a_torn_tail() {
    let fs = filled_log();
    let path = segments(&fs).pop().unwrap();
    let data = fs.read(&path).unwrap();
    let (offset, _) = record_offsets(&data).pop().unwrap();
    fs.poke(&path, offset as u64 + 18, &[data[offset + 18] ^ 0x80]);
    let wal = Wal::open_with(Arc::new(fs), DIR, settings()).unwrap();
    assert_eq!(wal.last_index(), 99);
}

#[test]
fn missing_middle_segment_is_detected() {
    use raft_log::fs::Fs;
    let fs = filled_log();
    let segs = segments(&fs);
    fs.remove_file(&segs[1]).unwrap();
    let err = Wal::open_with(Arc::new(fs), DIR, settings()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn fsync_eio_stops_the_writer() {
    let fs = MemFs::new();
    let wal = Arc::new(Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap());
    for i in 1..=10 {
        wal.append(vec![entry(i)]).unwrap().wait().unwrap();
    }
    fs.fail_sync_from(1);
    // Many writers in flight when the fsync fails: every one of them gets the error.
    let next = Arc::new(Mutex::new(11u64));
    let results: Vec<_> = (0..8)
        .map(|_| {
            let (wal, next) = (wal.clone(), next.clone());
            std::thread::spawn(move || {
                let mut n = next.lock();
                let r = wal.append(vec![entry(*n)]);
                *n += 1;
                drop(n);
                r.and_then(|t| t.wait())
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    for r in &results {
        match r {
            Err(Error::WriterFailed(cause)) => {
                assert!(cause.to_string().contains("fsync"), "{cause}");
            }
            other => panic!("expected the writer's failure, got {other:?}"),
        }
    }
    let failure = wal.failure().expect("writer stopped");
    assert!(matches!(failure, Error::WriterFailed(_)));
    // Later writes fail at once; reads still serve what was durable.
    assert!(matches!(
        wal.append(vec![entry(50)]),
        Err(Error::WriterFailed(_))
    ));
    assert!(matches!(wal.sync(), Err(Error::WriterFailed(_))));
    assert_eq!(wal.last_index(), 10);
    drop(wal);
    // A restart recovers everything acknowledged.
    let wal = Wal::open_with(
        Arc::new(fs.crash_image(CrashMode::LoseUnsynced, 1)),
        DIR,
        settings(),
    )
    .unwrap();
    assert!(wal.last_index() >= 10);
}

/// The log as a model: first index, entries, hard state.
#[derive(Clone, Debug, PartialEq)]
struct State {
    first: u64,
    entries: Vec<Entry>,
    hs: HardState,
}

impl State {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
    fn truncated(&self, from: u64) -> State {
        let mut s = self.clone();
        s.entries.truncate((from - s.first) as usize);
        s
    }
}

fn versioned(index: u64, term: u64) -> Entry {
    let len = 30 + (index * 7 + term * 13) as usize % 90;
    Entry {
        index,
        term,
        data: Bytes::from(vec![(index * 3 + term * 101) as u8; len]),
        ..Entry::default()
    }
}

enum Step2 {
    Append(Vec<Entry>, Option<HardState>),
    Truncate(u64),
    Compact(u64),
    Install(u64, u64),
    Hs(HardState),
}

/// A deterministic single-threaded script of overwrites, truncations, compactions and a
/// snapshot install; each step waits for its ticket.
fn script() -> Vec<Step2> {
    let hs = |commit| HardState {
        term: 4,
        vote: Some(2),
        commit,
    };
    let mut v = Vec::new();
    let mut i = 1;
    while i <= 60 {
        let n = 1 + i % 3;
        let es: Vec<Entry> = (i..(i + n).min(61)).map(|k| versioned(k, 1)).collect();
        i += es.len() as u64;
        v.push(Step2::Append(es, (i % 4 == 0).then(|| hs(i / 2))));
    }
    v.push(Step2::Truncate(55));
    v.push(Step2::Append(
        (55..=62).map(|k| versioned(k, 2)).collect(),
        None,
    ));
    v.push(Step2::Compact(30));
    v.push(Step2::Append(
        (58..=70).map(|k| versioned(k, 3)).collect(),
        Some(hs(40)),
    ));
    v.push(Step2::Install(80, 4));
    for k in (81..=100).step_by(4) {
        v.push(Step2::Append(
            (k..k + 4).map(|k| versioned(k, 4)).collect(),
            None,
        ));
    }
    v.push(Step2::Compact(90));
    v.push(Step2::Hs(hs(95)));
    v
}

/// Runs the script until the file system crashes; returns the last acknowledged state and
/// every state a crash may leave behind: under [`SyncPolicy::Always`] the acknowledged state
/// or a prefix of the step in flight; under the other policies (acknowledged is not durable)
/// any state the script passed through, including the prefixes of every step.
fn run_script(fs: &MemFs, policy: SyncPolicy) -> (State, Vec<State>) {
    let mut acked = State {
        first: 1,
        entries: Vec::new(),
        hs: HardState::default(),
    };
    let Ok(wal) = Wal::open_with(Arc::new(fs.clone()), DIR, settings_with(policy)) else {
        return (acked.clone(), vec![acked]);
    };
    let mut history = vec![acked.clone()];
    let possible = |candidates: Vec<State>, history: &mut Vec<State>| {
        if policy == SyncPolicy::Always {
            candidates
        } else {
            history.extend(candidates);
            std::mem::take(history)
        }
    };
    for step in script() {
        let prev = acked.clone();
        let mut candidates = vec![prev.clone()];
        let (ticket, next) = match step {
            Step2::Append(es, hs) => {
                let a = es[0].index;
                for c in 1..=es.len() {
                    let mut s = prev.truncated(a);
                    s.entries.extend(es[..c].iter().cloned());
                    candidates.push(s);
                }
                let mut full = candidates.last().unwrap().clone();
                if let Some(hs) = hs {
                    full.hs = hs;
                    candidates.push(full.clone());
                }
                (wal.write(es, hs), full)
            }
            Step2::Truncate(from) => {
                let s = prev.truncated(from);
                candidates.push(s.clone());
                (wal.truncate_suffix(from), s)
            }
            Step2::Compact(upto) => {
                let mut s = prev.clone();
                s.entries.drain(..(upto + 1 - s.first) as usize);
                s.first = upto + 1;
                candidates.push(s.clone());
                let meta = SnapshotMeta {
                    index: upto,
                    term: prev.entries[(upto - prev.first) as usize].term,
                    ..SnapshotMeta::default()
                };
                (wal.compact_prefix(meta), s)
            }
            Step2::Install(index, term) => {
                let s = State {
                    first: index + 1,
                    entries: Vec::new(),
                    hs: prev.hs,
                };
                candidates.push(s.clone());
                let meta = SnapshotMeta {
                    index,
                    term,
                    ..SnapshotMeta::default()
                };
                (wal.install_snapshot(meta), s)
            }
            Step2::Hs(hs) => {
                let s = State { hs, ..prev.clone() };
                candidates.push(s.clone());
                (wal.save_hard_state(hs), s)
            }
        };
        match ticket.and_then(|t| t.wait()) {
            Ok(()) => {
                acked = next;
                if policy != SyncPolicy::Always {
                    history.extend(candidates);
                }
            }
            Err(_) => return (acked, possible(candidates, &mut history)),
        }
    }
    (acked.clone(), possible(vec![acked], &mut history))
}

#[test]
fn crash_point_sweep_with_rewrites() {
    for policy in POLICIES {
        crash_point_sweep_with_rewrites_under(policy);
    }
}

fn crash_point_sweep_with_rewrites_under(policy: SyncPolicy) {
    let clean = MemFs::new();
    let (done, _) = run_script(&clean, policy);
    assert_eq!((done.first, done.last()), (91, 100));
    let total = clean.ops();
    let modes = [
        CrashMode::LoseUnsynced,
        CrashMode::TornPrefix,
        CrashMode::ZeroedTail,
        CrashMode::GarbageTail,
    ];
    for n in 1..=total {
        let fs = MemFs::new();
        fs.crash_at(n);
        let (_, candidates) = run_script(&fs, policy);
        for (k, mode) in modes.into_iter().enumerate() {
            let what = format!("{policy:?}, crash at op {n} of {total}, {mode:?}");
            let img = fs.crash_image(mode, n * 4 + k as u64);
            let wal = Wal::open_with(Arc::new(img), DIR, settings())
                .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
            let got = State {
                first: wal.first_index(),
                entries: wal
                    .entries(wal.first_index(), wal.last_index() + 1, None)
                    .unwrap(),
                hs: wal.hard_state(),
            };
            assert!(
                candidates.contains(&got),
                "{what}: recovered first {} last {} hs {:?}, not a state a crash may leave",
                got.first,
                got.last(),
                got.hs
            );
        }
    }
}

#[test]
fn a_batch_of_empty_requests_leaves_the_log_readable() {
    // `sync` (and a compaction to an index already compacted) queues a request without
    // records; alone in its batch it must not leave an empty batch frame in the segment,
    // which recovery would find followed by valid records and refuse as corruption.
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    wal.append(vec![entry(1), entry(2)])
        .unwrap()
        .wait()
        .unwrap();
    wal.sync().unwrap().wait().unwrap();
    let meta = SnapshotMeta {
        index: 1,
        term: entry(1).term,
        ..SnapshotMeta::default()
    };
    wal.compact_prefix(meta.clone()).unwrap().wait().unwrap();
    wal.compact_prefix(meta).unwrap().wait().unwrap();
    wal.append(vec![entry(3)]).unwrap().wait().unwrap();
    drop(wal);
    let wal = Wal::open_with(Arc::new(fs), DIR, settings())
        .unwrap_or_else(|e| panic!("reopen after an empty batch: {e}"));
    assert_eq!((wal.first_index(), wal.last_index()), (2, 3));
    assert_eq!(wal.entries(2, 4, None).unwrap(), vec![entry(2), entry(3)]);
}

#[test]
fn a_request_over_4_gib_is_refused() {
    // Offsets within a segment are u32: a request whose records add up to more than the
    // format can address must be refused up front, not written with wrapped offsets. The
    // three entries share one zeroed 1.5 GiB buffer that is never touched, so the test
    // costs no memory once the check comes before encoding.
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs.clone()), DIR, settings()).unwrap();
    let data = Bytes::from(vec![0u8; 3 << 29]);
    let entries: Vec<Entry> = (1..=3)
        .map(|index| Entry {
            index,
            term: 1,
            data: data.clone(),
            ..Entry::default()
        })
        .collect();
    match wal.write(entries, None) {
        Err(Error::RequestTooLarge { bytes, max }) => {
            assert!(bytes > 9 << 29, "{bytes}");
            assert_eq!(max, raft_log::format::MAX_REQUEST_BYTES);
            assert!((max as u64) < u64::from(u32::MAX));
        }
        Err(other) => panic!("expected RequestTooLarge, got {other}"),
        Ok(_) => panic!("a request of 4.5 GiB was accepted"),
    }
    // Nothing was queued: the log goes on as before.
    wal.append(vec![entry(1)]).unwrap().wait().unwrap();
    assert_eq!(wal.last_index(), 1);
    // A batch limit the format cannot address is refused too.
    let huge = Settings {
        max_batch_bytes: 2 << 30,
        ..settings()
    };
    assert!(matches!(
        Wal::open_with(Arc::new(MemFs::new()), DIR, huge),
        Err(Error::InvalidSettings(_))
    ));
}
