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
    /// The segment's format version.
    pub version: u32,
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
pub(crate) const WINDOW: usize = 512 << 10;

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

/// Scans the directory and replays every segment, reading `window` bytes at a time.
pub(crate) fn recover(fs: &dyn Fs, dir: &Path, window: usize) -> Result<Recovered> {
    let mut names: Vec<(u64, u64, String)> = Vec::new();
    let mut stale = Vec::new();
    for name in fs.list(dir).map_err(|e| Error::io("list", dir, e))? {
        if let Some((seq, first)) = parse_segment_name(&name) {
            names.push((seq, first, name));
        } else if name.ends_with(TMP_SUFFIX) {
            stale.push(dir.join(&name));
        }
    }
    names.sort();
    let mut index = LogIndex::new();
    let mut hard_state = HardState::default();
    let mut membership = Membership::default();
    let mut segments = BTreeMap::new();
    let mut tail = None;
    let mut buf: Vec<u8> = Vec::new();
    // Room for as many entries as the segments could hold (address space only), so the
    // index never reallocates and copies while it grows.
    let mut total = 0u64;
    for (_, _, name) in &names {
        if let Ok(f) = fs.open(&dir.join(name)) {
            total += f.len().unwrap_or(0);
        }
    }
    index.reserve((total / format::entry_record_len(0) as u64).min(1 << 26) as usize);
    let count = names.len();
    for (k, (seq, first, name)) in names.into_iter().enumerate() {
        let path = dir.join(&name);
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
            buf: &mut buf,
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
        let seq32 =
            u32::try_from(seq).map_err(|_| corrupt(0, "segment number too large".into()))?;
        let mut pos = SEGMENT_HEADER_LEN as u64;
        // Records ending at or before this offset lie in a batch frame whose checksum
        // matched, which verified them.
        let mut verified_end = 0u64;
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
            let base = win.start;
            // A batch frame: entries are pushed while its CRC is computed, then undone if
            // it does not match (only appends are pushed this way, so a truncation undoes
            // them exactly).
            let undo_from = index.last_index() + 1;
            let mut pushed = false;
            let frame = format::frame_run(win.bytes(), rel, |i, term, kind, at, n| {
                if i != index.last_index() + 1 {
                    return false;
                }
                let loc = Loc {
                    term,
                    seq: seq32,
                    offset: (base + at as u64) as u32,
                    len: n as u32,
                    kind,
                };
                index.push(i, loc);
                pushed = true;
                true
            });
            match frame {
                Some((frame_end, parsed)) => {
                    verified_end = base + frame_end as u64;
                    pos = base + parsed as u64;
                    continue;
                }
                None if pushed => index.truncate(undo_from),
                None => {}
            }
            let verified = verified_end.saturating_sub(win.start) as usize;
            let run_end = format::entry_run(
                win.bytes(),
                rel,
                rel + format::RUN_BYTES,
                verified,
                |i, term, kind, at, n| {
                    let loc = Loc {
                        term,
                        seq: seq32,
                        offset: (base + at as u64) as u32,
                        len: n as u32,
                        kind,
                    };
                    index.push(i, loc);
                },
            );
            if run_end > rel {
                pos = base + run_end as u64;
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
                        } => index.push(
                            i,
                            Loc {
                                term,
                                seq: seq32,
                                offset: (win.start + data_offset as u64) as u32,
                                len: data_len as u32,
                                kind,
                            },
                        ),
                        Record::HardState(hs) => hard_state = hs,
                        Record::Snapshot { meta, clears } => {
                            if clears {
                                membership = meta.membership.clone();
                            }
                            index.apply_snapshot(*meta, clears)
                        }
                        Record::Membership(m) => membership = *m,
                        Record::Truncate { from } => index.truncate(from),
                        // Times are for WAL archives; the log itself does not keep them.
                        Record::Time { .. } => {}
                        Record::Frame { verified_end: e } => {
                            if let Some(e) = e {
                                verified_end = win.start + e as u64;
                            }
                        }
                    }
                    pos = win.start + next as u64;
                }
                Step::End => break (pos, None),
                Step::Bad(reason) => break (pos, Some(reason)),
            }
        };
        let dirty_end = check_rest(&mut win, end, bad.as_deref(), &corrupt)?;
        let is_last = k + 1 == count;
        if let Some(reason) = bad {
            if !is_last {
                return Err(corrupt(
                    end,
                    format!("{reason}, in a segment followed by others"),
                ));
            }
            tracing::warn!(
                path = %path.display(),
                offset = end,
                reason,
                "cutting off the torn tail of the write-ahead log"
            );
        }
        let seg = SegFile { path, file };
        if is_last {
            tail = Some(Tail {
                seq,
                seg: seg.clone(),
                pos: end,
                dirty_end,
                capacity: len,
                version: header.version,
            });
        }
        segments.insert(seq, seg);
    }
    if let Err(reason) = index.finish() {
        let path = segments
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
        index,
        hard_state,
        membership,
        segments,
        tail,
        stale,
    })
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
        let big = recover(&fs, dir, WINDOW).unwrap();
        for window in [40, 64, 100, 333, 1000] {
            let small = recover(&fs, dir, window).unwrap();
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
