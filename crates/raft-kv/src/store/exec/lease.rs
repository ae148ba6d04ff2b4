//! Apply of the lease commands and of lease attachments: grant, revoke (every attached key
//! deleted in one write transaction, so at one revision), checkpoint, and the attach/detach
//! bookkeeping of puts and deletes. Lease records and attachments go to sled with the batch
//! (see `crate::lease::record`); the in-memory [`Lessor`](crate::lease::Lessor) hears of the
//! batch's [`LeaseEvent`]s once it is written.

use super::{Batch, Tx};
use crate::error::{Error, Result};
use crate::lease::MAX_LEASE_TTL;
use crate::lease::lessor::LeaseEvent;
use crate::lease::record;
use crate::pb::etcdserverpb::{
    DeleteRangeRequest, LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
};
use crate::pb::kvlease::LeaseRecord;
use crate::store::query::header;
use prost::bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// What a batch did to leases, before it is written.
#[derive(Debug, Default)]
pub(crate) struct LeaseBatch {
    /// Lease records written (`Some`) or removed (`None`) by the batch.
    pub(crate) records: BTreeMap<i64, Option<LeaseRecord>>,
    /// Attachments added (`true`) or removed (`false`) by the batch.
    pub(crate) attach: BTreeMap<(i64, Vec<u8>), bool>,
    /// The changes, in log order, for the lessor.
    pub(crate) events: Vec<LeaseEvent>,
}

impl LeaseBatch {
    /// Adds the batch's lease records and attachments to the sled batch.
    pub(crate) fn write_to(&self, b: &mut sled::Batch) {
        for (id, rec) in &self.records {
            match rec {
                Some(r) => b.insert(record::record_key(*id), record::encode(r)),
                None => b.remove(record::record_key(*id)),
            }
        }
        for ((id, key), present) in &self.attach {
            let k = record::attach_key(*id, key);
            if *present {
                b.insert(k, &[][..]);
            } else {
                b.remove(k);
            }
        }
    }
}

impl Batch<'_> {
    /// Lease `id` as of the batch's pending writes.
    pub(super) fn lease_record(&self, id: i64) -> Result<Option<LeaseRecord>> {
        if let Some(pending) = self.lease.records.get(&id) {
            return Ok(*pending);
        }
        match self.tree.get(record::record_key(id))? {
            Some(v) => Ok(Some(record::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Whether lease `id` exists (as of the batch's pending writes).
    pub(super) fn lease_exists(&self, id: i64) -> Result<bool> {
        if let Some(pending) = self.lease.records.get(&id) {
            return Ok(pending.is_some());
        }
        Ok(self.tree.contains_key(record::record_key(id))?)
    }

    /// Moves `key` from lease `old` to lease `new` (0: none) in the attachment index.
    pub(super) fn reattach(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0 {
            self.lease.attach.insert((old, key.to_vec()), false);
        }
        if new != 0 {
            self.lease.attach.insert((new, key.to_vec()), true);
        }
    }

    /// The keys attached to lease `id` (stored, then the batch's changes), in key order.
    pub(super) fn attached_keys(&self, id: i64) -> Result<BTreeSet<Vec<u8>>> {
        let mut keys: BTreeSet<Vec<u8>> = record::attached(self.tree, id)?.into_iter().collect();
        for ((_, key), present) in self
            .lease
            .attach
            .range((id, Vec::new())..)
            .take_while(|((l, _), _)| *l == id)
        {
            if *present {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        Ok(keys)
    }

    /// `Lease.LeaseGrant`, with the id chosen by whoever proposed it.
    pub(super) fn lease_grant(&mut self, g: &LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        if g.id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if g.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.lease_exists(g.id)? {
            return Err(Error::LeaseExists);
        }
        let rec = LeaseRecord {
            id: g.id,
            ttl: g.ttl,
            remaining_ttl: 0,
        };
        self.lease.records.insert(g.id, Some(rec));
        self.lease.events.push(LeaseEvent::Granted {
            id: g.id,
            ttl: g.ttl,
        });
        Ok(LeaseGrantResponse {
            header: Some(header(self.revision)),
            id: g.id,
            ttl: g.ttl,
            error: String::new(),
        })
    }

    /// `Lease.LeaseRevoke`: deletes every key attached to the lease (in key order, in one
    /// write transaction: one revision, as etcd), then the lease.
    pub(super) fn lease_revoke(
        &mut self,
        tx: &mut Tx,
        r: &LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse> {
        if !self.lease_exists(r.id)? {
            return Err(Error::LeaseNotFound);
        }
        for key in self.attached_keys(r.id)? {
            self.delete_range(
                tx,
                &DeleteRangeRequest {
                    key: Bytes::from(key),
                    range_end: Bytes::new(),
                    prev_kv: false,
                },
            )?;
        }
        self.lease.records.insert(r.id, None);
        self.lease.events.push(LeaseEvent::Revoked(r.id));
        Ok(LeaseRevokeResponse {
            header: Some(header(tx.view_rev())),
        })
    }

    /// The leader's checkpoint of remaining TTLs (leases that are gone are skipped, as
    /// etcd does).
    pub(super) fn lease_checkpoint(
        &mut self,
        c: &LeaseCheckpointRequest,
    ) -> Result<LeaseCheckpointResponse> {
        for cp in &c.checkpoints {
            if let Some(mut rec) = self.lease_record(cp.id)? {
                rec.remaining_ttl = cp.remaining_ttl.max(0);
                self.lease.records.insert(cp.id, Some(rec));
                self.lease.events.push(LeaseEvent::Checkpointed {
                    id: cp.id,
                    remaining: cp.remaining_ttl.max(0),
                });
            }
        }
        Ok(LeaseCheckpointResponse {
            header: Some(header(self.revision)),
        })
    }
}
