//! Hot reload of raftd's configuration: in one process (the `ReloadConfig` rpc's answers),
//! and on a cluster of real raftd processes (a new heartbeat interval read back from the
//! interval the event loop publishes on `/metrics`, an invalid file and a fixed key refused with the old settings
//! kept, and each trigger: file change, SIGHUP and the rpc); auto-compaction turned on by a
//! reload.

#![allow(clippy::print_stdout)]

use raft_node::client::{Client, ClientError};
use raft_node::config::{ConfigSource, NodeConfig};
use raft_node::node::Node;
use raft_node::pb::admin::{ReloadConfigRequest, admin_client::AdminClient};
use raft_node::testing::{self, Launch, Member};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn free_addr() -> String {
    testing::free_addr().unwrap()
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

/// raftd started with `--config <data dir>.toml` only: everything else is in the file.
struct FromFile;

impl Launch for FromFile {
    fn name(&self) -> &str {
        "raftd"
    }

    fn command(&self, m: &Member<'_>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftd"));
        cmd.arg("--config").arg(config_file(m.data_dir));
        cmd
    }
}

/// The configuration file of the member whose data directory is `data_dir`.
fn config_file(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("toml")
}

/// Three raftd processes that read their settings from files.
struct Cluster(testing::Cluster);

impl Cluster {
    fn start(heartbeat: &str) -> Cluster {
        let mut c = Cluster(testing::Cluster::new(FromFile, 3).unwrap());
        for id in 1..=3 {
            c.write(id, heartbeat, "");
            c.0.spawn(id).expect("raftd starts");
        }
        c
    }

    /// Member `id`'s configuration file.
    fn file(&self, id: u64) -> PathBuf {
        config_file(&self.0.data_dir(id))
    }

    /// Writes member `id`'s file with `heartbeat` and `extra` lines at the top level.
    fn write(&self, id: u64, heartbeat: &str, extra: &str) {
        let c = &self.0;
        let initial: Vec<String> = c
            .founders()
            .iter()
            .map(|(i, p)| format!("{i}={p}"))
            .collect();
        let text = format!(
            "id = {id}\nlisten_client = \"{}\"\nlisten_peer = \"{}\"\nlisten_metrics = \"{}\"\n\
             data_dir = \"{}\"\ninitial_cluster = \"{}\"\ncluster_token = \"reload-it\"\n{extra}\n\
             [raft]\nheartbeat_interval = \"{heartbeat}\"\nelection_timeout_base = \"300ms\"\n",
            c.endpoint(id),
            c.peer(id),
            c.metrics(id),
            c.data_dir(id).display(),
            initial.join(",")
        );
        // Written aside and renamed: the watcher never sees half a file.
        let file = self.file(id);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    }

    /// The heartbeat interval in force on member `id`, in seconds, as its event loop
    /// publishes it (`raft_runtime_heartbeat_interval_seconds`, set when the loop takes a
    /// new configuration): raft-core's tuning scenarios check that the interval in force is
    /// the one heartbeats follow.
    async fn heartbeat_interval(&self, id: u64) -> f64 {
        self.metric(id, "raft_runtime_heartbeat_interval_seconds")
            .await
    }

    /// The sum of `name`'s series on member `id`'s `/metrics`.
    async fn metric(&self, id: u64, name: &str) -> f64 {
        testing::metric_sum(&testing::scrape(&self.0, id).await.0, name, &[])
    }

    /// Asserts that every member runs with a heartbeat interval of `secs`.
    async fn assert_heartbeat_interval(&self, secs: f64, when: &str) {
        for id in 1..=3 {
            let got = self.heartbeat_interval(id).await;
            assert!(
                (got - secs).abs() < 1e-9,
                "node {id} {when}: heartbeat interval in force {got} s, expected {secs} s"
            );
        }
    }

    /// Waits until `metric` on member `id` reaches `at_least`.
    async fn wait_metric(&self, id: u64, metric: &str, at_least: f64) {
        let what = format!("{metric} on node {id} to reach {at_least}");
        // On a timeout the members' logs say whether the file was seen and why it was refused.
        self.0
            .eventually(30, &what, || async {
                (self.metric(id, metric).await >= at_least).then_some(())
            })
            .await;
    }
}

const RELOADS: &str = "raftd_config_reloads_total";
const FAILURES: &str = "raftd_config_reload_failures_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_takes_a_new_heartbeat_interval_and_refuses_bad_files() {
    let c = Cluster::start("20ms");
    c.0.leader(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.assert_heartbeat_interval(0.02, "at start").await;

    // Every node picks up its changed file by itself.
    for id in 1..=3 {
        c.write(id, "100ms", "");
    }
    for id in 1..=3 {
        c.wait_metric(id, RELOADS, 1.0).await;
    }
    c.assert_heartbeat_interval(0.1, "after the reload").await;

    // An invalid file on every node: refused (watcher and rpc alike), 100 ms stays.
    for id in 1..=3 {
        c.write(id, "100ms", "log_filter = \"info,[[[\"");
    }
    for id in 1..=3 {
        c.wait_metric(id, FAILURES, 1.0).await;
    }
    let e = reload_rpc(&c.0.endpoint(1)).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("log_filter"), "{e}");
    assert!(c.metric(1, FAILURES).await >= 2.0);
    c.assert_heartbeat_interval(0.1, "after a refused reload")
        .await;

    // A fixed key (listen_peer) with a reloadable one: refused naming the key.
    let moved = free_addr();
    let file = c.file(2);
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace(c.0.peer(2), &moved)
        .replace("log_filter = \"info,[[[\"", "");
    std::fs::write(&file, text).unwrap();
    c.wait_metric(2, FAILURES, 2.0).await;
    let e = reload_rpc(&c.0.endpoint(2)).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("listen_peer"), "{e}");

    // SIGHUP on a node whose file is valid again: reloaded (nothing changed).
    c.write(3, "100ms", "");
    c.wait_metric(3, RELOADS, 2.0).await;
    assert!(kill(&["-HUP"], c.0.pid(3)));
    c.wait_metric(3, RELOADS, 3.0).await;
    assert_eq!(
        reload_rpc(&c.0.endpoint(3)).await.unwrap(),
        Vec::<String>::new()
    );
    c.wait_metric(3, RELOADS, 4.0).await;
    for id in 1..=3 {
        // `kill -0` checks the process exists without signalling it.
        assert!(
            kill(&["-0"], c.0.pid(id)),
            "node {id} exited (SIGHUP must not end raftd)"
        );
    }
}

/// Runs `kill <args> <pid>`; whether it succeeded.
fn kill(args: &[&str], pid: Option<u32>) -> bool {
    let pid = pid.expect("the member runs").to_string();
    Command::new("kill")
        .args(args)
        .arg(pid)
        .status()
        .is_ok_and(|s| s.success())
}

/// Auto-compaction turned on by a reload: the node (its own leader) starts compacting
/// through the log; a retention that does not fit the mode is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_compaction_starts_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_addr(), free_addr());
    let file = dir.path().join("raftd.toml");
    let data = dir.path().join("data");
    let text = node_toml(1, &client, &peer, &data, "50ms");
    std::fs::write(&file, &text).unwrap();
    let source = ConfigSource {
        file: Some(file.clone()),
        overrides: vec![],
    };
    let node = Node::start(&source.load().unwrap(), source, None)
        .await
        .unwrap();
    let c = Client::new(vec![client.clone()]).with_timeout(Duration::from_secs(5));
    let first = testing::put(&c, "k", "0").await.unwrap();
    let compact_revision = || async {
        c.maintenance(|mut m| async move {
            m.hash_kv(raft_kv::pb::etcdserverpb::HashKvRequest { revision: 0 })
                .await
                .map(|r| r.into_inner().compact_revision)
        })
        .await
        .unwrap()
    };
    assert_eq!(compact_revision().await, 0);

    std::fs::write(
        &file,
        text.clone() + "[compaction]\nauto_mode = \"revision\"\nauto_retention = \"1s\"\n",
    )
    .unwrap();
    let e = reload_rpc(&client).await.unwrap_err();
    assert_eq!(code_of(&e), tonic::Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("revision retention"), "{e}");

    std::fs::write(&file, text + "[compaction]\nauto_retention = \"1s\"\n").unwrap();
    assert_eq!(
        reload_rpc(&client).await.unwrap(),
        ["compaction.auto_retention"]
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    loop {
        i += 1;
        testing::put(&c, "k", &i.to_string()).await.unwrap();
        if compact_revision().await > first {
            break;
        }
        assert!(Instant::now() < deadline, "no compaction after the reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown().await;
}
