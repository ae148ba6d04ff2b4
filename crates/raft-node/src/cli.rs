//! raftd's command line: every flag is an override of one configuration key, applied over
//! the file given with `--config`.

use crate::config::{ConfigError, NodeConfig, parse_override};
use clap::Parser;
use std::path::PathBuf;

/// raftd: a replicated key-value node speaking the etcd v3 gRPC API.
///
/// Settings come from `--config FILE` (TOML), overridden by the flags below and by
/// `--set key=value` for any other key (e.g. `--set wal.segment_size=16MiB`).
#[derive(Parser, Debug, Default, Clone)]
#[command(name = "raftd", version, about)]
pub struct RaftdArgs {
    /// The TOML configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// This node's id (`id`).
    #[arg(long, global = true)]
    pub id: Option<u64>,
    /// This node's name (`name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The data directory (`data_dir`).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The etcd API address (`listen_client`).
    #[arg(long, value_name = "ADDR")]
    pub listen_client: Option<String>,
    /// The peer transport address (`listen_peer`).
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen_peer: Option<String>,
    /// The metrics/health HTTP address (`listen_metrics`).
    #[arg(long, value_name = "ADDR")]
    pub listen_metrics: Option<String>,
    /// The client URL published to the cluster (`advertise_client`).
    #[arg(long, value_name = "URL")]
    pub advertise_client: Option<String>,
    /// `id=host:port,...` (`initial_cluster`).
    #[arg(long, value_name = "LIST")]
    pub initial_cluster: Option<String>,
    /// The cluster id (`cluster_id`).
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// A token hashed into the cluster id (`cluster_token`).
    #[arg(long)]
    pub cluster_token: Option<String>,
    /// Join an existing cluster as a learner (`join = true`).
    #[arg(long)]
    pub join: bool,
    /// The log filter, e.g. `info,raft_runtime=debug` (`log_filter`).
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// `raft.tick_interval`, e.g. 10ms.
    #[arg(long, value_name = "DURATION")]
    pub tick_interval: Option<String>,
    /// `raft.heartbeat_interval`, e.g. 50ms.
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,
    /// `raft.election_timeout_base`, e.g. 150ms.
    #[arg(long, value_name = "DURATION")]
    pub election_timeout_base: Option<String>,
    /// `raft.jitter_max_delay`, e.g. 100ms.
    #[arg(long, value_name = "DURATION")]
    pub jitter_max_delay: Option<String>,
    /// `raft.min_leadership_duration`, e.g. 300ms.
    #[arg(long, value_name = "DURATION")]
    pub min_leadership_duration: Option<String>,
    /// `raft.snapshot_threshold` (entries).
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_threshold: Option<u64>,
    /// `wal.sync_policy`: always, interval or never (never is unsafe).
    #[arg(long, value_name = "POLICY")]
    pub wal_sync: Option<String>,
    /// `compression.codec`: none, snappy or zstd.
    #[arg(long, value_name = "CODEC")]
    pub compression: Option<String>,
    /// `request_size_limit`, e.g. 1.5MiB.
    #[arg(long, value_name = "SIZE")]
    pub request_size_limit: Option<String>,
    /// `compaction.auto_mode`: periodic or revision (etcd's flag).
    #[arg(long, value_name = "MODE")]
    pub auto_compaction_mode: Option<String>,
    /// `compaction.auto_retention`: periodic, a duration (1h, 30m) or hours; revision, a
    /// number of revisions; 0 turns auto-compaction off (etcd's flag).
    #[arg(long, value_name = "RETENTION")]
    pub auto_compaction_retention: Option<String>,
    /// The client port's certificate, PEM (`tls.cert_file`; etcd's flag).
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// The client port's private key, PEM (`tls.key_file`).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// CAs of client certificates, PEM (`tls.trusted_ca_file`).
    #[arg(long, value_name = "FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates (`tls.client_cert_auth`; `--client-cert-auth=false`
    /// turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: Option<bool>,
    /// This member's peer certificate, PEM (`tls.peer_cert_file`).
    #[arg(long, value_name = "FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// This member's peer private key, PEM (`tls.peer_key_file`).
    #[arg(long, value_name = "FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// The CA of peer certificates, PEM (`tls.peer_trusted_ca_file`).
    #[arg(long, value_name = "FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require peers' client certificates (`tls.peer_client_cert_auth`, default true;
    /// `--peer-client-cert-auth=false` turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: Option<bool>,
    /// Which auth tokens to serve (`auth.token`; etcd's flag): `simple` or
    /// `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m`.
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Concurrent streams per client connection (`limits.max_concurrent_streams`).
    #[arg(long, value_name = "N")]
    pub max_concurrent_streams: Option<u32>,
    /// Overrides any key: `--set raft.max_inflight_msgs=64` (repeatable, applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Validate the configuration and exit (0: valid, 2: invalid).
    #[arg(long)]
    pub check_config: bool,
    /// A subcommand instead of running the node.
    #[command(subcommand)]
    pub command: Option<RaftdCommand>,
}

/// What raftd can do besides running a node.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum RaftdCommand {
    /// Builds the data dir (`--data-dir`) of a new single-node cluster with id `--id` from a
    /// snapshot chain (point-in-time restore), then exits; start raftd on it as usual.
    Restore(RestoreArgs),
    /// Shrinks the store of a stopped member (`--data-dir`): copies it into a new database
    /// holding no free space and swaps that in (what `etcdctl defrag` cannot do while the
    /// member runs), then exits; start raftd on the data dir as usual.
    Defrag,
}

/// `raftd restore`.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup: an object store URL (`backup.url`: `s3://bucket/prefix`, `gs://`,
    /// `az://`, `file:///path`; reached with the `[backup]` settings of the config), an
    /// upload directory, a stopped node's `<data_dir>/snap`, or a snapshot file saved with
    /// `etcdctl snapshot save` (checked with its SHA-256 first).
    #[arg(long, value_name = "URL|DIR|FILE")]
    pub from: String,
    /// The snapshot id (32 hex digits, as `raftctl snapshot` prints).
    #[arg(long, value_name = "ID", conflicts_with_all = ["before", "index", "time", "latest"])]
    pub snapshot: Option<String>,
    /// The newest snapshot created at or before this time: RFC 3339
    /// (`2026-11-26T05:00:00Z`) or unix milliseconds. No flag at all: the newest snapshot.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["index", "time", "latest"])]
    pub before: Option<String>,
    /// Point-in-time restore to this committed log index: the newest snapshot at or below
    /// it plus the archived WAL entries after it (object store URLs only).
    #[arg(long, value_name = "N", conflicts_with_all = ["time", "latest"])]
    pub index: Option<u64>,
    /// Point-in-time restore to the last committed entry written at or before this time
    /// (RFC 3339 or unix milliseconds), through the WAL archive.
    #[arg(long, value_name = "TIME", conflicts_with = "latest")]
    pub time: Option<String>,
    /// Restore to the highest committed index the WAL archive holds.
    #[arg(long)]
    pub latest: bool,
}

/// Unix milliseconds from RFC 3339 or a number.
fn parse_time(flag: &str, t: &str) -> Result<u64, ConfigError> {
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    let at =
        humantime::parse_rfc3339_weak(t).map_err(|e| ConfigError(format!("{flag} `{t}`: {e}")))?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ConfigError(format!("{flag} `{t}`: before 1970")))?
        .as_millis() as u64)
}

impl RestoreArgs {
    /// Which snapshot the flags name.
    pub fn point(&self) -> Result<raft_snapshot::RestorePoint, ConfigError> {
        use raft_snapshot::{RestorePoint, SnapshotId};
        if let Some(id) = &self.snapshot {
            return SnapshotId::parse(id)
                .map(RestorePoint::Id)
                .ok_or_else(|| ConfigError(format!("--snapshot `{id}`: not a snapshot id")));
        }
        match &self.before {
            None => Ok(RestorePoint::Latest),
            Some(t) => Ok(RestorePoint::Before(parse_time("--before", t)?)),
        }
    }

    /// The point-in-time target of `--index`, `--time` or `--latest`.
    pub fn target(&self) -> Result<Option<crate::restore::archive::ArchiveTarget>, ConfigError> {
        use crate::restore::archive::ArchiveTarget;
        Ok(match (self.index, &self.time, self.latest) {
            (Some(n), _, _) => Some(ArchiveTarget::Index(n)),
            (_, Some(t), _) => Some(ArchiveTarget::Time(parse_time("--time", t)?)),
            (_, _, true) => Some(ArchiveTarget::Latest),
            _ => None,
        })
    }

    /// The restore `config` (id, data dir, peer address, WAL settings) asks for.
    pub fn options(
        &self,
        config: &NodeConfig,
    ) -> Result<crate::restore::RestoreOptions, ConfigError> {
        let store = config
            .backup
            .object_store()
            .unwrap_or_else(|| raft_snapshot::ObjectStoreConfig::new(self.from.clone()));
        Ok(crate::restore::RestoreOptions {
            from: self.from.clone(),
            point: self.point()?,
            target: self.target()?,
            store,
            data_dir: config.data_dir(),
            id: config.id,
            peer_url: config.listen_peer.clone(),
            wal: config.wal_settings(),
        })
    }
}

impl RaftdArgs {
    /// The overrides the flags make, in order (specific flags, then `--set`).
    pub fn overrides(&self) -> Result<Vec<(String, toml::Value)>, ConfigError> {
        use toml::Value::{Boolean, Integer, String as Str};
        let mut out: Vec<(String, toml::Value)> = Vec::new();
        let mut s = |key: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((key.to_string(), Str(v.clone())));
            }
        };
        s("name", &self.name);
        s(
            "data_dir",
            &self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        s("listen_client", &self.listen_client);
        s("listen_peer", &self.listen_peer);
        s("listen_metrics", &self.listen_metrics);
        s("advertise_client", &self.advertise_client);
        s("initial_cluster", &self.initial_cluster);
        s("cluster_token", &self.cluster_token);
        s("log_filter", &self.log_filter);
        s("raft.tick_interval", &self.tick_interval);
        s("raft.heartbeat_interval", &self.heartbeat_interval);
        s("raft.election_timeout_base", &self.election_timeout_base);
        s("raft.jitter_max_delay", &self.jitter_max_delay);
        s(
            "raft.min_leadership_duration",
            &self.min_leadership_duration,
        );
        s("wal.sync_policy", &self.wal_sync);
        s("compression.codec", &self.compression);
        s("request_size_limit", &self.request_size_limit);
        s("compaction.auto_mode", &self.auto_compaction_mode);
        s("compaction.auto_retention", &self.auto_compaction_retention);
        s("auth.token", &self.auth_token);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        s("tls.cert_file", &path(&self.cert_file));
        s("tls.key_file", &path(&self.key_file));
        s("tls.trusted_ca_file", &path(&self.trusted_ca_file));
        s("tls.peer_cert_file", &path(&self.peer_cert_file));
        s("tls.peer_key_file", &path(&self.peer_key_file));
        s(
            "tls.peer_trusted_ca_file",
            &path(&self.peer_trusted_ca_file),
        );
        for (key, v) in [
            ("tls.client_cert_auth", self.client_cert_auth),
            ("tls.peer_client_cert_auth", self.peer_client_cert_auth),
        ] {
            if let Some(v) = v {
                out.push((key.into(), Boolean(v)));
            }
        }
        if let Some(n) = self.max_concurrent_streams {
            out.push((
                "limits.max_concurrent_streams".into(),
                Integer(i64::from(n)),
            ));
        }
        let int = |v: u64, key: &str| -> Result<toml::Value, ConfigError> {
            i64::try_from(v)
                .map(Integer)
                .map_err(|_| ConfigError(format!("{key} ({v}) is too large")))
        };
        if let Some(id) = self.id {
            out.push(("id".into(), int(id, "id")?));
        }
        if let Some(c) = self.cluster_id {
            out.push(("cluster_id".into(), int(c, "cluster_id")?));
        }
        if let Some(n) = self.snapshot_threshold {
            out.push((
                "raft.snapshot_threshold".into(),
                int(n, "raft.snapshot_threshold")?,
            ));
        }
        if self.join {
            out.push(("join".into(), Boolean(true)));
        }
        for kv in &self.set {
            out.push(parse_override(kv)?);
        }
        Ok(out)
    }

    /// The file plus the flags, validated.
    pub fn load(&self) -> Result<NodeConfig, ConfigError> {
        NodeConfig::load(self.config.as_deref(), &self.overrides()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flags_become_overrides() {
        let args = RaftdArgs::try_parse_from([
            "raftd",
            "--id",
            "2",
            "--listen-client",
            "127.0.0.1:5001",
            "--listen-peer",
            "127.0.0.1:5002",
            "--initial-cluster",
            "1=127.0.0.1:6002,2=127.0.0.1:5002",
            "--heartbeat-interval",
            "20ms",
            "--election-timeout-base",
            "100ms",
            "--wal-sync",
            "never",
            "--set",
            "raft.max_inflight_msgs=16",
            "--set",
            "compression.codec=\"snappy\"",
        ])
        .unwrap();
        let c = args.load().unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.raft.heartbeat_interval, Duration::from_millis(20));
        assert_eq!(c.raft.max_inflight_msgs, 16);
        assert_eq!(c.compression.codec, crate::config::CodecKey::Snappy);
        assert_eq!(c.initial_members().unwrap().len(), 2);
    }

    #[test]
    fn etcd_tls_flags_set_tls_keys() {
        let args = RaftdArgs::try_parse_from([
            "raftd",
            "--id",
            "1",
            "--cert-file",
            "/c.pem",
            "--key-file",
            "/c.key",
            "--trusted-ca-file",
            "/ca.pem",
            "--client-cert-auth",
            "--peer-cert-file",
            "/p.pem",
            "--peer-key-file",
            "/p.key",
            "--peer-trusted-ca-file",
            "/ca.pem",
            "--peer-client-cert-auth=false",
            "--max-concurrent-streams",
            "7",
        ])
        .unwrap();
        let c = args.load().unwrap();
        assert_eq!(
            c.tls.cert_file.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(
            c.tls.peer_trusted_ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert!(c.tls.client_cert_auth);
        assert!(!c.tls.peer_client_cert_auth);
        assert_eq!(c.limits.max_concurrent_streams, 7);
    }

    #[test]
    fn bad_flag_values_are_config_errors() {
        let args =
            RaftdArgs::try_parse_from(["raftd", "--id", "1", "--heartbeat-interval", "soon"])
                .unwrap();
        let e = args.load().unwrap_err().to_string();
        assert!(e.contains("heartbeat_interval"), "{e}");
        let args = RaftdArgs::try_parse_from(["raftd", "--id", "1", "--set", "x.y=1"]).unwrap();
        assert!(
            args.load()
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }
}
