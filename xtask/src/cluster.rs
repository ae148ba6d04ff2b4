//! `cargo xtask cluster`: builds raftd and raftctl (release), starts a local 3-node cluster on
//! loopback in a temporary directory, waits for a leader, runs a short put/get demo through
//! raftctl, prints the endpoints and keeps the cluster running until Ctrl-C.
//!
//! With `--demo` it stops the cluster after the demo and exits with 0 when the demo passed
//! (used by tests and CI). With `--tls` it first writes a CA and certificates into
//! `<dir>/certs` (`raftctl certs`: rcgen) and runs every node with TLS on its client port
//! (client certificates required) and mutual TLS between peers, member ids bound to the
//! certificates; raftctl and the printed etcdctl commands use the client certificate.
//!
//! The nodes get no cluster token: node 1 draws a random cluster id and nodes 2 and 3 ask
//! it for the id, as a production cluster does.

use crate::util;
use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Nodes in the local cluster.
const NODES: u64 = 3;

struct Node {
    id: u64,
    client: String,
    child: Child,
    log: PathBuf,
}

/// `cargo xtask cluster`.
#[derive(clap::Args)]
pub struct Args {
    /// Stop after the put/get demo (exit code 0 when it passed).
    #[arg(long)]
    demo: bool,
    /// Use the release binaries already built.
    #[arg(long)]
    no_build: bool,
    /// Generate a CA and certificates and run the cluster with TLS on every port.
    #[arg(long)]
    tls: bool,
}

/// Runs the task.
pub fn run(args: Args) -> Result<()> {
    let Args {
        demo: demo_only,
        no_build: skip_build,
        tls,
    } = args;

    if !skip_build {
        util::run(util::cargo().args(["build", "--release", "--package", "raft-node", "--bins"]))?;
    }
    let bin_dir = util::target_dir().join("release");
    let raftd = bin_dir.join("raftd");
    let raftctl = bin_dir.join("raftctl");
    for b in [&raftd, &raftctl] {
        if !b.exists() {
            bail!("{} is missing (build it or drop --no-build)", b.display());
        }
    }

    // A fixed place under the temp dir, wiped at every start: a run stopped by Ctrl-C
    // leaves its data for inspection until the next run.
    let dir = std::env::temp_dir().join("raft-xtask-cluster");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;

    let ports = free_ports(NODES as usize * 2)?;
    let peer = |i: u64| format!("127.0.0.1:{}", ports[(i - 1) as usize * 2 + 1]);
    let client = |i: u64| format!("127.0.0.1:{}", ports[(i - 1) as usize * 2]);
    let initial: Vec<String> = (1..=NODES).map(|i| format!("{i}={}", peer(i))).collect();
    let initial = initial.join(",");

    // With --tls: the certificates, the flags of each node and those of raftctl.
    let certs = dir.join("certs");
    let client_flags: Vec<String> = if tls {
        let members: Vec<String> = (1..=NODES).map(|i| i.to_string()).collect();
        let (ok, out) = ctl_with(
            &raftctl,
            "-",
            &[],
            &[
                "certs",
                "--dir",
                &certs.display().to_string(),
                "--members",
                &members.join(","),
            ],
        )?;
        if !ok {
            bail!("raftctl certs failed: {out}");
        }
        let file = |name: &str| certs.join(name).display().to_string();
        vec![
            "--cacert".into(),
            file("ca.pem"),
            "--cert".into(),
            file("client.pem"),
            "--key".into(),
            file("client.key"),
        ]
    } else {
        Vec::new()
    };
    let node_tls = |id: u64| -> Vec<String> {
        if !tls {
            return Vec::new();
        }
        let file = |name: String| certs.join(name).display().to_string();
        [
            ("--cert-file", file("server.pem".into())),
            ("--key-file", file("server.key".into())),
            ("--trusted-ca-file", file("ca.pem".into())),
            ("--client-cert-auth", "true".into()),
            ("--peer-cert-file", file(format!("member-{id}.pem"))),
            ("--peer-key-file", file(format!("member-{id}.key"))),
            ("--peer-trusted-ca-file", file("ca.pem".into())),
        ]
        .into_iter()
        .map(|(flag, v)| format!("{flag}={v}"))
        .collect()
    };

    let mut nodes = Vec::new();
    for id in 1..=NODES {
        let log = dir.join(format!("node{id}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&raftd)
            .args(["--id", &id.to_string()])
            .args(["--name", &format!("node{id}")])
            .arg("--data-dir")
            .arg(dir.join(format!("node{id}")))
            .args(["--listen-client", &client(id)])
            .args(["--listen-peer", &peer(id)])
            .args(["--initial-cluster", &initial])
            .args(node_tls(id))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", raftd.display()))?;
        nodes.push(Node {
            id,
            client: client(id),
            child,
            log,
        });
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| n.client.clone()).collect();
    let endpoints = endpoints.join(",");

    let outcome = demo(&raftctl, &endpoints, &client_flags, &mut nodes);
    if let Err(e) = &outcome {
        eprintln!("xtask: cluster demo failed: {e:#}");
        for n in &nodes {
            eprintln!("--- last lines of {} ---", n.log.display());
            eprintln!("{}", tail(&n.log, 20));
        }
    }
    if demo_only || outcome.is_err() {
        stop(&mut nodes);
        if outcome.is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return outcome;
    }

    println!();
    println!("cluster running; data and logs in {}", dir.display());
    for n in &nodes {
        println!("  node {}: client endpoint {}", n.id, n.client);
    }
    println!();
    println!("try:");
    let flags = client_flags.join(" ");
    let etcd_endpoints = if tls {
        let urls: Vec<String> = nodes
            .iter()
            .map(|n| format!("https://{}", n.client))
            .collect();
        urls.join(",")
    } else {
        endpoints.clone()
    };
    println!(
        "  {} --endpoints {endpoints} {flags} status",
        raftctl.display()
    );
    println!("  ETCDCTL_API=3 etcdctl --endpoints {etcd_endpoints} {flags} put foo bar");
    println!("  ETCDCTL_API=3 etcdctl --endpoints {etcd_endpoints} {flags} get foo");
    println!();
    println!("press Ctrl-C to stop (the nodes receive it too and shut down)");
    loop {
        for n in &mut nodes {
            if let Some(status) = n.child.try_wait()? {
                stop(&mut nodes);
                bail!(
                    "a node exited ({status}); see the logs in {}",
                    dir.display()
                );
            }
        }
        sleep(Duration::from_millis(200));
    }
}

/// Waits for a leader, then writes through one node and reads through every node.
fn demo(raftctl: &Path, endpoints: &str, flags: &[String], nodes: &mut [Node]) -> Result<()> {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ctl =
        |raftctl: &Path, endpoints: &str, args: &[&str]| ctl_with(raftctl, endpoints, &flags, args);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        for n in nodes.iter_mut() {
            if let Some(st) = n.child.try_wait()? {
                bail!("node {} exited early ({st})", n.id);
            }
        }
        let out = ctl(raftctl, endpoints, &["status"])?;
        if out.0 && out.1.lines().any(|l| l.contains(" leader ")) {
            break out.1;
        }
        if Instant::now() > deadline {
            bail!("no leader within 30 s; last status:\n{}", out.1);
        }
        sleep(Duration::from_millis(200));
    };
    println!("{status}");
    let (ok, out) = ctl(raftctl, &nodes[0].client, &["put", "hello", "world"])?;
    if !ok || out.trim() != "OK" {
        bail!("put failed: {out}");
    }
    println!("$ raftctl put hello world\n{}", out.trim_end());
    for n in nodes.iter() {
        let (ok, out) = ctl(raftctl, &n.client, &["get", "hello"])?;
        if !ok || out != "hello\nworld\n" {
            bail!("get through node {} answered {out:?}", n.id);
        }
        println!(
            "$ raftctl --endpoints {} get hello\n{}",
            n.client,
            out.trim_end()
        );
    }
    println!("demo: OK");
    Ok(())
}

/// Runs raftctl; returns (success, stdout + stderr).
pub(crate) fn ctl(raftctl: &Path, endpoints: &str, args: &[&str]) -> Result<(bool, String)> {
    ctl_with(raftctl, endpoints, &[], args)
}

/// [`ctl`] with extra flags (TLS files) before `args`.
fn ctl_with(
    raftctl: &Path,
    endpoints: &str,
    flags: &[&str],
    args: &[&str],
) -> Result<(bool, String)> {
    let out = Command::new(raftctl)
        .args(["--endpoints", endpoints, "--timeout", "3s"])
        .args(flags)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", raftctl.display()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Asks every node to stop (SIGTERM), then kills what is left after 5 s.
fn stop(nodes: &mut [Node]) {
    for n in nodes.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &n.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for n in nodes.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = n.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = n.child.kill();
        let _ = n.child.wait();
    }
}

/// `n` distinct ports that were free a moment ago on 127.0.0.1, below the kernel's ephemeral
/// range when it leaves room (as `raft_node::testing::free_port` and for the same reason:
/// outgoing connections take their source ports from that range, so a member restarted on
/// a port from it may find the port taken). The first is drawn from the clock; the rest
/// follow it.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FLOOR: u16 = 10_000;
    if low > FLOOR + 1000 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let span = u32::from(low - FLOOR);
        let start = FLOOR + ((nanos ^ std::process::id().rotate_left(16)) % span) as u16;
        let mut ports = Vec::with_capacity(n);
        let mut held = Vec::with_capacity(n);
        for p in (start..low).chain(FLOOR..start) {
            if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
                ports.push(p);
                held.push(l);
                if ports.len() == n {
                    return Ok(ports);
                }
            }
        }
    }
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
