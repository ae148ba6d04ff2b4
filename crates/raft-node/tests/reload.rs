//! Hot reload of raftd's configuration: in one process (the `ReloadConfig` rpc's answers),
//! and on a cluster of real raftd processes (a new heartbeat interval seen in the heartbeat
//! counter of `/metrics`, an invalid file and a fixed key refused with the old settings
//! kept, and each trigger: file change, SIGHUP and the rpc).

#![allow(clippy::print_stdout)]

use raft_kv::pb::etcdserverpb::StatusRequest;
use raft_node::client::{Client, ClientError};
use raft_node::config::{ConfigSource, NodeConfig};
use raft_node::node::Node;
use raft_node::pb::admin::{ReloadConfigRequest, admin_client::AdminClient};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Asks `addr` to reload; the changed keys or the refusal.
async fn reload_rpc(addr: &str) -> Result<Vec<String>, ClientError> {
    Client::new(vec![addr.to_string()])
        .with_timeout(Duration::from_secs(5))
        .call(|ch| async move {
            AdminClient::new(ch)
                .reload_config(ReloadConfigRequest {})
                .await
                .map(|r| r.into_inner().changed)
        })
        .await
}

fn code_of(e: &ClientError) -> tonic::Code {
    match e {
        ClientError::Status(s) => s.code(),
        other => panic!("expected a status, got {other}"),
    }
}

/// A single-node configuration file's text.
fn node_toml(id: u64, client: &str, peer: &str, dir: &Path, heartbeat: &str) -> String {
    format!(
        "id = {id}\nlisten_client = \"{client}\"\nlisten_peer = \"{peer}\"\n\
         data_dir = \"{}\"\ncluster_token = \"reload\"\n\
         [raft]\nheartbeat_interval = \"{heartbeat}\"\nelection_timeout_base = \"300ms\"\n",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rpc_reports_changes_and_refusals_keep_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_addr(), free_addr());
    let file = dir.path().join("raftd.toml");
    let data = dir.path().join("data");
    let text = |hb: &str| node_toml(1, &client, &peer, &data, hb);
    std::fs::write(&file, text("50ms")).unwrap();
    let source = ConfigSource {
        file: Some(file.clone()),
        overrides: vec![("raft.max_inflight_msgs".into(), toml::Value::Integer(16))],
    };
    let config = source.load().unwrap();
    // No file watcher or SIGHUP handler here: only the rpc reloads.
    let node = Node::start(&config, source, None).await.unwrap();
    let current = || node.reloader().current();

    assert_eq!(reload_rpc(&client).await.unwrap(), Vec::<String>::new());
    std::fs::write(
        &file,
        text("20ms") + "max_batch_proposals = 64\n[compression]\ncodec = \"snappy\"\n",
    )
    .unwrap();
    let mut changed = reload_rpc(&client).await.unwrap();
    changed.sort();
    assert_eq!(
        changed,
        [
            "compression.codec",
            "raft.heartbeat_interval",
            "raft.max_batch_proposals"
        ]
    );
    assert_eq!(current().raft.heartbeat_interval, Duration::from_millis(20));
    assert_eq!(current().raft.max_inflight_msgs, 16, "the flag still wins");

    // An invalid file: refused, nothing changes.
    std::fs::write(&file, text("20ms") + "max_entries_per_append = \"many\"\n").unwrap();
    let e = reload_rpc(&client).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("max_entries_per_append"), "{e}");
    std::fs::write(&file, text("500ms")).unwrap(); // election timeout < 3 x heartbeat
    let e = reload_rpc(&client).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("heartbeat_interval"), "{e}");
    assert_eq!(current().raft.heartbeat_interval, Duration::from_millis(20));

    // A fixed key beside a reloadable one: refused by name, nothing changes.
    let moved = node_toml(1, &free_addr(), &peer, &data, "30ms");
    std::fs::write(&file, moved).unwrap();
    let e = reload_rpc(&client).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::FailedPrecondition, "{e}");
    assert!(
        e.to_string().contains("listen_client") && e.to_string().contains("restart"),
        "{e}"
    );
    let kept: NodeConfig = (*current()).clone();
    assert_eq!(kept.raft.heartbeat_interval, Duration::from_millis(20));
    assert_eq!(kept.raft.max_batch_proposals, 64);
    assert_eq!(kept.compression.codec, raft_node::config::CodecKey::Snappy);
    assert_eq!(kept.listen_client, client);
    node.shutdown().await;
}

/// The sum of every series of `name` in `addr`'s Prometheus exposition (0 when absent).
fn scrape(addr: &str, name: &str) -> f64 {
    scrape_labelled(addr, name, "")
}

/// The sum of the series of `name` whose labels contain `label` (e.g. `kind="heartbeat"`).
fn scrape_labelled(addr: &str, name: &str, label: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0.0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Proc {
    child: Child,
    client: String,
    metrics: String,
    file: PathBuf,
    peer: String,
    data: PathBuf,
}

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Proc>,
    initial: String,
}

impl Cluster {
    fn start(heartbeat: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<String> = (0..3).map(|_| free_addr()).collect();
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}={p}", i + 1))
            .collect();
        let mut c = Cluster {
            nodes: Vec::new(),
            initial: initial.join(","),
            _dir: dir,
        };
        for (i, peer) in peers.into_iter().enumerate() {
            let id = i as u64 + 1;
            let base = c._dir.path().join(format!("node{id}"));
            std::fs::create_dir_all(&base).unwrap();
            let p = Proc {
                child: Command::new("true").spawn().unwrap(),
                client: free_addr(),
                metrics: free_addr(),
                file: base.join("raftd.toml"),
                peer,
                data: base.join("data"),
            };
            c.nodes.push(p);
            c.write(i, heartbeat, "");
            let p = &mut c.nodes[i];
            let log = std::fs::File::create(base.join("raftd.log")).unwrap();
            let _ = p.child.wait();
            p.child = Command::new(env!("CARGO_BIN_EXE_raftd"))
                .arg("--config")
                .arg(&p.file)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("raftd starts");
        }
        c
    }

    /// Writes node `i`'s file with `heartbeat` and `extra` lines at the top level.
    fn write(&self, i: usize, heartbeat: &str, extra: &str) {
        let p = &self.nodes[i];
        let text = format!(
            "id = {}\nlisten_client = \"{}\"\nlisten_peer = \"{}\"\nlisten_metrics = \"{}\"\n\
             data_dir = \"{}\"\ninitial_cluster = \"{}\"\ncluster_token = \"reload-it\"\n{extra}\n\
             [raft]\nheartbeat_interval = \"{heartbeat}\"\nelection_timeout_base = \"300ms\"\n",
            i + 1,
            p.client,
            p.peer,
            p.metrics,
            p.data.display(),
            self.initial
        );
        // Written aside and renamed: the watcher never sees half a file.
        let tmp = p.file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p.file).unwrap();
    }

    /// Heartbeat messages sent, summed over the nodes.
    fn heartbeats(&self) -> f64 {
        self.nodes
            .iter()
            .map(|p| {
                scrape_labelled(
                    &p.metrics,
                    "raft_runtime_messages_sent_total",
                    "kind=\"heartbeat\"",
                )
            })
            .sum()
    }

    async fn wait_leader(&self) {
        let c = Client::new(self.nodes.iter().map(|p| p.client.clone()).collect())
            .with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = c
                .maintenance(|mut m| async move {
                    m.status(StatusRequest {}).await.map(|r| r.into_inner())
                })
                .await;
            if st.is_ok_and(|s| s.leader != 0) {
                return;
            }
            assert!(Instant::now() < deadline, "no leader within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Heartbeats sent per second by the whole cluster, over `secs` seconds.
    async fn heartbeat_rate(&self, secs: f64) -> f64 {
        let (t0, n0) = (Instant::now(), self.heartbeats());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        (self.heartbeats() - n0) / t0.elapsed().as_secs_f64()
    }

    /// The heartbeat rate over 2 s windows, up to 3 of them, until one is below `limit`:
    /// a window that caught an election (its catch-up appends and heartbeats) on a loaded
    /// machine is measured again; a setting that did not change fails every window.
    async fn heartbeat_rate_below(&self, limit: f64) -> f64 {
        let mut rate = f64::INFINITY;
        for _ in 0..3 {
            rate = self.heartbeat_rate(2.0).await;
            if rate < limit {
                break;
            }
        }
        rate
    }

    /// Waits until `metric` on node `i` reaches `at_least`.
    async fn wait_metric(&self, i: usize, metric: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while scrape(&self.nodes[i].metrics, metric) < at_least {
            assert!(
                Instant::now() < deadline,
                "{metric} on node {} stayed below {at_least}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.nodes {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

const RELOADS: &str = "raftd_config_reloads_total";
const FAILURES: &str = "raftd_config_reload_failures_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_takes_a_new_heartbeat_interval_and_refuses_bad_files() {
    let c = Cluster::start("20ms");
    c.wait_leader().await;
    // 20 ms: 50 rounds a second to 2 followers.
    let fast = c.heartbeat_rate(2.0).await;
    assert!(fast > 0.0, "no heartbeats counted");

    // Every node picks up its changed file by itself.
    for i in 0..3 {
        c.write(i, "100ms", "");
    }
    for i in 0..3 {
        c.wait_metric(i, RELOADS, 1.0).await;
    }
    let slow = c.heartbeat_rate_below(fast / 2.0).await;
    println!("heartbeats/s: {fast:.1} at 20ms, {slow:.1} at 100ms");
    assert!(
        slow < fast / 2.0,
        "heartbeats at 100 ms ({slow:.1}/s) should be about a fifth of those at 20 ms \
         ({fast:.1}/s)"
    );

    // An invalid file on every node: refused (watcher and rpc alike), 100 ms stays.
    for i in 0..3 {
        c.write(i, "100ms", "log_filter = \"info,[[[\"");
    }
    for i in 0..3 {
        c.wait_metric(i, FAILURES, 1.0).await;
    }
    let e = reload_rpc(&c.nodes[0].client).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("log_filter"), "{e}");
    assert!(scrape(&c.nodes[0].metrics, FAILURES) >= 2.0);
    let still = c.heartbeat_rate_below(fast / 2.0).await;
    println!("heartbeats/s after the invalid file: {still:.1}");
    assert!(
        still < fast / 2.0,
        "the old settings stay after a refused reload ({still:.1}/s)"
    );

    // A fixed key (listen_peer) with a reloadable one: refused naming the key.
    let moved = free_addr();
    let p = &c.nodes[1];
    let text = std::fs::read_to_string(&p.file).unwrap();
    let text = text
        .replace(&p.peer, &moved)
        .replace("log_filter = \"info,[[[\"", "");
    std::fs::write(&p.file, text).unwrap();
    c.wait_metric(1, FAILURES, 2.0).await;
    let e = reload_rpc(&p.client).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("listen_peer"), "{e}");

    // SIGHUP on a node whose file is valid again: reloaded (nothing changed).
    c.write(2, "100ms", "");
    c.wait_metric(2, RELOADS, 2.0).await;
    let pid = c.nodes[2].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    c.wait_metric(2, RELOADS, 3.0).await;
    assert_eq!(
        reload_rpc(&c.nodes[2].client).await.unwrap(),
        Vec::<String>::new()
    );
    c.wait_metric(2, RELOADS, 4.0).await;
    for (i, p) in c.nodes.iter().enumerate() {
        assert!(
            p_alive(p),
            "node {} exited (SIGHUP must not end raftd)",
            i + 1
        );
    }
}

fn p_alive(p: &Proc) -> bool {
    // `kill -0` checks the process exists without signalling it.
    Command::new("kill")
        .args(["-0", &p.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
