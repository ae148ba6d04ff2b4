//! The etcd `Lease` service: grants and revokes go through the log; keep-alives and TTL
//! queries are answered by the leader's lessor (a follower forwards them, see
//! [`crate::lease::forward`]); the lease list is read locally after a read barrier.

use super::auth::Who;
use super::{EtcdService, kv_status, unexpected};
use crate::auth::AuthError;
use crate::lease::forward::LeaderChannel;
use crate::lease::{MAX_LEASE_TTL, Renewal, TimeToLive};
use crate::pb::etcdserverpb::{self as pb, lease_server};
use crate::pb::kvlease::{ForwardRequest, ForwardResponse, forward_request, forward_response};
use crate::{Error, Op, Response as KvResponse};
use prost::Message as _;
use prost::bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How the services handle leases.
#[derive(Clone, Default)]
pub struct LeaseOptions {
    /// Granted TTLs below this are raised to it (etcd: 1.5 election timeouts, rounded up to
    /// whole seconds), so a lease outlives a leader election. At least 1.
    pub min_ttl: i64,
    /// How a follower reaches the leader with keep-alives and TTL queries; without one, only
    /// the leader answers them (followers time out).
    pub forward: Option<Arc<dyn LeaderChannel>>,
}

/// The lease part of the services' state.
pub(super) struct LeaseState {
    pub(super) options: LeaseOptions,
    /// etcd's request id generator: member id (low 16 bits) in the top bits, then the time in
    /// milliseconds at start, then a counter.
    next_id: AtomicU64,
    prefix: u64,
}

impl LeaseState {
    pub(super) fn new(member_id: u64, options: LeaseOptions) -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        LeaseState {
            options,
            next_id: AtomicU64::new((millis & ((1 << 40) - 1)) << 8),
            prefix: (member_id & 0xffff) << 48,
        }
    }

    /// A fresh positive lease id.
    fn next_id(&self) -> i64 {
        loop {
            let suffix = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let id = ((self.prefix | (suffix & ((1 << 48) - 1))) & (u64::MAX >> 1)) as i64;
            if id != 0 {
                return id;
            }
        }
    }
}

/// Pause between attempts while no leader (or no promoted one) answers.
const RETRY: Duration = Duration::from_millis(50);

impl EtcdService {
    /// The request deadline of a lease call that waits for the leader.
    fn lease_deadline(&self) -> Instant {
        Instant::now() + self.ctx.handle.timeout()
    }

    /// Waits until this member applied everything it knew committed when called (etcd's
    /// `waitAppliedIndex` before a renewal or a TTL query on the leader): apply runs behind
    /// commit, and a revoke or grant a client saw acknowledged (through another member) may
    /// not be in this member's lessor yet. Cheaper than a read barrier: no round trip.
    async fn wait_applied_commit(&self, deadline: Instant) -> Result<(), Status> {
        let target = self.ctx.handle.stats().commit;
        while self.ctx.store.applied_index() < target {
            if Instant::now() >= deadline {
                return Err(Status::unavailable("etcdserver: request timed out"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Renews lease `id` on this member, the leader: `Ok(None)` when its lessor is not
    /// primary (not promoted yet, or no longer the leader). A lease it does not know gets
    /// one read barrier first (the grant may be committed but not applied here yet).
    async fn renew_local(&self, id: i64, deadline: Instant) -> Result<Option<i64>, Status> {
        self.wait_applied_commit(deadline).await?;
        let mut barrier_done = false;
        loop {
            let now = Instant::now();
            match self.ctx.store.with_lessor(|l| l.renew(id, now)) {
                Renewal::Renewed {
                    ttl,
                    clear_checkpoint,
                } => {
                    if clear_checkpoint {
                        // A later leader must count from this renewal, not from the checkpoint.
                        let cp = pb::LeaseCheckpointRequest {
                            checkpoints: vec![pb::LeaseCheckpoint {
                                id,
                                remaining_ttl: 0,
                            }],
                        };
                        if let Err(e) = self.propose(Op::LeaseCheckpoint(cp)).await {
                            tracing::debug!(lease = id, %e, "clearing a lease checkpoint");
                        }
                    }
                    return Ok(Some(ttl));
                }
                Renewal::NotPrimary => return Ok(None),
                Renewal::NotFound if !barrier_done => {
                    barrier_done = true;
                    self.read_barrier(false).await?;
                }
                Renewal::NotFound => return Ok(Some(0)),
                // Its revoke is on its way: answer once it is applied (etcd waits too).
                Renewal::Expired => {
                    if Instant::now() >= deadline {
                        return Err(Status::unavailable("etcdserver: request timed out"));
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Lease `id`'s TTLs from this member's lessor: `Ok(None)` when it is not primary.
    async fn time_to_live_local(
        &self,
        req: &pb::LeaseTimeToLiveRequest,
    ) -> Result<Option<pb::LeaseTimeToLiveResponse>, Status> {
        self.wait_applied_commit(self.lease_deadline()).await?;
        let mut barrier_done = false;
        loop {
            let found = self
                .ctx
                .store
                .with_lessor(|l| l.time_to_live(req.id, Instant::now()));
            let (ttl, granted) = match found {
                TimeToLive::NotPrimary => return Ok(None),
                TimeToLive::NotFound if !barrier_done => {
                    barrier_done = true;
                    self.read_barrier(false).await?;
                    continue;
                }
                TimeToLive::NotFound => (-1, 0),
                TimeToLive::Found { remaining, granted } => (remaining, granted),
            };
            let keys = if req.keys && ttl >= 0 {
                self.ctx.store.lease_keys(req.id).map_err(kv_status)?
            } else {
                Vec::new()
            };
            return Ok(Some(pb::LeaseTimeToLiveResponse {
                header: self.header(self.ctx.store.revision()),
                id: req.id,
                ttl,
                granted_ttl: granted,
                keys,
            }));
        }
    }

    /// Asks the leader (this member or another) to answer `req`, until the deadline.
    async fn ask_leader(&self, req: ForwardRequest) -> Result<forward_response::Response, Status> {
        let deadline = self.lease_deadline();
        let me = self.ctx.member_id;
        loop {
            let leader = self.ctx.handle.stats().leader;
            if leader == Some(me) {
                if let Some(r) = self.answer_locally(&req, deadline).await? {
                    return Ok(r);
                }
            } else if let (Some(leader), Some(fwd)) = (leader, &self.lease.options.forward) {
                let call = fwd.call(leader, Bytes::from(req.encode_to_vec()));
                match tokio::time::timeout_at(deadline.into(), call).await {
                    Ok(Ok(bytes)) => match ForwardResponse::decode(bytes).map(|r| r.response) {
                        Ok(Some(forward_response::Response::NotLeader(why))) => {
                            tracing::debug!(leader, %why, "lease request: not the leader yet");
                        }
                        Ok(Some(r)) => return Ok(r),
                        Ok(None) | Err(_) => {
                            return Err(Status::internal("undecodable answer from the leader"));
                        }
                    },
                    Ok(Err(e)) => tracing::debug!(leader, %e, "forwarding a lease request"),
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable("etcdserver: request timed out"));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Answers `req` from this member's lessor; `None` when it is not primary.
    async fn answer_locally(
        &self,
        req: &ForwardRequest,
        deadline: Instant,
    ) -> Result<Option<forward_response::Response>, Status> {
        Ok(match &req.request {
            Some(forward_request::Request::KeepAlive(k)) => {
                self.renew_local(k.id, deadline).await?.map(|ttl| {
                    forward_response::Response::KeepAlive(pb::LeaseKeepAliveResponse {
                        header: self.header(self.ctx.store.revision()),
                        id: k.id,
                        ttl,
                    })
                })
            }
            Some(forward_request::Request::TimeToLive(t)) => self
                .time_to_live_local(t)
                .await?
                .map(forward_response::Response::TimeToLive),
            None => return Err(Status::invalid_argument("empty forwarded lease request")),
        })
    }

    /// Answers a lease request another member forwarded (an encoded
    /// `kvlease.ForwardRequest`) from this member's lessor, never forwarding it again:
    /// `not_leader` when this member is not the promoted leader.
    pub async fn answer_forwarded(&self, request: Bytes) -> Result<Bytes, Status> {
        let req = ForwardRequest::decode(request)
            .map_err(|e| Status::invalid_argument(format!("forwarded lease request: {e}")))?;
        let me = self.ctx.member_id;
        let answer = if self.ctx.handle.stats().leader == Some(me) {
            self.answer_locally(&req, self.lease_deadline()).await?
        } else {
            None
        };
        let response = answer.unwrap_or_else(|| {
            forward_response::Response::NotLeader(format!("member {me:x} is not the lease leader"))
        });
        Ok(Bytes::from(
            ForwardResponse {
                response: Some(response),
            }
            .encode_to_vec(),
        ))
    }

    /// Checks that `who` may read every key in `keys`; a refusal is decided under the auth
    /// state of a ReadIndex barrier (this member may not have applied a grant yet). Returns
    /// the caller with the state it was allowed under.
    async fn check_lease_keys(&self, mut who: Who, keys: &[Bytes]) -> Result<Who, Status> {
        match who.state.check_keys_readable(&who.user, keys) {
            Ok(()) => Ok(who),
            Err(AuthError::PermissionDenied) => {
                self.read_barrier(false).await?;
                who.state = who.under(self.ctx.store.auth_state())?;
                who.state.check_keys_readable(&who.user, keys)?;
                Ok(who)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps lease `id` alive: its TTL, 0 when it does not exist.
    async fn renew(&self, id: i64) -> Result<i64, Status> {
        let req = ForwardRequest {
            request: Some(forward_request::Request::KeepAlive(
                pb::LeaseKeepAliveRequest { id },
            )),
        };
        match self.ask_leader(req).await? {
            forward_response::Response::KeepAlive(r) => Ok(r.ttl),
            _ => Err(unexpected("a forwarded keep-alive")),
        }
    }
}

#[tonic::async_trait]
impl lease_server::Lease for EtcdService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let who = self.who(&req).await?;
        let mut req = req.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(kv_status(Error::LeaseTtlTooLarge));
        }
        req.ttl = req.ttl.max(self.lease.options.min_ttl).max(1);
        if req.id == 0 {
            req.id = self.lease.next_id();
        }
        match self.propose_as(Op::LeaseGrant(req), &who).await? {
            KvResponse::LeaseGrant(mut r) => {
                r.header = self.header(r.header.as_ref().map_or(0, |h| h.revision));
                Ok(Response::new(r))
            }
            _ => Err(unexpected("lease grant")),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        // Apply checks write permission on every key attached to the lease.
        let who = self.who(&req).await?;
        match self
            .propose_as(Op::LeaseRevoke(req.into_inner()), &who)
            .await?
        {
            KvResponse::LeaseRevoke(mut r) => {
                r.header = self.header(r.header.as_ref().map_or(0, |h| h.revision));
                Ok(Response::new(r))
            }
            _ => Err(unexpected("lease revoke")),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    _ = tx.closed() => return,
                };
                let req = match next {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "lease keep-alive stream: the client's side failed");
                        return;
                    }
                };
                // The header is taken before the renewal (as etcd does): a client never sees
                // a keep-alive answered at a revision after its lease's revoke.
                let header = svc.header(svc.ctx.store.revision());
                let answer = match svc.renew(req.id).await {
                    Ok(ttl) => Ok(pb::LeaseKeepAliveResponse {
                        header,
                        id: req.id,
                        ttl,
                    }),
                    Err(status) => Err(status),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        // With the keys asked for, the caller must be able to read every one of them (etcd
        // 3.5's rule): checked before asking (the keys this member knows attached) and again
        // on the keys the answer names, under the same auth revision.
        let who = self.who(&req).await?;
        let req = req.into_inner();
        let mut checked = None;
        if req.keys && who.state.enabled() {
            let keys = self.ctx.store.lease_keys(req.id).map_err(kv_status)?;
            checked = Some(self.check_lease_keys(who, &keys).await?);
        }
        let forward = ForwardRequest {
            request: Some(forward_request::Request::TimeToLive(req)),
        };
        match self.ask_leader(forward).await? {
            forward_response::Response::TimeToLive(mut r) => {
                if let Some(who) = checked {
                    who.state.check_keys_readable(&who.user, &r.keys)?;
                    if self.ctx.store.auth_state().revision() != who.state.revision() {
                        return Err(AuthError::OldRevision.into());
                    }
                }
                // Forwarded answers carry the leader's header: this member answers.
                r.header = self.header(self.ctx.store.revision());
                Ok(Response::new(r))
            }
            _ => Err(unexpected("a forwarded time-to-live")),
        }
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.read_barrier(false).await?;
        let leases = self
            .ctx
            .store
            .leases()
            .into_iter()
            .map(|(id, _)| pb::LeaseStatus { id })
            .collect();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.header(self.ctx.store.revision()),
            leases,
        }))
    }
}
