//! [`Cluster`]: the members' processes, their ports, directories and logs, and clients
//! to them.

use super::helpers::retry;
use super::launch::{Launch, Member};
use super::{CALL_TIMEOUT, free_addr};
use crate::client::Client;
use anyhow::{Context, Result, bail};
use raft_kv::pb::etcdserverpb::StatusRequest;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

    /// Member `id`'s exit status once its process has exited on its own (it is reaped then
    /// and counts as stopped); `None` while it runs or when it was not started.
    pub fn exited(&mut self, id: u64) -> Result<Option<ExitStatus>> {
        let m = self.members.get_mut(&id).context("no such member")?;
        let Some(child) = m.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            m.child = None;
        }
        Ok(status)
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

    /// [`eventually`](super::eventually), with the end of every member's log in the panic message.
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
