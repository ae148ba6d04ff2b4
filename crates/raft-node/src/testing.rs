//! Local clusters of real server processes on loopback, for integration tests and the
//! cluster benchmark (feature `testing`).
//!
//! A [`Cluster`] gives every member free loopback ports (client, peer and metrics), a data
//! directory and a log file under one directory, and starts, kills (SIGKILL), stops
//! (SIGTERM) and restarts its processes. What the process is comes from a [`Launch`]:
//! [`Raftd`] builds `raftd`'s command line; other servers (etcd, raftd from a configuration
//! file) bring their own. Dropping the cluster kills every process still running.
//!
//! ```no_run
//! use raft_node::testing::{Cluster, Raftd};
//! use std::time::Duration;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let raftd = Raftd::new("target/debug/raftd").calm().token("demo");
//! let cluster = Cluster::start(raftd, 3)?;
//! let leader = cluster.leader(Duration::from_secs(20)).await?;
//! let client = cluster.node_client(leader);
//! # drop(client);
//! # Ok(())
//! # }
//! ```
//!
//! Size: slightly past the house's ~700 lines (`serving`, `free_port`); the process harness
//! and the client helpers are one concept, kept together.

use crate::client::{Client, ClientError};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use raft_kv::pb::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The timeout of every call made by the clients this module hands out.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A port on 127.0.0.1 that was free a moment ago.
///
/// Chosen below the kernel's ephemeral range (`ip_local_port_range`), where the system's
/// own `:0` binds and outgoing connections take their source ports: a port from inside it,
/// free when picked, is soon a peer's source port while the member it was meant for is down
/// (its restart then fails with "address in use", or a dial reaches the wrong process).
/// Picks are random (test processes run in parallel) and never repeat within a process.
pub fn free_port() -> Result<u16> {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FLOOR: u16 = 10_000;
    if low > FLOOR + 1000 {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32)
            | 1;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..200 {
            // xorshift64: enough to spread parallel test processes over the range.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = FLOOR + (seed % u64::from(low - FLOOR)) as u16;
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh `127.0.0.1:port` address.
pub fn free_addr() -> Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}

/// raftd flags for loaded CI machines: a calmer election timer than the default (50 ms
/// heartbeats, 300 ms election timeout base) and `info` logs.
pub const CALM: [&str; 6] = [
    "--heartbeat-interval",
    "50ms",
    "--election-timeout-base",
    "300ms",
    "--log-filter",
    "info",
];

/// What a [`Launch`] knows of the member whose process it starts.
#[derive(Debug)]
pub struct Member<'a> {
    /// The member id (1..=n for the founding members).
    pub id: u64,
    /// Its client address, `127.0.0.1:port`.
    pub client: &'a str,
    /// Its peer address.
    pub peer: &'a str,
    /// An address for its HTTP (metrics) endpoint, if the server has one.
    pub metrics: &'a str,
    /// Its data directory (`<cluster dir>/node<id>`).
    pub data_dir: &'a Path,
    /// `(id, peer address)` of the founding members, the initial cluster.
    pub founders: &'a [(u64, String)],
    /// Whether the member joins a running cluster (added with `MemberAdd`).
    pub join: bool,
}

/// How to start one member's server process.
pub trait Launch: Send + Sync {
    /// A short name for log headers, e.g. `raftd`.
    fn name(&self) -> &str;

    /// The command that starts `member`; the cluster sends its output to the member's log.
    fn command(&self, member: &Member<'_>) -> Command;

    /// TLS settings for clients of the cluster, when its client ports speak TLS.
    fn client_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        None
    }
}

/// The certificates of a TLS test cluster ([`Raftd::tls`]), written by
/// [`crate::certs::write_cluster_certs`] for members 1 to 9, cluster name `it`, valid for
/// 127.0.0.1 and localhost.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Where they are.
    pub certs: crate::certs::ClusterCerts,
    /// The CA that signed them (to make more: renewed, expired, ...).
    pub ca: std::sync::Arc<crate::certs::Authority>,
    /// Whether the client ports require client certificates.
    pub client_cert_auth: bool,
}

impl TlsFiles {
    /// Writes the certificates into `dir`.
    pub fn generate(dir: &Path, client_cert_auth: bool) -> Result<TlsFiles> {
        let day = crate::certs::Validity::For(Duration::from_secs(86_400));
        let ca = crate::certs::Authority::new("test CA", day)?;
        let certs = ca.write_cluster(
            dir,
            "it",
            &(1..=9).collect::<Vec<_>>(),
            &["127.0.0.1".to_string(), "localhost".to_string()],
            day,
        )?;
        Ok(TlsFiles {
            certs,
            ca: std::sync::Arc::new(ca),
            client_cert_auth,
        })
    }

    /// The raftd flags of member `id`.
    pub fn flags(&self, id: u64) -> Vec<OsString> {
        let c = &self.certs;
        let (_, cert, key) = c
            .members
            .iter()
            .find(|(m, ..)| *m == id)
            .expect("certificates are made for members 1 to 9");
        let mut out: Vec<OsString> = vec![
            "--cert-file".into(),
            c.server.0.clone().into(),
            "--key-file".into(),
            c.server.1.clone().into(),
            "--trusted-ca-file".into(),
            c.ca.clone().into(),
            "--peer-cert-file".into(),
            cert.into(),
            "--peer-key-file".into(),
            key.into(),
            "--peer-trusted-ca-file".into(),
            c.ca.clone().into(),
            "--set".into(),
            "tls.peer_cert_cluster=\"it\"".into(),
        ];
        if self.client_cert_auth {
            out.push("--client-cert-auth".into());
        }
        out
    }

    /// TLS settings of a client that trusts the CA and presents the `root` client
    /// certificate.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        let c = &self.certs;
        crate::client::tls_from_files(Some(&c.ca), Some(&c.client.0), Some(&c.client.1))
            .expect("the certificates were just written")
    }
}

/// `raftd` started with command-line flags: ids, addresses, data directory, the initial
/// cluster and a cluster token, then any extra flags.
#[derive(Clone, Debug)]
pub struct Raftd {
    bin: PathBuf,
    token: Option<String>,
    metrics: bool,
    args: Vec<OsString>,
    tls: Option<TlsFiles>,
}

impl Raftd {
    /// `raftd` at `bin`, cluster token `it`, no metrics endpoint, no extra flags.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            token: Some("it".into()),
            metrics: false,
            args: Vec::new(),
            tls: None,
        }
    }

    /// Runs every member with TLS on its client port and mutual TLS between peers, from
    /// `tls`'s files; the cluster's clients use TLS too.
    pub fn tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the cluster token.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// No cluster token: the first member draws a random cluster id and the others ask it
    /// for the id, as in production.
    pub fn random_cluster_id(mut self) -> Self {
        self.token = None;
        self
    }

    /// Serves `/metrics`, `/status` and the rest on each member's metrics address.
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Adds [`CALM`]: a calmer election timer for loaded CI machines, and `info` logs.
    pub fn calm(self) -> Self {
        self.args(CALM)
    }

    /// Adds flags given to every member, e.g. `["--snapshot-threshold", "50"]`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

impl Launch for Raftd {
    fn name(&self) -> &str {
        "raftd"
    }

    fn command(&self, m: &Member<'_>) -> Command {
        let mut initial: Vec<String> = m.founders.iter().map(|(i, p)| format!("{i}={p}")).collect();
        if m.join {
            initial.push(format!("{}={}", m.id, m.peer));
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--id", &m.id.to_string()])
            .arg("--data-dir")
            .arg(m.data_dir)
            .args(["--listen-client", m.client, "--listen-peer", m.peer])
            .args(["--initial-cluster", &initial.join(",")]);
        if let Some(token) = &self.token {
            cmd.args(["--cluster-token", token]);
        }
        if self.metrics {
            cmd.args(["--listen-metrics", m.metrics]);
        }
        if m.join {
            cmd.arg("--join");
        }
        if let Some(tls) = &self.tls {
            cmd.args(tls.flags(m.id));
        }
        cmd.args(&self.args);
        cmd
    }

    fn client_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        self.tls.as_ref().map(TlsFiles::client)
    }
}

/// One member: its addresses and, while it runs, its process.
struct Proc {
    client: String,
    peer: String,
    metrics: String,
    join: bool,
    child: Option<Child>,
}

impl Proc {
    fn new(peer: String, join: bool) -> Result<Proc> {
        Ok(Proc {
            client: free_addr()?,
            peer,
            metrics: free_addr()?,
            join,
            child: None,
        })
    }
}

/// A cluster of local server processes, one per member. Dropping it kills every process
/// still running (and removes its directory when the cluster made a temporary one).
pub struct Cluster {
    launch: Box<dyn Launch>,
    dir: PathBuf,
    members: BTreeMap<u64, Proc>,
    _temp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// `n` members (ids 1..=n) of a new cluster in a temporary directory; none started yet.
    pub fn new(launch: impl Launch + 'static, n: u64) -> Result<Cluster> {
        let temp = tempfile::tempdir()?;
        let mut c = Self::new_in(launch, temp.path(), n)?;
        c._temp = Some(temp);
        Ok(c)
    }

    /// `n` members (ids 1..=n) of a new cluster with data and logs under `dir`; none
    /// started yet.
    pub fn new_in(launch: impl Launch + 'static, dir: &Path, n: u64) -> Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut members = BTreeMap::new();
        for id in 1..=n {
            members.insert(id, Proc::new(free_addr()?, false)?);
        }
        Ok(Cluster {
            launch: Box::new(launch),
            dir: dir.to_path_buf(),
            members,
            _temp: None,
        })
    }

    /// [`new`](Self::new), then every member started.
    pub fn start(launch: impl Launch + 'static, n: u64) -> Result<Cluster> {
        let mut c = Self::new(launch, n)?;
        c.spawn_all()?;
        Ok(c)
    }

    /// [`new_in`](Self::new_in), then every member started.
    pub fn start_in(launch: impl Launch + 'static, dir: &Path, n: u64) -> Result<Cluster> {
        let mut c = Self::new_in(launch, dir, n)?;
        c.spawn_all()?;
        Ok(c)
    }

    fn spawn_all(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        ids.into_iter().try_for_each(|id| self.spawn(id))
    }

    /// The directory holding the members' data directories and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of the server the cluster runs (from its [`Launch`]).
    pub fn server_name(&self) -> &str {
        self.launch.name()
    }

    fn member(&self, id: u64) -> &Proc {
        self.members
            .get(&id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// Member `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    /// `(id, peer address)` of the founding members (not the joiners).
    pub fn founders(&self) -> Vec<(u64, String)> {
        self.members
            .iter()
            .filter(|(_, m)| !m.join)
            .map(|(&id, m)| (id, m.peer.clone()))
            .collect()
    }

    /// Starts member `id`'s process: the first time, or again from its data directory.
    pub fn spawn(&mut self, id: u64) -> Result<()> {
        let m = self.members.get(&id).context("no such member")?;
        if m.child.is_some() {
            bail!("member {id} is still running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let (data_dir, founders) = (self.data_dir(id), self.founders());
        let mut cmd = self.launch.command(&Member {
            id,
            client: &m.client,
            peer: &m.peer,
            metrics: &m.metrics,
            data_dir: &data_dir,
            founders: &founders,
            join: m.join,
        });
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        self.members.get_mut(&id).expect("member exists").child = Some(child);
        Ok(())
    }

    /// Starts member `id` that joins the running cluster, after a `MemberAdd` of `peer`.
    pub fn spawn_joining(&mut self, id: u64, peer: String) -> Result<()> {
        if self.members.contains_key(&id) {
            bail!("member {id} exists already");
        }
        self.members.insert(id, Proc::new(peer, true)?);
        self.spawn(id)
    }

    /// Ids of the members whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.child.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The client address (`127.0.0.1:port`) of member `id`.
    pub fn endpoint(&self, id: u64) -> String {
        self.member(id).client.clone()
    }

    /// The client addresses of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.running()
            .into_iter()
            .map(|i| self.endpoint(i))
            .collect()
    }

    /// The peer address of member `id`.
    pub fn peer(&self, id: u64) -> &str {
        &self.member(id).peer
    }

    /// The metrics (HTTP) address of member `id`.
    pub fn metrics(&self, id: u64) -> &str {
        &self.member(id).metrics
    }

    /// The process id of member `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.member(id).child.as_ref().map(Child::id)
    }

    /// Kills member `id` with SIGKILL and reaps it (nothing when it is not running).
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        let m = self.members.get_mut(&id).context("no such member")?;
        if let Some(mut child) = m.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends SIGTERM to member `id` and waits (at most `limit`) for it to exit; returns how
    /// long the exit took and the exit status. After `limit` the process is killed and this
    /// is an error.
    pub fn terminate(&mut self, id: u64, limit: Duration) -> Result<(Duration, ExitStatus)> {
        let m = self.members.get_mut(&id).context("no such member")?;
        let mut child = m.child.take().context("member is not running")?;
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((started.elapsed(), status));
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("member {id} did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops member `id` (SIGKILL) and forgets it (after a `MemberRemove`).
    pub fn forget(&mut self, id: u64) -> Result<()> {
        self.kill9(id)?;
        self.members.remove(&id);
        Ok(())
    }

    /// Member `id`'s whole log.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// The last `lines` lines of every member's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for &id in self.members.keys() {
            let text = self.log(id);
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} node {id} ---\n", self.launch.name()));
            out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// A client of the running members (5 s per call).
    pub fn client(&self) -> Client {
        self.with_tls(Client::new(self.endpoints()).with_timeout(CALL_TIMEOUT))
    }

    /// A client of the members `ids` only (5 s per call).
    pub fn client_of(&self, ids: &[u64]) -> Client {
        self.with_tls(
            Client::new(ids.iter().map(|&i| self.endpoint(i)).collect()).with_timeout(CALL_TIMEOUT),
        )
    }

    fn with_tls(&self, client: Client) -> Client {
        match self.launch.client_tls() {
            Some(tls) => client.with_tls(tls),
            None => client,
        }
    }

    /// A client of member `id` only (5 s per call).
    pub fn node_client(&self, id: u64) -> Client {
        self.client_of(&[id])
    }

    /// [`eventually`], with the end of every member's log in the panic message.
    pub async fn eventually<T, F, Fut>(&self, secs: u64, what: &str, f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        match retry(secs, f).await {
            Some(v) => v,
            None => panic!("timed out waiting for {what}\n{}", self.logs(20)),
        }
    }

    /// Waits (at most `limit`) until a running member reports itself leader; returns its id.
    /// The error carries the end of every member's log.
    pub async fn leader(&self, limit: Duration) -> Result<u64> {
        let deadline = Instant::now() + limit;
        loop {
            for id in self.running() {
                let status = self
                    .with_tls(Client::new(vec![self.endpoint(id)]))
                    .with_timeout(Duration::from_secs(2))
                    .maintenance(|mut c| async move {
                        c.status(StatusRequest {}).await.map(|r| r.into_inner())
                    })
                    .await;
                if let Ok(st) = status {
                    let me = st.header.map_or(0, |h| h.member_id);
                    if me != 0 && st.leader == me {
                        return Ok(id);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within {limit:?}\n{}", self.logs(15));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    /// Waits (at most `limit`) until every running member answers and names the same leader;
    /// returns its id. For tests whose clients use every member from the start: a member
    /// may still be starting, or not know the leader yet, when the leader already leads.
    pub async fn serving(&self, limit: Duration) -> Result<u64> {
        let deadline = Instant::now() + limit;
        loop {
            let mut leaders = Vec::new();
            for id in self.running() {
                let status = self
                    .with_tls(Client::new(vec![self.endpoint(id)]))
                    .with_timeout(Duration::from_secs(2))
                    .maintenance(|mut c| async move {
                        c.status(StatusRequest {}).await.map(|r| r.into_inner())
                    })
                    .await;
                leaders.push(status.ok().map(|st| st.leader).filter(|l| *l != 0));
            }
            if let Some(Some(first)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*first))
            {
                return Ok(*first);
            }
            if Instant::now() > deadline {
                bail!(
                    "the members did not all serve one leader within {limit:?} (each: {leaders:?})\n{}",
                    self.logs(15)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in self.members.values_mut() {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Retries `f` every 100 ms until it returns `Some`, for at most `secs` seconds; panics
/// naming `what` after that. For liveness only (an election on a loaded machine), never
/// to wait out a safety failure.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match retry(secs, f).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// `f`'s first `Some`, tried every 100 ms for at most `secs` seconds.
async fn retry<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One put through `c`; the revision it created.
pub async fn put_once(c: &Client, key: &str, value: &str) -> Result<i64, ClientError> {
    let req = PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    };
    c.kv(|mut k| {
        let req = req.clone();
        async move { k.put(req).await.map(|r| r.into_inner()) }
    })
    .await
    .map(|r| r.header.map_or(0, |h| h.revision))
}

/// [`put_once`], retried while the cluster answers UNAVAILABLE (an election on a loaded
/// machine) or no endpoint can be reached, for up to 10 s; only for idempotent puts.
pub async fn put(c: &Client, key: &str, value: &str) -> Result<i64, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match put_once(c, key, value).await {
            Err(ClientError::Unavailable(_) | ClientError::Unreachable(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// The value of `key` read through `c` (linearizable unless `serializable`).
pub async fn get(c: &Client, key: &str, serializable: bool) -> Result<Option<String>, ClientError> {
    let req = RangeRequest {
        key: Bytes::from(key.to_string()),
        serializable,
        ..Default::default()
    };
    c.kv(|mut k| {
        let req = req.clone();
        async move { k.range(req).await.map(|r| r.into_inner()) }
    })
    .await
    .map(|r| {
        r.kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    })
}
