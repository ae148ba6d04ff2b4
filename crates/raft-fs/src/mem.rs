//! [`MemFs`]: an in-memory [`Fs`] that models what a power loss leaves behind, for crash tests.
//!
//! Every file has a *synced* image (what survives a crash for sure) and the writes made
//! since its last `sync_data`; every directory entry has a current and a *durable* version
//! (as of the last `sync_dir` of its directory). [`MemFs::crash_image`] builds the file
//! system a restarted machine would find: durable entries only (a rename or removal that no
//! directory sync covered is undone, a new name vanishes), and for each file its synced
//! image plus, depending on the [`CrashMode`], none, a sector-aligned prefix, a zeroed or a
//! garbage version of the unsynced writes. [`MemFs::crash_at`] makes the N-th mutating
//! operation (create, write, sync, set_len, rename, remove, mkdir, sync_dir) fail, and every
//! later one, as if the process died there; [`MemFs::fail_sync_from`] makes `sync_data`
//! return `EIO`; [`MemFs::poke`] damages bytes durably.
//!
//! Directories made by `create_dir_all` are durable at once, as the [`Fs`] contract says
//! (`StdFs` syncs each new directory's parent); their removal is durable only once their
//! parent is synced.

use crate::{DirEntry, Fs, FsFile};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The sector size at which unsynced writes tear.
pub const SECTOR: u64 = 512;

/// What happens to data written but not yet synced when the machine crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// All unsynced data is lost.
    LoseUnsynced,
    /// A prefix of the unsynced writes survives, cut at a sector boundary.
    TornPrefix,
    /// A prefix survives; the rest of the unsynced range reads back as zeros.
    ZeroedTail,
    /// A prefix survives; the rest of the unsynced range reads back as garbage.
    GarbageTail,
}

impl CrashMode {
    /// Every mode.
    pub const ALL: [CrashMode; 4] = [
        CrashMode::LoseUnsynced,
        CrashMode::TornPrefix,
        CrashMode::ZeroedTail,
        CrashMode::GarbageTail,
    ];
}

#[derive(Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir,
}

#[derive(Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    syncs: u64,
    fail_sync_from: Option<u64>,
    sync_delay: std::time::Duration,
}

fn gone() -> io::Error {
    io::Error::other("simulated crash: file system is gone")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl State {
    /// Counts a mutating operation and fails it if the simulated crash is due.
    fn op(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(gone());
        }
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = true;
            return Err(io::Error::other("simulated crash"));
        }
        Ok(())
    }

    fn file(&self, path: &Path) -> io::Result<usize> {
        if self.crashed {
            return Err(gone());
        }
        match self.names.get(path) {
            Some(Node::File(i)) => Ok(*i),
            Some(Node::Dir) => Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent().map(|p| self.names.get(p)) {
            Some(Some(Node::Dir)) => Ok(()),
            _ => Err(not_found(path.parent().unwrap_or(path))),
        }
    }

    fn new_file(&mut self, path: &Path) -> io::Result<usize> {
        self.check_parent(path)?;
        self.op()?;
        self.inodes.push(Inode::default());
        let i = self.inodes.len() - 1;
        self.names.insert(path.to_path_buf(), Node::File(i));
        Ok(i)
    }
}

/// The in-memory file system. Clones share the same state.
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("MemFs")
            .field("entries", &s.names.len())
            .field("ops", &s.ops)
            .field("crashed", &s.crashed)
            .finish()
    }
}

impl MemFs {
    /// An empty file system (only `/`).
    pub fn new() -> Self {
        let fs = MemFs::default();
        {
            let mut s = fs.state.lock();
            s.names.insert(PathBuf::from("/"), Node::Dir);
            s.durable.insert(PathBuf::from("/"), Node::Dir);
        }
        fs
    }

    /// How many mutating operations have been made so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Makes the `n`-th mutating operation (counting from 1 since creation) fail, and every
    /// operation after it, as if the process died there.
    pub fn crash_at(&self, n: u64) {
        self.state.lock().crash_at = Some(n);
    }

    /// True once the simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Makes the `n`-th call of `sync_data` (counting from 1) and every later one fail with
    /// `EIO`.
    pub fn fail_sync_from(&self, n: u64) {
        self.state.lock().fail_sync_from = Some(n);
    }

    /// Makes every `sync_data` take this long (like a real disk), so group commit has
    /// something to batch behind.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.state.lock().sync_delay = delay;
    }

    /// How many `sync_data` calls were made.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }

    /// Overwrites bytes of a file, durably (for corruption tests).
    ///
    /// # Panics
    /// When `path` is not a file (a test's mistake).
    pub fn poke(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let mut s = self.state.lock();
        let Some(Node::File(i)) = s.names.get(path).copied() else {
            panic!("poke: {} is not a file", path.display());
        };
        let inode = &mut s.inodes[i];
        for img in [&mut inode.data, &mut inode.synced] {
            let end = offset as usize + bytes.len();
            if img.len() < end {
                img.resize(end, 0);
            }
            img[offset as usize..end].copy_from_slice(bytes);
        }
    }

    /// The current contents of a file (including unsynced writes).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        match s.names.get(path) {
            Some(Node::File(i)) => Some(s.inodes[*i].data.clone()),
            _ => None,
        }
    }

    /// Every file, with its full path.
    pub fn files(&self) -> Vec<PathBuf> {
        let s = self.state.lock();
        s.names
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The file system a restarted machine would find after a crash now, with unsynced data
    /// treated according to `mode`; `seed` picks where torn writes are cut.
    pub fn crash_image(&self, mode: CrashMode, seed: u64) -> MemFs {
        let s = self.state.lock();
        let mut rng = SplitMix(seed);
        let mut inodes = Vec::new();
        let mut names = BTreeMap::new();
        let mut remap: BTreeMap<usize, usize> = BTreeMap::new();
        for (path, node) in &s.durable {
            let reachable = path
                .ancestors()
                .skip(1)
                .all(|a| s.durable.get(a) == Some(&Node::Dir));
            if !reachable {
                continue;
            }
            let node = match *node {
                Node::Dir => Node::Dir,
                Node::File(old) => Node::File(*remap.entry(old).or_insert_with(|| {
                    let img = crashed_image(&s.inodes[old], mode, &mut rng);
                    inodes.push(Inode {
                        data: img.clone(),
                        synced: img,
                        pending: Vec::new(),
                    });
                    inodes.len() - 1
                })),
            };
            names.insert(path.clone(), node);
        }
        MemFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                durable: names.clone(),
                names,
                ..State::default()
            })),
        }
    }
}

/// The bytes of one file after a crash.
fn crashed_image(inode: &Inode, mode: CrashMode, rng: &mut SplitMix) -> Vec<u8> {
    let mut img = inode.synced.clone();
    if mode == CrashMode::LoseUnsynced || inode.pending.is_empty() {
        return img;
    }
    // The pending operations in sector-sized pieces, in the order they were made.
    let mut pieces: Vec<Pending> = Vec::new();
    for p in &inode.pending {
        match p {
            Pending::SetLen(_) => pieces.push(p.clone()),
            Pending::Write { offset, data } => {
                let mut off = *offset;
                for chunk in split_at_sectors(*offset, data) {
                    pieces.push(Pending::Write {
                        offset: off,
                        data: chunk.to_vec(),
                    });
                    off += chunk.len() as u64;
                }
            }
        }
    }
    let keep = (rng.next() % (pieces.len() as u64 + 1)) as usize;
    for (i, piece) in pieces.into_iter().enumerate() {
        match piece {
            Pending::SetLen(len) if i < keep => img.resize(len as usize, 0),
            Pending::SetLen(_) => {}
            Pending::Write { offset, mut data } => {
                if i >= keep {
                    match mode {
                        CrashMode::LoseUnsynced | CrashMode::TornPrefix => continue,
                        CrashMode::ZeroedTail => data.fill(0),
                        CrashMode::GarbageTail => {
                            data.iter_mut().for_each(|b| *b = rng.next() as u8)
                        }
                    }
                }
                let end = offset as usize + data.len();
                if img.len() < end {
                    img.resize(end, 0);
                }
                img[offset as usize..end].copy_from_slice(&data);
            }
        }
    }
    img
}

/// `data` written at `offset`, cut where it crosses sector boundaries.
fn split_at_sectors(offset: u64, data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut off, mut rest) = (offset, data);
    while !rest.is_empty() {
        let n = ((SECTOR - off % SECTOR) as usize).min(rest.len());
        out.push(&rest[..n]);
        off += n as u64;
        rest = &rest[n..];
    }
    out
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

struct MemFile {
    state: Arc<Mutex<State>>,
    inode: usize,
}

impl FsFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.state.lock();
        if s.crashed {
            return Err(gone());
        }
        let data = &s.inodes[self.inode].data;
        let Some(avail) = data.len().checked_sub(offset as usize) else {
            return Ok(0);
        };
        let n = buf.len().min(avail);
        buf[..n].copy_from_slice(&data[offset as usize..offset as usize + n]);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.op()?;
        let inode = &mut s.inodes[self.inode];
        let end = offset as usize + buf.len();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[offset as usize..end].copy_from_slice(buf);
        inode.pending.push(Pending::Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let delay = self.state.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut s = self.state.lock();
        s.op()?;
        s.syncs += 1;
        if s.fail_sync_from.is_some_and(|n| s.syncs >= n) {
            return Err(io::Error::from_raw_os_error(5));
        }
        let inode = &mut s.inodes[self.inode];
        inode.synced = inode.data.clone();
        inode.pending.clear();
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.op()?;
        let inode = &mut s.inodes[self.inode];
        inode.data.resize(len as usize, 0);
        inode.pending.push(Pending::SetLen(len));
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().inodes[self.inode].data.len() as u64)
    }
}

impl MemFs {
    fn handle(&self, inode: usize) -> Arc<dyn FsFile> {
        Arc::new(MemFile {
            state: self.state.clone(),
            inode,
        })
    }
}

impl Fs for MemFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let i = self.state.lock().new_file(path)?;
        Ok(self.handle(i))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let i = self.state.lock().file(path)?;
        Ok(self.handle(i))
    }
    fn open_or_create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let mut s = self.state.lock();
        let i = match s.file(path) {
            Ok(i) => i,
            Err(e) if e.kind() == io::ErrorKind::NotFound => s.new_file(path)?,
            Err(e) => return Err(e),
        };
        drop(s);
        Ok(self.handle(i))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        let i = s.file(from)?;
        s.check_parent(to)?;
        s.op()?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), Node::File(i));
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.file(path)?;
        s.op()?;
        s.names.remove(path);
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.names.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        s.op()?;
        s.names.retain(|p, _| !p.starts_with(path));
        Ok(())
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty() && !s.names.contains_key(*a))
            .map(Path::to_path_buf)
            .collect();
        if missing.is_empty() {
            return match s.names.get(dir) {
                Some(Node::Dir) => Ok(()),
                _ => Err(io::Error::other(format!("{} is a file", dir.display()))),
            };
        }
        s.op()?;
        for d in missing {
            s.names.insert(d.clone(), Node::Dir);
            s.durable.insert(d, Node::Dir);
        }
        Ok(())
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let s = self.state.lock();
        if s.crashed {
            return Err(gone());
        }
        if s.names.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .filter_map(|(p, n)| {
                Some(DirEntry {
                    name: p.file_name()?.to_str()?.to_owned(),
                    is_dir: *n == Node::Dir,
                })
            })
            .collect())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.names.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        s.op()?;
        let State { names, durable, .. } = &mut *s;
        // Subdirectories removed since: their durable contents go with them.
        let removed: Vec<PathBuf> = durable
            .iter()
            .filter(|(p, n)| p.parent() == Some(dir) && **n == Node::Dir && !names.contains_key(*p))
            .map(|(p, _)| p.clone())
            .collect();
        for r in removed {
            durable.retain(|p, _| !p.starts_with(&r));
        }
        durable.retain(|p, _| p.parent() != Some(dir));
        for (p, n) in names.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), *n);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_names_renames_and_data_vanish() {
        let fs = MemFs::new();
        let dir = Path::new("/s");
        fs.create_dir_all(&dir.join("tmp")).unwrap();
        let a = fs.create(&dir.join("a")).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_at(b"world", 5).unwrap();
        let t = fs.create(&dir.join("tmp/t")).unwrap();
        t.write_at(b"new", 0).unwrap();
        t.sync_data().unwrap();
        fs.rename(&dir.join("tmp/t"), &dir.join("a")).unwrap();
        let img = fs.crash_image(CrashMode::LoseUnsynced, 1);
        // The rename was never made durable: the old file is still there, synced part only.
        assert_eq!(img.read(&dir.join("a")).unwrap(), b"hello");
        assert!(img.read(&dir.join("tmp/t")).is_none());
        fs.sync_dir(dir).unwrap();
        let img = fs.crash_image(CrashMode::LoseUnsynced, 1);
        assert_eq!(img.read(&dir.join("a")).unwrap(), b"new");
    }

    #[test]
    fn removed_directories_come_back_until_their_parent_is_synced() {
        let fs = MemFs::new();
        let dir = Path::new("/s/tmp/incoming-x");
        fs.create_dir_all(dir).unwrap();
        let f = fs.create(&dir.join("data")).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        fs.remove_dir_all(dir).unwrap();
        assert!(fs.read(&dir.join("data")).is_none());
        let img = fs.crash_image(CrashMode::LoseUnsynced, 0);
        assert!(img.read(&dir.join("data")).is_some());
        fs.sync_dir(Path::new("/s/tmp")).unwrap();
        let img = fs.crash_image(CrashMode::LoseUnsynced, 0);
        assert!(img.read(&dir.join("data")).is_none());
    }

    #[test]
    fn torn_writes_keep_a_sector_prefix_and_crashes_stick() {
        let fs = MemFs::new();
        let a = fs.create(Path::new("/a")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        a.write_at(&[7u8; 2048], 0).unwrap();
        for seed in 0..20 {
            let data = fs
                .crash_image(CrashMode::TornPrefix, seed)
                .read(Path::new("/a"))
                .unwrap();
            assert_eq!(data.len() % 512, 0);
            assert!(data.iter().all(|&b| b == 7));
        }
        fs.crash_at(fs.ops() + 1);
        assert!(a.write_at(b"x", 0).is_err());
        assert!(fs.crashed());
        assert!(fs.open(Path::new("/a")).is_err());
    }

    #[test]
    fn failing_syncs_answer_eio_and_pokes_are_durable() {
        let fs = MemFs::new();
        let a = fs.create(Path::new("/a")).unwrap();
        a.write_at(b"abc", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.fail_sync_from(2);
        assert_eq!(a.sync_data().unwrap_err().raw_os_error(), Some(5));
        assert_eq!(fs.syncs(), 2);
        fs.poke(Path::new("/a"), 1, b"X");
        let img = fs.crash_image(CrashMode::LoseUnsynced, 0);
        assert_eq!(img.read(Path::new("/a")).unwrap(), b"aXc");
    }

    #[test]
    fn list_names_files_only() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d/sub")).unwrap();
        fs.create(Path::new("/d/f")).unwrap();
        assert_eq!(fs.list(Path::new("/d")).unwrap(), vec!["f".to_owned()]);
        assert!(fs.create(Path::new("/missing/f")).is_err());
    }
}
