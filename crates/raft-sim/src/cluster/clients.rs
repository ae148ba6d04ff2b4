//! Clients talking to nodes (proposals, ReadIndex reads, answers, timeouts), the
//! durability check of every acknowledged write, and the liveness phase.

use super::{Check, Cluster, Event, LIVENESS_MARK, Reply};
use crate::client::InFlight;
use crate::invariants::Violation;
use crate::kv::KvCommand;
use crate::linearizability::{KvInput, KvOutput};
use crate::options::Mutation;
use crate::swarm::TICK_MS;
use crate::trace_line;
use bytes::Bytes;
use raft_core::{ConfChange, Error as CoreError, Membership, NodeId, Role};
use std::collections::BTreeSet;

impl Cluster {
    // ---------------------------------------------------------------- clients

    pub(super) fn client_start(&mut self, c: u64) {
        let Some(op) = self.clients.start(c, self.now) else {
            return;
        };
        trace_line!(
            self.trace,
            self.now,
            "client c{c} #{} {:?} key {} -> n{}",
            op.seq,
            op.input,
            op.key,
            op.node
        );
        let d = self.rng.range(1, 3);
        self.schedule(d, Event::ClientArrive(c, Box::new(op)));
        let timeout = op.deadline - self.now;
        self.schedule(timeout, Event::ClientExpire(c, op.seq));
    }

    pub(super) fn client_arrive(&mut self, c: u64, op: InFlight) -> Check {
        let now = self.now;
        let stale_reads = self.opts.mutation == Some(Mutation::StaleLocalRead);
        let paused = self
            .nodes
            .get(&op.node)
            .is_some_and(|n| n.paused_until > now);
        if paused {
            return Ok(());
        }
        let Some(r) = self.running(op.node, None) else {
            return Ok(());
        };
        let result = match op.input {
            KvInput::Get if stale_reads && r.role == Role::Leader => {
                let v = r.sm.get(op.key);
                let applied = r.sm.applied;
                trace_line!(
                    self.trace,
                    now,
                    "n{} serves a local read at {applied} (mutation)",
                    op.node
                );
                return self.reply(op.node, c, op.seq, Reply::Done(KvOutput::Get(v)), None);
            }
            KvInput::Get => {
                let ctx = read_context(c, op.seq);
                let res = r.raw.read_index(ctx.clone());
                if res.is_ok() {
                    r.waiting_reads.insert(ctx, (c, op.seq, op.key));
                }
                res
            }
            input => {
                let cmd = KvCommand {
                    client: c,
                    seq: op.seq,
                    key: op.key,
                    input,
                };
                let res = r.raw.propose(cmd.encode());
                if res.is_ok() {
                    r.waiting_writes.insert((c, op.seq));
                }
                res
            }
        };
        match result {
            Ok(()) => self.drive(op.node),
            Err(CoreError::NotLeader { leader }) => {
                self.reply(op.node, c, op.seq, Reply::Refused(leader), None)
            }
            Err(_) => self.reply(op.node, c, op.seq, Reply::Refused(None), None),
        }
    }

    /// Node `from` answers client `c`. A write acknowledgement (`entry` = its index and
    /// term) is checked to be durable on a quorum first.
    pub(super) fn reply(
        &mut self,
        from: NodeId,
        c: u64,
        seq: u64,
        reply: Reply,
        entry: Option<(u64, u64)>,
    ) -> Check {
        if let Some((index, term)) = entry {
            self.check_durable(index, term)?;
        }
        if matches!(reply, Reply::Done(_)) {
            self.clients.set_target(c, from);
        }
        let d = self.rng.range(1, 3);
        self.schedule(d, Event::ClientReply(c, seq, reply));
        Ok(())
    }

    /// Nothing acknowledged before it is durable on a quorum: the entry at (`index`,
    /// `term`) must be on the disks of a majority of the configuration the leader that
    /// committed it counted (the latest in its log, checked against the simulator's model
    /// after every `Ready`), or, when no leader reported that commit, of the configuration
    /// in force at the entry.
    pub(super) fn check_durable(&self, index: u64, term: u64) -> Check {
        let durable: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                let d = n.disk.log.borrow();
                d.snapshot.index >= index || d.term_at(index) == Some(term)
            })
            .map(|(id, _)| *id)
            .collect();
        let counted = match self.commit_confs.range(index..).next() {
            Some((_, m)) => m,
            None => self
                .confs
                .range(..=index)
                .next_back()
                .map(|(_, m)| m)
                .expect("the initial configuration is at 0"),
        };
        if has_quorum(counted, &durable) {
            Ok(())
        } else {
            Err(Violation::AckedNotDurable {
                index,
                durable_on: durable.into_iter().collect(),
            })
        }
    }

    pub(super) fn client_reply(&mut self, c: u64, seq: u64, reply: Reply) {
        let ids = self.started_ids();
        let accepted = match reply {
            Reply::Done(out) => {
                let ok = self.clients.complete(c, seq, self.now, out);
                if ok {
                    trace_line!(self.trace, self.now, "client c{c} #{seq} -> {out:?}");
                }
                ok
            }
            Reply::Abandoned => {
                let waiting = self.clients.in_flight(c).is_some_and(|op| op.seq == seq);
                if waiting {
                    trace_line!(
                        self.trace,
                        self.now,
                        "client c{c} #{seq} abandoned (dropped)"
                    );
                    self.clients.abandon(c, seq, &ids);
                }
                waiting
            }
            Reply::Refused(hint) => {
                let waiting = self.clients.in_flight(c).is_some_and(|op| op.seq == seq);
                if waiting {
                    trace_line!(
                        self.trace,
                        self.now,
                        "client c{c} #{seq} refused (leader hint {hint:?})"
                    );
                    self.clients.refuse(c, seq, hint, &ids);
                }
                waiting
            }
        };
        if accepted {
            let think = self.clients.think_time();
            self.schedule(think, Event::ClientStart(c));
        }
    }

    // ---------------------------------------------------------------- liveness

    pub(super) fn faults_end(&mut self) -> Check {
        self.faults_active = false;
        trace_line!(
            self.trace,
            self.now,
            "FAULTS END: healing, restarting, resuming"
        );
        self.net.heal();
        let mut f = self.net.faults().clone();
        f.drop = 0.0;
        f.duplicate = 0.0;
        self.net.set_faults(f);
        for id in self.started_ids() {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.paused_until = 0;
            }
            if self.nodes[&id].run.is_none() {
                self.start_node(id, false)?;
            }
        }
        self.liveness_from = self.now;
        self.schedule(1, Event::LivenessProbe);
        let bound = self.opts.liveness_bound_ticks * TICK_MS;
        self.schedule(bound, Event::LivenessDeadline);
        Ok(())
    }

    /// Every 100 ms of the liveness phase: a probe write until one commits, and, as an
    /// operator would, the leave of an explicit joint configuration.
    pub(super) fn liveness_probe(&mut self) -> Check {
        if let Some(l) = self.leader() {
            let done = self.liveness_done;
            if let Some(r) = self.running(l, None) {
                if !done {
                    let _ = r.raw.propose(Bytes::from_static(LIVENESS_MARK));
                }
                let m = r.raw.membership();
                if m.is_joint() && !m.auto_leave {
                    let _ = r.raw.propose_conf_change(ConfChange::default());
                }
            }
            self.drive(l)?;
        }
        self.schedule(10 * TICK_MS, Event::LivenessProbe);
        Ok(())
    }

    /// The end of the liveness bound: a write committed, and the cluster settled: a leader
    /// whose configuration is not joint and has no change pending, and every member of it
    /// has applied the probe write.
    pub(super) fn liveness_deadline(&mut self) -> Check {
        let bound = self.opts.liveness_bound_ticks;
        let fail = |why: String| {
            Err(Violation::NoLiveness(format!(
                "{why} within {bound} ticks of the faults stopping"
            )))
        };
        let leader = self.leader();
        let Some(probe) = self.liveness_index else {
            return fail(format!("no write committed (leader: {leader:?})"));
        };
        let Some(l) = leader else {
            return fail(format!("no leader at the end (write committed at {probe})"));
        };
        let r = self.nodes[&l].run.as_ref().expect("the leader runs");
        let m = r.raw.membership().clone();
        if m.is_joint() || &m != r.raw.applied_membership() {
            return fail(format!(
                "membership change not completed on leader n{l}: in force {m:?}, applied {:?}",
                r.raw.applied_membership()
            ));
        }
        for id in m.members() {
            let applied = self
                .nodes
                .get(&id)
                .and_then(|n| n.run.as_ref())
                .map(|r| r.sm.applied);
            if applied.is_none_or(|a| a < probe) {
                return fail(format!(
                    "member n{id} did not catch up (applied {applied:?}, probe write at {probe})"
                ));
            }
        }
        Ok(())
    }
}

/// The ReadIndex context of a client read.
fn read_context(client: u64, seq: u64) -> Bytes {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&client.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    Bytes::from(v)
}

/// True when `nodes` hold a majority of `m`'s voters (of both halves when joint).
fn has_quorum(m: &Membership, nodes: &BTreeSet<NodeId>) -> bool {
    let majority = |set: &BTreeSet<NodeId>| {
        set.is_empty() || set.iter().filter(|id| nodes.contains(id)).count() * 2 > set.len()
    };
    !m.voters.is_empty() && majority(&m.voters) && majority(&m.voters_outgoing)
}
