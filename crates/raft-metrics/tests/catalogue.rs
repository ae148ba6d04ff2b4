//! The metric catalogue: every name is described exactly once, with its declared type, and
//! follows the Prometheus naming conventions; every name constant in the sources is in it.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use raft_metrics::{Kind, catalogue};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One `describe_*` call: name, type, unit, help text.
type Described = (String, Kind, Option<Unit>, String);

/// Records the `describe_*` calls it receives.
#[derive(Default)]
struct Describes(Mutex<Vec<Described>>);

impl Describes {
    fn push(&self, key: KeyName, kind: Kind, unit: Option<Unit>, help: SharedString) {
        self.0
            .lock()
            .unwrap()
            .push((key.as_str().to_string(), kind, unit, help.to_string()));
    }
}

impl Recorder for Describes {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push(key, Kind::Counter, unit, help);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push(key, Kind::Gauge, unit, help);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.push(key, Kind::Histogram, unit, help);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn describe_all_describes_every_metric_once_with_its_type() {
    let rec = Describes::default();
    metrics::with_local_recorder(&rec, raft_metrics::describe_all);
    let seen = rec.0.into_inner().unwrap();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, ..) in &seen {
        *count.entry(name.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "described more than once: {twice:?}");
    assert_eq!(seen.len(), catalogue().count());
    for m in catalogue() {
        let (_, kind, unit, help) = seen
            .iter()
            .find(|(n, ..)| n == m.name)
            .unwrap_or_else(|| panic!("{} not described", m.name));
        assert_eq!(*kind, m.kind, "{}", m.name);
        assert_eq!(*unit, Some(m.unit), "{}", m.name);
        assert!(!help.trim().is_empty(), "{} has no help text", m.name);
    }
}

#[test]
fn names_follow_prometheus_conventions() {
    for m in catalogue() {
        let n = m.name;
        assert!(
            n.starts_with("raft_") || n.starts_with("raftd_"),
            "{n}: toolkit prefix"
        );
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !n.contains("__")
                && !n.ends_with('_'),
            "{n}: snake case"
        );
        match m.kind {
            Kind::Counter => assert!(n.ends_with("_total"), "{n}: counters end in _total"),
            _ => assert!(!n.ends_with("_total"), "{n}: only counters end in _total"),
        }
        if m.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(!n.ends_with(suffix), "{n}: reserved histogram suffix");
            }
        }
        match m.unit {
            Unit::Seconds => assert!(n.contains("_seconds"), "{n}: unit seconds in the name"),
            Unit::Bytes => assert!(n.contains("_bytes"), "{n}: unit bytes in the name"),
            _ => assert!(
                !n.contains("_seconds") && !n.contains("_bytes_"),
                "{n}: a unit in the name but not in the description"
            ),
        }
    }
}

#[test]
fn every_name_constant_in_the_sources_is_catalogued() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("pub const ") else {
                continue;
            };
            let Some((_, value)) = rest.split_once(": &str = \"") else {
                continue;
            };
            let name = value.trim_end_matches("\";");
            found += 1;
            assert!(
                catalogue().any(|m| m.name == name),
                "{name} ({}) is not in the catalogue",
                path.display()
            );
        }
    }
    assert_eq!(found, catalogue().count(), "constants vs catalogue entries");
}

#[test]
fn docs_operations_lists_every_metric() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for m in catalogue() {
        let row = format!("| `{}` | {} |", m.name, m.kind.as_str());
        assert!(
            text.contains(&row),
            "docs/operations.md has no table row `{row}`"
        );
    }
}
