//! Unit tests of configuration parsing, overrides, validation and conversion.

use super::*;

fn load(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml(text)
}

fn msg(r: Result<NodeConfig, ConfigError>) -> String {
    r.expect_err("should be refused").to_string()
}

#[test]
fn minimal_file_gets_defaults() {
    let c = load("id = 1").unwrap();
    assert_eq!(c.name(), "node-1");
    assert_eq!(c.data_dir(), PathBuf::from("raftd-1.data"));
    assert_eq!(c.request_size_limit.get(), 1_572_864);
    assert_eq!(c.raft.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(
        c.initial_members().unwrap(),
        BTreeMap::from([(1, "127.0.0.1:2380".to_string())])
    );
    assert_eq!(
        c.legacy_cluster_id(),
        cluster_id_from_token(DEFAULT_CLUSTER_TOKEN)
    );
    assert_eq!(c.explicit_cluster_id(), None);
    assert!(c.warnings().is_empty());
}

#[test]
fn full_file_parses() {
    let c = load(
        r#"
        id = 2
        name = "b"
        data_dir = "/tmp/b"
        listen_client = "127.0.0.1:12379"
        listen_peer = "127.0.0.1:12380"
        listen_metrics = "127.0.0.1:19090"
        initial_cluster = "1=http://127.0.0.1:2380, 2=127.0.0.1:12380,3=localhost:32380"
        cluster_token = "demo"
        log_filter = "info,raft_runtime=debug"
        request_size_limit = "2MiB"

        [raft]
        tick_interval = "5ms"
        heartbeat_interval = "100ms"
        election_timeout_base = "1s"
        jitter_max_delay = "500ms"
        min_leadership_duration = "2s"
        read_mode = "lease"
        max_inflight_bytes = "8MiB"

        [wal]
        segment_size = "16MiB"
        sync_policy = "interval"
        sync_interval = "5ms"
        commit_delay = "1ms"

        [compression]
        codec = "snappy"
        threshold = 1024

        [peer]
        bulk_nice = 3
        network_nice = -2
        network_realtime_priority = 7
        "#,
    )
    .unwrap();
    assert_eq!(c.id, 2);
    assert_eq!(c.initial_members().unwrap().len(), 3);
    assert_eq!(c.initial_members().unwrap()[&1], "127.0.0.1:2380");
    assert_eq!(c.explicit_cluster_id(), Some(cluster_id_from_token("demo")));
    let core = c.raft_core_config().unwrap();
    assert_eq!(core.heartbeat_ticks, 20);
    assert_eq!(core.election_timeout_base_ticks, 200);
    assert_eq!(core.jitter_max_ticks, 100);
    assert_eq!(core.min_leadership_ticks, 400);
    assert_eq!(
        core.read_mode,
        raft_core::ReadMode::Lease {
            drift_margin_ticks: 20
        }
    );
    assert_eq!(core.max_inflight_bytes, 8 << 20);
    let wal = c.wal_settings();
    assert_eq!(wal.segment_size, 16 << 20);
    assert_eq!(
        wal.sync_policy,
        raft_log::SyncPolicy::Interval(Duration::from_millis(5))
    );
    let net = c.transport_config(0xfeed);
    assert_eq!(net.compression.codec, raft_net::Codec::Snappy);
    assert_eq!(net.compression.threshold, 1024);
    assert_eq!(net.cluster_id, 0xfeed);
    assert_eq!(net.bulk_nice, 3);
    assert_eq!(net.network_nice, -2);
    assert_eq!(net.network_realtime_priority, 7);
}

#[test]
fn initial_cluster_as_table() {
    let c = load(
        r#"
        id = 1
        [initial_cluster]
        1 = "127.0.0.1:2380"
        2 = "127.0.0.1:2381"
        "#,
    )
    .unwrap();
    assert_eq!(
        c.initial_members()
            .unwrap()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn election_timeout_must_cover_three_heartbeats() {
    let m = msg(load(
        "id = 1\n[raft]\nheartbeat_interval = \"100ms\"\nelection_timeout_base = \"50ms\"",
    ));
    assert_eq!(
        m,
        "config error: election_timeout_base (50ms) must be at least 3 x heartbeat_interval \
         (100ms)"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let m = msg(load("id = 1\nheartbeat = 5"));
    assert!(m.contains("unknown field `heartbeat`"), "{m}");
    let m = msg(load("id = 1\n[wal]\nsync = \"never\""));
    assert!(m.contains("unknown field `sync`"), "{m}");
    let m = msg(load("id = 1\n[nonsense]\n"));
    assert!(m.contains("nonsense"), "{m}");
}

#[test]
fn bad_values_name_their_key() {
    let cases: &[(&str, &str)] = &[
        ("", "id is required"),
        ("id = 1\n[wal]\nsync_policy = \"sometimes\"", "sometimes"),
        (
            "id = 1\n[raft]\nheartbeat_interval = \"fast\"",
            "heartbeat_interval",
        ),
        ("id = 1\nlisten_client = \"nowhere\"", "listen_client"),
        (
            "id = 1\nlisten_peer = \"127.0.0.1:2379\"",
            "listen_client and listen_peer",
        ),
        (
            "id = 1\ninitial_cluster = \"2=127.0.0.1:2381\"",
            "does not list this node",
        ),
        (
            "id = 1\ninitial_cluster = \"x=127.0.0.1:2381\"",
            "member id `x`",
        ),
        ("id = 1\ninitial_cluster = \"1\"", "not `id=host:port`"),
        ("id = 1\ninitial_cluster = \"1=a:1,1=b:2\"", "appears twice"),
        (
            "id = 1\ncluster_id = 5\ncluster_token = \"x\"",
            "set only one",
        ),
        ("id = 1\nrequest_size_limit = 10", "request_size_limit"),
        ("id = 1\nrequest_size_limit = \"1.5 parsecs\"", "parsecs"),
        (
            "id = 1\n[compression]\nlevel = 99",
            "compression.level (99)",
        ),
        ("id = 1\n[compression]\ncodec = \"lz4\"", "lz4"),
        ("id = 1\n[wal]\nsegment_size = 100", "wal.segment_size"),
        (
            "id = 1\n[raft]\ntick_interval = \"0s\"",
            "raft.tick_interval",
        ),
        (
            "id = 1\n[raft]\nmax_inflight_msgs = 0",
            "raft.max_inflight_msgs",
        ),
        (
            "id = 1\n[raft]\nread_mode = \"lease\"\ncheck_quorum = false",
            "requires raft.check_quorum",
        ),
        ("id = 1\nlog_filter = \"=[\"", "log_filter"),
        ("id = 1\njoin = true", "join is set"),
        ("id = 1\n[peer]\nbulk_nice = 20", "peer.bulk_nice (20)"),
        ("id = 1\n[peer]\nbulk_nice = -1", "peer.bulk_nice (-1)"),
        (
            "id = 1\n[peer]\nnetwork_nice = -21",
            "peer.network_nice (-21)",
        ),
        (
            "id = 1\n[peer]\nnetwork_nice = 20",
            "peer.network_nice (20)",
        ),
        (
            "id = 1\n[peer]\nnetwork_realtime_priority = 100",
            "peer.network_realtime_priority (100)",
        ),
        (
            "id = 1\n[raft]\napply_linger = \"2s\"",
            "raft.apply_linger (2s) must be at most 1s",
        ),
    ];
    for (text, want) in cases {
        let m = msg(load(text));
        assert!(m.starts_with("config error: "), "{text}: {m}");
        assert!(m.contains(want), "{text}: `{m}` lacks `{want}`");
    }
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raftd.toml");
    std::fs::write(
        &path,
        "id = 1\nname = \"file\"\n[raft]\nheartbeat_interval = \"20ms\"\n",
    )
    .unwrap();
    let overrides = vec![
        parse_override("name=flag").unwrap(),
        parse_override("raft.heartbeat_interval=40ms").unwrap(),
        parse_override("wal.sync_policy=never").unwrap(),
        parse_override("raft.max_inflight_msgs = 8").unwrap(),
    ];
    let c = NodeConfig::load(Some(&path), &overrides).unwrap();
    assert_eq!(c.name(), "flag");
    assert_eq!(c.raft.heartbeat_interval, Duration::from_millis(40));
    assert_eq!(c.raft.max_inflight_msgs, 8);
    assert_eq!(c.wal_settings().sync_policy, raft_log::SyncPolicy::Never);
    assert!(c.warnings()[0].contains("NEVER fsynced"));

    let bad = NodeConfig::load(Some(&path), &[parse_override("raft.bogus=1").unwrap()]);
    assert!(msg(bad).contains("unknown field `bogus`"));
    let missing = NodeConfig::load(Some(&dir.path().join("nope.toml")), &[]);
    assert!(msg(missing).contains("cannot read the config file"));
    assert!(parse_override("novalue").is_err());
}

#[test]
fn static_changes_name_restart_only_keys() {
    let a = load("id = 1").unwrap();
    let mut b = a.clone();
    b.raft.heartbeat_interval = Duration::from_millis(30);
    b.compression.codec = CodecKey::None;
    assert!(a.static_changes(&b).unwrap().is_empty());
    b.listen_client = "127.0.0.1:9999".into();
    b.wal.sync_policy = SyncPolicyKey::Never;
    assert_eq!(a.static_changes(&b).unwrap(), ["listen_client", "wal"]);
    let mut c = a.clone();
    c.raft.apply_linger = Duration::ZERO;
    assert_eq!(a.static_changes(&c).unwrap(), ["raft.apply_linger"]);
}

#[test]
fn display_round_trips() {
    let c = load("id = 3\ninitial_cluster = \"3=127.0.0.1:2380\"").unwrap();
    let again = load(&c.to_string()).unwrap();
    assert_eq!(c, again);
}

#[test]
fn token_hash_is_stable() {
    assert_eq!(cluster_id_from_token(""), 0xcbf2_9ce4_8422_2325);
    assert_ne!(cluster_id_from_token("a"), cluster_id_from_token("b"));
}

#[test]
fn documented_example_parses() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("docs have a toml example") + 8;
    let end = start + doc[start..].find("```").unwrap();
    let c = load(&doc[start..end]).unwrap();
    assert_eq!(c.id, 1);
    assert_eq!(c.raft, RaftSection::default());
    assert_eq!(c.wal, WalSection::default());
    assert_eq!(c.compression, CompressionSection::default());
    assert_eq!(c.peer, PeerSection::default());
    assert_eq!(c.auth, crate::config::AuthSection::default());
    assert_eq!(
        c.request_size_limit,
        NodeConfig::default().request_size_limit
    );
}

#[test]
fn snapshot_triggers_reach_the_runtime() {
    let c = load("id = 1\n[raft]\nsnapshot_threshold = 5000\nsnapshot_log_bytes = \"64MiB\"\n")
        .unwrap();
    let rc = crate::node::runtime_config(&c).unwrap();
    assert_eq!(rc.snapshot_threshold, 5000);
    assert_eq!(rc.snapshot_log_bytes, 64 << 20);
    let off = load("id = 1\n[raft]\nsnapshot_log_bytes = 0\n").unwrap();
    assert_eq!(
        crate::node::runtime_config(&off)
            .unwrap()
            .snapshot_log_bytes,
        0
    );
    let default = crate::node::runtime_config(&load("id = 1\n").unwrap()).unwrap();
    assert_eq!(default.snapshot_log_bytes, 1 << 30);
    assert_eq!(default.apply_linger, Duration::from_millis(5));
    let linger = load("id = 1\n[raft]\napply_linger = \"0s\"\n").unwrap();
    assert!(
        crate::node::runtime_config(&linger)
            .unwrap()
            .apply_linger
            .is_zero()
    );
}

#[test]
fn snapshot_build_rate_is_validated() {
    let default = load("id = 1").unwrap();
    assert_eq!(
        default.snapshot.max_build_rate.get(),
        raft_kv::pace::DEFAULT_MAX_BUILD_RATE
    );
    let c = load("id = 1\n[snapshot]\nmax_build_rate = \"64MiB\"\n").unwrap();
    assert_eq!(c.snapshot.max_build_rate.get(), 64 << 20);
    let off = load("id = 1\n[snapshot]\nmax_build_rate = \"0\"\n").unwrap();
    assert_eq!(off.snapshot.max_build_rate.get(), 0);
    let m = msg(load("id = 1\n[snapshot]\nmax_build_rate = \"100KiB\"\n"));
    assert!(m.contains("snapshot.max_build_rate"), "{m}");
    let m = msg(load("id = 1\n[snapshot]\nmax_build_rate = \"fast\"\n"));
    assert!(m.contains("max_build_rate") || m.contains("fast"), "{m}");
}

#[test]
fn watch_section_parses_validates_and_needs_a_restart() {
    let c = load(
        r#"
        id = 1
        [watch]
        progress_interval = "5s"
        stream_buffer_events = 100
        stream_buffer_bytes = "1MiB"
        "#,
    )
    .unwrap();
    let hub = c.watch.hub_config();
    assert_eq!(hub.progress_interval, Duration::from_secs(5));
    assert_eq!(
        (hub.stream_buffer_events, hub.stream_buffer_bytes),
        (100, 1 << 20)
    );
    assert_eq!(hub.inbox_bytes, 64 << 20, "unset keys keep their defaults");
    assert_eq!(
        load("id = 1").unwrap().watch.progress_interval,
        Duration::from_secs(600),
        "etcd's 10 minutes"
    );
    assert!(
        msg(load("id = 1\n[watch]\nprogress_interval = \"10ms\""))
            .contains("watch.progress_interval")
    );
    assert!(
        msg(load("id = 1\n[watch]\nstream_buffer_events = 0")).contains("stream_buffer_events")
    );
    assert!(msg(load("id = 1\n[watch]\ninbox_bytes = 100")).contains("watch.inbox_bytes"));
    assert!(msg(load("id = 1\n[watch]\nbuffer = 1")).contains("buffer"));
    let a = load("id = 1").unwrap();
    assert_eq!(a.static_changes(&c).unwrap(), ["watch"]);
}

#[test]
fn tls_and_limits_keys_parse_and_are_checked() {
    let c = load(
        r#"
        id = 1
        listen_metrics = ":9191"
        [tls]
        cert_file = "/etc/raftd/client.pem"
        key_file = "/etc/raftd/client.key"
        trusted_ca_file = "/etc/raftd/ca.pem"
        client_cert_auth = true
        peer_cert_file = "/etc/raftd/peer.pem"
        peer_key_file = "/etc/raftd/peer.key"
        peer_trusted_ca_file = "/etc/raftd/ca.pem"
        peer_cert_cluster = "prod-eu.1"
        [limits]
        max_concurrent_streams = 8
        max_range_response_bytes = "1MiB"
        "#,
    )
    .unwrap();
    assert!(c.tls.client_tls() && c.tls.peer_tls() && c.tls.peer_client_cert_auth);
    assert_eq!(c.metrics_addr().as_deref(), Some("127.0.0.1:9191"));
    assert_eq!(c.limits.max_range_response_bytes, ByteSize::mib(1));
    let net = c.transport_config(1);
    assert_eq!(net.max_concurrent_streams, 16);
    // A missing file is an error naming the key.
    let e = c.tls.client_pem().unwrap_err().to_string();
    assert!(
        e.contains("tls.cert_file") && e.contains("client.pem"),
        "{e}"
    );

    for (text, want) in [
        ("[tls]\ncert_file = \"a\"", "go together"),
        ("[tls]\ntrusted_ca_file = \"a\"", "needs tls.cert_file"),
        (
            "[tls]\ncert_file = \"a\"\nkey_file = \"b\"\nclient_cert_auth = true",
            "needs tls.trusted_ca_file",
        ),
        ("[tls]\npeer_cert_file = \"a\"", "set all three"),
        ("[tls]\npeer_cert_cluster = \"a/b\"", "peer_cert_cluster"),
        (
            "[limits]\nmax_concurrent_streams = 0",
            "limits.max_concurrent_streams",
        ),
        ("[tls]\nbogus = 1", "unknown field"),
    ] {
        let e = msg(load(&format!("id = 1\n{text}")));
        assert!(e.contains(want), "{text}: {e}");
    }
    // Neither TLS nor limits can change at run time.
    let mut d = c.clone();
    d.tls.client_cert_auth = false;
    d.limits.max_concurrent_streams = 9;
    assert_eq!(c.static_changes(&d).unwrap(), ["tls", "limits"]);
}

#[test]
fn lease_section_parses_validates_and_needs_a_restart() {
    let d = load("id = 1").unwrap();
    // etcd's minimum TTL: 1.5 election timeouts (150ms + 100ms jitter), rounded up.
    assert_eq!(d.lease_min_ttl(), 1);
    let k = d.lease_keeper();
    assert_eq!(k.lessor.checkpoint_interval, Some(Duration::from_secs(300)));
    assert_eq!(k.lessor.extend_on_promote, Duration::from_millis(250));
    assert_eq!(k.lessor.revoke_rate, 1000);
    let c = load(
        r#"
        id = 1
        [raft]
        election_timeout_base = "1s"
        jitter_max_delay = "1s"
        [lease]
        checkpoint_interval = "0s"
        revoke_rate = 50
        "#,
    )
    .unwrap();
    assert_eq!(c.lease_min_ttl(), 3);
    assert_eq!(c.lease_keeper().lessor.checkpoint_interval, None);
    assert_eq!(c.lease_keeper().lessor.revoke_rate, 50);
    let m = load("id = 1\n[lease]\nmin_ttl = \"7s\"").unwrap();
    assert_eq!(m.lease_min_ttl(), 7);
    assert!(
        msg(load("id = 1\n[lease]\ncheckpoint_interval = \"10ms\""))
            .contains("lease.checkpoint_interval")
    );
    assert!(msg(load("id = 1\n[lease]\nrevoke_rate = 0")).contains("lease.revoke_rate"));
    assert!(msg(load("id = 1\n[lease]\nttl = 1")).contains("ttl"));
    assert_eq!(d.static_changes(&m).unwrap(), ["lease"]);
}
