//! The snapshot file format: a streaming writer and a streaming, verifying reader.

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

/// Writes one snapshot file to `W` in bounded memory (one block at a time).
///
/// Keys must arrive in strictly ascending byte order (puts and deletes interleaved), which
/// lets chains be merged in a streaming k-way merge. A full snapshot holds only puts.
pub struct FileWriter<W: Write> {
    out: W,
    path: PathBuf,
    kind: SnapshotKind,
    opts: WriterOptions,
    compressor: zstd::bulk::Compressor<'static>,
    crc: u32,
    written: u64,
    block: Vec<u8>,
    block_records: u32,
    puts: u64,
    deletes: u64,
    blocks: u64,
    raw_total: u64,
    last_key: Option<Vec<u8>>,
}

impl<W: Write> FileWriter<W> {
    /// Starts a file: writes the header. `path` only names the output in errors.
    pub fn new(
        out: W,
        path: impl Into<PathBuf>,
        header: &FileHeader,
        opts: WriterOptions,
    ) -> Result<Self> {
        let path = path.into();
        if (header.kind == SnapshotKind::Full) != header.parent.is_none() {
            return Err(Error::Invalid(
                "a full snapshot has no parent and a delta has one".into(),
            ));
        }
        let compressor =
            zstd::bulk::Compressor::new(opts.zstd_level).map_err(|e| Error::io(path.clone(), e))?;
        let mut w = FileWriter {
            out,
            path,
            kind: header.kind,
            opts,
            compressor,
            crc: 0,
            written: 0,
            block: Vec::with_capacity(opts.block_size + 1024),
            block_records: 0,
            puts: 0,
            deletes: 0,
            blocks: 0,
            raw_total: 0,
            last_key: None,
        };
        let bytes = encode_header(header);
        w.emit(&bytes)?;
        Ok(w)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.path.clone(), e))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn check_key(&mut self, key: &[u8]) -> Result<()> {
        if let Some(last) = &self.last_key {
            if key <= last.as_slice() {
                return Err(Error::Invalid(format!(
                    "keys must be strictly ascending: {:?} after {:?}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(last)
                )));
            }
            let last = self.last_key.as_mut().expect("checked above");
            last.clear();
            last.extend_from_slice(key);
        } else {
            self.last_key = Some(key.to_vec());
        }
        if key.len() > u32::MAX as usize {
            return Err(Error::Invalid("key longer than 4 GiB".into()));
        }
        Ok(())
    }

    /// Adds a put record.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        if value.len() > (MAX_BLOCK_LEN as usize) / 2 {
            return Err(Error::Invalid("value longer than 128 MiB".into()));
        }
        self.block.put_u8(OP_PUT);
        self.block.put_u32_le(key.len() as u32);
        self.block.extend_from_slice(key);
        self.block.put_u32_le(value.len() as u32);
        self.block.extend_from_slice(value);
        self.puts += 1;
        self.record_added()
    }

    /// Adds a delete record (deltas only).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        if self.kind == SnapshotKind::Full {
            return Err(Error::Invalid(
                "a full snapshot cannot hold deletions".into(),
            ));
        }
        self.check_key(key)?;
        self.block.put_u8(OP_DELETE);
        self.block.put_u32_le(key.len() as u32);
        self.block.extend_from_slice(key);
        self.deletes += 1;
        self.record_added()
    }

    /// Adds a record of either kind.
    pub fn record(&mut self, r: &Record) -> Result<()> {
        match r {
            Record::Put { key, value } => self.put(key, value),
            Record::Delete { key } => self.delete(key),
        }
    }

    fn record_added(&mut self) -> Result<()> {
        self.block_records += 1;
        if self.block.len() >= self.opts.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block_records == 0 {
            return Ok(());
        }
        let compressed = self
            .compressor
            .compress(&self.block)
            .map_err(|e| Error::io(self.path.clone(), e))?;
        let mut head = [0u8; 17];
        let mut h = &mut head[..];
        h.put_u8(BLOCK_TAG);
        h.put_u32_le(self.block.len() as u32);
        h.put_u32_le(compressed.len() as u32);
        h.put_u32_le(self.block_records);
        h.put_u32_le(crc32c::crc32c(&compressed));
        self.emit(&head)?;
        self.emit(&compressed)?;
        self.raw_total += self.block.len() as u64;
        self.blocks += 1;
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }

    /// Bytes written so far (blocks still buffered excluded).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the last block and the trailer; returns the output and the file's summary.
    /// The caller flushes and syncs the output.
    pub fn finish(mut self) -> Result<(W, FileSummary)> {
        self.flush_block()?;
        let mut t = Vec::with_capacity(1 + TRAILER_LEN);
        t.put_u8(TRAILER_TAG);
        t.put_u64_le(self.puts);
        t.put_u64_le(self.deletes);
        t.put_u64_le(self.blocks);
        t.put_u64_le(self.raw_total);
        self.emit(&t)?;
        let crc = self.crc;
        let mut end = Vec::with_capacity(8);
        end.put_u32_le(crc);
        end.extend_from_slice(END_MAGIC);
        self.out
            .write_all(&end)
            .map_err(|e| Error::io(self.path.clone(), e))?;
        self.written += end.len() as u64;
        let summary = FileSummary {
            size: self.written,
            checksum: crc32c::crc32c_append(crc, &end),
            puts: self.puts,
            deletes: self.deletes,
        };
        Ok((self.out, summary))
    }
}

/// Reads and verifies one snapshot file as a stream of records, in bounded memory.
///
/// # File format (version 1, all integers little-endian)
///
/// ```text
/// header   magic "RSNP" | version u16 = 1 | kind u8 (0 full, 1 delta) | reserved u8 = 0
///          | body_len u32 | body | header_crc u32   (CRC32C of every header byte before it)
///   body   id u128 | parent u128 (0 = none) | index u64 | term u64 | created_ms u64
///          | 4 lists (voters, voters_outgoing, learners, learners_next): count u32, ids u64…
///          | auto_leave u8
/// block*   tag 'B' | raw_len u32 | comp_len u32 | records u32 | block_crc u32
///          | comp_len bytes: zstd frame of raw_len bytes   (block_crc = CRC32C of the frame)
///   raw    records, each: op u8 (1 put, 2 delete) | key_len u32 | key
///          | (put only) value_len u32 | value
/// trailer  tag 'T' | puts u64 | deletes u64 | blocks u64 | raw_bytes u64
///          | file_crc u32 (CRC32C of every byte of the file before it) | magic "RSNE"
/// ```
///
/// Keys are strictly ascending across the whole file. A full snapshot has no deletes. The
/// checksum a manifest records for the file is the CRC32C of all its bytes (end magic
/// included). Every length is bounds-checked before anything is allocated; any mismatch is
/// an [`Error::Corrupt`] naming the file and the offset.
///
/// Records are handed out as they are decoded: a damaged block is detected when reached,
/// and the file checksum only at the trailer. Callers that must not act on a damaged file
/// (restore) verify it first with [`verify_file`](crate::verify_file).
pub struct FileReader<R: Read> {
    input: R,
    what: String,
    header: FileHeader,
    crc: u32,
    offset: u64,
    block: Bytes,
    block_left: u32,
    puts: u64,
    deletes: u64,
    blocks: u64,
    raw_total: u64,
    last_key: Option<Bytes>,
    done: bool,
    check_eof: bool,
}

impl<R: Read> FileReader<R> {
    /// Reads and verifies the header. `what` names the input in errors. With `check_eof`,
    /// bytes after the trailer are refused.
    pub fn new(input: R, what: impl Into<String>, check_eof: bool) -> Result<Self> {
        let mut r = FileReader {
            input,
            what: what.into(),
            header: FileHeader {
                kind: SnapshotKind::Full,
                id: SnapshotId(0),
                parent: None,
                index: 0,
                term: 0,
                created_ms: 0,
                membership: MembershipRecord::default(),
            },
            crc: 0,
            offset: 0,
            block: Bytes::new(),
            block_left: 0,
            puts: 0,
            deletes: 0,
            blocks: 0,
            raw_total: 0,
            last_key: None,
            done: false,
            check_eof,
        };
        r.header = r.read_header()?;
        Ok(r)
    }

    /// The file's header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    fn corrupt(&self, at: u64, reason: impl Into<String>) -> Error {
        Error::corrupt(self.what.clone(), at, reason)
    }

    fn read_exact_raw(&mut self, buf: &mut [u8]) -> Result<()> {
        let at = self.offset;
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt(at, "truncated")
            } else {
                Error::io(self.what.clone(), e)
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn read_exact_crc(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_exact_raw(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }

    fn read_header(&mut self) -> Result<FileHeader> {
        let mut fixed = [0u8; 12];
        self.read_exact_crc(&mut fixed)?;
        if &fixed[0..4] != FILE_MAGIC {
            return Err(self.corrupt(0, "bad magic"));
        }
        let mut f = &fixed[4..];
        let version = f.get_u16_le();
        if version != FORMAT_VERSION {
            return Err(self.corrupt(4, format!("unsupported version {version}")));
        }
        let kind_byte = f.get_u8();
        let kind = SnapshotKind::from_byte(kind_byte)
            .ok_or_else(|| self.corrupt(6, format!("unknown kind {kind_byte}")))?;
        let _reserved = f.get_u8();
        let body_len = f.get_u32_le();
        if !(73..=MAX_HEADER_BODY).contains(&body_len) {
            return Err(self.corrupt(8, format!("header length {body_len} out of range")));
        }
        let mut body = vec![0u8; body_len as usize];
        self.read_exact_crc(&mut body)?;
        let expect = self.crc;
        let mut c = [0u8; 4];
        self.read_exact_crc(&mut c)?;
        if u32::from_le_bytes(c) != expect {
            return Err(self.corrupt(12 + body_len as u64, "header checksum mismatch"));
        }
        let mut b = &body[..];
        let id = SnapshotId(b.get_u128_le());
        let parent = match b.get_u128_le() {
            0 => None,
            p => Some(SnapshotId(p)),
        };
        let index = b.get_u64_le();
        let term = b.get_u64_le();
        let created_ms = b.get_u64_le();
        let mut lists: [Vec<u64>; 4] = Default::default();
        for list in &mut lists {
            if b.remaining() < 4 {
                return Err(self.corrupt(12, "header body too short"));
            }
            let n = b.get_u32_le() as usize;
            if b.remaining() < n.saturating_mul(8) {
                return Err(self.corrupt(12, "membership list longer than the header"));
            }
            list.extend((0..n).map(|_| b.get_u64_le()));
        }
        if b.remaining() != 1 {
            return Err(self.corrupt(12, "header body length mismatch"));
        }
        let auto_leave = b.get_u8() != 0;
        if (kind == SnapshotKind::Full) != parent.is_none() {
            return Err(self.corrupt(12, "kind and parent disagree"));
        }
        let [voters, voters_outgoing, learners, learners_next] = lists;
        Ok(FileHeader {
            kind,
            id,
            parent,
            index,
            term,
            created_ms,
            membership: MembershipRecord {
                voters,
                voters_outgoing,
                learners,
                learners_next,
                auto_leave,
            },
        })
    }

    /// Reads the next block or the trailer. Returns false at the (verified) end.
    fn load_block(&mut self) -> Result<bool> {
        let at = self.offset;
        let mut tag = [0u8; 1];
        self.read_exact_crc(&mut tag)?;
        match tag[0] {
            BLOCK_TAG => {
                let mut head = [0u8; 16];
                self.read_exact_crc(&mut head)?;
                let mut h = &head[..];
                let raw_len = h.get_u32_le();
                let comp_len = h.get_u32_le();
                let records = h.get_u32_le();
                let block_crc = h.get_u32_le();
                if raw_len > MAX_BLOCK_LEN || comp_len > MAX_BLOCK_LEN || records == 0 {
                    return Err(self.corrupt(at, "block header out of range"));
                }
                let mut comp = vec![0u8; comp_len as usize];
                self.read_exact_crc(&mut comp)?;
                if crc32c::crc32c(&comp) != block_crc {
                    return Err(self.corrupt(at, "block checksum mismatch"));
                }
                let raw = zstd::bulk::decompress(&comp, raw_len as usize)
                    .map_err(|e| self.corrupt(at, format!("block does not decompress: {e}")))?;
                if raw.len() != raw_len as usize {
                    return Err(self.corrupt(at, "block raw length mismatch"));
                }
                self.raw_total += raw_len as u64;
                self.blocks += 1;
                self.block = Bytes::from(raw);
                self.block_left = records;
                Ok(true)
            }
            TRAILER_TAG => {
                let mut t = [0u8; 32];
                self.read_exact_crc(&mut t)?;
                let expect = self.crc;
                let mut end = [0u8; 8];
                self.read_exact_raw(&mut end)?;
                let mut tb = &t[..];
                let (puts, deletes, blocks, raw) = (
                    tb.get_u64_le(),
                    tb.get_u64_le(),
                    tb.get_u64_le(),
                    tb.get_u64_le(),
                );
                if &end[4..] != END_MAGIC {
                    return Err(self.corrupt(at + 37, "bad end magic"));
                }
                if u32::from_le_bytes([end[0], end[1], end[2], end[3]]) != expect {
                    return Err(self.corrupt(at + 33, "file checksum mismatch"));
                }
                if (puts, deletes, blocks, raw)
                    != (self.puts, self.deletes, self.blocks, self.raw_total)
                {
                    return Err(self.corrupt(at, "trailer counts do not match the blocks"));
                }
                self.crc = crc32c::crc32c_append(self.crc, &end);
                if self.check_eof {
                    let mut extra = [0u8; 1];
                    match self.input.read(&mut extra) {
                        Ok(0) => {}
                        Ok(_) => return Err(self.corrupt(self.offset, "data after the trailer")),
                        Err(e) => return Err(Error::io(self.what.clone(), e)),
                    }
                }
                self.done = true;
                Ok(false)
            }
            other => Err(self.corrupt(at, format!("unknown section tag {other:#04x}"))),
        }
    }

    /// The next record, or `None` once the trailer has been read and verified.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        while self.block_left == 0 {
            if !self.block.is_empty() {
                return Err(self.corrupt(self.offset, "block has bytes after its last record"));
            }
            if !self.load_block()? {
                return Ok(None);
            }
        }
        let rec = self.decode_record()?;
        self.block_left -= 1;
        if let Some(last) = &self.last_key
            && rec.key() <= last
        {
            return Err(self.corrupt(self.offset, "keys out of order"));
        }
        self.last_key = Some(rec.key().clone());
        match rec {
            Record::Put { .. } => self.puts += 1,
            Record::Delete { .. } => {
                if self.header.kind == SnapshotKind::Full {
                    return Err(self.corrupt(self.offset, "deletion in a full snapshot"));
                }
                self.deletes += 1
            }
        }
        Ok(Some(rec))
    }

    fn decode_record(&mut self) -> Result<Record> {
        let bad = |s: &Self| s.corrupt(s.offset, "record overruns its block");
        if self.block.remaining() < 5 {
            return Err(bad(self));
        }
        let op = self.block.get_u8();
        let klen = self.block.get_u32_le() as usize;
        if self.block.remaining() < klen {
            return Err(bad(self));
        }
        let key = self.block.split_to(klen);
        match op {
            OP_PUT => {
                if self.block.remaining() < 4 {
                    return Err(bad(self));
                }
                let vlen = self.block.get_u32_le() as usize;
                if self.block.remaining() < vlen {
                    return Err(bad(self));
                }
                let value = self.block.split_to(vlen);
                Ok(Record::Put { key, value })
            }
            OP_DELETE => Ok(Record::Delete { key }),
            other => Err(self.corrupt(self.offset, format!("unknown record op {other}"))),
        }
    }

    /// Reads to the end, verifying everything; returns the file's summary.
    pub fn verify_to_end(&mut self) -> Result<FileSummary> {
        while self.next_record()?.is_some() {}
        Ok(self.summary())
    }

    /// The summary so far (complete once `next_record` returned `None`).
    pub fn summary(&self) -> FileSummary {
        FileSummary {
            size: self.offset,
            checksum: self.crc,
            puts: self.puts,
            deletes: self.deletes,
        }
    }

    /// True once the trailer has been verified.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Gives the input back.
    pub fn into_inner(self) -> R {
        self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: SnapshotKind) -> FileHeader {
        FileHeader {
            kind,
            id: SnapshotId(42),
            parent: (kind == SnapshotKind::Delta).then_some(SnapshotId(41)),
            index: 7,
            term: 2,
            created_ms: 1234,
            membership: MembershipRecord {
                voters: vec![1, 2],
                voters_outgoing: vec![3],
                learners: vec![4],
                learners_next: vec![],
                auto_leave: true,
            },
        }
    }

    fn write(kind: SnapshotKind, recs: &[Record], block_size: usize) -> (Vec<u8>, FileSummary) {
        let opts = WriterOptions {
            block_size,
            zstd_level: 1,
        };
        let mut w = FileWriter::new(Vec::new(), "mem", &header(kind), opts).unwrap();
        for r in recs {
            w.record(r).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(FileHeader, Vec<Record>, FileSummary)> {
        let mut r = FileReader::new(bytes, "mem", true)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok((r.header().clone(), out, r.summary()))
    }

    fn put(k: &str, v: &str) -> Record {
        Record::Put {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        }
    }

    #[test]
    fn round_trip_with_header_counts_and_checksum() {
        let recs = vec![
            put("a", ""),
            Record::Delete {
                key: Bytes::from_static(b"b"),
            },
            put("c", &"x".repeat(300)),
            put("d", "4"),
        ];
        for block in [1, 16, 1 << 20] {
            let (bytes, sum) = write(SnapshotKind::Delta, &recs, block);
            assert_eq!(sum.size, bytes.len() as u64);
            assert_eq!(sum.checksum, crc32c::crc32c(&bytes));
            assert_eq!((sum.puts, sum.deletes), (3, 1));
            let (h, got, rsum) = read_all(&bytes).unwrap();
            assert_eq!(h, header(SnapshotKind::Delta));
            assert_eq!(got, recs);
            assert_eq!(rsum, sum);
        }
    }

    #[test]
    fn empty_full_snapshot() {
        let (bytes, sum) = write(SnapshotKind::Full, &[], 64);
        let (_, got, rsum) = read_all(&bytes).unwrap();
        assert!(got.is_empty());
        assert_eq!(rsum, sum);
    }

    #[test]
    fn every_single_bit_flip_and_truncation_is_detected() {
        let recs: Vec<_> = (0..20).map(|i| put(&format!("k{i:02}"), "value")).collect();
        let (bytes, _) = write(SnapshotKind::Full, &recs, 50);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                matches!(read_all(&b), Err(Error::Corrupt { .. })),
                "flip of bit {i}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(matches!(
                read_all(&bytes[..cut]),
                Err(Error::Corrupt { .. })
            ));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(read_all(&longer), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn writer_refuses_bad_input() {
        let opts = WriterOptions::default();
        let mut w = FileWriter::new(Vec::new(), "m", &header(SnapshotKind::Full), opts).unwrap();
        w.put(b"b", b"").unwrap();
        assert!(w.put(b"b", b"").is_err());
        assert!(w.delete(b"c").is_err());
        let mut bad = header(SnapshotKind::Full);
        bad.parent = Some(SnapshotId(1));
        assert!(FileWriter::new(Vec::new(), "m", &bad, opts).is_err());
    }
}
