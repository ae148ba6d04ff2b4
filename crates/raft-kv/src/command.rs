//! The command carried by a Raft log entry: a versioned envelope around one client write
//! (etcd's own request messages) or a member's published attributes, plus a request id.
//!
//! Wire format (see `proto/kvcmd.proto`): one version byte ([`COMMAND_FORMAT_V1`]) and then
//! a prost-encoded `kvcmd.KvCommand`. Decoding never panics: every malformed input is a typed
//! [`Error`].

use crate::error::{Error, Result};
use crate::pb::etcdserverpb::{
    AlarmRequest, CompactionRequest, DeleteRangeRequest, LeaseCheckpointRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, TxnRequest, request_op,
};
use crate::pb::kvauth::{AuthCommand, Caller};
use crate::pb::kvcmd::{KvCommand, MemberAttributes, MemberPeerUrls, kv_command};
use prost::Message;
use prost::bytes::Bytes;

/// The first byte of an encoded command in the current format.
pub const COMMAND_FORMAT_V1: u8 = 1;

/// One write to apply, as proposed to Raft.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Chosen by the proposer to find its waiting request when the entry is applied; 0 for
    /// none. The state machine only echoes it back in the [`ApplyResult`](crate::ApplyResult).
    pub request_id: u64,
    /// What to do.
    pub op: Op,
    /// Who asked, and the auth revision the permissions were checked at (client commands
    /// only; see `crate::auth`). Apply refuses the command when the auth state moved on.
    pub caller: Option<Caller>,
}

/// The operation of a [`Command`].
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `KV.Put`.
    Put(PutRequest),
    /// `KV.DeleteRange`.
    DeleteRange(DeleteRangeRequest),
    /// `KV.Txn` (compares, then the success or failure ops, possibly nested txns).
    Txn(TxnRequest),
    /// `KV.Compact`: moves the compact revision.
    Compact(CompactionRequest),
    /// A member publishes its name and client URLs (kept in the member list).
    PublishMember(MemberAttributes),
    /// A member's peer URLs (kept in the internal space, and in the member list once the
    /// member is in it): written before the configuration change that adds a member.
    SetPeerUrls(MemberPeerUrls),
    /// `Lease.LeaseGrant` (the id is chosen before proposing, so every replica grants the
    /// same lease).
    LeaseGrant(LeaseGrantRequest),
    /// `Lease.LeaseRevoke`, from a client or from the leader when a lease expired: deletes
    /// the lease and every key attached to it, at one revision.
    LeaseRevoke(LeaseRevokeRequest),
    /// The leader's checkpoint of remaining TTLs (etcd's lease checkpointing).
    LeaseCheckpoint(LeaseCheckpointRequest),
    /// `Maintenance.Alarm` ACTIVATE or DEACTIVATE: raises or disarms an alarm (kept in the
    /// internal space), so every member refuses or accepts writes from the same entry on.
    Alarm(AlarmRequest),
    /// A change of the authentication state: users, roles, the enabled flag, tokens
    /// (`crate::auth`; passwords arrive hashed).
    Auth(AuthCommand),
}

impl Command {
    /// A command with the given request id.
    pub fn new(request_id: u64, op: Op) -> Self {
        Command {
            request_id,
            op,
            caller: None,
        }
    }

    /// The command with `caller` as its caller.
    pub fn with_caller(mut self, caller: Option<Caller>) -> Self {
        self.caller = caller;
        self
    }

    /// True when applying the command may change keys (everything except a txn whose every
    /// branch only reads, and member updates).
    pub fn writes_keys(&self) -> bool {
        match &self.op {
            Op::Put(_) | Op::DeleteRange(_) | Op::LeaseRevoke(_) => true,
            Op::Txn(t) => !txn_is_read_only(t),
            Op::Compact(_)
            | Op::PublishMember(_)
            | Op::SetPeerUrls(_)
            | Op::LeaseGrant(_)
            | Op::LeaseCheckpoint(_)
            | Op::Alarm(_)
            | Op::Auth(_) => false,
        }
    }

    /// The encoded size in bytes (what [`encode`](Self::encode) returns).
    pub fn encoded_len(&self) -> usize {
        use prost::encoding::{message, uint64};
        let id = if self.request_id != 0 {
            uint64::encoded_len(1, &self.request_id)
        } else {
            0
        };
        let op = match &self.op {
            Op::Put(m) => message::encoded_len(2, m),
            Op::DeleteRange(m) => message::encoded_len(3, m),
            Op::Txn(m) => message::encoded_len(4, m),
            Op::Compact(m) => message::encoded_len(5, m),
            Op::PublishMember(m) => message::encoded_len(6, m),
            Op::SetPeerUrls(m) => message::encoded_len(7, m),
            Op::LeaseGrant(m) => message::encoded_len(8, m),
            Op::LeaseRevoke(m) => message::encoded_len(9, m),
            Op::LeaseCheckpoint(m) => message::encoded_len(10, m),
            Op::Alarm(m) => message::encoded_len(20, m),
            Op::Auth(m) => message::encoded_len(22, m),
        };
        let caller = self
            .caller
            .as_ref()
            .map_or(0, |c| message::encoded_len(21, c));
        1 + id + op + caller
    }

    /// Encodes the command for a log entry (no copy of the request beyond the encoding).
    pub fn encode(&self) -> Bytes {
        use prost::encoding::{message, uint64};
        let mut buf = Vec::with_capacity(self.encoded_len());
        buf.push(COMMAND_FORMAT_V1);
        if self.request_id != 0 {
            uint64::encode(1, &self.request_id, &mut buf);
        }
        match &self.op {
            Op::Put(m) => message::encode(2, m, &mut buf),
            Op::DeleteRange(m) => message::encode(3, m, &mut buf),
            Op::Txn(m) => message::encode(4, m, &mut buf),
            Op::Compact(m) => message::encode(5, m, &mut buf),
            Op::PublishMember(m) => message::encode(6, m, &mut buf),
            Op::SetPeerUrls(m) => message::encode(7, m, &mut buf),
            Op::LeaseGrant(m) => message::encode(8, m, &mut buf),
            Op::LeaseRevoke(m) => message::encode(9, m, &mut buf),
            Op::LeaseCheckpoint(m) => message::encode(10, m, &mut buf),
            Op::Alarm(m) => message::encode(20, m, &mut buf),
            Op::Auth(m) => message::encode(22, m, &mut buf),
        }
        if let Some(c) = &self.caller {
            message::encode(21, c, &mut buf);
        }
        Bytes::from(buf)
    }

    /// Decodes a log entry's data.
    ///
    /// Errors: [`Error::EmptyCommand`], [`Error::UnsupportedCommandVersion`],
    /// [`Error::MalformedCommand`], [`Error::MissingOp`].
    pub fn decode(data: &[u8]) -> Result<Self> {
        let (&version, rest) = data.split_first().ok_or(Error::EmptyCommand)?;
        if version != COMMAND_FORMAT_V1 {
            return Err(Error::UnsupportedCommandVersion(version));
        }
        let msg = KvCommand::decode(rest)?;
        let op = match msg.op.ok_or(Error::MissingOp)? {
            kv_command::Op::Put(m) => Op::Put(m),
            kv_command::Op::DeleteRange(m) => Op::DeleteRange(m),
            kv_command::Op::Txn(m) => Op::Txn(m),
            kv_command::Op::Compact(m) => Op::Compact(m),
            kv_command::Op::PublishMember(m) => Op::PublishMember(m),
            kv_command::Op::SetPeerUrls(m) => Op::SetPeerUrls(m),
            kv_command::Op::LeaseGrant(m) => Op::LeaseGrant(m),
            kv_command::Op::LeaseRevoke(m) => Op::LeaseRevoke(m),
            kv_command::Op::LeaseCheckpoint(m) => Op::LeaseCheckpoint(m),
            kv_command::Op::Alarm(m) => Op::Alarm(m),
            kv_command::Op::Auth(m) => Op::Auth(m),
        };
        Ok(Command {
            request_id: msg.request_id,
            op,
            caller: msg.caller,
        })
    }
}

/// Whether an entry's data is a [`Op::SetPeerUrls`] command, decided from its first bytes
/// (the version byte, an optional request id, then the op's field tag), so an adapter can
/// pick those out of every entry without decoding the others.
pub fn is_set_peer_urls(data: &[u8]) -> bool {
    let Some((&COMMAND_FORMAT_V1, mut rest)) = data.split_first() else {
        return false;
    };
    if rest.first() == Some(&0x08) {
        rest = &rest[1..];
        if prost::encoding::decode_varint(&mut rest).is_err() {
            return false;
        }
    }
    // Field 7, length-delimited.
    rest.first() == Some(&((7 << 3) | 2))
}

/// True when no branch of the txn (nested ones included) writes.
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestPut(_))
            | Some(request_op::Request::RequestDeleteRange(_)) => false,
            Some(request_op::Request::RequestTxn(inner)) => txn_is_read_only(inner),
            Some(request_op::Request::RequestRange(_)) | None => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{Compare, RequestOp, compare, request_op};

    fn samples() -> Vec<Command> {
        let put = PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            prev_kv: true,
            ..Default::default()
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Version as i32,
                key: Bytes::from_static(b"k"),
                target_union: Some(compare::TargetUnion::Version(0)),
                range_end: Bytes::new(),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put.clone())),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest::default())),
            }],
        };
        vec![
            Command::new(7, Op::Put(put)),
            Command::new(
                0,
                Op::DeleteRange(DeleteRangeRequest {
                    key: Bytes::from_static(b"a"),
                    range_end: Bytes::from_static(b"b"),
                    prev_kv: false,
                }),
            ),
            Command::new(u64::MAX, Op::Txn(txn)),
            Command::new(
                3,
                Op::Compact(CompactionRequest {
                    revision: 9,
                    physical: true,
                }),
            ),
            Command::new(
                4,
                Op::PublishMember(MemberAttributes {
                    id: 1,
                    name: "n1".into(),
                    client_urls: vec!["http://a:2379".into()],
                }),
            ),
            Command::new(
                5,
                Op::SetPeerUrls(MemberPeerUrls {
                    id: 2,
                    peer_urls: vec!["http://b:2380".into()],
                }),
            ),
            Command::new(6, Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 77 })),
            Command::new(0, Op::LeaseRevoke(LeaseRevokeRequest { id: 77 })),
            Command::new(
                8,
                Op::LeaseCheckpoint(LeaseCheckpointRequest {
                    checkpoints: vec![crate::pb::etcdserverpb::LeaseCheckpoint {
                        id: 77,
                        remaining_ttl: 4,
                    }],
                }),
            ),
            Command::new(
                9,
                Op::Alarm(AlarmRequest {
                    action: crate::pb::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                    member_id: 3,
                    alarm: crate::pb::etcdserverpb::AlarmType::Nospace as i32,
                }),
            ),
            Command::new(
                10,
                Op::Auth(AuthCommand {
                    op: Some(crate::pb::kvauth::auth_command::Op::UserAdd(
                        crate::pb::kvauth::UserAdd {
                            name: "u".into(),
                            password_hash: Bytes::from_static(b"$2b$04$x"),
                            options: None,
                        },
                    )),
                }),
            )
            .with_caller(Some(Caller {
                user: "root".into(),
                revision: 3,
            })),
            Command::new(0, Op::Put(PutRequest::default())).with_caller(Some(Caller {
                user: String::new(),
                revision: 0,
            })),
        ]
    }

    #[test]
    fn round_trip() {
        for c in samples() {
            let b = c.encode();
            assert_eq!(b.len(), c.encoded_len());
            assert_eq!(b[0], COMMAND_FORMAT_V1);
            assert_eq!(Command::decode(&b).unwrap(), c);
            // The generated envelope reads the same bytes: the hand-written encoder follows
            // the proto's field numbers.
            let env = KvCommand::decode(&b[1..]).unwrap();
            assert_eq!(env.request_id, c.request_id);
        }
    }

    #[test]
    fn peer_url_commands_are_recognised_by_their_first_bytes() {
        let all = samples();
        for c in &all {
            assert_eq!(
                is_set_peer_urls(&c.encode()),
                matches!(c.op, Op::SetPeerUrls(_)),
                "{c:?}"
            );
        }
        assert!(!is_set_peer_urls(&[]));
        assert!(!is_set_peer_urls(&[1, 0x08, 0xff]));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(Command::decode(&[]), Err(Error::EmptyCommand)));
        assert!(matches!(
            Command::decode(&[9, 1, 2]),
            Err(Error::UnsupportedCommandVersion(9))
        ));
        assert!(matches!(Command::decode(&[1]), Err(Error::MissingOp)));
        assert!(matches!(
            Command::decode(&[1, 0xff, 0xff, 0xff]),
            Err(Error::MalformedCommand(_))
        ));
        // Truncations of every valid encoding never panic.
        for c in samples() {
            let b = c.encode();
            for n in 0..b.len() {
                let _ = Command::decode(&b[..n]);
            }
        }
    }

    #[test]
    fn read_only_txn_detection() {
        let ro = Command::new(
            1,
            Op::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestRange(Default::default())),
                }],
                ..Default::default()
            }),
        );
        assert!(!ro.writes_keys());
        assert!(samples()[0].writes_keys());
        assert!(samples()[2].writes_keys());
    }
}
