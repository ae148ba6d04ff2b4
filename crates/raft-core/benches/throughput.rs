//! Committed proposals per second of a 3-node in-memory cluster driven through
//! `RawNode`/`Ready` (no disk, no network), at 1, 64 and 1024 outstanding proposals with
//! 16- and 256-byte payloads; with `--features raft-rs-baseline`, the same cluster built on
//! tikv/raft-rs 0.7 runs beside it in the same process. Allocations per committed entry are
//! counted by a counting global allocator and printed before the timings.
//!
//! ```text
//! cargo bench -p raft-core --bench throughput                                # raft-core only
//! cargo bench -p raft-core --features raft-rs-baseline --bench throughput    # both
//! ```
//!
//! raft-rs's `raft-proto` build runs the protoc bundled in `protobuf-build` (or a system
//! protoc 3.x): leave `PROTOC` unset, as `protobuf-build` 0.14 refuses protoc 4 and later.
//!
//! Both clusters are driven the same way: the leader keeps `outstanding` proposals in
//! flight; every node's Readys are persisted into an in-memory log and its messages handed
//! straight to the receiving node; a proposal counts once the leader hands it out to be
//! applied. Logs are compacted every 50,000 entries in both.
// The allocation table goes to stdout on purpose; the counting allocator needs `unsafe`.
#![allow(clippy::print_stdout, unsafe_code)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts every allocation (and reallocation) made by the process.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

mod common;
use common::{Cluster, Core, run};

#[cfg(feature = "raft-rs-baseline")]
mod baseline {
    //! The same cluster on tikv/raft-rs 0.7.
    use super::Cluster;
    use super::common::COMPACT_EVERY;
    use raft::eraftpb::Message;
    use raft::storage::MemStorage;
    use raft::{Config, RawNode, StateRole, Storage};

    pub struct RaftRs {
        nodes: Vec<RawNode<MemStorage>>,
        inbox: Vec<Message>,
        applied_since_compact: u64,
    }

    impl RaftRs {
        pub fn new() -> Self {
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            let nodes = (1..=3)
                .map(|id| {
                    let cfg = Config {
                        id,
                        election_tick: 10,
                        heartbeat_tick: 1,
                        max_size_per_msg: 1 << 20,
                        max_inflight_msgs: 256,
                        ..Config::default()
                    };
                    let store = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
                    RawNode::new(&cfg, store, &logger).expect("node")
                })
                .collect();
            let mut c = Self {
                nodes,
                inbox: Vec::new(),
                applied_since_compact: 0,
            };
            c.nodes[0].campaign().expect("campaign");
            c.pump();
            assert!(c.nodes[0].raft.state == StateRole::Leader);
            c
        }
    }

    impl Cluster for RaftRs {
        fn propose(&mut self, payload: &[u8]) {
            self.nodes[0]
                .propose(Vec::new(), payload.to_vec())
                .expect("propose");
        }

        fn pump(&mut self) -> u64 {
            let mut committed = 0;
            loop {
                let mut moved = false;
                for (i, node) in self.nodes.iter_mut().enumerate() {
                    while node.has_ready() {
                        moved = true;
                        let mut rd = node.ready();
                        let store = node.raft.raft_log.store.clone();
                        self.inbox.extend(rd.take_messages());
                        let mut apply = rd.take_committed_entries();
                        store.wl().append(rd.entries()).expect("append");
                        if let Some(hs) = rd.hs() {
                            store.wl().set_hardstate(hs.clone());
                        }
                        self.inbox.extend(rd.take_persisted_messages());
                        let mut light = node.advance(rd);
                        if let Some(commit) = light.commit_index() {
                            store.wl().mut_hard_state().set_commit(commit);
                        }
                        self.inbox.extend(light.take_messages());
                        apply.extend(light.take_committed_entries());
                        if i == 0 {
                            committed += apply.iter().filter(|e| !e.data.is_empty()).count() as u64;
                            self.applied_since_compact += apply.len() as u64;
                        }
                        node.advance_apply();
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
                    let applied = node.raft.raft_log.applied;
                    let store = node.raft.raft_log.store.clone();
                    let first = store.first_index().expect("first");
                    if applied > first {
                        store.wl().compact(applied).expect("compact");
                    }
                }
            }
            committed
        }
    }
}

const OUTSTANDING: [u64; 3] = [1, 64, 1024];
const PAYLOADS: [usize; 2] = [16, 256];

/// Allocations per committed entry over a fixed run (after warm-up).
fn allocs_per_entry(c: &mut impl Cluster, outstanding: u64, payload: &[u8]) -> f64 {
    run(c, 20_000, outstanding, payload);
    let n = 100_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    run(c, n, outstanding, payload);
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn print_allocations() {
    println!("allocations per committed entry (3 nodes, all work of the cluster):");
    for outstanding in OUTSTANDING {
        for size in PAYLOADS {
            let payload = vec![7u8; size];
            let core = allocs_per_entry(&mut Core::new(), outstanding, &payload);
            #[cfg(feature = "raft-rs-baseline")]
            let base = format!(
                "  raft-rs {:7.2}",
                allocs_per_entry(&mut baseline::RaftRs::new(), outstanding, &payload)
            );
            #[cfg(not(feature = "raft-rs-baseline"))]
            let base = String::new();
            println!(
                "  outstanding {outstanding:4} payload {size:3} B: raft-core {core:7.2}{base}"
            );
        }
    }
}

/// Throughput measured in alternation with the baseline, best of several rounds: on a
/// shared, noisy machine the best round of each is the fairest comparison.
fn print_paired_throughput() {
    println!("committed proposals/s, best of 7 interleaved rounds:");
    for outstanding in OUTSTANDING {
        for size in PAYLOADS {
            let payload = vec![7u8; size];
            let n = if outstanding == 1 { 5_000 } else { 40_000 };
            let mut core = Core::new();
            run(&mut core, n / 4, outstanding, &payload);
            #[cfg(feature = "raft-rs-baseline")]
            let mut base = baseline::RaftRs::new();
            #[cfg(feature = "raft-rs-baseline")]
            run(&mut base, n / 4, outstanding, &payload);
            let (mut best_core, mut _best_base) = (Duration::MAX, Duration::MAX);
            for _ in 0..7 {
                best_core = best_core.min(time_commits(&mut core, n, outstanding, &payload));
                #[cfg(feature = "raft-rs-baseline")]
                {
                    _best_base = _best_base.min(time_commits(&mut base, n, outstanding, &payload));
                }
            }
            let rate = |d: Duration| n as f64 / d.as_secs_f64() / 1000.0;
            let core_rate = rate(best_core);
            let base = if _best_base == Duration::MAX {
                String::new()
            } else {
                let b = rate(_best_base);
                format!("  raft-rs {b:8.1} K/s  ratio {:5.2}x", core_rate / b)
            };
            println!(
                "  outstanding {outstanding:4} payload {size:3} B: raft-core {core_rate:8.1} K/s{base}"
            );
        }
    }
}

fn time_commits(c: &mut impl Cluster, iters: u64, outstanding: u64, payload: &[u8]) -> Duration {
    let start = Instant::now();
    run(c, iters, outstanding, payload);
    start.elapsed()
}

fn bench(cr: &mut Criterion) {
    print_allocations();
    print_paired_throughput();
    let mut group = cr.benchmark_group("commit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for size in PAYLOADS {
        for outstanding in OUTSTANDING {
            let payload = vec![7u8; size];
            group.throughput(Throughput::Elements(1));
            let id = format!("{size}B/outstanding-{outstanding}");
            let mut core = Core::new();
            group.bench_function(BenchmarkId::new("raft-core", &id), |b| {
                b.iter_custom(|iters| time_commits(&mut core, iters, outstanding, &payload))
            });
            #[cfg(feature = "raft-rs-baseline")]
            {
                let mut base = baseline::RaftRs::new();
                group.bench_function(BenchmarkId::new("raft-rs", &id), |b| {
                    b.iter_custom(|iters| time_commits(&mut base, iters, outstanding, &payload))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
