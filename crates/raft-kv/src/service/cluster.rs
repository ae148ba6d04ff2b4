//! The etcd `Cluster` service: the member list and membership changes (through the log).

use super::{EtcdService, runtime_status};
use crate::Op;
use crate::pb::etcdserverpb::{self as pb, cluster_server};
use crate::pb::kvcmd::MemberPeerUrls;
use tonic::{Request, Response, Status};

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
    async fn settle(&self, done: impl Fn(&[crate::Member]) -> bool) {
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
        self.require_admin(&req).await?;
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
        self.propose(Op::SetPeerUrls(MemberPeerUrls {
            id,
            peer_urls: req.peer_ur_ls.clone(),
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
        self.require_admin(&req).await?;
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

    /// A member's new peer URLs, through the log ([`Op::SetPeerUrls`]): every replica
    /// records them in the member list and dials the member at the first one from then on.
    /// The member itself must listen there (its `listen_peer`), as with etcd.
    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.require_admin(&req).await?;
        let req = req.into_inner();
        if req.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs not given",
            ));
        }
        if let Some(bad) = req
            .peer_ur_ls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10)
        {
            return Err(Status::invalid_argument(format!(
                "etcdserver: invalid peer URL {bad:?} (expected http(s)://host:port)"
            )));
        }
        if !self.ctx.store.members().iter().any(|m| m.id == req.id) {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        let (id, urls) = (req.id, req.peer_ur_ls);
        self.propose(Op::SetPeerUrls(MemberPeerUrls {
            id,
            peer_urls: urls.clone(),
        }))
        .await?;
        self.settle(|ms| ms.iter().any(|m| m.id == id && m.peer_urls == urls))
            .await;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header(self.ctx.store.revision()),
            members: self.member_list(),
        }))
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
        self.require_admin(&req).await?;
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
