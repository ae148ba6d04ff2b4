//! What `Lock` and `Election` share: etcd's `clientv3/concurrency` recipes run on the server
//! (as etcd's own v3lock and v3election services do), over the store and the log: txns
//! through the log, linearizable reads, and [`Watcher`], which waits for changes of a key
//! range.
//!
//! [`Watcher`] reads this member's watch hub when the service has one, and otherwise polls the
//! store's history (`EventHistory`) with a short back-off: the one place that knows.

use super::auth::Who;
use super::{EtcdService, kv_status, unexpected};
use crate::pb::etcdserverpb::{
    self as pb, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchCreateRequest,
    range_request,
};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};
use crate::watch::{EventHistory, WatchStream};
use crate::{Op, Response as KvResponse};
use prost::bytes::Bytes;
use std::time::Duration;
use tonic::Status;

/// etcd's `GetPrefixRangeEnd`: the end of the range of keys starting with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    // Every byte is 0xff: every key from `prefix` on.
    Bytes::from_static(&[0])
}

/// `prefix ++ lease in lowercase hex`: the key of a lock waiter or an election candidate
/// (etcd: `fmt.Sprintf("%s%x", pfx, lease)`).
pub(super) fn lease_key(prefix: &[u8], lease: i64) -> Bytes {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    Bytes::from(k)
}

/// `name ++ "/"`: the prefix of a lock's or an election's keys.
pub(super) fn name_prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// A range over `prefix` sorted by create revision, one key: the oldest (`ascend`) or the
/// newest, optionally only up to `max_create_revision` (etcd's `WithFirstCreate` and
/// `WithLastCreate`).
pub(super) fn by_create(prefix: &[u8], ascend: bool, max_create_revision: i64) -> RangeRequest {
    use range_request::{SortOrder, SortTarget};
    RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if ascend {
            SortOrder::Ascend
        } else {
            SortOrder::Descend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

impl EtcdService {
    /// With authentication on, fails unless the caller of a Lock or Election request may
    /// read and write every key under `name ++ "/"` (where the recipe keeps its keys; etcd's
    /// recipes run as the caller, so they need the same).
    pub(super) async fn recipe_allowed(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        extensions: &tonic::Extensions,
        name: &[u8],
    ) -> Result<Who, Status> {
        let who = self.who_from(metadata, extensions).await?;
        let prefix = name_prefix(name);
        let end = prefix_end(&prefix);
        for access in [crate::auth::Access::Read, crate::auth::Access::Write] {
            who.state.check_range(&who.user, &prefix, &end, access)?;
        }
        Ok(who)
    }

    /// Proposes a txn for `who` (apply checks it again) and answers with its response
    /// (header: the store revision after it).
    pub(super) async fn recipe_txn(&self, t: TxnRequest, who: &Who) -> Result<TxnResponse, Status> {
        self.check_size(prost::Message::encoded_len(&t))?;
        match self.propose_as(Op::Txn(t), who).await? {
            KvResponse::Txn(r) => Ok(r),
            _ => Err(unexpected("txn")),
        }
    }

    /// A linearizable range read.
    pub(super) async fn recipe_range(&self, r: &RangeRequest) -> Result<RangeResponse, Status> {
        self.read_barrier(false).await?;
        self.ctx.store.range(r).map_err(kv_status)
    }

    /// Deletes `key` (what Unlock and Resign do for `who`, and an abandoned Lock or Campaign
    /// does without a caller).
    pub(super) async fn recipe_delete(
        &self,
        key: Bytes,
        who: Option<&Who>,
    ) -> Result<pb::DeleteRangeResponse, Status> {
        let op = Op::DeleteRange(pb::DeleteRangeRequest {
            key,
            ..Default::default()
        });
        let answer = match who {
            Some(who) => self.propose_as(op, who).await?,
            // Clean-up of the caller's own key after the call ended.
            None => self.propose(op).await?,
        };
        match answer {
            KvResponse::DeleteRange(r) => Ok(r),
            _ => Err(unexpected("delete")),
        }
    }

    /// etcd's `waitDeletes`: waits until no key under `prefix` has a create revision at or
    /// below `max_create_revision` (each time for the newest of them to be deleted). Returns
    /// the header revision of the last read.
    pub(super) async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<i64, Status> {
        loop {
            let resp = self
                .recipe_range(&by_create(prefix, false, max_create_revision))
                .await?;
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            let Some(kv) = resp.kvs.first() else {
                return Ok(rev);
            };
            self.wait_delete(&kv.key, rev).await?;
        }
    }

    /// etcd's `waitDelete`: waits for a delete of `key` after revision `rev` (or for the
    /// watch to end early, a compaction: the caller reads again).
    async fn wait_delete(&self, key: &[u8], rev: i64) -> Result<(), Status> {
        let mut w = Watcher::open(self, Bytes::copy_from_slice(key), Bytes::new(), rev + 1);
        loop {
            match w.next().await? {
                None => return Ok(()),
                Some(events) => {
                    if events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Waits for the events of a key range from a revision on, in revision order (see the
/// module documentation for its two back-ends).
pub(super) struct Watcher {
    source: Source,
}

enum Source {
    Hub(WatchStream),
    Poll {
        store: crate::KvStore,
        key: Bytes,
        range_end: Bytes,
        next: i64,
        pause: Duration,
    },
}

/// The polling back-end's shortest and longest pause between reads.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(200);

impl Watcher {
    /// Watches `[key, range_end)` (etcd's range rules) from revision `from`.
    pub(super) fn open(svc: &EtcdService, key: Bytes, range_end: Bytes, from: i64) -> Self {
        let source = match &svc.watch {
            Some(hub) => {
                let stream = hub.open_stream();
                stream.create(&WatchCreateRequest {
                    key,
                    range_end,
                    start_revision: from,
                    filters: Vec::new(),
                    ..Default::default()
                });
                Source::Hub(stream)
            }
            None => Source::Poll {
                store: svc.ctx.store.clone(),
                key,
                range_end,
                next: from,
                pause: POLL_MIN,
            },
        };
        Watcher { source }
    }

    /// The next events (one or more revisions' worth, never empty), or `None` when the watch
    /// ended early (its history was compacted): read the state again then.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<Event>>, Status> {
        match &mut self.source {
            Source::Hub(stream) => loop {
                let resps = stream.next_responses(usize::MAX >> 1, &|_| None).await;
                let mut events = Vec::new();
                for r in resps {
                    if r.canceled || r.compact_revision > 0 {
                        return Ok(None);
                    }
                    events.extend(r.events);
                }
                if !events.is_empty() {
                    return Ok(Some(events));
                }
            },
            Source::Poll {
                store,
                key,
                range_end,
                next,
                pause,
            } => loop {
                let revs = store.revisions();
                if *next < revs.compact {
                    return Ok(None);
                }
                if revs.current >= *next {
                    let range = crate::layout::KeyRange::new(key, range_end);
                    let chunk = match store.read_events(
                        *next,
                        revs.current,
                        &|k| range.contains(k),
                        false,
                        4 << 20,
                    ) {
                        Ok(c) => c,
                        Err(crate::Error::Compacted) => return Ok(None),
                        Err(e) => return Err(kv_status(e)),
                    };
                    *next = chunk.next;
                    let events: Vec<Event> =
                        chunk.revisions.into_iter().flat_map(|r| r.events).collect();
                    if !events.is_empty() {
                        *pause = POLL_MIN;
                        return Ok(Some(events));
                    }
                }
                tokio::time::sleep(*pause).await;
                *pause = (*pause * 2).min(POLL_MAX);
            },
        }
    }
}

/// The version of a key an event left (`None` for a delete).
pub(super) fn put_kv(e: &Event) -> Option<&KeyValue> {
    (e.r#type == EventType::Put as i32)
        .then_some(e.kv.as_ref())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthError;
    use crate::auth::tests::{Applier, auth_cmd, set_up};
    use crate::pb::etcdserverpb::AuthRoleRevokePermissionRequest;
    use crate::pb::kvauth::auth_command;
    use crate::{Command, Outcome};

    /// Revokes role app's readwrite on `app/` (what `set_up` granted alice).
    fn revoke_app(a: &mut Applier) {
        a.ok(
            "root",
            auth_cmd(auth_command::Op::RoleRevokePermission(
                AuthRoleRevokePermissionRequest {
                    role: "app".into(),
                    key: Bytes::from_static(b"app/"),
                    range_end: Bytes::from_static(b"app0"),
                },
            )),
        );
    }

    /// The txns the Lock and Election services propose, as alice checked them when the RPC
    /// started: with her permission revoked before they apply, apply refuses each
    /// (`ErrAuthOldRevision`, then `permission denied` when the service checks again), and
    /// nothing is written. With the permission they apply.
    #[test]
    fn recipe_writes_are_checked_again_at_apply() {
        use super::super::election::{campaign_txn, proclaim_txn, resign_txn};
        use super::super::lock::lock_txn;
        let mut a = set_up();
        let (key, lock) = lock_txn(b"app/locks", 0);
        assert_eq!(key, Bytes::from_static(b"app/locks/0"));
        let ckey = lease_key(b"app/vote/", 0);
        let campaign = campaign_txn(&ckey, Bytes::from_static(b"me"), 0);
        // Allowed: alice locks and campaigns.
        let rev_of = |r: crate::Response| match r {
            crate::Response::Txn(t) => {
                assert!(t.succeeded);
                t.header.map_or(0, |h| h.revision)
            }
            other => panic!("{other:?}"),
        };
        rev_of(a.ok("alice", Op::Txn(lock.clone())));
        let rev = rev_of(a.ok("alice", Op::Txn(campaign.clone())));
        let leader = crate::pb::v3electionpb::LeaderKey {
            name: Bytes::from_static(b"app/vote"),
            key: ckey.clone(),
            rev,
            lease: 0,
        };
        let proclaim = proclaim_txn(&leader, Bytes::from_static(b"new"));
        let resign = resign_txn(&leader);
        rev_of(a.ok("alice", Op::Txn(proclaim.clone())));
        // Checked at the RPC's start, revoked before the apply.
        let (_, lock2) = lock_txn(b"app/locks", 7);
        let checked = a.store.auth_state().caller("alice");
        revoke_app(&mut a);
        let before = a.store.revision();
        for txn in [lock2, campaign, proclaim, resign] {
            let cmd = Command::new(9, Op::Txn(txn.clone())).with_caller(Some(checked.clone()));
            match a.apply(cmd) {
                Outcome::Rejected(crate::Error::Auth(AuthError::OldRevision)) => {}
                other => panic!("{other:?}"),
            }
            // The service checks and proposes again under the new state: refused.
            assert_eq!(a.err("alice", Op::Txn(txn)), AuthError::PermissionDenied);
        }
        assert_eq!(a.store.revision(), before, "nothing was written");
    }

    #[test]
    fn etcd_key_helpers() {
        assert_eq!(prefix_end(b"a/"), Bytes::from_static(b"a0"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::from_static(&[0]));
        assert_eq!(
            lease_key(b"lk/", 0x694d7a),
            Bytes::from_static(b"lk/694d7a")
        );
        assert_eq!(name_prefix(b"lk"), b"lk/");
        let r = by_create(b"p/", true, 0);
        assert_eq!(r.limit, 1);
        assert_eq!(r.range_end, Bytes::from_static(b"p0"));
    }
}
