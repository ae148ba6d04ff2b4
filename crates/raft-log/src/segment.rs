//! Segment files: their names, and the background thread that prepares the next one.
//!
//! A new segment is first prepared under a temporary name (created, zero-filled to the
//! segment size so later `fdatasync`s have no allocation to flush, synced). At roll-over the
//! writer writes the segment header and its first batch into it, syncs, renames it to its
//! final name and syncs the directory, so a segment either exists complete with a valid
//! header or not at all.

use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile};
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of prepared (not yet used) segment files.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The file name of segment `seq` started at `first_index`.
pub(crate) fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name into `(seq, first_index)`.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// An open segment file.
#[derive(Clone)]
pub(crate) struct SegFile {
    /// Where it lives.
    pub path: PathBuf,
    /// The open file, shared with readers.
    pub file: Arc<dyn FsFile>,
}

/// A zero-filled file waiting to become the next segment.
pub(crate) struct Prepared {
    /// Its temporary path.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn FsFile>,
    /// Its preallocated size.
    pub capacity: u64,
}

#[derive(Default)]
struct PrepState {
    ready: Option<Result<Prepared>>,
    /// The thread should prepare a file now.
    wanted: bool,
    /// A file was asked for since the last `take` (being prepared or ready).
    requested: bool,
    shutdown: bool,
}

struct PrepShared {
    state: Mutex<PrepState>,
    cv: Condvar,
}

/// Prepares the next segment file in the background, one ahead of the writer. The writer asks
/// for it once the active segment is half full, so preallocation I/O does not compete with
/// the first writes after opening.
pub(crate) struct Preparer {
    shared: Arc<PrepShared>,
    thread: Option<JoinHandle<()>>,
}

impl Preparer {
    /// Starts the preparing thread (idle until a file is requested).
    pub fn start(fs: Arc<dyn Fs>, dir: PathBuf, size: u64) -> Result<Self> {
        let shared = Arc::new(PrepShared {
            state: Mutex::new(PrepState::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("raft-wal-prepare".into())
            .spawn(move || prepare_loop(&*fs, &dir, size, &s))
            .map_err(|e| Error::io("spawn preparer thread", PathBuf::new(), e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for the next file to be prepared (no-op when already asked).
    pub fn request(&self) {
        let mut st = self.shared.state.lock();
        if !st.requested {
            st.requested = true;
            st.wanted = true;
            self.shared.cv.notify_all();
        }
    }

    /// Takes the prepared file, asking for it and waiting when needed.
    pub fn take(&self) -> Result<Prepared> {
        self.request();
        let mut st = self.shared.state.lock();
        loop {
            match st.ready.take() {
                Some(Ok(p)) => {
                    st.requested = false;
                    return Ok(p);
                }
                Some(Err(e)) => {
                    // The preparer stopped; keep reporting its error.
                    st.ready = Some(Err(e.clone()));
                    return Err(e);
                }
                None => {}
            }
            self.shared.cv.wait(&mut st);
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.shared.state.lock().shutdown = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn prepare_loop(fs: &dyn Fs, dir: &Path, size: u64, shared: &PrepShared) {
    let mut counter = 0u64;
    loop {
        {
            let mut st = shared.state.lock();
            while !st.wanted && !st.shutdown {
                shared.cv.wait(&mut st);
            }
            if st.shutdown {
                return;
            }
            st.wanted = false;
        }
        let path = dir.join(format!("prepare-{counter:08}{TMP_SUFFIX}"));
        counter += 1;
        let result = prepare_one(fs, &path, size);
        let failed = result.is_err();
        let mut st = shared.state.lock();
        st.ready = Some(result);
        shared.cv.notify_all();
        if failed {
            return;
        }
    }
}

fn prepare_one(fs: &dyn Fs, path: &Path, size: u64) -> Result<Prepared> {
    const CHUNK: u64 = 1 << 20;
    let file = fs.create(path).map_err(|e| Error::io("create", path, e))?;
    let zeros = vec![0u8; CHUNK.min(size) as usize];
    let mut at = 0;
    while at < size {
        let n = CHUNK.min(size - at);
        file.write_at(&zeros[..n as usize], at)
            .map_err(|e| Error::io("preallocate", path, e))?;
        at += n;
    }
    file.sync_data().map_err(|e| Error::io("fsync", path, e))?;
    Ok(Prepared {
        path: path.to_path_buf(),
        file,
        capacity: size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = segment_name(3, 0x1234);
        assert_eq!(n, "0000000000000003-0000000000001234.wal");
        assert_eq!(parse_segment_name(&n), Some((3, 0x1234)));
        assert_eq!(parse_segment_name("junk.wal"), None);
        assert_eq!(parse_segment_name("prepare-00000001.tmp"), None);
    }
}
