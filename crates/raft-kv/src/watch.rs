//! etcd's Watch served from this member's applied state: the hub ([`WatchHub`]) that apply
//! feeds in revision order, and the per-client streams ([`WatchStream`]) it fans out to.
//!
//! # Design
//! - **Fed by apply.** The store calls the hub's [`EventSink`] after each applied batch
//!   ([`WatchHub::sink`]); the sink only queues the batch in a bounded inbox (a short lock,
//!   never a wait) and the hub's own thread does the rest, so apply never waits for a
//!   watcher.
//! - **Two groups, as etcd's.** A *synced* watcher is current: the thread fans each new
//!   revision out to the synced watchers whose keys it touches (a key index: exact keys and
//!   prefixes by hash lookup, other ranges by scan). An *unsynced* watcher (created with an
//!   old `start_revision`, or moved there because its stream was full, or after revisions
//!   the hub was never handed) catches up from history ([`EventHistory`]) in rounds, then
//!   joins the synced group.
//! - **Bounded, never silent.** Each stream has a queue bounded in event items and bytes.
//!   When a revision does not fit, the watcher leaves the synced group at that revision and
//!   later catches up from history once the stream drained; a watcher whose next revision
//!   was compacted meanwhile is canceled with `compact_revision` set, as etcd does. When the
//!   inbox is over its bound, the batch is dropped and every synced watcher catches up
//!   from history over it. No event is ever skipped: each watcher's `next_rev` says exactly
//!   what it has been sent (see `hub.rs`).
//! - **Shared, not copied.** A revision's events are one `Arc`; a watcher's queue entry is
//!   that `Arc` and the indexes of its events. Keys and values are `Bytes` shared with the
//!   store, copied only when a response is encoded.
//!
//! The gRPC service over it is `service::watch`.

mod hub;
mod keys;
#[cfg(test)]
pub(crate) mod mem;
mod outbox;
mod response;
mod source;
mod worker;

use crate::error::Result;
use crate::events::{EventSink, RevisionEvents};
use crate::pb::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use hub::{Create, Hub};
use outbox::{Bounds, Outbox};
use std::sync::Arc;
use std::time::Duration;
use worker::{Inbox, Shared, Sink};

/// The store's current and compact revisions, read at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revisions {
    /// The last revision written.
    pub current: i64,
    /// The compact revision: history below it is gone.
    pub compact: i64,
}

/// Events read from history: every revision from the read's `from` up to `next - 1` was
/// looked at, and `revisions` holds those of them with events the read's key filter kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryChunk {
    /// Ascending by revision; each revision's events in the order of its writes.
    pub revisions: Vec<RevisionEvents>,
    /// The first revision the read did not look at (`to + 1` when it read everything).
    pub next: i64,
}

/// What the hub needs from a store to catch a watcher up.
pub trait EventHistory: Send + Sync + 'static {
    /// The current and compact revisions.
    fn revisions(&self) -> Revisions;

    /// The events of the revisions `from..=to` whose keys `keys` accepts, as apply handed
    /// them to the sink (a `DELETE` carries the key and the deleting revision as
    /// `mod_revision`), with `prev_kv` filled only when `prev_kv` is asked and the replaced
    /// version is still in history. Reads whole revisions and stops after about
    /// `max_bytes` of history (at least one revision when `from <= to`).
    /// [`Error::Compacted`](crate::Error::Compacted) when `from` is below the compact
    /// revision.
    fn read_events(
        &self,
        from: i64,
        to: i64,
        keys: &dyn Fn(&[u8]) -> bool,
        prev_kv: bool,
        max_bytes: usize,
    ) -> Result<HistoryChunk>;
}

/// The hub's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// How often a watch that asked for `progress_notify` is told the current revision while
    /// it gets no events (etcd: 10 minutes; at least 100 ms).
    pub progress_interval: Duration,
    /// Most event items (one per watcher and revision) queued for one client stream.
    pub stream_buffer_events: usize,
    /// Most bytes of events queued for one client stream.
    pub stream_buffer_bytes: usize,
    /// Most bytes of events waiting between apply and the hub's thread.
    pub inbox_bytes: usize,
    /// Most bytes of history one catch-up round reads.
    pub catch_up_read_bytes: usize,
    /// Most watchers one catch-up round serves (etcd: 512).
    pub catch_up_watchers: usize,
}

/// The shortest progress interval (etcd's minimum too).
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            progress_interval: Duration::from_secs(600),
            stream_buffer_events: 10_000,
            stream_buffer_bytes: 16 << 20,
            inbox_bytes: 64 << 20,
            catch_up_read_bytes: 4 << 20,
            catch_up_watchers: 512,
        }
    }
}

/// Counts for monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchStats {
    /// Watches on every stream.
    pub watchers: usize,
    /// Of them, those catching up from history.
    pub unsynced: usize,
    /// Open client streams.
    pub streams: usize,
    /// The last revision fanned out.
    pub revision: i64,
}

struct Owner {
    shared: Arc<Shared>,
    bounds: Bounds,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.inbox.stop();
    }
}

/// The watch hub of one store (see the module documentation). Cheap to clone; the hub's
/// thread stops when the last clone is dropped or at [`WatchHub::stop`].
#[derive(Clone)]
pub struct WatchHub {
    owner: Arc<Owner>,
}

impl WatchHub {
    /// Starts a hub over `history`, current as of its revision now. Register
    /// [`sink`](Self::sink) with the store afterwards (revisions applied in between are
    /// caught up from history).
    pub fn start(history: Arc<dyn EventHistory>, config: WatchConfig) -> std::io::Result<Self> {
        let config = WatchConfig {
            progress_interval: config.progress_interval.max(MIN_PROGRESS_INTERVAL),
            catch_up_watchers: config.catch_up_watchers.max(1),
            ..config
        };
        let shared = Arc::new(Shared {
            hub: parking_lot::Mutex::new(Hub::new(history.revisions().current)),
            inbox: Inbox::new(config.inbox_bytes),
        });
        let bounds = Bounds {
            items: config.stream_buffer_events.max(1),
            bytes: config.stream_buffer_bytes.max(1),
        };
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("raft-kv-watch".into())
            .spawn(move || worker::run(thread_shared, history, config))?;
        Ok(WatchHub {
            owner: Arc::new(Owner { shared, bounds }),
        })
    }

    /// Starts a hub over `store`'s history and registers it as the store's event sink.
    pub fn for_store(store: &crate::KvStore, config: WatchConfig) -> std::io::Result<Self> {
        let hub = Self::start(Arc::new(store.clone()), config)?;
        store.set_event_sink(Some(hub.sink()));
        Ok(hub)
    }

    /// The sink to register with the store.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(Sink(self.owner.shared.clone()))
    }

    /// Opens a client stream.
    pub fn open_stream(&self) -> WatchStream {
        let (id, outbox) = self.owner.shared.hub.lock().open_stream(self.owner.bounds);
        WatchStream {
            shared: self.owner.shared.clone(),
            id,
            outbox,
        }
    }

    /// Counts of watchers and streams, and the revision fanned out.
    pub fn stats(&self) -> WatchStats {
        let hub = self.owner.shared.hub.lock();
        let (watchers, unsynced, streams) = hub.counts();
        WatchStats {
            watchers,
            unsynced,
            streams,
            revision: hub.dispatched(),
        }
    }

    /// Stops the hub's thread (streams then get no more events).
    pub fn stop(&self) {
        self.owner.shared.inbox.stop();
    }
}

/// One client's watch stream on a hub: many watches, one ordered flow of responses. Closed
/// (its watches dropped) when dropped.
pub struct WatchStream {
    shared: Arc<Shared>,
    id: u64,
    outbox: Arc<Outbox>,
}

impl WatchStream {
    /// Handles a create request; its answer (and then its events) come out of
    /// [`next_responses`](Self::next_responses). Returns the watch id, -1 when refused.
    pub fn create(&self, req: &WatchCreateRequest) -> i64 {
        self.shared
            .hub
            .lock()
            .create(self.id, &Create::from_request(req))
    }

    /// Refuses a create request without making a watch: the client gets a created and
    /// canceled answer with watch id -1 and `why` as the cancel reason (as etcd answers a
    /// watch its caller may not read).
    pub fn refuse(&self, why: &str) {
        let hub = self.shared.hub.lock();
        self.outbox.push_control(outbox::Item::Created {
            watch_id: -1,
            revision: hub.dispatched(),
            refused: Some(why.to_string()),
        });
    }

    /// Handles a cancel request (an unknown id is ignored, as etcd does). True when the
    /// watch existed.
    pub fn cancel(&self, watch_id: i64) -> bool {
        self.shared.hub.lock().cancel(self.id, watch_id)
    }

    /// Handles a progress request: a response with watch id -1 and the revision up to which
    /// every watch of the stream has been sent everything, once they all are current.
    pub fn request_progress(&self) {
        self.shared.hub.lock().request_progress(self.id);
    }

    /// Waits while the stream's queue is full (read the client's next request only then).
    pub async fn wait_room(&self) {
        self.outbox.wait_room().await;
    }

    /// Waits for the next responses, in order. `max_bytes` is the request size limit
    /// (responses merge up to it, fragments stay below it); `header` makes a response
    /// header for a revision.
    pub async fn next_responses(
        &self,
        max_bytes: usize,
        header: &(dyn Fn(i64) -> Option<ResponseHeader> + Sync),
    ) -> Vec<WatchResponse> {
        let items = self.outbox.pop(1024).await;
        response::responses(items, max_bytes, header)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.shared.hub.lock().close_stream(self.id);
    }
}

#[cfg(test)]
mod tests;
