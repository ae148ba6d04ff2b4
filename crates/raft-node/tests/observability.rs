//! What raftd tells operators about itself, checked on a real process: client API metrics
//! per gRPC method (calls, failures by status code, durations) after etcdctl calls, and the
//! process metrics, all on `/metrics`.

#![allow(clippy::print_stdout)]

use raft_node::scrape::Exposition;
use raft_node::testing::{Cluster, Raftd};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `etcdctl` from `PATH`; `None` when it is missing, which fails the test under `CI=true`.
fn etcdctl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("etcdctl"))
            .find(|p| p.is_file())
    });
    assert!(
        found.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "etcdctl is not on PATH and CI=true: install Debian's etcd-client"
    );
    found
}

/// Node 1's parsed `/metrics` and its text.
async fn scrape(cluster: &Cluster) -> (Exposition, String) {
    let (code, body) =
        raft_node::scrape::http_request(cluster.metrics(1), "/metrics", Duration::from_secs(10))
            .await
            .expect("GET /metrics");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "{text}");
    (raft_node::scrape::parse(&text), text)
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn sum(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_calls_show_up_per_grpc_method_with_error_codes() {
    use raft_metrics::node::{GRPC_ERRORS, GRPC_REQUEST_SECONDS, GRPC_REQUESTS};
    use raft_metrics::process;
    let Some(etcdctl) = etcdctl() else {
        println!("skipping: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .with_metrics()
            .calm();
        let cluster = Cluster::start(raftd, 1).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let endpoint = cluster.endpoint(1);
        let run = |args: &[&str]| {
            Command::new(&etcdctl)
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoint, "--command-timeout=5s"])
                .args(args)
                .output()
                .unwrap()
        };
        for i in 0..3 {
            let out = run(&["put", &format!("k{i}"), "v"]);
            assert!(out.status.success(), "{out:?}");
        }
        let out = run(&["get", "k", "--prefix"]);
        assert!(out.status.success(), "{out:?}");
        // A lease that does not exist: NotFound.
        let out = run(&["lease", "revoke", "1234abcd"]);
        assert!(!out.status.success(), "{out:?}");

        let (m, text) = scrape(&cluster).await;
        let put = [("method", "/etcdserverpb.KV/Put")];
        let range = [("method", "/etcdserverpb.KV/Range")];
        let revoke = [("method", "/etcdserverpb.Lease/LeaseRevoke")];
        assert_eq!(sum(&m, GRPC_REQUESTS, &put), 3.0, "{text}");
        assert_eq!(sum(&m, GRPC_ERRORS, &put), 0.0, "{text}");
        assert!(sum(&m, GRPC_REQUESTS, &range) >= 1.0, "{text}");
        assert_eq!(sum(&m, GRPC_REQUESTS, &revoke), 1.0, "{text}");
        assert_eq!(
            sum(&m, GRPC_ERRORS, &[revoke[0], ("code", "NotFound")]),
            1.0,
            "{text}"
        );
        let count = format!("{GRPC_REQUEST_SECONDS}_count");
        assert_eq!(sum(&m, &count, &put), 3.0, "{text}");
        let bucket = format!("{GRPC_REQUEST_SECONDS}_bucket");
        assert_eq!(
            sum(&m, &bucket, &[put[0], ("le", "+Inf")]),
            3.0,
            "every put in the +Inf bucket: {text}"
        );

        // Process metrics, read when /metrics is rendered (CPU time counts whole seconds,
        // which a fresh process may not have used yet).
        assert!(
            m.samples.iter().any(|s| s.name == process::CPU_SECONDS),
            "{text}"
        );
        for name in [
            process::RESIDENT_MEMORY_BYTES,
            process::OPEN_FDS,
            process::THREADS,
        ] {
            assert!(sum(&m, name, &[]) > 0.0, "{name}:\n{text}");
        }
        assert!(
            text.contains(&format!("# TYPE {} counter", process::CPU_SECONDS)),
            "{text}"
        );
    })
    .await
    .expect("test took longer than 60 s");
}

/// `log_format = "json"`: every line raftd writes is one JSON object with the level, the
/// target and the message, and the start-up line carries its fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .calm()
            .args(["--set", "log_format=json"]);
        let cluster = Cluster::start(raftd, 1).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let log = cluster.log(1);
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{log}")))
            .collect();
        assert!(!lines.is_empty(), "no log lines");
        for v in &lines {
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&v["level"].as_str().unwrap_or("")),
                "{v}"
            );
            assert!(v["target"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
            assert!(v["timestamp"].is_string(), "{v}");
            assert!(v["fields"]["message"].is_string(), "{v}");
        }
        assert!(
            lines
                .iter()
                .any(|v| v["fields"]["node_id"] == 1 && v["fields"]["cluster_id"].is_string()),
            "no start-up line with node_id and cluster_id:\n{log}"
        );
    })
    .await
    .expect("test took longer than 60 s");
}
