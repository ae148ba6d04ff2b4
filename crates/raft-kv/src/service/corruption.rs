//! The corruption check (etcd's `--experimental-corrupt-check-time`): the leader compares
//! its `HashKV` with every member's at its own current revision and raises the CORRUPT alarm
//! through the log for a member whose state differs, so every member refuses writes
//! (`Error::CorruptCluster`) until an operator disarms it.
//!
//! One round ([`EtcdService::check_corruption`]), as etcd's leader does it:
//! 1. hash this member's state at its current revision `rev` (with its compact revision);
//! 2. ask every other member for its `HashKV` at `rev` over a [`PeerCall`];
//! 3. pass a ReadIndex barrier (this member has now applied everything any member had
//!    applied when it answered) and hash again at the current revision;
//! 4. judge: this member is damaged if its two hashes differ at the same revision and compact
//!    revision; a member is damaged if it answered a revision or a compact revision above
//!    this member's (step 3), or if it has the same compact revision and a different hash.
//!    A member that cannot answer (unreachable, behind: `FutureRev`, or ahead on compaction:
//!    `Compacted`) is skipped this round; only equal compact revisions compare hashes.
//!
//! The transport is not raft-kv's: raftd carries the encoded `HashKvRequest` over the peer
//! port (the same connections and (m)TLS as replication, as etcd asks over its peer URLs)
//! and hands what arrives to [`EtcdService::answer_hash_kv`].

use super::{EtcdService, kv_status};
use crate::pb::etcdserverpb::{
    self as pb, AlarmType, HashKvRequest, HashKvResponse, alarm_request::AlarmAction,
};
use crate::{KvHash, Op};
use prost::Message;
use prost::bytes::Bytes;
use std::time::Duration;
use tonic::Status;

pub use crate::lease::forward::ForwardFuture as PeerFuture;

/// Carries an encoded `HashKvRequest` to a member and brings back its encoded
/// `HashKvResponse` (see the module documentation).
pub trait PeerCall: Send + Sync + 'static {
    /// Sends `request` to member `to`; errors are the transport's or the member's answer
    /// (`FutureRev`, `Compacted`) as text.
    fn call(&self, to: u64, request: Bytes) -> PeerFuture;
}

/// How long one member has to answer its `HashKV`.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one corruption check round found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorruptionReport {
    /// The revision the members were asked at (this member's at the start).
    pub revision: i64,
    /// This member's compact revision at the start.
    pub compact_revision: i64,
    /// This member's hash at `revision`.
    pub hash: u32,
    /// The members whose hash was compared (same compact revision) and matched.
    pub matched: Vec<u64>,
    /// The members not compared this round, with why (unreachable, behind, a different
    /// compact revision).
    pub skipped: Vec<(u64, String)>,
    /// The members found damaged (this member included when its own hashes disagree).
    pub mismatched: Vec<u64>,
    /// The members a CORRUPT alarm was raised for by this round (not those already alarmed).
    pub raised: Vec<u64>,
}

impl EtcdService {
    /// Whether this member leads (the corruption check runs on the leader only).
    pub fn is_leader(&self) -> bool {
        self.ctx.handle.stats().is_leader
    }

    /// Answers a `HashKvRequest` another member sent over a [`PeerCall`] (encoded) with this
    /// member's `HashKvResponse` (encoded; its header carries this member's revision).
    pub async fn answer_hash_kv(&self, request: Bytes) -> Result<Bytes, Status> {
        let req = HashKvRequest::decode(request)
            .map_err(|e| Status::invalid_argument(format!("hash request: {e}")))?;
        let h = self.local_hash(req.revision).await?;
        let resp = HashKvResponse {
            header: self.header(self.ctx.store.revision()),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        };
        Ok(resp.encode_to_vec().into())
    }

    async fn local_hash(&self, revision: i64) -> Result<KvHash, Status> {
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || store.hash_kv_at(revision))
            .await
            .map_err(|e| Status::internal(format!("hash task failed: {e}")))?
            .map_err(kv_status)
    }

    /// One corruption check round (see the module documentation), meant for the leader:
    /// raises the CORRUPT alarm through the log for each member found damaged, naming it
    /// (unless already raised). Errors: this member's own hash or barrier failed, or the
    /// alarm could not be proposed.
    pub async fn check_corruption(&self, peers: &dyn PeerCall) -> Result<CorruptionReport, Status> {
        let first = self.local_hash(0).await?;
        let mut report = CorruptionReport {
            revision: first.revision,
            compact_revision: first.compact_revision,
            hash: first.hash,
            ..Default::default()
        };
        let request: Bytes = HashKvRequest {
            revision: first.revision,
        }
        .encode_to_vec()
        .into();
        let me = self.ctx.member_id;
        let others: Vec<u64> = self
            .ctx
            .store
            .members()
            .iter()
            .map(|m| m.id)
            .filter(|&id| id != me)
            .collect();
        let asks = others.iter().map(|&id| {
            let call = peers.call(id, request.clone());
            async move {
                let answer = match tokio::time::timeout(PEER_TIMEOUT, call).await {
                    Err(_) => Err("timed out".to_string()),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(bytes)) => HashKvResponse::decode(bytes).map_err(|e| e.to_string()),
                };
                (id, answer)
            }
        });
        let answers = join_all(asks, &others).await;
        self.read_barrier(false).await?;
        let second = self.local_hash(0).await?;
        if second.revision == first.revision
            && second.compact_revision == first.compact_revision
            && second.hash != first.hash
        {
            tracing::warn!(
                revision = first.revision,
                hash_1 = first.hash,
                hash_2 = second.hash,
                "corruption check: this member's hash changed at the same revision"
            );
            report.mismatched.push(me);
        }
        for (id, answer) in answers {
            let resp = match answer {
                Ok(r) => r,
                Err(why) => {
                    tracing::info!(member = format_args!("{id:x}"), %why, "corruption check: member not checked");
                    report.skipped.push((id, why));
                    continue;
                }
            };
            let peer_rev = resp.header.as_ref().map_or(0, |h| h.revision);
            let damaged = if peer_rev > second.revision {
                Some(format!(
                    "revision {peer_rev} is above the leader's {}",
                    second.revision
                ))
            } else if resp.compact_revision > second.compact_revision {
                Some(format!(
                    "compact revision {} is above the leader's {}",
                    resp.compact_revision, second.compact_revision
                ))
            } else if resp.compact_revision == first.compact_revision && resp.hash != first.hash {
                Some(format!(
                    "hash {} at revision {} differs from the leader's {}",
                    resp.hash, first.revision, first.hash
                ))
            } else {
                None
            };
            match damaged {
                Some(why) => {
                    tracing::error!(
                        member = format_args!("{id:x}"),
                        revision = first.revision,
                        compact_revision = first.compact_revision,
                        %why,
                        "corruption check: member state differs; raising the CORRUPT alarm"
                    );
                    report.mismatched.push(id);
                }
                None if resp.compact_revision == first.compact_revision => report.matched.push(id),
                None => report.skipped.push((
                    id,
                    format!(
                        "compact revision {} differs from the leader's {}",
                        resp.compact_revision, first.compact_revision
                    ),
                )),
            }
        }
        for &id in &report.mismatched {
            let active = self
                .ctx
                .store
                .alarms(AlarmType::Corrupt)
                .iter()
                .any(|a| a.member_id == id);
            if active {
                continue;
            }
            let req = pb::AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: id,
                alarm: AlarmType::Corrupt as i32,
            };
            self.propose_unchecked(Op::Alarm(req)).await?;
            report.raised.push(id);
        }
        Ok(report)
    }
}

/// Awaits every `(member, answer)` future, concurrently, in order (no `futures`
/// dependency for one call); a task that failed is an answer with the failure.
async fn join_all(
    futs: impl Iterator<Item = impl std::future::Future<Output = (u64, Answer)> + Send + 'static>,
    ids: &[u64],
) -> Vec<(u64, Answer)> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for (h, &id) in handles.into_iter().zip(ids) {
        out.push(match h.await {
            Ok(v) => v,
            Err(e) => (id, Err(format!("the request task failed: {e}"))),
        });
    }
    out
}

/// A member's `HashKV` answer, or why there is none.
type Answer = Result<HashKvResponse, String>;
