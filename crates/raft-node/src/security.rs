//! Who may use the operator surfaces, and the TLS material a running node re-reads.
//!
//! Operator surfaces are the `raftd.admin.v1.Admin` service on the client port
//! (configuration reload, forced snapshots, the cluster progress table), the etcd calls
//! that change the membership or the node ([`OPERATOR_METHODS`]: member add, remove,
//! update and promote, defragment, move-leader, snapshot download, downgrade), and
//! `/status` and `/debug/pprof/*` on the HTTP endpoint. Without TLS they answer anyone who can reach the
//! port (keep those ports on trusted networks; the HTTP endpoint binds to loopback unless
//! told otherwise). With TLS on the client port they answer only connections that
//! presented a client certificate from `tls.trusted_ca_file`.
//!
//! With etcd authentication on (`etcdctl auth enable`), the `root` user (by its token, or a
//! client certificate whose common name is `root`) may use them as well, and without TLS
//! only it may. The gate also hands a verified client certificate's common name to the etcd
//! services as the caller's user name ([`raft_kv::service::CertUser`]), as etcd does with
//! `--client-cert-auth`. [`OperatorGate`] is the one place that decides.

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

    /// A layer for the client port's server that answers `PERMISSION_DENIED` to
    /// non-operators calling one of [`OPERATOR_METHODS`] (without etcd authentication).
    pub fn layer(self) -> OperatorGateLayer {
        OperatorGateLayer(self, None)
    }

    /// [`layer`](Self::layer) that also knows etcd authentication's state in `store`: with
    /// authentication on, the `root` user passes, and without TLS only it does.
    pub fn layer_with_auth(self, store: raft_kv::KvStore) -> OperatorGateLayer {
        OperatorGateLayer(self, Some(store))
    }
}

/// The gRPC methods (full paths, or a service prefix ending in `/`) only operators may
/// call. etcd lets any client call the membership and maintenance ones unless
/// authentication is on; raftd keeps them for certificate holders once TLS is on.
pub const OPERATOR_METHODS: &[&str] = &[
    "/raftd.admin.v1.Admin/",
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberPromote",
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/MoveLeader",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Maintenance/Downgrade",
];

/// True when `path` names one of [`OPERATOR_METHODS`].
pub fn is_operator_method(path: &str) -> bool {
    OPERATOR_METHODS.iter().any(|m| {
        if m.ends_with('/') {
            path.starts_with(m)
        } else {
            path == *m
        }
    })
}

/// The [`OperatorPolicy::layer`] (a `tower::Layer`).
#[derive(Clone)]
pub struct OperatorGateLayer(OperatorPolicy, Option<raft_kv::KvStore>);

impl std::fmt::Debug for OperatorGateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OperatorGateLayer").field(&self.0).finish()
    }
}

impl<S> tower::Layer<S> for OperatorGateLayer {
    type Service = OperatorGate<S>;

    fn layer(&self, inner: S) -> OperatorGate<S> {
        OperatorGate {
            inner,
            policy: self.0,
            auth: self.1.clone(),
        }
    }
}

/// The service [`OperatorGateLayer`] wraps around the client port's routes.
#[derive(Clone)]
pub struct OperatorGate<S> {
    inner: S,
    policy: OperatorPolicy,
    auth: Option<raft_kv::KvStore>,
}

impl<S> std::fmt::Debug for OperatorGate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorGate")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Whether a request may use an operator surface: `policy` says for a node without etcd
/// authentication; with it on (`auth` is the state, `root` whether the caller is the
/// `root` user), root always may, a certificate holder may when TLS is on, and nobody else.
pub fn operator_allowed(
    policy: OperatorPolicy,
    conn: Option<&ConnInfo>,
    auth_enabled: bool,
    root: bool,
) -> Result<(), &'static str> {
    if auth_enabled && root {
        return Ok(());
    }
    match (policy, auth_enabled) {
        // etcd's own answer: its clients know it by this message.
        (OperatorPolicy::Open, true) => Err("etcdserver: permission denied"),
        _ => policy.check(conn),
    }
}

/// The user a request names for the operator gate: its token's user on this member, else
/// its verified client certificate's common name.
fn gate_user<B>(store: &raft_kv::KvStore, req: &::http::Request<B>) -> Option<String> {
    let token = ["token", "authorization"]
        .iter()
        .find_map(|k| req.headers().get(*k).and_then(|v| v.to_str().ok()));
    match token {
        Some(t) => store.auth_token_user(t),
        None => req
            .extensions()
            .get::<raft_kv::service::CertUser>()
            .map(|c| c.0.clone()),
    }
}

type GateFuture<E> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<::http::Response<tonic::body::Body>, E>> + Send>,
>;

impl<S, B> tower::Service<::http::Request<B>> for OperatorGate<S>
where
    S: tower::Service<::http::Request<B>, Response = ::http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = ::http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = GateFuture<S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ::http::Request<B>) -> Self::Future {
        let cn = req
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.client_cert.as_ref())
            .and_then(|c| c.common_name.clone());
        if let Some(cn) = cn {
            req.extensions_mut().insert(raft_kv::service::CertUser(cn));
        }
        if is_operator_method(req.uri().path()) {
            let (enabled, root) = match &self.auth {
                Some(store) => {
                    let state = store.auth_state();
                    let root = state.enabled()
                        && gate_user(store, &req)
                            .is_some_and(|u| state.has_role(&u, raft_kv::auth::ROOT));
                    (state.enabled(), root)
                }
                None => (false, false),
            };
            if let Err(why) = operator_allowed(
                self.policy,
                req.extensions().get::<ConnInfo>(),
                enabled,
                root,
            ) {
                let answer = tonic::Status::permission_denied(why).into_http();
                return Box::pin(async move { Ok(answer) });
            }
        }
        Box::pin(self.inner.call(req))
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

    #[test]
    fn with_auth_on_root_passes_and_without_tls_only_root() {
        let open = OperatorPolicy::of(&TlsSection::default());
        assert!(operator_allowed(open, None, false, false).is_ok());
        assert!(operator_allowed(open, None, true, false).is_err());
        assert!(operator_allowed(open, None, true, true).is_ok());
        let tls = TlsSection {
            cert_file: Some("c".into()),
            key_file: Some("k".into()),
            ..TlsSection::default()
        };
        let strict = OperatorPolicy::of(&tls);
        assert!(operator_allowed(strict, None, true, true).is_ok());
        assert!(operator_allowed(strict, None, true, false).is_err());
        let conn = ConnInfo {
            tls: true,
            client_cert: Some(raft_net::tls::CertInfo::default()),
            ..ConnInfo::default()
        };
        assert!(operator_allowed(strict, Some(&conn), true, false).is_ok());
    }

    #[test]
    fn operator_methods_are_matched_exactly_or_by_service() {
        assert!(is_operator_method("/raftd.admin.v1.Admin/ReloadConfig"));
        assert!(is_operator_method("/etcdserverpb.Cluster/MemberRemove"));
        assert!(!is_operator_method("/etcdserverpb.Cluster/MemberList"));
        assert!(!is_operator_method("/etcdserverpb.Maintenance/Status"));
        assert!(!is_operator_method("/etcdserverpb.KV/Range"));
        assert!(!is_operator_method("/etcdserverpb.Cluster/MemberAddX"));
    }
}
