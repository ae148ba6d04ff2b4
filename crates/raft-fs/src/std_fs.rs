//! [`StdFs`]: the real file system, through `std::fs` and Unix positioned I/O.

use crate::{DirEntry, Fs, FsFile};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The real file system, through `std::fs` (Unix positioned I/O).
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile {
    file: std::fs::File,
}

#[cfg(unix)]
impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

fn open(path: &Path, create: bool, truncate: bool) -> io::Result<Arc<dyn FsFile>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(truncate)
        .open(path)?;
    Ok(Arc::new(StdFile { file }))
}

#[cfg(unix)]
impl Fs for StdFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        open(path, true, true)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        open(path, false, false)
    }
    fn open_or_create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        open(path, true, false)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Each directory this makes is synced into its parent, top down: a WAL or a store
        // that fsyncs its files and its own directory is still lost whole after a power
        // failure if its directory's entry never reached the disk (POSIX leaves that to an
        // fsync of the parent; ext4 with data=ordered happens to commit it with the files).
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(p) = at {
            if p.as_os_str().is_empty() || p.is_dir() {
                break;
            }
            missing.push(p);
            at = p.parent();
        }
        std::fs::create_dir_all(dir)?;
        for made in missing.into_iter().rev() {
            let parent = match made.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            self.sync_dir(parent)?;
        }
        Ok(())
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not a name either crate writes
            };
            out.push(DirEntry {
                name,
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        Ok(out)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}
