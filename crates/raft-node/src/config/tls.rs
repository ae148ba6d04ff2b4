//! `[tls]`: TLS on the client port and between peers (etcd's flag names and meanings, as
//! keys), its validation, and reading the certificate files.

use super::{ConfigError, err};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default cluster name in peer certificates' member URIs.
pub const DEFAULT_PEER_CERT_CLUSTER: &str = "raftd";

/// `[tls]`: TLS on the client port (and the HTTP endpoint) and mutual TLS between peers.
/// File paths are read at start and again at every reload (SIGHUP, a change of the
/// configuration file, `raftctl config reload`), so renewed certificates take effect
/// without a restart and without dropping connections.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// The client port's certificate (PEM; etcd `--cert-file`). With `key_file`, the client
    /// port (and the HTTP endpoint of `listen_metrics`) speak TLS 1.2+ only.
    pub cert_file: Option<PathBuf>,
    /// The client port's private key (PEM; etcd `--key-file`).
    pub key_file: Option<PathBuf>,
    /// CAs that client certificates must chain to (PEM; etcd `--trusted-ca-file`). Without
    /// `client_cert_auth` a client may still present a certificate, which then counts as
    /// an operator's for Admin and pprof.
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate from `trusted_ca_file` (etcd
    /// `--client-cert-auth`; default false).
    pub client_cert_auth: bool,
    /// This member's peer certificate, presented as server and as client (PEM; etcd
    /// `--peer-cert-file`). It must carry the URI subject alternative name
    /// `raftd://<peer_cert_cluster>/member/<id>`.
    pub peer_cert_file: Option<PathBuf>,
    /// This member's peer private key (PEM; etcd `--peer-key-file`).
    pub peer_key_file: Option<PathBuf>,
    /// The CA peer certificates must chain to (PEM; etcd `--peer-trusted-ca-file`).
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate (etcd `--peer-client-cert-auth`). Default true
    /// (etcd's default is false): without it, peer connections are server-authenticated
    /// only and a peer's member id is not bound to a certificate.
    pub peer_client_cert_auth: bool,
    /// The cluster name in peer certificates' member URIs (default `raftd`). Give each
    /// cluster its own when one CA issues certificates for several.
    pub peer_cert_cluster: String,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            trusted_ca_file: None,
            client_cert_auth: false,
            peer_cert_file: None,
            peer_key_file: None,
            peer_trusted_ca_file: None,
            peer_client_cert_auth: true,
            peer_cert_cluster: DEFAULT_PEER_CERT_CLUSTER.into(),
        }
    }
}

fn read(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).or_else(|e| err(format!("tls.{key} ({}): {e}", path.display())))
}

impl TlsSection {
    /// True when the client port speaks TLS.
    pub fn client_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// True when peers speak mutual TLS.
    pub fn peer_tls(&self) -> bool {
        self.peer_cert_file.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return err("tls.cert_file and tls.key_file go together: set both or neither");
        }
        if self.trusted_ca_file.is_some() && !self.client_tls() {
            return err("tls.trusted_ca_file needs tls.cert_file and tls.key_file");
        }
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return err(
                "tls.client_cert_auth needs tls.trusted_ca_file (the CA of client certificates)",
            );
        }
        let peer = [
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
        ];
        if peer.iter().any(|p| p.is_some()) && !peer.iter().all(|p| p.is_some()) {
            return err(
                "tls.peer_cert_file, tls.peer_key_file and tls.peer_trusted_ca_file go together: \
                 set all three or none",
            );
        }
        let name = &self.peer_cert_cluster;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return err(format!(
                "tls.peer_cert_cluster `{name}` must be a non-empty name of letters, digits, \
                 `-` and `.`"
            ));
        }
        Ok(())
    }

    /// The client port's TLS settings read from their files, or `None` without TLS.
    pub fn client_pem(&self) -> Result<Option<raft_net::tls::ServerTlsPem>, ConfigError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        Ok(Some(raft_net::tls::ServerTlsPem {
            cert_pem: read("cert_file", cert)?,
            key_pem: read("key_file", key)?,
            client_ca_pem: match &self.trusted_ca_file {
                Some(ca) => Some(read("trusted_ca_file", ca)?),
                None => None,
            },
            require_client_cert: self.client_cert_auth,
        }))
    }

    /// The peer transport's TLS settings read from their files, or `None` without peer TLS.
    pub fn peer_config(&self) -> Result<Option<raft_net::TlsConfig>, ConfigError> {
        let (Some(cert), Some(key), Some(ca)) = (
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
        ) else {
            return Ok(None);
        };
        let mut tls = raft_net::TlsConfig::new(
            read("peer_trusted_ca_file", ca)?,
            read("peer_cert_file", cert)?,
            read("peer_key_file", key)?,
        );
        tls.cluster_name = Some(self.peer_cert_cluster.clone());
        tls.require_client_cert = self.peer_client_cert_auth;
        Ok(Some(tls))
    }
}
