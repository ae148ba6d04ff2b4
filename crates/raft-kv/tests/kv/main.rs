//! Integration tests of the raft-kv state machine: etcd semantics, replay, snapshots and a
//! model check (one test binary, one module per topic).

mod common;
mod model;
mod mvcc;
mod open;
mod snapshot;
mod txn;
