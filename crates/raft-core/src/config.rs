//! Node configuration: timing in ticks, flow-control limits and protocol options.

use crate::entry::NodeId;
use crate::error::{Error, Result};
use std::time::Duration;

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// ReadIndex: every read waits for a heartbeat round acknowledged by a quorum that
    /// started after the read arrived. Safe whatever the clocks do.
    #[default]
    Safe,
    /// Lease reads: the leader answers at once while it holds a lease. Requires
    /// `check_quorum`.
    ///
    /// The lease starts when the leader *sent* a heartbeat round later acknowledged by a
    /// quorum and lasts `election_timeout_base_ticks - drift_margin_ticks`. Followers that
    /// acknowledged will not vote for anyone else for `election_timeout_base_ticks` after
    /// *receiving* that heartbeat (leader stickiness), so the lease is safe as long as no
    /// node's tick clock runs faster than the leader's by more than `drift_margin_ticks`
    /// over an election timeout. Choose the margin from the worst clock drift you expect
    /// (e.g. 10% of the election timeout is generous for NTP-disciplined clocks); when in
    /// doubt use [`ReadMode::Safe`].
    ///
    /// The promise must survive a restart, and a restarted node cannot know whether it
    /// acknowledged a heartbeat just before it stopped: under lease reads a node grants no
    /// vote (a leadership transfer's excepted) for `election_timeout_base_ticks` from its
    /// start. A new cluster therefore elects its first leader one election timeout after
    /// it starts. Every node of a cluster must use the same read mode and election timeout.
    Lease {
        /// Ticks subtracted from the election timeout to absorb clock drift. Invariant:
        /// `0 < drift_margin_ticks < election_timeout_base_ticks`.
        drift_margin_ticks: u64,
    },
}

/// The configuration of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id. Invariant: not 0.
    pub id: NodeId,
    /// A leader sends heartbeats every this many ticks. Invariant: >= 1.
    pub heartbeat_ticks: u64,
    /// The smallest election timeout, in ticks. Invariant: > `heartbeat_ticks`.
    pub election_timeout_base_ticks: u64,
    /// Election timeouts are drawn uniformly from `[base, base + jitter_max_ticks)`.
    /// 0 disables the jitter (not recommended: split votes).
    pub jitter_max_ticks: u64,
    /// A new leader is not displaced by (pre-)vote requests for this many ticks after it
    /// was elected (leadership transfer excepted).
    pub min_leadership_ticks: u64,
    /// Run a pre-vote round before a real election, so a node that cannot win (e.g. one
    /// coming back from a partition) does not inflate the term.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down.
    pub check_quorum: bool,
    /// The largest number of entries in one append message. Invariant: >= 1.
    pub max_entries_per_append: u64,
    /// The largest payload (by [`Entry::size`](crate::Entry::size)) of one append message;
    /// one entry is always sent even when it alone is larger. Invariant: >= 1.
    pub max_bytes_per_append: u64,
    /// The largest number of append messages in flight to one peer. Invariant: >= 1.
    pub max_inflight_msgs: usize,
    /// The largest number of entry bytes in flight to one peer. Invariant: >= 1.
    pub max_inflight_bytes: u64,
    /// How reads are confirmed.
    pub read_mode: ReadMode,
    /// Election priority. 0: never start an election on a timeout (the node still votes and
    /// can still be made leader by a transfer). Otherwise higher values shrink the random
    /// part of the timeout (`jitter / priority`), so higher-priority nodes tend to campaign
    /// first. Default 1.
    pub priority: u32,
    /// The index the application has already applied (restart); 0 for a fresh node.
    pub applied: u64,
    /// The largest total size of committed entries handed out in one `Ready`
    /// (at least one entry is always handed out). Invariant: >= 1.
    pub max_committed_bytes_per_ready: u64,
    /// A leader tells a follower about a new commit index with the next append it sends
    /// anyway, or at the next tick, instead of with an empty append at once. When writes
    /// arrive one at a time this saves an append and its answer per follower per write;
    /// followers then learn (and apply) a commit up to one tick later when no write follows.
    /// A follower whose own clients wait on that commit (it forwarded the proposals, or
    /// asked for a read index) is told at once all the same. Never affects when the leader
    /// commits or answers. Default `false`.
    pub lazy_commit: bool,
    /// The largest total payload (entry data bytes) a leader keeps appended but not yet
    /// committed: a proposal that would pass it is refused with
    /// [`Error::ProposalDropped`](crate::Error) (one is always accepted when nothing is
    /// uncommitted), so a leader cut off from its quorum does not grow its log without
    /// bound. Counted from the leader's election. Invariant: >= 1. Default 1 GiB.
    pub max_uncommitted_bytes: u64,
}

impl Config {
    /// A configuration with sensible defaults for node `id` (1 tick ~ 10 ms in mind).
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            heartbeat_ticks: 1,
            election_timeout_base_ticks: 10,
            jitter_max_ticks: 10,
            min_leadership_ticks: 0,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_append: 4096,
            max_bytes_per_append: 1 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 32 << 20,
            read_mode: ReadMode::Safe,
            priority: 1,
            applied: 0,
            max_committed_bytes_per_ready: 16 << 20,
            lazy_commit: false,
            max_uncommitted_bytes: 1 << 30,
        }
    }

    /// Derives the tick counts from durations: every duration is rounded up to whole ticks.
    pub fn from_durations(
        id: NodeId,
        tick: Duration,
        heartbeat: Duration,
        election_base: Duration,
        jitter: Duration,
        min_leadership: Duration,
    ) -> Result<Self> {
        if tick.is_zero() {
            return Err(Error::InvalidConfig {
                field: "tick",
                reason: "the tick interval must be positive".into(),
            });
        }
        let ticks = |d: Duration| -> u64 {
            let t = tick.as_nanos();
            u64::try_from(d.as_nanos().div_ceil(t)).unwrap_or(u64::MAX)
        };
        let config = Self {
            heartbeat_ticks: ticks(heartbeat),
            election_timeout_base_ticks: ticks(election_base),
            jitter_max_ticks: ticks(jitter),
            min_leadership_ticks: ticks(min_leadership),
            ..Self::new(id)
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants documented on each field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.id == 0 {
            return bad("id", "0 is reserved for \"no node\"");
        }
        if self.heartbeat_ticks == 0 {
            return bad("heartbeat_ticks", "must be at least 1");
        }
        if self.election_timeout_base_ticks <= self.heartbeat_ticks {
            return bad(
                "election_timeout_base_ticks",
                "must be larger than heartbeat_ticks",
            );
        }
        if self.max_entries_per_append == 0 {
            return bad("max_entries_per_append", "must be at least 1");
        }
        if self.max_bytes_per_append == 0 {
            return bad("max_bytes_per_append", "must be at least 1");
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs", "must be at least 1");
        }
        if self.max_inflight_bytes == 0 {
            return bad("max_inflight_bytes", "must be at least 1");
        }
        if self.max_uncommitted_bytes == 0 {
            return bad("max_uncommitted_bytes", "must be at least 1");
        }
        if self.max_committed_bytes_per_ready == 0 {
            return bad("max_committed_bytes_per_ready", "must be at least 1");
        }
        if let ReadMode::Lease { drift_margin_ticks } = self.read_mode {
            if !self.check_quorum {
                return bad("read_mode", "lease reads require check_quorum");
            }
            if drift_margin_ticks == 0 || drift_margin_ticks >= self.election_timeout_base_ticks {
                return bad(
                    "read_mode",
                    "drift_margin_ticks must be in (0, election_timeout_base_ticks)",
                );
            }
        }
        Ok(())
    }

    /// The span `[base, base + jitter)` is drawn from after the priority is applied.
    pub(crate) fn effective_jitter(&self) -> u64 {
        match self.priority {
            0 | 1 => self.jitter_max_ticks,
            p => (self.jitter_max_ticks / u64::from(p)).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_ticks() {
        let ms = Duration::from_millis;
        let c = Config::from_durations(1, ms(10), ms(50), ms(155), ms(70), ms(300)).unwrap();
        assert_eq!(c.heartbeat_ticks, 5);
        assert_eq!(c.election_timeout_base_ticks, 16);
        assert_eq!(c.jitter_max_ticks, 7);
        assert_eq!(c.min_leadership_ticks, 30);
    }

    #[test]
    fn validate_rejects_bad_values() {
        let mut c = Config::new(1);
        c.election_timeout_base_ticks = 1;
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "election_timeout_base_ticks",
                ..
            })
        ));
        let mut c = Config::new(0);
        assert!(c.validate().is_err());
        c.id = 1;
        c.check_quorum = false;
        c.read_mode = ReadMode::Lease {
            drift_margin_ticks: 2,
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "read_mode",
                ..
            })
        ));
        assert!(Config::new(3).validate().is_ok());
    }
}
