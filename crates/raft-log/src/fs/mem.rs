//! An in-memory [`Fs`] that injects the faults real disks produce, for tests.
//!
//! The model: every file has a *synced* image (what survives a crash for sure) and the writes
//! made since its last `sync_data`; every directory has a *durable* name table (as of its last
//! `sync_dir`) and a current one. [`MemFs::crash_image`] builds the file system a machine
//! would find after power loss: durable names only, and for each file its synced image plus,
//! depending on the [`CrashMode`], none, a prefix (at 512-byte sector granularity), a zeroed
//! or a garbage version of the unsynced writes. [`MemFs::crash_at`] makes the N-th mutating
//! operation (create, write, sync, set_len, rename, remove, sync_dir) fail and every later one
//! too, as if the process died there; [`MemFs::fail_sync_from`] makes `sync_data` return `EIO`.

use super::{Fs, FsFile};
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

#[derive(Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    syncs: u64,
    fail_sync_from: Option<u64>,
    sync_delay: std::time::Duration,
}

impl State {
    /// Counts a mutating operation and fails it if the simulated crash is due.
    fn op(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::other("simulated crash: file system is gone"));
        }
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = true;
            return Err(io::Error::other("simulated crash"));
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> io::Result<usize> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display())))
    }
}

/// The fault-injecting in-memory file system. Clones share the same state.
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("MemFs")
            .field("files", &s.names.len())
            .field("ops", &s.ops)
            .field("crashed", &s.crashed)
            .finish()
    }
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many mutating operations have been made so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Makes the `n`-th mutating operation (counting from 1 since creation) fail, and every
    /// operation after it, as if the process crashed there.
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

    /// The current contents of a file (including unsynced writes).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        s.names.get(path).map(|&i| s.inodes[i].data.clone())
    }

    /// Overwrites bytes of a file, durably (for corruption tests).
    pub fn poke(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let mut s = self.state.lock();
        let i = s.names[path];
        let inode = &mut s.inodes[i];
        for img in [&mut inode.data, &mut inode.synced] {
            let end = offset as usize + bytes.len();
            if img.len() < end {
                img.resize(end, 0);
            }
            img[offset as usize..end].copy_from_slice(bytes);
        }
    }

    /// The names of every file, with full paths.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.lock().names.keys().cloned().collect()
    }

    /// The file system a restarted machine would find after a crash now, with unsynced data
    /// treated according to `mode`; `seed` picks where torn writes are cut.
    pub fn crash_image(&self, mode: CrashMode, seed: u64) -> MemFs {
        let s = self.state.lock();
        let mut rng = SplitMix(seed);
        let mut inodes = Vec::new();
        let mut names = BTreeMap::new();
        let mut remap: BTreeMap<usize, usize> = BTreeMap::new();
        for (path, &old) in &s.durable_names {
            let new = *remap.entry(old).or_insert_with(|| {
                let img = crashed_image(&s.inodes[old], mode, &mut rng);
                inodes.push(Inode {
                    data: img.clone(),
                    synced: img,
                    pending: Vec::new(),
                });
                inodes.len() - 1
            });
            names.insert(path.clone(), new);
        }
        MemFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                durable_names: names.clone(),
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
    // Split the pending operations into sector-sized pieces, in the order they were made.
    let mut pieces: Vec<Pending> = Vec::new();
    for p in &inode.pending {
        match p {
            Pending::SetLen(_) => pieces.push(p.clone()),
            Pending::Write { offset, data } => {
                let mut off = *offset;
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let room = (SECTOR - off % SECTOR) as usize;
                    let n = room.min(rest.len());
                    pieces.push(Pending::Write {
                        offset: off,
                        data: rest[..n].to_vec(),
                    });
                    off += n as u64;
                    rest = &rest[n..];
                }
            }
        }
    }
    let keep = (rng.next() % (pieces.len() as u64 + 1)) as usize;
    for (i, piece) in pieces.into_iter().enumerate() {
        match piece {
            Pending::SetLen(len) => {
                if i < keep {
                    img.resize(len as usize, 0);
                }
            }
            Pending::Write { offset, mut data } => {
                if i >= keep {
                    match mode {
                        CrashMode::TornPrefix | CrashMode::LoseUnsynced => continue,
                        CrashMode::ZeroedTail => data.iter_mut().for_each(|b| *b = 0),
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
        let data = &s.inodes[self.inode].data;
        if offset as usize >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - offset as usize);
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

impl Fs for MemFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let mut s = self.state.lock();
        s.op()?;
        s.inodes.push(Inode::default());
        let inode = s.inodes.len() - 1;
        s.names.insert(path.to_path_buf(), inode);
        Ok(Arc::new(MemFile {
            state: self.state.clone(),
            inode,
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let s = self.state.lock();
        if s.crashed {
            return Err(io::Error::other("simulated crash: file system is gone"));
        }
        let inode = s.lookup(path)?;
        Ok(Arc::new(MemFile {
            state: self.state.clone(),
            inode,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.op()?;
        let inode = s.lookup(from)?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), inode);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.op()?;
        s.lookup(path)?;
        s.names.remove(path);
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.op()?;
        let State {
            names,
            durable_names,
            ..
        } = &mut *s;
        durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, &i) in names.iter() {
            if p.parent() == Some(dir) {
                durable_names.insert(p.clone(), i);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_names_and_data_vanish() {
        let fs = MemFs::new();
        let dir = Path::new("/w");
        let a = fs.create(&dir.join("a")).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_at(b"world", 5).unwrap();
        let b = fs.create(&dir.join("b")).unwrap();
        b.sync_data().unwrap();
        let img = fs.crash_image(CrashMode::LoseUnsynced, 1);
        assert_eq!(img.read(&dir.join("a")).unwrap(), b"hello");
        assert!(img.read(&dir.join("b")).is_none());
    }

    #[test]
    fn torn_writes_keep_a_sector_prefix() {
        let fs = MemFs::new();
        let dir = Path::new("/w");
        let a = fs.create(&dir.join("a")).unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_at(&[7u8; 2048], 0).unwrap();
        for seed in 0..20 {
            let img = fs.crash_image(CrashMode::TornPrefix, seed);
            let data = img.read(&dir.join("a")).unwrap();
            assert_eq!(data.len() % 512, 0);
            assert!(data.iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn crash_at_and_eio() {
        let fs = MemFs::new();
        let a = fs.create(Path::new("/w/a")).unwrap();
        fs.fail_sync_from(1);
        assert_eq!(a.sync_data().unwrap_err().raw_os_error(), Some(5));
        fs.crash_at(fs.ops() + 1);
        assert!(a.write_at(b"x", 0).is_err());
        assert!(fs.crashed());
        assert!(a.write_at(b"x", 0).is_err());
    }
}
