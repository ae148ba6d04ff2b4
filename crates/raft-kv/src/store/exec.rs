//! Execution of commands against a batch being applied: etcd's write semantics (revisions,
//! versions, prev_kv, txn paths and pre-checks) over a [`View`] with pending writes; every
//! write leaves the key's new current entry and a history event at its revision, and, while
//! an event sink listens, etcd's watch event.

mod auth;
mod lease;

pub use auth::AuthAnswer;
pub(crate) use auth::AuthBatch;
pub(crate) use lease::LeaseBatch;

use super::query::{self, header, read_revision};
use super::view::{Found, Overlay, Pending, View};
use crate::command::Op;
use crate::cow::BatchReads;
use crate::error::{Error, Result};
use crate::events::RevisionEvents;
use crate::layout::{DATA, KeyRange, prefixed};
use crate::members::Member;
use crate::pb::etcdserverpb::{
    AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseCheckpointResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse, request_op, response_op,
};
use crate::pb::kvcmd::{MemberAttributes, MemberPeerUrls};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};
use crate::record::Record;
use crate::record::{Current, Rev};
use prost::bytes::Bytes;
use std::collections::BTreeMap;

/// The answer to an applied command (headers carry only the revision).
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Answer to [`Op::Put`].
    Put(PutResponse),
    /// Answer to [`Op::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// Answer to [`Op::Txn`].
    Txn(TxnResponse),
    /// Answer to [`Op::Compact`].
    Compact(CompactionResponse),
    /// Answer to [`Op::PublishMember`] and to membership changes: the member list after it.
    Members(Vec<Member>),
    /// Answer to [`Op::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// Answer to [`Op::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
    /// Answer to [`Op::LeaseCheckpoint`].
    LeaseCheckpoint(LeaseCheckpointResponse),
    /// Answer to [`Op::Alarm`]: the alarms raised or disarmed.
    Alarm(AlarmResponse),
    /// Answer to [`Op::Auth`].
    Auth(AuthAnswer),
}

/// The state a batch of entries is applied to: pending data writes and metadata.
pub(crate) struct Batch<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) overlay: Overlay,
    /// The history events of the batch's writes.
    pub(crate) pending: Pending,
    /// The watch events of the batch's revisions, when an event sink listens.
    pub(crate) events: Option<Vec<RevisionEvents>>,
    /// While a capture runs: each written key's stored value before the batch, as read by
    /// its first read in the batch (the copy-on-write pre-image, without a second read).
    pub(crate) pre: Option<BatchReads>,
    pub(crate) revision: i64,
    pub(crate) compact_revision: i64,
    pub(crate) members: BTreeMap<u64, Member>,
    pub(crate) members_changed: bool,
    /// Internal records written by the batch (sled key -> value).
    pub(crate) internal: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Lease records and attachments written by the batch.
    pub(crate) lease: LeaseBatch,
    /// The active alarms as of the batch (written when they changed).
    pub(crate) alarms: crate::internal::Alarms,
    /// The auth state as the batch changed it, and its token changes.
    pub(crate) auth: AuthBatch,
    /// The log index of the entry being applied (tokens name it).
    pub(crate) index: u64,
}

/// One write transaction (one command): its revision and whether it changed anything.
struct Tx {
    /// The revision this command's writes get.
    rev: i64,
    /// The sub-revision of its next write; it changed something when this is above 0 (then
    /// the store revision becomes `rev`).
    next_sub: u32,
    /// Its watch events (when a sink listens).
    events: Vec<Event>,
}

impl Tx {
    /// Whether a key was written.
    fn changed(&self) -> bool {
        self.next_sub > 0
    }

    /// The revision a read inside this command sees.
    fn view_rev(&self) -> i64 {
        if self.changed() {
            self.rev
        } else {
            self.rev - 1
        }
    }

    /// The revision of the command's next write.
    fn next(&mut self) -> Rev {
        let at = Rev::new(self.rev, self.next_sub);
        self.next_sub += 1;
        at
    }
}

impl<'a> Batch<'a> {
    fn view(&self) -> View<'_> {
        View {
            tree: self.tree,
            overlay: &self.overlay,
            pending: &self.pending,
        }
    }

    /// Records a write: the key's new current entry, its history event and watch event.
    fn write(
        &mut self,
        tx: &mut Tx,
        key: Bytes,
        entry: Current,
        prev: Option<KeyValue>,
    ) -> Result<()> {
        if self.events.is_some() {
            let (kind, kv) = match &entry {
                Current::Live { rec, .. } => (
                    EventType::Put,
                    KeyValue {
                        key: key.clone(),
                        create_revision: rec.create_revision,
                        mod_revision: rec.mod_revision,
                        version: rec.version,
                        value: rec.value.clone(),
                        lease: rec.lease,
                    },
                ),
                Current::Tombstone { at, .. } => (
                    EventType::Delete,
                    KeyValue {
                        key: key.clone(),
                        mod_revision: at.main,
                        ..Default::default()
                    },
                ),
            };
            tx.events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: prev,
            });
        }
        self.pending.push(entry.at(), key.clone(), entry.clone())?;
        self.overlay.insert(key.to_vec(), entry);
        Ok(())
    }

    /// Executes one command. A request error leaves nothing pending (all checks run before
    /// the first write).
    pub(crate) fn execute(&mut self, op: &Op) -> Result<Response> {
        let mut tx = Tx {
            rev: self.revision + 1,
            next_sub: 0,
            events: Vec::new(),
        };
        let resp = match op {
            // etcd's corrupt applier: under CORRUPT, what writes the key space or the
            // lessor is refused (reads, alarms, membership and auth go on).
            Op::Put(_)
            | Op::DeleteRange(_)
            | Op::Txn(_)
            | Op::Compact(_)
            | Op::LeaseGrant(_)
            | Op::LeaseRevoke(_)
                if self.alarms.corrupt() =>
            {
                return Err(Error::CorruptCluster);
            }
            // etcd's capped applier: under NOSPACE, what adds data is refused.
            Op::Put(_) | Op::LeaseGrant(_) if self.alarms.no_space() => {
                return Err(Error::NoSpace);
            }
            Op::Txn(t) if self.alarms.no_space() && crate::validate::txn_puts(t) => {
                return Err(Error::NoSpace);
            }
            Op::Put(p) => {
                self.check_put(p)?;
                Response::Put(self.put(&mut tx, p)?)
            }
            Op::DeleteRange(d) => {
                if d.key.is_empty() {
                    return Err(Error::EmptyKey);
                }
                Response::DeleteRange(self.delete_range(&mut tx, d)?)
            }
            Op::Txn(t) => {
                let mut path = Vec::new();
                self.txn_path(t, &mut path)?;
                self.check_txn(t, &mut path.iter().copied())?;
                let resp = self.txn(&mut tx, t, &mut path.iter().copied())?;
                Response::Txn(resp)
            }
            Op::Compact(c) => Response::Compact(self.compact(c)?),
            Op::PublishMember(m) => Response::Members(self.publish_member(m)?),
            Op::SetPeerUrls(u) => Response::Members(self.set_peer_urls(u)),
            Op::LeaseGrant(g) => Response::LeaseGrant(self.lease_grant(g)?),
            Op::LeaseRevoke(r) => Response::LeaseRevoke(self.lease_revoke(&mut tx, r)?),
            Op::LeaseCheckpoint(c) => Response::LeaseCheckpoint(self.lease_checkpoint(c)?),
            Op::Alarm(a) => Response::Alarm(AlarmResponse {
                header: Some(header(self.revision)),
                alarms: self.alarms.apply(a),
            }),
            Op::Auth(a) => Response::Auth(self.auth(a)?),
        };
        if tx.changed() {
            self.revision = tx.rev;
            if let Some(events) = &mut self.events {
                events.push(RevisionEvents {
                    revision: tx.rev,
                    events: tx.events,
                });
            }
        }
        Ok(fix_top_header(resp, self.revision))
    }

    /// Replaces the member list, keeping the published name and client URLs of members that
    /// stay when the new entry leaves them empty.
    pub(crate) fn set_members(&mut self, members: &[Member]) -> Vec<Member> {
        let mut next = BTreeMap::new();
        for m in members {
            let mut m = m.clone();
            if let Some(old) = self.members.get(&m.id) {
                if m.name.is_empty() {
                    m.name = old.name.clone();
                }
                if m.client_urls.is_empty() {
                    m.client_urls = old.client_urls.clone();
                }
            }
            next.insert(m.id, m);
        }
        self.members = next;
        self.members_changed = true;
        self.members.values().cloned().collect()
    }

    fn publish_member(&mut self, attrs: &MemberAttributes) -> Result<Vec<Member>> {
        let m = self
            .members
            .get_mut(&attrs.id)
            .ok_or(Error::MemberNotFound)?;
        m.name = attrs.name.clone();
        m.client_urls = attrs.client_urls.clone();
        self.members_changed = true;
        Ok(self.members.values().cloned().collect())
    }

    /// Records a member's peer URLs (also in the member list when it is a member).
    fn set_peer_urls(&mut self, urls: &MemberPeerUrls) -> Vec<Member> {
        self.internal.insert(
            crate::internal::peer_key(urls.id),
            crate::internal::encode_peer_urls(urls),
        );
        if let Some(m) = self.members.get_mut(&urls.id)
            && !urls.peer_urls.is_empty()
        {
            m.peer_urls = urls.peer_urls.clone();
            self.members_changed = true;
        }
        self.members.values().cloned().collect()
    }

    fn compact(&mut self, c: &CompactionRequest) -> Result<CompactionResponse> {
        if c.revision > self.revision {
            return Err(Error::FutureRevision);
        }
        if c.revision <= self.compact_revision {
            return Err(Error::Compacted);
        }
        self.compact_revision = c.revision;
        Ok(CompactionResponse {
            header: Some(header(self.revision)),
        })
    }

    /// The checks of a put that etcd makes before writing (against the state before the
    /// command, or before the txn it is part of).
    fn check_put(&self, p: &PutRequest) -> Result<()> {
        if p.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if p.ignore_value && !p.value.is_empty() {
            return Err(Error::ValueProvided);
        }
        if p.ignore_lease && p.lease != 0 {
            return Err(Error::LeaseProvided);
        }
        if p.lease != 0 && !self.lease_exists(p.lease)? {
            return Err(Error::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && self.view().get(&p.key)?.is_none() {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    /// The current entry of `key`; a read from the tree is remembered in `pre`.
    fn get_for_write(&mut self, key: &[u8]) -> Result<Option<Current>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(Some(pending.clone()));
        }
        let raw = self.tree.get(prefixed(DATA, key))?;
        let entry = raw.as_deref().map(Current::decode).transpose()?;
        if let Some(pre) = &mut self.pre {
            pre.keep(key, raw);
        }
        Ok(entry)
    }

    fn put(&mut self, tx: &mut Tx, p: &PutRequest) -> Result<PutResponse> {
        let entry = self.get_for_write(&p.key)?;
        let before = entry.as_ref().map(Current::at);
        let prev = entry.and_then(Current::into_live);
        let old_lease = prev.as_ref().map_or(0, |r| r.lease);
        let at = tx.next();
        let rec = match &prev {
            Some(old) => Record {
                create_revision: old.create_revision,
                mod_revision: at.main,
                version: old.version + 1,
                lease: if p.ignore_lease { old.lease } else { p.lease },
                value: if p.ignore_value {
                    old.value.clone()
                } else {
                    p.value.clone()
                },
            },
            None => Record {
                create_revision: at.main,
                mod_revision: at.main,
                version: 1,
                lease: p.lease,
                value: p.value.clone(),
            },
        };
        // Built only when asked for (a copy of the key): by the client or a watch hub.
        let watched = self.events.is_some();
        let prev_kv = prev
            .filter(|_| p.prev_kv || watched)
            .map(|r| r.to_key_value(&p.key));
        self.reattach(&p.key, old_lease, rec.lease);
        let entry = Current::Live {
            rec,
            sub: at.sub,
            prev: before,
        };
        let event_prev = if watched { prev_kv.clone() } else { None };
        self.write(tx, p.key.clone(), entry, event_prev)?;
        Ok(PutResponse {
            header: Some(header(tx.rev)),
            prev_kv: if p.prev_kv { prev_kv } else { None },
        })
    }

    fn delete_range(&mut self, tx: &mut Tx, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let keys = KeyRange::new(&d.key, &d.range_end);
        let mut doomed = Vec::new();
        let mut prev_kvs = Vec::new();
        let keep_raw = self.pre.is_some();
        self.view().scan(&keys, None, |k, found| {
            let (entry, raw) = match found {
                Found::Stored(raw) => (Current::decode(&raw)?, keep_raw.then_some(raw)),
                Found::Pending(_) => (
                    self.overlay
                        .get(k)
                        .cloned()
                        .ok_or_else(|| Error::corrupt("a pending key vanished from the overlay"))?,
                    None,
                ),
                Found::Resolved(_) => return Err(Error::corrupt("a current scan resolved")),
            };
            doomed.push((k.to_vec(), entry, raw));
            Ok(true)
        })?;
        let deleted = doomed.len() as i64;
        for (k, entry, raw) in doomed {
            if let (Some(pre), Some(raw)) = (&mut self.pre, raw) {
                pre.keep(&k, Some(raw));
            }
            let before = entry.at();
            if let Some(old) = entry.live().map(|r| r.lease).filter(|l| *l != 0) {
                self.reattach(&k, old, 0);
            }
            let kv = entry
                .into_live()
                .filter(|_| d.prev_kv || self.events.is_some())
                .map(|r| r.to_key_value(&k));
            if d.prev_kv
                && let Some(kv) = &kv
            {
                prev_kvs.push(kv.clone());
            }
            let tomb = Current::Tombstone {
                at: tx.next(),
                prev: Some(before),
            };
            let watched = if self.events.is_some() { kv } else { None };
            self.write(tx, Bytes::from(k), tomb, watched)?;
        }
        Ok(DeleteRangeResponse {
            header: Some(header(tx.view_rev())),
            deleted,
            prev_kvs,
        })
    }

    /// Evaluates every compare on the path the txn will take, before any of its writes (as
    /// etcd does): `path` gets one bool per txn met, in execution order.
    fn txn_path(&self, t: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let view = self.view();
        let mut ok = true;
        for c in &t.compare {
            if !query::compare(&view, c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        let ops = if ok { &t.success } else { &t.failure };
        for op in ops {
            if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
                self.txn_path(inner, path)?;
            }
        }
        Ok(())
    }

    /// etcd's pre-checks of the ops a txn will run: puts as [`check_put`](Self::check_put);
    /// ranges must read a revision between the compact revision and the store revision
    /// before the txn.
    fn check_txn(&self, t: &TxnRequest, path: &mut impl Iterator<Item = bool>) -> Result<()> {
        let ok = path.next().unwrap_or(false);
        let ops = if ok { &t.success } else { &t.failure };
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    read_revision(r.revision, self.revision, self.compact_revision)?;
                }
                Some(request_op::Request::RequestPut(p)) => {
                    self.check_put(p)?;
                }
                Some(request_op::Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                    return Err(Error::EmptyKey);
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    self.check_txn(inner, path)?;
                }
                Some(request_op::Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    fn txn(
        &mut self,
        tx: &mut Tx,
        t: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let ops: &[RequestOp] = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    Some(response_op::Response::ResponseRange(self.range(tx, r)?))
                }
                Some(request_op::Request::RequestPut(p)) => {
                    Some(response_op::Response::ResponsePut(self.put(tx, p)?))
                }
                Some(request_op::Request::RequestDeleteRange(d)) => Some(
                    response_op::Response::ResponseDeleteRange(self.delete_range(tx, d)?),
                ),
                Some(request_op::Request::RequestTxn(inner)) => Some(
                    response_op::Response::ResponseTxn(self.txn(tx, inner, path)?),
                ),
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: Some(header(tx.view_rev())),
            succeeded,
            responses,
        })
    }

    fn range(&self, tx: &Tx, r: &RangeRequest) -> Result<RangeResponse> {
        let rev = tx.view_rev();
        let at = if r.revision > 0 { r.revision } else { rev };
        query::range(&self.view(), r, rev, at, usize::MAX)
    }
}

use crate::pb::etcdserverpb::RangeResponse;

/// Sets the top-level response header to the store revision after the command.
fn fix_top_header(resp: Response, revision: i64) -> Response {
    match resp {
        Response::Put(mut r) => {
            r.header = Some(header(revision));
            Response::Put(r)
        }
        Response::DeleteRange(mut r) => {
            r.header = Some(header(revision));
            Response::DeleteRange(r)
        }
        Response::Txn(mut r) => {
            r.header = Some(header(revision));
            Response::Txn(r)
        }
        Response::Compact(mut r) => {
            r.header = Some(header(revision));
            Response::Compact(r)
        }
        Response::LeaseGrant(mut r) => {
            r.header = Some(header(revision));
            Response::LeaseGrant(r)
        }
        Response::LeaseRevoke(mut r) => {
            r.header = Some(header(revision));
            Response::LeaseRevoke(r)
        }
        Response::LeaseCheckpoint(mut r) => {
            r.header = Some(header(revision));
            Response::LeaseCheckpoint(r)
        }
        other => other,
    }
}
