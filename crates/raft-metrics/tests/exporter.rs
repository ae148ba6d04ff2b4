//! The installed recorder renders recorded metrics with their help text and buckets.

#[test]
fn recorder_renders_descriptions_and_latency_buckets() {
    let handle = raft_metrics::install_recorder().expect("first install succeeds");
    metrics::histogram!(raft_metrics::wal::FSYNC_SECONDS).record(0.000_25);
    metrics::counter!(raft_metrics::wal::WRITER_FAILURES).increment(2);
    let text = handle.render();
    assert!(
        text.contains(&format!("# HELP {}", raft_metrics::wal::FSYNC_SECONDS)),
        "{text}"
    );
    // 250 µs falls in the 0.0003 bucket, not the 0.0002 one.
    let bucket = |le: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(raft_metrics::wal::FSYNC_SECONDS)
                    && l.contains(&format!("le=\"{le}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
    };
    assert_eq!(bucket("0.0002").as_deref(), Some("0"), "{text}");
    assert_eq!(bucket("0.0003").as_deref(), Some("1"), "{text}");
    assert!(
        text.contains(&format!("{} 2", raft_metrics::wal::WRITER_FAILURES)),
        "{text}"
    );
    assert!(
        raft_metrics::install_recorder().is_err(),
        "a second recorder is refused"
    );
}
