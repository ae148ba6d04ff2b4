//! The file-system seam of the toolkit's storage crates: the [`Fs`] trait, [`StdFs`] and, with
//! the `mem` feature, `MemFs`, which models what a power loss leaves behind.
//!
//! Responsibility: the handful of operations a write-ahead log and a snapshot store perform on
//! their directories (positioned reads and writes, `fdatasync`, renames, removals, directory
//! listings and directory `fsync`), so their crash behaviour can be tested by swapping the real
//! file system for one that injects torn writes, lost unsynced data, garbage tails, `EIO` on
//! `fsync` and crashes at any chosen operation.
//!
//! May depend on: nothing but `std`. It sits under `raft-log` and `raft-snapshot` in the
//! layering, so both share one seam and one crash model instead of a copy each.
//!
//! ```
//! use raft_fs::{Fs, StdFs};
//! # fn main() -> std::io::Result<()> {
//! let dir = std::env::temp_dir().join(format!("raft-fs-doc-{}", std::process::id()));
//! StdFs.create_dir_all(&dir)?;
//! let f = StdFs.create(&dir.join("a"))?;
//! f.write_at(b"hello", 0)?;
//! f.sync_data()?;
//! StdFs.sync_dir(&dir)?;
//! assert_eq!(raft_fs::read_all(&StdFs, &dir.join("a"))?, b"hello");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "mem")]
mod mem;
mod std_fs;

#[cfg(feature = "mem")]
pub use mem::{CrashMode, MemFs, SECTOR};
pub use std_fs::StdFs;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (not a path).
    pub name: String,
    /// True for a directory.
    pub is_dir: bool,
}

/// The operations a storage crate performs on its directory tree. Paths are full paths.
pub trait Fs: Send + Sync + 'static {
    /// Creates (or truncates) a file for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Opens a file for reading and writing, creating it empty when it does not exist.
    fn open_or_create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents, durably: when this returns, each
    /// directory it made is recorded in its parent on disk (the parents are synced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The entries of a directory.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The names of the files (not directories) in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .read_dir(dir)?
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| e.name)
            .collect())
    }
}

/// An open file.
pub trait FsFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the file's length, zero-filling when it grows.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, failing with `UnexpectedEof` when short.
pub fn read_exact_at(file: &dyn FsFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = file.read_at(buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Reads a whole file.
pub fn read_all(fs: &dyn Fs, path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Cursor::new(fs.open(path)?).read_to_end(&mut out)?;
    Ok(out)
}

/// A file with a position: `Read`, `Write` and `Seek` over an [`FsFile`], for streaming
/// readers and writers.
pub struct Cursor {
    file: Arc<dyn FsFile>,
    pos: u64,
}

impl Cursor {
    /// A cursor at offset 0.
    pub fn new(file: Arc<dyn FsFile>) -> Self {
        Cursor { file, pos: 0 }
    }

    /// The file.
    pub fn file(&self) -> &Arc<dyn FsFile> {
        &self.file
    }
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Cursor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.file.len()?, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base
            .0
            .checked_add_signed(base.1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}
