//! raft-kv's command decoding, as every replica runs it on each committed entry: any bytes
//! (a log entry written by a faulty or hostile leader, or a damaged log) decoded as a
//! `Command`; what decodes is validated and must encode and decode again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft_kv::validate::{Limits, validate_command};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = raft_kv::Command::decode(data) {
        let _ = validate_command(&cmd, &Limits::default());
        let encoded = cmd.encode();
        let back = raft_kv::Command::decode(&encoded).expect("an encoded command decodes");
        assert_eq!(back.encode(), encoded, "encoding is stable");
    }
});
