//! `docs/grafana-dashboard.json` uses only metric names that exist, so it cannot rot: every
//! name in its PromQL is in the catalogue (histogram parts `_bucket`, `_sum`, `_count` only
//! of histograms), and the metrics operators look at first each have a panel (the Raft
//! core's, the client API's per gRPC method, and the process's CPU, memory and descriptors).

use raft_metrics::{Kind, catalogue};
use serde_json::Value;

fn dashboard() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every `expr` string anywhere in the document.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The toolkit's metric names an expression uses (identifiers starting `raft_`/`raftd_`).
fn names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            cur.push(c);
        } else {
            if (cur.starts_with("raft_") || cur.starts_with("raftd_")) && !out.contains(&cur) {
                out.push(cur.clone());
            }
            cur.clear();
        }
    }
    out
}

/// The catalogued metric a series name belongs to, if any.
fn resolve(series: &str) -> Option<&'static raft_metrics::MetricInfo> {
    if let Some(m) = catalogue().find(|m| m.name == series) {
        return Some(m);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        catalogue().find(|m| m.name == base && m.kind == Kind::Histogram)
    })
}

#[test]
fn every_metric_in_the_dashboard_exists() {
    let mut all = Vec::new();
    exprs(&dashboard(), &mut all);
    assert!(all.len() >= 10, "too few queries: {all:?}");
    for e in &all {
        let used = names(e);
        assert!(!used.is_empty(), "query uses no toolkit metric: {e}");
        for n in used {
            assert!(
                resolve(&n).is_some(),
                "`{n}` in `{e}` is not a raft-metrics metric"
            );
        }
    }
}

#[test]
fn the_key_metrics_have_panels() {
    let mut all = Vec::new();
    exprs(&dashboard(), &mut all);
    let used: Vec<String> = all.iter().flat_map(|e| names(e)).collect();
    let uses = |name: &str| {
        used.iter()
            .any(|u| resolve(u).is_some_and(|m| m.name == name))
    };
    use raft_metrics::{net, node, process, runtime, snapshot, wal};
    for name in [
        runtime::PROPOSALS,
        runtime::PROPOSE_TO_COMMIT_SECONDS,
        wal::FSYNC_SECONDS,
        runtime::PEER_REPLICATION_LAG,
        runtime::LEADER_CHANGES,
        runtime::TERM,
        runtime::ELECTIONS,
        net::BYTES_BEFORE_COMPRESSION,
        net::BYTES_AFTER_COMPRESSION,
        net::FRAMES_REJECTED,
        snapshot::BUILT,
        snapshot::INSTALLS,
        node::GRPC_REQUESTS,
        node::GRPC_ERRORS,
        node::GRPC_REQUEST_SECONDS,
        process::CPU_SECONDS,
        process::RESIDENT_MEMORY_BYTES,
        process::OPEN_FDS,
    ] {
        assert!(uses(name), "no panel shows {name}");
    }
}

#[test]
fn name_extraction_sees_histogram_parts_and_ignores_functions() {
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum by (le) (rate(raft_wal_fsync_duration_seconds_bucket[5m])))"
        ),
        ["raft_wal_fsync_duration_seconds_bucket"]
    );
    assert!(resolve("raft_wal_fsync_duration_seconds_bucket").is_some());
    assert!(
        resolve("raft_runtime_term_bucket").is_none(),
        "a gauge has no buckets"
    );
    assert!(resolve("raft_runtime_no_such_metric").is_none());
}
