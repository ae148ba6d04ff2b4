//! TLS with rustls (ring), for the peer transport and for a node's other listeners: TLS 1.2
//! and 1.3 only; certificates, keys and CAs from PEM; client certificates required,
//! optional or ignored; member ids bound to peer certificates; new certificates taken at
//! run time without touching established connections; certificate expiry as a metric.
//!
//! - [`TlsAcceptor`] is a server's side: [`TlsAcceptor::accept`] runs the handshake on a
//!   TCP connection and returns a [`ServerConn`] whose [`ConnInfo`] says what the client's
//!   certificate proved; tonic serves `ServerConn`s and puts the `ConnInfo` in every
//!   request's extensions. [`TlsAcceptor::reload`] swaps the configuration that later
//!   handshakes use.
//! - The peer transport uses one acceptor for its server and a client configuration with the
//!   same certificate for its connections ([`crate::TlsConfig`]). With a cluster name, a
//!   peer's certificate must carry the URI `raftd://<cluster>/member/<id>` ([`member_uri`]):
//!   a server accepts frames only from the member its client's certificate names, and a
//!   client talks only to a server whose certificate names the member it dialled.

mod cert;
mod conn;

pub use cert::{CertInfo, MEMBER_URI_SCHEME, inspect_certificate, member_uri, parse_member_uri};
pub(crate) use conn::{ClientConn, ClientIo};
pub use conn::{ConnInfo, ServerConn};

use crate::config::TlsConfig;
use crate::error::{Error, Result};
use metrics::{counter, gauge};
use raft_core::NodeId;
use raft_metrics::net as m;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// The ALPN protocol of gRPC (HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2; nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn config_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what}: {e}"))
}

/// Every certificate in `pem` (at least one), `what` naming the input in errors.
pub fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| config_err(what, e))?;
    if certs.is_empty() {
        return Err(config_err(what, "no PEM certificate found"));
    }
    Ok(certs)
}

fn key_from_pem(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| config_err(what, e))
}

fn roots_from_pem(what: &str, pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(what, pem)? {
        roots.add(cert).map_err(|e| config_err(what, e))?;
    }
    Ok(Arc::new(roots))
}

/// A TLS server's settings, as PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTlsPem {
    /// The server's certificate chain (leaf first).
    pub cert_pem: String,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// CAs that client certificates must chain to; without it clients are not asked for a
    /// certificate.
    pub client_ca_pem: Option<String>,
    /// Refuse clients without a certificate (needs `client_ca_pem`). When false, a client
    /// may still present one, which is then verified.
    pub require_client_cert: bool,
}

impl std::fmt::Debug for ServerTlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ServerTlsPem")
            .field("client_ca", &self.client_ca_pem.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

/// Builds a rustls server configuration; also returns what the server's certificate says.
fn server_config(pem: &ServerTlsPem, alpn: &[&[u8]]) -> Result<(Arc<ServerConfig>, CertInfo)> {
    let certs = certs_from_pem("certificate", &pem.cert_pem)?;
    let key = key_from_pem("private key", &pem.key_pem)?;
    let info = inspect_certificate(&certs[0])?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| config_err("TLS", e))?;
    let builder = match &pem.client_ca_pem {
        None if pem.require_client_cert => {
            return Err(Error::Config(
                "client certificates are required but no trusted CA is given".into(),
            ));
        }
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = roots_from_pem("trusted CA", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if pem.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier.build().map_err(|e| config_err("trusted CA", e))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| config_err("certificate and key", e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(config), info))
}

/// A TLS server endpoint whose configuration can be replaced at run time: handshakes that
/// start after [`reload`](Self::reload) use the new certificate and CAs; established
/// connections keep theirs.
pub struct TlsAcceptor {
    listener: &'static str,
    alpn: Vec<&'static [u8]>,
    current: RwLock<(Arc<ServerConfig>, CertInfo)>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor for the listener named `listener` in metrics (`peer`, `client`,
    /// `metrics`), offering the ALPN protocols `alpn` (e.g. [`ALPN_H2`]).
    pub fn new(listener: &'static str, pem: &ServerTlsPem, alpn: &[&'static [u8]]) -> Result<Self> {
        let (config, info) = server_config(pem, alpn)?;
        gauge!(m::TLS_CERT_EXPIRY, "listener" => listener).set(info.not_after as f64);
        Ok(Self {
            listener,
            alpn: alpn.to_vec(),
            current: RwLock::new((config, info)),
        })
    }

    /// Replaces the certificate, key and CAs for later handshakes; on error the old ones
    /// stay. Counted in `raft_net_tls_reloads_total`.
    pub fn reload(&self, pem: &ServerTlsPem) -> Result<CertInfo> {
        let outcome = server_config(pem, &self.alpn);
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        counter!(m::TLS_RELOADS, "listener" => self.listener, "outcome" => label).increment(1);
        let (config, info) = outcome?;
        gauge!(m::TLS_CERT_EXPIRY, "listener" => self.listener).set(info.not_after as f64);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (config, info.clone());
        Ok(info)
    }

    /// What the certificate in use says.
    pub fn certificate(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Runs the server side of a handshake on `tcp`, for at most `timeout`. A failure is
    /// counted in `raft_net_tls_handshake_failures_total` and returned as an error.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> std::io::Result<ServerConn> {
        let remote = tcp.peer_addr().ok();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let result = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        };
        let stream = result.inspect_err(|e| {
            counter!(m::TLS_HANDSHAKE_FAILURES, "listener" => self.listener).increment(1);
            tracing::debug!(listener = self.listener, ?remote, error = %e, "TLS handshake failed");
        })?;
        let client_cert = match stream.get_ref().1.peer_certificates() {
            Some([leaf, ..]) => Some(inspect_certificate(leaf).map_err(std::io::Error::other)?),
            _ => None,
        };
        Ok(ServerConn::tls(stream, remote, client_cert))
    }
}

/// The peer transport's TLS: the server side, the client configuration, and the member
/// binding.
pub(crate) struct PeerTls {
    acceptor: TlsAcceptor,
    client: RwLock<Arc<ClientConfig>>,
    server_name: Option<String>,
    /// With a name, peers' certificates must name the member they speak for.
    cluster: Option<String>,
}

impl PeerTls {
    pub(crate) fn new(tls: &TlsConfig) -> Result<Self> {
        Ok(Self {
            acceptor: TlsAcceptor::new("peer", &Self::server_pem(tls), &[ALPN_H2])?,
            client: RwLock::new(Self::client_config(tls)?),
            server_name: tls.server_name.clone(),
            cluster: tls.cluster_name.clone(),
        })
    }

    fn server_pem(tls: &TlsConfig) -> ServerTlsPem {
        ServerTlsPem {
            cert_pem: tls.cert_pem.clone(),
            key_pem: tls.key_pem.clone(),
            client_ca_pem: Some(tls.ca_pem.clone()),
            require_client_cert: tls.require_client_cert,
        }
    }

    fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>> {
        let roots = roots_from_pem("peer trusted CA", &tls.ca_pem)?;
        let certs = certs_from_pem("peer certificate", &tls.cert_pem)?;
        let key = key_from_pem("peer private key", &tls.key_pem)?;
        if let Some(cluster) = &tls.cluster_name {
            let info = inspect_certificate(&certs[0])?;
            if info.members_of(cluster).next().is_none() {
                return Err(Error::Config(format!(
                    "the peer certificate names no member of cluster `{cluster}` (it needs \
                     the URI subject alternative name {MEMBER_URI_SCHEME}://{cluster}/member/<id>)"
                )));
            }
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| config_err("TLS", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| config_err("peer certificate and key", e))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// Replaces certificates, key and CA for connections made or accepted from now on.
    /// The server name and cluster name stay as they were.
    pub(crate) fn reload(&self, tls: &TlsConfig) -> Result<()> {
        let client = Self::client_config(tls)?;
        self.acceptor.reload(&Self::server_pem(tls))?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The client side of a handshake with member `peer` at `host`; with a cluster name,
    /// the server's certificate must name that member.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        peer: NodeId,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = self.server_name.as_deref().unwrap_or(host).to_string();
        let name = ServerName::try_from(name).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("server name: {e}"),
            )
        })?;
        let config = self
            .client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        if let Some(cluster) = &self.cluster {
            let info = match stream.get_ref().1.peer_certificates() {
                Some([leaf, ..]) => inspect_certificate(leaf).map_err(std::io::Error::other)?,
                _ => CertInfo::default(),
            };
            if !info.names_member(cluster, peer) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "the server dialled as member {peer} presents a certificate for \
                         member(s) {:?} of cluster `{cluster}`",
                        info.members_of(cluster).collect::<Vec<_>>()
                    ),
                ));
            }
        }
        Ok(stream)
    }
}
