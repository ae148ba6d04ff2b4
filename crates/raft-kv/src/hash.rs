//! Hashes of the state for comparing members: [`KvStore::hash_kv`] (etcd's `HashKV`, the MVCC
//! history up to a revision) and [`KvStore::hash`] (`Hash`: everything replicated).
//!
//! The hashes are of the logical state, not of the bytes sled holds: members compact
//! physically at their own pace, so what is still on disk below the compact revision
//! differs; what a read can see does not. Below the compact revision only each key's
//! version at that revision counts; above it, every event. Each counts as its revision,
//! key, kind and version (not the links between events, which a compaction may cut).

use crate::error::{Error, Result};
use crate::history::decode_event;
use crate::layout::{INTERNAL, history_key, history_rev};
use crate::record::{Current, Rev};
use crate::store::KvStore;
use crate::store::query::read_revision;

/// Releases a compaction pin when dropped.
struct Pinned<'a>(&'a KvStore, i64);

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        self.0.shared.unpin(self.1);
    }
}

/// What [`KvStore::hash_kv_at`] hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    /// The CRC-32C.
    pub hash: u32,
    /// The revision the hash covers.
    pub revision: i64,
    /// The compact revision when the hash began.
    pub compact_revision: i64,
}

impl KvStore {
    /// etcd's `HashKV`: a CRC-32C of the MVCC state up to `revision` (0: the current one),
    /// equal on every member that applied the same log, whatever each compacted physically.
    /// Returns the hash and the revision it covers; `revision` must be readable
    /// ([`Error::Compacted`], [`Error::FutureRevision`] otherwise). Holds no lock while it
    /// reads: apply goes on, and physical compaction waits at the compact revision.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64)> {
        let h = self.hash_kv_at(revision)?;
        Ok((h.hash, h.revision))
    }

    /// [`hash_kv`](Self::hash_kv) with the compact revision it started at.
    pub fn hash_kv_at(&self, revision: i64) -> Result<KvHash> {
        let (at, compact) = {
            let st = self.shared.state.read();
            if let Some(e) = st.unusable() {
                return Err(e);
            }
            let at = read_revision(revision, st.revision, st.compact_revision)?;
            self.shared.pin(st.compact_revision);
            (at, st.compact_revision)
        };
        let _pin = Pinned(self, compact);
        let mut crc = crc32c::crc32c(b"raft-kv mvcc");
        let tree = &self.shared.tree;
        for item in tree.range(history_key(0, 0)..history_key(at + 1, 0)) {
            let (k, v) = item?;
            let (main, _) = history_rev(&k).ok_or_else(|| Error::corrupt("history key"))?;
            let (key, entry) = decode_event(&v)?;
            if main <= compact
                && (entry.live().is_none() || !self.version_at(&key, entry.at(), compact)?)
            {
                continue;
            }
            crc = crc32c::crc32c_append(crc, &k[1..]);
            crc = crc32c::crc32c_append(crc, &(key.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, &key);
            match &entry {
                Current::Live { rec, .. } => {
                    let mut fixed = [0u8; 33];
                    fixed[0] = 1;
                    fixed[1..9].copy_from_slice(&rec.create_revision.to_be_bytes());
                    fixed[9..17].copy_from_slice(&rec.version.to_be_bytes());
                    fixed[17..25].copy_from_slice(&rec.lease.to_be_bytes());
                    fixed[25..].copy_from_slice(&(rec.value.len() as u64).to_be_bytes());
                    crc = crc32c::crc32c_append(crc, &fixed);
                    crc = crc32c::crc32c_append(crc, &rec.value);
                }
                Current::Tombstone { .. } => crc = crc32c::crc32c_append(crc, &[0]),
            }
        }
        Ok(KvHash {
            hash: crc,
            revision: at,
            compact_revision: compact,
        })
    }

    /// etcd's `Hash`: a CRC-32C of everything replicated: the MVCC state at the current
    /// revision (as [`hash_kv`](Self::hash_kv)), the node's internal records and the member
    /// list. Equal on members at the same applied index.
    pub fn hash(&self) -> Result<u32> {
        let (kv, _) = self.hash_kv(0)?;
        let mut crc = crc32c::crc32c(&kv.to_be_bytes());
        for item in self.shared.tree.scan_prefix([INTERNAL]) {
            let (k, v) = item?;
            crc = crc32c::crc32c_append(crc, &(k.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, &k);
            crc = crc32c::crc32c_append(crc, &(v.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, &v);
        }
        let members = crate::members::encode_members(self.members().iter());
        Ok(crc32c::crc32c_append(crc, &members))
    }

    /// Whether the write at `at` (at or below `compact`) made `key`'s version at `compact`:
    /// it is the key's latest write at or below `compact` (one seek in the revision index,
    /// `crate::revindex`). Physical compaction below `compact` meanwhile removes only writes
    /// superseded at or below `compact` and tombstones, so the answer does not depend on how
    /// far it got.
    fn version_at(&self, key: &[u8], at: Rev, compact: i64) -> Result<bool> {
        Ok(crate::revindex::latest_at(&self.shared.tree, key, compact)? == Some(at))
    }
}

#[cfg(feature = "testing")]
impl KvStore {
    /// **Testing only** (feature `testing`): replaces the value of `key`'s current version
    /// in place, in its current entry and in its history event, with no new revision and
    /// nothing replicated: the silent damage the corruption check exists to find (this
    /// member's `HashKV` no longer matches its peers'). Returns false when the key has no
    /// live version. Run it on a stopped member's store.
    pub fn overwrite_value_unreplicated(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        use crate::layout::{DATA, prefixed};
        let tree = &self.shared.tree;
        let Some(raw) = tree.get(prefixed(DATA, key))? else {
            return Ok(false);
        };
        let Current::Live { mut rec, sub, prev } = Current::decode(&raw)? else {
            return Ok(false);
        };
        rec.value = prost::bytes::Bytes::copy_from_slice(value);
        let entry = Current::Live { rec, sub, prev };
        let at = entry.at();
        tree.insert(prefixed(DATA, key), entry.encode())?;
        tree.insert(
            history_key(at.main, at.sub),
            crate::history::encode_event(key, &entry),
        )?;
        tree.flush()?;
        Ok(true)
    }
}
