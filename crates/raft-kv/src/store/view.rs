//! A read view of the data: the sled tree plus the writes of the batch being applied that are
//! not written yet (so later operations of a batch or txn see earlier ones).

use crate::error::Result;
use crate::layout::{DATA, KeyRange, prefixed};
use crate::record::Record;
use std::collections::BTreeMap;

/// Pending writes by user key: `Some` = the new record, `None` = deleted.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Record>>;

/// The tree as it is plus an overlay of pending writes.
pub(crate) struct View<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) overlay: &'a Overlay,
}

/// One key met by a scan; the record is decoded only when asked for.
pub(crate) enum Found<'a> {
    /// Straight from sled: the encoded record.
    Stored(sled::IVec),
    /// From the overlay.
    Pending(&'a Record),
}

impl Found<'_> {
    /// The decoded record.
    pub(crate) fn record(&self) -> Result<Record> {
        match self {
            Found::Stored(raw) => Record::decode(raw),
            Found::Pending(r) => Ok((*r).clone()),
        }
    }
}

impl<'a> View<'a> {
    /// The current record of `key`, if the key exists.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        match self.tree.get(prefixed(DATA, key))? {
            Some(raw) => Ok(Some(Record::decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Calls `f` for every existing key in `range`, in ascending key order, until it returns
    /// `false`.
    pub(crate) fn scan(
        &self,
        range: &KeyRange,
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
            if take_pending {
                let (k, v) = pending.next().expect("peeked");
                if skey == Some(k.as_slice()) {
                    head = stored.next().transpose()?;
                }
                if let Some(r) = v
                    && !f(k, Found::Pending(r))?
                {
                    return Ok(());
                }
            } else {
                let (k, v) = head.take().expect("present");
                head = stored.next().transpose()?;
                if !f(&k[1..], Found::Stored(v))? {
                    return Ok(());
                }
            }
        }
    }
}
