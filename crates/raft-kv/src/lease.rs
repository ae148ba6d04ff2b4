//! Leases as etcd has them: a TTL that a client keeps alive, and keys attached to it that are
//! deleted when it is revoked or expires.
//!
//! - **State in the store** (`record`): one record per lease in the internal key space (id,
//!   granted TTL, the last checkpoint's remaining TTL) and an attachment index `b'l'` from a
//!   lease to its keys, both written by apply in the batch's one sled write, so they never
//!   disagree with the data. Snapshots (full and delta) carry the records; a restore rebuilds
//!   the index from the data it writes. The key's own entry holds its lease (etcd's
//!   `KeyValue.lease`).
//! - **Commands through the log** (`Op::LeaseGrant`, `Op::LeaseRevoke`,
//!   `Op::LeaseCheckpoint`, etcd's own requests): a grant carries the id the proposer chose;
//!   a revoke deletes every attached key in one write transaction (one revision, watchers see
//!   the deletes together) and then the lease; a put with a lease attaches the key (a put
//!   without one, or a delete, detaches it).
//! - **Clocks on the leader only** ([`Lessor`], [`keeper::LeaseKeeper`]): every member keeps
//!   every lease in memory, but only the leader, once it has applied its term's first entry,
//!   counts down TTLs. It proposes a revoke when a lease expires, so every member deletes the
//!   keys at the same revision; a new leader gives every lease its remaining TTL plus an
//!   election timeout again (no mass expiry after a failover), the remaining TTL being the
//!   last checkpoint's when there is one, so a long lease is not extended forever by leader
//!   changes.
//! - **Keep-alives and TTL queries reach the leader from any member**: a follower forwards
//!   them through a [`forward::LeaderChannel`] (raftd: raft-net's application request on the
//!   peer port, over the peers' (m)TLS).

pub mod forward;
pub mod keeper;
pub mod lessor;
pub(crate) mod record;

pub use lessor::{Lessor, LessorConfig, MAX_LEASE_TTL, Renewal, TimeToLive};

use crate::error::Result;
use crate::store::KvStore;
use prost::bytes::Bytes;

impl KvStore {
    /// Every lease's id and granted TTL, by id.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.shared.leases.lock().list()
    }

    /// Lease `id`'s granted TTL and checkpointed remaining TTL (0: none), if it exists.
    pub fn lease(&self, id: i64) -> Option<(i64, i64)> {
        self.shared.leases.lock().get(id)
    }

    /// The keys attached to lease `id`, in key order (none when it does not exist).
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Bytes>> {
        let state = self.shared.state.read();
        if let Some(e) = state.unusable() {
            return Err(e);
        }
        Ok(record::attached(&self.shared.tree, id)?
            .into_iter()
            .map(Bytes::from)
            .collect())
    }

    /// Changes the lease clocks' settings (see [`LessorConfig`]).
    pub fn set_lessor_config(&self, config: LessorConfig) {
        self.shared.leases.lock().set_config(config);
    }

    /// Runs `f` on the lessor (never call back into the store from `f`).
    pub fn with_lessor<R>(&self, f: impl FnOnce(&mut Lessor) -> R) -> R {
        f(&mut self.shared.leases.lock())
    }
}

#[cfg(test)]
mod tests;
