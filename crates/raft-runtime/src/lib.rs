//! The tokio event loop that drives a `raft-core` node.
//!
//! Responsibility: own a `RawNode`, feed it ticks from a timer and messages from the
//! transport, and carry out each `Ready` exactly by its contract (persist through the log,
//! send through the transport, apply through the state machine off the protocol loop,
//! then advance), batching client proposals so that many share one fsync. It offers the
//! `StateMachine` and `Transport` traits and a `RaftHandle` to callers.
//!
//! May depend on: `raft-core`, `raft-log`, `raft-snapshot`, `raft-metrics` and tokio. Never on
//! a concrete transport or state machine: those are plugged in by the node binary.
#![deny(missing_docs)]
