//! Offline defragmentation: a stopped member's store copied into a new sled database (only
//! what a full snapshot holds: the live data, the kept history, the internal records and the
//! metadata) and swapped in for the old one, which is then removed.
//!
//! sled cannot shrink the files of an open database (see [`KvStore::defragment`]); a new
//! database written from a snapshot's records holds no free space. The swap is one atomic
//! `renameat2(RENAME_EXCHANGE)` of the two directories, so a crash leaves either the old
//! store in place (and a half-built copy beside it) or the new one (and the old one beside
//! it); the next run removes what is beside it first.

use crate::error::{Error, Result};
use crate::store::{Defragmented, KvStore};
use std::path::{Path, PathBuf};

/// The directory a rebuild writes the new store into: `<path>.defrag`.
pub fn rebuild_dir(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".defrag");
    path.with_file_name(name)
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::corrupt(format!("{what}: {e}"))
}

/// Rebuilds the store at `path` (no process may have it open: sled's lock refuses a second
/// opener) into a new database and swaps it in. Returns the store's size on disk before and
/// after. The applied index, revisions, history, leases, alarms and member list are kept;
/// the next Raft snapshot of the member is a full one.
pub fn rebuild_store(path: &Path) -> Result<Defragmented> {
    if !path.is_dir() {
        return Err(Error::corrupt(format!("no store at {}", path.display())));
    }
    let tmp = rebuild_dir(path);
    if tmp.exists() {
        // An interrupted run: a partial copy, or the old store after the swap.
        std::fs::remove_dir_all(&tmp).map_err(io(format!("removing {}", tmp.display())))?;
    }
    let old = KvStore::open(path)?;
    if old.restore_pending() {
        return Err(Error::RestoreIncomplete);
    }
    let size_before = old.db_size()?;
    finish_compaction(&old);
    {
        let new = KvStore::open(&tmp)?;
        let cap = old.capture_export()?;
        new.restore_full(cap.info.index, cap.info.term, cap.records)?;
        new.flush()?;
    }
    drop(old);
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        path,
        rustix::fs::CWD,
        &tmp,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(|e| {
        Error::corrupt(format!(
            "swapping {} and {}: {e} (the old store is untouched)",
            path.display(),
            tmp.display()
        ))
    })?;
    std::fs::remove_dir_all(&tmp)
        .map_err(io(format!("removing the old store {}", tmp.display())))?;
    let size_after = KvStore::open(path)?.db_size()?;
    tracing::info!(size_before, size_after, path = %path.display(), "store rebuilt");
    Ok(Defragmented {
        size_before,
        size_after,
    })
}

/// Lets physical compaction reach the compact revision before the copy: a capture pins
/// compaction where it stands, so a member stopped before its background compaction ended
/// (a follower applies `Compact` and removes the history at its own pace) would otherwise
/// copy the compacted history into the new store. Opening the store resumed that work;
/// offline, nothing else competes with it.
fn finish_compaction(store: &KvStore) {
    let target = store.compact_revision();
    let mut waited = 0u64;
    while !store.wait_compacted_blocking(target, std::time::Duration::from_secs(10)) {
        waited += 10;
        tracing::info!(
            compact_revision = target,
            physically_compacted = store.physically_compacted(),
            waited_secs = waited,
            "finishing physical compaction before the copy"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
    };
    use crate::{Command, Op};

    #[test]
    fn a_rebuilt_store_is_smaller_and_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv");
        let (hash, revision) = {
            let store = KvStore::open(&path).unwrap();
            let mut index = 0;
            let mut run = |op: Op| {
                index += 1;
                store.apply(index, 3, &Command::new(0, op)).unwrap();
            };
            let value = "v".repeat(4096);
            for i in 0..2000 {
                run(Op::Put(PutRequest {
                    key: format!("k{i:05}").into_bytes().into(),
                    value: value.clone().into_bytes().into(),
                    ..Default::default()
                }));
            }
            run(Op::DeleteRange(DeleteRangeRequest {
                key: b"k00010".to_vec().into(),
                range_end: b"l".to_vec().into(),
                ..Default::default()
            }));
            let compact = store.revision();
            run(Op::Compact(CompactionRequest {
                revision: compact,
                physical: true,
            }));
            assert!(store.wait_compacted_blocking(compact, std::time::Duration::from_secs(30)));
            store.flush().unwrap();
            (store.hash_kv(0).unwrap(), store.revision())
        };
        // Leftovers of an interrupted run are removed first.
        std::fs::create_dir_all(rebuild_dir(&path).join("junk")).unwrap();
        let d = rebuild_store(&path).unwrap();
        assert!(
            d.size_after < d.size_before / 4,
            "{d:?}: the rebuilt store holds no free space"
        );
        assert!(!rebuild_dir(&path).exists());
        let store = KvStore::open(&path).unwrap();
        assert_eq!(store.hash_kv(0).unwrap(), hash);
        assert_eq!(store.revision(), revision);
        assert_eq!(store.applied_index(), 2002);
        assert_eq!(store.status().applied_term, 3);
        let r = store
            .range(&RangeRequest {
                key: b"k".to_vec().into(),
                range_end: b"l".to_vec().into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.count, 10);
        // A store in use is refused (sled's lock), and left alone.
        let e = rebuild_store(&path);
        assert!(e.is_err());
        drop(store);
        assert_eq!(KvStore::open(&path).unwrap().hash_kv(0).unwrap(), hash);
    }

    /// A member stopped before its physical compaction ended (the cursor behind the compact
    /// revision): the rebuild finishes the compaction first and copies none of the
    /// compacted history.
    #[test]
    fn a_rebuild_finishes_an_unfinished_compaction_first() {
        use crate::layout::HISTORY;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv");
        let history = |store: &KvStore| store.shared.tree.scan_prefix([HISTORY]).count();
        let hash = {
            let store = KvStore::open(&path).unwrap();
            let value = "v".repeat(256);
            for index in 1..=20_000 {
                let put = Op::Put(PutRequest {
                    key: format!("k{}", index % 4).into_bytes().into(),
                    value: value.clone().into_bytes().into(),
                    ..Default::default()
                });
                store.apply(index, 2, &Command::new(0, put)).unwrap();
            }
            // Paced to a crawl, the background removal stands still for this test.
            store.set_compaction_rate(1);
            let op = Op::Compact(CompactionRequest {
                revision: store.revision() - 3,
                physical: false,
            });
            store.apply(20_001, 2, &Command::new(0, op)).unwrap();
            store.flush().unwrap();
            assert!(
                history(&store) > 19_000,
                "stopped before compaction removed much"
            );
            store.hash_kv(0).unwrap()
        };
        rebuild_store(&path).unwrap();
        let store = KvStore::open(&path).unwrap();
        // The 4 keys' last versions at or below the compact revision, and the 3 above it.
        assert_eq!(history(&store), 4 + 3, "no compacted history was copied");
        assert_eq!(store.hash_kv(0).unwrap(), hash);
    }
}
