//! Snapshot transfers as a server receives them: any bytes decoded as a `SnapshotChunk` and
//! opened at its own and at offset 0 (offset, size, CRC32C and decompression checks), its
//! metadata converted; any bytes decoded as a `SnapshotProbe` and its metadata converted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use raft_net::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = wire::SnapshotChunk::decode(data) {
        for offset in [chunk.offset, 0] {
            if let Ok(bytes) = wire::open_chunk(&chunk, offset) {
                assert!(bytes.len() <= raft_net::SNAPSHOT_CHUNK_SIZE + 4096);
            }
        }
        if let Some(meta) = chunk.meta {
            let _ = wire::meta_from_pb(meta);
        }
    }
    if let Ok(probe) = wire::SnapshotProbe::decode(data)
        && let Some(meta) = probe.meta
    {
        let _ = wire::meta_from_pb(meta);
    }
});
