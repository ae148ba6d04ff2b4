//! [`KvMachine`]: raft-kv's [`KvStore`] as raft-runtime's `StateMachine`, with snapshots on
//! `raft-snapshot`'s chain store and the member list built from the log.
//!
//! Peer addresses travel through the log: `MemberAdd` first proposes the new member's peer
//! URLs ([`Op::SetPeerUrls`], kept in the store's internal key space, out of reach of
//! clients), then the configuration change, so every replica (and every later leader) learns
//! the address in log order and records it in the [`AddressBook`] it shares with the
//! transport.

use crate::address_book::AddressBook;
use crate::{ApplyEntry, ApplyResult, Command, EntryPayload, KvStore, Member, Op};
use parking_lot::{Condvar, Mutex};
use raft_core::{Membership, NodeId, SnapshotMeta};
use raft_runtime::{BoxError, Committed, Payload, StateMachine};
use raft_snapshot::{ChainPolicy, SnapshotId, SnapshotStore, Uploader};
use std::sync::Arc;

/// Fills `book` with the peer addresses `store` holds: those registered through the log,
/// then those of the member list.
fn learn_stored_addresses(store: &KvStore, book: &AddressBook) {
    match store.peer_urls() {
        Ok(urls) => {
            for (id, urls) in urls {
                if let Some(url) = urls.first() {
                    book.set(id, url);
                }
            }
        }
        Err(e) => tracing::warn!(%e, "stored peer addresses unreadable"),
    }
    for m in store.members() {
        if let Some(url) = m.peer_urls.first() {
            book.set(m.id, url);
        }
    }
}

/// Where [`KvMachine`] writes its snapshots and what it does after each one.
#[derive(Clone)]
pub struct SnapshotCtx {
    /// The node's snapshot store (`<data dir>/snap`).
    pub store: SnapshotStore,
    /// When a chain is merged into a new base.
    pub policy: ChainPolicy,
    /// Uploads every new snapshot in the background, when configured.
    pub uploader: Option<Arc<Uploader>>,
    /// The snapshot build's read rate limit in bytes per second (0: unlimited).
    pub max_build_rate: u64,
}

/// Unix time in milliseconds (snapshot creation times).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether a snapshot is being built (a capture is open): a restore waits for it to end,
/// since the store takes one capture or restore at a time.
#[derive(Default)]
struct Building {
    busy: Mutex<bool>,
    idle: Condvar,
}

/// Marks a build as running until dropped (also when the build never starts).
struct BuildGuard(Arc<Building>);

impl BuildGuard {
    fn new(b: &Arc<Building>) -> Self {
        *b.busy.lock() = true;
        BuildGuard(b.clone())
    }
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        *self.0.busy.lock() = false;
        self.0.idle.notify_all();
    }
}

impl Building {
    fn wait_idle(&self) {
        let mut busy = self.busy.lock();
        while *busy {
            self.idle.wait(&mut busy);
        }
    }
}

/// The snapshot of `store` to restore for `meta`: one at exactly `meta.index` (the current
/// chain's tip first), else the current chain when it is newer (its state includes
/// `meta.index`; the entries between are not applied again).
pub fn snapshot_for(store: &SnapshotStore, meta: &SnapshotMeta) -> Result<SnapshotId, BoxError> {
    let head = store.latest().map(|c| c.tip().clone());
    if let Some(h) = &head
        && h.index == meta.index
    {
        return Ok(h.id);
    }
    if let Some(s) = store
        .list()
        .into_iter()
        .filter(|s| s.index == meta.index)
        .max_by_key(|s| s.created_ms)
    {
        return Ok(s.id);
    }
    match head {
        Some(h) if h.index > meta.index => Ok(h.id),
        _ => Err(format!(
            "no snapshot at or after index {} in {}",
            meta.index,
            store.dir().display()
        )
        .into()),
    }
}

/// raft-kv's store as the runtime's state machine.
pub struct KvMachine {
    store: KvStore,
    book: AddressBook,
    /// The membership of a new cluster (or the one a joining node's first snapshot
    /// carried): the member list the store starts with.
    seed: Option<Membership>,
    /// Snapshots: `None` refuses to build or restore them (tests).
    snapshots: Option<SnapshotCtx>,
    /// The last membership applied in this process, with its index: a snapshot taken past
    /// the index the runtime asked for carries it.
    membership: Option<(u64, Membership)>,
    building: Arc<Building>,
}

impl KvMachine {
    /// Wraps `store`; `seed` is the bootstrap membership of a new cluster.
    pub fn new(store: KvStore, book: AddressBook, seed: Option<Membership>) -> Self {
        learn_stored_addresses(&store, &book);
        Self {
            store,
            book,
            seed,
            snapshots: None,
            membership: None,
            building: Arc::default(),
        }
    }

    /// Builds and restores snapshots with `ctx`.
    pub fn with_snapshots(mut self, ctx: SnapshotCtx) -> Self {
        self.snapshots = Some(ctx);
        self
    }

    fn snapshot_ctx(&self) -> Result<&SnapshotCtx, BoxError> {
        self.snapshots
            .as_ref()
            .ok_or_else(|| "this node keeps no snapshot store".into())
    }

    fn members_of(&self, membership: &Membership) -> Vec<Member> {
        let mut ids: Vec<NodeId> = membership.members().into_iter().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| Member {
                id,
                name: String::new(),
                peer_urls: self
                    .book
                    .get(id)
                    .map(|a| vec![format!("http://{a}")])
                    .unwrap_or_default(),
                client_urls: Vec::new(),
                is_learner: !membership.voters.contains(&id)
                    && !membership.voters_outgoing.contains(&id),
            })
            .collect()
    }

    /// Learns a peer URL when `data` is a [`Op::SetPeerUrls`] command.
    fn learn_address(&self, data: &[u8]) {
        if !crate::command::is_set_peer_urls(data) {
            return;
        }
        if let Ok(Command {
            op: Op::SetPeerUrls(urls),
            ..
        }) = Command::decode(data)
            && let Some(url) = urls.peer_urls.first()
        {
            self.book.set(urls.id, url);
        }
    }
}

impl StateMachine for KvMachine {
    type Response = ApplyResult;

    fn apply(&mut self, batch: &[Committed]) -> Result<Vec<ApplyResult>, BoxError> {
        let mut results = Vec::new();
        self.apply_and_answer(batch, &mut |r| results = r)?;
        Ok(results)
    }

    /// Answers as soon as the store computed the results, before its sled write (see
    /// [`KvStore::apply_batch_answering`]).
    fn apply_and_answer(
        &mut self,
        batch: &[Committed],
        answer: &mut dyn FnMut(Vec<ApplyResult>),
    ) -> Result<(), BoxError> {
        let applied = self.store.applied_index();
        let mut seeded = !self.store.members().is_empty();
        let mut lists: Vec<Option<Vec<Member>>> = Vec::with_capacity(batch.len());
        for c in batch {
            let list = match &c.payload {
                Payload::Command(data) => {
                    if c.index > applied {
                        self.learn_address(data);
                    }
                    None
                }
                Payload::ConfChange {
                    membership: Some(m),
                    ..
                } => {
                    seeded = true;
                    self.membership = Some((c.index, m.clone()));
                    Some(self.members_of(m))
                }
                Payload::Empty if !seeded => {
                    seeded = true;
                    self.seed.as_ref().map(|m| self.members_of(m))
                }
                _ => None,
            };
            lists.push(list);
        }
        let entries: Vec<ApplyEntry<'_>> = batch
            .iter()
            .zip(&lists)
            .map(|(c, list)| ApplyEntry {
                index: c.index,
                term: c.term,
                payload: match (&c.payload, list) {
                    (_, Some(l)) => EntryPayload::Members(l),
                    (Payload::Command(data), None) => EntryPayload::Data(data),
                    _ => EntryPayload::Empty,
                },
            })
            .collect();
        Ok(self.store.apply_batch_answering(&entries, answer)?)
    }

    fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    fn snapshot(&mut self, meta: &SnapshotMeta) -> Result<raft_runtime::SnapshotBuilder, BoxError> {
        let ctx = self.snapshot_ctx()?.clone();
        // The capture is at the store's applied index, which may be past `meta.index`
        // (entries queued before the request were applied first).
        let membership = match &self.membership {
            Some((index, m)) if *index > meta.index => m.clone(),
            _ => meta.membership.clone(),
        };
        let guard = BuildGuard::new(&self.building);
        let pending = crate::capture_snapshot(&self.store, &ctx.store, membership)?
            .with_max_rate(ctx.max_build_rate);
        Ok(Box::new(move || {
            let _guard = guard;
            // raft-runtime runs this on a thread of its own: it yields the CPU to apply.
            if let Err(e) = crate::lower_thread_priority() {
                tracing::debug!(%e, "the snapshot thread keeps its priority");
            }
            let info = pending.write(now_ms())?;
            let mut new = vec![info.id];
            match crate::maintain_chains(&ctx.store, &ctx.policy, now_ms()) {
                Ok(Some(base)) => new.push(base.id),
                Ok(None) => {}
                // The snapshot itself is durable: upkeep is retried after the next one.
                Err(e) => tracing::warn!(%e, "snapshot chain upkeep failed"),
            }
            if let Some(up) = &ctx.uploader {
                for id in new {
                    if let Err(e) = up.enqueue(id) {
                        tracing::warn!(%e, %id, "snapshot not queued for upload");
                    }
                }
            }
            Ok(())
        }))
    }

    fn restore(&mut self, meta: &SnapshotMeta) -> Result<(), BoxError> {
        if meta.index == 0 {
            // A joining node starts from the cluster's bootstrap snapshot: its membership
            // is the member list the log's first entries build on.
            self.seed = Some(meta.membership.clone());
            return Ok(());
        }
        let ctx = self.snapshot_ctx()?.clone();
        // One capture or restore at a time: let a snapshot being built finish first.
        self.building.wait_idle();
        let tip = snapshot_for(&ctx.store, meta)?;
        let info = crate::restore_from_store(&self.store, &ctx.store, Some(tip))?;
        self.membership = Some((info.index, info.meta().membership));
        learn_stored_addresses(&self.store, &self.book);
        if let Err(e) = ctx.store.gc() {
            tracing::warn!(%e, "snapshot gc after a restore");
        }
        tracing::info!(index = info.index, id = %info.id, "state restored from a snapshot");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::PutRequest;
    use crate::pb::kvcmd::MemberPeerUrls;
    use raft_core::{ConfChange, ConfChangeOp, ConfChangeTransition};
    use std::collections::BTreeMap;

    fn membership(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            ..Membership::default()
        }
    }

    #[test]
    fn seeds_members_and_learns_addresses_from_the_log() {
        let store = KvStore::open_temporary().unwrap();
        let book = AddressBook::new(BTreeMap::from([
            (1, "127.0.0.1:1".to_string()),
            (2, "127.0.0.1:2".to_string()),
        ]));
        let mut sm = KvMachine::new(store.clone(), book.clone(), Some(membership(&[1, 2], &[])));
        sm.apply(&[Committed {
            index: 1,
            term: 1,
            payload: Payload::Empty,
        }])
        .unwrap();
        let ids: Vec<(u64, bool)> = store
            .members()
            .iter()
            .map(|m| (m.id, m.is_learner))
            .collect();
        assert_eq!(ids, [(1, false), (2, false)]);
        assert_eq!(store.members()[0].peer_urls, ["http://127.0.0.1:1"]);

        let put = Command::new(
            0,
            Op::SetPeerUrls(MemberPeerUrls {
                id: 3,
                peer_urls: vec!["http://127.0.0.1:3".into()],
            }),
        )
        .encode();
        // A client writing the key where older versions kept addresses changes nothing.
        let client = Command::new(
            0,
            Op::Put(PutRequest {
                key: "\0raftd/peer/4".into(),
                value: "http://evil:4".into(),
                ..Default::default()
            }),
        )
        .encode();
        let change = ConfChange {
            transition: ConfChangeTransition::Auto,
            ops: vec![ConfChangeOp::AddLearner(3)],
        };
        let results = sm
            .apply(&[
                Committed {
                    index: 2,
                    term: 1,
                    payload: Payload::Command(put),
                },
                Committed {
                    index: 3,
                    term: 1,
                    payload: Payload::Command(client),
                },
                Committed {
                    index: 4,
                    term: 1,
                    payload: Payload::ConfChange {
                        change,
                        membership: Some(membership(&[1, 2], &[3])),
                    },
                },
            ])
            .unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(book.get(3).as_deref(), Some("127.0.0.1:3"));
        assert_eq!(book.get(4), None);
        assert_eq!(store.peer_urls().unwrap()[&3], ["http://127.0.0.1:3"]);
        let m3 = store.members().into_iter().find(|m| m.id == 3).unwrap();
        assert!(m3.is_learner);
        assert_eq!(m3.peer_urls, ["http://127.0.0.1:3"]);
        assert_eq!(sm.applied_index(), 4);
        // A restart rebuilds the book from the store.
        let book2 = AddressBook::default();
        let _ = KvMachine::new(store, book2.clone(), None);
        assert_eq!(book2.get(3).as_deref(), Some("127.0.0.1:3"));
    }
}
