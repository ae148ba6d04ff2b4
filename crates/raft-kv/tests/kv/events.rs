//! The events apply hands to a registered sink (for a watch hub): one batch per applied
//! batch, one entry per revision, etcd's event shapes.

use crate::common::*;
use parking_lot::Mutex;
use raft_kv::pb::mvccpb::Event;
use raft_kv::pb::mvccpb::event::EventType;
use raft_kv::{EventSink, Op, RevisionEvents};
use std::sync::Arc;

#[derive(Default)]
struct Collect(Mutex<Vec<Vec<RevisionEvents>>>);

impl EventSink for Collect {
    fn publish(&self, revisions: Vec<RevisionEvents>) {
        self.0.lock().push(revisions);
    }
}

fn shape(e: &Event) -> (EventType, String, i64, Option<String>) {
    let kv = e.kv.as_ref().unwrap();
    (
        EventType::try_from(e.r#type).unwrap(),
        s(&kv.key),
        kv.mod_revision,
        e.prev_kv.as_ref().map(|p| s(&p.value)),
    )
}

#[test]
fn apply_publishes_each_revision_in_order() {
    let mut h = Harness::new();
    // Nothing listens: nothing is built or published.
    h.put("a", "0");
    let sink = Arc::new(Collect::default());
    h.store.set_event_sink(Some(sink.clone()));
    h.put("a", "1");
    h.del("zzz", ""); // deletes nothing: no revision, no event
    h.ok(Op::Txn(txn(
        vec![],
        vec![rput("b", "x"), rdel("a", "")],
        vec![],
    )));
    h.ok(Op::Compact(raft_kv::pb::etcdserverpb::CompactionRequest {
        revision: 2,
        physical: false,
    }));
    let got = sink.0.lock().clone();
    // One batch per apply call that wrote something.
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].len(), 1);
    assert_eq!(got[0][0].revision, 3);
    assert_eq!(
        got[0][0].events.iter().map(shape).collect::<Vec<_>>(),
        [(EventType::Put, "a".into(), 3, Some("0".into()))]
    );
    assert_eq!(got[1][0].revision, 4);
    assert_eq!(
        got[1][0].events.iter().map(shape).collect::<Vec<_>>(),
        [
            (EventType::Put, "b".into(), 4, None),
            (EventType::Delete, "a".into(), 4, Some("1".into())),
        ]
    );
    // A put carries the whole new version.
    let put = got[0][0].events[0].kv.as_ref().unwrap();
    assert_eq!(
        (put.version, put.create_revision, s(&put.value)),
        (2, 2, "1".into())
    );
    h.store.set_event_sink(None);
    h.put("c", "1");
    assert_eq!(sink.0.lock().len(), 2);
}

/// The history read back as events is exactly what apply published live, for every
/// starting revision, in pieces of any size; below the compact revision it is refused.
#[test]
fn history_reads_back_the_published_events() {
    let mut h = Harness::new();
    let sink = Arc::new(Collect::default());
    h.store.set_event_sink(Some(sink.clone()));
    for i in 0..40 {
        let k = format!("k{}", i % 6);
        match i % 4 {
            0 | 1 => {
                h.put(&k, &i.to_string());
            }
            2 => {
                h.del(&k, "");
            }
            _ => {
                h.ok(Op::Txn(txn(
                    vec![],
                    vec![rput(&k, "t"), rdel(&format!("k{}", (i + 1) % 6), "")],
                    vec![],
                )));
            }
        }
    }
    let live: Vec<RevisionEvents> = sink.0.lock().iter().flatten().cloned().collect();
    let now = h.store.revision();
    assert_eq!(live.last().unwrap().revision, now);
    for from in [0, 2, 7, now, now + 1] {
        let want: Vec<_> = live
            .iter()
            .filter(|r| r.revision >= from)
            .cloned()
            .collect();
        assert_eq!(
            h.store.events(from, usize::MAX).unwrap(),
            want,
            "from {from}"
        );
        // In pieces: whole revisions, in order, nothing twice.
        let mut got = Vec::new();
        let mut next = from;
        loop {
            let part = h.store.events(next, 3).unwrap();
            let Some(last) = part.last() else { break };
            next = last.revision + 1;
            got.extend(part);
        }
        assert_eq!(got, want, "from {from} in pieces");
    }
    let compact = now - 5;
    h.ok(Op::Compact(raft_kv::pb::etcdserverpb::CompactionRequest {
        revision: compact,
        physical: true,
    }));
    assert!(
        h.store
            .wait_compacted_blocking(compact, std::time::Duration::from_secs(10))
    );
    assert!(matches!(
        h.store.events(compact - 1, 10),
        Err(raft_kv::Error::Compacted)
    ));
    // Above the compact revision the events are whole, prev_kv included.
    let want: Vec<_> = live
        .iter()
        .filter(|r| r.revision > compact)
        .cloned()
        .collect();
    assert_eq!(h.store.events(compact + 1, usize::MAX).unwrap(), want);
}
