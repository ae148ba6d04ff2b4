//! raftd's configuration: the TOML file and command-line overrides, validation with messages
//! naming the key, and conversion into the toolkit crates' own settings.
//!
//! Every setting has a key in the file (`wal.sync_policy`); every command-line flag is an
//! override of one key (`--heartbeat-interval 100ms` sets `raft.heartbeat_interval`), and
//! `--set key=value` overrides any key. Overrides win over the file; unknown keys are
//! refused, from the file and from flags alike.
//!
//! Settings split in two groups with hot reload (issue 8) in mind: the *static* ones (node
//! id, name, data dir, listen addresses, cluster, request size limit, WAL, peer limits) can
//! only change with a restart, the *reloadable* ones ([`RELOADABLE_KEYS`]) live in an
//! `ArcSwap` and change at run time; [`NodeConfig::diff`] derives which keys differ between
//! two configurations from their serialized form and refuses a change of a static key.
//!
//! This file holds the top level (`NodeConfig`) and its checks; each `[section]` lives in
//! its own module under `config/`, loading and overrides in `config/load.rs`, and what a
//! hot reload compares in `config/reload.rs`.

mod auth;
mod backup;
mod bytes;
mod cluster;
mod compaction;
mod compression;
mod lease;
mod limits;
mod load;
mod log;
mod peer;
mod raft;
mod reload;
mod snapshot;
mod tls;
mod wal;
mod watch;

pub use auth::AuthSection;
pub use backup::BackupSection;
pub use bytes::ByteSize;
pub use cluster::{DEFAULT_CLUSTER_TOKEN, InitialCluster, cluster_id_from_token, strip_scheme};
pub use compaction::{CompactionSection, Retention};
pub use compression::{CodecKey, CompressionSection};
pub use lease::LeaseSection;
pub use limits::LimitsSection;
pub use load::{parse_override, set_key};
pub use log::LogFormat;
pub use peer::PeerSection;
pub use raft::{RaftSection, ReadModeKey};
pub use reload::{ConfigSource, DiffError, RELOADABLE_KEYS};
pub use snapshot::{MIN_SNAPSHOT_BUILD_RATE, SnapshotSection};
pub use tls::{DEFAULT_PEER_CERT_CLUSTER, TlsSection};
pub use wal::{SyncPolicyKey, WalSection};
pub use watch::WatchSection;

use cluster::check_socket_addr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration that cannot be used: the message names the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config error: {0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The whole configuration of one raftd node (the TOML file's top level).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's Raft id (required, not 0).
    pub id: u64,
    /// A human-readable name (default `node-<id>`), shown by `MemberList`.
    pub name: Option<String>,
    /// Where the WAL and the key-value store live (default `./raftd-<id>.data`).
    pub data_dir: Option<PathBuf>,
    /// Address the etcd v3 gRPC API listens on (default 127.0.0.1:2379).
    pub listen_client: String,
    /// Address the peer transport listens on (default 127.0.0.1:2380).
    pub listen_peer: String,
    /// Address of the HTTP endpoint for metrics and health (none by default); a bare
    /// port (`9090` or `:9090`) binds to loopback (127.0.0.1).
    pub listen_metrics: Option<String>,
    /// The client URL published to the cluster (default: `http://` + `listen_client`).
    pub advertise_client: Option<String>,
    /// The members of a new cluster, or the known members when joining: `"1=host:port,2=..."`
    /// or a table `{ 1 = "host:port" }`. Default: this node alone at `listen_peer`.
    pub initial_cluster: InitialCluster,
    /// The cluster id of a new cluster (frames from another cluster are refused). Normally
    /// unset: a new cluster's first member draws a random id and the others ask it; the id
    /// is kept in `<data_dir>/cluster_id`. Set this or `cluster_token`, not both.
    pub cluster_id: Option<u64>,
    /// An explicit token hashed into the cluster id, instead of a random one (as etcd's
    /// `--initial-cluster-token`: clusters with the same token get the same id).
    pub cluster_token: Option<String>,
    /// Join an existing cluster as a learner (added first with `raftctl member add`) instead
    /// of starting a new one.
    pub join: bool,
    /// The `tracing` filter (`RUST_LOG` syntax), e.g. `info,raft_runtime=debug`.
    pub log_filter: String,
    /// The log lines' format: `text` (default) or `json` for log shippers (`config/log.rs`).
    pub log_format: LogFormat,
    /// The largest client request accepted (default 1.5 MiB, like etcd).
    pub request_size_limit: ByteSize,
    /// This member's space quota (etcd's `--quota-backend-bytes`; 0, the default, means
    /// 2 GiB as in etcd): a write that would take the store's size on disk past it raises
    /// the NOSPACE alarm, and the cluster refuses writes that add data until it is
    /// disarmed. Reloadable.
    pub quota_backend_bytes: ByteSize,
    /// How often the leader compares every member's `HashKV` with its own and raises the
    /// CORRUPT alarm for a member whose state differs (etcd's
    /// `--experimental-corrupt-check-time`). Default `0s`: off, as in etcd. Reloadable.
    #[serde(with = "humantime_serde")]
    pub corrupt_check_interval: Duration,
    /// Protocol timing and flow control.
    pub raft: RaftSection,
    /// The write-ahead log.
    pub wal: WalSection,
    /// Compression of peer traffic.
    pub compression: CompressionSection,
    /// Peer transport limits.
    pub peer: PeerSection,
    /// State-machine snapshot chains and their upload.
    pub snapshot: SnapshotSection,
    /// History compaction: auto-compaction and the pace of physical compaction.
    pub compaction: CompactionSection,
    /// etcd's Watch: progress notifications and buffer bounds.
    pub watch: WatchSection,
    /// TLS on the client port and between peers.
    pub tls: TlsSection,
    /// Limits per connection and per client.
    pub limits: LimitsSection,
    /// etcd's leases: checkpoints, minimum TTL, revoke rate.
    pub lease: LeaseSection,
    /// Backups to an object store: snapshots and the WAL archive (`config/backup.rs`).
    pub backup: BackupSection,
    /// etcd's authentication: token lifetime and password hash cost (`config/auth.rs`).
    pub auth: AuthSection,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 0,
            name: None,
            data_dir: None,
            listen_client: "127.0.0.1:2379".into(),
            listen_peer: "127.0.0.1:2380".into(),
            listen_metrics: None,
            advertise_client: None,
            initial_cluster: InitialCluster::default(),
            cluster_id: None,
            cluster_token: None,
            join: false,
            log_filter: "info".into(),
            log_format: LogFormat::Text,
            request_size_limit: ByteSize(1_572_864),
            quota_backend_bytes: ByteSize(0),
            corrupt_check_interval: Duration::ZERO,
            raft: RaftSection::default(),
            wal: WalSection::default(),
            compression: CompressionSection::default(),
            peer: PeerSection::default(),
            snapshot: SnapshotSection::default(),
            compaction: CompactionSection::default(),
            watch: WatchSection::default(),
            tls: TlsSection::default(),
            limits: LimitsSection::default(),
            lease: LeaseSection::default(),
            backup: BackupSection::default(),
            auth: AuthSection::default(),
        }
    }
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl NodeConfig {
    /// The node's name (`name`, or `node-<id>`).
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.id))
    }

    /// The data directory (`data_dir`, or `./raftd-<id>.data`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("raftd-{}.data", self.id)))
    }

    /// The cluster id the configuration names explicitly: `cluster_id`, or the hash of
    /// `cluster_token`; `None` when neither is set (a new cluster then gets a random id).
    pub fn explicit_cluster_id(&self) -> Option<u64> {
        self.cluster_id
            .or_else(|| self.cluster_token.as_deref().map(cluster_id_from_token))
    }

    /// The id a data dir written before cluster ids were persisted belongs to (the
    /// explicit id, or the hash of the old default token): only for upgrading such a data
    /// dir in place.
    pub fn legacy_cluster_id(&self) -> u64 {
        self.cluster_id.unwrap_or_else(|| {
            cluster_id_from_token(
                self.cluster_token
                    .as_deref()
                    .unwrap_or(DEFAULT_CLUSTER_TOKEN),
            )
        })
    }

    /// The client URL published to the cluster (`https://` with client TLS).
    pub fn advertise_client(&self) -> String {
        let scheme = if self.tls.client_tls() {
            "https"
        } else {
            "http"
        };
        self.advertise_client
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", strip_scheme(&self.listen_client)))
    }

    /// The address of the HTTP endpoint: `listen_metrics`, with a bare port (`9090`,
    /// `:9090`) on loopback.
    pub fn metrics_addr(&self) -> Option<String> {
        let m = strip_scheme(self.listen_metrics.as_deref()?);
        let port = m.strip_prefix(':').unwrap_or(m);
        Some(if port.parse::<u16>().is_ok() {
            format!("127.0.0.1:{port}")
        } else {
            m.to_string()
        })
    }

    /// The members of the initial cluster by id (this node alone at `listen_peer` when the
    /// key is empty).
    pub fn initial_members(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut members = self.initial_cluster.members()?;
        if members.is_empty() {
            members.insert(self.id, strip_scheme(&self.listen_peer).to_string());
        }
        Ok(members)
    }

    /// Checks every value and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return err("id is required and must not be 0 (set `id` or pass --id)");
        }
        if let Some(n) = &self.name
            && n.trim().is_empty()
        {
            return err("name must not be empty");
        }
        check_socket_addr("listen_client", &self.listen_client)?;
        check_socket_addr("listen_peer", &self.listen_peer)?;
        if let Some(m) = self.metrics_addr() {
            check_socket_addr("listen_metrics", &m)?;
        }
        if strip_scheme(&self.listen_client) == strip_scheme(&self.listen_peer) {
            return err(format!(
                "listen_client and listen_peer must differ (both are {})",
                self.listen_client
            ));
        }
        if self.cluster_id.is_some() && self.cluster_token.is_some() {
            return err("cluster_id and cluster_token are both set: set only one");
        }
        if self.cluster_id == Some(0) {
            return err("cluster_id must not be 0");
        }
        let members = self.initial_members()?;
        if !self.join && !members.contains_key(&self.id) {
            return err(format!(
                "initial_cluster does not list this node's id {} (use join = true / --join \
                 to join an existing cluster)",
                self.id
            ));
        }
        if self.join && members.keys().all(|&m| m == self.id) {
            return err("join is set but initial_cluster names no other member to join through");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_filter)
            .or_else(|e| err(format!("log_filter `{}`: {e}", self.log_filter)))?;
        let limit = self.request_size_limit.get();
        if !(1024..=(64 << 20)).contains(&limit) {
            return err(format!(
                "request_size_limit ({}) must be between 1KiB and 64MiB",
                self.request_size_limit
            ));
        }
        if limit + 4096 > self.peer.max_message_size.get() {
            return err(format!(
                "request_size_limit ({}) must be well below peer.max_message_size ({})",
                self.request_size_limit, self.peer.max_message_size
            ));
        }
        if !self.corrupt_check_interval.is_zero()
            && self.corrupt_check_interval < Duration::from_secs(1)
        {
            return err("corrupt_check_interval must be 0s (off) or at least 1s");
        }
        self.raft.validate()?;
        self.wal.validate()?;
        self.compression.validate()?;
        self.peer.validate()?;
        self.snapshot.validate()?;
        self.compaction.validate()?;
        self.watch.validate()?;
        self.tls.validate()?;
        self.limits.validate()?;
        self.lease.validate()?;
        self.backup.validate()?;
        self.auth.validate()?;
        self.effective_backup()?;
        // The protocol crate's own checks (after ours, which say more).
        self.raft_core_config()?;
        Ok(())
    }

    /// `[backup]` with the deprecated `snapshot.upload_dir` mapped onto `backup.url`, and
    /// the deprecation message when it was.
    pub fn effective_backup(&self) -> Result<(BackupSection, Option<String>), ConfigError> {
        let mut b = self.backup.clone();
        let warning = b.adopt_upload_dir(self.snapshot.upload_dir.as_deref())?;
        Ok((b, warning))
    }

    /// Warnings worth logging loudly at start (unsafe settings).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.wal.sync_policy == SyncPolicyKey::Never {
            out.push(
                "wal.sync_policy = \"never\": the WAL is NEVER fsynced; a power loss or kernel \
                 crash can lose acknowledged writes and break Raft's safety (a node may forget \
                 its vote). Use it for benchmarks and throw-away clusters only."
                    .to_string(),
            );
        }
        if self.raft.jitter_max_delay.is_zero() {
            out.push(
                "raft.jitter_max_delay = 0: no randomized election timeouts; expect split votes"
                    .to_string(),
            );
        }
        out
    }
}

impl fmt::Display for NodeConfig {
    /// The configuration as TOML (what `raftd --print-config` shows).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match toml::to_string_pretty(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

#[cfg(test)]
mod tests;
