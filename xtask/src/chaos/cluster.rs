//! The raftd processes of a chaos run and the faults done to them: kill -9 and restart,
//! SIGSTOP and SIGCONT, and cutting a member off from its peers, with network namespaces and
//! iptables ([`crate::netns`]) when the run has them, else with raftd's fault switch
//! (`RAFTD_FAULT_INJECTION=1`, SIGUSR1 isolates, SIGUSR2 heals), as the drills do; and
//! membership changes (a learner added and started with `--join`, promoted, a voter removed),
//! with `raftctl member`; and full disks: with disk faults in the run every member's data
//! directory is on a small tmpfs of its own, which a fault fills with a ballast file; and
//! power losses: with power faults in the run every member's data directory is on a
//! `raft-lazyfs` FUSE mount of its own, which a fault tells to drop what was not fsynced
//! (`crash` on its control socket) after killing the member.
//!
//! Faults name members by slot (`1..=n`, the initial ids); a member added by a membership
//! change takes the slot of the voter it replaced. Addresses (and namespaces) for the ids the
//! run will add are set aside at the start, so the client knows every endpoint from the
//! beginning (one with nothing listening refuses connections, and the client moves on).
//!
//! Over 700 lines on purpose: every fault is a method on the one cluster it is done to (its
//! processes, namespaces, disks and switches); the fault schedule's driver is in
//! `faults.rs`.

use crate::netns::NetNs;
use anyhow::{Context, Result, bail};
use raft_chaos::schedule::Schedule;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

struct Member {
    id: u64,
    /// The slot faults name it by (0: a learner not yet in a slot).
    slot: u64,
    client: String,
    peer: String,
    /// A member added at run time: the `--initial-cluster` it joined with (`--join`).
    joined: Option<String>,
    child: Option<Child>,
    paused: bool,
    isolated: bool,
}

/// libfaketime's spec: `offset` seconds ahead, running at `1 + ppm / 10^6` times real time.
fn faketime_spec(offset: u64, ppm: i64) -> String {
    format!("+{offset} x{:.6}", 1.0 + ppm as f64 / 1e6)
}

/// A running cluster of raftd processes; dropping it kills them (before the network, if
/// any, is removed).
pub struct ChaosCluster {
    raftd: PathBuf,
    raftctl: PathBuf,
    dir: PathBuf,
    initial: String,
    members: Vec<Member>,
    /// Client and peer addresses of the ids to be added, from `n + 1` on.
    spare: Vec<(String, String)>,
    /// The number of initial members.
    n: u64,
    /// The id the next added member gets.
    next_id: u64,
    net: Option<NetNs>,
    /// `--set KEY=VALUE` settings for every member.
    settings: Vec<String>,
    /// With clock faults: libfaketime, and each slot's clock rate (ppm off real time).
    clock: Option<(PathBuf, Vec<i64>)>,
    /// With clock faults: how far each member's clocks have jumped (s), by id.
    clock_offset_s: std::collections::HashMap<u64, u64>,
    /// The tags of the [`block`](Self::block)s in force.
    blocks: Vec<String>,
    /// With disk faults: the size (MiB) of each member's tmpfs, and the tmpfs mounted so far.
    tmpfs: Option<(u64, Vec<PathBuf>)>,
    /// Per member whose disk is full or whose fsyncs fail: the length of its log then.
    filled_at: std::collections::HashMap<u64, u64>,
    /// With fsync faults: members start with raftd's testing-only fsync switch.
    fsync_switch: bool,
    /// Deliberately unsafe: the fsync switch ignores the errors it injects.
    ignore_fsync_errors: bool,
    /// With power faults: the `raft-lazyfs` binary, and the file system serving each
    /// member's data directory, by id.
    lazyfs: Option<(PathBuf, std::collections::HashMap<u64, Child>)>,
    /// With power faults: `raft-lazyfs --strict-dirs`.
    strict_dirs: bool,
    /// Deliberately unsafe: the members' WAL never fsyncs.
    skip_wal_fsync: bool,
}

/// How the members run besides their settings: deliberately broken servers, to see a check
/// fail, and the stricter power-loss rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerOptions {
    /// With fsync faults: raftd's fsync switch ignores the errors it injects.
    pub ignore_fsync_errors: bool,
    /// raftd's WAL never fsyncs (`RAFTD_UNSAFE_SKIP_WAL_FSYNC=1`): a power loss then loses
    /// acknowledged writes.
    pub skip_wal_fsync: bool,
    /// With power faults: only an fsync of a directory makes its entries durable
    /// (`raft-lazyfs --strict-dirs`).
    pub strict_dirs: bool,
}

/// Sends one command to a `raft-lazyfs` control socket (see `raft_lazyfs::control`) and
/// returns its `ok ...` answer.
fn lazyfs_request(socket: &Path, command: &str) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let line = line.trim().to_string();
    if !line.starts_with("ok") {
        bail!("{}: {command}: {line:?}", socket.display());
    }
    Ok(line)
}

/// Where Debian's libfaketime (package `faketime`/`libfaketime`) puts its library.
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
];

/// The multi-threaded libfaketime, or why not.
pub fn libfaketime() -> Result<PathBuf> {
    LIBFAKETIME
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "clock faults need libfaketime (Debian: apt-get install faketime); looked at {}",
                LIBFAKETIME.join(", ")
            )
        })
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.unmount_all();
    }
}

/// The size of each member's tmpfs in a run with disk faults (MiB): room for the WAL's
/// preallocated segments (64 MiB each by default, the current one and the next) and a short
/// run's store, small enough to fill in a moment.
const DISK_MIB: u64 = 256;

impl ChaosCluster {
    /// Starts the `schedule`'s members `1..=n` with data and logs under `dir`, each with
    /// `--set` of every one of `settings`; in `net`'s namespaces when given (they must
    /// include the ids the schedule adds, `n + 1 ..= n + added`), else on loopback with the
    /// fault switch enabled. Addresses for the added members are set aside; with clock
    /// faults every member runs under libfaketime at its clock rate; with fsync faults every
    /// member runs with raftd's testing-only fsync switch (ignoring the errors it injects
    /// when `options.ignore_fsync_errors`, deliberately unsafe); with power faults every
    /// member's data directory is on a `raft-lazyfs` mount (the binary beside raftd).
    pub fn start(
        raftd: &Path,
        raftctl: &Path,
        dir: &Path,
        schedule: &Schedule,
        net: Option<NetNs>,
        settings: &[String],
        options: ServerOptions,
    ) -> Result<ChaosCluster> {
        use raft_chaos::schedule::FaultKind;
        let has = |k: FaultKind| schedule.faults.iter().any(|f| f.kind == k);
        let lazyfs = if has(FaultKind::Power) {
            if has(FaultKind::Disk) {
                bail!(
                    "power and disk faults cannot be in one run (each puts the data on its own mount)"
                );
            }
            let bin = raftd.with_file_name("raft-lazyfs");
            if !bin.is_file() {
                bail!(
                    "power faults need the raft-lazyfs binary: {} is missing",
                    bin.display()
                );
            }
            if !Path::new("/dev/fuse").exists() {
                bail!("power faults need FUSE: /dev/fuse is missing (load the fuse module)");
            }
            Some((bin, Default::default()))
        } else {
            None
        };
        let (n, spare, clock_rate_ppm) =
            (schedule.members, schedule.added(), &schedule.clock_rate_ppm);
        let clock = if clock_rate_ppm.is_empty() {
            None
        } else {
            Some((libfaketime()?, clock_rate_ppm.to_vec()))
        };
        std::fs::create_dir_all(dir)?;
        let mut addrs: Vec<(String, String)> = match &net {
            Some(net) => (1..=n + spare)
                .map(|id| {
                    (
                        format!("{}:2379", net.ip(id)),
                        format!("{}:2380", net.ip(id)),
                    )
                })
                .collect(),
            None => crate::cluster::free_ports(2 * (n + spare) as usize)?
                .chunks(2)
                .map(|p| (format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])))
                .collect(),
        };
        let spare_addrs = addrs.split_off(n as usize);
        let members: Vec<Member> = addrs
            .into_iter()
            .zip(1..=n)
            .map(|((client, peer), id)| Member {
                id,
                slot: id,
                client,
                peer,
                joined: None,
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
            spare: spare_addrs,
            n,
            next_id: n + 1,
            net,
            settings: settings.to_vec(),
            clock,
            clock_offset_s: Default::default(),
            blocks: Vec::new(),
            tmpfs: schedule
                .faults
                .iter()
                .any(|f| f.kind == raft_chaos::schedule::FaultKind::Disk)
                .then(|| (DISK_MIB, Vec::new())),
            filled_at: Default::default(),
            fsync_switch: schedule
                .faults
                .iter()
                .any(|f| f.kind == raft_chaos::schedule::FaultKind::Fsync),
            ignore_fsync_errors: options.ignore_fsync_errors,
            lazyfs,
            strict_dirs: options.strict_dirs,
            skip_wal_fsync: options.skip_wal_fsync,
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

    /// The client endpoints of the initial members and of every member the run may add.
    pub fn all_endpoints(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.id <= self.n)
            .map(|m| m.client.clone())
            .collect();
        all.extend(self.spare.iter().map(|(c, _)| c.clone()));
        all
    }

    /// The member in `slot`.
    pub fn in_slot(&self, slot: u64) -> Result<u64> {
        self.members
            .iter()
            .find(|m| m.slot == slot)
            .map(|m| m.id)
            .with_context(|| format!("no member in slot {slot}"))
    }

    /// Where member `id` logs.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    /// Member `id`'s data directory (with disk faults, inside its tmpfs; with power
    /// faults, inside its `raft-lazyfs` mount).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        if self.lazyfs.is_some() {
            return self.power_dir(id).join("data");
        }
        match &self.tmpfs {
            Some(_) => self.disk_dir(id).join("data"),
            None => self.dir.join(format!("node{id}")),
        }
    }

    /// With power faults: where member `id`'s `raft-lazyfs` is mounted.
    fn power_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("power{id}"))
    }

    /// With power faults: the control socket of member `id`'s `raft-lazyfs`.
    fn power_socket(&self, id: u64) -> PathBuf {
        self.dir.join(format!("power{id}.ctl"))
    }

    /// With power faults: mounts member `id`'s `raft-lazyfs` unless it is mounted already,
    /// and waits until its control socket answers.
    fn mount_power(&mut self, id: u64) -> Result<()> {
        let (dir, socket) = (self.power_dir(id), self.power_socket(id));
        let log_path = self.dir.join(format!("power{id}.log"));
        let Some((bin, mounted)) = &mut self.lazyfs else {
            return Ok(());
        };
        if mounted.contains_key(&id) {
            return Ok(());
        }
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&*bin)
            .arg("mount")
            .arg(&dir)
            .arg("--control")
            .arg(&socket)
            .args(self.strict_dirs.then_some("--strict-dirs"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let child = mounted.entry(id).or_insert(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lazyfs_request(&socket, "ping").is_err() {
            if let Some(status) = child.try_wait()? {
                mounted.remove(&id);
                bail!(
                    "power faults need a FUSE mount per member (root, /dev/fuse): raft-lazyfs \
                     on {} exited ({status}): {}",
                    dir.display(),
                    std::fs::read_to_string(&log_path)
                        .unwrap_or_default()
                        .trim()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "raft-lazyfs on {} did not answer within 10 s",
                    dir.display()
                );
            }
            sleep(Duration::from_millis(50));
        }
        // The data directory exists, durably, before the member first starts, as an
        // operator's would: what a power loss can take is what raftd writes in it.
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        for d in [&data, &dir] {
            std::fs::File::open(d)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("fsync of {}", d.display()))?;
        }
        Ok(())
    }

    /// A power loss of `ids` at once: each is killed (SIGKILL), then each one's file system
    /// drops what was not fsynced; returns how, with what each dropped.
    pub fn power_loss(&mut self, ids: &[u64]) -> Result<String> {
        if self.lazyfs.is_none() {
            bail!("no raft-lazyfs mounts: the run has no power faults");
        }
        for &id in ids {
            self.kill9(id)?;
        }
        let mut how = Vec::new();
        for &id in ids {
            let answer = lazyfs_request(&self.power_socket(id), "crash")?;
            how.push(format!(
                "member {id}: kill -9, power loss ({})",
                answer.trim_start_matches("ok ")
            ));
        }
        Ok(how.join("; "))
    }

    /// With disk faults: where member `id`'s tmpfs is mounted.
    fn disk_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("disk{id}"))
    }

    /// With disk faults: mounts member `id`'s tmpfs unless it is mounted already.
    fn mount_disk(&mut self, id: u64) -> Result<()> {
        let dir = self.disk_dir(id);
        let Some((mib, mounted)) = &mut self.tmpfs else {
            return Ok(());
        };
        if mounted.contains(&dir) {
            return Ok(());
        }
        std::fs::create_dir_all(&dir)?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "disk faults need a tmpfs per member (root): mount -t tmpfs on {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        mounted.push(dir);
        Ok(())
    }

    /// Unmounts every tmpfs (lazily: a process still holding a file does not stop it) and
    /// every `raft-lazyfs` (SIGTERM: it unmounts and exits; then `umount -l` in case).
    fn unmount_all(&mut self) {
        let dirs: Vec<(u64, PathBuf)> = self
            .lazyfs
            .as_ref()
            .map(|(_, m)| m.keys().map(|&id| (id, self.power_dir(id))).collect())
            .unwrap_or_default();
        if let Some((_, mounted)) = &mut self.lazyfs {
            for (id, dir) in dirs {
                let Some(mut child) = mounted.remove(&id) else {
                    continue;
                };
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    sleep(Duration::from_millis(20));
                }
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&dir)
                    .stderr(Stdio::null())
                    .status();
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if let Some((_, mounted)) = &mut self.tmpfs {
            for dir in mounted.drain(..) {
                let _ = Command::new("umount").arg("-l").arg(&dir).status();
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    /// Fills member `id`'s tmpfs with a ballast file until the file system is full;
    /// returns how.
    pub fn fill_disk(&mut self, id: u64) -> Result<String> {
        use std::io::Write;
        if self.tmpfs.is_none() {
            bail!("no tmpfs: the run has no disk faults");
        }
        let log_len = std::fs::metadata(self.log_path(id)).map_or(0, |m| m.len());
        self.filled_at.insert(id, log_len);
        let path = self.disk_dir(id).join("ballast");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut written = 0u64;
        for chunk in [1 << 20, 4 << 10, 512] {
            let buf = vec![0u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                    Err(e) => return Err(e).context(format!("filling {}", path.display())),
                }
            }
        }
        Ok(format!(
            "member {id}: its {} MiB tmpfs filled with a ballast of {:.1} MiB",
            self.tmpfs.as_ref().map_or(0, |t| t.0),
            written as f64 / (1 << 20) as f64
        ))
    }

    /// The first error line member `id` logged since its disk was filled (or its fsyncs
    /// made to fail) that says its raft node stopped (the process may still run: raftd
    /// stops the node, not the process).
    pub fn stopped_since_fill(&self, id: u64) -> Option<String> {
        self.logged_since_fill(id, |l| l.contains("ERROR") && l.contains("stopped"))
    }

    /// The first line member `id` logged since its disk was filled (or its fsyncs made to
    /// fail) that `matches`.
    pub fn logged_since_fill(&self, id: u64, matches: impl Fn(&str) -> bool) -> Option<String> {
        let from = *self.filled_at.get(&id)? as usize;
        let text = std::fs::read(self.log_path(id)).ok()?;
        let text = String::from_utf8_lossy(text.get(from..)?);
        text.lines().find(|l| matches(l)).map(str::to_string)
    }

    /// The trigger file of member `id`'s fsync switch.
    fn fsync_trigger(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.fsync-eio"))
    }

    /// Makes member `id`'s WAL fsyncs fail with EIO (raftd's testing-only switch); returns
    /// how.
    pub fn fail_fsyncs(&mut self, id: u64) -> Result<String> {
        if !self.fsync_switch {
            bail!("the members run without the fsync switch: the run has no fsync faults");
        }
        let log_len = std::fs::metadata(self.log_path(id)).map_or(0, |m| m.len());
        self.filled_at.insert(id, log_len);
        let trigger = self.fsync_trigger(id);
        std::fs::write(&trigger, "")?;
        Ok(format!(
            "member {id}: its WAL fsyncs fail with EIO ({} exists)",
            trigger.display()
        ))
    }

    /// Undoes [`fail_fsyncs`](Self::fail_fsyncs).
    pub fn heal_fsyncs(&mut self, id: u64) -> Result<()> {
        match std::fs::remove_file(self.fsync_trigger(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes the ballast of [`fill_disk`](Self::fill_disk).
    pub fn free_disk(&mut self, id: u64) -> Result<()> {
        let path = self.disk_dir(id).join("ballast");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// If member `id`'s process has exited on its own, reaps it: its exit status and the
    /// last line of its log.
    pub fn reap(&mut self, id: u64) -> Result<Option<(String, String)>> {
        let log = self.log_path(id);
        let m = self.member(id)?;
        let Some(c) = &mut m.child else {
            return Ok(None);
        };
        let Ok(Some(status)) = c.try_wait() else {
            return Ok(None);
        };
        m.child = None;
        m.paused = false;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        Ok(Some((status.to_string(), last)))
    }

    /// Starts member `id` (first time or again from its data directory).
    pub fn spawn(&mut self, id: u64) -> Result<()> {
        self.mount_disk(id)?;
        self.mount_power(id)?;
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
        let initial = m.joined.clone().unwrap_or_else(|| self.initial.clone());
        let slot = m.slot;
        let mut cmd = match &self.net {
            Some(net) => net.exec(id, &self.raftd),
            None => {
                let mut c = Command::new(&self.raftd);
                c.env("RAFTD_FAULT_INJECTION", "1");
                c
            }
        };
        if self.fsync_switch {
            cmd.env("RAFTD_FAULT_FSYNC_EIO_FILE", self.fsync_trigger(id));
            if self.ignore_fsync_errors {
                cmd.env("RAFTD_UNSAFE_IGNORE_FSYNC_ERRORS", "1");
            }
        }
        if self.skip_wal_fsync {
            cmd.env("RAFTD_UNSAFE_SKIP_WAL_FSYNC", "1");
        }
        if let Some((lib, rates)) = &self.clock {
            // libfaketime reads the spec from the file again at most a second after it
            // changes ([`Self::clock_jump`]); a restart starts from the offset so far.
            let ppm = rates
                .get((slot as usize).wrapping_sub(1))
                .copied()
                .unwrap_or(0);
            let file = self.faketime_file(id);
            let offset = self.clock_offset_s.get(&id).copied().unwrap_or(0);
            std::fs::write(&file, faketime_spec(offset, ppm))?;
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &file)
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client", &m.client, "--listen-peer", &m.peer])
            .args(["--initial-cluster", &initial, "--cluster-token", "chaos"])
            .args(if m.joined.is_some() {
                &["--join"][..]
            } else {
                &[]
            })
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

    fn faketime_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.faketime"))
    }

    /// Moves member `id`'s clocks (wall clock and monotonic) `secs` forward, within a
    /// second (libfaketime's cache); returns how.
    pub fn clock_jump(&mut self, id: u64, secs: u64) -> Result<String> {
        let slot = self.member(id)?.slot;
        let Some((_, rates)) = &self.clock else {
            bail!("the cluster was not started with clock faults");
        };
        let ppm = rates
            .get((slot as usize).wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let offset = self.clock_offset_s.entry(id).or_insert(0);
        *offset += secs;
        let spec = faketime_spec(*offset, ppm);
        std::fs::write(self.faketime_file(id), &spec)?;
        Ok(format!(
            "member {id}'s clocks {secs} s forward (libfaketime `{spec}`)"
        ))
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

    /// True when partitions are made with network namespaces (one-way and bridge
    /// partitions need them).
    pub fn has_netns(&self) -> bool {
        self.net.is_some()
    }

    /// Drops, in member `id`'s namespace, the packets from the members `inbound_from` and to
    /// the members `outbound_to` ([`NetNs::block`]), under `tag` for [`unblock`](Self::unblock).
    pub fn block(
        &mut self,
        tag: &str,
        id: u64,
        inbound_from: &[u64],
        outbound_to: &[u64],
    ) -> Result<String> {
        let net = self.net.as_mut().context(
            "this partition needs network namespaces (root, ip, iptables); the run uses \
             raftd's fault switch, which only isolates a member both ways",
        )?;
        let how = net.block(tag, id, inbound_from, outbound_to)?;
        if !self.blocks.iter().any(|t| t == tag) {
            self.blocks.push(tag.to_string());
        }
        Ok(how)
    }

    /// Removes the rules of [`block`](Self::block)s made under `tag`.
    pub fn unblock(&mut self, tag: &str) -> Result<()> {
        self.blocks.retain(|t| t != tag);
        match &mut self.net {
            Some(net) => net.unblock(tag),
            None => Ok(()),
        }
    }

    /// Undoes whatever is still in force: resumes paused members, heals isolated ones,
    /// removes blocks, restarts dead ones. Returns what it had to do.
    pub fn heal_all(&mut self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for tag in self.blocks.clone() {
            self.unblock(&tag)?;
            done.push(format!("removed the rules of {tag}"));
        }
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

    /// `raftctl` once against the running, unpaused members.
    fn ctl(&self, args: &[&str]) -> Result<(bool, String)> {
        let endpoints: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.child.is_some() && !m.paused)
            .map(|m| m.client.as_str())
            .collect();
        crate::cluster::ctl(&self.raftctl, &endpoints.join(","), args)
    }

    /// The id of the member whose peer URL is `peer`, in `raftctl member list`.
    fn listed_with_peer(&self, peer: &str) -> Option<u64> {
        let (ok, out) = self.ctl(&["member", "list"]).ok()?;
        if !ok {
            return None;
        }
        out.lines().find_map(|l| {
            let cols: Vec<&str> = l.split(", ").collect();
            let listed = cols.get(3)?.split(',').any(|u| u.ends_with(peer));
            listed.then(|| cols[0].trim().parse().ok()).flatten()
        })
    }

    /// Adds the next member as a learner (`raftctl member add --learner`) and starts it with
    /// `--join`; returns its id.
    pub fn add_learner(&mut self) -> Result<u64> {
        let id = self.next_id;
        let (client, peer) = self
            .spare
            .get((id - self.n - 1) as usize)
            .cloned()
            .with_context(|| format!("no address was set aside for member {id}"))?;
        // Retried until listed: an add whose answer was lost may still have been applied.
        let deadline = Instant::now() + Duration::from_secs(30);
        let added = loop {
            if let Some(listed) = self.listed_with_peer(&peer) {
                break listed;
            }
            let (ok, out) = self.ctl(&["member", "add", &peer, "--learner"])?;
            if ok {
                break out
                    .split_whitespace()
                    .nth(1)
                    .and_then(|id| id.parse().ok())
                    .with_context(|| format!("unexpected `member add` output: {out}"))?;
            }
            if Instant::now() > deadline {
                bail!("raftctl member add {peer} failed for 30 s: {}", out.trim());
            }
            sleep(Duration::from_millis(200));
        };
        if added != id {
            bail!("the new member got id {added}, expected {id}");
        }
        self.next_id += 1;
        let mut initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.id, m.peer))
            .collect();
        initial.push(format!("{id}={peer}"));
        self.members.push(Member {
            id,
            slot: 0,
            client,
            peer,
            joined: Some(initial.join(",")),
            child: None,
            paused: false,
            isolated: false,
        });
        self.spawn(id)?;
        Ok(id)
    }

    /// The members `raftctl member list` lists: id and whether it is a learner; `None`
    /// when no member answers.
    fn listed(&self) -> Option<Vec<(u64, bool)>> {
        let (ok, out) = self.ctl(&["member", "list"]).ok()?;
        if !ok {
            return None;
        }
        Some(
            out.lines()
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split(", ").collect();
                    let id = cols.first()?.trim().parse().ok()?;
                    Some((id, cols.last()?.trim() == "true"))
                })
                .collect(),
        )
    }

    /// Runs a membership command until it succeeds or `done` holds of the member list (an
    /// earlier attempt whose answer was lost may have taken effect: a retried promote or
    /// remove is then refused), for up to 30 s.
    fn member_cmd(&self, args: &[&str], done: impl Fn(&[(u64, bool)]) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out) = self.ctl(args)?;
            if ok || self.listed().is_some_and(|l| done(&l)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("raftctl {} failed for 30 s: {}", args.join(" "), out.trim());
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Promotes learner `id` to a voter (retried while it catches up, up to 30 s).
    pub fn promote(&mut self, id: u64) -> Result<()> {
        self.member_cmd(&["member", "promote", &id.to_string()], |l| {
            l.contains(&(id, false))
        })
    }

    /// Removes member `id` from the cluster, stops it and deletes its data; the member
    /// `heir` (a promoted learner) takes its slot.
    pub fn remove(&mut self, id: u64, heir: u64) -> Result<()> {
        self.member_cmd(&["member", "remove", &id.to_string()], |l| {
            l.iter().all(|&(m, _)| m != id)
        })?;
        let slot = self.member(id)?.slot;
        if self.member(id)?.isolated {
            self.heal(id)?;
        }
        self.kill9(id)?;
        let _ = std::fs::remove_dir_all(self.data_dir(id));
        self.members.retain(|m| m.id != id);
        self.member(heir)?.slot = slot;
        Ok(())
    }

    /// Kills every member and deletes the data directories (the logs stay).
    pub fn stop_and_clean(&mut self) {
        for id in self.ids() {
            let _ = self.kill9(id);
            let _ = std::fs::remove_dir_all(self.data_dir(id));
        }
        self.unmount_all();
    }
}
