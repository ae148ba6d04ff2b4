//! `raft-bench cluster`, the benchmark itself (a module of the `raft-bench` binary, not of the
//! library): starts raftd (and etcd) as 3-member clusters, runs every load through all
//! endpoints and through the leader only, the watch and lease loads, the failover trials and
//! the SIGTERM exits, and prints the Markdown report.

use super::{ClusterArgs, GET_KEY_SPACE, PUT_KEY_SPACE, VALUE_SIZE, loadavg};
use anyhow::{Context, Result};
use raft_bench::cluster::{Cluster, Server, process_cpu};
use raft_bench::failover;
use raft_bench::load::{self, LoadSpec, Stats, Workload};
use raft_bench::plot;
use raft_bench::watch_load;
use raft_node::testing::TlsFiles;
use std::time::Duration;

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

/// Runs `raft-bench cluster`.
pub(super) async fn cluster(args: ClusterArgs) -> Result<()> {
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
    if let Some(dir) = &args.plot {
        let setup = format!(
            "3 members on loopback, {cpus} CPUs, {} per run",
            humantime::format_duration(args.duration)
        );
        save_and_plot(dir, setup, &targets, &runs, &results)?;
    }
    Ok(())
}

/// Saves the load runs' figures as `dir/results.json` and draws their plots into `dir`.
fn save_and_plot(
    dir: &std::path::Path,
    setup: String,
    targets: &[Target],
    runs: &[Run],
    results: &[Vec<Outcome>],
) -> Result<()> {
    let mut saved = plot::Results {
        setup,
        rows: Vec::new(),
    };
    for (run, row) in runs.iter().zip(results) {
        for (t, o) in targets.iter().zip(row) {
            saved.rows.push(plot::Row {
                workload: run.name.to_string(),
                clients: run.clients,
                endpoints: run.endpoints.name().to_string(),
                server: t.name().to_string(),
                ops_per_sec: o.stats.throughput(),
                p50_ms: o.stats.quantile_ms(0.5),
                p99_ms: o.stats.quantile_ms(0.99),
            });
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join("results.json");
    saved.save(&json)?;
    println!("\nfigures saved to {}; plots:", json.display());
    for path in plot::draw_all(&saved, dir)? {
        println!("- {}", path.display());
    }
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
