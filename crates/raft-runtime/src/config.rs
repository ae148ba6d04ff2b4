//! Settings of the runtime around the protocol's own [`raft_core::Config`].

use crate::error::{Error, Result};
use raft_core::Membership;
use std::time::Duration;

/// How one node's event loop runs.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The protocol configuration (node id, timing in ticks, read mode, limits). Its
    /// `applied` field is filled in from the state machine at start.
    pub raft: raft_core::Config,
    /// The length of one tick (default 10 ms).
    pub tick: Duration,
    /// Voters of a new cluster: written to an empty log at the first start (ignored when
    /// the log already holds state). `None` for a node that joins an existing cluster: it
    /// waits for the leader to send it a snapshot.
    pub bootstrap: Option<Membership>,
    /// The longest any request waits for its outcome (default 5 s).
    pub request_timeout: Duration,
    /// The most proposals handed to the core in one batch (default 4096).
    pub max_batch_proposals: usize,
    /// The most inbound messages stepped before the loop looks at its other inputs
    /// (default 256).
    pub max_batch_messages: usize,
    /// Capacity of the proposal channel (default 65536); callers wait when it is full.
    pub request_queue: usize,
    /// New proposals wait while more than this many committed entries are waiting to be
    /// applied (default 65536): backpressure from a slow state machine to clients.
    pub max_apply_lag: u64,
    /// Take a state-machine snapshot and compact the log every this many applied entries
    /// (default 100,000; 0 disables).
    pub snapshot_threshold: u64,
    /// Also take a snapshot once the entries applied since the last one hold this many
    /// bytes of data (default 0: disabled). Counted from the runtime's start.
    pub snapshot_log_bytes: u64,
    /// Seed of the core's election-timeout randomness (default: derived from the clock).
    pub rng_seed: Option<u64>,
    /// How long the event loop may hold back committed entries that no client on this node
    /// waits for (a follower's, or entries other nodes proposed) before handing them to be
    /// applied, so that one state-machine write covers several batches (default 5 ms; zero
    /// applies at once). A batch with a waiting client, a membership change, or a
    /// linearizable read waiting for it goes at once, taking what was held back with it.
    /// Serializable reads on this node may trail by this much more.
    pub apply_linger: Duration,
    /// A committed batch of at most this many entries that a client on this node waits
    /// for is applied by the event loop itself when the apply thread has nothing queued,
    /// instead of being handed to that thread (default 64; 0: always hand over). It saves
    /// one thread hand-off per request on the path of a write; the loop stays busy for the
    /// state machine's time on those entries.
    pub apply_inline_max_entries: usize,
}

impl RuntimeConfig {
    /// Defaults for node `id` with the core's default configuration.
    pub fn new(id: u64) -> Self {
        Self {
            raft: raft_core::Config::new(id),
            tick: Duration::from_millis(10),
            bootstrap: None,
            request_timeout: Duration::from_secs(5),
            max_batch_proposals: 4096,
            max_batch_messages: 256,
            request_queue: 1 << 16,
            max_apply_lag: 1 << 16,
            snapshot_threshold: 100_000,
            snapshot_log_bytes: 0,
            rng_seed: None,
            apply_linger: Duration::from_millis(5),
            apply_inline_max_entries: 64,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        self.raft.validate()?;
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.tick.is_zero() {
            return bad("tick", "must be positive");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.max_batch_proposals == 0 {
            return bad("max_batch_proposals", "must be at least 1");
        }
        if self.max_batch_messages == 0 {
            return bad("max_batch_messages", "must be at least 1");
        }
        if self.request_queue == 0 {
            return bad("request_queue", "must be at least 1");
        }
        if let Some(m) = &self.bootstrap
            && m.voters.is_empty()
        {
            return bad("bootstrap", "a new cluster needs at least one voter");
        }
        Ok(())
    }
}
