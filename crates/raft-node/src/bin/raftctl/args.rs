//! The command line: every command and its flags (clap).

use clap::{Parser, Subcommand};
use std::time::Duration;

/// raftctl: talk to a raftd cluster (or any etcd v3 server).
#[derive(Parser, Debug)]
#[command(version, about)]
pub(super) struct Args {
    /// Client endpoints, comma separated; tried in order until one answers.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        env = "RAFTCTL_ENDPOINTS"
    )]
    pub(super) endpoints: Vec<String>,
    /// Timeout of each call (e.g. 5s, 500ms).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(super) timeout: Duration,
    /// Dial with TLS, trusting the CA in this PEM file (etcdctl's `--cacert`).
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        global = true,
        value_name = "FILE",
        env = "RAFTCTL_CACERT"
    )]
    pub(super) cacert: Option<std::path::PathBuf>,
    /// A client certificate, PEM, for servers that ask for one (etcdctl's `--cert`).
    #[arg(
        long = "cert",
        id = "tls_cert",
        global = true,
        value_name = "FILE",
        env = "RAFTCTL_CERT"
    )]
    pub(super) cert: Option<std::path::PathBuf>,
    /// The client certificate's key, PEM (etcdctl's `--key`).
    #[arg(
        long = "key",
        id = "tls_key",
        global = true,
        value_name = "FILE",
        env = "RAFTCTL_KEY"
    )]
    pub(super) key: Option<std::path::PathBuf>,
    /// Authenticate as NAME:PASSWORD (etcd authentication; etcdctl's `--user`): every call
    /// then carries the user's token.
    #[arg(
        long = "user",
        global = true,
        value_name = "NAME:PASSWORD",
        env = "RAFTCTL_USER"
    )]
    pub(super) user: Option<String>,
    #[command(subcommand)]
    pub(super) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(super) enum Cmd {
    /// Writes a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Print the previous value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Reads a key, or every key under a prefix.
    Get {
        /// The key (or prefix).
        key: String,
        /// Read every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// At most this many keys (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Serve from the contacted node without a quorum round (may be stale).
        #[arg(long)]
        serializable: bool,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        /// Print only the number of keys.
        #[arg(long)]
        count_only: bool,
    },
    /// Deletes a key, or every key under a prefix; prints how many were deleted.
    Del {
        /// The key (or prefix).
        key: String,
        /// Delete every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Print the deleted pairs.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Compare-and-swap: writes VALUE only if KEY currently matches the expectation.
    /// Prints OK, or FAILED (exit code 1) with the current value.
    Cas {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// Expect this current value.
        #[arg(long, group = "expect")]
        expect_value: Option<String>,
        /// Expect this current version (0: the key does not exist).
        #[arg(long, group = "expect")]
        expect_version: Option<i64>,
        /// Expect the key not to exist (same as --expect-version 0).
        #[arg(long, group = "expect")]
        expect_absent: bool,
    },
    /// Cluster membership.
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// A table of every member (from Admin/ClusterStatus on each member): id, name,
    /// endpoint, role, the leader it knows, term, commit and applied index, and its lag
    /// behind the leader's last index (as the leader sees it).
    Status,
    /// A summary of one node's metrics (proposals, commit latency, fsyncs, elections,
    /// leader changes, traffic), read from its /metrics endpoint.
    Metrics {
        /// The node's metrics address (its `listen_metrics`).
        #[arg(
            long,
            default_value = "127.0.0.1:9090",
            env = "RAFTCTL_METRICS_ADDRESS"
        )]
        address: String,
    },
    /// Takes a snapshot on the first endpoint that answers and compacts its log
    /// (Admin/Snapshot); prints the snapshot's id, index, term, kind and size.
    Snapshot,
    /// Hands leadership to the member TARGET (id).
    MoveLeader {
        /// The new leader's id.
        target: u64,
    },
    /// Node configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Writes a new CA and the certificates of a TLS cluster into a directory: ca.pem,
    /// server.pem (client ports), client.pem (common name root), `member-<id>.pem` (peers,
    /// binding the member id), each with its .key. Talks to no server.
    Certs {
        /// Where to write them (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The member ids, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        members: Vec<u64>,
        /// The cluster name in the member URIs (raftd's `tls.peer_cert_cluster`).
        #[arg(long, default_value = raft_node::config::DEFAULT_PEER_CERT_CLUSTER)]
        cluster_name: String,
        /// Host names and IP addresses the server and member certificates are valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        hosts: Vec<String>,
        /// How long the certificates are valid (e.g. 90d, 1y).
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Backups in an object store (`backup.url`).
    Backup {
        #[command(subcommand)]
        cmd: BackupCmd,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum BackupCmd {
    /// Restore points: snapshots, each member's archived WAL (index ranges and times) and
    /// the range `raftd restore --from URL` can reach.
    List(raft_node::backup_report::BackupArgs),
    /// Reads every object a restore needs and checks its checksums; exits 1 on damage.
    Verify(raft_node::backup_report::BackupArgs),
    /// Applies a retention policy to the store now (the uploader applies
    /// `backup.keep_for`/`keep_bases` by itself): deletes the snapshots and archived WAL
    /// segments no kept restore point needs, never a parent of a kept delta nor a segment a
    /// restore after a kept snapshot reads. `--dry-run` lists what it would keep and delete.
    Prune(raft_node::backup_report::PruneArgs),
}

#[derive(Subcommand, Debug)]
pub(super) enum ConfigCmd {
    /// Makes every endpoint re-read its configuration file and apply the settings that
    /// may change at run time; prints the changed keys per endpoint. Exits 1 when an
    /// endpoint refused (invalid file, or a setting that needs a restart).
    Reload,
}

#[derive(Subcommand, Debug)]
pub(super) enum MemberCmd {
    /// Lists the members.
    List,
    /// Adds a member at PEER_URL (as a learner with --learner); prints its id.
    Add {
        /// The new member's peer address (host:port or http://host:port).
        peer_url: String,
        /// Add it as a learner (receives the log, does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Removes the member ID.
    Remove {
        /// The member id.
        id: u64,
    },
    /// Promotes the learner ID to a voter.
    Promote {
        /// The member id.
        id: u64,
    },
}
