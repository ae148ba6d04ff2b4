//! Randomized runs (seeded, reproducible): message loss and reordering, partitions,
//! crashes that lose unsynced writes, asynchronous persistence, compaction and
//! membership changes, checked for election safety and state-machine safety, and for
//! recovery once the faults stop.
//!
//! `CHAOS_SEED=n` runs one seed, `CHAOS_SEEDS=n` the first n, `CHAOS_STATS=1` prints a line
//! per seed (with `--nocapture`); a failure dumps the node states and the last messages.
// Diagnostics of a failing seed go to stderr on purpose.
#![allow(clippy::print_stderr)]

use bytes::Bytes;
use raft_core::{
    ConfChange, ConfChangeOp, ConfChangeTransition, Config, EntryKind, MemLog, Membership, Message,
    MessageBody, NodeId, RawNode, Ready, Role, SplitMix64,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

struct Node {
    raw: Option<RawNode<MemLog>>,
    /// The durable log while the node is down.
    stored: Option<MemLog>,
    held: VecDeque<Ready>,
    /// Applied (index, data) of non-empty normal entries; durable with `applied`.
    state: Vec<(u64, Bytes)>,
    applied: u64,
    snapshots: BTreeMap<u64, Vec<(u64, Bytes)>>,
    incoming: BTreeMap<u64, Vec<(u64, Bytes)>>,
}

struct World {
    rng: SplitMix64,
    nodes: BTreeMap<NodeId, Node>,
    net: Vec<Message>,
    cut: BTreeSet<NodeId>,
    leaders: BTreeMap<u64, NodeId>,
    /// What was applied at each index anywhere: (term, data).
    applied: BTreeMap<u64, (u64, Bytes)>,
    next_value: u64,
    trace: VecDeque<String>,
}

fn config(id: NodeId, applied: u64) -> Config {
    let mut c = Config::new(id);
    c.election_timeout_base_ticks = 10;
    c.jitter_max_ticks = 10;
    c.heartbeat_ticks = 2;
    c.max_entries_per_append = 4;
    c.max_inflight_msgs = 4;
    c.applied = applied;
    c
}

impl World {
    fn new(seed: u64, n: u64) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let raw = RawNode::new(config(id, 0), MemLog::with_voters(ids.clone()), seed).unwrap();
            nodes.insert(
                id,
                Node {
                    raw: Some(raw),
                    stored: None,
                    held: VecDeque::new(),
                    state: Vec::new(),
                    applied: 0,
                    snapshots: BTreeMap::new(),
                    incoming: BTreeMap::new(),
                },
            );
        }
        Self {
            rng: SplitMix64::new(seed),
            nodes,
            net: Vec::new(),
            cut: BTreeSet::new(),
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            next_value: 0,
            trace: VecDeque::new(),
        }
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.gen_range(0, n as u64) as usize
    }

    fn random_node(&mut self) -> NodeId {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        ids[self.pick(ids.len())]
    }

    fn handle_readys(&mut self, id: NodeId, sync: bool) {
        loop {
            let n = self.nodes.get_mut(&id).unwrap();
            let Some(raw) = n.raw.as_mut() else { return };
            if !raw.has_ready() {
                break;
            }
            let rd = raw.ready().unwrap();
            self.net.extend(rd.messages.iter().cloned());
            let committed = rd.committed_entries.clone();
            let n = self.nodes.get_mut(&id).unwrap();
            n.held.push_back(rd);
            self.apply(id, &committed);
        }
        if sync {
            self.persist(id, usize::MAX);
        }
    }

    fn persist(&mut self, id: NodeId, count: usize) {
        for _ in 0..count {
            let n = self.nodes.get_mut(&id).unwrap();
            let Some(rd) = n.held.pop_front() else { return };
            let raw = n.raw.as_mut().unwrap();
            if let Some(meta) = &rd.snapshot {
                let data = if meta.index == 0 {
                    Vec::new()
                } else {
                    n.incoming
                        .get(&meta.index)
                        .cloned()
                        .expect("snapshot data arrived")
                };
                n.state = data.clone();
                n.applied = meta.index;
                n.snapshots.insert(meta.index, data);
                raw.log_mut().apply_snapshot(meta.clone());
            }
            raw.log_mut().append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                raw.log_mut().set_hard_state(hs);
            }
            raw.on_persisted(rd.number()).unwrap();
            self.net.extend(rd.persisted_messages);
        }
    }

    fn apply(&mut self, id: NodeId, ents: &[raft_core::Entry]) {
        let Some(last) = ents.last() else { return };
        let n = self.nodes.get_mut(&id).unwrap();
        for e in ents {
            assert_eq!(e.index, n.applied + 1, "node {id} applies in order");
            n.applied = e.index;
            match self.applied.get(&e.index) {
                Some((t, d)) => assert!(
                    *t == e.term && *d == e.data,
                    "state machine safety: node {id} applied ({}, {:?}) at {} where ({t}, {d:?}) was applied",
                    e.term,
                    e.data,
                    e.index
                ),
                None => {
                    self.applied.insert(e.index, (e.term, e.data.clone()));
                }
            }
            if e.kind == EntryKind::Normal && !e.data.is_empty() {
                n.state.push((e.index, e.data.clone()));
            }
        }
        let raw = n.raw.as_mut().unwrap();
        if let Some(m) = raw.on_applied(last.index).unwrap() {
            raw.log_mut().set_membership(m);
        }
    }

    fn deliver(&mut self, i: usize) {
        let m = self.net.remove(i);
        if self.cut.contains(&m.from)
            || self.cut.contains(&m.to)
            || self.nodes.get(&m.to).is_none_or(|n| n.raw.is_none())
        {
            self.lost(&m);
            return;
        }
        if let MessageBody::InstallSnapshot(meta) = &m.body {
            let data = if meta.index == 0 {
                Some(Vec::new())
            } else {
                self.nodes[&m.from].snapshots.get(&meta.index).cloned()
            };
            let ok = data.is_some();
            if let Some(d) = data {
                self.nodes
                    .get_mut(&m.to)
                    .unwrap()
                    .incoming
                    .insert(meta.index, d);
            }
            if let Some(raw) = self.nodes.get_mut(&m.from).unwrap().raw.as_mut() {
                raw.report_snapshot(m.to, ok);
            }
            if !ok {
                return;
            }
        }
        let to = m.to;
        let line = format!("{m:?}");
        self.trace.push_back(line.chars().take(300).collect());
        if self.trace.len() > 40 {
            self.trace.pop_front();
        }
        let raw = self.nodes.get_mut(&to).unwrap().raw.as_mut().unwrap();
        if let Err(e) = raw.step(m) {
            panic!("node {to} refused a message: {e}");
        }
    }

    /// The transport tells the sender when a snapshot could not be delivered.
    fn lost(&mut self, m: &Message) {
        if matches!(m.body, MessageBody::InstallSnapshot(_))
            && let Some(raw) = self.nodes.get_mut(&m.from).and_then(|n| n.raw.as_mut())
        {
            raw.report_snapshot(m.to, false);
        }
    }

    fn crash(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).unwrap();
        let Some(raw) = n.raw.take() else { return };
        n.stored = Some(raw.log().clone());
        n.held.clear(); // unsynced writes are lost
    }

    fn restart(&mut self, id: NodeId, seed: u64) {
        let n = self.nodes.get_mut(&id).unwrap();
        let Some(log) = n.stored.take() else { return };
        // The state machine is durable with its applied index; membership as of it.
        let raw = RawNode::new(config(id, n.applied), log, seed).unwrap();
        n.raw = Some(raw);
    }

    fn check_leaders(&mut self) {
        for (id, n) in &self.nodes {
            let Some(raw) = &n.raw else { continue };
            let s = raw.status();
            if s.role == Role::Leader {
                let prev = *self.leaders.entry(s.term).or_insert(*id);
                assert_eq!(prev, *id, "two leaders in term {}", s.term);
            }
        }
    }

    fn step(&mut self, seed: u64) {
        let id = self.random_node();
        match self.pick(100) {
            0..=29 => {
                if let Some(raw) = self.nodes.get_mut(&id).unwrap().raw.as_mut() {
                    raw.tick().unwrap();
                }
            }
            30..=64 => {
                if !self.net.is_empty() {
                    // Mostly in order, sometimes out of order.
                    let i = if self.pick(4) == 0 {
                        self.pick(self.net.len())
                    } else {
                        0
                    };
                    self.deliver(i);
                }
            }
            65..=69 => {
                if !self.net.is_empty() {
                    let i = self.pick(self.net.len());
                    let m = self.net.swap_remove(i);
                    self.lost(&m);
                }
            }
            70..=79 => {
                self.next_value += 1;
                let v = Bytes::from(format!("v{}", self.next_value));
                if let Some(raw) = self.nodes.get_mut(&id).unwrap().raw.as_mut() {
                    let _ = raw.propose(v);
                }
            }
            80..=89 => {
                let k = 1 + self.pick(3);
                self.persist(id, k);
            }
            90 => {
                if self.cut.is_empty() {
                    self.cut.insert(id);
                } else {
                    self.cut.clear();
                }
            }
            91 => self.crash(id),
            92..=93 => self.restart(id, seed),
            94 => {
                let n = self.nodes.get_mut(&id).unwrap();
                let applied = n.applied;
                if let Some(raw) = n.raw.as_mut()
                    && applied > raw.log().snapshot_meta_index() + 5
                {
                    let m = raw.membership().clone();
                    n.snapshots.insert(applied, n.state.clone());
                    raw.log_mut().compact(applied, m).unwrap();
                    raw.on_compacted(applied).unwrap();
                }
            }
            95 => {
                let target = self.random_node();
                if let Some(raw) = self.nodes.get_mut(&id).unwrap().raw.as_mut() {
                    let _ = raw.transfer_leader(target);
                }
            }
            96 => {
                // Demote or promote a random node (keeps at least three voters).
                let target = self.random_node();
                if let Some(raw) = self.nodes.get_mut(&id).unwrap().raw.as_mut() {
                    let m: Membership = raw.membership().clone();
                    let op = if m.voters.contains(&target) && m.voters.len() > 3 {
                        ConfChangeOp::AddLearner(target)
                    } else {
                        ConfChangeOp::AddVoter(target)
                    };
                    let transition = if self.rng.gen_range(0, 2) == 0 {
                        ConfChangeTransition::Auto
                    } else {
                        ConfChangeTransition::JointImplicit
                    };
                    let _ = raw.propose_conf_change(ConfChange {
                        transition,
                        ops: vec![op],
                    });
                }
            }
            _ => {
                let ctx = Bytes::from(format!("r{}", self.next_value));
                if let Some(raw) = self.nodes.get_mut(&id).unwrap().raw.as_mut() {
                    let _ = raw.read_index(ctx);
                }
            }
        }
        let sync = self.pick(3) == 0;
        self.handle_readys(id, sync);
        self.check_leaders();
    }

    /// Stops the faults and lets the cluster converge.
    fn heal_and_settle(&mut self, seed: u64) {
        self.cut.clear();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            self.restart(id, seed);
        }
        for _ in 0..400 {
            for &id in &ids {
                self.nodes
                    .get_mut(&id)
                    .unwrap()
                    .raw
                    .as_mut()
                    .unwrap()
                    .tick()
                    .unwrap();
                self.handle_readys(id, true);
            }
            let mut delivered = 0;
            while !self.net.is_empty() {
                delivered += 1;
                if delivered > 100_000 {
                    let mut hist = BTreeMap::new();
                    for m in &self.net {
                        let kind = match &m.body {
                            MessageBody::AppendResponse(r) => format!(
                                "resp rej={} idx={} hint=({},{})",
                                r.reject, r.index, r.hint_index, r.hint_term
                            ),
                            MessageBody::Append(a) => {
                                format!("app prev={} n={}", a.prev_log_index, a.entries.len())
                            }
                            MessageBody::InstallSnapshot(s) => format!("snap {}", s.index),
                            b => format!("{:?}", std::mem::discriminant(b)),
                        };
                        *hist.entry((m.from, m.to, m.term, kind)).or_insert(0) += 1;
                    }
                    for (id, n) in &self.nodes {
                        eprintln!("{id}: {:?}", n.raw.as_ref().unwrap().status());
                    }
                    for t in &self.trace {
                        eprintln!("{t}");
                    }
                    panic!("message storm: {hist:#?}");
                }
                self.deliver(0);
                for &id in &ids {
                    self.handle_readys(id, true);
                }
            }
            self.check_leaders();
        }
    }
}

trait SnapIndex {
    fn snapshot_meta_index(&self) -> u64;
}

impl SnapIndex for MemLog {
    fn snapshot_meta_index(&self) -> u64 {
        raft_core::LogRead::snapshot_meta(self).unwrap().index
    }
}

fn run(seed: u64, steps: usize) {
    let mut w = World::new(seed, 5);
    for _ in 0..steps {
        w.step(seed);
    }
    w.heal_and_settle(seed);
    let leader = w
        .nodes
        .iter()
        .find(|(_, n)| n.raw.as_ref().unwrap().status().role == Role::Leader)
        .map(|(id, _)| *id);
    let leader = leader.unwrap_or_else(|| panic!("seed {seed}: no leader after healing"));
    // Everyone (members and non-members alike) converged on the leader's applied state.
    let commit = w.nodes[&leader].raw.as_ref().unwrap().status().commit;
    if std::env::var("CHAOS_STATS").is_ok() {
        let st = w.nodes[&leader].raw.as_ref().unwrap().status();
        eprintln!(
            "seed {seed}: term {} commit {commit} values {} membership {:?} snapshots {}",
            st.term,
            w.nodes[&leader].state.len(),
            st.membership,
            w.nodes.values().map(|n| n.snapshots.len()).sum::<usize>()
        );
    }
    let members = w.nodes[&leader]
        .raw
        .as_ref()
        .unwrap()
        .membership()
        .members();
    for id in members {
        let n = &w.nodes[&id];
        if n.applied != commit {
            for (id, n) in &w.nodes {
                eprintln!(
                    "{id}: applied {} {:?}",
                    n.applied,
                    n.raw.as_ref().unwrap().status()
                );
            }
            for t in &w.trace {
                eprintln!("{t}");
            }
        }
        assert_eq!(n.applied, commit, "seed {seed}: node {id} caught up");
        assert_eq!(
            n.state, w.nodes[&leader].state,
            "seed {seed}: node {id} state"
        );
    }
}

#[test]
fn randomized_faults_never_violate_safety_and_the_cluster_recovers() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        // CHAOS_SEEDS=n explores more seeds.
        Err(_) => (0..std::env::var("CHAOS_SEEDS").map_or(40, |n| n.parse().unwrap())).collect(),
    };
    for seed in seeds {
        run(seed, 3000);
    }
}
