//! Protocol scenarios: small in-memory clusters driven through `RawNode`/`Ready`.

mod harness;

mod chaos;
mod elections;
mod membership;
mod reads;
mod replication;
mod review;
mod snapshots;
mod stale_configs;
mod transfer;
mod tuning;
