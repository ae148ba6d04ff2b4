//! [`KvStore`] as the hub's [`EventHistory`]: events read back from the history space
//! (`b'h' ++ revision`, see `crate::history`) in revision order, shaped as apply hands them
//! to the sink.

use super::{EventHistory, HistoryChunk, Revisions};
use crate::error::{Error, Result};
use crate::events::RevisionEvents;
use crate::history::decode_event;
use crate::layout::{history_key, history_rev};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};
use crate::record::{Current, Rev};
use crate::store::KvStore;

impl KvStore {
    /// The version a history event replaced (its key's previous write), when that was a
    /// live version still in history.
    fn replaced(&self, key: &[u8], prev: Option<Rev>) -> Result<Option<KeyValue>> {
        let Some(at) = prev else {
            return Ok(None);
        };
        match self.shared.tree.get(history_key(at.main, at.sub))? {
            Some(raw) => Ok(decode_event(&raw)?
                .1
                .into_live()
                .map(|r| r.to_key_value(key))),
            // Removed by physical compaction.
            None => Ok(None),
        }
    }
}

impl EventHistory for KvStore {
    fn revisions(&self) -> Revisions {
        let s = self.shared.state.read();
        Revisions {
            current: s.revision,
            compact: s.compact_revision,
        }
    }

    /// Scans the history space from `from`. As in etcd, the compact revision itself can be
    /// read, but physical compaction has removed the deletions made at it.
    fn read_events(
        &self,
        from: i64,
        to: i64,
        keys: &dyn Fn(&[u8]) -> bool,
        prev_kv: bool,
        max_bytes: usize,
    ) -> Result<HistoryChunk> {
        {
            let s = self.shared.state.read();
            if s.restoring {
                return Err(Error::RestoreIncomplete);
            }
            if from < s.compact_revision {
                return Err(Error::Compacted);
            }
        }
        let from = from.max(1);
        let mut chunk = HistoryChunk {
            revisions: Vec::new(),
            next: to.saturating_add(1).max(from),
        };
        if from > to {
            return Ok(chunk);
        }
        let mut bytes = 0usize;
        let mut current: Option<RevisionEvents> = None;
        let range = history_key(from, 0)..history_key(to + 1, 0);
        for item in self.shared.tree.range(range) {
            let (k, raw) = item?;
            let (main, _) = history_rev(&k)
                .ok_or_else(|| Error::corrupt("history space: a key that is not a revision"))?;
            if current.as_ref().is_none_or(|c| c.revision != main) {
                if let Some(done) = current.take() {
                    if bytes >= max_bytes {
                        chunk.next = main;
                        if !done.events.is_empty() {
                            chunk.revisions.push(done);
                        }
                        return Ok(chunk);
                    }
                    if !done.events.is_empty() {
                        chunk.revisions.push(done);
                    }
                }
                current = Some(RevisionEvents {
                    revision: main,
                    events: Vec::new(),
                });
            }
            bytes += k.len() + raw.len();
            let (key, entry) = decode_event(&raw)?;
            if !keys(&key) {
                continue;
            }
            let replaced = if prev_kv {
                self.replaced(&key, entry.prev())?
            } else {
                None
            };
            let event = match entry {
                Current::Live { rec, .. } => Event {
                    r#type: EventType::Put as i32,
                    kv: Some(rec.to_key_value(&key)),
                    prev_kv: replaced,
                },
                Current::Tombstone { at, .. } => Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(KeyValue {
                        key,
                        mod_revision: at.main,
                        ..Default::default()
                    }),
                    prev_kv: replaced,
                },
            };
            if let Some(c) = current.as_mut() {
                c.events.push(event);
            }
        }
        if let Some(done) = current.take()
            && !done.events.is_empty()
        {
            chunk.revisions.push(done);
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventSink;
    use crate::pb::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, request_op,
    };
    use crate::{ApplyEntry, Command, EntryPayload, Op};
    use bytes::Bytes;
    use parking_lot::Mutex;
    use std::sync::Arc;

    #[derive(Default)]
    struct Collect(Mutex<Vec<RevisionEvents>>);

    impl EventSink for Collect {
        fn publish(&self, revisions: Vec<RevisionEvents>) {
            self.0.lock().extend(revisions);
        }
    }

    fn apply(store: &KvStore, index: u64, op: Op) {
        let cmd = Command::new(0, op);
        store
            .apply_batch(&[ApplyEntry {
                index,
                term: 1,
                payload: EntryPayload::Command(&cmd),
            }])
            .unwrap();
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            prev_kv: true,
            ..Default::default()
        })
    }

    fn all(_: &[u8]) -> bool {
        true
    }

    /// History read back equals what apply handed to the sink, revision by revision, with
    /// and without the replaced versions; reads are bounded and resume where they stopped.
    #[test]
    fn history_reads_back_what_apply_published() {
        let store = KvStore::open_temporary().unwrap();
        let sink = Arc::new(Collect::default());
        store.set_event_sink(Some(sink.clone()));
        let mut index = 0;
        let mut next = || {
            index += 1;
            index
        };
        apply(&store, next(), put("a", "1"));
        apply(&store, next(), put("b", "1"));
        apply(&store, next(), put("a", "2"));
        apply(
            &store,
            next(),
            Op::Txn(TxnRequest {
                success: vec![
                    RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: Bytes::from_static(b"c"),
                            value: Bytes::from_static(b"3"),
                            ..Default::default()
                        })),
                    },
                    RequestOp {
                        request: Some(request_op::Request::RequestDeleteRange(
                            DeleteRangeRequest {
                                key: Bytes::from_static(b"a"),
                                ..Default::default()
                            },
                        )),
                    },
                ],
                ..Default::default()
            }),
        );
        apply(&store, next(), put("a", "3"));
        let published = sink.0.lock().clone();
        assert_eq!(
            published.iter().map(|r| r.revision).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
        let rev = store.revisions();
        assert_eq!(
            rev,
            Revisions {
                current: 6,
                compact: 0
            }
        );
        let chunk = store.read_events(1, 6, &all, true, usize::MAX).unwrap();
        assert_eq!(chunk.next, 7);
        assert_eq!(chunk.revisions, published, "history equals the live events");
        // Without prev_kv, and only key "a".
        let only_a = |k: &[u8]| k == b"a";
        let chunk = store.read_events(3, 6, &only_a, false, usize::MAX).unwrap();
        let shape: Vec<(i64, usize)> = chunk
            .revisions
            .iter()
            .map(|r| (r.revision, r.events.len()))
            .collect();
        assert_eq!(shape, vec![(4, 1), (5, 1), (6, 1)]);
        assert!(
            chunk
                .revisions
                .iter()
                .flat_map(|r| &r.events)
                .all(|e| e.prev_kv.is_none())
        );
        assert_eq!(
            chunk.revisions[1].events[0].r#type,
            EventType::Delete as i32
        );
        // Bounded: one revision at a time, resuming at `next`.
        let mut from = 2;
        let mut seen = Vec::new();
        while from <= 6 {
            let c = store.read_events(from, 6, &all, true, 1).unwrap();
            assert!(c.next > from);
            seen.extend(c.revisions);
            from = c.next;
        }
        assert_eq!(seen, published);
        // Compaction: below the compact revision is refused, at it is served.
        apply(
            &store,
            next(),
            Op::Compact(CompactionRequest {
                revision: 4,
                physical: false,
            }),
        );
        assert!(store.wait_compacted_blocking(4, std::time::Duration::from_secs(10)));
        assert!(matches!(
            store.read_events(3, 6, &all, false, usize::MAX),
            Err(Error::Compacted)
        ));
        let after = store.read_events(4, 6, &all, true, usize::MAX).unwrap();
        assert_eq!(after.revisions.first().map(|r| r.revision), Some(4));
        assert_eq!(after.revisions.last(), published.last());
    }
}
