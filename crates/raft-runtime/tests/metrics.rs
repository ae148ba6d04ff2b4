//! The runtime's metrics as a 3-node in-process cluster records them: its own test binary,
//! because the Prometheus recorder is process-wide (the three nodes' series add up).

#[allow(dead_code)]
#[path = "cluster/harness.rs"]
mod harness;

use harness::{Cluster, put};
use raft_core::ReadMode;
use std::time::{Duration, Instant};

/// The value of the series line starting with `series ` (name and labels as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_records_elections_messages_lease_reads_and_peer_lag() {
    let prom = raft_metrics::install_recorder().expect("the only recorder of this binary");
    let c = Cluster::start_opts(
        3,
        0,
        ReadMode::Lease {
            drift_margin_ticks: 3,
        },
    )
    .await;
    let leader = c.wait_leader().await;
    for i in 0..5 {
        c.handle(leader)
            .propose(put("x", &i.to_string()))
            .await
            .unwrap();
    }
    // Reads on the leader: once its lease is established they are answered from it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        c.handle(leader).read_index().await.unwrap();
        let text = prom.render();
        let lease = value(&text, raft_metrics::runtime::LEASE_READS).unwrap_or(0.0);
        let lags = text
            .lines()
            .filter(|l| l.starts_with("raft_runtime_peer_replication_lag{"))
            .count();
        if lease > 0.0 && lags == 2 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no lease read or lag gauges:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let count = |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert!(count("raft_runtime_elections_won_total") >= 1.0);
    assert!(count("raft_runtime_pre_votes_total") >= 1.0);
    assert!(count("raft_runtime_elections_total") >= 1.0);
    assert!(count("raft_runtime_messages_sent_total{kind=\"heartbeat\"}") > 0.0);
    assert!(count("raft_runtime_messages_received_total{kind=\"heartbeat\"}") > 0.0);
    assert!(count("raft_runtime_messages_sent_total{kind=\"pre_vote\"}") > 0.0);
    assert!(count("raft_runtime_messages_sent_total{kind=\"append\"}") > 0.0);
    assert!(count("raft_runtime_append_entries_per_message_count") > 0.0);
    assert!(count(raft_metrics::runtime::READ_INDEX_READS) > 0.0);
}
