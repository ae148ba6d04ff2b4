//! Apply of committed entries ([`KvStore::apply_batch`]): every entry of a batch is executed
//! against the batch's pending writes, then the whole batch (data, history, dirty list,
//! metadata, copy-on-write pre-images) goes to sled in one atomic write.

use crate::command::Command;
use crate::cow::BatchReads;
use crate::error::{Error, Result};
use crate::history::encode_event;
use crate::layout::{DATA, dirty_key, encode_key_list, history_key, meta, meta_key, prefixed};
use crate::members::{Member, encode_members};
use crate::store::KvStore;
use crate::store::exec::{Batch, Response};
use crate::store::view::{Overlay, Pending};
use parking_lot::RwLockUpgradableReadGuard;
use std::collections::BTreeMap;

/// The payload of one committed entry for [`KvStore::apply_batch`].
#[derive(Clone, Copy, Debug)]
pub enum EntryPayload<'a> {
    /// A decoded command.
    Command(&'a Command),
    /// A normal entry's raw data, decoded here; undecodable data is applied as a rejected
    /// command (every replica rejects it alike).
    Data(&'a [u8]),
    /// An entry without a command (a new leader's empty entry): only the index advances.
    Empty,
    /// A configuration change: the member list after it.
    Members(&'a [Member]),
}

/// One committed entry for [`KvStore::apply_batch`].
#[derive(Clone, Copy, Debug)]
pub struct ApplyEntry<'a> {
    /// The entry's log index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// What it carries.
    pub payload: EntryPayload<'a>,
}

/// What applying one entry did.
#[derive(Debug)]
pub struct ApplyResult {
    /// The entry's index.
    pub index: u64,
    /// The command's request id (0 for entries without a command).
    pub request_id: u64,
    /// The store revision after the entry.
    pub revision: i64,
    /// The outcome.
    pub outcome: Outcome,
}

/// The outcome of applying one entry.
#[derive(Debug)]
pub enum Outcome {
    /// The index was applied before (replay after a restart): nothing was done.
    AlreadyApplied,
    /// An entry without a command: only the applied index moved.
    Noop,
    /// The command was applied; the answer for the client.
    Response(Response),
    /// The command was refused with an etcd request error (or could not be decoded); the
    /// applied index moved, nothing else changed.
    Rejected(Error),
}

/// A summary for `Maintenance.Status` and monitoring.
impl KvStore {
    /// Applies one committed command at `index` (see [`apply_batch`](Self::apply_batch)).
    pub fn apply(&self, index: u64, term: u64, cmd: &Command) -> Result<ApplyResult> {
        let mut r = self.apply_batch(&[ApplyEntry {
            index,
            term,
            payload: EntryPayload::Command(cmd),
        }])?;
        Ok(r.pop().expect("one result per entry"))
    }

    /// Applies a configuration change at `index`: the member list becomes `members` (a
    /// member's published name and client URLs are kept when the new entry has none).
    pub fn apply_membership(
        &self,
        index: u64,
        term: u64,
        members: &[Member],
    ) -> Result<ApplyResult> {
        let mut r = self.apply_batch(&[ApplyEntry {
            index,
            term,
            payload: EntryPayload::Members(members),
        }])?;
        Ok(r.pop().expect("one result per entry"))
    }

    /// Applies committed entries in order with one atomic sled write that also stores the
    /// last entry's index and term as the applied index.
    ///
    /// Entries at or below the applied index are skipped ([`Outcome::AlreadyApplied`]), so
    /// replaying the log after a restart is harmless. Returns one result per entry. An `Err`
    /// (storage failure) means nothing of the batch was applied.
    pub fn apply_batch(&self, entries: &[ApplyEntry<'_>]) -> Result<Vec<ApplyResult>> {
        let mut results = Vec::new();
        self.apply_batch_answering(entries, |r| results = r)?;
        Ok(results)
    }

    /// [`apply_batch`](Self::apply_batch) that hands the results to `answer` as soon as
    /// they are computed, before the sled write, so callers can answer clients while it
    /// runs. Readers are held from just before `answer` until the write is done: a read
    /// that starts after `answer` sees the batch. `answer` is called exactly once when
    /// this returns `Ok`. An `Err` after `answer` (the sled write failed) leaves the store
    /// as it was; applying the same entries again computes the same results.
    pub fn apply_batch_answering(
        &self,
        entries: &[ApplyEntry<'_>],
        answer: impl FnOnce(Vec<ApplyResult>),
    ) -> Result<()> {
        let shared = &*self.shared;
        let guard = shared.state.upgradable_read();
        if let Some(e) = guard.unusable() {
            return Err(e);
        }
        let sink = shared.sink.read().clone();
        let mut batch = Batch {
            tree: &shared.tree,
            overlay: Overlay::new(),
            pending: Pending::new(),
            events: sink.as_ref().map(|_| Vec::new()),
            // Reading the capture's progress once per batch spares the keys it has passed.
            pre: guard
                .capture
                .and_then(|_| BatchReads::new(shared.cow.lock().progress.clone())),
            revision: guard.revision,
            compact_revision: guard.compact_revision,
            members: guard.members.clone(),
            members_changed: false,
            internal: BTreeMap::new(),
            lease: Default::default(),
            alarms: guard.alarms.clone(),
            auth: crate::store::exec::AuthBatch::new(shared.auth.read().clone()),
            index: 0,
        };
        let mut last = (guard.applied_index, guard.applied_term);
        let mut results = Vec::with_capacity(entries.len());
        for e in entries {
            if e.index <= last.0 {
                results.push(ApplyResult {
                    index: e.index,
                    request_id: 0,
                    revision: batch.revision,
                    outcome: Outcome::AlreadyApplied,
                });
                continue;
            }
            batch.index = e.index;
            let decoded;
            let (request_id, outcome) = match e.payload {
                EntryPayload::Empty => (0, Outcome::Noop),
                EntryPayload::Members(ms) => (
                    0,
                    Outcome::Response(Response::Members(batch.set_members(ms))),
                ),
                EntryPayload::Command(cmd) => (cmd.request_id, execute(&mut batch, cmd)?),
                EntryPayload::Data(data) => match Command::decode(data) {
                    Ok(cmd) => {
                        decoded = cmd;
                        (decoded.request_id, execute(&mut batch, &decoded)?)
                    }
                    Err(err) => {
                        tracing::warn!(index = e.index, %err, "undecodable entry applied as rejected");
                        (0, Outcome::Rejected(err))
                    }
                },
            };
            last = (e.index, e.term);
            results.push(ApplyResult {
                index: e.index,
                request_id,
                revision: batch.revision,
                outcome,
            });
        }
        if last.0 == guard.applied_index {
            answer(results);
            return Ok(());
        }
        let mut b = sled::Batch::default();
        let mut spilled = Vec::new();
        if let Some(cap) = guard.capture {
            // Before the batch is written: see `crate::cow` and the snapshot module.
            spilled = shared.cow.lock().preserve(
                &shared.tree,
                cap.number,
                batch.overlay.keys(),
                batch.pre.take().unwrap_or_default(),
                &mut b,
            )?;
        }
        for (key, entry) in &batch.overlay {
            b.insert(prefixed(DATA, key), entry.encode());
        }
        for (at, key, entry) in batch.pending.iter() {
            b.insert(&history_key(at.main, at.sub)[..], encode_event(key, entry));
            b.insert(crate::revindex::entry_key(key, *at), &[][..]);
        }
        for (key, value) in &batch.internal {
            b.insert(key.as_slice(), value.as_slice());
        }
        batch.lease.write_to(&mut b);
        let alarms_changed = batch.alarms != guard.alarms;
        if alarms_changed {
            b.insert(crate::internal::alarms_key(), batch.alarms.encode());
        }
        batch.auth.write_to(&mut b);
        if !batch.overlay.is_empty() {
            b.insert(
                dirty_key(guard.dirty_gen, last.0),
                encode_key_list(batch.overlay.keys().map(Vec::as_slice)),
            );
        }
        b.insert(meta_key(meta::APPLIED_INDEX), &last.0.to_be_bytes());
        b.insert(meta_key(meta::APPLIED_TERM), &last.1.to_be_bytes());
        b.insert(meta_key(meta::REVISION), &batch.revision.to_be_bytes());
        b.insert(
            meta_key(meta::COMPACT_REVISION),
            &batch.compact_revision.to_be_bytes(),
        );
        if batch.members_changed {
            b.insert(
                meta_key(meta::MEMBERS),
                encode_members(batch.members.values()),
            );
        }
        let mut state = RwLockUpgradableReadGuard::upgrade(guard);
        answer(results);
        if let Err(e) = shared.tree.apply_batch(b) {
            // sled may have applied part of the batch in memory: no reader may see that
            // beside the old revision (readers wait on this lock and look at the flag).
            state.failed = true;
            return Err(e.into());
        }
        state.applied_index = last.0;
        state.applied_term = last.1;
        state.revision = batch.revision;
        let compacted = batch.compact_revision > state.compact_revision;
        state.compact_revision = batch.compact_revision;
        if batch.members_changed {
            state.members = batch.members;
        }
        if alarms_changed {
            state.alarms = batch.alarms;
        }
        if !batch.lease.events.is_empty() {
            // Under the state lock: a reader never sees the data of a batch without its leases.
            shared
                .leases
                .lock()
                .applied(&batch.lease.events, std::time::Instant::now());
        }
        if let Some(next) = batch.auth.next.take() {
            // Under the state lock: a reader never sees a batch's data with the auth state
            // from before it.
            *shared.auth.write() = std::sync::Arc::new(next);
        }
        if !batch.auth.tokens.is_empty() {
            shared
                .tokens
                .lock()
                .apply(&batch.auth.tokens, std::time::Instant::now());
        }
        drop(state);
        if !spilled.is_empty() {
            shared.cow.lock().spilled_written(spilled);
        }
        if compacted {
            crate::compact::start(&self.shared);
        }
        if let (Some(sink), Some(events)) = (sink, batch.events)
            && !events.is_empty()
        {
            sink.publish(events);
        }
        Ok(())
    }
}

/// Runs one command, turning request errors into [`Outcome::Rejected`]. A client command
/// is first checked against the auth state (see `crate::auth`).
fn execute(batch: &mut Batch<'_>, cmd: &Command) -> Result<Outcome> {
    if let Some(caller) = &cmd.caller {
        match batch.check_caller(caller, &cmd.op) {
            Ok(()) => {}
            Err(e) if e.is_request_error() => return Ok(Outcome::Rejected(e)),
            Err(e) => return Err(e),
        }
    }
    match batch.execute(&cmd.op) {
        Ok(r) => Ok(Outcome::Response(r)),
        Err(e) if e.is_request_error() => Ok(Outcome::Rejected(e)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;
    use crate::pb::etcdserverpb::{
        AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest,
        PutRequest, RequestOp, TxnRequest, alarm_request::AlarmAction, request_op,
    };

    struct W(KvStore, u64);

    impl W {
        fn run(&mut self, op: Op) -> Outcome {
            self.1 += 1;
            self.0
                .apply(self.1, 1, &Command::new(0, op))
                .unwrap()
                .outcome
        }
    }

    fn put(k: &str) -> Op {
        Op::Put(PutRequest {
            key: k.as_bytes().to_vec().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        })
    }

    fn del(k: &str) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: k.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn alarm(action: AlarmAction, member_id: u64) -> Op {
        Op::Alarm(AlarmRequest {
            action: action as i32,
            member_id,
            alarm: AlarmType::Nospace as i32,
        })
    }

    fn refused(o: &Outcome) -> bool {
        matches!(o, Outcome::Rejected(Error::NoSpace))
    }

    /// NOSPACE, applied from the log, refuses what adds data (put, a txn with a put, lease
    /// grant) and lets reads, deletes, delete-only txns and compaction through; it is kept
    /// across a restart and in snapshots, and disarming lifts it.
    #[test]
    fn nospace_refuses_writes_that_add_data_until_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = W(KvStore::open(dir.path()).unwrap(), 0);
        assert!(matches!(w.run(put("a")), Outcome::Response(_)));
        assert!(matches!(w.run(put("b")), Outcome::Response(_)));
        match w.run(alarm(AlarmAction::Activate, 7)) {
            Outcome::Response(Response::Alarm(r)) => assert_eq!(r.alarms.len(), 1),
            other => panic!("{other:?}"),
        }
        let rev = w.0.revision();
        assert!(refused(&w.run(put("c"))));
        assert!(refused(
            &w.run(Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }))
        ));
        let txn_put = TxnRequest {
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: b"t".to_vec().into(),
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert!(refused(&w.run(Op::Txn(txn_put.clone()))));
        assert_eq!(w.0.revision(), rev, "nothing refused was written");
        let txn_del = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(del("a"))),
            }],
            ..Default::default()
        };
        assert!(matches!(w.run(Op::Txn(txn_del)), Outcome::Response(_)));
        assert!(matches!(
            w.run(Op::DeleteRange(del("b"))),
            Outcome::Response(_)
        ));
        let compact = w.0.revision();
        assert!(matches!(
            w.run(Op::Compact(CompactionRequest {
                revision: compact,
                physical: false
            })),
            Outcome::Response(_)
        ));
        assert!(w.0.get(b"a").unwrap().is_none());

        // Kept across a restart and carried by a snapshot.
        let index = w.1;
        drop(w);
        let mut w = W(KvStore::open(dir.path()).unwrap(), index);
        assert!(refused(&w.run(put("c"))));
        let cap = w.0.snapshot_full().unwrap();
        let copy = KvStore::open_temporary().unwrap();
        copy.restore_full(cap.info.index, 1, cap.records).unwrap();
        assert_eq!(copy.alarms(AlarmType::Nospace).len(), 1);
        assert_eq!(copy.alarms(AlarmType::Corrupt).len(), 0);
        let mut c = W(copy, w.1);
        assert!(refused(&c.run(put("c"))));

        // Member 0 disarms every member's alarm.
        match w.run(alarm(AlarmAction::Deactivate, 0)) {
            Outcome::Response(Response::Alarm(r)) => assert_eq!(r.alarms[0].member_id, 7),
            other => panic!("{other:?}"),
        }
        assert!(w.0.alarms(AlarmType::None).is_empty());
        assert!(matches!(w.run(put("c")), Outcome::Response(_)));
        assert!(matches!(w.run(Op::Txn(txn_put)), Outcome::Response(_)));
    }

    /// CORRUPT, applied from the log, refuses every write to the key space and the lessor
    /// (put, delete, txn, compaction, lease grant and revoke) with etcd's "corrupt cluster",
    /// writes nothing, lets reads and alarms through, and disarming lifts it.
    /// Once a batch failed to be written the tree may hold part of it: every read and
    /// every later apply is refused (the member stops; a restart applies the log again).
    #[test]
    fn after_a_failed_batch_write_nothing_is_read_or_applied() {
        use crate::pb::etcdserverpb::{RangeRequest, TxnRequest};
        let kv = KvStore::open_temporary().unwrap();
        let mut w = W(kv.clone(), 0);
        assert!(matches!(w.run(put("a")), Outcome::Response(_)));
        // What the apply path sets when sled's write fails (a full disk cannot be staged in
        // a unit test; the chaos `disk` fault does it for real).
        kv.shared.state.write().failed = true;
        let range = RangeRequest {
            key: b"a".to_vec().into(),
            ..Default::default()
        };
        assert!(matches!(kv.range(&range), Err(Error::StoreFailed)));
        assert!(matches!(kv.get(b"a"), Err(Error::StoreFailed)));
        assert!(matches!(
            kv.txn_read_only(&TxnRequest::default()),
            Err(Error::StoreFailed)
        ));
        assert!(matches!(
            kv.apply(9, 1, &Command::new(0, put("b"))),
            Err(Error::StoreFailed)
        ));
        let status: tonic::Status = Error::StoreFailed.into();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn corrupt_refuses_writes_until_disarmed() {
        use crate::pb::etcdserverpb::LeaseRevokeRequest;
        let mut w = W(KvStore::open_temporary().unwrap(), 0);
        assert!(matches!(w.run(put("a")), Outcome::Response(_)));
        assert!(matches!(
            w.run(Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 9 })),
            Outcome::Response(_)
        ));
        let corrupt = |action: AlarmAction| {
            Op::Alarm(AlarmRequest {
                action: action as i32,
                member_id: 3,
                alarm: AlarmType::Corrupt as i32,
            })
        };
        assert!(matches!(
            w.run(corrupt(AlarmAction::Activate)),
            Outcome::Response(_)
        ));
        let rev = w.0.revision();
        let refused = |o: Outcome| matches!(o, Outcome::Rejected(Error::CorruptCluster));
        assert!(refused(w.run(put("b"))));
        assert!(refused(w.run(Op::DeleteRange(del("a")))));
        let txn_del = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(del("a"))),
            }],
            ..Default::default()
        };
        assert!(refused(w.run(Op::Txn(txn_del))));
        assert!(refused(w.run(Op::Compact(CompactionRequest {
            revision: rev,
            physical: false
        }))));
        assert!(refused(
            w.run(Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }))
        ));
        assert!(refused(
            w.run(Op::LeaseRevoke(LeaseRevokeRequest { id: 9 }))
        ));
        assert_eq!(w.0.revision(), rev, "nothing refused was written");
        assert!(w.0.get(b"a").unwrap().is_some(), "reads go on");
        assert_eq!(w.0.alarms(AlarmType::Corrupt)[0].member_id, 3);
        assert!(matches!(
            w.run(corrupt(AlarmAction::Deactivate)),
            Outcome::Response(_)
        ));
        assert!(matches!(w.run(put("b")), Outcome::Response(_)));
    }
}
