//! Physical compaction: a background thread removes the history that no read can reach any
//! more once the compact revision moved, paced, in small steps that never hold a lock apply
//! waits for longer than one sled batch.
//!
//! The thread walks the history space in revision order from its cursor up to the compact
//! revision (or to the smallest pinned revision, see `Shared::pins`, if lower: a running
//! hash needs the history at its compact revision intact, a running snapshot capture the
//! history exactly as it was, so it pins where the cursor stands). For each event at
//! `r <= C`:
//! - the event it superseded (the key's previous write, `prev`) is removed: a later write at
//!   or below `C` hides it from every read at or above `C`;
//! - a tombstone is removed itself, and so is the key's current entry when that is still
//!   this tombstone (an absent key reads the same as one deleted at or below `C`).
//!
//! Every removed event takes its revision index entry (`crate::revindex`) with it, in the
//! same batch.
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
use crate::revindex;
use crate::state::{CompactionSignal, Shared, encode_cursor};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// History events examined per step. A step's removals are one sled batch, and sled
/// applies a batch under its process-wide write lock, which every read and write of the
/// store waits for. Measured with `examples/compaction_stall` (300k revisions, a writer at
/// 2,000 puts/s beside it): 1,000 events per step held writes up to 26 ms (apply p99
/// 9.6 ms), 100 per step p99 3.2 ms. But ten times as many small batches leave sled's files
/// with much less free space to reuse: in `defragment_after_deletes_and_compaction_flushes_
/// and_reports`, writing the compacted data again grew the file by 50-100% with 100 or 250
/// per step against 1-30% with 1,000. Space wins here; the writes get their share of the
/// store through the pause after each step (`yield_to_writes`).
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
            let started = std::time::Instant::now();
            let applied = shared.state.read().applied_index;
            match step(&shared) {
                Ok((Step::More, bytes)) => {
                    let writing = shared.state.read().applied_index != applied;
                    drop(shared);
                    if writing {
                        // Writes go on: give them as much time as the step took (see
                        // `yield_to_writes`).
                        std::thread::sleep(yield_to_writes(started.elapsed()));
                    }
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

/// How long the compactor pauses after a step that took `step` while the store applied
/// writes: as long again, so that it holds sled's write lock (and a CPU) at most half the
/// time while writes go on, and runs flat out while none do. Measured with `raft-bench
/// history` (3 members on this 2-core machine, 300k revisions compacted beside a 16-caller
/// put load, 1,000 events per step): without the pause puts fell to 31% of their rate during
/// the compaction, with it to 50%; their p99 stays near 70 ms either way (that is the size
/// of a step, see [`STEP`]), and the compaction took 21 s instead of 11.
fn yield_to_writes(step: std::time::Duration) -> std::time::Duration {
    step.min(std::time::Duration::from_millis(100))
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
            doomed.push(history_key(p.main, p.sub).to_vec());
            doomed.push(revindex::entry_key(&key, p));
        }
        if let Current::Tombstone { at, .. } = entry {
            doomed.push(history_key(main, sub).to_vec());
            doomed.push(revindex::entry_key(&key, at));
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
        // A capture or hash that started since the plan pinned a lower revision: plan again.
        let pinned = shared.pins.lock().keys().next().copied();
        if let (Some(p), Some(l)) = (pinned, last)
            && l.main > p
        {
            return Ok((Step::More, 0));
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
    tracing::trace!(events = seen, removed = doomed.len() / 2, "compaction step");
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

#[cfg(test)]
mod tests {
    use crate::layout::{DATA, HISTORY, meta, meta_key};
    use crate::pb::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
    };
    use crate::{CaptureKind, Command, KvStore, Op};
    use std::time::Duration;

    fn count(store: &KvStore, space: u8) -> usize {
        store.shared.tree.scan_prefix([space]).count()
    }

    struct Writer<'a>(&'a KvStore, u64);

    impl Writer<'_> {
        fn op(&mut self, op: Op) {
            self.1 += 1;
            self.0.apply(self.1, 1, &Command::new(0, op)).unwrap();
        }
        fn put(&mut self, k: &str, v: &str) {
            self.op(Op::Put(PutRequest {
                key: k.as_bytes().to_vec().into(),
                value: v.as_bytes().to_vec().into(),
                ..Default::default()
            }));
        }
        fn del(&mut self, k: &str) {
            self.op(Op::DeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec().into(),
                ..Default::default()
            }));
        }
        fn compact(&mut self, revision: i64) {
            self.op(Op::Compact(CompactionRequest {
                revision,
                physical: true,
            }));
        }
    }

    /// Every key's versions at revisions `from..=to`.
    fn reads(store: &KvStore, from: i64, to: i64) -> Vec<crate::pb::etcdserverpb::RangeResponse> {
        (from..=to)
            .map(|revision| {
                store
                    .range(&RangeRequest {
                        key: b"\0".to_vec().into(),
                        range_end: b"\0".to_vec().into(),
                        revision,
                        ..Default::default()
                    })
                    .unwrap()
            })
            .collect()
    }

    /// What `defragment` does after most keys were deleted and compacted: the data is
    /// durable and the reported sizes are the store's; sled's file does not shrink (the
    /// freed space is reused inside it), which `KvStore::defragment` documents.
    #[test]
    fn defragment_after_deletes_and_compaction_flushes_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::open(dir.path()).unwrap();
        let mut w = Writer(&store, 0);
        let value = "v".repeat(4096);
        for i in 0..2000 {
            w.put(&format!("k{i:05}"), &value);
        }
        w.put("kept", "small");
        for i in 0..2000 {
            w.del(&format!("k{i:05}"));
        }
        let compact = store.revision();
        w.compact(compact);
        assert!(store.wait_compacted_blocking(compact, Duration::from_secs(30)));
        let full = store.db_size().unwrap();
        let d = store.defragment().unwrap();
        assert_eq!(d.size_after, store.db_size().unwrap());
        assert!(d.size_before > 0 && d.size_after > 0);
        // What does shrink it: a member rebuilt from a snapshot writes only the records.
        let rebuilt_dir = tempfile::tempdir().unwrap();
        let rebuilt = KvStore::open(rebuilt_dir.path()).unwrap();
        let cap = store.snapshot_full().unwrap();
        rebuilt
            .restore_full(cap.info.index, 1, cap.records)
            .unwrap();
        let small = rebuilt.db_size().unwrap();
        assert!(small < full / 4, "rebuilt {small}, in place {full}");
        // Measured here (not a promise): the file keeps its size; writing the same amount
        // again reuses the freed space instead of doubling the file.
        for i in 0..2000 {
            w.put(&format!("n{i:05}"), &value);
        }
        w.del("n");
        store.flush().unwrap();
        let again = store.db_size().unwrap();
        assert!(again < 2 * full, "freed space reused: {full} then {again}");
        drop(store);
        // Durable: a reopened store has what was applied.
        let store = KvStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(b"kept").unwrap().unwrap().value.as_ref(),
            b"small"
        );
        assert!(store.get(b"k00001").unwrap().is_none());
        assert!(store.get(b"n00001").unwrap().is_some());
    }

    /// Physical compaction leaves one event per key that existed at the compact revision
    /// (and removes deleted keys' tombstones, current entries included); every read at or
    /// above the compact revision answers as before; it survives a restart.
    #[test]
    fn removes_what_no_read_reaches_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (before, hash, compact) = {
            let store = KvStore::open(dir.path()).unwrap();
            let mut w = Writer(&store, 0);
            for round in 0..50 {
                for k in ["a", "b", "c"] {
                    w.put(k, &format!("{k}{round}"));
                }
            }
            w.put("gone", "x");
            w.del("gone");
            let compact = store.revision();
            w.put("a", "after");
            w.del("b");
            let rev = store.revision();
            assert_eq!(count(&store, HISTORY), 150 + 2 + 2);
            let before = reads(&store, compact, rev);
            w.compact(compact);
            assert!(store.wait_compacted_blocking(compact, Duration::from_secs(10)));
            // a, b, c at the compact revision, and the two writes after it.
            assert_eq!(count(&store, HISTORY), 3 + 2);
            assert!(
                store
                    .shared
                    .tree
                    .get(crate::layout::prefixed(DATA, b"gone"))
                    .unwrap()
                    .is_none()
            );
            assert_eq!(reads(&store, compact, rev), before);
            (before, store.hash_kv(0).unwrap(), compact)
        };
        let store = KvStore::open(dir.path()).unwrap();
        assert_eq!(store.compact_revision(), compact);
        assert_eq!(store.physically_compacted(), compact);
        assert_eq!(count(&store, HISTORY), 5);
        assert_eq!(reads(&store, compact, store.revision()), before);
        assert_eq!(store.hash_kv(0).unwrap(), hash);
    }

    /// With writes going on all the time, compaction yields to them after every step and
    /// still reaches its target; the writer is never held up for long.
    #[test]
    fn compaction_yields_to_writes_and_still_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::open(dir.path()).unwrap();
        let mut w = Writer(&store, 0);
        for i in 0..5 * super::STEP {
            w.put(&format!("k{}", i % 10), "v");
        }
        let compact = store.revision();
        w.compact(compact);
        let mut slowest = Duration::ZERO;
        let mut writes = 0;
        while store.physically_compacted() < compact {
            let t = std::time::Instant::now();
            w.put(&format!("n{}", writes % 10), "v");
            slowest = slowest.max(t.elapsed());
            writes += 1;
            assert!(
                writes < 1_000_000,
                "compaction did not finish beside the writes"
            );
        }
        assert!(writes > 0);
        // A step holds the store for one small batch, not seconds.
        assert!(
            slowest < Duration::from_secs(2),
            "a write waited {slowest:?}"
        );
        assert_eq!(count(&store, HISTORY), 10 + writes);
    }

    /// A store closed before physical compaction finished (its cursor behind the compact
    /// revision, as after a crash) finishes it when opened, to the same result.
    #[test]
    fn an_unfinished_compaction_finishes_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (before, compact) = {
            let store = KvStore::open(dir.path()).unwrap();
            let mut w = Writer(&store, 0);
            for round in 0..40 {
                w.put(&format!("k{}", round % 4), "v");
            }
            let compact = store.revision() - 3;
            w.compact(compact);
            assert!(store.wait_compacted_blocking(compact, Duration::from_secs(10)));
            let before = reads(&store, compact, store.revision());
            // Back to where it started: the work is done again, removals find nothing.
            store
                .shared
                .tree
                .insert(
                    meta_key(meta::COMPACT_CURSOR),
                    crate::state::encode_cursor(Default::default()),
                )
                .unwrap();
            store.flush().unwrap();
            (before, compact)
        };
        let store = KvStore::open(dir.path()).unwrap();
        assert!(store.wait_compacted_blocking(compact, Duration::from_secs(10)));
        assert_eq!(reads(&store, compact, store.revision()), before);
        assert_eq!(count(&store, HISTORY), 4 + 3);
    }

    /// A running capture holds physical compaction where it stands; once it ends,
    /// compaction goes on.
    #[test]
    fn a_capture_holds_physical_compaction_back() {
        let store = KvStore::open_temporary().unwrap();
        let mut w = Writer(&store, 0);
        for _ in 0..20 {
            w.put("k", "v");
        }
        let cap = store.capture(CaptureKind::Full).unwrap();
        w.compact(10);
        assert!(!store.wait_compacted_blocking(10, Duration::from_millis(200)));
        assert_eq!(count(&store, HISTORY), 20, "nothing removed under the pin");
        let records: Vec<_> = cap.records.collect::<crate::Result<_>>().unwrap();
        assert_eq!(records.iter().filter(|r| r.key()[0] == HISTORY).count(), 20);
        assert!(store.wait_compacted_blocking(10, Duration::from_secs(10)));
        assert_eq!(count(&store, HISTORY), 1 + 11);
    }

    /// Copies a directory tree (a crash image of a flushed sled database).
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dst);
            } else {
                std::fs::copy(e.path(), dst).unwrap();
            }
        }
    }

    /// A crash after `Compact` was applied and before physical compaction ran: the image
    /// opens with the compact revision in force (reads below it refused, at or above it
    /// answered as before) and finishes the physical part by itself, to the same state the
    /// running store reaches.
    #[test]
    fn a_crash_before_physical_compaction_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (live, image) = (dir.path().join("live"), dir.path().join("image"));
        let store = KvStore::open(&live).unwrap();
        let mut w = Writer(&store, 0);
        for round in 0..30 {
            w.put(&format!("k{}", round % 5), &round.to_string());
            if round % 7 == 0 {
                w.del(&format!("k{}", (round + 1) % 5));
            }
        }
        let compact = store.revision() - 4;
        let before = reads(&store, compact, store.revision());
        // A capture holds physical compaction back while the image is taken.
        let cap = store.capture(CaptureKind::Full).unwrap();
        w.compact(compact);
        store.flush().unwrap();
        let events = count(&store, HISTORY);
        copy_dir(&live, &image);
        drop(cap);
        assert!(store.wait_compacted_blocking(compact, Duration::from_secs(10)));
        let after = count(&store, HISTORY);
        assert!(after < events);
        let crashed = KvStore::open(&image).unwrap();
        assert_eq!(crashed.compact_revision(), compact);
        assert!(matches!(
            crashed.range(&RangeRequest {
                key: b"k0".to_vec().into(),
                revision: compact - 1,
                ..Default::default()
            }),
            Err(crate::Error::Compacted)
        ));
        assert!(crashed.wait_compacted_blocking(compact, Duration::from_secs(10)));
        assert_eq!(reads(&crashed, compact, crashed.revision()), before);
        assert_eq!(count(&crashed, HISTORY), after);
        assert_eq!(crashed.hash_kv(0).unwrap(), store.hash_kv(0).unwrap());
    }

    /// A compaction applied while a capture reads waits for it: the capture's later chunks
    /// still hold the history at its index, so the snapshot reads like the store did then.
    #[test]
    fn a_capture_reads_the_history_of_its_index_while_compaction_waits() {
        let store = KvStore::open_temporary().unwrap();
        let mut w = Writer(&store, 0);
        for round in 0..1200 {
            w.put(&format!("k{}", round % 7), &round.to_string());
        }
        let rev = store.revision();
        let then = reads(&store, 1, rev);
        let cap = store.capture(CaptureKind::Full).unwrap();
        let index = cap.info.index;
        let mut records = cap.records;
        // The first chunk of history is read; the rest is not yet.
        let mut got = vec![records.next().unwrap().unwrap()];
        w.compact(rev - 10);
        assert!(!store.wait_compacted_blocking(rev - 10, Duration::from_millis(300)));
        got.extend(records.by_ref().map(|r| r.unwrap()));
        drop(records);
        let copy = KvStore::open_temporary().unwrap();
        copy.restore_full(index, 1, got.into_iter().map(Ok))
            .unwrap();
        assert_eq!(reads(&copy, 1, rev), then);
        // Once the capture ended, compaction went on.
        assert!(store.wait_compacted_blocking(rev - 10, Duration::from_secs(10)));
    }
}
