//! An in-memory [`EventHistory`] for the hub's tests: revisions appended in order, a
//! compact revision below which reads fail, and a switch to hand (or not) each write to a
//! sink as apply would.

use super::{EventHistory, HistoryChunk, Revisions};
use crate::error::{Error, Result};
use crate::events::{EventSink, RevisionEvents};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Default)]
struct State {
    revisions: BTreeMap<i64, RevisionEvents>,
    current: i64,
    compact: i64,
    /// Latest version of each live key (for versions and `prev_kv`).
    live: BTreeMap<Bytes, KeyValue>,
    reads: usize,
}

/// The history of a toy store (see the module documentation).
#[derive(Default)]
pub(crate) struct MemHistory {
    state: Mutex<State>,
    sink: Mutex<Option<Arc<dyn EventSink>>>,
}

impl MemHistory {
    /// A store at revision 1 (as a new raft-kv store).
    pub(crate) fn new() -> Arc<Self> {
        let h = MemHistory::default();
        h.state.lock().current = 1;
        Arc::new(h)
    }

    pub(crate) fn set_sink(&self, sink: Arc<dyn EventSink>) {
        *self.sink.lock() = Some(sink);
    }

    /// Writes one revision of puts (`Some(value)`) and deletes (`None`); hands it to the
    /// sink when `publish`. Returns its revision.
    pub(crate) fn write_with(&self, writes: &[(&str, Option<&str>)], publish: bool) -> i64 {
        let rev = {
            let mut s = self.state.lock();
            let rev = s.current + 1;
            let mut events = Vec::new();
            for (key, value) in writes {
                let key = Bytes::copy_from_slice(key.as_bytes());
                let prev = s.live.get(&key).cloned();
                match value {
                    Some(v) => {
                        let kv = KeyValue {
                            key: key.clone(),
                            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                            mod_revision: rev,
                            version: prev.as_ref().map_or(1, |p| p.version + 1),
                            value: Bytes::copy_from_slice(v.as_bytes()),
                            lease: 0,
                        };
                        s.live.insert(key, kv.clone());
                        events.push(Event {
                            r#type: EventType::Put as i32,
                            kv: Some(kv),
                            prev_kv: prev,
                        });
                    }
                    None => {
                        if prev.is_none() {
                            continue;
                        }
                        s.live.remove(&key);
                        events.push(Event {
                            r#type: EventType::Delete as i32,
                            kv: Some(KeyValue {
                                key,
                                mod_revision: rev,
                                ..Default::default()
                            }),
                            prev_kv: prev,
                        });
                    }
                }
            }
            s.current = rev;
            s.revisions.insert(
                rev,
                RevisionEvents {
                    revision: rev,
                    events,
                },
            );
            rev
        };
        if publish {
            let batch = vec![self.state.lock().revisions[&rev].clone()];
            if let Some(sink) = self.sink.lock().clone() {
                sink.publish(batch);
            }
        }
        rev
    }

    /// A put handed to the sink.
    pub(crate) fn put(&self, key: &str, value: &str) -> i64 {
        self.write_with(&[(key, Some(value))], true)
    }

    /// Forgets every revision below `rev`.
    pub(crate) fn compact(&self, rev: i64) {
        let mut s = self.state.lock();
        s.compact = rev;
        s.revisions = s.revisions.split_off(&rev);
    }

    /// The events of revision `rev` as apply hands them over.
    pub(crate) fn get(&self, rev: i64) -> RevisionEvents {
        self.state.lock().revisions[&rev].clone()
    }

    /// How many reads the hub made.
    pub(crate) fn reads(&self) -> usize {
        self.state.lock().reads
    }
}

impl EventHistory for MemHistory {
    fn revisions(&self) -> Revisions {
        let s = self.state.lock();
        Revisions {
            current: s.current,
            compact: s.compact,
        }
    }

    fn read_events(
        &self,
        from: i64,
        to: i64,
        keys: &dyn Fn(&[u8]) -> bool,
        prev_kv: bool,
        max_bytes: usize,
    ) -> Result<HistoryChunk> {
        let mut s = self.state.lock();
        s.reads += 1;
        if from < s.compact {
            return Err(Error::Compacted);
        }
        let mut chunk = HistoryChunk {
            revisions: Vec::new(),
            next: from,
        };
        let mut bytes = 0;
        for (rev, r) in s.revisions.range(from..=to) {
            if bytes >= max_bytes {
                break;
            }
            let events: Vec<Event> = r
                .events
                .iter()
                .inspect(|e| bytes += super::outbox::event_bytes(e, true))
                .filter(|e| e.kv.as_ref().is_some_and(|kv| keys(&kv.key)))
                .map(|e| Event {
                    prev_kv: if prev_kv { e.prev_kv.clone() } else { None },
                    ..e.clone()
                })
                .collect();
            if !events.is_empty() {
                chunk.revisions.push(RevisionEvents {
                    revision: *rev,
                    events,
                });
            }
            chunk.next = rev + 1;
        }
        if chunk.next == from && from <= to && s.revisions.range(from..=to).next().is_none() {
            chunk.next = to + 1;
        }
        Ok(chunk)
    }
}
