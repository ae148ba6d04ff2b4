//! `[lease]`: the leader's lease clocks (see `raft_kv::lease`): checkpoints of remaining TTLs,
//! the minimum TTL and the revoke rate.

use super::{ConfigError, NodeConfig, err};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[lease]`: how etcd's leases are kept (a restart applies a change).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSection {
    /// How often the leader writes the remaining TTLs of long leases to the log, so that a
    /// new leader counts down from there instead of granting the full TTL again (etcd's
    /// `--experimental-lease-checkpoint-interval`; default 5m; `0s` turns checkpoints off).
    /// Only leases with more than this left are checkpointed.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Granted TTLs below this are raised to it (whole seconds, rounded up). Default `0s`:
    /// etcd's rule, 1.5 election timeouts (`raft.election_timeout_base` +
    /// `raft.jitter_max_delay`) rounded up to a second, so a lease outlives an election.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Most leases the leader revokes per second when they expire (etcd: 1000); expiries
    /// that pile up after a leader change are spread to stay under it.
    pub revoke_rate: usize,
}

impl Default for LeaseSection {
    fn default() -> Self {
        LeaseSection {
            checkpoint_interval: Duration::from_secs(5 * 60),
            min_ttl: Duration::ZERO,
            revoke_rate: 1000,
        }
    }
}

impl LeaseSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.checkpoint_interval.is_zero() && self.checkpoint_interval < Duration::from_secs(1)
        {
            return err("lease.checkpoint_interval must be 0s (off) or at least 1s");
        }
        if self.revoke_rate == 0 {
            return err("lease.revoke_rate must be at least 1");
        }
        if self.min_ttl > Duration::from_secs(3600) {
            return err("lease.min_ttl must be at most 1h");
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The longest time the cluster may be without a leader that renews leases: one
    /// election timeout with its jitter.
    fn election_timeout(&self) -> Duration {
        self.raft.election_timeout_base + self.raft.jitter_max_delay
    }

    /// The smallest TTL granted, in seconds (see [`LeaseSection::min_ttl`]).
    pub fn lease_min_ttl(&self) -> i64 {
        let min = if self.lease.min_ttl.is_zero() {
            self.election_timeout() * 3 / 2
        } else {
            self.lease.min_ttl
        };
        (min.as_nanos().div_ceil(1_000_000_000) as i64).max(1)
    }

    /// The lease keeper's settings.
    pub fn lease_keeper(&self) -> raft_kv::lease::keeper::KeeperConfig {
        raft_kv::lease::keeper::KeeperConfig {
            lessor: raft_kv::lease::LessorConfig {
                extend_on_promote: self.election_timeout(),
                checkpoint_interval: (!self.lease.checkpoint_interval.is_zero())
                    .then_some(self.lease.checkpoint_interval),
                revoke_rate: self.lease.revoke_rate,
                ..raft_kv::lease::LessorConfig::default()
            },
            ..raft_kv::lease::keeper::KeeperConfig::default()
        }
    }
}
