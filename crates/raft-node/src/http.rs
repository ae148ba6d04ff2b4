//! raftd's HTTP endpoint on `listen_metrics`: Prometheus metrics, liveness and readiness,
//! a JSON status, and CPU profiling. A small HTTP/1.1 server (hyper), GET only; unknown
//! paths answer 404 and nothing a client sends can make it panic.
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | the Prometheus exposition text of every recorded metric |
//! | `/health` | 200 while the process serves HTTP (liveness) |
//! | `/health?ready`, `/ready` | 200 when a leader is known and this node is caught up, else 503; JSON saying why |
//! | `/status` | JSON: id, role, term, leader, commit, applied, last index, membership, peers' progress (leader), the backup's backlog |
//! | `/debug/pprof/profile?seconds=N` | a CPU profile (pprof protobuf, gzip), `&format=svg` a flame graph |
//! | `/debug/pprof/heap` | 501: heap profiling is not available |
//!
//! With TLS on the client port (`[tls] cert_file`), the endpoint speaks HTTPS with the same
//! certificate (a client certificate is asked for, not required), and `/status` and
//! `/debug/pprof/*` answer `403` to connections without a client certificate
//! ([`crate::security::OperatorPolicy`]); `/metrics`, `/health` and `/ready` stay open.
//! With etcd authentication on, `/status` and `/debug/pprof/*` also answer the `root` user,
//! by HTTP Basic credentials (`curl -u root:PASSWORD`) or a root token in a `token` header,
//! and without TLS only it.

use crate::admin::{role_name, state_name};
use crate::profile::Profiler;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use raft_kv::machine::KvMachine;
use raft_metrics::PrometheusHandle;
use raft_metrics::node::HTTP_REQUESTS;
use raft_runtime::RaftHandle;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How far (in entries) the applied index may trail the commit index for `/ready` to say
/// ready, unless the request gives `max_lag=N`.
pub const READY_MAX_APPLY_LAG: u64 = 100;

/// How long `/status` and `/ready` wait for the event loop to answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint serves from.
pub struct HttpState {
    /// The running node.
    pub handle: RaftHandle<KvMachine>,
    /// Renders `/metrics`; `None` when another recorder was installed in this process.
    pub metrics: Option<PrometheusHandle>,
    /// This member's name.
    pub name: String,
    /// Takes CPU profiles (one at a time).
    pub profiler: Profiler,
    /// TLS, when the client port has it.
    pub tls: Option<Arc<raft_net::tls::TlsAcceptor>>,
    /// Who may read `/status` and take profiles.
    pub operator: crate::security::OperatorPolicy,
    /// The backup to an object store, when `[backup]` turns it on (`/status` shows it).
    pub backup: Option<std::sync::Arc<crate::node::backup::Backup>>,
    /// The store, whose etcd authentication state lets the `root` user through.
    pub auth: Option<raft_kv::KvStore>,
}

/// Whether `req` comes from the `root` user of `store` (authentication on): a root token in
/// a `token` header, or HTTP Basic credentials of a user with the root role.
async fn http_root(store: &raft_kv::KvStore, req: &Request<Incoming>) -> bool {
    use base64::Engine as _;
    let state = store.auth_state();
    if !state.enabled() {
        return false;
    }
    let is_root = |user: &str| state.has_role(user, raft_kv::auth::ROOT);
    if let Some(token) = req.headers().get("token").and_then(|v| v.to_str().ok()) {
        return store.auth_token_user(token).is_some_and(|u| is_root(&u));
    }
    let Some(basic) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Some((user, password)) = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
    else {
        return false;
    };
    if !is_root(&user) {
        return false;
    }
    tokio::task::spawn_blocking(move || state.check_password(&user, &password))
        .await
        .unwrap_or(false)
}

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until the returned task is aborted.
pub fn spawn(listener: TcpListener, state: HttpState) -> tokio::task::JoinHandle<()> {
    let state = Arc::new(state);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let conn = match &state.tls {
                    None => raft_net::tls::ServerConn::plain(stream),
                    Some(tls) => match tls.accept(stream, HANDSHAKE_TIMEOUT).await {
                        Ok(conn) => conn,
                        Err(_) => return,
                    },
                };
                let info = conn.info().clone();
                let service = hyper::service::service_fn(move |req| {
                    let (state, info) = (state.clone(), info.clone());
                    async move { Ok::<_, Infallible>(route(&state, &info, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(conn);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint connection");
                }
            });
        }
    })
}

/// The answer body type.
pub(crate) type Body = Full<Bytes>;

/// A response with `status`, `content_type` and `body`.
pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub(crate) fn reply_json(status: StatusCode, v: &Value) -> Response<Body> {
    let mut text = v.to_string();
    text.push('\n');
    reply(status, "application/json", text)
}

/// A plain-text error response.
pub(crate) fn reply_text(status: StatusCode, text: &str) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

/// The value of `key` in a query string (`a=1&b`; a key without `=` has the value "").
pub(crate) fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

async fn route(
    state: &HttpState,
    conn: &raft_net::tls::ConnInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let endpoint = match path {
        "/metrics" => "metrics",
        "/health" if query_param(query, "ready").is_some() => "ready",
        "/health" => "health",
        "/ready" => "ready",
        "/status" => "status",
        "/debug/pprof/profile" => "pprof_profile",
        "/debug/pprof/heap" => "pprof_heap",
        _ => "not_found",
    };
    metrics::counter!(HTTP_REQUESTS, "endpoint" => endpoint).increment(1);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply_text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    if matches!(endpoint, "status" | "pprof_profile" | "pprof_heap") {
        let (enabled, root) = match &state.auth {
            Some(store) => (store.auth_state().enabled(), http_root(store, &req).await),
            None => (false, false),
        };
        if let Err(why) =
            crate::security::operator_allowed(state.operator, Some(conn), enabled, root)
        {
            let why = if enabled {
                "etcd authentication is on: this needs the root user (curl -u root:PASSWORD, \
                 or a root token in a `token` header) or, with TLS, a client certificate"
            } else {
                why
            };
            return reply_text(StatusCode::FORBIDDEN, why);
        }
    }
    match endpoint {
        "metrics" => match &state.metrics {
            Some(h) => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                h.render(),
            ),
            None => reply_text(
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics are not recorded: another recorder was installed in this process",
            ),
        },
        "health" => reply_json(StatusCode::OK, &json!({ "live": true })),
        "ready" => ready(state, query).await,
        "status" => status(state).await,
        "pprof_profile" => state.profiler.serve(query).await,
        "pprof_heap" => reply_text(
            StatusCode::NOT_IMPLEMENTED,
            "heap profiling is not available: raftd runs on the system allocator, which \
             keeps no allocation profile; use /debug/pprof/profile for CPU profiles",
        ),
        _ => reply_text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /health, /ready, /status, /debug/pprof/profile",
        ),
    }
}

/// Readiness: a leader is known and the applied index trails the commit index by at
/// most `max_lag` entries.
async fn ready(state: &HttpState, query: &str) -> Response<Body> {
    let max_lag = match query_param(query, "max_lag") {
        None => READY_MAX_APPLY_LAG,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return reply_text(
                    StatusCode::BAD_REQUEST,
                    &format!("max_lag must be a whole number of entries, not `{v}`"),
                );
            }
        },
    };
    let s = match state.handle.with_timeout(STATUS_TIMEOUT).status().await {
        Ok(s) => s,
        Err(e) => {
            return reply_json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "ready": false, "reason": format!("the raft node does not answer: {e}") }),
            );
        }
    };
    let lag = s.commit.saturating_sub(s.applied);
    let reason = if s.leader.is_none() {
        Some("no leader is known".to_string())
    } else if lag > max_lag {
        Some(format!(
            "applied index {} trails the commit index {} by {lag} entries (more than {max_lag})",
            s.applied, s.commit
        ))
    } else {
        None
    };
    let body = json!({
        "ready": reason.is_none(),
        "reason": reason.as_deref().unwrap_or("a leader is known and this node is caught up"),
        "leader": s.leader,
        "commit": s.commit,
        "applied": s.applied,
    });
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply_json(code, &body)
}

async fn status(state: &HttpState) -> Response<Body> {
    let s = match state.handle.with_timeout(STATUS_TIMEOUT).status().await {
        Ok(s) => s,
        Err(e) => {
            return reply_json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": format!("the raft node does not answer: {e}") }),
            );
        }
    };
    let is_learner = s.membership.learners.contains(&s.id);
    let peers: Vec<Value> = s
        .progress
        .iter()
        .map(|(id, p)| {
            json!({
                "id": id,
                "match": p.matched,
                "next": p.next,
                "state": state_name(p.state),
                "lag": s.last_index.saturating_sub(p.matched),
                "inflight_messages": p.inflight_msgs,
                "inflight_bytes": p.inflight_bytes,
                "recent_active": p.recent_active,
                "is_learner": p.is_learner,
            })
        })
        .collect();
    let m = &s.membership;
    reply_json(
        StatusCode::OK,
        &json!({
            "id": s.id,
            "name": state.name,
            "role": role_name(s.role, is_learner),
            "term": s.term,
            "leader": s.leader,
            "commit": s.commit,
            "applied": s.applied,
            "last_index": s.last_index,
            "persisted_index": s.persisted_index,
            "membership": {
                "voters": m.voters,
                "voters_outgoing": m.voters_outgoing,
                "learners": m.learners,
                "learners_next": m.learners_next,
            },
            "peers": peers,
            "backup": state.backup.as_ref().map(|b| b.status()),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_params() {
        assert_eq!(query_param("ready", "ready"), Some(""));
        assert_eq!(query_param("seconds=5&format=svg", "format"), Some("svg"));
        assert_eq!(query_param("seconds=5&format=svg", "seconds"), Some("5"));
        assert_eq!(query_param("seconds=5", "format"), None);
        assert_eq!(query_param("", "ready"), None);
    }
}
