//! The cost of MVCC history (`raft-bench history`), raftd against etcd on the same machine
//! with the same load generator as `raft-bench cluster` ([`crate::load`]):
//!
//! - **range at an old revision**: `revisions` puts over `key_set` keys, then linearizable
//!   gets of random keys at an old revision (after the first pass over the key set) and at
//!   the head;
//! - **compaction**: on the same cluster, `Compact(head, physical = true)` of those
//!   revisions timed, and the p99 of a steady put load while it runs against the same load
//!   just before it;
//! - **space soak** (a fresh cluster): `keys` keys each put twice (history kept: half the
//!   versions are dead), then compacted to the head and defragmented on every member
//!   (`Maintenance.Defragment`; for raftd also `raftd defrag` on each stopped member, its
//!   offline equivalent, since sled's files do not shrink online); the bytes on disk (what
//!   `du` counts, of each member's whole data directory) per live byte (keys and values) at
//!   each step, and each member's peak RSS (VmHWM) over the soak.
//!
//! Each server runs alone (one cluster at a time), with its space quota raised so the soak
//! does not hit it.

use crate::cluster::{Cluster, Server, connect};
use crate::load::{self, LoadSpec, Workload};
use anyhow::{Context, Result, bail};
use etcd_client::{Client, CompactionOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct HistorySpec {
    /// Revisions written before the range and compaction measurements.
    pub revisions: u64,
    /// Keys the revisions are spread over (and the range gets pick from).
    pub key_set: u64,
    /// Keys of the space soak (each put twice).
    pub keys: u64,
    /// Value size of every put, in bytes.
    pub value_size: usize,
    /// Concurrent callers of the range loads and of the put load around the compaction.
    pub clients: usize,
    /// Measured time of each range load, and of the put load before the compaction.
    pub duration: Duration,
}

/// Range figures of one run: ops/s and p50/p99 in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeFigures {
    /// Successful gets per second.
    pub ops: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// What one server did.
#[derive(Clone, Debug, Default)]
pub struct HistoryReport {
    /// `raftd` or `etcd`.
    pub server: &'static str,
    /// The old revision the history gets read at.
    pub old_revision: i64,
    /// The head revision before the range loads.
    pub head_revision: i64,
    /// Gets at the old revision.
    pub range_old: RangeFigures,
    /// Gets at the head.
    pub range_head: RangeFigures,
    /// Revisions the compaction removed the history of (the head it compacted to).
    pub compacted_to: i64,
    /// How long `Compact(physical = true)` took to answer.
    pub compaction: Duration,
    /// Put p99 (ms) of the steady put load before the compaction, and its puts/s.
    pub put_p99_before_ms: f64,
    /// Puts per second before the compaction.
    pub puts_before: f64,
    /// Put p99 (ms) of the same load while the compaction ran, and its puts/s.
    pub put_p99_during_ms: f64,
    /// Puts per second while the compaction ran.
    pub puts_during: f64,
    /// Live bytes of the soak (keys and values of every live key).
    pub live_bytes: u64,
    /// Mean bytes on disk per member with the soak's history kept.
    pub disk_with_history: u64,
    /// Mean bytes on disk per member after compaction and the online `Defragment` of every
    /// member.
    pub disk_compacted: u64,
    /// raftd only: mean bytes on disk per member after `raftd defrag` on each stopped
    /// member in turn (raftd's online `Defragment` cannot shrink sled's files; this is its
    /// documented equivalent).
    pub disk_offline_defrag: Option<u64>,
    /// Mean peak RSS per member over the soak, KiB.
    pub rss_kib: u64,
}

impl HistoryReport {
    /// Bytes on disk per live byte, with history kept.
    pub fn amplification_with_history(&self) -> f64 {
        self.disk_with_history as f64 / self.live_bytes.max(1) as f64
    }

    /// Bytes on disk per live byte after compaction and the online defragmentation.
    pub fn amplification_compacted(&self) -> f64 {
        self.disk_compacted as f64 / self.live_bytes.max(1) as f64
    }

    /// Bytes on disk per live byte after the offline `raftd defrag` (raftd only).
    pub fn amplification_offline(&self) -> Option<f64> {
        self.disk_offline_defrag
            .map(|d| d as f64 / self.live_bytes.max(1) as f64)
    }
}

/// The settings each server needs for the runs: raftd's and etcd's space quotas raised (the
/// soak writes more than etcd's 2 GiB default), and no auto-compaction (both default to
/// none; said here so a changed default cannot hide the history).
fn server_args(server: &Server) -> Vec<&'static str> {
    match server {
        Server::Raftd(_) => vec!["--set", "quota_backend_bytes=64GiB"],
        Server::Etcd(_) => vec!["--quota-backend-bytes=8589934592"],
    }
}

/// Runs every part against `server`, with data under `dir` (wiped first).
pub async fn run(server: Server, dir: &Path, spec: &HistorySpec) -> Result<HistoryReport> {
    if spec.key_set == 0 || spec.revisions < spec.key_set || spec.clients == 0 {
        bail!("history: need 0 < key set <= revisions and at least one client");
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let args = server_args(&server);
    let mut report = HistoryReport {
        server: server.name(),
        ..Default::default()
    };

    // Range and compaction.
    {
        let cluster = Cluster::start(server.clone(), &dir.join("history"), 3, &args)?;
        let leader = cluster.leader(Duration::from_secs(30)).await?;
        let eps = cluster.endpoints();
        let client = connect(&[cluster.endpoint(leader)], Duration::from_secs(30)).await?;
        let start = head(&client).await?;
        write(&eps, 0, spec.revisions, spec.key_set, spec.value_size).await?;
        report.head_revision = head(&client).await?;
        report.old_revision = start + spec.key_set as i64;
        let range = |workload| LoadSpec {
            workload,
            clients: spec.clients,
            duration: spec.duration,
            key_space: spec.key_set,
            value_size: spec.value_size,
            tls: None,
        };
        let figures = |s: &load::Stats| RangeFigures {
            ops: s.throughput(),
            p50_ms: s.quantile_ms(0.5),
            p99_ms: s.quantile_ms(0.99),
        };
        let old = load::run(&eps, &range(Workload::GetAtRevision(report.old_revision))).await?;
        check_errors("range at the old revision", &old)?;
        report.range_old = figures(&old);
        let now = load::run(&eps, &range(Workload::GetLinearizable)).await?;
        check_errors("range at the head", &now)?;
        report.range_head = figures(&now);

        // The put load, first alone, then around the compaction.
        let put_clients = spec.clients.min(16);
        let before = timed_puts(&eps, put_clients, spec.key_set, spec.value_size, async {
            tokio::time::sleep(spec.duration).await;
        })
        .await?;
        report.put_p99_before_ms = load::quantile_ms(&before.latencies_us, 0.99);
        report.puts_before = before.per_sec();
        let to = head(&client).await?;
        report.compacted_to = to;
        // Timed until it answers, however long that is (a physical compaction of a million
        // revisions beside a put load takes minutes on this machine).
        let compact_client =
            connect(&[cluster.endpoint(leader)], Duration::from_secs(1800)).await?;
        let mut took = Duration::ZERO;
        let mut failed = None;
        let during = timed_puts(&eps, put_clients, spec.key_set, spec.value_size, async {
            // Let the load settle first.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t0 = Instant::now();
            let r = compact_client
                .clone()
                .compact(to, Some(CompactionOptions::new().with_physical()))
                .await;
            took = t0.elapsed();
            failed = r.err();
        })
        .await?;
        if let Some(e) = failed {
            bail!("{}: the compaction failed: {e}", server.name());
        }
        report.compaction = took;
        // Only the puts sent while the compaction ran.
        let window: Vec<u32> = during.window_after(Duration::from_millis(500));
        report.put_p99_during_ms = load::quantile_ms(&window, 0.99);
        report.puts_during = window.len() as f64 / took.as_secs_f64().max(1e-9);
    }

    // Space soak, on a fresh cluster.
    {
        let mut cluster = Cluster::start(server.clone(), &dir.join("soak"), 3, &args)?;
        let leader = cluster.leader(Duration::from_secs(30)).await?;
        let eps = cluster.endpoints();
        let client = connect(&[cluster.endpoint(leader)], Duration::from_secs(60)).await?;
        // Every key twice: the first version is history.
        write(&eps, 1, spec.keys * 2, spec.keys, spec.value_size).await?;
        report.live_bytes = spec.keys * (soak_key(0).len() + spec.value_size) as u64;
        settle(&cluster).await;
        report.disk_with_history = mean_du(&cluster);
        let to = head(&client).await?;
        client
            .clone()
            .compact(to, Some(CompactionOptions::new().with_physical()))
            .await
            .context("compacting the soak")?;
        for ep in cluster.endpoints() {
            let c = connect(std::slice::from_ref(&ep), Duration::from_secs(600)).await?;
            c.maintenance_client()
                .defragment()
                .await
                .with_context(|| format!("defragmenting {ep}"))?;
        }
        settle(&cluster).await;
        report.disk_compacted = mean_du(&cluster);
        if let Server::Raftd(bin) = &server {
            for id in cluster.running() {
                offline_defrag(&mut cluster, bin, id).await?;
            }
            report.disk_offline_defrag = Some(mean_du(&cluster));
        }
        cluster.sample_rss();
        let rss = cluster.peak_rss_kib();
        report.rss_kib = rss.values().sum::<u64>() / rss.len().max(1) as u64;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(report)
}

fn check_errors(what: &str, s: &load::Stats) -> Result<()> {
    if s.ops == 0 {
        bail!(
            "{what}: no request succeeded (first error: {})",
            s.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// The store revision now.
async fn head(client: &Client) -> Result<i64> {
    let r = client.clone().get("\0", None).await?;
    Ok(r.header().map_or(0, |h| h.revision()))
}

/// A key of the soak: `s` and 15 digits (distinct from the range keys).
fn soak_key(n: u64) -> String {
    format!("s{n:015}")
}

/// Writes `n` puts, put `i` to key `i % key_set` (range keys for `space` 0, soak keys for
/// 1), with 64 concurrent callers over every endpoint.
async fn write(eps: &[String], space: u8, n: u64, key_set: u64, value_size: usize) -> Result<()> {
    let value = vec![b'h'; value_size];
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let ep = eps[t as usize % eps.len()].clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut kv = connect(&[ep], Duration::from_secs(30)).await?.kv_client();
            let mut i = t;
            while i < n {
                let k = i % key_set;
                let key = if space == 0 {
                    load::key(k)
                } else {
                    soak_key(k)
                };
                // Retried across a leader change (a loaded machine), as a client would.
                let mut tries = 0;
                while let Err(e) = kv.put(key.clone(), value.clone(), None).await {
                    tries += 1;
                    if tries > 100 {
                        return Err(e.into());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                i += 64;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Latencies of a put load, each with when it was sent.
struct Timed {
    /// (sent after the load's start, latency in µs).
    samples: Vec<(Duration, u32)>,
    /// The load's length.
    elapsed: Duration,
    /// Sorted latencies.
    latencies_us: Vec<u32>,
}

impl Timed {
    fn per_sec(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Sorted latencies of the puts sent at least `after` into the load.
    fn window_after(&self, after: Duration) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .samples
            .iter()
            .filter(|(at, _)| *at >= after)
            .map(|&(_, us)| us)
            .collect();
        v.sort_unstable();
        v
    }
}

/// A closed-loop put load of `clients` callers over `eps` (the same picks as
/// [`load::run`]'s puts) until `until` completes; every put's send time and latency.
async fn timed_puts(
    eps: &[String],
    clients: usize,
    key_set: u64,
    value_size: usize,
    until: impl std::future::Future<Output = ()>,
) -> Result<Timed> {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut conns = Vec::new();
    for ep in eps {
        conns.push(connect(std::slice::from_ref(ep), Duration::from_secs(30)).await?);
    }
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut kv = conns[c % conns.len()].kv_client();
        let stop = stop.clone();
        let value = vec![b'p'; value_size];
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut n = c as u64 * 7919;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let sent = Instant::now();
                if kv
                    .put(load::key((n >> 33) % key_set), value.clone(), None)
                    .await
                    .is_ok()
                {
                    let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    out.push((sent - t0, us));
                }
            }
            out
        }));
    }
    until.await;
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    let samples: Vec<_> = samples
        .into_iter()
        .filter(|(at, _)| *at < elapsed)
        .collect();
    let mut latencies_us: Vec<u32> = samples.iter().map(|&(_, us)| us).collect();
    latencies_us.sort_unstable();
    Ok(Timed {
        samples,
        elapsed,
        latencies_us,
    })
}

/// Stops raftd member `id`, runs `raftd defrag` on its data directory, starts it again and
/// waits until it answers a linearizable read.
async fn offline_defrag(cluster: &mut Cluster, bin: &Path, id: u64) -> Result<()> {
    cluster.terminate(id, Duration::from_secs(60))?;
    let out = std::process::Command::new(bin)
        .args(["--id", &id.to_string()])
        .arg("--data-dir")
        .arg(cluster.data_dir(id))
        .arg("defrag")
        .output()
        .context("running raftd defrag")?;
    if !out.status.success() {
        bail!(
            "raftd defrag of member {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.spawn(id)?;
    let ep = cluster.endpoint(id);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(c) = connect(std::slice::from_ref(&ep), Duration::from_secs(5)).await
            && head(&c).await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("member {id} does not serve after raftd defrag");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Gives the members a moment to finish background work (flushes, physical compaction)
/// before their disks are measured.
async fn settle(_cluster: &Cluster) {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// The mean over running members of what `du` counts in each member's data directory.
fn mean_du(cluster: &Cluster) -> u64 {
    let ids = cluster.running();
    let total: u64 = ids.iter().map(|&id| du(&cluster.data_dir(id))).sum();
    total / ids.len().max(1) as u64
}

/// Allocated bytes of every file under `dir` (as `du` counts them).
pub fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}
