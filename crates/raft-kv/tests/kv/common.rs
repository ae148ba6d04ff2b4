//! Helpers shared by the integration tests: request builders and a store that numbers the
//! entries it applies.

use prost::bytes::Bytes;
use raft_kv::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    request_op,
};
use raft_kv::pb::mvccpb::KeyValue;
use raft_kv::{Command, KvStore, Op, Outcome, Response};

/// A store plus the next log index to apply at.
pub struct Harness {
    pub store: KvStore,
    pub next_index: u64,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            store: KvStore::open_temporary().unwrap(),
            next_index: 1,
        }
    }

    pub fn with(store: KvStore) -> Self {
        let next_index = store.applied_index() + 1;
        Harness { store, next_index }
    }

    /// Applies `op` at the next index; returns the outcome.
    pub fn apply(&mut self, op: Op) -> Outcome {
        let i = self.next_index;
        self.next_index += 1;
        let r = self.store.apply(i, 1, &Command::new(i, op)).unwrap();
        assert_eq!(r.index, i);
        assert_eq!(r.request_id, i);
        r.outcome
    }

    /// Applies `op` and unwraps a successful response.
    pub fn ok(&mut self, op: Op) -> Response {
        match self.apply(op) {
            Outcome::Response(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    pub fn put(&mut self, k: &str, v: &str) -> Response {
        self.ok(put_op(k, v))
    }

    pub fn del(&mut self, k: &str, end: &str) -> Response {
        self.ok(Op::DeleteRange(del_req(k, end, false)))
    }

    pub fn get(&self, k: &str) -> Option<KeyValue> {
        self.store.get(k.as_bytes()).unwrap()
    }

    pub fn range(&self, k: &str, end: &str) -> Vec<(String, String)> {
        let r = self.store.range(&range_req(k, end)).unwrap();
        r.kvs.iter().map(|kv| (s(&kv.key), s(&kv.value))).collect()
    }
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn b(x: &str) -> Bytes {
    Bytes::copy_from_slice(x.as_bytes())
}

pub fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    }
}

pub fn put_op(k: &str, v: &str) -> Op {
    Op::Put(put_req(k, v))
}

pub fn del_req(k: &str, end: &str, prev_kv: bool) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: b(k),
        range_end: b(end),
        prev_kv,
    }
}

pub fn range_req(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: b(k),
        range_end: b(end),
        ..Default::default()
    }
}

pub fn rput(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(k, v))),
    }
}

pub fn rdel(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(del_req(
            k, end, true,
        ))),
    }
}

pub fn rget(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_req(k, end))),
    }
}

pub fn rtxn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(t)),
    }
}

/// A compare of `target` on `key` (`range_end` empty).
pub fn cmp(key: &str, result: compare::CompareResult, union: compare::TargetUnion) -> Compare {
    use compare::{CompareTarget, TargetUnion};
    let target = match union {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: b(key),
        target_union: Some(union),
        range_end: Bytes::new(),
    }
}

pub fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

/// The header revision of a top-level response.
pub fn rev_of(r: &Response) -> i64 {
    let h = match r {
        Response::Put(p) => p.header.as_ref(),
        Response::DeleteRange(d) => d.header.as_ref(),
        Response::Txn(t) => t.header.as_ref(),
        Response::Compact(c) => c.header.as_ref(),
        Response::LeaseGrant(g) => g.header.as_ref(),
        Response::LeaseRevoke(r) => r.header.as_ref(),
        Response::LeaseCheckpoint(c) => c.header.as_ref(),
        Response::Alarm(a) => a.header.as_ref(),
        Response::Members(_) | Response::Auth(_) => None,
    };
    h.expect("header").revision
}
