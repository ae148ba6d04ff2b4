//! The crate's error type: one enum for every failure the log reports.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the write-ahead log.
///
/// The type is `Clone` (I/O errors are shared through an `Arc`) so that one failed `fsync`
/// can be handed to every ticket that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An operation on the file system failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"write"`, `"fsync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A record that fails its checks is followed by valid records: the log was damaged in
    /// the middle. The log refuses to open rather than drop acknowledged entries.
    #[error("corrupt write-ahead log: {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file holding the bad record.
        path: PathBuf,
        /// Byte offset of the bad record within that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The writer stopped after a failed write or `fsync` (fail-stop: Linux may have dropped
    /// the dirty pages, so the write is never retried). Every later operation fails too; the
    /// log must be reopened, which recovers exactly what reached the disk.
    #[error("write-ahead log writer stopped: {0}")]
    WriterFailed(Arc<Error>),
    /// The writer thread panicked (a bug); the log must be reopened.
    #[error("write-ahead log writer thread panicked")]
    WriterPanicked,
    /// The log was closed.
    #[error("write-ahead log is closed")]
    Closed,
    /// Appended entries do not continue the log (`expected` is the highest index the next
    /// entry may have; it may also overwrite any index after the compacted prefix).
    #[error("entry index {got} does not continue the log (next index is {expected})")]
    NotContiguous {
        /// The highest index the entry may have.
        expected: u64,
        /// The index it had.
        got: u64,
    },
    /// The index lies in the compacted prefix.
    #[error("log index {0} is compacted")]
    Compacted(u64),
    /// The index lies past the last entry.
    #[error("log index {0} is not available")]
    Unavailable(u64),
    /// A setting is out of range.
    #[error("invalid write-ahead log settings: {0}")]
    InvalidSettings(String),
    /// [`crate::Wal::bootstrap`] was called on a log that already holds state.
    #[error("the write-ahead log is not empty")]
    NotEmpty,
    /// A record is larger than the format allows.
    #[error("record of {0} bytes exceeds the maximum record size")]
    RecordTooLarge(usize),
    /// A request's records add up to more than one batch may address
    /// ([`crate::format::MAX_REQUEST_BYTES`]); nothing was queued. Split it.
    #[error("a write of {bytes} bytes of records exceeds the {max}-byte limit of one request")]
    RequestTooLarge {
        /// Bytes the request's records would take.
        bytes: u64,
        /// The limit.
        max: usize,
    },
    /// [`crate::Wal::read_segment`] was asked for a segment that is not on disk.
    #[error("WAL segment {0} is not on disk")]
    NoSuchSegment(u64),
    /// Archived segments cannot give what was asked (damaged, or entries missing).
    #[error("WAL archive: {0}")]
    Archive(String),
}

impl Error {
    /// Wraps an I/O error with the operation and path it came from.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for raft_core::StorageError {
    fn from(e: Error) -> Self {
        match e {
            Error::Compacted(i) => raft_core::StorageError::Compacted(i),
            Error::Unavailable(i) => raft_core::StorageError::Unavailable(i),
            other => raft_core::StorageError::Failed(Box::new(other)),
        }
    }
}
