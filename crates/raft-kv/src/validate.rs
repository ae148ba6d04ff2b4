//! Checks the gRPC service makes before proposing a request (as etcd does before its
//! proposal): sizes, empty keys, txn op counts and duplicate keys in a txn branch.
//!
//! Apply repeats the checks that depend on the state (and the cheap static ones), so a
//! request that skips validation is still applied deterministically.

pub use crate::command::txn_is_read_only;
use crate::command::{Command, Op};
use crate::error::{Error, Result};
use crate::layout::KeyRange;
use crate::pb::etcdserverpb::{PutRequest, RangeRequest, TxnRequest, request_op};

/// Request limits (etcd's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded command, in bytes (etcd: `--max-request-bytes`, 1.5 MiB).
    pub max_request_bytes: usize,
    /// Most operations in one txn branch (etcd: `--max-txn-ops`, 128).
    pub max_txn_ops: usize,
    /// Most key and value bytes one Range may answer (etcd has no such limit: unlimited
    /// by default; raftd sets `limits.max_range_response_bytes`).
    pub max_range_bytes: usize,
}

/// etcd's default space quota (`--quota-backend-bytes` 0): 2 GiB. See
/// [`EtcdService::with_space_quota`](crate::service::EtcdService::with_space_quota).
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            max_range_bytes: usize::MAX,
        }
    }
}

/// Whether a txn holds a put in any branch (nested txns included): what etcd's capped
/// applier refuses under the NOSPACE alarm (a txn that only reads or deletes goes on).
pub fn txn_puts(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(inner)) => txn_puts(inner),
            _ => false,
        })
}

/// Validates a command before it is proposed.
pub fn validate_command(cmd: &Command, limits: &Limits) -> Result<()> {
    if cmd.encoded_len() > limits.max_request_bytes {
        return Err(Error::RequestTooLarge);
    }
    match &cmd.op {
        Op::Put(p) => validate_put(p),
        Op::DeleteRange(d) => {
            if d.key.is_empty() {
                Err(Error::EmptyKey)
            } else {
                Ok(())
            }
        }
        Op::Txn(t) => validate_txn(t, limits),
        Op::Compact(_)
        | Op::PublishMember(_)
        | Op::SetPeerUrls(_)
        | Op::LeaseGrant(_)
        | Op::LeaseRevoke(_)
        | Op::LeaseCheckpoint(_)
        | Op::Alarm(_)
        | Op::Auth(_) => Ok(()),
    }
}

/// Validates a range request (only that a key is given).
pub fn validate_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

fn validate_put(p: &PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// Validates a txn: op counts, each op, and no key written twice in one branch (a put
/// inside a delete range, two puts of a key, including those of nested txns).
pub fn validate_txn(t: &TxnRequest, limits: &Limits) -> Result<()> {
    if t.compare.len() > limits.max_txn_ops
        || t.success.len() > limits.max_txn_ops
        || t.failure.len() > limits.max_txn_ops
    {
        return Err(Error::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for branch in [&t.success, &t.failure] {
        let mut puts: Vec<&[u8]> = Vec::new();
        let mut dels: Vec<KeyRange> = Vec::new();
        for op in branch {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => validate_range(r)?,
                Some(request_op::Request::RequestPut(p)) => {
                    validate_put(p)?;
                    puts.push(&p.key);
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    if d.key.is_empty() {
                        return Err(Error::EmptyKey);
                    }
                    dels.push(KeyRange::new(&d.key, &d.range_end));
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    validate_txn(inner, limits)?;
                    collect_puts(inner, &mut puts);
                }
                None => {}
            }
        }
        puts.sort_unstable();
        if puts.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::DuplicateKey);
        }
        if puts.iter().any(|k| dels.iter().any(|d| d.contains(k))) {
            return Err(Error::DuplicateKey);
        }
    }
    Ok(())
}

/// Every put key of a txn, over both branches and nested txns (only one branch runs, so
/// keys repeated across its own branches are fine; they are deduplicated here).
fn collect_puts<'a>(t: &'a TxnRequest, out: &mut Vec<&'a [u8]>) {
    let mut mine: Vec<&[u8]> = Vec::new();
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => mine.push(&p.key),
            Some(request_op::Request::RequestTxn(inner)) => collect_puts(inner, &mut mine),
            _ => {}
        }
    }
    mine.sort_unstable();
    mine.dedup();
    out.extend(mine);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{DeleteRangeRequest, RequestOp};
    use prost::bytes::Bytes;

    fn put(k: &'static [u8]) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: Bytes::from_static(k),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_checks() {
        let l = Limits::default();
        let ok = TxnRequest {
            success: vec![put(b"a"), put(b"b")],
            failure: vec![put(b"a")],
            ..Default::default()
        };
        assert!(validate_txn(&ok, &l).is_ok());
        let dup = TxnRequest {
            success: vec![put(b"a"), put(b"a")],
            ..Default::default()
        };
        assert!(matches!(validate_txn(&dup, &l), Err(Error::DuplicateKey)));
        let in_del = TxnRequest {
            success: vec![
                put(b"ab"),
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: Bytes::from_static(b"a"),
                            range_end: Bytes::from_static(b"b"),
                            prev_kv: false,
                        },
                    )),
                },
            ],
            ..Default::default()
        };
        assert!(matches!(
            validate_txn(&in_del, &l),
            Err(Error::DuplicateKey)
        ));
        let nested = TxnRequest {
            success: vec![
                put(b"x"),
                RequestOp {
                    request: Some(request_op::Request::RequestTxn(TxnRequest {
                        success: vec![put(b"x")],
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        };
        assert!(matches!(
            validate_txn(&nested, &l),
            Err(Error::DuplicateKey)
        ));
        let many = TxnRequest {
            success: (0..129).map(|_| RequestOp::default()).collect(),
            ..Default::default()
        };
        assert!(matches!(validate_txn(&many, &l), Err(Error::TooManyOps)));
        assert!(!txn_is_read_only(&ok));
        assert!(txn_is_read_only(&TxnRequest::default()));
    }

    #[test]
    fn command_checks() {
        let l = Limits::default();
        let big = Command::new(
            1,
            Op::Put(PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![0u8; 2 << 20]),
                ..Default::default()
            }),
        );
        assert!(matches!(
            validate_command(&big, &l),
            Err(Error::RequestTooLarge)
        ));
        let empty = Command::new(1, Op::Put(PutRequest::default()));
        assert!(matches!(validate_command(&empty, &l), Err(Error::EmptyKey)));
        let iv = Command::new(
            1,
            Op::Put(PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ignore_value: true,
                ..Default::default()
            }),
        );
        assert!(matches!(
            validate_command(&iv, &l),
            Err(Error::ValueProvided)
        ));
    }
}
