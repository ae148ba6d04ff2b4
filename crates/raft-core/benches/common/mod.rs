//! The 3-node in-memory raft-core cluster that `benches/throughput.rs` times and
//! `examples/commit_workload.rs` counts instructions of: one definition, so both measure
//! the same work.

use bytes::Bytes;
use raft_core::{Config, MemLog, Message, RawNode, Ready, Role};

/// Logs are compacted every this many applied entries.
pub const COMPACT_EVERY: u64 = 50_000;

/// A cluster the benchmark can drive.
pub trait Cluster {
    /// Proposes one command on the leader.
    fn propose(&mut self, payload: &[u8]);
    /// Handles Readys and delivers messages until quiet; returns the proposals the leader
    /// handed out for applying.
    fn pump(&mut self) -> u64;
}

/// Commits `total` proposals keeping `outstanding` in flight.
pub fn run(c: &mut impl Cluster, total: u64, outstanding: u64, payload: &[u8]) {
    let (mut proposed, mut done) = (0, 0);
    while done < total {
        while proposed - done < outstanding && proposed < total {
            c.propose(payload);
            proposed += 1;
        }
        done += c.pump();
    }
}

/// The cluster on raft-core.
pub struct Core {
    nodes: Vec<RawNode<MemLog>>,
    inbox: Vec<Message>,
    applied_since_compact: u64,
}

impl Core {
    /// Three voters in memory, node 1 elected.
    pub fn new() -> Self {
        let nodes = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(id);
                cfg.max_entries_per_append = u64::MAX;
                cfg.max_bytes_per_append = 1 << 20;
                cfg.max_inflight_msgs = 256;
                RawNode::new(cfg, MemLog::with_voters([1, 2, 3]), id).expect("node")
            })
            .collect();
        let mut c = Self {
            nodes,
            inbox: Vec::new(),
            applied_since_compact: 0,
        };
        c.nodes[0].campaign().expect("campaign");
        c.pump();
        assert!(c.nodes[0].status().role == Role::Leader);
        c
    }
}

impl Cluster for Core {
    fn propose(&mut self, payload: &[u8]) {
        self.nodes[0]
            .propose(Bytes::copy_from_slice(payload))
            .expect("propose");
    }

    fn pump(&mut self) -> u64 {
        let mut committed = 0;
        loop {
            let mut moved = false;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while node.has_ready() {
                    moved = true;
                    let rd = node.ready().expect("ready");
                    let log = node.log_mut();
                    log.append(&rd.entries);
                    if let Some(hs) = rd.hard_state {
                        log.set_hard_state(hs);
                    }
                    node.on_persisted(rd.number()).expect("persisted");
                    let Ready {
                        messages,
                        persisted_messages,
                        committed_entries,
                        ..
                    } = rd;
                    self.inbox.extend(messages);
                    self.inbox.extend(persisted_messages);
                    if let Some(last) = committed_entries.last() {
                        if i == 0 {
                            committed += committed_entries
                                .iter()
                                .filter(|e| !e.data.is_empty())
                                .count() as u64;
                        }
                        let index = last.index;
                        node.on_applied(index).expect("applied");
                        if i == 0 {
                            self.applied_since_compact += committed_entries.len() as u64;
                        }
                    }
                }
            }
            for m in self.inbox.drain(..) {
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m).expect("step");
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if self.applied_since_compact >= COMPACT_EVERY {
            self.applied_since_compact = 0;
            for node in &mut self.nodes {
                let applied = node.status().applied;
                let m = node.membership().clone();
                if node.log_mut().compact(applied, m).is_ok() {
                    node.on_compacted(applied).expect("compacted");
                }
            }
        }
        committed
    }
}
