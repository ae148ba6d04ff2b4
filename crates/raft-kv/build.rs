//! Generates the etcd v3 API types from `proto/etcd/` and raft-kv's log-entry command from
//! `proto/kvcmd.proto` with protox (pure Rust: no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/etcd/kv.proto",
        "proto/etcd/rpc.proto",
        "proto/etcd/auth.proto",
        "proto/etcd/rpc_auth.proto",
        "proto/etcd/watch.proto",
        "proto/etcd/lease.proto",
        "proto/etcd/v3lock.proto",
        "proto/etcd/v3election.proto",
        "proto/kvcmd.proto",
        "proto/kvlease.proto",
        "proto/kvauth.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto/etcd", "proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
