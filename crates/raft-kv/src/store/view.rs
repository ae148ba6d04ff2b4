//! A read view of the data: the sled tree plus the writes of the batch being applied that are
//! not written yet (so later operations of a batch or txn see earlier ones), at the current
//! revision or at an older one.
//!
//! Reading at an older revision `R` looks further only at the keys written after `R`: every
//! key's current entry (live or tombstone) names the revision of its write and of the key's
//! previous write, so a key not written since `R` is answered by its current entry, and one
//! written once since by the event its `prev` names. Otherwise the revision index
//! (`crate::revindex`) names the key's latest write at or below `R` in one reverse seek, and
//! one get reads its event: a bounded cost, however often the key was written since. An event
//! missing from the history at or below the compact revision is a tombstone that physical
//! compaction removed: the key did not exist.

use crate::error::{Error, Result};
use crate::history::decode_event;
use crate::layout::{DATA, KeyRange, history_key, prefixed};
use crate::record::{Current, Record, Rev};
use crate::revindex;
use prost::bytes::Bytes;
use std::collections::BTreeMap;

/// Pending current entries by user key.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Current>;
/// Pending history events of a batch: the revision, the key and the entry the write left.
///
/// Invariant: in strictly ascending revision order (a batch's writes are), so a lookup is a
/// binary search and an insert a push.
#[derive(Debug, Default)]
pub(crate) struct Pending(Vec<(Rev, Bytes, Current)>);

impl Pending {
    pub(crate) fn new() -> Self {
        Pending(Vec::new())
    }

    /// Appends the event of the batch's next write.
    pub(crate) fn push(&mut self, at: Rev, key: Bytes, entry: Current) -> Result<()> {
        if self.0.last().is_some_and(|(last, _, _)| *last >= at) {
            return Err(Error::corrupt("a batch's writes out of revision order"));
        }
        self.0.push((at, key, entry));
        Ok(())
    }

    /// The event at `at`, if the batch wrote it.
    pub(crate) fn get(&self, at: Rev) -> Option<&Current> {
        let i = self.0.binary_search_by_key(&at, |(r, _, _)| *r).ok()?;
        Some(&self.0[i].2)
    }

    /// The events, in revision order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Rev, Bytes, Current)> {
        self.0.iter()
    }
}

/// The tree as it is plus the pending writes of a batch.
pub(crate) struct View<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) overlay: &'a Overlay,
    pub(crate) pending: &'a Pending,
}

/// One key met by a scan; the record is decoded only when asked for.
pub(crate) enum Found<'a> {
    /// Straight from sled: an encoded live entry.
    Stored(sled::IVec),
    /// From the overlay (live).
    Pending(&'a Record),
    /// The version at an older revision.
    Resolved(Record),
}

impl Found<'_> {
    /// The decoded record.
    pub(crate) fn record(&self) -> Result<Record> {
        match self {
            Found::Stored(raw) => Current::decode(raw)?
                .into_live()
                .ok_or_else(|| Error::corrupt("a tombstone taken for a live key")),
            Found::Pending(r) => Ok((*r).clone()),
            Found::Resolved(r) => Ok(r.clone()),
        }
    }
}

/// True when `raw` is an encoded tombstone (decided by its format byte alone).
fn is_tombstone(raw: &[u8]) -> bool {
    raw.first() == Some(&crate::record::FORMAT_TOMBSTONE)
}

impl<'a> View<'a> {
    /// The current entry of `key` (live or tombstone), if it has one.
    pub(crate) fn entry(&self, key: &[u8]) -> Result<Option<Current>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(Some(pending.clone()));
        }
        match self.tree.get(prefixed(DATA, key))? {
            Some(raw) => Ok(Some(Current::decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// The current version of `key`, if the key exists.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.entry(key)?.and_then(Current::into_live))
    }

    /// The history event at `at`: pending, then stored.
    pub(crate) fn event(&self, at: Rev) -> Result<Option<Current>> {
        if let Some(e) = self.pending.get(at) {
            return Ok(Some(e.clone()));
        }
        match self.tree.get(history_key(at.main, at.sub))? {
            Some(raw) => Ok(Some(decode_event(&raw)?.1)),
            None => Ok(None),
        }
    }

    /// The version as of revision `rev` (which must be at or above the compact revision) of
    /// `key`, whose current entry is `entry`.
    ///
    /// Costs at most one reverse seek in the revision index and one get of a history event:
    /// the `prev` links are followed only through the writes of the batch being applied (in
    /// memory) and for one step into the stored history; past that, the index names the
    /// key's latest stored write at or below `rev` directly.
    pub(crate) fn resolve(&self, key: &[u8], entry: Current, rev: i64) -> Result<Option<Record>> {
        if entry.at().main <= rev {
            return Ok(entry.into_live());
        }
        let mut prev = entry.prev();
        while let Some(at) = prev {
            if at.main <= rev {
                // Missing: a tombstone that physical compaction removed.
                return Ok(self.event(at)?.and_then(Current::into_live));
            }
            match self.pending.get(at) {
                Some(event) => prev = event.prev(),
                None => break,
            }
        }
        if prev.is_none() {
            return Ok(None);
        }
        // `prev` is a stored write above `rev`: every event above the compact revision is
        // kept, and so is its index entry, so the index's latest entry at or below `rev` is
        // the key's version then, unless that was a tombstone (then maybe removed, with all
        // the key's earlier events).
        match revindex::latest_at(self.tree, key, rev)? {
            Some(at) => Ok(self.event(at)?.and_then(Current::into_live)),
            None => Ok(None),
        }
    }

    /// Calls `f` for every key in `range` that exists at revision `at` (`None`: the current
    /// revision), in ascending key order, until it returns `false`.
    pub(crate) fn scan(
        &self,
        range: &KeyRange,
        at: Option<i64>,
        mut f: impl FnMut(&[u8], Found<'a>) -> Result<bool>,
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let mut stored = self.tree.range(range.sled_bounds(DATA));
        let mut pending = self
            .overlay
            .range::<[u8], _>(range.user_bounds())
            .peekable();
        let mut head = stored.next().transpose()?;
        loop {
            let skey = head.as_ref().map(|(k, _)| &k[1..]);
            let pkey = pending.peek().map(|(k, _)| k.as_slice());
            let take_pending = match (skey, pkey) {
                (None, None) => return Ok(()),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(s), Some(p)) => p <= s,
            };
            let go_on = if take_pending {
                let (k, v) = pending.next().expect("peeked");
                if skey == Some(k.as_slice()) {
                    head = stored.next().transpose()?;
                }
                match (at, v) {
                    (None, Current::Live { rec, .. }) => f(k, Found::Pending(rec))?,
                    (None, Current::Tombstone { .. }) => true,
                    (Some(rev), v) => match self.resolve(k, v.clone(), rev)? {
                        Some(r) => f(k, Found::Resolved(r))?,
                        None => true,
                    },
                }
            } else {
                let (k, v) = head.take().expect("present");
                head = stored.next().transpose()?;
                match at {
                    None if is_tombstone(&v) => true,
                    None => f(&k[1..], Found::Stored(v))?,
                    Some(rev) => match self.resolve(&k[1..], Current::decode(&v)?, rev)? {
                        Some(r) => f(&k[1..], Found::Resolved(r))?,
                        None => true,
                    },
                }
            };
            if !go_on {
                return Ok(());
            }
        }
    }
}
