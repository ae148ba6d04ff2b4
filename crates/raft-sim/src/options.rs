//! What one simulated run is asked to do ([`SimOptions`], the bug to inject:
//! [`Mutation`]) and what a passing run reports ([`RunReport`]).
//!
//! These sit below both [`run`](crate::run), the entry point, and
//! [`cluster`](crate::cluster), which carries a run out.

use crate::swarm::SwarmConfig;
use crate::trace::TraceKeep;

/// A known bug class injected at the simulator boundary, to prove the checks catch it.
/// Never enabled by default; see `docs/testing.md` for how each one is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The leader acknowledges a client's put as soon as its own write of the entry is
    /// durable, before a quorum has it: commit without a quorum.
    CommitWithoutQuorum,
    /// A node that already voted for another candidate in a term grants its vote to a
    /// second candidate (its `VoteResponse` rejection is flipped to a grant).
    DoubleVote,
    /// `persisted_messages` (vote grants, append acknowledgements) are sent at once
    /// instead of after the `Ready`'s writes are durable.
    AckBeforePersist,
    /// A node that believes it is leader serves reads from its state machine at once,
    /// without a ReadIndex round (a deposed leader serves stale data).
    StaleLocalRead,
}

impl Mutation {
    /// The mutation's name on the command line (`--mutation NAME`).
    pub fn cli_name(self) -> &'static str {
        match self {
            Mutation::CommitWithoutQuorum => "commit-without-quorum",
            Mutation::DoubleVote => "double-vote",
            Mutation::AckBeforePersist => "ack-before-persist",
            Mutation::StaleLocalRead => "stale-local-read",
        }
    }

    /// The mutation called `name` on the command line.
    pub fn from_cli_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.cli_name() == name)
    }

    /// Every mutation.
    pub const ALL: [Mutation; 4] = [
        Mutation::CommitWithoutQuorum,
        Mutation::DoubleVote,
        Mutation::AckBeforePersist,
        Mutation::StaleLocalRead,
    ];
}

/// How to run a seed.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Length of the run in Raft ticks (one tick = [`TICK_MS`](crate::swarm::TICK_MS)
    /// simulated milliseconds).
    pub ticks: u64,
    /// Ticks at the end of the run without faults: the liveness phase.
    pub liveness_ticks: u64,
    /// Within this many ticks of the faults stopping, a leader must be elected and a write
    /// committed.
    pub liveness_bound_ticks: u64,
    /// Check the client history for linearizability at the end.
    pub check_linearizability: bool,
    /// Search steps allowed per key before the checker gives up (reported as unknown).
    pub max_lin_steps_per_key: u64,
    /// Which trace lines to keep in memory.
    pub trace: TraceKeep,
    /// A bug to inject (tests of the checkers only).
    pub mutation: Option<Mutation>,
    /// Use this configuration instead of drawing one from the seed.
    pub swarm: Option<SwarmConfig>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            ticks: 10_000,
            liveness_ticks: 2_000,
            liveness_bound_ticks: 1_000,
            check_linearizability: true,
            max_lin_steps_per_key: 2_000_000,
            trace: TraceKeep::Tail(400),
            mutation: None,
            swarm: None,
        }
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Hash of the whole trace (equal for two runs of one seed).
    pub trace_hash: u64,
    /// Trace lines written.
    pub trace_lines: u64,
    /// Events processed.
    pub events: u64,
    /// Raft ticks simulated (per node).
    pub ticks: u64,
    /// Client operations in the history checked.
    pub history_ops: usize,
    /// Operations acknowledged with a result.
    pub ops_completed: u64,
    /// Operations that timed out (indeterminate).
    pub ops_indeterminate: u64,
    /// Highest committed index.
    pub committed: u64,
    /// Leaders elected (distinct terms with a leader).
    pub elections: u64,
    /// Keys whose linearizability search ran out of budget.
    pub lin_unknown: usize,
    /// Messages sent.
    pub messages: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Membership changes committed.
    pub conf_changes: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Log compactions.
    pub compactions: u64,
    /// Snapshots installed over a divergent tail (the follower held another entry at the
    /// snapshot's index, or a last entry that is not the committed one).
    pub divergent_snapshots: u64,
    /// Snapshot transfers that failed (the leader retried).
    pub snapshot_failures: u64,
    /// Nodes stopped by an fsync error.
    pub fsync_failures: u64,
    /// Restarts whose state machine resumed behind the durable commit index.
    pub restarts_behind_commit: u64,
    /// The run applied committed entries asynchronously (behind commit).
    pub async_apply: bool,
    /// The run served reads from leases, with drifting clocks.
    pub lease_reads: bool,
    /// Keys whose history was checked for linearizability.
    pub lin_keys: usize,
    /// Committed indexes a follower reported before any leader (0 expected: a leader
    /// reports a new commit index in its `Ready` before the messages that tell followers,
    /// so recorded commit terms are the committing leaders').
    pub commits_first_seen_on_followers: u64,
    /// The trace lines kept (per [`SimOptions::trace`]).
    pub trace: String,
}
