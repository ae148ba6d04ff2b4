//! Moving a chain between nodes as bytes: an outgoing chunk source with offsets, and a
//! resumable, verifying incoming sink that installs atomically.

use crate::error::{Error, IoContext, Result};
use crate::format::FileReader;
use crate::fs::{Cursor, FsFile};
use crate::info::{SnapshotId, SnapshotInfo};
use crate::store::{
    Chain, INCOMING_PREFIX, LeasedChain, SnapshotStore, TMP_DIR, check_summary, sanitize,
};
use bytes::{Buf, BufMut, Bytes};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest chunk handed out or accepted: 1 MiB.
pub const MAX_CHUNK: usize = 1 << 20;
const BUNDLE_MAGIC: &[u8; 4] = b"RSNB";
const BUNDLE_VERSION: u16 = 1;
const ENTRY_LEN: usize = 16 + 8 + 4;
const MAX_FILES: u16 = 1024;

/// One piece of a transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Where `data` starts in the bundle.
    pub offset: u64,
    /// The bytes (at most [`MAX_CHUNK`]).
    pub data: Bytes,
    /// CRC32C of `data`.
    pub crc: u32,
    /// True for the chunk that ends the bundle.
    pub last: bool,
}

struct BundleEntry {
    id: SnapshotId,
    size: u64,
    checksum: u32,
}

fn encode_bundle_header(chain: &Chain) -> Vec<u8> {
    let mut h = Vec::with_capacity(12 + chain.len() * ENTRY_LEN);
    h.extend_from_slice(BUNDLE_MAGIC);
    h.put_u16_le(BUNDLE_VERSION);
    h.put_u16_le(chain.len() as u16);
    for s in &chain.snapshots {
        h.put_u128_le(s.id.0);
        h.put_u64_le(s.size);
        h.put_u32_le(s.checksum);
    }
    let crc = crc32c::crc32c(&h);
    h.put_u32_le(crc);
    h
}

/// A chain as one byte sequence for the transport, read in chunks at any offset.
///
/// # Bundle format (little-endian)
///
/// ```text
/// magic "RSNB" | version u16 = 1 | count u16
/// | count × (id u128 | size u64 | checksum u32)  | header_crc u32 (CRC32C of the above)
/// | the count snapshot files, base first, concatenated byte for byte
/// ```
///
/// The whole-bundle CRC32C ([`checksum`](Self::checksum)) is derived from the manifest's
/// file checksums without reading the files. The chain stays leased while this lives.
pub struct ChainTransfer {
    store: SnapshotStore,
    leased: LeasedChain,
    header: Bytes,
    /// Start offset of each file in the bundle. Invariant: same length as the chain.
    starts: Vec<u64>,
    total_len: u64,
    checksum: u32,
    open: Option<(usize, Arc<dyn FsFile>)>,
}

impl ChainTransfer {
    /// Prepares the chain ending at `tip` (the current chain when `None`) for sending.
    pub fn new(store: &SnapshotStore, tip: Option<SnapshotId>) -> Result<Self> {
        let leased = store.lease_chain(tip)?;
        if leased.chain.len() > MAX_FILES as usize {
            return Err(Error::Invalid("chain too long to transfer".into()));
        }
        let header = encode_bundle_header(&leased.chain);
        let mut crc = crc32c::crc32c(&header);
        let mut off = header.len() as u64;
        let mut starts = Vec::new();
        for s in &leased.chain.snapshots {
            starts.push(off);
            crc = crc32c::crc32c_combine(crc, s.checksum, s.size as usize);
            off += s.size;
        }
        Ok(ChainTransfer {
            store: store.clone(),
            leased,
            header: Bytes::from(header),
            starts,
            total_len: off,
            checksum: crc,
            open: None,
        })
    }

    /// The chain being sent.
    pub fn chain(&self) -> &Chain {
        &self.leased.chain
    }

    /// Size of the bundle in bytes.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// CRC32C of the whole bundle.
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// Up to `max_len` (capped at [`MAX_CHUNK`]) bytes from `offset`.
    pub fn read_at(&mut self, offset: u64, max_len: usize) -> Result<Chunk> {
        if offset > self.total_len {
            return Err(Error::Invalid(format!(
                "offset {offset} beyond the bundle's {} bytes",
                self.total_len
            )));
        }
        let want = (max_len.min(MAX_CHUNK) as u64).min(self.total_len - offset) as usize;
        let mut out = Vec::with_capacity(want);
        let mut pos = offset;
        while out.len() < want {
            let need = want - out.len();
            if pos < self.header.len() as u64 {
                let h = &self.header[pos as usize..];
                let n = h.len().min(need);
                out.extend_from_slice(&h[..n]);
                pos += n as u64;
                continue;
            }
            let i = self.starts.partition_point(|s| *s <= pos) - 1;
            let info = &self.leased.chain.snapshots[i];
            let within = pos - self.starts[i];
            let n = ((info.size - within) as usize).min(need);
            let p = self.store.path_of(info.id);
            if self.open.as_ref().map(|(j, _)| *j) != Some(i) {
                self.open = Some((i, self.store.fs().open(&p).at(&p)?));
            }
            let (_, f) = self.open.as_ref().expect("opened above");
            let start = out.len();
            out.resize(start + n, 0);
            let mut cursor = Cursor::new(f.clone());
            std::io::Seek::seek(&mut cursor, std::io::SeekFrom::Start(within)).at(&p)?;
            cursor.read_exact(&mut out[start..]).map_err(|e| {
                Error::corrupt(p.display().to_string(), within, format!("short file: {e}"))
            })?;
            pos += n as u64;
        }
        let data = Bytes::from(out);
        Ok(Chunk {
            offset,
            crc: crc32c::crc32c(&data),
            last: offset + data.len() as u64 == self.total_len,
            data,
        })
    }

    /// The chunks from `offset` to the end, each at most `chunk_len` bytes.
    pub fn chunks_from(
        &mut self,
        offset: u64,
        chunk_len: usize,
    ) -> impl Iterator<Item = Result<Chunk>> + '_ {
        let mut pos = offset;
        let mut done = offset > self.total_len;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let c = self.read_at(pos, chunk_len.max(1));
            match &c {
                Ok(ch) => {
                    pos += ch.data.len() as u64;
                    done = ch.last;
                }
                Err(_) => done = true,
            }
            Some(c)
        })
    }
}

/// Receives a chain as chunks at offsets, durably and resumably, then verifies and
/// installs it atomically.
///
/// Kept under `tmp/incoming-<key>/`: `data` (the bundle bytes received so far) and
/// `progress`, an append-only log of 24-byte records `received u64 | total_len u64 |
/// crc u32 (CRC32C of data[..received]) | record_crc u32`, each appended and fsynced after
/// the data it covers. On reopen, the last intact record says how many bytes are verified
/// (a transfer resumes there) and `data` is cut back to it. Both survive restarts of the
/// store until the transfer finishes or is aborted.
pub struct IncomingTransfer {
    store: SnapshotStore,
    dir: PathBuf,
    data: Arc<dyn FsFile>,
    progress: Arc<dyn FsFile>,
    total_len: u64,
    received: u64,
    crc: u32,
}

impl IncomingTransfer {
    /// Starts, or resumes, the transfer named `key` (e.g. the sender and the snapshot's
    /// index and term) of a bundle of `total_len` bytes. A previous transfer under the same
    /// key but of another length is discarded.
    pub fn begin(store: &SnapshotStore, key: &str, total_len: u64) -> Result<Self> {
        let dir = store
            .dir()
            .join(TMP_DIR)
            .join(format!("{INCOMING_PREFIX}{}", sanitize(key)));
        let fs = store.fs();
        fs.create_dir_all(&dir).at(&dir)?;
        let (mut received, mut crc) = read_progress(store, &dir.join("progress"), total_len)?;
        let data_path = dir.join("data");
        let on_disk = fs.open(&data_path).and_then(|f| f.len()).unwrap_or(0);
        if on_disk < received {
            tracing::warn!(
                key,
                on_disk,
                received,
                "incoming data shorter than its progress; restarting"
            );
            (received, crc) = (0, 0);
        }
        let data = fs.open_or_create(&data_path).at(&data_path)?;
        if data.len().at(&data_path)? != received {
            data.set_len(received).at(&data_path)?;
        }
        let progress_path = dir.join("progress");
        let progress = fs.open_or_create(&progress_path).at(&progress_path)?;
        if received == 0 && !progress.is_empty().at(&progress_path)? {
            progress.set_len(0).at(&progress_path)?;
        }
        if received > 0 {
            tracing::info!(key, received, total_len, "resuming snapshot transfer");
        }
        Ok(IncomingTransfer {
            store: store.clone(),
            dir,
            data,
            progress,
            total_len,
            received,
            crc,
        })
    }

    /// Bytes received, stored durably and checksummed: where the sender resumes.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Size of the whole bundle.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// True once every byte is received.
    pub fn is_complete(&self) -> bool {
        self.received == self.total_len
    }

    /// Stores a chunk starting at `offset`. With `crc`, the chunk's CRC32C is checked first
    /// (a mismatch is refused and nothing is stored). Bytes already received are skipped; a
    /// chunk starting after [`received`](Self::received) is refused with
    /// [`Error::ChunkGap`]. Returns the new `received`.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8], crc: Option<u32>) -> Result<u64> {
        if let Some(c) = crc
            && crc32c::crc32c(data) != c
        {
            metrics::counter!(raft_metrics::snapshot::CORRUPTIONS).increment(1);
            return Err(Error::corrupt(
                "snapshot chunk",
                offset,
                "chunk checksum mismatch",
            ));
        }
        if data.len() > MAX_CHUNK {
            return Err(Error::Invalid(format!(
                "chunk of {} bytes exceeds 1 MiB",
                data.len()
            )));
        }
        if offset > self.received {
            return Err(Error::ChunkGap {
                offset,
                received: self.received,
            });
        }
        let end = offset + data.len() as u64;
        if end > self.total_len {
            return Err(Error::Invalid(format!(
                "chunk ends at {end}, past the bundle's {} bytes",
                self.total_len
            )));
        }
        if end <= self.received {
            return Ok(self.received);
        }
        let fresh = &data[(self.received - offset) as usize..];
        let data_path = self.dir.join("data");
        self.store.step("incoming: write chunk")?;
        self.data.write_at(fresh, self.received).at(&data_path)?;
        self.store.step("incoming: fsync data")?;
        self.data.sync_data().at(&data_path)?;
        let received = end;
        let crc = crc32c::crc32c_append(self.crc, fresh);
        let mut rec = Vec::with_capacity(24);
        rec.put_u64_le(received);
        rec.put_u64_le(self.total_len);
        rec.put_u32_le(crc);
        rec.put_u32_le(crc32c::crc32c(&rec));
        let progress_path = self.dir.join("progress");
        self.store.step("incoming: record progress")?;
        let end = self.progress.len().at(&progress_path)?;
        self.progress.write_at(&rec, end).at(&progress_path)?;
        self.progress.sync_data().at(&progress_path)?;
        self.received = received;
        self.crc = crc;
        Ok(received)
    }

    /// Verifies the complete bundle (its checksum against `checksum` when given, its header,
    /// and every file in full), then installs the chain atomically and makes it current.
    /// Damaged data is discarded so the transfer can start over.
    pub fn finish(self, checksum: Option<u32>) -> Result<Chain> {
        if !self.is_complete() {
            return Err(Error::Invalid(format!(
                "transfer incomplete: {} of {} bytes",
                self.received, self.total_len
            )));
        }
        let result = self.verify_and_install(checksum);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(raft_metrics::snapshot::INSTALLS, "outcome" => outcome).increment(1);
        match &result {
            Err(Error::Corrupt { .. }) => {
                metrics::counter!(raft_metrics::snapshot::CORRUPTIONS).increment(1);
                if !self.store.crashed() {
                    let _ = self.store.fs().remove_dir_all(&self.dir);
                }
            }
            Ok(_) => {
                let _ = self.store.fs().remove_dir_all(&self.dir);
            }
            Err(_) => {}
        }
        result
    }

    fn verify_and_install(&self, checksum: Option<u32>) -> Result<Chain> {
        let what = "snapshot bundle";
        if let Some(c) = checksum
            && c != self.crc
        {
            return Err(Error::corrupt(what, 0, "bundle checksum mismatch"));
        }
        let data_path = self.dir.join("data");
        let mut f = Cursor::new(self.store.fs().open(&data_path).at(&data_path)?);
        let mut fixed = [0u8; 8];
        f.read_exact(&mut fixed)
            .map_err(|_| Error::corrupt(what, 0, "truncated header"))?;
        if &fixed[..4] != BUNDLE_MAGIC {
            return Err(Error::corrupt(what, 0, "bad magic"));
        }
        let mut fb = &fixed[4..];
        let version = fb.get_u16_le();
        let count = fb.get_u16_le();
        if version != BUNDLE_VERSION || count == 0 || count > MAX_FILES {
            return Err(Error::corrupt(what, 4, "bad version or file count"));
        }
        let mut entries_raw = vec![0u8; count as usize * ENTRY_LEN + 4];
        f.read_exact(&mut entries_raw)
            .map_err(|_| Error::corrupt(what, 8, "truncated header"))?;
        let crc_at = entries_raw.len() - 4;
        let mut hcrc = crc32c::crc32c(&fixed);
        hcrc = crc32c::crc32c_append(hcrc, &entries_raw[..crc_at]);
        if (&entries_raw[crc_at..]).get_u32_le() != hcrc {
            return Err(Error::corrupt(what, 8, "header checksum mismatch"));
        }
        let mut eb = &entries_raw[..crc_at];
        let entries: Vec<BundleEntry> = (0..count)
            .map(|_| BundleEntry {
                id: SnapshotId(eb.get_u128_le()),
                size: eb.get_u64_le(),
                checksum: eb.get_u32_le(),
            })
            .collect();
        let mut pos = 8 + entries_raw.len() as u64;
        let files_len = entries
            .iter()
            .try_fold(pos, |acc, e| acc.checked_add(e.size));
        if files_len != Some(self.total_len) {
            return Err(Error::corrupt(
                what,
                8,
                "file sizes do not add up to the bundle",
            ));
        }
        let mut staged = Vec::new();
        for e in &entries {
            let out_path = self.dir.join(e.id.file_name());
            let info = extract(&self.store, &mut f, &out_path, e, pos)?;
            staged.push((out_path, info));
            pos += e.size;
        }
        self.store.step("install: staged and verified")?;
        self.store.install_staged(staged)
    }

    /// Abandons the transfer and removes what was received.
    pub fn abort(self) -> Result<()> {
        self.store.fs().remove_dir_all(&self.dir).at(&self.dir)
    }
}

/// Copies one file out of the bundle while decoding and verifying all of it.
fn extract(
    store: &SnapshotStore,
    bundle: &mut Cursor,
    out_path: &Path,
    e: &BundleEntry,
    pos: u64,
) -> Result<SnapshotInfo> {
    let out = Cursor::new(store.fs().create(out_path).at(out_path)?);
    let tee = Tee {
        input: Read::take(&mut *bundle, e.size),
        out: std::io::BufWriter::with_capacity(1 << 20, out),
        err: None,
    };
    let what = format!("bundle file {} at bundle offset {pos}", e.id);
    let mut r = FileReader::new(tee, what.clone(), true)?;
    let sum = r.verify_to_end()?;
    let h = r.header().clone();
    let tee = r.into_inner();
    if let Some(err) = tee.err {
        return Err(Error::io(out_path, err));
    }
    let file = tee
        .out
        .into_inner()
        .map_err(|e| Error::io(out_path, e.into_error()))?;
    file.file().sync_data().at(out_path)?;
    if h.id != e.id {
        return Err(Error::corrupt(
            what,
            0,
            "file header names a different snapshot",
        ));
    }
    let info = SnapshotInfo {
        id: h.id,
        parent: h.parent,
        kind: h.kind,
        index: h.index,
        term: h.term,
        membership: h.membership,
        created_ms: h.created_ms,
        size: sum.size,
        checksum: sum.checksum,
        puts: sum.puts,
        deletes: sum.deletes,
    };
    check_summary(
        &SnapshotInfo {
            size: e.size,
            checksum: e.checksum,
            ..info.clone()
        },
        sum.size,
        sum.checksum,
    )?;
    Ok(info)
}

/// A reader that copies everything it reads into `out`.
struct Tee<R: Read, W: Write> {
    input: R,
    out: W,
    err: Option<std::io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.err = Some(e);
        }
        Ok(n)
    }
}

fn read_progress(store: &SnapshotStore, path: &Path, total_len: u64) -> Result<(u64, u32)> {
    let bytes = match crate::fs::read_all(&**store.fs(), path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut best = (0, 0);
    for rec in bytes.chunks_exact(24) {
        let mut r = rec;
        let received = r.get_u64_le();
        let total = r.get_u64_le();
        let crc = r.get_u32_le();
        let rc = r.get_u32_le();
        if rc != crc32c::crc32c(&rec[..20]) || total != total_len || received > total_len {
            break;
        }
        best = (received, crc);
    }
    Ok(best)
}

impl SnapshotStore {
    /// Installs a chain received from a leader as one bundle (see
    /// [`ChainTransfer`](crate::ChainTransfer)): staged under `tmp/`, verified, then made
    /// current atomically. Equivalent to feeding the bytes to an
    /// [`IncomingTransfer`](crate::IncomingTransfer) in one go.
    pub fn install(&self, bundle: &mut dyn Read, total_len: u64) -> Result<Chain> {
        let key = format!("install-{}", self.next_tmp_seq());
        let mut inc = IncomingTransfer::begin(self, &key, total_len)?;
        if inc.received() > 0 {
            inc.abort()?;
            inc = IncomingTransfer::begin(self, &key, total_len)?;
        }
        let mut buf = vec![0u8; MAX_CHUNK];
        let mut off = inc.received();
        loop {
            let n = bundle.read(&mut buf).at(Path::new("<install bundle>"))?;
            if n == 0 {
                break;
            }
            inc.write_chunk(off, &buf[..n], None)?;
            off += n as u64;
        }
        inc.finish(None)
    }
}
