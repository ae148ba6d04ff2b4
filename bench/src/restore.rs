//! `raft-bench restore`: how long a point-in-time restore takes (issue 22). A one-member
//! raftd with `backup.url` on a `file://` store and automatic snapshots off writes `entries`
//! puts (256-byte values, distinct keys), so its WAL archive holds every one of them after
//! the bootstrap; once the archive holds the last commit, the member is killed and
//! `raftd restore --index <last>` rebuilds a data directory from the archive, replaying every
//! entry. Reported: the restore's wall time and entries replayed per second, beside the rate
//! the same entries were written at (a same-run yardstick: a restore that replays slower than
//! the cluster wrote would fall behind any retention window).

use crate::cluster::{Cluster, Server};
use crate::load;
use anyhow::{Context, Result, bail};
use raft_snapshot::{ObjectStoreConfig, list_wal_archive, open_object_store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RestoreStats {
    /// Entries written (puts acknowledged).
    pub written: u64,
    /// How long writing them took.
    pub write_time: Duration,
    /// The log index restored to.
    pub index: u64,
    /// Wall time of `raftd restore` (download, replay, the new data directory).
    pub restore_time: Duration,
    /// Bytes the archive held.
    pub archive_bytes: u64,
}

/// Runs the benchmark with `raftd` under `dir` (wiped first).
pub async fn run(
    raftd: &Path,
    dir: &Path,
    entries: u64,
    value_size: usize,
) -> Result<RestoreStats> {
    // A `file://` URL needs an absolute path.
    let dir = &std::path::absolute(dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let store = dir.join("store");
    std::fs::create_dir_all(&store)?;
    let url = format!("file://{}/", store.display());
    let url_set = format!("backup.url={url}");
    let args = [
        "--set",
        url_set.as_str(),
        "--set",
        "raft.snapshot_threshold=0",
        "--set",
        "raft.snapshot_log_bytes=0",
    ];
    let mut cluster = Cluster::start_with(
        Server::Raftd(raftd.to_path_buf()),
        &dir.join("source"),
        1,
        &args,
        None,
    )?;
    cluster.leader(Duration::from_secs(30)).await?;
    let eps = cluster.endpoints();
    let started = Instant::now();
    load::fill(&eps, entries, value_size, None).await?;
    let write_time = started.elapsed();
    let mut client = cluster.etcd_client(&[], Duration::from_secs(10)).await?;
    let index = client.status().await?.raft_index();

    // The archive catches up within its interval (the active tail is archived on a timer).
    let obj = open_object_store(&ObjectStoreConfig {
        url: url.clone(),
        ..ObjectStoreConfig::default()
    })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let archive_bytes = loop {
        let segs = list_wal_archive(&*obj)?;
        if segs.iter().map(|s| s.meta.commit).max().unwrap_or(0) >= index {
            break dir_bytes(&store);
        }
        if Instant::now() > deadline {
            bail!("the WAL archive did not reach index {index} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    cluster.kill9(1)?;

    let target = dir.join("restored");
    let peer = cluster.peer(1).to_string();
    let started = Instant::now();
    let out = Command::new(raftd)
        .args(["--id", "1"])
        .arg("--data-dir")
        .arg(&target)
        .args(["--listen-peer", &peer])
        .args(["restore", "--from", &url, "--index", &index.to_string()])
        .output()
        .context("running raftd restore")?;
    let restore_time = started.elapsed();
    if !out.status.success() {
        bail!(
            "raftd restore failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(RestoreStats {
        written: entries,
        write_time,
        index,
        restore_time,
        archive_bytes,
    })
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
