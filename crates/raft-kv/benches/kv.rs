//! Benchmarks of the state machine: apply throughput (with and without a running
//! copy-on-write capture) and full/delta capture times.
//!
//! Run: `cargo bench -p raft-kv --bench kv`.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented public items"
)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::bytes::Bytes;
use raft_kv::pb::etcdserverpb::PutRequest;
use raft_kv::{ApplyEntry, CaptureKind, Command, EntryPayload, KvStore, Op};
use std::hint::black_box;

const BATCH: usize = 100;

fn puts(start: u64, n: usize, key_space: u64, value_len: usize) -> Vec<Command> {
    (0..n as u64)
        .map(|i| {
            let k = (start + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) % key_space;
            Command::new(
                start + i,
                Op::Put(PutRequest {
                    key: Bytes::from(format!("key{k:08}")),
                    value: Bytes::from(vec![b'v'; value_len]),
                    ..Default::default()
                }),
            )
        })
        .collect()
}

/// Applies `cmds` as one batch at the indexes after the store's applied index.
fn apply(store: &KvStore, cmds: &[Command]) {
    let first = store.applied_index() + 1;
    let entries: Vec<ApplyEntry<'_>> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| ApplyEntry {
            index: first + i as u64,
            term: 1,
            payload: EntryPayload::Command(c),
        })
        .collect();
    black_box(store.apply_batch(&entries).unwrap());
}

fn loaded(keys: u64, value_len: usize) -> KvStore {
    let store = KvStore::open_temporary().unwrap();
    let mut i = 0;
    while i < keys {
        let cmds: Vec<Command> = (i..(i + 1000).min(keys))
            .map(|k| {
                Command::new(
                    0,
                    Op::Put(PutRequest {
                        key: Bytes::from(format!("key{k:08}")),
                        value: Bytes::from(vec![b'v'; value_len]),
                        ..Default::default()
                    }),
                )
            })
            .collect();
        apply(&store, &cmds);
        i += 1000;
    }
    store
}

fn bench_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(BATCH as u64));
    let store = loaded(100_000, 256);
    let mut n = 0u64;
    g.bench_function("put_256B_batch100", |b| {
        b.iter_batched(
            || {
                n += BATCH as u64;
                puts(n, BATCH, 200_000, 256)
            },
            |cmds| apply(&store, &cmds),
            BatchSize::SmallInput,
        )
    });
    // Baseline in the same run: the same number of keys and values written straight into
    // a sled tree with one batch (what the state machine costs on top of sled).
    let db = sled::Config::new().temporary(true).open().unwrap();
    let raw = db.open_tree("raw").unwrap();
    for k in 0..100_000u64 {
        raw.insert(format!("key{k:08}"), vec![b'v'; 256]).unwrap();
    }
    g.bench_function("sled_baseline_256B_batch100", |b| {
        b.iter_batched(
            || {
                n += BATCH as u64;
                puts(n, BATCH, 200_000, 256)
            },
            |cmds| {
                let mut batch = sled::Batch::default();
                for c in &cmds {
                    if let Op::Put(p) = &c.op {
                        batch.insert(p.key.as_ref(), p.value.as_ref());
                    }
                }
                raw.apply_batch(batch).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    // Worst case for copy-on-write: a capture is open and nothing of it has been read, so
    // every first write of a key stores a pre-image.
    let capture = store.capture(CaptureKind::Full).unwrap();
    g.bench_function("put_256B_batch100_during_capture", |b| {
        b.iter_batched(
            || {
                n += BATCH as u64;
                puts(n, BATCH, 200_000, 256)
            },
            |cmds| apply(&store, &cmds),
            BatchSize::SmallInput,
        )
    });
    drop(capture);
    g.finish();
}

fn bench_capture(c: &mut Criterion) {
    let mut g = c.benchmark_group("capture");
    g.sample_size(10);
    let keys = 100_000u64;
    let store = loaded(keys, 128);
    g.throughput(Throughput::Elements(keys));
    g.bench_function("full_100k_128B", |b| {
        b.iter(|| {
            let mut cap = store.capture(CaptureKind::Full).unwrap();
            let n = cap
                .records
                .try_fold(0usize, |n, r| r.map(|_| n + 1))
                .unwrap();
            assert!(n as u64 >= keys);
        })
    });
    // A delta after 1% of the keys changed (the changes are applied outside the timing).
    let mut n = 1u64 << 40;
    g.throughput(Throughput::Elements(keys / 100));
    g.bench_function("delta_1pct_of_100k", |b| {
        b.iter_batched(
            || {
                let cap = store.capture(CaptureKind::Delta).unwrap();
                let index = cap.info.index;
                drop(cap);
                store.capture_durable(index).unwrap();
                n += keys / 100;
                apply(&store, &puts(n, (keys / 100) as usize, keys, 128));
            },
            |()| {
                let mut cap = store.capture(CaptureKind::Delta).unwrap();
                black_box(
                    cap.records
                        .try_fold(0usize, |n, r| r.map(|_| n + 1))
                        .unwrap(),
                );
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_apply, bench_capture);
criterion_main!(benches);
