//! What physical compaction costs the writes running beside it, in the store alone (no
//! Raft, no network, no fsync): the apply latency a steady writer sees while the background
//! thread removes a deep history, against the same writer just before.
//!
//! Loads `revisions` puts of 256-byte values over `keys` keys (100 writes per key by
//! default, as `raft-bench history` does), then runs a writer that applies one put per
//! [`KvStore::apply`] call at a fixed pace (`rate` per second) for 3 s, then applies
//! `Compact(head)` and keeps writing until physical compaction reached the head. Prints the
//! writer's apply latency (p50, p99, max) before and during, and the compaction time.
//!
//! Run: `cargo run --release -p raft-kv --example compaction_stall -- [revisions] [keys]
//! [rate] [dir]` (defaults 300000, 3000, 2000, a temp dir).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use raft_kv::pb::etcdserverpb::{CompactionRequest, PutRequest};
use raft_kv::{ApplyEntry, Command, EntryPayload, KvStore, Op};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn put(key: usize, value: &[u8]) -> Command {
    Command::new(
        0,
        Op::Put(PutRequest {
            key: format!("key{key:07}").into_bytes().into(),
            value: value.to_vec().into(),
            ..Default::default()
        }),
    )
}

/// Applies puts at `rate` per second until `done` says stop; returns each apply's latency.
fn write_paced(
    store: &KvStore,
    index: &mut u64,
    keys: usize,
    rate: u64,
    value: &[u8],
    mut done: impl FnMut() -> bool,
) -> BoxResult<Vec<Duration>> {
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut next = Instant::now();
    let mut lat = Vec::new();
    while !done() {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += gap;
        *index += 1;
        let cmd = put(*index as usize % keys, value);
        let t = Instant::now();
        store.apply(*index, 1, &cmd)?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    format!(
        "{} puts, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let revisions: usize = args.first().map_or(Ok(300_000), |s| s.parse())?;
    let keys: usize = args.get(1).map_or(Ok(3_000), |s| s.parse())?;
    let rate: u64 = args.get(2).map_or(Ok(2_000), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = args
        .get(3)
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let store = KvStore::open(dir.join("kv"))?;
    let value = vec![b'v'; 256];

    let t = Instant::now();
    let mut index = 0u64;
    let mut cmds = Vec::with_capacity(100);
    while (index as usize) < revisions {
        cmds.clear();
        for _ in 0..100 {
            index += 1;
            cmds.push((index, put(index as usize % keys, &value)));
        }
        let entries: Vec<ApplyEntry<'_>> = cmds
            .iter()
            .map(|(i, c)| ApplyEntry {
                index: *i,
                term: 1,
                payload: EntryPayload::Command(c),
            })
            .collect();
        store.apply_batch(&entries)?;
    }
    store.flush()?;
    println!(
        "loaded {revisions} revisions over {keys} keys in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let until = Instant::now() + Duration::from_secs(3);
    let before = write_paced(&store, &mut index, keys, rate, &value, || {
        Instant::now() >= until
    })?;
    let head = store.revision();
    index += 1;
    let compact = Command::new(
        0,
        Op::Compact(CompactionRequest {
            revision: head,
            physical: false,
        }),
    );
    let t = Instant::now();
    store.apply(index, 1, &compact)?;
    let during = write_paced(&store, &mut index, keys, rate, &value, || {
        store.physically_compacted() >= head
    })?;
    let took = t.elapsed();
    println!("before:  {}", summary(before));
    println!("during:  {}", summary(during));
    println!(
        "compaction to {head}: {:.2} s at {rate} puts/s beside it",
        took.as_secs_f64()
    );
    Ok(())
}
