//! Carrying out a `Ready` by the contract, and following what the log, the apply thread
//! and snapshot transfers report back.

use super::{Group, InFlight};
use crate::apply::{ApplyJob, Event};
use crate::envelope;
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;
use crate::storage::{LogStore, LogWrite};
use crate::transport::Transport;
use metrics::{counter, gauge};
use raft_core::{EntryKind, Message, MessageBody, Role, SnapshotMeta, SoftState, confchange};
use raft_metrics::runtime as m;
use std::sync::atomic::Ordering;

impl<SM: StateMachine, S: LogStore, T: Transport> Group<SM, S, T> {
    /// Takes one `Ready` and carries it out (without waiting on the disk or the network).
    pub(crate) fn handle_ready(&mut self) -> Result<()> {
        let mut rd = self.raw.ready()?;
        let number = rd.number();
        // A configuration takes effect once in the log: reach its new members before the
        // messages to them go out.
        if rd.membership.is_some() {
            let before = self.peers.clone();
            self.sync_peers();
            let added: Vec<raft_core::NodeId> = self.peers.difference(&before).copied().collect();
            self.peers_early.extend(added);
        }

        // Send: these may leave before the writes (the leader replicates while it writes).
        for msg in std::mem::take(&mut rd.messages) {
            self.send(msg);
        }
        if let Some(hs) = rd.hard_state {
            if hs.term != self.term {
                self.term = hs.term;
                self.stats.term.store(hs.term, Ordering::Relaxed);
                gauge!(m::TERM).set(hs.term as f64);
            }
            if hs.commit != self.commit {
                self.commit = hs.commit;
                self.stats.commit.store(hs.commit, Ordering::Relaxed);
                gauge!(m::COMMIT_INDEX).set(hs.commit as f64);
            }
        }

        // Persist: submit and move on; completion comes back as an event.
        let mut waits = 0u8;
        let mut restore = false;
        let mut messages = std::mem::take(&mut rd.persisted_messages);
        if let Some(hs) = rd.hard_state
            && rd.entries.is_empty()
            && rd.snapshot.is_none()
            && hs.term == self.written_hard_state.term
            && hs.vote == self.written_hard_state.vote
        {
            // Only the commit index moved: Raft may lose it in a crash (the leader tells it
            // again), so it costs no fsync and nothing waits for it.
            self.raw.log_mut().save_commit(hs)?;
            self.written_hard_state = hs;
            counter!(m::LOG_WRITES_DEFERRED).increment(1);
        } else if rd.must_persist() {
            if let Some(hs) = rd.hard_state {
                self.written_hard_state = hs;
            }
            let snapshot = rd.snapshot.take();
            if let Some(meta) = &snapshot {
                self.handed_membership = meta.membership.clone();
                self.send_apply(ApplyJob::Restore {
                    meta: meta.clone(),
                    number,
                })?;
                waits += 1;
                restore = true;
            }
            let write = LogWrite {
                snapshot,
                entries: std::mem::take(&mut rd.entries),
                hard_state: rd.hard_state,
            };
            // The messages that wait for this write leave from its completion (the log's
            // writer thread) rather than after a trip through this loop: a follower's
            // append answer reaches the leader one thread hand-off sooner. That keeps their
            // order only when nothing before them waits for anything but earlier log writes
            // (which complete first, in submission order) and no earlier `Ready` holds
            // messages for this loop to send: otherwise they wait here as before (and
            // snapshot streams always start from here).
            let early = if restore
                || self
                    .in_flight
                    .iter()
                    .any(|f| f.restore || !f.messages.is_empty())
                || messages
                    .iter()
                    .any(|m| matches!(m.body, MessageBody::InstallSnapshot(_)))
            {
                Vec::new()
            } else {
                for msg in &messages {
                    self.observe.sent(msg);
                }
                std::mem::take(&mut messages)
            };
            let transport = self.transport.clone();
            let events = self.events_tx.clone();
            self.raw.log_mut().write(
                write,
                Box::new(move |result| {
                    if result.is_ok() {
                        for msg in early {
                            transport.send(msg);
                        }
                    }
                    let _ = events.send(Event::Persisted { number, result });
                }),
            )?;
            self.stats.log_writes.fetch_add(1, Ordering::Relaxed);
            counter!(m::LOG_WRITES).increment(1);
            waits += 1;
        }
        self.in_flight.push_back(InFlight {
            number,
            waits,
            restore,
            messages,
        });
        self.release_persisted()?;

        // Apply: committed entries go to the apply thread, with their clients attached.
        let committed = std::mem::take(&mut rd.committed_entries);
        let handed = !committed.is_empty();
        if handed {
            self.hand_to_apply(committed)?;
        }
        // After the committed entries took their clients: what is left lost its leader.
        if let Some(ss) = rd.soft_state {
            self.on_soft_state(ss);
        }
        if !rd.dropped_proposals.is_empty() {
            self.on_dropped(std::mem::take(&mut rd.dropped_proposals));
        }
        // Read: each read waits for the state machine to reach its index.
        let new_reads = !rd.read_states.is_empty();
        for rs in std::mem::take(&mut rd.read_states) {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.context.as_ref()) else {
                continue;
            };
            let ctx = u64::from_le_bytes(ctx);
            if let Some((_, txs)) = self.reads_issued.remove(&ctx) {
                if self.fresh_reads.contains(&ctx) {
                    counter!(m::LEASE_READS).increment(txs.len() as u64);
                }
                self.reads_ready.push((rs.index, txs));
            }
        }
        self.release_reads();
        // A read waits for entries held back: they go now, those handed now or before. (On
        // a lagging follower a read's index can arrive before the entries, so this is
        // checked whenever either comes.)
        let applied = self.inline_applied.unwrap_or(self.applied);
        if (handed || new_reads)
            && !self.lingering.is_empty()
            && self.reads_ready.iter().any(|(index, _)| *index > applied)
        {
            self.flush_lingering()?;
        }
        // What this loop applied itself, reported as the apply thread's progress is.
        if let Some(index) = self.inline_applied.take() {
            self.on_applied(index)?;
        }
        Ok(())
    }

    /// Sends a message, streaming snapshots in their own task.
    pub(crate) fn send(&self, msg: Message) {
        self.observe.sent(&msg);
        if let MessageBody::InstallSnapshot(_) = &msg.body {
            let to = msg.to;
            let fut = self.transport.send_snapshot(msg);
            let events = self.events_tx.clone();
            tokio::spawn(async move {
                let ok = match fut.await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(peer = to, error = %e, "snapshot transfer failed");
                        false
                    }
                };
                let _ = events.send(Event::SnapshotSent { to, ok });
            });
        } else {
            self.transport.send(msg);
        }
    }

    /// Acknowledges the `Ready`s whose writes are all durable, in order, then sends the
    /// messages that waited for them.
    fn release_persisted(&mut self) -> Result<()> {
        let mut last = None;
        let mut msgs = Vec::new();
        while self.in_flight.front().is_some_and(|f| f.waits == 0) {
            let f = self.in_flight.pop_front().expect("checked");
            last = Some(f.number);
            msgs.extend(f.messages);
        }
        if let Some(n) = last {
            self.raw.on_persisted(n)?;
            for msg in msgs {
                self.send(msg);
            }
        }
        Ok(())
    }

    fn complete_write(&mut self, number: u64) -> Result<()> {
        if let Some(f) = self.in_flight.iter_mut().find(|f| f.number == number) {
            f.waits = f.waits.saturating_sub(1);
        }
        self.release_persisted()
    }

    /// Follows a change of role or leader.
    fn on_soft_state(&mut self, ss: SoftState) {
        if ss.role != self.role {
            match ss.role {
                Role::PreCandidate => counter!(m::PRE_VOTES).increment(1),
                Role::Candidate => counter!(m::ELECTIONS).increment(1),
                Role::Leader => counter!(m::ELECTIONS_WON).increment(1),
                Role::Follower => {}
            }
        }
        if ss.role != self.role {
            gauge!(m::IS_LEADER).set(if ss.role == Role::Leader { 1.0 } else { 0.0 });
            tracing::info!(role = ?ss.role, leader = ?ss.leader, term = self.term, "role changed");
        }
        if ss.leader != self.leader {
            counter!(m::LEADER_CHANGES).increment(1);
            if self.leader.is_some() {
                self.on_leader_lost();
            }
            if let Some(new) = ss.leader {
                let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers)
                    .into_iter()
                    .partition(|(t, _)| *t == new);
                for (_, tx) in done {
                    let _ = tx.send(Ok(()));
                }
                self.transfers = rest;
            }
        }
        self.leader = ss.leader;
        self.role = ss.role;
        self.stats
            .leader
            .store(ss.leader.unwrap_or(0), Ordering::Relaxed);
        self.stats
            .is_leader
            .store(ss.role == Role::Leader, Ordering::Relaxed);
        self.retry_stalled();
        self.retry_deferred_conf_change();
    }

    /// Proposals this node forwarded came back not appended (the leader refused them, or
    /// their term was stale): their callers hear `ProposalDropped` at once instead of
    /// timing out. The peer transport does not duplicate messages, so the proposal was not
    /// appended and a retry is safe.
    fn on_dropped(&mut self, entries: Vec<raft_core::Entry>) {
        let mut failed = 0;
        for e in entries {
            match e.kind {
                EntryKind::Normal => {
                    let (origin, _) = envelope::unwrap(&e.data);
                    if let Some(o) = origin
                        && o.node == self.id
                        && o.incarnation == self.incarnation
                        && let Some(p) = self.proposals.remove(&o.request)
                    {
                        failed += 1;
                        let _ = p.waiter.tx.send(Err(Error::ProposalDropped(
                            "the leader did not append it".into(),
                        )));
                    }
                }
                EntryKind::ConfChange => {
                    let Ok(change) = confchange::decode(&e.data) else {
                        continue;
                    };
                    if self.conf.as_ref().is_some_and(|c| {
                        c.at.is_none() && c.committed.is_none() && c.change == change
                    }) && let Some(c) = self.conf.take()
                    {
                        let _ = c.tx.send(Err(Error::ProposalDropped(
                            "the leader did not append the change".into(),
                        )));
                    }
                }
            }
        }
        if failed > 0 {
            counter!(m::PROPOSALS_FAILED, "reason" => "dropped").increment(failed);
        }
    }

    /// The leader this node knew lost its leadership: what was sent to (or appended by)
    /// it and is not seen committed has an unknown outcome. Reads are simply retried.
    fn on_leader_lost(&mut self) {
        let stalled: std::collections::HashSet<u64> = self.stalled.iter().copied().collect();
        let lost: Vec<u64> = self
            .proposals
            .keys()
            .copied()
            .filter(|id| !stalled.contains(id))
            .collect();
        if !lost.is_empty() {
            counter!(m::PROPOSALS_FAILED, "reason" => "leader_changed")
                .increment(lost.len() as u64);
        }
        for id in lost {
            if let Some(p) = self.proposals.remove(&id) {
                let _ = p.waiter.tx.send(Err(Error::LeaderChanged));
            }
        }
        if self.conf.as_ref().is_some_and(|c| c.committed.is_none())
            && let Some(c) = self.conf.take()
        {
            let _ = c.tx.send(Err(Error::LeaderChanged));
        }
        for (_, (_, txs)) in self.reads_issued.drain() {
            self.reads_queued.extend(txs);
        }
    }

    /// Answers the reads whose index the state machine has applied.
    pub(crate) fn release_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = waiting;
        // Counted before the clients are answered, so that a client sees its own read.
        let served: usize = ready.iter().map(|(_, txs)| txs.len()).sum();
        counter!(m::READ_INDEX_READS).increment(served as u64);
        for (index, txs) in ready {
            for tx in txs {
                let _ = tx.send(Ok(index));
            }
        }
    }

    pub(crate) fn on_event(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Persisted { number, result } => {
                result.map_err(Error::Storage)?;
                self.complete_write(number)?;
            }
            Event::Restored {
                number,
                index,
                result,
            } => {
                result.map_err(Error::StateMachine)?;
                self.applied = self.applied.max(index);
                // The log now starts after the snapshot: count the next threshold from it.
                self.snapshot_index = self.snapshot_index.max(index);
                self.log_bytes.restored(index);
                self.handed = self.handed.max(index);
                self.stats.applied.store(self.applied, Ordering::Relaxed);
                self.complete_write(number)?;
                // The snapshot carried a membership (e.g. the first one a joining node sees).
                self.sync_peers();
                self.release_reads();
            }
            Event::Applied { index } => self.on_applied(index)?,
            Event::ApplyFailed(msg) => return Err(Error::Fatal(msg)),
            Event::SnapshotSent { to, ok } => self.raw.report_snapshot(to, ok),
            Event::SnapshotBuilt { meta, result } => match result {
                Ok(()) => {
                    counter!(m::SNAPSHOTS_BUILT).increment(1);
                    let events = self.events_tx.clone();
                    let done = meta.clone();
                    self.raw.log_mut().compact(
                        meta,
                        Box::new(move |result| {
                            let _ = events.send(Event::Compacted { meta: done, result });
                        }),
                    )?;
                }
                Err(e) => {
                    self.snapshot_busy = false;
                    self.log_bytes.snapshot_failed();
                    tracing::warn!(index = meta.index, error = %e, "snapshot not built");
                    let msg = format!("snapshot at index {} not built: {e}", meta.index);
                    for tx in self.snapshot_waiters.drain(..) {
                        let _ = tx.send(Err(Error::StateMachine(msg.clone().into())));
                    }
                }
            },
            Event::Compacted { meta, result } => {
                self.snapshot_busy = false;
                match result {
                    Ok(()) => {
                        let index = meta.index;
                        self.snapshot_index = self.snapshot_index.max(index);
                        self.log_bytes.compacted(index);
                        self.raw.on_compacted(index)?;
                        tracing::info!(index, "log compacted");
                        for tx in self.snapshot_waiters.drain(..) {
                            let _ = tx.send(Ok(meta.clone()));
                        }
                    }
                    Err(e) => return Err(Error::Storage(e)),
                }
            }
        }
        Ok(())
    }

    fn on_applied(&mut self, index: u64) -> Result<()> {
        self.applied = index;
        self.log_bytes.applied(index);
        self.stats.applied.store(index, Ordering::Relaxed);
        gauge!(m::APPLIED_INDEX).set(index as f64);
        let changed = self.raw.on_applied(index)?;
        if let Some(mship) = &changed {
            tracing::info!(membership = ?mship, "membership changed");
            self.raw.log_mut().set_membership(mship.clone());
            self.sync_peers();
            // Peers added when their change entered the log: the transport may resolve
            // addresses from applied state (raftd's address book), so tell it again.
            let members = mship.members();
            let early: Vec<raft_core::NodeId> = self
                .peers_early
                .iter()
                .copied()
                .filter(|p| members.contains(p) && self.peers.contains(p))
                .collect();
            for p in early {
                self.peers_early.remove(&p);
                self.transport.add_peer(p);
            }
            self.peers_early.retain(|p| self.peers.contains(p));
        }
        if self
            .conf
            .as_ref()
            .is_some_and(|c| c.committed.is_some_and(|i| i <= index))
            && let Some(c) = self.conf.take()
        {
            let result = match changed {
                Some(mship) => Ok(mship),
                None => Err(Error::ConfChangeRejected(
                    "the change was refused when applied".into(),
                )),
            };
            let _ = c.tx.send(result);
        }
        self.retry_deferred_conf_change();
        self.release_reads();
        self.maybe_snapshot()
    }

    /// Tells the transport about members it does not know and members that left.
    pub(crate) fn sync_peers(&mut self) {
        let members = self.raw.peers();
        for p in members.iter().copied() {
            if p != self.id && self.peers.insert(p) {
                self.transport.add_peer(p);
            }
        }
        let gone: Vec<u64> = self
            .peers
            .iter()
            .copied()
            .filter(|p| !members.contains(p))
            .collect();
        for p in gone {
            self.peers.remove(&p);
            self.transport.remove_peer(p);
        }
    }

    /// Starts a snapshot once enough entries (or entry bytes) were applied since the last
    /// one.
    fn maybe_snapshot(&mut self) -> Result<()> {
        let threshold = self.cfg.snapshot_threshold;
        let by_count =
            threshold != 0 && self.applied >= self.snapshot_index.saturating_add(threshold);
        let max_bytes = self.cfg.snapshot_log_bytes;
        let by_bytes = max_bytes != 0 && self.log_bytes.since_snapshot() >= max_bytes;
        if !by_count && !by_bytes {
            return Ok(());
        }
        if by_bytes && !by_count && !self.snapshot_busy {
            tracing::debug!(
                bytes = self.log_bytes.since_snapshot(),
                max_bytes,
                "the applied log is over its byte size: snapshot"
            );
        }
        self.start_snapshot()
    }

    /// Starts a snapshot at the applied index now, unless one is being built already (its
    /// outcome then answers the waiters too) or nothing was applied since the last one
    /// (waiters are answered with that one at once).
    pub(crate) fn start_snapshot(&mut self) -> Result<()> {
        if self.snapshot_busy {
            return Ok(());
        }
        let index = self.applied;
        if index == self.snapshot_index
            && let Ok(meta) = self.raw.log().snapshot_meta()
            && meta.index == index
        {
            for tx in self.snapshot_waiters.drain(..) {
                let _ = tx.send(Ok(meta.clone()));
            }
            return Ok(());
        }
        let Ok(term) = self.raw.log().term(index) else {
            for tx in self.snapshot_waiters.drain(..) {
                let _ = tx.send(Err(Error::StateMachine(
                    format!("no term known for the applied index {index}").into(),
                )));
            }
            return Ok(());
        };
        self.snapshot_busy = true;
        self.log_bytes.snapshot_started(index);
        let meta = SnapshotMeta {
            index,
            term,
            membership: self.raw.applied_membership().clone(),
        };
        self.send_apply(ApplyJob::Snapshot { meta })
    }
}
