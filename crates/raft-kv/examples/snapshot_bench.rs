//! Benchmark of snapshots through the real state machine: a sled [`KvStore`] on disk loaded
//! with 1,000,000 keys of 128-byte values through its apply path, snapshots captured
//! copy-on-write with [`capture_snapshot`] into a `raft-snapshot` store on disk, and
//! restored with [`restore_from_store`] into a fresh on-disk store.
//!
//! Measures, in one run: the full snapshot's build time and size; a delta after changing 1%
//! of the keys (size and time against the full one); the restore of a base plus 8 deltas;
//! and put throughput through [`KvStore::apply_batch`] while a full snapshot is being built,
//! against the same writer with no snapshot. Prints a Markdown table with the ratios
//! against the targets of issue 9.
//!
//! The throughput rounds run in the order without, during, without, during, ..., without
//! (`rounds` rounds with a snapshot, 8 by default, one more without), after one warm-up
//! round with a snapshot that is not compared, and each round with a snapshot is compared
//! with the mean of the two rounds without one right before and after it, so a steady drift
//! of the store's speed over the run cancels out. The spread of the single rounds (median,
//! range, and the mean's interval of two standard errors) is printed with the result.
//! Before every round the store is flushed and the benchmark waits until the process is
//! idle (the previous round's aftermath, sled's background flushes, is over). `SNAPSHOT_BENCH_SCHEDULE`
//! (a string of `W` and `D`, e.g. `WWWWWWW` to see the drift alone; `w` and `d` are rounds
//! run but not compared) replaces the order.
//! The old figure (each round with a snapshot against the round without one right before
//! it, pooled) is printed too.
//!
//! Snapshots are built at raftd's default rate limit (`snapshot.max_build_rate`,
//! [`raft_kv::pace::DEFAULT_MAX_BUILD_RATE`]); `SNAPSHOT_BENCH_RATE` overrides it (bytes per
//! second, or `16MiB`; `0` = unlimited; the default is unlimited).
//!
//! Run: `cargo run --release -p raft-kv --example snapshot_bench -- [keys] [dir] [rounds]`
//! (or `cargo xtask bench snapshot`).
//!
//! The process uses mimalloc, as raftd does: with the system allocator the writer and the
//! snapshot thread contend for glibc's arena locks (sled frees its nodes on whichever thread
//! collects them), which measures the allocator rather than the state machine.
//!
//! Over 700 lines on purpose: one runnable benchmark that measures every snapshot figure of
//! one loaded store in one run; split, each part would have to load the million keys again.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use prost::bytes::Bytes;
use raft_core::Membership;
use raft_kv::pb::etcdserverpb::PutRequest;
use raft_kv::{ApplyEntry, Command, EntryPayload, KvStore, Op, capture_snapshot};
use raft_snapshot::{SnapshotInfo, SnapshotKind, SnapshotStore, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const VALUE_LEN: usize = 128;
/// Entries per `apply_batch` call (raftd applies what one loop turn committed).
const APPLY_BATCH: usize = 100;

/// Rounds with a snapshot by default. Single rounds against their neighbours spread by
/// about ±15% on the project machine (the store's own speed varies that much between
/// rounds without any snapshot), so the mean needs several.
const DEFAULT_ROUNDS: u32 = 8;

/// Deterministic pseudo-random (incompressible) value of key `i` at `version`.
fn value(i: u64, version: u64) -> Bytes {
    let mut x =
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1;
    let mut v = Vec::with_capacity(VALUE_LEN + 8);
    while v.len() < VALUE_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(VALUE_LEN);
    Bytes::from(v)
}

/// An encoded put command (the bytes a log entry carries) of key `i` at `version`.
fn put_entry(i: u64, version: u64) -> Vec<u8> {
    Command::new(
        0,
        Op::Put(PutRequest {
            key: Bytes::from(format!("key{i:012}")),
            value: value(i, version),
            ..Default::default()
        }),
    )
    .encode()
    .to_vec()
}

/// Applies encoded entries as one batch after the store's applied index, as raftd does.
fn apply(kv: &KvStore, entries: &[Vec<u8>]) -> BoxResult<()> {
    let first = kv.applied_index() + 1;
    let batch: Vec<ApplyEntry<'_>> = entries
        .iter()
        .enumerate()
        .map(|(n, data)| ApplyEntry {
            index: first + n as u64,
            term: 1,
            payload: EntryPayload::Data(data),
        })
        .collect();
    kv.apply_batch(&batch)?;
    Ok(())
}

/// Applies puts of the keys `keys` at `version`, `APPLY_BATCH` at a time.
fn apply_keys(kv: &KvStore, keys: impl Iterator<Item = u64>, version: u64) -> BoxResult<u64> {
    let mut buf = Vec::with_capacity(APPLY_BATCH);
    let mut n = 0;
    for i in keys {
        buf.push(put_entry(i, version));
        if buf.len() == APPLY_BATCH {
            apply(kv, &buf)?;
            n += buf.len() as u64;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        apply(kv, &buf)?;
        n += buf.len() as u64;
    }
    Ok(n)
}

fn membership() -> Membership {
    Membership::with_voters([1])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether snapshot threads lower their priority (as raftd's do); the environment variable
/// `SNAPSHOT_BENCH_NICE=0` turns it off, for comparison.
fn nice_snapshots() -> bool {
    std::env::var("SNAPSHOT_BENCH_NICE").map_or(true, |v| v != "0")
}

/// The snapshot build's rate limit in bytes per second: raftd's default
/// ([`raft_kv::pace::DEFAULT_MAX_BUILD_RATE`]) unless the environment variable
/// `SNAPSHOT_BENCH_RATE` gives one (bytes, or with a `KiB`/`MiB` suffix; `0` = unlimited).
fn build_rate() -> BoxResult<u64> {
    let Ok(v) = std::env::var("SNAPSHOT_BENCH_RATE") else {
        return Ok(raft_kv::pace::DEFAULT_MAX_BUILD_RATE);
    };
    let v = v.trim();
    let (num, mul) = if let Some(n) = v.strip_suffix("MiB") {
        (n, 1u64 << 20)
    } else if let Some(n) = v.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (v, 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad SNAPSHOT_BENCH_RATE {v:?}"))?;
    Ok(n * mul)
}

/// The snapshot store's options: raft-snapshot's defaults (as raftd uses them) unless
/// `SNAPSHOT_BENCH_BLOCK` (raw block size, bytes or with a `KiB` suffix),
/// `SNAPSHOT_BENCH_ZSTD` (zstd level) or `SNAPSHOT_BENCH_VERIFY=0` (no re-read
/// verification) change them, for comparison.
fn store_options() -> BoxResult<StoreOptions> {
    let mut o = StoreOptions::default();
    if let Ok(v) = std::env::var("SNAPSHOT_BENCH_BLOCK") {
        let v = v.trim();
        let (num, mul) = match v.strip_suffix("KiB") {
            Some(n) => (n, 1024),
            None => (v, 1),
        };
        let n: usize = num
            .trim()
            .parse()
            .map_err(|_| format!("bad SNAPSHOT_BENCH_BLOCK {v:?}"))?;
        o.writer.block_size = n * mul;
    }
    if let Ok(v) = std::env::var("SNAPSHOT_BENCH_ZSTD") {
        o.writer.zstd_level = v
            .trim()
            .parse()
            .map_err(|_| format!("bad SNAPSHOT_BENCH_ZSTD {v:?}"))?;
    }
    if std::env::var("SNAPSHOT_BENCH_VERIFY").is_ok_and(|v| v == "0") {
        o.verify_on_finish = false;
    }
    Ok(o)
}

fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "unlimited".to_string()
    } else {
        format!("{:.1} MiB/s", rate as f64 / (1u64 << 20) as f64)
    }
}

/// A snapshot through raft-kv's capture, written on a thread of its own as raftd does:
/// returns its info and the wall time from the capture to the durable, verified file in the
/// manifest.
fn snapshot(kv: &KvStore, store: &SnapshotStore) -> BoxResult<(SnapshotInfo, f64)> {
    let t = Instant::now();
    let pending = capture_snapshot(kv, store, membership())?.with_max_rate(build_rate()?);
    let info = std::thread::scope(|s| {
        s.spawn(|| -> BoxResult<SnapshotInfo> {
            print_tid("snapshot");
            if nice_snapshots() {
                raft_kv::lower_thread_priority()?;
            }
            Ok(pending.write(now_ms())?)
        })
        .join()
        .map_err(|_| "snapshot thread panicked")?
    })?;
    Ok((info, t.elapsed().as_secs_f64()))
}

/// The writer of the throughput rounds: puts random existing keys (overwrites, so copy-on-
/// write pre-images are needed for keys the capture has not read yet) until `stop`.
struct Writer {
    keys: u64,
    rng: u64,
    version: u64,
}

impl Writer {
    /// Returns the puts applied, the CPU seconds this thread used, the seconds it was ready
    /// to run but waited for a CPU, and the longest `apply_batch` call.
    fn run(&mut self, kv: &KvStore, stop: &AtomicBool) -> BoxResult<(u64, f64, f64, Duration)> {
        print_tid("writer");
        let cpu0 = cpu_seconds("thread-self");
        let queued0 = run_queue_seconds();
        let mut longest = Duration::ZERO;
        let mut n = 0;
        let mut buf = Vec::with_capacity(APPLY_BATCH);
        while !stop.load(Ordering::Relaxed) {
            buf.clear();
            for _ in 0..APPLY_BATCH {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                buf.push(put_entry(self.rng % self.keys, self.version));
            }
            let t = Instant::now();
            apply(kv, &buf)?;
            longest = longest.max(t.elapsed());
            n += APPLY_BATCH as u64;
        }
        self.version += 1;
        Ok((
            n,
            cpu_seconds("thread-self") - cpu0,
            run_queue_seconds() - queued0,
            longest,
        ))
    }
}

/// What one throughput round measured.
struct Round {
    puts: u64,
    secs: f64,
    /// CPU seconds of the writer thread.
    writer_cpu: f64,
    /// Seconds the writer was runnable but waited for a CPU (the rest of the time it was
    /// not on a CPU, it was blocked: locks, IO).
    writer_queued: f64,
    /// CPU seconds of the whole process (writer and snapshot builder).
    process_cpu: f64,
    /// The longest single `apply_batch` of the writer.
    longest: Duration,
    /// Wall time of the snapshot build, in a round with one.
    build: Option<f64>,
}

/// CPU seconds (user + system) of `/proc/<which>/stat` (`self` or `thread-self`); 0 where
/// there is no procfs. Clock ticks are taken as 100 per second (Linux's `USER_HZ`).
fn cpu_seconds(which: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{which}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime); `rest` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// One throughput round: the writer runs on its own thread for `len`, or (with `store`)
/// while a full snapshot is built on this thread.
fn round(
    kv: &KvStore,
    writer: &mut Writer,
    len: Duration,
    store: Option<&SnapshotStore>,
) -> BoxResult<Round> {
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let stop2 = stop.clone();
        let cpu0 = cpu_seconds("self");
        let t = Instant::now();
        let w = s.spawn(move || writer.run(kv, &stop2));
        let built = match store {
            Some(store) => {
                let r = snapshot(kv, store);
                if let Ok((info, _)) = &r {
                    assert_eq!(info.kind, SnapshotKind::Full, "a fresh store: full");
                }
                Some(r)
            }
            None => {
                std::thread::sleep(len);
                None
            }
        };
        stop.store(true, Ordering::Relaxed);
        let (puts, writer_cpu, writer_queued, longest) =
            w.join().map_err(|_| "writer panicked")??;
        let secs = t.elapsed().as_secs_f64();
        let build = built.transpose()?.map(|(_, s)| s);
        Ok(Round {
            puts,
            secs,
            writer_cpu,
            writer_queued,
            process_cpu: cpu_seconds("self") - cpu0,
            longest,
            build,
        })
    })
}

/// Seconds this thread spent runnable but waiting for a CPU (`/proc/thread-self/schedstat`,
/// second field, in nanoseconds); 0 where there is none.
fn run_queue_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

impl Round {
    /// Puts per wall second.
    fn rate(&self) -> f64 {
        self.puts as f64 / self.secs
    }

    /// Puts per CPU-second of the writer thread.
    fn cpu_rate(&self) -> f64 {
        self.puts as f64 / self.writer_cpu.max(1e-9)
    }
}

/// A finished throughput round: `W` without a snapshot, `D` during one.
struct Done {
    kind: char,
    round: Round,
    /// Load average when the round started.
    load: String,
}

/// The order of the throughput rounds: `SNAPSHOT_BENCH_SCHEDULE` (`W`, `D` and `w`/`d`, the
/// lower case for warm-up rounds that are run but not compared), else a warm-up round with
/// a snapshot, then `rounds` rounds with a snapshot, each between two without one
/// (`dWDWD...W`). The warm-up gives the first round without a snapshot a length like the
/// others' (a round without lasts as long as the round with one before it) and the store
/// the state a build leaves.
fn schedule(rounds: u32) -> BoxResult<String> {
    let s = match std::env::var("SNAPSHOT_BENCH_SCHEDULE") {
        Ok(s) => s.trim().to_string(),
        Err(_) => format!("dW{}", "DW".repeat(rounds as usize)),
    };
    if s.is_empty() || !s.chars().all(|c| "WDwd".contains(c)) {
        return Err(format!("bad SNAPSHOT_BENCH_SCHEDULE {s:?} (W, D, w and d only)").into());
    }
    Ok(s)
}

/// Waits until the store has settled before a round: flushes it, then waits (at most 10 s)
/// until the process used under 5% of a CPU over 200 ms, i.e. sled's background work and
/// whatever the previous round left is over. Returns the seconds waited.
fn settle(kv: &KvStore) -> BoxResult<f64> {
    let t = Instant::now();
    kv.flush()?;
    while t.elapsed() < Duration::from_secs(10) {
        let cpu0 = cpu_seconds("self");
        std::thread::sleep(Duration::from_millis(200));
        if cpu_seconds("self") - cpu0 < 0.01 + 1e-9 {
            break;
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// A round with a snapshot and the rounds without one right before and after it (either
/// missing when the schedule has none there), as indexes into the finished rounds.
struct Pair {
    during: usize,
    before: Option<usize>,
    after: Option<usize>,
}

impl Pair {
    /// The mean puts per second of the rounds without a snapshot around this one.
    fn base_rate(&self, done: &[Done]) -> f64 {
        self.base(done, Round::rate)
    }

    fn base(&self, done: &[Done], f: fn(&Round) -> f64) -> f64 {
        let around: Vec<f64> = [self.before, self.after]
            .into_iter()
            .flatten()
            .map(|i| f(&done[i].round))
            .collect();
        if around.is_empty() {
            f64::NAN
        } else {
            around.iter().sum::<f64>() / around.len() as f64
        }
    }
}

/// Each round with a snapshot against the rounds without one around it.
struct Comparison {
    pairs: Vec<Pair>,
}

impl Comparison {
    fn new(done: &[Done]) -> Self {
        let without = |i: usize| (done.get(i)?.kind == 'W').then_some(i);
        let pairs = (0..done.len())
            .filter(|&i| done[i].kind == 'D')
            .map(|i| Pair {
                during: i,
                before: i.checked_sub(1).and_then(without),
                after: without(i + 1),
            })
            .collect();
        Comparison { pairs }
    }

    /// The mean of `f` over the rounds with a snapshot.
    fn mean_during(&self, done: &[Done], f: fn(&Round) -> f64) -> f64 {
        let n = self.pairs.len() as f64;
        self.pairs
            .iter()
            .map(|p| f(&done[p.during].round))
            .sum::<f64>()
            / n
    }

    /// The mean over the rounds with a snapshot of `f`'s mean over the rounds around each.
    fn mean_base(&self, done: &[Done], f: fn(&Round) -> f64) -> f64 {
        let n = self.pairs.len() as f64;
        self.pairs.iter().map(|p| p.base(done, f)).sum::<f64>() / n
    }

    fn ratio(&self, done: &[Done], f: fn(&Round) -> f64) -> f64 {
        self.mean_during(done, f) / self.mean_base(done, f)
    }

    /// The figure the benchmark printed before: puts per second of all rounds with a
    /// snapshot against all rounds without one right before them, puts and seconds pooled.
    fn old_method(&self, done: &[Done]) -> (f64, f64) {
        let pooled = |rounds: &mut dyn Iterator<Item = &Round>| {
            let (p, s) = rounds.fold((0.0, 0.0), |(p, s), r| (p + r.puts as f64, s + r.secs));
            p / s
        };
        let during = pooled(&mut self.pairs.iter().map(|p| &done[p.during].round));
        let before = pooled(
            &mut self
                .pairs
                .iter()
                .filter_map(|p| p.before)
                .map(|i| &done[i].round),
        );
        (during, before)
    }
}

/// With `SNAPSHOT_BENCH_TIDS=1`, prints the calling thread's id (to attach a profiler).
fn print_tid(what: &str) {
    if std::env::var("SNAPSHOT_BENCH_TIDS").is_ok_and(|v| v == "1") {
        eprintln!(
            "{what} thread tid {}",
            rustix::thread::gettid().as_raw_nonzero()
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let keys: u64 = match args.get(1) {
        Some(s) => s.parse().map_err(|_| format!("bad key count {s:?}"))?,
        None => 1_000_000,
    };
    let dir = match args.get(2) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("raft-kv-snapbench-{}", std::process::id())),
    };
    let rounds: u32 = match args.get(3) {
        Some(s) => s.parse().map_err(|_| format!("bad round count {s:?}"))?,
        None => DEFAULT_ROUNDS,
    };
    if keys < 100 {
        return Err("at least 100 keys".into());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run(keys, &dir, rounds);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(keys: u64, dir: &Path, rounds: u32) -> BoxResult<()> {
    let load_start = loadavg();
    let rate = build_rate()?;
    eprintln!(
        "load average at start: {load_start}; data in {}; snapshot build rate limit {}",
        dir.display(),
        rate_label(rate)
    );
    let kv = KvStore::open(dir.join("kv"))?;
    let store = SnapshotStore::open_dir(dir.join("snap"), store_options()?)?;

    let t = Instant::now();
    apply_keys(&kv, 0..keys, 0)?;
    kv.flush()?;
    let load_s = t.elapsed().as_secs_f64();
    eprintln!("loaded {keys} keys in {load_s:.2} s");

    let (full, full_s) = snapshot(&kv, &store)?;
    assert_eq!(full.kind, SnapshotKind::Full);
    eprintln!("full snapshot: {full_s:.3} s, {} bytes", full.size);

    // Eight deltas, each after rewriting 1% of the keys (every 100th, a different offset
    // each time).
    let mut deltas = Vec::new();
    for round in 1..=8u64 {
        apply_keys(&kv, (round..keys).step_by(100), round)?;
        let (d, d_s) = snapshot(&kv, &store)?;
        assert_eq!(d.kind, SnapshotKind::Delta);
        eprintln!(
            "delta {round}: {d_s:.3} s, {} bytes, {} puts",
            d.size, d.puts
        );
        deltas.push((d, d_s));
    }
    let (d1, d1_s) = deltas[0].clone();
    let chain = store.latest().ok_or("no chain")?;
    assert_eq!(chain.len(), 9);

    let restored = KvStore::open(dir.join("restored"))?;
    let t = Instant::now();
    let tip = raft_kv::restore_from_store(&restored, &store, None)?;
    let restore_s = t.elapsed().as_secs_f64();
    let chain_records: u64 =
        chain.base().puts + deltas.iter().map(|(d, _)| d.puts + d.deletes).sum::<u64>();
    eprintln!("restore of base + 8 deltas: {restore_s:.3} s");
    if restored.hash_kv(0)? != kv.hash_kv(0)? || tip.index != kv.applied_index() {
        return Err("the restored store differs from the source".into());
    }
    drop(restored);

    // Put throughput with and without a full snapshot being built (see the module
    // documentation for the order); a round without a snapshot lasts as long as the
    // previous round with one (the first: as long as the full build above).
    let mut writer = Writer {
        keys,
        rng: 0x2545_f491_4f6c_dd1d,
        version: 100,
    };
    let schedule = schedule(rounds)?;
    eprintln!("throughput rounds: {schedule}");
    let mut done: Vec<Done> = Vec::new();
    let mut len = Duration::from_secs_f64(full_s);
    for (r, kind) in schedule.chars().enumerate() {
        let settle = settle(&kv)?;
        let load = loadavg();
        let round = if kind.eq_ignore_ascii_case(&'D') {
            let snap_dir = dir.join(format!("snap-round{r}"));
            let round_store = SnapshotStore::open_dir(&snap_dir, store_options()?)?;
            let during = round(&kv, &mut writer, len, Some(&round_store))?;
            drop(round_store);
            std::fs::remove_dir_all(&snap_dir)?;
            len = Duration::from_secs_f64(during.secs);
            during
        } else {
            round(&kv, &mut writer, len, None)?
        };
        eprintln!(
            "round {r} {kind}: {:.0} puts/s over {:.2} s (writer cpu {:.2} s, {:.0} puts per \
             cpu-s; process cpu {:.2} s; build {:.2} s); settled {settle:.2} s before; load {load}",
            round.rate(),
            round.secs,
            round.writer_cpu,
            round.puts as f64 / round.writer_cpu.max(1e-9),
            round.process_cpu,
            round.build.unwrap_or(0.0),
        );
        done.push(Done { kind, round, load });
    }
    let load_end = loadavg();
    let cmp = Comparison::new(&done);
    let size_ratio = d1.size as f64 / full.size as f64;
    let time_ratio = d1_s / full_s;

    println!("| measurement | value | target | verdict |");
    println!("|---|---|---|---|");
    println!(
        "| keys × value size (loaded through `apply_batch`, {APPLY_BATCH} puts per batch) | \
         {keys} × {VALUE_LEN} B, {load_s:.2} s ({:.0} puts/s) | | |",
        keys as f64 / load_s
    );
    println!(
        "| full snapshot build (capture, write, fsync, re-read + verify, manifest) | \
         {full_s:.3} s | | |"
    );
    println!(
        "| full snapshot size | {} bytes ({:.1} MiB) | | |",
        full.size,
        mib(full.size)
    );
    println!(
        "| delta after changing 1% ({} records): build | {d1_s:.3} s ({:.2}% of full) | ≤ 10% | {} |",
        d1.puts + d1.deletes,
        100.0 * time_ratio,
        verdict(time_ratio <= 0.10)
    );
    println!(
        "| delta after changing 1%: size | {} bytes ({:.2}% of full) | ≤ 3% | {} |",
        d1.size,
        100.0 * size_ratio,
        verdict(size_ratio <= 0.03)
    );
    let others: Vec<String> = deltas[1..].iter().map(|(_, s)| format!("{s:.3}")).collect();
    println!("| deltas 2-8: build s | {} | | |", others.join(", "));
    println!(
        "| restore base + 8 deltas into an empty on-disk store (verify, write, flush) | \
         {restore_s:.3} s ({chain_records} records, {:.0} records/s) | | |",
        chain_records as f64 / restore_s
    );
    println!("| throughput rounds (W without, D during a full snapshot) | {schedule} | | |");
    for (i, c) in cmp.pairs.iter().enumerate() {
        let d = &done[c.during].round;
        let before = c.before.map(|b| format!("{:.0}", done[b].round.rate()));
        let after = c.after.map(|a| format!("{:.0}", done[a].round.rate()));
        println!(
            "| round {}: puts/s without before / during a full snapshot ({:.2} s; build {:.2} s) / \
             without after | {} / {:.0} / {} ({:.1}% of their mean; load at the start of \
             the during round {}) | | |",
            i + 1,
            d.secs,
            d.build.unwrap_or(0.0),
            before.unwrap_or_else(|| "-".into()),
            d.rate(),
            after.unwrap_or_else(|| "-".into()),
            100.0 * d.rate() / c.base_rate(&done),
            done[c.during].load,
        );
    }
    let mut singles: Vec<f64> = cmp
        .pairs
        .iter()
        .map(|c| done[c.during].round.rate() / c.base_rate(&done))
        .filter(|r| r.is_finite())
        .collect();
    singles.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (singles.first(), singles.last()) {
        let n = singles.len() as f64;
        let mean = singles.iter().sum::<f64>() / n;
        let var = singles.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let median = if singles.len() % 2 == 1 {
            singles[singles.len() / 2]
        } else {
            (singles[singles.len() / 2 - 1] + singles[singles.len() / 2]) / 2.0
        };
        println!(
            "| single rounds with a snapshot against their neighbours: median / range / mean ± \
             two standard errors | {:.1}% / {:.1}-{:.1}% / {:.1} ± {:.1}% ({} rounds) | | |",
            100.0 * median,
            100.0 * lo,
            100.0 * hi,
            100.0 * mean,
            200.0 * (var / n).sqrt(),
            singles.len()
        );
    }
    let tp_ratio = cmp.ratio(&done, Round::rate);
    println!(
        "| put throughput during a full snapshot vs the mean of the rounds without one right \
         before and after it (mean over rounds) | {:.0} vs {:.0} puts/s ({:.1}%) | ≥ 90% | {} |",
        cmp.mean_during(&done, Round::rate),
        cmp.mean_base(&done, Round::rate),
        100.0 * tp_ratio,
        verdict(tp_ratio >= 0.90)
    );
    let (old_during, old_base) = cmp.old_method(&done);
    println!(
        "| old method: during vs the round without right before it (puts and seconds pooled) | \
         {old_during:.0} vs {old_base:.0} puts/s ({:.1}%) | | |",
        100.0 * old_during / old_base
    );
    println!(
        "| puts per CPU-second of the writer thread, without (mean of before and after) → \
         during | {:.0} → {:.0} ({:.1}%) | | |",
        cmp.mean_base(&done, Round::cpu_rate),
        cmp.mean_during(&done, Round::cpu_rate),
        100.0 * cmp.ratio(&done, Round::cpu_rate)
    );
    let sum = |f: &dyn Fn(&Round) -> f64, kind: char| -> f64 {
        done.iter()
            .filter(|d| d.kind == kind)
            .map(|d| f(&d.round))
            .sum()
    };
    println!(
        "| CPU used, rounds without → with a snapshot (writer / whole process), per wall second | \
         {:.2} / {:.2} → {:.2} / {:.2} | | |",
        sum(&|r| r.writer_cpu, 'W') / sum(&|r| r.secs, 'W'),
        sum(&|r| r.process_cpu, 'W') / sum(&|r| r.secs, 'W'),
        sum(&|r| r.writer_cpu, 'D') / sum(&|r| r.secs, 'D'),
        sum(&|r| r.process_cpu, 'D') / sum(&|r| r.secs, 'D'),
    );
    let per_wall = |f: &dyn Fn(&Round) -> f64, kind: char| sum(f, kind) / sum(&|r| r.secs, kind);
    println!(
        "| writer thread per wall second, without → during: on a CPU / waiting for a CPU / \
         blocked | {:.2} / {:.2} / {:.2} → {:.2} / {:.2} / {:.2} | | |",
        per_wall(&|r| r.writer_cpu, 'W'),
        per_wall(&|r| r.writer_queued, 'W'),
        1.0 - per_wall(&|r| r.writer_cpu + r.writer_queued, 'W'),
        per_wall(&|r| r.writer_cpu, 'D'),
        per_wall(&|r| r.writer_queued, 'D'),
        1.0 - per_wall(&|r| r.writer_cpu + r.writer_queued, 'D'),
    );
    let longest = |kind: char| {
        done.iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.round.longest)
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    println!(
        "| longest single apply batch ({APPLY_BATCH} puts), without → during | \
         {:.1} ms → {:.1} ms | | |",
        longest('W'),
        longest('D')
    );
    println!(
        "| snapshot thread priority | {} | | |",
        if nice_snapshots() {
            format!("nice {}", raft_kv::BACKGROUND_NICE)
        } else {
            "nice 0 (`SNAPSHOT_BENCH_NICE=0`)".to_string()
        }
    );
    println!(
        "| snapshot build rate limit (`SNAPSHOT_BENCH_RATE`) | {} | | |",
        rate_label(rate)
    );
    let o = store_options()?;
    println!(
        "| snapshot files: raw block size / zstd level / re-read verification | {} KiB / {} / {} | | |",
        o.writer.block_size / 1024,
        o.writer.zstd_level,
        if o.verify_on_finish { "on" } else { "off" }
    );
    println!("| load average (1, 5, 15 min) at start / end | {load_start} / {load_end} | | |");
    Ok(())
}
