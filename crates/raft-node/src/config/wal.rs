//! `[wal]`: the write-ahead log.

use super::{ByteSize, ConfigError, NodeConfig, dur, err};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When the WAL calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicyKey {
    /// Every batch (the only durable choice).
    #[default]
    Always,
    /// At most `wal.sync_interval` after a write (power loss loses up to that much).
    Interval,
    /// Never (UNSAFE: power loss can break Raft's guarantees).
    Never,
}

/// `[wal]`: the write-ahead log.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSection {
    /// Size of each segment file (default 64MiB; 4KiB..4GiB).
    pub segment_size: ByteSize,
    /// Most bytes one group commit gathers (default 4MiB).
    pub max_batch_bytes: ByteSize,
    /// Wait this long for more writes before a batch is written (default 0: adaptive).
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
    /// `always`, `interval` or `never`.
    pub sync_policy: SyncPolicyKey,
    /// The interval of `sync_policy = "interval"` (default 10ms).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Recent entry bytes kept in memory (default 16MiB).
    pub cache_bytes: ByteSize,
}

impl Default for WalSection {
    fn default() -> Self {
        let d = raft_log::Settings::default();
        Self {
            segment_size: ByteSize(d.segment_size),
            max_batch_bytes: ByteSize(d.max_batch_bytes as u64),
            commit_delay: d.commit_delay,
            sync_policy: SyncPolicyKey::Always,
            sync_interval: Duration::from_millis(10),
            cache_bytes: ByteSize(d.cache_bytes as u64),
        }
    }
}

impl WalSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let s = self.segment_size.get();
        if !(4096..=u64::from(u32::MAX)).contains(&s) {
            return err(format!(
                "wal.segment_size ({}) must be between 4KiB and 4GiB",
                self.segment_size
            ));
        }
        if self.max_batch_bytes.get() == 0 {
            return err("wal.max_batch_bytes must be at least 1");
        }
        if self.commit_delay > Duration::from_secs(1) {
            return err(format!(
                "wal.commit_delay ({}) must be at most 1s",
                dur(self.commit_delay)
            ));
        }
        if self.sync_policy == SyncPolicyKey::Interval
            && (self.sync_interval.is_zero() || self.sync_interval > Duration::from_secs(10))
        {
            return err(format!(
                "wal.sync_interval ({}) must be between 1ns and 10s",
                dur(self.sync_interval)
            ));
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The write-ahead log's settings.
    pub fn wal_settings(&self) -> raft_log::Settings {
        let w = &self.wal;
        raft_log::Settings {
            segment_size: w.segment_size.get(),
            max_batch_bytes: w.max_batch_bytes.as_usize(),
            commit_delay: w.commit_delay,
            sync_policy: match w.sync_policy {
                SyncPolicyKey::Always => raft_log::SyncPolicy::Always,
                SyncPolicyKey::Interval => raft_log::SyncPolicy::Interval(w.sync_interval),
                SyncPolicyKey::Never => raft_log::SyncPolicy::Never,
            },
            cache_bytes: w.cache_bytes.as_usize(),
            // The archive keeps segments until the object store holds them.
            archive: self.backup.archive_wal
                && (self.backup.url.is_some() || self.snapshot.upload_dir.is_some()),
        }
    }
}
