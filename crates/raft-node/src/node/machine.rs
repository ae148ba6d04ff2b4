//! Adapters between the toolkit crates: [`KvMachine`] (raft-kv's `KvStore` as raft-runtime's
//! `StateMachine`), [`AddressBook`] (where each member's peer transport listens) and
//! [`NetTransport`] (raft-net's `PeerTransport` as raft-runtime's `Transport`).
//!
//! Peer addresses travel through the log: `MemberAdd` first writes the new member's peer
//! URL under the reserved key [`PEER_KEY_PREFIX`]`<id>`, then proposes the configuration
//! change, so every replica (and every later leader) learns the address in log order.

use crate::config::strip_scheme;
use bytes::Bytes;
use parking_lot::RwLock;
use raft_core::{Membership, Message, NodeId, SnapshotMeta};
use raft_kv::{ApplyEntry, ApplyResult, Command, EntryPayload, KvStore, Member, Op};
use raft_runtime::{BoxError, BoxFuture, Committed, Payload, StateMachine, Transport};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The reserved key prefix under which peer URLs of added members are replicated.
pub const PEER_KEY_PREFIX: &[u8] = b"\x00raftd/peer/";

/// The reserved key holding member `id`'s peer URL.
pub fn peer_key(id: NodeId) -> Bytes {
    let mut k = PEER_KEY_PREFIX.to_vec();
    k.extend_from_slice(id.to_string().as_bytes());
    Bytes::from(k)
}

/// Member id → peer address (`host:port`), shared by the state machine (which learns
/// addresses from the log) and the transport (which dials them).
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    inner: Arc<RwLock<BTreeMap<NodeId, String>>>,
}

impl AddressBook {
    /// A book holding `members`.
    pub fn new(members: BTreeMap<NodeId, String>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(members)),
        }
    }

    /// The address of `id`.
    pub fn get(&self, id: NodeId) -> Option<String> {
        self.inner.read().get(&id).cloned()
    }

    /// Records the address of `id`.
    pub fn set(&self, id: NodeId, addr: &str) {
        self.inner
            .write()
            .insert(id, strip_scheme(addr).to_string());
    }

    /// Every known member.
    pub fn all(&self) -> BTreeMap<NodeId, String> {
        self.inner.read().clone()
    }
}

/// raft-kv's store as the runtime's state machine.
pub struct KvMachine {
    store: KvStore,
    book: AddressBook,
    /// The membership of a new cluster (or the one a joining node's first snapshot
    /// carried): the member list the store starts with.
    seed: Option<Membership>,
}

impl KvMachine {
    /// Wraps `store`; `seed` is the bootstrap membership of a new cluster.
    pub fn new(store: KvStore, book: AddressBook, seed: Option<Membership>) -> Self {
        for m in store.members() {
            if let Some(url) = m.peer_urls.first() {
                book.set(m.id, url);
            }
        }
        Self { store, book, seed }
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

    /// Learns a peer URL when `data` is a put of a reserved peer key.
    fn learn_address(&self, data: &[u8]) {
        // The key is the first field of the put, so the prefix shows within the first bytes
        // of the encoded command: only those commands are decoded here.
        let head = &data[..data.len().min(64)];
        if !head
            .windows(PEER_KEY_PREFIX.len())
            .any(|w| w == PEER_KEY_PREFIX)
        {
            return;
        }
        if let Ok(Command {
            op: Op::Put(put), ..
        }) = Command::decode(data)
            && let Some(id) = put.key.strip_prefix(PEER_KEY_PREFIX)
            && let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok())
            && let Ok(url) = std::str::from_utf8(&put.value)
        {
            self.book.set(id, url);
        }
    }
}

impl StateMachine for KvMachine {
    type Response = ApplyResult;

    fn apply(&mut self, batch: &[Committed]) -> Result<Vec<ApplyResult>, BoxError> {
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
        Ok(self.store.apply_batch(&entries)?)
    }

    fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    fn restore(&mut self, meta: &SnapshotMeta) -> Result<(), BoxError> {
        if meta.index == 0 {
            // A joining node starts from the cluster's bootstrap snapshot: its membership
            // is the member list the log's first entries build on.
            self.seed = Some(meta.membership.clone());
            Ok(())
        } else {
            Err("raftd does not restore state-machine snapshots yet".into())
        }
    }
}

/// raft-net's transport as the runtime's, dialling members at their [`AddressBook`] entry.
pub struct NetTransport {
    net: raft_net::PeerTransport,
    book: AddressBook,
}

impl NetTransport {
    /// Wraps `net`.
    pub fn new(net: raft_net::PeerTransport, book: AddressBook) -> Self {
        Self { net, book }
    }
}

impl Transport for NetTransport {
    fn send(&self, msg: Message) {
        let to = msg.to;
        if let Err(e) = self.net.send(msg) {
            tracing::trace!(to, %e, "message dropped");
        }
    }

    fn send_snapshot(&self, msg: Message) -> BoxFuture<Result<(), BoxError>> {
        let net = self.net.clone();
        Box::pin(async move {
            let raft_core::MessageBody::InstallSnapshot(meta) = &msg.body else {
                return Err("send_snapshot needs an InstallSnapshot message".into());
            };
            if meta.index != 0 {
                return Err("raftd does not transfer state-machine snapshots yet".into());
            }
            // The bootstrap snapshot of a joining node carries no data.
            net.send_snapshot(msg, Arc::new(Bytes::new()))
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }

    fn add_peer(&self, id: NodeId) {
        match self.book.get(id) {
            Some(addr) => {
                if let Err(e) = self.net.add_peer(id, addr) {
                    tracing::warn!(peer = id, %e, "cannot add peer");
                }
            }
            None => tracing::warn!(peer = id, "no known address for peer"),
        }
    }

    fn remove_peer(&self, id: NodeId) {
        self.net.remove_peer(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{ConfChange, ConfChangeOp, ConfChangeTransition};
    use raft_kv::pb::etcdserverpb::PutRequest;

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
            Op::Put(PutRequest {
                key: peer_key(3),
                value: Bytes::from("http://127.0.0.1:3"),
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
                    payload: Payload::ConfChange {
                        change,
                        membership: Some(membership(&[1, 2], &[3])),
                    },
                },
            ])
            .unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(book.get(3).as_deref(), Some("127.0.0.1:3"));
        let m3 = store.members().into_iter().find(|m| m.id == 3).unwrap();
        assert!(m3.is_learner);
        assert_eq!(m3.peer_urls, ["http://127.0.0.1:3"]);
        assert_eq!(sm.applied_index(), 3);
        // A restart rebuilds the book from the store.
        let book2 = AddressBook::default();
        let _ = KvMachine::new(store, book2.clone(), None);
        assert_eq!(book2.get(3).as_deref(), Some("127.0.0.1:3"));
    }
}
