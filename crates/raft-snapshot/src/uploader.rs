//! The asynchronous uploader: a background thread that copies finished snapshots to an
//! object store, parents before children, retrying each with its own backoff, never
//! blocking the caller; on start it queues again whatever the store does not hold yet, and
//! it applies the retention policy to the store.

use crate::error::{Error, Result};
use crate::info::{SnapshotId, SnapshotInfo};
use crate::object_store::{ObjectStore, blob_file, blob_meta};
use crate::pitr::Catalog;
use crate::retention::{RetentionPolicy, apply_retention, plan_retention};
use crate::store::{Lease, SnapshotStore};
use parking_lot::{Condvar, Mutex};
use raft_metrics::snapshot as m;
use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Retry behaviour and retention of the [`Uploader`].
#[derive(Clone, Debug)]
pub struct UploaderOptions {
    /// Wait after a snapshot's first failed attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts of one snapshot (the backoff doubles up to this).
    pub max_backoff: Duration,
    /// Give up on a snapshot (and the deltas queued on top of it) after this many failed
    /// attempts in a row; `None` retries forever. A snapshot given up on is queued again at
    /// the next start, since the store still does not hold it.
    pub max_attempts: Option<u32>,
    /// The retention policy applied to the store while the uploader is idle; `None` keeps
    /// everything.
    pub retention: Option<RetentionPolicy>,
    /// How often, at most, the retention policy runs.
    pub retention_interval: Duration,
}

impl Default for UploaderOptions {
    fn default() -> Self {
        UploaderOptions {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
            max_attempts: None,
            retention: None,
            retention_interval: Duration::from_secs(600),
        }
    }
}

/// What the uploader has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadStatus {
    /// Snapshots waiting, including the one being uploaded or retried.
    pub queued: usize,
    /// Bytes of the snapshots waiting.
    pub backlog_bytes: u64,
    /// Snapshots waiting whose last attempt failed.
    pub failing: usize,
    /// The snapshot being uploaded now.
    pub in_progress: Option<SnapshotId>,
    /// True until the object store's listing was read at start (nothing is uploaded before
    /// it: it says which parents the store already holds).
    pub listing_pending: bool,
    /// Snapshots of the local store queued at start because the object store lacked them.
    pub resumed: usize,
    /// Snapshots uploaded.
    pub uploaded: u64,
    /// Failed attempts (each is retried unless `max_attempts` is reached).
    pub failed_attempts: u64,
    /// Snapshots given up on (after `max_attempts`, or gone from the local store), with
    /// the deltas that depended on them.
    pub gave_up: u64,
    /// The last snapshot uploaded.
    pub last_uploaded: Option<SnapshotId>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Snapshots deleted from the object store by the retention policy.
    pub retention_deleted: u64,
    /// Archived WAL segments (closed and partial objects) deleted from the object store by
    /// the retention policy.
    pub retention_deleted_segments: u64,
}

struct Job {
    info: SnapshotInfo,
    attempts: u32,
    /// Not retried before this (set after a failure).
    not_before: Option<Instant>,
    _lease: Lease,
}

struct State {
    /// In the order enqueued (parents before children).
    queue: Vec<Job>,
    /// Snapshots the object store holds completely.
    confirmed: HashSet<SnapshotId>,
    status: UploadStatus,
    stop: bool,
    /// The retention policy in force (`UploaderOptions::retention`, changed by
    /// [`Uploader::set_retention`]).
    retention: Option<RetentionPolicy>,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
}

/// Uploads finished snapshots to an object store in the background.
///
/// [`enqueue`](Self::enqueue) leases the snapshot (so garbage collection keeps it until it
/// is uploaded) and returns at once. The thread uploads the file as `snapshots/<id>.snap`,
/// then its metadata as `snapshots/<id>.json` (so a complete upload is recognisable).
///
/// - **Durable queue**: the queue is the difference between the local store and the object
///   store. [`start`](Self::start) queues (and leases) every snapshot of the local store,
///   in the manifest's order (parents before children); the thread reads the object
///   store's listing first and drops what it already holds completely. Start the uploader
///   before the store's first `gc` so nothing waiting is collected.
/// - **Order**: a delta is uploaded only once its parent is in the object store.
/// - **Failures**: a failed snapshot waits a backoff of its own (doubling from
///   `initial_backoff` to `max_backoff`) while the others go ahead; after `max_attempts`
///   it is given up with the deltas queued on it.
/// - **Retention**: with a policy, while idle and at most every `retention_interval`, the
///   object store is pruned: snapshots and archived WAL segments no kept restore point
///   needs ([`plan_retention`](crate::plan_retention) for a dry run).
///
/// Metrics (names in `raft_metrics::snapshot`) show the backlog: `UPLOAD_QUEUE`,
/// `UPLOAD_BACKLOG_BYTES`, `UPLOAD_OLDEST_SECONDS`, `UPLOAD_FAILING`; [`status`](Self::status)
/// answers queries. Dropping the uploader stops the thread after the current attempt; what
/// is still queued is found again at the next start.
pub struct Uploader {
    inner: Arc<Inner>,
    store: SnapshotStore,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    /// Queues every snapshot of `store` and starts the background thread.
    pub fn start(
        store: SnapshotStore,
        target: Arc<dyn ObjectStore>,
        opts: UploaderOptions,
    ) -> Result<Self> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: Vec::new(),
                confirmed: HashSet::new(),
                status: UploadStatus {
                    listing_pending: true,
                    ..UploadStatus::default()
                },
                stop: false,
                retention: opts.retention.clone(),
            }),
            cond: Condvar::new(),
        });
        let mut uploader = Uploader {
            inner: inner.clone(),
            store: store.clone(),
            thread: None,
        };
        let local = store.list();
        for info in &local {
            uploader.push(info.id)?;
        }
        inner.state.lock().status.resumed = local.len();
        let thread = std::thread::Builder::new()
            .name("snapshot-uploader".into())
            .spawn(move || run(inner, store, target, opts))
            .map_err(|e| Error::io("<uploader thread>", e))?;
        uploader.thread = Some(thread);
        Ok(uploader)
    }

    /// Queues a snapshot for upload (nothing when it is queued already); never blocks on
    /// the upload itself.
    pub fn enqueue(&self, id: SnapshotId) -> Result<()> {
        self.push(id)?;
        self.inner.cond.notify_all();
        Ok(())
    }

    fn push(&self, id: SnapshotId) -> Result<()> {
        let info = self.store.info(id).ok_or(Error::UnknownSnapshot(id))?;
        let lease = self.store.lease(vec![id])?;
        let mut st = self.inner.state.lock();
        if st.stop {
            return Err(Error::UploaderStopped);
        }
        if !st.queue.iter().any(|j| j.info.id == id) {
            st.queue.push(Job {
                info,
                attempts: 0,
                not_before: None,
                _lease: lease,
            });
            publish(&mut st);
        }
        Ok(())
    }

    /// Replaces the retention policy (a configuration reload); applied at the next idle
    /// moment.
    pub fn set_retention(&self, policy: Option<RetentionPolicy>) {
        self.inner.state.lock().retention = policy;
        self.inner.cond.notify_all();
    }

    /// The current status.
    pub fn status(&self) -> UploadStatus {
        self.inner.state.lock().status.clone()
    }

    /// Waits up to `timeout` for the queue to drain (after the start-up listing); true if
    /// it did.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        while !st.queue.is_empty() || st.status.listing_pending {
            if self.inner.cond.wait_until(&mut st, deadline).timed_out() {
                return st.queue.is_empty() && !st.status.listing_pending;
            }
        }
        true
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.inner.state.lock().stop = true;
        self.inner.cond.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Refreshes the status's queue figures and the backlog metrics.
fn publish(st: &mut State) {
    let now = Instant::now();
    let s = &mut st.status;
    s.queued = st.queue.len();
    s.backlog_bytes = st.queue.iter().map(|j| j.info.size).sum();
    s.failing = st
        .queue
        .iter()
        .filter(|j| j.not_before.is_some_and(|t| t > now))
        .count();
    let oldest = st.queue.iter().map(|j| j.info.created_ms).min();
    let age = oldest.map_or(0.0, |c| now_ms().saturating_sub(c) as f64 / 1000.0);
    metrics::gauge!(m::UPLOAD_QUEUE).set(s.queued as f64);
    metrics::gauge!(m::UPLOAD_BACKLOG_BYTES).set(s.backlog_bytes as f64);
    metrics::gauge!(m::UPLOAD_FAILING).set(s.failing as f64);
    metrics::gauge!(m::UPLOAD_OLDEST_SECONDS).set(age);
}

fn upload_one(store: &SnapshotStore, target: &dyn ObjectStore, id: SnapshotId) -> Result<u64> {
    let info = store.info(id).ok_or(Error::UnknownSnapshot(id))?;
    crate::chain::verify_stored(store, &info)?;
    let mut f = store.open_file(id)?;
    let n = target.put(&blob_file(id), &mut f)?;
    let meta = serde_json::to_vec_pretty(&info).expect("info serializes");
    target.put(&blob_meta(id), &mut meta.as_slice())?;
    Ok(n)
}

/// What the thread does next.
enum Next {
    Stop,
    Upload(SnapshotId),
    Wait(Option<Instant>),
}

/// Picks the first queued snapshot that may go now; gives up on those that never can.
fn next(st: &mut State) -> Next {
    if st.stop {
        return Next::Stop;
    }
    let now = Instant::now();
    let queued: HashSet<SnapshotId> = st.queue.iter().map(|j| j.info.id).collect();
    let mut orphans = Vec::new();
    let mut wake: Option<Instant> = None;
    let mut pick = None;
    for j in &st.queue {
        match j.info.parent {
            Some(p) if !st.confirmed.contains(&p) => {
                if !queued.contains(&p) {
                    orphans.push(j.info.id);
                }
                continue;
            }
            _ => {}
        }
        match j.not_before {
            Some(t) if t > now => wake = Some(wake.map_or(t, |w| w.min(t))),
            _ => {
                pick = Some(j.info.id);
                break;
            }
        }
    }
    if !orphans.is_empty() {
        for id in orphans {
            give_up(
                st,
                id,
                "its parent is neither in the object store nor queued",
            );
        }
        return next(st);
    }
    match pick {
        Some(id) => Next::Upload(id),
        None => Next::Wait(wake),
    }
}

/// Drops `id` and every queued snapshot that descends from it.
fn give_up(st: &mut State, id: SnapshotId, why: &str) {
    let mut doomed: HashSet<SnapshotId> = [id].into();
    // The queue is in parent-first order, so one pass finds every descendant.
    for j in &st.queue {
        if j.info.parent.is_some_and(|p| doomed.contains(&p)) {
            doomed.insert(j.info.id);
        }
    }
    st.queue.retain(|j| !doomed.contains(&j.info.id));
    st.status.gave_up += doomed.len() as u64;
    metrics::counter!(m::UPLOAD_GAVE_UP).increment(doomed.len() as u64);
    tracing::error!(%id, dependents = doomed.len() - 1, why, "snapshot upload abandoned");
    publish(st);
}

fn run(
    inner: Arc<Inner>,
    store: SnapshotStore,
    target: Arc<dyn ObjectStore>,
    opts: UploaderOptions,
) {
    let backoff = |attempts: u32| {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        opts.initial_backoff
            .saturating_mul(factor)
            .min(opts.max_backoff)
    };
    // First the object store's listing: what it holds needs no upload and may be a parent.
    let mut attempts = 0;
    loop {
        match Catalog::read(target.as_ref()) {
            Ok(catalog) => {
                let mut st = inner.state.lock();
                st.confirmed = catalog.complete.iter().map(|s| s.id).collect();
                let State {
                    queue, confirmed, ..
                } = &mut *st;
                queue.retain(|j| !confirmed.contains(&j.info.id));
                st.status.resumed = st.status.resumed.min(st.queue.len());
                st.status.listing_pending = false;
                publish(&mut st);
                inner.cond.notify_all();
                tracing::info!(
                    in_store = st.confirmed.len(),
                    queued = st.queue.len(),
                    "snapshot uploader resumed"
                );
                break;
            }
            Err(e) => {
                attempts += 1;
                let wait = backoff(attempts);
                tracing::warn!(error = %e, retry_in = ?wait, "listing the object store failed");
                let mut st = inner.state.lock();
                st.status.last_error = Some(e.to_string());
                let deadline = Instant::now() + wait;
                while !st.stop && !inner.cond.wait_until(&mut st, deadline).timed_out() {}
                if st.stop {
                    return;
                }
            }
        }
    }
    let mut last_retention: Option<Instant> = None;
    loop {
        let id = {
            let mut st = inner.state.lock();
            loop {
                match next(&mut st) {
                    Next::Stop => return,
                    Next::Upload(id) => break id,
                    Next::Wait(wake) => {
                        // Retention runs while nothing waits for upload.
                        let retention_at = st
                            .retention
                            .as_ref()
                            .filter(|p| p.is_active() && st.queue.is_empty())
                            .map(|_| {
                                last_retention
                                    .map_or_else(Instant::now, |t| t + opts.retention_interval)
                            });
                        if retention_at.is_some_and(|t| t <= Instant::now()) {
                            let policy = st.retention.clone().unwrap_or_default();
                            drop(st);
                            last_retention = Some(Instant::now());
                            run_retention(&inner, target.as_ref(), &policy);
                            st = inner.state.lock();
                            continue;
                        }
                        inner.cond.notify_all();
                        match [wake, retention_at].into_iter().flatten().min() {
                            Some(t) => {
                                inner.cond.wait_until(&mut st, t);
                            }
                            None => inner.cond.wait(&mut st),
                        }
                        publish(&mut st);
                    }
                }
            }
        };
        inner.state.lock().status.in_progress = Some(id);
        let result = upload_one(&store, target.as_ref(), id);
        let mut st = inner.state.lock();
        st.status.in_progress = None;
        match result {
            Ok(bytes) => {
                metrics::counter!(m::UPLOAD_ATTEMPTS, "outcome" => "ok").increment(1);
                metrics::counter!(m::UPLOADED_BYTES).increment(bytes);
                tracing::info!(%id, bytes, "snapshot uploaded");
                st.queue.retain(|j| j.info.id != id);
                st.confirmed.insert(id);
                st.status.uploaded += 1;
                st.status.last_uploaded = Some(id);
            }
            Err(e) => {
                metrics::counter!(m::UPLOAD_ATTEMPTS, "outcome" => "error").increment(1);
                st.status.failed_attempts += 1;
                st.status.last_error = Some(e.to_string());
                let attempts = match st.queue.iter_mut().find(|j| j.info.id == id) {
                    Some(j) => {
                        j.attempts += 1;
                        j.not_before = Some(Instant::now() + backoff(j.attempts));
                        j.attempts
                    }
                    None => 0,
                };
                if matches!(e, Error::UnknownSnapshot(_)) {
                    give_up(&mut st, id, "it is no longer in the local store");
                } else if opts.max_attempts.is_some_and(|m| attempts >= m) {
                    give_up(&mut st, id, "too many failed attempts");
                } else {
                    tracing::warn!(%id, attempts, error = %e, retry_in = ?backoff(attempts), "snapshot upload failed");
                }
            }
        }
        publish(&mut st);
        inner.cond.notify_all();
    }
}

fn run_retention(inner: &Inner, target: &dyn ObjectStore, policy: &RetentionPolicy) {
    let result = plan_retention(target, policy, now_ms()).and_then(|plan| {
        if !plan.delete.is_empty() || !plan.delete_segments.is_empty() {
            tracing::info!(
                snapshots = plan.delete.len(),
                segments = plan.delete_segments.len(),
                wal_floor = ?plan.wal_floor,
                "applying the retention policy"
            );
        }
        apply_retention(target, &plan)
    });
    let mut st = inner.state.lock();
    match result {
        Ok(n) => {
            st.status.retention_deleted += n.snapshots as u64;
            st.status.retention_deleted_segments += n.segments as u64;
        }
        Err(e) => {
            tracing::warn!(error = %e, "applying the retention policy failed");
            st.status.last_error = Some(e.to_string());
        }
    }
}
