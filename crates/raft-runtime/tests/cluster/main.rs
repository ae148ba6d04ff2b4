//! A 3-node cluster in one process: in-memory channel transport with switchable links, an
//! in-memory KV state machine, real write-ahead logs on temporary directories.

mod harness;
mod scenarios;
