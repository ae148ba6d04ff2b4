//! The etcd v3 gRPC services over a running node ([`EtcdService`]): writes go through
//! `RaftHandle::propose` and answer after apply, linearizable reads wait for a ReadIndex
//! barrier and then read the local store, serializable reads read it at once.
//!
//! One file per service under `service/` (`kv.rs`, `cluster.rs`, `maintenance.rs`,
//! `watch.rs`, `lease.rs`, `lock.rs`, `election.rs`, `auth.rs`; `recipe.rs` holds what Lock
//! and Election share; `auth.rs` also resolves every request's caller, [`Who`], which each
//! service checks before proposing or reading); this file holds what they share. [`EtcdService::routes`] hands all of them to a
//! tonic server, so a program other than raftd can serve the store (see
//! `examples/embedded.rs`).

mod auth;
mod cluster;
pub mod corruption;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod recipe;
mod watch;

pub use auth::{AuthOptions, CertUser, DEFAULT_BCRYPT_COST, Who, is_root};
pub use lease::LeaseOptions;

use crate::address_book::AddressBook;
use crate::machine::KvMachine;
use crate::pb::etcdserverpb::{
    self as pb, auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::pb::v3electionpb::election_server::ElectionServer;
use crate::pb::v3lockpb::lock_server::LockServer;
use crate::validate::{Limits, validate_command};
use crate::watch::WatchHub;
use crate::{Command, KvStore, Op, Outcome, Response as KvResponse};
use raft_runtime::RaftHandle;
use std::sync::Arc;
use tonic::Status;

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
    watch: Option<WatchHub>,
    lease: Arc<lease::LeaseState>,
    maintenance: Arc<maintenance::MaintenanceState>,
    /// The space quota in bytes (0: [`DEFAULT_QUOTA_BYTES`](crate::validate::DEFAULT_QUOTA_BYTES)).
    quota: Arc<std::sync::atomic::AtomicU64>,
    auth: AuthOptions,
}

impl EtcdService {
    /// Services over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        let lease = Arc::new(lease::LeaseState::new(
            ctx.member_id,
            LeaseOptions {
                min_ttl: 1,
                forward: None,
            },
        ));
        Self {
            ctx: Arc::new(ctx),
            watch: None,
            lease,
            maintenance: Arc::default(),
            quota: Arc::default(),
            auth: AuthOptions::default(),
        }
    }

    /// Hashes new passwords with `options` (without it: etcd's bcrypt cost, 10).
    pub fn with_auth(mut self, options: AuthOptions) -> Self {
        self.auth = options;
        self
    }

    /// Serves leases with `options` (the minimum TTL, and how followers reach the leader
    /// with keep-alives and TTL queries). Without it: a minimum TTL of 1 second, and only
    /// the leader answers keep-alives.
    pub fn with_leases(mut self, options: LeaseOptions) -> Self {
        self.lease = Arc::new(lease::LeaseState::new(self.ctx.member_id, options));
        self
    }

    /// Serves `Watch` from `hub` (see [`WatchHub::for_store`]); without a hub, `Watch`
    /// answers `UNIMPLEMENTED`.
    pub fn with_watch(mut self, hub: WatchHub) -> Self {
        self.watch = Some(hub);
        self
    }

    /// Reads this member's space quota (etcd's `--quota-backend-bytes`) from `bytes`, which
    /// the caller may change at any time (raftd's config reload); 0 means
    /// [`DEFAULT_QUOTA_BYTES`](crate::validate::DEFAULT_QUOTA_BYTES), 2 GiB, as in etcd.
    /// Without it: the default. A write that would take the store's size on disk past the
    /// quota raises the NOSPACE alarm (see `Maintenance.Alarm`).
    pub fn with_space_quota(mut self, bytes: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.quota = bytes;
        self
    }

    /// Writes the files `Maintenance.Snapshot` streams in `dir` (each unlinked as soon as
    /// it is created, so none outlives its stream); without it, in the system's temporary
    /// directory. raftd
    /// passes `<data_dir>/tmp`, on the store's file system.
    pub fn with_snapshot_spool(self, dir: impl Into<std::path::PathBuf>) -> Self {
        *self.maintenance.spool.lock() = Some(dir.into());
        self
    }

    /// The watch hub, when one serves `Watch`.
    pub fn watch_hub(&self) -> Option<&WatchHub> {
        self.watch.as_ref()
    }

    /// The `KV`, `Cluster`, `Maintenance`, `Lease`, `Lock`, `Election` and `Auth` services, and
    /// `Watch` when a hub is set ([`with_watch`](Self::with_watch)), for `tonic`'s
    /// `Server::add_routes`. Each decodes
    /// requests up to the request size limit plus 512 KiB: gRPC refuses what is far above
    /// the limit before decoding, the services refuse what is above it with etcd's
    /// `InvalidArgument` "request is too large".
    pub fn routes(&self) -> tonic::service::Routes {
        let max_decode = self.ctx.limits.max_request_bytes + (512 << 10);
        let routes = tonic::service::Routes::new(
            KvServer::new(self.clone()).max_decoding_message_size(max_decode),
        )
        .add_service(ClusterServer::new(self.clone()).max_decoding_message_size(max_decode))
        .add_service(MaintenanceServer::new(self.clone()).max_decoding_message_size(max_decode))
        .add_service(LeaseServer::new(self.clone()).max_decoding_message_size(max_decode))
        .add_service(LockServer::new(self.clone()).max_decoding_message_size(max_decode))
        .add_service(ElectionServer::new(self.clone()).max_decoding_message_size(max_decode))
        .add_service(AuthServer::new(self.clone()).max_decoding_message_size(max_decode));
        if self.watch.is_some() {
            routes.add_service(WatchServer::new(self.clone()).max_decoding_message_size(max_decode))
        } else {
            routes
        }
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

    /// Proposes the node's own command (no caller: apply does not check it) after the
    /// space quota check (`Maintenance.Alarm`'s NOSPACE).
    async fn propose(&self, op: Op) -> Result<KvResponse, Status> {
        self.ready()?;
        self.check_space(&op).await?;
        self.propose_unchecked(op).await
    }

    /// Proposes the node's own command without the space quota check.
    async fn propose_unchecked(&self, op: Op) -> Result<KvResponse, Status> {
        self.propose_command(&Command::new(0, op))
            .await?
            .map_err(kv_status)
    }

    /// Proposes `cmd` and waits for its apply: the answer, or the request error apply
    /// refused it with; a failure to propose or apply is the outer error.
    async fn propose_command(
        &self,
        cmd: &Command,
    ) -> Result<Result<KvResponse, crate::Error>, Status> {
        self.ready()?;
        validate_command(cmd, &self.ctx.limits).map_err(kv_status)?;
        let result = self
            .ctx
            .handle
            .propose(cmd.encode())
            .await
            .map_err(runtime_status)?;
        match result.outcome {
            Outcome::Response(r) => Ok(Ok(r)),
            Outcome::Rejected(e) => Ok(Err(e)),
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
pub fn kv_status(e: crate::Error) -> Status {
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

pub(crate) fn unexpected(what: &str) -> Status {
    Status::internal(format!("unexpected answer to {what}"))
}
