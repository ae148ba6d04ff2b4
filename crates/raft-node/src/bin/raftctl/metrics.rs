//! `raftctl metrics`: a few key figures from one node's `/metrics`.

use anyhow::Result;
use std::time::Duration;

/// Prints a few key figures of one node's metrics.
pub(super) async fn metrics_summary(address: &str, timeout: Duration) -> Result<i32> {
    use raft_metrics::{net, runtime, wal};
    let text = raft_node::scrape::http_get(address, "/metrics", timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    let e = raft_node::scrape::parse(&text);
    let count = |name: &str| e.sum(name).map_or("-".to_string(), |v| format!("{v:.0}"));
    let ms = |name: &str, q: f64| {
        e.quantile(name, q)
            .map_or("-".to_string(), |v| format!("{:.3} ms", v * 1e3))
    };
    let latency = |name: &str| {
        format!(
            "p50 {}  p99 {}  (n={})",
            ms(name, 0.5),
            ms(name, 0.99),
            count(&format!("{name}_count"))
        )
    };
    let before = e.sum(net::BYTES_BEFORE_COMPRESSION);
    let after = e.sum(net::BYTES_AFTER_COMPRESSION);
    let wire = match (before, after) {
        (Some(b), Some(a)) if a > 0.0 => format!("{b:.0} -> {a:.0} bytes ({:.2}x)", b / a),
        _ => "-".to_string(),
    };
    let rows: Vec<(&str, String)> = vec![
        (
            "role",
            match e.sum(runtime::IS_LEADER) {
                Some(v) if v > 0.0 => "leader".to_string(),
                Some(_) => "not leader".to_string(),
                None => "-".to_string(),
            },
        ),
        ("term", count(runtime::TERM)),
        ("commit index", count(runtime::COMMIT_INDEX)),
        ("applied index", count(runtime::APPLIED_INDEX)),
        (
            "proposals",
            format!(
                "{} ({} failed)",
                count(runtime::PROPOSALS),
                e.sum(runtime::PROPOSALS_FAILED)
                    .map_or("0".to_string(), |v| format!("{v:.0}"))
            ),
        ),
        (
            "propose -> commit",
            latency(runtime::PROPOSE_TO_COMMIT_SECONDS),
        ),
        (
            "propose -> apply",
            latency(runtime::PROPOSE_TO_APPLY_SECONDS),
        ),
        ("fsyncs", latency(wal::FSYNC_SECONDS)),
        ("elections started", count(runtime::ELECTIONS)),
        ("elections won", count(runtime::ELECTIONS_WON)),
        ("leader changes", count(runtime::LEADER_CHANGES)),
        (
            "heartbeats sent/recv",
            format!(
                "{}/{}",
                e.sum_where(runtime::MESSAGES_SENT, "kind", "heartbeat")
                    .map_or("-".to_string(), |v| format!("{v:.0}")),
                e.sum_where(runtime::MESSAGES_RECEIVED, "kind", "heartbeat")
                    .map_or("-".to_string(), |v| format!("{v:.0}"))
            ),
        ),
        ("wire compression", wire),
        ("frames rejected", count(net::FRAMES_REJECTED)),
    ];
    for (k, v) in rows {
        println!("{k:<22}{v}");
    }
    Ok(0)
}
