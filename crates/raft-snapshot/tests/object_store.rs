//! The `object_store`-backed [`CloudStore`] against a real S3-compatible server started by
//! the test (s3s-fs in process): small and multipart uploads, streaming downloads, listing
//! under a prefix, deletion, and an outage.

#[path = "support/s3_server.rs"]
mod s3_server;

use raft_snapshot::{Error, MIN_PART_SIZE, ObjectStore, open_object_store};
use s3_server::S3Server;

/// Deterministic bytes that differ at every offset that matters.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect()
}

fn get(store: &dyn ObjectStore, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let n = store.get(name, &mut out).unwrap();
    assert_eq!(n as usize, out.len());
    out
}

#[test]
fn uploads_downloads_lists_and_deletes_on_an_s3_server() {
    let server = S3Server::start();
    let mut config = server.config("cluster-a/node-1");
    config.part_size = MIN_PART_SIZE;
    config.upload_concurrency = 2;
    let store = open_object_store(&config).unwrap();

    // One request for a small object.
    let small = data(1000, 1);
    assert_eq!(
        store
            .put("snapshots/a.json", &mut small.as_slice())
            .unwrap(),
        1000
    );
    assert_eq!(get(&*store, "snapshots/a.json"), small);
    // A multipart upload: two full parts and a short last one, read from a stream.
    let big = data(2 * MIN_PART_SIZE + 12_345, 2);
    let mut reader = std::io::Cursor::new(big.clone());
    assert_eq!(
        store.put("snapshots/b.snap", &mut reader).unwrap(),
        big.len() as u64
    );
    assert_eq!(get(&*store, "snapshots/b.snap"), big);
    // Exactly one part's worth (the multipart path with an empty tail).
    let exact = data(MIN_PART_SIZE, 3);
    store.put("wal/c", &mut exact.as_slice()).unwrap();
    assert_eq!(get(&*store, "wal/c"), exact);
    // Replacing an object.
    store.put("snapshots/a.json", &mut &b"v2"[..]).unwrap();
    assert_eq!(get(&*store, "snapshots/a.json"), b"v2");
    // The objects really sit under the prefix in the bucket.
    assert!(
        server
            .bucket_dir()
            .join("cluster-a/node-1/snapshots/b.snap")
            .exists()
    );

    assert_eq!(
        store.list("snapshots/").unwrap(),
        vec!["snapshots/a.json", "snapshots/b.snap"]
    );
    assert_eq!(store.list("snapshots/b").unwrap(), vec!["snapshots/b.snap"]);
    assert_eq!(store.list("").unwrap().len(), 3);
    assert!(store.list("nothing/").unwrap().is_empty());
    // Another prefix in the same bucket sees none of it.
    let other = open_object_store(&server.config("cluster-b")).unwrap();
    assert!(other.list("").unwrap().is_empty());

    store.delete("snapshots/a.json").unwrap();
    store.delete("snapshots/a.json").unwrap();
    assert_eq!(store.list("snapshots/").unwrap(), vec!["snapshots/b.snap"]);
    match store.get("snapshots/a.json", &mut Vec::new()) {
        Err(Error::ObjectStore { name, .. }) => {
            assert!(name.ends_with("snapshots/a.json"), "{name}")
        }
        other => panic!("expected an object store error, got {other:?}"),
    }
    for bad in ["", "/x", "a//b", "../x", "a/./b"] {
        assert!(store.put(bad, &mut &b""[..]).is_err(), "{bad:?}");
    }
}

#[test]
fn an_outage_fails_requests_after_retries_and_the_store_recovers() {
    let server = S3Server::start();
    let store = open_object_store(&server.config("p")).unwrap();
    store.put("x", &mut &b"before"[..]).unwrap();
    server.set_down(true);
    let before = server.requests();
    let err = store.put("y", &mut &b"during"[..]).unwrap_err();
    assert!(matches!(err, Error::ObjectStore { .. }), "{err}");
    // The crate retried (max_retries = 2) before giving up.
    assert!(
        server.requests() - before >= 3,
        "{}",
        server.requests() - before
    );
    assert!(store.list("").is_err());
    // A multipart upload interrupted by the outage fails and leaves no object behind.
    server.set_down(false);
    let big = data(MIN_PART_SIZE + 10, 4);
    let mut flaky = Interrupting {
        inner: std::io::Cursor::new(big.clone()),
        server: &server,
        at: MIN_PART_SIZE as u64,
        read: 0,
    };
    let mut config = server.config("p");
    config.part_size = MIN_PART_SIZE;
    let multipart = open_object_store(&config).unwrap();
    assert!(multipart.put("z", &mut flaky).is_err());
    server.set_down(false);
    assert_eq!(store.list("").unwrap(), vec!["x"]);
    // After the outage everything works again.
    store.put("y", &mut &b"after"[..]).unwrap();
    multipart.put("z", &mut big.as_slice()).unwrap();
    assert_eq!(get(&*store, "y"), b"after");
    assert_eq!(get(&*store, "z"), big);
}

/// A reader that takes the server down once `at` bytes were read (mid-upload).
struct Interrupting<'a> {
    inner: std::io::Cursor<Vec<u8>>,
    server: &'a S3Server,
    at: u64,
    read: u64,
}

impl std::io::Read for Interrupting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read >= self.at {
            self.server.set_down(true);
        }
        Ok(n)
    }
}
