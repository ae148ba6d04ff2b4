//! [`RaftNode::start`] and the event loop that owns the `RawNode`.
//!
//! The loop's state lives in [`Loop`]; `ready` carries out `Ready`s and follows what the
//! log and the state machine report, `handing` hands committed entries over to be applied,
//! `requests` turns client requests into core calls and keeps the waiting clients.

mod handing;
mod log_bytes;
mod observe;
mod ready;
mod requests;
mod tuning;

use crate::apply::{self, ApplyJob, Event, Waiter};
use crate::config::RuntimeConfig;
use crate::envelope;
use crate::error::{Error, Result};
use crate::handle::{RaftHandle, Stats};
use crate::request::Request;
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::transport::{Inbound, Transport};
use bytes::Bytes;
use metrics::counter;
use raft_core::{Membership, NodeId, RawNode, Role, SnapshotMeta};
use raft_metrics::runtime as m;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// Starts nodes.
#[derive(Debug)]
pub struct RaftNode;

impl RaftNode {
    /// Starts a node: recovers from `storage` and `sm` (the state machine's applied index is
    /// respected: nothing at or below it is applied again), spawns the event loop task and
    /// the apply thread, and returns the handle. Must be called inside a tokio runtime.
    ///
    /// The transport gets `add_peer` for every member but this node; `inbound` is what the
    /// network delivers.
    pub async fn start<SM, S, T>(
        config: RuntimeConfig,
        mut storage: S,
        mut sm: SM,
        transport: Arc<T>,
        inbound: Inbound,
    ) -> Result<RaftHandle<SM>>
    where
        SM: StateMachine,
        S: LogStore,
        T: Transport,
    {
        config.validate()?;
        let id = config.raft.id;
        storage.prepare(sm.applied_index(), config.bootstrap.as_ref())?;
        let snap = storage
            .snapshot_meta()
            .map_err(|e| Error::Storage(Box::new(e)))?;
        if sm.applied_index() < snap.index {
            // The log was replaced by a snapshot the state machine has not restored yet
            // (a crash in between): restore it before anything is applied on top.
            sm.restore(&snap).map_err(Error::StateMachine)?;
        }
        let applied = sm.applied_index();
        let mut raft_cfg = config.raft.clone();
        raft_cfg.applied = applied;
        let seed = config.rng_seed.unwrap_or_else(|| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ id.rotate_left(32)
        });
        let written_hard_state = storage
            .initial_state()
            .map_err(|e| Error::Storage(Box::new(e)))?
            .hard_state;
        let raw = RawNode::new(raft_cfg, storage, seed)?;
        let incarnation = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
            ^ u64::from(std::process::id());

        let (req_tx, req_rx) = mpsc::channel(1024);
        let (prop_tx, prop_rx) = mpsc::channel(config.request_queue);
        let (apply_tx, apply_rx) = std::sync::mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let sm = Arc::new(std::sync::Mutex::new(apply::Held::new(sm)));
        let apply_queued = apply::Queued::default();
        apply::spawn(
            id,
            sm.clone(),
            apply_rx,
            ev_tx.clone(),
            stopping.clone(),
            apply_queued.clone(),
        )?;
        let stats = Arc::new(Stats::default());
        stats.request_timeout_ns.store(
            tuning::duration_ns(config.request_timeout),
            std::sync::atomic::Ordering::Relaxed,
        );
        stats
            .applied
            .store(applied, std::sync::atomic::Ordering::Relaxed);

        let status = raw.status();
        stats
            .term
            .store(status.term, std::sync::atomic::Ordering::Relaxed);
        stats
            .commit
            .store(status.commit, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(m::TERM).set(status.term as f64);
        metrics::gauge!(m::COMMIT_INDEX).set(status.commit as f64);
        metrics::gauge!(m::APPLIED_INDEX).set(applied as f64);
        metrics::gauge!(m::IS_LEADER).set(0.0);
        let mut peers = BTreeSet::new();
        for p in raw.peers() {
            if p != id {
                transport.add_peer(p);
                peers.insert(p);
            }
        }
        // The term is not a span field: recording a new value appends it to every later
        // line ("term=1 term=2 ..."); the events that need it carry it.
        let span = tracing::info_span!("raft", node_id = id);
        let lp = Loop {
            id,
            raw,
            transport,
            requests: req_rx,
            proposal_rx: prop_rx,
            inbound,
            events: ev_rx,
            events_tx: ev_tx,
            apply_tx: apply_tx.clone(),
            sm,
            apply_queued,
            apply_metrics: apply::ApplyMetrics::new(),
            inline_applied: None,
            lingering: Vec::new(),
            linger_until: None,
            stopping,
            incarnation,
            next_request: 1,
            proposals: HashMap::new(),
            stalled: VecDeque::new(),
            reads_queued: Vec::new(),
            reads_issued: HashMap::new(),
            reads_ready: Vec::new(),
            next_read_ctx: 1,
            in_flight: VecDeque::new(),
            applied,
            handed: applied,
            snapshot_index: snap.index,
            snapshot_busy: false,
            log_bytes: log_bytes::LogBytes::default(),
            snapshot_waiters: Vec::new(),
            conf: None,
            conf_deferred: None,
            handed_membership: status.membership.clone(),
            transfers: Vec::new(),
            leader: None,
            role: Role::Follower,
            term: status.term,
            commit: status.commit,
            written_hard_state,
            peers,
            peers_early: BTreeSet::new(),
            observe: observe::LoopMetrics::new(),
            fresh_reads: Vec::new(),
            stats: stats.clone(),
            cfg: config,
        };
        tokio::spawn(lp.run().instrument(span));
        Ok(RaftHandle {
            id,
            requests: req_tx,
            proposals: prop_tx,
            apply: apply_tx,
            timeout: None,
            stats,
        })
    }
}

/// A proposal taken by the loop and not yet handed to the apply thread.
pub(crate) struct Proposal<R> {
    pub waiter: Waiter<R>,
    /// The wrapped command while no leader is known to forward it to.
    pub stalled: Option<Bytes>,
}

/// A membership change in flight (one at a time).
pub(crate) struct ConfWaiter {
    /// Its (index, term) when this node appended it as leader; `None` when it was forwarded
    /// to the leader (then it is recognised by its content when committed).
    pub at: Option<(u64, u64)>,
    pub change: raft_core::ConfChange,
    /// The index where it was seen committed.
    pub committed: Option<u64>,
    pub tx: oneshot::Sender<Result<Membership>>,
}

/// A `Ready` whose writes are not all durable yet.
pub(crate) struct InFlight {
    pub number: u64,
    /// Completions still awaited: the log write, and the state-machine restore of a
    /// snapshot.
    pub waits: u8,
    /// Whether one of them is a restore.
    pub restore: bool,
    /// What waits for them (empty when the log's completion sent it, see `handle_ready`).
    pub messages: Vec<raft_core::Message>,
}

/// A client waiting for a linearizable read barrier.
pub(crate) type ReadTx = oneshot::Sender<Result<u64>>;

/// The event loop's state.
pub(crate) struct Loop<SM: StateMachine, S: LogStore, T: Transport> {
    pub id: NodeId,
    pub cfg: RuntimeConfig,
    pub raw: RawNode<S>,
    pub transport: Arc<T>,
    pub requests: mpsc::Receiver<Request<SM>>,
    /// Client proposals (held back while the state machine lags).
    pub proposal_rx: mpsc::Receiver<Request<SM>>,
    pub inbound: Inbound,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub events_tx: mpsc::UnboundedSender<Event>,
    pub apply_tx: std::sync::mpsc::Sender<ApplyJob<SM>>,
    /// The state machine, shared with the apply thread (see [`apply`]).
    pub sm: apply::SharedSm<SM>,
    /// Jobs sent to the apply thread and not finished yet.
    pub apply_queued: apply::Queued,
    pub apply_metrics: apply::ApplyMetrics,
    /// The index this loop applied itself during the current `Ready` (reported to the core
    /// once the `Ready` is carried out).
    pub inline_applied: Option<u64>,
    /// Committed entries no client of this node waits for, held back (up to
    /// `apply_linger`) so that one state-machine write covers several batches.
    pub lingering: Vec<crate::state_machine::Committed>,
    /// When the entries held back go to be applied anyway.
    pub linger_until: Option<tokio::time::Instant>,
    pub stopping: Arc<AtomicBool>,
    /// This runtime's incarnation (see [`envelope`]).
    pub incarnation: u64,
    pub next_request: u64,
    /// Proposals of this node by request id, until their entry is handed out for applying.
    pub proposals: HashMap<u64, Proposal<SM::Response>>,
    /// Request ids of proposals waiting for a leader, in arrival order.
    pub stalled: VecDeque<u64>,
    /// Reads not yet given to the core (no leader known, or arrived since the last round).
    pub reads_queued: Vec<ReadTx>,
    /// Reads waiting for their round, by context, with when the round was requested.
    pub reads_issued: HashMap<u64, (Instant, Vec<ReadTx>)>,
    /// Reads waiting for the state machine to apply their index.
    pub reads_ready: Vec<(u64, Vec<ReadTx>)>,
    pub next_read_ctx: u64,
    pub in_flight: VecDeque<InFlight>,
    /// The index the state machine reported applied.
    pub applied: u64,
    /// The last index handed to the apply thread.
    pub handed: u64,
    /// The index of the last snapshot the log was compacted to.
    pub snapshot_index: u64,
    pub snapshot_busy: bool,
    /// Entry bytes applied since the last snapshot (the size trigger).
    pub log_bytes: log_bytes::LogBytes,
    /// Callers of `RaftHandle::snapshot` waiting for the snapshot being built (and the log
    /// compacted to it).
    pub snapshot_waiters: Vec<oneshot::Sender<Result<SnapshotMeta>>>,
    pub conf: Option<ConfWaiter>,
    /// A membership change that arrived on the leader while the previous change was in the
    /// log but not applied here yet: proposed once it is (see `Loop::conf_change`).
    pub conf_deferred: Option<(raft_core::ConfChange, oneshot::Sender<Result<Membership>>)>,
    /// The membership as of the last entry handed to the apply thread.
    pub handed_membership: Membership,
    pub transfers: Vec<(NodeId, oneshot::Sender<Result<()>>)>,
    pub leader: Option<NodeId>,
    pub role: Role,
    pub term: u64,
    pub commit: u64,
    /// The hard state of the last write submitted to the log.
    pub written_hard_state: raft_core::HardState,
    /// Peers the transport was told about.
    pub peers: BTreeSet<NodeId>,
    /// Peers added when a change entered the log, told again once a change is applied (a
    /// transport that resolves addresses from applied state may not have known them yet).
    pub peers_early: BTreeSet<NodeId>,
    pub observe: observe::LoopMetrics,
    /// Read contexts issued in this turn of the loop by this node as a lease-mode leader:
    /// answered within the same turn means answered from the lease, with no quorum round.
    pub fresh_reads: Vec<u64>,
    pub stats: Arc<Stats>,
}

impl<SM: StateMachine, S: LogStore, T: Transport> Loop<SM, S, T> {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.cfg.tick);
        let mut housekeeping = 0u32;
        let mut shutdown: Option<oneshot::Sender<Result<()>>> = None;
        let outcome: Result<()> = loop {
            self.fresh_reads.clear();
            let step: Result<()> = tokio::select! {
                biased;
                _ = ticker.tick() => {
                    housekeeping += 1;
                    if housekeeping >= 10 {
                        housekeeping = 0;
                        self.housekeeping();
                    }
                    self.raw.tick().map_err(Error::from)
                }
                Some(ev) = self.events.recv() => self.on_events(ev),
                () = linger_end(self.linger_until) => self.flush_lingering(),
                Some(msg) = recv_priority(&mut self.inbound.priority) => self.step_all(msg, true),
                Some(msg) = self.inbound.messages.recv() => self.step_all(msg, false),
                Some(id) = self.inbound.unreachable.recv() => {
                    self.raw.report_unreachable(id);
                    Ok(())
                }
                r = self.requests.recv() => match r {
                    None => break Ok(()),
                    Some(r) => self.on_requests(r, &mut shutdown),
                },
                Some(r) = self.proposal_rx.recv(), if !self.apply_lagging() => {
                    self.on_requests(r, &mut shutdown)
                }
            };
            if let Err(e) = step.and_then(|()| self.process_ready()) {
                break Err(e);
            }
            if shutdown.is_some() {
                break Ok(());
            }
        };
        let reason = match &outcome {
            Ok(()) => Error::Shutdown,
            Err(e) => {
                tracing::error!(error = %e, "raft node stopped");
                *self.stats.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                Error::Fatal(e.to_string())
            }
        };
        let flushed = self.stop(reason).await;
        if let Some(tx) = shutdown {
            let _ = tx.send(outcome.and(flushed));
        }
    }

    /// True while the state machine is so far behind that new proposals wait.
    pub(crate) fn apply_lagging(&self) -> bool {
        self.handed.saturating_sub(self.applied) > self.cfg.max_apply_lag
    }

    /// Hands out and carries out `Ready`s until the core has nothing more.
    fn process_ready(&mut self) -> Result<()> {
        let mut rounds = 0;
        while self.raw.has_ready() && rounds < 8 {
            self.handle_ready()?;
            rounds += 1;
        }
        Ok(())
    }

    fn on_events(&mut self, first: Event) -> Result<()> {
        self.on_event(first)?;
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev)?;
        }
        Ok(())
    }

    /// Steps `first` and the messages queued behind it on the same channel (the priority
    /// one or the other), up to `max_batch_messages`.
    fn step_all(&mut self, first: raft_core::Message, priority: bool) -> Result<()> {
        self.step(first)?;
        for _ in 1..self.cfg.max_batch_messages {
            let next = match (priority, &mut self.inbound.priority) {
                (true, Some(rx)) => rx.try_recv(),
                _ => self.inbound.messages.try_recv(),
            };
            match next {
                Ok(m) => self.step(m)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn step(&mut self, msg: raft_core::Message) -> Result<()> {
        if msg.from != self.id && msg.from != 0 && !self.peers.contains(&msg.from) {
            // A node that is not (yet) a member here, e.g. the leader of a cluster this node
            // is joining: make the transport able to answer it.
            self.peers.insert(msg.from);
            self.transport.add_peer(msg.from);
        }
        self.observe.received(&msg);
        match self.raw.step(msg) {
            Ok(()) => Ok(()),
            // The log cannot be read: the node cannot go on.
            Err(e @ raft_core::Error::Storage(_)) => Err(e.into()),
            Err(e) => {
                counter!(m::MESSAGES_REFUSED, "reason" => observe::refusal_reason(&e)).increment(1);
                tracing::debug!(error = %e, "message refused");
                Ok(())
            }
        }
    }

    /// Periodic clean-up: forget clients that gave up, retry what waits for a leader.
    fn housekeeping(&mut self) {
        let before = self.proposals.len();
        self.proposals.retain(|_, p| !p.waiter.tx.is_closed());
        if self.proposals.len() != before {
            let proposals = &self.proposals;
            self.stalled.retain(|id| proposals.contains_key(id));
        }
        self.reads_queued.retain(|tx| !tx.is_closed());
        // A round whose request or answer was lost (e.g. a dropped message to the leader)
        // is asked again after two election timeouts; reads are safe to retry.
        let stale = self.cfg.tick * (2 * self.cfg.raft.election_timeout_base_ticks) as u32;
        let now = Instant::now();
        let mut retry = Vec::new();
        self.reads_issued.retain(|_, (at, txs)| {
            txs.retain(|tx| !tx.is_closed());
            if !txs.is_empty() && now.duration_since(*at) > stale {
                retry.append(txs);
            }
            !txs.is_empty()
        });
        if !retry.is_empty() {
            self.reads_queued.extend(retry);
            self.issue_reads();
        }
        self.transfers.retain(|(_, tx)| !tx.is_closed());
        if self.conf.as_ref().is_some_and(|c| c.tx.is_closed()) {
            self.conf = None;
        }
        self.retry_stalled();
        if self.observe.wants_refresh(self.role) {
            let status = self.raw.status();
            self.observe.refresh_peers(&status);
        }
    }

    /// Stops: fails what waits, stops the apply thread and flushes the log (bounded time).
    async fn stop(&mut self, reason: Error) -> Result<()> {
        let msg = reason.to_string();
        let err = || match &reason {
            Error::Shutdown => Error::Shutdown,
            _ => Error::Fatal(msg.clone()),
        };
        counter!(m::PROPOSALS_FAILED, "reason" => "shutdown")
            .increment(self.proposals.len() as u64);
        for (_, p) in self.proposals.drain() {
            let _ = p.waiter.tx.send(Err(err()));
        }
        self.stalled.clear();
        for tx in self.reads_queued.drain(..) {
            let _ = tx.send(Err(err()));
        }
        for (_, (_, txs)) in self.reads_issued.drain() {
            for tx in txs {
                let _ = tx.send(Err(err()));
            }
        }
        for (_, txs) in self.reads_ready.drain(..) {
            for tx in txs {
                let _ = tx.send(Err(err()));
            }
        }
        if let Some(c) = self.conf.take() {
            let _ = c.tx.send(Err(err()));
        }
        if let Some((_, tx)) = self.conf_deferred.take() {
            let _ = tx.send(Err(err()));
        }
        for (_, tx) in self.transfers.drain(..) {
            let _ = tx.send(Err(err()));
        }
        self.requests.close();
        self.proposal_rx.close();
        while let Ok(r) = self.requests.try_recv() {
            fail_request(r, err());
        }
        while let Ok(r) = self.proposal_rx.try_recv() {
            fail_request(r, err());
        }
        // Entries queued for applying are dropped (their clients see `Shutdown`).
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        let (stop_tx, stop_rx) = oneshot::channel();
        let _ = self.apply_tx.send(ApplyJob::Stop(stop_tx));
        let (flush_tx, flush_rx) = oneshot::channel();
        let flushed = self.raw.log_mut().flush(Box::new(move |r| {
            let _ = flush_tx.send(r);
        }));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(800);
        let result = match flushed {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout_at(deadline, flush_rx).await {
                Ok(Ok(Ok(()))) | Ok(Err(_)) => Ok(()),
                Ok(Ok(Err(e))) => Err(Error::Storage(e)),
                Err(_) => Err(Error::Timeout("the log to flush")),
            },
        };
        let _ = tokio::time::timeout_at(deadline, stop_rx).await;
        tracing::info!(term = self.term, "raft node stopped");
        result
    }

    /// Wraps a command in this node's envelope and registers its client.
    pub(crate) fn wrap(&mut self, cmd: &[u8]) -> (u64, Bytes) {
        let request = self.next_request;
        self.next_request += 1;
        let origin = envelope::Origin {
            node: self.id,
            incarnation: self.incarnation,
            request,
        };
        (request, envelope::wrap(origin, cmd))
    }

    /// The last index and term of the log (after a proposal: its entry).
    pub(crate) fn last_entry(&self) -> (u64, u64) {
        let s = self.raw.status();
        (s.last_index, s.term)
    }
}

/// Fails a request that will not be handled.
pub(crate) fn fail_request<SM: StateMachine>(r: Request<SM>, e: Error) {
    match r {
        Request::Propose { tx, .. } => drop(tx.send(Err(e))),
        Request::ReadIndex { tx } => drop(tx.send(Err(e))),
        Request::ConfChange { tx, .. } => drop(tx.send(Err(e))),
        Request::Transfer { tx, .. } => drop(tx.send(Err(e))),
        Request::Campaign { tx } => drop(tx.send(Err(e))),
        Request::Status { tx } => drop(tx.send(Err(e))),
        Request::Reconfigure { tx, .. } => drop(tx.send(Err(e))),
        Request::Snapshot { tx } => drop(tx.send(Err(e))),
        Request::Shutdown { tx } => drop(tx.send(Ok(()))),
    }
}

/// Resolves at `at`; never without it.
async fn linger_end(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next message of the priority channel; never ready without one.
async fn recv_priority(
    rx: &mut Option<mpsc::Receiver<raft_core::Message>>,
) -> Option<raft_core::Message> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
