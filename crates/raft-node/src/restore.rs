//! `raftd restore`: builds the data directory of a new single-node cluster from a backup:
//! a snapshot chain picked by id or as the newest created before a time, or (from an object
//! store with a WAL archive) any committed index or time: the newest chain at or below it
//! plus the archived entries after it ([`archive`]).
//!
//! The backup is an object store URL (`backup.url` of the old cluster: `s3://`, `gs://`,
//! `az://`, `file://`), an upload directory (a [`LocalDirStore`] object store), a node's
//! own snapshot store (`<data_dir>/snap`, recognised by its `MANIFEST.json`; the node must be
//! stopped), or a snapshot file saved with `etcdctl snapshot save` (`Maintenance.Snapshot`,
//! [`raft_kv::export`]; its SHA-256 and every block are verified before the data dir is
//! created). The new directory holds:
//! - `kv`: the restored state (chain, then archived entries), then one more applied entry at
//!   the restored index + 1 that makes the member list this node alone;
//! - `snap`: a snapshot at that index, whose membership is this node as the only voter;
//! - `wal`: a log replaced by that snapshot, with the hard state at the chain's term (so the
//!   new leader's terms continue above every term in the data).
//!
//! Starting `raftd` with the same `--id` on that directory (and an `initial_cluster` naming
//! only it) brings up a one-member cluster holding the old data; more members join it as
//! usual (`raftctl member add`, then `raftd --join`), receiving the snapshot.

pub mod archive;

use crate::node::NodeError;
use archive::ArchiveTarget;
use raft_core::{HardState, Membership, SnapshotMeta};
use raft_kv::machine::now_ms;
use raft_kv::{KvRestoreSink, KvStore, Member};
use raft_snapshot::{
    LocalDirStore, MANIFEST_FILE, RestorePoint, SnapshotInfo, SnapshotStore, StoreOptions,
};
use std::path::PathBuf;

/// What `raftd restore` is asked to do.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The object store URL, upload directory or snapshot store to read from.
    pub from: String,
    /// Which snapshot (when `target` is not set).
    pub point: RestorePoint,
    /// Restore to this index or time through the WAL archive (object stores only).
    pub target: Option<ArchiveTarget>,
    /// How to reach an object store given by URL (endpoint, region, credentials): the
    /// node's `[backup]` settings, with `url` replaced by `from`.
    pub store: raft_snapshot::ObjectStoreConfig,
    /// The new data directory (must not exist or be empty).
    pub data_dir: PathBuf,
    /// The new node's id.
    pub id: u64,
    /// The new node's peer URL (its `listen_peer`), recorded in the member list.
    pub peer_url: String,
    /// Settings of the new WAL.
    pub wal: raft_log::Settings,
}

/// What was restored.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The snapshot the chain ended at (`None`: the WAL archive alone, from index 1).
    pub source: Option<SnapshotInfo>,
    /// The index of the last entry of the old cluster in the restored state (the chain's,
    /// or the archived entry the restore went to).
    pub restored_index: u64,
    /// The new cluster's starting point: the index, term and membership of its snapshot.
    pub meta: SnapshotMeta,
}

fn fail(what: impl Into<String>) -> NodeError {
    NodeError::Io {
        what: what.into(),
        source: std::io::Error::other("refused"),
    }
}

/// Builds the data directory described by `o`.
pub fn restore_data_dir(o: &RestoreOptions) -> Result<Restored, NodeError> {
    let url = o.from.contains("://").then(|| o.from.clone());
    let from = PathBuf::from(&o.from);
    let file = url.is_none() && from.is_file();
    if url.is_none() && !file && !from.is_dir() {
        return Err(fail(format!(
            "{} is neither a directory nor a snapshot file",
            o.from
        )));
    }
    if file {
        if o.point != RestorePoint::Latest {
            return Err(fail(
                "a snapshot file holds one state: --snapshot and --before do not apply",
            ));
        }
        // Refused before anything is created: a damaged file restores nothing.
        raft_kv::export::verify_file(&from)?;
    }
    if o.target.is_some() && url.is_none() {
        return Err(fail(
            "--index, --time and --latest read a WAL archive: give --from an object store URL",
        ));
    }
    if o.id == 0 {
        return Err(fail("the node id must not be 0"));
    }
    if let Ok(mut entries) = std::fs::read_dir(&o.data_dir)
        && entries.next().is_some()
    {
        return Err(fail(format!(
            "{} is not empty: restore builds a new data dir",
            o.data_dir.display()
        )));
    }
    raft_fs::Fs::create_dir_all(&raft_fs::StdFs, &o.data_dir).map_err(|source| NodeError::Io {
        what: format!("creating {}", o.data_dir.display()),
        source,
    })?;
    // A restored data dir is a new cluster: a new random id (written first, so a data dir
    // left half-built by a failed restore is never taken for one from before cluster ids
    // were kept).
    crate::node::cluster_id::write_cluster_id(
        &o.data_dir,
        crate::node::cluster_id::random_cluster_id(),
    )?;
    let kv = KvStore::open(o.data_dir.join("kv"))?;
    let snap = SnapshotStore::open_dir(o.data_dir.join("snap"), StoreOptions::default())?;
    let mut sink = KvRestoreSink::new(kv.clone());
    let (source, restored_index, term) = if file {
        let info = raft_kv::export::restore_file(&kv, &from)?;
        tracing::info!(
            index = info.index,
            revision = info.revision,
            records = info.records,
            "snapshot file restored"
        );
        (None, info.index, info.term)
    } else if let Some(url) = url {
        let obj = raft_snapshot::open_object_store(&raft_snapshot::ObjectStoreConfig {
            url,
            ..o.store.clone()
        })?;
        match o.target {
            Some(target) => {
                let plan = archive::plan(&*obj, target)?;
                let tip = match plan.snapshot {
                    Some(id) => Some(
                        raft_snapshot::restore_from_object_store(
                            &*obj,
                            RestorePoint::Id(id),
                            &snap,
                            Some(&mut sink),
                        )?
                        .tip()
                        .clone(),
                    ),
                    None => None,
                };
                let membership = tip
                    .as_ref()
                    .map(|t| t.meta().membership)
                    .unwrap_or_default();
                archive::apply_entries(&kv, membership, &plan.entries)?;
                let term = plan
                    .entries
                    .last()
                    .map(|e| e.term)
                    .or(tip.as_ref().map(|t| t.term))
                    .unwrap_or(0);
                tracing::info!(
                    snapshot = ?tip.as_ref().map(|t| t.id),
                    entries = plan.entries.len(),
                    from_member = plan.node,
                    index = plan.target,
                    "archived WAL entries applied after the snapshot chain"
                );
                (tip, plan.target, term)
            }
            None => {
                let chain = raft_snapshot::restore_from_object_store(
                    &*obj,
                    o.point,
                    &snap,
                    Some(&mut sink),
                )?;
                let tip = chain.tip().clone();
                (Some(tip.clone()), tip.index, tip.term)
            }
        }
    } else if from.join(MANIFEST_FILE).is_file() {
        let store = SnapshotStore::open_dir(&from, StoreOptions::default())?;
        let tip = raft_snapshot::restore_point(&store, o.point, &mut sink)?;
        (Some(tip.clone()), tip.index, tip.term)
    } else {
        let obj = LocalDirStore::new(&from)?;
        let chain =
            raft_snapshot::restore_from_object_store(&obj, o.point, &snap, Some(&mut sink))?;
        let tip = chain.tip().clone();
        (Some(tip.clone()), tip.index, tip.term)
    };

    // One entry past the chain: the member list becomes this node alone.
    let index = restored_index + 1;
    let me = Member {
        id: o.id,
        name: String::new(),
        peer_urls: vec![format!(
            "http://{}",
            crate::config::strip_scheme(&o.peer_url)
        )],
        client_urls: Vec::new(),
        is_learner: false,
    };
    kv.apply_membership(index, term, &[me])?;
    let membership = Membership {
        voters: [o.id].into_iter().collect(),
        ..Membership::default()
    };
    let info = raft_kv::capture_snapshot(&kv, &snap, membership.clone())?.write(now_ms())?;
    raft_kv::maintain_chains(&snap, &raft_snapshot::ChainPolicy::default(), now_ms())?;
    kv.flush()?;
    let meta = SnapshotMeta {
        index: info.index,
        term: info.term,
        membership,
    };

    let wal = raft_log::Wal::open(o.data_dir.join("wal"), o.wal.clone())?;
    wal.install_snapshot(meta.clone())?.wait()?;
    wal.save_hard_state(HardState {
        term: meta.term,
        vote: None,
        commit: meta.index,
    })?
    .wait()?;
    wal.close()?;
    tracing::info!(
        from = %o.from,
        snapshot = ?source.as_ref().map(|s| s.id),
        index = meta.index,
        data_dir = %o.data_dir.display(),
        "data dir restored"
    );
    Ok(Restored {
        source,
        restored_index,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_kv::machine::SnapshotCtx;
    use raft_kv::{Command, Op};

    fn put(kv: &KvStore, index: u64, key: &str, value: &str) {
        let cmd = Command::new(
            0,
            Op::Put(raft_kv::pb::etcdserverpb::PutRequest {
                key: key.as_bytes().to_vec().into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            }),
        );
        kv.apply(index, 1, &cmd).unwrap();
    }

    #[test]
    fn a_restored_data_dir_holds_the_data_and_one_member() {
        let tmp = tempfile::tempdir().unwrap();
        let kv = KvStore::open_temporary().unwrap();
        let store =
            SnapshotStore::open_dir(tmp.path().join("old"), StoreOptions::default()).unwrap();
        let upload = tmp.path().join("upload");
        let uploader = raft_snapshot::Uploader::start(
            store.clone(),
            std::sync::Arc::new(LocalDirStore::new(&upload).unwrap()),
            raft_snapshot::UploaderOptions::default(),
        )
        .unwrap();
        let ctx = SnapshotCtx {
            store: store.clone(),
            policy: raft_snapshot::ChainPolicy::default(),
            uploader: None,
            max_build_rate: 0,
        };
        let three = Membership {
            voters: [1, 2, 3].into_iter().collect(),
            ..Membership::default()
        };
        for i in 1..=30 {
            put(&kv, i, &format!("k{i}"), "first");
        }
        let first = raft_kv::capture_snapshot(&kv, &ctx.store, three.clone())
            .unwrap()
            .write(1_000)
            .unwrap();
        uploader.enqueue(first.id).unwrap();
        for i in 31..=40 {
            put(&kv, i, "k1", &format!("second-{i}"));
        }
        let second = raft_kv::capture_snapshot(&kv, &ctx.store, three)
            .unwrap()
            .write(2_000)
            .unwrap();
        uploader.enqueue(second.id).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while uploader.status().uploaded < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                uploader.status()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }

        // Point in time: before the second snapshot, from the upload directory.
        let o = RestoreOptions {
            from: upload.display().to_string(),
            point: RestorePoint::Before(1_500),
            target: None,
            store: raft_snapshot::ObjectStoreConfig::default(),
            data_dir: tmp.path().join("new"),
            id: 7,
            peer_url: "127.0.0.1:9999".into(),
            wal: raft_log::Settings::default(),
        };
        let r = restore_data_dir(&o).unwrap();
        assert_eq!(r.source.as_ref().unwrap().id, first.id);
        assert_eq!(r.meta.index, 31);
        let restored = KvStore::open(o.data_dir.join("kv")).unwrap();
        assert_eq!(restored.applied_index(), 31);
        let v = restored.get(b"k1").unwrap().unwrap();
        assert_eq!(v.value.as_ref(), b"first");
        let members = restored.members();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].id, 7);
        drop(restored);
        let wal =
            raft_log::Wal::open(o.data_dir.join("wal"), raft_log::Settings::default()).unwrap();
        assert_eq!(wal.snapshot().index, 31);
        assert_eq!(wal.hard_state().term, 1);
        drop(wal);
        // A second restore into the same (now used) directory is refused.
        assert!(restore_data_dir(&o).is_err());

        // By id, from the old node's own snapshot store.
        drop(uploader);
        drop(ctx);
        drop(store);
        let o2 = RestoreOptions {
            from: tmp.path().join("old").display().to_string(),
            point: RestorePoint::Id(second.id),
            data_dir: tmp.path().join("new2"),
            ..o
        };
        let r2 = restore_data_dir(&o2).unwrap();
        assert_eq!(r2.meta.index, 41);
        let restored = KvStore::open(o2.data_dir.join("kv")).unwrap();
        let v = restored.get(b"k1").unwrap().unwrap();
        assert_eq!(v.value.as_ref(), b"second-40");
        assert_eq!(
            restored.get(b"k30").unwrap().unwrap().value.as_ref(),
            b"first"
        );
    }

    #[test]
    fn a_snapshot_file_restores_after_its_checks_and_a_damaged_one_restores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let kv = KvStore::open_temporary().unwrap();
        for i in 1..=25 {
            put(&kv, i, &format!("k{i}"), "saved");
        }
        let file = tmp.path().join("snap.db");
        raft_kv::export::write_file(&kv, std::fs::File::create(&file).unwrap(), 1_000).unwrap();
        let o = RestoreOptions {
            from: file.display().to_string(),
            point: RestorePoint::Latest,
            target: None,
            store: raft_snapshot::ObjectStoreConfig::default(),
            data_dir: tmp.path().join("new"),
            id: 4,
            peer_url: "127.0.0.1:9999".into(),
            wal: raft_log::Settings::default(),
        };

        // Damaged: refused, and no data dir was made.
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        let e = restore_data_dir(&o).unwrap_err().to_string();
        assert!(e.contains("SHA-256"), "{e}");
        assert!(!o.data_dir.exists());
        std::fs::write(&file, &good[..good.len() - 100]).unwrap();
        assert!(restore_data_dir(&o).is_err());
        assert!(!o.data_dir.exists());

        std::fs::write(&file, &good).unwrap();
        let r = restore_data_dir(&o).unwrap();
        assert!(r.source.is_none());
        assert_eq!(r.restored_index, 25);
        assert_eq!(r.meta.index, 26);
        assert_eq!(
            r.meta.membership.voters.iter().copied().collect::<Vec<_>>(),
            [4]
        );
        let restored = KvStore::open(o.data_dir.join("kv")).unwrap();
        assert_eq!(
            restored.get(b"k25").unwrap().unwrap().value.as_ref(),
            b"saved"
        );
        assert_eq!(restored.members().len(), 1);
        assert_eq!(restored.members()[0].id, 4);
        drop(restored);
        assert!(o.data_dir.join("cluster_id").is_file());
    }
}
