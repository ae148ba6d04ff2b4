//! The etcd `Maintenance` service: status, hashes, alarms and leadership transfer. With
//! authentication on, everything but `Status` needs the `root` user (as etcd).

use super::{EtcdService, kv_status, runtime_status};
use crate::pb::etcdserverpb::{self as pb, maintenance_server};
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl maintenance_server::Maintenance for EtcdService {
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        self.require_admin(&req).await?;
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
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.require_admin(&req).await?;
        Err(Status::unimplemented(
            "Defragment is not supported by raftd",
        ))
    }

    /// A CRC-32C of everything this member replicated (`KvStore::hash`), read locally:
    /// equal on members at the same applied index.
    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.require_admin(&req).await?;
        let store = self.ctx.store.clone();
        let hash = blocking(move || store.hash()).await?;
        Ok(Response::new(pb::HashResponse {
            header: self.header(self.ctx.store.revision()),
            hash,
        }))
    }

    /// A CRC-32C of this member's MVCC state up to `revision` (`KvStore::hash_kv_at`), read
    /// locally: equal on members that applied the same log, however far each compacted
    /// physically. `revision` 0 is the current one.
    async fn hash_kv(
        &self,
        req: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.require_admin(&req).await?;
        let store = self.ctx.store.clone();
        let revision = req.into_inner().revision;
        let h = blocking(move || store.hash_kv_at(revision)).await?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.header(self.ctx.store.revision()),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        }))
    }

    type SnapshotStream = tokio_stream::Empty<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.require_admin(&req).await?;
        Err(Status::unimplemented("Snapshot is not supported by raftd"))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.require_admin(&req).await?;
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
        req: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        self.require_admin(&req).await?;
        Err(Status::unimplemented("Downgrade is not supported by raftd"))
    }
}

/// Runs a store scan off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("hash task failed: {e}")))?
        .map_err(kv_status)
}
