//! Upload throughput to an S3-compatible server: the in-process s3s-fs server of the tests
//! on loopback, `CloudStore` through the `object_store` crate, single PUTs and multipart.
//!
//! `cargo run --release -p raft-snapshot --example upload_bench -- [MiB] [part MiB]`
//! (default 256 MiB in 16 MiB parts) prints MiB/s of one object uploaded and read back.
#![allow(clippy::print_stdout, missing_docs)]

#[path = "../tests/support/s3_server.rs"]
mod s3_server;

use std::time::Instant;

fn main() -> raft_snapshot::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let part: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let server = s3_server::S3Server::start();
    let mut config = server.config("bench");
    config.part_size = part << 20;
    let store = raft_snapshot::open_object_store(&config)?;
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 31 % 251) as u8).collect();
    let t = Instant::now();
    let n = store.put("bench/object", &mut data.as_slice())?;
    let up = t.elapsed();
    let t = Instant::now();
    let mut back = Vec::with_capacity(data.len());
    store.get("bench/object", &mut back)?;
    let down = t.elapsed();
    assert_eq!(back, data, "read back what was written");
    println!(
        "{mib} MiB in {part} MiB parts: upload {:.1} MiB/s ({n} bytes in {up:?}), download {:.1} MiB/s",
        mib as f64 / up.as_secs_f64(),
        mib as f64 / down.as_secs_f64()
    );
    Ok(())
}
