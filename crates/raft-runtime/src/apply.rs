//! The apply worker: a dedicated thread that applies committed entries in order, answers
//! the clients whose proposals they carry, restores snapshots, serves local reads and
//! captures snapshots, reporting progress to the event loop.
//!
//! The state machine sits behind a mutex it shares with the event loop: when this thread
//! has no job of the loop's queued, the loop may apply a small batch that a local client
//! waits for itself ([`apply_entries`]), saving the hand-off to this thread. The count of
//! queued jobs ([`Queued`]) keeps every entry, restore and snapshot capture in log order
//! whichever thread runs it.

use crate::error::{BoxError, Error, Result};
use crate::state_machine::{Committed, Payload, StateMachine};
use metrics::{Histogram, counter, histogram};
use raft_core::SnapshotMeta;
use raft_metrics::runtime as m;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// The state machine and what was last applied to it, shared by the apply thread and the
/// event loop.
pub(crate) type SharedSm<SM> = Arc<Mutex<Held<SM>>>;

/// The state machine with the log position of its state, so that a snapshot is described
/// by exactly the entries it holds.
pub(crate) struct Held<SM> {
    pub sm: SM,
    /// The index and term of the last entry applied (or snapshot restored) in this run;
    /// `None` until then.
    last: Option<(u64, u64)>,
    /// The last membership change applied (or restored) in this run, with its index.
    conf: Option<(u64, raft_core::Membership)>,
}

impl<SM> Held<SM> {
    pub(crate) fn new(sm: SM) -> Self {
        Self {
            sm,
            last: None,
            conf: None,
        }
    }
}

/// Locks the state machine (a panic while it was held does not make it unusable: the
/// node stops through the failure that panic caused).
pub(crate) fn lock<SM>(sm: &Mutex<Held<SM>>) -> MutexGuard<'_, Held<SM>> {
    sm.lock().unwrap_or_else(|e| e.into_inner())
}

/// The description of a snapshot of the state as it is now. The loop asked for one at
/// `asked` (its applied index when it asked); entries handed before the request may have
/// been applied since, so the snapshot is of the index actually applied, with that entry's
/// term and the membership as of it. An error when the state machine is past what this
/// run applied (it cannot be described).
fn describe_now<SM: StateMachine>(
    held: &Held<SM>,
    asked: SnapshotMeta,
) -> std::result::Result<SnapshotMeta, BoxError> {
    let at = held.sm.applied_index();
    if at == asked.index {
        return Ok(asked);
    }
    match held.last {
        Some((index, term)) if index == at && at > asked.index => {
            let membership = match &held.conf {
                Some((i, m)) if *i > asked.index => m.clone(),
                _ => asked.membership,
            };
            Ok(SnapshotMeta {
                index,
                term,
                membership,
            })
        }
        _ => Err(format!(
            "a snapshot was asked at index {} but the state machine is at {at}",
            asked.index
        )
        .into()),
    }
}

/// How many jobs the event loop sent that the apply thread has not finished (reads sent
/// by handles are not counted). Zero means the loop may apply entries itself.
pub(crate) type Queued = Arc<AtomicU64>;

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
    /// Capture a snapshot of the state as applied now, described by `meta` when nothing
    /// was applied since the loop asked (see [`describe_now`]).
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
    sm: SharedSm<SM>,
    jobs: Receiver<ApplyJob<SM>>,
    events: mpsc::UnboundedSender<Event>,
    stopping: Arc<AtomicBool>,
    queued: Queued,
) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("raft-apply-{id}"))
        .spawn(move || {
            let span = tracing::info_span!("raft_apply", node_id = id);
            let _g = span.enter();
            run(&sm, jobs, events, stopping, &queued);
        })
        .map_err(|e| Error::StateMachine(Box::new(e)))?;
    Ok(())
}

fn run<SM: StateMachine>(
    sm: &Mutex<Held<SM>>,
    jobs: Receiver<ApplyJob<SM>>,
    events: mpsc::UnboundedSender<Event>,
    stopping: Arc<AtomicBool>,
    queued: &AtomicU64,
) {
    let metrics = ApplyMetrics::new();
    let mut next: Option<ApplyJob<SM>> = None;
    // The loop's jobs finished since `queued` was last brought down.
    let mut finished = 0u64;
    loop {
        if finished > 0 {
            queued.fetch_sub(finished, Ordering::Release);
            finished = 0;
        }
        let job = match next.take() {
            Some(j) => j,
            None => match jobs.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        if !matches!(job, ApplyJob::Read(_)) {
            finished += 1;
        }
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
                        Ok(job) => {
                            next = gather(&mut batch, &mut waiters, job);
                            finished += u64::from(next.is_none());
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                let outcome = apply_entries(&mut *lock(sm), batch, waiters, &metrics);
                // Done before the loop hears of it, so that it may apply the next batch
                // itself as soon as it does.
                queued.fetch_sub(std::mem::take(&mut finished), Ordering::Release);
                match outcome {
                    Ok(None) => {}
                    Ok(Some(index)) => {
                        let _ = events.send(Event::Applied { index });
                    }
                    Err(msg) => {
                        let _ = events.send(Event::ApplyFailed(msg));
                        return;
                    }
                }
            }
            ApplyJob::Restore { meta, number } => {
                let result = {
                    let mut held = lock(sm);
                    let result = held.sm.restore(&meta);
                    if result.is_ok() {
                        held.last = Some((meta.index, meta.term));
                        held.conf = Some((meta.index, meta.membership.clone()));
                    }
                    result
                };
                if let Err(e) = &result {
                    tracing::error!(index = meta.index, error = %e, "snapshot restore failed");
                }
                queued.fetch_sub(std::mem::take(&mut finished), Ordering::Release);
                let _ = events.send(Event::Restored {
                    number,
                    index: meta.index,
                    result,
                });
            }
            ApplyJob::Read(f) => f(&lock(sm).sm),
            ApplyJob::Snapshot { meta } => {
                let (meta, build) = capture(&mut lock(sm), meta);
                match build {
                    Ok(build) => {
                        let sent = events.clone();
                        let done = meta.clone();
                        let spawned = std::thread::Builder::new()
                            .name("raft-snapshot".into())
                            .spawn(move || {
                                let result = build();
                                let _ = sent.send(Event::SnapshotBuilt { meta: done, result });
                            });
                        if let Err(e) = spawned {
                            tracing::warn!(error = %e, "cannot start the snapshot thread");
                            let _ = events.send(Event::SnapshotBuilt {
                                meta,
                                result: Err(Box::new(e)),
                            });
                        }
                    }
                    Err(e) => {
                        let _ = events.send(Event::SnapshotBuilt {
                            meta,
                            result: Err(e),
                        });
                    }
                }
            }
            ApplyJob::Stop(done) => {
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Describes the state as it is now and has the state machine capture it.
fn capture<SM: StateMachine>(
    held: &mut Held<SM>,
    asked: SnapshotMeta,
) -> (
    SnapshotMeta,
    std::result::Result<crate::SnapshotBuilder, BoxError>,
) {
    match describe_now(held, asked.clone()) {
        Ok(meta) => {
            let build = held.sm.snapshot(&meta);
            (meta, build)
        }
        Err(e) => (asked, Err(e)),
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

/// The appliers' metric handles, registered once (no registry lookup per entry).
pub(crate) struct ApplyMetrics {
    batch_size: Histogram,
    propose_to_apply: Histogram,
}

impl ApplyMetrics {
    pub(crate) fn new() -> Self {
        Self {
            batch_size: histogram!(m::APPLY_BATCH),
            propose_to_apply: histogram!(m::PROPOSE_TO_APPLY_SECONDS),
        }
    }
}

/// Applies one batch and answers its waiters (as soon as the state machine hands over the
/// responses, possibly before its write is done). Returns the index applied up to (`None`
/// for an empty batch), or why the state machine failed (its waiters are failed with it;
/// the node must stop).
pub(crate) fn apply_entries<SM: StateMachine>(
    held: &mut Held<SM>,
    batch: Vec<Committed>,
    waiters: Vec<(usize, Waiter<SM::Response>)>,
    metrics: &ApplyMetrics,
) -> std::result::Result<Option<u64>, String> {
    let Some((last, last_term)) = batch.last().map(|e| (e.index, e.term)) else {
        return Ok(None);
    };
    let conf = batch.iter().rev().find_map(|e| match &e.payload {
        Payload::ConfChange {
            membership: Some(m),
            ..
        } => Some((e.index, m.clone())),
        _ => None,
    });
    let sm = &mut held.sm;
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
            held.last = Some((last, last_term));
            if conf.is_some() {
                held.conf = conf;
            }
            Ok(Some(last))
        }
        Some(msg) => {
            fail(waiters.unwrap_or_default(), &msg);
            Err(msg)
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

fn fail<R>(waiters: Vec<(usize, Waiter<R>)>, msg: &str) {
    tracing::error!(error = %msg, "state machine failed; stopping the node");
    counter!(m::PROPOSALS_FAILED, "reason" => "fatal").increment(waiters.len() as u64);
    for (_, w) in waiters {
        let _ = w.tx.send(Err(Error::Fatal(msg.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Membership;

    /// A state machine that only counts.
    struct Counter(u64);
    impl StateMachine for Counter {
        type Response = ();
        fn apply(&mut self, batch: &[Committed]) -> std::result::Result<Vec<()>, BoxError> {
            self.0 = batch.last().map_or(self.0, |e| e.index);
            Ok(vec![(); batch.len()])
        }
        fn applied_index(&self) -> u64 {
            self.0
        }
    }

    fn meta(index: u64, term: u64, voters: &[u64]) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            membership: Membership::with_voters(voters.iter().copied()),
        }
    }

    fn entry(index: u64, term: u64, payload: Payload) -> Committed {
        Committed {
            index,
            term,
            payload,
        }
    }

    #[test]
    fn a_snapshot_is_described_by_the_state_it_captures() {
        let m = ApplyMetrics::new();
        let mut held = Held::new(Counter(0));
        apply_entries(&mut held, vec![entry(1, 1, Payload::Empty)], vec![], &m).unwrap();
        // Asked at what is applied: described as asked.
        assert_eq!(
            describe_now(&held, meta(1, 1, &[1])).unwrap(),
            meta(1, 1, &[1])
        );
        // Entries applied after the request (a change among them): the state's own index,
        // term and membership.
        let change = raft_core::ConfChange {
            transition: raft_core::ConfChangeTransition::Auto,
            ops: vec![raft_core::ConfChangeOp::AddVoter(2)],
        };
        let batch = vec![
            entry(
                2,
                2,
                Payload::ConfChange {
                    change,
                    membership: Some(Membership::with_voters([1, 2])),
                },
            ),
            entry(3, 2, Payload::Empty),
        ];
        apply_entries(&mut held, batch, vec![], &m).unwrap();
        assert_eq!(
            describe_now(&held, meta(1, 1, &[1])).unwrap(),
            meta(3, 2, &[1, 2])
        );
        // The change is at or below the asked index: the asked membership stands.
        assert_eq!(
            describe_now(&held, meta(2, 2, &[1, 2])).unwrap(),
            meta(3, 2, &[1, 2])
        );
        // A state this run did not apply cannot be described.
        let other = Held::new(Counter(9));
        assert!(describe_now(&other, meta(5, 1, &[1])).is_err());
    }
}
