//! What apply tells a watch hub: the events of every revision it wrote, in revision order.
//!
//! A hub registers an [`EventSink`] with [`KvStore::set_event_sink`]; apply then builds the
//! events of each batch (nothing is built while no sink is set) and hands them over once
//! the batch is written, from the apply thread, so batches arrive in revision order. The
//! values are `Bytes` shared with the store's own copies: a hub can fan them out to many
//! watchers without copying them. [`KvStore::events`] reads the same events back from the
//! history, for a watch that starts at an older revision.
//!
//! [`KvStore::set_event_sink`]: crate::KvStore::set_event_sink
//! [`KvStore::events`]: crate::KvStore::events

use crate::pb::mvccpb::Event;

/// The events of one revision (one write transaction), in the order of its writes.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionEvents {
    /// The store revision the transaction created.
    pub revision: i64,
    /// etcd's events: a `PUT` carries the new version and, when the key existed, the one it
    /// replaced (`prev_kv`); a `DELETE` carries the key with `mod_revision` set to the
    /// deleting revision, and the deleted version as `prev_kv`.
    pub events: Vec<Event>,
}

/// Receives the events of every applied batch (see the module documentation).
pub trait EventSink: Send + Sync + 'static {
    /// The revisions one applied batch created, oldest first. Called on the apply thread
    /// after the batch is written: keep it short (hand the events to another task).
    fn publish(&self, revisions: Vec<RevisionEvents>);
}
