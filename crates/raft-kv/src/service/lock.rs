//! etcd's server-side `Lock` service (v3lock), built as etcd builds it on its `concurrency`
//! Mutex: the waiter's key `<name>/<lease hex>` is created with the lease (or found, when the
//! lease already waits or holds), and the lock is held once every key under `<name>/` with a
//! lower create revision is deleted. A lease that ends deletes its key, which releases the
//! lock or leaves the queue.

use super::recipe::{by_create, lease_key, name_prefix};
use super::{EtcdService, unexpected};
use crate::pb::etcdserverpb::{
    Compare, RangeRequest, RequestOp, TxnRequest, compare, request_op, response_op,
};
use crate::pb::v3lockpb::{self as pb, lock_server};
use prost::bytes::Bytes;
use tonic::{Request, Response, Status};

/// Deletes a waiter's key when its Lock call ends without the lock (the client went away
/// or the wait failed), as etcd's Mutex does.
pub(super) struct Abandon {
    svc: Option<EtcdService>,
    key: Bytes,
}

impl Abandon {
    pub(super) fn new(svc: &EtcdService, key: Bytes) -> Self {
        Abandon {
            svc: Some(svc.clone()),
            key,
        }
    }

    /// The call succeeded: the key stays.
    pub(super) fn keep(mut self) {
        self.svc = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(svc) = self.svc.take() {
            let key = self.key.clone();
            tokio::spawn(async move {
                if let Err(e) = svc.recipe_delete(key, None).await {
                    tracing::debug!(%e, "deleting an abandoned lock or election key");
                }
            });
        }
    }
}

/// A txn compare: `key`'s create revision equals `rev` (0: the key does not exist).
pub(super) fn created_at(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        range_end: Bytes::new(),
    }
}

/// A txn op reading `r`.
pub(super) fn read(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    }
}

/// The kvs of a txn's `i`-th response, when it is a range.
pub(super) fn range_kvs(
    resp: &crate::pb::etcdserverpb::TxnResponse,
    i: usize,
) -> &[crate::pb::mvccpb::KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// The txn a Lock starts with (etcd's `Mutex.tryAcquire`): creates the waiter's key
/// `<name>/<lease hex>` with the lease unless it exists (then reads it), and reads the
/// oldest key under `<name>/`, the holder. Returns the waiter's key and the txn, which is
/// proposed as the caller (apply checks its permissions again).
pub(super) fn lock_txn(name: &[u8], lease: i64) -> (Bytes, TxnRequest) {
    let prefix = name_prefix(name);
    let key = lease_key(&prefix, lease);
    let put = RequestOp {
        request: Some(request_op::Request::RequestPut(
            crate::pb::etcdserverpb::PutRequest {
                key: key.clone(),
                lease,
                ..Default::default()
            },
        )),
    };
    let get = read(RangeRequest {
        key: key.clone(),
        ..Default::default()
    });
    let owner = read(by_create(&prefix, true, 0));
    let txn = TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![put, owner.clone()],
        failure: vec![get, owner],
    };
    (key, txn)
}

/// The lock name of a lock key (`name ++ "/" ++ lease id in hex`): everything before the
/// last `/`.
fn lock_name(key: &[u8]) -> &[u8] {
    key.iter()
        .rposition(|b| *b == b'/')
        .map_or(key, |i| &key[..i])
}

#[tonic::async_trait]
impl lock_server::Lock for EtcdService {
    async fn lock(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let who = self
            .recipe_allowed(req.metadata(), req.extensions(), &req.get_ref().name)
            .await?;
        let req = req.into_inner();
        let prefix = name_prefix(&req.name);
        let (key, txn) = lock_txn(&req.name, req.lease);
        let resp = self.recipe_txn(txn, &who).await?;
        let mut my_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            my_rev = range_kvs(&resp, 0)
                .first()
                .ok_or_else(|| unexpected("lock: the waiter's key vanished"))?
                .create_revision;
        }
        let holder = range_kvs(&resp, 1).first().map(|kv| kv.create_revision);
        if holder.is_none_or(|rev| rev == my_rev) {
            return Ok(Response::new(pb::LockResponse {
                header: self.header(resp.header.as_ref().map_or(0, |h| h.revision)),
                key,
            }));
        }
        let abandon = Abandon::new(self, key.clone());
        self.wait_deletes(&prefix, my_rev - 1).await?;
        // The lease may have ended while waiting: then the key is gone and the lock is not
        // held (etcd's ErrSessionExpired).
        let mine = self
            .recipe_range(&RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        if mine.kvs.is_empty() {
            return Err(Status::unknown("mutex: session is expired"));
        }
        abandon.keep();
        Ok(Response::new(pb::LockResponse {
            header: self.header(mine.header.as_ref().map_or(0, |h| h.revision)),
            key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        let who = self
            .recipe_allowed(
                req.metadata(),
                req.extensions(),
                lock_name(&req.get_ref().key),
            )
            .await?;
        let resp = self.recipe_delete(req.into_inner().key, Some(&who)).await?;
        Ok(Response::new(pb::UnlockResponse {
            header: self.header(resp.header.as_ref().map_or(0, |h| h.revision)),
        }))
    }
}
