//! Writing one snapshot into a store: temp file, fsync, verification, rename, manifest.

use super::{Lease, NewHead, SnapshotStore, check_summary};
use crate::error::{Error, IoContext, Result};
use crate::format::{FileHeader, FileReader, FileWriter, Record};
use crate::fs::Cursor;
use crate::info::{MembershipRecord, SnapshotId, SnapshotInfo, SnapshotKind};
use crate::source::SnapshotSource;
use raft_core::SnapshotMeta;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::time::Instant;

/// A snapshot being written (from [`SnapshotStore::begin`]).
///
/// Records go to a temp file under `tmp/` in bounded memory. [`finish`](Self::finish)
/// writes the trailer, fsyncs, re-reads and verifies the file, renames it into place,
/// fsyncs the directory and adds it to the manifest. Dropping an unfinished writer removes
/// its temp file.
pub struct SnapshotWriter {
    store: SnapshotStore,
    header: FileHeader,
    tmp: PathBuf,
    writer: Option<FileWriter<BufWriter<Cursor>>>,
    started: Instant,
    _parent: Option<Lease>,
}

impl SnapshotWriter {
    pub(super) fn start(
        store: SnapshotStore,
        id: SnapshotId,
        kind: SnapshotKind,
        parent: Option<SnapshotId>,
        meta: &SnapshotMeta,
        created_ms: u64,
        parent_lease: Option<Lease>,
    ) -> Result<Self> {
        store.step("build: create temp file")?;
        let header = FileHeader {
            kind,
            id,
            parent,
            index: meta.index,
            term: meta.term,
            created_ms,
            membership: MembershipRecord::from(&meta.membership),
        };
        let tmp = store.tmp_path(&format!("build-{id}"));
        let file = Cursor::new(store.shared.fs.create(&tmp).at(&tmp)?);
        let writer = FileWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            tmp.clone(),
            &header,
            store.shared.opts.writer,
        )?;
        Ok(SnapshotWriter {
            store,
            header,
            tmp,
            writer: Some(writer),
            started: Instant::now(),
            _parent: parent_lease,
        })
    }

    /// The id the snapshot will have.
    pub fn id(&self) -> SnapshotId {
        self.header.id
    }

    fn w(&mut self) -> Result<&mut FileWriter<BufWriter<Cursor>>> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::Invalid("writer already finished".into()))
    }

    /// Adds a put record (keys strictly ascending).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.w()?.put(key, value)
    }

    /// Adds a delete record (deltas only; keys strictly ascending).
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.w()?.delete(key)
    }

    /// Adds a record.
    pub fn record(&mut self, r: &Record) -> Result<()> {
        self.w()?.record(r)
    }

    /// Copies every record of `source` into the snapshot.
    pub fn write_source(&mut self, source: &mut dyn SnapshotSource) -> Result<()> {
        let w = self.w()?;
        while let Some(r) = source.next_record()? {
            w.record(&r)?;
        }
        Ok(())
    }

    /// Completes the snapshot: trailer, fsync, verification, rename into place, directory
    /// fsync, manifest update (which makes it the current chain's tip if its index is at
    /// least the current tip's). Returns its manifest entry.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Invalid("writer already finished".into()))?;
        let (buf, sum) = writer.finish()?;
        let file = buf
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        self.store.step("build: fsync file")?;
        file.file().sync_data().at(&self.tmp)?;
        drop(file);
        let h = &self.header;
        let info = SnapshotInfo {
            id: h.id,
            parent: h.parent,
            kind: h.kind,
            index: h.index,
            term: h.term,
            membership: h.membership.clone(),
            created_ms: h.created_ms,
            size: sum.size,
            checksum: sum.checksum,
            puts: sum.puts,
            deletes: sum.deletes,
        };
        if self.store.shared.opts.verify_on_finish {
            let f = Cursor::new(self.store.shared.fs.open(&self.tmp).at(&self.tmp)?);
            let mut r = FileReader::new(
                BufReader::with_capacity(256 << 10, f),
                self.tmp.display().to_string(),
                true,
            )?;
            let got = r.verify_to_end()?;
            check_summary(&info, got.size, got.checksum)?;
        }
        let dst = self.store.path_of(h.id);
        {
            // Held across rename and manifest update so gc never sees the file unnamed.
            let m = self.store.shared.manifest.lock();
            self.store.step("build: rename into place")?;
            self.store.shared.fs.rename(&self.tmp, &dst).at(&dst)?;
            drop(m);
            self.store.step("build: fsync dir")?;
            self.store.sync_dir()?;
        }
        self.store.test_point("build: before manifest");
        self.store
            .commit_snapshots(vec![info.clone()], NewHead::IfNotOlder(info.id))?;
        let kind = kind_label(info.kind);
        metrics::counter!(raft_metrics::snapshot::BUILT, "kind" => kind).increment(1);
        metrics::counter!(raft_metrics::snapshot::BUILT_BYTES, "kind" => kind).increment(info.size);
        metrics::histogram!(raft_metrics::snapshot::BUILD_SECONDS, "kind" => kind)
            .record(self.started.elapsed().as_secs_f64());
        tracing::info!(id = %info.id, kind, index = info.index, size = info.size, "snapshot built");
        Ok(info)
    }
}

pub(crate) fn kind_label(k: SnapshotKind) -> &'static str {
    match k {
        SnapshotKind::Full => "full",
        SnapshotKind::Delta => "delta",
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.store.crashed() {
            return;
        }
        // Absent once renamed into place.
        let _ = self.store.shared.fs.remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        ChainTransfer, MemState, SnapshotKind, SnapshotStore, StoreOptions, WriterOptions,
    };
    use raft_core::{Membership, SnapshotMeta};
    use std::sync::Arc;

    fn opts(salt: u64) -> StoreOptions {
        StoreOptions {
            id_salt: Some(salt),
            writer: WriterOptions {
                block_size: 512,
                zstd_level: 1,
            },
            ..StoreOptions::default()
        }
    }

    fn full(store: &SnapshotStore, index: u64, st: &MemState) -> crate::SnapshotInfo {
        let meta = SnapshotMeta {
            index,
            term: 2,
            membership: Membership::with_voters([1, 2, 3]),
        };
        let mut w = store.begin(SnapshotKind::Full, None, &meta, index).unwrap();
        w.write_source(&mut st.full_source()).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn an_install_during_a_build_keeps_the_newer_head() {
        // The leader's chain at index 50, sent while this node finishes its own snapshot at
        // index 12: the install lands after the local file is in place and before the
        // manifest names it. The head must stay at the installed (newer) chain.
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = SnapshotStore::open_dir(ld.path(), opts(1)).unwrap();
        let mut st = MemState::new();
        st.put("leader", "50");
        let installed = full(&leader, 50, &st);
        let follower = SnapshotStore::open_dir(fd.path(), opts(2)).unwrap();
        let mut local = MemState::new();
        local.put("local", "10");
        full(&follower, 10, &local);

        let (l2, f2) = (leader.clone(), follower.clone());
        let hook: super::super::TestHook = Arc::new(move |point: &str| {
            if point == "build: before manifest" {
                // Once: the install's own work passes no build point.
                *f2.shared.test_hook.lock() = None;
                let mut t = ChainTransfer::new(&l2, None).unwrap();
                let mut bundle = Vec::new();
                for c in t.chunks_from(0, 1 << 20) {
                    bundle.extend_from_slice(&c.unwrap().data);
                }
                f2.install(&mut bundle.as_slice(), bundle.len() as u64)
                    .unwrap();
            }
        });
        *follower.shared.test_hook.lock() = Some(hook);
        local.put("local", "12");
        let built = full(&follower, 12, &local);
        assert!(follower.info(built.id).is_some(), "the local build is kept");
        assert_eq!(
            follower.latest().unwrap().tip().id,
            installed.id,
            "a local snapshot at index 12 took the head from the installed one at 50"
        );
        drop(follower);
        let reopened = SnapshotStore::open_dir(fd.path(), opts(3)).unwrap();
        assert_eq!(reopened.latest().unwrap().tip().id, installed.id);
    }
}
