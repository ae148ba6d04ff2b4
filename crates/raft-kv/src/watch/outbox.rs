//! One watch stream's bounded queue of what is still to be sent ([`Outbox`]): events point
//! into revisions shared by every watcher (an `Arc` and the indexes of the events picked),
//! so a write fans out without a copy per watcher.

use crate::events::RevisionEvents;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// Which events of a revision an item carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// All of them.
    All,
    /// These, by index, ascending.
    Some(Box<[u32]>),
}

/// A watcher's events of one revision.
#[derive(Clone, Debug)]
pub(crate) struct EventsItem {
    /// The client's id of the watch.
    pub(crate) watch_id: i64,
    /// The revision, shared with every other watcher it was fanned out to.
    pub(crate) rev: Arc<RevisionEvents>,
    /// The events of `rev` this watcher gets (never empty).
    pub(crate) pick: Pick,
    /// Send the replaced versions (`prev_kv`) too.
    pub(crate) prev_kv: bool,
    /// The watch asked for fragmented responses.
    pub(crate) fragment: bool,
    /// What the item counts against the byte bound.
    pub(crate) bytes: usize,
}

impl EventsItem {
    /// The picked events, in order.
    pub(crate) fn events(&self) -> impl Iterator<Item = &crate::pb::mvccpb::Event> {
        let all = &self.rev.events;
        let picked: Box<dyn Iterator<Item = _>> = match &self.pick {
            Pick::All => Box::new(all.iter()),
            Pick::Some(ix) => Box::new(ix.iter().filter_map(|i| all.get(*i as usize))),
        };
        picked
    }
}

/// One thing to tell the client, in stream order.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    /// The answer to a create request (`canceled`: the reason it was refused).
    Created {
        /// The watch's id (-1 when refused).
        watch_id: i64,
        /// The revision the hub had fanned out when the watch was made.
        revision: i64,
        /// Why the create was refused, when it was.
        refused: Option<String>,
    },
    /// Events of one watcher at one revision.
    Events(EventsItem),
    /// The watch ended (client's cancel, or its history was compacted away).
    Canceled {
        /// The watch's id.
        watch_id: i64,
        /// The hub's revision then.
        revision: i64,
        /// Set when the watch ended because its next revision was compacted.
        compact_revision: i64,
        /// Why (empty for a client's cancel).
        reason: String,
    },
    /// Everything up to `revision` has been sent for `watch_id` (-1: for the whole stream).
    Progress {
        /// The watch (or -1).
        watch_id: i64,
        /// The revision.
        revision: i64,
    },
}

/// Bounds of one stream's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Most event items queued.
    pub(crate) items: usize,
    /// Most bytes of events (keys, values and replaced values) queued.
    pub(crate) bytes: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Event items in `items`. Invariant: equals the count of `Item::Events` in `items`.
    events: usize,
    /// Sum of their `bytes`.
    bytes: usize,
    closed: bool,
}

/// A stream's queue: the hub pushes, the stream's sender pops.
///
/// Events are refused past the bounds (the hub then moves the watcher to catch up from
/// history later); answers to the client's requests are always taken, and the stream reads
/// the client's next request only while the queue is below its bounds
/// ([`Outbox::wait_room`]), so those cannot pile up either.
pub(crate) struct Outbox {
    q: Mutex<Queue>,
    bounds: Bounds,
    ready: Notify,
    drained: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.q.lock();
        f.debug_struct("Outbox")
            .field("items", &q.items.len())
            .field("events", &q.events)
            .field("bytes", &q.bytes)
            .finish()
    }
}

impl Outbox {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Outbox {
            q: Mutex::new(Queue::default()),
            bounds,
            ready: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Queues a watcher's events unless that would pass the bounds (a queue without events
    /// takes one item of any size). False when refused.
    pub(crate) fn try_push_events(&self, item: EventsItem) -> bool {
        let mut q = self.q.lock();
        if q.closed {
            return true;
        }
        if q.events > 0
            && (q.events + 1 > self.bounds.items || q.bytes + item.bytes > self.bounds.bytes)
        {
            return false;
        }
        q.events += 1;
        q.bytes += item.bytes;
        q.items.push_back(Item::Events(item));
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Queues an answer (never refused).
    pub(crate) fn push_control(&self, item: Item) {
        debug_assert!(!matches!(item, Item::Events(_)));
        let mut q = self.q.lock();
        if q.closed {
            return;
        }
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
    }

    /// True when the queue is at most half full: a watcher catching up from history is
    /// fed only then, so a slow stream is not refilled as soon as it drains a little.
    pub(crate) fn has_room_for_catch_up(&self) -> bool {
        let q = self.q.lock();
        q.events <= self.bounds.items / 2 && q.bytes <= self.bounds.bytes / 2
    }

    /// True while there is room for more events and answers (see [`Outbox::wait_room`]).
    fn has_room(&self) -> bool {
        let q = self.q.lock();
        q.closed || (q.items.len() < self.bounds.items && q.bytes < self.bounds.bytes)
    }

    /// Waits until the queue is below its bounds.
    pub(crate) async fn wait_room(&self) {
        loop {
            let drained = self.drained.notified();
            if self.has_room() {
                return;
            }
            drained.await;
        }
    }

    /// Takes up to `max` items, waiting for at least one.
    pub(crate) async fn pop(&self, max: usize) -> Vec<Item> {
        loop {
            let ready = self.ready.notified();
            let items = self.try_pop(max);
            if !items.is_empty() {
                return items;
            }
            ready.await;
        }
    }

    /// Takes up to `max` items without waiting.
    pub(crate) fn try_pop(&self, max: usize) -> Vec<Item> {
        let mut q = self.q.lock();
        let n = q.items.len().min(max);
        let items: Vec<Item> = q.items.drain(..n).collect();
        for item in &items {
            if let Item::Events(e) = item {
                q.events -= 1;
                q.bytes -= e.bytes;
            }
        }
        drop(q);
        if !items.is_empty() {
            self.drained.notify_one();
        }
        items
    }

    /// Drops everything queued and refuses nothing from now on (the stream is gone).
    pub(crate) fn close(&self) {
        let mut q = self.q.lock();
        q.closed = true;
        q.items.clear();
        q.events = 0;
        q.bytes = 0;
        drop(q);
        self.drained.notify_one();
    }

    /// (event items, bytes) queued.
    #[cfg(test)]
    pub(crate) fn load(&self) -> (usize, usize) {
        let q = self.q.lock();
        (q.events, q.bytes)
    }
}

/// What an event counts against a stream's byte bound.
pub(crate) fn event_bytes(ev: &crate::pb::mvccpb::Event, prev_kv: bool) -> usize {
    let kv = |kv: &Option<crate::pb::mvccpb::KeyValue>| {
        kv.as_ref()
            .map_or(0, |kv| kv.key.len() + kv.value.len() + 32)
    };
    8 + kv(&ev.kv) + if prev_kv { kv(&ev.prev_kv) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::{Event, KeyValue};
    use bytes::Bytes;

    fn item(rev: i64, value_len: usize) -> EventsItem {
        let ev = Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![0u8; value_len]),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        };
        let bytes = event_bytes(&ev, false);
        EventsItem {
            watch_id: 1,
            rev: Arc::new(RevisionEvents {
                revision: rev,
                events: vec![ev],
            }),
            pick: Pick::All,
            prev_kv: false,
            fragment: false,
            bytes,
        }
    }

    #[test]
    fn bounded_by_items_and_bytes_but_answers_always_fit() {
        let ob = Outbox::new(Bounds {
            items: 3,
            bytes: 1000,
        });
        assert!(ob.try_push_events(item(2, 10)));
        assert!(ob.try_push_events(item(3, 10)));
        assert!(!ob.has_room_for_catch_up(), "two of three is past half");
        assert!(ob.try_push_events(item(4, 10)));
        assert!(
            !ob.try_push_events(item(5, 10)),
            "a fourth item passes the bound"
        );
        ob.push_control(Item::Progress {
            watch_id: -1,
            revision: 4,
        });
        assert_eq!(ob.load().0, 3);
        let popped = ob.try_pop(2);
        assert_eq!(popped.len(), 2);
        assert!(ob.try_push_events(item(5, 10)));
        // Bytes: one large item is taken by an empty queue, a second is refused.
        let ob = Outbox::new(Bounds {
            items: 100,
            bytes: 1000,
        });
        assert!(ob.try_push_events(item(2, 5000)));
        assert!(!ob.try_push_events(item(3, 10)));
        assert!(!ob.has_room_for_catch_up());
        let revs: Vec<i64> = ob
            .try_pop(10)
            .iter()
            .map(|i| match i {
                Item::Events(e) => e.rev.revision,
                _ => 0,
            })
            .collect();
        assert_eq!(revs, vec![2]);
        assert_eq!(ob.load(), (0, 0));
        assert!(ob.has_room_for_catch_up());
    }

    #[tokio::test]
    async fn pop_waits_for_items_and_wait_room_for_the_sender() {
        let ob = Arc::new(Outbox::new(Bounds {
            items: 1,
            bytes: 1 << 20,
        }));
        assert!(ob.try_push_events(item(2, 1)));
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.wait_room().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "a full queue holds the next request back"
        );
        assert_eq!(ob.pop(10).await.len(), 1);
        waiter.await.unwrap();
        let popper = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.pop(10).await.len() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        ob.push_control(Item::Progress {
            watch_id: 0,
            revision: 1,
        });
        assert_eq!(popper.await.unwrap(), 1);
    }
}
