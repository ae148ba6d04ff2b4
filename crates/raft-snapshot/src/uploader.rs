//! The asynchronous uploader: a background thread that copies finished snapshots to an
//! object store, retrying with exponential backoff, never blocking the caller.

use crate::error::{Error, Result};
use crate::info::SnapshotId;
use crate::object_store::{ObjectStore, blob_file, blob_meta};
use crate::store::{Lease, SnapshotStore};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Retry behaviour of the [`Uploader`].
#[derive(Clone, Debug)]
pub struct UploaderOptions {
    /// Wait after the first failure.
    pub initial_backoff: Duration,
    /// Longest wait between attempts (the backoff doubles up to this).
    pub max_backoff: Duration,
    /// Give up on a snapshot after this many attempts; `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for UploaderOptions {
    fn default() -> Self {
        UploaderOptions {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

/// What the uploader has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadStatus {
    /// Snapshots waiting, including the one being uploaded or retried.
    pub queued: usize,
    /// The snapshot being uploaded now.
    pub in_progress: Option<SnapshotId>,
    /// Snapshots uploaded.
    pub uploaded: u64,
    /// Failed attempts (each is retried unless `max_attempts` is reached).
    pub failed_attempts: u64,
    /// Snapshots given up on after `max_attempts`.
    pub gave_up: u64,
    /// The last snapshot uploaded.
    pub last_uploaded: Option<SnapshotId>,
    /// The last failure's message.
    pub last_error: Option<String>,
}

struct Job {
    id: SnapshotId,
    _lease: Lease,
}

struct State {
    queue: VecDeque<Job>,
    status: UploadStatus,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
}

/// Uploads finished snapshots in the background.
///
/// [`enqueue`](Self::enqueue) leases the snapshot (so garbage collection keeps it until it
/// is uploaded) and returns at once. The thread uploads the file as
/// `snapshots/<id>.snap`, then its metadata as `snapshots/<id>.json` (so a complete upload
/// is recognisable), in the order enqueued (parents before children). A failure is retried
/// after a backoff that doubles from `initial_backoff` to `max_backoff`. Counters go to the
/// `metrics` facade; [`status`](Self::status) answers queries. Dropping the uploader stops
/// the thread after the current attempt; queued work is abandoned.
pub struct Uploader {
    inner: Arc<Inner>,
    store: SnapshotStore,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    /// Starts the background thread.
    pub fn start(
        store: SnapshotStore,
        target: Arc<dyn ObjectStore>,
        opts: UploaderOptions,
    ) -> Result<Self> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                status: UploadStatus::default(),
                stop: false,
            }),
            cond: Condvar::new(),
        });
        let (i2, s2) = (inner.clone(), store.clone());
        let thread = std::thread::Builder::new()
            .name("snapshot-uploader".into())
            .spawn(move || run(i2, s2, target, opts))
            .map_err(|e| Error::io("<uploader thread>", e))?;
        Ok(Uploader {
            inner,
            store,
            thread: Some(thread),
        })
    }

    /// Queues a snapshot for upload; never blocks on the upload itself.
    pub fn enqueue(&self, id: SnapshotId) -> Result<()> {
        let lease = self.store.lease(vec![id])?;
        let mut st = self.inner.state.lock();
        if st.stop {
            return Err(Error::UploaderStopped);
        }
        st.queue.push_back(Job { id, _lease: lease });
        st.status.queued = st.queue.len();
        metrics::gauge!(raft_metrics::snapshot::UPLOAD_QUEUE).set(st.queue.len() as f64);
        self.inner.cond.notify_all();
        Ok(())
    }

    /// The current status.
    pub fn status(&self) -> UploadStatus {
        self.inner.state.lock().status.clone()
    }

    /// Waits up to `timeout` for the queue to drain; true if it did.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        while !st.queue.is_empty() {
            if self.inner.cond.wait_until(&mut st, deadline).timed_out() {
                return st.queue.is_empty();
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

fn upload_one(store: &SnapshotStore, target: &dyn ObjectStore, id: SnapshotId) -> Result<u64> {
    let info = store.info(id).ok_or(Error::UnknownSnapshot(id))?;
    crate::chain::verify_stored(store, &info)?;
    let mut f = store.open_file(id)?;
    let n = target.put(&blob_file(id), &mut f)?;
    let meta = serde_json::to_vec_pretty(&info).expect("info serializes");
    target.put(&blob_meta(id), &mut meta.as_slice())?;
    Ok(n)
}

fn run(
    inner: Arc<Inner>,
    store: SnapshotStore,
    target: Arc<dyn ObjectStore>,
    opts: UploaderOptions,
) {
    let mut attempts = 0u32;
    let mut backoff = opts.initial_backoff;
    loop {
        let id = {
            let mut st = inner.state.lock();
            loop {
                if st.stop {
                    return;
                }
                if let Some(j) = st.queue.front() {
                    break j.id;
                }
                inner.cond.wait(&mut st);
            }
        };
        inner.state.lock().status.in_progress = Some(id);
        let result = upload_one(&store, target.as_ref(), id);
        let mut st = inner.state.lock();
        st.status.in_progress = None;
        match result {
            Ok(bytes) => {
                metrics::counter!(raft_metrics::snapshot::UPLOAD_ATTEMPTS, "outcome" => "ok")
                    .increment(1);
                metrics::counter!(raft_metrics::snapshot::UPLOADED_BYTES).increment(bytes);
                tracing::info!(%id, bytes, "snapshot uploaded");
                st.queue.pop_front();
                st.status.uploaded += 1;
                st.status.last_uploaded = Some(id);
                attempts = 0;
                backoff = opts.initial_backoff;
            }
            Err(e) => {
                metrics::counter!(raft_metrics::snapshot::UPLOAD_ATTEMPTS, "outcome" => "error")
                    .increment(1);
                attempts += 1;
                st.status.failed_attempts += 1;
                st.status.last_error = Some(e.to_string());
                let give_up = opts.max_attempts.is_some_and(|m| attempts >= m)
                    || matches!(e, Error::UnknownSnapshot(_));
                if give_up {
                    tracing::error!(%id, attempts, error = %e, "snapshot upload abandoned");
                    st.queue.pop_front();
                    st.status.gave_up += 1;
                    attempts = 0;
                    backoff = opts.initial_backoff;
                } else {
                    tracing::warn!(%id, attempts, error = %e, retry_in = ?backoff, "snapshot upload failed");
                    let deadline = std::time::Instant::now() + backoff;
                    while !st.stop {
                        if inner.cond.wait_until(&mut st, deadline).timed_out() {
                            break;
                        }
                    }
                    backoff = (backoff * 2).min(opts.max_backoff);
                }
            }
        }
        st.status.queued = st.queue.len();
        metrics::gauge!(raft_metrics::snapshot::UPLOAD_QUEUE).set(st.queue.len() as f64);
        inner.cond.notify_all();
    }
}
