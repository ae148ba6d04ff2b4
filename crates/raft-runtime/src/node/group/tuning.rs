//! Applying new settings to the running loop ([`RaftHandle::reconfigure`]).
//!
//! [`RaftHandle::reconfigure`]: crate::RaftHandle::reconfigure

use super::Group;
use crate::config::RuntimeConfig;
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::transport::Transport;
use raft_metrics::runtime as m;
use std::sync::atomic::Ordering;

impl<SM: StateMachine, S: LogStore, T: Transport> Group<SM, S, T> {
    /// Validates `new` against the settings in force and applies it; on error nothing
    /// changes.
    pub(crate) fn reconfigure(&mut self, new: RuntimeConfig) -> Result<()> {
        new.validate()?;
        let fixed = |field: &'static str| {
            Err(Error::InvalidConfig {
                field,
                reason: "cannot change while the node runs".into(),
            })
        };
        if new.tick != self.cfg.tick {
            return fixed("tick");
        }
        if new.request_queue != self.cfg.request_queue {
            return fixed("request_queue");
        }
        if new.apply_linger != self.cfg.apply_linger {
            return fixed("apply_linger");
        }
        // The core checks its own fixed fields; nothing has changed when it refuses.
        self.raw.set_config(new.raft.clone())?;
        self.stats
            .request_timeout_ns
            .store(duration_ns(new.request_timeout), Ordering::Relaxed);
        let cfg = &mut self.cfg;
        cfg.raft = new.raft;
        cfg.request_timeout = new.request_timeout;
        cfg.max_batch_proposals = new.max_batch_proposals;
        cfg.max_batch_messages = new.max_batch_messages;
        cfg.max_apply_lag = new.max_apply_lag;
        cfg.snapshot_threshold = new.snapshot_threshold;
        cfg.snapshot_log_bytes = new.snapshot_log_bytes;
        cfg.apply_inline_max_entries = new.apply_inline_max_entries;
        publish_timing(cfg);
        tracing::info!(
            heartbeat_ticks = cfg.raft.heartbeat_ticks,
            election_timeout_base_ticks = cfg.raft.election_timeout_base_ticks,
            jitter_max_ticks = cfg.raft.jitter_max_ticks,
            snapshot_threshold = cfg.snapshot_threshold,
            snapshot_log_bytes = cfg.snapshot_log_bytes,
            "settings changed"
        );
        Ok(())
    }
}

/// Publishes the heartbeat interval and election timeout in force as gauges: what a
/// reload changed, as the loop sees it (a test or an operator reads it back instead of
/// inferring it from message rates).
pub(crate) fn publish_timing(cfg: &RuntimeConfig) {
    let ticks = |n: u64| cfg.tick.as_secs_f64() * n as f64;
    metrics::gauge!(m::HEARTBEAT_INTERVAL_SECONDS).set(ticks(cfg.raft.heartbeat_ticks));
    metrics::gauge!(m::ELECTION_TIMEOUT_SECONDS).set(ticks(cfg.raft.election_timeout_base_ticks));
}

/// A duration in nanoseconds, saturated to `u64`.
pub(crate) fn duration_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
