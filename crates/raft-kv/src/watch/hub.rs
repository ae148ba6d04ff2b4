//! The hub's state ([`Hub`]): every watcher, the synced group (fed live, by key index) and
//! the unsynced group (fed from history), and the moves between them. All of it runs under
//! one lock, taken by the hub thread to fan out and catch up and by streams to create and
//! cancel watches; reading history happens outside it.
//!
//! Invariant of every watcher: every event of its range at a revision below `next_rev` has
//! been queued on its stream, or filtered out, and none at or above it. Events are queued
//! only at `next_rev` or above, and `next_rev` then moves past them: each event reaches a
//! watch exactly once, in revision order, whichever group it came through.

use super::keys::{KeyIndex, WatchRange};
use super::outbox::{Bounds, EventsItem, Item, Outbox, Pick, event_bytes};
use crate::events::RevisionEvents;
use crate::pb::etcdserverpb::{WatchCreateRequest, watch_create_request::FilterType};
use crate::pb::mvccpb::{Event, event::EventType};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// etcd's answer to a create with a watch id the stream already uses.
pub(crate) const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's answer to a create whose range holds no key.
pub(crate) const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
/// Why a watch whose next revision was compacted is canceled (with `compact_revision` set).
pub(crate) const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// One watch.
#[derive(Debug)]
struct Watcher {
    stream: u64,
    watch_id: i64,
    outbox: Arc<Outbox>,
    range: WatchRange,
    /// The first revision not yet considered (see the module documentation). For a synced
    /// watcher the effective value is `max(next_rev, dispatched + 1)`.
    next_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events were queued since the last progress tick.
    quiet: bool,
    synced: bool,
}

impl Watcher {
    /// The indexes of the events of `rev` this watcher gets, after its range and filters.
    fn pick(&self, rev: &RevisionEvents, candidates: &[u32]) -> Option<Pick> {
        let keep = |ev: &Event| {
            let put = ev.r#type == EventType::Put as i32;
            !(put && self.no_put || !put && self.no_delete)
                && ev
                    .kv
                    .as_ref()
                    .is_some_and(|kv| self.range.contains(&kv.key))
        };
        let picked: Vec<u32> = candidates
            .iter()
            .copied()
            .filter(|i| rev.events.get(*i as usize).is_some_and(keep))
            .collect();
        if picked.is_empty() {
            None
        } else if picked.len() == rev.events.len() {
            Some(Pick::All)
        } else {
            Some(Pick::Some(picked.into_boxed_slice()))
        }
    }

    fn item(&self, rev: &Arc<RevisionEvents>, pick: Pick) -> EventsItem {
        let bytes = match &pick {
            Pick::All => rev
                .events
                .iter()
                .map(|e| event_bytes(e, self.prev_kv))
                .sum(),
            Pick::Some(ix) => ix
                .iter()
                .filter_map(|i| rev.events.get(*i as usize))
                .map(|e| event_bytes(e, self.prev_kv))
                .sum(),
        };
        EventsItem {
            watch_id: self.watch_id,
            rev: rev.clone(),
            pick,
            prev_kv: self.prev_kv,
            fragment: self.fragment,
            bytes,
        }
    }
}

/// One client stream as the hub knows it.
#[derive(Debug)]
struct StreamEntry {
    outbox: Arc<Outbox>,
    /// Watch id -> hub key of the watcher.
    ids: HashMap<i64, u64>,
    /// The next id to try for a watch the server names (etcd counts from 0 per stream).
    next_auto: i64,
    /// Its watchers in the unsynced group.
    unsynced: usize,
    /// A progress request waits for every watcher of the stream to be synced.
    progress_pending: bool,
}

/// A catch-up round planned under the lock: what to read from history, for whom.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The watchers (hub keys) the round serves.
    pub(crate) keys: Vec<u64>,
    /// Their keys, to filter history by.
    pub(crate) index: KeyIndex,
    /// The oldest revision one of them needs.
    pub(crate) from: i64,
    /// The revision the hub has fanned out (read up to it).
    pub(crate) to: i64,
    /// Whether any of them wants replaced versions.
    pub(crate) prev_kv: bool,
}

/// What a watch create asks for, read from the request.
#[derive(Clone, Debug)]
pub(crate) struct Create {
    /// The client's id (0: the server chooses).
    pub(crate) watch_id: i64,
    range: Option<WatchRange>,
    start_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
}

impl Create {
    /// Reads a create request as etcd does.
    pub(crate) fn from_request(req: &WatchCreateRequest) -> Self {
        let filters = |f: FilterType| req.filters.contains(&(f as i32));
        Create {
            watch_id: req.watch_id,
            range: WatchRange::new(&req.key, &req.range_end),
            start_revision: req.start_revision,
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
        }
    }
}

/// The watchers and both groups (see the module documentation).
#[derive(Debug)]
pub(crate) struct Hub {
    /// The last revision fanned out to the synced group (or handed to catch-up after a gap).
    /// Every revision up to it is readable from history.
    dispatched: i64,
    watchers: HashMap<u64, Watcher>,
    synced: KeyIndex,
    unsynced: BTreeSet<u64>,
    /// Where the next catch-up round starts in `unsynced` (rounds take turns).
    cursor: u64,
    streams: HashMap<u64, StreamEntry>,
    next_key: u64,
    next_stream: u64,
}

impl Hub {
    /// A hub that has fanned out everything up to `revision`.
    pub(crate) fn new(revision: i64) -> Self {
        Hub {
            dispatched: revision,
            watchers: HashMap::new(),
            synced: KeyIndex::default(),
            unsynced: BTreeSet::new(),
            cursor: 0,
            streams: HashMap::new(),
            next_key: 1,
            next_stream: 1,
        }
    }

    /// The last revision fanned out.
    pub(crate) fn dispatched(&self) -> i64 {
        self.dispatched
    }

    /// (watchers, unsynced watchers, streams).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.watchers.len(), self.unsynced.len(), self.streams.len())
    }

    /// Registers a client stream; returns its id and queue.
    pub(crate) fn open_stream(&mut self, bounds: Bounds) -> (u64, Arc<Outbox>) {
        let id = self.next_stream;
        self.next_stream += 1;
        let outbox = Arc::new(Outbox::new(bounds));
        self.streams.insert(
            id,
            StreamEntry {
                outbox: outbox.clone(),
                ids: HashMap::new(),
                next_auto: 0,
                unsynced: 0,
                progress_pending: false,
            },
        );
        (id, outbox)
    }

    /// Forgets a stream and all its watchers.
    pub(crate) fn close_stream(&mut self, stream: u64) {
        if let Some(entry) = self.streams.remove(&stream) {
            for key in entry.ids.values() {
                self.drop_watcher(*key);
            }
            entry.outbox.close();
        }
    }

    fn drop_watcher(&mut self, key: u64) -> Option<Watcher> {
        let w = self.watchers.remove(&key)?;
        if w.synced {
            self.synced.remove(key, &w.range);
        } else {
            self.unsynced.remove(&key);
            if let Some(s) = self.streams.get_mut(&w.stream) {
                s.unsynced = s.unsynced.saturating_sub(1);
            }
        }
        Some(w)
    }

    /// Creates a watch on `stream` and queues the created answer (etcd's rules: the client's
    /// id must be unused on the stream; id 0 lets the server choose; an empty range is
    /// refused; start 0 means the next revision, an older one replays history first, a
    /// later one waits for it). Returns the watch id (-1 when refused).
    pub(crate) fn create(&mut self, stream: u64, c: &Create) -> i64 {
        let dispatched = self.dispatched;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return -1;
        };
        let refuse = |entry: &StreamEntry, why: &str| {
            entry.outbox.push_control(Item::Created {
                watch_id: -1,
                revision: dispatched,
                refused: Some(why.to_string()),
            });
            -1
        };
        let Some(range) = c.range.clone() else {
            return refuse(entry, EMPTY_RANGE);
        };
        let watch_id = if c.watch_id == 0 {
            while entry.ids.contains_key(&entry.next_auto) {
                entry.next_auto += 1;
            }
            entry.next_auto += 1;
            entry.next_auto - 1
        } else if entry.ids.contains_key(&c.watch_id) {
            return refuse(entry, DUPLICATE_ID);
        } else {
            c.watch_id
        };
        let key = self.next_key;
        self.next_key += 1;
        entry.ids.insert(watch_id, key);
        // Answered before any event can be queued for it.
        entry.outbox.push_control(Item::Created {
            watch_id,
            revision: dispatched,
            refused: None,
        });
        let synced = c.start_revision == 0 || c.start_revision > dispatched;
        let w = Watcher {
            stream,
            watch_id,
            outbox: entry.outbox.clone(),
            range,
            next_rev: if synced {
                c.start_revision.max(dispatched + 1)
            } else {
                c.start_revision.max(1)
            },
            no_put: c.no_put,
            no_delete: c.no_delete,
            prev_kv: c.prev_kv,
            fragment: c.fragment,
            progress_notify: c.progress_notify,
            quiet: true,
            synced,
        };
        if synced {
            self.synced.insert(key, &w.range);
        } else {
            entry.unsynced += 1;
            self.unsynced.insert(key);
        }
        self.watchers.insert(key, w);
        watch_id
    }

    /// Cancels a watch of `stream` at the client's request and queues the answer; an
    /// unknown id is ignored, as etcd does. True when it existed.
    pub(crate) fn cancel(&mut self, stream: u64, watch_id: i64) -> bool {
        let Some(key) = self
            .streams
            .get_mut(&stream)
            .and_then(|s| s.ids.remove(&watch_id))
        else {
            return false;
        };
        if let Some(w) = self.drop_watcher(key) {
            w.outbox.push_control(Item::Canceled {
                watch_id,
                revision: self.dispatched,
                compact_revision: 0,
                reason: String::new(),
            });
        }
        self.answer_progress(stream);
        true
    }

    /// A client's progress request: answered at once (watch id -1, the fanned-out revision)
    /// when every watcher of the stream is synced, else as soon as they are.
    pub(crate) fn request_progress(&mut self, stream: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.progress_pending = true;
        }
        self.answer_progress(stream);
    }

    fn answer_progress(&mut self, stream: u64) {
        if let Some(s) = self.streams.get_mut(&stream)
            && s.progress_pending
            && s.unsynced == 0
        {
            s.progress_pending = false;
            s.outbox.push_control(Item::Progress {
                watch_id: -1,
                revision: self.dispatched,
            });
        }
    }

    /// Moves a synced watcher to the unsynced group, to resume at `next_rev`.
    fn make_unsynced(&mut self, key: u64, next_rev: i64) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        if !w.synced {
            return;
        }
        w.synced = false;
        w.next_rev = next_rev;
        self.synced.remove(key, &w.range);
        self.unsynced.insert(key);
        if let Some(s) = self.streams.get_mut(&w.stream) {
            s.unsynced += 1;
        }
    }

    fn make_synced(&mut self, key: u64) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        if w.synced {
            return;
        }
        w.synced = true;
        self.unsynced.remove(&key);
        self.synced.insert(key, &w.range);
        let stream = w.stream;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.unsynced = s.unsynced.saturating_sub(1);
        }
        self.answer_progress(stream);
    }

    /// Fans one revision out to the synced group. A revision at or below the fanned-out
    /// one is ignored (catch-up covers it); one past a gap first moves every synced watcher
    /// to catch up over the gap. A watcher whose stream is full moves to the unsynced
    /// group at this revision instead of holding anything back.
    pub(crate) fn dispatch(&mut self, rev: Arc<RevisionEvents>) {
        if rev.revision <= self.dispatched {
            return;
        }
        if rev.revision > self.dispatched + 1 {
            self.gap(rev.revision - 1);
        }
        let mut matches: Vec<(u64, u32)> = Vec::new();
        for (i, ev) in rev.events.iter().enumerate() {
            if let Some(kv) = &ev.kv {
                self.synced
                    .for_each_match(&kv.key, |key| matches.push((key, i as u32)));
            }
        }
        matches.sort_unstable();
        let mut full = Vec::new();
        for group in matches.chunk_by(|a, b| a.0 == b.0) {
            let key = group[0].0;
            let Some(w) = self.watchers.get_mut(&key) else {
                continue;
            };
            if rev.revision < w.next_rev {
                continue;
            }
            let ix: Vec<u32> = group.iter().map(|(_, i)| *i).collect();
            let Some(pick) = w.pick(&rev, &ix) else {
                continue;
            };
            if w.outbox.try_push_events(w.item(&rev, pick)) {
                w.next_rev = rev.revision + 1;
                w.quiet = false;
            } else {
                full.push(key);
            }
        }
        for key in full {
            self.make_unsynced(key, rev.revision);
        }
        self.dispatched = rev.revision;
    }

    /// Revisions up to `upto` will not be fanned out live (they were not handed over, or
    /// the store jumped there by a snapshot): every synced watcher catches up from history.
    pub(crate) fn gap(&mut self, upto: i64) {
        if upto <= self.dispatched {
            return;
        }
        let resume = self.dispatched + 1;
        let synced: Vec<(u64, i64)> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.synced)
            .map(|(k, w)| (*k, w.next_rev.max(resume)))
            .collect();
        for (key, next) in synced {
            self.make_unsynced(key, next);
        }
        self.dispatched = upto;
    }

    /// True when some watcher waits in the unsynced group.
    pub(crate) fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Plans a catch-up round for at most `max_watchers` unsynced watchers whose streams
    /// have room. Watchers with nothing to read join the synced group at once. `None` when
    /// nobody needs history now.
    pub(crate) fn plan(&mut self, max_watchers: usize) -> Option<Plan> {
        let mut keys = Vec::new();
        let mut ready = Vec::new();
        let order: Vec<u64> = self
            .unsynced
            .range(self.cursor..)
            .chain(self.unsynced.range(..self.cursor))
            .copied()
            .collect();
        for key in order {
            if keys.len() >= max_watchers {
                break;
            }
            let Some(w) = self.watchers.get(&key) else {
                continue;
            };
            if w.next_rev > self.dispatched {
                ready.push(key);
            } else if w.outbox.has_room_for_catch_up() {
                keys.push(key);
            }
        }
        for key in ready {
            self.make_synced(key);
        }
        if let Some(last) = keys.last() {
            self.cursor = last + 1;
        }
        if keys.is_empty() {
            return None;
        }
        let mut index = KeyIndex::default();
        let mut from = i64::MAX;
        let mut prev_kv = false;
        for key in &keys {
            let Some(w) = self.watchers.get(key) else {
                continue;
            };
            index.insert(*key, &w.range);
            from = from.min(w.next_rev);
            prev_kv |= w.prev_kv;
        }
        Some(Plan {
            keys,
            index,
            from,
            to: self.dispatched,
            prev_kv,
        })
    }

    /// Feeds a round's history to its watchers: `revisions` (ascending, events of the
    /// planned keys) cover everything from `plan.from` up to `next - 1`. A watcher whose
    /// stream fills up stays unsynced where it stopped; one that reached the fanned-out
    /// revision joins the synced group. Returns the number of watchers that moved forward.
    pub(crate) fn catch_up(
        &mut self,
        plan: &Plan,
        revisions: Vec<RevisionEvents>,
        next: i64,
    ) -> usize {
        let mut stalled = BTreeSet::new();
        let mut before: HashMap<u64, i64> = HashMap::new();
        for key in &plan.keys {
            if let Some(w) = self.watchers.get(key) {
                before.insert(*key, w.next_rev);
            }
        }
        let mut matches: Vec<(u64, u32)> = Vec::new();
        for rev in revisions {
            let rev = Arc::new(rev);
            matches.clear();
            for (i, ev) in rev.events.iter().enumerate() {
                if let Some(kv) = &ev.kv {
                    plan.index
                        .for_each_match(&kv.key, |key| matches.push((key, i as u32)));
                }
            }
            matches.sort_unstable();
            for group in matches.chunk_by(|a, b| a.0 == b.0) {
                let key = group[0].0;
                if stalled.contains(&key) {
                    continue;
                }
                let Some(w) = self.watchers.get_mut(&key) else {
                    continue;
                };
                if w.synced || rev.revision < w.next_rev {
                    continue;
                }
                let ix: Vec<u32> = group.iter().map(|(_, i)| *i).collect();
                let Some(pick) = w.pick(&rev, &ix) else {
                    continue;
                };
                if w.outbox.try_push_events(w.item(&rev, pick)) {
                    w.next_rev = rev.revision + 1;
                    w.quiet = false;
                } else {
                    w.next_rev = rev.revision;
                    stalled.insert(key);
                }
            }
        }
        let mut moved = 0;
        for key in &plan.keys {
            let dispatched = self.dispatched;
            let Some(w) = self.watchers.get_mut(key) else {
                continue;
            };
            if w.synced {
                continue;
            }
            if !stalled.contains(key) {
                w.next_rev = w.next_rev.max(next);
            }
            if before.get(key) != Some(&w.next_rev) {
                moved += 1;
            }
            if w.next_rev > dispatched {
                self.make_synced(*key);
            }
        }
        moved
    }

    /// History below `compact` is gone: cancels the round's watchers that still needed it,
    /// with `compact_revision` set as etcd does. Returns how many.
    pub(crate) fn compacted(&mut self, plan: &Plan, compact: i64) -> usize {
        let mut n = 0;
        for key in &plan.keys {
            let Some(w) = self.watchers.get(key) else {
                continue;
            };
            if w.synced || w.next_rev >= compact {
                continue;
            }
            let (stream, watch_id) = (w.stream, w.watch_id);
            if let Some(s) = self.streams.get_mut(&stream) {
                s.ids.remove(&watch_id);
            }
            if let Some(w) = self.drop_watcher(*key) {
                w.outbox.push_control(Item::Canceled {
                    watch_id,
                    revision: self.dispatched,
                    compact_revision: compact,
                    reason: COMPACTED.to_string(),
                });
            }
            self.answer_progress(stream);
            n += 1;
        }
        n
    }

    /// The periodic progress notification: every synced watcher that asked for it and got
    /// no events since the last tick is told the fanned-out revision (skipped when its
    /// stream is full: a later tick or event tells it more).
    pub(crate) fn progress_tick(&mut self) {
        for w in self.watchers.values_mut() {
            if !w.progress_notify {
                continue;
            }
            if w.synced && w.quiet && w.outbox.has_room_for_catch_up() {
                w.outbox.push_control(Item::Progress {
                    watch_id: w.watch_id,
                    revision: self.dispatched,
                });
            }
            w.quiet = true;
        }
    }
}

#[cfg(test)]
mod tests;
