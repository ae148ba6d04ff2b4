//! The etcd `KV` service: Range, Put, DeleteRange, Txn and Compact, each checked against the
//! caller's permissions (`super::auth`): reads here, writes here and again at apply.

use super::{EtcdService, kv_status, unexpected};
use crate::pb::etcdserverpb::{self as pb, kv_server};
use crate::validate::validate_range;
use crate::{Op, Response as KvResponse};
use prost::Message as _;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl kv_server::Kv for EtcdService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let who = self.who(&req).await?;
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        validate_range(&req).map_err(kv_status)?;
        self.read_barrier(req.serializable).await?;
        // Under the auth state the read sees (after the barrier for a linearizable read).
        who.under(self.ctx.store.auth_state())?
            .check_range_request(&who.user, &req)?;
        let mut resp = self
            .ctx
            .store
            .range_limited(&req, self.ctx.limits.max_range_bytes)
            .map_err(kv_status)?;
        let rev = resp
            .header
            .as_ref()
            .map_or(self.ctx.store.revision(), |h| h.revision);
        resp.header = self.header(rev);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let who = self.who(&req).await?;
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        match self.propose_as(Op::Put(req), &who).await? {
            KvResponse::Put(mut r) => {
                r.header = self.header(r.header.as_ref().map_or(0, |h| h.revision));
                Ok(Response::new(r))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let who = self.who(&req).await?;
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        match self.propose_as(Op::DeleteRange(req), &who).await? {
            KvResponse::DeleteRange(mut r) => {
                r.header = self.header(r.header.as_ref().map_or(0, |h| h.revision));
                Ok(Response::new(r))
            }
            _ => Err(unexpected("delete_range")),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let who = self.who(&req).await?;
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        let mut resp = if crate::validate::txn_is_read_only(&req) {
            crate::validate::validate_txn(&req, &self.ctx.limits).map_err(kv_status)?;
            self.read_barrier(false).await?;
            who.under(self.ctx.store.auth_state())?
                .check_txn(&who.user, &req)?;
            self.ctx.store.txn_read_only(&req).map_err(kv_status)?
        } else {
            match self.propose_as(Op::Txn(req), &who).await? {
                KvResponse::Txn(r) => r,
                _ => return Err(unexpected("txn")),
            }
        };
        resp.header = self.header(resp.header.as_ref().map_or(0, |h| h.revision));
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let who = self.who(&req).await?;
        let req = req.into_inner();
        let (revision, physical) = (req.revision, req.physical);
        match self.propose_as(Op::Compact(req), &who).await? {
            KvResponse::Compact(mut r) => {
                if physical {
                    // etcd answers a physical compaction once the removal is durable.
                    self.ctx
                        .store
                        .wait_compacted(revision)
                        .await
                        .map_err(kv_status)?;
                }
                r.header = self.header(self.ctx.store.revision());
                Ok(Response::new(r))
            }
            _ => Err(unexpected("compact")),
        }
    }
}
