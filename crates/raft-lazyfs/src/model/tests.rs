use super::*;

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn fs(rule: DirRule) -> Model {
    Model::new(rule, 0, 0)
}

fn file(m: &mut Model, dir: u64, n: &str) -> u64 {
    m.create(dir, name(n), 0o644, 0, 0).unwrap().ino
}

fn content(m: &Model, ino: u64) -> Vec<u8> {
    m.read(ino, 0, u32::MAX).unwrap().to_vec()
}

fn path(m: &Model, p: &str) -> Result<u64> {
    let mut at = ROOT;
    for part in p.split('/').filter(|s| !s.is_empty()) {
        at = m.lookup(at, name(part))?.ino;
    }
    Ok(at)
}

#[test]
fn writes_read_back_with_holes_as_zeros() {
    let mut m = fs(DirRule::Ordered);
    let f = file(&mut m, ROOT, "a");
    m.write(f, 0, b"hello").unwrap();
    m.write(f, 8, b"xy").unwrap();
    assert_eq!(content(&m, f), b"hello\0\0\0xy");
    assert_eq!(m.read(f, 3, 4).unwrap(), b"lo\0\0");
    assert_eq!(m.read(f, 100, 4).unwrap(), b"");
    assert_eq!(m.getattr(f).unwrap().size, 10);
    m.set_len(f, 2).unwrap();
    assert_eq!(content(&m, f), b"he");
    m.allocate(f, 0, 6).unwrap();
    assert_eq!(content(&m, f), b"he\0\0\0\0");
}

#[test]
fn a_crash_drops_unsynced_writes_and_keeps_synced_ones() {
    let mut m = fs(DirRule::Ordered);
    let f = file(&mut m, ROOT, "wal");
    m.write(f, 0, b"one;").unwrap();
    m.fsync(f).unwrap();
    m.write(f, 4, b"two;").unwrap();
    m.write(f, 0, b"ONE;").unwrap();
    let r = m.crash();
    assert_eq!(r.files_rolled_back, 1);
    assert_eq!(r.unsynced_bytes, 8);
    let f = path(&m, "wal").unwrap();
    assert_eq!(content(&m, f), b"one;");
    // Synced again after the crash: both survive the next one.
    m.write(f, 4, b"two;").unwrap();
    m.fsync(f).unwrap();
    m.crash();
    assert_eq!(content(&m, path(&m, "wal").unwrap()), b"one;two;");
}

#[test]
fn truncation_is_durable_only_after_fsync() {
    let mut m = fs(DirRule::Ordered);
    let f = file(&mut m, ROOT, "seg");
    m.write(f, 0, &[7; 100]).unwrap();
    m.fsync(f).unwrap();
    m.set_len(f, 10).unwrap();
    m.crash();
    let f = path(&m, "seg").unwrap();
    assert_eq!(m.getattr(f).unwrap().size, 100);
    m.set_len(f, 10).unwrap();
    m.write(f, 20, b"z").unwrap();
    m.fsync(f).unwrap();
    m.crash();
    let f = path(&m, "seg").unwrap();
    let mut want = vec![7; 10];
    want.extend([0; 10]);
    want.push(b'z');
    assert_eq!(content(&m, f), want);
}

#[test]
fn a_new_file_never_synced_is_lost() {
    let mut m = fs(DirRule::Ordered);
    let f = file(&mut m, ROOT, "tmp");
    m.write(f, 0, b"data").unwrap();
    let r = m.crash();
    assert_eq!(r.inodes_lost, 1);
    assert_eq!(path(&m, "tmp"), Err(FsError::NotFound));
}

#[test]
fn ordered_rule_a_file_fsync_makes_its_name_and_ancestors_durable() {
    let mut m = fs(DirRule::Ordered);
    let d = m.mkdir(ROOT, name("snap"), 0o755, 0, 0).unwrap().ino;
    let sub = m.mkdir(d, name("x"), 0o755, 0, 0).unwrap().ino;
    let f = file(&mut m, sub, "f");
    let other = file(&mut m, sub, "other");
    m.write(f, 0, b"abc").unwrap();
    m.write(other, 0, b"zzz").unwrap();
    m.fsync(f).unwrap();
    m.crash();
    assert_eq!(content(&m, path(&m, "snap/x/f").unwrap()), b"abc");
    // Not fsynced itself: its name was not made durable by the other's fsync.
    assert_eq!(path(&m, "snap/x/other"), Err(FsError::NotFound));
}

#[test]
fn strict_rule_needs_the_directory_fsync() {
    let mut m = fs(DirRule::Strict);
    let f = file(&mut m, ROOT, "f");
    m.write(f, 0, b"abc").unwrap();
    m.fsync(f).unwrap();
    m.crash();
    assert_eq!(path(&m, "f"), Err(FsError::NotFound));

    let f = file(&mut m, ROOT, "f");
    m.write(f, 0, b"abc").unwrap();
    m.fsync(f).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.crash();
    assert_eq!(content(&m, path(&m, "f").unwrap()), b"abc");
}

#[test]
fn a_directory_fsync_brings_unsynced_files_back_empty() {
    let mut m = fs(DirRule::Strict);
    let f = file(&mut m, ROOT, "f");
    m.write(f, 0, b"abc").unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.crash();
    let f = path(&m, "f").unwrap();
    assert_eq!(content(&m, f), b"");
}

#[test]
fn renames_are_durable_after_an_fsync_and_lost_before() {
    for rule in [DirRule::Ordered, DirRule::Strict] {
        let mut m = fs(rule);
        let f = file(&mut m, ROOT, "snap.tmp");
        m.write(f, 0, b"new").unwrap();
        m.fsync(f).unwrap();
        m.fsync_dir(ROOT).unwrap();
        let old = file(&mut m, ROOT, "snap");
        m.write(old, 0, b"old").unwrap();
        m.fsync(old).unwrap();
        m.fsync_dir(ROOT).unwrap();
        m.rename(ROOT, name("snap.tmp"), ROOT, name("snap"), false)
            .unwrap();
        assert_eq!(path(&m, "snap.tmp"), Err(FsError::NotFound));
        assert_eq!(content(&m, path(&m, "snap").unwrap()), b"new");
        m.crash();
        // The rename was not made durable: both names as before.
        assert_eq!(content(&m, path(&m, "snap").unwrap()), b"old", "{rule:?}");
        assert_eq!(content(&m, path(&m, "snap.tmp").unwrap()), b"new");

        m.rename(ROOT, name("snap.tmp"), ROOT, name("snap"), false)
            .unwrap();
        match rule {
            DirRule::Ordered => m.fsync(path(&m, "snap").unwrap()).unwrap(),
            DirRule::Strict => m.fsync_dir(ROOT).unwrap(),
        }
        m.crash();
        assert_eq!(content(&m, path(&m, "snap").unwrap()), b"new", "{rule:?}");
        assert_eq!(path(&m, "snap.tmp"), Err(FsError::NotFound), "{rule:?}");
    }
}

#[test]
fn unlink_is_undone_by_a_crash_unless_synced() {
    let mut m = fs(DirRule::Ordered);
    let f = file(&mut m, ROOT, "old-segment");
    m.write(f, 0, b"entries").unwrap();
    m.fsync(f).unwrap();
    m.unlink(ROOT, name("old-segment")).unwrap();
    m.crash();
    assert_eq!(content(&m, path(&m, "old-segment").unwrap()), b"entries");
    m.unlink(ROOT, name("old-segment")).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.crash();
    assert_eq!(path(&m, "old-segment"), Err(FsError::NotFound));
}

#[test]
fn an_open_unlinked_file_lives_until_released() {
    let mut m = fs(DirRule::Ordered);
    let f = file(&mut m, ROOT, "f");
    m.open(f).unwrap();
    m.write(f, 0, b"x").unwrap();
    m.unlink(ROOT, name("f")).unwrap();
    assert_eq!(content(&m, f), b"x");
    assert_eq!(m.getattr(f).unwrap().nlink, 0);
    m.release(f);
    assert_eq!(m.getattr(f), Err(FsError::NotFound));
}

#[test]
fn directory_operations_check_their_arguments() {
    let mut m = fs(DirRule::Ordered);
    let d = m.mkdir(ROOT, name("d"), 0o755, 0, 0).unwrap().ino;
    let f = file(&mut m, d, "f");
    assert_eq!(
        m.create(d, name("f"), 0o644, 0, 0).unwrap_err(),
        FsError::Exists
    );
    assert_eq!(m.rmdir(ROOT, name("d")), Err(FsError::NotEmpty));
    assert_eq!(m.unlink(ROOT, name("d")), Err(FsError::IsDir));
    assert_eq!(
        m.rename(ROOT, name("d"), d, name("below"), false),
        Err(FsError::Invalid)
    );
    let g = file(&mut m, ROOT, "g");
    assert_eq!(
        m.rename(ROOT, name("g"), d, name("f"), true),
        Err(FsError::Exists)
    );
    m.rename(ROOT, name("g"), d, name("f"), false).unwrap();
    assert_eq!(path(&m, "d/f").unwrap(), g);
    assert_eq!(m.getattr(f), Err(FsError::NotFound));
    assert_eq!(m.write(d, 0, b"x"), Err(FsError::IsDir));
    assert_eq!(m.lookup(g, name("x")), Err(FsError::NotDir));
    let names: Vec<_> = m.readdir(d).unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec![OsString::from("f")]);
    assert_eq!(m.parent(d), ROOT);
    assert_eq!(m.getattr(ROOT).unwrap().nlink, 3);
}

#[test]
fn a_crash_after_a_directory_was_replaced_keeps_the_tree_consistent() {
    let mut m = fs(DirRule::Ordered);
    let d = m.mkdir(ROOT, name("db"), 0o755, 0, 0).unwrap().ino;
    let f = file(&mut m, d, "conf");
    m.write(f, 0, b"v1").unwrap();
    m.fsync(f).unwrap();
    // The directory removed and made again, nothing synced: the old one comes back.
    m.unlink(d, name("conf")).unwrap();
    m.rmdir(ROOT, name("db")).unwrap();
    let d2 = m.mkdir(ROOT, name("db"), 0o755, 0, 0).unwrap().ino;
    assert_ne!(d, d2);
    m.crash();
    assert_eq!(content(&m, path(&m, "db/conf").unwrap()), b"v1");
    let s = m.stats();
    assert_eq!((s.crashes, s.fsyncs, s.live_bytes), (1, 1, 2));
}
