//! A fixed workload for counting instructions (not time): the 3-node in-memory cluster of
//! `benches/throughput.rs`, driven the same way, commits a warm-up then a measured number
//! of proposals with a given number outstanding and a given payload size. Instruction
//! counts do not depend on the machine's load, so two builds can be compared on a busy
//! machine:
//!
//! ```text
//! cargo build --release -p raft-core --example commit_workload
//! valgrind --tool=callgrind --toggle-collect='*commit_workload*measured*' \
//!     target/release/examples/commit_workload 64 256 60000
//! ```
//!
//! Arguments: outstanding proposals, payload bytes, measured proposals (default 64, 256,
//! 60000). Only `measured` is counted with `--toggle-collect`, so callgrind's total
//! divided by the measured proposals is the instructions per committed entry (all work of
//! the cluster: three nodes, message delivery, in-memory persistence, compaction every
//! 50,000 entries as in the benchmark).
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_core::{Config, MemLog, Message, RawNode, Ready, Role};

const COMPACT_EVERY: u64 = 50_000;

struct Core {
    nodes: Vec<RawNode<MemLog>>,
    inbox: Vec<Message>,
    applied_since_compact: u64,
}

impl Core {
    fn new() -> Self {
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

    fn propose(&mut self, payload: &[u8]) {
        self.nodes[0]
            .propose(Bytes::copy_from_slice(payload))
            .expect("propose");
    }

    /// Handles Readys and delivers messages until quiet; returns the proposals the leader
    /// handed out for applying.
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

/// Commits `total` proposals keeping `outstanding` in flight.
fn run(c: &mut Core, total: u64, outstanding: u64, payload: &[u8]) {
    let (mut proposed, mut done) = (0, 0);
    while done < total {
        while proposed - done < outstanding && proposed < total {
            c.propose(payload);
            proposed += 1;
        }
        done += c.pump();
    }
}

/// The counted part (callgrind's `--toggle-collect` names it).
#[inline(never)]
fn measured(c: &mut Core, total: u64, outstanding: u64, payload: &[u8]) {
    run(c, total, outstanding, payload);
}

fn arg(args: &[String], i: usize, default: u64) -> Result<u64, String> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|e| format!("argument {i} ({s:?}) is not a count: {e}")),
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let outstanding = arg(&args, 1, 64)?.max(1);
    let size = arg(&args, 2, 256)?;
    let total = arg(&args, 3, 60_000)?;
    let payload = vec![7u8; usize::try_from(size).map_err(|e| e.to_string())?];
    let mut c = Core::new();
    run(&mut c, 10_000, outstanding, &payload);
    measured(&mut c, total, outstanding, &payload);
    println!(
        "committed {total} proposals ({outstanding} outstanding, {size} B) after 10000 warm-up"
    );
    Ok(())
}
