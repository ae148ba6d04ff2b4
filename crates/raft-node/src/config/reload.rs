//! What a hot reload compares: where the configuration comes from ([`ConfigSource`]) and
//! which keys differ between the configuration in force and a new one ([`NodeConfig::diff`]).

use super::{ConfigError, NodeConfig};
use std::path::PathBuf;

/// Where raftd's configuration comes from: the file and the command-line overrides, which
/// keep winning over the file at every reload.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// The `--config` file, if any.
    pub file: Option<PathBuf>,
    /// The flags and `--set` overrides, in order.
    pub overrides: Vec<(String, toml::Value)>,
}

impl ConfigSource {
    /// Reads the file, applies the overrides and validates the result.
    pub fn load(&self) -> Result<NodeConfig, ConfigError> {
        NodeConfig::load(self.file.as_deref(), &self.overrides)
    }
}

/// Why a new configuration cannot replace the one in force.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// Settings that need a restart differ.
    #[error(
        "these settings cannot change while raftd runs (restart to change them): {}",
        .0.join(", ")
    )]
    Fixed(Vec<&'static str>),
}

impl NodeConfig {
    /// The reloadable keys ([`super::RELOADABLE_KEYS`]) whose values differ in `new`.
    pub fn reloadable_changes(&self, new: &NodeConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, same: bool| {
            if !same {
                out.push(key);
            }
        };
        let (a, b) = (&self.raft, &new.raft);
        check("log_filter", self.log_filter == new.log_filter);
        check(
            "quota_backend_bytes",
            self.quota_backend_bytes == new.quota_backend_bytes,
        );
        check(
            "raft.heartbeat_interval",
            a.heartbeat_interval == b.heartbeat_interval,
        );
        check(
            "raft.election_timeout_base",
            a.election_timeout_base == b.election_timeout_base,
        );
        check(
            "raft.jitter_max_delay",
            a.jitter_max_delay == b.jitter_max_delay,
        );
        check(
            "raft.min_leadership_duration",
            a.min_leadership_duration == b.min_leadership_duration,
        );
        check(
            "raft.max_entries_per_append",
            a.max_entries_per_append == b.max_entries_per_append,
        );
        check(
            "raft.max_bytes_per_append",
            a.max_bytes_per_append == b.max_bytes_per_append,
        );
        check(
            "raft.max_inflight_msgs",
            a.max_inflight_msgs == b.max_inflight_msgs,
        );
        check(
            "raft.max_inflight_bytes",
            a.max_inflight_bytes == b.max_inflight_bytes,
        );
        check(
            "raft.max_batch_proposals",
            a.max_batch_proposals == b.max_batch_proposals,
        );
        check(
            "raft.snapshot_threshold",
            a.snapshot_threshold == b.snapshot_threshold,
        );
        check(
            "raft.snapshot_log_bytes",
            a.snapshot_log_bytes == b.snapshot_log_bytes,
        );
        check(
            "raft.request_timeout",
            a.request_timeout == b.request_timeout,
        );
        let (c, d) = (&self.compression, &new.compression);
        check("compression.codec", c.codec == d.codec);
        check("compression.level", c.level == d.level);
        check("compression.threshold", c.threshold == d.threshold);
        let (c, d) = (&self.compaction, &new.compaction);
        check("compaction.auto_mode", c.auto_mode == d.auto_mode);
        check(
            "compaction.auto_retention",
            c.auto_retention == d.auto_retention,
        );
        check("compaction.max_rate", c.max_rate == d.max_rate);
        let (c, d) = (&self.backup, &new.backup);
        check("backup.keep_for", c.keep_for == d.keep_for);
        check("backup.keep_bases", c.keep_bases == d.keep_bases);
        out
    }

    /// The reloadable keys that differ in `new`, or the fixed keys that differ (which a
    /// reload refuses).
    pub fn diff(&self, new: &NodeConfig) -> Result<Vec<&'static str>, DiffError> {
        let fixed = self.static_changes(new);
        if !fixed.is_empty() {
            return Err(DiffError::Fixed(fixed));
        }
        Ok(self.reloadable_changes(new))
    }
}

impl NodeConfig {
    /// The static keys (those that need a restart) whose values differ in `new`: a hot
    /// reload must refuse a new configuration for which this is not empty.
    pub fn static_changes(&self, new: &NodeConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, same: bool| {
            if !same {
                out.push(key);
            }
        };
        check("id", self.id == new.id);
        check("name", self.name == new.name);
        check("data_dir", self.data_dir == new.data_dir);
        check("listen_client", self.listen_client == new.listen_client);
        check("listen_peer", self.listen_peer == new.listen_peer);
        check("listen_metrics", self.listen_metrics == new.listen_metrics);
        check(
            "advertise_client",
            self.advertise_client == new.advertise_client,
        );
        check(
            "initial_cluster",
            self.initial_cluster == new.initial_cluster,
        );
        check(
            "cluster_id",
            self.explicit_cluster_id() == new.explicit_cluster_id(),
        );
        check("join", self.join == new.join);
        check(
            "request_size_limit",
            self.request_size_limit == new.request_size_limit,
        );
        check(
            "raft.tick_interval",
            self.raft.tick_interval == new.raft.tick_interval,
        );
        check("raft.pre_vote", self.raft.pre_vote == new.raft.pre_vote);
        check(
            "raft.check_quorum",
            self.raft.check_quorum == new.raft.check_quorum,
        );
        check(
            "raft.lazy_commit",
            self.raft.lazy_commit == new.raft.lazy_commit,
        );
        check("raft.read_mode", self.raft.read_mode == new.raft.read_mode);
        check(
            "raft.apply_linger",
            self.raft.apply_linger == new.raft.apply_linger,
        );
        check(
            "raft.lease_drift_margin",
            self.raft.lease_drift_margin == new.raft.lease_drift_margin,
        );
        check("raft.priority", self.raft.priority == new.raft.priority);
        check("wal", self.wal == new.wal);
        check("peer", self.peer == new.peer);
        check("snapshot", self.snapshot == new.snapshot);
        check("watch", self.watch == new.watch);
        check("tls", self.tls == new.tls);
        check("limits", self.limits == new.limits);
        check("lease", self.lease == new.lease);
        check("backup", self.backup.same_static(&new.backup));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RELOADABLE_KEYS, parse_override, set_key};
    use super::*;

    const BASE: &str = "id = 1\nlisten_client = \"127.0.0.1:7001\"\n\
                        listen_peer = \"127.0.0.1:7002\"\n";

    /// `BASE` with `key = value` set, validated.
    fn with(key: &str, value: &str) -> NodeConfig {
        let mut table: toml::Table = BASE.parse().unwrap();
        let (k, v) = parse_override(&format!("{key}={value}")).unwrap();
        set_key(&mut table, &k, v).unwrap();
        NodeConfig::from_toml(&toml::to_string(&table).unwrap())
            .unwrap_or_else(|e| panic!("{key} = {value}: {e}"))
    }

    /// A valid value different from the default, for every reloadable key.
    fn changed_value(key: &str) -> &'static str {
        match key {
            "log_filter" => "\"debug,raft_net=warn\"",
            "quota_backend_bytes" => "8GiB",
            "raft.heartbeat_interval" => "20ms",
            "raft.election_timeout_base" => "400ms",
            "raft.jitter_max_delay" => "50ms",
            "raft.min_leadership_duration" => "100ms",
            "raft.max_entries_per_append" => "64",
            "raft.max_bytes_per_append" => "64KiB",
            "raft.max_inflight_msgs" => "8",
            "raft.max_inflight_bytes" => "1MiB",
            "raft.max_batch_proposals" => "32",
            "raft.snapshot_threshold" => "5000",
            "raft.snapshot_log_bytes" => "64MiB",
            "raft.request_timeout" => "9s",
            "compression.codec" => "\"snappy\"",
            "compression.level" => "5",
            "compression.threshold" => "1KiB",
            "compaction.auto_mode" => "\"revision\"",
            "compaction.auto_retention" => "\"0\"",
            "compaction.max_rate" => "10MiB",
            "backup.keep_for" => "\"7d\"",
            "backup.keep_bases" => "3",
            other => panic!("no test value for reloadable key {other}"),
        }
    }

    #[test]
    fn each_reloadable_key_is_detected_alone_and_is_not_fixed() {
        let base = NodeConfig::from_toml(BASE).unwrap();
        assert_eq!(base.diff(&base.clone()), Ok(vec![]));
        for key in RELOADABLE_KEYS {
            let new = with(key, changed_value(key));
            assert_eq!(base.diff(&new), Ok(vec![*key]), "{key}");
        }
    }

    #[test]
    fn fixed_keys_are_refused_by_name_even_beside_reloadable_ones() {
        let base = NodeConfig::from_toml(BASE).unwrap();
        for (key, value) in [
            ("id", "2"),
            ("name", "\"other\""),
            ("data_dir", "\"/tmp/elsewhere\""),
            ("listen_client", "\"127.0.0.1:7101\""),
            ("listen_peer", "\"127.0.0.1:7102\""),
            ("listen_metrics", "\"127.0.0.1:7103\""),
            ("cluster_token", "\"another-cluster\""),
            ("request_size_limit", "2MiB"),
            ("raft.tick_interval", "5ms"),
            ("raft.check_quorum", "false"),
            ("raft.priority", "2"),
            ("wal.segment_size", "16MiB"),
            ("peer.queue_max_messages", "100"),
        ] {
            let mut table: toml::Table = BASE.parse().unwrap();
            for (k, v) in [(key, value), ("raft.heartbeat_interval", "20ms")] {
                let (k, v) = parse_override(&format!("{k}={v}")).unwrap();
                set_key(&mut table, &k, v).unwrap();
            }
            if key == "id" {
                // Keep the new id in the (default, single-member) cluster.
                table.insert("initial_cluster".into(), "2=127.0.0.1:7002".into());
            }
            let new = NodeConfig::from_toml(&toml::to_string(&table).unwrap())
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let Err(DiffError::Fixed(keys)) = base.diff(&new) else {
                panic!("{key}: a change of a fixed key must be refused");
            };
            let expected = match key {
                "cluster_token" => "cluster_id",
                k if k.starts_with("wal.") => "wal",
                k if k.starts_with("peer.") => "peer",
                k => k,
            };
            assert!(keys.contains(&expected), "{key}: {keys:?}");
            let msg = DiffError::Fixed(keys).to_string();
            assert!(msg.contains(expected) && msg.contains("restart"), "{msg}");
        }
    }

    #[test]
    fn the_source_reapplies_overrides_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("raftd.toml");
        std::fs::write(
            &file,
            format!("{BASE}[raft]\nheartbeat_interval = \"20ms\"\n"),
        )
        .unwrap();
        let source = ConfigSource {
            file: Some(file.clone()),
            overrides: vec![parse_override("raft.max_inflight_msgs=4").unwrap()],
        };
        let first = source.load().unwrap();
        std::fs::write(
            &file,
            format!("{BASE}[raft]\nheartbeat_interval = \"40ms\"\n"),
        )
        .unwrap();
        let second = source.load().unwrap();
        assert_eq!(second.raft.max_inflight_msgs, 4, "the flag still wins");
        assert_eq!(first.diff(&second), Ok(vec!["raft.heartbeat_interval"]));
        std::fs::write(&file, "id = \"one\"").unwrap();
        assert!(source.load().is_err());
    }
}
