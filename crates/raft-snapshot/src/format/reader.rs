//! [`FileReader`]: reads and verifies one snapshot file as a stream of records.

use super::*;

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
