//! Reading records back: [`Record`], the verifying [`SegmentReader`] (whose documentation is
//! the format's description), and the fast paths recovery uses over runs of entries.

use super::*;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A log entry; `data` is the byte range of its payload in the segment buffer.
    Entry {
        /// Index of the entry.
        index: u64,
        /// Term of the entry.
        term: u64,
        /// Kind of the entry.
        kind: EntryKind,
        /// Offset of the entry's data within the segment.
        data_offset: usize,
        /// Length of the entry's data.
        data_len: usize,
    },
    /// The hard state as of this point.
    HardState(HardState),
    /// A snapshot / compaction mark.
    Snapshot {
        /// What the snapshot covers (boxed: snapshot marks are rare, entries are not).
        meta: Box<SnapshotMeta>,
        /// The whole log was discarded (it did not contain the snapshot's last entry).
        clears: bool,
    },
    /// Entries at `from` and after were removed.
    Truncate {
        /// First removed index.
        from: u64,
    },
    /// The membership in force at the applied index.
    Membership(Box<Membership>),
    /// When the entries from `index` on (up to the next time record) were written.
    Time {
        /// The first entry the time applies to.
        index: u64,
        /// Milliseconds since the Unix epoch, by the writer's clock.
        unix_ms: u64,
    },
    /// The header of a batch frame; its records follow it (the next offset is the first
    /// of them).
    Frame {
        /// Where the frame ends when its checksum matched: the records up to there are
        /// verified by it. `None` when it did not but the frame's first record is valid on
        /// its own (a torn or damaged batch): its records are then checked one by one.
        verified_end: Option<usize>,
    },
}

/// What the reader found at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A valid record, and the offset of the next one.
    Record(Record, usize),
    /// An all-zero record header: the end of what was written.
    End,
    /// A record that fails its checks.
    Bad(String),
}

/// Parses and verifies the records of one segment held in memory.
///
/// # Segment file format (version 3; versions 1 and 2 are read too)
///
/// A segment file is named `{seq:016x}-{first_index:016x}.wal`: its sequence number in the
/// log (consecutive segments have consecutive numbers) and the index the next entry had when
/// the segment was started. Segments are preallocated (zero-filled) to the configured size;
/// the unwritten rest of a segment is zeros. All integers are little-endian.
///
/// ```text
/// segment header, 32 bytes at offset 0:
///   0  magic      8 bytes  "RAFTWAL\0"
///   8  version    u32      3 (2: written before time records existed; 1: before batch
///                          frames existed)
///  12  seq        u64      the segment's sequence number
///  20  first_idx  u64      the index the next entry had when the segment was started
///  28  crc        u32      CRC32C of bytes 0..28
///
/// records, from offset 32, each starting at a multiple of 8:
///   0  crc        u32      CRC32C of bytes 4..16 of the header followed by the payload
///   4  len        u32      payload length (header and padding not included), > 0
///   8  type       u8       1 entry, 2 hard state, 3 snapshot mark, 4 truncate mark,
///                          5 membership, 6 batch frame (version 2), 7 time (version 3)
///   9  zero       7 bytes
///  16  payload    len bytes
///      padding    zeros up to the next multiple of 8
///
/// payloads:
///   entry       index u64, term u64, kind u8 (0 normal, 1 conf change), data
///   hard state  term u64, vote u64 (0 = none), commit u64
///   snapshot    index u64, term u64, clears u8 (1: the log was discarded whole),
///               auto_leave u8, then voters, voters_outgoing, learners, learners_next,
///               each a u32 count followed by that many u64 node ids
///   truncate    from u64 (entries at `from` and after are removed)
///   membership  auto_leave u8 and the four id sets as in a snapshot mark
///   batch frame whole records of the other types (each with its own header, CRC and
///               padding), so its length is a multiple of 8
///   time        index u64, unix_ms u64: the entries from `index` on, up to the next time
///               record, were written at `unix_ms` (the writer's wall clock, milliseconds
///               since the Unix epoch); replay ignores it, WAL archives read it
/// ```
///
/// The writer puts the records of a group-commit batch in batch frames: consecutive requests
/// (a request is the records of one call such as `Wal::write`) share a frame up to 256 KiB
/// of records, a larger request gets a frame of its own, and one too large for a record
/// length goes bare. A frame's CRC covers every record in it: when it matches, the records
/// in it are not checked one by one (one CRC32C over up to 256 KiB instead of one per
/// record is what makes recovery fast). When it does not match (a torn or damaged write)
/// and the frame's first record is valid on its own, reading goes on record by record
/// inside the frame, checking each record's own CRC as in a segment without frames;
/// otherwise the frame itself is the bad record.
///
/// Version-1 segments hold no frames. A version-1 segment left as the last one by an older
/// build gets bare records appended, so that build can still read it whole; every new
/// segment is version 2, which a build that reads only version 1 refuses by its number.
/// Likewise version-2 segments hold no time records and get none appended: `Wal::write`
/// puts a time record before its entries only while the segment being written is of
/// version 3 (every segment started by this build), and a build that reads only versions 1
/// and 2 refuses a version-3 segment by its number.
///
/// Because records are 8-byte aligned, the 4-byte length field (at offset 4 of an 8-byte
/// aligned header) never straddles a 512-byte sector, so a torn write can leave a stale or
/// new length but never half of one; the CRC then decides. An all-zero header marks the end
/// of the written part of the segment.
///
/// Replaying the records of all segments in order (frames only group them) rebuilds the
/// log: an entry at index `i` replaces any entry at `i` or after; a truncate mark removes
/// entries from `from`; a snapshot mark drops entries up to its index (or all of them when
/// `clears` is set); the last hard-state record wins, and so does the last membership record
/// (a snapshot mark with `clears` set also sets the membership). Every segment begins with a
/// hard-state record, a snapshot mark (with `clears` unset) and a membership record
/// repeating the state at the moment it was started, so deleting older segments on
/// compaction never loses any of them.
pub struct SegmentReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SegmentReader<'a> {
    /// A reader over a whole segment (header included).
    pub fn new(buf: &'a [u8]) -> Result<(SegmentHeader, Self), String> {
        let header = SegmentHeader::decode(buf)?;
        Ok((
            header,
            Self {
                buf,
                pos: SEGMENT_HEADER_LEN,
            },
        ))
    }

    /// The offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads the record at the current position and moves past it when it is valid.
    pub fn step(&mut self) -> Step {
        let step = decode_at(self.buf, self.pos);
        if let Step::Record(_, next) = &step {
            self.pos = *next;
        }
        step
    }
}

/// Decodes the record at `pos` (an aligned offset) of `buf`.
pub fn decode_at(buf: &[u8], pos: usize) -> Step {
    decode(buf, pos, true)
}

/// [`decode_at`], which accepts a batch frame only when `frames` is set (the first record of
/// a damaged frame, which must be valid on its own, may not be another frame).
fn decode(buf: &[u8], pos: usize, frames: bool) -> Step {
    if pos + RECORD_HEADER_LEN > buf.len() {
        if buf[pos.min(buf.len())..].iter().all(|&b| b == 0) {
            return Step::End;
        }
        return Step::Bad("record header runs past the end of the segment".into());
    }
    let h = &buf[pos..pos + RECORD_HEADER_LEN];
    let len = u32_at(h, 4) as usize;
    let kind = h[8];
    if len == 0 && h.iter().all(|&b| b == 0) {
        return Step::End;
    }
    if h[9..16].iter().any(|&b| b != 0) {
        return Step::Bad("nonzero reserved bytes in record header".into());
    }
    let end = pos + RECORD_HEADER_LEN + len;
    if end > buf.len() || len > MAX_PAYLOAD {
        return Step::Bad(format!(
            "record length {len} runs past the end of the segment"
        ));
    }
    let payload = &buf[pos + RECORD_HEADER_LEN..end];
    let crc_ok = crc32c::crc32c(&buf[pos + 4..end]) == u32_at(h, 0);
    if kind == KIND_FRAME && frames {
        if len == 0 || !len.is_multiple_of(ALIGN) {
            return Step::Bad(format!("batch frame of bad length {len}"));
        }
        if crc_ok {
            return Step::Record(
                Record::Frame {
                    verified_end: Some(end),
                },
                pos + RECORD_HEADER_LEN,
            );
        }
        // A torn or damaged batch: its records may still be valid one by one.
        return match decode(buf, pos + RECORD_HEADER_LEN, false) {
            Step::Record(..) => Step::Record(
                Record::Frame { verified_end: None },
                pos + RECORD_HEADER_LEN,
            ),
            _ => Step::Bad("batch frame checksum mismatch".into()),
        };
    }
    if !crc_ok {
        return Step::Bad("record checksum mismatch".into());
    }
    let next = align_up(end);
    let record = match decode_payload(kind, payload, pos + RECORD_HEADER_LEN) {
        Ok(r) => r,
        Err(e) => return Step::Bad(e),
    };
    Step::Record(record, next)
}

/// Decodes `auto_leave u8` and the four id sets; `None` when the bytes do not match.
fn decode_membership(p: &[u8]) -> Option<Membership> {
    let auto_leave = *p.first()? != 0;
    let mut at = 1;
    let mut sets: [BTreeSet<NodeId>; 4] = Default::default();
    for set in &mut sets {
        let n = u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        let ids = p.get(at..at.checked_add(n.checked_mul(8)?)?)?;
        for id in ids.chunks_exact(8) {
            set.insert(u64::from_le_bytes(id.try_into().ok()?));
        }
        at += n * 8;
    }
    if at != p.len() {
        return None;
    }
    let [voters, voters_outgoing, learners, learners_next] = sets;
    Some(Membership {
        voters,
        voters_outgoing,
        learners,
        learners_next,
        auto_leave,
    })
}

/// Bytes of entry records recovery checks at a time outside verified batch frames (see
/// [`entry_run`]): few enough that they are still in the CPU cache when the replay reads
/// them back.
pub(crate) const RUN_BYTES: usize = 64 << 10;

/// Recovery's fast path: replays the consecutive valid entry records of `buf` that start at
/// `pos` (an aligned offset) and before `limit`, calling `f(index, term, kind, data_offset,
/// data_len)` for each, and returns the offset just past the last one: `pos` itself when the
/// record there is not a valid entry record lying wholly in `buf` (then [`decode_at`] decides
/// what it is).
///
/// Records ending at or before `verified` lie in a batch frame whose checksum matched: they
/// are replayed in one pass, checking only their shape. Other records are verified first, in
/// a loop that does nothing else, so the CPU overlaps the CRC32C computations of
/// consecutive records (each one alone is a chain of dependent `crc32` instructions), and
/// replayed in a second pass.
pub(crate) fn entry_run(
    buf: &[u8],
    pos: usize,
    limit: usize,
    verified: usize,
    mut f: impl FnMut(u64, u64, EntryKind, usize, usize),
) -> usize {
    if pos < verified {
        let mut at = pos;
        while at < limit {
            let Some(len) = entry_len(buf, at, verified) else {
                break;
            };
            replay_entry(buf, at, len, &mut f);
            at = align_up(at + RECORD_HEADER_LEN + len);
        }
        return at;
    }
    let mut end = pos;
    while end < limit {
        let Some(len) = entry_len(buf, end, buf.len()) else {
            break;
        };
        let next = end + RECORD_HEADER_LEN + len;
        if crc32c::crc32c(&buf[end + 4..next]) != u32_at(buf, end) {
            break;
        }
        end = align_up(next);
    }
    let mut at = pos;
    while at < end {
        let len = u32_at(buf, at + 4) as usize;
        replay_entry(buf, at, len, &mut f);
        at = align_up(at + RECORD_HEADER_LEN + len);
    }
    end
}

/// Bytes of a batch frame recovery checksums before it reads the records in them (see
/// [`frame_run`]): few enough to still be in the L1 cache.
pub(crate) const FRAME_PIECE: usize = 24 << 10;

/// Recovery's path for the batch frame at `pos` when it lies wholly in `buf`: computes the
/// frame's CRC a [`FRAME_PIECE`] at a time and, right after each piece (while it is still in
/// the cache), calls `f(index, term, kind, data_offset, data_len)` for the entry records
/// lying wholly in the part checked so far, until `f` returns false or a record that is not
/// an entry comes. The calls are speculative: `None` means the record at `pos` is not a
/// well-formed frame or its CRC does not match, and the caller must undo what `f` did.
/// Otherwise returns the end of the frame and the offset of the first record not handed to
/// `f` (the records from there to the end of the frame are verified by the frame's CRC).
pub(crate) fn frame_run(
    buf: &[u8],
    pos: usize,
    mut f: impl FnMut(u64, u64, EntryKind, usize, usize) -> bool,
) -> Option<(usize, usize)> {
    let h = buf.get(pos..pos + RECORD_HEADER_LEN)?;
    let len = u32_at(h, 4) as usize;
    let end = pos + RECORD_HEADER_LEN + len;
    if h[8] != KIND_FRAME
        || h[9..16] != [0; 7]
        || len == 0
        || !len.is_multiple_of(ALIGN)
        || end > buf.len()
    {
        return None;
    }
    let mut crc = crc32c::crc32c(&h[4..]);
    let mut checked = pos + RECORD_HEADER_LEN;
    let mut parsed = checked;
    let mut replaying = true;
    while checked < end {
        let next = (checked + FRAME_PIECE).min(end);
        crc = crc32c::crc32c_append(crc, &buf[checked..next]);
        checked = next;
        while replaying && let Some(n) = entry_len(buf, parsed, checked) {
            let mut accepted = true;
            replay_entry(buf, parsed, n, &mut |i, term, kind, at, dl| {
                accepted = f(i, term, kind, at, dl);
            });
            if !accepted {
                replaying = false;
                break;
            }
            parsed = align_up(parsed + RECORD_HEADER_LEN + n);
        }
    }
    (crc == u32_at(h, 0)).then_some((end, parsed))
}

/// The payload length of the entry record at `pos` when its header and shape are valid and
/// it ends at or before `end` (its CRC is not checked).
#[inline]
fn entry_len(buf: &[u8], pos: usize, end: usize) -> Option<usize> {
    let h = buf.get(pos..pos + RECORD_HEADER_LEN)?;
    let len = u32_at(h, 4) as usize;
    let record_end = pos + RECORD_HEADER_LEN + len;
    let ok = h[8] == KIND_ENTRY
        && h[9..16] == [0; 7]
        && len >= 17
        && record_end <= end.min(buf.len())
        && buf[pos + RECORD_HEADER_LEN + 16] <= 1;
    ok.then_some(len)
}

/// Calls `f` for the entry record at `pos` with payload length `len`.
#[inline]
fn replay_entry(
    buf: &[u8],
    pos: usize,
    len: usize,
    f: &mut impl FnMut(u64, u64, EntryKind, usize, usize),
) {
    let p = pos + RECORD_HEADER_LEN;
    let kind = if buf[p + 16] == 0 {
        EntryKind::Normal
    } else {
        EntryKind::ConfChange
    };
    f(u64_at(buf, p), u64_at(buf, p + 8), kind, p + 17, len - 17);
}

fn decode_payload(kind: u8, p: &[u8], payload_offset: usize) -> Result<Record, String> {
    let short = || format!("record of type {kind} is too short");
    match kind {
        KIND_ENTRY => {
            if p.len() < 17 {
                return Err(short());
            }
            let kind = match p[16] {
                0 => EntryKind::Normal,
                1 => EntryKind::ConfChange,
                k => return Err(format!("unknown entry kind {k}")),
            };
            Ok(Record::Entry {
                index: u64_at(p, 0),
                term: u64_at(p, 8),
                kind,
                data_offset: payload_offset + 17,
                data_len: p.len() - 17,
            })
        }
        KIND_HARD_STATE => {
            if p.len() != 24 {
                return Err(short());
            }
            let vote = u64_at(p, 8);
            Ok(Record::HardState(HardState {
                term: u64_at(p, 0),
                vote: (vote != 0).then_some(vote as NodeId),
                commit: u64_at(p, 16),
            }))
        }
        KIND_SNAPSHOT => {
            if p.len() < 17 {
                return Err(short());
            }
            let membership = decode_membership(&p[17..]).ok_or_else(short)?;
            Ok(Record::Snapshot {
                meta: Box::new(SnapshotMeta {
                    index: u64_at(p, 0),
                    term: u64_at(p, 8),
                    membership,
                }),
                clears: p[16] != 0,
            })
        }
        KIND_MEMBERSHIP => Ok(Record::Membership(Box::new(
            decode_membership(p).ok_or_else(short)?,
        ))),
        KIND_TRUNCATE => {
            if p.len() != 8 {
                return Err(short());
            }
            Ok(Record::Truncate { from: u64_at(p, 0) })
        }
        KIND_TIME => {
            if p.len() != 16 {
                return Err(short());
            }
            Ok(Record::Time {
                index: u64_at(p, 0),
                unix_ms: u64_at(p, 8),
            })
        }
        k => Err(format!("unknown record type {k}")),
    }
}

/// True when some aligned offset at or after `from` holds a valid record: evidence that a bad
/// record at `from` is corruption in the middle of the log rather than a torn tail.
pub fn valid_record_after(buf: &[u8], from: usize) -> Option<usize> {
    let mut pos = align_up(from + 1);
    while pos + RECORD_HEADER_LEN <= buf.len() {
        let h = &buf[pos..pos + RECORD_HEADER_LEN];
        let kind = h[8];
        if (KIND_ENTRY..=KIND_TIME).contains(&kind)
            && u32_at(h, 4) != 0
            && let Step::Record(..) = decode_at(buf, pos)
        {
            return Some(pos);
        }
        pos += ALIGN;
    }
    None
}

/// True when every byte is zero (written so the compiler vectorizes it).
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &b| a | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// The offset just past the last nonzero byte of `buf` at or after `from` (or `from`).
pub fn nonzero_end(buf: &[u8], from: usize) -> usize {
    const CHUNK: usize = 4096;
    let tail = &buf[from.min(buf.len())..];
    // Skip whole zero chunks from the end first (the preallocated, unwritten part).
    let mut end = tail.len();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        if !is_zero(&tail[start..end]) {
            break;
        }
        end = start;
    }
    tail[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(from, |p| from + p + 1)
}

/// The data of an entry record as a cheap slice of the segment buffer.
pub fn entry_data(segment: &Bytes, data_offset: usize, data_len: usize) -> Bytes {
    segment.slice(data_offset..data_offset + data_len)
}
