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

mod clients;
mod faults;
mod format;
mod nodes;
mod ready;

use crate::client::{Clients, InFlight};
use crate::configs::ConfigModel;
use crate::invariants::{SafetyChecker, Violation};
use crate::kv::KvState;
use crate::linearizability::{KvOutput, check_kv_history};
use crate::network::{Admit, Network};
use crate::options::{RunReport, SimOptions};
use crate::queue::EventQueue;
use crate::rng::SimRng;
use crate::storage::{SharedLog, SimDisk};
use crate::swarm::{SwarmConfig, TICK_MS};
use crate::trace::Trace;
use crate::trace_line;
use bytes::Bytes;
use format::Msg;
use raft_core::{Entry, Membership, Message, MessageBody, NodeId, RawNode, Role, SnapshotMeta};
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
    /// The node gave up on it (a forwarded proposal came back dropped): the client stops
    /// waiting, the outcome stays unknown (a duplicate of the forwarded message may have
    /// been appended).
    Abandoned,
}

#[derive(Debug)]
enum Event {
    Tick(NodeId, u64),
    Deliver(Box<(Message, Option<KvState>)>),
    DiskDone(NodeId, u64),
    /// The state machine of (node, incarnation) applies what is due.
    Apply(NodeId, u64),
    /// A snapshot transfer from the first node to the second failed.
    SnapshotFailed(NodeId, NodeId),
    FsyncError,
    ClientStart(u64),
    ClientArrive(u64, Box<InFlight>),
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
    /// The simulator's model of the node's configurations (checked against the node's).
    configs: ConfigModel,
    /// Committed work handed out and not yet applied, with the time it is due (in order).
    apply_queue: VecDeque<(u64, ApplyItem)>,
    /// Mutation `CommitWithoutQuorum`: puts to acknowledge once the leader's own write of
    /// them (the `Ready` numbered first) is durable.
    early_acks: VecDeque<(u64, Vec<EarlyAck>)>,
}

/// A put acknowledged early by the `CommitWithoutQuorum` mutation: (client, seq, index, term).
type EarlyAck = (u64, u64, u64, u64);

/// Work for a node's state machine, applied in order.
#[derive(Debug)]
enum ApplyItem {
    Entries(Vec<Entry>),
    /// Restore from a snapshot the node installed.
    Restore(SnapshotMeta, KvState),
}

/// A node slot: its disk always exists once started; the process may be down.
struct SimNode {
    disk: SimDisk<KvState>,
    incarnation: u64,
    run: Option<Running>,
    paused_until: u64,
    /// This node's clock drift (parts per million; its tick lasts `TICK_MS * (1 + d)`).
    drift_ppm: i64,
    /// Microseconds carried from one tick to the next (drifting clocks).
    tick_carry_us: u64,
    /// The state machine as last made durable (with the membership as of its applied
    /// index), when asynchronous apply flushes it; survives crashes.
    sm_durable: Option<(KvState, Membership)>,
    /// The disk's next write completion fails (an fsync error).
    fail_next_write: bool,
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
    /// The configuration a leader counted when it committed, by the last index of the
    /// range it committed first (ranges are disjoint: the first leader to commit an index
    /// records it).
    commit_confs: BTreeMap<u64, Membership>,
    /// The highest index in `commit_confs`.
    commit_recorded: u64,
    /// The index of the first liveness probe entry applied anywhere.
    liveness_index: Option<u64>,
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
            commit_confs: BTreeMap::new(),
            commit_recorded: 0,
            liveness_index: None,
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
        r.async_apply = self.cfg.node.apply_lag_max > 0;
        r.commits_first_seen_on_followers = self.checker.commits_first_seen_on_followers;
        r.lease_reads = self.cfg.ops.lease_reads;
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
            (d.fsync_error_every, Event::FsyncError),
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
        self.report.lin_keys = history.iter().map(|o| o.key).collect::<BTreeSet<_>>().len();
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
            Event::Apply(id, inc) => self.on_apply(id, inc),
            Event::SnapshotFailed(from, to) => {
                trace_line!(
                    self.trace,
                    self.now,
                    "snapshot n{from}>n{to} transfer failed"
                );
                if let Some(r) = self.running(from, None) {
                    r.raw.report_snapshot(to, false);
                }
                self.drive(from)
            }
            Event::ClientStart(c) => {
                self.client_start(c);
                Ok(())
            }
            Event::ClientArrive(c, op) => self.client_arrive(c, *op),
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
            Event::LivenessDeadline => self.liveness_deadline(),
            Event::End => Ok(()),
            other => self.handle_fault(other),
        }
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
        let d = self.tick_delay(id);
        self.schedule(d, Event::Tick(id, inc));
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
        let mut arrivals = self.net.send(self.now, m.from, m.to);
        if snap.is_some() && !arrivals.is_empty() {
            // A snapshot transfer takes time, and may fail (the leader hears of it).
            let n = &self.cfg.net;
            let (max, fail) = (n.snapshot_delay_max, n.snapshot_fail);
            if fail > 0.0 && self.rng.chance(fail) {
                self.report.snapshot_failures += 1;
                let at = self.rng.range(1, max.max(10));
                self.schedule(at, Event::SnapshotFailed(m.from, m.to));
                return;
            }
            if max > 0 {
                let extra = self.rng.range(0, max);
                for a in &mut arrivals {
                    *a += extra;
                }
            }
        }
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
        if n.fail_next_write && n.disk.pending.front().is_some_and(|p| p.done_at <= now) {
            // The fsync fails: the node stops, keeping whatever prefix reached the disk.
            n.fail_next_write = false;
            self.report.fsync_failures += 1;
            trace_line!(self.trace, now, "n{id} FSYNC ERROR: fail-stop");
            self.crash_node(id, true);
            let down = self.rng.range(10, self.cfg.node.max_down);
            self.schedule(down, Event::Restart(id));
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
        self.early_acks(id, number)
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
}
