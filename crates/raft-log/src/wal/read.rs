//! Reads of durable entries: [`Wal::term`], [`Wal::entries`] (from the cache or the segment
//! files) and the [`LogRead`] implementation raft-core reads through.

use super::*;

impl Wal {
    /// The term of entry `index`, valid for `first_index() - 1 ..= last_index()`. O(1).
    pub fn term(&self, index: u64) -> Result<u64> {
        let d = self.shared.durable.read();
        if let Some(t) = d.index.term(index) {
            return Ok(t);
        }
        if index < d.index.first_index() {
            Err(Error::Compacted(index))
        } else {
            Err(Error::Unavailable(index))
        }
    }

    /// Durable entries in `[lo, hi)`, stopping before the total [`Entry::size`] would exceed
    /// `max_bytes` (at least one entry is returned when the range is not empty). Recent
    /// entries come from the cache, older ones from the segment files.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        let limit = max_bytes.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut reads: Vec<(u64, Loc, SegFile)> = Vec::new();
        {
            let d = self.shared.durable.read();
            if lo < d.index.first_index() {
                return Err(Error::Compacted(lo));
            }
            if hi > d.index.last_index() + 1 {
                return Err(Error::Unavailable(hi - 1));
            }
            let mut total = 0u64;
            for i in lo..hi {
                let size = if let Some(e) = d.cache.get(i) {
                    out.push(e.clone());
                    e.size()
                } else {
                    let loc = d.index.get(i).expect("within the index");
                    let seg = d
                        .segments
                        .get(&u64::from(loc.seq))
                        // A segment deleted under a concurrent compaction.
                        .ok_or(Error::Unavailable(i))?;
                    out.push(Entry::default());
                    reads.push((i, loc, seg.clone()));
                    u64::from(loc.len) + 24
                };
                total += size;
                if total > limit && i > lo {
                    out.pop();
                    if reads.last().is_some_and(|r| r.0 == i) {
                        reads.pop();
                    }
                    break;
                }
                if total >= limit {
                    break;
                }
            }
        }
        read_entries(&mut out, lo, &reads)?;
        Ok(out)
    }
}

/// Fills the placeholders in `out` (entry `lo + k` at position `k`) from disk, reading runs of
/// neighbouring records with one read each.
fn read_entries(out: &mut [Entry], lo: u64, reads: &[(u64, Loc, SegFile)]) -> Result<()> {
    const MAX_GAP: u64 = 64 << 10;
    let mut k = 0;
    while k < reads.len() {
        let (_, first, seg) = &reads[k];
        let start = u64::from(first.offset);
        let mut end = start + u64::from(first.len);
        let mut j = k + 1;
        while j < reads.len() {
            let (_, l, s) = &reads[j];
            let (off, len) = (u64::from(l.offset), u64::from(l.len));
            if l.seq != first.seq
                || off < end
                || off - end > MAX_GAP
                || !Arc::ptr_eq(&s.file, &seg.file)
            {
                break;
            }
            end = off + len;
            j += 1;
        }
        let mut buf = vec![0u8; (end - start) as usize];
        fs::read_exact_at(&*seg.file, &mut buf, start)
            .map_err(|e| Error::io("read", &seg.path, e))?;
        let buf = Bytes::from(buf);
        for (i, l, _) in &reads[k..j] {
            let off = (u64::from(l.offset) - start) as usize;
            out[(i - lo) as usize] = entry_at(*i, l, buf.slice(off..off + l.len as usize));
        }
        k = j;
    }
    Ok(())
}

impl LogRead for Wal {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        let d = self.shared.durable.read();
        Ok(InitialState {
            hard_state: d.hard_state,
            membership: d.membership.clone(),
        })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(Wal::entries(self, lo, hi, max_bytes)?)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        Ok(Wal::term(self, index)?)
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(Wal::first_index(self))
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(Wal::last_index(self))
    }

    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.snapshot())
    }
}
