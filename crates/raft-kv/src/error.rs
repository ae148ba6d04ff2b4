//! The crate's error type: storage failures, undecodable commands and snapshot records, and
//! the etcd request errors (with etcd's exact messages and gRPC codes).

/// Everything that can go wrong in raft-kv.
///
/// Two families share this enum. *Request errors* ([`Error::is_request_error`]) are answers
/// to a client: a committed command that is refused still advances the applied index, and its
/// [`ApplyResult`](crate::ApplyResult) carries the error. Every other variant is a failure of
/// the node itself (storage, corruption) and stops the apply call that met it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sled database failed.
    #[error("raft-kv: storage: {0}")]
    Storage(#[from] sled::Error),
    /// Data read back from sled is not in the expected format.
    #[error("raft-kv: corrupt state: {0}")]
    Corrupt(String),
    /// A log entry's data is empty where a command was expected.
    #[error("raft-kv: empty command")]
    EmptyCommand,
    /// A log entry's data starts with a command format version this build does not know.
    #[error("raft-kv: unsupported command format version {0}")]
    UnsupportedCommandVersion(u8),
    /// A log entry's data is not a valid encoded command.
    #[error("raft-kv: malformed command: {0}")]
    MalformedCommand(#[from] prost::DecodeError),
    /// A decoded command carries no operation.
    #[error("raft-kv: command carries no operation")]
    MissingOp,
    /// A snapshot record cannot be restored (unknown key space, bad value).
    #[error("raft-kv: bad snapshot record: {0}")]
    BadSnapshotRecord(String),
    /// A restore from a snapshot was started and not finished: the state is unusable until a
    /// restore completes.
    #[error("raft-kv: an interrupted snapshot restore left the state incomplete; restore again")]
    RestoreIncomplete,
    /// Writing an applied batch failed (a full disk, an I/O error): the store may hold part
    /// of it and refuses every read and write until the process restarts.
    #[error("raft-kv: the store failed to write an applied batch; this member is stopping")]
    StoreFailed,
    /// A snapshot capture is already running (one at a time), or a restore met a capture.
    #[error("raft-kv: a snapshot capture is already in progress")]
    CaptureInProgress,
    /// A delta was asked for relative to a snapshot that is not the last durable one.
    #[error(
        "raft-kv: delta requested since index {requested}, but the last durable snapshot is at {durable}"
    )]
    DeltaBaseMismatch {
        /// The index asked for.
        requested: u64,
        /// The index deltas are tracked from.
        durable: u64,
    },
    /// A txn that may write was offered to the read-only path.
    #[error("raft-kv: txn is not read-only")]
    NotReadOnly,
    /// `capture_durable` named an index that is not the latest capture's.
    #[error("raft-kv: no pending snapshot capture at index {0}")]
    UnknownCapture(u64),
    /// The revision asked for is older than the store can serve.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for is newer than the store's revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put with `ignore_value` or `ignore_lease` named a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A request named a lease that does not exist (or no longer does).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// `LeaseGrant` with the id of a lease that exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// `LeaseGrant` with a TTL above [`MAX_LEASE_TTL`](crate::lease::MAX_LEASE_TTL).
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A request has an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A txn writes the same key twice in one branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A txn has more operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A put with `ignore_value` also carries a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A put with `ignore_lease` also carries a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A request is larger than the request size limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A Range would answer more key and value bytes than the node's limit.
    #[error(
        "etcdserver: range response would exceed the limit of {limit} bytes; ask with a \
         limit or for a smaller range"
    )]
    RangeTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A member id is not in the member list.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A `Maintenance.Snapshot` file is damaged, truncated or not one (`crate::export`).
    #[error("raft-kv: bad snapshot file: {0}")]
    BadSnapshotFile(String),
    /// The space quota is used up (etcd's NOSPACE alarm is active): writes that add data
    /// are refused until the alarm is disarmed.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is active (a corruption check found members whose state differs):
    /// writes, compactions and lease grants and revokes are refused until it is disarmed,
    /// as etcd's corrupt applier does.
    #[error("etcdserver: corrupt cluster")]
    CorruptCluster,
    /// An authentication or permission error (etcd's messages and codes, see
    /// [`AuthError`](crate::auth::AuthError)).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The snapshot store (`raft-snapshot`) failed: I/O, a damaged file, a bad chain.
    #[error("raft-kv: snapshot store: {0}")]
    SnapshotStore(#[from] raft_snapshot::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True for answers to a client request (the etcd errors); false for node failures.
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            Error::Compacted
                | Error::FutureRevision
                | Error::KeyNotFound
                | Error::LeaseNotFound
                | Error::LeaseExists
                | Error::LeaseTtlTooLarge
                | Error::EmptyKey
                | Error::DuplicateKey
                | Error::TooManyOps
                | Error::ValueProvided
                | Error::LeaseProvided
                | Error::RequestTooLarge
                | Error::RangeTooLarge { .. }
                | Error::MemberNotFound
                | Error::NoSpace
                | Error::CorruptCluster
                | Error::Auth(_)
        )
    }

    /// The gRPC status code etcd answers this error with.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Compacted | Error::FutureRevision | Error::LeaseTtlTooLarge => {
                tonic::Code::OutOfRange
            }
            Error::LeaseExists => tonic::Code::FailedPrecondition,
            Error::KeyNotFound
            | Error::EmptyKey
            | Error::DuplicateKey
            | Error::TooManyOps
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::RequestTooLarge
            | Error::EmptyCommand
            | Error::UnsupportedCommandVersion(_)
            | Error::MalformedCommand(_)
            | Error::MissingOp => tonic::Code::InvalidArgument,
            Error::LeaseNotFound | Error::MemberNotFound => tonic::Code::NotFound,
            Error::RangeTooLarge { .. } | Error::NoSpace => tonic::Code::ResourceExhausted,
            Error::CorruptCluster => tonic::Code::DataLoss,
            Error::Auth(e) => e.code(),
            Error::RestoreIncomplete | Error::StoreFailed | Error::CaptureInProgress => {
                tonic::Code::Unavailable
            }
            Error::NotReadOnly => tonic::Code::InvalidArgument,
            Error::DeltaBaseMismatch { .. } => tonic::Code::FailedPrecondition,
            Error::Storage(_)
            | Error::Corrupt(_)
            | Error::BadSnapshotRecord(_)
            | Error::BadSnapshotFile(_)
            | Error::UnknownCapture(_)
            | Error::SnapshotStore(_) => tonic::Code::Internal,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt(what.into())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_messages_and_codes() {
        let s: tonic::Status = Error::Compacted.into();
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(
            Error::FutureRevision.to_string(),
            "etcdserver: mvcc: required revision is a future revision"
        );
        assert_eq!(Error::KeyNotFound.to_string(), "etcdserver: key not found");
        assert!(Error::KeyNotFound.is_request_error());
        let s: tonic::Status = Error::LeaseExists.into();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.message(), "etcdserver: lease already exists");
        let s: tonic::Status = Error::LeaseTtlTooLarge.into();
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: too large lease TTL");
        let s: tonic::Status = Error::LeaseNotFound.into();
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        assert!(!Error::corrupt("x").is_request_error());
        let s: tonic::Status = Error::CorruptCluster.into();
        assert_eq!(s.code(), tonic::Code::DataLoss);
        assert_eq!(s.message(), "etcdserver: corrupt cluster");
        assert!(Error::CorruptCluster.is_request_error());
    }
}
