//! Network namespaces for `cargo xtask drill partition-leader`: every raftd runs in its own
//! namespace, joined to the host by a veth pair on a bridge, and a node is cut off by
//! iptables DROP rules inside its namespace.
//!
//! Layout of one run (`<pid>` is the xtask's process id, so concurrent runs do not collide):
//! - a bridge `rdrill<pid>b` in the host namespace with the address `10.77.<s>.254/24`, where
//!   `<s>` is a /24 that no address or route of the host uses yet;
//! - per node `<id>`: a namespace `raft-drill-<pid>-<id>` with its loopback up and `eth0`
//!   at `10.77.<s>.<id>/24`, the other end of a veth pair `rdrill<pid>h<id>` on the bridge.
//!
//! The host reaches every node over the bridge (no forwarding, no NAT), so raftctl runs
//! unchanged in the host namespace. Everything is removed by [`NetNs`]'s `Drop`, by a
//! SIGINT/SIGTERM/SIGHUP handler (which then exits with 128 + the signal number), and, for
//! what a run killed with SIGKILL left behind, by a sweep at the start of the next run (names
//! whose process id no longer runs).

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Everything one run creates, by name, for teardown.
#[derive(Clone)]
struct Plan {
    bridge: String,
    veths: Vec<String>,
    namespaces: Vec<String>,
}

/// Plans not torn down yet, for the signal handler. A plan is listed before any of it is
/// created, so a half-built network is removed too.
static LIVE: Mutex<Vec<Plan>> = Mutex::new(Vec::new());

/// The namespaces, bridge and veth pairs of one drill, removed on drop.
pub struct NetNs {
    subnet: u8,
    ids: Vec<u64>,
    /// iptables rules in force: the node whose namespace holds the rule, and the rule
    /// (`CHAIN match... -j DROP`).
    rules: Vec<(u64, String)>,
    /// Rules put in by [`block`](NetNs::block): the tag that removes them, the node whose
    /// namespace holds the rule, and the rule.
    tagged: Vec<(String, u64, String)>,
    plan: Plan,
}

/// Why the namespace path cannot run on this machine, or `None` when it can be tried.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not running as root".into());
    }
    for (name, arg) in [
        ("ip", "-V"),
        ("iptables", "--version"),
        ("iptables-restore", "--version"),
    ] {
        match Command::new(tool(name)).arg(arg).output() {
            Ok(o) if o.status.success() => {}
            _ => return Some(format!("`{name}` is not installed")),
        }
    }
    None
}

/// True when the effective user id is 0 (the second id of `Uid:` in /proc/self/status).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

impl NetNs {
    /// Creates a namespace per node id (ids 1 to 253), the bridge and the veth pairs, and
    /// checks that iptables works in a namespace and that the host and the namespaces reach
    /// each other. On error, whatever was created is removed again.
    pub fn create(ids: &[u64]) -> Result<NetNs> {
        if ids.iter().any(|&id| !(1..=253).contains(&id)) {
            bail!("node ids must be 1 to 253 to get an address");
        }
        install_signal_handler()?;
        sweep_stale();
        let pid = std::process::id();
        let plan = Plan {
            bridge: format!("rdrill{pid}b"),
            veths: ids.iter().map(|id| format!("rdrill{pid}h{id}")).collect(),
            namespaces: ids
                .iter()
                .map(|id| format!("raft-drill-{pid}-{id}"))
                .collect(),
        };
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        // Chosen while holding the lock: two drills in one process never pick the same /24.
        let subnet = free_subnet(pid)?;
        live.push(plan.clone());
        drop(live);
        let net = NetNs {
            subnet,
            ids: ids.to_vec(),
            rules: Vec::new(),
            tagged: Vec::new(),
            plan,
        };
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let p = &self.plan;
        ip(&["link", "add", &p.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.host_ip()),
            "dev",
            &p.bridge,
        ])?;
        ip(&["link", "set", &p.bridge, "up"])?;
        for (i, &id) in self.ids.iter().enumerate() {
            let (ns, veth) = (&p.namespaces[i], &p.veths[i]);
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", veth, "master", &p.bridge, "up"])?;
            let addr = format!("{}/24", self.ip(id));
            ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // iptables needs kernel support inside a namespace; find out now, not mid-drill.
        self.restore(self.ids[0], "-I", &[])?;
        for &id in &self.ids {
            self.probe_from_host(id)?;
        }
        // Between namespaces, traffic crosses the host's bridge (and the host's firewall
        // when br_netfilter is loaded): check one pair.
        if let [a, b, ..] = self.ids[..] {
            self.probe_between(a, b)?;
        }
        Ok(())
    }

    /// The address of node `id` in its namespace.
    pub fn ip(&self, id: u64) -> String {
        format!("10.77.{}.{id}", self.subnet)
    }

    /// The host's address on the bridge.
    fn host_ip(&self) -> String {
        format!("10.77.{}.254", self.subnet)
    }

    fn namespace(&self, id: u64) -> &str {
        let i = self
            .ids
            .iter()
            .position(|&n| n == id)
            .expect("a node of this network");
        &self.plan.namespaces[i]
    }

    /// A command that runs `program` in node `id`'s namespace (`ip netns exec` replaces
    /// itself with the program, so the child's pid is the program's).
    pub fn exec(&self, id: u64, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", self.namespace(id)]).arg(program);
        cmd
    }

    /// One line naming what was created.
    pub fn describe(&self) -> String {
        let first = self.ids.first().copied().unwrap_or(1);
        let last = self.ids.last().copied().unwrap_or(1);
        format!(
            "namespaces raft-drill-{pid}-<id>, nodes at {}..{}, bridge {} at {}/24",
            self.ip(first),
            last,
            self.plan.bridge,
            self.host_ip(),
            pid = std::process::id()
        )
    }

    /// Drops every packet between node `id` and the nodes `from`, both directions, with
    /// iptables rules in `id`'s namespace, all applied at once (one `iptables-restore`
    /// transaction). The host (and so the drill's clients) still reaches `id`.
    pub fn cut(&mut self, id: u64, from: &[u64]) -> Result<String> {
        let mut rules = Vec::new();
        for &other in from {
            let addr = self.ip(other);
            rules.push(format!("INPUT -s {addr} -j DROP"));
            rules.push(format!("OUTPUT -d {addr} -j DROP"));
        }
        self.restore(id, "-I", &rules)?;
        self.rules.extend(rules.into_iter().map(|r| (id, r)));
        let addrs: Vec<String> = from.iter().map(|&o| self.ip(o)).collect();
        Ok(format!(
            "iptables DROP in {} for INPUT from and OUTPUT to {}",
            self.namespace(id),
            addrs.join(", ")
        ))
    }

    /// Removes the rules [`cut`](Self::cut) put in node `id`'s namespace, all at once.
    pub fn heal(&mut self, id: u64) -> Result<()> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rules)
            .into_iter()
            .partition(|(n, _)| *n == id);
        self.rules = rest;
        let rules: Vec<String> = mine.into_iter().map(|(_, r)| r).collect();
        self.restore(id, "-D", &rules)
    }

    /// Drops, with iptables rules in node `id`'s namespace applied at once, the packets
    /// that come in from the nodes `inbound_from` and those that go out to the nodes
    /// `outbound_to`: one direction of a link, or both. The rules are recorded under `tag`
    /// and removed by [`unblock`](Self::unblock) with it, independently of [`cut`](Self::cut)
    /// and of other tags (a rule put in twice is removed once per tag). Returns how.
    pub fn block(
        &mut self,
        tag: &str,
        id: u64,
        inbound_from: &[u64],
        outbound_to: &[u64],
    ) -> Result<String> {
        let mut rules = Vec::new();
        for &other in inbound_from {
            rules.push(format!("INPUT -s {} -j DROP", self.ip(other)));
        }
        for &other in outbound_to {
            rules.push(format!("OUTPUT -d {} -j DROP", self.ip(other)));
        }
        if rules.is_empty() {
            return Ok(String::new());
        }
        self.restore(id, "-I", &rules)?;
        self.tagged
            .extend(rules.into_iter().map(|r| (tag.to_string(), id, r)));
        let list = |ids: &[u64]| {
            ids.iter()
                .map(|&o| self.ip(o))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut how = format!("iptables DROP in {}", self.namespace(id));
        if !inbound_from.is_empty() {
            how.push_str(&format!(" for INPUT from {}", list(inbound_from)));
        }
        if !outbound_to.is_empty() {
            if !inbound_from.is_empty() {
                how.push_str(" and");
            }
            how.push_str(&format!(" for OUTPUT to {}", list(outbound_to)));
        }
        Ok(how)
    }

    /// Removes the rules [`block`](Self::block) put in under `tag`, per namespace at once.
    pub fn unblock(&mut self, tag: &str) -> Result<()> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tagged)
            .into_iter()
            .partition(|(t, _, _)| t == tag);
        self.tagged = rest;
        let mut by_node: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
        for (_, id, rule) in mine {
            by_node.entry(id).or_default().push(rule);
        }
        for (id, rules) in by_node {
            self.restore(id, "-D", &rules)?;
        }
        Ok(())
    }

    /// Applies `op` (`-I` or `-D`) to each of `rules` in the filter table of node `id`'s
    /// namespace in one `iptables-restore --noflush` transaction.
    fn restore(&self, id: u64, op: &str, rules: &[String]) -> Result<()> {
        let mut script = String::from("*filter\n");
        for rule in rules {
            script.push_str(&format!("{op} {rule}\n"));
        }
        script.push_str("COMMIT\n");
        let mut child = self
            .exec(id, tool("iptables-restore"))
            .args(["-w", "5", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting iptables-restore")?;
        child
            .stdin
            .take()
            .context("iptables-restore's stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "iptables-restore in {} failed ({}): {}",
                self.namespace(id),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A TCP connection from the host to a closed port of node `id` must be refused: the
    /// RST proves the path works (a DROP or a missing route times out instead).
    fn probe_from_host(&self, id: u64) -> Result<()> {
        let addr: SocketAddr = format!("{}:9", self.ip(id)).parse()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let err = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                bail!("the host cannot reach {addr} in its namespace: {err}");
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// The same check from node `a`'s namespace to node `b` (bash's /dev/tcp).
    fn probe_between(&self, a: u64, b: u64) -> Result<()> {
        let script = format!(": > /dev/tcp/{}/9", self.ip(b));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self
                .exec(a, "timeout")
                .args(["2", "bash", "-c", &script])
                .stdin(Stdio::null())
                .output()
                .context("running bash in a namespace")?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() || err.contains("refused") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {a}'s namespace cannot reach {}: {}",
                    self.ip(b),
                    err.trim()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Hold the lock while tearing down, so a signal arriving now waits for us.
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|p| p.bridge != self.plan.bridge);
        teardown(&self.plan);
    }
}

/// Kills what still runs in the namespaces, then deletes the veth pairs, the namespaces
/// (and with them their iptables rules) and the bridge. Ignores what is already gone.
fn teardown(plan: &Plan) {
    remove(
        &plan.namespaces,
        &plan.veths,
        std::slice::from_ref(&plan.bridge),
    );
}

fn remove(namespaces: &[String], veths: &[String], bridges: &[String]) {
    for ns in namespaces {
        if let Ok(out) = Command::new(tool("ip"))
            .args(["netns", "pids", ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                quiet(Command::new("kill").args(["-KILL", pid]));
            }
        }
    }
    for veth in veths {
        quiet(Command::new(tool("ip")).args(["link", "del", veth]));
    }
    for ns in namespaces {
        quiet(Command::new(tool("ip")).args(["netns", "del", ns]));
    }
    for bridge in bridges {
        quiet(Command::new(tool("ip")).args(["link", "del", bridge]));
    }
}

/// Removes namespaces, bridges and veths of earlier runs whose xtask no longer runs.
fn sweep_stale() {
    // Gone, or a zombie nobody has reaped yet (state `Z` after the command name).
    let dead = |pid: &str| {
        pid.parse::<u32>().is_ok()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| {
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, r)| r.starts_with('Z'))
                })
                .unwrap_or(true)
    };
    let (mut namespaces, mut veths, mut bridges) = (Vec::new(), Vec::new(), Vec::new());
    if let Ok(out) = Command::new(tool("ip")).args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if let Some((pid, _)) = name
                .strip_prefix("raft-drill-")
                .and_then(|r| r.split_once('-'))
                && dead(pid)
            {
                namespaces.push(name.to_string());
            }
        }
    }
    if let Ok(out) = Command::new(tool("ip"))
        .args(["-o", "link", "show"])
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "12: rdrill123h1@if2: <...>" or "11: rdrill123b: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let Some(rest) = name.strip_prefix("rdrill") else {
                continue;
            };
            if let Some(pid) = rest.strip_suffix('b')
                && dead(pid)
            {
                bridges.push(name.to_string());
            } else if let Some((pid, _)) = rest.split_once('h')
                && dead(pid)
            {
                veths.push(name.to_string());
            }
        }
    }
    if namespaces.is_empty() && veths.is_empty() && bridges.is_empty() {
        return;
    }
    eprintln!(
        "xtask: removing what earlier drills left behind: {}",
        [&namespaces[..], &veths[..], &bridges[..]]
            .concat()
            .join(", ")
    );
    remove(&namespaces, &veths, &bridges);
}

/// A /24 under 10.77.0.0/16 that no address or route of the host mentions, starting at a
/// place derived from `pid` so that concurrent runs start apart.
fn free_subnet(pid: u32) -> Result<u8> {
    let mut used = String::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show"][..],
    ] {
        used.push_str(&crate::util::output(Command::new(tool("ip")).args(args))?);
    }
    let start = pid % 254;
    (0..254)
        .map(|k| ((start + k) % 254 + 1) as u8)
        .find(|s| !used.contains(&format!("10.77.{s}.")))
        .context("every 10.77.<s>.0/24 is in use on this host")
}

/// On SIGINT, SIGTERM or SIGHUP: tear down every live plan and exit with 128 + the signal.
/// Installed once per process, the first time a network is created.
fn install_signal_handler() -> Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let plans = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
            if !plans.is_empty() {
                eprintln!("xtask: signal {sig}: removing the drill's network namespaces");
            }
            for p in &plans {
                teardown(p);
            }
            std::process::exit(128 + sig);
        }
    });
    let _ = INSTALLED.set(());
    Ok(())
}

/// Where `name` is installed: on `PATH`, else in /usr/sbin or /sbin (which a non-login
/// shell's `PATH` may lack); `name` itself when found nowhere.
fn tool(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

/// Runs `ip` with `args`, failing with its error output.
fn ip(args: &[&str]) -> Result<()> {
    run(Command::new(tool("ip")).args(args))
}

/// Runs `cmd`, failing with its (trimmed) error output.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        bail!(
            "`{} {}` failed: {}",
            cmd.get_program().to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn quiet(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
