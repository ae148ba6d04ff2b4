//! Snapshot transfer: where the sender reads data from ([`SnapshotSource`]), where the
//! receiver stores it ([`SnapshotSink`]), and the chunked, checksummed, resumable protocol
//! between them.
//!
//! A transfer is: `SnapshotOffset` (how many bytes does the receiver already hold?), then one
//! `InstallSnapshot` client stream of chunks from that offset. Each chunk holds at most
//! [`SNAPSHOT_CHUNK_SIZE`] bytes of data (compressed above the threshold) and a CRC32C of
//! what is on the wire; the last chunk carries a CRC32C of the whole data, which the sink
//! verifies. When a transfer breaks, the next attempt resumes where the receiver stopped.

use crate::config::{CompressionConfig, SNAPSHOT_CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::frame::{codec_from_pb, codec_to_pb};
use crate::{compression, pb};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use metrics::counter;
use raft_core::{NodeId, SnapshotMeta};
use raft_metrics::net as m;
use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Where an outgoing snapshot's data comes from (a file, an object in a store, memory).
pub trait SnapshotSource: Send + Sync {
    /// Total size of the data in bytes.
    fn len(&self) -> u64;

    /// True when the snapshot has no data.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `max_len` bytes at `offset` (fewer only at the end of the data).
    fn read_at(&self, offset: u64, max_len: usize) -> BoxFuture<'_, io::Result<Bytes>>;
}

impl SnapshotSource for Bytes {
    fn len(&self) -> u64 {
        Bytes::len(self) as u64
    }

    fn read_at(&self, offset: u64, max_len: usize) -> BoxFuture<'_, io::Result<Bytes>> {
        let start = (offset as usize).min(Bytes::len(self));
        let end = start.saturating_add(max_len).min(Bytes::len(self));
        let out = self.slice(start..end);
        Box::pin(async move { Ok(out) })
    }
}

/// Where an incoming snapshot's data is stored: the runtime decides where it lands.
///
/// The transport calls, for one transfer: `stored_len` once, then `write_chunk` with
/// consecutive offsets starting at what `stored_len` returned, then `finish` once all
/// `total_len` bytes are written. A transfer that breaks is resumed later by another
/// `stored_len` call for the same sender and snapshot. Only after `finish` returns `Ok`
/// does the node receive its `InstallSnapshot` message.
pub trait SnapshotSink: Send + Sync + 'static {
    /// Bytes of this snapshot (from `from`, of `total_len` bytes) already stored; the transfer
    /// resumes there. Return 0 to (re)start from scratch.
    fn stored_len<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        total_len: u64,
    ) -> BoxFuture<'a, io::Result<u64>>;

    /// Stores `data` at `offset` (always the current stored length).
    fn write_chunk<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        offset: u64,
        data: Bytes,
    ) -> BoxFuture<'a, io::Result<()>>;

    /// All data is written: verify that its CRC32C is `checksum`, make it durable, and return
    /// only once it is stored and verified. An error discards nothing the sink wants to keep.
    fn finish<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        total_len: u64,
        checksum: u32,
    ) -> BoxFuture<'a, io::Result<()>>;
}

/// A [`SnapshotSink`] that keeps snapshots in memory: for tests and small deployments.
#[derive(Debug, Default)]
pub struct MemorySnapshotSink {
    partial: Mutex<HashMap<(NodeId, u64, u64), Vec<u8>>>,
    complete: Mutex<Vec<(NodeId, SnapshotMeta, Bytes)>>,
    written: Mutex<u64>,
}

impl MemorySnapshotSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the snapshots received and verified so far (sender, metadata, data).
    pub fn take_complete(&self) -> Vec<(NodeId, SnapshotMeta, Bytes)> {
        std::mem::take(&mut *lock(&self.complete))
    }

    /// Data bytes written through this sink in total (shows whether transfers resumed).
    pub fn bytes_written(&self) -> u64 {
        *lock(&self.written)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SnapshotSink for MemorySnapshotSink {
    fn stored_len<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        _total_len: u64,
    ) -> BoxFuture<'a, io::Result<u64>> {
        let len = lock(&self.partial)
            .get(&(from, meta.index, meta.term))
            .map_or(0, |d| d.len() as u64);
        Box::pin(async move { Ok(len) })
    }

    fn write_chunk<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        offset: u64,
        data: Bytes,
    ) -> BoxFuture<'a, io::Result<()>> {
        let result = {
            let mut partial = lock(&self.partial);
            let buf = partial.entry((from, meta.index, meta.term)).or_default();
            if buf.len() as u64 != offset {
                Err(io::Error::other(format!(
                    "write at {offset}, but {} bytes are stored",
                    buf.len()
                )))
            } else {
                buf.extend_from_slice(&data);
                *lock(&self.written) += data.len() as u64;
                Ok(())
            }
        };
        Box::pin(async move { result })
    }

    fn finish<'a>(
        &'a self,
        from: NodeId,
        meta: &'a SnapshotMeta,
        total_len: u64,
        checksum: u32,
    ) -> BoxFuture<'a, io::Result<()>> {
        let result = (|| {
            let data = lock(&self.partial)
                .remove(&(from, meta.index, meta.term))
                .unwrap_or_default();
            if data.len() as u64 != total_len {
                return Err(io::Error::other(format!(
                    "{} bytes stored, {total_len} expected",
                    data.len()
                )));
            }
            let actual = crc32c::crc32c(&data);
            if actual != checksum {
                return Err(io::Error::other(format!(
                    "checksum mismatch: data has {actual:#010x}, sender says {checksum:#010x}"
                )));
            }
            lock(&self.complete).push((from, meta.clone(), Bytes::from(data)));
            Ok(())
        })();
        Box::pin(async move { result })
    }
}

/// The header every chunk of one transfer carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkHeader {
    pub(crate) cluster_id: u64,
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) term: u64,
}

/// CRC32C of `source`'s first `len` bytes (to resume a transfer with a whole-data checksum).
pub(crate) async fn prefix_checksum(source: &dyn SnapshotSource, len: u64) -> Result<u32> {
    let mut crc = 0;
    let mut offset = 0;
    while offset < len {
        let want = ((len - offset) as usize).min(SNAPSHOT_CHUNK_SIZE);
        let data = source.read_at(offset, want).await?;
        if data.is_empty() {
            return Err(Error::Snapshot(format!(
                "source ended at {offset} of {len}"
            )));
        }
        crc = crc32c::crc32c_append(crc, &data);
        offset += data.len() as u64;
    }
    Ok(crc)
}

/// Reads `source` from `offset` and pushes chunks into `tx` until the end of the data.
/// Returns when the last chunk is queued, or with the error that stopped it (a closed
/// channel means the receiver gave up: that is not this function's error to report).
pub(crate) async fn produce_chunks(
    header: ChunkHeader,
    meta: pb::SnapshotMeta,
    source: &dyn SnapshotSource,
    mut offset: u64,
    mut crc: u32,
    compression: CompressionConfig,
    tx: mpsc::Sender<pb::SnapshotChunk>,
) -> Result<()> {
    let total_len = source.len();
    let mut first = true;
    loop {
        let want = ((total_len - offset) as usize).min(SNAPSHOT_CHUNK_SIZE);
        let data = if want == 0 {
            Bytes::new()
        } else {
            source.read_at(offset, want).await?
        };
        if data.len() != want {
            return Err(Error::Snapshot(format!(
                "source returned {} bytes at {offset}, expected {want}",
                data.len()
            )));
        }
        crc = crc32c::crc32c_append(crc, &data);
        let raw_len = data.len() as u64;
        let last = offset + raw_len == total_len;
        let (codec, wire) =
            if compression.codec != crate::Codec::None && data.len() >= compression.threshold {
                let c = compression::compress(compression.codec, &data)?;
                let name = compression.codec.name();
                counter!(m::BYTES_BEFORE_COMPRESSION, "codec" => name).increment(raw_len);
                counter!(m::BYTES_AFTER_COMPRESSION, "codec" => name).increment(c.len() as u64);
                (codec_to_pb(compression.codec), Bytes::from(c))
            } else {
                (pb::Compression::None, data)
            };
        let chunk = pb::SnapshotChunk {
            cluster_id: header.cluster_id,
            from: header.from,
            to: header.to,
            term: header.term,
            meta: first.then(|| meta.clone()),
            total_len,
            offset,
            compression: codec as i32,
            raw_len,
            chunk_checksum: crc32c::crc32c(&wire),
            data: wire,
            last,
            checksum: if last { crc } else { 0 },
        };
        first = false;
        if tx.send(chunk).await.is_err() {
            return Ok(());
        }
        counter!(m::SNAPSHOT_BYTES_SENT).increment(raw_len);
        offset += raw_len;
        if last {
            return Ok(());
        }
    }
}

/// Checks and decompresses one received chunk; returns its data.
pub(crate) fn open_chunk(chunk: &pb::SnapshotChunk, expected_offset: u64) -> Result<Bytes> {
    if chunk.offset != expected_offset {
        return Err(Error::Malformed(format!(
            "chunk at offset {}, expected {expected_offset}",
            chunk.offset
        )));
    }
    if chunk.raw_len > SNAPSHOT_CHUNK_SIZE as u64 {
        return Err(Error::TooLarge {
            size: chunk.raw_len,
            limit: SNAPSHOT_CHUNK_SIZE as u64,
        });
    }
    let actual = crc32c::crc32c(&chunk.data);
    if actual != chunk.chunk_checksum {
        return Err(Error::Malformed(format!(
            "chunk at {} fails its checksum ({actual:#010x} != {:#010x})",
            chunk.offset, chunk.chunk_checksum
        )));
    }
    let codec = codec_from_pb(chunk.compression)?;
    let data = if codec == crate::Codec::None {
        if chunk.data.len() as u64 != chunk.raw_len {
            return Err(Error::Malformed("chunk length differs from raw_len".into()));
        }
        chunk.data.clone()
    } else {
        Bytes::from(compression::decompress(
            codec,
            &chunk.data,
            chunk.raw_len as usize,
            SNAPSHOT_CHUNK_SIZE,
        )?)
    };
    if chunk.offset + chunk.raw_len > chunk.total_len {
        return Err(Error::Malformed(
            "chunk extends past the snapshot's end".into(),
        ));
    }
    if chunk.last != (chunk.offset + chunk.raw_len == chunk.total_len) {
        return Err(Error::Malformed(
            "`last` disagrees with offset and length".into(),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            index: 10,
            term: 2,
            ..SnapshotMeta::default()
        }
    }

    #[tokio::test]
    async fn chunks_round_trip_through_the_memory_sink() {
        let data = Bytes::from(
            (0..3_500_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        for codec in [Codec::None, Codec::Snappy, Codec::Zstd { level: 1 }] {
            let (tx, mut rx) = mpsc::channel(100);
            let header = ChunkHeader {
                cluster_id: 1,
                from: 1,
                to: 2,
                term: 2,
            };
            let cfg = CompressionConfig {
                codec,
                threshold: 4096,
            };
            produce_chunks(
                header,
                crate::convert::meta_to_pb(&meta()),
                &data,
                0,
                0,
                cfg,
                tx,
            )
            .await
            .unwrap();
            let sink = MemorySnapshotSink::new();
            let mut offset = 0;
            let mut n = 0;
            while let Some(chunk) = rx.recv().await {
                assert_eq!(chunk.meta.is_some(), n == 0);
                let d = open_chunk(&chunk, offset).unwrap();
                sink.write_chunk(1, &meta(), offset, d).await.unwrap();
                offset += chunk.raw_len;
                n += 1;
                if chunk.last {
                    sink.finish(1, &meta(), chunk.total_len, chunk.checksum)
                        .await
                        .unwrap();
                }
            }
            assert_eq!(n, 4, "3.5 MB in 1 MiB chunks");
            let done = sink.take_complete();
            assert_eq!(done[0].2, data);
        }
    }

    #[tokio::test]
    async fn corrupt_chunks_are_refused() {
        let (tx, mut rx) = mpsc::channel(10);
        let header = ChunkHeader {
            cluster_id: 1,
            from: 1,
            to: 2,
            term: 2,
        };
        let data = Bytes::from_static(b"hello snapshot");
        produce_chunks(
            header,
            crate::convert::meta_to_pb(&meta()),
            &data,
            0,
            0,
            CompressionConfig::default(),
            tx,
        )
        .await
        .unwrap();
        let mut chunk = rx.recv().await.unwrap();
        assert!(open_chunk(&chunk, 1).is_err(), "wrong offset");
        chunk.data = Bytes::from_static(b"jello snapshot");
        assert!(open_chunk(&chunk, 0).is_err(), "bad checksum");
        let sink = MemorySnapshotSink::new();
        sink.write_chunk(1, &meta(), 0, data.clone()).await.unwrap();
        assert!(sink.finish(1, &meta(), 14, 12345).await.is_err());
        assert_eq!(
            prefix_checksum(&data, 5).await.unwrap(),
            crc32c::crc32c(b"hello")
        );
    }
}
