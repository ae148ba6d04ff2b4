//! Client requests as the etcd services receive them: the first byte picks a request type
//! (Range, Put, DeleteRange, Txn, Compaction, Watch, MemberAdd, Status), the rest is
//! decoded as that protobuf message and, for the KV requests, checked the way the service
//! checks them before proposing (sizes, empty keys, txn op counts, duplicate keys in nested
//! txns); a valid write is then wrapped in a command and encoded as it would be proposed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use raft_kv::pb::etcdserverpb as pb;
use raft_kv::validate::{Limits, validate_command, validate_range, validate_txn};
use raft_kv::{Command, Op};

fn check(op: Op) {
    let cmd = Command::new(1, op);
    if validate_command(&cmd, &Limits::default()).is_ok() {
        let encoded = cmd.encode();
        let back = Command::decode(&encoded).expect("a valid command decodes");
        assert_eq!(back.encode(), encoded, "encoding is stable");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 8 {
        0 => {
            if let Ok(r) = pb::RangeRequest::decode(body) {
                let _ = validate_range(&r);
            }
        }
        1 => {
            if let Ok(r) = pb::PutRequest::decode(body) {
                check(Op::Put(r));
            }
        }
        2 => {
            if let Ok(r) = pb::DeleteRangeRequest::decode(body) {
                check(Op::DeleteRange(r));
            }
        }
        3 => {
            if let Ok(r) = pb::TxnRequest::decode(body) {
                let _ = validate_txn(&r, &Limits::default());
                let _ = raft_kv::validate::txn_is_read_only(&r);
                check(Op::Txn(r));
            }
        }
        4 => {
            if let Ok(r) = pb::CompactionRequest::decode(body) {
                check(Op::Compact(r));
            }
        }
        5 => {
            let _ = pb::WatchRequest::decode(body);
        }
        6 => {
            let _ = pb::MemberAddRequest::decode(body);
        }
        _ => {
            let _ = pb::StatusRequest::decode(body);
        }
    }
});
