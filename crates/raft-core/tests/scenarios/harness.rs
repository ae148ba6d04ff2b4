//! A test cluster: RawNodes over MemLogs, a message queue with cuttable links, and
//! synchronous (or held, for async tests) persistence of every Ready.

use bytes::Bytes;
use raft_core::{
    Config, Entry, EntryKind, MemLog, Membership, Message, MessageBody, NodeId, RawNode, ReadState,
    Ready, Role,
};
use std::collections::{BTreeMap, HashSet, VecDeque};

/// Decides which messages the network drops.
pub type Filter = Box<dyn Fn(&Message) -> bool>;

/// One node and its application state.
pub struct TestNode {
    pub raw: RawNode<MemLog>,
    /// Payloads of applied non-empty normal entries, in order.
    pub state: Vec<Bytes>,
    pub applied_index: u64,
    pub read_states: Vec<ReadState>,
    /// State-machine copies at compaction points (the "snapshot store").
    pub snapshots: BTreeMap<u64, Vec<Bytes>>,
    /// Snapshot data received out of band, waiting for `Ready::snapshot`.
    pub incoming_snapshot: Option<Vec<Bytes>>,
    /// Readys whose writes are held back (manual persistence).
    pub held: VecDeque<Ready>,
    pub manual_persist: bool,
    /// Committed entries handed out but not applied yet (asynchronous apply).
    pub unapplied: Vec<Entry>,
    /// Committed entries wait in `unapplied` until the test applies them.
    pub manual_apply: bool,
    /// Proposals this node forwarded that came back dropped.
    pub dropped: Vec<Entry>,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, TestNode>,
    pub net: VecDeque<Message>,
    /// Directed links that drop messages.
    pub cut: HashSet<(NodeId, NodeId)>,
    /// Every message ever handed to the network (for assertions).
    pub sent_log: Vec<Message>,
    pub config: fn(NodeId) -> Config,
    /// Drops every message for which it returns true.
    pub filter: Option<Filter>,
}

pub fn default_config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.heartbeat_ticks = 1;
    c.election_timeout_base_ticks = 10;
    c.jitter_max_ticks = 10;
    c.pre_vote = true;
    c.check_quorum = true;
    c
}

/// [`default_config`] with lazy commit propagation, and heartbeats rare enough that a
/// tick's catch-up append is not a heartbeat in disguise.
pub fn lazy_commit_config(id: NodeId) -> Config {
    Config {
        lazy_commit: true,
        heartbeat_ticks: 5,
        ..default_config(id)
    }
}

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Bytes::new(),
    }
}

/// A MemLog holding entries with the given terms (index 1, 2, ...) and hard state term.
pub fn log_with_terms(voters: &[NodeId], terms: &[u64], hs_term: u64) -> MemLog {
    let mut log = MemLog::with_voters(voters.iter().copied());
    let ents: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    log.append(&ents);
    log.set_hard_state(raft_core::HardState {
        term: hs_term,
        vote: None,
        commit: 0,
    });
    log
}

impl Cluster {
    pub fn new(ids: &[NodeId]) -> Self {
        Self::with_config(ids, default_config)
    }

    pub fn with_config(ids: &[NodeId], config: fn(NodeId) -> Config) -> Self {
        let mut c = Self::empty(config);
        for &id in ids {
            c.add_node(id, MemLog::with_voters(ids.iter().copied()));
        }
        c
    }

    pub fn empty(config: fn(NodeId) -> Config) -> Self {
        Self {
            nodes: BTreeMap::new(),
            net: VecDeque::new(),
            cut: HashSet::new(),
            sent_log: Vec::new(),
            config,
            filter: None,
        }
    }

    pub fn add_node(&mut self, id: NodeId, log: MemLog) {
        self.add_node_with(id, log, (self.config)(id));
    }

    pub fn add_node_with(&mut self, id: NodeId, log: MemLog, config: Config) {
        let raw = RawNode::new(config, log, 42 + id).expect("valid node");
        self.nodes.insert(
            id,
            TestNode {
                raw,
                state: Vec::new(),
                applied_index: 0,
                read_states: Vec::new(),
                snapshots: BTreeMap::new(),
                incoming_snapshot: None,
                held: VecDeque::new(),
                manual_persist: false,
                unapplied: Vec::new(),
                manual_apply: false,
                dropped: Vec::new(),
            },
        );
    }

    pub fn node(&self, id: NodeId) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn raw(&mut self, id: NodeId) -> &mut RawNode<MemLog> {
        &mut self.nodes.get_mut(&id).expect("node exists").raw
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.nodes[&id].raw.status().role
    }

    pub fn term(&self, id: NodeId) -> u64 {
        self.nodes[&id].raw.status().term
    }

    pub fn commit(&self, id: NodeId) -> u64 {
        self.nodes[&id].raw.status().commit
    }

    /// The leaders among the nodes (normally at most one per term).
    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raw.status().role == Role::Leader)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The leader of the highest term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leaders().into_iter().max_by_key(|id| self.term(*id))
    }

    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn cut_link(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Handles one Ready of `id`; returns false when it had none.
    pub fn process_ready(&mut self, id: NodeId) -> bool {
        let n = self.nodes.get_mut(&id).expect("node exists");
        if !n.raw.has_ready() {
            return false;
        }
        let rd = n.raw.ready().expect("ready");
        for m in &rd.messages {
            self.sent_log.push(m.clone());
            self.net.push_back(m.clone());
        }
        let n = self.nodes.get_mut(&id).expect("node exists");
        // Committed entries are durable already: apply them even when writes are held.
        let committed = rd.committed_entries.clone();
        n.read_states.extend(rd.read_states.iter().cloned());
        n.dropped.extend(rd.dropped_proposals.iter().cloned());
        if n.manual_persist {
            n.held.push_back(rd);
        } else {
            self.persist(id, rd);
        }
        let n = self.nodes.get_mut(&id).expect("node exists");
        if n.manual_apply {
            n.unapplied.extend(committed);
        } else {
            self.apply(id, &committed);
        }
        true
    }

    fn persist(&mut self, id: NodeId, rd: Ready) {
        let n = self.nodes.get_mut(&id).expect("node exists");
        if let Some(meta) = &rd.snapshot {
            let data = n
                .incoming_snapshot
                .take()
                .expect("snapshot data arrived out of band before the install");
            n.state = data.clone();
            n.applied_index = meta.index;
            n.snapshots.insert(meta.index, data);
            n.raw.log_mut().apply_snapshot(meta.clone());
        }
        n.raw.log_mut().append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            n.raw.log_mut().set_hard_state(hs);
        }
        n.raw.on_persisted(rd.number()).expect("on_persisted");
        for m in rd.persisted_messages {
            self.sent_log.push(m.clone());
            self.net.push_back(m);
        }
    }

    fn apply(&mut self, id: NodeId, ents: &[Entry]) {
        let n = self.nodes.get_mut(&id).expect("node exists");
        let Some(last) = ents.last() else { return };
        for e in ents {
            if e.kind == EntryKind::Normal && !e.data.is_empty() {
                n.state.push(e.data.clone());
            }
            n.applied_index = e.index;
        }
        if let Some(m) = n.raw.on_applied(last.index).expect("on_applied") {
            n.raw.log_mut().set_membership(m);
        }
    }

    /// Writes every held Ready of `id` (manual persistence).
    pub fn persist_held(&mut self, id: NodeId) {
        while let Some(rd) = self.nodes.get_mut(&id).expect("node").held.pop_front() {
            self.persist(id, rd);
        }
    }

    /// Delivers one message; returns false when the network is empty.
    pub fn deliver_one(&mut self) -> bool {
        let Some(m) = self.net.pop_front() else {
            return false;
        };
        if self.cut.contains(&(m.from, m.to))
            || !self.nodes.contains_key(&m.to)
            || self.filter.as_ref().is_some_and(|f| f(&m))
        {
            return true;
        }
        if let MessageBody::InstallSnapshot(meta) = &m.body {
            // The transport streams the snapshot data before delivering the message.
            let data = match meta.index {
                0 => Vec::new(), // the empty bootstrap snapshot
                i => self.nodes[&m.from]
                    .snapshots
                    .get(&i)
                    .cloned()
                    .expect("the leader has the snapshot it sends"),
            };
            self.nodes.get_mut(&m.to).expect("node").incoming_snapshot = Some(data);
            self.raw(m.from).report_snapshot(m.to, true);
        }
        let to = m.to;
        // Errors from peers' messages are reported, not fatal (like a real transport).
        let _ = self.raw(to).step(m);
        true
    }

    /// Processes Readys and delivers messages until nothing moves.
    pub fn stabilize(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                while self.process_ready(id) {
                    moved = true;
                }
            }
            while self.deliver_one() {
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster did not stabilize");
    }

    /// Ticks every node once, `n` times, stabilizing after each.
    pub fn tick_all(&mut self, n: u64) {
        for _ in 0..n {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.raw(id).tick().expect("tick");
            }
            self.stabilize();
        }
    }

    /// Makes `id` campaign and returns once the cluster is quiet.
    pub fn elect(&mut self, id: NodeId) {
        self.raw(id).campaign().expect("campaign");
        self.stabilize();
        assert_eq!(self.role(id), Role::Leader, "node {id} should have won");
    }

    /// Ticks until some node leads; returns it.
    pub fn tick_until_leader(&mut self, max_ticks: u64) -> NodeId {
        for _ in 0..max_ticks {
            self.tick_all(1);
            if let Some(l) = self.leader() {
                return l;
            }
        }
        panic!("no leader within {max_ticks} ticks");
    }

    pub fn propose(&mut self, id: NodeId, data: &'static str) {
        self.raw(id)
            .propose(Bytes::from_static(data.as_bytes()))
            .expect("proposal accepted");
        self.stabilize();
    }

    pub fn state_of(&self, id: NodeId) -> Vec<&[u8]> {
        self.nodes[&id].state.iter().map(|b| b.as_ref()).collect()
    }

    /// Compacts `id`'s log up to its applied index, storing a snapshot of its state.
    pub fn compact(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("node");
        let index = n.applied_index;
        let membership: Membership = n.raw.membership().clone();
        n.snapshots.insert(index, n.state.clone());
        n.raw.log_mut().compact(index, membership).expect("compact");
        n.raw.on_compacted(index).expect("on_compacted");
    }

    /// Messages of a kind sent from `from` to `to`.
    pub fn count_sent(
        &self,
        from: NodeId,
        to: NodeId,
        pred: impl Fn(&MessageBody) -> bool,
    ) -> usize {
        self.sent_log
            .iter()
            .filter(|m| m.from == from && m.to == to && pred(&m.body))
            .count()
    }
}
