//! Node processes: their configuration, their drifting clocks, starting a node (fresh or
//! from its disk, the state machine resuming from its durable state or its snapshot) and
//! crashing it.

use super::{Check, Cluster, Event, Running, SimNode};
use crate::configs::ConfigModel;
use crate::invariants::{ShadowLog, Violation, entry_hash};
use crate::kv::KvState;
use crate::storage::{DurableLog, SimDisk};
use crate::swarm::TICK_MS;
use crate::trace_line;
use raft_core::{Config, NodeId, RawNode, ReadMode, Role};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl Cluster {
    pub(super) fn node_config(&self, id: NodeId, applied: u64) -> Config {
        let mut c = Config::new(id);
        c.heartbeat_ticks = self.cfg.heartbeat_ticks;
        c.election_timeout_base_ticks = self.cfg.election_ticks;
        c.jitter_max_ticks = self.cfg.election_ticks;
        c.pre_vote = self.cfg.pre_vote;
        c.check_quorum = self.cfg.check_quorum;
        c.lazy_commit = self.cfg.lazy_commit;
        c.max_entries_per_append = 64;
        c.max_inflight_msgs = 16;
        c.applied = applied;
        if self.cfg.ops.lease_reads {
            // A follower keeps its promise for at least (el - 1) of its ticks after the
            // heartbeat, the leader's lease lasts el - margin of its own: the margin covers
            // the tick phase and two drifts apart.
            let el = self.cfg.election_ticks;
            let drift = ((el - 1) * 2 * self.cfg.node.drift_ppm).div_ceil(1_000_000);
            c.read_mode = ReadMode::Lease {
                drift_margin_ticks: (2 + drift).min(el - 1),
            };
        }
        c
    }

    /// The delay to node `id`'s next tick on its own (drifting) clock.
    pub(super) fn tick_delay(&mut self, id: NodeId) -> u64 {
        let Some(n) = self.nodes.get_mut(&id) else {
            return TICK_MS;
        };
        if n.drift_ppm == 0 {
            return TICK_MS;
        }
        let period_us = (TICK_MS as i64 * 1000 * (1_000_000 + n.drift_ppm) / 1_000_000) as u64;
        let total = n.tick_carry_us + period_us;
        n.tick_carry_us = total % 1000;
        total / 1000
    }

    /// Starts node `id`: fresh (a new disk; `initial` says whether it is an initial
    /// voter or joins later) or, when its disk exists, restarted from what is durable.
    pub(super) fn start_node(&mut self, id: NodeId, initial: bool) -> Check {
        if !self.nodes.contains_key(&id) {
            // Every node is bootstrapped with the initial membership, as if it were a
            // snapshot at index 0: the log's configuration changes apply on top of it
            // (a node joining later learns the rest from the log or a snapshot).
            let _ = initial;
            let membership = self.confs[&0].clone();
            let bound = self.cfg.node.drift_ppm as i64;
            let drift_ppm = if bound > 0 {
                self.rng.range(0, 2 * bound as u64) as i64 - bound
            } else {
                0
            };
            self.nodes.insert(
                id,
                SimNode {
                    disk: SimDisk::new(DurableLog::new(membership, KvState::default())),
                    incarnation: 0,
                    run: None,
                    paused_until: 0,
                    drift_ppm,
                    tick_carry_us: 0,
                    sm_durable: None,
                    fail_next_write: false,
                },
            );
        }
        // The state machine resumes from its durable state when that is past the snapshot
        // (applied behind commit, as a restarted raft-runtime node), else from the snapshot.
        let resume = {
            let n = self.nodes.get_mut(&id).expect("inserted above");
            let mut d = n.disk.log.borrow_mut();
            d.applied_membership = None;
            match &n.sm_durable {
                Some((sm, m)) if sm.applied > d.snapshot.index && sm.applied <= d.last() => {
                    d.applied_membership = Some(m.clone());
                    Some(sm.clone())
                }
                _ => None,
            }
        };
        let (log, sm, shadow, commit, configs) = {
            let n = &self.nodes[&id];
            let d = n.disk.log.borrow();
            let shadow = ShadowLog {
                snap_index: d.snapshot.index,
                snap_term: d.snapshot.term,
                ents: d.entries.iter().map(|e| (e.term, entry_hash(e))).collect(),
            };
            let commit = d.hard_state.commit.max(d.snapshot.index);
            trace_line!(
                self.trace,
                self.now,
                "n{id} disk: snapshot {}/{}, log to {}/{}, hs {:?}",
                d.snapshot.index,
                d.snapshot.term,
                d.last(),
                d.term_at(d.last()).unwrap_or(0),
                d.hard_state
            );
            let configs =
                ConfigModel::from_log(d.snapshot.index, d.snapshot.membership.clone(), &d.entries);
            let sm = resume.unwrap_or_else(|| d.snapshot_data.clone());
            (n.disk.log.clone(), sm, shadow, commit, configs)
        };
        let applied = sm.applied.max(log.borrow().snapshot.index);
        let hs = log.borrow().hard_state;
        if applied < commit {
            self.report.restarts_behind_commit += 1;
        }
        let config = self.node_config(id, applied);
        let node_seed = self.rng.next_u64();
        let raw = match RawNode::new(config, log, node_seed) {
            Ok(r) => r,
            Err(e) => return Err(Violation::Panic(format!("n{id} failed to start: {e}"))),
        };
        self.checker.on_restart(id, shadow, commit);
        let n = self.nodes.get_mut(&id).expect("inserted above");
        n.incarnation += 1;
        n.paused_until = 0;
        let inc = n.incarnation;
        n.run = Some(Running {
            raw,
            sm,
            role: Role::Follower,
            term: hs.term,
            vote: hs.vote,
            waiting_writes: BTreeSet::new(),
            waiting_reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            held: VecDeque::new(),
            incoming_snapshot: None,
            reported_applied: applied,
            configs,
            apply_queue: VecDeque::new(),
            early_acks: VecDeque::new(),
        });
        trace_line!(
            self.trace,
            self.now,
            "n{id} start (incarnation {inc}, commit {commit}, applied {applied})"
        );
        // Ticks start at a random phase so nodes do not tick in lockstep.
        let phase = self.rng.range(1, TICK_MS);
        self.schedule(phase, Event::Tick(id, inc));
        self.drive(id)
    }

    /// Stops node `id`: its process state is lost, and its writes in flight too, except a
    /// random prefix of them when `torn` (what reached the platter before the end).
    pub(super) fn crash_node(&mut self, id: NodeId, torn: bool) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if n.run.is_none() {
            return;
        }
        let pending = n.disk.pending_records();
        let (keep, keep_entries) = if torn && pending > 0 {
            (
                self.rng.below(pending as u64 + 1) as usize,
                self.rng.below(4) as usize,
            )
        } else {
            (0, 0)
        };
        let kept = n.disk.crash(keep, keep_entries);
        n.run = None;
        n.incarnation += 1;
        self.checker.on_step_down(id);
        self.report.crashes += 1;
        trace_line!(
            self.trace,
            self.now,
            "n{id} CRASH (lost {} of {pending} records in flight)",
            pending - kept.min(pending)
        );
    }
}
