//! The snapshot file format: a streaming writer and a streaming, verifying reader.
//!
//! This file holds what both ends share (the constants, [`Record`], [`FileHeader`],
//! [`FileSummary`], the header's encoding); `writer` has [`FileWriter`] and `reader` has
//! [`FileReader`], whose documentation describes the file layout.

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::FileReader;
pub use writer::FileWriter;

use crate::error::{Error, Result};
use crate::info::{MembershipRecord, SnapshotId, SnapshotKind};
use bytes::{Buf, BufMut, Bytes};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Magic at the start of every snapshot file.
pub const FILE_MAGIC: &[u8; 4] = b"RSNP";
/// Magic at the very end of every snapshot file.
pub const END_MAGIC: &[u8; 4] = b"RSNE";
/// The file format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const BLOCK_TAG: u8 = b'B';
const TRAILER_TAG: u8 = b'T';
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Upper bound on a block's raw or compressed length; larger values are treated as damage.
const MAX_BLOCK_LEN: u32 = 256 << 20;
/// Upper bound on a header body (membership lists included).
const MAX_HEADER_BODY: u32 = 1 << 20;
/// Size of the trailer after its tag byte.
const TRAILER_LEN: usize = 8 * 4 + 4 + 4;

/// One record of a snapshot: a key's value, or (in deltas only) a key's deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The key has this value (in a delta: was created or changed since the parent).
    Put {
        /// The key.
        key: Bytes,
        /// The value record, opaque to this crate.
        value: Bytes,
    },
    /// The key was deleted since the parent snapshot.
    Delete {
        /// The key.
        key: Bytes,
    },
}

impl Record {
    /// The record's key.
    pub fn key(&self) -> &Bytes {
        match self {
            Record::Put { key, .. } | Record::Delete { key } => key,
        }
    }
}

/// The identity and metadata at the start of a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Full or delta.
    pub kind: SnapshotKind,
    /// This snapshot's id.
    pub id: SnapshotId,
    /// The parent (deltas only).
    pub parent: Option<SnapshotId>,
    /// Last included log index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// Creation time, unix milliseconds.
    pub created_ms: u64,
    /// Membership at `index`.
    pub membership: MembershipRecord,
}

/// Counts and checksum of a finished file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileSummary {
    /// Bytes in the file.
    pub size: u64,
    /// CRC32C of the whole file.
    pub checksum: u32,
    /// Put records.
    pub puts: u64,
    /// Delete records.
    pub deletes: u64,
}

/// Tuning of the writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Raw (uncompressed) bytes collected before a block is compressed and written.
    pub block_size: usize,
    /// zstd compression level.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            block_size: 256 << 10,
            zstd_level: 1,
        }
    }
}

fn encode_header(h: &FileHeader) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    body.put_u128_le(h.id.0);
    body.put_u128_le(h.parent.map_or(0, |p| p.0));
    body.put_u64_le(h.index);
    body.put_u64_le(h.term);
    body.put_u64_le(h.created_ms);
    let m = &h.membership;
    for list in [&m.voters, &m.voters_outgoing, &m.learners, &m.learners_next] {
        body.put_u32_le(list.len() as u32);
        for id in list {
            body.put_u64_le(*id);
        }
    }
    body.put_u8(u8::from(m.auto_leave));
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(FILE_MAGIC);
    out.put_u16_le(FORMAT_VERSION);
    out.put_u8(h.kind.to_byte());
    out.put_u8(0);
    out.put_u32_le(body.len() as u32);
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.put_u32_le(crc);
    out
}
