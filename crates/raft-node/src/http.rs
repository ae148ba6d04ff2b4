//! raftd's HTTP endpoint on `listen_metrics`: Prometheus metrics, liveness and readiness,
//! a JSON status, and CPU profiling. HTTP/1.1 (hyper, with raft-net's TLS) routed by an axum
//! [`Router`], GET and HEAD only; unknown paths answer 404, bad query strings 400, and
//! nothing a client sends can make it panic. This is the process's only HTTP server for
//! `/metrics` (the Prometheus exporter's own listener is not compiled in).
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | the Prometheus exposition text of every recorded metric |
//! | `/health` | 200 while the process serves HTTP (liveness) |
//! | `/health?ready`, `/ready` | 200 when a leader is known and this node is caught up, else 503; JSON saying why |
//! | `/status` | JSON: id, role, term, leader, commit, applied, last index, membership, peers' progress (leader), the backup's backlog |
//! | `/debug/pprof/profile?seconds=N` | a CPU profile (pprof protobuf, gzip), `&format=svg` a flame graph |
//! | `/debug/pprof/heap` | 501: heap profiling is not available (mimalloc keeps no allocation profile) |
//!
//! With TLS on the client port (`[tls] cert_file`), the endpoint speaks HTTPS with the same
//! certificate (a client certificate is asked for, not required), and `/status` and
//! `/debug/pprof/*` answer `403` to connections without a client certificate
//! ([`crate::security::OperatorPolicy`]); `/metrics`, `/health` and `/ready` stay open.
//! With etcd authentication on, `/status` and `/debug/pprof/*` also answer the `root` user,
//! by HTTP Basic credentials (`curl -u root:PASSWORD`) or a root token in a `token` header,
//! and without TLS only it.

use crate::admin::{role_name, state_name};
use crate::profile::{ProfileError, ProfileRequest, Profiler};
use axum::Router;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::{
    AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderMap, HeaderValue,
};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use raft_kv::machine::KvMachine;
use raft_metrics::PrometheusHandle;
use raft_metrics::node::HTTP_REQUESTS;
use raft_metrics::process::ProcessCollector;
use raft_net::tls::ConnInfo;
use raft_runtime::RaftHandle;
use serde::Deserialize;
use serde_json::{Value, json};
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
    /// Records the process metrics (before each render of `/metrics`, and on the upkeep
    /// timer).
    pub process: Arc<ProcessCollector>,
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

type Shared = Arc<HttpState>;

/// Whether a request with `headers` comes from the `root` user of `store` (authentication
/// on): a root token in a `token` header, or HTTP Basic credentials of a user with the root
/// role.
async fn http_root(store: &raft_kv::KvStore, headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let state = store.auth_state();
    if !state.enabled() {
        return false;
    }
    let is_root = |user: &str| state.has_role(user, raft_kv::auth::ROOT);
    if let Some(token) = headers.get("token").and_then(|v| v.to_str().ok()) {
        return store.auth_token_user(token).is_some_and(|u| is_root(&u));
    }
    let Some(basic) = headers
        .get(AUTHORIZATION)
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
    let upkeep = upkeep(state.metrics.clone(), state.process.clone());
    tokio::spawn(async move {
        tokio::join!(serve(listener, state), upkeep);
    })
}

/// How often the exporter's upkeep runs (the exporter's own default).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the exporter's upkeep every [`UPKEEP_INTERVAL`], so that histograms are drained
/// into their summaries even when nobody scrapes (without it their samples would pile up
/// until the next render), and records the process metrics.
async fn upkeep(metrics: Option<PrometheusHandle>, process: Arc<ProcessCollector>) {
    let Some(metrics) = metrics else {
        return;
    };
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        process.collect();
        metrics.run_upkeep();
    }
}

/// Accepts and serves connections on `listener`.
async fn serve(listener: TcpListener, state: HttpState) {
    let tls = state.tls.clone();
    let app = router(Arc::new(state));
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
        let (app, tls) = (app.clone(), tls.clone());
        tokio::spawn(async move {
            let conn = match &tls {
                None => raft_net::tls::ServerConn::plain(stream),
                Some(tls) => match tls.accept(stream, HANDSHAKE_TIMEOUT).await {
                    Ok(conn) => conn,
                    Err(_) => return,
                },
            };
            let info = conn.info().clone();
            // The router sees who is on the other end (a client certificate or not)
            // as a request extension.
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(info.clone());
                tower::Service::call(&mut app.clone(), req)
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
}

/// The endpoint's routes: the open ones, and `/status` and `/debug/pprof/*` behind
/// `operator_only`; every request counted by `count`.
pub fn router(state: Shared) -> Router {
    let operator = Router::new()
        .route("/status", page(get(status)))
        .route("/debug/pprof/profile", page(get(profile)))
        .route(
            "/debug/pprof/heap",
            page(get(|| async {
                text(
                    StatusCode::NOT_IMPLEMENTED,
                    crate::profile::HEAP_UNAVAILABLE,
                )
            })),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), operator_only));
    Router::new()
        .route("/metrics", page(get(metrics_text)))
        .route("/health", page(get(health)))
        .route("/ready", page(get(ready)))
        .merge(operator)
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /health, /ready, /status, /debug/pprof/profile",
            )
        })
        .layer(middleware::from_fn(count))
        .with_state(state)
}

/// A GET route whose other methods answer `405` with a reason.
fn page<S: Clone + Send + Sync + 'static>(route: MethodRouter<S>) -> MethodRouter<S> {
    route.fallback(|| async { text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served") })
}

/// The `endpoint` label of a request to `path` (the route it matched, if any).
fn endpoint_label(path: Option<&str>, query: Option<&str>) -> &'static str {
    match path {
        Some("/metrics") => "metrics",
        Some("/health")
            if query.is_some_and(|q| {
                q.split('&')
                    .any(|p| p == "ready" || p.starts_with("ready="))
            }) =>
        {
            "ready"
        }
        Some("/health") => "health",
        Some("/ready") => "ready",
        Some("/status") => "status",
        Some("/debug/pprof/profile") => "pprof_profile",
        Some("/debug/pprof/heap") => "pprof_heap",
        _ => "not_found",
    }
}

/// Counts every request in `raftd_http_requests_total{endpoint}`.
async fn count(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let endpoint = endpoint_label(path, req.uri().query());
    metrics::counter!(HTTP_REQUESTS, "endpoint" => endpoint).increment(1);
    next.run(req).await
}

/// Lets through operators only: with TLS a client certificate, with etcd authentication the
/// `root` user ([`crate::security::operator_allowed`]); `403` with the reason otherwise.
async fn operator_only(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let (enabled, root) = match &state.auth {
        Some(store) => (
            store.auth_state().enabled(),
            http_root(store, req.headers()).await,
        ),
        None => (false, false),
    };
    let conn = req.extensions().get::<ConnInfo>();
    if let Err(why) = crate::security::operator_allowed(state.operator, conn, enabled, root) {
        let why = if enabled {
            "etcd authentication is on: this needs the root user (curl -u root:PASSWORD, \
             or a root token in a `token` header) or, with TLS, a client certificate"
        } else {
            why
        };
        return text(StatusCode::FORBIDDEN, why);
    }
    next.run(req).await
}

/// A response with `status`, `content_type` and `body`.
fn reply(status: StatusCode, content_type: &'static str, body: impl IntoResponse) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// A JSON response.
fn reply_json(status: StatusCode, v: &Value) -> Response {
    let mut text = v.to_string();
    text.push('\n');
    reply(status, "application/json", text)
}

/// A plain-text response (an error's reason, mostly).
fn text(status: StatusCode, text: &str) -> Response {
    reply(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

/// Query strings are parsed by axum's [`Query`]; a malformed one is a `400` saying which
/// parameter is wrong.
fn bad_query(e: axum::extract::rejection::QueryRejection) -> Response {
    text(StatusCode::BAD_REQUEST, &e.body_text())
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    match &state.metrics {
        Some(h) => {
            state.process.collect();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                h.render(),
            )
        }
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded: another recorder was installed in this process",
        ),
    }
}

/// The query of `/health` and `/ready`.
#[derive(Deserialize)]
struct HealthQuery {
    /// Present (with any value) on `/health?ready`: answer readiness.
    ready: Option<String>,
    /// How far the applied index may trail the commit index.
    max_lag: Option<u64>,
}

async fn health(
    state: State<Shared>,
    query: Result<Query<HealthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(HealthQuery { ready: None, .. })) => {
            reply_json(StatusCode::OK, &json!({ "live": true }))
        }
        query => ready(state, query).await,
    }
}

/// The query of `/debug/pprof/profile`.
#[derive(Deserialize)]
struct ProfileQuery {
    seconds: Option<u64>,
    format: Option<String>,
}

/// `/debug/pprof/profile?seconds=N[&format=svg]`.
async fn profile(
    State(state): State<Shared>,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let req = match ProfileRequest::parse(q.seconds, q.format.as_deref()) {
        Ok(req) => req,
        Err(why) => return text(StatusCode::BAD_REQUEST, &why),
    };
    match state.profiler.take(req).await {
        Ok(p) => {
            let mut r = reply(StatusCode::OK, p.content_type, p.body);
            if let Some(name) = p.file_name
                && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            {
                r.headers_mut().insert(CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e @ ProfileError::Busy) => text(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Readiness: a leader is known and the applied index trails the commit index by at
/// most `max_lag` entries.
async fn ready(
    State(state): State<Shared>,
    query: Result<Query<HealthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let max_lag = match query {
        Ok(Query(q)) => q.max_lag.unwrap_or(READY_MAX_APPLY_LAG),
        Err(e) => return bad_query(e),
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

async fn status(State(state): State<Shared>) -> Response {
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
    use super::*;
    use http_body_util::BodyExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// The routing pieces of [`router`] without a node behind them: a page, the 404
    /// fallback and the request counter.
    fn app() -> Router {
        Router::new()
            .route("/health", page(get(|| async { "live" })))
            .fallback(|| async { text(StatusCode::NOT_FOUND, "not found") })
            .layer(middleware::from_fn(count))
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, String) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::Service::call(&mut app(), req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn methods_paths_and_the_request_counter() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let _guard = metrics::set_default_local_recorder(&rec);
        assert_eq!(
            call("GET", "/health").await,
            (StatusCode::OK, "live".into())
        );
        assert_eq!(
            call("HEAD", "/health").await,
            (StatusCode::OK, String::new())
        );
        let (code, body) = call("POST", "/health").await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, "only GET is served\n");
        assert_eq!(call("GET", "/health?ready").await.0, StatusCode::OK);
        assert_eq!(call("GET", "/nope").await.0, StatusCode::NOT_FOUND);
        let counts: Vec<(String, u64)> = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == HTTP_REQUESTS)
            .map(|(k, .., v)| {
                let label = k.key().labels().next().unwrap().value().to_string();
                let DebugValue::Counter(n) = v else {
                    panic!("{v:?}")
                };
                (label, n)
            })
            .collect();
        let of = |l: &str| counts.iter().find(|(k, _)| k == l).map(|(_, n)| *n);
        assert_eq!(of("health"), Some(3), "GET, HEAD and POST: {counts:?}");
        assert_eq!(of("ready"), Some(1), "{counts:?}");
        assert_eq!(of("not_found"), Some(1), "{counts:?}");
    }

    #[test]
    fn endpoint_labels() {
        assert_eq!(endpoint_label(Some("/health"), Some("ready")), "ready");
        assert_eq!(endpoint_label(Some("/health"), Some("x=1&ready=")), "ready");
        assert_eq!(endpoint_label(Some("/health"), Some("readyz")), "health");
        assert_eq!(
            endpoint_label(Some("/debug/pprof/heap"), None),
            "pprof_heap"
        );
        assert_eq!(endpoint_label(None, None), "not_found");
    }
}
