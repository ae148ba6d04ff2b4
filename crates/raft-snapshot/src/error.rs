//! The crate's single error type and `Result` alias.

use crate::info::SnapshotId;
use std::path::PathBuf;

/// Everything that can go wrong in `raft-snapshot`.
///
/// Bad input (a corrupted file, a damaged chunk, a manifest that does not parse) is always
/// reported as a typed error that names what was wrong and where; it never panics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file (or bundle, or chunk) failed verification.
    #[error("corrupt snapshot data in {what} at byte offset {offset}: {reason}")]
    Corrupt {
        /// Which file, bundle or chunk.
        what: String,
        /// Byte offset where the damage was found.
        offset: u64,
        /// What did not match.
        reason: String,
    },
    /// The chain manifest could not be read or parsed.
    #[error("invalid manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// No snapshot with this id is known.
    #[error("unknown snapshot {0}")]
    UnknownSnapshot(SnapshotId),
    /// The request does not make sense (e.g. a delta without a parent, unsorted keys).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A transfer chunk arrived at an offset that does not continue the received data.
    #[error("chunk at offset {offset} does not continue the {received} bytes received")]
    ChunkGap {
        /// Offset of the chunk.
        offset: u64,
        /// Bytes verified and stored so far.
        received: u64,
    },
    /// The state machine (a `SnapshotSource` or `RestoreSink`) reported a failure.
    #[error("state machine error: {0}")]
    StateMachine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The object store failed.
    #[error("object store error on {name}: {reason}")]
    ObjectStore {
        /// The blob involved.
        name: String,
        /// What failed.
        reason: String,
    },
    /// Fault injection: the store stopped at a configured step, as if the process died.
    #[error("injected crash at step {0}")]
    InjectedCrash(u32),
    /// The background uploader has shut down.
    #[error("uploader is shut down")]
    UploaderStopped,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Corruption found in `what` at `offset`.
    pub fn corrupt(what: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Wraps a state machine's own error.
    pub fn state_machine(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::StateMachine(e.into())
    }
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error to [`Error::Io`] on `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
