//! What a hot reload compares: where the configuration comes from ([`ConfigSource`]) and
//! which keys differ between the configuration in force and a new one ([`NodeConfig::diff`]).

use super::{ConfigError, NodeConfig};
use std::collections::BTreeMap;
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

/// The keys whose values may change while the node runs (hot reload); every other key needs
/// a restart. This is the one hand-kept list: which keys *differ* is derived from the
/// configuration types (see [`NodeConfig::diff`]), so a key added to any section is fixed
/// until it is named here and the node applies it on reload. A test proves each entry is a
/// key path of the serialized configuration, so a renamed or removed key cannot linger.
pub const RELOADABLE_KEYS: &[&str] = &[
    "log_filter",
    "quota_backend_bytes",
    "corrupt_check_interval",
    "raft.heartbeat_interval",
    "raft.election_timeout_base",
    "raft.jitter_max_delay",
    "raft.min_leadership_duration",
    "raft.max_entries_per_append",
    "raft.max_bytes_per_append",
    "raft.max_inflight_msgs",
    "raft.max_inflight_bytes",
    "raft.max_batch_proposals",
    "raft.snapshot_threshold",
    "raft.snapshot_log_bytes",
    "raft.request_timeout",
    "raft.apply_inline_max_entries",
    "compression.codec",
    "compression.level",
    "compression.threshold",
    "compaction.auto_mode",
    "compaction.auto_retention",
    "compaction.max_rate",
    "backup.keep_for",
    "backup.keep_bases",
];

/// The sections whose fixed keys a refusal names one by one (`raft.tick_interval`); a fixed
/// key of any other section is named by its section (`wal`), a top-level key by itself.
const SECTIONS_NAMED_BY_KEY: &[&str] = &["raft"];

/// Why a new configuration cannot replace the one in force.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// Settings that need a restart differ.
    #[error(
        "these settings cannot change while raftd runs (restart to change them): {}",
        .0.join(", ")
    )]
    Fixed(Vec<String>),
    /// A configuration could not be turned into key paths to compare (not expected: every
    /// configuration type serializes).
    #[error("cannot compare the configurations: {0}")]
    Compare(String),
}

/// The keys of one configuration, as dotted paths (`raft.heartbeat_interval`) to values.
type KeyValues = BTreeMap<String, serde_json::Value>;

/// Why the changed keys are derived by serializing rather than compared field by field: a
/// hand-written comparison (one line per key) silently misses a key added to a section
/// later, and a missed key is neither applied nor refused. Serializing both configurations
/// with serde and comparing key paths covers every field the types have, by construction.
/// JSON rather than TOML: TOML drops unset `Option`s, JSON keeps them as `null`, so every
/// key of the types is also a path of the serialized default.
impl NodeConfig {
    /// Every key of this configuration with its value: a top-level key, or `section.key`
    /// for the keys of a section (a section's own tables, such as `backup.options`, are one
    /// value). `cluster_token` counts as the `cluster_id` it hashes to, so writing the same
    /// cluster id either way is no change.
    fn key_values(&self) -> Result<KeyValues, DiffError> {
        let mut normal = self.clone();
        normal.cluster_id = self.explicit_cluster_id();
        normal.cluster_token = None;
        let value = serde_json::to_value(&normal).map_err(|e| DiffError::Compare(e.to_string()))?;
        let serde_json::Value::Object(top) = value else {
            return Err(DiffError::Compare(
                "the configuration is not a table".into(),
            ));
        };
        let sections = section_names();
        let mut out = KeyValues::new();
        for (key, value) in top {
            match value {
                serde_json::Value::Object(section) if sections.contains(&key) => {
                    for (k, v) in section {
                        out.insert(format!("{key}.{k}"), v);
                    }
                }
                other => {
                    out.insert(key, other);
                }
            }
        }
        Ok(out)
    }

    /// The key paths whose values differ in `new`, in the order of the configuration types'
    /// fields (the order of `raftd --print-config`).
    fn changed_keys(&self, new: &NodeConfig) -> Result<Vec<String>, DiffError> {
        let (a, b) = (self.key_values()?, new.key_values()?);
        let mut keys: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        let order = field_order()?;
        keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
        Ok(keys)
    }

    /// The reloadable keys ([`RELOADABLE_KEYS`], in its order) whose values differ in `new`.
    pub fn reloadable_changes(&self, new: &NodeConfig) -> Result<Vec<&'static str>, DiffError> {
        let changed = self.changed_keys(new)?;
        Ok(RELOADABLE_KEYS
            .iter()
            .copied()
            .filter(|k| changed.iter().any(|c| c == k))
            .collect())
    }

    /// The settings that need a restart and differ in `new` (in field order): a hot reload must
    /// refuse a new configuration for which this is not empty. Keys of `[raft]` and the
    /// top level are named one by one, those of other sections by their section.
    pub fn static_changes(&self, new: &NodeConfig) -> Result<Vec<String>, DiffError> {
        let mut out: Vec<String> = self
            .changed_keys(new)?
            .into_iter()
            .filter(|k| !RELOADABLE_KEYS.contains(&k.as_str()))
            .map(|k| match k.split_once('.') {
                Some((section, _)) if !SECTIONS_NAMED_BY_KEY.contains(&section) => {
                    section.to_string()
                }
                _ => k,
            })
            .collect();
        // A section's keys are adjacent in field order: it is named once.
        out.dedup();
        Ok(out)
    }

    /// The reloadable keys that differ in `new`, or the fixed keys that differ (which a
    /// reload refuses).
    pub fn diff(&self, new: &NodeConfig) -> Result<Vec<&'static str>, DiffError> {
        let fixed = self.static_changes(new)?;
        if !fixed.is_empty() {
            return Err(DiffError::Fixed(fixed));
        }
        self.reloadable_changes(new)
    }
}

/// The top-level keys that are sections: those the default configuration serializes as a
/// table (`initial_cluster`, a string or a table, is a value).
fn section_names() -> Vec<String> {
    match serde_json::to_value(NodeConfig::default()) {
        Ok(serde_json::Value::Object(top)) => top
            .into_iter()
            .filter(|(_, v)| v.is_object())
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    }
}

/// Every key path of the configuration (`key`, and `section.key` one level down) in the
/// order serde writes the fields, which is the order of the types' declarations. The values
/// (`serde_json::Value`, whose maps are sorted) cannot say it, so the serialized default is
/// read back by a visitor that only records keys.
fn field_order() -> Result<Vec<String>, DiffError> {
    let text = serde_json::to_string(&NodeConfig::default())
        .map_err(|e| DiffError::Compare(e.to_string()))?;
    let FieldOrder(paths) =
        serde_json::from_str(&text).map_err(|e| DiffError::Compare(e.to_string()))?;
    Ok(paths)
}

/// The key paths of a serialized configuration, in order (see [`field_order`]).
struct FieldOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for FieldOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> serde::de::Visitor<'de> for Top {
            type Value = FieldOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a configuration table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FieldOrder, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let SubKeys(sub) = map.next_value()?;
                    let nested: Vec<String> = sub.iter().map(|k| format!("{key}.{k}")).collect();
                    out.push(key);
                    out.extend(nested);
                }
                Ok(FieldOrder(out))
            }
        }
        d.deserialize_map(Top)
    }
}

/// The keys of a table value, in order; none for any other value.
struct SubKeys(Vec<String>);

impl<'de> serde::Deserialize<'de> for SubKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = SubKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubKeys, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    out.push(key);
                }
                Ok(SubKeys(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SubKeys, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SubKeys(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<SubKeys, E> {
                Ok(SubKeys(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<SubKeys, E> {
                Ok(SubKeys(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<SubKeys, E> {
                Ok(SubKeys(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<SubKeys, E> {
                Ok(SubKeys(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<SubKeys, E> {
                Ok(SubKeys(Vec::new()))
            }
            fn visit_unit<E>(self) -> Result<SubKeys, E> {
                Ok(SubKeys(Vec::new()))
            }
        }
        d.deserialize_any(Keys)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_override, set_key};
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
            "corrupt_check_interval" => "5m",
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
            "raft.apply_inline_max_entries" => "0",
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
            assert!(keys.iter().any(|k| k == expected), "{key}: {keys:?}");
            let msg = DiffError::Fixed(keys).to_string();
            assert!(msg.contains(expected) && msg.contains("restart"), "{msg}");
        }
    }

    #[test]
    fn every_reloadable_key_is_a_key_of_the_serialized_default() {
        let keys = NodeConfig::default().key_values().unwrap();
        for key in RELOADABLE_KEYS {
            assert!(keys.contains_key(*key), "{key} is no configuration key");
        }
        // Unset options are keys too (JSON keeps them as null).
        assert!(keys.contains_key("backup.keep_for") && keys.contains_key("name"));
        // A section's own tables are one value; `initial_cluster` is a value, not a section.
        assert!(keys.contains_key("backup.options") && keys.contains_key("initial_cluster"));
    }

    #[test]
    fn a_key_no_list_names_needs_a_restart() {
        // `[auth]` is in no list: a change is refused by its section's name, not ignored.
        let base = NodeConfig::from_toml(BASE).unwrap();
        let new = with("auth.bcrypt_cost", "12");
        assert_eq!(
            base.diff(&new),
            Err(DiffError::Fixed(vec!["auth".to_string()]))
        );
        assert_eq!(
            base.diff(&new).unwrap_err().to_string(),
            "these settings cannot change while raftd runs (restart to change them): auth"
        );
        // Several at once: in field order, sections named once, `[raft]` keys one by one.
        let mut table: toml::Table = BASE.parse().unwrap();
        for o in [
            "wal.segment_size=16MiB",
            "wal.cache_bytes=1MiB",
            "raft.tick_interval=5ms",
            "listen_metrics=\"127.0.0.1:9100\"",
            "raft.heartbeat_interval=20ms",
        ] {
            let (k, v) = parse_override(o).unwrap();
            set_key(&mut table, &k, v).unwrap();
        }
        let new = NodeConfig::from_toml(&toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(
            base.static_changes(&new).unwrap(),
            ["listen_metrics", "raft.tick_interval", "wal"]
        );
        let order = field_order().unwrap();
        assert_eq!(order.first().map(String::as_str), Some("id"));
        let pos = |k: &str| order.iter().position(|o| o == k).unwrap();
        assert!(pos("raft.tick_interval") < pos("raft.heartbeat_interval"));
        assert!(pos("tls.cert_file") < pos("limits.max_concurrent_streams"));
        assert!(pos("backup.keep_for") < pos("backup.keep_bases"));
        assert_eq!(
            base.reloadable_changes(&new).unwrap(),
            ["raft.heartbeat_interval"]
        );
    }

    #[test]
    fn a_cluster_token_and_the_id_it_hashes_to_are_the_same_setting() {
        let base = with("cluster_token", "\"blue\"");
        // (Set on the struct: the hash is past TOML's integers.)
        let mut same = base.clone();
        same.cluster_token = None;
        same.cluster_id = Some(super::super::cluster_id_from_token("blue"));
        assert_eq!(base.diff(&same), Ok(vec![]));
        let other = with("cluster_token", "\"green\"");
        assert_eq!(
            base.diff(&other),
            Err(DiffError::Fixed(vec!["cluster_id".to_string()]))
        );
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
