//! `raft-bench cluster`: a 3-member raftd cluster (and, with `--etcd`, a 3-member etcd
//! cluster on the same machine, in the same run) under put, get and mixed load from the
//! etcd-client crate, each run twice: callers rotating over all endpoints (as etcd's clients
//! do) and to the leader only, with p50 per member role and server CPU per request; then
//! watch fan-out and lease loads over all endpoints, the failover time after kill -9 of the
//! leader, the SIGTERM exit time and each member's peak RSS. Prints a Markdown report with
//! raftd/etcd ratios.
//!
//! `raft-bench history` measures the cost of MVCC history (range at an old revision,
//! compaction, space), raftd against etcd.
//!
//! Run it through `cargo xtask bench cluster` (`cargo xtask bench history`), which builds
//! everything in release mode.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use raft_bench::load::{self, LoadSpec, Workload};
use raft_bench::watch_load;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "raftd against etcd: throughput, latency, failover, shutdown, memory")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark 3-member clusters on loopback.
    Cluster(ClusterArgs),
    /// Drive one workload against running servers (any etcd v3 endpoint) and print its
    /// throughput and latency: for profiling a node under a steady load.
    Load(LoadArgs),
    /// The workload client of a chaos run (`cargo xtask chaos` starts it while it injects
    /// faults): register, bank and watch workloads against the endpoints, histories written
    /// as JSON lines into `--out` for the checkers.
    ChaosClient(ChaosClientArgs),
    /// Point-in-time restore time: a one-member raftd archives its WAL to a `file://`
    /// store while `--entries` puts are written; then `raftd restore --index` replays them.
    Restore(RestoreArgs),
    /// The cost of raftd settings: two 3-member clusters, one with `--b-set` settings (or
    /// `--b-tls`), the same load over all endpoints alternating between them for several
    /// rounds; the median ratio b/a and its spread.
    Compare(CompareArgs),
    /// Redraw the plots of a cluster run from its saved figures (`results.json`, written by
    /// `cluster --plot DIR`), without running anything.
    Plot(PlotArgs),
    /// The cost of MVCC history, raftd (and etcd with `--etcd`) as 3-member clusters one
    /// after the other: range at an old revision vs at the head, the time of a physical
    /// compaction of `--revisions` revisions and the put p99 during it, and a space soak of
    /// `--keys` keys (bytes on disk per live byte and RSS, before and after compaction and
    /// defragmentation).
    History(HistoryArgs),
}

#[derive(clap::Args)]
struct PlotArgs {
    /// The figures a `cluster --plot` run saved.
    #[arg(long)]
    from: PathBuf,
    /// Where the SVGs go (default: the directory of `--from`).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct HistoryArgs {
    /// The raftd binary (a release build).
    #[arg(long)]
    raftd: PathBuf,
    /// The etcd binary; when given, etcd runs the same parts in the same run.
    #[arg(long)]
    etcd: Option<PathBuf>,
    /// Revisions written before the range loads and compacted after them.
    #[arg(long, default_value_t = 1_000_000)]
    revisions: u64,
    /// Keys the revisions are spread over.
    #[arg(long, default_value_t = 10_000)]
    key_set: u64,
    /// Keys of the space soak (each put twice).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Concurrent callers of the range loads (the put load around the compaction uses at
    /// most 16).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured time of each range load and of the put load before the compaction.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where the clusters' data go (wiped first; removed after; real disk, not tmpfs).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The raftd binary (a release build).
    #[arg(long)]
    raftd: PathBuf,
    /// A raftd setting of cluster b only, `KEY=VALUE` (repeatable), e.g.
    /// `backup.url=file:///tmp/raftd-backup/`.
    #[arg(long = "b-set", value_name = "KEY=VALUE")]
    b_set: Vec<String>,
    /// Cluster b runs with TLS on its client port (client certificates) and between peers.
    #[arg(long)]
    b_tls: bool,
    /// Cluster b runs this raftd binary instead (e.g. a release build of an earlier commit:
    /// the cost of a change, measured in the same sitting).
    #[arg(long)]
    b_raftd: Option<PathBuf>,
    /// `put`, `get`, `get-serializable` or `mixed`.
    #[arg(long, default_value = "put")]
    workload: String,
    /// Concurrent callers.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Measured time of each run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Rounds (a and b once each).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Where the clusters' data go (wiped first; removed after).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The raftd binary (a release build).
    #[arg(long)]
    raftd: PathBuf,
    /// Entries (puts of 256-byte values to distinct keys) between the bootstrap and the
    /// restore point.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Where the member, the store and the restored data go (wiped first; removed after).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct ChaosClientArgs {
    /// Client endpoints (`host:port`), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Workloads, comma-separated: register, bank, watch, lock, append, sread (or all).
    #[arg(long, default_value = "register,bank,watch")]
    workload: String,
    /// How long the workloads issue operations.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    time: Duration,
    /// Seeds the clients' choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The directory the histories go to.
    #[arg(long)]
    out: PathBuf,
    /// Register workers.
    #[arg(long, default_value_t = 6)]
    register_clients: usize,
    /// Bank workers.
    #[arg(long, default_value_t = 3)]
    bank_clients: usize,
    /// Watch writers.
    #[arg(long, default_value_t = 2)]
    watch_writers: usize,
    /// Watchers.
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// Lock workers.
    #[arg(long, default_value_t = 3)]
    lock_clients: usize,
    /// Append workers.
    #[arg(long, default_value_t = 4)]
    append_clients: usize,
    /// Serializable-read writers.
    #[arg(long, default_value_t = 2)]
    sread_writers: usize,
    /// Serializable readers (each on one member).
    #[arg(long, default_value_t = 3)]
    sread_readers: usize,
    /// Timeout of one request.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How long the watchers may take to catch up after the workloads stop.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    catch_up: Duration,
    /// Deliberately unsafe: serializable register reads (to show the checker catches stale
    /// reads).
    #[arg(long)]
    unsafe_serializable_reads: bool,
    /// Deliberately unsafe: bank transfers without their guard (to show the checker catches
    /// lost updates).
    #[arg(long)]
    unsafe_unguarded_transfers: bool,
    /// Deliberately unsafe: watchers resume from their last revision instead of the next
    /// (to show the checker catches duplicate events).
    #[arg(long)]
    unsafe_watch_resume_at_last: bool,
    /// Deliberately unsafe: lock holders write without the fencing guard (to show the
    /// checker catches a write by a holder whose lock passed to another).
    #[arg(long)]
    unsafe_unfenced_lock_writes: bool,
    /// Deliberately unsafe: append transactions without their guard (to show the checker
    /// catches lost updates).
    #[arg(long)]
    unsafe_unguarded_appends: bool,
    /// Deliberately unsafe: serializable readers hop members but record one session (to
    /// show the checker catches reads going backwards).
    #[arg(long)]
    unsafe_sread_hop_members: bool,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Client endpoints (`http://host:port`), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// `put`, `get` (linearizable), `get-serializable`, `mixed` (9 linearizable gets per
    /// put), or watch fan-out under puts:
    /// `watch-key` (every watcher on one key) or `watch-prefix` (watchers spread over
    /// `--prefixes` prefixes), or leases: `lease-churn` (grant + put with the lease + revoke
    /// cycles) or `lease-keepalive` (one lease per caller kept alive as fast as answered).
    #[arg(long, default_value = "put")]
    workload: String,
    /// Concurrent callers (the put callers of a watch workload).
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Watchers of a watch workload (spread over the endpoints).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Watchers per watch stream.
    #[arg(long, default_value_t = 100)]
    per_stream: usize,
    /// Prefixes of `watch-prefix`.
    #[arg(long, default_value_t = 100)]
    prefixes: usize,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// The raftd binary (a release build).
    #[arg(long)]
    raftd: PathBuf,
    /// The etcd binary; when given, etcd runs the same workloads in the same run.
    #[arg(long)]
    etcd: Option<PathBuf>,
    /// Measured time of each load run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Failover trials per server.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Where the members' data directories and logs go (wiped first; real disk, not tmpfs).
    #[arg(long)]
    data_dir: PathBuf,
    /// Run raftd with TLS on its client port (client certificates required) and mutual TLS
    /// between peers; the load clients use TLS (raftd only: not with --etcd).
    #[arg(long, conflicts_with = "etcd")]
    tls: bool,
    /// A raftd setting for every member, `KEY=VALUE` as raftd's `--set` (repeatable), e.g.
    /// `--raftd-set backup.url=file:///tmp/raftd-backup` to measure the cost of backups.
    #[arg(long = "raftd-set", value_name = "KEY=VALUE")]
    raftd_set: Vec<String>,
    /// Save the load runs' figures as `DIR/results.json` and draw throughput and latency
    /// against clients, raftd and etcd on the same axes, as SVGs into `DIR` (one per
    /// workload; `raft-bench plot --from DIR/results.json` redraws them).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

/// Value size of every put.
const VALUE_SIZE: usize = 256;
/// Puts pick keys from this many (8-byte keys).
const PUT_KEY_SPACE: u64 = 100_000;
/// Gets pick keys from this many, all written before the get runs.
const GET_KEY_SPACE: u64 = 10_000;

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Args::parse().cmd {
        Cmd::Cluster(args) => rt.block_on(cluster_cmd::cluster(args)),
        Cmd::Load(args) => rt.block_on(load_only(args)),
        Cmd::ChaosClient(args) => rt.block_on(chaos_client(args)),
        Cmd::Restore(args) => rt.block_on(restore(args)),
        Cmd::Compare(args) => rt.block_on(compare(args)),
        Cmd::Plot(args) => plot(args),
        Cmd::History(args) => rt.block_on(history(args)),
    }
}

/// `raft-bench plot`: redraws a cluster run's SVGs from its saved figures.
fn plot(args: PlotArgs) -> Result<()> {
    let results = raft_bench::plot::Results::load(&args.from)?;
    let out = match args.out {
        Some(dir) => dir,
        None => args
            .from
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from),
    };
    for path in raft_bench::plot::draw_all(&results, &out)? {
        println!("{}", path.display());
    }
    Ok(())
}

async fn chaos_client(a: ChaosClientArgs) -> Result<()> {
    let spec = raft_bench::chaos::Spec {
        endpoints: a.endpoints,
        workloads: raft_bench::chaos::Workload::parse_list(&a.workload)?,
        time: a.time,
        seed: a.seed,
        out: a.out,
        register_clients: a.register_clients,
        bank_clients: a.bank_clients,
        watch_writers: a.watch_writers,
        watchers: a.watchers,
        lock_clients: a.lock_clients,
        append_clients: a.append_clients,
        sread_writers: a.sread_writers,
        sread_readers: a.sread_readers,
        timeout: a.timeout,
        catch_up: a.catch_up,
        serializable_reads: a.unsafe_serializable_reads,
        unguarded_transfers: a.unsafe_unguarded_transfers,
        watch_resume_at_last: a.unsafe_watch_resume_at_last,
        unfenced_lock_writes: a.unsafe_unfenced_lock_writes,
        unguarded_appends: a.unsafe_unguarded_appends,
        sread_hop_members: a.unsafe_sread_hop_members,
    };
    let out = spec.out.clone();
    let summary = raft_bench::chaos::run(spec).await?;
    eprintln!(
        "chaos-client: histories of {} in {}",
        summary.workloads.join(", "),
        out.display()
    );
    Ok(())
}

async fn load_only(args: LoadArgs) -> Result<()> {
    let layout = match args.workload.as_str() {
        "watch-key" => Some(watch_load::Layout::OneKey),
        "watch-prefix" => Some(watch_load::Layout::Prefixes(args.prefixes)),
        _ => None,
    };
    let lease = match args.workload.as_str() {
        "lease-churn" => Some(raft_bench::lease_load::LeaseWorkload::Churn),
        "lease-keepalive" => Some(raft_bench::lease_load::LeaseWorkload::KeepAlive),
        _ => None,
    };
    if let Some(workload) = lease {
        let spec = raft_bench::lease_load::LeaseSpec {
            workload,
            clients: args.clients,
            duration: args.duration,
        };
        let s = raft_bench::lease_load::run(&args.endpoints, &spec).await?;
        println!(
            "{} x{}: {:.0}/s p50 {:.2} ms p99 {:.2} ms ({} errors, load average {})",
            args.workload,
            args.clients,
            s.per_sec(),
            s.quantile_ms(0.5),
            s.quantile_ms(0.99),
            s.errors,
            loadavg()
        );
        return Ok(());
    }
    if let Some(layout) = layout {
        let spec = watch_load::WatchSpec {
            layout,
            watchers: args.watchers,
            per_stream: args.per_stream,
            put_clients: args.clients,
            duration: args.duration,
            value_size: VALUE_SIZE,
        };
        let s = watch_load::run(&args.endpoints, &spec).await?;
        println!(
            "{} {} watchers, {} put callers: {:.0} puts/s, {:.0} events/s ({} per put), \
             put-to-event p50 {:.2} ms p99 {:.2} ms (load average {})",
            args.workload,
            args.watchers,
            args.clients,
            s.puts_per_sec(),
            s.events_per_sec(),
            s.fan_out,
            s.quantile_ms(0.5),
            s.quantile_ms(0.99),
            loadavg()
        );
        return Ok(());
    }
    let workload = parse_workload(&args.workload)?;
    let key_space = if workload == Workload::Put {
        PUT_KEY_SPACE
    } else {
        load::fill(&args.endpoints, GET_KEY_SPACE, VALUE_SIZE, None).await?;
        GET_KEY_SPACE
    };
    let spec = LoadSpec {
        workload,
        clients: args.clients,
        duration: args.duration,
        key_space,
        value_size: VALUE_SIZE,
        tls: None,
    };
    let s = load::run(&args.endpoints, &spec).await?;
    println!(
        "{} x{}: {:.0}/s p50 {:.2} ms p99 {:.2} ms ({} errors, load average {})",
        args.workload,
        args.clients,
        s.throughput(),
        s.quantile_ms(0.5),
        s.quantile_ms(0.99),
        s.errors,
        loadavg()
    );
    if let Some(e) = &s.first_error {
        println!("first error: {e}");
    }
    Ok(())
}

fn parse_workload(name: &str) -> Result<Workload> {
    Ok(match name {
        "put" => Workload::Put,
        "get" => Workload::GetLinearizable,
        "get-serializable" => Workload::GetSerializable,
        "mixed" => Workload::Mixed,
        other => anyhow::bail!(
            "unknown workload `{other}` (put, get, get-serializable, mixed, watch-key, \
             watch-prefix, lease-churn, lease-keepalive)"
        ),
    })
}

async fn compare(a: CompareArgs) -> Result<()> {
    use raft_bench::compare::{self, CompareSpec};
    let workload = parse_workload(&a.workload)?;
    println!(
        "# raft-bench compare: {} x{} over all endpoints, {:?} per run, {} rounds; b = {}{}{}; \
         load average at start {}",
        a.workload,
        a.clients,
        a.duration,
        a.rounds,
        a.b_set.join(" "),
        if a.b_tls { " TLS" } else { "" },
        a.b_raftd
            .as_ref()
            .map(|p| format!(" raftd {}", p.display()))
            .unwrap_or_default(),
        loadavg()
    );
    let spec = CompareSpec {
        b_raftd: a.b_raftd,
        b_settings: a.b_set,
        b_tls: a.b_tls,
        load: LoadSpec {
            workload,
            clients: a.clients,
            duration: a.duration,
            key_space: if workload == Workload::Put {
                PUT_KEY_SPACE
            } else {
                GET_KEY_SPACE
            },
            value_size: VALUE_SIZE,
            tls: None,
        },
        rounds: a.rounds,
    };
    let rounds = compare::run(&a.raftd, &a.data_dir, &spec).await;
    let _ = std::fs::remove_dir_all(&a.data_dir);
    let rounds = rounds?;
    println!(
        "\n| round | a ops/s | b ops/s | b/a | a p50 ms | b p50 ms | a CPU µs/op | b CPU µs/op | a switches/op | b switches/op |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} |",
            i + 1,
            r.ops[0],
            r.ops[1],
            r.ops[1] / r.ops[0],
            r.p50_ms[0],
            r.p50_ms[1],
            r.cpu_us[0],
            r.cpu_us[1],
            r.switches[0],
            r.switches[1]
        );
    }
    let ratio = |f: &dyn Fn(&compare::Round) -> f64| {
        compare::median_min_max(&rounds.iter().map(f).collect::<Vec<_>>())
    };
    let (t, tmin, tmax) = ratio(&|r| r.ops[1] / r.ops[0]);
    let (c, cmin, cmax) = ratio(&|r| r.cpu_us[1] / r.cpu_us[0]);
    let (p, pmin, pmax) = ratio(&|r| r.p50_ms[1] / r.p50_ms[0]);
    let (w, wmin, wmax) = ratio(&|r| r.switches[1] / r.switches[0]);
    println!(
        "\nthroughput b/a: median {t:.3} (rounds {tmin:.3}..{tmax:.3}); p50 b/a: median {p:.3} \
         ({pmin:.3}..{pmax:.3}); server CPU per request b/a: median {c:.3} ({cmin:.3}..{cmax:.3}); \
         context switches per request b/a: median {w:.3} ({wmin:.3}..{wmax:.3}); load average \
         at end {}",
        loadavg()
    );
    Ok(())
}

async fn history(a: HistoryArgs) -> Result<()> {
    use raft_bench::cluster::Server;
    use raft_bench::history::{self, HistorySpec};
    let spec = HistorySpec {
        revisions: a.revisions,
        key_set: a.key_set,
        keys: a.keys,
        value_size: VALUE_SIZE,
        clients: a.clients,
        duration: a.duration,
    };
    println!(
        "# raft-bench history: {} revisions over {} keys, soak of {} keys x2, \
         {VALUE_SIZE}-byte values, {} range callers, {:?} per load; load average at start {}",
        a.revisions,
        a.key_set,
        a.keys,
        a.clients,
        a.duration,
        loadavg()
    );
    let mut servers = vec![Server::Raftd(a.raftd.clone())];
    if let Some(etcd) = &a.etcd {
        servers.push(Server::Etcd(etcd.clone()));
    }
    let mut reports = Vec::new();
    for s in servers {
        let dir = a.data_dir.join(s.name());
        reports.push(history::run(s, &dir, &spec).await?);
    }
    let _ = std::fs::remove_dir_all(&a.data_dir);
    println!(
        "\n| server | range @old ops/s | p50 ms | p99 ms | range @head ops/s | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &reports {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |",
            r.server,
            r.range_old.ops,
            r.range_old.p50_ms,
            r.range_old.p99_ms,
            r.range_head.ops,
            r.range_head.p50_ms,
            r.range_head.p99_ms
        );
    }
    println!(
        "\n| server | compact to rev | compaction s | put p99 before ms | puts/s before | \
         put p99 during ms | puts/s during |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &reports {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} |",
            r.server,
            r.compacted_to,
            r.compaction.as_secs_f64(),
            r.put_p99_before_ms,
            r.puts_before,
            r.put_p99_during_ms,
            r.puts_during
        );
    }
    println!(
        "\n| server | live MiB | disk/live with history | disk/live compacted + defragmented | \
         disk/live after raftd defrag (offline) | peak RSS MiB (mean per member) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &reports {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
            r.server,
            r.live_bytes as f64 / (1 << 20) as f64,
            r.amplification_with_history(),
            r.amplification_compacted(),
            r.amplification_offline()
                .map_or_else(|| "-".to_string(), |a| format!("{a:.2}")),
            r.rss_kib as f64 / 1024.0
        );
    }
    if reports.len() == 2 {
        let (x, e) = (&reports[0], &reports[1]);
        println!(
            "\nraftd/etcd: range @old ops {:.2}, compaction time {:.2}, put p99 during \
             compaction {:.2}, disk/live with history {:.2}, disk/live after defragmentation \
             (raftd offline) {:.2}, RSS {:.2}",
            x.range_old.ops / e.range_old.ops.max(1e-9),
            x.compaction.as_secs_f64() / e.compaction.as_secs_f64().max(1e-9),
            x.put_p99_during_ms / e.put_p99_during_ms.max(1e-9),
            x.amplification_with_history() / e.amplification_with_history().max(1e-9),
            x.amplification_offline()
                .unwrap_or(x.amplification_compacted())
                / e.amplification_compacted().max(1e-9),
            x.rss_kib as f64 / e.rss_kib.max(1) as f64
        );
    }
    println!("load average at end {}", loadavg());
    Ok(())
}

async fn restore(a: RestoreArgs) -> Result<()> {
    println!(
        "# raft-bench restore: {} entries of {VALUE_SIZE}-byte values, load average at start {}",
        a.entries,
        loadavg()
    );
    let s = raft_bench::restore::run(&a.raftd, &a.data_dir, a.entries, VALUE_SIZE).await;
    let _ = std::fs::remove_dir_all(&a.data_dir);
    let s = s?;
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "| entries | written in s | written/s | archive MiB | restore to index | restore s | replayed/s | restore/write time |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {:.1} | {:.0} | {:.1} | {} | {:.1} | {:.0} | {:.2} |",
        s.written,
        secs(s.write_time),
        s.written as f64 / secs(s.write_time),
        s.archive_bytes as f64 / (1 << 20) as f64,
        s.index,
        secs(s.restore_time),
        s.index as f64 / secs(s.restore_time),
        secs(s.restore_time) / secs(s.write_time)
    );
    println!("load average at end {}", loadavg());
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
