//! A three-node Raft cluster in one process, built from `raft-core` and what a downstream
//! project brings itself:
//!
//! - its own log storage: [`VecLog`], a tiny [`LogRead`] over a `Vec` (it keeps everything in
//!   memory; a real one makes each write durable before the node is told it is persisted);
//! - its own transport: one thread per node, and `std::sync::mpsc` channels carrying
//!   [`Message`]s between them;
//! - its own state machine: a `BTreeMap` of keys to values, written by `key=value` commands.
//!
//! It waits for a leader, writes ten keys through all three nodes (followers forward their
//! proposals to the leader), then reads every key back from every node with a linearizable
//! read (`read_index`), and checks each value. It exits non-zero if anything is off.
//!
//! Run: `cargo run -p raft-core --example three_nodes`
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_core::{
    Config, Entry, EntryKind, HardState, InitialState, LogRead, Membership, Message, RawNode, Role,
    SnapshotMeta, StorageError,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// How often each node's clock ticks. raft-core counts time in ticks only: with the default
/// [`Config`], a heartbeat every tick and elections after 10-20 ticks.
const TICK: Duration = Duration::from_millis(10);
/// How long the example waits for any one answer before it gives up.
const PATIENCE: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Where the answer to a put goes.
type PutReply = Sender<Result<(), String>>;
/// Where the answer to a get goes: the value, if the key is set.
type GetReply = Sender<Result<Option<String>, String>>;

/// The storage: every entry since index 1 (this example never compacts), the hard state and
/// the applied membership. Its writes happen in [`NodeLoop::handle_ready`], before
/// `on_persisted`; this trait is only the read side raft-core needs.
struct VecLog {
    /// `entries[k].index == k + 1`.
    entries: Vec<Entry>,
    hard_state: HardState,
    /// The membership as of the applied index (what `on_applied` last returned).
    membership: Membership,
    /// The cluster as it was bootstrapped.
    bootstrap: Membership,
}

impl VecLog {
    fn new(voters: impl IntoIterator<Item = u64>) -> Self {
        let membership = Membership::with_voters(voters);
        Self {
            entries: Vec::new(),
            hard_state: HardState::default(),
            membership: membership.clone(),
            bootstrap: membership,
        }
    }

    /// Appends entries; an entry at an existing index replaces it and everything after (a
    /// new leader overwrote an uncommitted suffix).
    fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let keep = usize::try_from(first.index - 1).expect("index fits");
        assert!(
            keep <= self.entries.len(),
            "append at {} leaves a gap",
            first.index
        );
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    fn last(&self) -> u64 {
        self.entries.len() as u64
    }
}

impl LogRead for VecLog {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        if lo < 1 {
            return Err(StorageError::Compacted(lo));
        }
        if hi > self.last() + 1 {
            return Err(StorageError::Unavailable(hi - 1));
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &self.entries[(lo - 1) as usize..(hi - 1) as usize] {
            bytes += e.size();
            if !out.is_empty() && max_bytes.is_some_and(|max| bytes > max) {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        self.entries
            .get((index - 1) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable(index))
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last())
    }

    fn snapshot_meta(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(SnapshotMeta {
            index: 0,
            term: 0,
            membership: self.bootstrap.clone(),
        })
    }
}

/// What a node's thread receives: peer messages from the transport, and client requests.
enum Input {
    /// A message from a peer.
    Raft(Message),
    /// Write `key=value`; answered once this node has applied it.
    Put {
        key: String,
        value: String,
        reply: PutReply,
    },
    /// A linearizable read of `key`.
    Get { key: String, reply: GetReply },
    /// The node's role and what it believes about the leader.
    Status(Sender<(Role, Option<u64>)>),
    /// Stop the thread.
    Stop,
}

/// One node: the Raft state, the state machine and the requests waiting for an answer.
struct NodeLoop {
    node: RawNode<VecLog>,
    /// The transport: a sender to every node's thread, by id.
    peers: HashMap<u64, Sender<Input>>,
    /// The state machine.
    kv: BTreeMap<String, String>,
    applied: u64,
    /// Puts proposed through this node, by request id (carried in the command).
    puts: HashMap<u64, PutReply>,
    /// Reads waiting for their read index to be confirmed, by request id.
    reads: HashMap<u64, (String, GetReply)>,
    /// Reads confirmed at an index, waiting for apply to reach it.
    ready_reads: Vec<(u64, String, GetReply)>,
    next_request: u64,
}

/// A command in the log: `request-id key=value`, the request id made unique per node.
fn encode_put(request: u64, key: &str, value: &str) -> Bytes {
    Bytes::from(format!("{request} {key}={value}"))
}

fn decode_put(data: &[u8]) -> Option<(u64, String, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let (request, rest) = text.split_once(' ')?;
    let (key, value) = rest.split_once('=')?;
    Some((request.parse().ok()?, key.to_string(), value.to_string()))
}

impl NodeLoop {
    fn run(mut self, inbox: Receiver<Input>) -> Result<(), BoxError> {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok(Input::Raft(m)) => {
                    // A message the node cannot use (a stale term, a peer it does not
                    // know) is reported as an error; a transport drops it and goes on.
                    if let Err(e) = self.node.step(m) {
                        eprintln!("node {}: message refused: {e}", self.node.id());
                    }
                }
                Ok(Input::Put { key, value, reply }) => {
                    let request = self.request_id();
                    match self.node.propose(encode_put(request, &key, &value)) {
                        Ok(()) => {
                            self.puts.insert(request, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                Ok(Input::Get { key, reply }) => {
                    let request = self.request_id();
                    let ctx = Bytes::from(request.to_be_bytes().to_vec());
                    match self.node.read_index(ctx) {
                        Ok(()) => {
                            self.reads.insert(request, (key, reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                Ok(Input::Status(reply)) => {
                    let s = self.node.status();
                    let _ = reply.send((s.role, s.leader));
                }
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.node.tick()?;
                next_tick += TICK;
            }
            while self.node.has_ready() {
                self.handle_ready()?;
            }
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.node.id() << 48 | self.next_request
    }

    /// Carries out one `Ready` in the order its contract asks: persist, send, apply, read,
    /// answer.
    fn handle_ready(&mut self) -> Result<(), BoxError> {
        let rd = self.node.ready()?;
        // 1. Persist. This storage never compacts, so no peer ever needs a snapshot.
        assert!(rd.snapshot.is_none(), "no snapshot without compaction");
        let log = self.node.log_mut();
        log.append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            log.hard_state = hs;
        }
        self.node.on_persisted(rd.number())?;
        // 2. Send. `messages` could have left before the writes; `persisted_messages` only
        // after them, which is now.
        for m in rd.messages.into_iter().chain(rd.persisted_messages) {
            if let Some(peer) = self.peers.get(&m.to) {
                // A stopped peer is an unreachable one: the message is lost, as on a network.
                let _ = peer.send(Input::Raft(m));
            }
        }
        // 3. Apply.
        for e in &rd.committed_entries {
            if e.kind == EntryKind::Normal && !e.data.is_empty() {
                let (request, key, value) =
                    decode_put(&e.data).ok_or("a log entry that is not a put")?;
                self.kv.insert(key, value);
                if let Some(reply) = self.puts.remove(&request) {
                    let _ = reply.send(Ok(()));
                }
            }
            self.applied = e.index;
        }
        if let Some(last) = rd.committed_entries.last()
            && let Some(membership) = self.node.on_applied(last.index)?
        {
            self.node.log_mut().membership = membership;
        }
        // 4. Read: a confirmed read waits until apply reaches its index.
        for rs in rd.read_states {
            let request = u64::from_be_bytes(rs.context.as_ref().try_into()?);
            if let Some((key, reply)) = self.reads.remove(&request) {
                self.ready_reads.push((rs.index, key, reply));
            }
        }
        let applied = self.applied;
        let kv = &self.kv;
        self.ready_reads.retain(|(index, key, reply)| {
            if *index > applied {
                return true;
            }
            let _ = reply.send(Ok(kv.get(key).cloned()));
            false
        });
        // 5. Answer the proposals the leader never appended.
        for e in rd.dropped_proposals {
            if let Some((request, _, _)) = decode_put(&e.data)
                && let Some(reply) = self.puts.remove(&request)
            {
                let _ = reply.send(Err("proposal dropped".into()));
            }
        }
        Ok(())
    }
}

/// Sends a request built around a fresh reply channel to `node` and waits for the answer.
fn ask<T>(node: &Sender<Input>, make: impl FnOnce(Sender<T>) -> Input) -> Result<T, BoxError> {
    let (tx, rx) = mpsc::channel();
    node.send(make(tx))
        .map_err(|_| "the node's thread has stopped")?;
    Ok(rx.recv_timeout(PATIENCE)?)
}

fn main() -> Result<(), BoxError> {
    let ids = [1u64, 2, 3];
    let (senders, inboxes): (Vec<_>, Vec<_>) = ids.iter().map(|_| mpsc::channel()).unzip();
    let peers: HashMap<u64, Sender<Input>> = ids.iter().copied().zip(senders.clone()).collect();
    let mut threads = Vec::new();
    for (&id, inbox) in ids.iter().zip(inboxes) {
        let node = RawNode::new(Config::new(id), VecLog::new(ids), id)?;
        let node_loop = NodeLoop {
            node,
            peers: peers.clone(),
            kv: BTreeMap::new(),
            applied: 0,
            puts: HashMap::new(),
            reads: HashMap::new(),
            ready_reads: Vec::new(),
            next_request: 0,
        };
        threads.push(thread::spawn(move || node_loop.run(inbox)));
    }

    // Wait until every node names the same leader.
    let started = Instant::now();
    let leader = loop {
        let mut seen = Vec::new();
        for s in &senders {
            seen.push(ask(s, Input::Status)?);
        }
        let leaders: Vec<u64> = seen
            .iter()
            .filter(|(role, _)| *role == Role::Leader)
            .filter_map(|(_, leader)| *leader)
            .collect();
        if let [leader] = leaders[..]
            && seen.iter().all(|(_, l)| *l == Some(leader))
        {
            break leader;
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("no leader after {PATIENCE:?}: {seen:?}").into());
        }
        thread::sleep(TICK);
    };
    println!("leader: node {leader} after {:?}", started.elapsed());

    // Ten writes, through every node in turn: a follower forwards its proposal to the leader.
    let mut expected = BTreeMap::new();
    for i in 0..10 {
        let (key, value) = (format!("key{i}"), format!("value{i}"));
        let via = &senders[i % senders.len()];
        let mut attempt = 0;
        loop {
            let answer = ask(via, |reply| Input::Put {
                key: key.clone(),
                value: value.clone(),
                reply,
            })?;
            match answer {
                Ok(()) => break,
                // During an election a proposal may be refused or dropped: try again.
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("put {key} via node {}: {e}; retrying", i % 3 + 1);
                    thread::sleep(TICK * 5);
                }
                Err(e) => return Err(format!("put {key}: {e}").into()),
            }
        }
        expected.insert(key, value);
    }
    println!("wrote {} keys through all three nodes", expected.len());

    // Read every key back from every node, linearizably.
    for (n, s) in senders.iter().enumerate() {
        for (key, value) in &expected {
            let got = ask(s, |reply| Input::Get {
                key: key.clone(),
                reply,
            })??;
            if got.as_deref() != Some(value.as_str()) {
                return Err(format!("node {}: {key} = {got:?}, expected {value}", n + 1).into());
            }
        }
    }
    println!("every node read back every key");

    for s in &senders {
        let _ = s.send(Input::Stop);
    }
    for t in threads {
        t.join().map_err(|_| "a node's thread panicked")??;
    }
    println!("ok");
    Ok(())
}
