//! The snapshot store: a directory of snapshot files and their chain manifest, with leases
//! that protect chains in use from garbage collection.
//!
//! This file opens a store and reads it; `commit` changes what it holds (manifest updates,
//! garbage collection, incoming transfers and staged installs), `writer` writes a new
//! snapshot file and `manifest` is the manifest's format.

mod commit;
mod manifest;
mod writer;

pub use manifest::{MANIFEST_FILE, Manifest};
pub use writer::SnapshotWriter;

use crate::error::{Error, IoContext, Result};
use crate::format::{FileReader, Record, WriterOptions};
use crate::fs::{Cursor, Fs, StdFs};
use crate::info::{SnapshotId, SnapshotInfo, SnapshotKind};
use parking_lot::Mutex;
use raft_core::SnapshotMeta;
use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Name of the scratch directory inside a store (partial files, staged installs).
pub const TMP_DIR: &str = "tmp";

/// Settings of a [`SnapshotStore`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How snapshot files are written.
    pub writer: WriterOptions,
    /// Re-read and fully decode every new file before it enters the manifest.
    pub verify_on_finish: bool,
    /// Seed of the id nonces; `None` derives one from the clock and process id.
    pub id_salt: Option<u64>,
    /// Fault injection for tests: the store behaves as if the process died right before
    /// durable step number `n` (counted from 1 over the store's lifetime); that step and
    /// every later operation fail with [`Error::InjectedCrash`] and nothing is cleaned up.
    pub crash_at_step: Option<u32>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            writer: WriterOptions::default(),
            verify_on_finish: true,
            id_salt: None,
            crash_at_step: None,
        }
    }
}

/// How committing new snapshots moves the manifest's head.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NewHead {
    /// The head becomes this snapshot (an installed chain's tip).
    Set(SnapshotId),
    /// The head becomes this (newly added) snapshot unless the current head has a higher
    /// index (a local build that a newer install overtook).
    IfNotOlder(SnapshotId),
}

/// A chain: a full base followed by zero or more deltas, each the parent of the next.
///
/// Invariant: non-empty; `snapshots[0]` is full; every later one is a delta whose parent
/// is its predecessor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Base first, tip last.
    pub snapshots: Vec<SnapshotInfo>,
}

impl Chain {
    /// Checks the invariants.
    pub fn new(snapshots: Vec<SnapshotInfo>) -> Result<Self> {
        let ok = snapshots
            .first()
            .is_some_and(|b| b.kind == SnapshotKind::Full)
            && snapshots.windows(2).all(|w| {
                w[1].kind == SnapshotKind::Delta
                    && w[1].parent == Some(w[0].id)
                    && w[1].index >= w[0].index
            });
        if !ok {
            return Err(Error::Invalid(
                "not a chain: base must be full and each delta follow its parent".into(),
            ));
        }
        Ok(Chain { snapshots })
    }

    /// The base (full) snapshot.
    pub fn base(&self) -> &SnapshotInfo {
        &self.snapshots[0]
    }

    /// The newest snapshot of the chain; restoring the chain gives the state at its index.
    pub fn tip(&self) -> &SnapshotInfo {
        self.snapshots.last().expect("a chain is never empty")
    }

    /// Sum of the deltas' sizes.
    pub fn delta_bytes(&self) -> u64 {
        self.snapshots[1..].iter().map(|s| s.size).sum()
    }

    /// Number of snapshots (base plus deltas).
    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// Never true (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }
}

/// Reference counts of snapshots in use; garbage collection keeps every leased snapshot
/// and its ancestors.
#[derive(Default, Debug)]
pub(crate) struct Leases {
    counts: Mutex<HashMap<SnapshotId, usize>>,
}

/// A hold on some snapshots: while it lives, `gc` removes none of them (nor their
/// ancestors). Dropping it releases the hold.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<Leases>,
    ids: Vec<SnapshotId>,
}

impl Lease {
    fn new(leases: &Arc<Leases>, ids: Vec<SnapshotId>) -> Self {
        let mut c = leases.counts.lock();
        for id in &ids {
            *c.entry(*id).or_default() += 1;
        }
        drop(c);
        Lease {
            leases: leases.clone(),
            ids,
        }
    }

    /// The snapshots held.
    pub fn ids(&self) -> &[SnapshotId] {
        &self.ids
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut c = self.leases.counts.lock();
        for id in &self.ids {
            if let Some(n) = c.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    c.remove(id);
                }
            }
        }
    }
}

/// A chain together with the lease that keeps it from being collected.
#[derive(Debug)]
pub struct LeasedChain {
    /// The chain.
    pub chain: Chain,
    /// Keeps the chain's files alive.
    pub lease: Lease,
}

/// A reader over one stored snapshot; holds a lease on it while open.
pub struct SnapshotReader {
    /// The snapshot's manifest entry.
    pub info: SnapshotInfo,
    reader: FileReader<BufReader<Cursor>>,
    _lease: Lease,
}

impl SnapshotReader {
    /// The next record, or `None` once the file is read and verified to its trailer.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        self.reader.next_record()
    }

    /// Reads to the end and checks the file against its manifest entry.
    pub fn verify(mut self) -> Result<()> {
        let sum = self.reader.verify_to_end()?;
        check_summary(&self.info, sum.size, sum.checksum)
    }
}

pub(crate) fn check_summary(info: &SnapshotInfo, size: u64, checksum: u32) -> Result<()> {
    if size != info.size || checksum != info.checksum {
        return Err(Error::corrupt(
            info.id.file_name(),
            0,
            format!(
                "size {size} / checksum {checksum:#010x} differ from the manifest's {} / {:#010x}",
                info.size, info.checksum
            ),
        ));
    }
    Ok(())
}

pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: StoreOptions,
    pub(crate) manifest: Mutex<Manifest>,
    pub(crate) leases: Arc<Leases>,
    steps: AtomicU32,
    crashed: AtomicBool,
    salt: u64,
    seq: AtomicU64,
    tmp_seq: AtomicU64,
    /// Unit tests only: called with the name of each test point the store passes.
    #[cfg(test)]
    pub(crate) test_hook: Mutex<Option<TestHook>>,
}

/// A unit test's callback at a named point of a store operation.
#[cfg(test)]
pub(crate) type TestHook = Arc<dyn Fn(&str) + Send + Sync>;

/// A directory of snapshot files and the chain manifest that ties them together.
///
/// Layout: `MANIFEST.json` (see [`Manifest`]), one `<id>.snap` per snapshot (format:
/// [`FileReader`]), and `tmp/` for files being written, staged installs and incoming
/// transfers. On open, files the manifest does not name are removed (left over by a crash
/// before the manifest named them), as is everything in `tmp/` except incoming transfers,
/// which stay resumable.
///
/// Cheap to clone (shared state); safe to use from several threads.
#[derive(Clone)]
pub struct SnapshotStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Prefix of incoming transfer directories inside `tmp/` (kept across restarts).
pub(crate) const INCOMING_PREFIX: &str = "incoming-";

impl SnapshotStore {
    /// Opens (creating if needed) the store in `dir` on the real file system, removing
    /// leftovers of interrupted operations.
    pub fn open_dir(dir: impl Into<PathBuf>, opts: StoreOptions) -> Result<Self> {
        Self::open_with(Arc::new(StdFs), dir, opts)
    }

    /// Opens (creating if needed) the store in `dir` on the given file system (tests use
    /// `raft_fs::MemFs`, behind its `mem` feature, to model power loss), removing leftovers
    /// of interrupted operations.
    pub fn open_with(fs: Arc<dyn Fs>, dir: impl Into<PathBuf>, opts: StoreOptions) -> Result<Self> {
        let dir = dir.into();
        fs.create_dir_all(&dir.join(TMP_DIR)).at(&dir)?;
        let manifest = Manifest::load_with(&*fs, &dir)?.unwrap_or_else(Manifest::empty);
        let salt = opts.id_salt.unwrap_or_else(|| {
            // The edge of the crate: the only clock read, to seed id nonces.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            splitmix(nanos ^ ((std::process::id() as u64) << 32))
        });
        let store = SnapshotStore {
            shared: Arc::new(Shared {
                fs,
                dir,
                opts,
                manifest: Mutex::new(manifest),
                leases: Arc::new(Leases::default()),
                steps: AtomicU32::new(0),
                crashed: AtomicBool::new(false),
                salt,
                seq: AtomicU64::new(0),
                tmp_seq: AtomicU64::new(0),
                #[cfg(test)]
                test_hook: Mutex::new(None),
            }),
        };
        store.recover()?;
        Ok(store)
    }

    fn recover(&self) -> Result<()> {
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        let m = self.shared.manifest.lock();
        // Every listed file must be there with its size; crash ordering guarantees it, so a
        // mismatch is damage the operator must see.
        for s in &m.snapshots {
            let p = dir.join(s.id.file_name());
            let len = fs.open(&p).and_then(|f| f.len()).at(&p)?;
            if len != s.size {
                return Err(Error::corrupt(
                    p.display().to_string(),
                    len,
                    format!("file size differs from the manifest's {}", s.size),
                ));
            }
        }
        let known: HashSet<String> = m.snapshots.iter().map(|s| s.id.file_name()).collect();
        for entry in fs.read_dir(dir).at(dir)? {
            let name = entry.name;
            if !entry.is_dir
                && ((name.ends_with(".snap") && !known.contains(&name))
                    || name == format!("{MANIFEST_FILE}.tmp"))
            {
                tracing::info!(file = %name, "removing leftover of an interrupted operation");
                let p = dir.join(&name);
                fs.remove_file(&p).at(&p)?;
            }
        }
        let tmp = dir.join(TMP_DIR);
        for entry in fs.read_dir(&tmp).at(&tmp)? {
            if entry.name.starts_with(INCOMING_PREFIX) {
                continue;
            }
            let p = tmp.join(&entry.name);
            if entry.is_dir {
                fs.remove_dir_all(&p).at(&p)?;
            } else {
                fs.remove_file(&p).at(&p)?;
            }
        }
        Ok(())
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The file system the store lives on.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.shared.fs
    }

    /// Fsyncs the store's directory.
    pub(crate) fn sync_dir(&self) -> Result<()> {
        let dir = &self.shared.dir;
        self.shared.fs.sync_dir(dir).at(dir)
    }

    /// Size and CRC32C of a snapshot's whole file.
    pub(crate) fn file_checksum(&self, id: SnapshotId) -> Result<(u64, u32)> {
        let p = self.path_of(id);
        let f = self.shared.fs.open(&p).at(&p)?;
        checksum_of(&mut Cursor::new(f), &p)
    }

    /// Opens a snapshot's file for reading from its start.
    pub(crate) fn open_file(&self, id: SnapshotId) -> Result<Cursor> {
        let p = self.path_of(id);
        Ok(Cursor::new(self.shared.fs.open(&p).at(&p)?))
    }

    /// Path of a snapshot's file.
    pub fn path_of(&self, id: SnapshotId) -> PathBuf {
        self.shared.dir.join(id.file_name())
    }

    pub(crate) fn tmp_path(&self, name: &str) -> PathBuf {
        let n = self.shared.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.shared.dir.join(TMP_DIR).join(format!("{name}-{n}"))
    }

    /// Fault injection hook: counts a durable step, failing if the configured crash point
    /// is reached (or was reached before).
    pub(crate) fn step(&self, what: &str) -> Result<()> {
        if self.shared.crashed.load(Ordering::SeqCst) {
            return Err(Error::InjectedCrash(
                self.shared.steps.load(Ordering::SeqCst),
            ));
        }
        let n = self.shared.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if self.shared.opts.crash_at_step == Some(n) {
            tracing::warn!(step = n, what, "injected crash");
            self.shared.crashed.store(true, Ordering::SeqCst);
            return Err(Error::InjectedCrash(n));
        }
        Ok(())
    }

    /// A point where unit tests may step in (e.g. to run a concurrent operation there).
    #[cfg(test)]
    pub(crate) fn test_point(&self, name: &str) {
        let hook = self.shared.test_hook.lock().clone();
        if let Some(hook) = hook {
            hook(name);
        }
    }

    /// A point where unit tests may step in; nothing outside tests.
    #[cfg(not(test))]
    #[inline(always)]
    pub(crate) fn test_point(&self, _name: &str) {}

    /// True after an injected crash (nothing may be cleaned up any more).
    pub(crate) fn crashed(&self) -> bool {
        self.shared.crashed.load(Ordering::SeqCst)
    }

    /// Durable steps taken so far (for crash-point sweeps in tests).
    pub fn steps_taken(&self) -> u32 {
        self.shared.steps.load(Ordering::SeqCst)
    }

    pub(crate) fn new_id(&self, index: u64) -> SnapshotId {
        let m = self.shared.manifest.lock();
        loop {
            let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
            let nonce = splitmix(self.shared.salt.wrapping_add(seq)).max(1);
            let id = SnapshotId::new(index, nonce);
            if m.get(id).is_none() {
                return id;
            }
        }
    }

    /// Starts a snapshot. A full one has no parent; a delta names its parent, which must be
    /// in the store at an index `<= meta.index`. `created_ms` is the creation time in unix
    /// milliseconds. The parent is leased until the writer finishes or is dropped.
    pub fn begin(
        &self,
        kind: SnapshotKind,
        parent: Option<SnapshotId>,
        meta: &SnapshotMeta,
        created_ms: u64,
    ) -> Result<SnapshotWriter> {
        let parent_lease = match (kind, parent) {
            (SnapshotKind::Full, None) => None,
            (SnapshotKind::Delta, Some(p)) => {
                let m = self.shared.manifest.lock();
                let pi = m.get(p).ok_or(Error::UnknownSnapshot(p))?;
                if pi.index > meta.index {
                    return Err(Error::Invalid(format!(
                        "delta at index {} cannot follow parent {p} at index {}",
                        meta.index, pi.index
                    )));
                }
                let chain: Vec<_> = m.chain(p)?.iter().map(|s| s.id).collect();
                Some(Lease::new(&self.shared.leases, chain))
            }
            _ => {
                return Err(Error::Invalid(
                    "a full snapshot has no parent and a delta needs one".into(),
                ));
            }
        };
        let id = self.new_id(meta.index);
        SnapshotWriter::start(
            self.clone(),
            id,
            kind,
            parent,
            meta,
            created_ms,
            parent_lease,
        )
    }

    /// Looks up a snapshot's manifest entry.
    pub fn info(&self, id: SnapshotId) -> Option<SnapshotInfo> {
        self.shared.manifest.lock().get(id).cloned()
    }

    /// Every snapshot in the manifest, in the order they were added.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        self.shared.manifest.lock().snapshots.clone()
    }

    /// A copy of the manifest.
    pub fn manifest(&self) -> Manifest {
        self.shared.manifest.lock().clone()
    }

    /// Leases the given snapshots (and nothing else) against garbage collection.
    pub fn lease(&self, ids: Vec<SnapshotId>) -> Result<Lease> {
        let m = self.shared.manifest.lock();
        if let Some(id) = ids.iter().find(|id| m.get(**id).is_none()) {
            return Err(Error::UnknownSnapshot(*id));
        }
        Ok(Lease::new(&self.shared.leases, ids))
    }

    /// Opens a snapshot for reading (header verified; blocks as they are read).
    pub fn open(&self, id: SnapshotId) -> Result<SnapshotReader> {
        let (info, lease) = {
            let m = self.shared.manifest.lock();
            let info = m.get(id).cloned().ok_or(Error::UnknownSnapshot(id))?;
            (info, Lease::new(&self.shared.leases, vec![id]))
        };
        let path = self.path_of(id);
        let file = self.open_file(id)?;
        let reader = FileReader::new(
            BufReader::with_capacity(256 << 10, file),
            path.display().to_string(),
            true,
        )?;
        if reader.header().id != id {
            return Err(Error::corrupt(
                path.display().to_string(),
                12,
                "header names a different snapshot",
            ));
        }
        Ok(SnapshotReader {
            info,
            reader,
            _lease: lease,
        })
    }

    /// The chain ending at `tip`.
    pub fn chain(&self, tip: SnapshotId) -> Result<Chain> {
        Chain::new(self.shared.manifest.lock().chain(tip)?)
    }

    /// The current chain (ending at the manifest's head), if any snapshot exists.
    pub fn latest(&self) -> Option<Chain> {
        let m = self.shared.manifest.lock();
        let head = m.head?;
        m.chain(head).ok().and_then(|c| Chain::new(c).ok())
    }

    /// The chain ending at `tip` (the current chain when `None`), leased against
    /// garbage collection until the returned value is dropped.
    pub fn lease_chain(&self, tip: Option<SnapshotId>) -> Result<LeasedChain> {
        let m = self.shared.manifest.lock();
        let tip = match tip.or(m.head) {
            Some(t) => t,
            None => return Err(Error::Invalid("the store holds no snapshot".into())),
        };
        let chain = Chain::new(m.chain(tip)?)?;
        let lease = Lease::new(
            &self.shared.leases,
            chain.snapshots.iter().map(|s| s.id).collect(),
        );
        Ok(LeasedChain { chain, lease })
    }

    /// A fresh number for a scratch name under `tmp/`.
    pub(crate) fn next_tmp_seq(&self) -> u64 {
        self.shared.tmp_seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// The size and CRC32C of everything `r` yields (`path` names it in errors).
pub(crate) fn checksum_of(r: &mut dyn Read, path: &Path) -> Result<(u64, u32)> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut crc) = (0u64, 0u32);
    loop {
        let n = r.read(&mut buf).at(path)?;
        if n == 0 {
            return Ok((len, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
}

/// An incoming transfer's key as a file name: ASCII letters, digits, `-` and `_` kept,
/// everything else `_`.
pub(crate) fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
