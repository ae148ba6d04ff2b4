//! The apply worker: a dedicated thread that owns the state machine, applies committed
//! entries in order, answers the clients whose proposals they carry, restores snapshots,
//! serves local reads and captures snapshots, reporting progress to the event loop.

use crate::error::{BoxError, Error, Result};
use crate::state_machine::{Committed, Payload, StateMachine};
use metrics::{Histogram, counter, histogram};
use raft_core::SnapshotMeta;
use raft_metrics::runtime as m;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The most entries a lingering batch gathers before it is applied anyway.
const LINGER_MAX_ENTRIES: usize = 1024;

/// A client waiting for its proposal's result.
pub(crate) struct Waiter<R> {
    pub tx: oneshot::Sender<Result<R>>,
    /// When the proposal reached the event loop.
    pub since: Instant,
}

/// A read run against the state machine on the apply thread.
pub(crate) type ReadFn<SM> = Box<dyn FnOnce(&SM) + Send + 'static>;

/// Work for the apply thread, carried out in the order sent.
pub(crate) enum ApplyJob<SM: StateMachine> {
    /// Apply these consecutive entries; `waiters` pairs positions in `batch` with clients.
    Entries {
        batch: Vec<Committed>,
        waiters: Vec<(usize, Waiter<SM::Response>)>,
    },
    /// Replace the state by a snapshot (part of persisting `Ready` number `number`).
    Restore { meta: SnapshotMeta, number: u64 },
    /// Run a read against the current state.
    Read(ReadFn<SM>),
    /// Stop waiting for more entries: something waits for those already here (a
    /// linearizable read). Nothing else to do.
    Hurry,
    /// Capture a snapshot at the applied index described by `meta`.
    Snapshot { meta: SnapshotMeta },
    /// Stop after the jobs before this one.
    Stop(oneshot::Sender<()>),
}

/// What the workers report back to the event loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// The log write of `Ready` number `number` completed.
    Persisted {
        number: u64,
        result: std::result::Result<(), BoxError>,
    },
    /// The snapshot of `Ready` number `number` was restored into the state machine.
    Restored {
        number: u64,
        index: u64,
        result: std::result::Result<(), BoxError>,
    },
    /// Every entry up to `index` is applied.
    Applied { index: u64 },
    /// The state machine failed; the node must stop.
    ApplyFailed(String),
    /// A snapshot was built (or failed to be).
    SnapshotBuilt {
        meta: SnapshotMeta,
        result: std::result::Result<(), BoxError>,
    },
    /// The log was compacted up to `index` (or failed to be).
    Compacted {
        meta: SnapshotMeta,
        result: std::result::Result<(), BoxError>,
    },
    /// A snapshot transfer to `to` ended.
    SnapshotSent { to: u64, ok: bool },
}

/// Starts the apply thread of node `id`.
pub(crate) fn spawn<SM: StateMachine>(
    id: u64,
    sm: SM,
    jobs: Receiver<ApplyJob<SM>>,
    events: mpsc::UnboundedSender<Event>,
    stopping: Arc<AtomicBool>,
    linger: Duration,
) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("raft-apply-{id}"))
        .spawn(move || {
            let span = tracing::info_span!("raft_apply", node_id = id);
            let _g = span.enter();
            run(sm, jobs, events, stopping, linger);
        })
        .map_err(|e| Error::StateMachine(Box::new(e)))?;
    Ok(())
}

fn run<SM: StateMachine>(
    mut sm: SM,
    jobs: Receiver<ApplyJob<SM>>,
    events: mpsc::UnboundedSender<Event>,
    stopping: Arc<AtomicBool>,
    linger: Duration,
) {
    let metrics = ApplyMetrics {
        batch_size: histogram!(m::APPLY_BATCH),
        propose_to_apply: histogram!(m::PROPOSE_TO_APPLY_SECONDS),
    };
    let mut next: Option<ApplyJob<SM>> = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match jobs.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        if stopping.load(Ordering::Acquire) {
            // Shutting down: drop what is queued (dropped waiters see `Shutdown`).
            if let ApplyJob::Stop(done) = job {
                let _ = done.send(());
                return;
            }
            continue;
        }
        match job {
            ApplyJob::Entries {
                mut batch,
                mut waiters,
            } => {
                // Merge the entries queued behind this job into one state-machine call.
                while batch.len() < 8192 && next.is_none() {
                    match jobs.try_recv() {
                        Ok(job) => next = gather(&mut batch, &mut waiters, job),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                // Nobody here waits for these entries: wait a little for more, so one
                // state-machine write covers them (see `RuntimeConfig::apply_linger`).
                let deadline = Instant::now() + linger;
                let mut checked = 0;
                while next.is_none() && lingers(&batch, &mut checked, &waiters, linger) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match jobs.recv_timeout(left) {
                        Ok(job) => next = gather(&mut batch, &mut waiters, job),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
                if !apply_batch(&mut sm, batch, waiters, &events, &metrics) {
                    return;
                }
            }
            ApplyJob::Restore { meta, number } => {
                let result = sm.restore(&meta);
                if let Err(e) = &result {
                    tracing::error!(index = meta.index, error = %e, "snapshot restore failed");
                }
                let _ = events.send(Event::Restored {
                    number,
                    index: meta.index,
                    result,
                });
            }
            ApplyJob::Read(f) => f(&sm),
            ApplyJob::Hurry => {}
            ApplyJob::Snapshot { meta } => match sm.snapshot(&meta) {
                Ok(build) => {
                    let events = events.clone();
                    let spawned = std::thread::Builder::new()
                        .name("raft-snapshot".into())
                        .spawn(move || {
                            let result = build();
                            let _ = events.send(Event::SnapshotBuilt { meta, result });
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "cannot start the snapshot thread");
                    }
                }
                Err(e) => {
                    let _ = events.send(Event::SnapshotBuilt {
                        meta,
                        result: Err(e),
                    });
                }
            },
            ApplyJob::Stop(done) => {
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Adds `job` to the batch being gathered when it carries entries (with their waiters);
/// any other job is returned, to run after the batch.
fn gather<SM: StateMachine>(
    batch: &mut Vec<Committed>,
    waiters: &mut Vec<(usize, Waiter<SM::Response>)>,
    job: ApplyJob<SM>,
) -> Option<ApplyJob<SM>> {
    match job {
        ApplyJob::Entries {
            batch: more,
            waiters: more_waiters,
        } => {
            let base = batch.len();
            batch.extend(more);
            waiters.extend(more_waiters.into_iter().map(|(i, w)| (base + i, w)));
            None
        }
        other => Some(other),
    }
}

/// Whether a gathered batch may wait for more entries: lingering is on, no client waits for
/// any of them, all are commands (no membership change, no new leader's empty entry), and
/// the batch is still small. The first `checked` entries are known to be commands; only
/// the ones gathered since are looked at, and `checked` moves past them.
fn lingers<R>(
    batch: &[Committed],
    checked: &mut usize,
    waiters: &[(usize, Waiter<R>)],
    linger: Duration,
) -> bool {
    if linger.is_zero() || !waiters.is_empty() || batch.len() >= LINGER_MAX_ENTRIES {
        return false;
    }
    let commands = batch[*checked..]
        .iter()
        .all(|c| matches!(c.payload, Payload::Command(_)));
    if commands {
        *checked = batch.len();
    }
    commands
}

/// The apply thread's metric handles, registered once (no registry lookup per entry).
struct ApplyMetrics {
    batch_size: Histogram,
    propose_to_apply: Histogram,
}

/// Applies one batch and answers its waiters (as soon as the state machine hands over the
/// responses, possibly before its write is done); false when the state machine failed.
fn apply_batch<SM: StateMachine>(
    sm: &mut SM,
    batch: Vec<Committed>,
    waiters: Vec<(usize, Waiter<SM::Response>)>,
    events: &mpsc::UnboundedSender<Event>,
    metrics: &ApplyMetrics,
) -> bool {
    let Some(last) = batch.last().map(|e| e.index) else {
        return true;
    };
    metrics.batch_size.record(batch.len() as f64);
    let mut waiters = Some(waiters);
    let mut problem: Option<String> = None;
    let result = sm.apply_and_answer(&batch, &mut |responses| match waiters.take() {
        None => problem = Some("the state machine answered twice".to_string()),
        Some(w) if responses.len() != batch.len() => {
            problem = Some(format!(
                "the state machine returned {} responses for {} entries",
                responses.len(),
                batch.len()
            ));
            // Not answered: `fail` below tells them.
            waiters = Some(w);
        }
        Some(w) => answer(w, responses, metrics),
    });
    let failure = match result {
        Err(e) => Some(format!("apply failed: {e}")),
        Ok(()) if problem.is_some() => problem,
        Ok(()) if waiters.is_some() => {
            Some("the state machine returned without answering".to_string())
        }
        Ok(()) => None,
    };
    match failure {
        None => {
            let _ = events.send(Event::Applied { index: last });
            true
        }
        Some(msg) => {
            fail(waiters.unwrap_or_default(), events, msg);
            false
        }
    }
}

/// Sends each waiter the response of its entry.
fn answer<R>(waiters: Vec<(usize, Waiter<R>)>, responses: Vec<R>, metrics: &ApplyMetrics) {
    let mut responses: Vec<Option<R>> = responses.into_iter().map(Some).collect();
    let now = Instant::now();
    for (i, w) in waiters {
        if let Some(r) = responses.get_mut(i).and_then(Option::take) {
            metrics
                .propose_to_apply
                .record(now.duration_since(w.since).as_secs_f64());
            let _ = w.tx.send(Ok(r));
        }
    }
}

fn fail<R>(waiters: Vec<(usize, Waiter<R>)>, events: &mpsc::UnboundedSender<Event>, msg: String) {
    tracing::error!(error = %msg, "state machine failed; stopping the node");
    counter!(m::PROPOSALS_FAILED, "reason" => "fatal").increment(waiters.len() as u64);
    for (_, w) in waiters {
        let _ = w.tx.send(Err(Error::Fatal(msg.clone())));
    }
    let _ = events.send(Event::ApplyFailed(msg));
}
