//! `raftd`: a node of a replicated key-value store serving the etcd v3 API.

use clap::Parser;

/// raftd: a replicated key-value node speaking the etcd v3 gRPC API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "raftd cannot serve yet: the runtime, the KV state machine and the node wiring \
         arrive with the raft-runtime/raft-kv/raftd issue"
    )
}
