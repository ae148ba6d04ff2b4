//! Carrying out one `Ready` by the contract: persist (asynchronously), send, hold what
//! must wait for the disk, apply, serve reads; and log compaction.

use super::{Check, Cluster, Event, LIVENESS_MARK, Reply};
use crate::invariants::Violation;
use crate::kv::KvCommand;
use crate::linearizability::{KvInput, KvOutput};
use crate::run::Mutation;
use crate::storage::WalRecord;
use crate::trace_line;
use raft_core::{EntryKind, MessageBody, NodeId, Role, SnapshotMeta};

impl Cluster {
    pub(super) fn handle_ready(&mut self, id: NodeId) -> Check {
        let now = self.now;
        let mutation = self.opts.mutation;
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
        if r.configs.latest() != r.raw.membership() {
            return Err(Violation::WrongConfiguration {
                node: id,
                detail: format!(
                    "uses {:?}, its log says {:?}",
                    r.raw.membership(),
                    r.configs.latest()
                ),
            });
        }
        let counted = r.configs.latest().clone();
        let mut records = Vec::new();
        let mut restored = None;
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
            r.sm = data.clone();
            r.sm.applied = meta.index;
            r.reported_applied = meta.index;
            // Reads waiting for an index the snapshot jumped over can be served now.
            restored = Some((meta.index, meta.term));
            records.push(WalRecord::Snapshot(meta, data));
        }
        if !rd.entries.is_empty() {
            records.push(WalRecord::Entries(rd.entries.clone()));
        }
        if let Some(hs) = rd.hard_state {
            records.push(WalRecord::HardState(hs));
        }
        // Mutation: acknowledge puts at the leader's local append.
        let mut early_acks = Vec::new();
        if mutation == Some(Mutation::CommitWithoutQuorum) && role == Role::Leader {
            for e in &rd.entries {
                if let Some(cmd) = KvCommand::decode(&e.data)
                    && matches!(cmd.input, KvInput::Put(_))
                    && r.waiting_writes.remove(&(cmd.client, cmd.seq))
                {
                    early_acks.push((cmd.client, cmd.seq, e.index, e.term));
                }
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
            self.checker.on_commit(id, hs.commit, hs.term)?;
            if role == Role::Leader && hs.commit > self.commit_recorded {
                self.commit_recorded = hs.commit;
                self.commit_confs.insert(hs.commit, counted);
            }
        }
        for (client, seq) in abandoned {
            self.reply(id, client, seq, Reply::Abandoned, None)?;
        }
        for (client, seq, index, term) in early_acks {
            let ack = Reply::Done(KvOutput::PutOk);
            self.reply(id, client, seq, ack, Some((index, term)))?;
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

        // Apply.
        for e in rd.committed_entries {
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
                }
                self.liveness_done = true;
            }
            let r = self.running(id, None).expect("running");
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

        // Reads.
        for rs in rd.read_states {
            if let Some((client, seq, key)) = r.waiting_reads.remove(&rs.context) {
                r.ready_reads.push((rs.index, client, seq, key));
            }
        }
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
        self.maybe_compact(id);
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
        // snapshot not yet on disk) the durable log may not hold what was applied.
        if !n.disk.pending.is_empty() {
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
