//! [`CloudStore`]: the [`ObjectStore`] seam on the `object_store` crate (S3 and S3-compatible
//! services, Google Cloud Storage, Azure Blob Storage), driven from blocking callers.

use crate::error::{Error, Result};
use crate::object_store::ObjectStore;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

/// Objects are uploaded in parts of at least this size (S3's minimum part size, except for
/// the last part).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// An [`ObjectStore`] backed by the `object_store` crate, under a key prefix.
///
/// Calls block the calling thread (the [`Uploader`](crate::Uploader) calls them from its
/// own); the requests run on a small tokio runtime the store owns, so a caller needs no
/// runtime of its own (and may be inside one: nothing here enters the caller's). Retries
/// with exponential backoff, credentials and timeouts are the crate's (see
/// [`ObjectStoreConfig`](crate::ObjectStoreConfig)).
///
/// `put` streams: an object smaller than one part goes up in one request; a larger one as
/// a multipart upload, reading one part at a time from the source with at most
/// `concurrency` parts in flight, so memory stays near `part_size × (concurrency + 1)`
/// whatever the object's size. A multipart upload that fails is aborted. An object becomes
/// visible only when its upload completes (S3, GCS and Azure all behave so), which keeps
/// `put` atomic as the trait asks.
pub struct CloudStore {
    inner: Arc<dyn object_store::ObjectStore>,
    root: Path,
    url: String,
    part_size: usize,
    concurrency: usize,
    /// `Some` until dropped (shut down in the background, so dropping never blocks).
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for CloudStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudStore")
            .field("url", &self.url)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Drop for CloudStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Waits for one spawned request.
type Pending<T> = Receiver<object_store::Result<T>>;

impl CloudStore {
    /// Wraps an `object_store` client: blobs live under `root` (a key prefix, may be
    /// empty); `url` names the store in messages. `part_size` is raised to
    /// [`MIN_PART_SIZE`]; `concurrency` (parts in flight) to at least 1.
    pub fn new(
        inner: Arc<dyn object_store::ObjectStore>,
        root: Path,
        url: impl Into<String>,
        part_size: usize,
        concurrency: usize,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("raft-object-store")
            .enable_all()
            .build()
            .map_err(|e| Error::io("<object store runtime>", e))?;
        Ok(CloudStore {
            inner,
            root,
            url: url.into(),
            part_size: part_size.max(MIN_PART_SIZE),
            concurrency: concurrency.max(1),
            rt: Some(rt),
        })
    }

    /// The store's URL (as configured).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("present until dropped")
    }

    fn err(&self, name: &str, e: impl std::fmt::Display) -> Error {
        Error::ObjectStore {
            name: format!("{}/{name}", self.url.trim_end_matches('/')),
            reason: e.to_string(),
        }
    }

    /// The key of blob `name` (relative, `/`-separated, no empty or `.`/`..` segments).
    fn key(&self, name: &str) -> Result<Path> {
        let ok = !name.is_empty()
            && name
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
        if !ok {
            return Err(self.err(name, "invalid blob name"));
        }
        let full = if self.root.as_ref().is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.root)
        };
        Path::parse(full).map_err(|e| self.err(name, e))
    }

    /// Starts `fut` on the store's runtime.
    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx
    }

    /// Waits on the calling thread for a request started with [`spawn`](Self::spawn).
    fn wait<T>(&self, name: &str, rx: Pending<T>) -> Result<T> {
        match rx.recv() {
            Ok(r) => r.map_err(|e| self.err(name, e)),
            Err(_) => Err(self.err(name, "the object store's runtime stopped")),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        name: &str,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T> {
        let rx = self.spawn(fut);
        self.wait(name, rx)
    }

    /// Reads up to one part from `data`; fewer bytes only at the end of the source.
    fn read_part(&self, name: &str, data: &mut dyn Read) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.part_size);
        data.take(self.part_size as u64)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(name, format!("reading the data to upload: {e}")))?;
        Ok(buf)
    }

    /// Uploads `first` (a full part) and the rest of `data` as a multipart upload.
    fn put_multipart(
        &self,
        name: &str,
        key: Path,
        first: Vec<u8>,
        data: &mut dyn Read,
    ) -> Result<u64> {
        let store = self.inner.clone();
        let mut upload: Box<dyn MultipartUpload> =
            self.run(name, async move { store.put_multipart(&key).await })?;
        let mut in_flight: VecDeque<Pending<()>> = VecDeque::new();
        let mut total = 0u64;
        let mut part = first;
        let mut result = loop {
            if part.is_empty() {
                break Ok(());
            }
            total += part.len() as u64;
            let last = part.len() < self.part_size;
            in_flight.push_back(self.spawn(upload.put_part(PutPayload::from(Bytes::from(part)))));
            if in_flight.len() >= self.concurrency
                && let Err(e) = self.wait(name, in_flight.pop_front().expect("non-empty"))
            {
                break Err(e);
            }
            if last {
                break Ok(());
            }
            part = match self.read_part(name, data) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
        };
        while let Some(rx) = in_flight.pop_front() {
            let r = self.wait(name, rx);
            if result.is_ok() {
                result = r;
            }
        }
        let completing = result.is_ok();
        let done = self.spawn(async move {
            if completing {
                upload.complete().await.map(|_| ())
            } else {
                upload.abort().await
            }
        });
        match result {
            Ok(()) => self.wait(name, done).map(|()| total),
            Err(e) => {
                if let Err(abort) = self.wait(name, done) {
                    tracing::warn!(blob = name, error = %abort, "aborting a failed multipart upload failed");
                }
                Err(e)
            }
        }
    }
}

impl ObjectStore for CloudStore {
    fn put(&self, name: &str, data: &mut dyn Read) -> Result<u64> {
        let key = self.key(name)?;
        let first = self.read_part(name, data)?;
        if first.len() < self.part_size {
            let n = first.len() as u64;
            let store = self.inner.clone();
            let payload = PutPayload::from(Bytes::from(first));
            self.run(name, async move { store.put(&key, payload).await })?;
            return Ok(n);
        }
        self.put_multipart(name, key, first, data)
    }

    fn get(&self, name: &str, out: &mut dyn Write) -> Result<u64> {
        let key = self.key(name)?;
        let store = self.inner.clone();
        let (tx, rx) = sync_channel::<object_store::Result<Bytes>>(4);
        self.rt().spawn(async move {
            let mut stream = match store.get(&key).await {
                Ok(r) => r.into_stream(),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while let Some(chunk) = stream.next().await {
                let stop = chunk.is_err();
                // The caller drains the channel; waiting on a full one must not hold up the
                // runtime's other tasks.
                if tokio::task::block_in_place(|| tx.send(chunk)).is_err() || stop {
                    return;
                }
            }
        });
        let mut total = 0u64;
        for chunk in rx {
            let chunk = chunk.map_err(|e| self.err(name, e))?;
            out.write_all(&chunk)
                .map_err(|e| self.err(name, format!("writing the downloaded data: {e}")))?;
            total += chunk.len() as u64;
        }
        Ok(total)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // List under the deepest whole directory of the prefix, then match the rest as text.
        let base = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => Some(self.key(dir)?),
            _ if self.root.as_ref().is_empty() => None,
            _ => Some(self.root.clone()),
        };
        let store = self.inner.clone();
        let metas = self.run(prefix, async move {
            store.list(base.as_ref()).try_collect::<Vec<_>>().await
        })?;
        let root_parts = self.root.parts().count();
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(root_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|n| n.starts_with(prefix))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        let store = self.inner.clone();
        self.run(name, async move {
            match store.delete(&key).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                r => r,
            }
        })
    }
}
