//! One Raft group: the `RawNode` and everything the runtime keeps about it (waiting clients,
//! `Ready`s in flight, what was handed to be applied, snapshot bookkeeping), with the logic
//! that feeds it and carries out its `Ready`s. It owns no channel receiver and no timer:
//! the [driver](super::driver) receives the inputs and calls it.
//!
//! The driver's calls, one turn at a time: an input ([`Group::tick`], [`Group::step`],
//! [`Group::report_unreachable`], [`Group::on_requests`], [`Group::on_event`],
//! [`Group::flush_lingering`] when [`Group::linger_deadline`] passes), then
//! [`Group::process_ready`]. The group never waits: what it starts elsewhere (log writes,
//! apply jobs, snapshot transfers) reports back through [`Outlets::events`] as an
//! [`Event`] that the driver hands to [`Group::on_event`].
//!
//! `ready` carries out `Ready`s and follows what the log and the state machine report,
//! `handing` hands committed entries over to be applied, `requests` turns client requests
//! into core calls and keeps the waiting clients, `tuning` applies new settings.

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
use crate::handle::Stats;
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::transport::Transport;
use bytes::Bytes;
use metrics::counter;
use raft_core::{Membership, NodeId, RawNode, Role, SnapshotMeta};
use raft_metrics::runtime as m;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

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

/// The caller of `RaftHandle::shutdown`, waiting for the node to stop.
pub(crate) type ShutdownTx = oneshot::Sender<Result<()>>;

/// Where a group's work leaves it for other threads and tasks. Today each node has one of
/// each; a multi-raft driver would share them between its groups (one transport whose
/// messages carry a group id, one completion channel with events tagged by group, an
/// apply pool instead of a thread per group).
pub(crate) struct Outlets<SM: StateMachine, T> {
    /// The peers' network.
    pub transport: Arc<T>,
    /// Completions (log writes, applies, restores, snapshot captures and transfers) back
    /// to the driver, which hands them to [`Group::on_event`].
    pub events: mpsc::UnboundedSender<Event>,
    /// The apply thread's job queue.
    pub apply: std::sync::mpsc::Sender<ApplyJob<SM>>,
    /// The state machine, shared with the apply thread.
    pub sm: apply::SharedSm<SM>,
    /// Jobs sent to the apply thread and not finished yet.
    pub apply_queued: apply::Queued,
    /// Set when the node stops: the apply thread drops what is queued.
    pub stopping: Arc<AtomicBool>,
}

/// What the group starts from, as recovered from the log and the state machine.
pub(crate) struct Recovered {
    /// The state machine's applied index.
    pub applied: u64,
    /// The index of the log's snapshot.
    pub snapshot_index: u64,
    /// The hard state the log holds.
    pub hard_state: raft_core::HardState,
    /// This runtime's incarnation (see [`envelope`]).
    pub incarnation: u64,
}

/// One Raft group's state.
pub(crate) struct Group<SM: StateMachine, S: LogStore, T: Transport> {
    pub id: NodeId,
    pub cfg: RuntimeConfig,
    pub raw: RawNode<S>,
    pub transport: Arc<T>,
    pub events_tx: mpsc::UnboundedSender<Event>,
    pub apply_tx: std::sync::mpsc::Sender<ApplyJob<SM>>,
    /// The state machine, shared with the apply thread (see [`apply`]).
    pub sm: apply::SharedSm<SM>,
    /// Jobs sent to the apply thread and not finished yet.
    pub apply_queued: apply::Queued,
    pub apply_metrics: apply::ApplyMetrics,
    /// The index this group applied itself during the current `Ready` (reported to the core
    /// once the `Ready` is carried out).
    pub inline_applied: Option<u64>,
    /// Committed entries no client of this node waits for, held back (up to
    /// `apply_linger`) so that one state-machine write covers several batches.
    pub lingering: Vec<crate::state_machine::Committed>,
    /// When the entries held back go to be applied anyway (the driver waits for it).
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
    /// log but not applied here yet: proposed once it is (see `Group::conf_change`).
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
    pub observe: observe::GroupMetrics,
    /// Read contexts issued in this turn (since the last [`Group::process_ready`]) by this
    /// node as a lease-mode leader: answered within the same turn means answered from the
    /// lease, with no quorum round.
    pub fresh_reads: Vec<u64>,
    pub stats: Arc<Stats>,
}

impl<SM: StateMachine, S: LogStore, T: Transport> Group<SM, S, T> {
    /// A group around `raw`, recovered as `from`: publishes its starting state to `stats`
    /// and the metrics, and tells the transport about its peers.
    pub(crate) fn new(
        cfg: RuntimeConfig,
        raw: RawNode<S>,
        out: Outlets<SM, T>,
        from: Recovered,
        stats: Arc<Stats>,
    ) -> Self {
        let id = cfg.raft.id;
        let applied = from.applied;
        stats
            .request_timeout_ns
            .store(tuning::duration_ns(cfg.request_timeout), Ordering::Relaxed);
        stats.applied.store(applied, Ordering::Relaxed);
        let status = raw.status();
        stats.term.store(status.term, Ordering::Relaxed);
        stats.commit.store(status.commit, Ordering::Relaxed);
        metrics::gauge!(m::TERM).set(status.term as f64);
        metrics::gauge!(m::COMMIT_INDEX).set(status.commit as f64);
        metrics::gauge!(m::APPLIED_INDEX).set(applied as f64);
        metrics::gauge!(m::IS_LEADER).set(0.0);
        tuning::publish_timing(&cfg);
        let mut peers = BTreeSet::new();
        for p in raw.peers() {
            if p != id {
                out.transport.add_peer(p);
                peers.insert(p);
            }
        }
        Self {
            id,
            raw,
            transport: out.transport,
            events_tx: out.events,
            apply_tx: out.apply,
            sm: out.sm,
            apply_queued: out.apply_queued,
            apply_metrics: apply::ApplyMetrics::new(),
            inline_applied: None,
            lingering: Vec::new(),
            linger_until: None,
            stopping: out.stopping,
            incarnation: from.incarnation,
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
            snapshot_index: from.snapshot_index,
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
            written_hard_state: from.hard_state,
            peers,
            peers_early: BTreeSet::new(),
            observe: observe::GroupMetrics::new(),
            fresh_reads: Vec::new(),
            stats,
            cfg,
        }
    }

    /// One tick of the logical clock.
    pub(crate) fn tick(&mut self) -> Result<()> {
        self.raw.tick().map_err(Error::from)
    }

    /// True while the state machine is so far behind that new proposals wait (the driver
    /// stops draining the proposal queue meanwhile).
    pub(crate) fn apply_lagging(&self) -> bool {
        self.handed.saturating_sub(self.applied) > self.cfg.max_apply_lag
    }

    /// When the committed entries held back must go to be applied (then the driver calls
    /// [`Group::flush_lingering`]); `None` while nothing is held back.
    pub(crate) fn linger_deadline(&self) -> Option<tokio::time::Instant> {
        self.linger_until
    }

    /// The most inbound messages to step in one turn.
    pub(crate) fn max_batch_messages(&self) -> usize {
        self.cfg.max_batch_messages
    }

    /// Hands out and carries out `Ready`s until the core has nothing more (at most 8 per
    /// call, so other inputs get their turn); this ends the driver's turn.
    pub(crate) fn process_ready(&mut self) -> Result<()> {
        let mut rounds = 0;
        while self.raw.has_ready() && rounds < 8 {
            self.handle_ready()?;
            rounds += 1;
        }
        self.fresh_reads.clear();
        Ok(())
    }

    /// Steps a message from a peer (or a local one: `from` 0 or this node).
    pub(crate) fn step(&mut self, msg: raft_core::Message) -> Result<()> {
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

    /// The transport found `peer` unreachable.
    pub(crate) fn report_unreachable(&mut self, peer: NodeId) {
        self.raw.report_unreachable(peer);
    }

    /// Periodic clean-up: forget clients that gave up, retry what waits for a leader.
    pub(crate) fn housekeeping(&mut self) {
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

    /// Stopping, first step: fails every client this group holds with `err()`.
    pub(crate) fn fail_waiting(&mut self, err: impl Fn() -> Error) {
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
    }

    /// Stopping, last step: stops the apply thread (entries queued for applying are
    /// dropped: their clients see `Shutdown`) and flushes the log, within a bounded time.
    pub(crate) async fn close(&mut self) -> Result<()> {
        self.stopping.store(true, Ordering::Release);
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

#[cfg(test)]
mod tests;
