//! Point-in-time restore: pick a snapshot by id, as the newest, or as the newest created
//! before a time, in an object store or a local store, and restore its chain.

use crate::chain::restore_chain;
use crate::error::{Error, IoContext, Result};
use crate::format::FileReader;
use crate::fs::Cursor;
use crate::info::{SnapshotId, SnapshotInfo};
use crate::object_store::{ObjectStore, blob_file, blob_meta};
use crate::source::RestoreSink;
use crate::store::{Chain, SnapshotStore, check_summary};
use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Write};

/// Which snapshot to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestorePoint {
    /// Exactly this snapshot.
    Id(SnapshotId),
    /// The newest snapshot (highest index, then newest creation time).
    Latest,
    /// The newest snapshot created at or before this unix-millisecond time.
    Before(u64),
    /// The snapshot with the highest index at or below this log index (a point-in-time
    /// restore replays the archived WAL from there).
    AtOrBelowIndex(u64),
}

fn pick(infos: &[SnapshotInfo], point: RestorePoint) -> Result<SnapshotId> {
    let newest = |it: &mut dyn Iterator<Item = &SnapshotInfo>| {
        it.max_by_key(|s| (s.created_ms, s.index)).map(|s| s.id)
    };
    let found = match point {
        RestorePoint::Id(id) => infos.iter().find(|s| s.id == id).map(|s| s.id),
        RestorePoint::Latest => newest(&mut infos.iter()),
        RestorePoint::Before(ts) => newest(&mut infos.iter().filter(|s| s.created_ms <= ts)),
        RestorePoint::AtOrBelowIndex(index) => infos
            .iter()
            .filter(|s| s.index <= index)
            .max_by_key(|s| (s.index, s.created_ms))
            .map(|s| s.id),
    };
    found.ok_or_else(|| Error::Invalid(format!("no snapshot matches {point:?}")))
}

pub(crate) fn chain_of(infos: &[SnapshotInfo], tip: SnapshotId) -> Result<Chain> {
    let by_id: HashMap<_, _> = infos.iter().map(|s| (s.id, s)).collect();
    let mut out = Vec::new();
    let mut cur = Some(tip);
    while let Some(id) = cur {
        let s = by_id.get(&id).ok_or(Error::UnknownSnapshot(id))?;
        if out.len() > infos.len() {
            return Err(Error::Invalid("cycle in snapshot parents".into()));
        }
        out.push((*s).clone());
        cur = s.parent;
    }
    out.reverse();
    Chain::new(out)
}

/// What an object store holds under `snapshots/`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    /// Completely uploaded snapshots (their metadata blob exists), in listing order.
    pub complete: Vec<SnapshotInfo>,
    /// Snapshot files whose metadata blob is missing (an upload in progress or cut short).
    pub incomplete: Vec<SnapshotId>,
}

impl Catalog {
    /// Lists and reads the metadata of every snapshot in `obj`.
    pub(crate) fn read(obj: &dyn ObjectStore) -> Result<Catalog> {
        let names = obj.list("snapshots/")?;
        let ids = |ext: &str| -> HashSet<SnapshotId> {
            names
                .iter()
                .filter_map(|n| n.strip_prefix("snapshots/")?.strip_suffix(ext))
                .filter_map(SnapshotId::parse)
                .collect()
        };
        let (files, metas) = (ids(".snap"), ids(".json"));
        let mut complete = Vec::new();
        for name in names.iter().filter(|n| n.ends_with(".json")) {
            let mut buf = Vec::new();
            obj.get(name, &mut buf)?;
            let info: SnapshotInfo =
                serde_json::from_slice(&buf).map_err(|e| Error::ObjectStore {
                    name: name.clone(),
                    reason: format!("bad snapshot metadata: {e}"),
                })?;
            if blob_meta(info.id) != *name {
                return Err(Error::ObjectStore {
                    name: name.clone(),
                    reason: format!("metadata of snapshot {} under another name", info.id),
                });
            }
            // Metadata is written after the file and deleted before it, so a file is there.
            if files.contains(&info.id) {
                complete.push(info);
            }
        }
        let mut incomplete: Vec<SnapshotId> = files.difference(&metas).copied().collect();
        incomplete.sort();
        Ok(Catalog {
            complete,
            incomplete,
        })
    }
}

/// The completely uploaded snapshots of `obj` (oldest index first) and the snapshot files
/// whose metadata is missing (uploads under way or cut short).
pub fn list_snapshots(obj: &dyn ObjectStore) -> Result<(Vec<SnapshotInfo>, Vec<SnapshotId>)> {
    let mut c = Catalog::read(obj)?;
    c.complete.sort_by_key(|s| (s.index, s.created_ms, s.id));
    Ok((c.complete, c.incomplete))
}

/// Downloads an uploaded snapshot file and checks every record and its metadata's size and
/// checksum (what a restore would read), without keeping it.
pub fn verify_uploaded(obj: &dyn ObjectStore, info: &SnapshotInfo) -> Result<()> {
    let mut buf = Vec::with_capacity(info.size as usize);
    obj.get(&blob_file(info.id), &mut buf)?;
    let mut r = FileReader::new(std::io::Cursor::new(buf), blob_file(info.id), true)?;
    let sum = r.verify_to_end()?;
    check_summary(info, sum.size, sum.checksum)?;
    if r.header().id != info.id {
        return Err(Error::corrupt(
            blob_file(info.id),
            12,
            "header names another snapshot",
        ));
    }
    Ok(())
}

/// Finds the chain for `point` among the completely uploaded snapshots of `obj`.
pub fn find_in_object_store(obj: &dyn ObjectStore, point: RestorePoint) -> Result<Chain> {
    let infos = Catalog::read(obj)?.complete;
    let tip = pick(&infos, point)?;
    chain_of(&infos, tip)
}

/// Downloads the chain for `point` from `obj` into `store` (verifying every file in full),
/// installs it there as the current chain, and, when `sink` is given, restores it into the
/// sink. Returns the chain. This is what `raftd restore` uses to build a new data dir.
pub fn restore_from_object_store(
    obj: &dyn ObjectStore,
    point: RestorePoint,
    store: &SnapshotStore,
    sink: Option<&mut dyn RestoreSink>,
) -> Result<Chain> {
    let chain = find_in_object_store(obj, point)?;
    let mut staged = Vec::new();
    for s in &chain.snapshots {
        let path = store.tmp_path(&format!("download-{}", s.id));
        let file = store.fs().create(&path).at(&path)?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, Cursor::new(file.clone()));
            obj.get(&blob_file(s.id), &mut w)?;
            w.flush().at(&path)?;
        }
        file.sync_data().at(&path)?;
        let mut r = FileReader::new(BufReader::new(Cursor::new(file)), blob_file(s.id), true)?;
        let sum = r.verify_to_end()?;
        check_summary(s, sum.size, sum.checksum)?;
        if r.header().id != s.id {
            return Err(Error::corrupt(
                blob_file(s.id),
                12,
                "header names another snapshot",
            ));
        }
        staged.push((path, s.clone()));
    }
    let chain = store.install_staged(staged)?;
    if let Some(sink) = sink {
        restore_chain(store, Some(chain.tip().id), sink)?;
    }
    tracing::info!(tip = %chain.tip().id, meta = %blob_meta(chain.tip().id), "restored from object store");
    Ok(chain)
}

/// Restores the chain for `point` from the local `store` into `sink`; returns its tip.
pub fn restore_point(
    store: &SnapshotStore,
    point: RestorePoint,
    sink: &mut dyn RestoreSink,
) -> Result<SnapshotInfo> {
    let tip = pick(&store.list(), point)?;
    restore_chain(store, Some(tip), sink)
}
