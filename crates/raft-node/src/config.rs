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
//! only change with a restart, the *reloadable* ones ([`RELOADABLE_KEYS`]) are meant to live
//! in an `ArcSwap` and change at run time; [`NodeConfig::static_changes`] names the static
//! keys that differ between two configurations so a reload can refuse them.
//!
//! Size: past the house's ~700 lines; splitting it by section (one module per `[section]`,
//! as `config/backup.rs` already is) is part of issue 24 and was held back while four
//! branches were adding sections to it.

mod auth;
mod backup;
mod bytes;
mod compaction;
mod lease;
mod log;
mod reload;
mod tls;
mod watch;

pub use auth::AuthSection;
pub use backup::{BackupSection, RELOADABLE_BACKUP_KEYS};
pub use bytes::ByteSize;
pub use compaction::{CompactionSection, Retention};
pub use lease::LeaseSection;
pub use log::LogFormat;
pub use reload::{ConfigSource, DiffError};
pub use tls::{DEFAULT_PEER_CERT_CLUSTER, LimitsSection, TlsSection};
pub use watch::WatchSection;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that cannot be used: the message names the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config error: {0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The keys whose values may change while the node runs (hot reload); every other key needs
/// a restart.
pub const RELOADABLE_KEYS: &[&str] = &[
    "log_filter",
    "quota_backend_bytes",
    "raft.heartbeat_interval",
    "raft.election_timeout_base",
    "raft.jitter_max_delay",
    "raft.min_leadership_duration",
    "raft.max_entries_per_append",
    "raft.max_bytes_per_append",
    "raft.max_inflight_msgs",
    "raft.max_inflight_bytes",
    "raft.max_batch_proposals",
    "raft.snapshot_threshold",
    "raft.snapshot_log_bytes",
    "raft.request_timeout",
    "compression.codec",
    "compression.level",
    "compression.threshold",
    "compaction.auto_mode",
    "compaction.auto_retention",
    "compaction.max_rate",
    "backup.keep_for",
    "backup.keep_bases",
];

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

/// The initial cluster, as a string list or a table from id to peer address.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum InitialCluster {
    /// `"1=127.0.0.1:2380,2=127.0.0.1:2381"` (an `http://` prefix is accepted).
    List(String),
    /// `{ "1" = "127.0.0.1:2380" }`.
    Table(BTreeMap<String, String>),
}

impl Default for InitialCluster {
    fn default() -> Self {
        InitialCluster::List(String::new())
    }
}

impl InitialCluster {
    /// The members, by id, with their peer addresses (`host:port`).
    pub fn members(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let pairs: Vec<(String, String)> = match self {
            InitialCluster::List(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((id, url)) => Ok((id.trim().to_string(), url.trim().to_string())),
                    None => err(format!(
                        "initial_cluster: `{p}` is not `id=host:port` (e.g. 1=127.0.0.1:2380)"
                    )),
                })
                .collect::<Result<_, _>>()?,
            InitialCluster::Table(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut out = BTreeMap::new();
        for (id, url) in pairs {
            let n: u64 = match id.parse() {
                Ok(n) if n != 0 => n,
                _ => {
                    return err(format!(
                        "initial_cluster: member id `{id}` must be a positive integer"
                    ));
                }
            };
            let addr = strip_scheme(&url);
            check_host_port(&format!("initial_cluster ({id})"), addr)?;
            if out.insert(n, addr.to_string()).is_some() {
                return err(format!("initial_cluster: member {n} appears twice"));
            }
        }
        Ok(out)
    }
}

pub use raft_kv::address_book::strip_scheme;

fn check_host_port(key: &str, addr: &str) -> Result<(), ConfigError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => err(format!("{key}: `{addr}` is not a host:port address")),
    }
}

fn check_socket_addr(key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    strip_scheme(addr).parse().or_else(|_| {
        err(format!(
            "{key}: `{addr}` is not an IP:port address (e.g. 127.0.0.1:2379)"
        ))
    })
}

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadModeKey {
    /// ReadIndex: a quorum round per batch of reads (safe whatever the clocks do).
    #[default]
    Safe,
    /// Leader lease: no round while the lease holds (assumes bounded clock drift).
    Lease,
}

/// `[raft]`: protocol timing (the seed's election settings) and flow control.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// The protocol clock: every other duration is rounded up to whole ticks (default 10ms).
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// How often a leader sends heartbeats (default 50ms).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The smallest election timeout; at least 3 x `heartbeat_interval` (default 150ms).
    #[serde(with = "humantime_serde")]
    pub election_timeout_base: Duration,
    /// Election timeouts are drawn from `[base, base + jitter)` (default 100ms).
    #[serde(with = "humantime_serde")]
    pub jitter_max_delay: Duration,
    /// A new leader is not displaced by (pre-)votes for this long (default 300ms).
    #[serde(with = "humantime_serde")]
    pub min_leadership_duration: Duration,
    /// Pre-vote before an election (default true).
    pub pre_vote: bool,
    /// A leader that lost touch with a quorum steps down (default true).
    pub check_quorum: bool,
    /// A leader tells followers a new commit index with its next append, or at the next
    /// tick when no write follows, instead of with an append of its own: one append and
    /// one answer less per follower per write when writes come one at a time. Followers
    /// then apply up to one `tick_interval` later; the leader's answers are not delayed
    /// (default true).
    pub lazy_commit: bool,
    /// `safe` (ReadIndex) or `lease`.
    pub read_mode: ReadModeKey,
    /// With `read_mode = "lease"`: the part of the election timeout kept as a margin for
    /// clock drift (default 10% of `election_timeout_base`).
    #[serde(with = "humantime_serde::option")]
    pub lease_drift_margin: Option<Duration>,
    /// Election priority (0: never campaigns on a timeout; default 1).
    pub priority: u32,
    /// Most entries in one append message (default 4096).
    pub max_entries_per_append: u64,
    /// Most entry bytes in one append message (default 1MiB).
    pub max_bytes_per_append: ByteSize,
    /// Most append messages in flight per peer (default 256).
    pub max_inflight_msgs: usize,
    /// Most entry bytes in flight per peer (default 32MiB).
    pub max_inflight_bytes: ByteSize,
    /// Most client proposals batched into one log write (default 4096).
    pub max_batch_proposals: usize,
    /// The longest a client request waits for its outcome (default 5s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Snapshot and compact the log every this many applied entries (default 100000; 0
    /// disables).
    pub snapshot_threshold: u64,
    /// Also snapshot and compact once the entries applied since the last snapshot hold this
    /// many bytes of data, counted since the node started (default 1GiB; 0 disables).
    pub snapshot_log_bytes: ByteSize,
    /// How long the apply thread may wait for more committed entries that no client on
    /// this node waits for, so one state-machine write covers several (default 5ms; 0
    /// applies at once; at most 1s). Linearizable reads, local clients' own writes and
    /// membership changes never wait for it; serializable reads on followers may trail by
    /// this much more.
    #[serde(with = "humantime_serde")]
    pub apply_linger: Duration,
}

impl Default for RaftSection {
    fn default() -> Self {
        let ms = Duration::from_millis;
        Self {
            tick_interval: ms(10),
            heartbeat_interval: ms(50),
            election_timeout_base: ms(150),
            jitter_max_delay: ms(100),
            min_leadership_duration: ms(300),
            pre_vote: true,
            check_quorum: true,
            lazy_commit: true,
            read_mode: ReadModeKey::Safe,
            lease_drift_margin: None,
            priority: 1,
            max_entries_per_append: 4096,
            max_bytes_per_append: ByteSize::mib(1),
            max_inflight_msgs: 256,
            max_inflight_bytes: ByteSize::mib(32),
            max_batch_proposals: 4096,
            request_timeout: Duration::from_secs(5),
            snapshot_threshold: 100_000,
            snapshot_log_bytes: ByteSize::mib(1024),
            apply_linger: ms(5),
        }
    }
}

/// When the WAL calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicyKey {
    /// Every batch (the only durable choice).
    #[default]
    Always,
    /// At most `wal.sync_interval` after a write (power loss loses up to that much).
    Interval,
    /// Never (UNSAFE: power loss can break Raft's guarantees).
    Never,
}

/// `[wal]`: the write-ahead log.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalSection {
    /// Size of each segment file (default 64MiB; 4KiB..4GiB).
    pub segment_size: ByteSize,
    /// Most bytes one group commit gathers (default 4MiB).
    pub max_batch_bytes: ByteSize,
    /// Wait this long for more writes before a batch is written (default 0: adaptive).
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
    /// `always`, `interval` or `never`.
    pub sync_policy: SyncPolicyKey,
    /// The interval of `sync_policy = "interval"` (default 10ms).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Recent entry bytes kept in memory (default 16MiB).
    pub cache_bytes: ByteSize,
}

impl Default for WalSection {
    fn default() -> Self {
        let d = raft_log::Settings::default();
        Self {
            segment_size: ByteSize(d.segment_size),
            max_batch_bytes: ByteSize(d.max_batch_bytes as u64),
            commit_delay: d.commit_delay,
            sync_policy: SyncPolicyKey::Always,
            sync_interval: Duration::from_millis(10),
            cache_bytes: ByteSize(d.cache_bytes as u64),
        }
    }
}

/// The codec names of `compression.codec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CodecKey {
    /// No compression.
    None,
    /// Snappy.
    Snappy,
    /// Zstandard at `compression.level`.
    #[default]
    Zstd,
}

/// `[compression]`: how peer messages and snapshot chunks are compressed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSection {
    /// `none`, `snappy` or `zstd` (default zstd).
    pub codec: CodecKey,
    /// The zstd level, 1..=22 (default 1).
    pub level: i32,
    /// Payloads below this size go uncompressed (default 4KiB).
    pub threshold: ByteSize,
}

impl Default for CompressionSection {
    fn default() -> Self {
        Self {
            codec: CodecKey::Zstd,
            level: 1,
            threshold: ByteSize::kib(4),
        }
    }
}

/// `[peer]`: limits of the peer transport.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    /// Largest peer frame accepted (default 64MiB).
    pub max_message_size: ByteSize,
    /// Unacknowledged bytes on a peer's append stream before the sender pauses (default
    /// 16MiB).
    pub stream_window: ByteSize,
    /// Messages queued per peer and lane before messages are dropped (default 4096).
    pub queue_max_messages: usize,
    /// Timeout of a connection attempt (default 1s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How much the transport's bulk threads (append streams, snapshot transfers) raise
    /// their nice value, 0..=19, so heartbeats, votes and the Raft loop get a CPU first
    /// when replication keeps every core busy (default 10; 0 keeps their priority, which
    /// favours the throughput of many small appends; Linux only).
    pub bulk_nice: i32,
    /// How much the transport's network thread (heartbeats, votes, acks) changes its nice
    /// value, -20..=19: negative raises its priority so it gets a CPU as soon as it wakes,
    /// ahead of the bulk threads (default -5; needs CAP_SYS_NICE or RLIMIT_NICE, e.g.
    /// systemd `LimitNICE=` or `AmbientCapabilities=CAP_SYS_NICE`, otherwise the thread
    /// keeps its priority and the node logs why once; 0 keeps it; Linux only).
    pub network_nice: i32,
    /// The network thread's real-time priority, 1..=99 under the round-robin real-time
    /// policy (SCHED_RR), or 0 for none: a heartbeat, vote or ack then gets a CPU the moment
    /// it arrives, ahead of every normal thread (default 0, as raft-net's own default:
    /// throughput first, see `docs/configuration.md`; needs CAP_SYS_NICE
    /// or RLIMIT_RTPRIO, e.g. systemd `LimitRTPRIO=` or `AmbientCapabilities=CAP_SYS_NICE`,
    /// otherwise the thread keeps the normal policy and the node logs why once; Linux
    /// only).
    pub network_realtime_priority: u8,
}

impl Default for PeerSection {
    fn default() -> Self {
        Self {
            max_message_size: ByteSize::mib(64),
            stream_window: ByteSize::mib(16),
            queue_max_messages: 4096,
            connect_timeout: Duration::from_secs(1),
            bulk_nice: 10,
            network_nice: -5,
            network_realtime_priority: 0,
        }
    }
}

/// `[snapshot]`: state-machine snapshot chains (`<data_dir>/snap`) and their upload. When
/// snapshots are taken is `raft.snapshot_threshold` and `raft.snapshot_log_bytes`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSection {
    /// Merge the chain into a new base once it holds more than this many snapshots (base
    /// plus deltas; default 8).
    pub max_chain_len: usize,
    /// Merge the chain once its deltas together exceed this fraction of the base's size
    /// (default 0.5).
    pub max_delta_ratio: f64,
    /// Upload every new snapshot to this directory (a local object store, the layout
    /// `raftd restore --from` reads) in the background, retrying with backoff. None by
    /// default.
    pub upload_dir: Option<PathBuf>,
    /// Build snapshots reading at most this many bytes of records per second (the snapshot
    /// thread sleeps when ahead), so a build takes less from apply; 0 is unlimited. Default
    /// [`raft_kv::pace::DEFAULT_MAX_BUILD_RATE`]; at least [`MIN_SNAPSHOT_BUILD_RATE`]
    /// unless 0. Chain merges and restores are not paced.
    pub max_build_rate: ByteSize,
}

/// The smallest non-zero `snapshot.max_build_rate`: slower, a large store's snapshot would
/// take so long that the log it replaces keeps growing meanwhile.
pub const MIN_SNAPSHOT_BUILD_RATE: ByteSize = ByteSize::mib(1);

impl Default for SnapshotSection {
    fn default() -> Self {
        let p = raft_snapshot::ChainPolicy::default();
        Self {
            max_chain_len: p.max_chain_len,
            max_delta_ratio: p.max_delta_ratio,
            upload_dir: None,
            max_build_rate: ByteSize(raft_kv::pace::DEFAULT_MAX_BUILD_RATE),
        }
    }
}

impl SnapshotSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_chain_len == 0 {
            return err("snapshot.max_chain_len must be at least 1");
        }
        if !(self.max_delta_ratio.is_finite() && self.max_delta_ratio > 0.0) {
            return err(format!(
                "snapshot.max_delta_ratio ({}) must be a positive number",
                self.max_delta_ratio
            ));
        }
        let rate = self.max_build_rate;
        if rate.get() != 0 && rate < MIN_SNAPSHOT_BUILD_RATE {
            return err(format!(
                "snapshot.max_build_rate ({rate}) must be 0 (unlimited) or at least \
                 {MIN_SNAPSHOT_BUILD_RATE}"
            ));
        }
        Ok(())
    }

    /// The chain merge policy.
    pub fn policy(&self) -> raft_snapshot::ChainPolicy {
        raft_snapshot::ChainPolicy {
            max_chain_len: self.max_chain_len,
            max_delta_ratio: self.max_delta_ratio,
        }
    }
}

/// The cluster token that data dirs written before cluster ids were random and persisted
/// derived their id from when no token was given.
pub const DEFAULT_CLUSTER_TOKEN: &str = "raft-cluster";

/// A stable 64-bit hash (FNV-1a) of a cluster token; never 0.
pub fn cluster_id_from_token(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl NodeConfig {
    /// Reads `file` (when given), applies `overrides` (`key.path` = value, in order) and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(String, toml::Value)],
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).or_else(|e| {
                    err(format!(
                        "cannot read the config file {}: {e}",
                        path.display()
                    ))
                })?;
                text.parse::<toml::Table>()
                    .or_else(|e| err(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in overrides {
            set_key(&mut table, key, value.clone())?;
        }
        let config = Self::from_table(table, file)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .or_else(|e| err(e.to_string()))?;
        let config = Self::from_table(table, None)?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table, file: Option<&Path>) -> Result<Self, ConfigError> {
        // Re-rendered so that deserialisation errors point at the offending key's line.
        let text = toml::to_string(&table).or_else(|e| err(e.to_string()))?;
        toml::from_str(&text).or_else(|e: toml::de::Error| {
            let place = file.map_or("flags".to_string(), |f| {
                format!("{} (with flags)", f.display())
            });
            err(format!("{place}: {}", e.to_string().trim_end()))
        })
    }

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

    /// The protocol configuration (`raft_core::Config`).
    pub fn raft_core_config(&self) -> Result<raft_core::Config, ConfigError> {
        let r = &self.raft;
        let mut c = raft_core::Config::from_durations(
            self.id,
            r.tick_interval,
            r.heartbeat_interval,
            r.election_timeout_base,
            r.jitter_max_delay,
            r.min_leadership_duration,
        )
        .or_else(|e| err(format!("raft: {e}")))?;
        c.pre_vote = r.pre_vote;
        c.check_quorum = r.check_quorum;
        c.lazy_commit = r.lazy_commit;
        c.priority = r.priority;
        c.max_entries_per_append = r.max_entries_per_append;
        c.max_bytes_per_append = r.max_bytes_per_append.get();
        c.max_inflight_msgs = r.max_inflight_msgs;
        c.max_inflight_bytes = r.max_inflight_bytes.get();
        if r.read_mode == ReadModeKey::Lease {
            let margin = r
                .lease_drift_margin
                .unwrap_or(r.election_timeout_base / 10)
                .max(r.tick_interval);
            let ticks = margin.as_nanos().div_ceil(r.tick_interval.as_nanos());
            c.read_mode = raft_core::ReadMode::Lease {
                drift_margin_ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
            };
        }
        c.validate().or_else(|e| err(format!("raft: {e}")))?;
        Ok(c)
    }

    /// `[backup]` with the deprecated `snapshot.upload_dir` mapped onto `backup.url`, and
    /// the deprecation message when it was.
    pub fn effective_backup(&self) -> Result<(BackupSection, Option<String>), ConfigError> {
        let mut b = self.backup.clone();
        let warning = b.adopt_upload_dir(self.snapshot.upload_dir.as_deref())?;
        Ok((b, warning))
    }

    /// The write-ahead log's settings.
    pub fn wal_settings(&self) -> raft_log::Settings {
        let w = &self.wal;
        raft_log::Settings {
            segment_size: w.segment_size.get(),
            max_batch_bytes: w.max_batch_bytes.as_usize(),
            commit_delay: w.commit_delay,
            sync_policy: match w.sync_policy {
                SyncPolicyKey::Always => raft_log::SyncPolicy::Always,
                SyncPolicyKey::Interval => raft_log::SyncPolicy::Interval(w.sync_interval),
                SyncPolicyKey::Never => raft_log::SyncPolicy::Never,
            },
            cache_bytes: w.cache_bytes.as_usize(),
            // The archive keeps segments until the object store holds them.
            archive: self.backup.archive_wal
                && (self.backup.url.is_some() || self.snapshot.upload_dir.is_some()),
        }
    }

    /// The peer transport's configuration for cluster `cluster_id` (without TLS: the
    /// node reads the certificate files, see [`TlsSection::peer_config`]).
    pub fn transport_config(&self, cluster_id: u64) -> raft_net::TransportConfig {
        let mut t = raft_net::TransportConfig::new(self.id, cluster_id);
        t.max_pending_connections = self.limits.peer_max_pending_connections;
        t.max_concurrent_streams = self.limits.peer_max_concurrent_streams;
        t.compression = self.compression.to_net();
        t.max_message_size = self.peer.max_message_size.as_usize();
        t.stream_window_bytes = self.peer.stream_window.as_usize();
        t.queue_max_messages = self.peer.queue_max_messages;
        t.connect_timeout = self.peer.connect_timeout;
        t.bulk_nice = self.peer.bulk_nice;
        t.network_nice = self.peer.network_nice;
        t.network_realtime_priority = self.peer.network_realtime_priority;
        t
    }

    /// The static keys (those that need a restart) whose values differ in `new`: a hot
    /// reload must refuse a new configuration for which this is not empty.
    pub fn static_changes(&self, new: &NodeConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, same: bool| {
            if !same {
                out.push(key);
            }
        };
        check("id", self.id == new.id);
        check("name", self.name == new.name);
        check("data_dir", self.data_dir == new.data_dir);
        check("listen_client", self.listen_client == new.listen_client);
        check("listen_peer", self.listen_peer == new.listen_peer);
        check("listen_metrics", self.listen_metrics == new.listen_metrics);
        check(
            "advertise_client",
            self.advertise_client == new.advertise_client,
        );
        check(
            "initial_cluster",
            self.initial_cluster == new.initial_cluster,
        );
        check(
            "cluster_id",
            self.explicit_cluster_id() == new.explicit_cluster_id(),
        );
        check("join", self.join == new.join);
        check("log_format", self.log_format == new.log_format);
        check(
            "request_size_limit",
            self.request_size_limit == new.request_size_limit,
        );
        check(
            "raft.tick_interval",
            self.raft.tick_interval == new.raft.tick_interval,
        );
        check("raft.pre_vote", self.raft.pre_vote == new.raft.pre_vote);
        check(
            "raft.check_quorum",
            self.raft.check_quorum == new.raft.check_quorum,
        );
        check(
            "raft.lazy_commit",
            self.raft.lazy_commit == new.raft.lazy_commit,
        );
        check("raft.read_mode", self.raft.read_mode == new.raft.read_mode);
        check(
            "raft.apply_linger",
            self.raft.apply_linger == new.raft.apply_linger,
        );
        check(
            "raft.lease_drift_margin",
            self.raft.lease_drift_margin == new.raft.lease_drift_margin,
        );
        check("raft.priority", self.raft.priority == new.raft.priority);
        check("wal", self.wal == new.wal);
        check("peer", self.peer == new.peer);
        check("snapshot", self.snapshot == new.snapshot);
        check("watch", self.watch == new.watch);
        check("tls", self.tls == new.tls);
        check("limits", self.limits == new.limits);
        check("lease", self.lease == new.lease);
        check("backup", self.backup.same_static(&new.backup));
        out
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

impl RaftSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let tick = self.tick_interval;
        if tick < Duration::from_millis(1) || tick > Duration::from_secs(1) {
            return err(format!(
                "raft.tick_interval ({}) must be between 1ms and 1s",
                dur(tick)
            ));
        }
        if self.heartbeat_interval < tick {
            return err(format!(
                "raft.heartbeat_interval ({}) must be at least raft.tick_interval ({})",
                dur(self.heartbeat_interval),
                dur(tick)
            ));
        }
        if self.election_timeout_base < self.heartbeat_interval * 3 {
            return err(format!(
                "election_timeout_base ({}) must be at least 3 x heartbeat_interval ({})",
                dur(self.election_timeout_base),
                dur(self.heartbeat_interval)
            ));
        }
        if self.election_timeout_base > Duration::from_secs(60) {
            return err(format!(
                "raft.election_timeout_base ({}) must be at most 60s",
                dur(self.election_timeout_base)
            ));
        }
        if self.jitter_max_delay > self.election_timeout_base * 10 {
            return err(format!(
                "raft.jitter_max_delay ({}) must be at most 10 x election_timeout_base ({})",
                dur(self.jitter_max_delay),
                dur(self.election_timeout_base)
            ));
        }
        if self.min_leadership_duration > self.election_timeout_base * 10 {
            return err(format!(
                "raft.min_leadership_duration ({}) must be at most 10 x election_timeout_base \
                 ({})",
                dur(self.min_leadership_duration),
                dur(self.election_timeout_base)
            ));
        }
        if self.read_mode == ReadModeKey::Lease && !self.check_quorum {
            return err("raft.read_mode = \"lease\" requires raft.check_quorum = true");
        }
        if let Some(m) = self.lease_drift_margin
            && m >= self.election_timeout_base
        {
            return err(format!(
                "raft.lease_drift_margin ({}) must be below election_timeout_base ({})",
                dur(m),
                dur(self.election_timeout_base)
            ));
        }
        for (key, v) in [
            ("raft.max_entries_per_append", self.max_entries_per_append),
            ("raft.max_bytes_per_append", self.max_bytes_per_append.get()),
            ("raft.max_inflight_msgs", self.max_inflight_msgs as u64),
            ("raft.max_inflight_bytes", self.max_inflight_bytes.get()),
            ("raft.max_batch_proposals", self.max_batch_proposals as u64),
        ] {
            if v == 0 {
                return err(format!("{key} must be at least 1"));
            }
        }
        if self.apply_linger > Duration::from_secs(1) {
            return err(format!(
                "raft.apply_linger ({}) must be at most 1s",
                dur(self.apply_linger)
            ));
        }
        if self.request_timeout < self.election_timeout_base {
            return err(format!(
                "raft.request_timeout ({}) must be at least election_timeout_base ({})",
                dur(self.request_timeout),
                dur(self.election_timeout_base)
            ));
        }
        Ok(())
    }
}

impl WalSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let s = self.segment_size.get();
        if !(4096..=u64::from(u32::MAX)).contains(&s) {
            return err(format!(
                "wal.segment_size ({}) must be between 4KiB and 4GiB",
                self.segment_size
            ));
        }
        if self.max_batch_bytes.get() == 0 {
            return err("wal.max_batch_bytes must be at least 1");
        }
        if self.commit_delay > Duration::from_secs(1) {
            return err(format!(
                "wal.commit_delay ({}) must be at most 1s",
                dur(self.commit_delay)
            ));
        }
        if self.sync_policy == SyncPolicyKey::Interval
            && (self.sync_interval.is_zero() || self.sync_interval > Duration::from_secs(10))
        {
            return err(format!(
                "wal.sync_interval ({}) must be between 1ns and 10s",
                dur(self.sync_interval)
            ));
        }
        Ok(())
    }
}

impl CompressionSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.codec == CodecKey::Zstd && !(1..=22).contains(&self.level) {
            return err(format!(
                "compression.level ({}) must be between 1 and 22 for zstd",
                self.level
            ));
        }
        Ok(())
    }

    /// The transport's compression settings.
    pub fn to_net(&self) -> raft_net::CompressionConfig {
        raft_net::CompressionConfig {
            codec: match self.codec {
                CodecKey::None => raft_net::Codec::None,
                CodecKey::Snappy => raft_net::Codec::Snappy,
                CodecKey::Zstd => raft_net::Codec::Zstd { level: self.level },
            },
            threshold: self.threshold.as_usize(),
        }
    }
}

impl PeerSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size.get() < 64 << 10 {
            return err(format!(
                "peer.max_message_size ({}) must be at least 64KiB",
                self.max_message_size
            ));
        }
        if self.stream_window.get() == 0 || self.queue_max_messages == 0 {
            return err("peer.stream_window and peer.queue_max_messages must be at least 1");
        }
        if self.connect_timeout.is_zero() {
            return err("peer.connect_timeout must be positive");
        }
        if !(0..=19).contains(&self.bulk_nice) {
            return err(format!(
                "peer.bulk_nice ({}) must be between 0 and 19",
                self.bulk_nice
            ));
        }
        if !(-20..=19).contains(&self.network_nice) {
            return err(format!(
                "peer.network_nice ({}) must be between -20 and 19",
                self.network_nice
            ));
        }
        if self.network_realtime_priority > 99 {
            return err(format!(
                "peer.network_realtime_priority ({}) must be between 0 and 99",
                self.network_realtime_priority
            ));
        }
        Ok(())
    }
}

/// Sets `key` (dotted path) in `table` to `value`, creating sub-tables as needed.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return err(format!("`{key}` is not a configuration key"));
    }
    let (last, path) = parts.split_last().expect("split yields at least one part");
    let mut cur = table;
    for p in path {
        let entry = cur
            .entry((*p).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return err(format!("`{key}`: `{p}` is not a section")),
        };
    }
    cur.insert((*last).to_string(), value);
    Ok(())
}

/// Parses a `--set key=value` override: the value is read as TOML (`5`, `true`, `"x"`) and
/// otherwise taken as a string (`100ms`, `1=127.0.0.1:2380`).
pub fn parse_override(s: &str) -> Result<(String, toml::Value), ConfigError> {
    let Some((key, value)) = s.split_once('=') else {
        return err(format!("--set `{s}`: expected key=value"));
    };
    let key = key.trim().to_string();
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key, parsed))
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
