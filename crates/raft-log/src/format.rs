//! The on-disk format: segment headers and records, how they are encoded, and the reader
//! that parses and verifies them. `docs/wal-format.md` mirrors the description on
//! [`SegmentReader`].
//!
//! This file holds the format's constants and the segment header; `encode` writes records
//! (the `put_*` functions and batch frames) and `decode` reads them back ([`Record`],
//! [`SegmentReader`], whose documentation describes the whole format). Everything is
//! re-exported here, so the public paths are `raft_log::format::*`.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::*;
pub use encode::*;

use bytes::Bytes;
use raft_core::{EntryKind, HardState, Membership, NodeId, SnapshotMeta};
use std::collections::BTreeSet;

/// Magic bytes at the start of every segment file.
pub const MAGIC: [u8; 8] = *b"RAFTWAL\0";
/// The format version this crate writes (segments of versions 1 and 2 are still read).
pub const VERSION: u32 = 3;
/// The oldest format version this crate reads.
pub const MIN_VERSION: u32 = 1;
/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Records start at multiples of this many bytes.
pub const ALIGN: usize = 8;
/// The largest payload a record may carry.
pub const MAX_PAYLOAD: usize = (1 << 31) - 1;
/// The most bytes of records one request (one `Wal::write` and the like) may encode.
/// Offsets within a segment are `u32` (the in-memory index keeps them so): a batch is at
/// most one request or [`MAX_BATCH_BYTES`], whichever is larger, and with a segment's
/// header, opening records and batch-frame headers it must stay addressable, so a request
/// is capped well below 4 GiB instead of being written with wrapped offsets.
pub const MAX_REQUEST_BYTES: usize = 3 << 30;
/// The largest `Settings::max_batch_bytes` accepted (see [`MAX_REQUEST_BYTES`]).
pub const MAX_BATCH_BYTES: usize = 1 << 30;

/// Record type: one log entry.
pub const KIND_ENTRY: u8 = 1;
/// Record type: the hard state.
pub const KIND_HARD_STATE: u8 = 2;
/// Record type: a snapshot / prefix-compaction mark.
pub const KIND_SNAPSHOT: u8 = 3;
/// Record type: a suffix-truncation mark.
pub const KIND_TRUNCATE: u8 = 4;
/// Record type: the membership in force at the applied index.
pub const KIND_MEMBERSHIP: u8 = 5;
/// Record type (version 2): a batch frame, whose payload is the records of one write and
/// whose CRC covers them all.
pub const KIND_FRAME: u8 = 6;
/// Record type (version 3): the wall-clock time at which the entries after it were
/// written.
pub const KIND_TIME: u8 = 7;
/// The first format version whose segments hold time records.
pub const TIME_VERSION: u32 = 3;

/// Rounds `n` up to the record alignment.
pub const fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// The header at offset 0 of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version: [`VERSION`] for segments this crate starts; 1 for older ones, which
    /// hold no batch frames and get none appended.
    pub version: u32,
    /// Position of the segment in the log; consecutive segments have consecutive numbers.
    pub seq: u64,
    /// The index the next entry had when the segment was started (its file name says it too).
    pub first_index: u64,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..20].copy_from_slice(&self.seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and verifies a header.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("segment shorter than its header".into());
        }
        if b[0..8] != MAGIC {
            return Err("bad segment magic".into());
        }
        let crc = u32::from_le_bytes(b[28..32].try_into().expect("4 bytes"));
        if crc != crc32c::crc32c(&b[0..28]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(format!(
                "unsupported segment version {version} (this build reads versions \
                 {MIN_VERSION} to {VERSION})"
            ));
        }
        Ok(Self {
            version,
            seq: u64_at(b, 12),
            first_index: u64_at(b, 20),
        })
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
