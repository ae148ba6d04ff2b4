//! [`RaftHandle`]: what clients of a node hold to propose, read and manage it.

use crate::apply::ApplyJob;
use crate::config::RuntimeConfig;
use crate::error::{Error, Result};
use crate::request::Request;
use crate::state_machine::StateMachine;
use bytes::Bytes;
use raft_core::{
    ConfChange, ConfChangeOp, ConfChangeTransition, Membership, NodeId, SnapshotMeta, Status,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Counters of one node's runtime, readable without a round trip to the loop.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub proposals: AtomicU64,
    pub log_writes: AtomicU64,
    pub applied: AtomicU64,
    pub commit: AtomicU64,
    pub term: AtomicU64,
    /// The known leader; 0 when none.
    pub leader: AtomicU64,
    pub is_leader: AtomicBool,
    /// The configured request timeout in nanoseconds (changes with `reconfigure`).
    pub request_timeout_ns: AtomicU64,
    /// Why the node stopped, when it stopped on a failure.
    pub fatal: std::sync::Mutex<Option<String>>,
}

impl Stats {
    /// The error for a request that finds the loop gone.
    pub(crate) fn gone(&self) -> Error {
        match &*self.fatal.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(msg) => Error::Fatal(msg.clone()),
            None => Error::Shutdown,
        }
    }
}

/// A snapshot of the runtime's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuntimeStats {
    /// Proposals taken by the event loop.
    pub proposals: u64,
    /// Log writes submitted (one per `Ready` that had something to persist).
    pub log_writes: u64,
    /// The index the state machine has applied.
    pub applied: u64,
    /// The commit index (as of the last `Ready`).
    pub commit: u64,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// True while this node leads.
    pub is_leader: bool,
}

/// A cheap, cloneable handle to a running node. Every call waits at most the configured
/// request timeout.
pub struct RaftHandle<SM: StateMachine> {
    pub(crate) id: NodeId,
    pub(crate) requests: mpsc::Sender<Request<SM>>,
    /// Proposals travel apart, so that the loop can hold them back (apply lag) while it
    /// keeps serving everything else.
    pub(crate) proposals: mpsc::Sender<Request<SM>>,
    pub(crate) apply: std::sync::mpsc::Sender<ApplyJob<SM>>,
    /// A timeout set with [`with_timeout`](Self::with_timeout); otherwise the configured
    /// request timeout applies.
    pub(crate) timeout: Option<Duration>,
    pub(crate) stats: Arc<Stats>,
}

impl<SM: StateMachine> Clone for RaftHandle<SM> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            requests: self.requests.clone(),
            proposals: self.proposals.clone(),
            apply: self.apply.clone(),
            timeout: self.timeout,
            stats: self.stats.clone(),
        }
    }
}

impl<SM: StateMachine> std::fmt::Debug for RaftHandle<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftHandle").field("id", &self.id).finish()
    }
}

impl<SM: StateMachine> RaftHandle<SM> {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// A handle whose calls wait at most `timeout` (e.g. a client request's deadline).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// How long each call waits: the timeout set with [`with_timeout`](Self::with_timeout),
    /// or the configured request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or_else(|| {
            Duration::from_nanos(self.stats.request_timeout_ns.load(Ordering::Relaxed))
        })
    }

    /// Applies new settings to the running node: the core's timing and flow-control
    /// settings (see [`raft_core::RawNode::set_config`]), the request timeout, batch limits,
    /// the apply lag limit and the snapshot threshold. `tick`, `request_queue` and
    /// `apply_linger` cannot change (an [`Error::InvalidConfig`] naming them), nor can the
    /// core's fixed fields; `bootstrap` and `rng_seed` are ignored. On error the settings in
    /// force stay.
    pub async fn reconfigure(&self, config: RuntimeConfig) -> Result<()> {
        self.call("the new settings to be applied", |tx| {
            Request::Reconfigure {
                config: Box::new(config),
                tx,
            }
        })
        .await
    }

    /// The runtime's counters and the node's term, leader and indexes, read without a round
    /// trip to the event loop (for response headers and dashboards).
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            proposals: self.stats.proposals.load(Ordering::Relaxed),
            log_writes: self.stats.log_writes.load(Ordering::Relaxed),
            applied: self.stats.applied.load(Ordering::Relaxed),
            commit: self.stats.commit.load(Ordering::Relaxed),
            term: self.stats.term.load(Ordering::Relaxed),
            leader: Some(self.stats.leader.load(Ordering::Relaxed)).filter(|l| *l != 0),
            is_leader: self.stats.is_leader.load(Ordering::Relaxed),
        }
    }

    async fn call<T>(
        &self,
        what: &'static str,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request<SM>,
    ) -> Result<T> {
        self.call_on(&self.requests, what, make).await
    }

    async fn call_on<T>(
        &self,
        channel: &mpsc::Sender<Request<SM>>,
        what: &'static str,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request<SM>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout();
        let (tx, rx) = oneshot::channel();
        match tokio::time::timeout_at(deadline.into(), channel.send(make(tx))).await {
            Err(_) => return Err(Error::Timeout("a place in the request queue")),
            Ok(Err(_)) => return Err(self.stats.gone()),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Err(_) => Err(Error::Timeout(what)),
            Ok(Err(_)) => Err(self.stats.gone()),
            Ok(Ok(r)) => r,
        }
    }

    /// Proposes a command and returns the state machine's response once it is applied on
    /// this node. Works on any node: followers forward to the leader.
    ///
    /// On [`Error::LeaderChanged`] or [`Error::Timeout`] the command may or may not have
    /// been applied; [`Error::is_retryable`] errors are safe to retry.
    pub async fn propose(&self, cmd: Bytes) -> Result<SM::Response> {
        self.call_on(&self.proposals, "the proposal to be applied", |tx| {
            Request::Propose {
                cmd,
                tx,
                since: Instant::now(),
            }
        })
        .await
    }

    /// A linearizable read barrier (ReadIndex, or a lease read when the core's
    /// `ReadMode` says so): returns once this node's state machine has applied everything
    /// committed before the call, with that index. Concurrent calls share one round.
    pub async fn read_index(&self) -> Result<u64> {
        self.call("a read index", |tx| Request::ReadIndex { tx })
            .await
    }

    /// Runs `f` against the state machine after a [`read_index`](Self::read_index) barrier:
    /// it sees every write acknowledged before the call.
    pub async fn linearizable_read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&SM) -> R + Send + 'static,
    ) -> Result<R> {
        self.read_index().await?;
        self.serializable_read(f).await
    }

    /// Runs `f` against this node's state machine now, with no barrier: it may miss recent
    /// writes (a follower may lag), but never sees uncommitted ones.
    pub async fn serializable_read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&SM) -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job = ApplyJob::Read(Box::new(move |sm: &SM| {
            let _ = tx.send(f(sm));
        }));
        self.apply.send(job).map_err(|_| self.stats.gone())?;
        match tokio::time::timeout(self.timeout(), rx).await {
            Err(_) => Err(Error::Timeout("the state machine to serve a read")),
            Ok(Err(_)) => Err(self.stats.gone()),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Changes the membership from any node (a follower forwards the change to the leader)
    /// and returns the new membership once the change is applied here. A change of several
    /// voters goes through a joint configuration, left automatically. One change at a time:
    /// another one in flight from this node is [`Error::ConfChangeRejected`]; a change made
    /// on the leader while the previous change (made anywhere) is in its log but not yet
    /// applied there waits until it is, then goes ahead. A change the leader refuses
    /// after forwarding (rare: the follower checks it against its own view first) ends in
    /// [`Error::ProposalDropped`] as soon as the refusal comes back.
    pub async fn change_membership(&self, change: ConfChange) -> Result<Membership> {
        self.call("the membership change to be applied", |tx| {
            Request::ConfChange { change, tx }
        })
        .await
    }

    /// Adds `id` as a learner (it receives the log but does not vote).
    pub async fn add_learner(&self, id: NodeId) -> Result<Membership> {
        self.change_membership(single(ConfChangeOp::AddLearner(id)))
            .await
    }

    /// Adds `id` as a voter, or promotes the learner `id`.
    pub async fn add_voter(&self, id: NodeId) -> Result<Membership> {
        self.change_membership(single(ConfChangeOp::AddVoter(id)))
            .await
    }

    /// Removes `id` from the cluster.
    pub async fn remove_node(&self, id: NodeId) -> Result<Membership> {
        self.change_membership(single(ConfChangeOp::RemoveNode(id)))
            .await
    }

    /// Hands leadership to voter `target` (call on the leader); returns once this node sees
    /// `target` lead.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<()> {
        self.call("the leadership transfer", |tx| Request::Transfer {
            target,
            tx,
        })
        .await
    }

    /// Starts an election on this node now.
    pub async fn campaign(&self) -> Result<()> {
        self.call("the campaign to start", |tx| Request::Campaign { tx })
            .await
    }

    /// The node's protocol status.
    pub async fn status(&self) -> Result<Status> {
        self.call("the status", |tx| Request::Status { tx }).await
    }

    /// Takes a state-machine snapshot at the applied index now and compacts the log up to
    /// it; returns what the log was compacted to. When a snapshot is being built already,
    /// its outcome is the answer; when nothing was applied since the last one, that one is.
    /// Bounded by the request timeout ([`with_timeout`](Self::with_timeout) for big states).
    pub async fn snapshot(&self) -> Result<SnapshotMeta> {
        self.call("the snapshot", |tx| Request::Snapshot { tx })
            .await
    }

    /// Waits until the node has stopped (by [`shutdown`](Self::shutdown), or on its own
    /// after a fatal error: a failed log write, a failed apply). Returns that error's
    /// description when it was one. A server embedding the node should stop too on a
    /// fatal error: its state machine may hold a batch that was not wholly written.
    pub async fn stopped(&self) -> Option<String> {
        self.requests.closed().await;
        self.stats
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the node: fails pending requests with [`Error::Shutdown`], flushes the log and
    /// stops the apply thread. Returns within about one second.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let limit = Duration::from_secs(1);
        match tokio::time::timeout(limit, self.requests.send(Request::Shutdown { tx })).await {
            Err(_) => return Err(Error::Timeout("a place in the request queue")),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout(limit, rx).await {
            Err(_) => Err(Error::Timeout("the shutdown")),
            Ok(Err(_)) => Ok(()),
            Ok(Ok(r)) => r,
        }
    }
}

fn single(op: ConfChangeOp) -> ConfChange {
    ConfChange {
        transition: ConfChangeTransition::Auto,
        ops: vec![op],
    }
}
