//! Carrying out one `Ready` by the contract: persist (asynchronously), send, hold what
//! must wait for the disk, apply, serve reads; and log compaction.

use super::{ApplyItem, Check, Cluster, Event, LIVENESS_MARK, Reply, Running};
use crate::invariants::Violation;
use crate::kv::KvCommand;
use crate::linearizability::{KvInput, KvOutput};
use crate::options::Mutation;
use crate::storage::WalRecord;
use crate::trace_line;
use raft_core::{Entry, EntryKind, MessageBody, NodeId, Role, SnapshotMeta};

impl Cluster {
    pub(super) fn handle_ready(&mut self, id: NodeId) -> Check {
        let now = self.now;
        let mutation = self.opts.mutation;
        let lag = self.cfg.node.apply_lag_max;
        let async_apply = lag > 0;
        let commit_recorded = self.commit_recorded;
        // How long the snapshot restore and the committed entries of this Ready wait for
        // the state machine.
        let delays = if async_apply {
            [self.rng.range(0, lag), self.rng.range(0, lag)]
        } else {
            [0, 0]
        };
        let Some(r) = self.running(id, None) else {
            return Ok(());
        };
        let rd = r
            .raw
            .ready()
            .map_err(|e| Violation::Panic(format!("ready: {e}")))?;
        let number = rd.number();
        let mut role_changed = false;
        if let Some(ss) = rd.soft_state {
            role_changed = ss.role != r.role;
            r.role = ss.role;
        }
        if let Some(hs) = rd.hard_state {
            role_changed |= hs.term != r.term;
            r.term = hs.term;
            r.vote = hs.vote;
        }
        let (role, term) = (r.role, r.term);
        // The configuration in force is the latest one in the log, and it is the one the
        // node counts quorums in.
        if let Some(meta) = &rd.snapshot {
            r.configs.restore(meta.index, meta.membership.clone());
        }
        r.configs.append(&rd.entries);
        // The log (and so the configuration) changes only with entries or a snapshot.
        let log_changed = rd.snapshot.is_some() || !rd.entries.is_empty();
        if (log_changed || rd.membership.is_some()) && r.configs.latest() != r.raw.membership() {
            return Err(Violation::WrongConfiguration {
                node: id,
                detail: format!(
                    "uses {:?}, its log says {:?}",
                    r.raw.membership(),
                    r.configs.latest()
                ),
            });
        }
        let mut counted = (r.role == Role::Leader
            && rd.hard_state.is_some_and(|hs| hs.commit > commit_recorded))
        .then(|| r.configs.latest().clone());
        let mut records = Vec::new();
        let mut restored = None;
        let mut apply_at = None;
        if let Some(meta) = rd.snapshot.clone() {
            let data = match r.incoming_snapshot.take() {
                Some((m, d)) if m.index == meta.index && m.term == meta.term => d,
                _ => {
                    return Err(Violation::Panic(format!(
                        "n{id} installs snapshot {}/{} without having received its data",
                        meta.index, meta.term
                    )));
                }
            };
            if async_apply {
                // The state machine restores in order with the entries handed out before.
                let due = apply_due(r, now + delays[0]);
                r.apply_queue
                    .push_back((due, ApplyItem::Restore(meta.clone(), data.clone())));
                apply_at = Some(due);
            } else {
                r.sm = data.clone();
                r.sm.applied = meta.index;
                r.reported_applied = meta.index;
            }
            restored = Some((meta.index, meta.term));
            records.push(WalRecord::Snapshot(meta, data));
        }
        if !rd.entries.is_empty() {
            records.push(WalRecord::Entries(rd.entries.clone()));
        }
        if let Some(hs) = rd.hard_state {
            records.push(WalRecord::HardState(hs));
        }
        // Mutation: acknowledge puts once the leader's own write of them is durable, before
        // any quorum has them (see `persisted`).
        if mutation == Some(Mutation::CommitWithoutQuorum) && role == Role::Leader {
            let mut early = Vec::new();
            for e in &rd.entries {
                if let Some(cmd) = KvCommand::decode(&e.data)
                    && matches!(cmd.input, KvInput::Put(_))
                    && r.waiting_writes.remove(&(cmd.client, cmd.seq))
                {
                    early.push((cmd.client, cmd.seq, e.index, e.term));
                }
            }
            if !early.is_empty() {
                r.early_acks.push_back((number, early));
            }
        }
        // Forwarded writes that came back dropped: their clients stop waiting.
        let mut abandoned = Vec::new();
        for e in &rd.dropped_proposals {
            if let Some(cmd) = KvCommand::decode(&e.data)
                && r.waiting_writes.remove(&(cmd.client, cmd.seq))
            {
                abandoned.push((cmd.client, cmd.seq));
            }
        }
        let mut messages = rd.messages;
        let mut persisted_messages = rd.persisted_messages;
        if mutation == Some(Mutation::DoubleVote) {
            let vote = r.vote;
            for m in messages.iter_mut().chain(persisted_messages.iter_mut()) {
                if let MessageBody::VoteResponse(v) = &mut m.body
                    && !v.pre_vote
                    && !v.granted
                    && m.term == term
                    && vote.is_some_and(|c| c != m.to)
                {
                    v.granted = true;
                }
            }
        }
        let must_wait = !records.is_empty() || !self.nodes[&id].disk.pending.is_empty();

        // Checks of what the node decided.
        if role_changed {
            if role == Role::Leader {
                self.leader_terms.insert(term);
                trace_line!(self.trace, now, "n{id} LEADER of term {term}");
                self.checker.on_leader(id, term)?;
            } else {
                self.checker.on_step_down(id);
            }
        }
        if let Some((index, term)) = restored {
            // A follower replacing a divergent tail: it holds another entry at the
            // snapshot's index, or its last entry is not the committed one there.
            if let Some(sh) = self.checker.shadow(id) {
                let last = sh.last();
                let diverges = (last >= index && sh.term(index) != Some(term))
                    || self
                        .checker
                        .committed_at(last)
                        .is_some_and(|(t, _)| sh.term(last) != Some(t));
                if diverges {
                    self.report.divergent_snapshots += 1;
                }
            }
            self.report.snapshots_installed += 1;
            trace_line!(self.trace, now, "n{id} installs snapshot {index}/{term}");
            self.checker.on_snapshot(id, index, term)?;
        }
        if let Some(first) = rd.entries.first() {
            trace_line!(
                self.trace,
                now,
                "n{id} append {}..={} t{}",
                first.index,
                first.index + rd.entries.len() as u64 - 1,
                rd.entries.last().map_or(0, |e| e.term)
            );
            self.checker.on_append(id, &rd.entries)?;
        }
        if let Some(hs) = rd.hard_state {
            trace_line!(
                self.trace,
                now,
                "n{id} hs t{} v{:?} c{}",
                hs.term,
                hs.vote,
                hs.commit
            );
            self.checker
                .on_commit(id, hs.commit, hs.term, role == Role::Leader)?;
            if let Some(m) = counted.take() {
                self.commit_recorded = hs.commit;
                self.commit_confs.insert(hs.commit, m);
            }
        }
        for (client, seq) in abandoned {
            self.reply(id, client, seq, Reply::Abandoned, None)?;
        }

        // Persist (asynchronously), send, hold what must wait for the disk.
        if must_wait {
            let delay = self
                .rng
                .range(self.cfg.node.min_disk_delay, self.cfg.node.max_disk_delay);
            let n = self.nodes.get_mut(&id).expect("running");
            let inc = n.incarnation;
            let done_at = n.disk.submit(number, now + delay, records);
            self.queue.push(done_at, Event::DiskDone(id, inc));
        }
        for m in messages {
            self.send(m);
        }
        if !persisted_messages.is_empty() {
            if !must_wait || mutation == Some(Mutation::AckBeforePersist) {
                for m in persisted_messages {
                    self.send(m);
                }
            } else if let Some(r) = self.running(id, None) {
                r.held.push_back((number, persisted_messages));
            }
        }
        if !must_wait {
            self.persisted(id, number)?;
        }

        // Apply (at once, or behind commit after a random delay, in order), then reads.
        let committed = rd.committed_entries;
        let read_states = rd.read_states;
        if async_apply {
            if !committed.is_empty() {
                let r = self.running(id, None).expect("running");
                let due = apply_due(r, now + delays[1]);
                r.apply_queue
                    .push_back((due, ApplyItem::Entries(committed)));
                apply_at = Some(due);
            }
        } else {
            self.apply_entries(id, committed)?;
        }
        if let Some(at) = apply_at {
            let inc = self.nodes[&id].incarnation;
            self.queue.push(at, Event::Apply(id, inc));
        }
        let Some(r) = self.running(id, None) else {
            return Ok(());
        };
        for rs in read_states {
            if let Some((client, seq, key)) = r.waiting_reads.remove(&rs.context) {
                r.ready_reads.push((rs.index, client, seq, key));
            }
        }
        self.serve_reads(id)?;
        self.maybe_compact(id);
        Ok(())
    }

    /// The state machine of `id` applies the work due by now.
    pub(super) fn on_apply(&mut self, id: NodeId, inc: u64) -> Check {
        let now = self.now;
        if self.nodes.get(&id).is_none_or(|n| n.incarnation != inc) {
            return Ok(());
        }
        loop {
            let Some(r) = self.running(id, Some(inc)) else {
                return Ok(());
            };
            if r.apply_queue.front().is_none_or(|(due, _)| *due > now) {
                break;
            }
            let (_, item) = r.apply_queue.pop_front().expect("checked");
            match item {
                ApplyItem::Entries(ents) => self.apply_entries(id, ents)?,
                ApplyItem::Restore(meta, data) => {
                    r.sm = data;
                    r.sm.applied = meta.index;
                    r.reported_applied = r.reported_applied.max(meta.index);
                }
            }
        }
        // Now and then the state machine makes its state durable (with the membership as of
        // its applied index), as raft-runtime's does: a restart resumes from there.
        let flush = self.cfg.node.sm_flush;
        if flush > 0.0 && self.rng.chance(flush) {
            let n = self.nodes.get_mut(&id).expect("running");
            if let Some(r) = n.run.as_ref()
                && r.apply_queue.is_empty()
            {
                n.sm_durable = Some((r.sm.clone(), r.raw.applied_membership().clone()));
            }
        }
        self.serve_reads(id)?;
        self.maybe_compact(id);
        self.drive(id)
    }

    /// Applies committed entries to `id`'s state machine, answers the clients waiting on
    /// them, and reports them applied.
    fn apply_entries(&mut self, id: NodeId, ents: Vec<Entry>) -> Check {
        let now = self.now;
        for e in ents {
            self.checker.on_apply(id, &e)?;
            if e.kind == EntryKind::Normal
                && e.data.as_ref() == LIVENESS_MARK
                && self.liveness_from > 0
            {
                if !self.liveness_done {
                    trace_line!(
                        self.trace,
                        now,
                        "liveness: write committed at {} after {} ms",
                        e.index,
                        now - self.liveness_from
                    );
                    self.liveness_index = Some(e.index);
                }
                self.liveness_done = true;
            }
            let r = self.running(id, None).expect("running");
            if e.index <= r.sm.applied {
                // Covered by a snapshot restored since it was handed out.
                continue;
            }
            if e.index != r.sm.applied + 1 {
                return Err(Violation::Panic(format!(
                    "n{id} handed entry {} to apply after {}",
                    e.index, r.sm.applied
                )));
            }
            match e.kind {
                EntryKind::ConfChange => {
                    r.sm.applied = e.index;
                    r.reported_applied = e.index;
                    let changed = r
                        .raw
                        .on_applied(e.index)
                        .map_err(|err| Violation::Panic(format!("on_applied: {err}")))?;
                    if let Some(m) = changed {
                        trace_line!(
                            self.trace,
                            now,
                            "n{id} applies conf change at {}: voters {:?} outgoing {:?} learners {:?}",
                            e.index,
                            m.voters,
                            m.voters_outgoing,
                            m.learners
                        );
                        self.confs.entry(e.index).or_insert(m);
                    }
                }
                EntryKind::Normal => {
                    let applied = r.sm.apply(e.index, &e.data);
                    if let Some((cmd, out)) = applied
                        && r.waiting_writes.remove(&(cmd.client, cmd.seq))
                    {
                        self.reply(
                            id,
                            cmd.client,
                            cmd.seq,
                            Reply::Done(out),
                            Some((e.index, e.term)),
                        )?;
                    }
                }
            }
        }
        let Some(r) = self.running(id, None) else {
            return Ok(());
        };
        let applied = r.sm.applied;
        if applied > r.reported_applied {
            r.reported_applied = applied;
            r.raw
                .on_applied(applied)
                .map_err(|e| Violation::Panic(format!("on_applied: {e}")))?;
        }
        Ok(())
    }

    /// Answers the reads of `id` whose index its state machine has reached.
    fn serve_reads(&mut self, id: NodeId) -> Check {
        let Some(r) = self.running(id, None) else {
            return Ok(());
        };
        let applied = r.sm.applied;
        let mut served = Vec::new();
        r.ready_reads.retain(|&(index, client, seq, key)| {
            if index <= applied {
                served.push((client, seq, KvOutput::Get(r.sm.get(key))));
                false
            } else {
                true
            }
        });
        for (client, seq, out) in served {
            self.reply(id, client, seq, Reply::Done(out), None)?;
        }
        Ok(())
    }

    /// Mutation `CommitWithoutQuorum`: the leader's own write of Ready `number` (and every
    /// earlier one) is durable: acknowledge the puts it carried.
    pub(super) fn early_acks(&mut self, id: NodeId, number: u64) -> Check {
        let mut acks = Vec::new();
        if let Some(r) = self.running(id, None) {
            while r.early_acks.front().is_some_and(|(n, _)| *n <= number) {
                acks.extend(r.early_acks.pop_front().expect("checked").1);
            }
        }
        for (client, seq, index, term) in acks {
            self.reply(
                id,
                client,
                seq,
                Reply::Done(KvOutput::PutOk),
                Some((index, term)),
            )?;
        }
        Ok(())
    }

    /// Compacts `id`'s log when enough applied entries follow its snapshot.
    pub(super) fn maybe_compact(&mut self, id: NodeId) {
        let every = self.cfg.ops.compact_after;
        if every == 0 {
            return;
        }
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(r) = n.run.as_mut() else {
            return;
        };
        let applied = r.sm.applied;
        // Only what is durable is compacted: with writes in flight (say, an installed
        // snapshot not yet on disk) the durable log may not hold what was applied; and
        // only with nothing left to apply (the applied membership is then the state
        // machine's).
        if !n.disk.pending.is_empty() || !r.apply_queue.is_empty() {
            return;
        }
        let mut log = n.disk.log.borrow_mut();
        if applied < log.snapshot.index + every || applied > log.last() {
            return;
        }
        let Some(term) = log.term_at(applied) else {
            return;
        };
        let meta = SnapshotMeta {
            index: applied,
            term,
            membership: r.raw.applied_membership().clone(),
        };
        log.compact_to(meta, r.sm.clone());
        drop(log);
        if r.raw.on_compacted(applied).is_ok() {
            self.report.compactions += 1;
            trace_line!(self.trace, self.now, "n{id} compacts to {applied}/{term}");
        }
    }
}

/// When work handed to `r`'s state machine at `at` is due: never before the work handed
/// out earlier (apply is in order).
fn apply_due(r: &Running, at: u64) -> u64 {
    r.apply_queue.back().map_or(at, |(due, _)| at.max(*due))
}
