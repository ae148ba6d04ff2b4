//! What raftd tells operators about itself, checked on a real process: client API metrics
//! per gRPC method (calls, failures by status code, durations) after etcdctl calls, and the
//! process metrics, all on `/metrics`.

#![allow(clippy::print_stdout)]

use raft_node::testing::{Cluster, Raftd, etcdctl, etcdctl_once, metric_sum as sum, scrape};
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

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
        // Sent once each (no retries): the counts below are exact.
        let run = |args: &[&str]| etcdctl_once(&etcdctl, &endpoint, args, None);
        for i in 0..3 {
            let out = run(&["put", &format!("k{i}"), "v"]);
            assert!(out.ok, "{out:?}");
        }
        let out = run(&["get", "k", "--prefix"]);
        assert!(out.ok, "{out:?}");
        // A lease that does not exist: NotFound.
        let out = run(&["lease", "revoke", "1234abcd"]);
        assert!(!out.ok, "{out:?}");

        let (m, text) = scrape(&cluster, 1).await;
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
