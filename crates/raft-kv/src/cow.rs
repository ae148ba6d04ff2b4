//! The copy-on-write state of the running capture: how far its reader got, and the
//! pre-images of the keys written since the capture point that it has not read yet.
//!
//! Pre-images live in memory, in a map from user key to the key's record at the capture
//! point (`None`: the key was absent), up to a byte budget
//! ([`DEFAULT_PRE_IMAGE_BUDGET`], changed with [`KvStore::set_pre_image_budget`]). Past the
//! budget a pre-image goes to sled instead (`b'c' ++ capture number ++ user key`, in the
//! same batch as the write), and the reader then consults both. The reader removes the
//! entries it has passed, so the budget bounds the pre-images of keys still ahead of it, not
//! all the keys written during a capture.
//!
//! Losing the in-memory pre-images in a crash loses nothing: only the running capture reads
//! them, and a capture does not survive a restart (its records are a stream read by one
//! process; a snapshot file is only listed in its store once it was written whole). The sled
//! ones are removed when the store is opened.
//!
//! [`KvStore::set_pre_image_budget`]: crate::KvStore::set_pre_image_budget

use crate::error::Result;
use crate::layout::{DATA, cow_key, prefixed};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

/// The default byte budget of the in-memory pre-images of a capture: 64 MiB. At about
/// 200 bytes per pre-image of a 128-byte value that is about 330,000 keys written during
/// one capture ahead of its reader; more go to sled.
pub const DEFAULT_PRE_IMAGE_BUDGET: usize = 64 << 20;

/// Bytes counted for one in-memory pre-image besides its key and record (map node share
/// and allocation headers; an estimate).
const ENTRY_OVERHEAD: usize = 64;

/// Cow flag of a sled pre-image: the key existed at the capture point (its record follows
/// the flags byte).
pub(crate) const COW_PRESENT: u8 = 2;

/// A key's record at the capture point: `None` when the key was absent.
pub(crate) type PreImage = Option<sled::IVec>;

/// How far a capture's records have been read, in user-key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing read yet.
    #[default]
    Start,
    /// Every key up to and including this one has been read.
    After(Vec<u8>),
    /// Every key has been read: later writes need no pre-image at all.
    Done,
}

impl Progress {
    /// True when `key` was read already.
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        match self {
            Progress::Start => false,
            Progress::After(k) => key <= k.as_slice(),
            Progress::Done => true,
        }
    }
}

/// The copy-on-write state shared by apply and the capture reader (behind one mutex, held
/// briefly by each: once per applied batch, twice per chunk the reader reads).
#[derive(Debug)]
pub(crate) struct CowState {
    /// How far the running capture has read (its keys up to here need no pre-image).
    pub(crate) progress: Progress,
    /// In-memory pre-images of keys the reader has not passed.
    memory: BTreeMap<Vec<u8>, PreImage>,
    /// Bytes `memory` is counted at (see [`ENTRY_OVERHEAD`]).
    memory_bytes: usize,
    /// Keys whose pre-image is in sled (added once the batch that wrote it is in sled).
    spilled: HashSet<Vec<u8>>,
    /// True once a pre-image of this capture may be in sled: the reader then reads the
    /// sled pre-images too. Set before the batch holding the first one is written.
    pub(crate) any_spilled: bool,
    /// The byte budget of `memory`.
    pub(crate) budget: usize,
}

/// Pre-images cloned from memory for one key interval of the reader.
pub(crate) type Taken = Vec<(Vec<u8>, PreImage)>;

/// What one applied batch read of the keys it writes while a capture runs: each key's
/// stored record before the batch, from its first read (the pre-image
/// [`CowState::preserve`] keeps, without a second read). Keys the capture had already read
/// when the batch started need no pre-image and are not kept.
#[derive(Debug, Default)]
pub(crate) struct BatchReads {
    /// The capture's progress when the batch started (it only moves forward).
    progress: Progress,
    read: BTreeMap<Vec<u8>, PreImage>,
}

impl BatchReads {
    /// For a batch that starts while the capture has read up to `progress`; `None` once the
    /// capture has read everything (no write needs a pre-image then).
    pub(crate) fn new(progress: Progress) -> Option<Self> {
        (progress != Progress::Done).then(|| BatchReads {
            progress,
            read: BTreeMap::new(),
        })
    }

    /// `key`'s stored record as the batch read it from the tree; the first read of a key
    /// counts.
    pub(crate) fn keep(&mut self, key: &[u8], raw: PreImage) {
        if !self.progress.covers(key) && !self.read.contains_key(key) {
            self.read.insert(key.to_vec(), raw);
        }
    }
}

impl CowState {
    pub(crate) fn new() -> Self {
        CowState {
            progress: Progress::Start,
            memory: BTreeMap::new(),
            memory_bytes: 0,
            spilled: HashSet::new(),
            any_spilled: false,
            budget: DEFAULT_PRE_IMAGE_BUDGET,
        }
    }

    /// Forgets everything of the previous capture (the budget stays). Returns the old
    /// pre-images, for the caller to drop after releasing the lock.
    pub(crate) fn reset(&mut self) -> BTreeMap<Vec<u8>, PreImage> {
        self.progress = Progress::Start;
        self.memory_bytes = 0;
        self.spilled = HashSet::new();
        self.any_spilled = false;
        std::mem::take(&mut self.memory)
    }

    /// For each key a batch writes that the capture has not read yet and that has no
    /// pre-image yet, keeps its value at the capture point: the value the batch read before
    /// its first write of the key (`reads`; earlier writes after the point made a pre-image
    /// already, so the tree still held the value at the point). In memory while the budget
    /// allows, else as a sled insert into `b` (the batch that also writes the key). Called
    /// before `b` is written; returns the keys given a sled pre-image, for
    /// [`spilled_written`](Self::spilled_written) once `b` is in sled.
    ///
    /// `progress` may lag behind the reader (then a pre-image is kept that is not needed),
    /// never run ahead of it: the reader publishes a key only after reading its data and then
    /// its pre-images, so a write the reader has not passed yet always leaves a pre-image
    /// where the reader looks afterwards.
    pub(crate) fn preserve<'k>(
        &mut self,
        tree: &sled::Tree,
        capture: u64,
        written: impl Iterator<Item = &'k Vec<u8>>,
        reads: BatchReads,
        b: &mut sled::Batch,
    ) -> Result<Vec<Vec<u8>>> {
        let mut read = reads.read;
        let mut spilled = Vec::new();
        for key in written {
            if self.progress.covers(key) || (!self.spilled.is_empty() && self.spilled.contains(key))
            {
                continue;
            }
            let (key, old) = match read.remove_entry(key) {
                Some(kv) => kv,
                // Every written key the capture had not read when the batch started was
                // read first; this is only a fallback.
                None if self.memory.contains_key(key) => continue,
                None => (key.clone(), tree.get(prefixed(DATA, key))?),
            };
            // One search of the map both finds an earlier pre-image and places a new one.
            let slot = match self.memory.entry(key) {
                Entry::Occupied(_) => continue,
                Entry::Vacant(slot) => slot,
            };
            let cost = entry_cost(slot.key(), &old);
            if self.memory_bytes + cost <= self.budget {
                self.memory_bytes += cost;
                slot.insert(old);
            } else {
                let key = slot.into_key();
                self.any_spilled = true;
                b.insert(cow_key(capture, &key), encode_pre_image(old.as_deref()));
                spilled.push(key);
            }
        }
        Ok(spilled)
    }

    /// The batch holding these sled pre-images is written: later writes of their keys need
    /// none. (Not before: a batch that fails to be written is applied again, and must then
    /// store them again.)
    pub(crate) fn spilled_written(&mut self, keys: Vec<Vec<u8>>) {
        self.spilled.extend(keys);
    }

    /// Copies of the in-memory pre-images of the user keys in `(after, upto]` (`None`: no
    /// bound), and whether sled may hold pre-images too.
    pub(crate) fn pre_images(&self, after: Option<&[u8]>, upto: Option<&[u8]>) -> (Taken, bool) {
        let lo = after.map_or(Bound::Unbounded, Bound::Excluded);
        let hi = upto.map_or(Bound::Unbounded, Bound::Included);
        let taken = self
            .memory
            .range::<[u8], _>((lo, hi))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (taken, self.any_spilled)
    }

    /// Publishes the reader's progress and removes the in-memory pre-images it has passed;
    /// returns them, for the caller to drop after releasing the lock.
    pub(crate) fn advance(&mut self, progress: Progress) -> BTreeMap<Vec<u8>, PreImage> {
        let passed = match &progress {
            Progress::Start => BTreeMap::new(),
            Progress::After(k) => {
                // The smallest key above `k`.
                let mut next = k.clone();
                next.push(0);
                let rest = self.memory.split_off(&next);
                std::mem::replace(&mut self.memory, rest)
            }
            Progress::Done => std::mem::take(&mut self.memory),
        };
        self.memory_bytes -= passed.iter().map(|(k, v)| entry_cost(k, v)).sum::<usize>();
        self.progress = progress;
        passed
    }

    /// How many pre-images are in memory.
    #[cfg(test)]
    pub(crate) fn in_memory(&self) -> usize {
        self.memory.len()
    }
}

/// Bytes an in-memory pre-image is counted at.
fn entry_cost(key: &[u8], old: &PreImage) -> usize {
    key.len() + old.as_ref().map_or(0, |v| v.len()) + ENTRY_OVERHEAD
}

/// A sled pre-image: the flags byte ([`COW_PRESENT`] when the key existed), then the
/// record if it existed.
fn encode_pre_image(old: Option<&[u8]>) -> Vec<u8> {
    match old {
        Some(raw) => {
            let mut v = Vec::with_capacity(1 + raw.len());
            v.push(COW_PRESENT);
            v.extend_from_slice(raw);
            v
        }
        None => vec![0u8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ivec(s: &str) -> PreImage {
        Some(sled::IVec::from(s.as_bytes()))
    }

    fn temporary_tree() -> sled::Tree {
        sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap()
    }

    fn reads(read: BTreeMap<Vec<u8>, PreImage>) -> BatchReads {
        BatchReads {
            progress: Progress::Start,
            read,
        }
    }

    /// Past the budget pre-images go to sled; the reader's progress drops what it passed
    /// and frees its budget.
    #[test]
    fn budget_spills_to_sled_and_passed_keys_are_freed() {
        let tree = temporary_tree();
        let mut cow = CowState::new();
        let one = entry_cost(b"a", &ivec("x"));
        cow.budget = 2 * one;
        let keys: Vec<Vec<u8>> = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let read: BTreeMap<_, _> = keys.iter().map(|k| (k.clone(), ivec("x"))).collect();
        let mut b = sled::Batch::default();
        let spilled = cow
            .preserve(&tree, 7, keys.iter(), reads(read), &mut b)
            .unwrap();
        assert_eq!(spilled, vec![b"c".to_vec()]);
        assert!(cow.any_spilled);
        assert_eq!(cow.in_memory(), 2);
        tree.apply_batch(b).unwrap();
        assert_eq!(
            tree.get(cow_key(7, b"c")).unwrap().unwrap().as_ref(),
            [COW_PRESENT, b'x']
        );
        cow.spilled_written(spilled);
        // Written again: nothing new, wherever the first pre-image went.
        let mut b = sled::Batch::default();
        let read: BTreeMap<_, _> = keys.iter().map(|k| (k.clone(), ivec("y"))).collect();
        assert!(
            cow.preserve(&tree, 7, keys.iter(), reads(read), &mut b)
                .unwrap()
                .is_empty()
        );
        tree.apply_batch(b).unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(cow.in_memory(), 2);
        let (taken, spilled) = cow.pre_images(Some(&b"a"[..]), None);
        assert_eq!(taken, vec![(b"b".to_vec(), ivec("x"))]);
        assert!(spilled);
        // The reader passes "a": its pre-image is gone and its budget is free again.
        assert_eq!(cow.advance(Progress::After(b"a".to_vec())).len(), 1);
        assert_eq!(cow.in_memory(), 1);
        let d = [b"d".to_vec()];
        let mut b = sled::Batch::default();
        let read = BTreeMap::from([(b"d".to_vec(), None)]);
        assert!(
            cow.preserve(&tree, 7, d.iter(), reads(read), &mut b)
                .unwrap()
                .is_empty()
        );
        assert_eq!(cow.in_memory(), 2);
        assert_eq!(cow.advance(Progress::Done).len(), 2);
        assert_eq!(cow.memory_bytes, 0);
    }

    /// A batch keeps the first read of each key the capture had not passed when the batch
    /// started, and nothing once the capture has read everything.
    #[test]
    fn batch_reads_keep_first_reads_of_keys_ahead_of_the_capture() {
        assert!(BatchReads::new(Progress::Done).is_none());
        let mut r = BatchReads::new(Progress::After(b"m".to_vec())).unwrap();
        r.keep(b"a", ivec("passed"));
        r.keep(b"m", ivec("passed too"));
        r.keep(b"x", ivec("first"));
        r.keep(b"x", ivec("second"));
        r.keep(b"y", None);
        assert_eq!(
            r.read.into_iter().collect::<Vec<_>>(),
            vec![(b"x".to_vec(), ivec("first")), (b"y".to_vec(), None)]
        );
    }

    /// A key written again in a later batch keeps the pre-image of its first write, and a
    /// write the batch did not read first still gets one (read from the tree).
    #[test]
    fn later_writes_keep_the_first_pre_image() {
        let tree = temporary_tree();
        tree.insert(prefixed(DATA, b"k"), &b"in tree"[..]).unwrap();
        let mut cow = CowState::new();
        let keys = [b"j".to_vec(), b"k".to_vec()];
        let mut b = sled::Batch::default();
        let read = BTreeMap::from([(b"j".to_vec(), ivec("old j"))]);
        cow.preserve(&tree, 1, keys.iter(), reads(read), &mut b)
            .unwrap();
        let mut b = sled::Batch::default();
        let read = BTreeMap::from([(b"j".to_vec(), ivec("newer j"))]);
        cow.preserve(&tree, 1, keys[..1].iter(), reads(read), &mut b)
            .unwrap();
        let (taken, spilled) = cow.pre_images(None, None);
        assert!(!spilled);
        assert_eq!(
            taken,
            vec![
                (b"j".to_vec(), ivec("old j")),
                (b"k".to_vec(), ivec("in tree"))
            ]
        );
    }
}
