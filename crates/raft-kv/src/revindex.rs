//! The per-key revision index: one empty sled entry per history event, keyed by the event's
//! user key and then its revision, so the key's latest write at or below any revision is one
//! reverse seek away, however many times the key was written since.
//!
//! Sled key: `b'r' ++ user key length (LEB128 varint) ++ user key ++ main (u64 BE) ++ sub
//! (u32 BE)`, value empty. The length in front makes `b'r' ++ length ++ key` a prefix that no
//! other key's entries share (a bare `key ++ revision` would let the entries of `key ++ x`
//! sort among those of `key`), so one key's entries are contiguous and in revision order.
//!
//! Invariant: the index entry `(k, r)` exists exactly when the history event at `r` exists
//! and is a write of `k`. Apply writes both in the batch of the write, physical compaction
//! removes both in one batch, a restore writes the entry of every event it restores (the
//! index is derived: snapshots do not carry it; after a delta, [`prune_restored`] removes the
//! events the source no longer has and nothing here reaches), and opening a store of layout
//! 4 (before the index) builds it from the keys' chains ([`build`]).

use crate::error::{Error, Result};
use crate::history::decode_event;
use crate::layout::{
    DATA, HISTORY, REVS, be_u64, history_key, history_rev, meta, meta_key, prefixed,
};
use crate::record::{Current, Rev};

/// `b'r' ++ varint(len) ++ key`: the prefix of `key`'s entries.
fn prefix(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 10 + key.len() + 12);
    v.push(REVS);
    prost::encoding::encode_varint(key.len() as u64, &mut v);
    v.extend_from_slice(key);
    v
}

/// The sled key of the index entry of `key`'s write at `at`.
pub(crate) fn entry_key(key: &[u8], at: Rev) -> Vec<u8> {
    let mut v = prefix(key);
    v.extend_from_slice(&history_key(at.main, at.sub)[1..]);
    v
}

/// The revision of `key`'s latest write at or below `rev` that the history still holds
/// (one reverse seek). `None` when there is none: the key was never written up to `rev`,
/// or physical compaction removed what it had (a tombstone and what it superseded).
pub(crate) fn latest_at(tree: &sled::Tree, key: &[u8], rev: i64) -> Result<Option<Rev>> {
    if rev < 0 {
        return Ok(None);
    }
    let lo = prefix(key);
    let mut hi = lo.clone();
    hi.extend_from_slice(&history_key(rev, u32::MAX)[1..]);
    let Some(item) = tree.range(lo.as_slice()..=hi.as_slice()).next_back() else {
        return Ok(None);
    };
    let (k, _) = item?;
    Ok(Some(rev_of_entry(&k, lo.len())?))
}

/// Entries written per sled batch when the index is built.
const CHUNK: usize = 10_000;

/// The stored compact revision (0 when none).
fn compact_revision(tree: &sled::Tree) -> Result<i64> {
    match tree.get(meta_key(meta::COMPACT_REVISION))? {
        Some(v) => Ok(be_u64(&v).ok_or_else(|| Error::corrupt("meta compact_revision"))? as i64),
        None => Ok(0),
    }
}

/// A sled batch written every [`CHUNK`] operations.
struct Chunked<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    n: usize,
}

impl<'a> Chunked<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        Chunked {
            tree,
            batch: sled::Batch::default(),
            n: 0,
        }
    }

    fn insert(&mut self, k: &[u8]) -> Result<()> {
        self.batch.insert(k, &[][..]);
        self.bump()
    }

    fn remove(&mut self, k: &[u8]) -> Result<()> {
        self.batch.remove(k);
        self.bump()
    }

    fn bump(&mut self) -> Result<()> {
        self.n += 1;
        if self.n == CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.tree.apply_batch(std::mem::take(&mut self.batch))?;
        self.n = 0;
        Ok(())
    }
}

/// Builds the index of a layout 4 store, then marks the store layout 5. Returns the entries
/// written and the history events removed.
///
/// Layout 4 read old versions by walking each key's `prev` chain from its current entry, so
/// an event no chain reaches was never read; a delta restore can leave such events at or
/// below the compact revision (see [`prune_restored`]). The index must not list them (a seek
/// would take one for the key's version), so the build follows every key's chain, indexes
/// what it reaches, and removes the unreached events at or below the compact revision
/// (events above it are all reached in a sound store; one that is not is indexed, with a
/// warning). Inserting an entry twice is harmless and the removed events are unreachable,
/// so a crash in the middle (layout 4 still marked) is repaired by building again.
pub(crate) fn build(tree: &sled::Tree) -> Result<(usize, usize)> {
    let compact = compact_revision(tree)?;
    let mut b = Chunked::new(tree);
    let mut written = 0;
    for item in tree.scan_prefix([DATA]) {
        let (k, v) = item?;
        let key = &k[1..];
        let mut at = Some(Current::decode(&v)?.at());
        while let Some(r) = at {
            let Some(raw) = tree.get(history_key(r.main, r.sub))? else {
                break;
            };
            let (event_key, event) = decode_event(&raw)?;
            if event_key.as_ref() != key {
                return Err(Error::corrupt(format!(
                    "history event {}.{} is not a write of the key whose chain names it",
                    r.main, r.sub
                )));
            }
            b.insert(&entry_key(key, r))?;
            written += 1;
            at = event.prev();
        }
    }
    b.flush()?;
    let mut removed = 0;
    for item in tree.scan_prefix([HISTORY]) {
        let (k, v) = item?;
        let (main, sub) = history_rev(&k).ok_or_else(|| Error::corrupt("history key"))?;
        let (key, _) = decode_event(&v)?;
        let entry = entry_key(&key, Rev::new(main, sub));
        if tree.contains_key(&entry)? {
            continue;
        }
        if main <= compact {
            b.remove(&k)?;
            removed += 1;
        } else {
            tracing::warn!(
                main,
                sub,
                "history event above the compact revision on no key's chain"
            );
            b.insert(&entry)?;
            written += 1;
        }
    }
    b.batch.insert(meta_key(meta::LAYOUT), &[5]);
    b.flush()?;
    tree.flush()?;
    Ok((written, removed))
}

/// After a delta restore: removes, for each key the delta wrote (`keys`), its events at or
/// below the compact revision other than its version then, with their index entries.
///
/// A delta adds the history events after its parent but deletes none, so an event the
/// parent had and the source's physical compaction removed since stays here. Physical
/// compaction here removes most of them again (the events their successors name), but not
/// one whose successor was written and removed after the parent: nothing here names it, so
/// it would stay, and the index would offer it as the key's version at revisions where the
/// key did not exist (a tombstone removed with its predecessors). Only keys written since
/// the parent can have such an event. The key's version at the compact revision `C` is the
/// `prev` of its first write above `C` (every event above `C` is kept, with its index
/// entry), or its current entry when that is at or below `C`.
pub(crate) fn prune_restored(tree: &sled::Tree, keys: &[Vec<u8>]) -> Result<usize> {
    let compact = compact_revision(tree)?;
    let mut b = Chunked::new(tree);
    let mut removed = 0;
    for key in keys {
        let lo = prefix(key);
        let mut mid = lo.clone();
        mid.extend_from_slice(&history_key(compact + 1, 0)[1..]);
        let keep = match tree.range(mid.as_slice()..).next() {
            Some(item) if item.as_ref().map_or(true, |(k, _)| k.starts_with(&lo)) => {
                let (k, _) = item?;
                let first = rev_of_entry(&k, lo.len())?;
                tree.get(history_key(first.main, first.sub))?
                    .map(|raw| decode_event(&raw))
                    .transpose()?
                    .and_then(|(_, e)| e.prev())
            }
            _ => tree
                .get(prefixed(DATA, key))?
                .map(|raw| Current::decode(&raw))
                .transpose()?
                .map(|e| e.at()),
        };
        for item in tree.range(lo.as_slice()..mid.as_slice()) {
            let (k, _) = item?;
            let at = rev_of_entry(&k, lo.len())?;
            if Some(at) != keep {
                b.remove(&k)?;
                b.remove(&history_key(at.main, at.sub))?;
                removed += 1;
            }
        }
    }
    b.flush()?;
    Ok(removed)
}

/// The revision at the end of the index entry `k` whose key prefix is `prefix_len` long.
fn rev_of_entry(k: &[u8], prefix_len: usize) -> Result<Rev> {
    if k.len() != prefix_len + 12 {
        return Err(Error::corrupt("revision index: bad entry key"));
    }
    let mut h = [0u8; 13];
    h[0] = HISTORY;
    h[1..].copy_from_slice(&k[prefix_len..]);
    let (main, sub) = history_rev(&h).ok_or_else(|| Error::corrupt("revision index key"))?;
    Ok(Rev::new(main, sub))
}

/// Checks the invariant of the module: every index entry names an existing history event of
/// its key, and every history event has its entry. Returns the number of entries. Reads the
/// whole history: for tests, on a store nobody writes to.
pub(crate) fn check(tree: &sled::Tree) -> Result<usize> {
    let mut entries = 0;
    for item in tree.scan_prefix([REVS]) {
        let (k, _) = item?;
        let mut rest = &k[1..];
        let len = prost::encoding::decode_varint(&mut rest)
            .ok()
            .and_then(|l| usize::try_from(l).ok())
            .filter(|l| rest.len() == l + 12)
            .ok_or_else(|| Error::corrupt(format!("revision index: bad entry {k:?}")))?;
        let (key, at) = rest.split_at(len);
        let mut h = vec![HISTORY];
        h.extend_from_slice(at);
        let event = tree
            .get(&h)?
            .ok_or_else(|| Error::corrupt(format!("revision index entry {k:?} without event")))?;
        if decode_event(&event)?.0.as_ref() != key {
            return Err(Error::corrupt(format!(
                "revision index entry {k:?} names another key's event"
            )));
        }
        entries += 1;
    }
    for item in tree.scan_prefix([HISTORY]) {
        let (k, v) = item?;
        let (main, sub) = history_rev(&k).ok_or_else(|| Error::corrupt("history key"))?;
        let (key, _) = decode_event(&v)?;
        if !tree.contains_key(entry_key(&key, Rev::new(main, sub)))? {
            return Err(Error::corrupt(format!(
                "history event {main}.{sub} without its revision index entry"
            )));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_one_key_stay_together() {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap();
        // `a ++ revision bytes ++ x` would sort among `a`'s entries without the length.
        let mut sneaky = b"a".to_vec();
        sneaky.extend_from_slice(&history_key(3, 0)[1..]);
        sneaky.push(b'x');
        for (key, main) in [
            (&b"a"[..], 2),
            (b"a", 5),
            (&sneaky[..], 3),
            (b"", 4),
            (b"b", 1),
        ] {
            tree.insert(entry_key(key, Rev::new(main, 0)), &[][..])
                .unwrap();
        }
        let at = |key: &[u8], rev| latest_at(&tree, key, rev).unwrap();
        assert_eq!(at(b"a", 1), None);
        assert_eq!(at(b"a", 2), Some(Rev::new(2, 0)));
        assert_eq!(
            at(b"a", 4),
            Some(Rev::new(2, 0)),
            "not the sneaky key's entry"
        );
        assert_eq!(at(b"a", 5), Some(Rev::new(5, 0)));
        assert_eq!(at(b"a", i64::MAX), Some(Rev::new(5, 0)));
        assert_eq!(at(&sneaky, 3), Some(Rev::new(3, 0)));
        assert_eq!(at(&sneaky, 2), None);
        assert_eq!(at(b"", 9), Some(Rev::new(4, 0)));
        assert_eq!(at(b"b", 0), None);
        assert_eq!(at(b"b", -1), None);
        assert_eq!(at(b"c", 9), None);
    }

    #[test]
    fn sub_revisions_order_inside_a_revision() {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap();
        for sub in [0, 2, 7] {
            tree.insert(entry_key(b"k", Rev::new(9, sub)), &[][..])
                .unwrap();
        }
        assert_eq!(
            latest_at(&tree, b"k", 9).unwrap(),
            Some(Rev::new(9, 7)),
            "a txn's last write of the key at that revision"
        );
        assert_eq!(latest_at(&tree, b"k", 8).unwrap(), None);
    }

    use crate::layout::{REVS, meta, meta_key};
    use crate::pb::etcdserverpb::{PutRequest, RangeRequest};
    use crate::{ApplyEntry, Command, EntryPayload, KvStore, Op};

    fn put(k: &str, v: &str) -> Command {
        Command::new(
            0,
            Op::Put(PutRequest {
                key: k.as_bytes().to_vec().into(),
                value: v.as_bytes().to_vec().into(),
                ..Default::default()
            }),
        )
    }

    /// Applies `cmds` in batches of 500 from log index `from + 1`; returns the next index.
    fn apply_all(store: &KvStore, from: u64, cmds: &[Command]) -> u64 {
        let mut index = from;
        for chunk in cmds.chunks(500) {
            let entries: Vec<ApplyEntry<'_>> = chunk
                .iter()
                .map(|c| {
                    index += 1;
                    ApplyEntry {
                        index,
                        term: 1,
                        payload: EntryPayload::Command(c),
                    }
                })
                .collect();
            store.apply_batch(&entries).unwrap();
        }
        index
    }

    fn value_at(store: &KvStore, key: &str, revision: i64) -> Option<(String, i64)> {
        let r = store
            .range(&RangeRequest {
                key: key.as_bytes().to_vec().into(),
                revision,
                ..Default::default()
            })
            .unwrap();
        r.kvs
            .first()
            .map(|kv| (String::from_utf8(kv.value.to_vec()).unwrap(), kv.version))
    }

    /// A key rewritten 10,000 times is read at its first revision with one index seek and one
    /// event get: with every event between its first and its last write removed from the
    /// history (which a walk of the `prev` links would have to read, and would find missing
    /// above the compact revision), the read still answers.
    #[test]
    fn old_read_of_a_key_rewritten_10000_times_reads_no_later_event() {
        let store = KvStore::open_temporary().unwrap();
        let mut cmds = vec![put("k", "first"), put("neighbour", "n")];
        cmds.extend((1..=10_000).map(|i| put("k", &format!("v{i}"))));
        apply_all(&store, 0, &cmds);
        let head = store.revision();
        assert_eq!(head, 2 + 10_001);
        assert_eq!(value_at(&store, "k", 2), Some(("first".into(), 1)));
        assert_eq!(value_at(&store, "k", 3), Some(("first".into(), 1)));
        assert_eq!(value_at(&store, "k", 3 + 500), Some(("v500".into(), 501)));
        // Unhook the chain: remove the events of the writes after the first but the last.
        let tree = &store.shared.tree;
        let mut b = sled::Batch::default();
        for main in 4..head {
            b.remove(&history_key(main, 0)[..]);
        }
        tree.apply_batch(b).unwrap();
        assert_eq!(value_at(&store, "k", 2), Some(("first".into(), 1)));
        assert_eq!(value_at(&store, "k", 3), Some(("first".into(), 1)));
        assert_eq!(value_at(&store, "neighbour", 3), Some(("n".into(), 1)));
        assert_eq!(value_at(&store, "k", 0), Some(("v10000".into(), 10_001)));
    }

    /// A txn inside a batch reads at a revision written earlier in the same batch (pending,
    /// not in sled nor in the index yet) and at one written before it.
    #[test]
    fn txn_reads_at_old_revisions_inside_a_batch() {
        use crate::pb::etcdserverpb::{RequestOp, TxnRequest, request_op, response_op};
        let store = KvStore::open_temporary().unwrap();
        let mut index = apply_all(&store, 0, &[put("k", "a"), put("k", "b"), put("k", "c")]);
        assert_eq!(store.revision(), 4);
        let read = |rev: i64| RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"k".to_vec().into(),
                revision: rev,
                ..Default::default()
            })),
        };
        let cmds = [
            put("k", "d"),
            put("k", "e"),
            Command::new(
                0,
                Op::Txn(TxnRequest {
                    success: vec![read(2), read(3), read(5), read(6), read(0)],
                    ..Default::default()
                }),
            ),
        ];
        let entries: Vec<ApplyEntry<'_>> = cmds
            .iter()
            .map(|c| {
                index += 1;
                ApplyEntry {
                    index,
                    term: 1,
                    payload: EntryPayload::Command(c),
                }
            })
            .collect();
        let results = store.apply_batch(&entries).unwrap();
        let crate::Outcome::Response(crate::Response::Txn(t)) = &results[2].outcome else {
            panic!("{:?}", results[2].outcome);
        };
        let values: Vec<String> = t
            .responses
            .iter()
            .map(|r| match &r.response {
                Some(response_op::Response::ResponseRange(r)) => {
                    String::from_utf8(r.kvs[0].value.to_vec()).unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, ["a", "b", "d", "e", "e"]);
    }

    /// Opening a layout 4 store (no index) builds the index; so does opening one whose build
    /// was cut short (layout 4 still marked, part of the index written).
    #[test]
    fn opening_a_layout_4_store_builds_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let expected;
        {
            let store = KvStore::open(dir.path()).unwrap();
            let mut cmds: Vec<Command> = (0..300)
                .map(|i| put(&format!("k{}", i % 7), &format!("v{i}")))
                .collect();
            cmds.push(Command::new(
                0,
                Op::DeleteRange(crate::pb::etcdserverpb::DeleteRangeRequest {
                    key: b"k3".to_vec().into(),
                    ..Default::default()
                }),
            ));
            apply_all(&store, 0, &cmds);
            expected = (2..=store.revision())
                .map(|r| {
                    (0..7)
                        .map(|k| value_at(&store, &format!("k{k}"), r))
                        .collect()
                })
                .collect::<Vec<Vec<_>>>();
            assert_eq!(store.check_revision_index().unwrap(), 301);
        }
        for partial in [false, true] {
            {
                let store = KvStore::open(dir.path()).unwrap();
                let tree = &store.shared.tree;
                let mut n = 0;
                let mut b = sled::Batch::default();
                for item in tree.scan_prefix([REVS]) {
                    n += 1;
                    if !partial || n % 2 == 0 {
                        b.remove(item.unwrap().0);
                    }
                }
                b.insert(meta_key(meta::LAYOUT), &[4]);
                tree.apply_batch(b).unwrap();
                assert!(store.check_revision_index().is_err());
                store.flush().unwrap();
            }
            let store = KvStore::open(dir.path()).unwrap();
            assert_eq!(
                store
                    .shared
                    .tree
                    .get(meta_key(meta::LAYOUT))
                    .unwrap()
                    .as_deref(),
                Some(&[5][..])
            );
            assert_eq!(store.check_revision_index().unwrap(), 301);
            let got = (2..=store.revision())
                .map(|r| {
                    (0..7)
                        .map(|k| value_at(&store, &format!("k{k}"), r))
                        .collect()
                })
                .collect::<Vec<Vec<_>>>();
            assert_eq!(got, expected, "partial build {partial}");
        }
    }

    /// An event no key's chain reaches (left below the compact revision by an old delta
    /// restore) is removed when a layout 4 store is indexed: the index would offer it as the
    /// key's version where the key did not exist.
    #[test]
    fn building_drops_events_no_chain_reaches() {
        use crate::pb::etcdserverpb::{CompactionRequest, DeleteRangeRequest};
        let dir = tempfile::tempdir().unwrap();
        {
            let store = KvStore::open(dir.path()).unwrap();
            let del = Command::new(
                0,
                Op::DeleteRange(DeleteRangeRequest {
                    key: b"k".to_vec().into(),
                    ..Default::default()
                }),
            );
            let compact = Command::new(
                0,
                Op::Compact(CompactionRequest {
                    revision: 4,
                    physical: true,
                }),
            );
            let index = apply_all(&store, 0, &[put("k", "v1"), put("k", "v2"), del]);
            let tree = &store.shared.tree;
            let orphan = tree.get(history_key(2, 0)).unwrap().unwrap();
            let index = apply_all(&store, index, &[compact]);
            assert!(store.wait_compacted_blocking(4, std::time::Duration::from_secs(10)));
            assert!(tree.get(history_key(2, 0)).unwrap().is_none());
            apply_all(&store, index, &[put("k", "v3"), put("k", "v4")]);
            // The orphan, as a layout 4 store could hold it, and no index.
            let mut b = sled::Batch::default();
            b.insert(&history_key(2, 0)[..], orphan);
            for item in tree.scan_prefix([REVS]) {
                b.remove(item.unwrap().0);
            }
            b.insert(meta_key(meta::LAYOUT), &[4]);
            tree.apply_batch(b).unwrap();
            store.flush().unwrap();
        }
        let store = KvStore::open(dir.path()).unwrap();
        assert!(store.shared.tree.get(history_key(2, 0)).unwrap().is_none());
        assert_eq!(store.check_revision_index().unwrap(), 2);
        assert_eq!(value_at(&store, "k", 4), None);
        assert_eq!(value_at(&store, "k", 5), Some(("v3".into(), 1)));
        assert_eq!(value_at(&store, "k", 6), Some(("v4".into(), 2)));
    }
}
