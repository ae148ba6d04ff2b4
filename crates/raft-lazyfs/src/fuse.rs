//! The FUSE side: the kernel's requests answered from the [`Model`], with no caching in the
//! kernel (entries and attributes time out at once, files are opened with `direct_io`), so
//! that after a power loss ([`State::crash`]) nothing the kernel kept can show the dropped
//! state. File locks (`flock`, `fcntl`) are left to the kernel, which keeps them locally.

use crate::model::{Attr, CrashReport, DirRule, FsError, Kind, Model, Stats};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Entries and attributes are not cached by the kernel.
const TTL: Duration = Duration::ZERO;

/// The model and the open handles, behind one lock.
#[derive(Debug)]
pub struct State {
    model: Model,
    /// Open handles of the current epoch: handle -> inode.
    handles: HashMap<u64, u64>,
    next_handle: u64,
    /// Bumped by every crash: handles of an earlier epoch are stale.
    epoch: u64,
}

impl State {
    /// A new, empty file system.
    pub fn new(rule: DirRule, uid: u32, gid: u32) -> State {
        State {
            model: Model::new(rule, uid, gid),
            handles: HashMap::new(),
            next_handle: 1,
            epoch: 0,
        }
    }

    /// A power loss ([`Model::crash`]); every open handle becomes stale.
    pub fn crash(&mut self) -> CrashReport {
        self.epoch += 1;
        self.handles.clear();
        self.model.crash()
    }

    /// The directory rule in force.
    pub fn rule(&self) -> DirRule {
        self.model.rule()
    }

    /// The counters, and the handles open now.
    pub fn stats(&self) -> (Stats, usize) {
        (self.model.stats(), self.handles.len())
    }

    fn open(&mut self, ino: u64) -> Result<u64, FsError> {
        self.model.open(ino)?;
        let fh = (self.epoch << 40) | self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    fn release(&mut self, fh: u64) {
        if let Some(ino) = self.handles.remove(&fh) {
            self.model.release(ino);
        }
    }
}

/// The file system FUSE serves; [`shared`](Self::shared) is what the control socket uses.
#[derive(Clone, Debug)]
pub struct LazyFs {
    state: Arc<Mutex<State>>,
}

impl LazyFs {
    /// Serves `state`.
    pub fn new(state: Arc<Mutex<State>>) -> LazyFs {
        LazyFs { state }
    }

    /// The state it serves.
    pub fn shared(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }
}

fn errno(e: FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn entry(reply: ReplyEntry, r: Result<Attr, FsError>) {
    match r {
        Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    ((mode & !umask) & 0o7777) as u16
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(reply, self.state.lock().model.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state.lock().model.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state.lock();
        let m = &mut s.model;
        let done = (|| {
            if let Some(len) = size {
                m.set_len(ino.0, len)?;
            }
            let mtime = mtime.map(|t| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => SystemTime::now(),
            });
            m.set_meta(ino.0, mode.map(|m| (m & 0o7777) as u16), uid, gid, mtime)?;
            m.getattr(ino.0)
        })();
        match done {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r =
            self.state
                .lock()
                .model
                .mkdir(parent.0, name, perm(mode, umask), req.uid(), req.gid());
        entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state.lock().model.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state.lock().model.rmdir(parent.0, name));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let r = self
            .state
            .lock()
            .model
            .rename(parent.0, name, newparent.0, newname, no_replace);
        empty(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state.lock().open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state.lock();
        let created = match s.model.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(FsError::Exists),
            Ok(a) if a.kind == Kind::Dir => Err(FsError::IsDir),
            Ok(a) => Ok(a),
            Err(FsError::NotFound) => {
                s.model
                    .create(parent.0, name, perm(mode, umask), req.uid(), req.gid())
            }
            Err(e) => Err(e),
        };
        let opened = created.and_then(|a| Ok((s.open(a.ino)?, a)));
        match opened {
            Ok((fh, a)) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state.lock().model.read(ino.0, offset, size) {
            Ok(data) => reply.data(data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state.lock().model.write(ino.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Closing makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state.lock().release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.state.lock().model.fsync(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.state.lock();
        let entries = match s.model.readdir(ino.0) {
            Ok(e) => e,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        let parent = s.model.parent(ino.0);
        let all = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (parent, FileType::Directory, OsStr::new("..")),
        ]
        .into_iter()
        .chain(entries.iter().map(|(name, i, kind)| {
            let t = match kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            (*i, t, name.as_os_str())
        }));
        // Offsets are positions in this listing (the next entry's), as a snapshot of the
        // directory now.
        for (i, (child, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.state.lock().model.fsync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Memory is the limit; report a large file system with room to spare.
        let used = self.state.lock().model.stats().live_bytes / 4096;
        let blocks = 64 * 1024 * 1024 * 1024 / 4096;
        let free = blocks - used.min(blocks);
        reply.statfs(blocks, free, free, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        empty(reply, self.state.lock().model.getattr(ino.0).map(|_| ()));
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            reply.error(errno(FsError::Unsupported));
            return;
        }
        empty(
            reply,
            self.state.lock().model.allocate(ino.0, offset, length),
        );
    }
}
