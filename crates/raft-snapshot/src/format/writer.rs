//! [`FileWriter`]: writes one snapshot file in bounded memory, a block at a time.

use super::*;

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
