//! raftd's continuous backup: the snapshot uploader and the WAL archiver, both writing to
//! the object store `[backup]` names, and the adapter that shows the archiver the node's
//! log (`raft_log::Wal` as a `raft_snapshot::WalSource`).

use crate::config::BackupSection;
use raft_snapshot::{
    ObjectStore, SegmentMeta, SnapshotStore, SourceSegment, Uploader, UploaderOptions, WalArchiver,
    WalArchiverOptions, WalSource,
};
use std::sync::Arc;

/// The node's log, as the WAL archiver reads it.
pub struct WalSegments(pub Arc<raft_log::Wal>);

impl WalSource for WalSegments {
    fn segments(&self) -> Vec<SourceSegment> {
        self.0
            .segments()
            .into_iter()
            .map(|s| SourceSegment {
                seq: s.seq,
                active: s.active,
            })
            .collect()
    }

    fn read(&self, seq: u64) -> raft_snapshot::Result<(Vec<u8>, SegmentMeta)> {
        let wal_err = |e: raft_log::Error| raft_snapshot::Error::Invalid(format!("WAL: {e}"));
        // The newest commit index may wait in the log's queue for the next write (it costs
        // no batch of its own); the archive must hold it, or the last writes before a quiet
        // spell could never be restored.
        self.0
            .write_deferred()
            .and_then(raft_log::Ticket::wait)
            .map_err(wal_err)?;
        let data = self.0.read_segment(seq).map_err(wal_err)?;
        let s = raft_log::archive::summarize(&data)
            .map_err(|reason| wal_err(raft_log::Error::Archive(reason)))?;
        Ok((
            data,
            SegmentMeta {
                first_index: s.first_index,
                entries: s.entries,
                commit: s.commit,
                times: s.times,
            },
        ))
    }

    fn release_below(&self, seq: u64) {
        self.0.set_archive_floor(seq);
    }
}

/// What `/status` shows of the backup.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupStatus {
    /// The object store's URL.
    pub url: String,
    /// Snapshots waiting for upload.
    pub snapshots_queued: usize,
    /// Bytes of them.
    pub snapshots_backlog_bytes: u64,
    /// Snapshots waiting whose last attempt failed.
    pub snapshots_failing: usize,
    /// Closed WAL segments waiting for upload.
    pub wal_backlog_segments: usize,
    /// True while WAL archiving fails.
    pub wal_failing: bool,
    /// The highest commit index the WAL archive holds.
    pub wal_archived_commit: u64,
    /// Age of the newest archived entry in milliseconds (the recovery point).
    pub wal_newest_entry_age_ms: Option<u64>,
    /// Snapshots this member's retention deleted from the store since it started.
    pub retention_deleted_snapshots: u64,
    /// Archived WAL segments this member's retention deleted from the store since it
    /// started.
    pub retention_deleted_segments: u64,
    /// The last error of either.
    pub last_error: Option<String>,
}

/// The running backup of a node.
pub struct Backup {
    url: String,
    /// Uploads snapshots and applies retention.
    pub uploader: Arc<Uploader>,
    /// Archives the WAL (with `backup.archive_wal`).
    pub archiver: Option<Arc<WalArchiver>>,
}

impl Backup {
    /// Starts uploading to the store `backup` names; `None` when backups are off.
    pub fn start(
        backup: &BackupSection,
        node: u64,
        snapshots: &SnapshotStore,
        wal: &Arc<raft_log::Wal>,
    ) -> raft_snapshot::Result<Option<Backup>> {
        let Some(cfg) = backup.object_store() else {
            return Ok(None);
        };
        let target: Arc<dyn ObjectStore> = raft_snapshot::open_object_store(&cfg)?;
        let policy = backup.retention();
        let uploader = Arc::new(Uploader::start(
            snapshots.clone(),
            target.clone(),
            UploaderOptions {
                retention: policy.is_active().then_some(policy),
                ..UploaderOptions::default()
            },
        )?);
        let archiver = if backup.archive_wal {
            Some(Arc::new(WalArchiver::start(
                Arc::new(WalSegments(wal.clone())),
                target,
                WalArchiverOptions {
                    node,
                    tail_interval: backup.archive_interval,
                    max_backlog_segments: backup.archive_max_backlog,
                    ..WalArchiverOptions::default()
                },
            )?))
        } else {
            None
        };
        tracing::info!(url = %cfg.url, archive_wal = backup.archive_wal, "backups on");
        Ok(Some(Backup {
            url: cfg.url,
            uploader,
            archiver,
        }))
    }

    /// Applies a reloaded retention policy.
    pub fn set_retention(&self, backup: &BackupSection) {
        let policy = backup.retention();
        self.uploader
            .set_retention(policy.is_active().then_some(policy));
    }

    /// What `/status` shows.
    pub fn status(&self) -> BackupStatus {
        let up = self.uploader.status();
        let wal = self
            .archiver
            .as_ref()
            .map(|a| a.status())
            .unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        BackupStatus {
            url: self.url.clone(),
            snapshots_queued: up.queued,
            snapshots_backlog_bytes: up.backlog_bytes,
            snapshots_failing: up.failing,
            wal_backlog_segments: wal.backlog,
            wal_failing: wal.failing,
            wal_archived_commit: wal.archived_commit,
            wal_newest_entry_age_ms: wal.newest_entry_ms.map(|t| now.saturating_sub(t)),
            retention_deleted_snapshots: up.retention_deleted,
            retention_deleted_segments: up.retention_deleted_segments,
            last_error: wal.last_error.or(up.last_error),
        }
    }
}
