//! `raft-bench cluster`: a 3-member raftd cluster (and, with `--etcd`, a 3-member etcd
//! cluster on the same machine, in the same run) under put, get and mixed load from the
//! etcd-client crate, each run twice: callers rotating over all endpoints (as etcd's clients
//! do) and to the leader only, with p50 per member role and server CPU per request; then
//! watch fan-out and lease loads over all endpoints, the failover time after kill -9 of the
//! leader, the SIGTERM exit time and each member's peak RSS. Prints a Markdown report with
//! raftd/etcd ratios.
//!
//! Run it through `cargo xtask bench cluster`, which builds everything in release mode.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use raft_bench::cluster::{Cluster, Server, process_cpu};
use raft_bench::failover;
use raft_bench::load::{self, LoadSpec, Stats, Workload};
use raft_bench::watch_load;
use raft_node::testing::TlsFiles;
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
    /// Workloads, comma-separated: register, bank, watch, lock (or all).
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
}

/// Value size of every put.
const VALUE_SIZE: usize = 256;
/// Puts pick keys from this many (8-byte keys).
const PUT_KEY_SPACE: u64 = 100_000;
/// Gets pick keys from this many, all written before the get runs.
const GET_KEY_SPACE: u64 = 10_000;

struct Target {
    cluster: Cluster,
}

impl Target {
    fn name(&self) -> &'static str {
        self.cluster.server().name()
    }

    /// The leader's client endpoint.
    async fn leader_endpoint(&self) -> Result<Vec<String>> {
        let id = self.cluster.leader(Duration::from_secs(30)).await?;
        Ok(vec![self.cluster.endpoint(id)])
    }

    /// The endpoints a load of `mode` goes to, and which of them is the leader's.
    async fn endpoints(&self, mode: Endpoints) -> Result<(Vec<String>, usize)> {
        let id = self.cluster.leader(Duration::from_secs(30)).await?;
        let leader = self.cluster.endpoint(id);
        let eps = match mode {
            Endpoints::All => self.cluster.endpoints(),
            Endpoints::Leader => vec![leader.clone()],
        };
        let at = eps.iter().position(|e| *e == leader).unwrap_or(0);
        Ok((eps, at))
    }
}

/// Where a load run sends its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoints {
    /// Every member, each caller moving to the next after every request (as etcd's
    /// clients balance over the endpoints they are given): what users see.
    All,
    /// The leader only.
    Leader,
}

impl Endpoints {
    fn name(self) -> &'static str {
        match self {
            Endpoints::All => "all",
            Endpoints::Leader => "leader",
        }
    }
}

/// One load run of the table: the workload, its callers, where they send.
#[derive(Clone, Copy, Debug)]
struct Run {
    name: &'static str,
    workload: Workload,
    clients: usize,
    endpoints: Endpoints,
}

/// What one server did in one run: the load's figures and which endpoint was the leader's.
struct Outcome {
    stats: Stats,
    endpoints: usize,
    leader_at: usize,
}

impl Outcome {
    /// p50 of the requests sent to the leader, and to the followers (0 when none were).
    fn p50_by_role(&self) -> (f64, f64) {
        let followers: Vec<usize> = (0..self.endpoints)
            .filter(|&i| i != self.leader_at)
            .collect();
        (
            self.stats.quantile_ms_at(&[self.leader_at], 0.5),
            self.stats.quantile_ms_at(&followers, 0.5),
        )
    }
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Args::parse().cmd {
        Cmd::Cluster(args) => rt.block_on(cluster(args)),
        Cmd::Load(args) => rt.block_on(load_only(args)),
        Cmd::ChaosClient(args) => rt.block_on(chaos_client(args)),
        Cmd::Restore(args) => rt.block_on(restore(args)),
        Cmd::Compare(args) => rt.block_on(compare(args)),
    }
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
        timeout: a.timeout,
        catch_up: a.catch_up,
        serializable_reads: a.unsafe_serializable_reads,
        unguarded_transfers: a.unsafe_unguarded_transfers,
        watch_resume_at_last: a.unsafe_watch_resume_at_last,
        unfenced_lock_writes: a.unsafe_unfenced_lock_writes,
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
        "# raft-bench compare: {} x{} over all endpoints, {:?} per run, {} rounds; b = {}{}; \
         load average at start {}",
        a.workload,
        a.clients,
        a.duration,
        a.rounds,
        a.b_set.join(" "),
        if a.b_tls { " TLS" } else { "" },
        loadavg()
    );
    let spec = CompareSpec {
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
        "\n| round | a ops/s | b ops/s | b/a | a p50 ms | b p50 ms | a CPU µs/op | b CPU µs/op |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {:.0} | {:.0} |",
            i + 1,
            r.ops[0],
            r.ops[1],
            r.ops[1] / r.ops[0],
            r.p50_ms[0],
            r.p50_ms[1],
            r.cpu_us[0],
            r.cpu_us[1]
        );
    }
    let ratio = |f: &dyn Fn(&compare::Round) -> f64| {
        compare::median_min_max(&rounds.iter().map(f).collect::<Vec<_>>())
    };
    let (t, tmin, tmax) = ratio(&|r| r.ops[1] / r.ops[0]);
    let (c, cmin, cmax) = ratio(&|r| r.cpu_us[1] / r.cpu_us[0]);
    println!(
        "\nthroughput b/a: median {t:.3} (rounds {tmin:.3}..{tmax:.3}); server CPU per request \
         b/a: median {c:.3} ({cmin:.3}..{cmax:.3}); load average at end {}",
        loadavg()
    );
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

async fn cluster(args: ClusterArgs) -> Result<()> {
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("removing {}", args.data_dir.display()))?;
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# raft-bench cluster: {cpus} CPUs, load average at start {}",
        loadavg()
    );
    println!(
        "3 members each on 127.0.0.1, data under {} (fsync on), {VALUE_SIZE}-byte values, \
         8-byte keys, {:?} per load run; each load twice: callers rotating over all \
         endpoints (as etcd's clients do) and to the leader only",
        args.data_dir.display(),
        args.duration
    );
    let raftd_args: Vec<&str> = args
        .raftd_set
        .iter()
        .flat_map(|kv| ["--set", kv.as_str()])
        .collect();
    if !args.raftd_set.is_empty() {
        println!("raftd settings: {}", args.raftd_set.join(" "));
    }
    let mut targets = vec![Target {
        cluster: Cluster::start_with(
            Server::Raftd(args.raftd.clone()),
            &args.data_dir.join("raftd"),
            3,
            &raftd_args,
            if args.tls {
                Some(TlsFiles::generate(&args.data_dir.join("certs"), true)?)
            } else {
                None
            },
        )?,
    }];
    if let Some(etcd) = &args.etcd {
        targets.push(Target {
            cluster: Cluster::start(
                Server::Etcd(etcd.clone()),
                &args.data_dir.join("etcd"),
                3,
                &[],
            )?,
        });
    }
    for t in &targets {
        t.cluster.leader(Duration::from_secs(30)).await?;
    }

    // Load runs, the servers interleaved run by run (alternating who goes first); every
    // workload through all endpoints (what users see) and through the leader only.
    let workloads = [
        ("put", Workload::Put, 1),
        ("put", Workload::Put, 16),
        ("put", Workload::Put, 256),
        ("get (linearizable)", Workload::GetLinearizable, 1),
        ("get (linearizable)", Workload::GetLinearizable, 256),
        ("get (serializable)", Workload::GetSerializable, 1),
        ("get (serializable)", Workload::GetSerializable, 256),
        ("mixed 90% get / 10% put", Workload::Mixed, 256),
    ];
    let runs: Vec<Run> = workloads
        .iter()
        .flat_map(|&(name, workload, clients)| {
            [Endpoints::All, Endpoints::Leader].map(|endpoints| Run {
                name,
                workload,
                clients,
                endpoints,
            })
        })
        .collect();
    let mut results: Vec<Vec<Outcome>> = Vec::new();
    let mut cpu: Vec<Vec<CpuPerOp>> = Vec::new();
    let mut filled = false;
    for (n, run) in runs.iter().enumerate() {
        let Run {
            name,
            workload,
            clients,
            endpoints,
        } = *run;
        if workload != Workload::Put && !filled {
            for t in &targets {
                let tls = t.cluster.client_tls();
                load::fill(&t.leader_endpoint().await?, GET_KEY_SPACE, VALUE_SIZE, tls).await?;
            }
            filled = true;
        }
        let mut spec = LoadSpec {
            workload,
            clients,
            duration: args.duration,
            key_space: if workload == Workload::Put {
                PUT_KEY_SPACE
            } else {
                GET_KEY_SPACE
            },
            value_size: VALUE_SIZE,
            tls: None,
        };
        let mut row: Vec<Option<Outcome>> = (0..targets.len()).map(|_| None).collect();
        let mut cpu_row: Vec<Option<CpuPerOp>> = vec![None; targets.len()];
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if n % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let t = &mut targets[i];
            let (eps, leader_at) = t.endpoints(endpoints).await?;
            spec.tls = t.cluster.client_tls();
            let (server0, client0) = (t.cluster.cpu_time(), process_cpu(std::process::id()));
            let s = load::run(&eps, &spec).await?;
            let ops = s.all_ops.max(1) as f64;
            cpu_row[i] = Some(CpuPerOp {
                server_us: (t.cluster.cpu_time().saturating_sub(server0)).as_secs_f64() * 1e6 / ops,
                client_us: (process_cpu(std::process::id()).saturating_sub(client0)).as_secs_f64()
                    * 1e6
                    / ops,
            });
            t.cluster.sample_rss();
            if t.leader_endpoint().await? != [eps[leader_at].clone()] {
                eprintln!("  the leader changed during the run: its per-role figures are mixed");
            }
            let out = Outcome {
                stats: s,
                endpoints: eps.len(),
                leader_at,
            };
            let s = &out.stats;
            let (pl, pf) = out.p50_by_role();
            eprintln!(
                "{} {name} x{clients} ({} endpoints): {:.0}/s p50 {:.2} ms p99 {:.2} ms, \
                 p50 leader {pl:.2} ms follower {pf:.2} ms ({} errors)",
                t.name(),
                endpoints.name(),
                s.throughput(),
                s.quantile_ms(0.5),
                s.quantile_ms(0.99),
                s.errors
            );
            if let Some(e) = &s.first_error {
                eprintln!("  first error: {e}");
            }
            row[i] = Some(out);
        }
        results.push(
            row.into_iter()
                .map(|s| s.expect("every target ran"))
                .collect(),
        );
        cpu.push(
            cpu_row
                .into_iter()
                .map(|c| c.expect("every target ran"))
                .collect(),
        );
    }

    // Watch fan-out and lease load over all endpoints, interleaved (not over TLS: these
    // loads connect without it).
    let side = if args.tls { Vec::new() } else { side_runs() };
    let mut side_results: Vec<Vec<SideOutcome>> = Vec::new();
    for (n, run) in side.iter().enumerate() {
        let mut row: Vec<Option<SideOutcome>> = (0..targets.len()).map(|_| None).collect();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if n % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let t = &targets[i];
            let eps = t.cluster.endpoints();
            let out = run.run(&eps, args.duration).await?;
            eprintln!(
                "{} {}: {:.0} {}/s p50 {:.2} ms p99 {:.2} ms{}",
                t.name(),
                run.name(),
                out.rate,
                out.unit,
                out.p50,
                out.p99,
                out.note
            );
            row[i] = Some(out);
        }
        side_results.push(
            row.into_iter()
                .map(|o| o.expect("every target ran"))
                .collect(),
        );
    }

    // Failover trials, interleaved.
    let mut failovers: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for trial in 0..args.trials {
        for (i, t) in targets.iter_mut().enumerate() {
            let d = failover::trial(&mut t.cluster, VALUE_SIZE).await?;
            eprintln!("{} failover trial {}: {d:?}", t.name(), trial + 1);
            failovers[i].push(d);
        }
    }

    // SIGTERM: the leader first, then the others; the time from the signal to the exit.
    let mut shutdowns: Vec<Vec<Duration>> = Vec::new();
    for t in &mut targets {
        let leader = t.cluster.leader(Duration::from_secs(30)).await?;
        let mut order = vec![leader];
        order.extend(t.cluster.running().into_iter().filter(|&i| i != leader));
        let mut times = Vec::new();
        for id in order {
            let (d, status) = t.cluster.terminate(id, Duration::from_secs(30))?;
            eprintln!(
                "{} member {id} exited {status} {d:?} after SIGTERM",
                t.name()
            );
            times.push(d);
        }
        shutdowns.push(times);
    }

    report(&targets, &runs, &results, &failovers, &shutdowns);
    report_side(&targets, &side, &side_results);
    report_cpu(&targets, &runs, &cpu);
    println!("\nload average at end {}", loadavg());
    Ok(())
}

/// A watch or lease load beside the plain ones (issue 20's workloads, run as users would:
/// over all endpoints).
enum SideRun {
    /// Watchers (1,000, 100 per stream) under 16 put callers.
    Watch(watch_load::Layout),
    /// Lease callers.
    Lease(raft_bench::lease_load::LeaseWorkload, usize),
}

/// What one server did in one side run.
struct SideOutcome {
    rate: f64,
    unit: &'static str,
    p50: f64,
    p99: f64,
    /// Anything else worth printing (puts/s under the watchers, errors).
    note: String,
}

fn side_runs() -> Vec<SideRun> {
    use raft_bench::lease_load::LeaseWorkload;
    vec![
        SideRun::Watch(watch_load::Layout::OneKey),
        SideRun::Watch(watch_load::Layout::Prefixes(100)),
        SideRun::Lease(LeaseWorkload::Churn, 64),
        SideRun::Lease(LeaseWorkload::KeepAlive, 256),
    ]
}

impl SideRun {
    fn name(&self) -> String {
        use raft_bench::lease_load::LeaseWorkload;
        match self {
            SideRun::Watch(watch_load::Layout::OneKey) => {
                "watch: 1000 watchers on one key, 16 put callers (put-to-event latency)".into()
            }
            SideRun::Watch(watch_load::Layout::Prefixes(p)) => format!(
                "watch: 1000 watchers over {p} prefixes, 16 put callers (put-to-event latency)"
            ),
            SideRun::Lease(LeaseWorkload::Churn, n) => {
                format!("lease grant + put + revoke, {n} callers (cycles)")
            }
            SideRun::Lease(LeaseWorkload::KeepAlive, n) => {
                format!("lease keep-alive, {n} callers")
            }
        }
    }

    async fn run(&self, endpoints: &[String], duration: Duration) -> Result<SideOutcome> {
        Ok(match *self {
            SideRun::Watch(layout) => {
                let spec = watch_load::WatchSpec {
                    layout,
                    watchers: 1000,
                    per_stream: 100,
                    put_clients: 16,
                    duration,
                    value_size: VALUE_SIZE,
                };
                let s = watch_load::run(endpoints, &spec).await?;
                SideOutcome {
                    rate: s.events_per_sec(),
                    unit: "events",
                    p50: s.quantile_ms(0.5),
                    p99: s.quantile_ms(0.99),
                    note: format!(
                        " ({:.0} puts/s, {} events per put)",
                        s.puts_per_sec(),
                        s.fan_out
                    ),
                }
            }
            SideRun::Lease(workload, clients) => {
                let spec = raft_bench::lease_load::LeaseSpec {
                    workload,
                    clients,
                    duration,
                };
                let s = raft_bench::lease_load::run(endpoints, &spec).await?;
                SideOutcome {
                    rate: s.per_sec(),
                    unit: "ops",
                    p50: s.quantile_ms(0.5),
                    p99: s.quantile_ms(0.99),
                    note: format!(" ({} errors)", s.errors),
                }
            }
        })
    }
}

/// The watch and lease table.
fn report_side(targets: &[Target], side: &[SideRun], results: &[Vec<SideOutcome>]) {
    if side.is_empty() {
        return;
    }
    let names: Vec<&str> = targets.iter().map(Target::name).collect();
    let etcd = names.len() > 1;
    println!("\nWatch and lease loads over all endpoints:\n");
    let mut head = "| workload | unit |".to_string();
    let mut rule = "|---|---|".to_string();
    for n in &names {
        head.push_str(&format!(" {n} /s | {n} p50 ms | {n} p99 ms |"));
        rule.push_str("---:|---:|---:|");
    }
    if etcd {
        head.push_str(" /s raftd/etcd | p50 raftd/etcd |");
        rule.push_str("---:|---:|");
    }
    println!("{head}\n{rule}");
    for (run, row) in side.iter().zip(results) {
        let mut line = format!("| {} | {} |", run.name(), row[0].unit);
        for o in row {
            line.push_str(&format!(" {:.0} | {:.2} | {:.2} |", o.rate, o.p50, o.p99));
        }
        if etcd {
            line.push_str(&format!(
                " {:.2} | {:.2} |",
                row[0].rate / row[1].rate,
                row[0].p50 / row[1].p50
            ));
        }
        println!("{line}");
    }
}

/// CPU time per successful request of one load run (warm-up included).
#[derive(Clone, Copy, Debug)]
struct CpuPerOp {
    /// Every member process of the server, all threads.
    server_us: f64,
    /// The load generator (this process).
    client_us: f64,
}

/// CPU per request: what each server spends on the same work, a measure the machine's
/// other load disturbs much less than throughput.
fn report_cpu(targets: &[Target], runs: &[Run], cpu: &[Vec<CpuPerOp>]) {
    let names: Vec<&str> = targets.iter().map(Target::name).collect();
    let etcd = names.len() > 1;
    println!(
        "\nCPU time per request (µs; server = its 3 members together, client = the load generator):\n"
    );
    let mut head = "| workload | clients | endpoints |".to_string();
    let mut rule = "|---|---:|---|".to_string();
    for n in &names {
        head.push_str(&format!(" {n} server | {n} client |"));
        rule.push_str("---:|---:|");
    }
    if etcd {
        head.push_str(" server raftd/etcd |");
        rule.push_str("---:|");
    }
    println!("{head}\n{rule}");
    for (run, row) in runs.iter().zip(cpu) {
        let mut line = format!(
            "| {} | {} | {} |",
            run.name,
            run.clients,
            run.endpoints.name()
        );
        for c in row {
            line.push_str(&format!(" {:.0} | {:.0} |", c.server_us, c.client_us));
        }
        if etcd {
            line.push_str(&format!(" {:.2} |", row[0].server_us / row[1].server_us));
        }
        println!("{line}");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn report(
    targets: &[Target],
    runs: &[Run],
    results: &[Vec<Outcome>],
    failovers: &[Vec<Duration>],
    shutdowns: &[Vec<Duration>],
) {
    let names: Vec<&str> = targets.iter().map(Target::name).collect();
    let etcd = names.len() > 1;
    println!();
    let mut head = "| workload | clients | endpoints |".to_string();
    let mut rule = "|---|---:|---|".to_string();
    for n in &names {
        head.push_str(&format!(" {n} ops/s | {n} p50 ms | {n} p99 ms |"));
        rule.push_str("---:|---:|---:|");
    }
    if etcd {
        head.push_str(" ops/s raftd/etcd | p50 raftd/etcd |");
        rule.push_str("---:|---:|");
    }
    println!("{head}\n{rule}");
    for (run, row) in runs.iter().zip(results) {
        let mut line = format!(
            "| {} | {} | {} |",
            run.name,
            run.clients,
            run.endpoints.name()
        );
        for o in row {
            let s = &o.stats;
            line.push_str(&format!(
                " {:.0} | {:.2} | {:.2} |",
                s.throughput(),
                s.quantile_ms(0.5),
                s.quantile_ms(0.99)
            ));
        }
        if etcd {
            let (a, b) = (&row[0].stats, &row[1].stats);
            line.push_str(&format!(
                " {:.2} | {:.2} |",
                a.throughput() / b.throughput(),
                a.quantile_ms(0.5) / b.quantile_ms(0.5)
            ));
        }
        println!("{line}");
    }
    // Per role: what a request costs through the leader and through a follower, in the
    // runs over all endpoints.
    println!("\np50 by the role of the member a request went to (runs over all endpoints, ms):\n");
    let mut head = "| workload | clients |".to_string();
    let mut rule = "|---|---:|".to_string();
    for n in &names {
        head.push_str(&format!(
            " {n} leader | {n} follower | {n} follower/leader |"
        ));
        rule.push_str("---:|---:|---:|");
    }
    println!("{head}\n{rule}");
    for (run, row) in runs.iter().zip(results) {
        if run.endpoints != Endpoints::All {
            continue;
        }
        let mut line = format!("| {} | {} |", run.name, run.clients);
        for o in row {
            let (l, f) = o.p50_by_role();
            line.push_str(&format!(" {l:.2} | {f:.2} | {:.2} |", f / l));
        }
        println!("{line}");
    }
    println!();
    for (i, n) in names.iter().enumerate() {
        let trials: Vec<String> = failovers[i]
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect();
        println!(
            "failover {n}: p50 {:.0} ms (trials, ms: {})",
            ms(median(&failovers[i])),
            trials.join(", ")
        );
    }
    if etcd && !failovers[0].is_empty() {
        println!(
            "failover p50 raftd/etcd: {:.2}",
            ms(median(&failovers[0])) / ms(median(&failovers[1]))
        );
    }
    for (i, n) in names.iter().enumerate() {
        let t: Vec<String> = shutdowns[i]
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect();
        println!("SIGTERM to exit {n} (leader first, ms): {}", t.join(", "));
    }
    for (i, n) in names.iter().enumerate() {
        let rss: Vec<String> = targets[i]
            .cluster
            .peak_rss_kib()
            .iter()
            .map(|(id, kib)| format!("member {id} {:.1} MiB", *kib as f64 / 1024.0))
            .collect();
        println!("peak RSS (VmHWM) {n}: {}", rss.join(", "));
    }
}
