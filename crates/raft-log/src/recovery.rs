//! Opening a log: scan every segment, verify every record, rebuild the index, and decide
//! between a torn tail (cut off) and corruption in the middle (refuse to open).

use crate::error::{Error, Result};
use crate::format::{self, Record, SegmentReader, Step};
use crate::fs::{self, Fs};
use crate::index::{Cache, Loc, LogIndex};
use crate::segment::{SegFile, TMP_SUFFIX, parse_segment_name};
use bytes::Bytes;
use raft_core::{Entry, HardState};
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
    /// Every segment, by sequence number.
    pub segments: BTreeMap<u64, SegFile>,
    /// The last segment, if any.
    pub tail: Option<Tail>,
    /// Recent entries read while scanning.
    pub cache: Cache,
    /// Leftover prepared files to delete.
    pub stale: Vec<PathBuf>,
}

/// Scans the directory and replays every segment.
pub(crate) fn recover(fs: &dyn Fs, dir: &Path, cache_bytes: usize) -> Result<Recovered> {
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
    let mut index = LogIndex::new();
    let mut hard_state = HardState::default();
    let mut segments = BTreeMap::new();
    let mut tail = None;
    let mut last_buf = Bytes::new();
    let count = names.len();
    for (k, (seq, first, name)) in names.into_iter().enumerate() {
        let path = fs::join(dir, &name);
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        let file = fs.open(&path).map_err(|e| Error::io("open", &path, e))?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let mut buf = vec![0u8; len as usize];
        fs::read_exact_at(&*file, &mut buf, 0).map_err(|e| Error::io("read", &path, e))?;
        let (header, mut reader) = SegmentReader::new(&buf).map_err(|r| corrupt(0, r))?;
        if header.seq != seq || header.first_index != first {
            return Err(corrupt(
                0,
                "segment header does not match the file name".into(),
            ));
        }
        let seq32 =
            u32::try_from(seq).map_err(|_| corrupt(0, "segment number too large".into()))?;
        let (end, bad) = loop {
            let pos = reader.position();
            match reader.step() {
                Step::Record(record, _) => match record {
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
                            offset: data_offset as u32,
                            len: data_len as u32,
                            kind,
                        },
                    ),
                    Record::HardState(hs) => hard_state = hs,
                    Record::Snapshot { meta, clears } => index.apply_snapshot(meta, clears),
                    Record::Truncate { from } => index.truncate(from),
                },
                Step::End => break (pos, None),
                Step::Bad(reason) => break (pos, Some(reason)),
            }
        };
        let dirty_end = format::nonzero_end(&buf, end);
        if let Some(q) = format::valid_record_after(&buf[..dirty_end], end) {
            let reason = bad.unwrap_or_else(|| "zeroed record header".into());
            return Err(corrupt(
                end,
                format!("{reason}, yet a valid record follows at offset {q}"),
            ));
        }
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
                pos: end as u64,
                dirty_end: dirty_end as u64,
                capacity: len,
            });
            last_buf = Bytes::from(buf);
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
    let cache = warm_cache(&index, tail.as_ref().map(|t| t.seq), &last_buf, cache_bytes);
    Ok(Recovered {
        index,
        hard_state,
        segments,
        tail,
        cache,
        stale,
    })
}

/// Fills the cache with the newest entries of the last segment, copied out of its buffer.
fn warm_cache(index: &LogIndex, last_seq: Option<u64>, buf: &Bytes, budget: usize) -> Cache {
    let mut cache = Cache::new(budget);
    let Some(last_seq) = last_seq else {
        return cache;
    };
    let mut lo = index.last_index() + 1;
    let mut bytes = 0usize;
    while lo > index.first_index() {
        let Some(loc) = index.get(lo - 1) else { break };
        if u64::from(loc.seq) != last_seq || bytes + loc.len as usize > budget {
            break;
        }
        bytes += loc.len as usize;
        lo -= 1;
    }
    for i in lo..=index.last_index() {
        let loc = index.get(i).expect("in range");
        let start = loc.offset as usize;
        cache.push(Entry {
            index: i,
            term: loc.term,
            kind: loc.kind,
            data: Bytes::copy_from_slice(&buf[start..start + loc.len as usize]),
        });
    }
    cache
}
