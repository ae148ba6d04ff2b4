//! Fault injection and cluster operations: crashes, pauses, partitions, clogs,
//! membership changes and leadership transfers, each rescheduled while faults are on.

use super::{Check, Cluster, Event};
use crate::trace_line;
use raft_core::{ConfChange, ConfChangeOp, ConfChangeTransition, NodeId};

impl Cluster {
    pub(super) fn handle_fault(&mut self, e: Event) -> Check {
        let now = self.now;
        match e {
            Event::Restart(id) => {
                if self.nodes.get(&id).is_some_and(|n| n.run.is_none()) {
                    self.start_node(id, false)?;
                }
                return Ok(());
            }
            Event::HealPartition => {
                trace_line!(self.trace, now, "heal partitions");
                self.net.heal_partitions();
                return Ok(());
            }
            _ => {}
        }
        if !self.faults_active {
            return Ok(());
        }
        let max_down = self.cfg.node.max_down;
        let max_fault = self.cfg.net.max_fault_duration;
        match e {
            Event::Crash => {
                let up = self.running_ids();
                // Prefer the leader now and then: that is where bugs hide.
                let victim = if self.rng.chance(0.3) {
                    self.leader()
                } else {
                    self.rng.choose(&up).copied()
                };
                if let Some(id) = victim {
                    self.crash_node(id, self.cfg.node.torn_writes);
                    let down = self.rng.range(10, max_down);
                    self.schedule(down, Event::Restart(id));
                }
                let g = self.gap(self.cfg.node.crash_every);
                self.schedule(g, Event::Crash);
            }
            Event::Pause => {
                let up = self.running_ids();
                if let Some(&id) = self.rng.choose(&up) {
                    let d = self.rng.range(10, max_down);
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.paused_until = now + d;
                    }
                    trace_line!(self.trace, now, "n{id} PAUSE for {d} ms");
                }
                let g = self.gap(self.cfg.node.pause_every);
                self.schedule(g, Event::Pause);
            }
            Event::Partition => {
                let mut ids = self.started_ids();
                if ids.len() >= 2 {
                    self.rng.shuffle(&mut ids);
                    // Often cut the leader off; otherwise a random split.
                    let leader = self.leader();
                    let side: Vec<NodeId> = match leader {
                        Some(l) if self.rng.chance(0.5) => vec![l],
                        _ => {
                            let k = self.rng.range(1, ids.len() as u64 - 1) as usize;
                            ids[..k].to_vec()
                        }
                    };
                    let rest: Vec<NodeId> =
                        ids.iter().copied().filter(|i| !side.contains(i)).collect();
                    let one_way = self.cfg.net.asymmetric && self.rng.chance(0.5);
                    self.net.partition(&side, &rest, one_way);
                    trace_line!(
                        self.trace,
                        now,
                        "PARTITION {side:?} | {rest:?}{} cuts [{}]",
                        if one_way { " (one way)" } else { "" },
                        self.net.describe_cuts()
                    );
                    let d = self.rng.range(50, max_fault);
                    self.schedule(d, Event::HealPartition);
                }
                let g = self.gap(self.cfg.net.partition_every);
                self.schedule(g, Event::Partition);
            }
            Event::Clog => {
                let ids = self.started_ids();
                if ids.len() >= 2 {
                    let a = *self.rng.choose(&ids).expect("non-empty");
                    let b = *self.rng.choose(&ids).expect("non-empty");
                    if a != b {
                        let until = now + self.rng.range(50, max_fault);
                        self.net.clog(a, b, until);
                        let both = self.rng.chance(0.5);
                        if both {
                            self.net.clog(b, a, until);
                        }
                        trace_line!(
                            self.trace,
                            now,
                            "CLOG n{a}>n{b}{} until {until}",
                            if both { " both ways" } else { "" }
                        );
                    }
                }
                let g = self.gap(self.cfg.net.clog_every);
                self.schedule(g, Event::Clog);
            }
            Event::FsyncError => {
                // The next write to complete on a node with writes in flight fails.
                let busy: Vec<NodeId> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.run.is_some() && !n.disk.pending.is_empty())
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(&id) = self.rng.choose(&busy)
                    && let Some(n) = self.nodes.get_mut(&id)
                {
                    n.fail_next_write = true;
                }
                let g = self.gap(self.cfg.node.fsync_error_every);
                self.schedule(g, Event::FsyncError);
            }
            Event::ChangeMembership => {
                self.change_membership()?;
                let g = self.gap(self.cfg.ops.membership_every);
                self.schedule(g, Event::ChangeMembership);
            }
            Event::Transfer => {
                if let Some(l) = self.leader() {
                    let voters: Vec<NodeId> = self.nodes[&l]
                        .run
                        .as_ref()
                        .map(|r| {
                            r.raw
                                .membership()
                                .voters
                                .iter()
                                .copied()
                                .filter(|v| *v != l)
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Some(&target) = self.rng.choose(&voters) {
                        trace_line!(self.trace, now, "TRANSFER n{l} -> n{target}");
                        if let Some(r) = self.running(l, None) {
                            let _ = r.raw.transfer_leader(target);
                        }
                        self.drive(l)?;
                    }
                }
                let g = self.gap(self.cfg.ops.transfer_every);
                self.schedule(g, Event::Transfer);
            }
            _ => {}
        }
        Ok(())
    }

    /// Proposes a random membership change on the leader (or the leave of an explicit
    /// joint configuration).
    fn change_membership(&mut self) -> Check {
        let Some(l) = self.leader() else {
            return Ok(());
        };
        let Some(m) = self.nodes[&l]
            .run
            .as_ref()
            .map(|r| r.raw.membership().clone())
        else {
            return Ok(());
        };
        let max = self.cfg.max_node_id;
        let cc = if m.is_joint() {
            if m.auto_leave {
                return Ok(());
            }
            ConfChange {
                transition: ConfChangeTransition::Auto,
                ops: Vec::new(),
            }
        } else {
            let members = m.members();
            let outsiders: Vec<NodeId> = (1..=max).filter(|i| !members.contains(i)).collect();
            let learners: Vec<NodeId> = m.learners.iter().copied().collect();
            // Any voter may be demoted or removed, the leader included (operators do remove
            // the leader, and raft-core must cope: the leader keeps leading until the
            // change is applied and then hands leadership over).
            let voters: Vec<NodeId> = m.voters.iter().copied().collect();
            let mut ops = Vec::new();
            let n_ops = if self.rng.chance(0.25) { 2 } else { 1 };
            let mut touched = Vec::new();
            for _ in 0..n_ops {
                let op = match self.rng.below(5) {
                    0 => self
                        .rng
                        .choose(&outsiders)
                        .map(|&i| ConfChangeOp::AddVoter(i)),
                    1 => self
                        .rng
                        .choose(&outsiders)
                        .map(|&i| ConfChangeOp::AddLearner(i)),
                    2 => self
                        .rng
                        .choose(&learners)
                        .map(|&i| ConfChangeOp::AddVoter(i)),
                    3 => self
                        .rng
                        .choose(&voters)
                        .map(|&i| ConfChangeOp::AddLearner(i)),
                    _ => {
                        let all: Vec<NodeId> = voters.iter().chain(&learners).copied().collect();
                        self.rng.choose(&all).map(|&i| ConfChangeOp::RemoveNode(i))
                    }
                };
                if let Some(op) = op {
                    let target = match op {
                        ConfChangeOp::AddVoter(i)
                        | ConfChangeOp::AddLearner(i)
                        | ConfChangeOp::RemoveNode(i) => i,
                    };
                    if !touched.contains(&target) {
                        touched.push(target);
                        ops.push(op);
                    }
                }
            }
            if ops.is_empty() {
                return Ok(());
            }
            let transition = match self.rng.below(4) {
                0 => ConfChangeTransition::JointImplicit,
                1 => ConfChangeTransition::JointExplicit,
                _ => ConfChangeTransition::Auto,
            };
            ConfChange { transition, ops }
        };
        // New members need a process (and a disk) to receive the log.
        for op in &cc.ops {
            if let ConfChangeOp::AddVoter(i) | ConfChangeOp::AddLearner(i) = *op
                && !self.nodes.contains_key(&i)
            {
                self.start_node(i, false)?;
            }
        }
        let res = match self.running(l, None) {
            Some(r) => r.raw.propose_conf_change(cc.clone()),
            None => return Ok(()),
        };
        trace_line!(
            self.trace,
            self.now,
            "CONF CHANGE on n{l}: {:?} {:?} -> {}",
            cc.transition,
            cc.ops,
            match &res {
                Ok(()) => "proposed".to_string(),
                Err(e) => format!("refused: {e}"),
            }
        );
        self.drive(l)
    }
}
