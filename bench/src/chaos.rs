//! `raft-bench chaos-client`: the workload side of a chaos run (`cargo xtask chaos`). It runs
//! the register, bank, watch, lock and append workloads against the given endpoints for a while, recording
//! every operation with its invocation and completion times and its outcome into JSON-lines
//! histories ([`raft_chaos::history`]), then reads the final state and waits for the watchers
//! to catch up. The orchestrator injects the faults meanwhile and runs the checkers on the
//! files afterwards.
//!
//! Clients spread over every endpoint as etcd's clients do: each worker talks to one member
//! and moves to the next after an error or timeout. A failed connection attempt records
//! nothing (no request left); an error after the request was sent makes a write `unknown`
//! and a read `fail` (a read has no effect).

mod append;
mod bank;
mod lock;
mod register;
mod sread;
mod watch;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions};
use raft_chaos::history::{ClientSummary, JsonlWriter, Outcome, write_json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A workload of the chaos client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// get / put / compare-and-set per key over rotating keys (checked for linearizability).
    Register,
    /// Txn transfers between accounts and reads of all of them (checked for the total).
    Bank,
    /// Puts under a prefix and watchers of the prefix (checked for gaps and duplicates).
    Watch,
    /// Lease-backed lock holds and writes fenced by the lock's revision (checked for mutual
    /// exclusion as the fenced writes observe it).
    Lock,
    /// Txns that append unique elements to lists and read lists (checked Elle-style for
    /// dependency cycles, lost updates and stale reads).
    Append,
    /// Serializable reads pinned to a member, and writes (checked for what a serializable
    /// read promises: no invented value, never backwards on a member, never ahead).
    Sread,
}

impl Workload {
    /// Every workload, in command-line order.
    pub const ALL: [Workload; 6] = [
        Workload::Register,
        Workload::Bank,
        Workload::Watch,
        Workload::Lock,
        Workload::Append,
        Workload::Sread,
    ];

    /// The name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Bank => "bank",
            Workload::Watch => "watch",
            Workload::Lock => "lock",
            Workload::Append => "append",
            Workload::Sread => "sread",
        }
    }

    /// Parses `register,bank,watch,lock,append,sread` (or `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Workload>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                return Ok(Self::ALL.to_vec());
            }
            let w = Self::ALL
                .into_iter()
                .find(|w| w.name() == part)
                .with_context(|| {
                    format!("unknown workload `{part}` (register, bank, watch, lock, append, sread, all)")
                })?;
            if !out.contains(&w) {
                out.push(w);
            }
        }
        if out.is_empty() {
            bail!("no workload given");
        }
        Ok(out)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Client endpoints, `host:port`.
    pub endpoints: Vec<String>,
    /// The workloads, run concurrently.
    pub workloads: Vec<Workload>,
    /// How long the workloads issue operations.
    pub time: Duration,
    /// Seeds the clients' choices.
    pub seed: u64,
    /// Where the histories go.
    pub out: PathBuf,
    /// Register workers.
    pub register_clients: usize,
    /// Bank workers.
    pub bank_clients: usize,
    /// Watch writers.
    pub watch_writers: usize,
    /// Watchers.
    pub watchers: usize,
    /// Lock workers.
    pub lock_clients: usize,
    /// Append workers.
    pub append_clients: usize,
    /// Serializable-read writers.
    pub sread_writers: usize,
    /// Serializable readers (each on one member).
    pub sread_readers: usize,
    /// Timeout of one request (after it, a write is `unknown`).
    pub timeout: Duration,
    /// How long, after the workloads stop, the watchers may take to catch up.
    pub catch_up: Duration,
    /// Deliberately unsafe: serializable register reads (a member answers from its own
    /// state), to show the linearizability check catches stale reads.
    pub serializable_reads: bool,
    /// Deliberately unsafe: bank transfers without the mod-revision guard, to show the bank
    /// check catches lost updates.
    pub unguarded_transfers: bool,
    /// Deliberately unsafe: watchers reconnect from their last revision instead of the one
    /// after it, to show the watch check catches duplicates.
    pub watch_resume_at_last: bool,
    /// Deliberately unsafe: lock holders write without the fencing guard, to show the lock
    /// check catches a write by a holder whose lock has passed to another.
    pub unfenced_lock_writes: bool,
    /// Deliberately unsafe: append transactions without their mod-revision guard, to show
    /// the append check catches lost updates.
    pub unguarded_appends: bool,
    /// Deliberately unsafe: serializable readers move to the next member after every read
    /// but record one session on one member, to show the sread check catches reads going
    /// backwards.
    pub sread_hop_members: bool,
}

/// The client's clock: microseconds since it started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    t0: Instant,
}

impl Clock {
    /// µs since the start.
    pub fn us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

/// A shared history file.
pub type Sink = Arc<Mutex<JsonlWriter>>;

fn sink(spec: &Spec, name: &str) -> Result<Sink> {
    Ok(Arc::new(Mutex::new(JsonlWriter::create(
        &spec.out.join(name),
    )?)))
}

/// Writes one record, failing loudly when the disk does.
pub fn record<T: serde::Serialize>(sink: &Sink, rec: &T) -> Result<()> {
    sink.lock()
        .unwrap_or_else(|e| e.into_inner())
        .write(rec)
        .context("writing a history record")
}

/// One worker's connection: pinned to one endpoint, moved to the next one after an error.
pub struct Conn {
    endpoints: Vec<String>,
    at: usize,
    client: Option<Client>,
    timeout: Duration,
}

impl Conn {
    /// A connection that starts at endpoint `first` (modulo the count).
    pub fn new(endpoints: &[String], first: usize, timeout: Duration) -> Conn {
        Conn {
            endpoints: endpoints.to_vec(),
            at: first % endpoints.len().max(1),
            client: None,
            timeout,
        }
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.at]
    }

    /// The client, connecting first if needed; `None` (after moving on to the next endpoint)
    /// when the connection cannot be made: nothing was sent.
    pub async fn client(&mut self) -> Option<Client> {
        if self.client.is_none() {
            let opts = ConnectOptions::new()
                .with_timeout(self.timeout)
                .with_connect_timeout(Duration::from_millis(500))
                .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
                .with_keep_alive_while_idle(true);
            let ep = self.endpoints[self.at].clone();
            match tokio::time::timeout(Duration::from_secs(1), Client::connect([ep], Some(opts)))
                .await
            {
                Ok(Ok(c)) => self.client = Some(c),
                _ => {
                    self.rotate();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
            }
        }
        self.client.clone()
    }

    /// Drops the connection and moves to the next endpoint.
    pub fn rotate(&mut self) {
        self.client = None;
        self.at = (self.at + 1) % self.endpoints.len();
    }

    /// After a failed request: moves to the next endpoint and waits a little, so that an
    /// unavailable cluster is not hammered (and the histories not flooded with failures).
    pub async fn backoff(&mut self) {
        self.rotate();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the workloads, then the final reads; writes the histories and `client.json`.
pub async fn run(spec: Spec) -> Result<ClientSummary> {
    if spec.endpoints.is_empty() {
        bail!("no endpoints");
    }
    std::fs::create_dir_all(&spec.out)
        .with_context(|| format!("creating {}", spec.out.display()))?;
    let clock = Clock { t0: Instant::now() };
    let t0_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut summary = ClientSummary {
        t0_unix_us,
        workloads: spec
            .workloads
            .iter()
            .map(|w| w.name().to_string())
            .collect(),
        endpoints: spec.endpoints.clone(),
        ..ClientSummary::default()
    };
    write_json(&spec.out.join("client.json"), &summary)?;
    let deadline = Instant::now() + spec.time;

    let mut tasks = tokio::task::JoinSet::new();
    let mut sinks: Vec<Sink> = Vec::new();
    let mut bank_setup = None;
    if spec.workloads.contains(&Workload::Bank) {
        let setup = bank::setup(&spec).await?;
        summary.bank_accounts = setup.accounts;
        summary.bank_total = setup.total;
        bank_setup = Some(setup);
    }
    let mut watch = None;
    if spec.workloads.contains(&Workload::Watch) {
        let w = watch::Watch::start(&spec, clock, sink(&spec, "watch-events.jsonl")?).await?;
        summary.watch_start_revision = w.start_revision;
        summary.watchers = spec.watchers as u64;
        let writes = sink(&spec, "watch-writes.jsonl")?;
        sinks.push(writes.clone());
        for p in 0..spec.watch_writers {
            let (spec, writes) = (spec.clone(), writes.clone());
            tasks
                .spawn(async move { watch::writer(spec, clock, deadline, p as u64, writes).await });
        }
        watch = Some(w);
    }
    if spec.workloads.contains(&Workload::Register) {
        let out = sink(&spec, "register.jsonl")?;
        sinks.push(out.clone());
        for p in 0..spec.register_clients {
            let (spec, out) = (spec.clone(), out.clone());
            tasks
                .spawn(async move { register::worker(spec, clock, deadline, p as u64, out).await });
        }
    }
    if spec.workloads.contains(&Workload::Lock) {
        let out = sink(&spec, "lock.jsonl")?;
        sinks.push(out.clone());
        for p in 0..spec.lock_clients {
            let (spec, out) = (spec.clone(), out.clone());
            tasks.spawn(async move { lock::worker(spec, clock, deadline, p as u64, out).await });
        }
    }
    if spec.workloads.contains(&Workload::Append) {
        let out = sink(&spec, "append.jsonl")?;
        sinks.push(out.clone());
        for p in 0..spec.append_clients {
            let (spec, out) = (spec.clone(), out.clone());
            tasks.spawn(async move { append::worker(spec, clock, deadline, p as u64, out).await });
        }
    }
    if spec.workloads.contains(&Workload::Sread) {
        let out = sink(&spec, "sread.jsonl")?;
        sinks.push(out.clone());
        for p in 0..spec.sread_writers {
            let (spec, out) = (spec.clone(), out.clone());
            tasks.spawn(async move { sread::writer(spec, clock, deadline, p as u64, out).await });
        }
        for r in 0..spec.sread_readers {
            let (spec, out) = (spec.clone(), out.clone());
            tasks.spawn(async move { sread::reader(spec, clock, deadline, r as u64, out).await });
        }
    }
    if let Some(setup) = bank_setup {
        let out = sink(&spec, "bank.jsonl")?;
        sinks.push(out.clone());
        for p in 0..spec.bank_clients {
            let (spec, out, setup) = (spec.clone(), out.clone(), setup.clone());
            tasks.spawn(
                async move { bank::worker(spec, setup, clock, deadline, p as u64, out).await },
            );
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a workload task panicked")??;
    }
    for s in &sinks {
        s.lock().unwrap_or_else(|e| e.into_inner()).flush()?;
    }
    if spec.workloads.contains(&Workload::Sread) {
        summary.sread_final_revision = sread::final_revision(&spec).await;
    }
    if let Some(w) = watch {
        let (last, seen) = w.finish(&spec).await?;
        summary.watch_last_revision = last;
        summary.watcher_last_seen = seen;
    }
    write_json(&spec.out.join("client.json"), &summary)?;
    Ok(summary)
}

/// The error as one line.
pub fn error_line(e: &etcd_client::Error) -> String {
    e.to_string().replace('\n', " ")
}

/// How a request that failed with `e` ended: [`Outcome::Fail`] when it certainly did not
/// take effect, else [`Outcome::Unknown`]. Certain: the connection could not be made (the
/// request never left), and raftd's answers for a request refused before it entered the log
/// (`etcdserver: no leader` and `etcdserver: proposal dropped`, raft-runtime's `NotLeader`
/// and `ProposalDropped`). Everything else (timeouts, broken connections, `leader changed`)
/// is unknown. Classifying raftd's refusals as failures makes the checkers test that claim.
pub fn outcome_of(e: &etcd_client::Error) -> Outcome {
    match e {
        etcd_client::Error::GRpcStatus(s)
            if s.code() == tonic::Code::Unavailable
                && (s.message() == "tcp connect error"
                    || s.message() == "etcdserver: no leader"
                    || s.message().starts_with("etcdserver: proposal dropped")) =>
        {
            Outcome::Fail
        }
        _ => Outcome::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn refusals_before_the_log_are_failures_the_rest_unknown() {
        use tonic::Code::{DeadlineExceeded, Unavailable, Unknown};
        assert_eq!(
            outcome_of(&status(Unavailable, "etcdserver: no leader")),
            Outcome::Fail
        );
        assert_eq!(
            outcome_of(&status(Unavailable, "tcp connect error")),
            Outcome::Fail
        );
        assert_eq!(
            outcome_of(&status(
                Unavailable,
                "etcdserver: proposal dropped: transfer"
            )),
            Outcome::Fail
        );
        for (code, msg) in [
            (Unavailable, "etcdserver: leader changed"),
            (Unavailable, "etcdserver: request timed out"),
            (DeadlineExceeded, "Timeout expired"),
            (Unknown, "transport error"),
        ] {
            assert_eq!(outcome_of(&status(code, msg)), Outcome::Unknown, "{msg}");
        }
    }

    #[test]
    fn parses_workload_lists() {
        assert_eq!(
            Workload::parse_list("bank, register,bank").unwrap(),
            vec![Workload::Bank, Workload::Register]
        );
        assert_eq!(Workload::parse_list("all").unwrap(), Workload::ALL.to_vec());
        assert_eq!(Workload::parse_list("lock").unwrap(), vec![Workload::Lock]);
        assert_eq!(
            Workload::parse_list("append").unwrap(),
            vec![Workload::Append]
        );
        assert!(Workload::parse_list("locks").is_err());
        assert!(Workload::parse_list("").is_err());
    }
}
