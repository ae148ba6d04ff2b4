//! The file system model: every inode twice, as processes see it (`live`) and as it would be
//! found after a power loss (`durable`). Writes, truncations, creations, renames and
//! unlinks change only the live tree; an fsync copies what it covers to the durable tree;
//! [`Model::crash`] replaces the live tree with the durable one.
//!
//! What an fsync covers:
//! - `fsync`/`fdatasync` of a file: its data and size (both calls alike);
//! - `fsync` of a directory: its list of entries (names and the inodes they point to; an
//!   inode that had no durable state yet comes back empty: a file of length 0, a
//!   directory with no entries);
//! - by default (the rule ext4 with `data=ordered` follows in practice, where an fsync
//!   commits the journal, which holds the earlier metadata changes), an fsync of a file or
//!   directory also makes durable the directory entries that name it now, and those of the
//!   directories above it: a file created or renamed and then fsynced is found under its new
//!   name, and not under the old. With [`DirRule::Strict`] only an fsync of the directory
//!   itself makes its entries durable (POSIX's letter).
//!
//! Nothing else is durable: a write never followed by an fsync of its file is lost, whole
//! (no torn prefix survives), and so is a name never made durable.
//!
//! Just over 700 lines on purpose: the two trees and every operation on them are one
//! invariant (what an fsync copies and a crash restores), read together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// The root directory's inode number (FUSE's).
pub const ROOT: u64 = 1;

/// What makes a directory entry durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirRule {
    /// An fsync of a file or directory also makes durable the entries that name it and
    /// those of its ancestors (ext4 `data=ordered` in practice).
    Ordered,
    /// Only an fsync of the directory makes its entries durable.
    Strict,
}

/// Why an operation failed (each maps to one errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// ENOENT.
    NotFound,
    /// EEXIST.
    Exists,
    /// ENOTDIR.
    NotDir,
    /// EISDIR.
    IsDir,
    /// ENOTEMPTY.
    NotEmpty,
    /// EINVAL.
    Invalid,
    /// EOPNOTSUPP.
    Unsupported,
}

impl FsError {
    /// The errno.
    pub fn errno(self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid => libc::EINVAL,
            FsError::Unsupported => libc::EOPNOTSUPP,
        }
    }
}

/// A result of the model.
pub type Result<T> = std::result::Result<T, FsError>;

/// A file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// What `stat` shows of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// The inode number.
    pub ino: u64,
    /// File or directory.
    pub kind: Kind,
    /// Bytes (files), entries (directories).
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last change of the content.
    pub mtime: SystemTime,
}

#[derive(Clone, Debug)]
enum Content {
    /// The bytes, and the range written or resized since the last fsync (a cover: bytes
    /// outside it are equal in the live and the durable copy).
    File {
        data: Vec<u8>,
        dirty: Option<(u64, u64)>,
    },
    Dir(BTreeMap<OsString, u64>),
}

#[derive(Clone, Debug)]
struct Node {
    content: Content,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    /// The entries that name it: (directory, name).
    links: BTreeSet<(u64, OsString)>,
}

impl Node {
    fn new(kind: Kind, perm: u16, uid: u32, gid: u32) -> Node {
        Node {
            content: match kind {
                Kind::File => Content::File {
                    data: Vec::new(),
                    dirty: None,
                },
                Kind::Dir => Content::Dir(BTreeMap::new()),
            },
            perm,
            uid,
            gid,
            mtime: SystemTime::now(),
            links: BTreeSet::new(),
        }
    }

    fn kind(&self) -> Kind {
        match self.content {
            Content::File { .. } => Kind::File,
            Content::Dir(_) => Kind::Dir,
        }
    }

    /// The same inode as it is before anything was made durable: empty, no links.
    fn empty_like(&self) -> Node {
        Node::new(self.kind(), self.perm, self.uid, self.gid)
    }
}

type Tree = HashMap<u64, Node>;

/// A byte range `[from, to)` of a file changed since its last fsync.
type Dirty = (u64, u64);

fn dir_entries(tree: &Tree, ino: u64) -> Result<&BTreeMap<OsString, u64>> {
    match &tree.get(&ino).ok_or(FsError::NotFound)?.content {
        Content::Dir(e) => Ok(e),
        Content::File { .. } => Err(FsError::NotDir),
    }
}

fn dir_entries_mut(tree: &mut Tree, ino: u64) -> Result<&mut BTreeMap<OsString, u64>> {
    match &mut tree.get_mut(&ino).ok_or(FsError::NotFound)?.content {
        Content::Dir(e) => Ok(e),
        Content::File { .. } => Err(FsError::NotDir),
    }
}

/// Sets `dir/name` in `tree` to `target` (`None`: removes it), keeping the links of the
/// inodes named before and after in step.
fn set_entry(tree: &mut Tree, dir: u64, name: &OsStr, target: Option<u64>) {
    let Ok(entries) = dir_entries_mut(tree, dir) else {
        return;
    };
    let old = match target {
        Some(t) => entries.insert(name.to_os_string(), t),
        None => entries.remove(name),
    };
    if old == target {
        return;
    }
    let key = (dir, name.to_os_string());
    if let Some(old) = old
        && let Some(n) = tree.get_mut(&old)
    {
        n.links.remove(&key);
    }
    if let Some(t) = target
        && let Some(n) = tree.get_mut(&t)
    {
        n.links.insert(key);
    }
}

/// What a power loss dropped ([`Model::crash`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Inodes that existed and are gone (never made durable, or no longer named).
    pub inodes_lost: u64,
    /// Files whose content went back to their last fsync.
    pub files_rolled_back: u64,
    /// Bytes written or resized since the last fsync of their file (the dirty ranges).
    pub unsynced_bytes: u64,
}

/// Counters since the file system started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// fsyncs and fdatasyncs of files.
    pub fsyncs: u64,
    /// fsyncs of directories.
    pub dir_fsyncs: u64,
    /// Power losses.
    pub crashes: u64,
    /// Files (bytes of file content) in the live tree.
    pub live_bytes: u64,
}

/// The in-memory file system with its durable shadow.
#[derive(Debug)]
pub struct Model {
    live: Tree,
    durable: Tree,
    rule: DirRule,
    next_ino: u64,
    /// Open handles per inode (an unlinked inode lives on while open).
    open: HashMap<u64, u32>,
    stats: Stats,
}

impl Model {
    /// An empty file system (the root directory, durable) owned by `uid`/`gid`.
    pub fn new(rule: DirRule, uid: u32, gid: u32) -> Model {
        let root = Node::new(Kind::Dir, 0o755, uid, gid);
        let mut live = Tree::new();
        live.insert(ROOT, root.clone());
        let mut durable = Tree::new();
        durable.insert(ROOT, root);
        Model {
            live,
            durable,
            rule,
            next_ino: ROOT + 1,
            open: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn node(&self, ino: u64) -> Result<&Node> {
        self.live.get(&ino).ok_or(FsError::NotFound)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.live.get_mut(&ino).ok_or(FsError::NotFound)
    }

    /// `stat` of an inode.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let n = self.node(ino)?;
        let (size, nlink) = match &n.content {
            Content::File { data, .. } => (data.len() as u64, n.links.len() as u32),
            Content::Dir(e) => {
                let subdirs = e
                    .values()
                    .filter(|i| self.live.get(i).is_some_and(|n| n.kind() == Kind::Dir))
                    .count();
                (e.len() as u64, 2 + subdirs as u32)
            }
        };
        Ok(Attr {
            ino,
            kind: n.kind(),
            size,
            perm: n.perm,
            nlink,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
        })
    }

    /// The inode `name` in directory `parent` names.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr> {
        let ino = *dir_entries(&self.live, parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        self.getattr(ino)
    }

    fn add(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<Attr> {
        if dir_entries(&self.live, parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.live.insert(ino, node);
        set_entry(&mut self.live, parent, name, Some(ino));
        self.touch(parent);
        self.getattr(ino)
    }

    fn touch(&mut self, ino: u64) {
        if let Some(n) = self.live.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
    }

    /// Creates an empty file `name` in `parent` (`EEXIST` if the name is taken).
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        self.add(parent, name, Node::new(Kind::File, perm, uid, gid))
    }

    /// Creates an empty directory.
    pub fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        self.add(parent, name, Node::new(Kind::Dir, perm, uid, gid))
    }

    /// Removes the file `name` from `parent` (the inode lives on while open).
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = *dir_entries(&self.live, parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(FsError::IsDir);
        }
        set_entry(&mut self.live, parent, name, None);
        self.touch(parent);
        self.forget_if_unused(ino);
        Ok(())
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = *dir_entries(&self.live, parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        if !dir_entries(&self.live, ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        set_entry(&mut self.live, parent, name, None);
        self.touch(parent);
        self.forget_if_unused(ino);
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing what that named (a file,
    /// or an empty directory); `no_replace`: `EEXIST` instead.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        let ino = *dir_entries(&self.live, parent)?
            .get(name)
            .ok_or(FsError::NotFound)?;
        let kind = self.node(ino)?.kind();
        let old = dir_entries(&self.live, new_parent)?.get(new_name).copied();
        if old == Some(ino) {
            return Ok(());
        }
        if kind == Kind::Dir {
            // A directory cannot move below itself.
            let mut at = new_parent;
            while at != ROOT {
                if at == ino {
                    return Err(FsError::Invalid);
                }
                at = match self.node(at)?.links.iter().next() {
                    Some((p, _)) => *p,
                    None => break,
                };
            }
        }
        if let Some(old) = old {
            if no_replace {
                return Err(FsError::Exists);
            }
            match (kind, self.node(old)?.kind()) {
                (Kind::Dir, Kind::File) => return Err(FsError::NotDir),
                (Kind::File, Kind::Dir) => return Err(FsError::IsDir),
                (Kind::Dir, Kind::Dir) if !dir_entries(&self.live, old)?.is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                _ => {}
            }
        }
        set_entry(&mut self.live, parent, name, None);
        set_entry(&mut self.live, new_parent, new_name, Some(ino));
        self.touch(parent);
        self.touch(new_parent);
        if let Some(old) = old {
            self.forget_if_unused(old);
        }
        Ok(())
    }

    /// Drops an inode no entry names and no handle holds (from the live tree only).
    fn forget_if_unused(&mut self, ino: u64) {
        let unused = self.live.get(&ino).is_some_and(|n| n.links.is_empty())
            && self.open.get(&ino).is_none_or(|&c| c == 0)
            && ino != ROOT;
        if unused {
            self.live.remove(&ino);
            self.open.remove(&ino);
        }
    }

    /// Notes an open handle of `ino`.
    pub fn open(&mut self, ino: u64) -> Result<()> {
        self.node(ino)?;
        *self.open.entry(ino).or_insert(0) += 1;
        Ok(())
    }

    /// Notes that a handle of `ino` was closed.
    pub fn release(&mut self, ino: u64) {
        if let Some(c) = self.open.get_mut(&ino) {
            *c = c.saturating_sub(1);
        }
        self.forget_if_unused(ino);
    }

    /// The entries of a directory, by name.
    pub fn readdir(&self, ino: u64) -> Result<Vec<(OsString, u64, Kind)>> {
        Ok(dir_entries(&self.live, ino)?
            .iter()
            .map(|(name, &i)| {
                let kind = self.live.get(&i).map_or(Kind::File, Node::kind);
                (name.clone(), i, kind)
            })
            .collect())
    }

    /// The parent of a directory (the root's is itself).
    pub fn parent(&self, ino: u64) -> u64 {
        self.live
            .get(&ino)
            .and_then(|n| n.links.iter().next())
            .map_or(ROOT, |(p, _)| *p)
    }

    fn file_mut(&mut self, ino: u64) -> Result<(&mut Vec<u8>, &mut Option<Dirty>)> {
        match &mut self.node_mut(ino)?.content {
            Content::File { data, dirty } => Ok((data, dirty)),
            Content::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// Up to `size` bytes from `offset`.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8]> {
        match &self.node(ino)?.content {
            Content::File { data, .. } => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(&data[start..end])
            }
            Content::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// Writes `buf` at `offset` (a hole before it reads as zeros).
    pub fn write(&mut self, ino: u64, offset: u64, buf: &[u8]) -> Result<usize> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(FsError::Invalid)?;
        let (data, dirty) = self.file_mut(ino)?;
        let old_len = data.len() as u64;
        if end > old_len {
            data.resize(end as usize, 0);
        }
        data[offset as usize..end as usize].copy_from_slice(buf);
        // A hole between the old end and the write is changed too.
        widen(dirty, offset.min(old_len), end);
        self.touch(ino);
        self.stats.writes += 1;
        self.stats.bytes_written += buf.len() as u64;
        Ok(buf.len())
    }

    /// Truncates or extends (with zeros) to `len`.
    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<()> {
        let (data, dirty) = self.file_mut(ino)?;
        let old = data.len() as u64;
        data.resize(len as usize, 0);
        if len > old {
            widen(dirty, old, len);
        } else if len < old {
            // The length itself is the change; the durable copy is cut at the next fsync.
            widen(dirty, len, len);
        }
        self.touch(ino);
        Ok(())
    }

    /// `fallocate` with mode 0: extends the file to `offset + len` if shorter.
    pub fn allocate(&mut self, ino: u64, offset: u64, len: u64) -> Result<()> {
        let end = offset.checked_add(len).ok_or(FsError::Invalid)?;
        let cur = self.file_mut(ino)?.0.len() as u64;
        if end > cur {
            self.set_len(ino, end)?;
        }
        Ok(())
    }

    /// Sets the permission bits, owner or modification time.
    pub fn set_meta(
        &mut self,
        ino: u64,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
        mtime: Option<SystemTime>,
    ) -> Result<()> {
        let n = self.node_mut(ino)?;
        if let Some(p) = perm {
            n.perm = p;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        if let Some(t) = mtime {
            n.mtime = t;
        }
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file (or `fsync` of a directory, as
    /// [`fsync_dir`](Self::fsync_dir)).
    pub fn fsync(&mut self, ino: u64) -> Result<()> {
        let live = self.node(ino)?;
        if live.kind() == Kind::Dir {
            return self.fsync_dir(ino);
        }
        let (perm, uid, gid, mtime) = (live.perm, live.uid, live.gid, live.mtime);
        let empty = live.empty_like();
        self.stats.fsyncs += 1;
        let dur = self.durable.entry(ino).or_insert(empty);
        (dur.perm, dur.uid, dur.gid, dur.mtime) = (perm, uid, gid, mtime);
        let Some(Node {
            content: Content::File { data, dirty },
            ..
        }) = self.live.get_mut(&ino)
        else {
            return Err(FsError::NotFound);
        };
        if let Some((from, to)) = dirty.take()
            && let Content::File { data: d, .. } = &mut dur.content
        {
            d.resize(data.len(), 0);
            let to = (to as usize).min(data.len());
            let from = (from as usize).min(to);
            d[from..to].copy_from_slice(&data[from..to]);
        }
        if self.rule == DirRule::Ordered {
            self.sync_links(ino, 0);
        }
        Ok(())
    }

    /// `fsync` of a directory: its entries become durable (and, with
    /// [`DirRule::Ordered`], the entries naming it and its ancestors).
    pub fn fsync_dir(&mut self, ino: u64) -> Result<()> {
        let live = dir_entries(&self.live, ino)?.clone();
        self.stats.dir_fsyncs += 1;
        self.ensure_durable(ino);
        let old = dir_entries(&self.durable, ino)?.clone();
        for (name, &t) in &old {
            if live.get(name) != Some(&t) {
                set_entry(&mut self.durable, ino, name, None);
            }
        }
        for (name, &t) in &live {
            if old.get(name) != Some(&t) {
                self.ensure_durable(t);
                set_entry(&mut self.durable, ino, name, Some(t));
            }
        }
        if self.rule == DirRule::Ordered {
            self.sync_links(ino, 0);
        }
        Ok(())
    }

    /// Gives `ino` a durable inode (empty) if it has none.
    fn ensure_durable(&mut self, ino: u64) {
        if !self.durable.contains_key(&ino)
            && let Some(n) = self.live.get(&ino)
        {
            let empty = n.empty_like();
            self.durable.insert(ino, empty);
        }
    }

    /// Makes the live entries naming `ino`, and those naming its ancestors, durable; the
    /// durable entries naming it that no longer exist are removed.
    fn sync_links(&mut self, ino: u64, depth: u32) {
        if ino == ROOT || depth > 256 {
            return;
        }
        let live: BTreeSet<(u64, OsString)> = match self.live.get(&ino) {
            Some(n) => n.links.clone(),
            None => return,
        };
        for (dir, _) in &live {
            self.ensure_durable(*dir);
            self.sync_links(*dir, depth + 1);
        }
        self.ensure_durable(ino);
        let durable = self.durable.get(&ino).map(|n| n.links.clone());
        for (dir, name) in durable.unwrap_or_default() {
            if !live.contains(&(dir, name.clone())) {
                set_entry(&mut self.durable, dir, &name, None);
            }
        }
        for (dir, name) in &live {
            set_entry(&mut self.durable, *dir, name, Some(ino));
        }
    }

    /// A power loss: the live tree becomes what is durable, restricted to what the root
    /// reaches. Every open handle is forgotten (the processes holding them are gone).
    pub fn crash(&mut self) -> CrashReport {
        let mut report = CrashReport::default();
        let mut reach = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(i) = stack.pop() {
            if !reach.insert(i) {
                continue;
            }
            if let Some(Node {
                content: Content::Dir(e),
                ..
            }) = self.durable.get(&i)
            {
                stack.extend(e.values().copied());
            }
        }
        self.durable.retain(|i, _| reach.contains(i));
        for n in self.durable.values_mut() {
            n.links.retain(|(d, _)| reach.contains(d));
        }
        for (ino, n) in &self.live {
            if !self.durable.contains_key(ino) {
                report.inodes_lost += 1;
            } else if let Content::File {
                dirty: Some((a, b)),
                ..
            } = &n.content
            {
                report.files_rolled_back += 1;
                report.unsynced_bytes += b.saturating_sub(*a);
            }
        }
        self.live = self.durable.clone();
        self.open.clear();
        self.stats.crashes += 1;
        report
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.live_bytes = self
            .live
            .values()
            .map(|n| match &n.content {
                Content::File { data, .. } => data.len() as u64,
                Content::Dir(_) => 0,
            })
            .sum();
        s
    }

    /// The directory rule in force.
    pub fn rule(&self) -> DirRule {
        self.rule
    }
}

/// Widens the dirty cover to include `[from, to)` (an empty range still marks `from`).
fn widen(dirty: &mut Option<Dirty>, from: u64, to: u64) {
    *dirty = Some(match *dirty {
        None => (from, to),
        Some((a, b)) => (a.min(from), b.max(to)),
    });
}

#[cfg(test)]
mod tests;
