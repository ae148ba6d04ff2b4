//! Generates the etcd v3 API types from `proto/etcd/` with protox (pure Rust: no system
//! `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "proto/etcd";
    let files = [format!("{dir}/kv.proto"), format!("{dir}/rpc.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, [dir])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
