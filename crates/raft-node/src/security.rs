//! Who may use the operator surfaces, and the TLS material a running node re-reads.
//!
//! Operator surfaces are the `raftd.admin.v1.Admin` service on the client port
//! (configuration reload, forced snapshots, the cluster progress table) and `/status` and
//! `/debug/pprof/*` on the HTTP endpoint. Without TLS they answer anyone who can reach the
//! port (keep those ports on trusted networks; the HTTP endpoint binds to loopback unless
//! told otherwise). With TLS on the client port they answer only connections that
//! presented a client certificate from `tls.trusted_ca_file`.
//!
//! Seam for etcd authentication (users and roles, not built yet): when it is enabled, the
//! `root` user's token will be accepted here as well; [`OperatorPolicy::check`] is the one
//! place that decides.

use crate::config::TlsSection;
use raft_net::tls::{ALPN_H2, ConnInfo, ServerTlsPem, TlsAcceptor};
use std::sync::{Arc, Mutex};

/// Who counts as an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorPolicy {
    /// Anyone who reaches the port (no TLS on the client port).
    Open,
    /// A connection with a verified client certificate.
    ClientCert,
}

impl OperatorPolicy {
    /// The policy of a node with these TLS settings.
    pub fn of(tls: &TlsSection) -> Self {
        if tls.client_tls() {
            OperatorPolicy::ClientCert
        } else {
            OperatorPolicy::Open
        }
    }

    /// Whether a request on the connection `conn` may use an operator surface; the error
    /// says why not.
    pub fn check(self, conn: Option<&ConnInfo>) -> Result<(), &'static str> {
        match self {
            OperatorPolicy::Open => Ok(()),
            OperatorPolicy::ClientCert if conn.is_some_and(ConnInfo::has_client_cert) => Ok(()),
            OperatorPolicy::ClientCert => Err(
                "this operation needs TLS client authentication: connect with a client \
                 certificate signed by the node's tls.trusted_ca_file",
            ),
        }
    }

    /// A tonic interceptor refusing non-operators with `PERMISSION_DENIED`.
    pub fn interceptor(
        self,
    ) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
        move |req: tonic::Request<()>| match self.check(req.extensions().get::<ConnInfo>()) {
            Ok(()) => Ok(req),
            Err(why) => Err(tonic::Status::permission_denied(why)),
        }
    }
}

/// The ALPN protocol of the HTTP endpoint (HTTP/1.1).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The node's TLS listeners and peer transport, and the certificate material last loaded
/// into them, so that a reload swaps only what changed on disk.
pub struct TlsMaterial {
    client: MaybeTls,
    metrics: MaybeTls,
    net: raft_net::PeerTransport,
    loaded: Mutex<(Option<ServerTlsPem>, Option<raft_net::TlsConfig>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// A TLS listener's acceptor, when it has TLS.
pub type MaybeTls = Option<Arc<TlsAcceptor>>;

/// The acceptors of the client port and the HTTP endpoint for `pem` (`None` without TLS).
pub fn acceptors(pem: Option<&ServerTlsPem>) -> Result<(MaybeTls, MaybeTls), raft_net::Error> {
    let Some(pem) = pem else {
        return Ok((None, None));
    };
    let client = TlsAcceptor::new("client", pem, &[ALPN_H2])?;
    let metrics = TlsAcceptor::new("metrics", pem, &[ALPN_HTTP1])?;
    Ok((Some(Arc::new(client)), Some(Arc::new(metrics))))
}

impl TlsMaterial {
    /// The material as loaded at start.
    pub fn new(
        client: MaybeTls,
        metrics: MaybeTls,
        net: raft_net::PeerTransport,
        client_pem: Option<ServerTlsPem>,
        peer: Option<raft_net::TlsConfig>,
    ) -> Self {
        Self {
            client,
            metrics,
            net,
            loaded: Mutex::new((client_pem, peer)),
        }
    }

    /// Re-reads the files `tls` names and hands what changed to the listeners and the
    /// transport (new connections use it; established ones keep theirs). Returns whether
    /// anything changed. A file that cannot be read or used is an error, and the listener
    /// it belongs to keeps its material (the files are all read before anything is
    /// replaced).
    pub fn reload(&self, tls: &TlsSection) -> Result<bool, String> {
        let client_pem = tls.client_pem().map_err(|e| e.to_string())?;
        let peer = tls.peer_config().map_err(|e| e.to_string())?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        if client_pem != loaded.0
            && let Some(pem) = &client_pem
        {
            for acceptor in self.client.iter().chain(&self.metrics) {
                acceptor
                    .reload(pem)
                    .map_err(|e| format!("client TLS: {e}"))?;
            }
            changed = true;
        }
        if peer != loaded.1
            && let Some(peer) = &peer
        {
            self.net
                .set_tls(peer)
                .map_err(|e| format!("peer TLS: {e}"))?;
            changed = true;
        }
        *loaded = (client_pem, peer);
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_need_a_client_certificate_once_tls_is_on() {
        let open = OperatorPolicy::of(&TlsSection::default());
        assert_eq!(open.check(None), Ok(()));
        let tls = TlsSection {
            cert_file: Some("c".into()),
            key_file: Some("k".into()),
            ..TlsSection::default()
        };
        let strict = OperatorPolicy::of(&tls);
        assert!(strict.check(None).is_err());
        let mut conn = ConnInfo {
            tls: true,
            ..ConnInfo::default()
        };
        assert!(strict.check(Some(&conn)).is_err());
        conn.client_cert = Some(raft_net::tls::CertInfo::default());
        assert_eq!(strict.check(Some(&conn)), Ok(()));
    }
}
