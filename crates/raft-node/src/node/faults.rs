//! The fault switch for failure drills: with `RAFTD_FAULT_INJECTION=1` in its environment,
//! raftd cuts itself off from its peers on SIGUSR1 and reconnects on SIGUSR2 (the peer
//! transport's [`set_isolated`](raft_net::PeerTransport::set_isolated)). Clients can still
//! reach it. And, for chaos runs, [`FSYNC_EIO_ENV`] makes the WAL's fsyncs fail with EIO
//! while a trigger file exists, and [`SKIP_FSYNC_ENV`] makes the WAL skip them. Never enable
//! any of them in production.

use raft_fs::{DirEntry, Fs, FsFile, StdFs};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};

/// The environment variable that enables the fault switch.
pub const ENV: &str = "RAFTD_FAULT_INJECTION";

/// True when the environment enables the fault switch.
pub fn enabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "1")
}

/// Flips the transport's fault switch on SIGUSR1 (isolate) and SIGUSR2 (heal); runs until
/// aborted.
pub async fn serve(net: raft_net::PeerTransport) -> std::io::Result<()> {
    let mut cut = signal(SignalKind::user_defined1())?;
    let mut heal = signal(SignalKind::user_defined2())?;
    tracing::warn!("{ENV}=1: SIGUSR1 isolates this node from its peers, SIGUSR2 heals");
    loop {
        tokio::select! {
            Some(()) = cut.recv() => {
                tracing::warn!("fault switch: isolated from every peer");
                net.set_isolated(true);
            }
            Some(()) = heal.recv() => {
                tracing::warn!("fault switch: healed");
                net.set_isolated(false);
            }
            else => return Ok(()),
        }
    }
}

/// For tests only (chaos runs): the environment variable naming a trigger file. While that
/// file exists, every fsync of the write-ahead log (`sync_data` of a file, `sync_dir` of a
/// directory) fails with EIO, as a failing disk's would; the member must then stop (fail
/// stop), never acknowledge what it could not make durable. Never set it in production.
pub const FSYNC_EIO_ENV: &str = "RAFTD_FAULT_FSYNC_EIO_FILE";

/// For tests only, with [`FSYNC_EIO_ENV`]: `1` makes the switch a deliberately broken
/// server that ignores the fsync errors it injects (logs them and carries on as if the data
/// were durable), to show that a chaos run catches a member that keeps running.
pub const FSYNC_IGNORE_ENV: &str = "RAFTD_UNSAFE_IGNORE_FSYNC_ERRORS";

/// For tests only (power-loss chaos runs): `1` makes a deliberately broken server whose
/// write-ahead log never fsyncs (its files nor its directory) yet acknowledges as if it had,
/// to show that `cargo xtask chaos --faults power` catches acknowledged writes lost at a
/// power loss. Never set it in production.
pub const SKIP_FSYNC_ENV: &str = "RAFTD_UNSAFE_SKIP_WAL_FSYNC";

/// The file system the WAL writes through when [`FSYNC_EIO_ENV`] or [`SKIP_FSYNC_ENV`] is
/// set; `None` otherwise (the WAL then uses the real file system directly).
pub fn wal_fs() -> Option<Arc<dyn Fs>> {
    let skip = std::env::var(SKIP_FSYNC_ENV).is_ok_and(|v| v == "1");
    let trigger = std::env::var_os(FSYNC_EIO_ENV).map(|t| Arc::new(PathBuf::from(t)));
    if trigger.is_none() && !skip {
        return None;
    }
    let ignore = std::env::var(FSYNC_IGNORE_ENV).is_ok_and(|v| v == "1");
    if let Some(trigger) = &trigger {
        tracing::warn!(
            "{FSYNC_EIO_ENV}={}: the WAL's fsyncs fail with EIO while that file exists \
             (testing only){}",
            trigger.display(),
            if ignore {
                format!("; {FSYNC_IGNORE_ENV}=1: and the errors are ignored (deliberately unsafe)")
            } else {
                String::new()
            }
        );
    }
    if skip {
        tracing::warn!(
            "{SKIP_FSYNC_ENV}=1: the WAL never fsyncs and acknowledges all the same \
             (deliberately unsafe, testing only)"
        );
    }
    Some(Arc::new(FsyncFaultFs {
        trigger,
        ignore,
        skip,
    }))
}

/// The real file system, with fsyncs failing while the trigger file exists, or skipped.
struct FsyncFaultFs {
    trigger: Option<Arc<PathBuf>>,
    ignore: bool,
    skip: bool,
}

fn injected(trigger: Option<&Path>, ignore: bool) -> io::Result<()> {
    if trigger.is_some_and(Path::exists) {
        tracing::error!("fault switch: fsync fails with EIO ({FSYNC_EIO_ENV})");
        if !ignore {
            return Err(io::Error::from_raw_os_error(5));
        }
    }
    Ok(())
}

impl FsyncFaultFs {
    fn wrap(&self, inner: Arc<dyn FsFile>) -> Arc<dyn FsFile> {
        Arc::new(FsyncFaultFile {
            inner,
            trigger: self.trigger.clone(),
            ignore: self.ignore,
            skip: self.skip,
        })
    }
}

impl Fs for FsyncFaultFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        StdFs.create(path).map(|f| self.wrap(f))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        StdFs.open(path).map(|f| self.wrap(f))
    }
    fn open_or_create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        StdFs.open_or_create(path).map(|f| self.wrap(f))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_dir_all(path)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        StdFs.read_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        injected(self.trigger.as_deref().map(PathBuf::as_path), self.ignore)?;
        if self.skip {
            return Ok(());
        }
        StdFs.sync_dir(dir)
    }
}

struct FsyncFaultFile {
    inner: Arc<dyn FsFile>,
    trigger: Option<Arc<PathBuf>>,
    ignore: bool,
    skip: bool,
}

impl FsFile for FsyncFaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        let trigger = self.trigger.as_deref().map(PathBuf::as_path);
        injected(trigger, self.ignore)?;
        if self.skip || trigger.is_some_and(Path::exists) {
            // Ignoring the injected error (deliberately unsafe): nothing is made durable.
            return Ok(());
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsyncs_fail_while_the_trigger_exists() {
        let dir = tempfile::tempdir().unwrap();
        let trigger = Arc::new(dir.path().join("trigger"));
        let fs = FsyncFaultFs {
            trigger: Some(trigger.clone()),
            ignore: false,
            skip: false,
        };
        let f = fs.create(&dir.path().join("seg")).unwrap();
        f.write_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        std::fs::write(&*trigger, "").unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        assert_eq!(fs.sync_dir(dir.path()).unwrap_err().raw_os_error(), Some(5));
        // Writes still go through; only durability fails.
        f.write_at(b"d", 3).unwrap();
        assert_eq!(f.len().unwrap(), 4);
        std::fs::remove_file(&*trigger).unwrap();
        f.sync_data().unwrap();

        // The deliberately broken variant swallows the error.
        let fs = FsyncFaultFs {
            trigger: Some(trigger.clone()),
            ignore: true,
            skip: false,
        };
        let f = fs.open(&dir.path().join("seg")).unwrap();
        std::fs::write(&*trigger, "").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn the_skipping_switch_acknowledges_fsyncs_it_never_makes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsyncFaultFs {
            trigger: None,
            ignore: false,
            skip: true,
        };
        let f = fs.create(&dir.path().join("seg")).unwrap();
        f.write_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert_eq!(f.len().unwrap(), 3);
        let mut buf = [0u8; 3];
        f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"abc");
    }
}
