//! `[raft]`: protocol timing and flow control, and their conversion into
//! `raft_core::Config`.

use super::{ByteSize, ConfigError, NodeConfig, dur, err};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadModeKey {
    /// ReadIndex: a quorum round per batch of reads (safe whatever the clocks do).
    #[default]
    Safe,
    /// Leader lease: no round while the lease holds (assumes bounded clock drift).
    Lease,
}

/// `[raft]`: protocol timing (the seed's election settings) and flow control.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// The protocol clock: every other duration is rounded up to whole ticks (default 10ms).
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// How often a leader sends heartbeats (default 50ms).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The smallest election timeout; at least 3 x `heartbeat_interval` (default 150ms).
    #[serde(with = "humantime_serde")]
    pub election_timeout_base: Duration,
    /// Election timeouts are drawn from `[base, base + jitter)` (default 100ms).
    #[serde(with = "humantime_serde")]
    pub jitter_max_delay: Duration,
    /// A new leader is not displaced by (pre-)votes for this long (default 300ms).
    #[serde(with = "humantime_serde")]
    pub min_leadership_duration: Duration,
    /// Pre-vote before an election (default true).
    pub pre_vote: bool,
    /// A leader that lost touch with a quorum steps down (default true).
    pub check_quorum: bool,
    /// A leader tells followers a new commit index with its next append, or at the next
    /// tick when no write follows, instead of with an append of its own: one append and
    /// one answer less per follower per write when writes come one at a time. Followers
    /// then apply up to one `tick_interval` later, except one whose own clients wait on
    /// the commit (it forwarded the write or asked for a read index), which is told at
    /// once; the leader's answers are not delayed (default true).
    pub lazy_commit: bool,
    /// `safe` (ReadIndex) or `lease`.
    pub read_mode: ReadModeKey,
    /// With `read_mode = "lease"`: the part of the election timeout kept as a margin for
    /// clock drift (default 10% of `election_timeout_base`).
    #[serde(with = "humantime_serde::option")]
    pub lease_drift_margin: Option<Duration>,
    /// Election priority (0: never campaigns on a timeout; default 1).
    pub priority: u32,
    /// Most entries in one append message (default 4096).
    pub max_entries_per_append: u64,
    /// Most entry bytes in one append message (default 1MiB).
    pub max_bytes_per_append: ByteSize,
    /// Most append messages in flight per peer (default 256).
    pub max_inflight_msgs: usize,
    /// Most entry bytes in flight per peer (default 32MiB).
    pub max_inflight_bytes: ByteSize,
    /// Most client proposals batched into one log write (default 4096).
    pub max_batch_proposals: usize,
    /// The longest a client request waits for its outcome (default 5s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Snapshot and compact the log every this many applied entries (default 100000; 0
    /// disables).
    pub snapshot_threshold: u64,
    /// Also snapshot and compact once the entries applied since the last snapshot hold this
    /// many bytes of data, counted since the node started (default 1GiB; 0 disables).
    pub snapshot_log_bytes: ByteSize,
    /// How long committed entries that no client on this node waits for are held back for
    /// more, so one state-machine write covers several batches (default 5ms; 0
    /// applies at once; at most 1s). Linearizable reads, local clients' own writes and
    /// membership changes never wait for it; serializable reads on followers may trail by
    /// this much more.
    #[serde(with = "humantime_serde")]
    pub apply_linger: Duration,
    /// A committed batch of at most this many entries that a client of this node waits for
    /// is applied by the Raft event loop itself when the apply thread is idle, saving a
    /// thread hand-off per write (default 64; 0 always hands batches to the apply thread).
    pub apply_inline_max_entries: usize,
}

impl Default for RaftSection {
    fn default() -> Self {
        let ms = Duration::from_millis;
        Self {
            tick_interval: ms(10),
            heartbeat_interval: ms(50),
            election_timeout_base: ms(150),
            jitter_max_delay: ms(100),
            min_leadership_duration: ms(300),
            pre_vote: true,
            check_quorum: true,
            lazy_commit: true,
            read_mode: ReadModeKey::Safe,
            lease_drift_margin: None,
            priority: 1,
            max_entries_per_append: 4096,
            max_bytes_per_append: ByteSize::mib(1),
            max_inflight_msgs: 256,
            max_inflight_bytes: ByteSize::mib(32),
            max_batch_proposals: 4096,
            request_timeout: Duration::from_secs(5),
            snapshot_threshold: 100_000,
            snapshot_log_bytes: ByteSize::mib(1024),
            apply_linger: ms(5),
            apply_inline_max_entries: 64,
        }
    }
}

impl RaftSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let tick = self.tick_interval;
        if tick < Duration::from_millis(1) || tick > Duration::from_secs(1) {
            return err(format!(
                "raft.tick_interval ({}) must be between 1ms and 1s",
                dur(tick)
            ));
        }
        if self.heartbeat_interval < tick {
            return err(format!(
                "raft.heartbeat_interval ({}) must be at least raft.tick_interval ({})",
                dur(self.heartbeat_interval),
                dur(tick)
            ));
        }
        if self.election_timeout_base < self.heartbeat_interval * 3 {
            return err(format!(
                "election_timeout_base ({}) must be at least 3 x heartbeat_interval ({})",
                dur(self.election_timeout_base),
                dur(self.heartbeat_interval)
            ));
        }
        if self.election_timeout_base > Duration::from_secs(60) {
            return err(format!(
                "raft.election_timeout_base ({}) must be at most 60s",
                dur(self.election_timeout_base)
            ));
        }
        if self.jitter_max_delay > self.election_timeout_base * 10 {
            return err(format!(
                "raft.jitter_max_delay ({}) must be at most 10 x election_timeout_base ({})",
                dur(self.jitter_max_delay),
                dur(self.election_timeout_base)
            ));
        }
        if self.min_leadership_duration > self.election_timeout_base * 10 {
            return err(format!(
                "raft.min_leadership_duration ({}) must be at most 10 x election_timeout_base \
                 ({})",
                dur(self.min_leadership_duration),
                dur(self.election_timeout_base)
            ));
        }
        if self.read_mode == ReadModeKey::Lease && !self.check_quorum {
            return err("raft.read_mode = \"lease\" requires raft.check_quorum = true");
        }
        if let Some(m) = self.lease_drift_margin
            && m >= self.election_timeout_base
        {
            return err(format!(
                "raft.lease_drift_margin ({}) must be below election_timeout_base ({})",
                dur(m),
                dur(self.election_timeout_base)
            ));
        }
        for (key, v) in [
            ("raft.max_entries_per_append", self.max_entries_per_append),
            ("raft.max_bytes_per_append", self.max_bytes_per_append.get()),
            ("raft.max_inflight_msgs", self.max_inflight_msgs as u64),
            ("raft.max_inflight_bytes", self.max_inflight_bytes.get()),
            ("raft.max_batch_proposals", self.max_batch_proposals as u64),
        ] {
            if v == 0 {
                return err(format!("{key} must be at least 1"));
            }
        }
        if self.apply_linger > Duration::from_secs(1) {
            return err(format!(
                "raft.apply_linger ({}) must be at most 1s",
                dur(self.apply_linger)
            ));
        }
        if self.request_timeout < self.election_timeout_base {
            return err(format!(
                "raft.request_timeout ({}) must be at least election_timeout_base ({})",
                dur(self.request_timeout),
                dur(self.election_timeout_base)
            ));
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The protocol configuration (`raft_core::Config`).
    pub fn raft_core_config(&self) -> Result<raft_core::Config, ConfigError> {
        let r = &self.raft;
        let mut c = raft_core::Config::from_durations(
            self.id,
            r.tick_interval,
            r.heartbeat_interval,
            r.election_timeout_base,
            r.jitter_max_delay,
            r.min_leadership_duration,
        )
        .or_else(|e| err(format!("raft: {e}")))?;
        c.pre_vote = r.pre_vote;
        c.check_quorum = r.check_quorum;
        c.lazy_commit = r.lazy_commit;
        c.priority = r.priority;
        c.max_entries_per_append = r.max_entries_per_append;
        c.max_bytes_per_append = r.max_bytes_per_append.get();
        c.max_inflight_msgs = r.max_inflight_msgs;
        c.max_inflight_bytes = r.max_inflight_bytes.get();
        if r.read_mode == ReadModeKey::Lease {
            let margin = r
                .lease_drift_margin
                .unwrap_or(r.election_timeout_base / 10)
                .max(r.tick_interval);
            let ticks = margin.as_nanos().div_ceil(r.tick_interval.as_nanos());
            c.read_mode = raft_core::ReadMode::Lease {
                drift_margin_ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
            };
        }
        c.validate().or_else(|e| err(format!("raft: {e}")))?;
        Ok(c)
    }
}
