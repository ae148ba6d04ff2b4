//! The watch workload: writers put unique values under `chaos/watch/`, watchers watch the
//! prefix from one start revision and, after any error, reconnect (to the next endpoint)
//! from the revision after the last event they received, as a careful etcd client does.

use super::{Clock, Conn, Sink, Spec, error_line, outcome_of, record};
use anyhow::{Context, Result, bail};
use etcd_client::{EventType, GetOptions, WatchOptions};
use raft_chaos::history::{Outcome, WatchRecord, WatchWrite};
use raft_sim::rng::SimRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

const PREFIX: &str = "chaos/watch/";
/// Keys the writers spread their puts over.
const KEYS: u64 = 8;

/// The running watchers.
pub struct Watch {
    /// The revision every watcher started from.
    pub start_revision: i64,
    /// The last revision each watcher received.
    seen: Vec<Arc<AtomicI64>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    events: Sink,
}

/// A linearizable read of the prefix through any endpoint, retried for up to 30 s: the
/// revision of the response and the largest mod revision under the prefix.
async fn read_prefix(spec: &Spec) -> Result<(i64, i64)> {
    let mut conn = Conn::new(&spec.endpoints, 0, spec.timeout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mut c) = conn.client().await {
            match c.get(PREFIX, Some(GetOptions::new().with_prefix())).await {
                Ok(r) => {
                    let rev = r.header().map_or(0, |h| h.revision());
                    let last = r
                        .kvs()
                        .iter()
                        .map(|kv| kv.mod_revision())
                        .max()
                        .unwrap_or(0);
                    return Ok((rev, last));
                }
                Err(_) => conn.rotate(),
            }
        }
        if Instant::now() > deadline {
            bail!("could not read {PREFIX} through any endpoint within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Watch {
    /// Reads the current revision and starts the watchers from the one after it.
    pub async fn start(spec: &Spec, clock: Clock, events: Sink) -> Result<Watch> {
        let (rev, _) = read_prefix(spec).await?;
        let start_revision = rev + 1;
        let stop = Arc::new(AtomicBool::new(false));
        let mut seen = Vec::new();
        let mut tasks = Vec::new();
        for w in 0..spec.watchers {
            let last = Arc::new(AtomicI64::new(start_revision - 1));
            seen.push(last.clone());
            let (spec, stop, events) = (spec.clone(), stop.clone(), events.clone());
            tasks.push(tokio::spawn(async move {
                watcher(spec, clock, w as u64, start_revision, last, stop, events).await
            }));
        }
        Ok(Watch {
            start_revision,
            seen,
            stop,
            tasks,
            events,
        })
    }

    /// After the writers stopped: reads the last revision under the prefix, waits (up to the
    /// spec's catch-up time) until every watcher has received it, stops the watchers. Returns
    /// the last revision and where each watcher got to.
    pub async fn finish(self, spec: &Spec) -> Result<(i64, Vec<i64>)> {
        let (_, last) = read_prefix(spec).await?;
        let deadline = Instant::now() + spec.catch_up;
        while Instant::now() < deadline && self.seen.iter().any(|s| s.load(Ordering::SeqCst) < last)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.context("a watcher panicked")??;
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush()?;
        Ok((
            last,
            self.seen.iter().map(|s| s.load(Ordering::SeqCst)).collect(),
        ))
    }
}

async fn watcher(
    spec: Spec,
    clock: Clock,
    watcher: u64,
    start_revision: i64,
    last: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    out: Sink,
) -> Result<()> {
    let mut conn = Conn::new(&spec.endpoints, watcher as usize, spec.timeout);
    'connect: while !stop.load(Ordering::SeqCst) {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        let resume = if spec.watch_resume_at_last { 0 } else { 1 };
        let from = last.load(Ordering::SeqCst) + resume;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from.max(start_revision));
        let endpoint = conn.endpoint().to_string();
        let mut stream = match c.watch(PREFIX, Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                record(
                    &out,
                    &WatchRecord::Error {
                        watcher,
                        error: format!("creating the watch: {}", error_line(&e)),
                        at_us: clock.us(),
                    },
                )?;
                conn.rotate();
                continue;
            }
        };
        record(
            &out,
            &WatchRecord::Watch {
                watcher,
                start_revision: from,
                endpoint,
                at_us: clock.us(),
            },
        )?;
        loop {
            if stop.load(Ordering::SeqCst) {
                break 'connect;
            }
            let msg = match tokio::time::timeout(Duration::from_millis(200), stream.message()).await
            {
                Err(_) => continue,
                Ok(m) => m,
            };
            let error = match msg {
                Ok(Some(resp)) if resp.canceled() => format!(
                    "watch canceled: {} (compact revision {})",
                    resp.cancel_reason(),
                    resp.compact_revision()
                ),
                Ok(Some(resp)) => {
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let rev = kv.mod_revision();
                        record(
                            &out,
                            &WatchRecord::Event {
                                watcher,
                                revision: rev,
                                key: String::from_utf8_lossy(kv.key()).into_owned(),
                                value: String::from_utf8_lossy(kv.value()).into_owned(),
                                kind: match ev.event_type() {
                                    EventType::Put => "put".into(),
                                    EventType::Delete => "delete".into(),
                                },
                                at_us: clock.us(),
                            },
                        )?;
                        last.fetch_max(rev, Ordering::SeqCst);
                    }
                    continue;
                }
                Ok(None) => "the watch stream ended".to_string(),
                Err(e) => error_line(&e),
            };
            record(
                &out,
                &WatchRecord::Error {
                    watcher,
                    error,
                    at_us: clock.us(),
                },
            )?;
            conn.rotate();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue 'connect;
        }
    }
    Ok(())
}

/// One writer until `deadline`: puts a unique value (`w<process>-<n>`) to a random key.
pub async fn writer(
    spec: Spec,
    clock: Clock,
    deadline: Instant,
    process: u64,
    out: Sink,
) -> Result<()> {
    let mut rng = SimRng::new(spec.seed ^ (0x3A7C_0000 + process));
    let mut conn = Conn::new(&spec.endpoints, process as usize + 2, spec.timeout);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        let key = format!("{PREFIX}k{}", rng.below(KEYS));
        let value = format!("w{process}-{n}");
        n += 1;
        let invoke_us = clock.us();
        let res = c.put(key.clone(), value.clone(), None).await;
        let complete_us = clock.us();
        let mut w = WatchWrite {
            process,
            key,
            value,
            invoke_us,
            complete_us,
            outcome: Outcome::Ok,
            revision: None,
            error: None,
        };
        match res {
            Ok(r) => w.revision = r.header().map(|h| h.revision()),
            Err(e) => {
                conn.backoff().await;
                w.outcome = outcome_of(&e);
                w.error = Some(error_line(&e));
            }
        }
        record(&out, &w)?;
        // A little think time: the watch check is about delivery, not throughput.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
