//! The on-disk key spaces of the state machine inside its one sled tree, and the mapping of
//! etcd key ranges (`key`, `range_end`) onto them.
//!
//! The full layout is documented on [`KvStore`](crate::KvStore), the type that reads it.

use std::ops::Bound;

/// Key space of the history: `b'h' ++ revision` (see [`history_key`]) -> the event written at
/// that revision (see `crate::history`).
pub(crate) const HISTORY: u8 = b'h';
/// Key space of the node's internal records, out of reach of every client request:
/// `b'i' ++ name` -> value (see `crate::internal`).
pub(crate) const INTERNAL: u8 = b'i';
/// Key space of the data: `b'k' ++ user key` -> the key's current entry (a live record or a
/// tombstone, see `crate::record::Current`).
pub(crate) const DATA: u8 = b'k';
/// Key space of the metadata: `b'm' ++ name` -> value (see [`meta`]).
pub(crate) const META: u8 = b'm';
/// Key space of the dirty lists: `b'd' ++ generation (u64 BE) ++ applied index (u64 BE)` ->
/// the user keys the batch ending at that index wrote (see [`encode_key_list`]).
pub(crate) const DIRTY: u8 = b'd';
/// Key space of the lease attachments: `b'l' ++ lease id (u64 BE) ++ user key` -> empty, one
/// per live key attached to a lease (an index of the data space, derived from it: written in
/// the batch that attaches or detaches, rebuilt by a restore, never in a snapshot; see
/// `crate::lease::record`).
pub(crate) const ATTACH: u8 = b'l';
/// Key space of the per-key revision index: `b'r' ++ user key length (varint) ++ user key ++
/// main (u64 BE) ++ sub (u32 BE)` -> empty, one per history event (derived from the history
/// space: written and removed with the events, rebuilt by a restore, never in a snapshot; see
/// `crate::revindex`).
pub(crate) const REVS: u8 = b'r';
/// Key space of the copy-on-write pre-images: `b'c' ++ capture number (u64 BE) ++ user key`
/// -> cow entry.
pub(crate) const COW: u8 = b'c';

/// Names of the metadata entries (after the `b'm'` prefix).
pub(crate) mod meta {
    /// u64 BE: index of the last applied entry.
    pub(crate) const APPLIED_INDEX: &[u8] = b"applied_index";
    /// u64 BE: term of the last applied entry.
    pub(crate) const APPLIED_TERM: &[u8] = b"applied_term";
    /// i64 BE: the store revision.
    pub(crate) const REVISION: &[u8] = b"revision";
    /// i64 BE: the compact revision.
    pub(crate) const COMPACT_REVISION: &[u8] = b"compact_revision";
    /// 12 bytes, a revision as in [`history_key`](super::history_key): physical compaction
    /// has processed every history event below it.
    pub(crate) const COMPACT_CURSOR: &[u8] = b"compact_cursor";
    /// i64 BE: the store revision at the last durable (or restored) snapshot; a delta holds
    /// the history events after it.
    pub(crate) const SNAPSHOT_REVISION: &[u8] = b"snapshot_revision";
    /// prost `MemberListResponse` (only `members` set): the member list.
    pub(crate) const MEMBERS: &[u8] = b"members";
    /// u64 BE: the current dirty generation (new writes are marked with it).
    pub(crate) const DIRTY_GEN: &[u8] = b"dirty_gen";
    /// u64 BE: dirty marks at or below this generation are in a durable snapshot.
    pub(crate) const DIRTY_FLOOR: &[u8] = b"dirty_floor";
    /// u64 BE: index of the last durable (or restored) snapshot; deltas are relative to it.
    pub(crate) const SNAPSHOT_INDEX: &[u8] = b"snapshot_index";
    /// u8: the layout version ([`LAYOUT_VERSION`](super::LAYOUT_VERSION)).
    pub(crate) const LAYOUT: &[u8] = b"layout";
    /// Present while a snapshot restore is under way (value empty).
    pub(crate) const RESTORING: &[u8] = b"restoring";
}

/// Version of this layout, stored under `meta::LAYOUT`. Version 1 had one dirty mark per key
/// (`b'd' ++ user key` -> generation) and pre-images under `b'c' ++ user key`; version 2 kept
/// only the current version of each key (no history, peer addresses as user keys); version 3
/// had no leases (no lease records, no `b'l'` attachments: every key's lease was 0); version 4
/// had no revision index (`b'r'`). Opening an older store converts it (see `crate::upgrade`).
pub(crate) const LAYOUT_VERSION: u8 = 5;

/// `prefix ++ n (u64 BE)`: the start of the part of a key space numbered `n`.
pub(crate) fn numbered(prefix: u8, n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(prefix);
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// The sled key of the history event at revision `main`, sub-revision `sub`:
/// `b'h' ++ main (u64 BE) ++ sub (u32 BE)`, so events sort by revision.
pub(crate) fn history_key(main: i64, sub: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = HISTORY;
    k[1..9].copy_from_slice(&(main as u64).to_be_bytes());
    k[9..].copy_from_slice(&sub.to_be_bytes());
    k
}

/// The revision of a history key; `None` when it is not one.
pub(crate) fn history_rev(key: &[u8]) -> Option<(i64, u32)> {
    if key.len() != 13 || key[0] != HISTORY {
        return None;
    }
    let main = u64::from_be_bytes(key[1..9].try_into().ok()?) as i64;
    let sub = u32::from_be_bytes(key[9..].try_into().ok()?);
    Some((main, sub))
}

/// The sled key of a dirty list: `b'd' ++ generation ++ index`.
pub(crate) fn dirty_key(generation: u64, index: u64) -> Vec<u8> {
    let mut v = numbered(DIRTY, generation);
    v.extend_from_slice(&index.to_be_bytes());
    v
}

/// The sled key of a pre-image: `b'c' ++ capture number ++ user key`.
pub(crate) fn cow_key(capture: u64, key: &[u8]) -> Vec<u8> {
    let mut v = numbered(COW, capture);
    v.extend_from_slice(key);
    v
}

/// A dirty list's value: each key as its length (LEB128 varint) then its bytes.
pub(crate) fn encode_key_list<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut buf = Vec::new();
    for k in keys {
        prost::encoding::encode_varint(k.len() as u64, &mut buf);
        buf.extend_from_slice(k);
    }
    buf
}

/// Decodes a dirty list into `out`; a malformed one is `None`.
pub(crate) fn decode_key_list(mut data: &[u8], out: &mut Vec<Vec<u8>>) -> Option<()> {
    while !data.is_empty() {
        let len = usize::try_from(prost::encoding::decode_varint(&mut data).ok()?).ok()?;
        if len > data.len() {
            return None;
        }
        let (k, rest) = data.split_at(len);
        out.push(k.to_vec());
        data = rest;
    }
    Some(())
}

/// `prefix ++ key`.
pub(crate) fn prefixed(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + key.len());
    v.push(prefix);
    v.extend_from_slice(key);
    v
}

/// The sled key of a metadata entry.
pub(crate) fn meta_key(name: &[u8]) -> Vec<u8> {
    prefixed(META, name)
}

/// The user keys an etcd `(key, range_end)` pair selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `[start, end)`; `end == None` means no upper bound (`range_end == "\0"`).
    Span {
        /// First key, inclusive.
        start: Vec<u8>,
        /// End, exclusive; `None` for unbounded.
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// Interprets etcd's `key` / `range_end` (empty: single key; `"\0"`: every key >= key).
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> Self {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::Span {
                start: key.to_vec(),
                end: None,
            }
        } else {
            KeyRange::Span {
                start: key.to_vec(),
                end: Some(range_end.to_vec()),
            }
        }
    }

    /// True when `key` is in the range.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::Span { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }

    /// True when the range can hold no key (`end <= start`).
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            KeyRange::Single(_) => false,
            KeyRange::Span { start, end } => end.as_ref().is_some_and(|e| e <= start),
        }
    }

    /// Bounds of the range inside the key space `prefix` of the sled tree.
    pub(crate) fn sled_bounds(&self, prefix: u8) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            KeyRange::Single(k) => {
                let k = prefixed(prefix, k);
                (Bound::Included(k.clone()), Bound::Included(k))
            }
            KeyRange::Span { start, end } => (
                Bound::Included(prefixed(prefix, start)),
                match end {
                    Some(e) => Bound::Excluded(prefixed(prefix, e)),
                    None => Bound::Excluded(vec![prefix + 1]),
                },
            ),
        }
    }

    /// Bounds of the range over user keys (for a `BTreeMap<Vec<u8>, _>`).
    pub(crate) fn user_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::Single(k) => (Bound::Included(k), Bound::Included(k)),
            KeyRange::Span { start, end } => (
                Bound::Included(start),
                match end {
                    Some(e) => Bound::Excluded(e),
                    None => Bound::Unbounded,
                },
            ),
        }
    }
}

/// Big-endian u64 from a stored value.
pub(crate) fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_ranges() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        let all = KeyRange::new(b"", b"\0");
        assert!(all.contains(b"") && all.contains(b"\xff\xff"));
        let from_b = KeyRange::new(b"b", b"\0");
        assert!(!from_b.contains(b"a") && from_b.contains(b"b") && from_b.contains(b"zz"));
        let prefix = KeyRange::new(b"ab", b"ac");
        assert!(prefix.contains(b"ab") && prefix.contains(b"ab\xff") && !prefix.contains(b"ac"));
        assert!(KeyRange::new(b"b", b"a").is_empty());
        assert!(!KeyRange::new(b"a", b"b").is_empty());
        let (lo, hi) = all.sled_bounds(DATA);
        assert_eq!(lo, Bound::Included(vec![DATA]));
        assert_eq!(hi, Bound::Excluded(vec![DATA + 1]));
    }

    #[test]
    fn key_lists_round_trip_and_refuse_garbage() {
        let keys: Vec<&[u8]> = vec![b"", b"a", &[0xff; 200]];
        let enc = encode_key_list(keys.iter().copied());
        let mut out = Vec::new();
        decode_key_list(&enc, &mut out).unwrap();
        assert_eq!(out, keys);
        assert!(decode_key_list(&[5, b'a'], &mut Vec::new()).is_none());
        assert!(decode_key_list(&[0xff], &mut Vec::new()).is_none());
        assert!(dirty_key(1, 2) < dirty_key(2, 1));
        assert!(cow_key(1, b"\xff") < cow_key(2, b""));
    }
}
