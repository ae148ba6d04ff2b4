//! The raftd processes of a chaos run and the faults done to them: kill -9 and restart,
//! SIGSTOP and SIGCONT, and cutting a member off from its peers, with network namespaces and
//! iptables ([`crate::netns`]) when the run has them, else with raftd's fault switch
//! (`RAFTD_FAULT_INJECTION=1`, SIGUSR1 isolates, SIGUSR2 heals), as the drills do.

use crate::netns::NetNs;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

struct Member {
    id: u64,
    client: String,
    peer: String,
    child: Option<Child>,
    paused: bool,
    isolated: bool,
}

/// A running cluster of raftd processes; dropping it kills them (before the network, if
/// any, is removed).
pub struct ChaosCluster {
    raftd: PathBuf,
    raftctl: PathBuf,
    dir: PathBuf,
    initial: String,
    members: Vec<Member>,
    net: Option<NetNs>,
    /// `--set KEY=VALUE` settings for every member.
    settings: Vec<String>,
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl ChaosCluster {
    /// Starts members `1..=n` with data and logs under `dir`, each with `--set` of every
    /// one of `settings`; in `net`'s namespaces when given, else on loopback with the fault
    /// switch enabled.
    pub fn start(
        raftd: &Path,
        raftctl: &Path,
        dir: &Path,
        n: u64,
        net: Option<NetNs>,
        settings: &[String],
    ) -> Result<ChaosCluster> {
        std::fs::create_dir_all(dir)?;
        let addrs: Vec<(String, String)> = match &net {
            Some(net) => (1..=n)
                .map(|id| {
                    (
                        format!("{}:2379", net.ip(id)),
                        format!("{}:2380", net.ip(id)),
                    )
                })
                .collect(),
            None => crate::cluster::free_ports(2 * n as usize)?
                .chunks(2)
                .map(|p| (format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])))
                .collect(),
        };
        let members: Vec<Member> = addrs
            .into_iter()
            .zip(1..=n)
            .map(|((client, peer), id)| Member {
                id,
                client,
                peer,
                child: None,
                paused: false,
                isolated: false,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = ChaosCluster {
            raftd: raftd.to_path_buf(),
            raftctl: raftctl.to_path_buf(),
            dir: dir.to_path_buf(),
            initial,
            members,
            net,
            settings: settings.to_vec(),
        };
        for id in 1..=n {
            c.spawn(id)?;
        }
        Ok(c)
    }

    fn member(&mut self, id: u64) -> Result<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .with_context(|| format!("no member {id}"))
    }

    /// The member ids.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// The client endpoints of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// Where member `id` logs.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    /// Member `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// Starts member `id` (first time or again from its data directory).
    pub fn spawn(&mut self, id: u64) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let data = self.data_dir(id);
        let m = self
            .members
            .iter()
            .find(|m| m.id == id)
            .with_context(|| format!("no member {id}"))?;
        if m.child.is_some() {
            bail!("member {id} is running");
        }
        let mut cmd = match &self.net {
            Some(net) => net.exec(id, &self.raftd),
            None => {
                let mut c = Command::new(&self.raftd);
                c.env("RAFTD_FAULT_INJECTION", "1");
                c
            }
        };
        cmd.args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client", &m.client, "--listen-peer", &m.peer])
            .args([
                "--initial-cluster",
                &self.initial,
                "--cluster-token",
                "chaos",
            ])
            .args([
                "--heartbeat-interval",
                "50ms",
                "--election-timeout-base",
                "300ms",
            ])
            .args(self.settings.iter().flat_map(|kv| ["--set", kv.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.raftd.display()))?;
        let m = self.member(id)?;
        m.child = Some(child);
        m.paused = false;
        m.isolated = false;
        Ok(())
    }

    fn signal(&self, id: u64, sig: &str) -> Result<()> {
        let m = self
            .members
            .iter()
            .find(|m| m.id == id)
            .with_context(|| format!("no member {id}"))?;
        let pid = m
            .child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("member {id} is not running"))?;
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {pid} (member {id}) failed");
        }
        Ok(())
    }

    /// SIGKILL member `id` and reap it.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        let m = self.member(id)?;
        if let Some(mut c) = m.child.take() {
            c.kill()?;
            c.wait()?;
        }
        m.paused = false;
        m.isolated = false;
        Ok(())
    }

    /// True while member `id`'s process runs.
    pub fn is_running(&self, id: u64) -> bool {
        self.members.iter().any(|m| m.id == id && m.child.is_some())
    }

    /// SIGSTOP member `id`.
    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, "-STOP")?;
        self.member(id)?.paused = true;
        Ok(())
    }

    /// SIGCONT member `id`.
    pub fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, "-CONT")?;
        self.member(id)?.paused = false;
        Ok(())
    }

    /// Cuts member `id` off from every other member (both directions); returns how.
    pub fn isolate(&mut self, id: u64) -> Result<String> {
        let others: Vec<u64> = self.ids().into_iter().filter(|&o| o != id).collect();
        let how = match &mut self.net {
            Some(net) => net.cut(id, &others)?,
            None => {
                self.signal(id, "-USR1")?;
                "fault switch, SIGUSR1".to_string()
            }
        };
        self.member(id)?.isolated = true;
        Ok(how)
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn heal(&mut self, id: u64) -> Result<()> {
        match &mut self.net {
            Some(net) => net.heal(id)?,
            None => self.signal(id, "-USR2")?,
        }
        self.member(id)?.isolated = false;
        Ok(())
    }

    /// Undoes whatever is still in force: resumes paused members, heals isolated ones,
    /// restarts dead ones. Returns what it had to do.
    pub fn heal_all(&mut self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for id in self.ids() {
            let (running, paused, isolated) = {
                let m = self.member(id)?;
                (m.child.is_some(), m.paused, m.isolated)
            };
            if !running {
                self.spawn(id)?;
                done.push(format!("restarted member {id}"));
                continue;
            }
            if paused {
                self.resume(id)?;
                done.push(format!("resumed member {id}"));
            }
            if isolated {
                self.heal(id)?;
                done.push(format!("healed member {id}"));
            }
        }
        Ok(done)
    }

    /// Members whose process exited on its own (a crash), with the exit status.
    pub fn crashed(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for m in &mut self.members {
            if let Some(c) = &mut m.child
                && let Ok(Some(status)) = c.try_wait()
            {
                out.push((m.id, status.to_string()));
                m.child = None;
            }
        }
        out
    }

    /// The leader `member`'s own status names, if it answers within 2 s and knows one.
    fn leader_seen_by(&self, endpoint: &str) -> Option<u64> {
        let out = Command::new(&self.raftctl)
            .args(["--endpoints", endpoint, "--timeout", "2s", "status"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("leader: "))?;
        line["leader: ".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The leader as running, unpaused members report it, waiting up to `within`.
    pub fn leader(&self, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            for m in &self.members {
                if m.child.is_none() || m.paused {
                    continue;
                }
                if let Some(l) = self.leader_seen_by(&m.client)
                    && self.members.iter().any(|o| o.id == l)
                {
                    return Some(l);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Kills every member and deletes the data directories (the logs stay).
    pub fn stop_and_clean(&mut self) {
        for id in self.ids() {
            let _ = self.kill9(id);
            let _ = std::fs::remove_dir_all(self.data_dir(id));
        }
    }
}
