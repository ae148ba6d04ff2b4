//! Object stores that snapshots are uploaded to: the [`ObjectStore`] trait, its local
//! directory implementation, and the cloud stores of the `object_store` crate behind it
//! ([`CloudStore`], chosen by URL with [`open_object_store`]).

mod cloud;
mod config;

pub use cloud::{CloudStore, MIN_PART_SIZE};
pub use config::{ObjectStoreConfig, open_object_store};

use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A flat namespace of named blobs (names may contain `/`, as object keys do).
///
/// Implementations must make `put` atomic: a reader sees the whole blob or none of it.
/// Blocking calls; the [`Uploader`](crate::Uploader) calls them from its own thread.
pub trait ObjectStore: Send + Sync {
    /// Stores `data` under `name`, replacing any blob of that name. Returns bytes stored.
    fn put(&self, name: &str, data: &mut dyn Read) -> Result<u64>;
    /// Writes the blob `name` into `out`. Returns bytes written.
    fn get(&self, name: &str, out: &mut dyn Write) -> Result<u64>;
    /// Names of the blobs starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes a blob (absent blobs are not an error).
    fn delete(&self, name: &str) -> Result<()>;
}

/// The default object store: blobs as files under a root directory.
///
/// `put` writes `<root>/.tmp-<n>`, fsyncs it, renames it to `<root>/<name>` and fsyncs the
/// directory, so blobs appear whole. Names must be relative and free of `..`.
#[derive(Debug)]
pub struct LocalDirStore {
    root: PathBuf,
    seq: AtomicU64,
}

impl LocalDirStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).at(&root)?;
        Ok(LocalDirStore {
            root,
            seq: AtomicU64::new(0),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        let rel = Path::new(name);
        let ok = !name.is_empty()
            && rel.components().all(
                |c| matches!(c, Component::Normal(s) if !s.to_string_lossy().starts_with(".tmp-")),
            );
        if !ok {
            return Err(Error::ObjectStore {
                name: name.into(),
                reason: "invalid blob name".into(),
            });
        }
        Ok(self.root.join(rel))
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in rd {
            let entry = entry.at(dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            let full = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().at(&entry.path())?.is_dir() {
                self.walk(&entry.path(), &full, out)?;
            } else {
                out.push(full);
            }
        }
        Ok(())
    }
}

impl ObjectStore for LocalDirStore {
    fn put(&self, name: &str, data: &mut dyn Read) -> Result<u64> {
        let dst = self.path(name)?;
        let parent = dst.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).at(&parent)?;
        let tmp = parent.join(format!(".tmp-{}", self.seq.fetch_add(1, Ordering::Relaxed)));
        let result = (|| {
            let mut f = File::create(&tmp).at(&tmp)?;
            let n = std::io::copy(data, &mut f).at(&tmp)?;
            f.sync_all().at(&tmp)?;
            std::fs::rename(&tmp, &dst).at(&dst)?;
            crate::fs::Fs::sync_dir(&crate::fs::StdFs, &parent).at(&parent)?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn get(&self, name: &str, out: &mut dyn Write) -> Result<u64> {
        let p = self.path(name)?;
        let mut f = File::open(&p).map_err(|e| Error::ObjectStore {
            name: name.into(),
            reason: e.to_string(),
        })?;
        std::io::copy(&mut f, out).at(&p)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk(&self.root, "", &mut out)?;
        out.retain(|n| n.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name)?;
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }
}

/// Blob name of a snapshot's file.
pub(crate) fn blob_file(id: crate::info::SnapshotId) -> String {
    format!("snapshots/{id}.snap")
}

/// Blob name of a snapshot's metadata (JSON [`SnapshotInfo`](crate::SnapshotInfo)),
/// uploaded after the file: its presence means the upload is complete.
pub(crate) fn blob_meta(id: crate::info::SnapshotId) -> String {
    format!("snapshots/{id}.json")
}
