//! `[snapshot]`: state-machine snapshot chains and their upload.

use super::{ByteSize, ConfigError, err};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[snapshot]`: state-machine snapshot chains (`<data_dir>/snap`) and their upload. When
/// snapshots are taken is `raft.snapshot_threshold` and `raft.snapshot_log_bytes`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSection {
    /// Merge the chain into a new base once it holds more than this many snapshots (base
    /// plus deltas; default 8).
    pub max_chain_len: usize,
    /// Merge the chain once its deltas together exceed this fraction of the base's size
    /// (default 0.5).
    pub max_delta_ratio: f64,
    /// Upload every new snapshot to this directory (a local object store, the layout
    /// `raftd restore --from` reads) in the background, retrying with backoff. None by
    /// default.
    pub upload_dir: Option<PathBuf>,
    /// Build snapshots reading at most this many bytes of records per second (the snapshot
    /// thread sleeps when ahead), so a build takes less from apply; 0 is unlimited. Default
    /// [`raft_kv::pace::DEFAULT_MAX_BUILD_RATE`]; at least [`MIN_SNAPSHOT_BUILD_RATE`]
    /// unless 0. Chain merges and restores are not paced.
    pub max_build_rate: ByteSize,
}

/// The smallest non-zero `snapshot.max_build_rate`: slower, a large store's snapshot would
/// take so long that the log it replaces keeps growing meanwhile.
pub const MIN_SNAPSHOT_BUILD_RATE: ByteSize = ByteSize::mib(1);

impl Default for SnapshotSection {
    fn default() -> Self {
        let p = raft_snapshot::ChainPolicy::default();
        Self {
            max_chain_len: p.max_chain_len,
            max_delta_ratio: p.max_delta_ratio,
            upload_dir: None,
            max_build_rate: ByteSize(raft_kv::pace::DEFAULT_MAX_BUILD_RATE),
        }
    }
}

impl SnapshotSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_chain_len == 0 {
            return err("snapshot.max_chain_len must be at least 1");
        }
        if !(self.max_delta_ratio.is_finite() && self.max_delta_ratio > 0.0) {
            return err(format!(
                "snapshot.max_delta_ratio ({}) must be a positive number",
                self.max_delta_ratio
            ));
        }
        let rate = self.max_build_rate;
        if rate.get() != 0 && rate < MIN_SNAPSHOT_BUILD_RATE {
            return err(format!(
                "snapshot.max_build_rate ({rate}) must be 0 (unlimited) or at least \
                 {MIN_SNAPSHOT_BUILD_RATE}"
            ));
        }
        Ok(())
    }

    /// The chain merge policy.
    pub fn policy(&self) -> raft_snapshot::ChainPolicy {
        raft_snapshot::ChainPolicy {
            max_chain_len: self.max_chain_len,
            max_delta_ratio: self.max_delta_ratio,
        }
    }
}
