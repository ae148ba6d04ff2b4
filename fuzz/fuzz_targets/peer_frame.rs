//! Peer frames as a server receives them: any bytes decoded as a `raftpeer.v1.Frame` (and as
//! a `MessageBatch`), then opened the way the server opens them (decompression bounded by
//! the limit, every message converted and checked against the header). Bad input must be
//! an error, never a panic, a hang or an allocation beyond the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use raft_net::wire;

/// The largest decompressed frame the target allows (the transport's default is 64 MiB;
/// a smaller one keeps runs fast and still exercises the bound).
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = wire::Frame::decode(data) {
        if let Ok(msgs) = wire::open_frame(frame, LIMIT) {
            for m in msgs {
                assert_ne!(m.from, 0, "sender 0 must be refused");
            }
        }
    }
    let _ = wire::MessageBatch::decode(data);
});
