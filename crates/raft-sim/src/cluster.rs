//! The cluster driver: runs every node's `RawNode` on the simulated network and disks,
//! carries out each `Ready` by the contract, feeds client operations in and checks the
//! invariants after every step.
//!
//! One event at a time is taken from the queue (ordered by simulated time, then
//! insertion), so the run is a pure function of the seed. After an event touched a node,
//! the node's `Ready`s are handled until it has none: writes go to its [`SimDisk`] (durable
//! after a seeded delay), `messages` go to the network at once, `persisted_messages` wait
//! for the write of their `Ready` to be durable, committed entries are applied to the
//! node's [`KvState`] and answered to waiting clients, read states are served once applied.

mod faults;
mod format;

use crate::client::{Clients, InFlight};
use crate::invariants::{SafetyChecker, ShadowLog, Violation, entry_hash};
use crate::kv::{KvCommand, KvState};
use crate::linearizability::{KvInput, KvOutput, check_kv_history};
use crate::network::{Admit, Network};
use crate::queue::EventQueue;
use crate::rng::SimRng;
use crate::run::{Mutation, RunReport, SimOptions};
use crate::storage::{DurableLog, SharedLog, SimDisk, WalRecord};
use crate::swarm::{SwarmConfig, TICK_MS};
use crate::trace::Trace;
use crate::trace_line;
use bytes::Bytes;
use format::Msg;
use raft_core::{
    Config, EntryKind, Error as CoreError, Membership, Message, MessageBody, NodeId, RawNode, Role,
    SnapshotMeta,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type Node = RawNode<SharedLog<KvState>>;
type Check = Result<(), Violation>;

/// Data of the liveness probe entries (too short to decode as a KV command).
const LIVENESS_MARK: &[u8] = b"live";

/// What a client hears back.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Done(KvOutput),
    Refused(Option<NodeId>),
}

#[derive(Debug)]
enum Event {
    Tick(NodeId, u64),
    Deliver(Box<(Message, Option<KvState>)>),
    DiskDone(NodeId, u64),
    ClientStart(u64),
    ClientArrive(u64, InFlight),
    ClientReply(u64, u64, Reply),
    ClientExpire(u64, u64),
    Crash,
    Restart(NodeId),
    Pause,
    Partition,
    HealPartition,
    Clog,
    ChangeMembership,
    Transfer,
    FaultsEnd,
    LivenessProbe,
    LivenessDeadline,
    End,
}

/// A node process that is up.
struct Running {
    raw: Node,
    sm: KvState,
    role: Role,
    term: u64,
    /// The vote of the latest hard state handed out.
    vote: Option<NodeId>,
    /// Writes proposed through this node, by (client, seq): answered when applied here.
    waiting_writes: BTreeSet<(u64, u64)>,
    /// Reads waiting for their read state: context -> (client, seq, key).
    waiting_reads: BTreeMap<Bytes, (u64, u64, u64)>,
    /// Reads with a read index, waiting for the state machine to reach it.
    ready_reads: Vec<(u64, u64, u64, u64)>,
    /// `persisted_messages` of Readys whose writes are not yet durable.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Snapshot data received with an `InstallSnapshot`, until the node installs it.
    incoming_snapshot: Option<(SnapshotMeta, KvState)>,
    /// The applied index last reported with `on_applied`.
    reported_applied: u64,
}

/// A node slot: its disk always exists once started; the process may be down.
struct SimNode {
    disk: SimDisk<KvState>,
    incarnation: u64,
    run: Option<Running>,
    paused_until: u64,
}

/// The whole simulated world of one run.
pub struct Cluster {
    seed: u64,
    cfg: SwarmConfig,
    opts: SimOptions,
    now: u64,
    end: u64,
    queue: EventQueue<Event>,
    net: Network,
    nodes: BTreeMap<NodeId, SimNode>,
    clients: Clients,
    checker: SafetyChecker,
    trace: Trace,
    rng: SimRng,
    /// Membership after each applied configuration change, by index (0: initial).
    confs: BTreeMap<u64, Membership>,
    faults_active: bool,
    liveness_done: bool,
    liveness_from: u64,
    leader_terms: BTreeSet<u64>,
    report: RunReport,
}

impl Cluster {
    /// A cluster of `cfg.nodes` voters, nothing scheduled yet.
    pub fn new(seed: u64, cfg: SwarmConfig, opts: SimOptions, mut rng: SimRng) -> Self {
        let net = Network::new(cfg.net.clone(), rng.fork());
        let clients = Clients::new(cfg.ops.clone(), rng.fork(), 1);
        let initial = Membership::with_voters(1..=cfg.nodes);
        let mut confs = BTreeMap::new();
        confs.insert(0, initial);
        let end = opts.ticks * TICK_MS;
        Self {
            seed,
            trace: Trace::new(opts.trace),
            end,
            cfg,
            opts,
            now: 0,
            queue: EventQueue::new(),
            net,
            nodes: BTreeMap::new(),
            clients,
            checker: SafetyChecker::new(),
            rng,
            confs,
            faults_active: true,
            liveness_done: false,
            liveness_from: 0,
            leader_terms: BTreeSet::new(),
            report: RunReport {
                seed,
                ..RunReport::default()
            },
        }
    }

    /// Simulated time now (ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The kept trace lines.
    pub fn trace_text(&self) -> String {
        self.trace.render()
    }

    /// The report of a finished run.
    pub fn report(&self) -> RunReport {
        let mut r = self.report.clone();
        r.trace_hash = self.trace.hash();
        r.trace_lines = self.trace.lines_written();
        r.ops_completed = self.clients.completed;
        r.ops_indeterminate = self.clients.timed_out;
        r.committed = self.checker.max_committed();
        r.elections = self.leader_terms.len() as u64;
        r.messages = self.net.stats.sent;
        r.conf_changes = self.confs.len() as u64 - 1;
        r.trace = self.trace.render();
        r
    }

    fn schedule(&mut self, delay: u64, e: Event) {
        self.queue.push(self.now + delay, e);
    }

    /// Draws the gap before the next occurrence of a fault with mean `every`.
    fn gap(&mut self, every: u64) -> u64 {
        self.rng.range(every / 2, every + every / 2).max(1)
    }

    /// Runs to the end; `Err` with the first broken invariant.
    pub fn run(&mut self) -> Check {
        trace_line!(self.trace, 0, "seed {} config {}", self.seed, self.cfg);
        for id in 1..=self.cfg.nodes {
            self.start_node(id, true)?;
        }
        for c in 1..=self.cfg.ops.clients {
            let d = self.rng.range(1, 50);
            self.schedule(d, Event::ClientStart(c));
        }
        let faults_end = self
            .opts
            .ticks
            .saturating_sub(self.opts.liveness_ticks)
            .max(1)
            * TICK_MS;
        let (n, d, o) = (&self.cfg.net, &self.cfg.node, &self.cfg.ops);
        let periodic = [
            (d.crash_every, Event::Crash),
            (d.pause_every, Event::Pause),
            (n.partition_every, Event::Partition),
            (n.clog_every, Event::Clog),
            (o.membership_every, Event::ChangeMembership),
            (o.transfer_every, Event::Transfer),
        ];
        for (every, ev) in periodic {
            if every > 0 {
                let g = self.gap(every);
                self.schedule(g, ev);
            }
        }
        self.queue.push(faults_end, Event::FaultsEnd);
        self.queue.push(self.end, Event::End);
        while let Some((t, e)) = self.queue.pop() {
            self.now = t;
            self.report.events += 1;
            if matches!(e, Event::End) {
                break;
            }
            self.handle(e)?;
        }
        self.report.ticks = self.opts.ticks;
        self.check_history()
    }

    fn check_history(&mut self) -> Check {
        let history = self.clients.history();
        self.report.history_ops = history.len();
        if !self.opts.check_linearizability {
            return Ok(());
        }
        let r = check_kv_history(&history, self.opts.max_lin_steps_per_key);
        self.report.lin_unknown = r.unknown.len();
        if let Some(&(key, idx)) = r.violations.first() {
            let op = &history[idx];
            let ops_of_key: Vec<String> = history
                .iter()
                .filter(|o| o.key == key)
                .map(|o| {
                    format!(
                        "  c{} {:?} [{} .. {:?}]",
                        o.op.client, o.op.input, o.op.call, o.op.ret
                    )
                })
                .collect();
            trace_line!(
                self.trace,
                self.now,
                "history of key {key}:\n{}",
                ops_of_key.join("\n")
            );
            return Err(Violation::NotLinearizable {
                key,
                op: format!(
                    "client {} {:?} invoked at {} answered {:?}",
                    op.op.client, op.op.input, op.op.call, op.op.ret
                ),
            });
        }
        Ok(())
    }

    fn started_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn running_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.run.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The node that is leader in the highest term, if any.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.run.as_ref().map(|r| (id, r)))
            .filter(|(_, r)| r.role == Role::Leader)
            .max_by_key(|(_, r)| r.term)
            .map(|(id, _)| *id)
    }

    fn handle(&mut self, e: Event) -> Check {
        match e {
            Event::Tick(id, inc) => self.on_tick(id, inc),
            Event::Deliver(d) => {
                let (m, snap) = *d;
                self.on_deliver(m, snap)
            }
            Event::DiskDone(id, inc) => self.on_disk_done(id, inc),
            Event::ClientStart(c) => {
                self.client_start(c);
                Ok(())
            }
            Event::ClientArrive(c, op) => self.client_arrive(c, op),
            Event::ClientReply(c, seq, reply) => {
                self.client_reply(c, seq, reply);
                Ok(())
            }
            Event::ClientExpire(c, seq) => {
                if self.clients.in_flight(c).is_some_and(|op| op.seq == seq) {
                    let ids = self.started_ids();
                    self.clients.expire(self.now, &ids);
                    trace_line!(self.trace, self.now, "client c{c} #{seq} timed out");
                    let think = self.clients.think_time();
                    self.schedule(think, Event::ClientStart(c));
                }
                Ok(())
            }
            Event::FaultsEnd => self.faults_end(),
            Event::LivenessProbe => self.liveness_probe(),
            Event::LivenessDeadline => {
                if self.liveness_done {
                    Ok(())
                } else {
                    Err(Violation::NoLiveness(format!(
                        "no write committed within {} ticks of the faults stopping (leader: {:?})",
                        self.opts.liveness_bound_ticks,
                        self.leader()
                    )))
                }
            }
            Event::End => Ok(()),
            other => self.handle_fault(other),
        }
    }

    // ---------------------------------------------------------------- node lifecycle

    fn node_config(&self, id: NodeId, applied: u64) -> Config {
        let mut c = Config::new(id);
        c.heartbeat_ticks = self.cfg.heartbeat_ticks;
        c.election_timeout_base_ticks = self.cfg.election_ticks;
        c.jitter_max_ticks = self.cfg.election_ticks;
        c.pre_vote = self.cfg.pre_vote;
        c.check_quorum = self.cfg.check_quorum;
        c.max_entries_per_append = 64;
        c.max_inflight_msgs = 16;
        c.applied = applied;
        c
    }

    /// Starts node `id`: fresh (a new disk; `initial` says whether it is an initial
    /// voter or joins later) or, when its disk exists, restarted from what is durable.
    fn start_node(&mut self, id: NodeId, initial: bool) -> Check {
        if !self.nodes.contains_key(&id) {
            // Every node is bootstrapped with the initial membership, as if it were a
            // snapshot at index 0: the log's configuration changes apply on top of it
            // (a node joining later learns the rest from the log or a snapshot).
            let _ = initial;
            let membership = self.confs[&0].clone();
            self.nodes.insert(
                id,
                SimNode {
                    disk: SimDisk::new(DurableLog::new(membership, KvState::default())),
                    incarnation: 0,
                    run: None,
                    paused_until: 0,
                },
            );
        }
        let (log, sm, shadow, commit) = {
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
            (n.disk.log.clone(), d.snapshot_data.clone(), shadow, commit)
        };
        let applied = sm.applied.max(log.borrow().snapshot.index);
        let hs = log.borrow().hard_state;
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

    fn crash_node(&mut self, id: NodeId) {
        let torn = self.cfg.node.torn_writes;
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

    // ---------------------------------------------------------------- events

    fn running(&mut self, id: NodeId, inc: Option<u64>) -> Option<&mut Running> {
        let n = self.nodes.get_mut(&id)?;
        if inc.is_some_and(|i| i != n.incarnation) {
            return None;
        }
        n.run.as_mut()
    }

    fn on_tick(&mut self, id: NodeId, inc: u64) -> Check {
        let now = self.now;
        let Some(n) = self.nodes.get(&id) else {
            return Ok(());
        };
        if n.incarnation != inc || n.run.is_none() {
            return Ok(());
        }
        let paused = n.paused_until > now;
        self.schedule(TICK_MS, Event::Tick(id, inc));
        if paused {
            return Ok(());
        }
        if let Some(r) = self.running(id, Some(inc)) {
            r.raw
                .tick()
                .map_err(|e| Violation::Panic(format!("tick: {e}")))?;
        }
        self.drive(id)
    }

    fn send(&mut self, m: Message) {
        if !self.nodes.contains_key(&m.to) && m.to > self.cfg.max_node_id {
            return;
        }
        let mut snap = None;
        if let MessageBody::InstallSnapshot(meta) = &m.body {
            let data = self.nodes.get(&m.from).and_then(|n| {
                let d = n.disk.log.borrow();
                (d.snapshot.index == meta.index && d.snapshot.term == meta.term)
                    .then(|| d.snapshot_data.clone())
            });
            match data {
                Some(d) => snap = Some(d),
                None => {
                    trace_line!(self.trace, self.now, "{} no snapshot data", Msg(&m));
                    if let Some(r) = self.running(m.from, None) {
                        r.raw.report_snapshot(m.to, false);
                    }
                    return;
                }
            }
        }
        let arrivals = self.net.send(self.now, m.from, m.to);
        if arrivals.is_empty() {
            trace_line!(self.trace, self.now, "{} dropped", Msg(&m));
            if snap.is_some()
                && let Some(r) = self.running(m.from, None)
            {
                r.raw.report_snapshot(m.to, false);
            }
            return;
        }
        for at in arrivals {
            self.queue
                .push(at, Event::Deliver(Box::new((m.clone(), snap.clone()))));
        }
    }

    fn on_deliver(&mut self, m: Message, snap: Option<KvState>) -> Check {
        let (from, to) = (m.from, m.to);
        match self.net.admit(self.now, from, to) {
            Admit::Deliver => {}
            Admit::RetryAt(t) => {
                self.queue.push(t, Event::Deliver(Box::new((m, snap))));
                return Ok(());
            }
            Admit::Drop => {
                trace_line!(self.trace, self.now, "{} cut", Msg(&m));
                if snap.is_some() {
                    if let Some(r) = self.running(from, None) {
                        r.raw.report_snapshot(to, false);
                    }
                    self.drive(from)?;
                }
                return Ok(());
            }
        }
        let now = self.now;
        let paused_until = self.nodes.get(&to).map_or(0, |n| n.paused_until);
        if paused_until > now {
            self.queue
                .push(paused_until, Event::Deliver(Box::new((m, snap))));
            return Ok(());
        }
        let is_snap = snap.is_some();
        if self.running(to, None).is_some() {
            trace_line!(self.trace, now, "{} recv", Msg(&m));
        }
        let Some(r) = self.running(to, None) else {
            if is_snap {
                if let Some(r) = self.running(from, None) {
                    r.raw.report_snapshot(to, false);
                }
                self.drive(from)?;
            }
            return Ok(());
        };
        if let (MessageBody::InstallSnapshot(meta), Some(data)) = (&m.body, snap) {
            r.incoming_snapshot = Some((meta.clone(), data));
        }
        if let Err(e) = r.raw.step(m) {
            trace_line!(self.trace, now, "n{to} step error: {e}");
        }
        self.drive(to)?;
        if is_snap {
            if let Some(r) = self.running(from, None) {
                r.raw.report_snapshot(to, true);
            }
            self.drive(from)?;
        }
        Ok(())
    }

    fn on_disk_done(&mut self, id: NodeId, inc: u64) -> Check {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if n.incarnation != inc || n.run.is_none() {
            return Ok(());
        }
        if n.paused_until > now {
            let t = n.paused_until;
            self.queue.push(t, Event::DiskDone(id, inc));
            return Ok(());
        }
        let done = n.disk.complete_until(now);
        let Some(&last) = done.last() else {
            return Ok(());
        };
        self.persisted(id, last)?;
        self.drive(id)
    }

    /// Everything up to Ready `number` is durable on `id`: release its held messages and
    /// tell the node.
    fn persisted(&mut self, id: NodeId, number: u64) -> Check {
        let mut out = Vec::new();
        {
            let Some(r) = self.running(id, None) else {
                return Ok(());
            };
            while r.held.front().is_some_and(|(n, _)| *n <= number) {
                let (_, msgs) = r.held.pop_front().expect("checked");
                out.extend(msgs);
            }
            r.raw
                .on_persisted(number)
                .map_err(|e| Violation::Panic(format!("on_persisted: {e}")))?;
        }
        for m in out {
            self.send(m);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- Ready handling

    /// Handles `id`'s Readys until it has none.
    fn drive(&mut self, id: NodeId) -> Check {
        for _ in 0..1000 {
            let Some(r) = self.running(id, None) else {
                return Ok(());
            };
            if !r.raw.has_ready() {
                return Ok(());
            }
            self.handle_ready(id)?;
        }
        Err(Violation::Panic(format!(
            "n{id} never stops producing Readys"
        )))
    }

    fn handle_ready(&mut self, id: NodeId) -> Check {
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
                    early_acks.push((cmd.client, cmd.seq));
                }
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
            self.checker.on_commit(id, hs.commit)?;
        }
        for (client, seq) in early_acks {
            self.reply(id, client, seq, Reply::Done(KvOutput::PutOk), None)?;
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
    fn maybe_compact(&mut self, id: NodeId) {
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
            membership: r.raw.membership().clone(),
        };
        log.compact_to(meta, r.sm.clone());
        drop(log);
        if r.raw.on_compacted(applied).is_ok() {
            self.report.compactions += 1;
            trace_line!(self.trace, self.now, "n{id} compacts to {applied}/{term}");
        }
    }

    // ---------------------------------------------------------------- clients

    fn client_start(&mut self, c: u64) {
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
        self.schedule(d, Event::ClientArrive(c, op));
        let timeout = op.deadline - self.now;
        self.schedule(timeout, Event::ClientExpire(c, op.seq));
    }

    fn client_arrive(&mut self, c: u64, op: InFlight) -> Check {
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
    fn reply(
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
    /// `term`) must be on the disks of a majority of a configuration that could have
    /// committed it (the one in force at it, or one of the two before: the leader commits
    /// with the configuration it has applied, which may lag a change or two).
    fn check_durable(&self, index: u64, term: u64) -> Check {
        let durable: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                let d = n.disk.log.borrow();
                d.snapshot.index >= index || d.term_at(index) == Some(term)
            })
            .map(|(id, _)| *id)
            .collect();
        let ok = self
            .confs
            .range(..index)
            .rev()
            .take(3)
            .any(|(_, m)| has_quorum(m, &durable));
        if ok {
            Ok(())
        } else {
            Err(Violation::AckedNotDurable {
                index,
                durable_on: durable.into_iter().collect(),
            })
        }
    }

    fn client_reply(&mut self, c: u64, seq: u64, reply: Reply) {
        let ids = self.started_ids();
        let accepted = match reply {
            Reply::Done(out) => {
                let ok = self.clients.complete(c, seq, self.now, out);
                if ok {
                    trace_line!(self.trace, self.now, "client c{c} #{seq} -> {out:?}");
                }
                ok
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

    fn faults_end(&mut self) -> Check {
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

    fn liveness_probe(&mut self) -> Check {
        if self.liveness_done {
            return Ok(());
        }
        if let Some(l) = self.leader() {
            if let Some(r) = self.running(l, None) {
                let _ = r.raw.propose(Bytes::from_static(LIVENESS_MARK));
            }
            self.drive(l)?;
        }
        self.schedule(10 * TICK_MS, Event::LivenessProbe);
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
