//! The etcd `Maintenance` service: status, hashes, alarms and the space quota, snapshots,
//! defragmentation and leadership transfer.
//!
//! The space quota: before a write that adds data (a put, a txn with a put, a lease grant)
//! is proposed, the member compares its store's size on disk plus the request's size with
//! the quota (`EtcdService::with_space_quota`). Past it, the member proposes etcd's
//! `AlarmRequest` ACTIVATE NOSPACE for itself and refuses the request; once that entry is applied, every member
//! refuses such writes at the same log position (`Error::NoSpace`, etcd's "database space
//! exceeded") until the alarm is disarmed. Reads, deletes and compactions go on, so space
//! can be freed.
//!
//! With authentication on, everything but `Status` needs the `root` user (as etcd).

use super::{EtcdService, kv_status, runtime_status, unexpected};
use crate::error::Error;
use crate::pb::etcdserverpb::{
    self as pb, AlarmType, alarm_request::AlarmAction, maintenance_server,
};
use crate::{Op, Response as KvResponse};
use parking_lot::Mutex;
use prost::Message;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Bytes per `SnapshotResponse` (etcd sends 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 << 10;
/// How long `Snapshot` waits for a Raft snapshot capture to end before it gives up.
const CAPTURE_WAIT: Duration = Duration::from_secs(30);
/// How long a store size reading serves the quota check.
const SIZE_TTL: Duration = Duration::from_millis(100);

/// The maintenance service's own state.
#[derive(Default)]
pub(crate) struct MaintenanceState {
    /// Where snapshot files are written before they are streamed.
    pub(crate) spool: Mutex<Option<PathBuf>>,
    /// The last store size reading, and when it was taken.
    size: Mutex<Option<(Instant, u64)>>,
}

impl EtcdService {
    /// The store's size on disk, read at most every [`SIZE_TTL`].
    fn store_size(&self) -> u64 {
        let mut last = self.maintenance.size.lock();
        match *last {
            Some((at, size)) if at.elapsed() < SIZE_TTL => size,
            _ => {
                let size = self.ctx.store.db_size().unwrap_or(0);
                *last = Some((Instant::now(), size));
                size
            }
        }
    }

    /// The space quota check before a proposal (see the module documentation).
    pub(super) async fn check_space(&self, op: &Op) -> Result<(), Status> {
        let cost = match op {
            Op::Put(p) => p.encoded_len(),
            Op::LeaseGrant(g) => g.encoded_len(),
            Op::Txn(t) if crate::validate::txn_puts(t) => t.encoded_len(),
            _ => return Ok(()),
        };
        let quota = match self.quota.load(std::sync::atomic::Ordering::Relaxed) {
            0 => crate::validate::DEFAULT_QUOTA_BYTES,
            q => q,
        };
        let size = self.store_size();
        if size.saturating_add(cost as u64) <= quota {
            return Ok(());
        }
        let me = self.ctx.member_id;
        let raised = self
            .ctx
            .store
            .alarms(AlarmType::Nospace)
            .iter()
            .any(|a| a.member_id == me);
        if !raised {
            tracing::warn!(
                size,
                quota,
                "space quota exceeded: raising the NOSPACE alarm"
            );
            let req = pb::AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: me,
                alarm: AlarmType::Nospace as i32,
            };
            if let Err(e) = self.propose_unchecked(Op::Alarm(req)).await {
                tracing::warn!(%e, "the NOSPACE alarm was not raised; the next write retries");
            }
        }
        Err(kv_status(Error::NoSpace))
    }
}

#[tonic::async_trait]
impl maintenance_server::Maintenance for EtcdService {
    /// GET reads this member's applied alarms after a ReadIndex barrier; ACTIVATE and
    /// DEACTIVATE go through the log (DEACTIVATE with member 0 disarms every member's, with
    /// type `NONE` every type).
    async fn alarm(
        &self,
        req: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        self.require_admin(&req).await?;
        let req = req.into_inner();
        let kind = AlarmType::try_from(req.alarm)
            .map_err(|_| Status::invalid_argument(format!("unknown alarm type {}", req.alarm)))?;
        let action = AlarmAction::try_from(req.action).map_err(|_| {
            Status::invalid_argument(format!("unknown alarm action {}", req.action))
        })?;
        let alarms = match action {
            AlarmAction::Get => {
                self.read_barrier(false).await?;
                self.ctx.store.alarms(kind)
            }
            AlarmAction::Activate if req.member_id == 0 || kind == AlarmType::None => {
                return Err(Status::invalid_argument(
                    "an alarm is activated for one member and one alarm type",
                ));
            }
            AlarmAction::Activate | AlarmAction::Deactivate => {
                match self.propose_unchecked(Op::Alarm(req)).await? {
                    KvResponse::Alarm(r) => r.alarms,
                    _ => return Err(unexpected("alarm")),
                }
            }
        };
        Ok(Response::new(pb::AlarmResponse {
            header: self.header(self.ctx.store.revision()),
            alarms,
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
        // As etcd prints an `AlarmMember`.
        for a in self.ctx.store.alarms(AlarmType::None) {
            let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
            errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
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

    /// sled has no defragmentation: this flushes this member's store and logs its size
    /// ([`KvStore::defragment`](crate::KvStore::defragment) says what it does not do).
    async fn defragment(
        &self,
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.require_admin(&req).await?;
        let store = self.ctx.store.clone();
        let d = blocking(move || store.defragment()).await?;
        tracing::info!(
            before = d.size_before,
            after = d.size_after,
            "defragment: store flushed (sled cannot shrink its file while open)"
        );
        *self.maintenance.size.lock() = None;
        Ok(Response::new(pb::DefragmentResponse {
            header: self.header(self.ctx.store.revision()),
        }))
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

    type SnapshotStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::SnapshotResponse, Status>>;

    /// This member's state in raftd's snapshot file format ([`crate::export`]): written to
    /// an unlinked spool file from a copy-on-write capture (apply goes on), then streamed in
    /// 32 KiB chunks with `remaining_bytes`, and the SHA-256 of the body last, as etcd does.
    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.require_admin(&req).await?;
        let store = self.ctx.store.clone();
        let dir = self
            .maintenance
            .spool
            .lock()
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let (file, info) = tokio::task::spawn_blocking(move || spool_snapshot(&store, &dir))
            .await
            .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))??;
        tracing::info!(
            index = info.index,
            revision = info.revision,
            bytes = info.body_len,
            "sending a snapshot to a client"
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || send_snapshot(file, info.body_len, &tx));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
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

/// Writes a snapshot file of `store` into an unlinked file in `dir`, waiting up to
/// [`CAPTURE_WAIT`] for a Raft snapshot capture to end.
fn spool_snapshot(
    store: &crate::KvStore,
    dir: &std::path::Path,
) -> Result<(std::fs::File, crate::export::ExportInfo), Status> {
    let io = |what: &str, e: std::io::Error| Status::internal(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let deadline = Instant::now() + CAPTURE_WAIT;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("snapshot-{}-{nanos}.part", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(&format!("creating {}", path.display()), e))?;
        // Unlinked at once: nothing is left behind, whatever happens to the stream.
        let _ = std::fs::remove_file(&path);
        let written = crate::export::write_file(
            store,
            std::io::BufWriter::new(&mut file),
            crate::machine::now_ms(),
        );
        match written {
            Ok(info) => {
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| io("rewinding the snapshot file", e))?;
                return Ok((file, info));
            }
            Err(Error::CaptureInProgress) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(kv_status(e)),
        }
    }
}

/// Streams a spooled snapshot file: the body in chunks, then the digest.
fn send_snapshot(
    mut file: std::fs::File,
    body_len: u64,
    tx: &tokio::sync::mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) {
    let mut sent = 0u64;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK];
    let send = |blob: &[u8], remaining: u64| {
        tx.blocking_send(Ok(pb::SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob: prost::bytes::Bytes::copy_from_slice(blob),
            ..Default::default()
        }))
        .is_ok()
    };
    while sent < body_len {
        let n = (body_len - sent).min(SNAPSHOT_CHUNK as u64) as usize;
        if let Err(e) = file.read_exact(&mut buf[..n]) {
            let _ = tx.blocking_send(Err(Status::internal(format!(
                "reading the snapshot file: {e}"
            ))));
            return;
        }
        sent += n as u64;
        if !send(&buf[..n], body_len - sent) {
            tracing::info!(sent, "the snapshot client went away");
            return;
        }
    }
    let mut digest = [0u8; crate::export::DIGEST_LEN as usize];
    match file.read_exact(&mut digest) {
        Ok(()) => {
            send(&digest, 0);
        }
        Err(e) => {
            let _ = tx.blocking_send(Err(Status::internal(format!(
                "reading the snapshot digest: {e}"
            ))));
        }
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
