//! Writing records: the `put_*` functions that append one record of each kind to a buffer,
//! and the batch frames that group one write's records under one checksum.

use super::*;

/// Appends one record (header, payload written by `payload`, zero padding) to `buf`, which
/// must start at an aligned offset. Returns the offset of the payload within `buf`.
fn put_record(buf: &mut Vec<u8>, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) -> usize {
    debug_assert_eq!(buf.len() % ALIGN, 0);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    payload(buf);
    let len = buf.len() - start - RECORD_HEADER_LEN;
    assert!(
        len <= MAX_PAYLOAD,
        "record payload of {len} bytes is too large"
    );
    buf[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 8] = kind;
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    buf.resize(align_up(buf.len()), 0);
    start + RECORD_HEADER_LEN
}

/// The encoded size of an entry record with `data_len` bytes of data.
pub const fn entry_record_len(data_len: usize) -> usize {
    align_up(RECORD_HEADER_LEN + 17 + data_len)
}

/// Appends an entry record; returns the offset within `buf` of the entry's data.
pub fn put_entry(buf: &mut Vec<u8>, index: u64, term: u64, kind: EntryKind, data: &[u8]) -> usize {
    put_record(buf, KIND_ENTRY, |b| {
        b.extend_from_slice(&index.to_le_bytes());
        b.extend_from_slice(&term.to_le_bytes());
        b.push(match kind {
            EntryKind::Normal => 0,
            EntryKind::ConfChange => 1,
        });
        b.extend_from_slice(data);
    }) + 17
}

/// Appends a hard-state record.
pub fn put_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    put_record(buf, KIND_HARD_STATE, |b| {
        b.extend_from_slice(&hs.term.to_le_bytes());
        b.extend_from_slice(&hs.vote.unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&hs.commit.to_le_bytes());
    });
}

/// Appends a snapshot (prefix-compaction) mark. `clears` records that the whole log was
/// discarded because it did not contain the snapshot's last entry.
pub fn put_snapshot(buf: &mut Vec<u8>, meta: &SnapshotMeta, clears: bool) {
    put_record(buf, KIND_SNAPSHOT, |b| {
        b.extend_from_slice(&meta.index.to_le_bytes());
        b.extend_from_slice(&meta.term.to_le_bytes());
        b.push(u8::from(clears));
        put_membership_body(b, &meta.membership);
    });
}

fn put_membership_body(b: &mut Vec<u8>, m: &Membership) {
    b.push(u8::from(m.auto_leave));
    for set in [&m.voters, &m.voters_outgoing, &m.learners, &m.learners_next] {
        b.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for id in set {
            b.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// Appends a membership record: the configuration in force at the applied index.
pub fn put_membership(buf: &mut Vec<u8>, m: &Membership) {
    put_record(buf, KIND_MEMBERSHIP, |b| put_membership_body(b, m));
}

/// Appends a time record: the entries from `index` on (up to the next time record) were
/// written at `unix_ms` (milliseconds since the Unix epoch, the writer's clock).
pub fn put_time(buf: &mut Vec<u8>, index: u64, unix_ms: u64) {
    put_record(buf, KIND_TIME, |b| {
        b.extend_from_slice(&index.to_le_bytes());
        b.extend_from_slice(&unix_ms.to_le_bytes());
    });
}

/// The encoded size of a time record.
pub const TIME_RECORD_LEN: usize = RECORD_HEADER_LEN + 16;

/// Appends a suffix-truncation mark: entries at `from` and after are removed.
pub fn put_truncate(buf: &mut Vec<u8>, from: u64) {
    put_record(buf, KIND_TRUNCATE, |b| {
        b.extend_from_slice(&from.to_le_bytes())
    });
}

/// Starts a batch frame at the end of `buf` (an aligned offset) and returns its offset, to
/// be passed to [`end_frame`] once the batch's records follow it.
pub fn begin_frame(buf: &mut Vec<u8>) -> usize {
    debug_assert_eq!(buf.len() % ALIGN, 0);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    start
}

/// Completes the frame begun at `start`: its payload is everything after its header up to
/// the end of `buf` (whole, aligned records of at most [`MAX_PAYLOAD`] bytes in all).
pub fn end_frame(buf: &mut [u8], start: usize) {
    let len = buf.len() - start - RECORD_HEADER_LEN;
    debug_assert_eq!(len % ALIGN, 0);
    assert!(
        len <= MAX_PAYLOAD,
        "frame payload of {len} bytes is too large"
    );
    buf[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 8] = KIND_FRAME;
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The most record bytes the writer puts in one batch frame, unless a single request is
/// larger: recovery checks a frame's CRC and then reads its records back, and a frame this
/// small is still in the CPU cache for the second pass.
pub const FRAME_BYTES: usize = 256 << 10;

/// Appends `pieces` (each a run of whole, aligned records, such as one request's records) to
/// `buf`, in batch frames when `framed` is set, and returns the offset in `buf` of each
/// piece. Pieces are never split: a frame holds the pieces that fit in [`FRAME_BYTES`], a
/// larger piece gets a frame of its own, and one larger than [`MAX_PAYLOAD`] goes without
/// (its records carry their own CRCs). An empty piece (a request without records, such as
/// a `sync`) adds nothing: no frame is ever empty, since recovery refuses a frame of length
/// zero.
pub fn put_frames<'a>(
    buf: &mut Vec<u8>,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    framed: bool,
) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut open: Option<usize> = None;
    for piece in pieces {
        if piece.is_empty() {
            offsets.push(buf.len());
            continue;
        }
        if let Some(f) = open
            && buf.len() - f - RECORD_HEADER_LEN + piece.len() > FRAME_BYTES
        {
            end_frame(buf, f);
            open = None;
        }
        if framed && open.is_none() && piece.len() <= MAX_PAYLOAD {
            open = Some(begin_frame(buf));
        }
        offsets.push(buf.len());
        buf.extend_from_slice(piece);
    }
    if let Some(f) = open {
        end_frame(buf, f);
    }
    offsets
}
