//! A small etcd v3 client over the tonic stubs of `raft_kv::pb`: connects to the first
//! endpoint that answers and moves on to the next when one is unavailable, and sends an
//! etcd auth token with every call once [`Client::authenticate`] got one. Used by
//! `raftctl`, the integration tests and the local-cluster demo.

use raft_kv::pb::etcdserverpb::cluster_client::ClusterClient;
use raft_kv::pb::etcdserverpb::kv_client::KvClient;
use raft_kv::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

/// Adds the etcd auth token (gRPC metadata `token`) to every request, when there is one.
#[derive(Clone, Default)]
pub struct TokenInterceptor(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for TokenInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_tuple("TokenInterceptor")
            .field(&self.0.as_ref().map(|_| "<token>"))
            .finish()
    }
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

/// The channel [`Client::call`] hands out: a connection that carries the client's token.
pub type ClientChannel = InterceptedService<Channel, TokenInterceptor>;

/// Endpoints of a cluster and the timeouts to reach them.
#[derive(Clone, Debug)]
pub struct Client {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// TLS settings; with them every endpoint is dialled with `https`.
    tls: Option<ClientTlsConfig>,
    /// The etcd auth token sent with every call ([`Client::authenticate`]).
    token: TokenInterceptor,
}

/// TLS settings for a client from PEM files, as etcdctl takes them (`--cacert`, `--cert`,
/// `--key`): the CA that signed the servers' certificates, and a client certificate and
/// key for servers that ask for one.
pub fn tls_from_files(
    cacert: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<ClientTlsConfig, String> {
    let read = |what: &str, p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("{what} {}: {e}", p.display()))
    };
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = cacert {
        tls = tls.ca_certificate(Certificate::from_pem(read("--cacert", ca)?));
    }
    match (cert, key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("--cert", cert)?,
                read("--key", key)?,
            ));
        }
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    Ok(tls)
}

/// Why a call failed on every endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Every endpoint that could be connected to answered UNAVAILABLE (no leader, no
    /// quorum, shutting down), and at least one could.
    #[error("no endpoint available ({0})")]
    Unavailable(String),
    /// No endpoint could be connected to.
    #[error("no endpoint reachable ({0})")]
    Unreachable(String),
    /// An endpoint answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(Status),
    /// An endpoint address is malformed.
    #[error("bad endpoint `{0}`")]
    BadEndpoint(String),
}

/// The gRPC code's name as etcd clients print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `host:port` or `http://host:port` as a URL tonic accepts.
pub fn endpoint_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

impl Client {
    /// A client of `endpoints` (`host:port` or URLs), tried in order.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            tls: None,
            token: TokenInterceptor::default(),
        }
    }

    /// Authenticates as `user` with `password` (etcd's `Auth.Authenticate`, on the first
    /// endpoint that answers) and sends the token with every later call. The token is valid
    /// on every member, for the cluster's `auth.token_ttl` after its last use.
    pub async fn authenticate(mut self, user: &str, password: &str) -> Result<Self, ClientError> {
        use raft_kv::pb::etcdserverpb::{AuthenticateRequest, auth_client::AuthClient};
        let token = self
            .call(|ch| {
                let req = AuthenticateRequest {
                    name: user.to_string(),
                    password: password.to_string(),
                };
                async move { AuthClient::new(ch).authenticate(req).await }
            })
            .await?
            .into_inner()
            .token;
        let value = MetadataValue::try_from(token.as_str()).map_err(|_| {
            ClientError::Status(Status::internal("the server sent an unusable token"))
        })?;
        self.token = TokenInterceptor(Some(value));
        Ok(self)
    }

    /// Dials every endpoint with TLS (`https`, whatever scheme it was given with).
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the timeout of every call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self.connect_timeout = timeout.min(Duration::from_secs(2));
        self
    }

    /// The endpoints, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A client of the single endpoint `addr` with the same timeouts.
    pub fn only(&self, addr: &str) -> Self {
        Self {
            endpoints: vec![addr.to_string()],
            ..self.clone()
        }
    }

    /// Connects to `addr`.
    pub async fn connect(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut url = endpoint_url(addr);
        if self.tls.is_some() && url.starts_with("http://") {
            url = url.replacen("http://", "https://", 1);
        }
        let mut ep = Endpoint::from_shared(url)
            .map_err(|_| ClientError::BadEndpoint(addr.to_string()))?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout);
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.clone())
                .map_err(|e| ClientError::BadEndpoint(format!("{addr}: TLS: {e}")))?;
        }
        ep.connect()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{addr}: {e}")))
    }

    /// Runs `call` against the first endpoint that connects and does not answer
    /// UNAVAILABLE; returns its answer (or the last failure).
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ClientChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last = String::from("no endpoints given");
        let mut answered = false;
        for addr in &self.endpoints {
            let channel = match self.connect(addr).await {
                Ok(c) => c,
                Err(e) => {
                    if !answered {
                        last = match e {
                            ClientError::Unreachable(why) => why,
                            other => other.to_string(),
                        };
                    }
                    continue;
                }
            };
            match call(InterceptedService::new(channel, self.token.clone())).await {
                Ok(v) => return Ok(v),
                Err(s) if s.code() == Code::Unavailable => {
                    last = format!("{addr}: {}", s.message());
                    answered = true;
                }
                Err(s) => return Err(ClientError::Status(s)),
            }
        }
        Err(if answered {
            ClientError::Unavailable(last)
        } else {
            ClientError::Unreachable(last)
        })
    }

    /// Runs `call` with a KV client.
    pub async fn kv<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(KvClient<ClientChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(|ch| call(KvClient::new(ch))).await
    }

    /// Runs `call` with a Cluster client.
    pub async fn cluster<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ClusterClient<ClientChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(|ch| call(ClusterClient::new(ch))).await
    }

    /// Runs `call` with a Maintenance client.
    pub async fn maintenance<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(MaintenanceClient<ClientChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call(|ch| call(MaintenanceClient::new(ch))).await
    }
}

/// The end of the range of every key starting with `prefix` (etcd's `--prefix`): the prefix
/// with its last byte below 0xff incremented; `\0` (every key) for an empty or all-0xff
/// prefix.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), b"\0");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://a:1/"), "http://a:1");
    }
}
