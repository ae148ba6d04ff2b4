//! Integration tests of the raft-kv state machine: etcd semantics, history, replay,
//! snapshots, events, the internal key space and a model check (one test binary, one module
//! per topic).

mod common;
mod concurrency;
mod events;
mod internal;
mod model;
mod mvcc;
mod open;
mod snapshot;
mod txn;
