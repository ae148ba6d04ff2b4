//! The hub's thread and its inbox: apply hands each batch's events to the [`Inbox`] (a
//! short lock, never a wait) and the thread fans them out, runs the catch-up rounds that
//! read history for the unsynced group, sends progress notifications, and notices
//! revisions it was never handed (an inbox over its bound, a snapshot installed).

use super::hub::Hub;
use super::{EventHistory, WatchConfig};
use crate::error::Error;
use crate::events::{EventSink, RevisionEvents};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often catch-up runs while watchers wait in the unsynced group and the last round
/// moved nobody (etcd's sync loop waits 100 ms too).
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(100);
/// How often the thread compares the store's revision with the fanned-out one.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    batches: Vec<Vec<RevisionEvents>>,
    /// Bytes of keys and values in `batches`.
    bytes: usize,
    /// The newest revision dropped because the queue was over its bound (0: none).
    lost_upto: i64,
    stop: bool,
}

/// Batches of events on their way from apply to the hub thread, bounded in bytes: past the
/// bound a batch is dropped and only its last revision is remembered, so the hub sends its
/// synced watchers to catch up from history instead (nothing is lost, apply never waits).
pub(crate) struct Inbox {
    q: Mutex<Queue>,
    cv: Condvar,
    max_bytes: usize,
}

impl Inbox {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Inbox {
            q: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            max_bytes,
        }
    }

    /// Queues one applied batch (see [`EventSink::publish`]).
    pub(crate) fn push(&self, batch: Vec<RevisionEvents>) {
        let Some(last) = batch.last().map(|r| r.revision) else {
            return;
        };
        let bytes: usize = batch
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| super::outbox::event_bytes(e, true))
            .sum();
        let mut q = self.q.lock();
        if q.stop {
            return;
        }
        if !q.batches.is_empty() && q.bytes + bytes > self.max_bytes {
            q.lost_upto = q.lost_upto.max(last);
        } else {
            q.bytes += bytes;
            q.batches.push(batch);
        }
        drop(q);
        self.cv.notify_one();
    }

    /// Waits up to `timeout` for batches; returns them with the newest dropped revision, or
    /// `None` once stopped.
    fn take(&self, timeout: Duration) -> Option<(Vec<Vec<RevisionEvents>>, i64)> {
        let mut q = self.q.lock();
        if q.batches.is_empty() && !q.stop && !timeout.is_zero() {
            self.cv.wait_for(&mut q, timeout);
        }
        if q.stop {
            return None;
        }
        q.bytes = 0;
        Some((std::mem::take(&mut q.batches), q.lost_upto))
    }

    /// Wakes the thread (to stop, or to look at its state again).
    pub(crate) fn stop(&self) {
        self.q.lock().stop = true;
        self.cv.notify_one();
    }
}

/// What the hub thread and the streams share.
pub(crate) struct Shared {
    pub(crate) hub: Mutex<Hub>,
    pub(crate) inbox: Inbox,
}

/// The [`EventSink`] a store calls: a handle on the hub's inbox.
pub(crate) struct Sink(pub(crate) Arc<Shared>);

impl EventSink for Sink {
    fn publish(&self, revisions: Vec<RevisionEvents>) {
        self.0.inbox.push(revisions);
    }
}

/// One catch-up round: plan under the lock, read history without it, feed under it.
/// Returns how many watchers moved forward.
fn catch_up_round(shared: &Shared, history: &dyn EventHistory, config: &WatchConfig) -> usize {
    let Some(plan) = shared.hub.lock().plan(config.catch_up_watchers) else {
        return 0;
    };
    let filter = |key: &[u8]| plan.index.any_match(key);
    match history.read_events(
        plan.from,
        plan.to,
        &filter,
        plan.prev_kv,
        config.catch_up_read_bytes,
    ) {
        Ok(chunk) => shared
            .hub
            .lock()
            .catch_up(&plan, chunk.revisions, chunk.next),
        Err(Error::Compacted) => {
            let compact = history.revisions().compact;
            shared.hub.lock().compacted(&plan, compact)
        }
        Err(e) => {
            tracing::warn!(%e, from = plan.from, to = plan.to, "watch catch-up cannot read history");
            0
        }
    }
}

/// The hub thread's loop; returns when the inbox is stopped.
pub(crate) fn run(shared: Arc<Shared>, history: Arc<dyn EventHistory>, config: WatchConfig) {
    let now = Instant::now();
    let mut next_progress = now + config.progress_interval;
    let mut next_poll = now + POLL_INTERVAL;
    let mut next_catch_up = now;
    let mut hurry = false;
    // (fanned-out revision, store revision) at the last poll that found the store ahead.
    let mut suspect: Option<(i64, i64)> = None;
    loop {
        let now = Instant::now();
        let unsynced = shared.hub.lock().has_unsynced();
        let mut wake = next_progress.min(next_poll);
        if unsynced {
            wake = wake.min(if hurry { now } else { next_catch_up });
        }
        let Some((batches, lost)) = shared.inbox.take(wake.saturating_duration_since(now)) else {
            return;
        };
        if !batches.is_empty() || lost > 0 {
            let mut hub = shared.hub.lock();
            for batch in batches {
                for rev in batch {
                    hub.dispatch(Arc::new(rev));
                }
            }
            hub.gap(lost);
        }
        let now = Instant::now();
        if now >= next_poll {
            next_poll = now + POLL_INTERVAL;
            let store = history.revisions().current;
            let mut hub = shared.hub.lock();
            let dispatched = hub.dispatched();
            match suspect {
                // Behind for a whole poll interval with nothing handed over: the revisions
                // came some other way (a snapshot). Catch up from history.
                Some((d, seen)) if d == dispatched && store > dispatched => {
                    tracing::debug!(
                        dispatched,
                        store = seen,
                        "watch hub behind the store; catching up from history"
                    );
                    hub.gap(seen);
                    suspect = None;
                }
                _ => suspect = (store > dispatched).then_some((dispatched, store)),
            }
        }
        if (hurry || now >= next_catch_up) && shared.hub.lock().has_unsynced() {
            hurry = catch_up_round(&shared, history.as_ref(), &config) > 0;
            next_catch_up = Instant::now() + CATCH_UP_INTERVAL;
        } else if !unsynced {
            hurry = false;
        }
        if now >= next_progress {
            shared.hub.lock().progress_tick();
            next_progress = now + config.progress_interval;
        }
    }
}
