//! What a member's process is: the [`Launch`] trait, raftd's own ([`Raftd`]) and its TLS
//! files.

use anyhow::Result;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// raftd flags for loaded CI machines: a calmer election timer than the default (50 ms
/// heartbeats, 300 ms election timeout base) and `info` logs.
pub const CALM: [&str; 6] = [
    "--heartbeat-interval",
    "50ms",
    "--election-timeout-base",
    "300ms",
    "--log-filter",
    "info",
];

/// What a [`Launch`] knows of the member whose process it starts.
#[derive(Debug)]
pub struct Member<'a> {
    /// The member id (1..=n for the founding members).
    pub id: u64,
    /// Its client address, `127.0.0.1:port`.
    pub client: &'a str,
    /// Its peer address.
    pub peer: &'a str,
    /// An address for its HTTP (metrics) endpoint, if the server has one.
    pub metrics: &'a str,
    /// Its data directory (`<cluster dir>/node<id>`).
    pub data_dir: &'a Path,
    /// `(id, peer address)` of the founding members, the initial cluster.
    pub founders: &'a [(u64, String)],
    /// Whether the member joins a running cluster (added with `MemberAdd`).
    pub join: bool,
}

/// How to start one member's server process.
pub trait Launch: Send + Sync {
    /// A short name for log headers, e.g. `raftd`.
    fn name(&self) -> &str;

    /// The command that starts `member`; the cluster sends its output to the member's log.
    fn command(&self, member: &Member<'_>) -> Command;

    /// TLS settings for clients of the cluster, when its client ports speak TLS.
    fn client_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        None
    }
}

/// The certificates of a TLS test cluster ([`Raftd::tls`]), written by
/// [`crate::certs::write_cluster_certs`] for members 1 to 9, cluster name `it`, valid for
/// 127.0.0.1 and localhost.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Where they are.
    pub certs: crate::certs::ClusterCerts,
    /// The CA that signed them (to make more: renewed, expired, ...).
    pub ca: std::sync::Arc<crate::certs::Authority>,
    /// Whether the client ports require client certificates.
    pub client_cert_auth: bool,
}

impl TlsFiles {
    /// Writes the certificates into `dir`.
    pub fn generate(dir: &Path, client_cert_auth: bool) -> Result<TlsFiles> {
        let day = crate::certs::Validity::For(Duration::from_secs(86_400));
        let ca = crate::certs::Authority::new("test CA", day)?;
        let certs = ca.write_cluster(
            dir,
            "it",
            &(1..=9).collect::<Vec<_>>(),
            &["127.0.0.1".to_string(), "localhost".to_string()],
            day,
        )?;
        Ok(TlsFiles {
            certs,
            ca: std::sync::Arc::new(ca),
            client_cert_auth,
        })
    }

    /// The raftd flags of member `id`.
    pub fn flags(&self, id: u64) -> Vec<OsString> {
        let c = &self.certs;
        let (_, cert, key) = c
            .members
            .iter()
            .find(|(m, ..)| *m == id)
            .expect("certificates are made for members 1 to 9");
        let mut out: Vec<OsString> = vec![
            "--cert-file".into(),
            c.server.0.clone().into(),
            "--key-file".into(),
            c.server.1.clone().into(),
            "--trusted-ca-file".into(),
            c.ca.clone().into(),
            "--peer-cert-file".into(),
            cert.into(),
            "--peer-key-file".into(),
            key.into(),
            "--peer-trusted-ca-file".into(),
            c.ca.clone().into(),
            "--set".into(),
            "tls.peer_cert_cluster=\"it\"".into(),
        ];
        if self.client_cert_auth {
            out.push("--client-cert-auth".into());
        }
        out
    }

    /// TLS settings of a client that trusts the CA and presents the `root` client
    /// certificate.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        let c = &self.certs;
        crate::client::tls_from_files(Some(&c.ca), Some(&c.client.0), Some(&c.client.1))
            .expect("the certificates were just written")
    }
}

/// `raftd` started with command-line flags: ids, addresses, data directory, the initial
/// cluster and a cluster token, then any extra flags.
#[derive(Clone, Debug)]
pub struct Raftd {
    bin: PathBuf,
    token: Option<String>,
    metrics: bool,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    tls: Option<TlsFiles>,
}

impl Raftd {
    /// `raftd` at `bin`, cluster token `it`, no metrics endpoint, no extra flags.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            token: Some("it".into()),
            metrics: false,
            args: Vec::new(),
            envs: Vec::new(),
            tls: None,
        }
    }

    /// Runs every member with TLS on its client port and mutual TLS between peers, from
    /// `tls`'s files; the cluster's clients use TLS too.
    pub fn tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the cluster token.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// No cluster token: the first member draws a random cluster id and the others ask it
    /// for the id, as in production.
    pub fn random_cluster_id(mut self) -> Self {
        self.token = None;
        self
    }

    /// Serves `/metrics`, `/status` and the rest on each member's metrics address.
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Adds [`CALM`]: a calmer election timer for loaded CI machines, and `info` logs.
    pub fn calm(self) -> Self {
        self.args(CALM)
    }

    /// Sets an environment variable of every member (e.g. a testing-only fault switch).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Adds flags given to every member, e.g. `["--snapshot-threshold", "50"]`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

impl Launch for Raftd {
    fn name(&self) -> &str {
        "raftd"
    }

    fn command(&self, m: &Member<'_>) -> Command {
        let mut initial: Vec<String> = m.founders.iter().map(|(i, p)| format!("{i}={p}")).collect();
        if m.join {
            initial.push(format!("{}={}", m.id, m.peer));
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--id", &m.id.to_string()])
            .arg("--data-dir")
            .arg(m.data_dir)
            .args(["--listen-client", m.client, "--listen-peer", m.peer])
            .args(["--initial-cluster", &initial.join(",")]);
        if let Some(token) = &self.token {
            cmd.args(["--cluster-token", token]);
        }
        if self.metrics {
            cmd.args(["--listen-metrics", m.metrics]);
        }
        if m.join {
            cmd.arg("--join");
        }
        if let Some(tls) = &self.tls {
            cmd.args(tls.flags(m.id));
        }
        cmd.args(&self.args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn client_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        self.tls.as_ref().map(TlsFiles::client)
    }
}
