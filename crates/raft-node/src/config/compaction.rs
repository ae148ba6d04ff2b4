//! The `[compaction]` section: auto-compaction with etcd's modes and retentions, and the pace
//! of physical compaction. Every key here can change at run time.

use super::{ByteSize, ConfigError};
use raft_kv::autocompact::AutoCompaction;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `[compaction]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionSection {
    /// etcd's `--auto-compaction-mode`: `periodic` (default) or `revision`.
    pub auto_mode: String,
    /// etcd's `--auto-compaction-retention`: with `periodic`, how much history to keep as a
    /// duration (`"1h"`, `"30m"`) or a number of hours; with `revision`, how many revisions.
    /// `0` (the default) turns auto-compaction off.
    pub auto_retention: Retention,
    /// The pace of physical compaction in bytes of history read per second (0: unlimited,
    /// the default; it runs at a low priority either way).
    pub max_rate: ByteSize,
}

impl Default for CompactionSection {
    fn default() -> Self {
        CompactionSection {
            auto_mode: "periodic".into(),
            auto_retention: Retention::Number(0),
            max_rate: ByteSize(0),
        }
    }
}

/// A retention as etcd takes it: a number or a string.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Retention {
    /// Hours (periodic) or revisions (revision).
    Number(u64),
    /// A duration (periodic) or a number written as a string.
    Text(String),
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Number(n) => write!(f, "{n}"),
            Retention::Text(s) => f.write_str(s),
        }
    }
}

impl CompactionSection {
    /// The auto-compaction policy these keys describe.
    pub fn policy(&self) -> Result<AutoCompaction, ConfigError> {
        AutoCompaction::parse(&self.auto_mode, &self.auto_retention.to_string())
            .map_err(|e| ConfigError(format!("compaction: {e}")))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.policy().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn policies_from_keys() {
        let mut c = CompactionSection::default();
        assert_eq!(c.policy(), Ok(AutoCompaction::Off));
        c.auto_retention = Retention::Number(2);
        assert_eq!(
            c.policy(),
            Ok(AutoCompaction::Periodic(Duration::from_secs(7200)))
        );
        c.auto_retention = Retention::Text("10m".into());
        assert_eq!(
            c.policy(),
            Ok(AutoCompaction::Periodic(Duration::from_secs(600)))
        );
        c.auto_mode = "revision".into();
        assert!(c.validate().is_err());
        c.auto_retention = Retention::Text("1000".into());
        assert_eq!(c.policy(), Ok(AutoCompaction::Revision(1000)));
        c.auto_mode = "hourly".into();
        assert!(c.policy().unwrap_err().0.contains("hourly"));
    }
}
