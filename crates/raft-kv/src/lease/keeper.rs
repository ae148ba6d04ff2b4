//! [`LeaseKeeper`]: the task that runs the lease clocks on the leader. Every member runs one;
//! it follows leadership through the runtime's stats (`RaftHandle::stats`: leader and term):
//!
//! - leading, with an entry of its own term applied (so every lease granted before is
//!   known): the lessor is promoted once per term ([`Lessor::promote`](super::Lessor::promote));
//! - not leading: the lessor is demoted, nothing expires here;
//! - while promoted, every tick: expired leases are revoked through the log (at most
//!   `revoke_rate` per second; a revoke lost in a leader change is proposed again by the
//!   next leader, or by this one after `retry`), and due checkpoints are proposed in batches
//!   of up to 1000 leases.

use super::LessorConfig;
use crate::machine::KvMachine;
use crate::pb::etcdserverpb::{LeaseCheckpointRequest, LeaseRevokeRequest};
use crate::{Command, Error, KvStore, Op, Outcome};
use raft_runtime::RaftHandle;
use std::time::{Duration, Instant};

/// The keeper's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeeperConfig {
    /// The lessor's settings (extension on promotion, checkpoints, revoke rate).
    pub lessor: LessorConfig,
    /// How often expiries and leadership are checked (etcd: 500 ms).
    pub tick: Duration,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        KeeperConfig {
            lessor: LessorConfig::default(),
            tick: Duration::from_millis(100),
        }
    }
}

/// Most leases one checkpoint entry carries (etcd's `maxLeaseCheckpointBatchSize`).
const CHECKPOINT_BATCH: usize = 1000;

/// The running keeper; stops when dropped.
pub struct LeaseKeeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaseKeeper {
    /// Starts the keeper of `store` (the node `handle` runs) on the current tokio runtime.
    pub fn spawn(handle: RaftHandle<KvMachine>, store: KvStore, config: KeeperConfig) -> Self {
        store.set_lessor_config(config.lessor);
        let tick = config.tick.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                step(&handle, &store, tick);
            }
        });
        LeaseKeeper { task }
    }

    /// Applies new settings (hot reload): the next promotion and checkpoints use them.
    pub fn reconfigure(store: &KvStore, config: LessorConfig) {
        store.set_lessor_config(config);
    }
}

/// One tick: follow leadership, then hand out what is due.
fn step(handle: &RaftHandle<KvMachine>, store: &KvStore, tick: Duration) {
    let stats = handle.stats();
    let me = handle.node_id();
    let leading = stats.is_leader && stats.leader == Some(me);
    let now = Instant::now();
    if !leading {
        store.with_lessor(|l| {
            if let Some(term) = l.primary_term() {
                l.demote();
                tracing::info!(node_id = me, term, "lease clocks stopped: not the leader");
            }
        });
        return;
    }
    let applied_term = store.status().applied_term;
    let (expired, checkpoints) = store.with_lessor(|l| {
        if l.primary_term() != Some(stats.term) {
            // Only once an entry of this term is applied does this node know every lease.
            if applied_term != stats.term {
                return (Vec::new(), Vec::new());
            }
            l.promote(stats.term, now);
            tracing::info!(
                node_id = me,
                term = stats.term,
                leases = l.len(),
                "lease clocks started: leader"
            );
        }
        let per_tick = (l.config().revoke_rate as u128 * tick.as_millis() / 1000).max(1) as usize;
        (
            l.take_expired(now, per_tick),
            l.take_due_checkpoints(now, CHECKPOINT_BATCH),
        )
    });
    for id in expired {
        let handle = handle.clone();
        tokio::spawn(async move {
            let cmd = Command::new(0, Op::LeaseRevoke(LeaseRevokeRequest { id }));
            match handle.propose(cmd.encode()).await {
                Ok(r) => match r.outcome {
                    Outcome::Response(_) => {
                        tracing::debug!(node_id = me, lease = id, "expired lease revoked");
                    }
                    // Revoked meanwhile (by a client, or a revoke proposed before).
                    Outcome::Rejected(Error::LeaseNotFound) => {}
                    other => tracing::warn!(lease = id, ?other, "revoking an expired lease"),
                },
                // Proposed again after the retry interval while this node leads.
                Err(e) => tracing::debug!(lease = id, %e, "revoking an expired lease"),
            }
        });
    }
    if !checkpoints.is_empty() {
        let handle = handle.clone();
        tokio::spawn(async move {
            let n = checkpoints.len();
            let cmd = Command::new(
                0,
                Op::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints }),
            );
            if let Err(e) = handle.propose(cmd.encode()).await {
                tracing::debug!(leases = n, %e, "lease checkpoint not applied");
            }
        });
    }
}
