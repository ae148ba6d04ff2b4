//! Waiting and key-value helpers for tests: [`eventually`], [`put`], [`get`].

use crate::client::{Client, ClientError};
use anyhow::Result;
use bytes::Bytes;
use raft_kv::pb::etcdserverpb::{PutRequest, RangeRequest};
use std::future::Future;
use std::time::{Duration, Instant};

/// Retries `f` every 100 ms until it returns `Some`, for at most `secs` seconds; panics
/// naming `what` after that. For liveness only (an election on a loaded machine), never
/// to wait out a safety failure.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match retry(secs, f).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// `f`'s first `Some`, tried every 100 ms for at most `secs` seconds.
pub(super) async fn retry<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One put through `c`; the revision it created.
pub async fn put_once(c: &Client, key: &str, value: &str) -> Result<i64, ClientError> {
    let req = PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    };
    c.kv(|mut k| {
        let req = req.clone();
        async move { k.put(req).await.map(|r| r.into_inner()) }
    })
    .await
    .map(|r| r.header.map_or(0, |h| h.revision))
}

/// [`put_once`], retried while the cluster answers UNAVAILABLE (an election on a loaded
/// machine) or no endpoint can be reached, for up to 10 s; only for idempotent puts.
pub async fn put(c: &Client, key: &str, value: &str) -> Result<i64, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match put_once(c, key, value).await {
            Err(ClientError::Unavailable(_) | ClientError::Unreachable(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// The value of `key` read through `c` (linearizable unless `serializable`).
pub async fn get(c: &Client, key: &str, serializable: bool) -> Result<Option<String>, ClientError> {
    let req = RangeRequest {
        key: Bytes::from(key.to_string()),
        serializable,
        ..Default::default()
    };
    c.kv(|mut k| {
        let req = req.clone();
        async move { k.range(req).await.map(|r| r.into_inner()) }
    })
    .await
    .map(|r| {
        r.kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    })
}
