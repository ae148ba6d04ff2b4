//! Client API metrics per gRPC method: a `tower` layer on the client port's server that
//! counts every call ([`GRPC_REQUESTS`]), its failures by gRPC status code
//! ([`GRPC_ERRORS`]) and its duration ([`GRPC_REQUEST_SECONDS`]), each labelled `method`
//! (the full path, e.g. `/etcdserverpb.KV/Range`).
//!
//! A call is recorded once, when it ends: when its response carries `grpc-status` in the
//! headers (tonic's "trailers-only" answer of a failed call), when the trailers arrive
//! (the normal end, unary or streaming), or when the response is dropped before either
//! (the client went away: `Cancelled`). The duration of a streaming call (Watch,
//! LeaseKeepAlive, Snapshot) is therefore the stream's lifetime.
//!
//! Calls answered `Unimplemented` are labelled `method="unimplemented"` instead of their
//! path, so that clients sending made-up paths cannot grow the label set without bound.

use http_body::{Body, Frame, SizeHint};
use raft_metrics::node::{GRPC_ERRORS, GRPC_REQUEST_SECONDS, GRPC_REQUESTS};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;

/// The `method` label of calls answered `Unimplemented`.
pub const UNIMPLEMENTED_METHOD: &str = "unimplemented";

/// The layer (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the client port's routes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// The future of a call through [`GrpcMetrics`].
pub type MetricsFuture<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = MetricsFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut call = Call {
            method: req.uri().path().to_string(),
            start: Instant::now(),
            done: false,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(resp) => resp,
                Err(e) => {
                    call.finish(Code::Unknown);
                    return Err(e);
                }
            };
            if let Some(code) = status_code(resp.headers()) {
                call.finish(code);
                return Ok(resp);
            }
            Ok(resp.map(|body| tonic::body::Body::new(CallBody { inner: body, call })))
        })
    }
}

/// One call, recorded when it ends (or as `Cancelled` when dropped before).
struct Call {
    method: String,
    start: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let method = if code == Code::Unimplemented {
            UNIMPLEMENTED_METHOD.to_string()
        } else {
            std::mem::take(&mut self.method)
        };
        metrics::counter!(GRPC_REQUESTS, "method" => method.clone()).increment(1);
        if code != Code::Ok {
            metrics::counter!(GRPC_ERRORS, "method" => method.clone(), "code" => code_name(code))
                .increment(1);
        }
        metrics::histogram!(GRPC_REQUEST_SECONDS, "method" => method)
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The `grpc-status` of a header or trailer map, if it has one.
fn status_code(map: &http::HeaderMap) -> Option<Code> {
    let v = map
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    Some(Code::from_i32(v))
}

/// A response body that records its call when the trailers (or the end) arrive.
struct CallBody {
    inner: tonic::body::Body,
    call: Call,
}

impl Body for CallBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    // A trailer block without a status is a broken answer: Unknown, as a
                    // gRPC client would read it.
                    this.call
                        .finish(status_code(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.finish(status.code()),
            // The end without trailers: no status was sent.
            Poll::Ready(None) => this.call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The name of a gRPC status code, as grpc-go spells it (`NotFound`, `DeadlineExceeded`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::convert::Infallible;
    use tower::{Layer, Service};

    /// A service answering each path as its name says: `/ok` streams a message and OK
    /// trailers, `/fail` answers trailers-only `NotFound`, `/late` sends `Unavailable` in
    /// the trailers, anything else `Unimplemented`.
    #[derive(Clone)]
    struct Fake;

    impl Service<http::Request<()>> for Fake {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<()>) -> Self::Future {
            let trailers = |code: Code| {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", (code as i32).to_string().parse().unwrap());
                let frames: Vec<Result<Frame<bytes::Bytes>, Infallible>> = vec![
                    Ok(Frame::data(bytes::Bytes::from_static(b"msg"))),
                    Ok(Frame::trailers(t)),
                ];
                let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                http::Response::new(tonic::body::Body::new(body))
            };
            std::future::ready(Ok(match req.uri().path() {
                "/ok" => trailers(Code::Ok),
                "/late" => trailers(Code::Unavailable),
                "/fail" => tonic::Status::not_found("no").into_http(),
                _ => tonic::Status::unimplemented("").into_http(),
            }))
        }
    }

    async fn run(svc: &mut GrpcMetrics<Fake>, path: &str, read_body: bool) {
        let req = http::Request::builder().uri(path).body(()).unwrap();
        let resp = svc.call(req).await.unwrap();
        if read_body {
            resp.into_body().collect().await.unwrap();
        }
    }

    type Snapshot = Vec<(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )>;

    fn counter(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
        snap.iter()
            .filter(|(k, ..)| {
                k.key().name() == name
                    && labels.iter().all(|(l, v)| {
                        k.key()
                            .labels()
                            .any(|kl| kl.key() == *l && kl.value() == *v)
                    })
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => *n,
                DebugValue::Histogram(h) => h.len() as u64,
                DebugValue::Gauge(_) => 0,
            })
            .sum()
    }

    #[tokio::test]
    async fn calls_are_counted_by_method_and_failures_by_code() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let _guard = metrics::set_default_local_recorder(&rec);
        let mut svc = GrpcMetricsLayer.layer(Fake);
        run(&mut svc, "/ok", true).await;
        run(&mut svc, "/ok", true).await;
        run(&mut svc, "/fail", false).await;
        run(&mut svc, "/late", true).await;
        run(&mut svc, "/made/up", false).await;
        // The client goes away before reading the answer.
        run(&mut svc, "/ok", false).await;

        // One snapshot: taking one drains what it read.
        let snap = snap.snapshot().into_vec();
        assert_eq!(counter(&snap, GRPC_REQUESTS, &[("method", "/ok")]), 3);
        assert_eq!(
            counter(
                &snap,
                GRPC_ERRORS,
                &[("method", "/ok"), ("code", "Canceled")]
            ),
            1
        );
        assert_eq!(
            counter(
                &snap,
                GRPC_ERRORS,
                &[("method", "/fail"), ("code", "NotFound")]
            ),
            1
        );
        assert_eq!(
            counter(
                &snap,
                GRPC_ERRORS,
                &[("method", "/late"), ("code", "Unavailable")]
            ),
            1
        );
        assert_eq!(counter(&snap, GRPC_REQUESTS, &[("method", "/made/up")]), 0);
        assert_eq!(
            counter(
                &snap,
                GRPC_ERRORS,
                &[("method", UNIMPLEMENTED_METHOD), ("code", "Unimplemented")]
            ),
            1
        );
        assert_eq!(
            counter(&snap, GRPC_REQUEST_SECONDS, &[("method", "/ok")]),
            3
        );
        assert_eq!(
            counter(&snap, GRPC_REQUEST_SECONDS, &[]),
            6,
            "one duration per call"
        );
    }
}
