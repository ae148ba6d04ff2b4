//! Client requests inside the loop: batching proposals into one core call, issuing one
//! ReadIndex round for all waiting reads, membership changes, transfers and status.

use super::{ConfWaiter, Group, Proposal, ShutdownTx};
use crate::apply::Waiter;
use crate::error::{Error, Result};
use crate::request::Request;
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::transport::Transport;
use bytes::Bytes;
use metrics::{counter, histogram};
use raft_core::Role;
use raft_metrics::runtime as m;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

impl<SM: StateMachine, S: LogStore, T: Transport> Group<SM, S, T> {
    /// Handles `first` and the requests queued behind it, taken from `more` (called with
    /// whether proposals may be taken now, see [`Group::apply_lagging`]; `None` when nothing
    /// more is queued): proposals are collected into one batch (one `Ready`, one log
    /// write). A shutdown ends the batch and is returned for the driver to carry out.
    pub(crate) fn on_requests(
        &mut self,
        first: Request<SM>,
        mut more: impl FnMut(bool) -> Option<Request<SM>>,
    ) -> Result<Option<ShutdownTx>> {
        let mut shutdown = None;
        let mut batch: Vec<(u64, Bytes)> = Vec::new();
        let mut reads = false;
        let mut next = Some(first);
        let limit = self.cfg.max_batch_proposals;
        while let Some(r) = next.take() {
            match r {
                Request::Propose { cmd, tx, since } => {
                    let (id, data) = self.wrap(&cmd);
                    self.proposals.insert(
                        id,
                        Proposal {
                            waiter: Waiter { tx, since },
                            stalled: None,
                        },
                    );
                    batch.push((id, data));
                }
                Request::ReadIndex { tx } => {
                    self.reads_queued.push(tx);
                    reads = true;
                }
                Request::ConfChange { change, tx } => self.conf_change(change, tx),
                Request::Transfer { target, tx } => {
                    if self.leader == Some(target) {
                        let _ = tx.send(Ok(()));
                    } else {
                        match self.raw.transfer_leader(target) {
                            Ok(()) => self.transfers.push((target, tx)),
                            Err(e) => {
                                let _ = tx.send(Err(self.core_error(e)));
                            }
                        }
                    }
                }
                Request::Campaign { tx } => {
                    let _ = tx.send(self.raw.campaign().map_err(Error::from));
                }
                Request::Status { tx } => {
                    let _ = tx.send(Ok(self.raw.status()));
                }
                Request::Reconfigure { config, tx } => {
                    let _ = tx.send(self.reconfigure(*config));
                }
                Request::Snapshot { tx } => {
                    self.snapshot_waiters.push(tx);
                    self.start_snapshot()?;
                }
                Request::Shutdown { tx } => {
                    shutdown = Some(tx);
                    break;
                }
            }
            if batch.len() >= limit {
                break;
            }
            next = more(!self.apply_lagging());
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            self.stats.proposals.fetch_add(n, Ordering::Relaxed);
            counter!(m::PROPOSALS).increment(n);
            histogram!(m::PROPOSAL_BATCH).record(n as f64);
            self.propose(batch);
        }
        if reads {
            self.issue_reads();
        }
        Ok(shutdown)
    }

    /// Hands a batch of wrapped proposals to the core (forwarded when this node follows).
    fn propose(&mut self, batch: Vec<(u64, Bytes)>) {
        let n = batch.len() as u64;
        let data: Vec<Bytes> = batch.iter().map(|(_, d)| d.clone()).collect();
        match self.raw.propose_batch(data) {
            Ok(()) => {}
            Err(raft_core::Error::NoLeader) => {
                // Held until a leader is known (or the client gives up).
                for (id, d) in batch {
                    if let Some(p) = self.proposals.get_mut(&id) {
                        p.stalled = Some(d);
                        self.stalled.push_back(id);
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                counter!(m::PROPOSALS_FAILED, "reason" => "dropped").increment(n);
                for (id, _) in batch {
                    if let Some(p) = self.proposals.remove(&id) {
                        let _ = p
                            .waiter
                            .tx
                            .send(Err(Error::ProposalDropped(reason.clone())));
                    }
                }
            }
        }
    }

    /// Proposes what waited for a leader, and issues waiting reads, once one is known.
    pub(crate) fn retry_stalled(&mut self) {
        if self.leader.is_none() {
            return;
        }
        if !self.stalled.is_empty() {
            let ids: Vec<u64> = self.stalled.drain(..).collect();
            let mut batch = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(p) = self.proposals.get_mut(&id)
                    && let Some(d) = p.stalled.take()
                {
                    batch.push((id, d));
                }
            }
            if !batch.is_empty() {
                self.propose(batch);
            }
        }
        if !self.reads_queued.is_empty() {
            self.issue_reads();
        }
    }

    /// One ReadIndex round for every queued read.
    pub(crate) fn issue_reads(&mut self) {
        if self.reads_queued.is_empty() {
            return;
        }
        let ctx = self.next_read_ctx;
        match self
            .raw
            .read_index(Bytes::copy_from_slice(&ctx.to_le_bytes()))
        {
            Ok(()) => {
                self.next_read_ctx += 1;
                counter!(m::READ_INDEX_ROUNDS).increment(1);
                if self.role == Role::Leader
                    && matches!(self.cfg.raft.read_mode, raft_core::ReadMode::Lease { .. })
                {
                    self.fresh_reads.push(ctx);
                }
                let txs = std::mem::take(&mut self.reads_queued);
                self.reads_issued
                    .insert(ctx, (std::time::Instant::now(), txs));
            }
            // Kept queued until a leader is known.
            Err(raft_core::Error::NoLeader) => {}
            Err(e) => {
                let msg = e.to_string();
                for tx in self.reads_queued.drain(..) {
                    let _ = tx.send(Err(Error::ProposalDropped(msg.clone())));
                }
            }
        }
    }

    fn conf_change(
        &mut self,
        change: raft_core::ConfChange,
        tx: oneshot::Sender<Result<raft_core::Membership>>,
    ) {
        if self
            .conf_deferred
            .as_ref()
            .is_some_and(|(_, tx)| tx.is_closed())
        {
            // Its caller gave up waiting (the previous change never got applied in time).
            self.conf_deferred = None;
        }
        if self.conf.is_some() || self.conf_deferred.is_some() {
            let _ = tx.send(Err(Error::ConfChangeRejected(
                "another membership change is in progress".into(),
            )));
            return;
        }
        let leader = self.role == Role::Leader;
        if !leader {
            if self.leader.is_none() {
                let _ = tx.send(Err(Error::NotLeader { leader_hint: None }));
                return;
            }
            // Forwarded to the leader, which refuses silently: catch what we can see here.
            if let Err(reason) = raft_core::confchange::apply(self.raw.membership(), &change) {
                let _ = tx.send(Err(Error::ConfChangeRejected(reason)));
                return;
            }
        }
        if leader && self.raw.pending_conf_index() > self.applied {
            // The previous change is in the log but not applied here yet (a member that
            // applied it first may already have answered its client). Raft takes one change
            // at a time: hold this one until that one is applied, rather than refuse it.
            self.conf_deferred = Some((change, tx));
            return;
        }
        match self.raw.propose_conf_change(change.clone()) {
            Ok(()) => {
                let at = leader.then(|| self.last_entry());
                self.conf = Some(ConfWaiter {
                    at,
                    change,
                    committed: None,
                    tx,
                });
            }
            Err(e) => {
                let _ = tx.send(Err(self.core_error(e)));
            }
        }
    }

    /// Proposes the deferred membership change once nothing holds it back any more: the
    /// previous change is applied, or this node is no longer the leader (then it goes the
    /// way of any change made on a follower). Dropped when its caller gave up waiting.
    pub(crate) fn retry_deferred_conf_change(&mut self) {
        let ready = self.role != Role::Leader || self.raw.pending_conf_index() <= self.applied;
        if ready && let Some((change, tx)) = self.conf_deferred.take() {
            if tx.is_closed() {
                return;
            }
            self.conf_change(change, tx);
        }
    }

    /// Maps a core refusal to the runtime's error.
    fn core_error(&self, e: raft_core::Error) -> Error {
        match e {
            raft_core::Error::NoLeader => Error::NotLeader { leader_hint: None },
            raft_core::Error::NotLeader { leader } => Error::NotLeader {
                leader_hint: leader,
            },
            raft_core::Error::ConfChangeRejected(r) => Error::ConfChangeRejected(r),
            raft_core::Error::ProposalDropped(r) => Error::ProposalDropped(r.into()),
            e => Error::Raft(e),
        }
    }
}
