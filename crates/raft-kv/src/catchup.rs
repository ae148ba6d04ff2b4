//! Reading the history back as watch events ([`KvStore::events`]): what a watch that starts
//! at an older revision replays before it follows the live events of an
//! [`EventSink`](crate::EventSink). The events are the ones apply published, in the same
//! order and with the same `prev_kv`.

use crate::error::{Error, Result};
use crate::events::RevisionEvents;
use crate::history::decode_event;
use crate::layout::{history_key, history_rev};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};
use crate::record::{Current, Record};
use crate::store::KvStore;
use prost::bytes::Bytes;

/// Releases a compaction pin when dropped.
struct Pinned<'a>(&'a KvStore, i64);

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        self.0.shared.unpin(self.1);
    }
}

fn key_value(key: &Bytes, rec: Record) -> KeyValue {
    KeyValue {
        key: key.clone(),
        create_revision: rec.create_revision,
        mod_revision: rec.mod_revision,
        version: rec.version,
        value: rec.value,
        lease: rec.lease,
    }
}

impl KvStore {
    /// The events of the revisions from `from` on, in revision order, up to the current
    /// revision or until about `max_events` events were read (whole revisions only, at least
    /// one): the caller goes on from the last revision returned plus one.
    ///
    /// `from` below the compact revision is [`Error::Compacted`] (as etcd cancels a watch
    /// that starts there); above the current revision there is nothing yet (empty). A
    /// `prev_kv` whose version was compacted away is absent. No lock is held while the
    /// history is read: apply goes on, and physical compaction waits at the compact
    /// revision.
    pub fn events(&self, from: i64, max_events: usize) -> Result<Vec<RevisionEvents>> {
        let (to, compact) = {
            let st = self.shared.state.read();
            if let Some(e) = st.unusable() {
                return Err(e);
            }
            if from < st.compact_revision {
                return Err(Error::Compacted);
            }
            self.shared.pin(st.compact_revision);
            (st.revision, st.compact_revision)
        };
        let _pin = Pinned(self, compact);
        let tree = &self.shared.tree;
        let mut out: Vec<RevisionEvents> = Vec::new();
        let range = tree.range(history_key(from.max(0), 0)..history_key(to + 1, 0));
        for (read, item) in range.enumerate() {
            let (k, v) = item?;
            let (main, _) = history_rev(&k).ok_or_else(|| Error::corrupt("history key"))?;
            if read >= max_events.max(1) && out.last().is_some_and(|r| r.revision != main) {
                break;
            }
            let (key, entry) = decode_event(&v)?;
            let prev = match entry.prev() {
                Some(p) => match tree.get(history_key(p.main, p.sub))? {
                    Some(raw) => decode_event(&raw)?.1.into_live(),
                    None => None,
                },
                None => None,
            };
            let (kind, kv) = match entry {
                Current::Live { rec, .. } => (EventType::Put, key_value(&key, rec)),
                Current::Tombstone { at, .. } => (
                    EventType::Delete,
                    KeyValue {
                        key: key.clone(),
                        mod_revision: at.main,
                        ..Default::default()
                    },
                ),
            };
            let event = Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: prev.map(|r| key_value(&key, r)),
            };
            match out.last_mut() {
                Some(r) if r.revision == main => r.events.push(event),
                _ => out.push(RevisionEvents {
                    revision: main,
                    events: vec![event],
                }),
            }
        }
        Ok(out)
    }
}
