//! `[watch]`: the watch hub's progress interval and buffer bounds (see `raft_kv::watch`).

use super::{ByteSize, ConfigError, err};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[watch]`: how etcd's Watch is served (a restart applies a change).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSection {
    /// How often a watch that asked for `progress_notify` is told the current revision while
    /// it gets no events (default 10m, as etcd's `--experimental-watch-progress-notify-interval`;
    /// at least 100ms).
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// Most event items (one per watch and revision) queued for one client stream; a watch
    /// whose stream is full catches up from history once the client reads again (default
    /// 10000).
    pub stream_buffer_events: usize,
    /// Most bytes of events queued for one client stream (default 16MiB).
    pub stream_buffer_bytes: ByteSize,
    /// Most bytes of applied events waiting for the watch hub's thread; past it the hub
    /// catches its watches up from history instead (default 64MiB).
    pub inbox_bytes: ByteSize,
    /// Most bytes of history one catch-up round reads (default 4MiB).
    pub catch_up_read_bytes: ByteSize,
}

impl Default for WatchSection {
    fn default() -> Self {
        let d = raft_kv::watch::WatchConfig::default();
        WatchSection {
            progress_interval: d.progress_interval,
            stream_buffer_events: d.stream_buffer_events,
            stream_buffer_bytes: ByteSize(d.stream_buffer_bytes as u64),
            inbox_bytes: ByteSize(d.inbox_bytes as u64),
            catch_up_read_bytes: ByteSize(d.catch_up_read_bytes as u64),
        }
    }
}

impl WatchSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.progress_interval < raft_kv::watch::MIN_PROGRESS_INTERVAL {
            return err(format!(
                "watch.progress_interval ({}) must be at least 100ms",
                humantime::format_duration(self.progress_interval)
            ));
        }
        if self.stream_buffer_events == 0 {
            return err("watch.stream_buffer_events must be at least 1");
        }
        for (key, v) in [
            ("watch.stream_buffer_bytes", self.stream_buffer_bytes),
            ("watch.inbox_bytes", self.inbox_bytes),
            ("watch.catch_up_read_bytes", self.catch_up_read_bytes),
        ] {
            if v < ByteSize::kib(4) {
                return err(format!("{key} ({v}) must be at least 4KiB"));
            }
        }
        Ok(())
    }

    /// The hub's settings.
    pub fn hub_config(&self) -> raft_kv::watch::WatchConfig {
        raft_kv::watch::WatchConfig {
            progress_interval: self.progress_interval,
            stream_buffer_events: self.stream_buffer_events,
            stream_buffer_bytes: self.stream_buffer_bytes.as_usize(),
            inbox_bytes: self.inbox_bytes.as_usize(),
            catch_up_read_bytes: self.catch_up_read_bytes.as_usize(),
            ..raft_kv::watch::WatchConfig::default()
        }
    }
}
