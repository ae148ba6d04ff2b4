//! `cargo xtask chaos`: Jepsen-style tests of a real raftd cluster. A run starts a cluster,
//! runs the workload client (`raft-bench chaos-client`, which records client histories) for
//! `--time`, meanwhile injects the faults of a schedule drawn from `--seed`, heals everything,
//! lets the client finish its final reads, then checks the histories ([`raft_chaos`]: the
//! register history for linearizability, the bank reads for the total, the watchers for
//! gaps, duplicates and agreement with the writes, the lock's fenced writes for mutual
//! exclusion, the append lists for dependency cycles, lost updates and stale reads, the
//! serializable reads for invented values, going backwards and running ahead) and draws the
//! plot.
//!
//! Why it is split this way: the workloads need the `etcd-client` crate, which only
//! raft-bench may depend on (it needs protoc; `cargo xtask layering` enforces this); the
//! faults need the namespaces and process control that xtask already has for the drills
//! (`crate::netns`); the checkers, the schedule and the plot are plain functions over data
//! in the `raft-chaos` crate, which both use and which unit tests exercise on hand-made
//! histories.
//!
//! Each run writes `<out>/seed-<N>/`: `schedule.txt`, `faults.jsonl` (what was done when),
//! the histories (`register.jsonl`, `bank.jsonl`, `watch-writes.jsonl`,
//! `watch-events.jsonl`, `lock.jsonl`, `append.jsonl`, `sread.jsonl`, `client.json`), `client.log`, the members' logs under `cluster/`,
//! `verdicts.txt` and `verdicts.json`, and `plot.svg`. The exit code is 0 only when every
//! check of every run passed.
//!
//! The cluster side is `chaos/cluster.rs`, the fault timeline `chaos/faults.rs`.

mod cluster;
mod faults;

use crate::drill::NetMode;
use crate::netns::{self, NetNs};
use crate::util;
use anyhow::{Context, Result, bail};
use cluster::ChaosCluster;
use faults::inject;
use raft_chaos::history::{
    AppendOp, BankOp, ClientSummary, JsonlWriter, LockOp, Outcome, RegisterOp, SreadOp,
    WatchRecord, WatchWrite, read_json, read_jsonl,
};
use raft_chaos::plot::{Point, Window};
use raft_chaos::schedule::{FaultEvent, FaultKind, Schedule};
use raft_chaos::{Verdict, append, bank, lock, register, sread, watch};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `cargo xtask chaos`.
#[derive(clap::Args)]
pub struct Args {
    /// The seed of the (first) run: it draws the fault schedule and the clients' choices.
    /// Default: drawn from the clock (and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long the workloads run (faults happen in it; the last few seconds are quiet).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub time: Duration,
    /// Workloads, comma-separated: register, bank, watch, lock, append, sread (or all).
    #[arg(long, default_value = "register,bank,watch,lock,append,sread")]
    pub workload: String,
    /// Faults, comma-separated: kill, pause, partition, member, clock, oneway, bridge, flap,
    /// disk, fsync, power (or none).
    #[arg(long, default_value = "kill,pause,partition,member,clock")]
    pub faults: String,
    /// Run K seeds in a row (seed, seed+1, ...); fails when any run fails.
    #[arg(long, default_value_t = 1)]
    pub sweep: u64,
    /// Members of the cluster.
    #[arg(long, default_value_t = 3)]
    pub members: u64,
    /// How partitions are made (auto: namespaces when they can be set up, else raftd's
    /// fault switch).
    #[arg(long, value_enum, default_value = "auto")]
    pub net: NetMode,
    /// Build and run release binaries.
    #[arg(long)]
    pub release: bool,
    /// Build nothing: run the raftd, raftctl and raft-bench already in `<target>/debug` (or
    /// `release`), e.g. those `cargo test --workspace` just built, as `cargo xtask ci` does
    /// (building raft-bench's binary on its own would rebuild its dependency tree with
    /// another feature set).
    #[arg(long)]
    pub no_build: bool,
    /// Where the run directories go (default: `<target>/chaos`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A raftd setting for every member, `KEY=VALUE` as raftd's `--set` (repeatable), e.g.
    /// `--raftd-set raft.read_mode=lease` to check lease-based reads.
    #[arg(long = "raftd-set", value_name = "KEY=VALUE")]
    pub raftd_set: Vec<String>,
    /// Keep the members' data directories (they are deleted after each run otherwise).
    #[arg(long)]
    pub keep_data: bool,
    /// Print the fault schedule of each seed and exit (nothing is built or run).
    #[arg(long)]
    pub print_schedule: bool,
    /// Deliberately broken client, to see the register check fail: serializable reads.
    #[arg(long)]
    pub unsafe_serializable_reads: bool,
    /// Deliberately broken client, to see the bank check fail: unguarded transfers.
    #[arg(long)]
    pub unsafe_unguarded_transfers: bool,
    /// Deliberately broken client, to see the watch check fail: watchers resume from their
    /// last revision instead of the next one.
    #[arg(long)]
    pub unsafe_watch_resume_at_last: bool,
    /// Deliberately beyond raftd's lease margin, to see the register check catch stale
    /// lease reads: the members' clock rates (with `clock` faults) are drawn within ±PPM
    /// parts per million instead of ±3% (e.g. 500000: from half to one and a half times
    /// real time).
    #[arg(long, value_name = "PPM")]
    pub unsafe_clock_drift_ppm: Option<i64>,
    /// Deliberately broken client, to see the lock check fail: lock holders write without
    /// the fencing guard (run with pauses: a paused holder's lease expires).
    #[arg(long)]
    pub unsafe_unfenced_lock_writes: bool,
    /// Deliberately broken client, to see the append check fail: append transactions
    /// without their mod-revision guard (lost updates).
    #[arg(long)]
    pub unsafe_unguarded_appends: bool,
    /// Deliberately broken client, to see the sread check fail: serializable readers move
    /// to the next member after every read but record one session on one member (run with
    /// partitions: an isolated member falls behind).
    #[arg(long)]
    pub unsafe_sread_hop_members: bool,
    /// Deliberately broken server, to see the fsync fault fail: raftd's fsync switch
    /// ignores the EIO it injects (`RAFTD_UNSAFE_IGNORE_FSYNC_ERRORS=1`), so the member keeps
    /// running and acknowledging (run with `--faults fsync`).
    #[arg(long)]
    pub unsafe_ignore_fsync_errors: bool,
    /// Deliberately broken server, to see a power loss lose acknowledged writes: raftd's WAL
    /// never fsyncs and acknowledges all the same (`RAFTD_UNSAFE_SKIP_WAL_FSYNC=1`; run with
    /// `--faults power`).
    #[arg(long)]
    pub unsafe_skip_fsync: bool,
    /// With power faults: POSIX's letter for directory entries (a name is durable only after
    /// an fsync of its directory) instead of what ext4 with data=ordered does (an fsync of a
    /// file also makes the names leading to it durable).
    #[arg(long)]
    pub power_strict_dirs: bool,
}

/// Runs the task: one run, or `--sweep K` runs.
pub fn run(args: Args) -> Result<()> {
    let kinds = FaultKind::parse_list(&args.faults)?;
    if !(1..=9).contains(&args.members) {
        bail!("--members must be 1 to 9");
    }
    let first = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() % 1_000_000)
    });
    let seeds = first..first + args.sweep.max(1);
    if args.print_schedule {
        for seed in seeds {
            let mut s = Schedule::draw(seed, args.time.as_millis() as u64, args.members, &kinds)?;
            if let Some(ppm) = args.unsafe_clock_drift_ppm {
                s.scale_clock_drift(ppm)?;
            }
            print!("{}", s.render());
        }
        return Ok(());
    }
    // Two builds: raftd and raftctl exactly as the drills build them (one cargo invocation
    // with raft-bench would unify raft-node's features with raft-bench's `testing` and
    // rebuild the server), then the client.
    let power = kinds.contains(&FaultKind::Power);
    let mut builds: Vec<&[&str]> = if args.no_build {
        Vec::new()
    } else {
        vec![
            &["--package", "raft-node", "--bins"],
            &["--package", "raft-bench", "--bin", "raft-bench"],
        ]
    };
    if power && !args.no_build {
        builds.push(&["--package", "raft-lazyfs", "--bin", "raft-lazyfs"]);
    }
    for packages in builds {
        let mut build = util::cargo();
        build.args(["build", "--locked"]).args(packages);
        if args.release {
            build.arg("--release");
        }
        util::run(&mut build)?;
    }
    let bin = util::target_dir().join(if args.release { "release" } else { "debug" });
    let mut needed = vec!["raftd", "raftctl", "raft-bench"];
    if power {
        needed.push("raft-lazyfs");
    }
    for name in needed {
        if !bin.join(name).is_file() {
            bail!(
                "{} is missing{}",
                bin.join(name).display(),
                if args.no_build {
                    " (--no-build: build it first, e.g. with cargo test --workspace)"
                } else {
                    ""
                }
            );
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| util::target_dir().join("chaos"));
    let mut failed = Vec::new();
    for seed in seeds {
        let dir = out.join(format!("seed-{seed}"));
        match run_one(&args, &kinds, &bin, seed, &dir) {
            Ok(true) => println!("chaos seed {seed}: PASS ({})", dir.display()),
            Ok(false) => {
                println!("chaos seed {seed}: FAIL ({})", dir.display());
                failed.push(seed);
            }
            Err(e) => {
                println!("chaos seed {seed}: ERROR {e:#} ({})", dir.display());
                failed.push(seed);
            }
        }
    }
    if args.sweep > 1 {
        println!(
            "chaos sweep: {} of {} seeds passed{}",
            args.sweep.max(1) - failed.len() as u64,
            args.sweep.max(1),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {failed:?}")
            }
        );
    }
    if !failed.is_empty() {
        bail!("chaos: seeds {failed:?} failed");
    }
    Ok(())
}

/// The WAL segment size of runs with power faults, unless `--raftd-set` gives one.
const POWER_SEGMENT_SIZE: &str = "wal.segment_size=8MiB";

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The network of a run that partitions: namespaces, or `None` for the fault switch.
fn choose_net(mode: NetMode, members: u64) -> Result<(Option<NetNs>, String)> {
    let ids: Vec<u64> = (1..=members).collect();
    match mode {
        NetMode::FaultSwitch => Ok((None, "raftd's fault switch (--net fault-switch)".into())),
        NetMode::Netns => {
            if let Some(why) = netns::unavailable() {
                bail!("--net netns: {why}");
            }
            let net = NetNs::create(&ids).context("--net netns")?;
            let d = format!("network namespaces + iptables ({})", net.describe());
            Ok((Some(net), d))
        }
        NetMode::Auto => {
            let why = match netns::unavailable() {
                Some(why) => why,
                None => match NetNs::create(&ids) {
                    Ok(net) => {
                        let d = format!("network namespaces + iptables ({})", net.describe());
                        return Ok((Some(net), d));
                    }
                    Err(e) => format!("setting up network namespaces failed: {e:#}"),
                },
            };
            Ok((
                None,
                format!("raftd's fault switch (SIGUSR1/SIGUSR2), because {why}"),
            ))
        }
    }
}

/// One run; `Ok(true)` when every check passed.
fn run_one(args: &Args, kinds: &[FaultKind], bin: &Path, seed: u64, dir: &Path) -> Result<bool> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let time_ms = args.time.as_millis() as u64;
    let mut schedule = Schedule::draw(seed, time_ms, args.members, kinds)?;
    if let Some(ppm) = args.unsafe_clock_drift_ppm {
        schedule.scale_clock_drift(ppm)?;
    }
    print!("{}", schedule.render());
    let mut settings = args.raftd_set.clone();
    if kinds.contains(&FaultKind::Power)
        && !settings.iter().any(|s| s.starts_with("wal.segment_size="))
    {
        // On raft-lazyfs every file is held in memory twice and every byte goes through
        // FUSE: small segments start quickly after a power loss (and roll over often, which
        // a power loss should meet too).
        settings.push(POWER_SEGMENT_SIZE.to_string());
    }
    if !settings.is_empty() {
        println!("raftd settings: {}", settings.join(" "));
    }
    std::fs::write(dir.join("schedule.txt"), schedule.render())?;
    raft_chaos::history::write_json(&dir.join("schedule.json"), &schedule)?;

    let (net, how) = if kinds.iter().any(|k| k.is_network()) {
        choose_net(args.net, args.members + schedule.added())?
    } else {
        (None, "loopback (no partitions in this run)".into())
    };
    if net.is_none()
        && let Some(k) = kinds.iter().find(|k| k.needs_netns())
    {
        bail!(
            "`--faults {}` needs network namespaces, and the run has none: {how}",
            k.name()
        );
    }
    println!("partitions: {how}");
    let mut c = ChaosCluster::start(
        &bin.join("raftd"),
        &bin.join("raftctl"),
        &dir.join("cluster"),
        &schedule,
        net,
        &settings,
        cluster::ServerOptions {
            ignore_fsync_errors: args.unsafe_ignore_fsync_errors,
            skip_wal_fsync: args.unsafe_skip_fsync,
            strict_dirs: args.power_strict_dirs,
        },
    )?;
    let leader = c
        .leader(Duration::from_secs(30))
        .context("no leader within 30 s of the start")?;
    println!(
        "cluster up, leader {leader}, endpoints {}",
        c.endpoints().join(",")
    );

    let client_log = std::fs::File::create(dir.join("client.log"))?;
    let mut client = Command::new(bin.join("raft-bench"));
    client
        .arg("chaos-client")
        .args(["--endpoints", &c.all_endpoints().join(",")])
        .args(["--workload", &args.workload])
        .args(["--time", &format!("{time_ms}ms")])
        .args(["--seed", &seed.to_string()])
        .arg("--out")
        .arg(dir);
    if args.unsafe_serializable_reads {
        client.arg("--unsafe-serializable-reads");
    }
    if args.unsafe_unguarded_transfers {
        client.arg("--unsafe-unguarded-transfers");
    }
    if args.unsafe_watch_resume_at_last {
        client.arg("--unsafe-watch-resume-at-last");
    }
    if args.unsafe_unfenced_lock_writes {
        client.arg("--unsafe-unfenced-lock-writes");
    }
    if args.unsafe_unguarded_appends {
        client.arg("--unsafe-unguarded-appends");
    }
    if args.unsafe_sread_hop_members {
        client.arg("--unsafe-sread-hop-members");
    }
    let mut client = client
        .stdin(Stdio::null())
        .stdout(client_log.try_clone()?)
        .stderr(client_log)
        .spawn()
        .context("starting raft-bench chaos-client")?;
    let t0 = Instant::now();

    let mut events = JsonlWriter::create(&dir.join("faults.jsonl"))?;
    let mut fault_problems = inject(&mut c, &schedule, t0, &mut client, &mut events)?;
    for (id, status) in c.crashed() {
        fault_problems.push(format!(
            "member {id} exited on its own ({status}): see its log"
        ));
    }
    let repaired = c.heal_all()?;
    if !repaired.is_empty() {
        println!("after the schedule: {}", repaired.join(", "));
    }

    // The client stops issuing operations at --time, then reads the final state and waits
    // (up to 20 s) for its watchers.
    let limit = args.time + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = client.try_wait()? {
            break Some(s);
        }
        if t0.elapsed() > limit {
            let _ = client.kill();
            let _ = client.wait();
            break None;
        }
        sleep(Duration::from_millis(100));
    };
    for (id, status) in c.crashed() {
        fault_problems.push(format!(
            "member {id} exited on its own ({status}): see its log"
        ));
    }
    if args.keep_data {
        drop(c);
    } else {
        c.stop_and_clean();
        drop(c);
    }

    let mut verdicts = Vec::new();
    verdicts.push(Verdict::from_problems(
        "faults: applied and undone, no member crashed",
        format!(
            "{} faults scheduled; partitions: {how}",
            schedule.faults.len()
        ),
        fault_problems,
    ));
    let client_ok = matches!(status, Some(s) if s.success());
    verdicts.push(Verdict::from_problems(
        "client: ran to the end",
        match status {
            Some(s) => format!("exited {s}"),
            None => format!("killed after {limit:?}"),
        },
        if client_ok {
            Vec::new()
        } else {
            vec![format!(
                "the client failed; its log ends:\n{}",
                tail(&dir.join("client.log"), 10)
            )]
        },
    ));
    if client_ok {
        verdicts.extend(check(dir)?);
    }
    let mut text = String::new();
    for v in &verdicts {
        text.push_str(&v.render());
    }
    print!("{text}");
    std::fs::write(dir.join("verdicts.txt"), &text)?;
    raft_chaos::history::write_json(&dir.join("verdicts.json"), &verdicts)?;
    if let Err(e) = plot(dir, seed, time_ms) {
        println!("plot: {e:#}");
    }
    Ok(verdicts.iter().all(|v| v.ok))
}

/// Runs the checkers of the workloads whose histories the run directory holds.
fn check(dir: &Path) -> Result<Vec<Verdict>> {
    let summary: ClientSummary = read_json(&dir.join("client.json"))?;
    let mut out = Vec::new();
    for w in &summary.workloads {
        match w.as_str() {
            "register" => {
                let ops: Vec<RegisterOp> = read_jsonl(&dir.join("register.jsonl"))?;
                out.push(register::check(&ops));
            }
            "bank" => {
                let ops: Vec<BankOp> = read_jsonl(&dir.join("bank.jsonl"))?;
                out.push(bank::check(&ops, summary.bank_accounts, summary.bank_total));
            }
            "watch" => {
                let writes: Vec<WatchWrite> = read_jsonl(&dir.join("watch-writes.jsonl"))?;
                let records: Vec<WatchRecord> = read_jsonl(&dir.join("watch-events.jsonl"))?;
                out.push(watch::check(&writes, &records, &summary));
            }
            "lock" => {
                let ops: Vec<LockOp> = read_jsonl(&dir.join("lock.jsonl"))?;
                out.push(lock::check(&ops));
            }
            "append" => {
                let ops: Vec<AppendOp> = read_jsonl(&dir.join("append.jsonl"))?;
                out.push(append::check(&ops));
            }
            "sread" => {
                let ops: Vec<SreadOp> = read_jsonl(&dir.join("sread.jsonl"))?;
                out.push(sread::check(&ops, summary.sread_final_revision));
            }
            other => bail!("client.json names an unknown workload `{other}`"),
        }
    }
    Ok(out)
}

/// Draws `plot.svg` from the histories and `faults.jsonl`.
fn plot(dir: &Path, seed: u64, time_ms: u64) -> Result<()> {
    let summary: ClientSummary = read_json(&dir.join("client.json"))?;
    let mut points = Vec::new();
    let mut add = |workload: &'static str, invoke: u64, complete: u64, outcome: Outcome| {
        points.push(Point {
            t_s: invoke as f64 / 1e6,
            latency_ms: complete.saturating_sub(invoke) as f64 / 1e3,
            workload,
            outcome,
        });
    };
    for o in read_jsonl::<RegisterOp>(&dir.join("register.jsonl"))? {
        add("register", o.invoke_us, o.complete_us, o.outcome);
    }
    for o in read_jsonl::<BankOp>(&dir.join("bank.jsonl"))? {
        add("bank", o.invoke_us, o.complete_us, o.outcome);
    }
    for o in read_jsonl::<WatchWrite>(&dir.join("watch-writes.jsonl"))? {
        add("watch", o.invoke_us, o.complete_us, o.outcome);
    }
    for o in read_jsonl::<LockOp>(&dir.join("lock.jsonl"))? {
        add("lock", o.invoke_us, o.complete_us, o.outcome);
    }
    for o in read_jsonl::<AppendOp>(&dir.join("append.jsonl"))? {
        add("append", o.invoke_us, o.complete_us, o.outcome);
    }
    for o in read_jsonl::<SreadOp>(&dir.join("sread.jsonl"))? {
        add("sread", o.invoke_us, o.complete_us, o.outcome);
    }
    let t0 = summary.t0_unix_us as f64;
    let windows: Vec<Window> = read_jsonl::<FaultEvent>(&dir.join("faults.jsonl"))?
        .into_iter()
        .map(|e| Window {
            start_s: (e.start_unix_us as f64 - t0) / 1e6,
            end_s: (e.end_unix_us as f64 - t0) / 1e6,
            label: format!(
                "{} {}",
                e.kind.name(),
                e.members
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect();
    raft_chaos::plot::draw(
        &dir.join("plot.svg"),
        &format!("chaos seed {seed}: latency (invoke time), faults shaded"),
        &points,
        &windows,
        time_ms as f64 / 1000.0,
    )?;
    Ok(())
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_chaos::history::{RegisterCall, RegisterResult, write_json};

    /// A run directory as the client leaves it: `client.json` and a register history.
    fn run_dir(ops: &[RegisterOp], workloads: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-chaos-test-{}-{}",
            std::process::id(),
            ops.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let summary = ClientSummary {
            t0_unix_us: 1_000_000,
            workloads: workloads.iter().map(|w| w.to_string()).collect(),
            ..ClientSummary::default()
        };
        write_json(&dir.join("client.json"), &summary).unwrap();
        let mut w = JsonlWriter::create(&dir.join("register.jsonl")).unwrap();
        for op in ops {
            w.write(op).unwrap();
        }
        w.flush().unwrap();
        dir
    }

    fn write(t: u64, v: u64) -> RegisterOp {
        RegisterOp::done(
            1,
            0,
            RegisterCall::Write { value: v },
            t,
            t + 5,
            RegisterResult::Write,
        )
    }

    fn read(t: u64, v: u64) -> RegisterOp {
        RegisterOp::done(
            2,
            0,
            RegisterCall::Read,
            t,
            t + 5,
            RegisterResult::Read { value: Some(v) },
        )
    }

    #[test]
    fn checks_and_plots_a_run_directory() {
        let dir = run_dir(&[write(0, 1), write(10, 2), read(20, 1)], &["register"]);
        let verdicts = check(&dir).unwrap();
        assert_eq!(verdicts.len(), 1);
        assert!(
            !verdicts[0].ok,
            "the stale read must fail: {}",
            verdicts[0].render()
        );
        plot(&dir, 1, 1_000).unwrap();
        assert!(
            std::fs::read_to_string(dir.join("plot.svg"))
                .unwrap()
                .contains("<svg")
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let dir = run_dir(&[write(0, 1), read(20, 1)], &["register"]);
        assert!(check(&dir).unwrap()[0].ok);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unknown_workload_in_client_json_is_an_error() {
        let dir = run_dir(
            &[write(0, 1), write(1, 1), write(2, 1), write(3, 1)],
            &["locking"],
        );
        let err = check(&dir).unwrap_err().to_string();
        assert!(err.contains("locking"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
