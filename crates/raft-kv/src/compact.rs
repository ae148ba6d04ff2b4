//! Physical compaction: a background thread removes the history that no read can reach any
//! more once the compact revision moved, paced, in small steps that never hold a lock apply
//! waits for longer than one sled batch.
//!
//! The thread walks the history space in revision order from its cursor up to the compact
//! revision (or to the smallest pinned revision, see `Shared::pins`, if lower: a running
//! snapshot capture or hash needs the history at its compact revision intact). For each
//! event at `r <= C`:
//! - the event it superseded (the key's previous write, `prev`) is removed: a later write at
//!   or below `C` hides it from every read at or above `C`;
//! - a tombstone is removed itself, and so is the key's current entry when that is still
//!   this tombstone (an absent key reads the same as one deleted at or below `C`).
//!
//! What stays below `C` is exactly the version of each key at `C` when the key existed then.
//! A step removes the key's current tombstone first (compare-and-swap, so a concurrent
//! write wins) and then, in one sled batch, the history events and the new cursor: a crash
//! in between is repaired by doing the step again. The thread publishes the compact
//! revision it reached once sled flushed it, for `Compact` with `physical` set.

use crate::error::{Error, Result};
use crate::history::decode_event;
use crate::layout::{DATA, history_key, history_rev, meta, meta_key, prefixed};
use crate::pace::RateLimiter;
use crate::record::{Current, Rev};
use crate::state::{CompactionSignal, Shared, encode_cursor};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// History events examined per step (etcd's default compaction batch is 1,000 too).
pub(crate) const STEP: usize = 1000;

/// Wakes the compactor, starting its thread on first use.
pub(crate) fn start(shared: &Arc<Shared>) {
    let sig = &shared.compaction;
    let mut flags = sig.flags.lock();
    flags.kicked = true;
    if !flags.started {
        let weak = Arc::downgrade(shared);
        let signal = sig.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-kv-compact".into())
            .spawn(move || run(weak, signal));
        match spawned {
            Ok(_) => flags.started = true,
            Err(err) => tracing::warn!(%err, "the compaction thread did not start"),
        }
    }
    drop(flags);
    sig.wake.notify_all();
}

/// What one step did.
enum Step {
    /// More history waits.
    More,
    /// Caught up with the target.
    Idle,
}

fn run(weak: Weak<Shared>, sig: Arc<CompactionSignal>) {
    if let Err(e) = crate::lower_thread_priority() {
        tracing::debug!(%e, "the compaction thread keeps its priority");
    }
    let mut limiter: Option<(u64, RateLimiter)> = None;
    loop {
        {
            let mut flags = sig.flags.lock();
            while !flags.kicked && !flags.stop {
                sig.wake.wait(&mut flags);
            }
            if flags.stop {
                return;
            }
            flags.kicked = false;
        }
        loop {
            // The store is held only while a step runs, so dropping it ends the thread.
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let rate = sig.max_rate.load(Ordering::Relaxed);
            if limiter.as_ref().map(|(r, _)| *r) != Some(rate) {
                limiter = RateLimiter::new(rate).map(|l| (rate, l));
            }
            match step(&shared) {
                Ok((Step::More, bytes)) => {
                    drop(shared);
                    if let Some((_, l)) = &mut limiter {
                        l.acquire(bytes);
                    }
                }
                Ok((Step::Idle, _)) => break,
                Err(err) => {
                    tracing::warn!(%err, "physical compaction step failed; retrying in 1 s");
                    drop(shared);
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if sig.flags.lock().stop {
                        return;
                    }
                }
            }
        }
    }
}

/// One step: up to [`STEP`] events. Returns what it did and the bytes it read.
fn step(shared: &Shared) -> Result<(Step, u64)> {
    let sig = &shared.compaction;
    let epoch = sig.epoch.load(Ordering::Acquire);
    let target = {
        let st = shared.state.read();
        if st.restoring {
            return Ok((Step::Idle, 0));
        }
        let pinned = shared.pins.lock().keys().next().copied();
        pinned.map_or(st.compact_revision, |p| p.min(st.compact_revision))
    };
    let cursor = *sig.cursor.lock();
    if cursor.main > target {
        publish(shared, target)?;
        return Ok((Step::Idle, 0));
    }
    let tree = &shared.tree;
    let (lo, hi) = (
        history_key(cursor.main, cursor.sub),
        history_key(target + 1, 0),
    );
    let mut doomed = Vec::new();
    let mut tombstones = Vec::new();
    let (mut seen, mut bytes, mut last) = (0, 0u64, None);
    for item in tree.range(lo..hi).take(STEP) {
        let (k, v) = item?;
        let (main, sub) = history_rev(&k).ok_or_else(|| Error::corrupt("history key"))?;
        let (key, entry) = decode_event(&v)?;
        if let Some(p) = entry.prev() {
            doomed.push(history_key(p.main, p.sub));
        }
        if let Current::Tombstone { at, .. } = entry {
            doomed.push(history_key(main, sub));
            tombstones.push((key, at));
        }
        seen += 1;
        bytes += (k.len() + v.len()) as u64;
        last = Some(Rev::new(main, sub));
    }
    let next = match last {
        Some(r) if seen == STEP => Rev::new(r.main, r.sub.saturating_add(1)),
        _ => Rev::new(target + 1, 0),
    };
    {
        // Not while a restore replaces the state (nor once one did since the plan).
        let st = shared.state.read();
        if st.restoring || sig.epoch.load(Ordering::Acquire) != epoch {
            return Ok((Step::Idle, 0));
        }
        for (key, at) in tombstones {
            let k = prefixed(DATA, &key);
            if let Some(raw) = tree.get(&k)?
                && matches!(Current::decode(&raw)?, Current::Tombstone { at: a, .. } if a == at)
            {
                // A write in between wins: then the swap fails and the key stays.
                let _ = tree.compare_and_swap(&k, Some(raw), None::<&[u8]>)?;
            }
        }
        let mut b = sled::Batch::default();
        for k in &doomed {
            b.remove(&k[..]);
        }
        b.insert(meta_key(meta::COMPACT_CURSOR), encode_cursor(next));
        tree.apply_batch(b)?;
        *sig.cursor.lock() = next;
    }
    tracing::trace!(events = seen, removed = doomed.len(), "compaction step");
    Ok((Step::More, bytes))
}

/// Makes the work up to `target` durable and tells the waiters.
fn publish(shared: &Shared, target: i64) -> Result<()> {
    if *shared.compaction.durable.borrow() >= target {
        return Ok(());
    }
    shared.tree.flush()?;
    shared.compaction.durable.send_if_modified(|d| {
        let moved = *d < target;
        *d = (*d).max(target);
        moved
    });
    tracing::debug!(compact_revision = target, "physical compaction done");
    Ok(())
}
