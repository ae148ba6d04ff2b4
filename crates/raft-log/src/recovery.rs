//! Opening a log: scan every segment, verify every record, rebuild the index, and decide
//! between a torn tail (cut off) and corruption in the middle (refuse to open).

use crate::error::{Error, Result};
use crate::format::{self, RECORD_HEADER_LEN, Record, SEGMENT_HEADER_LEN, SegmentHeader, Step};
use crate::fs::{self, Fs, FsFile};
use crate::index::{Loc, LogIndex};
use crate::segment::{SegFile, TMP_SUFFIX, parse_segment_name};
use raft_core::{HardState, Membership};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The segment new writes go to after recovery.
pub(crate) struct Tail {
    /// Sequence number.
    pub seq: u64,
    /// The file.
    pub seg: SegFile,
    /// Offset just past the last valid record.
    pub pos: u64,
    /// End of the nonzero bytes after `pos` (a torn or garbage tail that must be zeroed
    /// before new records go there).
    pub dirty_end: u64,
    /// The file's length.
    pub capacity: u64,
}

/// Everything rebuilt from the disk.
pub(crate) struct Recovered {
    /// Where each entry lives, and the snapshot mark.
    pub index: LogIndex,
    /// The last hard state written.
    pub hard_state: HardState,
    /// The last membership written.
    pub membership: Membership,
    /// Every segment, by sequence number.
    pub segments: BTreeMap<u64, SegFile>,
    /// The last segment, if any.
    pub tail: Option<Tail>,
    /// Leftover prepared files to delete.
    pub stale: Vec<PathBuf>,
}

/// Bytes read from a segment at a time during recovery.
pub(crate) const WINDOW: usize = 4 << 20;

/// A sliding window over a segment file, so recovery reads each segment once, sequentially,
/// through one reused buffer (no segment-sized allocations).
struct Window<'a> {
    file: &'a dyn FsFile,
    path: &'a Path,
    len: u64,
    /// Bytes to read at a time.
    window: usize,
    buf: &'a mut Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Valid bytes in `buf`.
    filled: usize,
}

impl Window<'_> {
    /// Makes `[pos, pos + need)` (clamped to the file) resident.
    fn ensure(&mut self, pos: u64, need: usize) -> Result<()> {
        let want_end = (pos + need as u64).min(self.len);
        if pos >= self.start && want_end <= self.start + self.filled as u64 {
            return Ok(());
        }
        let keep_from = pos.saturating_sub(self.start) as usize;
        if pos >= self.start && keep_from < self.filled {
            self.buf.copy_within(keep_from..self.filled, 0);
            self.filled -= keep_from;
        } else {
            self.filled = 0;
        }
        self.start = pos;
        let target = ((want_end - pos) as usize).max(self.window);
        let target = target.min((self.len - pos) as usize);
        if self.buf.len() < target {
            self.buf.resize(target, 0);
        }
        fs::read_exact_at(
            self.file,
            &mut self.buf[self.filled..target],
            pos + self.filled as u64,
        )
        .map_err(|e| Error::io("read", self.path, e))?;
        self.filled = target;
        Ok(())
    }

    /// The resident bytes.
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.filled]
    }
}

/// What one segment holds, scanned on its own (segments are independent until they are
/// replayed into the index in order).
struct Scanned {
    seq: u64,
    seg: SegFile,
    len: u64,
    /// Entry records, in file order.
    entries: Vec<(u64, Loc)>,
    /// The other records, each with the number of entries that precede it in the segment.
    marks: Vec<(usize, Record)>,
    /// Offset just past the last valid record.
    end: u64,
    /// Why the scan stopped before the end of the written part, if it did.
    bad: Option<String>,
    /// End of the nonzero bytes after `end`.
    dirty_end: u64,
}

/// Reads and verifies one segment, collecting its records (not applying them).
fn scan_segment(
    fs: &dyn Fs,
    path: PathBuf,
    seq: u64,
    first: u64,
    window: usize,
    buf: &mut Vec<u8>,
) -> Result<Scanned> {
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    let file = fs.open(&path).map_err(|e| Error::io("open", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
    let mut win = Window {
        file: &*file,
        path: &path,
        len,
        window,
        buf,
        start: 0,
        filled: 0,
    };
    win.ensure(0, SEGMENT_HEADER_LEN)?;
    let header = SegmentHeader::decode(win.bytes()).map_err(|r| corrupt(0, r))?;
    if header.seq != seq || header.first_index != first {
        return Err(corrupt(
            0,
            "segment header does not match the file name".into(),
        ));
    }
    let seq32 = u32::try_from(seq).map_err(|_| corrupt(0, "segment number too large".into()))?;
    // Room for as many entries as the segment could hold (address space only).
    let mut entries = Vec::with_capacity((len / format::entry_record_len(0) as u64) as usize);
    let mut marks = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let (end, bad) = loop {
        win.ensure(pos, RECORD_HEADER_LEN)?;
        let rel = (pos - win.start) as usize;
        if let Some(h) = win.bytes().get(rel..rel + RECORD_HEADER_LEN) {
            let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as u64;
            if len > 0 && pos + (RECORD_HEADER_LEN as u64) + len <= win.len {
                win.ensure(pos, RECORD_HEADER_LEN + len as usize)?;
            }
        }
        let rel = (pos - win.start) as usize;
        // Fast path for the common record.
        if let Some((i, term, kind, data_offset, data_len, next)) =
            format::decode_entry(win.bytes(), rel)
        {
            let loc = Loc {
                term,
                seq: seq32,
                offset: (win.start + data_offset as u64) as u32,
                len: data_len as u32,
                kind,
            };
            entries.push((i, loc));
            pos = win.start + next as u64;
            continue;
        }
        match format::decode_at(win.bytes(), rel) {
            Step::Record(record, next) => {
                match record {
                    Record::Entry {
                        index: i,
                        term,
                        kind,
                        data_offset,
                        data_len,
                    } => entries.push((
                        i,
                        Loc {
                            term,
                            seq: seq32,
                            offset: (win.start + data_offset as u64) as u32,
                            len: data_len as u32,
                            kind,
                        },
                    )),
                    other => marks.push((entries.len(), other)),
                }
                pos = win.start + next as u64;
            }
            Step::End => break (pos, None),
            Step::Bad(reason) => break (pos, Some(reason)),
        }
    };
    let dirty_end = check_rest(&mut win, end, bad.as_deref(), &corrupt)?;
    Ok(Scanned {
        seq,
        seg: SegFile { path, file },
        len,
        entries,
        marks,
        end,
        bad,
        dirty_end,
    })
}

/// The number of segments scanned at once: segments are verified in parallel (up to the
/// machine's parallelism, at most 4) and replayed in order. Scans run at most this many
/// segments ahead of the replay, which bounds the memory held by scanned records.
fn scan_threads(segments: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
        .min(segments)
        .max(1)
}

/// Scans the directory and replays every segment, reading `window` bytes at a time, on
/// `threads` scanning threads (`None`: [`scan_threads`]).
pub(crate) fn recover_with(
    fs: &dyn Fs,
    dir: &Path,
    window: usize,
    threads: Option<usize>,
) -> Result<Recovered> {
    let mut names: Vec<(u64, u64, String)> = Vec::new();
    let mut stale = Vec::new();
    for name in fs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        if let Some((seq, first)) = parse_segment_name(&name) {
            names.push((seq, first, name));
        } else if name.ends_with(TMP_SUFFIX) {
            stale.push(fs::join(dir, &name));
        }
    }
    names.sort();
    let mut replay = Replay::new(names.len());
    // Room for as many entries as the segments could hold (address space only), so the
    // index never reallocates and copies while it grows.
    let mut total = 0u64;
    for (_, _, name) in &names {
        if let Ok(f) = fs.open(&fs::join(dir, name)) {
            total += f.len().unwrap_or(0);
        }
    }
    replay
        .index
        .reserve((total / format::entry_record_len(0) as u64).min(1 << 26) as usize);
    let jobs: Vec<(PathBuf, u64, u64)> = names
        .into_iter()
        .map(|(seq, first, name)| (fs::join(dir, &name), seq, first))
        .collect();
    let threads = threads.unwrap_or_else(|| scan_threads(jobs.len()));
    if threads == 1 {
        let mut buf = Vec::new();
        for (path, seq, first) in jobs {
            replay.add(scan_segment(fs, path, seq, first, window, &mut buf)?)?;
        }
    } else {
        scan_parallel(fs, &jobs, window, threads, |s| replay.add(s))?;
    }
    replay.finish(stale)
}

/// Runs `scan_segment` over `jobs` on `threads` threads and hands the results to `add` in
/// job order; stops at the first error (in job order).
fn scan_parallel(
    fs: &dyn Fs,
    jobs: &[(PathBuf, u64, u64)],
    window: usize,
    threads: usize,
    mut add: impl FnMut(Scanned) -> Result<()>,
) -> Result<()> {
    use std::sync::mpsc;
    use std::sync::{Condvar, Mutex};
    /// Which job is next, how many were replayed, and whether to stop.
    struct Plan {
        next: usize,
        replayed: usize,
        stop: bool,
    }
    let plan = Mutex::new(Plan {
        next: 0,
        replayed: 0,
        stop: false,
    });
    let turn = Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, Result<Scanned>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (plan, turn) = (&plan, &turn);
            scope.spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let k = {
                        let mut p = plan.lock().unwrap_or_else(|e| e.into_inner());
                        while !p.stop && p.next < jobs.len() && p.next >= p.replayed + threads {
                            p = turn.wait(p).unwrap_or_else(|e| e.into_inner());
                        }
                        if p.stop || p.next >= jobs.len() {
                            return;
                        }
                        p.next += 1;
                        p.next - 1
                    };
                    let (path, seq, first) = &jobs[k];
                    let r = scan_segment(fs, path.clone(), *seq, *first, window, &mut buf);
                    if tx.send((k, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let stop = |plan: &Mutex<Plan>| {
            plan.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
            turn.notify_all();
        };
        let mut early = BTreeMap::new();
        for (k, (path, _, _)) in jobs.iter().enumerate() {
            let scanned = loop {
                if let Some(r) = early.remove(&k) {
                    break r;
                }
                match rx.recv() {
                    Ok((j, r)) => {
                        early.insert(j, r);
                    }
                    Err(_) => {
                        stop(&plan);
                        return Err(Error::io(
                            "scan",
                            path,
                            std::io::Error::other("a recovery thread stopped"),
                        ));
                    }
                }
            };
            if let Err(e) = scanned.and_then(&mut add) {
                stop(&plan);
                return Err(e);
            }
            plan.lock().unwrap_or_else(|e| e.into_inner()).replayed = k + 1;
            turn.notify_all();
        }
        Ok(())
    })
}

/// Replays scanned segments, in order, into the index and the last hard state and
/// membership.
struct Replay {
    index: LogIndex,
    hard_state: HardState,
    membership: Membership,
    segments: BTreeMap<u64, SegFile>,
    tail: Option<Tail>,
    /// Segments still to come.
    remaining: usize,
}

impl Replay {
    fn new(count: usize) -> Self {
        Replay {
            index: LogIndex::new(),
            hard_state: HardState::default(),
            membership: Membership::default(),
            segments: BTreeMap::new(),
            tail: None,
            remaining: count,
        }
    }

    fn add(&mut self, s: Scanned) -> Result<()> {
        self.remaining -= 1;
        let is_last = self.remaining == 0;
        if let Some(reason) = &s.bad {
            if !is_last {
                return Err(Error::Corrupt {
                    path: s.seg.path.clone(),
                    offset: s.end,
                    reason: format!("{reason}, in a segment followed by others"),
                });
            }
            tracing::warn!(
                path = %s.seg.path.display(),
                offset = s.end,
                reason,
                "cutting off the torn tail of the write-ahead log"
            );
        }
        let mut marks = s.marks.into_iter().peekable();
        for (n, (i, loc)) in s.entries.into_iter().enumerate() {
            while let Some((_, record)) = marks.next_if(|(at, _)| *at == n) {
                self.mark(record);
            }
            self.index.push(i, loc);
        }
        for (_, record) in marks {
            self.mark(record);
        }
        if is_last {
            self.tail = Some(Tail {
                seq: s.seq,
                seg: s.seg.clone(),
                pos: s.end,
                dirty_end: s.dirty_end,
                capacity: s.len,
            });
        }
        self.segments.insert(s.seq, s.seg);
        Ok(())
    }

    /// Applies a record other than an entry.
    fn mark(&mut self, record: Record) {
        match record {
            // Never stored as a mark: `scan_segment` keeps entries in `entries`.
            Record::Entry { .. } => {}
            Record::HardState(hs) => self.hard_state = hs,
            Record::Snapshot { meta, clears } => {
                if clears {
                    self.membership = meta.membership.clone();
                }
                self.index.apply_snapshot(*meta, clears)
            }
            Record::Membership(m) => self.membership = *m,
            Record::Truncate { from } => self.index.truncate(from),
        }
    }

    fn finish(mut self, stale: Vec<PathBuf>) -> Result<Recovered> {
        if let Err(reason) = self.index.finish() {
            let path = self
                .segments
                .values()
                .next()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            return Err(Error::Corrupt {
                path,
                offset: 0,
                reason,
            });
        }
        Ok(Recovered {
            index: self.index,
            hard_state: self.hard_state,
            membership: self.membership,
            segments: self.segments,
            tail: self.tail,
            stale,
        })
    }
}

/// Checks the part of a segment after the last valid record (at `end`): fails when a valid
/// record follows (corruption in the middle), otherwise returns the end of its nonzero bytes
/// (a torn or garbage tail to zero before writing there).
fn check_rest(
    win: &mut Window<'_>,
    end: u64,
    bad: Option<&str>,
    corrupt: &dyn Fn(u64, String) -> Error,
) -> Result<u64> {
    // Fast path: the rest is zeros (the preallocated, unwritten part).
    let mut at = end;
    let mut all_zero = true;
    while at < win.len {
        win.ensure(at, win.window)?;
        let rel = (at - win.start) as usize;
        if !format::is_zero(&win.bytes()[rel..]) {
            all_zero = false;
            break;
        }
        at = win.start + win.filled as u64;
    }
    if all_zero {
        return Ok(end);
    }
    // Slow path: something was written after the stop; look at all of it at once.
    let mut rest = vec![0u8; (win.len - end) as usize];
    fs::read_exact_at(win.file, &mut rest, end).map_err(|e| Error::io("read", win.path, e))?;
    let dirty = format::nonzero_end(&rest, 0);
    if let Some(q) = format::valid_record_after(&rest[..dirty], 0) {
        let reason = bad.unwrap_or("zeroed record header");
        return Err(corrupt(
            end,
            format!(
                "{reason}, yet a valid record follows at offset {}",
                end + q as u64
            ),
        ));
    }
    Ok(end + dirty as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::MemFs;
    use crate::{Settings, Wal};
    use raft_core::Entry;
    use std::sync::Arc;

    /// Writes `n` entries into segments of `segment_size` bytes.
    fn multi_segment_log(fs: &MemFs, dir: &Path, n: u64) {
        let settings = Settings {
            segment_size: 4096,
            ..Settings::default()
        };
        let wal = Wal::open_with(Arc::new(fs.clone()), dir, settings).unwrap();
        for i in 1..=n {
            let e = Entry {
                index: i,
                term: 1 + i / 50,
                data: vec![i as u8; (i * 7 % 200) as usize].into(),
                ..Entry::default()
            };
            let hs = HardState {
                term: 1 + i / 50,
                vote: None,
                commit: i,
            };
            wal.write(vec![e], (i % 5 == 0).then_some(hs))
                .unwrap()
                .wait()
                .unwrap();
        }
    }

    /// Scanning segments in parallel rebuilds exactly what one thread rebuilds.
    #[test]
    fn parallel_scan_matches_serial_scan() {
        let fs = MemFs::new();
        let dir = Path::new("/wal");
        multi_segment_log(&fs, dir, 400);
        let serial = recover_with(&fs, dir, 1000, Some(1)).unwrap();
        assert!(
            serial.segments.len() > 8,
            "{} segments",
            serial.segments.len()
        );
        for threads in [2, 3, 4] {
            let par = recover_with(&fs, dir, 1000, Some(threads)).unwrap();
            assert_eq!(par.hard_state, serial.hard_state);
            assert_eq!(par.index.last_index(), 400);
            for i in 1..=400 {
                assert_eq!(par.index.get(i), serial.index.get(i), "entry {i}");
            }
            let (p, s) = (par.tail.unwrap(), serial.tail.as_ref().unwrap());
            assert_eq!((p.seq, p.pos), (s.seq, s.pos));
        }
    }

    /// Corruption in an early segment is reported for that segment, whichever thread
    /// scanned the later ones first.
    #[test]
    fn parallel_scan_reports_the_first_corrupt_segment() {
        let fs = MemFs::new();
        let dir = Path::new("/wal");
        multi_segment_log(&fs, dir, 400);
        let mut names: Vec<String> = fs
            .list(dir)
            .unwrap()
            .into_iter()
            .filter(|n| parse_segment_name(n).is_some())
            .collect();
        names.sort();
        let victim = fs::join(dir, &names[2]);
        let file = fs.open(&victim).unwrap();
        // Flip a byte inside the first record after the segment header.
        let at = SEGMENT_HEADER_LEN as u64 + RECORD_HEADER_LEN as u64 + 3;
        let mut b = [0u8; 1];
        file.read_at(&mut b, at).unwrap();
        file.write_at(&[b[0] ^ 0x40], at).unwrap();
        for threads in [1, 2, 4] {
            match recover_with(&fs, dir, 1000, Some(threads)) {
                Err(Error::Corrupt { path, .. }) => assert_eq!(path, victim, "{threads} threads"),
                Err(e) => panic!("{threads} threads: unexpected error {e}"),
                Ok(_) => panic!("{threads} threads: corruption not detected"),
            }
        }
    }

    /// Records straddling window boundaries are read the same as with one big window.
    #[test]
    fn small_windows_read_the_same_log() {
        let fs = MemFs::new();
        let dir = Path::new("/wal");
        let settings = Settings {
            segment_size: 8192,
            ..Settings::default()
        };
        let wal = Wal::open_with(Arc::new(fs.clone()), dir, settings).unwrap();
        for i in 1..=200u64 {
            let e = Entry {
                index: i,
                term: 1,
                data: vec![i as u8; (i * 13 % 300) as usize].into(),
                ..Entry::default()
            };
            wal.write(
                vec![e],
                (i % 9 == 0).then_some(HardState {
                    term: 1,
                    vote: None,
                    commit: i,
                }),
            )
            .unwrap()
            .wait()
            .unwrap();
        }
        wal.truncate_suffix(190).unwrap().wait().unwrap();
        drop(wal);
        let big = recover_with(&fs, dir, WINDOW, None).unwrap();
        for window in [40, 64, 100, 333, 1000] {
            let small = recover_with(&fs, dir, window, None).unwrap();
            assert_eq!(small.hard_state, big.hard_state);
            assert_eq!(small.index.last_index(), 189);
            for i in 1..=189 {
                assert_eq!(
                    small.index.get(i),
                    big.index.get(i),
                    "window {window}, entry {i}"
                );
            }
            let (s, b) = (small.tail.unwrap(), big.tail.as_ref().unwrap());
            assert_eq!((s.pos, s.dirty_end), (b.pos, b.dirty_end));
        }
    }
}
