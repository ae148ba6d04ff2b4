//! A fixed workload for counting instructions (not time): the 3-node in-memory cluster of
//! `benches/throughput.rs` (`benches/common`, shared), driven the same way, commits a warm-up then a measured number
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

#[path = "../benches/common/mod.rs"]
mod common;
use common::{Core, run};

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
