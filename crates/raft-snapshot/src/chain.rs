//! Working with chains: verifying, restoring into a state machine, the merge policy,
//! compaction into a new base, and taking a snapshot from a copy-on-write capture.

use crate::error::{IoContext, Result};
use crate::format::Record;
use crate::info::{SnapshotInfo, SnapshotKind};
use crate::source::{RestoreSink, SnapshotCapture, apply_record};
use crate::store::{Chain, SnapshotReader, SnapshotStore, check_summary, checksum_of};
use bytes::Bytes;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

/// Computes the CRC32C and size of a whole file (a cheap check against a manifest entry).
pub fn file_checksum(path: &Path) -> Result<(u64, u32)> {
    let mut f = File::open(path).at(path)?;
    checksum_of(&mut f, path)
}

/// Checks that the file at `path` has the size and checksum `info` records.
pub fn verify_file(path: &Path, info: &SnapshotInfo) -> Result<()> {
    let (len, crc) = file_checksum(path)?;
    check_size_and_crc(info, len, crc)
}

/// Checks that a stored snapshot's file has the size and checksum its entry records.
pub(crate) fn verify_stored(store: &SnapshotStore, info: &SnapshotInfo) -> Result<()> {
    let (len, crc) = store.file_checksum(info.id)?;
    check_size_and_crc(info, len, crc)
}

fn check_size_and_crc(info: &SnapshotInfo, len: u64, crc: u32) -> Result<()> {
    check_summary(info, len, crc).inspect_err(|_| {
        metrics::counter!(raft_metrics::snapshot::CORRUPTIONS).increment(1);
    })
}

/// When a chain should be merged into a new base.
#[derive(Clone, Copy, Debug)]
pub struct ChainPolicy {
    /// Merge once the chain (base plus deltas) is longer than this.
    pub max_chain_len: usize,
    /// Merge once the deltas together exceed this fraction of the base's size.
    pub max_delta_ratio: f64,
}

impl Default for ChainPolicy {
    fn default() -> Self {
        ChainPolicy {
            max_chain_len: 8,
            max_delta_ratio: 0.5,
        }
    }
}

impl ChainPolicy {
    /// True when `chain` should be compacted into a new base.
    pub fn needs_compaction(&self, chain: &Chain) -> bool {
        chain.len() > self.max_chain_len
            || chain.delta_bytes() as f64 > self.max_delta_ratio * chain.base().size as f64
    }
}

/// Restores the chain ending at `tip` (the current chain when `None`) into `sink`: verifies
/// every file's checksum first, then feeds the base and each delta in order. The chain is
/// leased for the duration. Returns the chain's tip.
pub fn restore_chain(
    store: &SnapshotStore,
    tip: Option<crate::info::SnapshotId>,
    sink: &mut dyn RestoreSink,
) -> Result<SnapshotInfo> {
    let started = Instant::now();
    let leased = store.lease_chain(tip)?;
    for s in &leased.chain.snapshots {
        verify_stored(store, s)?;
    }
    let mut readers = Vec::with_capacity(leased.chain.len());
    for s in &leased.chain.snapshots {
        readers.push(store.open(s.id)?);
    }
    restore_readers(readers, sink)?;
    metrics::histogram!(raft_metrics::snapshot::RESTORE_SECONDS)
        .record(started.elapsed().as_secs_f64());
    Ok(leased.chain.tip().clone())
}

/// Feeds already verified readers (base first) into the sink.
pub(crate) fn restore_readers(
    readers: Vec<SnapshotReader>,
    sink: &mut dyn RestoreSink,
) -> Result<()> {
    let chain = Chain::new(readers.iter().map(|r| r.info.clone()).collect())?;
    for (i, mut r) in readers.into_iter().enumerate() {
        if i == 0 {
            sink.reset(&r.info)?;
        } else {
            sink.begin_delta(&r.info)?;
        }
        while let Some(rec) = r.next_record()? {
            apply_record(sink, rec)?;
        }
    }
    sink.finish(chain.tip())
}

/// One layer of a k-way merge.
struct Layer {
    reader: SnapshotReader,
    head: Option<Record>,
}

/// Merges the chain ending at `tip` (the current chain when `None`) into a new full
/// snapshot at the tip's index, term and membership, in bounded memory (a streaming k-way
/// merge over the sorted files, newest layer winning, deletions dropped). The new base
/// becomes the current chain's tip if the old tip was; the old chain is left for
/// [`SnapshotStore::gc`]. `created_ms` is the new snapshot's creation time. The runtime calls
/// this in the background when [`ChainPolicy::needs_compaction`] says so, on the same task
/// that takes snapshots: a delta finished on the old tip while a compaction runs would
/// keep the new base from becoming the tip (correct, but the merge is wasted).
pub fn compact_chain(
    store: &SnapshotStore,
    tip: Option<crate::info::SnapshotId>,
    created_ms: u64,
) -> Result<SnapshotInfo> {
    let leased = store.lease_chain(tip)?;
    let chain = &leased.chain;
    for s in &chain.snapshots {
        verify_stored(store, s)?;
    }
    let mut layers = Vec::with_capacity(chain.len());
    for s in &chain.snapshots {
        let mut reader = store.open(s.id)?;
        let head = reader.next_record()?;
        layers.push(Layer { reader, head });
    }
    let t = chain.tip();
    let mut w = store.begin(SnapshotKind::Full, None, &t.meta(), created_ms)?;
    loop {
        // Smallest key among the layers' heads; the newest layer (highest position) wins.
        let mut min: Option<(Bytes, usize)> = None;
        for (i, l) in layers.iter().enumerate() {
            if let Some(r) = &l.head {
                match &min {
                    Some((k, _)) if r.key() > k => {}
                    _ => min = Some((r.key().clone(), i)),
                }
            }
        }
        let Some((key, winner)) = min else { break };
        let mut chosen = None;
        for (i, l) in layers.iter_mut().enumerate() {
            if l.head.as_ref().is_some_and(|r| r.key() == &key) {
                let rec = l.head.take();
                l.head = l.reader.next_record()?;
                if i == winner {
                    chosen = rec;
                }
            }
        }
        if let Some(Record::Put { key, value }) = chosen {
            w.put(&key, &value)?;
        }
    }
    let info = w.finish()?;
    metrics::counter!(raft_metrics::snapshot::COMPACTIONS).increment(1);
    tracing::info!(new_base = %info.id, merged = chain.len(), "snapshot chain compacted");
    Ok(info)
}

/// Takes a snapshot of `sm` copy-on-write: a delta on top of the current chain when `kind`
/// is `Delta` and a chain exists (else a full one), written, made durable and added to the
/// manifest; then tells the state machine the capture is durable.
pub fn take_snapshot(
    store: &SnapshotStore,
    sm: &dyn SnapshotCapture,
    kind: SnapshotKind,
    created_ms: u64,
) -> Result<SnapshotInfo> {
    let parent = match kind {
        SnapshotKind::Full => None,
        SnapshotKind::Delta => store.latest().map(|c| c.tip().id),
    };
    let kind = if parent.is_some() {
        SnapshotKind::Delta
    } else {
        SnapshotKind::Full
    };
    let mut cap = sm.capture(kind)?;
    let mut w = store.begin(kind, parent, &cap.meta, created_ms)?;
    w.write_source(&mut cap.source)?;
    let info = w.finish()?;
    sm.capture_durable(&info)?;
    Ok(info)
}
