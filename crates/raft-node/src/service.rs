//! The etcd v3 gRPC services of raftd (`KV`, `Cluster`, `Maintenance`) over a running node:
//! writes go through `RaftHandle::propose` and answer after apply, linearizable reads wait
//! for a ReadIndex barrier and then read the local store, serializable reads read it at once.
//!
//! This glue lives in raft-node for now; it may move into raft-kv as `raft_kv::service`.

use crate::node::machine::{AddressBook, KvMachine, peer_key};
use bytes::Bytes;
use prost::Message as _;
use raft_kv::pb::etcdserverpb::{self as pb, cluster_server, kv_server, maintenance_server};
use raft_kv::validate::{Limits, validate_command, validate_range};
use raft_kv::{Command, KvStore, Op, Outcome, Response as KvResponse};
use raft_runtime::RaftHandle;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Everything the services share.
pub struct Ctx {
    /// The running node.
    pub handle: RaftHandle<KvMachine>,
    /// The local store (for reads).
    pub store: KvStore,
    /// Peer addresses.
    pub book: AddressBook,
    /// The cluster id for response headers.
    pub cluster_id: u64,
    /// This node's id.
    pub member_id: u64,
    /// Request limits.
    pub limits: Limits,
}

/// The services, cheap to clone.
#[derive(Clone)]
pub struct EtcdService {
    ctx: Arc<Ctx>,
}

impl EtcdService {
    /// Services over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx: Arc::new(ctx) }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.ctx.cluster_id,
            member_id: self.ctx.member_id,
            revision,
            raft_term: self.ctx.handle.stats().term,
        })
    }

    /// UNAVAILABLE when no leader is known (a request would only wait for its timeout).
    fn ready(&self) -> Result<(), Status> {
        if self.ctx.handle.stats().leader.is_none() {
            return Err(Status::unavailable("etcdserver: no leader"));
        }
        Ok(())
    }

    fn check_size(&self, len: usize) -> Result<(), Status> {
        if len > self.ctx.limits.max_request_bytes {
            return Err(Status::invalid_argument("etcdserver: request is too large"));
        }
        Ok(())
    }

    async fn propose(&self, op: Op) -> Result<KvResponse, Status> {
        self.ready()?;
        let cmd = Command::new(0, op);
        validate_command(&cmd, &self.ctx.limits).map_err(kv_status)?;
        let result = self
            .ctx
            .handle
            .propose(cmd.encode())
            .await
            .map_err(runtime_status)?;
        match result.outcome {
            Outcome::Response(r) => Ok(r),
            Outcome::Rejected(e) => Err(kv_status(e)),
            Outcome::AlreadyApplied | Outcome::Noop => Err(Status::internal(
                "the proposal was applied without an answer",
            )),
        }
    }

    async fn read_barrier(&self, serializable: bool) -> Result<(), Status> {
        if serializable {
            return Ok(());
        }
        self.ready()?;
        self.ctx
            .handle
            .read_index()
            .await
            .map(|_| ())
            .map_err(runtime_status)
    }
}

/// A raft-kv error as the gRPC status etcd answers.
pub fn kv_status(e: raft_kv::Error) -> Status {
    Status::new(e.code(), e.to_string())
}

/// A runtime error as a gRPC status (etcd's messages where it has one).
pub fn runtime_status(e: raft_runtime::Error) -> Status {
    use raft_runtime::Error as E;
    match e {
        E::NotLeader { .. } => Status::unavailable("etcdserver: no leader"),
        E::LeaderChanged | E::Overwritten => Status::unavailable("etcdserver: leader changed"),
        E::ProposalDropped(m) => Status::unavailable(format!("etcdserver: proposal dropped: {m}")),
        E::Timeout(_) => Status::unavailable("etcdserver: request timed out"),
        E::Shutdown => Status::unavailable("etcdserver: server stopped"),
        E::ConfChangeRejected(m) => Status::failed_precondition(m),
        other => Status::internal(other.to_string()),
    }
}

fn unexpected(what: &str) -> Status {
    Status::internal(format!("unexpected answer to {what}"))
}

#[tonic::async_trait]
impl kv_server::Kv for EtcdService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        validate_range(&req).map_err(kv_status)?;
        self.read_barrier(req.serializable).await?;
        let mut resp = self.ctx.store.range(&req).map_err(kv_status)?;
        let rev = resp
            .header
            .as_ref()
            .map_or(self.ctx.store.revision(), |h| h.revision);
        resp.header = self.header(rev);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        match self.propose(Op::Put(req)).await? {
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
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        match self.propose(Op::DeleteRange(req)).await? {
            KvResponse::DeleteRange(mut r) => {
                r.header = self.header(r.header.as_ref().map_or(0, |h| h.revision));
                Ok(Response::new(r))
            }
            _ => Err(unexpected("delete_range")),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let req = req.into_inner();
        self.check_size(req.encoded_len())?;
        let mut resp = if raft_kv::validate::txn_is_read_only(&req) {
            raft_kv::validate::validate_txn(&req, &self.ctx.limits).map_err(kv_status)?;
            self.read_barrier(false).await?;
            self.ctx.store.txn_read_only(&req).map_err(kv_status)?
        } else {
            match self.propose(Op::Txn(req)).await? {
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
        match self.propose(Op::Compact(req.into_inner())).await? {
            KvResponse::Compact(mut r) => {
                r.header = self.header(self.ctx.store.revision());
                Ok(Response::new(r))
            }
            _ => Err(unexpected("compact")),
        }
    }
}

impl EtcdService {
    fn member_list(&self) -> Vec<pb::Member> {
        self.ctx
            .store
            .members()
            .iter()
            .map(pb::Member::from)
            .collect()
    }

    /// Waits (briefly) until the local store lists `id` as wanted after a change.
    async fn settle(&self, done: impl Fn(&[raft_kv::Member]) -> bool) {
        for _ in 0..50 {
            if done(&self.ctx.store.members()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for EtcdService {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let req = req.into_inner();
        let Some(url) = req.peer_ur_ls.first().cloned() else {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs not given",
            ));
        };
        let status = self.ctx.handle.status().await.map_err(runtime_status)?;
        let members = self.ctx.store.members();
        let id = status
            .membership
            .members()
            .into_iter()
            .chain(members.iter().map(|m| m.id))
            .max()
            .unwrap_or(0)
            + 1;
        // The address first, through the log, so every replica can dial the new member.
        self.propose(Op::Put(pb::PutRequest {
            key: peer_key(id),
            value: Bytes::from(url.clone()),
            ..Default::default()
        }))
        .await?;
        self.ctx.book.set(id, &url);
        let r = if req.is_learner {
            self.ctx.handle.add_learner(id).await
        } else {
            self.ctx.handle.add_voter(id).await
        };
        r.map_err(runtime_status)?;
        self.settle(|ms| ms.iter().any(|m| m.id == id)).await;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(self.ctx.store.revision()),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: vec![url],
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.member_list(),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        if !self.ctx.store.members().iter().any(|m| m.id == id) {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        self.ctx
            .handle
            .remove_node(id)
            .await
            .map_err(runtime_status)?;
        self.settle(|ms| ms.iter().all(|m| m.id != id)).await;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header(self.ctx.store.revision()),
            members: self.member_list(),
        }))
    }

    async fn member_update(
        &self,
        _req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "MemberUpdate is not supported by raftd",
        ))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.read_barrier(!req.into_inner().linearizable).await?;
        Ok(Response::new(pb::MemberListResponse {
            header: self.header(self.ctx.store.revision()),
            members: self.member_list(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        match self.ctx.store.members().iter().find(|m| m.id == id) {
            None => return Err(Status::not_found("etcdserver: member not found")),
            Some(m) if !m.is_learner => {
                return Err(Status::failed_precondition(
                    "etcdserver: can only promote a learner member",
                ));
            }
            Some(_) => {}
        }
        self.ctx
            .handle
            .add_voter(id)
            .await
            .map_err(runtime_status)?;
        self.settle(|ms| ms.iter().any(|m| m.id == id && !m.is_learner))
            .await;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header(self.ctx.store.revision()),
            members: self.member_list(),
        }))
    }
}

#[tonic::async_trait]
impl maintenance_server::Maintenance for EtcdService {
    async fn alarm(
        &self,
        _req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Ok(Response::new(pb::AlarmResponse {
            header: self.header(self.ctx.store.revision()),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let stats = self.ctx.handle.stats();
        let store = self.ctx.store.status();
        let db_size = self.ctx.store.db_size().unwrap_or(0) as i64;
        let is_learner = self
            .ctx
            .store
            .members()
            .iter()
            .any(|m| m.id == self.ctx.member_id && m.is_learner);
        let mut errors = Vec::new();
        if stats.leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        Ok(Response::new(pb::StatusResponse {
            header: self.header(store.revision),
            version: env!("CARGO_PKG_VERSION").to_string(),
            db_size,
            leader: stats.leader.unwrap_or(0),
            raft_index: stats.commit,
            raft_term: stats.term,
            raft_applied_index: stats.applied,
            errors,
            db_size_in_use: db_size,
            is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(Status::unimplemented(
            "Defragment is not supported by raftd",
        ))
    }

    async fn hash(
        &self,
        _req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Err(Status::unimplemented("Hash is not supported by raftd"))
    }

    /// A CRC-32C of this member's keys and records (`KvStore::hash_kv`), read locally: equal
    /// on members at the same applied index. `revision` must be 0 or the current one.
    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let store = &self.ctx.store;
        let (hash, hash_revision) = store
            .hash_kv(req.into_inner().revision)
            .map_err(kv_status)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.header(hash_revision),
            hash,
            compact_revision: store.compact_revision(),
            hash_revision,
        }))
    }

    type SnapshotStream = tokio_stream::Empty<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("Snapshot is not supported by raftd"))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        self.ctx
            .handle
            .transfer_leader(target)
            .await
            .map_err(runtime_status)?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: self.header(self.ctx.store.revision()),
        }))
    }

    async fn downgrade(
        &self,
        _req: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented("Downgrade is not supported by raftd"))
    }
}
