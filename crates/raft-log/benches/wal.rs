//! WAL benchmarks, each against its baseline in the same run; prints Markdown tables.
//!
//! Run with `cargo bench -p raft-log --bench wal`. Environment: `WAL_BENCH_DIR` (scratch
//! directory; default: cargo's target tmp dir), `WAL_BENCH_SECS` (seconds per throughput
//! point, default 3), `WAL_BENCH_QUICK=1` (a much shorter smoke run), `WAL_BENCH_ONLY`
//! (comma-separated subset of `throughput`, `latency`, `recovery`, `shared`).
//!
//! 1. Append throughput for 128 B and 1 KiB entries from 1, 16 and 256 concurrent appenders
//!    (each waits for its own write to be durable), against (a) a raw loop of `pwrite` +
//!    `fdatasync` per append into a preallocated file and (b) the same entries inserted into a
//!    `sled` tree by as many threads, each calling `flush` after its insert.
//! 2. Single-append latency (one appender) against raw `pwrite` + `fdatasync` of the same
//!    bytes.
//! 3. Opening (recovering) a log of 1,000,000 entries of 128 B against reading the same
//!    segment files sequentially.
//! 4. Logs sharing one disk, as the members of a cluster on one machine do: the append
//!    latency of three logs written at once (one appender each, 128 B entries) against one
//!    log alone, and the same for raw `pwrite` + `fdatasync` into preallocated files.
#![allow(clippy::print_stdout, reason = "a benchmark binary reports on stdout")]

use bytes::Bytes;
use parking_lot::Mutex;
use raft_core::Entry;
use raft_log::{Settings, SyncPolicy, Wal};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Config {
    dir: PathBuf,
    secs: Duration,
    latency_samples: usize,
    recovery_entries: u64,
}

fn main() {
    let quick = std::env::var_os("WAL_BENCH_QUICK").is_some();
    let dir = std::env::var_os("WAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wal-bench"));
    let secs = std::env::var("WAL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.5 } else { 3.0 });
    let cfg = Config {
        dir,
        secs: Duration::from_secs_f64(secs),
        latency_samples: if quick { 200 } else { 2000 },
        recovery_entries: if quick { 100_000 } else { 1_000_000 },
    };
    let _ = std::fs::remove_dir_all(&cfg.dir);
    std::fs::create_dir_all(&cfg.dir).expect("scratch dir");
    println!("scratch directory: {}", cfg.dir.display());
    let only = std::env::var("WAL_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    if run("throughput") {
        throughput(&cfg);
    }
    if run("latency") {
        latency(&cfg);
    }
    if run("recovery") {
        recovery(&cfg);
    }
    if run("shared") {
        shared(&cfg);
    }
    let _ = std::fs::remove_dir_all(&cfg.dir);
}

fn fresh(cfg: &Config, name: &str) -> PathBuf {
    let p = cfg.dir.join(name);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("bench dir");
    p
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------- 1. throughput

/// Entries per second with `appenders` threads, each appending one entry and waiting for it.
fn wal_throughput(cfg: &Config, size: usize, appenders: usize) -> f64 {
    let dir = fresh(cfg, &format!("wal-{size}-{appenders}"));
    let wal = Arc::new(Wal::open(&dir, Settings::default()).expect("open"));
    let payload = Bytes::from(vec![7u8; size]);
    let next = Arc::new(Mutex::new(1u64));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + cfg.secs;
    let threads: Vec<_> = (0..appenders)
        .map(|_| {
            let (wal, next, done, payload) =
                (wal.clone(), next.clone(), done.clone(), payload.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let mut n = next.lock();
                    let e = Entry {
                        index: *n,
                        term: 1,
                        data: payload.clone(),
                        ..Entry::default()
                    };
                    *n += 1;
                    let t = wal.append(vec![e]).expect("append");
                    drop(n);
                    t.wait().expect("durable");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("appender");
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    done.load(Ordering::Relaxed) as f64 / elapsed
}

/// A preallocated file, as the WAL's segments are.
fn preallocated(path: &Path, len: u64) -> File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create");
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        f.write_all_at(&zeros, at).expect("preallocate");
        at += zeros.len() as u64;
    }
    f.sync_all().expect("sync");
    f
}

/// Appends per second of a loop of `pwrite` + `fdatasync`, one record per iteration.
fn raw_throughput(cfg: &Config, size: usize) -> f64 {
    let dir = fresh(cfg, &format!("raw-{size}"));
    let len = 256u64 << 20;
    let f = preallocated(&dir.join("raw"), len);
    let rec = vec![7u8; raft_log::format::entry_record_len(size)];
    let start = Instant::now();
    let mut n = 0u64;
    let mut off = 0u64;
    while start.elapsed() < cfg.secs {
        f.write_all_at(&rec, off).expect("write");
        f.sync_data().expect("fdatasync");
        off = (off + rec.len() as u64) % (len - rec.len() as u64);
        n += 1;
    }
    let r = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Entries per second of `threads` threads each inserting into a sled tree and flushing.
fn sled_throughput(cfg: &Config, size: usize, threads: usize) -> f64 {
    let dir = fresh(cfg, &format!("sled-{size}-{threads}"));
    let db = sled::Config::new().path(&dir).open().expect("sled");
    let tree = db.open_tree("log").expect("tree");
    let next = Arc::new(AtomicU64::new(1));
    let done = Arc::new(AtomicU64::new(0));
    let payload = vec![7u8; size];
    let start = Instant::now();
    let deadline = start + cfg.secs;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (tree, next, done, payload) =
                (tree.clone(), next.clone(), done.clone(), payload.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    tree.insert(i.to_be_bytes(), payload.as_slice())
                        .expect("insert");
                    tree.flush().expect("flush");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("sled thread");
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(tree);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    done.load(Ordering::Relaxed) as f64 / elapsed
}

fn throughput(cfg: &Config) {
    println!(
        "\n## 1. Append throughput ({:.1} s per point)\n",
        cfg.secs.as_secs_f64()
    );
    println!(
        "| entry | appenders | raft-log entries/s | raft-log MiB/s | raw write+fdatasync loop entries/s | sled insert+flush entries/s | vs raw | vs sled |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for size in [128usize, 1024] {
        let raw = raw_throughput(cfg, size);
        for appenders in [1usize, 16, 256] {
            let wal = wal_throughput(cfg, size, appenders);
            let sled = sled_throughput(cfg, size, appenders);
            println!(
                "| {size} B | {appenders} | {wal:.0} | {:.2} | {raw:.0} | {sled:.0} | {:.1}x | {:.1}x |",
                mib(wal * size as f64),
                wal / raw,
                wal / sled
            );
        }
    }
}

// ---------------------------------------------------------------- 2. latency

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Appends one entry at `index` and waits until it is durable; how long that took.
fn timed_append(wal: &Wal, index: u64, payload: &Bytes) -> Duration {
    let e = Entry {
        index,
        term: 1,
        data: payload.clone(),
        ..Entry::default()
    };
    let t = Instant::now();
    wal.append(vec![e])
        .expect("append")
        .wait()
        .expect("durable");
    t.elapsed()
}

/// Writes `rec` as the `i`-th record of `raw` and `fdatasync`s it; how long that took.
fn timed_raw_write(raw: &File, rec: &[u8], i: u64) -> Duration {
    let t = Instant::now();
    raw.write_all_at(rec, i * rec.len() as u64).expect("write");
    raw.sync_data().expect("fdatasync");
    t.elapsed()
}

fn latency(cfg: &Config) {
    let size = 128;
    let dir = fresh(cfg, "latency");
    let wal = Wal::open(dir.join("wal"), Settings::default()).expect("open");
    let payload = Bytes::from(vec![7u8; size]);
    let raw = preallocated(&dir.join("raw"), 64 << 20);
    let rec = vec![7u8; raft_log::format::entry_record_len(size)];
    let mut wal_lat = Vec::with_capacity(cfg.latency_samples);
    let mut raw_lat = Vec::with_capacity(cfg.latency_samples);
    // Interleave the two so both see the same disk conditions.
    for i in 0..cfg.latency_samples as u64 {
        wal_lat.push(timed_append(&wal, i + 1, &payload));
        raw_lat.push(timed_raw_write(&raw, &rec, i));
    }
    wal_lat.sort();
    raw_lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\n## 2. Single-append latency, one appender, {size} B entries, {} samples\n",
        cfg.latency_samples
    );
    println!("| | p50 µs | p99 µs |");
    println!("|---|---|---|");
    let (wp50, wp99) = (percentile(&wal_lat, 0.5), percentile(&wal_lat, 0.99));
    let (rp50, rp99) = (percentile(&raw_lat, 0.5), percentile(&raw_lat, 0.99));
    println!(
        "| raft-log append + wait | {:.0} | {:.0} |",
        us(wp50),
        us(wp99)
    );
    println!(
        "| raw pwrite + fdatasync ({} B) | {:.0} | {:.0} |",
        rec.len(),
        us(rp50),
        us(rp99)
    );
    println!(
        "| ratio | {:.2}x | {:.2}x |",
        us(wp50) / us(rp50),
        us(wp99) / us(rp99)
    );
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- 3. recovery

fn recovery(cfg: &Config) {
    let n = cfg.recovery_entries;
    let dir = fresh(cfg, "recovery");
    let build = Instant::now();
    {
        let settings = Settings {
            sync_policy: SyncPolicy::Never,
            ..Settings::default()
        };
        let wal = Wal::open(&dir, settings).expect("open");
        let payload = Bytes::from(vec![7u8; 128]);
        let mut index = 1;
        let mut last = None;
        while index <= n {
            let batch: Vec<Entry> = (index..(index + 1000).min(n + 1))
                .map(|i| Entry {
                    index: i,
                    term: 1 + i / 100_000,
                    data: payload.clone(),
                    ..Entry::default()
                })
                .collect();
            index += batch.len() as u64;
            last = Some(wal.append(batch).expect("append"));
        }
        last.expect("some").wait().expect("written");
        wal.sync().expect("sync").wait().expect("synced");
        wal.close().expect("close");
    }
    let build = build.elapsed();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    let bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .sum();
    let mut raw_t = Vec::new();
    let mut open_t = Vec::new();
    // One warm-up round, then five measured ones; the median is reported.
    for round in 0..6 {
        let t = Instant::now();
        let mut sum = 0u64;
        let mut buf = vec![0u8; 4 << 20];
        for p in &files {
            let mut f = File::open(p).expect("open");
            loop {
                let n = f.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                sum += n as u64;
            }
        }
        assert_eq!(sum, bytes);
        let raw = t.elapsed();
        let t = Instant::now();
        let wal = Wal::open(&dir, Settings::default()).expect("recover");
        let open = t.elapsed();
        if round > 0 {
            raw_t.push(raw);
            open_t.push(open);
        }
        assert_eq!(wal.last_index(), n);
        drop(wal);
    }
    raw_t.sort();
    open_t.sort();
    let (raw, open) = (raw_t[2], open_t[2]);
    println!(
        "\n## 3. Recovery of {n} entries of 128 B ({} segment files, {:.0} MiB; built in {:.1} s; median of 5 after a warm-up round, page cache warm)\n",
        files.len(),
        mib(bytes as f64),
        build.as_secs_f64()
    );
    println!("| | time ms | MiB/s |");
    println!("|---|---|---|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| raft-log open (scan, verify, index) | {:.0} | {:.0} |",
        ms(open),
        mib(bytes as f64) / open.as_secs_f64()
    );
    println!(
        "| sequential read of the same files (4 MiB buffer) | {:.0} | {:.0} |",
        ms(raw),
        mib(bytes as f64) / raw.as_secs_f64()
    );
    println!("| ratio | {:.2}x | |", ms(open) / ms(raw));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- 4. logs sharing one disk

/// How the appenders of [`shared_latencies`] write.
#[derive(Clone, Copy)]
enum Writer {
    /// A `Wal` each: append one entry and wait for it to be durable.
    Wal,
    /// A preallocated file each: `pwrite` one record and `fdatasync`.
    Raw,
}

/// Latencies of `writers` appenders started together, each with a log (or file) of its
/// own in the same directory, `samples` appends each; all of them, sorted.
fn shared_latencies(cfg: &Config, writer: Writer, writers: usize, samples: usize) -> Vec<Duration> {
    let size = 128;
    let dir = fresh(cfg, "shared");
    let start = Arc::new(std::sync::Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (dir, start) = (dir.clone(), start.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(samples);
                match writer {
                    Writer::Wal => {
                        let wal = Wal::open(dir.join(format!("wal-{w}")), Settings::default())
                            .expect("open");
                        let payload = Bytes::from(vec![7u8; size]);
                        start.wait();
                        for i in 0..samples as u64 {
                            lat.push(timed_append(&wal, i + 1, &payload));
                        }
                    }
                    Writer::Raw => {
                        let rec = vec![7u8; raft_log::format::entry_record_len(size)];
                        let len = (samples * rec.len()) as u64 + (1 << 20);
                        let raw = preallocated(&dir.join(format!("raw-{w}")), len);
                        start.wait();
                        for i in 0..samples as u64 {
                            lat.push(timed_raw_write(&raw, &rec, i));
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("appender"))
        .collect();
    all.sort();
    let _ = std::fs::remove_dir_all(&dir);
    all
}

fn shared(cfg: &Config) {
    const WRITERS: usize = 3;
    const ROUNDS: usize = 2;
    let samples = cfg.latency_samples;
    println!(
        "\n## 4. Logs sharing one disk: {WRITERS} appenders at once against one alone, 128 B \
         entries, {samples} appends per appender, {ROUNDS} rounds (alternating)\n"
    );
    println!(
        "| writer | one alone p50 / p99 µs | {WRITERS} at once p50 / p99 µs | ratio p50 / p99 |"
    );
    println!("|---|---|---|---|");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (name, writer) in [
        ("raft-log append + wait", Writer::Wal),
        ("raw pwrite + fdatasync (preallocated)", Writer::Raw),
    ] {
        let (mut one, mut many) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            one.extend(shared_latencies(cfg, writer, 1, samples));
            many.extend(shared_latencies(cfg, writer, WRITERS, samples));
        }
        one.sort();
        many.sort();
        let (o50, o99) = (us(percentile(&one, 0.5)), us(percentile(&one, 0.99)));
        let (m50, m99) = (us(percentile(&many, 0.5)), us(percentile(&many, 0.99)));
        println!(
            "| {name} | {o50:.0} / {o99:.0} | {m50:.0} / {m99:.0} | {:.2}x / {:.2}x |",
            m50 / o50,
            m99 / o99
        );
    }
}
