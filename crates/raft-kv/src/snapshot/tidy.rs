//! Cleanup without locks: removing the pre-images of ended captures and the dirty lists a
//! durable snapshot holds (see the module documentation of [`crate::snapshot`]).

use super::*;

/// Keys listed per range scan in [`tidy`].
pub(super) const TIDY_CHUNK: usize = 256;

/// Removes what ended captures leave behind: the pre-images of captures that are over and
/// the dirty lists at or below the floor (changes a durable snapshot holds).
///
/// Both sit in key ranges no write touches again (new pre-images go under the running
/// capture's number, new lists under a generation above the floor), so the removal needs
/// no lock of ours and no look at the values (see [`remove_range`]). The bounds are taken under the state lock once: lists of the
/// running capture's delta are kept even when the floor has passed them (a capture may be
/// reported durable while its records are still read).
pub(crate) fn tidy(shared: &Shared) -> Result<()> {
    let (cow_limit, dirty_limit) = {
        let st = shared.state.read();
        if st.restoring {
            return Ok(());
        }
        match st.capture {
            Some(cap) => (cap.number, st.dirty_floor.min(cap.floor)),
            None => (st.next_capture, st.dirty_floor),
        }
    };
    let cow = remove_range(&shared.tree, vec![COW], numbered(COW, cow_limit))?;
    let dirty = remove_range(
        &shared.tree,
        vec![DIRTY],
        numbered(DIRTY, dirty_limit.saturating_add(1)),
    )?;
    tracing::debug!(cow, dirty, dirty_limit, "snapshot leftovers removed");
    Ok(())
}

/// Removes every key in `[lo, hi)`, one sled remove at a time; returns how many.
///
/// Single removes, not batches: a sled batch takes sled's global lock exclusively (every
/// read and write of the database waits for it), a single remove shares it. So a cleanup
/// on a low-priority thread that is preempted in the middle never stops apply.
fn remove_range(tree: &sled::Tree, lo: Vec<u8>, hi: Vec<u8>) -> Result<usize> {
    let mut removed = 0;
    let mut from = Bound::Included(lo);
    loop {
        let mut keys = Vec::with_capacity(TIDY_CHUNK);
        for item in tree
            .range((from.clone(), Bound::Excluded(hi.clone())))
            .take(TIDY_CHUNK)
        {
            keys.push(item?.0);
        }
        let Some(last) = keys.last() else {
            return Ok(removed);
        };
        from = Bound::Excluded(last.to_vec());
        for k in &keys {
            tree.remove(k)?;
        }
        removed += keys.len();
    }
}
