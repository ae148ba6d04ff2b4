//! Generates the peer protocol's Rust types from `proto/peer.proto` with protox (pure Rust:
//! no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "proto";
    let file = format!("{dir}/peer.proto");
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file.as_str()], [dir])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
