//! The file system mounted for real (the `raft-lazyfs` binary, through the kernel's FUSE):
//! what a process writes, fsyncs, renames and removes, then a `crash` on the control socket,
//! then what is found. Needs /dev/fuse and root; without them the test says it was skipped
//! and passes, except under `CI=true`, where it fails.

use raft_lazyfs::control::request;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Mounted {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Mounts a fresh file system, or `None` (skipped) where FUSE cannot be used.
fn mount(extra: &[&str]) -> Option<Mounted> {
    let why = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if !is_root() {
        Some("not root (raft-lazyfs mounts with mount(2))")
    } else {
        None
    };
    if let Some(why) = why {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "raft-lazyfs needs FUSE and CI=true: {why}"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipped: {why}");
        }
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    fs::create_dir(&dir).unwrap();
    let socket = tmp.path().join("ctl");
    let child = Command::new(env!("CARGO_BIN_EXE_raft-lazyfs"))
        .arg("mount")
        .arg(&dir)
        .arg("--control")
        .arg(&socket)
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let m = Mounted {
        child,
        dir,
        socket,
        _tmp: tmp,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while request(&m.socket, "ping").is_err() {
        assert!(Instant::now() < deadline, "raft-lazyfs did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(m)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_crash_keeps_what_was_fsynced_and_drops_the_rest() {
    let Some(m) = mount(&[]) else { return };
    let d = &m.dir;
    fs::create_dir_all(d.join("wal")).unwrap();
    // A segment: preallocated and synced, then records written at offsets.
    let seg = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(d.join("wal/seg-1"))
        .unwrap();
    seg.set_len(1 << 20).unwrap();
    seg.write_all_at(b"record-1", 0).unwrap();
    seg.sync_data().unwrap();
    seg.write_all_at(b"record-2", 8).unwrap();
    // A snapshot written to a temporary name, synced, renamed; then a newer one renamed
    // over it without any fsync.
    let mut tmp = File::create(d.join("snap.tmp")).unwrap();
    tmp.write_all(b"snapshot 1").unwrap();
    tmp.sync_all().unwrap();
    fs::rename(d.join("snap.tmp"), d.join("snap")).unwrap();
    File::open(d.join("snap")).unwrap().sync_all().unwrap();
    let mut tmp = File::create(d.join("snap.tmp")).unwrap();
    tmp.write_all(b"snapshot 2").unwrap();
    drop(tmp);
    fs::rename(d.join("snap.tmp"), d.join("snap")).unwrap();
    assert_eq!(read(&d.join("snap")), b"snapshot 2");
    // A file never synced at all.
    fs::write(d.join("scratch"), b"gone").unwrap();
    drop(seg);

    let answer = request(&m.socket, "crash").unwrap();
    assert!(answer.contains("files_rolled_back=1"), "{answer}");

    let seg = read(&d.join("wal/seg-1"));
    assert_eq!(seg.len(), 1 << 20);
    assert_eq!(&seg[..16], b"record-1\0\0\0\0\0\0\0\0");
    assert_eq!(read(&d.join("snap")), b"snapshot 1");
    assert!(!d.join("scratch").exists());
    assert!(!d.join("snap.tmp").exists());
    let stats = request(&m.socket, "stats").unwrap();
    assert!(stats.contains("crashes=1"), "{stats}");
    // The file system works on after a crash.
    fs::write(d.join("after"), b"x").unwrap();
    assert_eq!(read(&d.join("after")), b"x");
}

#[test]
fn strict_dirs_need_the_directory_fsync() {
    let Some(m) = mount(&["--strict-dirs"]) else {
        return;
    };
    let d = &m.dir;
    let mut f = File::create(d.join("a")).unwrap();
    f.write_all(b"a").unwrap();
    f.sync_all().unwrap();
    let mut f = File::create(d.join("b")).unwrap();
    f.write_all(b"b").unwrap();
    f.sync_all().unwrap();
    File::open(d).unwrap().sync_all().unwrap();
    let mut f = File::create(d.join("c")).unwrap();
    f.write_all(b"c").unwrap();
    f.sync_all().unwrap();
    request(&m.socket, "crash").unwrap();
    let mut names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(read(&d.join("b")), b"b");
}

/// raft-fs's `StdFs::create_dir_all` promises durable directories (the WAL and the snapshot
/// store make theirs with it, raftd its data dir, raft-kv its sled dir); `std::fs`'s does
/// not. Under POSIX's letter a crash keeps only the first.
#[test]
fn directories_made_by_raft_fs_survive_a_crash_under_strict_dirs() {
    use raft_fs::Fs as _;
    let Some(m) = mount(&["--strict-dirs"]) else {
        return;
    };
    let d = &m.dir;
    raft_fs::StdFs.create_dir_all(&d.join("data/wal")).unwrap();
    fs::create_dir_all(d.join("plain/wal")).unwrap();
    // A file fsynced into each, as the WAL does with its first segment (and its directory).
    for dir in [d.join("data/wal"), d.join("plain/wal")] {
        let mut f = File::create(dir.join("seg")).unwrap();
        f.write_all(b"entry").unwrap();
        f.sync_all().unwrap();
        File::open(&dir).unwrap().sync_all().unwrap();
    }
    request(&m.socket, "crash").unwrap();
    assert_eq!(read(&d.join("data/wal/seg")), b"entry");
    assert!(
        !d.join("plain").exists(),
        "std::fs::create_dir_all's directory survived without its parent's fsync: the strict \
         rule is not what this test assumes"
    );
}
