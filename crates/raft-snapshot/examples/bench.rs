//! Benchmark: full snapshot of 1,000,000 × 128-byte values, a delta after changing 1%,
//! and the restore of a base plus 8 deltas. Prints a Markdown table of measured figures.
//!
//! Run: `cargo run --release -p raft-snapshot --example bench -- [records] [dir]`

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_core::{Membership, SnapshotMeta};
use raft_snapshot::*;
use std::time::Instant;

const VALUE_LEN: usize = 128;

/// Deterministic pseudo-random (incompressible) value of `key` at `version`.
fn value(key: u64, version: u64) -> Bytes {
    let mut x =
        key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1;
    let mut v = Vec::with_capacity(VALUE_LEN);
    while v.len() < VALUE_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(VALUE_LEN);
    Bytes::from(v)
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{i:012}"))
}

/// Generates records on the fly (bounded memory): all keys, or only every `step`-th
/// (offset by `round`) at version `round`.
struct Gen {
    next: u64,
    end: u64,
    step: u64,
    round: u64,
}

impl SnapshotSource for Gen {
    fn next_record(&mut self) -> Result<Option<Record>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let i = self.next;
        self.next += self.step;
        Ok(Some(Record::Put {
            key: key(i),
            value: value(i, self.round),
        }))
    }
}

/// Counts what it receives.
#[derive(Default)]
struct Counting {
    puts: u64,
    bytes: u64,
}

impl RestoreSink for Counting {
    fn reset(&mut self, _base: &SnapshotInfo) -> Result<()> {
        *self = Counting::default();
        Ok(())
    }
    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        self.puts += 1;
        self.bytes += (key.len() + value.len()) as u64;
        Ok(())
    }
    fn delete(&mut self, _key: Bytes) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self, _tip: &SnapshotInfo) -> Result<()> {
        Ok(())
    }
}

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term: 1,
        membership: Membership::with_voters([1, 2, 3]),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp;
    let dir = match args.get(2) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = std::env::temp_dir().join(format!("raft-snapshot-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let store = SnapshotStore::open_dir(&dir, StoreOptions::default())?;
    let raw = n * (15 + VALUE_LEN as u64);

    let t = Instant::now();
    let mut w = store.begin(SnapshotKind::Full, None, &meta(n), 1)?;
    w.write_source(&mut Gen {
        next: 0,
        end: n,
        step: 1,
        round: 0,
    })?;
    let base = w.finish()?;
    let full_s = t.elapsed().as_secs_f64();

    let mut deltas = Vec::new();
    let mut parent = base.id;
    for round in 1..=8u64 {
        let t = Instant::now();
        let mut w = store.begin(
            SnapshotKind::Delta,
            Some(parent),
            &meta(n + round),
            1 + round,
        )?;
        w.write_source(&mut Gen {
            next: round,
            end: n,
            step: 100,
            round,
        })?;
        let d = w.finish()?;
        deltas.push((t.elapsed().as_secs_f64(), d.size, d.puts));
        parent = d.id;
    }

    let t = Instant::now();
    let mut sink = Counting::default();
    restore_chain(&store, None, &mut sink)?;
    let restore_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut mem = MemState::new();
    restore_chain(&store, None, &mut mem)?;
    let restore_mem_s = t.elapsed().as_secs_f64();
    assert_eq!(mem.data.len() as u64, n);

    let t = Instant::now();
    let compacted = compact_chain(&store, None, 100)?;
    let compact_s = t.elapsed().as_secs_f64();

    // Baseline, same run: the file system alone, writing as many bytes and fsyncing.
    let t = Instant::now();
    {
        use std::io::Write;
        let p = dir.join("baseline.bin");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).expect("create"));
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = base.size as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
        f.into_inner().expect("flush").sync_all().expect("fsync");
        let _ = std::fs::remove_file(&p);
    }
    let baseline_s = t.elapsed().as_secs_f64();

    // The same full build without the re-read verification.
    let nv_dir = dir.join("noverify");
    let nv = SnapshotStore::open_dir(
        &nv_dir,
        StoreOptions {
            verify_on_finish: false,
            ..StoreOptions::default()
        },
    )?;
    let t = Instant::now();
    let mut w = nv.begin(SnapshotKind::Full, None, &meta(n), 1)?;
    w.write_source(&mut Gen {
        next: 0,
        end: n,
        step: 1,
        round: 0,
    })?;
    w.finish()?;
    let noverify_s = t.elapsed().as_secs_f64();

    let (d_s, d_size, d_puts) = deltas[0];
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| records × value size | {n} × {VALUE_LEN} B (keys 15 B, values incompressible), {:.1} MiB raw |",
        raw as f64 / 1048576.0
    );
    println!(
        "| full snapshot build (write, fsync, re-read + verify, manifest) | {full_s:.3} s, {:.1} MiB/s raw |",
        raw as f64 / 1048576.0 / full_s
    );
    println!("| full snapshot build without re-read verification | {noverify_s:.3} s |");
    println!("| baseline: write + fsync as many bytes, no encoding | {baseline_s:.3} s |");
    println!(
        "| full snapshot size | {} bytes ({:.1} MiB) |",
        base.size,
        base.size as f64 / 1048576.0
    );
    println!(
        "| delta after changing 1% ({d_puts} records) build | {d_s:.3} s ({:.2}% of full) |",
        100.0 * d_s / full_s
    );
    println!(
        "| delta size | {d_size} bytes ({:.2}% of full) |",
        100.0 * d_size as f64 / base.size as f64
    );
    println!(
        "| restore base + 8 deltas (verify + decode, counting sink) | {restore_s:.3} s ({} puts) |",
        sink.puts
    );
    println!("| restore base + 8 deltas into a BTreeMap sink | {restore_mem_s:.3} s |");
    println!(
        "| compact base + 8 deltas into a new base | {compact_s:.3} s, {} bytes |",
        compacted.size
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
