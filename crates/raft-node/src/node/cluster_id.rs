//! The cluster id: drawn at random when a cluster is bootstrapped, kept in
//! `<data_dir>/cluster_id`, and checked at every start.
//!
//! Which id a starting node uses:
//! - its data dir has a `cluster_id` file: that id; a configuration that names another
//!   (`cluster_id`, `cluster_token`) is refused with a clear error;
//! - its data dir holds state from before ids were persisted (a WAL, no file): the id
//!   that state was written under (the explicit id, or the hash of the old default token),
//!   now written down: the data dir is upgraded in place;
//! - a new data dir and an explicit id: that id;
//! - a new data dir bootstrapping a cluster, as its lowest member id: a random id;
//! - otherwise (the other founders of a new cluster, a joining node): the id another
//!   member tells (`raft_net::ask_cluster_id`), asked of every other listed member in turn
//!   until one answers.
//!
//! File format: the id as 16 lowercase hex digits and a newline; written to a temporary
//! file, fsynced, renamed into place and the directory fsynced.

use super::NodeError;
use crate::config::NodeConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file in the data dir that holds the cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster_id";

/// How long a node waits for another member to tell it the cluster id.
const DISCOVERY_LIMIT: Duration = Duration::from_secs(300);

fn path(data: &Path) -> PathBuf {
    data.join(CLUSTER_ID_FILE)
}

fn bad(data: &Path, what: String) -> NodeError {
    NodeError::ClusterId(format!("{}: {what}", path(data).display()))
}

/// The id in `data`'s `cluster_id` file, if there is one.
pub fn read_cluster_id(data: &Path) -> Result<Option<u64>, NodeError> {
    let text = match std::fs::read_to_string(path(data)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(data, e.to_string())),
    };
    match u64::from_str_radix(text.trim(), 16) {
        Ok(id) if id != 0 => Ok(Some(id)),
        _ => Err(bad(
            data,
            format!("`{}` is not a cluster id (16 hex digits)", text.trim()),
        )),
    }
}

/// Writes `id` into `data`'s `cluster_id` file, durably.
pub fn write_cluster_id(data: &Path, id: u64) -> Result<(), NodeError> {
    use std::io::Write;
    let tmp = data.join(format!("{CLUSTER_ID_FILE}.tmp"));
    let io = |e: std::io::Error| bad(data, e.to_string());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(format!("{id:016x}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path(data)).map_err(io)?;
    std::fs::File::open(data)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// A random, non-zero cluster id (from the OS-seeded keys of the standard library's
/// hasher).
pub fn random_cluster_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// True when `data` holds a node's state already (a WAL with segments).
fn has_state(data: &Path) -> bool {
    std::fs::read_dir(data.join("wal")).is_ok_and(|mut d| d.next().is_some())
}

/// The cluster id this node runs with (see the module documentation), persisted.
pub async fn resolve(
    config: &NodeConfig,
    data: &Path,
    members: &BTreeMap<u64, String>,
    tls: Option<&raft_net::TlsConfig>,
) -> Result<u64, NodeError> {
    let explicit = config.explicit_cluster_id();
    if let Some(stored) = read_cluster_id(data)? {
        if let Some(named) = explicit
            && named != stored
        {
            return Err(bad(
                data,
                format!(
                    "this data dir belongs to cluster {stored:016x}, but the configuration \
                     names cluster {named:016x} (cluster_id / cluster_token): a node cannot \
                     move to another cluster; use an empty data dir to join that one"
                ),
            ));
        }
        return Ok(stored);
    }
    let id = if has_state(data) {
        let id = config.legacy_cluster_id();
        tracing::info!(
            cluster_id = format_args!("{id:016x}"),
            "data dir from before cluster ids were persisted: keeping the id it was written \
             under"
        );
        id
    } else if let Some(id) = explicit {
        id
    } else if !config.join && members.keys().next() == Some(&config.id) {
        let id = random_cluster_id();
        tracing::info!(
            cluster_id = format_args!("{id:016x}"),
            "new cluster: drew a random cluster id"
        );
        id
    } else {
        discover(config, members, tls).await?
    };
    write_cluster_id(data, id)?;
    Ok(id)
}

/// Asks the other listed members for the cluster id until one answers.
async fn discover(
    config: &NodeConfig,
    members: &BTreeMap<u64, String>,
    tls: Option<&raft_net::TlsConfig>,
) -> Result<u64, NodeError> {
    let mut net = config.transport_config(0);
    net.tls = tls.cloned();
    net.request_timeout = Duration::from_secs(2);
    let others: Vec<(u64, &String)> = members
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, addr)| (*id, addr))
        .collect();
    let started = Instant::now();
    let mut next_log = started;
    loop {
        let mut last = String::new();
        for &(peer, addr) in &others {
            match raft_net::ask_cluster_id(&net, peer, addr).await {
                Ok(id) => {
                    tracing::info!(
                        cluster_id = format_args!("{id:016x}"),
                        from = peer,
                        "learned the cluster id from a member"
                    );
                    return Ok(id);
                }
                Err(e) => last = format!("member {peer} at {addr}: {e}"),
            }
        }
        if started.elapsed() > DISCOVERY_LIMIT {
            return Err(NodeError::ClusterId(format!(
                "no member told this node the cluster id within {}s (last: {last}); start \
                 the cluster's first member (the lowest id), or give cluster_id",
                DISCOVERY_LIMIT.as_secs()
            )));
        }
        if Instant::now() >= next_log {
            tracing::info!(%last, "waiting for a member to tell the cluster id");
            next_log = Instant::now() + Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> NodeConfig {
        NodeConfig::from_toml(text).unwrap()
    }

    #[tokio::test]
    async fn a_new_founder_draws_and_keeps_a_random_id() {
        let dir = tempfile::tempdir().unwrap();
        let c = config("id = 1\ninitial_cluster = \"1=127.0.0.1:2380,2=127.0.0.1:2381\"");
        let members = c.initial_members().unwrap();
        let id = resolve(&c, dir.path(), &members, None).await.unwrap();
        assert_ne!(id, c.legacy_cluster_id());
        assert_eq!(read_cluster_id(dir.path()).unwrap(), Some(id));
        // The same id at the next start; another data dir gets another one.
        assert_eq!(resolve(&c, dir.path(), &members, None).await.unwrap(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(resolve(&c, other.path(), &members, None).await.unwrap(), id);
    }

    #[tokio::test]
    async fn a_data_dir_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_cluster_id(dir.path(), 0xabc).unwrap();
        let c = config("id = 1\ncluster_token = \"other\"");
        let members = c.initial_members().unwrap();
        let e = resolve(&c, dir.path(), &members, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to cluster 0000000000000abc"), "{e}");
        // Garbage in the file is an error, not a new id.
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "zz\n").unwrap();
        let e = read_cluster_id(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a cluster id"), "{e}");
    }

    #[tokio::test]
    async fn an_old_data_dir_keeps_the_id_it_was_written_under() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wal")).unwrap();
        std::fs::write(dir.path().join("wal/00000001.seg"), b"x").unwrap();
        // Node 2 of a cluster started without a token: the old default id, not a question
        // to node 1.
        let c = config("id = 2\ninitial_cluster = \"1=127.0.0.1:1,2=127.0.0.1:2381\"");
        let members = c.initial_members().unwrap();
        let id = resolve(&c, dir.path(), &members, None).await.unwrap();
        assert_eq!(
            id,
            crate::config::cluster_id_from_token(crate::config::DEFAULT_CLUSTER_TOKEN)
        );
        assert_eq!(read_cluster_id(dir.path()).unwrap(), Some(id));
    }
}
