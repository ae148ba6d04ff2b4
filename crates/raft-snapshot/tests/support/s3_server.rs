//! A real S3-compatible server for the tests: `s3s-fs` (an S3 implementation on a directory)
//! served over HTTP on a loopback port, in process, with a switch that makes it answer
//! every request with `503 Slow Down` (an outage).
#![allow(
    dead_code,
    reason = "each test binary that includes this file uses only part of it"
)]

use hyper_util::rt::{TokioExecutor, TokioIo};
use raft_snapshot::ObjectStoreConfig;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Access key and secret the server accepts (requests are SigV4-checked).
pub const ACCESS_KEY: &str = "raft-test-key";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "raft-test-secret-0123456789";
/// The bucket every test writes to.
pub const BUCKET: &str = "backups";

/// The running server; stops when dropped.
pub struct S3Server {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    rt: Option<tokio::runtime::Runtime>,
    dir: tempfile::TempDir,
}

#[derive(Clone)]
struct Outage {
    s3: S3Service,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Outage {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            let body = "<Error><Code>SlowDown</Code><Message>outage</Message></Error>";
            let resp = http::Response::builder()
                .status(503)
                .body(s3s::Body::from(body.to_string()))
                .expect("valid response");
            return Box::pin(async move { Ok(resp) });
        }
        let s3 = self.s3.clone();
        Box::pin(async move { hyper::service::Service::call(&s3, req).await })
    }
}

impl S3Server {
    /// Starts a server with an empty [`BUCKET`].
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let down = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let service = Outage {
            s3: b.build(),
            down: down.clone(),
            requests: requests.clone(),
        };
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            addr,
            down,
            requests,
            rt: Some(rt),
            dir,
        }
    }

    /// A configuration for `s3://backups/<prefix>` on this server, with quick retries.
    pub fn config(&self, prefix: &str) -> ObjectStoreConfig {
        let mut c = ObjectStoreConfig::new(format!("s3://{BUCKET}/{prefix}"));
        c.endpoint = Some(format!("http://{}", self.addr));
        c.region = Some("us-east-1".into());
        c.path_style = true;
        c.options
            .insert("aws_access_key_id".into(), ACCESS_KEY.into());
        c.options
            .insert("aws_secret_access_key".into(), SECRET_KEY.into());
        c.max_retries = 2;
        c.initial_backoff = Duration::from_millis(5);
        c.max_backoff = Duration::from_millis(20);
        c.retry_timeout = Duration::from_secs(2);
        c.request_timeout = Duration::from_secs(10);
        c
    }

    /// Starts or ends an outage: while down every request gets `503 Slow Down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Requests served so far (answered or refused).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The directory the bucket lives in (object keys are paths under it).
    pub fn bucket_dir(&self) -> std::path::PathBuf {
        self.dir.path().join(BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
