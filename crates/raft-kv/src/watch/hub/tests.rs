//! The hub's groups driven step by step: live fan-out, catch-up from history, full streams,
//! gaps, compaction, cancel, ids and progress, against an in-memory history.

use super::*;
use crate::pb::etcdserverpb::WatchCreateRequest;
use crate::watch::EventHistory;
use crate::watch::mem::MemHistory;
use crate::watch::outbox::Outbox;

/// What a client would see, one entry per queued item.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Created(i64, i64, Option<String>),
    /// watch id, revision, events as "PUT k=v" / "DELETE k" (with " prev=v" when sent).
    Events(i64, i64, Vec<String>),
    Canceled(i64, i64, String),
    Progress(i64, i64),
}

fn drain(ob: &Outbox) -> Vec<Seen> {
    ob.try_pop(usize::MAX)
        .into_iter()
        .map(|item| match item {
            Item::Created {
                watch_id,
                revision,
                refused,
            } => Seen::Created(watch_id, revision, refused),
            Item::Events(e) => {
                let evs = e
                    .events()
                    .map(|ev| {
                        let kv = ev.kv.as_ref().unwrap();
                        let key = String::from_utf8_lossy(&kv.key);
                        let mut s = if ev.r#type == EventType::Put as i32 {
                            format!("PUT {key}={}", String::from_utf8_lossy(&kv.value))
                        } else {
                            format!("DELETE {key}")
                        };
                        if e.prev_kv
                            && let Some(p) = &ev.prev_kv
                        {
                            s += &format!(" prev={}", String::from_utf8_lossy(&p.value));
                        }
                        s
                    })
                    .collect();
                Seen::Events(e.watch_id, e.rev.revision, evs)
            }
            Item::Canceled {
                watch_id,
                compact_revision,
                reason,
                ..
            } => Seen::Canceled(watch_id, compact_revision, reason),
            Item::Progress { watch_id, revision } => Seen::Progress(watch_id, revision),
        })
        .collect()
}

/// Only the events, as (watch id, revision, events).
fn events(seen: &[Seen]) -> Vec<(i64, i64, Vec<String>)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Events(id, rev, evs) => Some((*id, *rev, evs.clone())),
            _ => None,
        })
        .collect()
}

struct Bench {
    hub: Hub,
    mem: Arc<MemHistory>,
    stream: u64,
    ob: Arc<Outbox>,
}

const ROOMY: Bounds = Bounds {
    items: 1000,
    bytes: 1 << 20,
};

impl Bench {
    fn new(bounds: Bounds) -> Self {
        let mem = MemHistory::new();
        let mut hub = Hub::new(mem.revisions().current);
        let (stream, ob) = hub.open_stream(bounds);
        Bench {
            hub,
            mem,
            stream,
            ob,
        }
    }

    /// One revision written and fanned out (`live`) or only written.
    fn write(&mut self, writes: &[(&str, Option<&str>)], live: bool) -> i64 {
        let rev = self.mem.write_with(writes, false);
        if live {
            self.hub.dispatch(Arc::new(self.mem.get(rev)));
        }
        rev
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        self.write(&[(key, Some(value))], true)
    }

    fn watch(&mut self, req: WatchCreateRequest) -> i64 {
        self.hub.create(self.stream, &Create::from_request(&req))
    }

    /// One catch-up round as the hub thread runs it, reading at most `max_bytes`.
    fn round(&mut self, max_bytes: usize) -> usize {
        let Some(plan) = self.hub.plan(512) else {
            return 0;
        };
        let filter = |k: &[u8]| plan.index.any_match(k);
        match self
            .mem
            .read_events(plan.from, plan.to, &filter, plan.prev_kv, max_bytes)
        {
            Ok(chunk) => self.hub.catch_up(&plan, chunk.revisions, chunk.next),
            Err(crate::Error::Compacted) => {
                let compact = self.mem.revisions().compact;
                self.hub.compacted(&plan, compact)
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn req(key: &str, end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        ..Default::default()
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

use bytes::Bytes;

#[test]
fn live_events_reach_each_covering_watch_once_in_order_with_filters() {
    let mut b = Bench::new(ROOMY);
    let key = b.watch(req("k", ""));
    let prefix = b.watch(req("k", "l"));
    let span = b.watch(req("a", "kb"));
    let from = b.watch(req("ka", "\0"));
    let no_put = b.watch(WatchCreateRequest {
        filters: vec![FilterType::Noput as i32],
        prev_kv: true,
        ..req("k", "l")
    });
    assert_eq!((key, prefix, span, from, no_put), (0, 1, 2, 3, 4));
    let created = drain(&b.ob);
    assert_eq!(created[0], Seen::Created(0, 1, None));
    assert_eq!(created.len(), 5);
    let r2 = b.put("k", "1");
    let r3 = b.write(&[("ka", Some("2")), ("z", Some("3")), ("k", None)], true);
    let r4 = b.put("other", "x");
    assert_eq!((r2, r3, r4), (2, 3, 4));
    assert_eq!(
        events(&drain(&b.ob)),
        vec![
            (0, 2, vec![s("PUT k=1")]),
            (1, 2, vec![s("PUT k=1")]),
            (2, 2, vec![s("PUT k=1")]),
            (0, 3, vec![s("DELETE k")]),
            (1, 3, vec![s("PUT ka=2"), s("DELETE k")]),
            (2, 3, vec![s("PUT ka=2"), s("DELETE k")]),
            (3, 3, vec![s("PUT ka=2"), s("PUT z=3")]),
            (4, 3, vec![s("DELETE k prev=1")]),
            (3, 4, vec![s("PUT other=x")]),
        ],
        "events in the order of the revision's writes; watch 3 covers z and other too"
    );
    assert_eq!(b.hub.dispatched(), 4);
    assert!(!b.hub.has_unsynced());
}

#[test]
fn old_start_replays_history_then_joins_live_without_gap_or_duplicate() {
    let mut b = Bench::new(ROOMY);
    for i in 0..10 {
        b.put("k", &i.to_string());
    }
    // Revisions 2..=11 exist; replay from 5.
    let id = b.watch(WatchCreateRequest {
        start_revision: 5,
        prev_kv: true,
        ..req("k", "")
    });
    assert_eq!(drain(&b.ob), vec![Seen::Created(id, 11, None)]);
    assert!(b.hub.has_unsynced());
    // Live revisions while it is unsynced do not reach it directly.
    b.put("k", "10");
    assert!(drain(&b.ob).is_empty());
    // Small reads: several rounds, revisions arrive in order.
    let mut revs = Vec::new();
    let mut rounds = 0;
    while b.hub.has_unsynced() {
        assert!(b.round(100) > 0, "every round moves it forward");
        rounds += 1;
        for (_, rev, evs) in events(&drain(&b.ob)) {
            assert_eq!(evs.len(), 1);
            revs.push(rev);
        }
        // A write between rounds.
        if rounds == 2 {
            b.put("k", "11");
        }
    }
    assert!(rounds > 2, "the 100-byte reads took {rounds} rounds");
    b.put("k", "12");
    revs.extend(events(&drain(&b.ob)).into_iter().map(|(_, r, _)| r));
    assert_eq!(revs, (5..=14).collect::<Vec<_>>());
}

#[test]
fn a_full_stream_sends_its_watcher_to_history_and_nothing_is_lost() {
    let mut b = Bench::new(Bounds {
        items: 4,
        bytes: 1 << 20,
    });
    let id = b.watch(req("k", ""));
    let other = b.watch(req("x", ""));
    drain(&b.ob);
    for i in 0..10 {
        b.put("k", &i.to_string());
    }
    // Four fit; the fifth moved the watcher out of the synced group at revision 6.
    assert_eq!(b.ob.load().0, 4);
    assert!(b.hub.has_unsynced());
    assert_eq!(b.hub.counts(), (2, 1, 1));
    let mut got = events(&drain(&b.ob));
    // The other watch on the same stream is still live.
    b.put("x", "1");
    let seen = events(&drain(&b.ob));
    assert_eq!(seen, vec![(other, 12, vec![s("PUT x=1")])]);
    // Catch up while writes go on; the stream is drained between rounds.
    let mut n = 0;
    while b.hub.has_unsynced() {
        b.round(1 << 20);
        b.put("k", &format!("late{n}"));
        got.extend(
            events(&drain(&b.ob))
                .into_iter()
                .filter(|(w, _, _)| *w == id),
        );
        n += 1;
        assert!(n < 20, "catch-up does not converge");
    }
    let revs: Vec<i64> = got.iter().map(|(_, r, _)| *r).collect();
    let want: Vec<i64> = (2..=b.hub.dispatched()).filter(|r| *r != 12).collect();
    assert_eq!(
        revs, want,
        "every put of k exactly once, in order (12 is x's)"
    );
}

#[test]
fn a_stalled_stream_is_not_read_for_and_keeps_its_place() {
    let mut b = Bench::new(Bounds {
        items: 2,
        bytes: 1 << 20,
    });
    b.watch(req("k", ""));
    drain(&b.ob);
    for i in 0..5 {
        b.put("k", &i.to_string());
    }
    assert!(b.hub.has_unsynced());
    let reads = b.mem.reads();
    // The queue is full: rounds skip it without reading history.
    assert_eq!(b.round(1 << 20), 0);
    assert_eq!(b.mem.reads(), reads);
    assert_eq!(b.ob.load().0, 2);
    let first = events(&drain(&b.ob));
    assert_eq!(first.iter().map(|e| e.1).collect::<Vec<_>>(), vec![2, 3]);
    // Drained: the round reads from revision 4 and fills the queue again.
    assert!(b.round(1 << 20) > 0);
    let next = events(&drain(&b.ob));
    assert_eq!(next.iter().map(|e| e.1).collect::<Vec<_>>(), vec![4, 5]);
    assert!(b.round(1 << 20) > 0);
    let last = events(&drain(&b.ob));
    assert_eq!(last.iter().map(|e| e.1).collect::<Vec<_>>(), vec![6]);
    assert!(!b.hub.has_unsynced());
}

#[test]
fn compaction_while_unsynced_cancels_with_the_compact_revision() {
    let mut b = Bench::new(ROOMY);
    for i in 0..6 {
        b.put("k", &i.to_string());
    }
    let old = b.watch(WatchCreateRequest {
        start_revision: 2,
        ..req("k", "")
    });
    let fine = b.watch(WatchCreateRequest {
        start_revision: 5,
        ..req("k", "")
    });
    b.mem.compact(4);
    // The round's read fails; only the watch that needed revisions below 4 ends.
    assert_eq!(b.round(1 << 20), 1);
    let seen = drain(&b.ob);
    assert!(seen.contains(&Seen::Canceled(old, 4, s(COMPACTED))));
    assert_eq!(b.hub.counts().0, 1);
    assert!(b.round(1 << 20) > 0);
    assert_eq!(
        events(&drain(&b.ob))
            .iter()
            .map(|e| (e.0, e.1))
            .collect::<Vec<_>>(),
        vec![(fine, 5), (fine, 6), (fine, 7)]
    );
    // A new watch from the compact revision itself is served.
    let at = b.watch(WatchCreateRequest {
        start_revision: 4,
        ..req("k", "")
    });
    b.round(1 << 20);
    assert_eq!(
        events(&drain(&b.ob)).first().map(|e| (e.0, e.1)),
        Some((at, 4))
    );
}

#[test]
fn cancel_answers_once_and_stops_events() {
    let mut b = Bench::new(ROOMY);
    let id = b.watch(req("k", ""));
    b.put("k", "1");
    assert!(b.hub.cancel(b.stream, id));
    assert!(!b.hub.cancel(b.stream, id), "unknown ids are ignored");
    b.put("k", "2");
    let seen = drain(&b.ob);
    assert_eq!(
        seen,
        vec![
            Seen::Created(id, 1, None),
            Seen::Events(id, 2, vec![s("PUT k=1")]),
            Seen::Canceled(id, 0, String::new()),
        ]
    );
    assert_eq!(b.hub.counts(), (0, 0, 1));
    b.hub.close_stream(b.stream);
    assert_eq!(b.hub.counts(), (0, 0, 0));
}

#[test]
fn watch_ids_follow_etcds_rules() {
    let mut b = Bench::new(ROOMY);
    let chosen = b.watch(WatchCreateRequest {
        watch_id: 1,
        ..req("k", "")
    });
    assert_eq!(chosen, 1);
    // Server-chosen ids count from 0 and skip ids in use.
    assert_eq!(b.watch(req("k", "")), 0);
    assert_eq!(b.watch(req("k", "")), 2);
    // A duplicate and an empty range are refused with etcd's reasons.
    assert_eq!(
        b.watch(WatchCreateRequest {
            watch_id: 2,
            ..req("k", "")
        }),
        -1
    );
    assert_eq!(b.watch(req("b", "a")), -1);
    let seen = drain(&b.ob);
    assert_eq!(seen[3], Seen::Created(-1, 1, Some(s(DUPLICATE_ID))));
    assert_eq!(seen[4], Seen::Created(-1, 1, Some(s(EMPTY_RANGE))));
    // Another stream has its own ids.
    let (other, ob2) = b.hub.open_stream(ROOMY);
    assert_eq!(b.hub.create(other, &Create::from_request(&req("k", ""))), 0);
    assert_eq!(drain(&ob2), vec![Seen::Created(0, 1, None)]);
    // A canceled id can be used again.
    b.hub.cancel(b.stream, 1);
    assert_eq!(
        b.watch(WatchCreateRequest {
            watch_id: 1,
            ..req("k", "")
        }),
        1
    );
}

#[test]
fn a_future_start_waits_for_its_revision() {
    let mut b = Bench::new(ROOMY);
    let id = b.watch(WatchCreateRequest {
        start_revision: 4,
        ..req("k", "")
    });
    b.put("k", "2");
    b.put("k", "3");
    b.put("k", "4");
    b.put("k", "5");
    assert_eq!(
        events(&drain(&b.ob))
            .iter()
            .map(|e| (e.0, e.1))
            .collect::<Vec<_>>(),
        vec![(id, 4), (id, 5)]
    );
}

#[test]
fn revisions_never_handed_over_are_caught_up_from_history() {
    let mut b = Bench::new(ROOMY);
    let id = b.watch(req("k", ""));
    let future = b.watch(WatchCreateRequest {
        start_revision: 5,
        ..req("k", "")
    });
    b.put("k", "a");
    // Revisions 3 and 4 are not handed over (the inbox was full, or a snapshot).
    b.write(&[("k", Some("b"))], false);
    b.write(&[("k", Some("c"))], false);
    b.put("k", "d");
    assert_eq!(b.hub.counts().1, 2, "both watchers catch up over the gap");
    while b.hub.has_unsynced() {
        assert!(b.round(1 << 20) > 0);
    }
    let got: Vec<(i64, i64)> = events(&drain(&b.ob)).iter().map(|e| (e.0, e.1)).collect();
    let of = |w| {
        got.iter()
            .filter(|e| e.0 == w)
            .map(|e| e.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(id), vec![2, 3, 4, 5]);
    assert_eq!(of(future), vec![5]);
    // A gap reported without a later revision (`lost_upto`).
    b.write(&[("k", Some("e"))], false);
    b.hub.gap(6);
    assert_eq!(b.hub.dispatched(), 6);
    b.round(1 << 20);
    assert_eq!(
        events(&drain(&b.ob))
            .iter()
            .map(|e| e.1)
            .collect::<Vec<_>>(),
        vec![6, 6]
    );
    // Revisions at or below the fanned-out one are ignored when they arrive late.
    b.hub.dispatch(Arc::new(b.mem.get(6)));
    assert!(drain(&b.ob).is_empty());
}

#[test]
fn progress_answers_wait_for_every_watch_of_the_stream_to_be_current() {
    let mut b = Bench::new(ROOMY);
    b.put("k", "1");
    b.watch(req("k", ""));
    let old = b.watch(WatchCreateRequest {
        start_revision: 2,
        ..req("k", "")
    });
    drain(&b.ob);
    b.hub.request_progress(b.stream);
    assert!(drain(&b.ob).is_empty(), "watch {old} is still catching up");
    b.round(1 << 20);
    assert_eq!(
        drain(&b.ob),
        vec![
            Seen::Events(old, 2, vec![s("PUT k=1")]),
            Seen::Progress(-1, 2)
        ]
    );
    b.hub.request_progress(b.stream);
    assert_eq!(drain(&b.ob), vec![Seen::Progress(-1, 2)]);
}

#[test]
fn periodic_progress_goes_to_quiet_synced_watches_that_asked() {
    let mut b = Bench::new(ROOMY);
    let asked = b.watch(WatchCreateRequest {
        progress_notify: true,
        ..req("k", "")
    });
    let busy = b.watch(WatchCreateRequest {
        progress_notify: true,
        ..req("b", "")
    });
    b.watch(req("q", ""));
    drain(&b.ob);
    b.put("b", "1");
    b.put("other", "1");
    drain(&b.ob);
    b.hub.progress_tick();
    assert_eq!(drain(&b.ob), vec![Seen::Progress(asked, 3)]);
    // Next tick: both quiet now.
    b.hub.progress_tick();
    let mut seen = drain(&b.ob);
    seen.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        seen,
        vec![Seen::Progress(asked, 3), Seen::Progress(busy, 3)]
    );
}

/// A small deterministic generator (xorshift64*), so failures replay by seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Random writes, watches with random starts, ranges and filters on tiny queues, drained
/// at random, revisions randomly not handed over, history compacted now and then: every
/// watch gets exactly the events of its range from its start, in order, or (when
/// compacted) a prefix of them ending below the compact revision, with the cancel.
#[test]
fn model_every_event_exactly_once_in_order_whatever_the_interleaving() {
    const KEYS: [&str; 5] = ["a", "ab", "b", "ba", "c"];
    const RANGES: [(&str, &str); 6] = [
        ("a", ""),
        ("a", "b"),
        ("b", "\0"),
        ("ab", "c"),
        ("", "\0"),
        ("c", ""),
    ];
    let (mut total_canceled, mut total_events, mut total_stalls) = (0, 0, 0);
    for seed in 1..=150u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let items = 1 + rng.below(4) as usize;
        let mut b = Bench::new(Bounds {
            items,
            bytes: 1 << 20,
        });
        // Every revision written, kept whole (the store's history forgets compacted ones).
        let mut all: Vec<RevisionEvents> = Vec::new();
        // Watch id -> (request, first revision it must get).
        let mut watches: HashMap<i64, (WatchCreateRequest, i64)> = HashMap::new();
        let mut got: HashMap<i64, Vec<(i64, Vec<String>)>> = HashMap::new();
        let mut canceled: HashMap<i64, i64> = HashMap::new();
        let collect = |b: &Bench,
                       got: &mut HashMap<i64, Vec<(i64, Vec<String>)>>,
                       canceled: &mut HashMap<i64, i64>| {
            for seen in drain(&b.ob) {
                match seen {
                    Seen::Events(id, rev, evs) => got.entry(id).or_default().push((rev, evs)),
                    Seen::Canceled(id, compact, _) => {
                        canceled.insert(id, compact);
                    }
                    _ => {}
                }
            }
        };
        for _ in 0..120 {
            match rng.below(10) {
                0..=3 => {
                    let n = 1 + rng.below(2) as usize;
                    let writes: Vec<(&str, Option<&str>)> = (0..n)
                        .map(|_| {
                            let key = KEYS[rng.below(5) as usize];
                            (key, (rng.below(4) != 0).then_some("v"))
                        })
                        .collect();
                    // One write per key in a revision, as a txn allows.
                    let mut dedup: Vec<(&str, Option<&str>)> = Vec::new();
                    for w in writes {
                        if !dedup.iter().any(|d| d.0 == w.0) {
                            dedup.push(w);
                        }
                    }
                    let live = rng.below(8) != 0;
                    let unsynced = b.hub.counts().1;
                    let rev = b.write(&dedup, live);
                    total_stalls += usize::from(live && b.hub.counts().1 > unsynced);
                    all.push(b.mem.get(rev));
                }
                4 => {
                    let (key, end) = RANGES[rng.below(6) as usize];
                    let current = b.mem.revisions().current;
                    let start = match rng.below(3) {
                        0 => 0,
                        1 => 1 + rng.below(current as u64 + 2) as i64,
                        _ => current - rng.below(3) as i64,
                    };
                    let mut r = WatchCreateRequest {
                        start_revision: start.max(0),
                        prev_kv: rng.below(2) == 0,
                        ..req(key, end)
                    };
                    if rng.below(4) == 0 {
                        r.filters = vec![rng.below(2) as i32];
                    }
                    let first = if r.start_revision == 0 {
                        b.hub.dispatched() + 1
                    } else {
                        r.start_revision
                    };
                    let id = b.watch(r.clone());
                    assert!(id >= 0);
                    watches.insert(id, (r, first));
                }
                5 | 6 => collect(&b, &mut got, &mut canceled),
                7 | 8 => {
                    b.round(1 + rng.below(300) as usize);
                }
                _ => {
                    if rng.below(3) == 0 {
                        let current = b.mem.revisions().current;
                        let compact = b.mem.revisions().compact;
                        b.mem.compact(compact.max(current - rng.below(4) as i64));
                    } else if rng.below(2) == 0 {
                        // A lost batch noticed without a later one.
                        b.hub.gap(b.mem.revisions().current);
                    }
                }
            }
        }
        // Quiesce: hand over what is left, then drain and catch up until all are current.
        b.hub.gap(b.mem.revisions().current);
        for _ in 0..1000 {
            collect(&b, &mut got, &mut canceled);
            if !b.hub.has_unsynced() {
                break;
            }
            b.round(1 << 20);
        }
        collect(&b, &mut got, &mut canceled);
        assert!(
            !b.hub.has_unsynced(),
            "seed {seed}: catch-up did not finish"
        );
        total_canceled += canceled.len();
        total_events += got.values().map(Vec::len).sum::<usize>();
        for (id, (r, first)) in &watches {
            let range = WatchRange::new(&r.key, &r.range_end).unwrap();
            let want: Vec<(i64, Vec<String>)> = all
                .iter()
                .filter(|rev| rev.revision >= *first)
                .filter_map(|rev| {
                    let evs: Vec<String> = rev
                        .events
                        .iter()
                        .filter(|e| range.contains(&e.kv.as_ref().unwrap().key))
                        .filter(|e| !r.filters.contains(&e.r#type))
                        .map(|e| {
                            let kv = e.kv.as_ref().unwrap();
                            let key = String::from_utf8_lossy(&kv.key);
                            let mut s = if e.r#type == 0 {
                                format!("PUT {key}={}", String::from_utf8_lossy(&kv.value))
                            } else {
                                format!("DELETE {key}")
                            };
                            if r.prev_kv
                                && let Some(p) = &e.prev_kv
                            {
                                s += &format!(" prev={}", String::from_utf8_lossy(&p.value));
                            }
                            s
                        })
                        .collect();
                    (!evs.is_empty()).then_some((rev.revision, evs))
                })
                .collect();
            let have = got.get(id).cloned().unwrap_or_default();
            match canceled.get(id) {
                None => assert_eq!(have, want, "seed {seed}, watch {id} {r:?}"),
                Some(compact) => {
                    assert_eq!(have[..], want[..have.len()], "seed {seed}, watch {id}");
                    let next = want.get(have.len()).map_or(i64::MAX, |w| w.0);
                    let resumed = have.last().map_or(*first, |h| h.0 + 1);
                    assert!(
                        resumed < *compact && next >= resumed,
                        "seed {seed}, watch {id}: canceled at compact {compact} after {resumed}"
                    );
                }
            }
        }
    }
    // The seeds do exercise the hard paths.
    assert!(total_canceled > 10, "{total_canceled} compaction cancels");
    assert!(total_stalls > 50, "{total_stalls} full queues");
    assert!(total_events > 2000, "{total_events} events");
}
