//! etcd's server-side `Election` service (v3election), built as etcd builds it on its
//! `concurrency` Election: a candidate's key `<name>/<lease hex>` holds its value and lives
//! with its lease; the leader is the owner of the oldest key under `<name>/`. Campaign waits
//! until every older key is deleted; Proclaim and Resign act only while the key still has
//! the create revision the campaign got; Observe streams the leader's value as it changes.

use super::auth::Who;
use super::lock::{Abandon, created_at, range_kvs, read};
use super::recipe::{Watcher, by_create, lease_key, name_prefix, prefix_end, put_kv};
use super::{EtcdService, unexpected};
use crate::pb::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use crate::pb::mvccpb::event::EventType;
use crate::pb::v3electionpb::{self as pb, election_server};
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// etcd's answer to a Proclaim or Resign without a leader key.
fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

/// etcd's `ErrElectionNotLeader`.
fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn put_op(key: &Bytes, value: Bytes, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.clone(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

/// The txn a Campaign starts with: creates the candidate's key with its value and lease
/// unless it exists (then reads it).
pub(super) fn campaign_txn(key: &Bytes, value: Bytes, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(key, 0)],
        success: vec![put_op(key, value, lease)],
        failure: vec![read(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })],
    }
}

/// The txn of a Proclaim: sets the leader's value while its key still has the campaign's
/// create revision.
pub(super) fn proclaim_txn(leader: &pb::LeaderKey, value: Bytes) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![put_op(&leader.key, value, leader.lease)],
        failure: Vec::new(),
    }
}

/// The txn of a Resign: deletes the leader's key while it still has the campaign's create
/// revision.
pub(super) fn resign_txn(leader: &pb::LeaderKey) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: leader.key.clone(),
                    ..Default::default()
                },
            )),
        }],
        failure: Vec::new(),
    }
}

impl EtcdService {
    /// Sets the leader's value while `leader.key` still has create revision `leader.rev`.
    async fn proclaim_value(
        &self,
        leader: &pb::LeaderKey,
        value: Bytes,
        who: &Who,
    ) -> Result<i64, Status> {
        let resp = self.recipe_txn(proclaim_txn(leader, value), who).await?;
        if !resp.succeeded {
            return Err(not_leader());
        }
        Ok(resp.header.as_ref().map_or(0, |h| h.revision))
    }

    /// The current leader's key-value and the read's revision.
    async fn leader_kv(
        &self,
        name: &[u8],
    ) -> Result<(i64, Option<crate::pb::mvccpb::KeyValue>), Status> {
        let resp = self
            .recipe_range(&by_create(&name_prefix(name), true, 0))
            .await?;
        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
        Ok((rev, resp.kvs.into_iter().next()))
    }

    /// etcd's `Election.observe`: sends the leader's key-value each time the leader or its
    /// value changes, until the receiver goes away.
    async fn observe_into(
        &self,
        name: Bytes,
        tx: mpsc::Sender<Result<pb::LeaderResponse, Status>>,
    ) -> Result<(), Status> {
        let prefix = name_prefix(&name);
        loop {
            let (rev, first) = self.leader_kv(&name).await?;
            let (rev, kv) = match first {
                Some(kv) => (rev, kv),
                None => {
                    // Wait for the first key under the prefix.
                    let mut w = Watcher::open(
                        self,
                        Bytes::from(prefix.clone()),
                        prefix_end(&prefix),
                        rev + 1,
                    );
                    let mut found = None;
                    while found.is_none() {
                        match w.next().await? {
                            None => break,
                            Some(events) => found = events.iter().find_map(put_kv).cloned(),
                        }
                    }
                    match found {
                        Some(kv) => (kv.mod_revision, kv),
                        None => continue,
                    }
                }
            };
            let send = |rev: i64, kv| {
                tx.send(Ok(pb::LeaderResponse {
                    header: self.header(rev),
                    kv: Some(kv),
                }))
            };
            if send(rev, kv.clone()).await.is_err() {
                return Ok(());
            }
            let mut w = Watcher::open(self, kv.key.clone(), Bytes::new(), rev + 1);
            'leader: loop {
                let Some(events) = w.next().await? else {
                    break 'leader;
                };
                for e in events {
                    if e.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    if let Some(kv) = e.kv
                        && send(kv.mod_revision, kv).await.is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[tonic::async_trait]
impl election_server::Election for EtcdService {
    async fn campaign(
        &self,
        req: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let who = self
            .recipe_allowed(req.metadata(), req.extensions(), &req.get_ref().name)
            .await?;
        let req = req.into_inner();
        let prefix = name_prefix(&req.name);
        let key = lease_key(&prefix, req.lease);
        let resp = self
            .recipe_txn(campaign_txn(&key, req.value.clone(), req.lease), &who)
            .await?;
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let mut leader = pb::LeaderKey {
            name: req.name.clone(),
            key: key.clone(),
            rev: header_rev,
            lease: req.lease,
        };
        let abandon = Abandon::new(self, key.clone());
        if !resp.succeeded {
            let kv = range_kvs(&resp, 0)
                .first()
                .ok_or_else(|| unexpected("campaign: the candidate's key vanished"))?;
            leader.rev = kv.create_revision;
            if kv.value != req.value {
                self.proclaim_value(&leader, req.value.clone(), &who)
                    .await?;
            }
        }
        self.wait_deletes(&prefix, leader.rev - 1).await?;
        abandon.keep();
        Ok(Response::new(pb::CampaignResponse {
            header: self.header(header_rev),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let who = self
            .recipe_allowed(
                req.metadata(),
                req.extensions(),
                req.get_ref()
                    .leader
                    .as_ref()
                    .map_or(&[][..], |l| &l.name[..]),
            )
            .await?;
        let req = req.into_inner();
        let leader = req.leader.ok_or_else(missing_leader)?;
        let rev = self.proclaim_value(&leader, req.value, &who).await?;
        Ok(Response::new(pb::ProclaimResponse {
            header: self.header(rev),
        }))
    }

    async fn leader(
        &self,
        req: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        self.recipe_allowed(req.metadata(), req.extensions(), &req.get_ref().name)
            .await?;
        let (rev, kv) = self.leader_kv(&req.into_inner().name).await?;
        let kv = kv.ok_or_else(|| Status::unknown("election: no leader"))?;
        Ok(Response::new(pb::LeaderResponse {
            header: self.header(rev),
            kv: Some(kv),
        }))
    }

    type ObserveStream = ReceiverStream<Result<pb::LeaderResponse, Status>>;

    async fn observe(
        &self,
        req: Request<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        self.recipe_allowed(req.metadata(), req.extensions(), &req.get_ref().name)
            .await?;
        let name = req.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move {
            let closed = tx.clone();
            tokio::select! {
                r = svc.observe_into(name, tx.clone()) => {
                    if let Err(status) = r {
                        let _ = tx.send(Err(status)).await;
                    }
                }
                _ = closed.closed() => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resign(
        &self,
        req: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let who = self
            .recipe_allowed(
                req.metadata(),
                req.extensions(),
                req.get_ref()
                    .leader
                    .as_ref()
                    .map_or(&[][..], |l| &l.name[..]),
            )
            .await?;
        let leader = req.into_inner().leader.ok_or_else(missing_leader)?;
        let resp = self.recipe_txn(resign_txn(&leader), &who).await?;
        Ok(Response::new(pb::ResignResponse {
            header: self.header(resp.header.as_ref().map_or(0, |h| h.revision)),
        }))
    }
}
