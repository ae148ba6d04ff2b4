//! `[backup]`: where snapshots and the WAL archive go (`url`, an object store), how to reach
//! it, how often the log tail is archived, and the retention of what is there.

use super::{ConfigError, err};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[backup]`: continuous backup to an object store. Every new snapshot is uploaded, and
/// (with `archive_wal`) every closed WAL segment plus, every `archive_interval`, the
/// segment being written, so `raftd restore --from URL` can go back to any committed index
/// or time the store covers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///path`; none (the default) turns backups off.
    pub url: Option<String>,
    /// Endpoint of an S3-compatible service (`http://127.0.0.1:9000`); S3 only.
    pub endpoint: Option<String>,
    /// The region (S3).
    pub region: Option<String>,
    /// Path-style requests (most S3-compatible services want them); S3 only.
    pub path_style: bool,
    /// Allow plain HTTP (default: when `endpoint` starts with `http://`).
    pub allow_http: Option<bool>,
    /// Further keys of the `object_store` crate (`aws_access_key_id`, ...); credentials
    /// otherwise come from the environment as that crate's users expect.
    pub options: BTreeMap<String, String>,
    /// Archive the WAL too (default true): without it only snapshots are restore points.
    pub archive_wal: bool,
    /// How often the WAL segment being written is uploaded when it grew (default 5s): with
    /// the closed segments, this bounds the writes a total loss of the cluster can cost.
    #[serde(with = "humantime_serde")]
    pub archive_interval: Duration,
    /// Closed WAL segments kept on disk for the archive while the store fails (default 64);
    /// beyond it the oldest are given up (a gap in the archive, counted in
    /// `raft_snapshot_wal_archive_skipped_segments_total`).
    pub archive_max_backlog: usize,
    /// (R) Keep every moment this far back restorable (e.g. `"7d"`): the snapshots of the
    /// window, the newest one before it, and the archived WAL after it; none keeps all.
    #[serde(with = "humantime_serde")]
    pub keep_for: Option<Duration>,
    /// (R) Keep the restore points of the newest this many base snapshot indexes (copies
    /// uploaded by several members count once); none keeps all.
    pub keep_bases: Option<usize>,
}

impl Default for BackupSection {
    fn default() -> Self {
        BackupSection {
            url: None,
            endpoint: None,
            region: None,
            path_style: false,
            allow_http: None,
            options: BTreeMap::new(),
            archive_wal: true,
            archive_interval: Duration::from_secs(5),
            archive_max_backlog: 64,
            keep_for: None,
            keep_bases: None,
        }
    }
}

impl BackupSection {
    /// The object store settings, when backups are on.
    pub fn object_store(&self) -> Option<raft_snapshot::ObjectStoreConfig> {
        let url = self.url.clone()?;
        Some(raft_snapshot::ObjectStoreConfig {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http,
            options: self.options.clone(),
            ..raft_snapshot::ObjectStoreConfig::new(url)
        })
    }

    /// The retention policy.
    pub fn retention(&self) -> raft_snapshot::RetentionPolicy {
        raft_snapshot::RetentionPolicy {
            keep_for: self.keep_for,
            keep_bases: self.keep_bases,
        }
    }

    /// `snapshot.upload_dir` (deprecated) becomes `backup.url = "file://DIR"`.
    pub(super) fn adopt_upload_dir(
        &mut self,
        upload_dir: Option<&std::path::Path>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(dir) = upload_dir else {
            return Ok(None);
        };
        if self.url.is_some() {
            return err(
                "snapshot.upload_dir and backup.url are both set: snapshot.upload_dir is \
                 deprecated, keep backup.url only",
            );
        }
        let abs = std::path::absolute(dir)
            .map_err(|e| ConfigError(format!("snapshot.upload_dir: {e}")))?;
        let url = url::Url::from_directory_path(&abs).map_err(|()| {
            ConfigError(format!("snapshot.upload_dir {}: not a path", dir.display()))
        })?;
        self.url = Some(url.to_string());
        Ok(Some(format!(
            "snapshot.upload_dir is deprecated: use backup.url = \"{url}\" (taken as that now)"
        )))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError(format!("backup.url `{url}`: {e}")))?;
            if !matches!(
                parsed.scheme(),
                "s3" | "s3a" | "gs" | "az" | "azure" | "file"
            ) {
                return err(format!(
                    "backup.url `{url}`: the scheme must be s3, gs, az or file"
                ));
            }
        }
        if self.archive_interval < Duration::from_millis(100) {
            return err("backup.archive_interval must be at least 100ms");
        }
        if self.archive_max_backlog == 0 {
            return err("backup.archive_max_backlog must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_upload_dirs() {
        let mut b = BackupSection::default();
        assert!(b.object_store().is_none());
        let warning = b
            .adopt_upload_dir(Some(std::path::Path::new("/backup/raftd")))
            .unwrap()
            .unwrap();
        assert!(warning.contains("deprecated"), "{warning}");
        assert_eq!(b.url.as_deref(), Some("file:///backup/raftd/"));
        assert!(
            b.adopt_upload_dir(Some(std::path::Path::new("/x")))
                .is_err()
        );
        b.validate().unwrap();
        b.url = Some("ftp://host/x".into());
        assert!(b.validate().is_err());
        b.url = Some("s3://bucket/p".into());
        b.archive_interval = Duration::from_millis(10);
        assert!(b.validate().is_err());
    }
}
