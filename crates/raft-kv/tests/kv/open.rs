//! Opening a store whose directory another store still holds.

use raft_kv::{KvStore, LOCK_WAIT};
use std::time::{Duration, Instant};

/// A store dropped while another open waits is opened as soon as its lock is released
/// (sled's threads may hold it for a moment after the drop, as at an in-process restart).
#[test]
fn open_waits_for_a_lock_released_soon() {
    let dir = tempfile::tempdir().unwrap();
    let first = KvStore::open(dir.path()).unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
    });
    let second = KvStore::open(dir.path()).expect("opened once the first store let go");
    released.join().unwrap();
    assert_eq!(second.applied_index(), 0);
}

/// A lock held for longer than [`LOCK_WAIT`] gives an error that names the lock.
#[test]
fn open_refuses_a_directory_held_by_another_store() {
    let dir = tempfile::tempdir().unwrap();
    let _first = KvStore::open(dir.path()).unwrap();
    let start = Instant::now();
    let err = KvStore::open(dir.path())
        .err()
        .expect("the directory is in use");
    assert!(
        start.elapsed() >= LOCK_WAIT,
        "it waited {:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("could not acquire lock"), "{err}");
}
