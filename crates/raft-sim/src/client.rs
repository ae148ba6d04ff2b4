//! Simulated clients: they issue put, get and compare-and-set operations one at a time,
//! and the history of invocations and responses (in simulated time) is recorded for the
//! linearizability check.
//!
//! Every written value is unique in the run, so a read identifies the write it saw. An
//! operation that a node refuses outright (not the leader, proposal dropped) provably did
//! not happen and is removed from the history; one whose answer never comes back before
//! the client's timeout stays in the history as *indeterminate*.

use crate::linearizability::{KvInput, KvOp, KvOutput, Operation};
use crate::rng::SimRng;
use crate::swarm::OpsConfig;
use raft_core::NodeId;

/// An operation a client has in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// The client's sequence number for it.
    pub seq: u64,
    /// The key.
    pub key: u64,
    /// What it asks.
    pub input: KvInput,
    /// The node it was sent to.
    pub node: NodeId,
    /// When the client gives up.
    pub deadline: u64,
    /// Its position in the history.
    pub history_index: usize,
}

/// One client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its id (also its session id in the state machine). Invariant: >= 1.
    pub id: u64,
    /// The last sequence number used.
    pub seq: u64,
    /// The operation in flight, if any.
    pub in_flight: Option<InFlight>,
    /// The node the client believes leads.
    pub target: NodeId,
}

/// All clients and the history they produced.
#[derive(Debug)]
pub struct Clients {
    /// The clients, by `id - 1`.
    pub clients: Vec<Client>,
    history: Vec<Option<KvOp>>,
    next_value: u64,
    /// Values written so far (for plausible CAS expectations), bounded.
    recent_values: Vec<(u64, u64)>,
    cfg: OpsConfig,
    rng: SimRng,
    /// Operations acknowledged with a result.
    pub completed: u64,
    /// Operations that timed out (indeterminate).
    pub timed_out: u64,
    /// Operations refused (removed from the history).
    pub refused: u64,
}

impl Clients {
    /// `cfg.clients` idle clients, initially aiming at `first_target`.
    pub fn new(cfg: OpsConfig, rng: SimRng, first_target: NodeId) -> Self {
        let clients = (1..=cfg.clients)
            .map(|id| Client {
                id,
                seq: 0,
                in_flight: None,
                target: first_target,
            })
            .collect();
        Self {
            clients,
            history: Vec::new(),
            next_value: 0,
            recent_values: Vec::new(),
            cfg,
            rng,
            completed: 0,
            timed_out: 0,
            refused: 0,
        }
    }

    /// The mean think time between operations.
    pub fn think_time(&mut self) -> u64 {
        let t = self.cfg.think_time;
        self.rng.range(t / 2, t + t / 2)
    }

    /// Starts a new operation for client `id` at `now`, sent to its target node.
    /// Returns what to send, or `None` when the client is busy.
    pub fn start(&mut self, id: u64, now: u64) -> Option<InFlight> {
        let keys = self.cfg.keys;
        let key = self.rng.below(keys);
        let input = match self.rng.below(10) {
            0..=3 => {
                self.next_value += 1;
                KvInput::Put(self.next_value)
            }
            4..=6 => KvInput::Get,
            _ => {
                self.next_value += 1;
                let known: Vec<u64> = self
                    .recent_values
                    .iter()
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
                    .collect();
                let expected = if known.is_empty() || self.rng.chance(0.1) {
                    None
                } else {
                    // Mostly the latest value written to the key, so many CAS succeed.
                    let pick = if self.rng.chance(0.7) {
                        known.len() - 1
                    } else {
                        self.rng.below(known.len() as u64) as usize
                    };
                    Some(known[pick])
                };
                KvInput::Cas {
                    expected,
                    new: self.next_value,
                }
            }
        };
        let timeout = self.cfg.client_timeout;
        let c = self.clients.get_mut(id as usize - 1)?;
        if c.in_flight.is_some() {
            return None;
        }
        c.seq += 1;
        let op = InFlight {
            seq: c.seq,
            key,
            input,
            node: c.target,
            deadline: now + timeout,
            history_index: self.history.len(),
        };
        c.in_flight = Some(op);
        self.history.push(Some(KvOp {
            key,
            op: Operation {
                client: id,
                input,
                call: now,
                ret: None,
            },
        }));
        if let KvInput::Put(v) | KvInput::Cas { new: v, .. } = input {
            self.recent_values.push((key, v));
            if self.recent_values.len() > 64 {
                self.recent_values.remove(0);
            }
        }
        Some(op)
    }

    /// The operation client `id` has in flight.
    pub fn in_flight(&self, id: u64) -> Option<InFlight> {
        self.clients.get(id as usize - 1).and_then(|c| c.in_flight)
    }

    /// The answer to (`id`, `seq`) arrived at `now`. Returns false when the client no
    /// longer waits for it (it timed out, or it is a duplicate answer).
    pub fn complete(&mut self, id: u64, seq: u64, now: u64, out: KvOutput) -> bool {
        let Some(c) = self.clients.get_mut(id as usize - 1) else {
            return false;
        };
        match c.in_flight {
            Some(op) if op.seq == seq => {
                c.in_flight = None;
                if let Some(Some(h)) = self.history.get_mut(op.history_index) {
                    h.op.ret = Some((now, out));
                }
                self.completed += 1;
                true
            }
            _ => false,
        }
    }

    /// The node refused (`id`, `seq`) outright: it never happened. `hint` is the leader
    /// the node named, if any; otherwise the client tries another node.
    pub fn refuse(&mut self, id: u64, seq: u64, hint: Option<NodeId>, nodes: &[NodeId]) {
        let Some(c) = self.clients.get_mut(id as usize - 1) else {
            return;
        };
        if let Some(op) = c.in_flight.filter(|op| op.seq == seq) {
            c.in_flight = None;
            self.history[op.history_index] = None;
            self.refused += 1;
            c.target = match hint {
                Some(h) if h != op.node => h,
                _ => *self.rng.choose(nodes).unwrap_or(&op.node),
            };
        }
    }

    /// The node gave up on (`id`, `seq`) before its deadline: it stays in the history as
    /// indeterminate, and the client tries another node next.
    pub fn abandon(&mut self, id: u64, seq: u64, nodes: &[NodeId]) {
        let Some(c) = self.clients.get_mut(id as usize - 1) else {
            return;
        };
        if c.in_flight.is_some_and(|op| op.seq == seq) {
            c.in_flight = None;
            self.timed_out += 1;
            c.target = *self.rng.choose(nodes).unwrap_or(&c.target);
        }
    }

    /// Gives up on every operation past its deadline at `now` (they stay indeterminate);
    /// returns the ids of clients that became idle. A client that timed out tries
    /// another node next.
    pub fn expire(&mut self, now: u64, nodes: &[NodeId]) -> Vec<u64> {
        let mut idle = Vec::new();
        for c in &mut self.clients {
            if c.in_flight.is_some_and(|op| op.deadline <= now) {
                c.in_flight = None;
                self.timed_out += 1;
                c.target = *self.rng.choose(nodes).unwrap_or(&c.target);
                idle.push(c.id);
            }
        }
        idle
    }

    /// The client learned who leads.
    pub fn set_target(&mut self, id: u64, node: NodeId) {
        if let Some(c) = self.clients.get_mut(id as usize - 1) {
            c.target = node;
        }
    }

    /// The history recorded so far (refused operations left out).
    pub fn history(&self) -> Vec<KvOp> {
        self.history.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OpsConfig {
        OpsConfig {
            clients: 2,
            keys: 2,
            think_time: 10,
            client_timeout: 100,
            membership_every: 0,
            transfer_every: 0,
            compact_after: 0,
            lease_reads: false,
        }
    }

    #[test]
    fn lifecycle_of_operations() {
        let mut cs = Clients::new(cfg(), SimRng::new(1), 1);
        let a = cs.start(1, 0).unwrap();
        assert!(cs.start(1, 1).is_none(), "one operation at a time");
        let b = cs.start(2, 5).unwrap();
        assert_ne!(a.seq, 0);
        // Client 1 completes, client 2 times out.
        let out = match a.input {
            KvInput::Get => KvOutput::Get(None),
            KvInput::Put(_) => KvOutput::PutOk,
            KvInput::Cas { .. } => KvOutput::Cas(false),
        };
        assert!(cs.complete(1, a.seq, 10, out));
        assert!(!cs.complete(1, a.seq, 11, out), "duplicate answer ignored");
        assert_eq!(cs.expire(104, &[1, 2]), Vec::<u64>::new());
        assert_eq!(cs.expire(105, &[1, 2]), vec![2]);
        assert!(!cs.complete(2, b.seq, 200, out), "too late");
        let h = cs.history();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].op.ret, Some((10, out)));
        assert_eq!(h[1].op.ret, None);
        // A refused operation vanishes from the history.
        let c = cs.start(1, 300).unwrap();
        cs.refuse(1, c.seq, Some(2), &[1, 2]);
        assert_eq!(cs.history().len(), 2);
        assert_eq!(cs.clients[0].target, 2);
        assert_eq!((cs.completed, cs.timed_out, cs.refused), (1, 1, 1));
    }

    #[test]
    fn written_values_are_unique() {
        let mut cs = Clients::new(cfg(), SimRng::new(2), 1);
        let mut seen = std::collections::HashSet::new();
        for t in 0..200 {
            let op = cs.start(1, t).unwrap();
            if let KvInput::Put(v) | KvInput::Cas { new: v, .. } = op.input {
                assert!(seen.insert(v));
            }
            cs.refuse(1, op.seq, None, &[1]);
        }
    }
}
