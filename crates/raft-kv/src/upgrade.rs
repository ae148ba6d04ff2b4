//! Conversion of older store layouts, run when a store is opened (and after restoring a
//! snapshot written by an older version). Each conversion is idempotent: a crash in the
//! middle leaves the old layout version in place, and the next open finishes the work.
//!
//! - Layout 1 -> 2: one dirty mark per key became one dirty list per applied batch.
//! - Layout 2 -> 3: history. Layout 2 kept only each key's current version and stored the
//!   peer address book as user keys `"\0raftd/peer/<id>"`. Every key's version becomes its
//!   first history event (with a sub-revision numbering the keys written at the same
//!   revision, in key order) and a current entry linking it; the peer keys move to the
//!   internal space; the compact revision becomes the store revision (older versions were
//!   never kept, so reads below it are refused as compacted); the next snapshot is a full
//!   one (the chain on disk has no history).
//! - Layout 3 -> 4: leases (nothing to convert).
//! - Layout 4 -> 5: the per-key revision index, built from the history space
//!   (`crate::revindex::build`).

use crate::error::{Error, Result};
use crate::history::encode_event;
use crate::internal::{encode_peer_urls, peer_key};
use crate::layout::{
    DATA, DIRTY, be_u64, dirty_key, encode_key_list, history_key, meta, meta_key, prefixed,
};
use crate::pb::kvcmd::MemberPeerUrls;
use crate::record::{Current, Rev};
use crate::state::encode_cursor;
use std::collections::BTreeMap;

/// Where layout 2 kept the peer address book, as user keys.
pub(crate) const LEGACY_PEER_PREFIX: &[u8] = b"\x00raftd/peer/";

/// Entries converted per sled batch.
const CHUNK: usize = 10_000;

/// Brings the store in `tree` to the current layout.
pub(crate) fn upgrade(tree: &sled::Tree) -> Result<()> {
    let layout = tree.get(meta_key(meta::LAYOUT))?;
    match layout.as_deref() {
        Some([1]) => {
            layout_1_to_2(tree)?;
            layout_2_to_3(tree)?;
        }
        Some([2]) => layout_2_to_3(tree)?,
        Some([3]) => layout_3_to_4(tree)?,
        Some([4]) => {}
        _ => return Ok(()),
    }
    layout_4_to_5(tree)
}

/// Layout 4 adds leases: lease records in the internal space and the `b'l'` attachment index.
/// A layout 3 store refused every lease, so it has neither and nothing is converted: only the
/// version moves (an older raftd then refuses to open the store, which may hold leases it
/// would never expire).
fn layout_3_to_4(tree: &sled::Tree) -> Result<()> {
    tree.insert(meta_key(meta::LAYOUT), &[4])?;
    tree.flush()?;
    tracing::info!("raft-kv store converted to layout 4 (leases)");
    Ok(())
}

/// Layout 5 adds the per-key revision index (`crate::revindex`), built from the history
/// space: one entry per kept event. Snapshots are unchanged (the index is not in them).
fn layout_4_to_5(tree: &sled::Tree) -> Result<()> {
    let (entries, removed) = crate::revindex::build(tree)?;
    tracing::info!(
        entries,
        removed,
        "raft-kv store converted to layout 5 (revision index)"
    );
    Ok(())
}

fn layout_2_to_3(tree: &sled::Tree) -> Result<()> {
    let converted = convert_data(tree)?;
    let revision = match tree.get(meta_key(meta::REVISION))? {
        Some(v) => be_u64(&v).ok_or_else(|| Error::corrupt("meta revision"))? as i64,
        None => crate::state::INITIAL_REVISION,
    };
    let mut b = sled::Batch::default();
    b.insert(meta_key(meta::COMPACT_REVISION), &revision.to_be_bytes());
    b.insert(
        meta_key(meta::COMPACT_CURSOR),
        encode_cursor(Rev::new(revision + 1, 0)),
    );
    b.insert(meta_key(meta::SNAPSHOT_INDEX), &0u64.to_be_bytes());
    b.insert(meta_key(meta::SNAPSHOT_REVISION), &0u64.to_be_bytes());
    // Layout 3 had no leases, so a converted layout 2 store is at 4 (the index comes next).
    b.insert(meta_key(meta::LAYOUT), &[4]);
    tree.apply_batch(b)?;
    tree.flush()?;
    tracing::info!(
        converted,
        compact_revision = revision,
        "raft-kv store converted to layout 3 (history from here on)"
    );
    Ok(())
}

/// Converts every layout-2 entry of the data space (see the module documentation); entries
/// already converted are left alone. Returns how many were converted.
pub(crate) fn convert_data(tree: &sled::Tree) -> Result<usize> {
    let mut converted = 0;
    let mut b = sled::Batch::default();
    let mut n = 0;
    // Sub-revisions handed out in the batch not written yet, by revision.
    let mut subs: BTreeMap<i64, u32> = BTreeMap::new();
    for item in tree.scan_prefix([DATA]) {
        let (k, v) = item?;
        if !Current::is_layout_2(&v) {
            continue;
        }
        let key = &k[1..];
        if let Some(id) = key.strip_prefix(LEGACY_PEER_PREFIX) {
            let id = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            let url = Current::decode(&v)?.into_live().map(|r| r.value);
            if let (Some(id), Some(url)) = (id, url) {
                let urls = MemberPeerUrls {
                    id,
                    peer_urls: vec![String::from_utf8_lossy(&url).into_owned()],
                };
                b.insert(peer_key(id), encode_peer_urls(&urls));
            }
            b.remove(k);
        } else {
            let Current::Live { rec, .. } = Current::decode(&v)? else {
                continue;
            };
            let main = rec.mod_revision;
            let sub = match subs.get_mut(&main) {
                Some(s) => s,
                None => {
                    let lo = history_key(main, 0);
                    let taken = tree.range(lo..history_key(main + 1, 0)).count() as u32;
                    subs.entry(main).or_insert(taken)
                }
            };
            let entry = Current::Live {
                rec,
                sub: *sub,
                prev: None,
            };
            *sub += 1;
            b.insert(
                &history_key(main, entry.at().sub)[..],
                encode_event(key, &entry),
            );
            b.insert(crate::revindex::entry_key(key, entry.at()), &[][..]);
            b.insert(prefixed(DATA, key), entry.encode());
        }
        converted += 1;
        n += 1;
        if n == CHUNK {
            tree.apply_batch(std::mem::take(&mut b))?;
            subs.clear();
            n = 0;
        }
    }
    tree.apply_batch(b)?;
    Ok(converted)
}

/// Converts a layout-1 store (one dirty mark `b'd' ++ user key` -> generation per key) to
/// the current layout in one atomic batch: the marks above the floor become one dirty list
/// per generation, the rest is dropped. Pre-images are already gone (removed at open).
fn layout_1_to_2(tree: &sled::Tree) -> Result<()> {
    let floor = match tree.get(meta_key(meta::DIRTY_FLOOR))? {
        Some(v) => be_u64(&v).ok_or_else(|| Error::corrupt("meta dirty_floor"))?,
        None => 0,
    };
    let mut b = sled::Batch::default();
    let mut lists: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
    for item in tree.scan_prefix([DIRTY]) {
        let (k, v) = item?;
        let generation = be_u64(&v).ok_or_else(|| Error::corrupt("layout 1 dirty mark"))?;
        if generation > floor {
            lists.entry(generation).or_default().push(k[1..].to_vec());
        }
        b.remove(k);
    }
    let converted: usize = lists.values().map(Vec::len).sum();
    for (generation, keys) in &lists {
        b.insert(
            dirty_key(*generation, 0),
            encode_key_list(keys.iter().map(Vec::as_slice)),
        );
    }
    b.insert(meta_key(meta::LAYOUT), &[2]);
    tree.apply_batch(b)?;
    tree.flush()?;
    tracing::info!(converted, "raft-kv store converted to layout 2");
    Ok(())
}

/// After a snapshot of layout 2 was restored (and [`convert_data`] ran): history starts at
/// the snapshot's revision, as after an upgrade in place, and the next snapshot is a full
/// one (a delta on a chain without history would not carry it).
pub(crate) fn legacy_restored(tree: &sled::Tree) -> Result<()> {
    let revision = match tree.get(meta_key(meta::REVISION))? {
        Some(v) => be_u64(&v).ok_or_else(|| Error::corrupt("meta revision"))? as i64,
        None => crate::state::INITIAL_REVISION,
    };
    let mut b = sled::Batch::default();
    b.insert(meta_key(meta::COMPACT_REVISION), &revision.to_be_bytes());
    b.insert(
        meta_key(meta::COMPACT_CURSOR),
        encode_cursor(Rev::new(revision + 1, 0)),
    );
    b.insert(meta_key(meta::SNAPSHOT_INDEX), &0u64.to_be_bytes());
    tree.apply_batch(b)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{COW, DATA, DIRTY, HISTORY, LAYOUT_VERSION};
    use crate::pb::etcdserverpb::{PutRequest, RangeRequest};
    use crate::{Command, KvStore, Op};
    use prost::bytes::Bytes;

    /// A layout-2 (or 1) key record: format 1, four varints, the value.
    fn v2_record(create: i64, modr: i64, version: i64, value: &[u8]) -> Vec<u8> {
        let mut v = vec![1u8];
        for n in [create, modr, version, 0] {
            prost::encoding::encode_varint(n as u64, &mut v);
        }
        v.extend_from_slice(value);
        v
    }

    fn count(store: &KvStore, space: u8) -> usize {
        store.shared.tree.scan_prefix([space]).count()
    }

    fn range(store: &KvStore, revision: i64) -> crate::Result<Vec<(String, i64)>> {
        let r = store.range(&RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            revision,
            ..Default::default()
        })?;
        Ok(r.kvs
            .iter()
            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.version))
            .collect())
    }

    /// A layout-2 store written by the previous version: two keys of one txn (same mod
    /// revision), one older key, a peer address kept as a user key.
    fn layout_2_db(layout: u8) -> sled::Db {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree(crate::TREE_NAME).unwrap();
        let mut b = sled::Batch::default();
        b.insert(meta_key(meta::LAYOUT), &[layout]);
        b.insert(meta_key(meta::REVISION), &5i64.to_be_bytes());
        b.insert(meta_key(meta::COMPACT_REVISION), &3i64.to_be_bytes());
        b.insert(meta_key(meta::APPLIED_INDEX), &9u64.to_be_bytes());
        b.insert(meta_key(meta::SNAPSHOT_INDEX), &7u64.to_be_bytes());
        b.insert(prefixed(DATA, b"a"), v2_record(2, 2, 1, b"old"));
        b.insert(prefixed(DATA, b"b"), v2_record(3, 5, 2, b"txn"));
        b.insert(prefixed(DATA, b"c"), v2_record(5, 5, 1, b"txn"));
        b.insert(
            prefixed(DATA, b"\x00raftd/peer/4"),
            v2_record(4, 4, 1, b"http://10.0.0.4:2380"),
        );
        if layout == 1 {
            b.insert(meta_key(meta::DIRTY_FLOOR), &1u64.to_be_bytes());
            b.insert(prefixed(DIRTY, b"b"), &2u64.to_be_bytes());
            b.insert(prefixed(COW, b"b"), &[0]);
        }
        tree.apply_batch(b).unwrap();
        db
    }

    /// Opening a layout-2 store converts it in place: every key gets its history event
    /// (distinct sub-revisions for keys of one revision), the peer address moves to the
    /// internal space out of clients' reach, history starts at the current revision, the
    /// next snapshot is a full one, and new writes keep history as usual.
    #[test]
    fn layout_2_is_converted_on_open() {
        for layout in [2u8, 1] {
            let store = KvStore::with_db(layout_2_db(layout)).unwrap();
            let what = format!("from layout {layout}");
            assert_eq!(
                store
                    .shared
                    .tree
                    .get(meta_key(meta::LAYOUT))
                    .unwrap()
                    .as_deref(),
                Some(&[LAYOUT_VERSION][..]),
                "{what}"
            );
            assert_eq!(store.compact_revision(), 5, "{what}");
            assert_eq!(store.status().snapshot_index, 0, "{what}");
            assert_eq!(count(&store, HISTORY), 3, "{what}");
            assert_eq!(store.check_revision_index().unwrap(), 3, "{what}");
            assert!(
                store.shared.tree.get(history_key(5, 0)).unwrap().is_some()
                    && store.shared.tree.get(history_key(5, 1)).unwrap().is_some(),
                "{what}"
            );
            assert_eq!(store.peer_urls().unwrap()[&4], ["http://10.0.0.4:2380"]);
            let all = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 1)];
            assert_eq!(range(&store, 0).unwrap(), all, "{what}");
            assert!(matches!(range(&store, 4), Err(Error::Compacted)), "{what}");
            let put = |i: u64, v: &str| {
                let cmd = Command::new(
                    0,
                    Op::Put(PutRequest {
                        key: Bytes::from_static(b"b"),
                        value: Bytes::copy_from_slice(v.as_bytes()),
                        ..Default::default()
                    }),
                );
                store.apply(i, 1, &cmd).unwrap();
            };
            put(10, "new");
            assert_eq!(range(&store, 5).unwrap(), all, "{what}");
            assert_eq!(range(&store, 6).unwrap()[1], ("b".into(), 3), "{what}");
            if layout == 1 {
                assert_eq!(count(&store, COW), 0);
                assert_eq!(
                    count(&store, DIRTY),
                    2,
                    "the converted list and the new one"
                );
            }
            // Opening again changes nothing.
            let hash = store.hash_kv(0).unwrap();
            let db = store.shared.db.clone();
            drop(store);
            let again = KvStore::with_db(db).unwrap();
            assert_eq!(again.hash_kv(0).unwrap(), hash, "{what}");
        }
    }

    /// A conversion interrupted after some batches finishes at the next open without
    /// numbering a key twice.
    #[test]
    fn an_interrupted_conversion_finishes() {
        let db = layout_2_db(2);
        let tree = db.open_tree(crate::TREE_NAME).unwrap();
        // As if the batch converting "a" and "b" was written before a crash.
        let mut b = sled::Batch::default();
        for (key, rec) in [
            (&b"a"[..], v2_record(2, 2, 1, b"old")),
            (b"b", v2_record(3, 5, 2, b"txn")),
        ] {
            let Current::Live { rec, .. } = Current::decode(&rec).unwrap() else {
                unreachable!()
            };
            let entry = Current::Live {
                sub: 0,
                prev: None,
                rec,
            };
            b.insert(
                &history_key(entry.at().main, 0)[..],
                encode_event(key, &entry),
            );
            b.insert(prefixed(DATA, key), entry.encode());
        }
        tree.apply_batch(b).unwrap();
        let store = KvStore::with_db(db).unwrap();
        assert_eq!(count(&store, HISTORY), 3);
        assert!(store.shared.tree.get(history_key(5, 1)).unwrap().is_some());
        assert_eq!(range(&store, 0).unwrap().len(), 3);
        assert_eq!(store.check_revision_index().unwrap(), 3);
    }

    /// A snapshot written by layout 2 (no history, peer addresses as user keys) restores
    /// converted, like a store opened in place, and the next snapshot is a full one.
    #[test]
    fn a_layout_2_snapshot_restores_converted() {
        use crate::snapshot::SnapshotRecord;
        let rec = |k: &[u8], v: Vec<u8>| {
            Ok(SnapshotRecord::Put {
                key: Bytes::from(prefixed(DATA, k)),
                value: Bytes::from(v),
            })
        };
        let meta_rec = |name: &[u8], v: Vec<u8>| {
            Ok(SnapshotRecord::Put {
                key: Bytes::from(meta_key(name)),
                value: Bytes::from(v),
            })
        };
        let records = vec![
            rec(
                b"\x00raftd/peer/4",
                v2_record(4, 4, 1, b"http://10.0.0.4:2380"),
            ),
            rec(b"a", v2_record(2, 2, 1, b"old")),
            rec(b"b", v2_record(3, 5, 2, b"txn")),
            rec(b"c", v2_record(5, 5, 1, b"txn")),
            meta_rec(meta::COMPACT_REVISION, 0i64.to_be_bytes().to_vec()),
            meta_rec(meta::MEMBERS, crate::members::encode_members(&[])),
            meta_rec(meta::REVISION, 5i64.to_be_bytes().to_vec()),
        ];
        let store = KvStore::open_temporary().unwrap();
        store.restore_full(9, 2, records).unwrap();
        assert_eq!(store.applied_index(), 9);
        assert_eq!(store.compact_revision(), 5);
        assert_eq!(
            store.status().snapshot_index,
            0,
            "the next snapshot is full"
        );
        assert_eq!(count(&store, HISTORY), 3);
        assert_eq!(store.check_revision_index().unwrap(), 3);
        assert_eq!(store.peer_urls().unwrap()[&4], ["http://10.0.0.4:2380"]);
        assert_eq!(
            range(&store, 5).unwrap(),
            vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]
        );
        assert!(matches!(range(&store, 4), Err(Error::Compacted)));
    }
}
