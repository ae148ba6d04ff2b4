//! [`Wal`]'s segment files as the WAL archive (`Settings::archive`) sees them: the list of
//! segments, a segment's bytes, and the floor below which archived segments may be deleted.

use super::*;

impl Wal {
    /// The segment files on disk, oldest first; the last one is being written. With
    /// `Settings::archive` this includes obsolete segments the archive has not confirmed.
    pub fn segments(&self) -> Vec<crate::archive::LocalSegment> {
        let d = self.shared.durable.read();
        let newest = d.segments.keys().next_back().copied();
        d.segments
            .iter()
            .filter_map(|(&seq, f)| {
                let name = f.path.file_name()?.to_str()?;
                let (_, first_index) = crate::segment::parse_segment_name(name)?;
                Some(crate::archive::LocalSegment {
                    seq,
                    first_index,
                    active: Some(seq) == newest,
                })
            })
            .collect()
    }

    /// The written part of segment `seq` (of the active one: what was written so far), cut
    /// after its last valid record. [`crate::archive::summarize`] describes it.
    pub fn read_segment(&self, seq: u64) -> Result<Vec<u8>> {
        let (seg, end) = {
            let d = self.shared.durable.read();
            let seg = d
                .segments
                .get(&seq)
                .cloned()
                .ok_or(Error::NoSuchSegment(seq))?;
            let newest = d.segments.keys().next_back() == Some(&seq);
            (seg, newest.then_some(d.active_end))
        };
        let len = match end {
            Some(end) => end,
            None => seg
                .file
                .len()
                .map_err(|e| Error::io("stat", &seg.path, e))?,
        };
        let mut buf = vec![0u8; len as usize];
        fs::read_exact_at(&*seg.file, &mut buf, 0).map_err(|e| Error::io("read", &seg.path, e))?;
        let end = crate::archive::records_end(&buf).map_err(|reason| Error::Corrupt {
            path: seg.path.clone(),
            offset: 0,
            reason,
        })?;
        buf.truncate(end);
        Ok(buf)
    }

    /// With `Settings::archive`: segments numbered below `seq` are in the archive, so they
    /// may be deleted once compacted (at the next compaction). Never lowers the floor.
    pub fn set_archive_floor(&self, seq: u64) {
        self.shared
            .archive_floor
            .fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
    }
}
