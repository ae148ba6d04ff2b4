//! WAL archiving: what an archiver needs to copy segment files elsewhere (which segments
//! exist, their written bytes, a summary of what each holds) and what a point-in-time
//! restore needs to read them back ([`ArchiveReplay`]: the committed entries and the times
//! they were written).
//!
//! An archived segment is the segment file's written part, byte for byte (records and
//! checksums as in `docs/wal-format.md`), so the format is the log's own. Segments of format
//! version 3 carry a time record before the entries of every write, which is where entry
//! times come from; entries in older segments have no time.

use crate::format::{self, Record, SegmentReader, Step};
use raft_core::Entry;
use std::collections::BTreeMap;

/// A segment file of a [`crate::Wal`], as [`crate::Wal::segments`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalSegment {
    /// Its sequence number (consecutive in log order).
    pub seq: u64,
    /// The index the next entry had when it was started (from its name and header).
    pub first_index: u64,
    /// It is the segment being written: it still grows.
    pub active: bool,
}

/// What one segment holds, read from its records by [`summarize`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Its sequence number (from the header).
    pub seq: u64,
    /// The index the next entry had when it was started (from the header).
    pub first_index: u64,
    /// The format version (from the header): below 3 its entries have no times.
    pub version: u32,
    /// The lowest and highest index of an entry record in it (`None`: it holds none).
    pub entries: Option<(u64, u64)>,
    /// The highest commit index of a hard-state record in it.
    pub commit: u64,
    /// The earliest and latest time record in it (unix milliseconds).
    pub times: Option<(u64, u64)>,
    /// Bytes of the written part (what an archive stores).
    pub bytes: u64,
}

/// Where the valid records of a segment's written part end: after the header and every
/// record up to the first all-zero header or the first record that fails its checks (the
/// torn tail of a segment being written is not part of it).
pub fn records_end(buf: &[u8]) -> Result<usize, String> {
    let (_, mut r) = SegmentReader::new(buf)?;
    let mut frame_end = 0;
    loop {
        let pos = r.position();
        match r.step() {
            Step::Record(Record::Frame { verified_end }, _) => {
                frame_end = verified_end.unwrap_or(frame_end);
            }
            Step::Record(..) => {}
            Step::End | Step::Bad(_) => return Ok(pos.max(frame_end)),
        }
    }
}

/// Reads every record of a segment's written part (as [`crate::Wal::read_segment`] returns
/// it, or an archived copy) and says what it holds. Fails on a bad header or a damaged
/// record before the end of `buf`.
pub fn summarize(buf: &[u8]) -> Result<SegmentSummary, String> {
    let mut out = SegmentSummary {
        bytes: buf.len() as u64,
        ..SegmentSummary::default()
    };
    let header = each_record(buf, |rec| match rec {
        Record::Entry { index, .. } => {
            let (lo, hi) = out.entries.unwrap_or((index, index));
            out.entries = Some((lo.min(index), hi.max(index)));
        }
        Record::HardState(hs) => out.commit = out.commit.max(hs.commit),
        Record::Time { unix_ms, .. } => {
            let (lo, hi) = out.times.unwrap_or((unix_ms, unix_ms));
            out.times = Some((lo.min(unix_ms), hi.max(unix_ms)));
        }
        _ => {}
    })?;
    out.seq = header.seq;
    out.first_index = header.first_index;
    out.version = header.version;
    Ok(out)
}

/// Calls `f` on every record of `buf` in order (inside batch frames too); returns the
/// segment header. Every record up to the end of `buf` must be valid.
fn each_record(buf: &[u8], mut f: impl FnMut(Record)) -> Result<format::SegmentHeader, String> {
    let (header, mut r) = SegmentReader::new(buf)?;
    loop {
        let pos = r.position();
        match r.step() {
            Step::Record(Record::Frame { .. }, _) => {}
            Step::Record(rec, _) => f(rec),
            Step::End => return Ok(header),
            Step::Bad(reason) => {
                return Err(format!("segment {}: offset {pos}: {reason}", header.seq));
            }
        }
    }
}

/// The log that archived segments of one node describe, replayed in order.
///
/// Replay follows the log's rules (`docs/wal-format.md`) with one difference: a compaction
/// mark (a snapshot mark that does not clear the log) drops nothing, since the archive's
/// purpose is to keep the entries the node compacted away. A snapshot installed from a
/// leader (a clearing mark) drops the entries above the commit index known so far (they may
/// have been uncommitted); the node's entries continue after the snapshot. Only entries at
/// or below [`commit`](Self::commit) are answered: those are the cluster's committed log,
/// whichever node's archive they come from.
#[derive(Debug, Default)]
pub struct ArchiveReplay {
    entries: BTreeMap<u64, Entry>,
    /// Time records: the first index each applies to, and the time.
    times: BTreeMap<u64, u64>,
    commit: u64,
    last_seq: Option<u64>,
}

impl ArchiveReplay {
    /// An empty replay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replays one more segment (its written part); segments must come in order with
    /// consecutive sequence numbers.
    pub fn push(&mut self, buf: &[u8]) -> crate::Result<SegmentSummary> {
        let summary = summarize(buf).map_err(crate::Error::Archive)?;
        if let Some(last) = self.last_seq
            && summary.seq != last + 1
        {
            return Err(crate::Error::Archive(format!(
                "segment {} follows segment {last}: segments are missing between them",
                summary.seq
            )));
        }
        self.last_seq = Some(summary.seq);
        let mut entries = std::mem::take(&mut self.entries);
        let mut times = std::mem::take(&mut self.times);
        let mut commit = self.commit;
        let mut data_err = None;
        each_record(buf, |rec| match rec {
            Record::Entry {
                index,
                term,
                kind,
                data_offset,
                data_len,
            } => {
                entries.split_off(&index);
                times.split_off(&(index + 1));
                match buf.get(data_offset..data_offset + data_len) {
                    Some(data) => {
                        entries.insert(
                            index,
                            Entry {
                                index,
                                term,
                                kind,
                                data: bytes::Bytes::copy_from_slice(data),
                            },
                        );
                    }
                    None => data_err = Some(index),
                }
            }
            Record::Truncate { from } => {
                entries.split_off(&from);
                times.split_off(&from);
            }
            Record::Snapshot { meta, clears: true } => {
                entries.split_off(&(commit + 1));
                times.split_off(&(commit + 1));
                commit = commit.max(meta.index);
            }
            Record::HardState(hs) => commit = commit.max(hs.commit),
            Record::Time { index, unix_ms } => {
                times.split_off(&index);
                times.insert(index, unix_ms);
            }
            _ => {}
        })
        .map_err(crate::Error::Archive)?;
        if let Some(i) = data_err {
            return Err(crate::Error::Archive(format!(
                "entry {i} runs past its segment"
            )));
        }
        self.entries = entries;
        self.times = times;
        self.commit = commit;
        Ok(summary)
    }

    /// The highest commit index the replayed segments recorded.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// The sequence number of the last segment replayed.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// When entry `index` was written (unix milliseconds), if its segment recorded it.
    pub fn time_of(&self, index: u64) -> Option<u64> {
        self.times.range(..=index).next_back().map(|(_, &t)| t)
    }

    /// The highest committed index whose entry was written at or before `unix_ms`, with
    /// every entry from `from` up to it present and written no later; `None` when the entry
    /// at `from` is missing or was written after `unix_ms`. Entries without a recorded time
    /// (written by a build before format version 3) count as written before any time.
    pub fn last_index_at(&self, from: u64, unix_ms: u64) -> Option<u64> {
        let mut found = None;
        for i in from..=self.commit {
            if !self.entries.contains_key(&i) || self.time_of(i).is_some_and(|t| t > unix_ms) {
                break;
            }
            found = Some(i);
        }
        found
    }

    /// The committed entries `lo..=hi`, every one present; an error names the first one
    /// that is missing or not known to be committed.
    pub fn committed(&self, lo: u64, hi: u64) -> crate::Result<Vec<Entry>> {
        if hi > self.commit {
            return Err(crate::Error::Archive(format!(
                "entry {hi} is not known to be committed (the archive's commit index is {})",
                self.commit
            )));
        }
        let mut out = Vec::with_capacity(hi.saturating_sub(lo) as usize + 1);
        for i in lo..=hi {
            let e = self.entries.get(&i).ok_or_else(|| {
                crate::Error::Archive(format!("entry {i} is not in the archived segments"))
            })?;
            out.push(e.clone());
        }
        Ok(out)
    }

    /// The lowest and highest entry index held (committed or not).
    pub fn range(&self) -> Option<(u64, u64)> {
        Some((
            *self.entries.keys().next()?,
            *self.entries.keys().next_back()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Settings, Wal};
    use raft_core::{EntryKind, HardState};
    use std::sync::Arc;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: format!("e{index}-t{term}").into_bytes().into(),
        }
    }

    fn hs(term: u64, commit: u64) -> Option<HardState> {
        Some(HardState {
            term,
            vote: None,
            commit,
        })
    }

    #[test]
    fn archived_segments_replay_to_the_committed_log_with_times() {
        let fs = crate::fs::MemFs::new();
        let settings = Settings {
            segment_size: 4096,
            archive: true,
            ..Settings::default()
        };
        let wal = Wal::open_with(Arc::new(fs), "/wal", settings).unwrap();
        let before = crate::wal::unix_ms();
        for i in 1..=120u64 {
            wal.write(vec![entry(i, 1)], hs(1, i.saturating_sub(2)))
                .unwrap()
                .wait()
                .unwrap();
        }
        // A new leader overwrites the uncommitted tail (119, 120) and commits its own.
        wal.write(vec![entry(119, 2), entry(120, 2)], hs(2, 120))
            .unwrap()
            .wait()
            .unwrap();
        // Compaction drops the first entries from the log, but not from the archive.
        wal.compact_prefix(raft_core::SnapshotMeta {
            index: 60,
            term: 1,
            membership: raft_core::Membership::default(),
        })
        .unwrap()
        .wait()
        .unwrap();
        let segs = wal.segments();
        assert!(segs.len() > 2, "small segments roll over: {segs:?}");
        assert_eq!(segs[0].seq, 0, "the archive floor keeps compacted segments");
        assert!(segs.last().unwrap().active);
        let mut replay = ArchiveReplay::new();
        for s in &segs {
            let bytes = wal.read_segment(s.seq).unwrap();
            let sum = replay.push(&bytes).unwrap();
            assert_eq!((sum.seq, sum.first_index), (s.seq, s.first_index));
            assert!(sum.times.is_some(), "version-3 segments carry times");
        }
        assert_eq!(replay.commit(), 120);
        let all = replay.committed(1, 120).unwrap();
        assert_eq!(all[118], entry(119, 2));
        assert_eq!(all[117], entry(118, 1));
        assert_eq!(all[0], entry(1, 1));
        assert!(replay.committed(1, 121).is_err());
        let t = replay.time_of(120).unwrap();
        assert!(t >= before);
        assert_eq!(replay.last_index_at(1, u64::MAX), Some(120));
        assert_eq!(replay.last_index_at(1, before - 1), None);
        // Segments must be consecutive.
        let mut gap = ArchiveReplay::new();
        gap.push(&wal.read_segment(segs[0].seq).unwrap()).unwrap();
        assert!(gap.push(&wal.read_segment(segs[2].seq).unwrap()).is_err());
        // Raising the floor lets the next compaction delete what the archive holds.
        wal.set_archive_floor(segs[segs.len() - 1].seq);
        wal.compact_prefix(raft_core::SnapshotMeta {
            index: 100,
            term: 1,
            membership: raft_core::Membership::default(),
        })
        .unwrap()
        .wait()
        .unwrap();
        assert!(wal.segments()[0].seq > 0);
    }

    #[test]
    fn damaged_archives_are_typed_errors() {
        let wal = Wal::open_with(
            Arc::new(crate::fs::MemFs::new()),
            "/wal",
            Settings::default(),
        )
        .unwrap();
        wal.write(vec![entry(1, 1)], hs(1, 1))
            .unwrap()
            .wait()
            .unwrap();
        let mut bytes = wal.read_segment(0).unwrap();
        assert!(summarize(&bytes).is_ok());
        let n = bytes.len();
        bytes[n - 20] ^= 0xff;
        assert!(ArchiveReplay::new().push(&bytes).is_err());
        assert!(summarize(&bytes[..10]).is_err());
        assert!(matches!(
            wal.read_segment(9),
            Err(crate::Error::NoSuchSegment(9))
        ));
    }
}
