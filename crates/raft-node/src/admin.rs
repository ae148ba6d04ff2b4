//! raftd's administration service (`raftd.admin.v1.Admin`, `proto/admin.proto`), served on
//! the client address next to the etcd v3 API: what `raftctl` needs and etcd's API has no
//! call for (cluster progress table, snapshot now, configuration reload).

use crate::node::reload::{ReloadError, Reloader};
use crate::pb::admin::{self as pb, admin_server};
use raft_core::{ProgressState, Role};
use raft_kv::machine::KvMachine;
use raft_kv::service::runtime_status;
use raft_runtime::RaftHandle;
use raft_snapshot::{SnapshotKind, SnapshotStore};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The longest `Snapshot` waits for the snapshot to be written.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The administration service of one node.
#[derive(Clone)]
pub struct AdminService {
    handle: RaftHandle<KvMachine>,
    reloader: Option<Arc<Reloader>>,
    snapshots: Option<SnapshotStore>,
}

impl AdminService {
    /// The service over a running node.
    pub fn new(handle: RaftHandle<KvMachine>) -> Self {
        Self {
            handle,
            reloader: None,
            snapshots: None,
        }
    }

    /// Serves `ReloadConfig` with `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// `Snapshot` answers with the newest snapshot of `store`.
    pub fn with_snapshot_store(mut self, store: SnapshotStore) -> Self {
        self.snapshots = Some(store);
        self
    }

    /// The tonic server wrapping it.
    pub fn into_server(self) -> admin_server::AdminServer<Self> {
        admin_server::AdminServer::new(self)
    }
}

pub(crate) fn role_name(role: Role, is_learner: bool) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
        Role::Follower if is_learner => "learner",
        Role::Follower => "follower",
    }
}

pub(crate) fn state_name(state: ProgressState) -> &'static str {
    match state {
        ProgressState::Probe => "probe",
        ProgressState::Replicate => "replicate",
        ProgressState::Snapshot => "snapshot",
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let Some(store) = &self.snapshots else {
            return Err(Status::failed_precondition(
                "this node keeps no snapshot store",
            ));
        };
        // A big state takes a while to write: far longer than a client request.
        let meta = self
            .handle
            .with_timeout(SNAPSHOT_TIMEOUT)
            .snapshot()
            .await
            .map_err(runtime_status)?;
        // The snapshot is taken at the applied index, which may be past what the log was
        // compacted to: the store's newest snapshot covers at least `meta.index`.
        let tip = store
            .latest()
            .map(|c| c.tip().clone())
            .filter(|t| t.index >= meta.index)
            .ok_or_else(|| {
                Status::internal(format!(
                    "the log was compacted to {} but the store holds no snapshot there",
                    meta.index
                ))
            })?;
        Ok(Response::new(pb::SnapshotResponse {
            id: tip.id.to_string(),
            index: tip.index,
            term: tip.term,
            size_bytes: tip.size,
            kind: match tip.kind {
                SnapshotKind::Full => "full",
                SnapshotKind::Delta => "incremental",
            }
            .to_string(),
        }))
    }

    async fn reload_config(
        &self,
        _request: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        let Some(reloader) = &self.reloader else {
            return Err(Status::unimplemented(
                "this node serves no configuration reload",
            ));
        };
        match reloader.reload("rpc").await {
            Ok(changed) => Ok(Response::new(pb::ReloadConfigResponse {
                changed: changed.into_iter().map(str::to_string).collect(),
            })),
            Err(e @ ReloadError::Invalid(_)) => Err(Status::invalid_argument(e.to_string())),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let s = self.handle.status().await.map_err(runtime_status)?;
        let is_learner = s.membership.learners.contains(&s.id);
        let peers = s
            .progress
            .iter()
            .map(|(&id, p)| pb::PeerProgress {
                id,
                match_index: p.matched,
                next_index: p.next,
                state: state_name(p.state).to_string(),
                inflight_messages: p.inflight_msgs as u64,
                inflight_bytes: p.inflight_bytes,
                recent_active: p.recent_active,
                is_learner: p.is_learner,
                lag: s.last_index.saturating_sub(p.matched),
            })
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            member_id: s.id,
            role: role_name(s.role, is_learner).to_string(),
            term: s.term,
            leader: s.leader.unwrap_or(0),
            commit_index: s.commit,
            applied_index: s.applied,
            last_index: s.last_index,
            voters: s.membership.voters.iter().copied().collect(),
            learners: s.membership.learners.iter().copied().collect(),
            peers,
        }))
    }
}
