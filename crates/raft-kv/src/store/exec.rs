//! Execution of commands against a batch being applied: etcd's write semantics (revisions,
//! versions, prev_kv, txn paths and pre-checks) over a [`View`] with pending writes.

use super::query::{self, check_read_revision, header};
use super::view::{Found, Overlay, View};
use crate::command::Op;
use crate::cow::BatchReads;
use crate::error::{Error, Result};
use crate::layout::{DATA, KeyRange, prefixed};
use crate::members::Member;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse, request_op,
    response_op,
};
use crate::pb::kvcmd::MemberAttributes;
use crate::record::Record;
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
}

/// The state a batch of entries is applied to: pending data writes and metadata.
pub(crate) struct Batch<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) overlay: Overlay,
    /// While a capture runs: each written key's stored value before the batch, as read by
    /// its first read in the batch (the copy-on-write pre-image, without a second read).
    pub(crate) pre: Option<BatchReads>,
    pub(crate) revision: i64,
    pub(crate) compact_revision: i64,
    pub(crate) members: BTreeMap<u64, Member>,
    pub(crate) members_changed: bool,
}

/// One write transaction (one command): its revision and whether it changed anything.
struct Tx {
    /// The revision this command's writes get.
    rev: i64,
    /// Whether a key was written (then the store revision becomes `rev`).
    changed: bool,
}

impl Tx {
    /// The revision a read inside this command sees.
    fn view_rev(&self) -> i64 {
        if self.changed { self.rev } else { self.rev - 1 }
    }
}

impl<'a> Batch<'a> {
    fn view(&self) -> View<'_> {
        View {
            tree: self.tree,
            overlay: &self.overlay,
        }
    }

    /// Executes one command. A request error leaves nothing pending (all checks run before
    /// the first write).
    pub(crate) fn execute(&mut self, op: &Op) -> Result<Response> {
        let mut tx = Tx {
            rev: self.revision + 1,
            changed: false,
        };
        let resp = match op {
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
                let mut wrote = false;
                self.check_txn(t, &mut path.iter().copied(), &mut wrote)?;
                let resp = self.txn(&mut tx, t, &mut path.iter().copied())?;
                Response::Txn(resp)
            }
            Op::Compact(c) => Response::Compact(self.compact(c)?),
            Op::PublishMember(m) => Response::Members(self.publish_member(m)?),
        };
        if tx.changed {
            self.revision = tx.rev;
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
        if p.lease != 0 {
            return Err(Error::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && self.view().get(&p.key)?.is_none() {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    /// The current record of `key`; a read from the tree is remembered in `pre`.
    fn get_for_write(&mut self, key: &[u8]) -> Result<Option<Record>> {
        if let Some(pending) = self.overlay.get(key) {
            return Ok(pending.clone());
        }
        let raw = self.tree.get(prefixed(DATA, key))?;
        let rec = raw.as_deref().map(Record::decode).transpose()?;
        if let Some(pre) = &mut self.pre {
            pre.keep(key, raw);
        }
        Ok(rec)
    }

    fn put(&mut self, tx: &mut Tx, p: &PutRequest) -> Result<PutResponse> {
        let prev = self.get_for_write(&p.key)?;
        let rec = match &prev {
            Some(old) => Record {
                create_revision: old.create_revision,
                mod_revision: tx.rev,
                version: old.version + 1,
                lease: if p.ignore_lease { old.lease } else { p.lease },
                value: if p.ignore_value {
                    old.value.clone()
                } else {
                    p.value.clone()
                },
            },
            None => Record {
                create_revision: tx.rev,
                mod_revision: tx.rev,
                version: 1,
                lease: p.lease,
                value: p.value.clone(),
            },
        };
        self.overlay.insert(p.key.to_vec(), Some(rec));
        tx.changed = true;
        Ok(PutResponse {
            header: Some(header(tx.rev)),
            prev_kv: if p.prev_kv {
                prev.map(|r| r.to_key_value(&p.key))
            } else {
                None
            },
        })
    }

    fn delete_range(&mut self, tx: &mut Tx, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let keys = KeyRange::new(&d.key, &d.range_end);
        let mut doomed = Vec::new();
        let mut prev_kvs = Vec::new();
        let keep_raw = self.pre.is_some();
        self.view().scan(&keys, |k, found| {
            if d.prev_kv {
                prev_kvs.push(found.record()?.to_key_value(k));
            }
            let raw = match found {
                Found::Stored(raw) if keep_raw => Some(raw),
                _ => None,
            };
            doomed.push((k.to_vec(), raw));
            Ok(true)
        })?;
        let deleted = doomed.len() as i64;
        for (k, raw) in doomed {
            if let (Some(pre), Some(raw)) = (&mut self.pre, raw) {
                pre.keep(&k, Some(raw));
            }
            self.overlay.insert(k, None);
        }
        if deleted > 0 {
            tx.changed = true;
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
    /// ranges must read the current revision, and one that follows a write of the same txn
    /// can only read at revision 0 (older states are not kept).
    fn check_txn(
        &self,
        t: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        wrote: &mut bool,
    ) -> Result<()> {
        let ok = path.next().unwrap_or(false);
        let ops = if ok { &t.success } else { &t.failure };
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    check_read_revision(r.revision, self.revision)?;
                    if *wrote && r.revision > 0 {
                        return Err(Error::Compacted);
                    }
                }
                Some(request_op::Request::RequestPut(p)) => {
                    self.check_put(p)?;
                    *wrote = true;
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    if d.key.is_empty() {
                        return Err(Error::EmptyKey);
                    }
                    *wrote = true;
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    self.check_txn(inner, path, wrote)?;
                }
                None => {}
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
        query::range(&self.view(), r, tx.view_rev(), usize::MAX)
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
        other => other,
    }
}
