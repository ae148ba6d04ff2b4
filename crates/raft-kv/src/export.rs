//! The snapshot file of `Maintenance.Snapshot` (`etcdctl snapshot save`): one member's whole
//! state at one applied index, written from a copy-on-write capture while apply goes on, and
//! read back by `raftd restore`.
//!
//! # File format
//! ```text
//! body   = a full raft-snapshot file (raft_snapshot::FileWriter: magic "RSNP", header with
//!          the applied index, term and membership, zstd blocks of the capture's records,
//!          trailer with counts and a CRC-32C, end magic "RSNE")
//!          ++ zero bytes up to a multiple of 512
//! digest = SHA-256 of body (32 bytes)
//! file   = body ++ digest
//! ```
//! The records are those of a Raft snapshot of the store (see [`crate::snapshot`]): history,
//! internal records (leases, alarms, peer URLs), current entries, metadata. The padding is
//! there because etcdctl 3.4's `snapshot save` refuses a stream whose length is not a
//! multiple of 512 plus the 32 bytes of the digest (etcd's bbolt files are whole pages).
//! It is raftd's format, not a bbolt database: `etcdctl snapshot status` and
//! `etcdctl snapshot restore` cannot read it; `raftd restore --from FILE` can.
//!
//! [`verify_file`] checks the digest, then every block and the trailer of the body, and that
//! the padding is zeros, before anything is restored.

use crate::error::{Error, Result};
use crate::snapshot::SnapshotRecord;
use crate::store::KvStore;
use raft_snapshot::{
    FileHeader, FileReader, FileWriter, MembershipRecord, Record, SnapshotId, SnapshotKind,
    WriterOptions,
};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The body of a snapshot file is padded with zeros to a multiple of this.
pub const PAD: u64 = 512;
/// Length of the SHA-256 digest at the end of a snapshot file.
pub const DIGEST_LEN: u64 = 32;

/// What a snapshot file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    /// The applied index the state is at.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The store revision at that index.
    pub revision: i64,
    /// Bytes of the body (records and padding; the digest not included).
    pub body_len: u64,
    /// Records in the file.
    pub records: u64,
}

/// Counts and hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::BadSnapshotFile(format!("{what}: {e}"))
}

/// Writes a snapshot file of `kv`'s current state to `out` (see the module documentation).
///
/// Takes an export capture ([`KvStore::capture_export`]): apply goes on while the records
/// are written; a Raft snapshot build that starts meanwhile is refused with
/// [`Error::CaptureInProgress`] (and retried by the runtime), a snapshot restore waits for
/// this one to end, and this one is refused while a Raft snapshot is being built.
pub fn write_file(kv: &KvStore, out: impl Write, created_ms: u64) -> Result<ExportInfo> {
    let cap = kv.capture_export()?;
    let info = cap.info.clone();
    let membership = MembershipRecord {
        voters: info
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect(),
        learners: info
            .members
            .iter()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect(),
        ..MembershipRecord::default()
    };
    let header = FileHeader {
        kind: SnapshotKind::Full,
        id: SnapshotId::new(info.index, created_ms),
        parent: None,
        index: info.index,
        term: info.term,
        created_ms,
        membership,
    };
    let out = Hashing {
        inner: out,
        hash: Sha256::new(),
        len: 0,
    };
    let mut w = FileWriter::new(out, "snapshot stream", &header, WriterOptions::default())?;
    let mut records = 0u64;
    for rec in cap.records {
        match rec? {
            SnapshotRecord::Put { key, value } => w.put(&key, &value)?,
            SnapshotRecord::Delete { key } => {
                return Err(Error::corrupt(format!(
                    "a full capture yielded a deletion of {key:?}"
                )));
            }
        }
        records += 1;
    }
    let (mut out, _) = w.finish()?;
    let pad = (PAD - out.len % PAD) % PAD;
    out.write_all(&vec![0u8; pad as usize])
        .map_err(|e| io_err("writing the padding", e))?;
    let digest = out.hash.finalize();
    let body_len = out.len;
    let mut inner = out.inner;
    inner
        .write_all(&digest)
        .map_err(|e| io_err("writing the digest", e))?;
    inner.flush().map_err(|e| io_err("flushing", e))?;
    Ok(ExportInfo {
        index: info.index,
        term: info.term,
        revision: info.revision,
        body_len,
        records,
    })
}

/// Checks a snapshot file: its length, its SHA-256 digest, then its body (header, every
/// block, trailer, zero padding). Refuses a damaged or truncated file with
/// [`Error::BadSnapshotFile`] (or [`Error::SnapshotStore`] naming the damage in the body).
pub fn verify_file(path: &Path) -> Result<ExportInfo> {
    let what = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| io_err(&what, e))?;
    let len = f.metadata().map_err(|e| io_err(&what, e))?.len();
    if len < DIGEST_LEN + PAD || !(len - DIGEST_LEN).is_multiple_of(PAD) {
        return Err(Error::BadSnapshotFile(format!(
            "{what}: {len} bytes is not a raftd snapshot file (a multiple of {PAD} bytes plus \
             a {DIGEST_LEN}-byte SHA-256): truncated or not a snapshot"
        )));
    }
    let body_len = len - DIGEST_LEN;
    let mut hash = Sha256::new();
    std::io::copy(&mut (&mut f).take(body_len), &mut HashSink(&mut hash))
        .map_err(|e| io_err(&what, e))?;
    let mut stored = [0u8; DIGEST_LEN as usize];
    f.read_exact(&mut stored).map_err(|e| io_err(&what, e))?;
    if hash.finalize().as_slice() != stored {
        return Err(Error::BadSnapshotFile(format!(
            "{what}: SHA-256 mismatch: the file is damaged or truncated"
        )));
    }
    f.seek(SeekFrom::Start(0)).map_err(|e| io_err(&what, e))?;
    read_body(f, body_len, &what, |_| Ok(()))
}

/// Replaces `kv`'s state with the snapshot file at `path` after [`verify_file`] accepted
/// it. The store's applied index becomes the file's.
pub fn restore_file(kv: &KvStore, path: &Path) -> Result<ExportInfo> {
    let what = path.display().to_string();
    let verified = verify_file(path)?;
    let f = std::fs::File::open(path).map_err(|e| io_err(&what, e))?;
    let mut restore = kv.restore_begin()?;
    let info = read_body(f, verified.body_len, &what, |rec| match rec {
        Record::Put { key, value } => restore.put(&key, &value),
        Record::Delete { key } => restore.delete(&key),
    })?;
    restore.finish(info.index, info.term)?;
    Ok(ExportInfo {
        revision: kv.revision(),
        ..info
    })
}

/// Reads the body (`body_len` bytes of `input`), handing every record to `each`.
fn read_body(
    input: impl Read,
    body_len: u64,
    what: &str,
    mut each: impl FnMut(Record) -> Result<()>,
) -> Result<ExportInfo> {
    let mut r = FileReader::new(input.take(body_len), what, false)?;
    let header = r.header().clone();
    if header.kind != SnapshotKind::Full {
        return Err(Error::BadSnapshotFile(format!(
            "{what}: holds a delta, not a whole state"
        )));
    }
    let mut records = 0u64;
    let mut revision = 0i64;
    while let Some(rec) = r.next_record()? {
        if let Record::Put { key, value } = &rec
            && key.as_ref() == crate::layout::meta_key(crate::layout::meta::REVISION)
            && let Ok(b) = <[u8; 8]>::try_from(value.as_ref())
        {
            revision = i64::from_be_bytes(b);
        }
        records += 1;
        each(rec)?;
    }
    let summary = r.summary();
    let mut rest = r.into_inner();
    let mut pad = Vec::new();
    rest.read_to_end(&mut pad)
        .map_err(|e| io_err("reading the padding", e))?;
    if summary.size + pad.len() as u64 != body_len || pad.iter().any(|b| *b != 0) {
        return Err(Error::BadSnapshotFile(format!(
            "{what}: unexpected bytes after the snapshot's trailer"
        )));
    }
    Ok(ExportInfo {
        index: header.index,
        term: header.term,
        revision,
        body_len,
        records,
    })
}

/// A `Write` that only hashes.
struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::PutRequest;
    use crate::{Command, Op};

    fn put(kv: &KvStore, index: u64, key: &str, value: &str) {
        let cmd = Command::new(
            0,
            Op::Put(PutRequest {
                key: key.as_bytes().to_vec().into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            }),
        );
        kv.apply(index, 1, &cmd).unwrap();
    }

    fn filled() -> KvStore {
        let kv = KvStore::open_temporary().unwrap();
        for i in 1..=200 {
            put(&kv, i, &format!("k{:03}", i % 50), &format!("v{i}"));
        }
        kv
    }

    #[test]
    fn a_file_restores_the_same_state_and_leaves_raft_snapshots_alone() {
        let kv = filled();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("snap.db");
        let info = write_file(&kv, std::fs::File::create(&path).unwrap(), 5).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, info.body_len + DIGEST_LEN);
        assert_eq!(len % PAD, DIGEST_LEN, "etcdctl's hasChecksum test");
        assert_eq!((info.index, info.revision), (200, 201));
        // No capture left pending: a Raft snapshot's bookkeeping is untouched.
        assert!(kv.shared.state.read().pending_durable.is_none());
        assert!(kv.shared.state.read().capture.is_none());

        assert_eq!(verify_file(&path).unwrap(), info);
        let copy = KvStore::open_temporary().unwrap();
        let restored = restore_file(&copy, &path).unwrap();
        assert_eq!(restored, info);
        assert_eq!(copy.applied_index(), 200);
        assert_eq!(copy.hash_kv(0).unwrap(), kv.hash_kv(0).unwrap());
        // History came along: an old revision reads the same.
        let old = crate::pb::etcdserverpb::RangeRequest {
            key: b"k001".to_vec().into(),
            revision: 10,
            ..Default::default()
        };
        assert_eq!(copy.range(&old).unwrap().kvs, kv.range(&old).unwrap().kvs);
    }

    /// A restore (a follower installing the leader's snapshot) that meets an export waits
    /// for it to end instead of failing (a failed restore stops the node).
    #[test]
    fn a_restore_waits_for_an_export_to_end() {
        let kv = filled();
        let cap = kv.capture_export().unwrap();
        let other = filled();
        let source = other.snapshot_full().unwrap();
        // The export ends only after `ended` is set: a restore that returns before that did
        // not wait for it. (The sleep only gives the restore time to start first.)
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ended.clone();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(cap);
        });
        kv.restore_full(source.info.index, 1, source.records)
            .unwrap();
        assert!(
            ended.load(std::sync::atomic::Ordering::SeqCst),
            "the restore returned while the export was still open"
        );
        release.join().unwrap();
        assert_eq!(kv.hash_kv(0).unwrap(), other.hash_kv(0).unwrap());
    }

    #[test]
    fn damaged_or_truncated_files_are_refused_before_anything_is_restored() {
        let kv = filled();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("snap.db");
        write_file(&kv, std::fs::File::create(&path).unwrap(), 5).unwrap();
        let good = std::fs::read(&path).unwrap();
        let copy = KvStore::open_temporary().unwrap();
        put(&copy, 1, "mine", "kept");
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut flipped = good.clone();
        flipped[100] ^= 0x40;
        cases.push(("a flipped bit", flipped));
        cases.push(("a truncation", good[..good.len() - 1].to_vec()));
        cases.push((
            "a truncation to whole blocks",
            good[..good.len() - 512].to_vec(),
        ));
        cases.push(("an empty file", Vec::new()));
        // A digest that matches damaged content: the body's own checks refuse it.
        let mut forged = good[..good.len() - 32].to_vec();
        forged[60] ^= 0x01;
        let digest = Sha256::digest(&forged);
        forged.extend_from_slice(&digest);
        cases.push(("a body damaged under a matching digest", forged));
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let e = restore_file(&copy, &path).unwrap_err();
            assert!(
                matches!(e, Error::BadSnapshotFile(_) | Error::SnapshotStore(_)),
                "{what}: {e}"
            );
            assert_eq!(copy.get(b"mine").unwrap().unwrap().value.as_ref(), b"kept");
            assert!(!copy.restore_pending(), "{what}");
        }
    }
}
